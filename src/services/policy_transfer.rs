//! Export and import of one policy as a portable document, secrets encrypted under a
//! passphrase. An import is a save (see `policies`); its dry run and its impact change nothing.

use super::audit;
use super::effective::{self, Freshness};
use super::policies::{PolicyDetail, Publishes, SaveKind, check_in_tree, get, policy_entry, save};
use super::policy_edit::{parse_paths, parse_values};
use super::references::References;
use crate::db;
use crate::db::repo::policies as repo;
use crate::domain::audit::Actor;
use crate::domain::binding;
use crate::domain::catalog::Catalog;
use crate::domain::diff::{Change, ChangeKind, diff};
use crate::domain::policy::{PolicyNode, PolicyTree, SettingValue};
use crate::domain::redact::REDACTED;
use crate::domain::validation::Validator;
use crate::domain::{Expected, FieldError, PolicyId};
use crate::error::ApiError;
use crate::secrets::{BoxError, CheckedBox, PassphraseBox};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

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
            audit::record_at(
                &txn,
                actor,
                tenant,
                policy_entry("policy.exported_with_secrets", id, changes),
                state.clock.now(),
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
    /// A dry run's proposed node, for its impact; `None` once applied.
    pub proposed: Option<PolicyNode>,
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
        state.clock.now(),
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
            state.clock.now(),
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
            let mut tree =
                PolicyTree::clone(&effective::current(state, tenant, Freshness::Database).await?.view);
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
                proposed: Some(node),
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
                publishes: Publishes::Edit,
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
                proposed: None,
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
