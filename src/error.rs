//! The one error type of the server and its table of stable codes.
//!
//! Services return [`ApiError`]; `http::problem` renders it as RFC 9457 problem+json. Clients
//! match on `code`, never on `detail`, so a code, once shipped, keeps its meaning and status.

use crate::domain::FieldError;
use std::fmt;

macro_rules! codes {
    ($($variant:ident => $status:literal, $code:literal, $title:literal;)*) => {
        /// Stable machine-readable error codes, each with its HTTP status and title.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub const fn status(self) -> u16 {
                match self { $(Code::$variant => $status,)* }
            }

            pub const fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            pub const fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)* }
            }
        }
    };
}

codes! {
    MalformedJson => 400, "malformed_json", "The request body is not valid JSON";
    InvalidQuery => 400, "invalid_query", "A query parameter is invalid";
    InvalidPath => 400, "invalid_path", "A path parameter is invalid";
    InvalidHeader => 400, "invalid_header", "A request header is invalid";
    Unauthenticated => 401, "unauthenticated", "Authentication is required";
    InvalidToken => 401, "invalid_token", "The access token is invalid or expired";
    InvalidCredentials => 401, "invalid_credentials", "The email or password is wrong";
    InvalidRefreshToken => 401, "invalid_refresh_token", "The refresh token is invalid, expired or already used";
    InvalidEnrollmentToken => 401, "invalid_enrollment_token", "The enrollment token is invalid, expired, used up or revoked";
    InvalidDeviceCredential => 401, "invalid_device_credential", "The device credential is invalid or the device was decommissioned";
    Forbidden => 403, "forbidden", "Your role does not allow this";
    RegistrationPending => 403, "registration_pending", "This device's registration waits for an operator's approval";
    NotFound => 404, "not_found", "The resource does not exist";
    RouteNotFound => 404, "route_not_found", "No such route";
    MethodNotAllowed => 405, "method_not_allowed", "The route does not take this method";
    Conflict => 409, "conflict", "The request conflicts with the current state";
    DeviceDecommissioned => 409, "device_decommissioned", "The device was decommissioned and cannot register again";
    PreconditionFailed => 412, "precondition_failed", "The resource changed since you read it";
    PayloadTooLarge => 413, "payload_too_large", "The request body is too large";
    UnsupportedMediaType => 415, "unsupported_media_type", "The request body must be application/json";
    ValidationFailed => 422, "validation_failed", "The request has invalid fields";
    PreconditionRequired => 428, "precondition_required", "This update needs an If-Match header";
    RateLimited => 429, "rate_limited", "Too many requests; retry after the time given";
    Internal => 500, "internal_error", "Something went wrong on our side";
    ConnectWiseUnavailable => 502, "connectwise_unavailable", "ConnectWise could not answer the request";
    Unavailable => 503, "service_unavailable", "The service is temporarily unavailable";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// An error on its way to a client: a code, a sentence for humans, optional field errors and,
/// for internal errors, the cause that goes to the log (never to the client).
pub struct ApiError {
    pub code: Code,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Seconds to wait before retrying (`Retry-After`).
    pub retry_after: Option<u64>,
    cause: Option<Cause>,
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            cause: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// A 422 listing every invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("`{}` {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Self {
            errors,
            ..Self::new(Code::ValidationFailed, detail)
        }
    }

    pub fn field(error: FieldError) -> Self {
        Self::validation(vec![error])
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(Code::NotFound, format!("{what} not found"))
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(Code::Conflict, detail)
    }

    /// An unexpected failure. The client sees a generic sentence; the cause is logged.
    pub fn internal(cause: impl Into<Cause>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(
                Code::Internal,
                "an unexpected error occurred; quote the request id when reporting it",
            )
        }
    }

    /// The same error for another of the requests one failure answers (a batch's): the same
    /// code, detail and retry advice; the cause is kept as its text.
    pub fn again(&self) -> Self {
        Self {
            code: self.code,
            detail: self.detail.clone(),
            errors: self.errors.clone(),
            retry_after: self.retry_after,
            cause: self.cause.as_ref().map(|cause| cause.to_string().into()),
        }
    }

    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ApiError");
        debug.field("code", &self.code).field("detail", &self.detail);
        if !self.errors.is_empty() {
            debug.field("errors", &self.errors);
        }
        if let Some(cause) = &self.cause {
            debug.field("cause", &format_args!("{cause}"));
        }
        debug.finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// Seconds a client is asked to wait when the database is too busy to answer now.
