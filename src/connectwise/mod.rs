//! ConnectWise Manage: the outbound client, its SSRF guard, what answers may cost in memory, and
//! the short-lived caches bounded in bytes.

pub mod client;
pub mod guard;
pub mod size;

pub use client::{ClientSettings, ConnectWiseClient, Credentials, CwError};

use serde_json::Value;
use std::sync::Arc;

/// Dropdown results, kept briefly per tenant, credentials and query.
pub type LookupCache = crate::cache::BoundedCache<String, Arc<Vec<Value>>>;

/// All cached dropdown results together, in estimated bytes.
pub const LOOKUP_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// One cached dropdown result; a larger one is served but fetched again next time.
pub const LOOKUP_ENTRY_BYTES: usize = 4 * 1024 * 1024;
