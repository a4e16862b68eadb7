//! Policies: the tree, versioned saves with locks, rollback, the resolved view, export and
//! import. Every save that changes something is one transaction that creates version N+1 and
//! its change-log entry; one that changes nothing creates neither.

use super::references::{self, References};
use super::{Page, PageRequest, audit, conflict_if_duplicate, written};
use crate::db;
use crate::db::repo::policies::{self as repo, PolicySummary, VersionMeta};
use crate::domain::audit::{Actor, NewEntry};
use crate::domain::binding;
use crate::domain::boards::check_statuses_with_board;
use crate::domain::catalog::Catalog;
use crate::domain::diff::{Change, ChangeKind, diff};
use crate::domain::policy::{
    PolicyContent, PolicyNode, PolicyTree, ROOT_POLICY_NAME, SecretHandle, SettingValue, TreeError,
};
use crate::domain::redact::{REDACTED, RedactedValues};
use crate::domain::resolve::{Resolution, masked_values, resolve};
use crate::domain::tenant::parse_display_text;
use crate::domain::validation::Validator;
use crate::domain::{Expected, FieldError, PolicyId, TenantId};
use crate::error::{ApiError, Code};
use crate::secrets::{BoxError, CheckedBox, Keyring, PassphraseBox};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

const MAX_DESCRIPTION_CHARS: usize = 2000;
const MAX_COMMENT_CHARS: usize = 500;

/// A policy at its current version, with when it was made and by whom.
#[derive(Debug, Clone)]
pub struct PolicyDetail {
    pub node: PolicyNode,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub current: VersionMeta,
}

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

fn tree_error(error: TreeError, field_prefix: &str) -> ApiError {
    match error {
        TreeError::LockedByAncestor { path, locked_by } => {
            let message = format!(
                "`{path}` is locked by policy “{}” (version {}); only that policy can change it",
                locked_by.name, locked_by.version
            );
            let mut error = ApiError::new(Code::Conflict, message.clone());
            error.errors.push(FieldError::new(
                format!("{field_prefix}{path}"),
                "locked_by_ancestor",
                message,
            ));
            error
        }
        TreeError::Invalid(field) => ApiError::field(field),
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
fn parse_values(
    keyring: &Keyring,
    tenant: TenantId,
    raw: &BTreeMap<String, Value>,
    prefix: &str,
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
                changed_at: Utc::now(),
                sealed: keyring.seal(tenant, path, plaintext),
            })
        } else {
            SettingValue::Plain(valid)
        };
        values.insert(path.clone(), value);
    }
    values
}

