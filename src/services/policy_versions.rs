//! Reading a policy's history: its versions, one version, the diff of two, and the resolved
//! view of the current one.

use super::effective::{self, Freshness};
use crate::db::repo::policies::{self as repo, VersionMeta};
use crate::domain::diff::{Change, diff};
use crate::domain::policy::{PolicyContent, PolicyNode};
use crate::domain::resolve::{Resolution, resolve};
use crate::domain::validation::Validator;
use crate::domain::{FieldError, PolicyId, TenantId};
use crate::error::ApiError;
use crate::state::AppState;
use std::collections::BTreeMap;

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
    let tree = effective::current(state, tenant, Freshness::Database).await?.view;
    let node = tree
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("policy"))?;
    let resolution = resolve(&tree.chain(id), &BTreeMap::new());
    Ok((node, resolution))
}
