//! One edit of a policy, as a save or a draft gives it: checked against the catalogue once,
//! secrets sealed, then applied to whichever version it lands on.

use crate::db::repo::policies::{decode_values, encode_values};
use crate::domain::catalog::Catalog;
use crate::domain::policy::{PolicyContent, SecretHandle, SettingValue};
use crate::domain::redact::RedactedValues;
use crate::domain::tenant::parse_display_text;
use crate::domain::validation::Validator;
use crate::domain::{FieldError, PolicyId, TenantId};
use crate::error::ApiError;
use crate::secrets::Keyring;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

const MAX_DESCRIPTION_CHARS: usize = 2000;
const MAX_COMMENT_CHARS: usize = 500;

/// Changes requested in one save; what is not mentioned stays as it is.
#[derive(Default)]
pub struct PolicyEdit {
    pub name: Option<String>,
    pub description: Option<String>,
    pub parent_id: Option<PolicyId>,
    /// Paths to set, with raw values (secrets in clear, sealed before storage).
    pub set: BTreeMap<String, Value>,
    pub unset: Vec<String>,
    pub lock: Vec<String>,
    pub unlock: Vec<String>,
    pub comment: Option<String>,
}

// `set` holds secrets in clear: `Debug` hides them.
impl std::fmt::Debug for PolicyEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEdit")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("parent_id", &self.parent_id)
            .field("set", &RedactedValues(&self.set))
            .field("unset", &self.unset)
            .field("lock", &self.lock)
            .field("unlock", &self.unlock)
            .field("comment", &self.comment)
            .finish()
    }
}

fn text_field(v: &mut Validator, field: &str, raw: Option<&str>, max: usize) -> Option<String> {
    let raw = raw?.trim();
    if raw.chars().count() > max {
        v.push(FieldError::new(
            field,
            "too_long",
            format!("must be at most {max} characters"),
        ));
        return None;
    }
    if raw.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        v.push(FieldError::new(
            field,
            "invalid_characters",
            "must not contain control characters",
        ));
        return None;
    }
    Some(raw.to_owned())
}

/// Checks each raw value against the catalogue and seals secrets. Errors name `prefix.path`.
pub(super) fn parse_values(
    keyring: &Keyring,
    tenant: TenantId,
    raw: &BTreeMap<String, Value>,
    prefix: &str,
    now: DateTime<Utc>,
    v: &mut Validator,
) -> BTreeMap<String, SettingValue> {
    let catalog = Catalog::get();
    let mut values = BTreeMap::new();
    for (path, raw_value) in raw {
        let field = format!("{prefix}.{path}");
        let Some(def) = v.check(catalog.managed_field(&field, path)) else {
            continue;
        };
        let Some(valid) = v.check(catalog.validate(&field, def, raw_value)) else {
            continue;
        };
        let value = if def.secret {
            let plaintext = valid.as_str().unwrap_or_default();
            SettingValue::Secret(SecretHandle {
                id: Uuid::now_v7(),
                changed_at: now,
                sealed: keyring.seal(tenant, path, plaintext),
            })
        } else {
            SettingValue::Plain(valid)
        };
        values.insert(path.clone(), value);
    }
    values
}

pub(super) fn parse_paths(paths: &[String], prefix: &str, v: &mut Validator) -> BTreeSet<String> {
    let catalog = Catalog::get();
    paths
        .iter()
        .enumerate()
        .filter_map(|(i, path)| {
            v.check(catalog.managed_field(&format!("{prefix}[{i}]"), path))
                .map(|_| path.clone())
        })
        .collect()
}

fn reject_overlap(a: &BTreeSet<String>, b: &BTreeSet<String>, field: &str, what: &str, v: &mut Validator) {
    for path in a.intersection(b) {
        v.push(FieldError::new(
            field,
            "contradictory",
            format!("`{path}` is both {what}"),
        ));
    }
}

/// An edit that passed every check of its own, secrets sealed: what a draft keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckedEdit {
    pub name: Option<String>,
    pub description: Option<String>,
    pub parent_id: Option<PolicyId>,
    pub set: BTreeMap<String, SettingValue>,
    pub unset: BTreeSet<String>,
    pub lock: BTreeSet<String>,
    pub unlock: BTreeSet<String>,
    pub comment: Option<String>,
}

/// The stored form of a `CheckedEdit`: values as policy versions store them (secrets sealed).
#[derive(Serialize, Deserialize)]
struct StoredEdit {
    name: Option<String>,
    description: Option<String>,
    parent_id: Option<PolicyId>,
    set: String,
    unset: BTreeSet<String>,
    lock: BTreeSet<String>,
    unlock: BTreeSet<String>,
    comment: Option<String>,
}

impl CheckedEdit {
    /// Checks `edit` field by field and seals its secrets (changed at `now`).
    pub fn check(
        keyring: &Keyring,
        tenant: TenantId,
        edit: &PolicyEdit,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        let mut v = Validator::new();
        let name = edit
            .name
            .as_deref()
            .and_then(|raw| v.check(parse_display_text("name", raw, 100)));
        let description = text_field(
            &mut v,
            "description",
            edit.description.as_deref(),
            MAX_DESCRIPTION_CHARS,
        );
        let comment = text_field(&mut v, "comment", edit.comment.as_deref(), MAX_COMMENT_CHARS);
        let set = parse_values(keyring, tenant, &edit.set, "set", now, &mut v);
        let set_paths: BTreeSet<String> = edit.set.keys().cloned().collect();
        let unset = parse_paths(&edit.unset, "unset", &mut v);
        let lock = parse_paths(&edit.lock, "lock", &mut v);
        let unlock = parse_paths(&edit.unlock, "unlock", &mut v);
        reject_overlap(&set_paths, &unset, "unset", "set and unset", &mut v);
        reject_overlap(&lock, &unlock, "unlock", "locked and unlocked", &mut v);
        v.finish().map_err(ApiError::validation)?;
        Ok(Self {
            name,
            description,
            parent_id: edit.parent_id,
            set,
            unset,
            lock,
            unlock,
            comment,
        })
    }

    /// The content of `current` after this edit.
    pub fn apply(&self, current: &PolicyContent) -> PolicyContent {
        let mut content = current.clone();
        if let Some(name) = &self.name {
            content.name = name.clone();
        }
        if let Some(description) = &self.description {
            content.description = description.clone();
        }
        content.values.extend(self.set.clone());
        content.values.retain(|path, _| !self.unset.contains(path));
        content.locks.extend(self.lock.iter().cloned());
        content.locks.retain(|path| !self.unlock.contains(path));
        content
    }

    pub fn encode(&self) -> Result<String, ApiError> {
        let stored = StoredEdit {
            name: self.name.clone(),
            description: self.description.clone(),
            parent_id: self.parent_id,
            set: encode_values(&self.set).map_err(ApiError::internal)?,
            unset: self.unset.clone(),
            lock: self.lock.clone(),
            unlock: self.unlock.clone(),
            comment: self.comment.clone(),
        };
        serde_json::to_string(&stored).map_err(ApiError::internal)
    }

    pub fn decode(text: &str) -> Result<Self, ApiError> {
        let stored: StoredEdit = serde_json::from_str(text).map_err(ApiError::internal)?;
        Ok(Self {
            name: stored.name,
            description: stored.description,
            parent_id: stored.parent_id,
            set: decode_values(&stored.set).map_err(ApiError::internal)?,
            unset: stored.unset,
            lock: stored.lock,
            unlock: stored.unlock,
            comment: stored.comment,
        })
    }
}