fn parse_paths(paths: &[String], prefix: &str, v: &mut Validator) -> BTreeSet<String> {
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

/// The content after `edit`, or every field error in it.
fn apply_edit(
    keyring: &Keyring,
    tenant: TenantId,
    current: &PolicyContent,
    edit: &PolicyEdit,
) -> Result<PolicyContent, ApiError> {
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
    text_field(&mut v, "comment", edit.comment.as_deref(), MAX_COMMENT_CHARS);
    let set = parse_values(keyring, tenant, &edit.set, "set", &mut v);
    let set_paths: BTreeSet<String> = edit.set.keys().cloned().collect();
    let unset = parse_paths(&edit.unset, "unset", &mut v);
    let lock = parse_paths(&edit.lock, "lock", &mut v);
    let unlock = parse_paths(&edit.unlock, "unlock", &mut v);
    reject_overlap(&set_paths, &unset, "unset", "set and unset", &mut v);
    reject_overlap(&lock, &unlock, "unlock", "locked and unlocked", &mut v);
    v.finish().map_err(ApiError::validation)?;

    let mut content = current.clone();
    if let Some(name) = name {
        content.name = name;
    }
    if let Some(description) = description {
        content.description = description;
    }
    content.values.extend(set);
    content.values.retain(|path, _| !unset.contains(path));
    content.locks.extend(lock);
    content.locks.retain(|path| !unlock.contains(path));
    Ok(content)
}

/// The checks every proposed node must pass inside its tree: no value locked by an ancestor,
/// and the resolved settings of the policy and of every descendant consistent.
fn check_in_tree(tree: &PolicyTree, id: PolicyId, field_prefix: &str) -> Result<(), ApiError> {
    tree.check_locks(id).map_err(|e| tree_error(e, field_prefix))?;
    let catalog = Catalog::get();
    let mut errors = Vec::new();
    for policy in std::iter::once(id).chain(tree.descendants(id)) {
        let resolution = resolve(&tree.chain(policy), &BTreeMap::new());
        let mut found = catalog.check_consistency(&masked_values(&resolution));
        found.extend(binding::check_one_source(&resolution));
        for mut error in found {
            if policy != id {
                let name = tree.get(policy).map_or("?", |n| n.content.name.as_str());
                error.message = format!(
                    "in policy “{name}”, which inherits this change: {}",
                    error.message
                );
            }
            errors.push(error);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

/// A save that moves the stored API secret to another site or company must enter it again
/// (see `domain::binding`).
fn check_secret_reentered(
    before: &PolicyContent,
    after: &PolicyContent,
    field_prefix: &str,
) -> Result<(), ApiError> {
    let errors = binding::check_reentered(&before.values, &after.values, field_prefix);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

fn policy_entry(action: &'static str, id: PolicyId, changes: Vec<Change>) -> NewEntry {
    NewEntry {
        action,
        target_type: "policy",
        target_id: id.0,
        changes,
    }
}

/// The root policy of a new tenant; called inside the tenant's creation transaction.
pub async fn create_root(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    tenant: TenantId,
) -> Result<PolicyId, ApiError> {
    let node = PolicyNode {
        id: PolicyId::new(),
        parent_id: None,
        version: 1,
        content: PolicyContent {
            name: ROOT_POLICY_NAME.into(),
            description: "Settings every device of the tenant inherits.".into(),
            ..PolicyContent::default()
        },
    };
    repo::insert(
        conn,
        tenant,
        &node,
        actor.operator_id,
        Some("created with the tenant"),
    )
    .await?;
    let changes = diff(&PolicyContent::default(), &node.content);
    audit::record(
        conn,
        actor,
        tenant,
        policy_entry("policy.created", node.id, changes),
    )
    .await?;
    Ok(node.id)
}

/// A new child policy at version 1. Without a parent it goes under the root.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    name: &str,
    edit: PolicyEdit,
) -> Result<PolicyDetail, ApiError> {
    let tenant = actor.tenant_id;
    let txn = db::begin_write(&state.db).await?;
    let mut tree = repo::load_tree(&txn, tenant).await?;
    let parent = match edit.parent_id {
        Some(parent) => parent,
        None => repo::root_id(&txn, tenant)
            .await?
            .ok_or_else(|| ApiError::not_found("root policy"))?,
    };
    let id = PolicyId::new();
    let mut content = apply_edit(&state.keyring, tenant, &PolicyContent::default(), &edit)?;
    content.name = parse_display_text("name", name, 100).map_err(ApiError::field)?;
    tree.check_parent(id, parent).map_err(ApiError::field)?;
    let node = PolicyNode {
        id,
        parent_id: Some(parent),
        version: 1,
        content,
    };
    tree.put(node.clone());
    check_in_tree(&tree, id, "set.")?;
    let resolution = resolve(&tree.chain(id), &BTreeMap::new());
    let errors = check_statuses_with_board(&BTreeMap::new(), &node.content.values, &resolution, "set.");
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    repo::insert(&txn, tenant, &node, actor.operator_id, edit.comment.as_deref())
        .await
        .map_err(conflict_if_duplicate(format!(
            "a policy named “{}” already exists",
            node.content.name
        )))?;
    let changes = diff(&PolicyContent::default(), &node.content);
    audit::record(&txn, actor, tenant, policy_entry("policy.created", id, changes)).await?;
    txn.commit().await?;
    get(state, tenant, id).await
}

/// How a save builds the new node from the current one. Called twice: once to vet the result
/// before the transaction, once inside it.
type Build<'a> = Box<dyn Fn(&PolicyTree, &PolicyNode) -> Result<PolicyNode, ApiError> + Send + Sync + 'a>;

/// What kind of save this is, for the change log and for naming fields in errors.
struct SaveKind<'a> {
    action: &'static str,
    comment: Option<&'a str>,
    /// Where a locked value sits in the request (`set.`, `document.values.`).
    field_prefix: &'static str,
    /// Whether the board and status references are checked against ConnectWise.
    references: References,
}

/// What a save did: the policy as it now is, the changes (none: no new version was made) and
/// the warnings of the ConnectWise reference check.
#[derive(Debug)]
pub struct Saved {
    pub detail: PolicyDetail,
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
}

impl Saved {
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }
}

/// A proposed version: the node, the policy's resolution before and after, and the changes.
struct Proposal {
    node: PolicyNode,
    before: Resolution,
    after: Resolution,
    changes: Vec<Change>,
}

/// The new node built from `current` in `tree`, checked, with its resolutions and its changes.
fn propose(
    tree: &mut PolicyTree,
    id: PolicyId,
    field_prefix: &str,
    build: &Build<'_>,
) -> Result<Proposal, ApiError> {
    let current = tree
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("policy"))?;
    let mut node = build(tree, &current)?;
    node.id = id;
    node.version = current.version + 1;
    let mut changes = diff(&current.content, &node.content);
    if current.parent_id != node.parent_id {
        changes.insert(
            0,
            Change::of(
                "parent_id",
                current.parent_id.map(|p| Value::from(p.to_string())),
                node.parent_id.map(|p| Value::from(p.to_string())),
            ),
        );
    }
    if changes.is_empty() {
        return Ok(Proposal {
            node: current,
            before: Resolution::new(),
            after: Resolution::new(),
            changes,
        });
    }
    check_secret_reentered(&current.content, &node.content, field_prefix)?;
    let before = resolve(&tree.chain(id), &BTreeMap::new());
    tree.put(node.clone());
    check_in_tree(tree, id, field_prefix)?;
    let resolution = resolve(&tree.chain(id), &BTreeMap::new());
    let errors = check_statuses_with_board(
        &current.content.values,
        &node.content.values,
        &resolution,
        field_prefix,
    );
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok(Proposal {
        node,
        before,
        after: resolution,
        changes,
    })
}

/// The one path every change of an existing policy takes. First, outside any transaction (the
/// ConnectWise calls must not hold the write lock), the new version is built, checked and its
/// references vetted. Then the row is locked at the expected version, the version built and
/// checked again against the tree as it now is, and stored with its change-log entry. A save
/// that changes nothing stores nothing.
async fn save(
    state: &AppState,
    actor: &Actor,
    id: PolicyId,
    expected: Expected,
    kind: SaveKind<'_>,
    build: Build<'_>,
) -> Result<Saved, ApiError> {
    let tenant = actor.tenant_id;
    let mut tree = repo::load_tree(&state.db, tenant).await?;
    let proposal = propose(&mut tree, id, kind.field_prefix, &build)?;
    let warnings = if proposal.changes.is_empty() {
        Vec::new()
    } else {
        references::vet_policy_references(state, tenant, &proposal.before, &proposal.after, kind.references)
            .await?
    };

    let txn = db::begin_write(&state.db).await?;
    written(repo::lock_for_update(&txn, tenant, id, expected).await?, "policy")?;
    let mut tree = repo::load_tree(&txn, tenant).await?;
    let Proposal { node, changes, .. } = propose(&mut tree, id, kind.field_prefix, &build)?;
    if changes.is_empty() {
        drop(txn);
        return Ok(Saved {
            detail: get(state, tenant, id).await?,
            changes,
            warnings: Vec::new(),
        });
    }
    repo::save_version(&txn, tenant, &node, actor.operator_id, kind.comment)
        .await
        .map_err(conflict_if_duplicate(format!(
            "a policy named “{}” already exists",
            node.content.name
        )))?;
    let mut logged = changes.clone();
    logged.extend(warnings.iter().map(|w| references::warning_change(w)));
    audit::record(&txn, actor, tenant, policy_entry(kind.action, id, logged)).await?;
    txn.commit().await?;
    Ok(Saved {
        detail: get(state, tenant, id).await?,
        changes,
        warnings,
    })
}

pub async fn update(
    state: &AppState,
    actor: &Actor,
    id: PolicyId,
    expected: Expected,
    edit: PolicyEdit,
    references: References,
) -> Result<Saved, ApiError> {
    let keyring = state.keyring.clone();
    let tenant = actor.tenant_id;
    let comment = edit.comment.clone();
    let build: Build = Box::new(move |tree, current| {
        let content = apply_edit(&keyring, tenant, &current.content, &edit)?;
        let parent_id = match edit.parent_id {
            None => current.parent_id,
            Some(_) if current.parent_id.is_none() => {
                return Err(ApiError::conflict(
                    "the root policy cannot be moved under another policy",
                ));
            }
            Some(parent) => {
                tree.check_parent(id, parent).map_err(ApiError::field)?;
                Some(parent)
            }
        };
        Ok(PolicyNode {
            parent_id,
            content,
            ..current.clone()
        })
    });
    let kind = SaveKind {
        action: "policy.updated",
        comment: comment.as_deref(),
        field_prefix: "set.",
        references,
    };
    save(state, actor, id, expected, kind, build).await
}

/// Creates version N+1 with the content of version `version`.
pub async fn rollback(
    state: &AppState,
    actor: &Actor,
    id: PolicyId,
    expected: Expected,
    version: i32,
    comment: Option<String>,
    references: References,
) -> Result<Saved, ApiError> {
    let (content, _) = repo::get_version(&state.db, actor.tenant_id, id, version)
        .await?
        .ok_or_else(|| ApiError::not_found("policy version"))?;
    let comment = comment.unwrap_or_else(|| format!("rolled back to version {version}"));
    let build: Build = Box::new(move |_, current| {
        Ok(PolicyNode {
            content: content.clone(),
            ..current.clone()
        })
    });
    let kind = SaveKind {
        action: "policy.rolled_back",
        comment: Some(&comment),
        field_prefix: "values.",
        references,
    };
    save(state, actor, id, expected, kind, build).await
}

pub async fn delete(
    state: &AppState,
    actor: &Actor,
    id: PolicyId,
    expected: Expected,
) -> Result<(), ApiError> {
    let tenant = actor.tenant_id;
    let txn = db::begin_write(&state.db).await?;
    written(repo::lock_for_update(&txn, tenant, id, expected).await?, "policy")?;
    let tree = repo::load_tree(&txn, tenant).await?;
    let node = tree
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("policy"))?;
    if node.parent_id.is_none() {
        return Err(ApiError::conflict("the root policy cannot be deleted"));
    }
    let children: Vec<String> = tree
        .children(id)
        .map(|c| format!("“{}”", c.content.name))
        .collect();
    if !children.is_empty() {
        return Err(ApiError::conflict(format!(
            "the policy has child policies ({}); delete or move them first",
            children.join(", ")
        )));
    }
    let devices = crate::db::repo::devices::count_for_policy(&txn, tenant, id).await?;
    if devices > 0 {
        return Err(ApiError::conflict(format!(
            "{devices} device(s) are assigned to the policy; assign them elsewhere first"
        )));
    }
    repo::delete(&txn, tenant, id).await?;
    let changes = diff(&node.content, &PolicyContent::default());
    audit::record(&txn, actor, tenant, policy_entry("policy.deleted", id, changes)).await?;
    txn.commit().await?;
    Ok(())
}

