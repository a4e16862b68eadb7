//! Checking the ConnectWise records settings refer to: a policy's boards and statuses, a
//! device's companies, agreement and addition. Saves check by default; a ConnectWise that does
//! not answer lets the save through with a warning.

use super::connectwise::{Lookup, credentials_in, fetch};
use super::devices::{self, DeviceEdit, DeviceView};
use super::effective::{self, Freshness};
use super::policies;
use crate::connectwise::Credentials;
use crate::db::repo;
use crate::domain::audit::Actor;
use crate::domain::catalog::{Catalog, EVENT_CLASSES};
use crate::domain::device::Device;
use crate::domain::policy::SettingValue;
use crate::domain::resolve::{Resolution, resolve};
use crate::domain::{DeviceId, Expected, FieldError, PolicyId, TenantId};
use crate::domain::{billing, binding};
use crate::error::{ApiError, Code};
use crate::state::AppState;
use serde_json::Value;
use std::collections::BTreeMap;

/// Checks every board and status a resolved policy refers to: the board exists and is active,
/// both statuses belong to it, and the Closed status is a closed status. Problems by field.
pub async fn check_references(
    state: &AppState,
    tenant: TenantId,
    resolution: &Resolution,
) -> Result<Vec<FieldError>, ApiError> {
    let credentials = credentials_in(state, tenant, resolution)?;
    check_boards(state, tenant, &credentials, resolution, None).await
}

