//! The metrics listener: `GET /metrics` on its own address (`metrics_bind`), never on the main
//! listener, so the API's users (devices, operators, anyone on the internet) cannot read what
//! the fleet looks like. Off unless configured; bind it to loopback or a monitoring network.

use super::problem;
use crate::metrics::PoolStats;
use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpResponse, web};
use sea_orm::DbBackend;

/// The application of the metrics listener: `/metrics` and nothing else.
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
    App::new()
        .app_data(state)
        .route("/metrics", web::get().to(metrics))
        .default_service(web::to(problem::route_not_found))
}

/// Prometheus metrics in the text exposition format: HTTP requests and latency by route,
/// device pulls and reports by outcome, devices by connectivity, job runs, and the database
/// pool.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let pool = match state.db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = state.db.get_postgres_connection_pool();
            Some(PoolStats {
                size: pool.size(),
                idle: pool.num_idle(),
                max: pool.options().get_max_connections(),
            })
        }
        DbBackend::Sqlite => {
            let pool = state.db.get_sqlite_connection_pool();
            Some(PoolStats {
                size: pool.size(),
                idle: pool.num_idle(),
                max: pool.options().get_max_connections(),
            })
        }
        _ => None,
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(pool, state.config.metrics_per_tenant))
}
