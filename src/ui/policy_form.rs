//! The Policy Settings form as data: each managed field with its effective value, where it
//! comes from (inherited, overridden, locked) and its control; and the way back, from the
//! posted form to the `PolicyEdit` a save sends to the service.

use super::page::{Problem, field};
use crate::domain::catalog::{Catalog, EVENT_CLASSES, FieldType};
use crate::domain::policy::{PolicyNode, SettingValue};
use crate::domain::resolve::{Resolution, Source};
use crate::services::policies::PolicyEdit;
use serde_json::{Value, json};

/// The secret field: write-only, replaced only when a new value is typed.
pub const SECRET_PATH: &str = "connectwise.private_key";
/// The plain credential fields, in the source document's order.
pub const CREDENTIAL_PATHS: [&str; 3] = [
    "connectwise.site",
    "connectwise.company_id",
    "connectwise.public_key",
];
/// The form field carrying the lock toggle of `path`.
pub fn lock_field(path: &str) -> String {
    format!("lock:{path}")
}

/// A labelled state next to a control; never colour alone.
pub struct Badge {
    /// `inherited`, `overridden` or `locked` (the CSS class).
    pub kind: &'static str,
    pub text: String,
}

pub struct Opt {
    pub value: String,
    pub text: String,
    pub selected: bool,
}

/// One field of the form.
pub struct Control {
    /// The setting path, also the form field name.
    pub path: String,
    /// The element id (`.` is awkward in CSS selectors).
    pub html_id: String,
    pub label: String,
    pub help: String,
    pub value: String,
    pub checked: bool,
    pub badge: Option<Badge>,
    /// Set on this child policy: it may be reverted to `fallback`.
    pub revert: bool,
    pub fallback: String,
    /// Locked by an ancestor: read-only here.
    pub locked_above: bool,
    /// This policy locks it for its descendants and devices.
    pub locked_here: bool,
    pub lock_name: String,
    pub error: Option<String>,
    pub options: Vec<Opt>,
}

/// One row of Ticketing Settings.
pub struct EventRow {
    pub key: &'static str,
    pub name: &'static str,
    pub enabled: Control,
    pub board: Control,
    pub new_status: Control,
    pub closed_status: Control,
}

impl EventRow {
    /// The New and Closed status selects, which follow the chosen board.
    pub fn statuses(&self) -> [&Control; 2] {
        [&self.new_status, &self.closed_status]
    }
}

/// What the form is built from.
pub struct Inputs<'a> {
    pub node: &'a PolicyNode,
    pub resolution: &'a Resolution,
    /// The parent's resolution: what an override would fall back to.
    pub parent: Option<&'a Resolution>,
    pub problem: Option<&'a Problem>,
    /// The values the operator posted, shown again after a refused save.
    pub submitted: Option<&'a [(String, String)]>,
}

/// A reference value as a select option value: `id:name`.
pub fn reference_value(value: &Value) -> String {
    match (
        value.get("id").and_then(Value::as_i64),
        value.get("name").and_then(Value::as_str),
    ) {
        (Some(id), Some(name)) => format!("{id}:{name}"),
        _ => String::new(),
    }
}

/// Parses `id:name` back into a reference.
pub fn parse_reference(text: &str) -> Option<Value> {
    let (id, name) = text.split_once(':')?;
    let id: i64 = id.trim().parse().ok()?;
    Some(json!({"id": id, "name": name}))
}

/// A value as the form shows it (`checked` for booleans).
fn shown(value: Option<&SettingValue>) -> (String, bool) {
    match value {
        Some(SettingValue::Plain(Value::Bool(b))) => (String::new(), *b),
        Some(SettingValue::Plain(Value::String(s))) => (s.clone(), false),
        Some(SettingValue::Plain(v @ Value::Object(_))) => (reference_value(v), false),
        _ => (String::new(), false),
    }
}

fn describe(value: Option<&SettingValue>) -> String {
    match value {
        None => "unset".into(),
        Some(SettingValue::Secret(_)) => "a stored secret".into(),
        Some(SettingValue::Plain(Value::Bool(b))) => if *b { "on" } else { "off" }.into(),
        Some(SettingValue::Plain(Value::String(s))) => s.clone(),
        Some(SettingValue::Plain(v)) => v.get("name").and_then(Value::as_str).unwrap_or("set").to_owned(),
    }
}

