//! Optimistic concurrency: every mutable resource carries a version that each write bumps.

/// What an update or delete must find to go ahead: any current version (`If-Match: *`) or
/// exactly the one the client read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Any,
    Version(i32),
}
