//! Policies: the tree, versioned saves with locks, rollback, the resolved view, export and
//! import. Every save that changes something is one transaction that creates version N+1 and
//! its change-log entry; one that changes nothing creates neither.

use super::effective::{self, Freshness};
use super::policy_edit::CheckedEdit;
pub use super::policy_edit::PolicyEdit;
use super::references::{self, References};
use super::{Page, PageRequest, audit, conflict_if_duplicate, written};
use crate::db;
use crate::db::changes::Announce;
use crate::db::repo::policies::{self as repo, PolicySummary, VersionMeta};
use crate::db::repo::{policy_drafts as drafts_repo, rollouts as rollouts_repo};
use crate::domain::audit::{Actor, NewEntry};
use crate::domain::binding;
use crate::domain::boards::check_statuses_with_board;
use crate::domain::catalog::Catalog;
use crate::domain::diff::{Change, diff};
use crate::domain::policy::{PolicyContent, PolicyNode, PolicyTree, ROOT_POLICY_NAME, TreeError};
use crate::domain::resolve::{Resolution, masked_values, resolve};
use crate::domain::rollout::RolloutState;
use crate::domain::tenant::parse_display_text;
use crate::domain::{DraftId, RolloutId};
use crate::domain::{Expected, FieldError, PolicyId, TenantId};
use crate::error::{ApiError, Code};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use serde_json::Value;
use std::collections::BTreeMap;

/// A policy at its current version, with when it was made and by whom.
#[derive(Debug, Clone)]
pub struct PolicyDetail {
    pub node: PolicyNode,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub current: VersionMeta,
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

/// The checks every proposed node must pass inside its tree: no value locked by an ancestor,
/// and the resolved settings of the policy and of every descendant consistent.
pub(super) fn check_in_tree(tree: &PolicyTree, id: PolicyId, field_prefix: &str) -> Result<(), ApiError> {
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

pub(super) fn policy_entry(action: &'static str, id: PolicyId, changes: Vec<Change>) -> NewEntry {
    NewEntry {
        action,
        target_type: "policy",
        target_id: id.0,
        changes,
    }
}

/// The root policy of a new tenant; called inside the tenant's creation transaction.
pub async fn create_root(
    conn: &impl Announce,
    actor: &Actor,
    tenant: TenantId,
    now: DateTime<Utc>,
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
        now,
    )
    .await?;
    let changes = diff(&PolicyContent::default(), &node.content);
    audit::record_at(
        conn,
        actor,
        tenant,
        policy_entry("policy.created", node.id, changes),
        now,
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
    let mut tree = effective::tree_for_write(&txn, tenant).await?;
    let parent = match edit.parent_id {
        Some(parent) => parent,
        None => repo::root_id(&txn, tenant)
            .await?
            .ok_or_else(|| ApiError::not_found("root policy"))?,
    };
    let id = PolicyId::new();
    let checked = CheckedEdit::check(&state.keyring, tenant, &edit, state.clock.now())?;
    let mut content = checked.apply(&PolicyContent::default());
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
    repo::insert(
        &txn,
        tenant,
        &node,
        actor.operator_id,
        edit.comment.as_deref(),
        state.clock.now(),
    )
    .await
    .map_err(conflict_if_duplicate(format!(
        "a policy named “{}” already exists",
        node.content.name
    )))?;
    let changes = diff(&PolicyContent::default(), &node.content);
    audit::record_at(
        &txn,
        actor,
        tenant,
        policy_entry("policy.created", id, changes),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    get(state, tenant, id).await
}

/// How a save builds the new node from the current one. Called twice: once to vet the result
/// before the transaction, once inside it.
pub(super) type Build<'a> =
    Box<dyn Fn(&PolicyTree, &PolicyNode) -> Result<PolicyNode, ApiError> + Send + Sync + 'a>;

/// What kind of save this is, for the change log and for naming fields in errors.
pub(super) struct SaveKind<'a> {
    pub(super) action: &'static str,
    pub(super) comment: Option<&'a str>,
    /// Where a locked value sits in the request (`set.`, `document.values.`).
    pub(super) field_prefix: &'static str,
    /// Whether the board and status references are checked against ConnectWise.
    pub(super) references: References,
    /// What else the save concludes, in its transaction.
    pub(super) publishes: Publishes,
}

/// What a save publishes besides the new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Publishes {
    /// An edit made directly.
    Edit,
    /// A draft, discarded once published.
    Draft(DraftId),
    /// The last step of a rollout: the rollout completes and its draft is discarded. The only
    /// save allowed while the policy has a rollout running.
    Rollout(RolloutId, DraftId),
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
pub(super) struct Proposal {
    pub(super) node: PolicyNode,
    pub(super) before: Resolution,
    pub(super) after: Resolution,
    pub(super) changes: Vec<Change>,
}

/// The new node built from `current` in `tree`, checked, with its resolutions and its changes.
pub(super) fn propose(
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
pub(super) async fn save(
    state: &AppState,
    actor: &Actor,
    id: PolicyId,
    expected: Expected,
    kind: SaveKind<'_>,
    build: Build<'_>,
) -> Result<Saved, ApiError> {
    let tenant = actor.tenant_id;
    let mut tree = PolicyTree::clone(&effective::current(state, tenant, Freshness::Database).await?.view);
    let proposal = propose(&mut tree, id, kind.field_prefix, &build)?;
    let warnings = if proposal.changes.is_empty() {
        Vec::new()
    } else {
        references::vet_policy_references(state, tenant, &proposal.before, &proposal.after, kind.references)
            .await?
    };

    let txn = db::begin_write(&state.db).await?;
    written(repo::lock_for_update(&txn, tenant, id, expected).await?, "policy")?;
    refuse_during_rollout(&txn, tenant, id, kind.publishes).await?;
    let mut tree = effective::tree_for_write(&txn, tenant).await?;
    let Proposal { node, changes, .. } = propose(&mut tree, id, kind.field_prefix, &build)?;
    conclude(&txn, tenant, kind.publishes, state.clock.now()).await?;
    if changes.is_empty() {
        txn.commit().await?;
        return Ok(Saved {
            detail: get(state, tenant, id).await?,
            changes,
            warnings: Vec::new(),
        });
    }
    repo::save_version(
        &txn,
        tenant,
        &node,
        actor.operator_id,
        kind.comment,
        state.clock.now(),
    )
    .await
    .map_err(conflict_if_duplicate(format!(
        "a policy named “{}” already exists",
        node.content.name
    )))?;
    let mut logged = changes.clone();
    logged.extend(warnings.iter().map(|w| references::warning_change(w)));
    audit::record_at(
        &txn,
        actor,
        tenant,
        policy_entry(kind.action, id, logged),
        state.clock.now(),
    )
    .await?;
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
    let checked = CheckedEdit::check(&state.keyring, actor.tenant_id, &edit, state.clock.now())?;
    let kind = SaveKind {
        action: "policy.updated",
        comment: edit.comment.as_deref(),
        field_prefix: "set.",
        references,
        publishes: Publishes::Edit,
    };
    save(state, actor, id, expected, kind, edit_build(id, checked)).await
}

/// How a checked edit becomes the new node (a save, a published draft, a rollout).
pub(super) fn edit_build(id: PolicyId, edit: CheckedEdit) -> Build<'static> {
    Box::new(move |tree, current| {
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
            content: edit.apply(&current.content),
            ..current.clone()
        })
    })
}