pub async fn get(state: &AppState, tenant: TenantId, id: PolicyId) -> Result<PolicyDetail, ApiError> {
    let summary = repo::get_summary(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("policy"))?;
    let (content, meta) = repo::get_version(&state.db, tenant, id, summary.current_version)
        .await?
        .ok_or_else(|| ApiError::not_found("policy"))?;
    Ok(PolicyDetail {
        node: PolicyNode {
            id,
            parent_id: summary.parent_id,
            version: summary.current_version,
            content,
        },
        created_at: summary.created_at,
        updated_at: summary.updated_at,
        current: meta,
    })
}

pub async fn list(
    state: &AppState,
    tenant: TenantId,
    page: PageRequest,
) -> Result<Page<PolicySummary>, ApiError> {
    let rows = repo::list(&state.db, tenant, page.cursor, page.fetch_limit()).await?;
    Ok(page.page(rows, |p| p.id.0))
}

/// Versions in order; `after` is the last version number of the previous page.
pub async fn list_versions(
    state: &AppState,
    tenant: TenantId,
    id: PolicyId,
    after: Option<i32>,
    limit: u64,
) -> Result<(Vec<VersionMeta>, Option<i32>), ApiError> {
    repo::get_summary(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("policy"))?;
    let mut rows = repo::list_versions(&state.db, tenant, id, after, limit + 1).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|m| m.version)
    } else {
        None
    };
    Ok((rows, next))
}

