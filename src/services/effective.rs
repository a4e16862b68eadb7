//! Effective configs computed once, not per pull, and the tenant's policy state they come from.
//!
//! Every service reads a tenant's policy tree here, in one of two ways: [`current`] outside a
//! write transaction (the [`TenantView`] cached per policy revision; the revision comes from the
//! device directory for pulls and from the database for operators, see [`Freshness`]), and
//! [`tree_for_write`] inside one (read under the writer's locks, never cached).
//!
//! A device's effective config depends only on its tenant's policy tree (identified by the
//! tenant's *policy revision*, bumped by every policy write) and, when the device has values of
//! its own or fields to reassert, on the device's version. So the config is resolved, hashed and
//! serialised once per such key and kept here; a pull looks it up after finding the device and
//! the revision (in the device directory, `device_directory`). Devices without values of their
//! own share one entry per policy, so what is cached per device is nothing for most devices, and
//! one entry for the others.
//!
//! Entries hold the body fragment with secrets in clear: memory only, never logged (`Built`'s
//! `Debug` hides it), bounded in bytes (`pull_cache_bytes`), least recently used evicted first.

use super::device_directory::PullFacts;
use crate::cache::{self, BoundedCache, Bounds};
use crate::db::changes::Announce;
use crate::db::repo::{policies, rollouts, tenants};
use crate::domain::device::{Device, ServedField, ServedSource, config_hash, served_fields};
use crate::domain::policy::{PolicyTree, SettingValue};
use crate::domain::resolve::{Source, resolve};
use crate::domain::rollout::{Rollout, bucket};
use crate::domain::{DeviceId, PolicyId, TenantId};
use crate::error::ApiError;
use crate::secrets::Keyring;
use crate::state::AppState;
use sea_orm::DbErr;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A cached tree is kept for this long at most; its revision decides whether it is current.
const TREE_TTL: Duration = Duration::from_secs(3600);
/// Trees of this many tenants' at most (a tree is small: policies × fields).
const TREE_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// One effective config, ready to serve.
pub struct Built {
    /// The ETag: SHA-256 of the canonical effective config.
    pub hash: String,
    /// `"settings":{…},"provenance":{…},"locked":[…]`, secrets in clear.
    fragment: String,
    /// What the field audit records as served.
    pub served: Arc<BTreeMap<String, ServedField>>,
    /// A digest of `served` (values, provenance with policy versions, locks): the field audit
    /// is up to date for a device when it recorded this key. A policy version that changes no
    /// value still changes it; an edit of an unrelated policy does not.
    pub audit_key: String,
}

impl Built {
    /// The JSON body for one device: its own fields, then the shared fragment.
    pub fn body(&self, device_part: &Map<String, Value>) -> String {
        let own = Value::Object(device_part.clone()).to_string();
        let mut body = String::with_capacity(own.len() + self.fragment.len() + 2);
        body.push_str(&own[..own.len() - 1]);
        if !device_part.is_empty() {
            body.push(',');
        }
        body.push_str(&self.fragment);
        body.push('}');
        body
    }

    fn size(&self) -> usize {
        self.hash.len() + self.fragment.len() + self.served.len() * 160
    }
}

