//! The last line of defence against a bug: a panic while serving a request answers
//! `500 internal_error` (the body every internal error has) instead of tearing down the
//! connection, and the worker keeps serving its other requests.

use super::headers;
use super::problem::REQUEST_ID;
use super::request_context::REQUEST_ID_HEADER;
use crate::error::ApiError;
use actix_web::ResponseError;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::HeaderValue;
use actix_web::middleware::Next;
use futures_util::FutureExt;
use std::any::Any;
use std::panic::AssertUnwindSafe;

/// Catches a panic in everything inside it (routing, extractors, handlers). The answer travels
/// as an error whose response is already complete: a `ServiceResponse` would need the request,
/// which routing must own alone and the panic took with it. So the answer is finished here,
/// with the request id and the security headers the outer layers would have added.
pub async fn catch_panic(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let no_store = headers::no_store(req.path());
    let tls = headers::tls(&req);
    // Unwind safety: a panicking request's own state is dropped with it; shared state lives
    // behind locks and in the database, where a dropped transaction rolls back.
    match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => {
            let message = format!("handler panicked: {}", panic_message(&*payload));
            // `error_response` logs the cause, inside the request's span.
            let mut response = ApiError::internal(message.clone()).error_response();
            headers::apply(response.headers_mut(), no_store, tls);
            if let Some(id) = REQUEST_ID
                .try_with(|id| HeaderValue::from_str(id).ok())
                .ok()
                .flatten()
            {
                response.headers_mut().insert(REQUEST_ID_HEADER, id);
            }
            Err(InternalError::from_response(message, response).into())
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-text panic payload")
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;
    use actix_web::{App, HttpResponse, middleware, test, web};

    #[actix_web::test]
    async fn a_panicking_handler_answers_500_and_the_service_keeps_serving() {
        let app = test::init_service(
            App::new()
                .wrap(middleware::from_fn(catch_panic))
                .route(
                    "/api/v1/boom",
                    web::get().to(|| async {
                        let limit: Option<u32> = std::hint::black_box(None);
                        HttpResponse::Ok().body(limit.expect("an unchecked client number").to_string())
                    }),
                )
                .route(
                    "/fine",
                    web::get().to(|| async { HttpResponse::Ok().body("fine") }),
                ),
        )
        .await;
        // Two panics in a row: the first one did not poison the service.
        for _ in 0..2 {
            let request = test::TestRequest::get().uri("/api/v1/boom").to_request();
            let error = test::try_call_service(&app, request)
                .await
                .err()
                .expect("the panic becomes an error the server renders");
            let response = error.error_response();
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let headers = response.headers();
            assert_eq!(headers.get("content-type").unwrap(), "application/problem+json");
            assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
            assert_eq!(headers.get("cache-control").unwrap(), "no-store");
            let body = actix_web::body::to_bytes(response.into_body()).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["code"], "internal_error");
            assert_eq!(body["status"], 500);
            assert!(
                !body["detail"].as_str().unwrap().contains("unchecked"),
                "the panic message is logged, not sent: {body}"
            );
        }
        let response = test::call_service(&app, test::TestRequest::get().uri("/fine").to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(test::read_body(response).await, "fine");
    }
}