pub async fn get_version(
    state: &AppState,
    tenant: TenantId,
    id: PolicyId,
    version: i32,
) -> Result<(PolicyContent, VersionMeta), ApiError> {
    repo::get_version(&state.db, tenant, id, version)
        .await?
        .ok_or_else(|| ApiError::not_found("policy version"))
}

/// Field-level differences from version `from` to version `to` (default: the version before
/// `to`, and the current version).
pub async fn diff_versions(
    state: &AppState,
    tenant: TenantId,
    id: PolicyId,
    from: Option<i32>,
    to: Option<i32>,
) -> Result<(i32, i32, Vec<Change>), ApiError> {
    let summary = repo::get_summary(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("policy"))?;
    // Range-check what the client sent before any arithmetic on it.
    let mut v = Validator::new();
    for (field, version) in [("from", from), ("to", to)] {
        if version.is_some_and(|n| !(0..=summary.current_version).contains(&n)) {
            v.push(FieldError::new(
                field,
                "out_of_range",
                format!("must be between 0 and {}", summary.current_version),
            ));
        }
    }
    v.finish().map_err(ApiError::validation)?;
    let to = to.unwrap_or(summary.current_version);
    let from = from.unwrap_or(to.saturating_sub(1).max(0));
    let content_at = |version: i32| async move {
        if version == 0 {
            // Version 0 is the empty policy before version 1.
            return Ok(PolicyContent::default());
        }
        get_version(state, tenant, id, version)
            .await
            .map(|(content, _)| content)
    };
    let before = content_at(from).await?;
    let after = content_at(to).await?;
    Ok((from, to, diff(&before, &after)))
}