impl fmt::Debug for Built {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Built")
            .field("hash", &self.hash)
            .field("fragment", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What a tenant's devices are served under one policy revision: the published tree, and the
/// running or paused rollouts whose current wave is served the rolled-out version instead.
///
/// It dereferences to the published tree, which is what every view of a policy shows.
pub struct TenantView {
    published: PolicyTree,
    rollouts: Vec<Rollout>,
    /// The published tree with the nodes of some rollouts swapped in, by rollout mask.
    variants: Mutex<HashMap<u32, Arc<PolicyTree>>>,
}

impl std::ops::Deref for TenantView {
    type Target = PolicyTree;

    fn deref(&self) -> &PolicyTree {
        &self.published
    }
}

impl TenantView {
    pub fn new(published: PolicyTree, mut rollouts: Vec<Rollout>) -> Self {
        // A mask has one bit per rollout; a tenant runs far fewer at once.
        rollouts.truncate(32);
        Self {
            published,
            rollouts,
            variants: Mutex::new(HashMap::new()),
        }
    }

    pub fn rollouts(&self) -> &[Rollout] {
        &self.rollouts
    }

    /// Which rollouts serve `device` their new version: one bit per rollout of a policy in the
    /// device's chain whose current wave covers the device.
    pub fn mask(&self, device: &Device) -> u32 {
        self.mask_of(device.id, device.policy_id)
    }

    /// [`Self::mask`] from the device's id and policy alone.
    pub fn mask_of(&self, device: DeviceId, policy: PolicyId) -> u32 {
        if self.rollouts.is_empty() {
            return 0;
        }
        self.mask_at(bucket(device.0), policy)
    }

    /// The mask of the devices of `policy` at `bucket` on the rollout scale.
    pub fn mask_at(&self, bucket: u32, policy: PolicyId) -> u32 {
        let chain = self.published.chain(policy);
        self.rollouts
            .iter()
            .enumerate()
            .filter(|(_, r)| r.covers_bucket(bucket) && chain.iter().any(|n| n.id == r.policy_id))
            .fold(0, |mask, (i, _)| mask | (1 << i))
    }

    /// The tree served to devices of `mask`.
    pub fn tree(&self, mask: u32) -> Arc<PolicyTree> {
        let mut variants = self.variants.lock().unwrap_or_else(|p| p.into_inner());
        variants
            .entry(mask)
            .or_insert_with(|| {
                let mut tree = self.published.clone();
                for (i, rollout) in self.rollouts.iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        tree.put(rollout.node());
                    }
                }
                Arc::new(tree)
            })
            .clone()
    }
}

/// The caches of one replica: tenant views per revision, built configs per key.
pub struct EffectiveCache {
    trees: BoundedCache<(TenantId, i64), Arc<TenantView>>,
    configs: BoundedCache<ConfigKey, Arc<Built>>,
}

impl cache::Key for (TenantId, i64) {}

/// What a built config depends on besides the tree revision and the rollout mask: its policy,
/// for devices without values of their own (they share it), or the device at its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ConfigOwner {
    Policy(PolicyId),
    Device(DeviceId, i32),
}

/// The cache key of a device's effective config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConfigKey {
    tenant: TenantId,
    revision: i64,
    owner: ConfigOwner,
    mask: u32,
}

impl cache::Key for ConfigKey {}

impl EffectiveCache {
    /// `max_bytes`: all built configs together (their fragments hold each device's secrets).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            trees: BoundedCache::new(Bounds {
                ttl: TREE_TTL,
                max_bytes: TREE_CACHE_BYTES,
                max_entry_bytes: TREE_CACHE_BYTES / 4,
            }),
            configs: BoundedCache::new(Bounds {
                ttl: TREE_TTL,
                max_bytes,
                max_entry_bytes: (max_bytes / 4).max(1),
            }),
        }
    }

    /// Entries and estimated bytes of the built configs.
    pub fn usage(&self) -> (usize, usize) {
        self.configs.usage()
    }

    pub fn tree(&self, tenant: TenantId, revision: i64) -> Option<Arc<TenantView>> {
        self.trees.get(&(tenant, revision))
    }

    pub fn keep_tree(&self, tenant: TenantId, revision: i64, tree: Arc<TenantView>) {
        let size = tree_size(&tree) * (1 + tree.rollouts.len());
        self.trees.put((tenant, revision), tree, size);
    }

    pub fn config(&self, key: &ConfigKey) -> Option<Arc<Built>> {
        self.configs.get(key)
    }

    pub fn keep_config(&self, key: ConfigKey, built: Arc<Built>) {
        let size = built.size();
        self.configs.put(key, built, size);
    }
}

fn tree_size(tree: &PolicyTree) -> usize {
    // A rough charge: the policies' values dominate.
    tree.nodes()
        .map(|n| 256 + n.content.values.len() * 256 + n.content.locks.len() * 64)
        .sum()
}

