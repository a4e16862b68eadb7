//! Drafts: a save kept unpublished. Made with the body of a save (checked the same way, secrets
//! sealed), listed, read, replaced, discarded, and published later behind `If-Match` like any
//! save, or rolled out in waves. A draft never reaches a device.

use super::effective::{self, Freshness};
use super::policies::{self, Publishes, SaveKind, Saved, edit_build, propose};
use super::policy_edit::{CheckedEdit, PolicyEdit};
use super::references::References;
use super::{Page, PageRequest, audit, written};
use crate::db;
use crate::db::repo::policies as policies_repo;
use crate::db::repo::policy_drafts::{self as repo, DraftRow};
use crate::domain::audit::{Actor, NewEntry};
use crate::domain::diff::Change;
use crate::domain::policy::{PolicyNode, PolicyTree};
use crate::domain::{DraftId, Expected, OperatorId, PolicyId, TenantId};
use crate::error::ApiError;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// A draft with what it would change in the policy as it now is.
#[derive(Debug, Clone)]
pub struct Draft {
    pub id: DraftId,
    pub policy_id: PolicyId,
    /// The policy version current when the draft was made or last replaced.
    pub base_version: i32,
    pub edit: CheckedEdit,
    /// Bumped by every replacement; the draft's `ETag`.
    pub revision: i32,
    pub author_id: Option<OperatorId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn from_row(row: DraftRow) -> Result<Draft, ApiError> {
    Ok(Draft {
        id: row.id,
        policy_id: row.policy_id,
        base_version: row.base_version,
        edit: CheckedEdit::decode(&row.edit)?,
        revision: row.revision,
        author_id: row.author_id,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn draft_entry(action: &'static str, policy: PolicyId, draft: DraftId, mut changes: Vec<Change>) -> NewEntry {
    changes.insert(
        0,
        Change::of("draft_id", None, Some(Value::from(draft.to_string()))),
    );
    NewEntry {
        action,
        target_type: "policy",
        target_id: policy.0,
        changes,
    }
}

/// The policy's current version with `edit` applied, checked like a save would check it; the
/// tree holds the new node. Fails like the save would.
pub(super) async fn propose_edit(
    state: &AppState,
    tenant: TenantId,
    policy: PolicyId,
    edit: &CheckedEdit,
) -> Result<(PolicyTree, PolicyNode, Vec<Change>), ApiError> {
    let current = effective::current(state, tenant, Freshness::Database).await?;
    propose_on(&current.view, policy, edit)
}

/// [`propose_edit`] on `tree`, the current tree the caller already holds.
pub(super) fn propose_on(
    tree: &PolicyTree,
    policy: PolicyId,
    edit: &CheckedEdit,
) -> Result<(PolicyTree, PolicyNode, Vec<Change>), ApiError> {
    let mut tree = tree.clone();
    let proposal = propose(&mut tree, policy, "set.", &edit_build(policy, edit.clone()))?;
    Ok((tree, proposal.node, proposal.changes))
}

pub async fn create(
    state: &AppState,
    actor: &Actor,
    policy: PolicyId,
    edit: PolicyEdit,
) -> Result<Draft, ApiError> {
    let tenant = actor.tenant_id;
    let now = state.clock.now();
    let checked = CheckedEdit::check(&state.keyring, tenant, &edit, now)?;
    let (tree, _, changes) = propose_edit(state, tenant, policy, &checked).await?;
    let base_version = tree
        .get(policy)
        .map_or(0, |n| n.version - i32::from(!changes.is_empty()));
    let row = DraftRow {
        id: DraftId::new(),
        policy_id: policy,
        base_version,
        edit: checked.encode()?,
        revision: 1,
        author_id: actor.operator_id,
        created_at: now,
        updated_at: now,
    };
    let txn = db::begin_write(&state.db).await?;
    repo::insert(&txn, tenant, &row).await?;
    audit::record_at(
        &txn,
        actor,
        tenant,
        draft_entry("policy.draft_created", policy, row.id, changes),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    from_row(row)
}

pub async fn get(
    state: &AppState,
    tenant: TenantId,
    policy: PolicyId,
    id: DraftId,
) -> Result<Draft, ApiError> {
    let row = repo::get(&state.db, tenant, policy, id)
        .await?
        .ok_or_else(|| ApiError::not_found("draft"))?;
    from_row(row)
}

/// What the draft would change in the policy as it now is (empty when nothing).
pub async fn changes(state: &AppState, tenant: TenantId, draft: &Draft) -> Result<Vec<Change>, ApiError> {
    Ok(propose_edit(state, tenant, draft.policy_id, &draft.edit).await?.2)
}

pub async fn list(
    state: &AppState,
    tenant: TenantId,
    policy: PolicyId,
    page: PageRequest,
) -> Result<Page<Draft>, ApiError> {
    policies_repo::get_summary(&state.db, tenant, policy)
        .await?
        .ok_or_else(|| ApiError::not_found("policy"))?;
    let rows = repo::list(&state.db, tenant, policy, page.cursor, page.fetch_limit()).await?;
    let page = page.page(rows, |d| d.id.0);
    Ok(Page {
        items: page.items.into_iter().map(from_row).collect::<Result<_, _>>()?,
        next_cursor: page.next_cursor,
    })
}

/// Replaces the draft's edit with `edit` (the body of a save), at the expected revision.
pub async fn replace(
    state: &AppState,
    actor: &Actor,
    policy: PolicyId,
    id: DraftId,
    expected: Expected,
    edit: PolicyEdit,
) -> Result<Draft, ApiError> {
    let tenant = actor.tenant_id;
    let now = state.clock.now();
    let checked = CheckedEdit::check(&state.keyring, tenant, &edit, now)?;
    let (_, _, changes) = propose_edit(state, tenant, policy, &checked).await?;
    let txn = db::begin_write(&state.db).await?;
    written(
        repo::replace_edit(&txn, tenant, policy, id, expected, &checked.encode()?, now).await?,
        "draft",
    )?;
    audit::record_at(
        &txn,
        actor,
        tenant,
        draft_entry("policy.draft_updated", policy, id, changes),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    get(state, tenant, policy, id).await
}

pub async fn discard(state: &AppState, actor: &Actor, policy: PolicyId, id: DraftId) -> Result<(), ApiError> {
    let tenant = actor.tenant_id;
    get(state, tenant, policy, id).await?;
    let txn = db::begin_write(&state.db).await?;
    if !repo::delete(&txn, tenant, id).await? {
        return Err(ApiError::not_found("draft"));
    }
    audit::record_at(
        &txn,
        actor,
        tenant,
        draft_entry("policy.draft_discarded", policy, id, Vec::new()),
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Publishes the draft as the policy's next version: a save (`If-Match` with the policy's
/// version), after which the draft is gone.
pub async fn publish(
    state: &AppState,
    actor: &Actor,
    policy: PolicyId,
    id: DraftId,
    expected: Expected,
    references: References,
) -> Result<Saved, ApiError> {
    let draft = get(state, actor.tenant_id, policy, id).await?;
    let comment = draft.edit.comment.clone();
    let kind = SaveKind {
        action: "policy.draft_published",
        comment: comment.as_deref(),
        field_prefix: "set.",
        references,
        publishes: Publishes::Draft(id),
    };
    policies::save(
        state,
        actor,
        policy,
        expected,
        kind,
        edit_build(policy, draft.edit),
    )
    .await
}
