//! Field-level differences between two versions of a policy — for the diff endpoint, import
//! dry runs and the change log alike. Secrets only ever show as changed, never their values.

use super::policy::{PolicyContent, SettingValue};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One field that differs: `name`, `description`, `values.<path>` or `locks.<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Change {
    pub field: String,
    pub change: ChangeKind,
    /// Absent for secrets and for added fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Absent for secrets and for removed fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

impl Change {
    /// A plain before → after change; `None` on one side makes it an addition or removal.
    pub fn of(field: impl Into<String>, before: Option<Value>, after: Option<Value>) -> Self {
        let change = match (&before, &after) {
            (None, _) => ChangeKind::Added,
            (_, None) => ChangeKind::Removed,
            _ => ChangeKind::Changed,
        };
        Self {
            field: field.into(),
            change,
            before,
            after,
            secret: false,
        }
    }

    /// A secret that was set, replaced or removed; its values are never recorded.
    pub fn secret(field: impl Into<String>, change: ChangeKind) -> Self {
        Self {
            field: field.into(),
            change,
            before: None,
            after: None,
            secret: true,
        }
    }
}

pub fn diff(before: &PolicyContent, after: &PolicyContent) -> Vec<Change> {
    let mut changes = Vec::new();
    for (field, old, new) in [
        ("name", &before.name, &after.name),
        ("description", &before.description, &after.description),
    ] {
        if old != new {
            changes.push(Change::of(
                field,
                Some(Value::from(old.as_str())),
                Some(Value::from(new.as_str())),
            ));
        }
    }
    changes.extend(diff_values(&before.values, &after.values));
    for path in before.locks.symmetric_difference(&after.locks) {
        let locked = after.locks.contains(path);
        changes.push(Change::of(
            format!("locks.{path}"),
            Some(Value::Bool(!locked)),
            Some(Value::Bool(locked)),
        ));
    }
    changes.sort_by(|a, b| a.field.cmp(&b.field));
    changes
}

/// Differences between two sets of values, as `values.<path>` changes (policy values or a
/// device's own values alike).
pub fn diff_values(
    before: &BTreeMap<String, SettingValue>,
    after: &BTreeMap<String, SettingValue>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let paths: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for path in paths {
        let field = format!("values.{path}");
        match (before.get(path), after.get(path)) {
            (Some(old), Some(new)) if old.same_as(new) => {}
            (old, new) => {
                let is_secret = matches!(old, Some(SettingValue::Secret(_)))
                    || matches!(new, Some(SettingValue::Secret(_)));
                if is_secret {
                    let kind = match (old, new) {
                        (None, _) => ChangeKind::Added,
                        (_, None) => ChangeKind::Removed,
                        _ => ChangeKind::Changed,
                    };
                    changes.push(Change::secret(field, kind));
                } else {
                    changes.push(Change::of(
                        field,
                        old.map(SettingValue::masked),
                        new.map(SettingValue::masked),
                    ));
                }
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::{Sealed, SecretHandle};
    use serde_json::json;

    fn content(values: &[(&str, Value)], locks: &[&str]) -> PolicyContent {
        PolicyContent {
            name: "Default".into(),
            description: String::new(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), SettingValue::Plain(v.clone())))
                .collect(),
            locks: locks.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn secret(id: uuid::Uuid, ciphertext: &str) -> SettingValue {
        SettingValue::Secret(SecretHandle {
            id,
            changed_at: chrono::Utc::now(),
            sealed: Sealed {
                kid: "k".into(),
                nonce: "n".into(),
                ciphertext: ciphertext.into(),
            },
        })
    }

    #[test]
    fn values_added_removed_changed_and_locks_are_listed() {
        let before = content(
            &[
                ("connectwise.site", json!("a.example")),
                ("connectwise.company_id", json!("acme")),
            ],
            &[],
        );
        let mut after = content(
            &[
                ("connectwise.site", json!("b.example")),
                ("connectwise.public_key", json!("abc")),
            ],
            &["connectwise.site"],
        );
        after.name = "Renamed".into();
        let changes = diff(&before, &after);
        let summary: Vec<(&str, ChangeKind)> = changes.iter().map(|c| (c.field.as_str(), c.change)).collect();
        assert_eq!(
            summary,
            vec![
                ("locks.connectwise.site", ChangeKind::Changed),
                ("name", ChangeKind::Changed),
                ("values.connectwise.company_id", ChangeKind::Removed),
                ("values.connectwise.public_key", ChangeKind::Added),
                ("values.connectwise.site", ChangeKind::Changed),
            ]
        );
        let site = changes
            .iter()
            .find(|c| c.field == "values.connectwise.site")
            .unwrap();
        assert_eq!(
            (site.before.clone(), site.after.clone()),
            (Some(json!("a.example")), Some(json!("b.example")))
        );
        let lock = &changes[0];
        assert_eq!(
            (lock.before.clone(), lock.after.clone()),
            (Some(json!(false)), Some(json!(true)))
        );
        assert!(diff(&before, &before).is_empty());
    }

    #[test]
    fn secrets_show_only_that_they_changed() {
        let id = uuid::Uuid::now_v7();
        let mut before = content(&[], &[]);
        before
            .values
            .insert("connectwise.private_key".into(), secret(id, "CIPHER-ONE"));
        let mut rotated = before.clone();
        rotated
            .values
            .insert("connectwise.private_key".into(), secret(id, "CIPHER-TWO"));
        assert!(
            diff(&before, &rotated).is_empty(),
            "re-encryption is not a change"
        );

        let mut replaced = before.clone();
        replaced.values.insert(
            "connectwise.private_key".into(),
            secret(uuid::Uuid::now_v7(), "CIPHER-THREE"),
        );
        let changes = diff(&before, &replaced);
        assert_eq!(
            changes,
            vec![Change::secret(
                "values.connectwise.private_key",
                ChangeKind::Changed
            )]
        );
        let text = serde_json::to_string(&changes).unwrap();
        assert!(!text.contains("CIPHER"));
        assert_eq!(diff(&content(&[], &[]), &before)[0].change, ChangeKind::Added);
        assert_eq!(diff(&before, &content(&[], &[]))[0].change, ChangeKind::Removed);
    }
}