/// How current the policy revision behind a read of a tenant's view must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The device side: the revision as this replica's device directory knows it, so a
    /// steady-state pull reads nothing. Current here as soon as a write commits; a write on
    /// another replica is heard within a second (`db::changes`).
    Directory,
    /// Operators and jobs: the revision read from the database (one primary-key read), so a
    /// read right after a write, on this replica or another, sees the write.
    Database,
}

/// A tenant's effective policy state: its policy revision, its pull interval, and the view
/// (published tree and active rollouts) under that revision.
pub struct Current {
    pub revision: i64,
    pub interval: u32,
    pub view: Arc<TenantView>,
}

/// The one way services read a tenant's policy tree outside a write transaction. The view is
/// loaded once per revision and shared by every read of that revision (pulls, device views,
/// impact previews, drafts, reference checks) until it is evicted; a policy write bumps the
/// revision, so the next read loads the new tree.
pub async fn current(state: &AppState, tenant: TenantId, freshness: Freshness) -> Result<Current, ApiError> {
    let heard = match freshness {
        Freshness::Directory => state.directory.tenant(tenant),
        Freshness::Database => None,
    };
    if let Some(PullFacts { revision, interval }) = heard
        && let Some(view) = state.effective.tree(tenant, revision)
    {
        return Ok(Current {
            revision,
            interval,
            view,
        });
    }
    // Boxed: the reads' state would otherwise sit inline in every pull's future, which is
    // allocated and moved on every request, though a steady pull never reads.
    Box::pin(stored(state, tenant, heard)).await
}

/// [`current`] when the tenant's facts (`heard`, if known) or its tree must be read.
async fn stored(state: &AppState, tenant: TenantId, heard: Option<PullFacts>) -> Result<Current, ApiError> {
    let PullFacts { revision, interval } = match heard {
        Some(facts) => facts,
        None => stored_facts(state, tenant).await?,
    };
    if let Some(view) = state.effective.tree(tenant, revision) {
        return Ok(Current {
            revision,
            interval,
            view,
        });
    }
    // Read after the revision: if a save lands in between, the tree kept under this revision is
    // newer than its key, never older, and the next read sees the new revision anyway.
    let published = policies::load_tree(&state.db, tenant).await?;
    let rollouts = rollouts::active_for_tenant(&state.db, tenant).await?;
    let view = Arc::new(TenantView::new(published, rollouts));
    state.effective.keep_tree(tenant, revision, view.clone());
    Ok(Current {
        revision,
        interval,
        view,
    })
}

/// The tenant's revision and pull interval as stored, kept in the directory for the pulls.
async fn stored_facts(state: &AppState, tenant: TenantId) -> Result<PullFacts, ApiError> {
    let since = state.directory.since();
    let (revision, interval) = tenants::pull_facts(&state.db, tenant)
        .await?
        .ok_or_else(|| ApiError::internal("a tenant that does not exist"))?;
    let facts = PullFacts { revision, interval };
    state.directory.keep_tenant(tenant, facts, since);
    Ok(facts)
}

/// The one way services read a tenant's published tree inside a write transaction. It is read
/// in the transaction, after the locks the writer took (a policy or device row `FOR UPDATE` on
/// PostgreSQL, the database write lock on SQLite), never from the cache: the write's checks
/// hold against the tree as the transaction sees it, and the writer may change it.
pub async fn tree_for_write(txn: &impl Announce, tenant: TenantId) -> Result<PolicyTree, DbErr> {
    policies::load_tree(txn, tenant).await
}

/// The device's effective config under `revision` (the rolled-out version when a rollout's
/// current wave covers it), built once per key.
pub fn built(
    state: &AppState,
    view: &TenantView,
    device: &Device,
    revision: i64,
) -> Result<Arc<Built>, ApiError> {
    let mask = view.mask(device);
    let key = config_key(device, revision, mask);
    if let Some(built) = state.effective.config(&key) {
        return Ok(built);
    }
    let built = Arc::new(build(&state.keyring, &view.tree(mask), device)?);
    state.effective.keep_config(key, built.clone());
    Ok(built)
}

