//! The HTTP surface: one route registry (`routes`) used by the server and by the OpenAPI
//! document, so a route cannot exist without being documented.

pub mod client_address;
pub mod device;
pub mod etag;
pub mod extract_errors;
pub mod headers;
pub mod health;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod openapi_derived;
pub mod operator;
pub mod panic;
pub mod problem;
pub mod request_context;
pub mod tls;
pub mod types;

use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, middleware, web};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_swagger_ui::SwaggerUi;

/// Every route of the server.
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(utoipa_actix_web::scope("/api/v1").configure(operator::configure))
        .service(utoipa_actix_web::scope("/device/v1").configure(device::configure));
}

/// The OpenAPI document, generated from the handlers.
pub fn spec() -> utoipa::openapi::OpenApi {
    let mut api = App::new()
        .into_utoipa_app()
        .openapi(openapi::ApiDoc::openapi())
        .configure(routes)
        .split_for_parts()
        .1;
    openapi_derived::document(&mut api);
    api
}

/// `spec()` as the pretty JSON committed at `openapi/openapi.json`.
pub fn spec_json() -> String {
    let mut json = serde_json::to_string_pretty(&spec()).expect("the OpenAPI document serialises");
    json.push('\n');
    json
}

/// The application for one HTTP worker.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let (query_config, path_config) = problem::extractor_configs();
    // The last `wrap` runs first: the request context (id, span, metrics) wraps everything and
    // every response gets the security headers. A caught panic's 500 travels out as an error
    // that `catch_panic` has already finished with those headers and the request id.
    App::new()
        .wrap(middleware::from_fn(panic::catch_panic))
        .wrap(middleware::from_fn(headers::security_headers))
        .wrap(middleware::from_fn(request_context::request_context))
        .app_data(state)
        .app_data(query_config)
        .app_data(path_config)
        .into_utoipa_app()
        .openapi(openapi::ApiDoc::openapi())
        .configure(routes)
        .openapi_service(|mut api| {
            openapi_derived::document(&mut api);
            SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", api)
        })
        .map(|app| {
            app.service(web::redirect("/docs", "/docs/"))
                .configure(crate::ui::configure)
        })
        .default_service(web::to(problem::api_route_not_found))
        .into_app()
}
