//! Policies: named sets of setting values and locks, arranged in a tree per tenant.

use super::{FieldError, PolicyId};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

/// How deep the tree may go: the root and four levels below it.
pub const MAX_DEPTH: usize = 5;
/// The root policy every tenant starts with.
pub const ROOT_POLICY_NAME: &str = "Default";

/// A secret as stored: sealed bytes plus an identity that stays the same until an operator sets
/// a new value, so versions can tell "changed" from "re-encrypted" without decrypting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHandle {
    pub id: Uuid,
    pub changed_at: DateTime<Utc>,
    pub sealed: Sealed,
}

/// AEAD output: which key, the nonce and the ciphertext, base64-encoded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sealed {
    pub kid: String,
    pub nonce: String,
    pub ciphertext: String,
}

/// One stored setting value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingValue {
    Plain(Value),
    Secret(SecretHandle),
}

impl SettingValue {
    /// Equal for history purposes: plain values by content, secrets by identity.
    pub fn same_as(&self, other: &SettingValue) -> bool {
        match (self, other) {
            (SettingValue::Plain(a), SettingValue::Plain(b)) => a == b,
            (SettingValue::Secret(a), SettingValue::Secret(b)) => a.id == b.id,
            _ => false,
        }
    }

    /// What an operator may see: plain values, and for secrets only that one is set and when.
    pub fn masked(&self) -> Value {
        match self {
            SettingValue::Plain(value) => value.clone(),
            SettingValue::Secret(handle) => serde_json::json!({"set": true, "changed_at": handle.changed_at}),
        }
    }
}

/// The versioned content of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyContent {
    pub name: String,
    pub description: String,
    pub values: BTreeMap<String, SettingValue>,
    pub locks: BTreeSet<String>,
}

/// A policy at its current version, as a node of its tenant's tree.
#[derive(Debug, Clone)]
pub struct PolicyNode {
    pub id: PolicyId,
    pub parent_id: Option<PolicyId>,
    pub version: i32,
    pub content: PolicyContent,
}

/// A policy's identity at one version: what provenance points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRef {
    pub id: PolicyId,
    pub name: String,
    pub version: i32,
}

impl PolicyNode {
    pub fn reference(&self) -> PolicyRef {
        PolicyRef {
            id: self.id,
            name: self.content.name.clone(),
            version: self.version,
        }
    }
}

/// Why a change to the tree is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeError {
    /// A field set here is locked by an ancestor.
    LockedByAncestor { path: String, locked_by: PolicyRef },
    /// Invalid structure: unknown parent, a cycle, too deep.
    Invalid(FieldError),
}

/// All policies of one tenant.
#[derive(Debug, Clone, Default)]
pub struct PolicyTree {
    nodes: HashMap<PolicyId, PolicyNode>,
}

impl PolicyTree {
    pub fn new(nodes: impl IntoIterator<Item = PolicyNode>) -> Self {
        Self {
            nodes: nodes.into_iter().map(|n| (n.id, n)).collect(),
        }
    }

