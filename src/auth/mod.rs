//! Authentication: password hashing, operator JWTs, opaque tokens, and the typed extractors
//! that hand handlers an authenticated context carrying the caller's `TenantId`.

pub mod device;
pub mod extract;
pub mod jwt;
pub mod password;
pub mod throttle;
pub mod token;

pub use device::DeviceAuth;
pub use extract::{Admin, AnyRole, Editor, Operator, PlatformAdmin};
pub use jwt::{Claims, JwtKeys};