/// A `409` naming the rollout when the policy has one running (unless this save ends it).
async fn refuse_during_rollout(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    id: PolicyId,
    publishes: Publishes,
) -> Result<(), ApiError> {
    if matches!(publishes, Publishes::Rollout(..)) {
        return Ok(());
    }
    match rollouts_repo::active_for_policy(conn, tenant, id).await? {
        Some(rollout) => Err(ApiError::conflict(format!(
            "rollout {} of this policy is {}; wait for it to finish, or abort it (POST /api/v1/rollouts/{}/abort)",
            rollout.id,
            rollout.state.as_str(),
            rollout.id
        ))),
        None => Ok(()),
    }
}

/// Discards the published draft and completes the rollout that published it.
async fn conclude(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    publishes: Publishes,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    match publishes {
        Publishes::Edit => {}
        Publishes::Draft(draft) => {
            drafts_repo::delete(conn, tenant, draft).await?;
        }
        Publishes::Rollout(rollout, draft) => {
            // An operator may have aborted it, or another replica completed it, meanwhile.
            let current = rollouts_repo::get_for_update(conn, tenant, rollout).await?;
            if let Some(stopped) = current.filter(|r| !r.state.is_active()) {
                return Err(ApiError::conflict(format!(
                    "rollout {rollout} is {} and cannot be completed",
                    stopped.state.as_str()
                )));
            }
            drafts_repo::delete(conn, tenant, draft).await?;
            rollouts_repo::finish(conn, rollout, RolloutState::Completed, None, now).await?;
        }
    }
    Ok(())
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
        publishes: Publishes::Edit,
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
    refuse_during_rollout(&txn, tenant, id, Publishes::Edit).await?;
    let tree = effective::tree_for_write(&txn, tenant).await?;
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
    audit::record_at(
        &txn,
        actor,
        tenant,
        policy_entry("policy.deleted", id, changes),
        state.clock.now(),
    )
    .await?;
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

pub use super::policy_transfer::{
    EXPORT_FORMAT, EXPORT_FORMAT_VERSION, ExportDocument, ExportedPolicy, ImportInput, ImportOutcome, export,
    import,
};
pub use super::policy_versions::{diff_versions, get_version, list_versions, resolved};