/// What a device assigned to the policy would get, with provenance and locks.
pub async fn resolved(
    state: &AppState,
    tenant: TenantId,
    id: PolicyId,
) -> Result<(PolicyNode, Resolution), ApiError> {
    let tree = repo::load_tree(&state.db, tenant).await?;
    let node = tree
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("policy"))?;
    let resolution = resolve(&tree.chain(id), &BTreeMap::new());
    Ok((node, resolution))
}

// ---- export and import --------------------------------------------------------------------

pub const EXPORT_FORMAT: &str = "gmp-policy";
pub const EXPORT_FORMAT_VERSION: u32 = 1;
const MIN_PASSPHRASE_CHARS: usize = 12;

/// A policy as a portable document. Secrets are only ever inside `secrets`, encrypted under a
/// key derived from a passphrase.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportDocument {
    /// Always `gmp-policy`.
    pub format: String,
    pub format_version: u32,
    pub policy: ExportedPolicy,
    /// Setting values by path, secrets left out.
    pub values: BTreeMap<String, Value>,
    pub locks: BTreeSet<String>,
    /// Present only when exported with a passphrase: the secret values, encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<PassphraseBox>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedPolicy {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub version: i32,
    /// When that version was saved: the same version always exports to the same document.
    pub saved_at: DateTime<Utc>,
}

fn check_passphrase(passphrase: &str) -> Result<(), ApiError> {
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(ApiError::field(FieldError::new(
            "passphrase",
            "too_short",
            format!("must be at least {MIN_PASSPHRASE_CHARS} characters"),
        )));
    }
    Ok(())
}

/// Exports the current version. With a passphrase, secrets are included encrypted and the
/// export is recorded in the change log.
pub async fn export(
    state: &AppState,
    actor: &Actor,
    id: PolicyId,
    passphrase: Option<&str>,
) -> Result<ExportDocument, ApiError> {
    let tenant = actor.tenant_id;
    let detail = get(state, tenant, id).await?;
    let content = &detail.node.content;
    let mut values = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    for (path, value) in &content.values {
        match value {
            SettingValue::Plain(v) => {
                values.insert(path.clone(), v.clone());
            }
            SettingValue::Secret(handle) => {
                let plaintext = state
                    .keyring
                    .open(tenant, path, &handle.sealed)
                    .map_err(ApiError::internal)?;
                secrets.insert(path.clone(), plaintext);
            }
        }
    }
    let secrets = match passphrase {
        None => None,
        Some(passphrase) => {
            check_passphrase(passphrase)?;
            let plaintext = serde_json::to_vec(&secrets).map_err(ApiError::internal)?;
            let passphrase = passphrase.to_owned();
            let sealed = state
                .hashing
                .run(move |memory| PassphraseBox::seal(&passphrase, &plaintext, memory))
                .await?;
            let txn = db::begin_write(&state.db).await?;
            let changes = secrets
                .keys()
                .map(|p| Change::secret(format!("values.{p}"), ChangeKind::Changed))
                .collect();
            audit::record(
                &txn,
                actor,
                tenant,
                policy_entry("policy.exported_with_secrets", id, changes),
            )
            .await?;
            txn.commit().await?;
            Some(sealed)
        }
    };
    Ok(ExportDocument {
        format: EXPORT_FORMAT.into(),
        format_version: EXPORT_FORMAT_VERSION,
        policy: ExportedPolicy {
            name: content.name.clone(),
            description: content.description.clone(),
            version: detail.node.version,
            saved_at: detail.current.created_at,
        },
        values,
        locks: content.locks.clone(),
        secrets,
    })
}

