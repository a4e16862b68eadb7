//! The web UI for MSP operators: server-rendered pages from compile-time checked templates
//! (`templates/`), with the vendored htmx (`assets/`) for partial updates. Pages call the same
//! services, with the same roles and tenant scoping, as the JSON API; see `session` for
//! sign-in and `page` for what every page shares.

// A refused request ends with the page (or redirect) to answer: handlers return it early as
// `Err(HttpResponse)`. It is built once per request, so its size does not matter.
#![allow(clippy::result_large_err)]

mod admin;
mod assets;
mod auth;
mod dashboard;
mod device_history;
mod device_list;
mod devices;
mod field_audit;
mod page;
mod policies;
mod policy_form;
pub mod session;
mod transfer;
mod versions;

use actix_web::web;

/// Registers the UI's routes (outside `/api` and `/device`, which stay JSON only).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(auth::root))
        .route("/login", web::get().to(auth::login_form))
        .route("/login", web::post().to(auth::login))
        .route("/logout", web::post().to(auth::logout))
        .route("/assets/{name}", web::get().to(assets::asset))
        .route("/policies", web::get().to(policies::first))
        .route("/policies/{id}", web::get().to(policies::show))
        .route("/policies/{id}", web::post().to(policies::save))
        .route("/policies/{id}/revert", web::post().to(policies::revert))
        .route(
            "/policies/{id}/test-connection",
            web::post().to(policies::test_connection),
        )
        .route("/policies/{id}/statuses", web::get().to(policies::statuses))
        .route("/policies/{id}/versions", web::get().to(versions::show))
        .route("/policies/{id}/rollback", web::post().to(versions::rollback))
        .route("/policies/{id}/export", web::post().to(transfer::export))
        .service(
            web::resource("/policies/{id}/import")
                .app_data(web::FormConfig::default().limit(transfer::MAX_DOCUMENT_BYTES))
                .route(web::post().to(transfer::import)),
        )
        .route("/dashboard", web::get().to(dashboard::show))
        .route("/audit/overrides", web::get().to(field_audit::overrides))
        .route("/audit/inherited", web::get().to(field_audit::inherited))
        .route("/devices", web::get().to(device_list::list))
        .route("/devices/{id}", web::get().to(devices::show))
        .route("/devices/{id}", web::post().to(devices::save))
        .route("/devices/{id}/billing", web::get().to(devices::cascade))
        .route(
            "/devices/{id}/fields/{action}",
            web::post().to(devices::field_action),
        )
        .route("/admin", web::get().to(admin::show))
        .route("/admin/tokens", web::post().to(admin::create_token))
        .route("/admin/tokens/revoke", web::post().to(admin::revoke_token))
        .route("/admin/operators", web::post().to(admin::create_operator))
        .route("/admin/operators/role", web::post().to(admin::change_role))
        .route("/admin/pull-interval", web::post().to(admin::pull_interval))
        .route("/admin/tenants", web::post().to(admin::create_tenant));
}