    pub fn get(&self, id: PolicyId) -> Option<&PolicyNode> {
        self.nodes.get(&id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &PolicyNode> {
        self.nodes.values()
    }

    /// Replaces (or adds) a node, e.g. with a proposed new version before it is saved.
    pub fn put(&mut self, node: PolicyNode) {
        self.nodes.insert(node.id, node);
    }

    /// The policy and its ancestors, root first. Stops at a cycle or a missing parent, which the
    /// tree rules never let in.
    pub fn chain(&self, id: PolicyId) -> Vec<&PolicyNode> {
        let mut chain = Vec::new();
        let mut next = self.nodes.get(&id);
        while let Some(node) = next {
            if chain.iter().any(|n: &&PolicyNode| n.id == node.id) || chain.len() > MAX_DEPTH * 4 {
                break;
            }
            chain.push(node);
            next = node.parent_id.and_then(|p| self.nodes.get(&p));
        }
        chain.reverse();
        chain
    }

    pub fn children(&self, id: PolicyId) -> impl Iterator<Item = &PolicyNode> {
        self.nodes.values().filter(move |n| n.parent_id == Some(id))
    }

    /// The policy's descendants, nearest first.
    pub fn descendants(&self, id: PolicyId) -> Vec<PolicyId> {
        let mut found = Vec::new();
        let mut frontier = vec![id];
        while let Some(current) = frontier.pop() {
            let mut children: Vec<PolicyId> = self.children(current).map(|c| c.id).collect();
            children.sort();
            for child in children {
                if !found.contains(&child) && child != id {
                    found.push(child);
                    frontier.push(child);
                }
            }
        }
        found
    }

    /// Levels in the subtree below and including `id` (a leaf has height 1).
    fn height(&self, id: PolicyId) -> usize {
        1 + self.children(id).map(|c| self.height(c.id)).max().unwrap_or(0)
    }

    /// The topmost strict ancestor of `id` that locks `path`.
    pub fn lock_holder(&self, id: PolicyId, path: &str) -> Option<&PolicyNode> {
        let chain = self.chain(id);
        chain[..chain.len().saturating_sub(1)]
            .iter()
            .copied()
            .find(|n| n.content.locks.contains(path))
    }

    /// Checks that `id` may hang under `parent`: the parent exists, no cycle, not too deep.
    pub fn check_parent(&self, id: PolicyId, parent: PolicyId) -> Result<(), FieldError> {
        let invalid = |code, message: &str| FieldError::new("parent_id", code, message);
        if !self.nodes.contains_key(&parent) {
            return Err(invalid("unknown_policy", "no such policy"));
        }
        if parent == id || self.descendants(id).contains(&parent) {
            return Err(invalid(
                "cycle",
                "a policy cannot be placed under itself or its own descendant",
            ));
        }
        let depth = self.chain(parent).len()
            + if self.nodes.contains_key(&id) {
                self.height(id)
            } else {
                1
            };
        if depth > MAX_DEPTH {
            return Err(invalid(
                "too_deep",
                &format!("policies nest at most {MAX_DEPTH} levels deep, root included"),
            ));
        }
        Ok(())
    }

    /// Refuses values a strict ancestor has locked.
    pub fn check_locks(&self, id: PolicyId) -> Result<(), TreeError> {
        let Some(node) = self.nodes.get(&id) else {
            return Ok(());
        };
        for path in node.content.values.keys() {
            if let Some(holder) = self.lock_holder(id, path) {
                return Err(TreeError::LockedByAncestor {
                    path: path.clone(),
                    locked_by: holder.reference(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn node(
        parent: Option<PolicyId>,
        name: &str,
        values: &[(&str, Value)],
        locks: &[&str],
    ) -> PolicyNode {
        PolicyNode {
            id: PolicyId::new(),
            parent_id: parent,
            version: 1,
            content: PolicyContent {
                name: name.into(),
                description: String::new(),
                values: values
                    .iter()
                    .map(|(k, v)| (k.to_string(), SettingValue::Plain(v.clone())))
                    .collect(),
                locks: locks.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    /// root → a → b → c → d: five levels.
    fn line() -> (PolicyTree, Vec<PolicyId>) {
        let root = node(None, "Default", &[], &[]);
        let mut ids = vec![root.id];
        let mut nodes = vec![root];
        for name in ["a", "b", "c", "d"] {
            let n = node(Some(*ids.last().unwrap()), name, &[], &[]);
            ids.push(n.id);
            nodes.push(n);
        }
        (PolicyTree::new(nodes), ids)
    }

    #[test]
    fn chains_run_root_first_and_descendants_are_found() {
        let (tree, ids) = line();
        let chain: Vec<PolicyId> = tree.chain(ids[3]).iter().map(|n| n.id).collect();
        assert_eq!(chain, ids[..4]);
        assert_eq!(tree.descendants(ids[1]), ids[2..]);
        assert!(tree.descendants(ids[4]).is_empty());
    }

    #[test]
    fn depth_is_limited_to_five_levels() {
        let (mut tree, ids) = line();
        let error = tree.check_parent(PolicyId::new(), ids[4]).unwrap_err();
        assert_eq!(error.code, "too_deep");
        assert!(tree.check_parent(PolicyId::new(), ids[3]).is_ok());

        // A second branch root → e → f; moving b (with c and d below it, height 3) under f
        // would make 3 + 3 = 6 levels, under e 2 + 3 = 5.
        let e = node(Some(ids[0]), "e", &[], &[]);
        let f = node(Some(e.id), "f", &[], &[]);
        let (e_id, f_id) = (e.id, f.id);
        tree.put(e);
        tree.put(f);
        assert_eq!(tree.check_parent(ids[2], f_id).unwrap_err().code, "too_deep");
        assert!(tree.check_parent(ids[2], e_id).is_ok());
    }

    #[test]
    fn cycles_and_unknown_parents_are_refused() {
        let (tree, ids) = line();
        assert_eq!(tree.check_parent(ids[1], ids[3]).unwrap_err().code, "cycle");
        assert_eq!(tree.check_parent(ids[1], ids[1]).unwrap_err().code, "cycle");
        assert_eq!(
            tree.check_parent(ids[1], PolicyId::new()).unwrap_err().code,
            "unknown_policy"
        );
    }

    #[test]
    fn a_locked_field_cannot_be_set_below_and_the_topmost_lock_is_named() {
        let root = node(
            None,
            "Default",
            &[("connectwise.site", json!("a.example"))],
            &["connectwise.site"],
        );
        let middle = node(Some(root.id), "Middle", &[], &["connectwise.site"]);
        let leaf = node(
            Some(middle.id),
            "Leaf",
            &[("connectwise.site", json!("b.example"))],
            &[],
        );
        let (root_ref, leaf_id) = (root.reference(), leaf.id);
        let tree = PolicyTree::new([root, middle, leaf]);
        assert_eq!(
            tree.check_locks(leaf_id),
            Err(TreeError::LockedByAncestor {
                path: "connectwise.site".into(),
                locked_by: root_ref
            })
        );
    }

    #[test]
    fn a_policy_may_set_what_it_locks_itself() {
        let root = node(
            None,
            "Default",
            &[("connectwise.site", json!("a.example"))],
            &["connectwise.site"],
        );
        let id = root.id;
        assert!(PolicyTree::new([root]).check_locks(id).is_ok());
    }

    #[test]
    fn secrets_compare_by_identity_and_are_masked() {
        let handle = SecretHandle {
            id: Uuid::now_v7(),
            changed_at: Utc::now(),
            sealed: Sealed {
                kid: "k1".into(),
                nonce: "n".into(),
                ciphertext: "c1".into(),
            },
        };
        let mut rotated = handle.clone();
        rotated.sealed.ciphertext = "c2".into();
        assert!(SettingValue::Secret(handle.clone()).same_as(&SettingValue::Secret(rotated)));
        let mut replaced = handle.clone();
        replaced.id = Uuid::now_v7();
        assert!(!SettingValue::Secret(handle.clone()).same_as(&SettingValue::Secret(replaced)));
        let masked = SettingValue::Secret(handle).masked();
        assert_eq!(masked["set"], true);
        assert!(masked.get("ciphertext").is_none() && !masked.to_string().contains("c1"));
    }
}
