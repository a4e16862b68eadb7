//! Pure domain types and rules. Nothing here knows about HTTP or the database.

pub mod audit;
pub mod binding;
pub mod boards;
pub mod catalog;
pub mod device;
pub mod diff;
pub mod field_audit;
pub mod ids;
pub mod operator;
pub mod policy;
pub mod redact;
pub mod resolve;
pub mod suggest;
pub mod sync;
pub mod tenant;
pub mod validation;
pub mod version;

pub use ids::{DeviceId, EnrollmentTokenId, OperatorId, PolicyId, ReregistrationId, TenantId};
pub use operator::{Email, NewPassword, Operator, Role};
pub use tenant::{Tenant, TenantName};
pub use validation::FieldError;
pub use version::Expected;