pub const BUSY_RETRY_SECONDS: u64 = 2;

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        // Overload, or a database connection lost (the pool replaces it): not a fault of the
        // request, and the client may simply come back. The cause still goes to the log
        // through `internal`'s cause.
        let detail = if is_busy(&error) {
            "the server is busy; retry after the time given"
        } else if crate::db::is_lost_connection(&error) {
            "the database connection was lost; retry after the time given"
        } else {
            return Self::internal(error);
        };
        Self {
            code: Code::Unavailable,
            detail: detail.into(),
            retry_after: Some(BUSY_RETRY_SECONDS),
            ..Self::internal(error)
        }
    }
}

/// True when the database refused for load, not for a fault: SQLite's write lock still held
/// after the busy timeout, or no pooled connection free within the acquire timeout.
fn is_busy(error: &sea_orm::DbErr) -> bool {
    let text = error.to_string();
    text.contains("database is locked")
        || text.contains("database table is locked")
        || text.contains("pool timed out")
        || text.contains("PoolTimedOut")
}

impl From<sea_orm::TransactionError<ApiError>> for ApiError {
    fn from(error: sea_orm::TransactionError<ApiError>) -> Self {
        match error {
            sea_orm::TransactionError::Connection(db) => Self::internal(db),
            sea_orm::TransactionError::Transaction(api) => api,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_busy_database_is_a_503_with_retry_after_not_a_500() {
        let locked =
            sea_orm::DbErr::Custom("error returned from database: (code: 5) database is locked".into());
        let error = ApiError::from(locked);
        assert_eq!(error.code, Code::Unavailable);
        assert_eq!(error.retry_after, Some(BUSY_RETRY_SECONDS));
        assert!(error.cause().is_some(), "the cause is still logged");
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let lost = sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(
            sea_orm::sqlx::Error::Io(reset),
        )));
        let error = ApiError::from(lost);
        assert_eq!(
            error.code,
            Code::Unavailable,
            "a lost connection is worth a retry"
        );
        assert_eq!(error.retry_after, Some(BUSY_RETRY_SECONDS));
        assert!(error.detail.contains("connection was lost"), "{}", error.detail);
        // Each request a batch answered gets the same answer.
        let again = error.again();
        assert_eq!(
            (again.code, &again.detail, again.retry_after),
            (error.code, &error.detail, error.retry_after)
        );
        assert_eq!(
            again.cause().map(ToString::to_string),
            error.cause().map(ToString::to_string)
        );
        let other = ApiError::from(sea_orm::DbErr::Custom("syntax error".into()));
        assert_eq!(other.code, Code::Internal);
    }

    #[test]
    fn codes_are_unique_snake_case_and_map_to_error_statuses() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {code}");
            assert!(code.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!((400..600).contains(&code.status()));
        }
    }

    #[test]
    fn internal_errors_hide_their_cause_from_the_detail() {
        let error = ApiError::internal("connection string postgres://u:hunter2@db");
        assert!(!error.detail.contains("hunter2"));
        assert!(error.cause().unwrap().to_string().contains("hunter2"));
    }

    #[test]
    fn single_field_errors_are_named_in_the_detail() {
        let error = ApiError::field(FieldError::new("email", "invalid_email", "must contain `@`"));
        assert_eq!(error.code, Code::ValidationFailed);
        assert!(error.detail.contains("email"));
    }
}