/// What to import: the document, its passphrase, the version's comment, and whether the
/// references are checked against ConnectWise.
pub struct ImportInput {
    pub document: Value,
    pub passphrase: Option<String>,
    pub comment: Option<String>,
    pub references: References,
}

// The passphrase unlocks secrets: `Debug` hides it.
impl std::fmt::Debug for ImportInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportInput")
            .field("passphrase", &self.passphrase.as_ref().map(|_| REDACTED))
            .field("comment", &self.comment)
            .field("references", &self.references)
            .finish_non_exhaustive()
    }
}

/// What an import did, or would do.
#[derive(Debug)]
pub struct ImportOutcome {
    pub changes: Vec<Change>,
    /// The new version; `None` for a dry run.
    pub policy: Option<PolicyDetail>,
    /// The ConnectWise reference check's warnings.
    pub warnings: Vec<String>,
}

/// Validates the whole document, then (unless `dry_run`) saves its values and locks as one new
/// version of the policy. Secrets the document does not carry stay as they are.
pub async fn import(
    state: &AppState,
    actor: &Actor,
    id: PolicyId,
    expected: Option<Expected>,
    input: ImportInput,
) -> Result<ImportOutcome, ApiError> {
    let ImportInput {
        document,
        passphrase,
        comment,
        references,
    } = input;
    let tenant = actor.tenant_id;
    // Everything cheap first; the key derivation, the one expensive step, comes last and only
    // for a well-formed document aimed at a policy of the caller's tenant.
    let document = parse_document(document)?;
    let sealed = check_secrets(&document, passphrase)?;
    repo::get_summary(&state.db, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("policy"))?;

    let mut v = Validator::new();
    let catalog = Catalog::get();
    for path in document.values.keys().filter(|p| catalog.is_secret(p)) {
        v.push(FieldError::new(
            format!("document.values.{path}"),
            "secret_in_clear",
            "secrets travel only in the encrypted `secrets` part of a document",
        ));
    }
    let mut values = parse_values(
        &state.keyring,
        tenant,
        &document.values,
        "document.values",
        &mut v,
    );
    let locks_in: Vec<String> = document.locks.iter().cloned().collect();
    let locks = parse_paths(&locks_in, "document.locks", &mut v);
    v.finish().map_err(ApiError::validation)?;

    let secrets = match sealed {
        Some((sealed, passphrase)) => Some(open_secrets(state, sealed, passphrase).await?),
        None => None,
    };
    let mut v = Validator::new();
    if let Some(secrets) = &secrets {
        for path in secrets.keys().filter(|p| !catalog.is_secret(p)) {
            v.push(FieldError::new(
                format!("document.secrets.{path}"),
                "not_a_secret",
                "only secret settings belong in `secrets`",
            ));
        }
        let raw: BTreeMap<String, Value> = secrets
            .iter()
            .map(|(path, s)| (path.clone(), Value::from(s.as_str())))
            .collect();
        values.extend(parse_values(
            &state.keyring,
            tenant,
            &raw,
            "document.secrets",
            &mut v,
        ));
    }
    v.finish().map_err(ApiError::validation)?;

    let carries_secrets = secrets.is_some();
    let build = move |current: &PolicyNode| {
        let mut content = current.content.clone();
        let kept_secrets: BTreeMap<String, SettingValue> = if carries_secrets {
            BTreeMap::new()
        } else {
            content
                .values
                .iter()
                .filter(|(_, v)| matches!(v, SettingValue::Secret(_)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        content.values = values.clone();
        content.values.extend(kept_secrets);
        // Import replaces values and locks; the policy keeps its own name and description.
        content.locks = locks.clone();
        PolicyNode {
            content,
            ..current.clone()
        }
    };

    match expected {
        None => {
            // Dry run: the same checks against the current tree, nothing written.
            let mut tree = repo::load_tree(&state.db, tenant).await?;
            let current = tree
                .get(id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("policy"))?;
            let node = build(&current);
            tree.put(node.clone());
            check_in_tree(&tree, id, "document.values.").map_err(|e| secrets_hint(e, carries_secrets))?;
            Ok(ImportOutcome {
                changes: diff(&current.content, &node.content),
                policy: None,
                warnings: Vec::new(),
            })
        }
        Some(expected) => {
            let comment = comment.unwrap_or_else(|| {
                format!(
                    "imported from “{}” version {}",
                    document.policy.name, document.policy.version
                )
            });
            let kind = SaveKind {
                action: "policy.imported",
                comment: Some(&comment),
                field_prefix: "document.values.",
                references,
            };
            let saved = save(
                state,
                actor,
                id,
                expected,
                kind,
                Box::new(move |_, current| Ok(build(current))),
            )
            .await
            .map_err(|e| secrets_hint(e, carries_secrets))?;
            Ok(ImportOutcome {
                changes: saved.changes,
                policy: Some(saved.detail),
                warnings: saved.warnings,
            })
        }
    }
}

/// An import that fails for want of the API secret, from a document exported without secrets,
/// says how to get one that carries it.
fn secrets_hint(mut error: ApiError, carries_secrets: bool) -> ApiError {
    let wants_secret = |e: &FieldError| match e.code {
        "secret_reentry_required" | "credentials_split" => true,
        // The document's credentials without a secret on the policy to go with them.
        "required_with" => e.field.ends_with(binding::SECRET_FIELD),
        _ => false,
    };
    if carries_secrets || !error.errors.iter().any(wants_secret) {
        return error;
    }
    const HINT: &str = "the document carries no secrets and this import needs the API secret: \
                        export it with a passphrase (POST …/export) and import that document \
                        with the passphrase";
    for field in error.errors.iter_mut().filter(|e| wants_secret(e)) {
        field.message = format!("{}; {HINT}", field.message);
    }
    error.detail = HINT.to_owned();
    error
}

fn parse_document(document: Value) -> Result<ExportDocument, ApiError> {
    let parsed: ExportDocument = serde_path_to_error::deserialize(document).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." {
            "document".to_owned()
        } else {
            format!("document.{path}")
        };
        ApiError::field(FieldError::new(
            field,
            "invalid_document",
            error.into_inner().to_string(),
        ))
    })?;
    if parsed.format != EXPORT_FORMAT {
        return Err(ApiError::field(FieldError::new(
            "document.format",
            "unsupported_format",
            format!("must be `{EXPORT_FORMAT}`"),
        )));
    }
    if parsed.format_version != EXPORT_FORMAT_VERSION {
        return Err(ApiError::field(FieldError::new(
            "document.format_version",
            "unsupported_format_version",
            format!("this server reads format version {EXPORT_FORMAT_VERSION}"),
        )));
    }
    Ok(parsed)
}