impl Inputs<'_> {
    pub fn control(&self, path: &str) -> Control {
        let def = Catalog::get().field(path);
        let resolved = self.resolution.get(path);
        let own = self.node.content.values.get(path);
        let locked_by = resolved.and_then(|r| r.locked_by.as_ref());
        let locked_above = locked_by.is_some_and(|by| by.id != self.node.id);
        let is_child = self.node.parent_id.is_some();
        let badge = if let Some(by) = locked_by.filter(|_| locked_above) {
            Some(Badge {
                kind: "locked",
                text: format!("Locked by {}", by.name),
            })
        } else if own.is_some() && is_child {
            Some(Badge {
                kind: "overridden",
                text: "Overridden".into(),
            })
        } else {
            match resolved.and_then(|r| r.source.as_ref()) {
                Some(Source::Policy(from)) if from.id != self.node.id => Some(Badge {
                    kind: "inherited",
                    text: format!("Inherited from {} · v{}", from.name, from.version),
                }),
                _ => None,
            }
        };
        let effective = resolved.and_then(|r| r.value.as_ref());
        let (mut value, mut checked) = shown(effective);
        if let Some(submitted) = self.submitted
            && !locked_above
            && path != SECRET_PATH
        {
            value = field(submitted, path).unwrap_or_default().to_owned();
            checked = field(submitted, path).is_some();
        }
        let fallback = self
            .parent
            .map(|parent| describe(parent.get(path).and_then(|r| r.value.as_ref())))
            .unwrap_or_default();
        Control {
            path: path.to_owned(),
            html_id: path.replace('.', "-"),
            label: def.map(|d| d.display_name.clone()).unwrap_or_default(),
            help: def.map(|d| d.help.clone()).unwrap_or_default(),
            value,
            checked,
            badge,
            revert: own.is_some() && is_child && !locked_above,
            fallback,
            locked_above,
            locked_here: self.node.content.locks.contains(path),
            lock_name: lock_field(path),
            error: self.problem.and_then(|p| p.for_field(path)).map(str::to_owned),
            options: Vec::new(),
        }
    }

    /// When the stored secret was last replaced, if one is in effect.
    pub fn secret_changed(&self) -> Option<String> {
        match self.resolution.get(SECRET_PATH).and_then(|r| r.value.as_ref()) {
            Some(SettingValue::Secret(handle)) => {
                Some(handle.changed_at.format("%-d %b %Y %H:%M UTC").to_string())
            }
            _ => None,
        }
    }

    pub fn event_rows(&self) -> Vec<EventRow> {
        EVENT_CLASSES
            .iter()
            .map(|class| {
                let path = |leaf: &str| format!("ticketing.events.{}.{leaf}", class.key);
                EventRow {
                    key: class.key,
                    name: class.display_name,
                    enabled: self.control(&path("enabled")),
                    board: self.control(&path("service_board")),
                    new_status: self.control(&path("new_status")),
                    closed_status: self.control(&path("closed_status")),
                }
            })
            .collect()
    }
}

/// Every managed field of the form except the secret, in form order.
pub fn managed_paths() -> Vec<String> {
    let mut paths: Vec<String> = CREDENTIAL_PATHS.iter().map(|p| (*p).to_owned()).collect();
    for class in EVENT_CLASSES {
        for leaf in ["enabled", "service_board", "new_status", "closed_status"] {
            paths.push(format!("ticketing.events.{}.{leaf}", class.key));
        }
    }
    paths
}

/// The value posted for `path`, typed; `None` when left empty.
fn posted(form: &[(String, String)], path: &str) -> Option<Value> {
    let def = Catalog::get().field(path)?;
    let raw = field(form, path);
    match def.field_type {
        FieldType::Bool => Some(Value::Bool(raw.is_some())),
        FieldType::Reference(_) => raw.filter(|r| !r.is_empty()).map(|r| {
            // A malformed option is sent on as text so the service names the field.
            parse_reference(r).unwrap_or_else(|| Value::String(r.to_owned()))
        }),
        FieldType::Site | FieldType::Text { .. } => raw
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| Value::String(r.to_owned())),
    }
}

