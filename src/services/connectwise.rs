//! ConnectWise helpers for operators: Test Connection and the dropdown lookups (which the
//! reference checks of `services::references` use too).

use super::policies;
use crate::connectwise::size::item_size;
use crate::connectwise::{Credentials, CwError};
use crate::domain::binding;
use crate::domain::catalog::{CREDENTIAL_FIELDS, Catalog};
use crate::domain::policy::SettingValue;
use crate::domain::redact::REDACTED;
use crate::domain::resolve::Resolution;
use crate::domain::validation::Validator;
use crate::domain::{FieldError, PolicyId, TenantId};
use crate::error::{ApiError, Code};
use crate::state::AppState;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Credentials as typed into the form, before validation.
pub struct RawCredentials {
    pub site: String,
    pub company_id: String,
    pub public_key: String,
    pub private_key: String,
}

impl std::fmt::Debug for RawCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawCredentials")
            .field("site", &self.site)
            .field("company_id", &self.company_id)
            .field("public_key", &self.public_key)
            .field("private_key", &REDACTED)
            .finish()
    }
}

/// Where Test Connection takes its credentials from.
#[derive(Debug)]
pub enum CredentialSource {
    Given(RawCredentials),
    /// The resolved credentials of a policy (the secret never leaves the server).
    Policy(PolicyId),
}

/// The result of Test Connection.
#[derive(Debug)]
pub enum Tested {
    Ok {
        version: String,
        is_cloud: bool,
        latency_ms: u64,
    },
    Failed {
        reason: &'static str,
        detail: String,
    },
}

fn refused(why: String) -> ApiError {
    ApiError::field(FieldError::new("site", "refused_address", why))
}

fn upstream(error: CwError) -> ApiError {
    match error {
        CwError::Refused(why) => refused(why),
        other => ApiError::new(Code::ConnectWiseUnavailable, other.sentence()),
    }
}

fn validate_given(raw: &RawCredentials) -> Result<Credentials, ApiError> {
    let catalog = Catalog::get();
    let mut v = Validator::new();
    let mut field = |path: &str, request_field: &str, value: &str| {
        let def = catalog
            .field(path)
            .expect("credential fields are in the catalogue");
        v.check(catalog.validate(request_field, def, &Value::from(value)))
            .and_then(|valid| valid.as_str().map(str::to_owned))
    };
    let site = field("connectwise.site", "site", &raw.site);
    let company_id = field("connectwise.company_id", "company_id", &raw.company_id);
    let public_key = field("connectwise.public_key", "public_key", &raw.public_key);
    let private_key = field("connectwise.private_key", "private_key", &raw.private_key);
    v.finish().map_err(ApiError::validation)?;
    match (site, company_id, public_key, private_key) {
        (Some(site), Some(company_id), Some(public_key), Some(private_key)) => Ok(Credentials {
            site,
            company_id,
            public_key,
            private_key,
        }),
        _ => unreachable!("the validator reported no error, so every field parsed"),
    }
}

/// The credentials a resolved policy carries, the secret decrypted; or what is missing.
pub(super) fn credentials_in(
    state: &AppState,
    tenant: TenantId,
    resolution: &Resolution,
) -> Result<Credentials, ApiError> {
    // Never send a stored secret anywhere but the site it was entered with, even if stored
    // data predates the rule that saves enforce.
    let split = binding::check_one_source(resolution);
    if !split.is_empty() {
        return Err(ApiError::validation(split));
    }
    let mut values = HashMap::new();
    let mut missing = Vec::new();
    for path in CREDENTIAL_FIELDS {
        match resolution.get(path).and_then(|f| f.value.as_ref()) {
            Some(SettingValue::Plain(Value::String(text))) => {
                values.insert(path, text.clone());
            }
            Some(SettingValue::Secret(handle)) => {
                let plaintext = state
                    .keyring
                    .open(tenant, path, &handle.sealed)
                    .map_err(ApiError::internal)?;
                values.insert(path, plaintext);
            }
            _ => missing.push(FieldError::new(
                path,
                "required",
                "the policy's resolved settings lack this credential",
            )),
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::validation(missing));
    }
    let mut take = |path: &str| values.remove(path).unwrap_or_default();
    Ok(Credentials {
        site: take("connectwise.site"),
        company_id: take("connectwise.company_id"),
        public_key: take("connectwise.public_key"),
        private_key: take("connectwise.private_key"),
    })
}

async fn policy_credentials(
    state: &AppState,
    tenant: TenantId,
    policy: PolicyId,
) -> Result<Credentials, ApiError> {
    let (_, resolution) = policies::resolved(state, tenant, policy).await?;
    credentials_in(state, tenant, &resolution)
}

