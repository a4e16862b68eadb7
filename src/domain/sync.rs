//! Where a device stands against its current config: the one rule behind `in_sync`, `pending`
//! and `failed` in the device list, the device detail, the policy dashboard and the UI.
//!
//! The config hash a device reports only says which config it worked from; what it actually
//! runs is in its field table (what it reported per field). Both count: a device that applied
//! the current config but could not apply one field, or still runs a local value of a locked
//! field, is not in sync.

use super::device::ReportedKind;

/// What a device's field table says, counted over its fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldFlags {
    /// Fields the device runs with a local value.
    pub overridden: u32,
    /// Fields the device reported it could not apply.
    pub failed: u32,
    /// Local values of locked fields (each is also counted in `overridden`).
    pub violations: u32,
}

impl FieldFlags {
    /// Adds one field's reported state and violation flag.
    pub fn count(&mut self, reported_state: Option<ReportedKind>, violation: bool) {
        match reported_state {
            Some(ReportedKind::Overridden) => self.overridden += 1,
            Some(ReportedKind::Failed) => self.failed += 1,
            _ => {}
        }
        self.violations += u32::from(violation);
    }
}

/// Exactly one of these holds for every device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Applied the current config, every field took, and no locked field is overridden.
    InSync,
    /// Not there yet and nothing failed: the current config is not applied yet, or a locked
    /// field still runs a local value (until the device drops it, e.g. after a reassert).
    Pending,
    /// At least one field is reported as failed, whatever config it came with.
    Failed,
}

/// The rule. `applied_hash` is the config hash the device last reported as applied.
pub fn sync_state(current_hash: &str, applied_hash: Option<&str>, flags: FieldFlags) -> SyncState {
    if flags.failed > 0 {
        SyncState::Failed
    } else if applied_hash == Some(current_hash) && flags.violations == 0 {
        SyncState::InSync
    } else {
        SyncState::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ReportedKind::{Failed, Inherited, Overridden};

    fn flags(fields: &[(ReportedKind, bool)]) -> FieldFlags {
        let mut flags = FieldFlags::default();
        for (state, violation) in fields {
            flags.count(Some(*state), *violation);
        }
        flags
    }

    #[test]
    fn applied_and_clean_is_in_sync() {
        let clean = flags(&[(Inherited, false), (Overridden, false)]);
        assert_eq!(sync_state("h", Some("h"), clean), SyncState::InSync);
        assert_eq!(sync_state("h", Some("old"), clean), SyncState::Pending);
        assert_eq!(sync_state("h", None, FieldFlags::default()), SyncState::Pending);
    }

    #[test]
    fn a_failed_field_wins_over_an_applied_hash() {
        let failed = flags(&[(Inherited, false), (Failed, false)]);
        assert_eq!(sync_state("h", Some("h"), failed), SyncState::Failed);
        assert_eq!(sync_state("h", None, failed), SyncState::Failed);
        let both = flags(&[(Failed, false), (Overridden, true)]);
        assert_eq!(sync_state("h", Some("h"), both), SyncState::Failed);
    }

    #[test]
    fn a_violation_keeps_an_applied_device_pending() {
        let violating = flags(&[(Overridden, true)]);
        assert_eq!(violating.overridden, 1);
        assert_eq!(sync_state("h", Some("h"), violating), SyncState::Pending);
    }
}