/// The change a posted form asks for: a field differing from its effective value becomes this
/// policy's own value (an override on a child); an own value cleared is removed; a new API
/// Secret is set only when one was typed; lock toggles follow their checkboxes.
pub fn edit_from_form(node: &PolicyNode, resolution: &Resolution, form: &[(String, String)]) -> PolicyEdit {
    let mut edit = PolicyEdit::default();
    for path in managed_paths() {
        let resolved = resolution.get(&path);
        if resolved
            .and_then(|r| r.locked_by.as_ref())
            .is_some_and(|by| by.id != node.id)
        {
            continue;
        }
        let own = match node.content.values.get(&path) {
            Some(SettingValue::Plain(v)) => Some(v.clone()),
            _ => None,
        };
        let effective = match resolved.and_then(|r| r.value.as_ref()) {
            Some(SettingValue::Plain(v)) => Some(v.clone()),
            _ => None,
        };
        let is_bool = matches!(
            Catalog::get().field(&path).map(|d| d.field_type),
            Some(FieldType::Bool)
        );
        match posted(form, &path) {
            None if own.is_some() => edit.unset.push(path.clone()),
            None => {}
            Some(value) => {
                let current = own.or(effective).or(is_bool.then_some(Value::Bool(false)));
                if current.as_ref() != Some(&value) {
                    edit.set.insert(path.clone(), value);
                }
            }
        }
        let lock = field(form, &lock_field(&path)).is_some();
        match (lock, node.content.locks.contains(&path)) {
            (true, false) => edit.lock.push(path),
            (false, true) => edit.unlock.push(path),
            _ => {}
        }
    }
    if let Some(secret) = field(form, SECRET_PATH).filter(|s| !s.is_empty()) {
        edit.set
            .insert(SECRET_PATH.to_owned(), Value::String(secret.to_owned()));
    }
    if let Some(comment) = field(form, "comment").map(str::trim).filter(|c| !c.is_empty()) {
        edit.comment = Some(comment.to_owned());
    }
    edit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PolicyId;
    use crate::domain::policy::PolicyContent;
    use crate::domain::resolve::resolve;
    use std::collections::BTreeMap;

    fn node(id: PolicyId, parent: Option<PolicyId>, values: &[(&str, Value)]) -> PolicyNode {
        PolicyNode {
            id,
            parent_id: parent,
            version: 1,
            content: PolicyContent {
                name: "p".into(),
                values: values
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), SettingValue::Plain(v.clone())))
                    .collect(),
                ..PolicyContent::default()
            },
        }
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_differences_become_overrides_and_cleared_own_values_are_removed() {
        let root = node(
            PolicyId(uuid::Uuid::now_v7()),
            None,
            &[("connectwise.site", json!("a.example"))],
        );
        let child = node(
            PolicyId(uuid::Uuid::now_v7()),
            Some(root.id),
            &[("connectwise.company_id", json!("acme"))],
        );
        let resolution = resolve(&[&root, &child], &BTreeMap::new());
        let posted = form(&[
            ("connectwise.site", "a.example"),
            ("connectwise.company_id", ""),
            ("connectwise.public_key", "KEY1"),
            ("ticketing.events.failed_backup.enabled", "on"),
            ("ticketing.events.failed_backup.service_board", "1:Help Desk"),
            ("connectwise.private_key", ""),
            (&lock_field("connectwise.site"), "on"),
            ("comment", " why "),
        ]);
        let edit = edit_from_form(&child, &resolution, &posted);
        assert!(
            !edit.set.contains_key("connectwise.site"),
            "unchanged inherited value"
        );
        assert_eq!(edit.unset, ["connectwise.company_id"]);
        assert_eq!(edit.set["connectwise.public_key"], json!("KEY1"));
        assert_eq!(edit.set["ticketing.events.failed_backup.enabled"], json!(true));
        assert_eq!(
            edit.set["ticketing.events.failed_backup.service_board"],
            json!({"id": 1, "name": "Help Desk"})
        );
        assert!(
            !edit.set.contains_key(SECRET_PATH),
            "an empty secret field keeps the secret"
        );
        assert!(
            !edit.set.contains_key("ticketing.events.disk_usage.enabled"),
            "off stays off"
        );
        assert_eq!(edit.lock, ["connectwise.site"]);
        assert_eq!(edit.comment.as_deref(), Some("why"));
    }

    #[test]
    fn references_round_trip_through_option_values() {
        let value = json!({"id": 12, "name": "Help: Desk"});
        assert_eq!(parse_reference(&reference_value(&value)), Some(value));
        assert_eq!(parse_reference("x:y"), None);
    }
}
