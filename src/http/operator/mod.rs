//! The operator API under `/api/v1`.

pub mod auth;
pub mod me;
pub mod operators;
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
        .service(operators::delete_operator);
}
