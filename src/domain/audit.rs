//! The change log: who changed what, when, with field-level before and after.

use super::diff::Change;
use super::{DeviceId, OperatorId, TenantId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Who is acting: an operator (with the request that carried the action) or the system itself
/// (command line, jobs).
#[derive(Debug, Clone)]
pub struct Actor {
    /// The actor's own tenant (a platform admin acts on other tenants).
    pub tenant_id: TenantId,
    pub operator_id: Option<OperatorId>,
    /// A device acting for itself (registering).
    pub device_id: Option<DeviceId>,
    pub request_id: Option<String>,
    /// The acting operator is a platform admin (only they may change another platform admin).
    pub platform_admin: bool,
}

impl Actor {
    /// A device acting for itself.
    pub fn device(tenant_id: TenantId, device_id: DeviceId, request_id: Option<String>) -> Self {
        Self {
            tenant_id,
            operator_id: None,
            device_id: Some(device_id),
            request_id,
            platform_admin: false,
        }
    }

    /// The server itself, e.g. an admin command run from the shell.
    pub fn system(tenant_id: TenantId) -> Self {
        Self {
            tenant_id,
            operator_id: None,
            device_id: None,
            request_id: None,
            platform_admin: false,
        }
    }
}

/// An entry about to be written.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// `policy.updated`, `operator.created`, …
    pub action: &'static str,
    /// `policy`, `operator`, `tenant`.
    pub target_type: &'static str,
    pub target_id: Uuid,
    pub changes: Vec<Change>,
}

/// An entry as stored.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub actor_id: Option<OperatorId>,
    /// The actor's email at the time, `device <id>`, or `system`.
    pub actor_label: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub changes: Vec<Change>,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Filters of a change-log query; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor_id: Option<OperatorId>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}