pub async fn test_connection(
    state: &AppState,
    tenant: TenantId,
    source: CredentialSource,
) -> Result<Tested, ApiError> {
    let credentials = match source {
        CredentialSource::Given(raw) => validate_given(&raw)?,
        CredentialSource::Policy(policy) => policy_credentials(state, tenant, policy).await?,
    };
    let started = Instant::now();
    match state.connectwise.system_info(&credentials).await {
        Ok(info) => Ok(Tested::Ok {
            version: info
                .get("version")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            is_cloud: info.get("isCloud").and_then(Value::as_bool).unwrap_or(false),
            latency_ms: started.elapsed().as_millis() as u64,
        }),
        Err(CwError::Refused(why)) => Err(refused(why)),
        Err(error) => {
            tracing::info!(reason = error.reason(), "ConnectWise test connection failed");
            Ok(Tested::Failed {
                reason: error.reason(),
                detail: error.sentence(),
            })
        }
    }
}

/// A dropdown to fill from ConnectWise.
#[derive(Debug, Clone)]
pub enum Lookup {
    Companies {
        search: Option<String>,
    },
    /// One company by id (a reference check).
    Company {
        id: i64,
    },
    Agreements {
        company_id: i64,
    },
    Additions {
        agreement_id: i64,
    },
    Boards,
    Statuses {
        board_id: i64,
    },
}

impl Lookup {
    fn cache_key(&self) -> String {
        match self {
            Lookup::Companies { search } => format!(
                "companies|{}",
                search.as_deref().unwrap_or_default().trim().to_lowercase()
            ),
            Lookup::Company { id } => format!("company|{id}"),
            Lookup::Agreements { company_id } => format!("agreements|{company_id}"),
            Lookup::Additions { agreement_id } => format!("additions|{agreement_id}"),
            Lookup::Boards => "boards".into(),
            Lookup::Statuses { board_id } => format!("statuses|{board_id}"),
        }
    }
}

fn text(v: &Value, key: &str) -> Value {
    v.get(key).cloned().unwrap_or(Value::Null)
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Records reduced to what a dropdown needs: `{id, name, …}`.
fn normalise(lookup: &Lookup, record: &Value) -> Value {
    let id = text(record, "id");
    match lookup {
        Lookup::Companies { .. } | Lookup::Company { .. } => {
            json!({"id": id, "name": text(record, "name"), "identifier": text(record, "identifier")})
        }
        Lookup::Agreements { .. } => json!({
            "id": id, "name": text(record, "name"),
            "status": text(record, "agreementStatus"), "cancelled": flag(record, "cancelledFlag"),
        }),
        Lookup::Additions { .. } => {
            let product = record.get("product").and_then(|p| p.get("identifier")).cloned();
            let name = product
                .filter(|p| !p.is_null())
                .unwrap_or_else(|| text(record, "description"));
            json!({"id": id, "name": name, "quantity": text(record, "quantity"), "agreement_id": text(record, "agreementId")})
        }
        Lookup::Boards => json!({
            "id": id, "name": text(record, "name"),
            "inactive": flag(record, "inactiveFlag"), "project": flag(record, "projectFlag"),
        }),
        Lookup::Statuses { .. } => json!({
            "id": id, "name": text(record, "name"), "closed": flag(record, "closedStatus"),
            "inactive": flag(record, "inactive"), "default": flag(record, "defaultFlag"),
        }),
    }
}

pub(super) async fn fetch(
    state: &AppState,
    tenant: TenantId,
    credentials: &Credentials,
    lookup: &Lookup,
) -> Result<Arc<Vec<Value>>, ApiError> {
    let key = format!("{tenant}|{}|{}", credentials.fingerprint(), lookup.cache_key());
    if let Some(hit) = state.lookups.get(&key) {
        return Ok(hit);
    }
    let client = &state.connectwise;
    let keep = |record: &Value| normalise(lookup, record);
    let records = match lookup {
        Lookup::Companies { search } => client.companies(credentials, search.as_deref(), &keep).await,
        Lookup::Company { id } => client.company(credentials, *id, &keep).await,
        Lookup::Agreements { company_id } => client.agreements(credentials, *company_id, &keep).await,
        Lookup::Additions { agreement_id } => client.additions(credentials, *agreement_id, &keep).await,
        Lookup::Boards => client.boards(credentials, &keep).await,
        Lookup::Statuses { board_id } => client.statuses(credentials, *board_id, &keep).await,
    }
    .map_err(upstream)?;
    let size = records.iter().map(item_size).sum();
    let normalised = Arc::new(records);
    state.lookups.put(key, normalised.clone(), size);
    Ok(normalised)
}

/// Fills a dropdown with the policy's resolved credentials. Cached briefly per tenant,
/// credentials and query.
pub async fn lookup(
    state: &AppState,
    tenant: TenantId,
    policy: PolicyId,
    lookup: Lookup,
) -> Result<Arc<Vec<Value>>, ApiError> {
    let credentials = policy_credentials(state, tenant, policy).await?;
    fetch(state, tenant, &credentials, &lookup).await
}
