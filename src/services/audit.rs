//! Writing and reading the change log. Every mutation writes its entry in its own transaction,
//! so a change and its record commit or roll back together.

use super::{Page, PageRequest};
use crate::db::repo::{audit, operators};
use crate::domain::TenantId;
use crate::domain::audit::{Actor, Entry, Filter, NewEntry};
use crate::error::ApiError;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

/// Files `entry` in `tenant`'s change log (the tenant the change happened in, which for a
/// platform admin is not its own), dated `now` (the caller's clock, `AppState::clock`).
pub async fn record_at(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    tenant: TenantId,
    entry: NewEntry,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let label = match (actor.operator_id, actor.device_id) {
        (Some(id), _) => match operators::get(conn, actor.tenant_id, id).await? {
            Some(operator) => operator.email,
            None => format!("operator {id}"),
        },
        (None, Some(device)) => format!("device {device}"),
        (None, None) => "system".to_owned(),
    };
    audit::insert(
        conn,
        tenant,
        actor.operator_id,
        &label,
        actor.request_id.as_deref(),
        entry,
        now,
    )
    .await?;
    Ok(())
}

pub async fn list(
    state: &AppState,
    tenant: TenantId,
    filter: &Filter,
    page: PageRequest,
) -> Result<Page<Entry>, ApiError> {
    let rows = audit::list(&state.db, tenant, filter, page.cursor, page.fetch_limit()).await?;
    Ok(page.page(rows, |e| e.id))
}