/// [`check_references`] with credentials, for the event classes in `classes` (all: `None`).
async fn check_boards(
    state: &AppState,
    tenant: TenantId,
    credentials: &Credentials,
    resolution: &Resolution,
    classes: Option<&[&str]>,
) -> Result<Vec<FieldError>, ApiError> {
    let reference = |path: &str| reference_in(resolution, path);
    let boards = fetch(state, tenant, credentials, &Lookup::Boards).await?;
    let mut problems = Vec::new();
    let wanted = EVENT_CLASSES
        .iter()
        .filter(|class| classes.is_none_or(|keys| keys.contains(&class.key)));
    for class in wanted {
        let path = |leaf: &str| format!("ticketing.events.{}.{leaf}", class.key);
        let Some((board_id, board_name)) = reference(&path("service_board")) else {
            continue;
        };
        match boards.iter().find(|b| b["id"].as_i64() == Some(board_id)) {
            None => {
                problems.push(FieldError::new(
                    path("service_board"),
                    "not_in_connectwise",
                    format!("board {board_id} (“{board_name}”) does not exist in ConnectWise"),
                ));
                continue;
            }
            Some(board) if board["inactive"] == true => problems.push(FieldError::new(
                path("service_board"),
                "inactive_board",
                format!("board “{board_name}” is inactive in ConnectWise"),
            )),
            Some(_) => {}
        }
        let statuses = fetch(state, tenant, credentials, &Lookup::Statuses { board_id }).await?;
        let statuses: BTreeMap<i64, &Value> = statuses
            .iter()
            .filter_map(|s| Some((s["id"].as_i64()?, s)))
            .collect();
        for leaf in ["new_status", "closed_status"] {
            let Some((status_id, status_name)) = reference(&path(leaf)) else {
                continue;
            };
            match statuses.get(&status_id) {
                None => problems.push(FieldError::new(
                    path(leaf),
                    "status_not_on_board",
                    format!("status {status_id} (“{status_name}”) is not a status of board “{board_name}”"),
                )),
                Some(status) if leaf == "closed_status" && status["closed"] != true => {
                    problems.push(FieldError::new(
                        path(leaf),
                        "not_a_closed_status",
                        format!("status “{status_name}” is open in ConnectWise; pick a closed status"),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(problems)
}

/// [`check_references`] for a policy as it is now.
pub async fn check_policy(
    state: &AppState,
    tenant: TenantId,
    policy: PolicyId,
) -> Result<Vec<FieldError>, ApiError> {
    let (_, resolution) = policies::resolved(state, tenant, policy).await?;
    check_references(state, tenant, &resolution).await
}

/// Whether a save checks its ConnectWise references (`?validate=false` skips it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum References {
    Check,
    Skip,
}

/// The `{id, name}` reference a resolved field holds, if any.
fn reference_in(resolution: &Resolution, path: &str) -> Option<(i64, String)> {
    match resolution.get(path).and_then(|f| f.value.as_ref()) {
        Some(SettingValue::Plain(v)) => Some((v.get("id")?.as_i64()?, v.get("name")?.as_str()?.to_owned())),
        _ => None,
    }
}

/// The change-log line of a save that went through unchecked.
pub fn warning_change(warning: &str) -> crate::domain::diff::Change {
    crate::domain::diff::Change::of("warning", None, Some(Value::from(warning)))
}

/// Runs `check` with the resolved credentials, the way a save does: problems are a `422`; a
/// ConnectWise that cannot be reached, or credentials that are missing, let the save go through
/// with a warning instead (devices must stay configurable while ConnectWise is down).
async fn vet<'a, F, Fut>(
    state: &'a AppState,
    tenant: TenantId,
    resolution: &'a Resolution,
    what: &str,
    check: F,
) -> Result<Vec<String>, ApiError>
where
    F: FnOnce(Credentials) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<FieldError>, ApiError>> + 'a,
{
    let credentials = match credentials_in(state, tenant, resolution) {
        Ok(credentials) => credentials,
        Err(error) if error.code == Code::ValidationFailed => {
            return Ok(vec![format!(
                "{what} not checked against ConnectWise: no ConnectWise credentials are configured"
            )]);
        }
        Err(error) => return Err(error),
    };
    match check(credentials).await {
        Ok(problems) if problems.is_empty() => Ok(Vec::new()),
        Ok(problems) => Err(ApiError::validation(problems)),
        // The guard refused the site's address: nothing was asked, and the guard refuses it
        // again wherever the credentials are used.
        Err(error) if error.errors.iter().any(|e| e.code == "refused_address") => Ok(vec![format!(
            "{what} not checked against ConnectWise: {}",
            error.detail
        )]),
        Err(error) if error.code == Code::ConnectWiseUnavailable => {
            tracing::info!(detail = %error.detail, "saved without checking ConnectWise references");
            Ok(vec![format!(
                "{what} not checked against ConnectWise, which did not answer ({}); saved anyway",
                error.detail
            )])
        }
        Err(error) => Err(error),
    }
}

/// The reference check of a policy save: the board and statuses of every event class whose
/// references the save changes (so an unrelated edit is not blocked by a record deleted in
/// ConnectWise since). Returns the warnings to show and log.
pub async fn vet_policy_references(
    state: &AppState,
    tenant: TenantId,
    before: &Resolution,
    after: &Resolution,
    references: References,
) -> Result<Vec<String>, ApiError> {
    let changed: Vec<&str> = EVENT_CLASSES
        .iter()
        .filter(|class| {
            let path = |leaf: &str| format!("ticketing.events.{}.{leaf}", class.key);
            reference_in(after, &path("service_board")).is_some()
                && ["service_board", "new_status", "closed_status"]
                    .iter()
                    .any(|leaf| reference_in(before, &path(leaf)) != reference_in(after, &path(leaf)))
        })
        .map(|class| class.key)
        .collect();
    if references == References::Skip || changed.is_empty() {
        return Ok(Vec::new());
    }
    vet(
        state,
        tenant,
        after,
        "the boards and statuses were",
        |credentials| async move { check_boards(state, tenant, &credentials, after, Some(&changed)).await },
    )
    .await
}

/// The device references a save checks.
const DEVICE_REFERENCES: [&str; 4] = [
    "ticketing.service_ticket_company",
    "billing.company",
    "billing.agreement",
    "billing.addition",
];

/// The reference check of a device save, on the device's effective configuration: the Service
/// Ticket Company and billing company exist, the agreement belongs to the billing company and
/// the addition to the agreement. Only references the save changed are checked, so an
/// unrelated edit is not blocked by a record deleted in ConnectWise since.
pub async fn vet_device_references(
    state: &AppState,
    tenant: TenantId,
    before: &Resolution,
    after: &Resolution,
    references: References,
) -> Result<Vec<String>, ApiError> {
    let changed: Vec<&str> = DEVICE_REFERENCES
        .into_iter()
        .filter(|path| reference_in(after, path).is_some())
        .filter(|path| reference_in(before, path) != reference_in(after, path))
        .collect();
    if references == References::Skip || changed.is_empty() {
        return Ok(Vec::new());
    }
    vet(state, tenant, after, "the device's companies, agreement and addition were", |credentials| async move {
        check_device_references(state, tenant, &credentials, after, &changed).await
    })
    .await
}

async fn check_device_references(
    state: &AppState,
    tenant: TenantId,
    credentials: &Credentials,
    resolution: &Resolution,
    changed: &[&str],
) -> Result<Vec<FieldError>, ApiError> {
    let mut problems = Vec::new();
    let field = |path: &str| format!("set.{path}");
    let has = |records: &[Value], id: i64| records.iter().any(|r| r["id"].as_i64() == Some(id));
    for path in ["ticketing.service_ticket_company", "billing.company"] {
        let Some((id, name)) = reference_in(resolution, path).filter(|_| changed.contains(&path)) else {
            continue;
        };
        let found = fetch(state, tenant, credentials, &Lookup::Company { id }).await?;
        if !has(&found, id) {
            problems.push(FieldError::new(
                field(path),
                "not_in_connectwise",
                format!("company {id} (“{name}”) does not exist in ConnectWise"),
            ));
        }
    }
    let company = reference_in(resolution, "billing.company");
    let agreement = reference_in(resolution, "billing.agreement");
    let check_agreement = changed.contains(&"billing.agreement") || changed.contains(&"billing.company");
    if let (Some((company_id, company_name)), Some((agreement_id, agreement_name)), true) =
        (&company, &agreement, check_agreement)
    {
        let agreements = fetch(
            state,
            tenant,
            credentials,
            &Lookup::Agreements {
                company_id: *company_id,
            },
        )
        .await?;
        if !has(&agreements, *agreement_id) {
            problems.push(FieldError::new(
                field("billing.agreement"),
                "not_in_connectwise",
                format!(
                    "agreement {agreement_id} (“{agreement_name}”) is not an agreement of company “{company_name}” in ConnectWise"
                ),
            ));
        }
    }
    let check_addition = check_agreement || changed.contains(&"billing.addition");
    if let (Some((agreement_id, agreement_name)), Some((addition_id, addition_name)), true) = (
        &agreement,
        reference_in(resolution, "billing.addition"),
        check_addition,
    ) {
        let additions = fetch(
            state,
            tenant,
            credentials,
            &Lookup::Additions {
                agreement_id: *agreement_id,
            },
        )
        .await?;
        if !has(&additions, addition_id) {
            problems.push(FieldError::new(
                field("billing.addition"),
                "not_in_connectwise",
                format!(
                    "addition {addition_id} (“{addition_name}”) is not an addition of agreement “{agreement_name}” in ConnectWise"
                ),
            ));
        }
    }
    Ok(problems)
}

/// The device's own values after `edit`, checked and normalised as the save does (secrets in
/// clear, in memory only); `None` when the save will refuse the edit. Nothing may be sent to
/// ConnectWise before that is known — least of all a stored secret to a site the edit typed.
fn edited_values(device: &Device, edit: &DeviceEdit) -> Option<BTreeMap<String, SettingValue>> {
    let catalog = Catalog::get();
    let mut values = device.device_values.clone();
    values.retain(|path, _| !edit.unset.contains(path));
    for (path, raw) in &edit.set {
        let def = catalog.field(path)?;
        let valid = catalog.validate(path, def, raw).ok()?;
        values.insert(path.clone(), SettingValue::Plain(valid));
    }
    let refused = !binding::check_reentered(&device.device_values, &values, "").is_empty()
        || !billing::vault_billing_errors(device.kind, &device.device_values, &values, "").is_empty();
    (!refused).then_some(values)
}

/// The reference check of a device edit, before it is saved (no write lock is held
/// meanwhile): the references the edit changes are vetted against ConnectWise. Returns the
/// warnings of an edit that goes through unchecked.
pub async fn vet_device_edit(
    state: &AppState,
    tenant: TenantId,
    id: DeviceId,
    edit: &DeviceEdit,
    references: References,
) -> Result<Vec<String>, ApiError> {
    if references == References::Skip {
        return Ok(Vec::new());
    }
    let Some(device) = repo::devices::get(&state.db, tenant, id).await? else {
        return Ok(Vec::new());
    };
    let Some(values) = edited_values(&device, edit) else {
        return Ok(Vec::new());
    };
    let tree = effective::current(state, tenant, Freshness::Database).await?.view;
    let before = resolve(&tree.chain(device.policy_id), &device.device_values);
    let policy = edit.policy_id.unwrap_or(device.policy_id);
    let after = resolve(&tree.chain(policy), &values);
    vet_device_references(state, tenant, &before, &after, references).await
}

/// A device `PATCH` with its reference check; the warnings of a save that went through
/// unchecked are recorded with its change-log entry.
pub async fn update_device(
    state: &AppState,
    actor: &Actor,
    id: DeviceId,
    expected: Expected,
    mut edit: DeviceEdit,
    references: References,
) -> Result<(DeviceView, Vec<String>), ApiError> {
    let warnings = vet_device_edit(state, actor.tenant_id, id, &edit, references).await?;
    edit.notes = warnings.iter().map(|w| warning_change(w)).collect();
    let view = devices::update(state, actor, id, expected, edit).await?;
    Ok((view, warnings))
}
