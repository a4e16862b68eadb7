//! The field audit's questions in domain terms: who inherits a field, who overrides one, and
//! what a device had at a past moment, folded from its history.

use super::device::{FieldRecord, ReportedKind};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use uuid::Uuid;

/// How a device holds a field it is served from a policy, for "who inherits F?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InheritedState {
    /// The device reported it applies the served value.
    Inherited,
    /// Served, but the device has not reported the field yet.
    NotReported,
}

/// An override of a field, for "who overrides F?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideKind {
    /// A local value of a field that is not locked: allowed.
    Allowed,
    /// A local value of a locked field.
    Violation,
}

/// What a history entry records a change of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryEvent {
    /// What the device is served.
    Served,
    /// What the device reported.
    Reported,
}

/// One entry of a device's field history: a snapshot of the field written when what was
/// served (`served`) or what the device reported (`reported`) changed.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub id: Uuid,
    pub event: HistoryEvent,
    pub record: FieldRecord,
    /// Whether the served field was locked; `None` for entries written before the history
    /// recorded it.
    pub locked: Option<bool>,
    pub recorded_at: DateTime<Utc>,
}

/// One field of a device as it stood at a past moment.
#[derive(Debug, Clone)]
pub struct FieldAt {
    /// What was served and reported; `served_since` and `reported.since` are when each last
    /// changed before that moment.
    pub record: FieldRecord,
    pub locked: Option<bool>,
}

/// Folds a device's history, oldest first and up to the moment asked about, into the state of
/// each field at that moment: every entry is a full snapshot, so the last one of a field wins;
/// the times come from the last entry of each kind.
pub fn fields_at(history: impl IntoIterator<Item = HistoryEntry>) -> BTreeMap<String, FieldAt> {
    let mut fields: BTreeMap<String, FieldAt> = BTreeMap::new();
    for entry in history {
        let previous = fields.remove(&entry.record.path);
        let mut record = entry.record;
        record.served_since = match (&previous, entry.event) {
            (Some(before), HistoryEvent::Reported) => before.record.served_since,
            _ => entry.recorded_at,
        };
        if let Some(reported) = record.reported.as_mut() {
            reported.since = match (&previous, entry.event) {
                (Some(before), HistoryEvent::Served) => before
                    .record
                    .reported
                    .as_ref()
                    .map_or(entry.recorded_at, |r| r.since),
                _ => entry.recorded_at,
            };
        }
        record.violation = entry.locked == Some(true)
            && record
                .reported
                .as_ref()
                .is_some_and(|r| r.state == ReportedKind::Overridden);
        fields.insert(
            record.path.clone(),
            FieldAt {
                record,
                locked: entry.locked,
            },
        );
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeviceId;
    use crate::domain::device::{ReportedRecord, ServedField, ServedSource};
    use chrono::Duration;

    fn entry(
        event: HistoryEvent,
        version: i32,
        reported: Option<ReportedKind>,
        locked: bool,
        minute: i64,
    ) -> HistoryEntry {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(minute);
        HistoryEntry {
            id: Uuid::now_v7(),
            event,
            locked: Some(locked),
            recorded_at: at,
            record: FieldRecord {
                device_id: DeviceId(Uuid::nil()),
                path: "connectwise.site".into(),
                served: ServedField {
                    fingerprint: Some(format!("fp{version}")),
                    source: ServedSource::Policy,
                    policy_id: Some(Uuid::nil()),
                    policy_version: Some(version),
                    locked,
                },
                served_since: at,
                reported: reported.map(|state| ReportedRecord {
                    state,
                    local_value: None,
                    error: None,
                    since: at,
                }),
                violation: false,
            },
        }
    }

    #[test]
    fn the_last_snapshot_wins_and_each_side_keeps_its_own_time() {
        let history = vec![
            entry(HistoryEvent::Served, 2, None, false, 0),
            entry(HistoryEvent::Reported, 2, Some(ReportedKind::Inherited), false, 5),
            entry(HistoryEvent::Served, 3, Some(ReportedKind::Inherited), true, 60),
        ];
        let at = fields_at(history);
        let field = &at["connectwise.site"];
        assert_eq!(field.record.served.policy_version, Some(3));
        assert_eq!(field.locked, Some(true));
        let minute = |m| DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(m);
        assert_eq!(field.record.served_since, minute(60));
        assert_eq!(field.record.reported.as_ref().unwrap().since, minute(5));
    }

    #[test]
    fn an_override_of_a_locked_field_is_a_violation_then_too() {
        let history = vec![
            entry(HistoryEvent::Served, 2, None, true, 0),
            entry(HistoryEvent::Reported, 2, Some(ReportedKind::Overridden), true, 5),
        ];
        let field = &fields_at(history)["connectwise.site"];
        assert!(field.record.violation);
        assert_eq!(
            field.record.served_since,
            DateTime::from_timestamp(1_800_000_000, 0).unwrap()
        );
    }
}