/// The cache key of a device's effective config under policy `revision` and rollout `mask`.
/// Devices without values of their own share the key of their policy and mask.
fn config_key(device: &Device, revision: i64, mask: u32) -> ConfigKey {
    let shared = device.device_values.is_empty() && device.reassert.is_empty();
    ConfigKey {
        tenant: device.tenant_id,
        revision,
        owner: if shared {
            ConfigOwner::Policy(device.policy_id)
        } else {
            ConfigOwner::Device(device.id, device.version)
        },
        mask,
    }
}

/// The config hash of the devices of `policy` that have no config of their own (no values of
/// their own, nothing to reassert): what [`build`] hashes for them.
pub fn shared_hash(tree: &PolicyTree, policy: PolicyId) -> String {
    hash_of(tree, policy, &BTreeMap::new(), &BTreeSet::new())
}

/// The config hash served under `tree` to a device of `policy` with these values of its own and
/// fields to reassert: what [`build`] hashes, without opening secrets.
pub fn hash_of(
    tree: &PolicyTree,
    policy: PolicyId,
    values: &BTreeMap<String, SettingValue>,
    reassert: &BTreeSet<String>,
) -> String {
    config_hash(&resolve(&tree.chain(policy), values), reassert)
}

/// Resolves, hashes and serialises a device's effective config; secrets are decrypted here.
pub fn build(keyring: &Keyring, tree: &PolicyTree, device: &Device) -> Result<Built, ApiError> {
    let resolution = resolve(&tree.chain(device.policy_id), &device.device_values);
    let hash = config_hash(&resolution, &device.reassert);
    let served = Arc::new(served_fields(&resolution));
    let audit_key = served_digest(&served);
    let mut settings = Map::new();
    let mut provenance = Map::new();
    let mut locked = Vec::new();
    for (path, field) in resolution {
        if let Some(value) = &field.value {
            let clear = match value {
                SettingValue::Plain(v) => v.clone(),
                SettingValue::Secret(handle) => Value::String(
                    keyring
                        .open(device.tenant_id, &path, &handle.sealed)
                        .map_err(ApiError::internal)?,
                ),
            };
            settings.insert(path.clone(), clear);
        }
        if field.locked_by.is_some() {
            locked.push(Value::String(path.clone()));
        }
        provenance.insert(path, provenance_json(field.source));
    }
    let fragment = format!(
        "\"settings\":{},\"provenance\":{},\"locked\":{}",
        Value::Object(settings),
        Value::Object(provenance),
        Value::Array(locked)
    );
    Ok(Built {
        hash,
        fragment,
        served,
        audit_key,
    })
}

/// How the audit key spells a source: the texts it has always hashed, so that devices keep
/// their keys across upgrades (a new key re-audits every device once).
const fn source_tag(source: ServedSource) -> &'static str {
    match source {
        ServedSource::Policy => "policy",
        ServedSource::Device => "device",
        ServedSource::Unset => "unset",
    }
}

/// The audit key of a set of served fields (see [`Built::audit_key`]).
pub fn served_digest(served: &BTreeMap<String, ServedField>) -> String {
    let mut hasher = Sha256::new();
    for (path, field) in served {
        let line = format!(
            "{path}\t{}\t{}\t{:?}\t{:?}\t{}\n",
            field.fingerprint.as_deref().unwrap_or("-"),
            source_tag(field.source),
            field.policy_id,
            field.policy_version,
            field.locked
        );
        hasher.update(line.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Where one setting comes from, as the device protocol states it.
fn provenance_json(source: Option<Source>) -> Value {
    match source {
        Some(Source::Policy(p)) => json!({
            "source": "policy",
            "policy_id": p.id.0,
            "policy_name": p.name,
            "version": p.version,
        }),
        Some(Source::Device) => json!({"source": "device"}),
        None => json!({"source": "unset"}),
    }
}
