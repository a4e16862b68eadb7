//! The operator API under `/api/v1`.

pub mod audit;
pub mod auth;
pub mod billing;
pub mod bulk_settings;
pub mod connectwise;
pub mod device_settings;
pub mod devices;
pub mod drafts;
pub mod enrollment;
pub mod field_audit;
pub mod me;
pub mod operators;
pub mod policies;
pub mod policy_status;
pub mod policy_transfer;
pub mod policy_versions;
pub mod reregistrations;
pub mod rollouts;
pub mod settings;
pub mod tenants;

use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(auth::login)
        .service(auth::refresh)
        .service(auth::logout)
        .service(me::get_me)
        .service(me::change_password)
        .service(tenants::create_tenant)
        .service(tenants::list_tenants)
        .service(tenants::get_tenant)
        .service(tenants::update_tenant)
        .service(operators::create_operator)
        .service(operators::list_operators)
        .service(operators::get_operator)
        .service(operators::update_operator)
        .service(operators::delete_operator)
        .service(settings::get_catalog)
        .service(policies::list_policies)
        .service(policies::create_policy)
        .service(policies::get_policy)
        .service(policies::update_policy)
        .service(policies::delete_policy)
        .service(policy_versions::list_policy_versions)
        .service(policy_versions::get_policy_version)
        .service(policy_versions::diff_policy_versions)
        .service(policy_versions::rollback_policy)
        .service(policy_versions::get_resolved_policy)
        .service(policy_transfer::export_policy)
        .service(policy_transfer::export_policy_with_secrets)
        .service(policy_transfer::import_policy)
        .service(drafts::create_draft)
        .service(drafts::list_drafts)
        .service(drafts::get_draft)
        .service(drafts::update_draft)
        .service(drafts::delete_draft)
        .service(drafts::publish_draft)
        .service(drafts::get_draft_impact)
        .service(drafts::get_rollback_impact)
        .service(drafts::get_import_impact)
        .service(rollouts::start_rollout)
        .service(rollouts::list_rollouts)
        .service(rollouts::get_rollout)
        .service(rollouts::steer_rollout)
        .service(audit::list_audit_changes)
        .service(enrollment::create_enrollment_token)
        .service(enrollment::list_enrollment_tokens)
        .service(enrollment::get_enrollment_token)
        .service(enrollment::revoke_enrollment_token)
        .service(devices::list_devices)
        .service(devices::get_device)
        .service(devices::update_device)
        .service(devices::rotate_device_credential)
        .service(devices::decommission_device)
        .service(reregistrations::get_reregistration)
        .service(reregistrations::approve_reregistration)
        .service(reregistrations::reject_reregistration)
        .service(devices::adopt_device_override)
        .service(devices::reassert_device_field)
        .service(bulk_settings::export_device_settings)
        .service(bulk_settings::apply_device_settings)
        .service(billing::get_billing)
        .service(billing::get_device_billing_usage)
        .service(field_audit::get_device_fields)
        .service(field_audit::get_device_history)
        .service(field_audit::list_inherited)
        .service(field_audit::list_overrides)
        .service(policy_status::list_policy_devices)
        .service(policy_status::get_policy_dashboard)
        .service(device_settings::get_device_settings)
        .service(device_settings::update_device_settings)
        .service(connectwise::test_connection)
        .service(connectwise::list_cw_companies)
        .service(connectwise::list_cw_agreements)
        .service(connectwise::list_cw_additions)
        .service(connectwise::list_cw_boards)
        .service(connectwise::list_cw_statuses)
        .service(connectwise::validate_policy);
}
