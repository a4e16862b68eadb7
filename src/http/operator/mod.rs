//! The operator API under `/api/v1`.

pub mod audit;
pub mod auth;
pub mod me;
pub mod operators;
pub mod policies;
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
        .service(policies::list_policy_versions)
        .service(policies::get_policy_version)
        .service(policies::diff_policy_versions)
        .service(policies::rollback_policy)
        .service(policies::get_resolved_policy)
        .service(policies::export_policy)
        .service(policies::export_policy_with_secrets)
        .service(policies::import_policy)
        .service(audit::list_audit_changes);
}