/// The document's encrypted part, checked without deriving any key, with its passphrase.
fn check_secrets(
    document: &ExportDocument,
    passphrase: Option<String>,
) -> Result<Option<(CheckedBox, String)>, ApiError> {
    let Some(sealed) = &document.secrets else {
        return Ok(None);
    };
    let checked = sealed.check().map_err(box_error)?;
    let passphrase = passphrase.ok_or_else(|| {
        ApiError::field(FieldError::new(
            "passphrase",
            "required",
            "the document carries encrypted secrets; give its passphrase",
        ))
    })?;
    Ok(Some((checked, passphrase)))
}

fn box_error(error: BoxError) -> ApiError {
    match &error {
        BoxError::WrongPassphrase => ApiError::field(FieldError::new(
            "passphrase",
            "wrong_passphrase",
            error.to_string(),
        )),
        BoxError::Invalid { field, message } => ApiError::field(FieldError::new(
            format!("document.secrets.{field}"),
            "invalid_document",
            message.clone(),
        )),
    }
}

/// Derives the key in the server's bounded hashing pool and decrypts the secrets.
async fn open_secrets(
    state: &AppState,
    sealed: CheckedBox,
    passphrase: String,
) -> Result<BTreeMap<String, String>, ApiError> {
    let plaintext = state
        .hashing
        .run(move |memory| sealed.open(&passphrase, memory))
        .await?
        .map_err(box_error)?;
    serde_json::from_slice(&plaintext).map_err(|_| {
        ApiError::field(FieldError::new(
            "document.secrets",
            "invalid_document",
            "the secrets do not decode",
        ))
    })
}
