//! Resolution: what a device assigned to a policy gets, field by field, and where each value
//! comes from. Pure; the heart of inheritance.
//!
//! For each field, walk from the assigned policy up to the root: the first policy that sets it
//! provides it — unless an ancestor locks it, in which case the topmost locking policy decides
//! and nothing below it may (the value is the first one set at or above that policy). An
//! unlocked field may then be overridden by a device value; device-scoped fields come only from
//! device values.

use super::policy::{PolicyNode, PolicyRef, SettingValue};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Where an effective value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Policy(PolicyRef),
    Device,
}

/// One field of an effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedField {
    /// `None` when the field is locked but no policy at or above the lock sets it.
    pub value: Option<SettingValue>,
    pub source: Option<Source>,
    /// The topmost policy locking the field: descendants and devices cannot change it.
    pub locked_by: Option<PolicyRef>,
}

pub type Resolution = BTreeMap<String, ResolvedField>;

/// Resolves `chain` (the assigned policy and its ancestors, root first) with the device's own
/// values (empty for a policy's resolved view).
pub fn resolve(chain: &[&PolicyNode], device_values: &BTreeMap<String, SettingValue>) -> Resolution {
    let paths: BTreeSet<&String> = chain
        .iter()
        .flat_map(|node| node.content.values.keys().chain(node.content.locks.iter()))
        .chain(device_values.keys())
        .collect();

    let mut resolution = Resolution::new();
    for path in paths {
        let lock = chain.iter().position(|node| node.content.locks.contains(path));
        let searched = match lock {
            Some(locker) => &chain[..=locker],
            None => chain,
        };
        let provider = searched
            .iter()
            .rev()
            .find_map(|node| node.content.values.get(path).map(|v| (node, v)));
        let (mut value, mut source) = match provider {
            Some((node, value)) => (Some(value.clone()), Some(Source::Policy(node.reference()))),
            None => (None, None),
        };
        if lock.is_none()
            && let Some(device_value) = device_values.get(path)
        {
            value = Some(device_value.clone());
            source = Some(Source::Device);
        }
        resolution.insert(
            path.clone(),
            ResolvedField {
                value,
                source,
                locked_by: lock.map(|i| chain[i].reference()),
            },
        );
    }
    resolution
}

/// The resolved values as operators may see them (secrets masked), for rule checks and views.
pub fn masked_values(resolution: &Resolution) -> BTreeMap<String, Value> {
    resolution
        .iter()
        .filter_map(|(path, field)| field.value.as_ref().map(|v| (path.clone(), v.masked())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PolicyId;
    use crate::domain::policy::tests::node;
    use rand::Rng;
    use serde_json::json;

    const SITE: &str = "connectwise.site";
    const BOARD: &str = "ticketing.events.failed_backup.service_board";

    fn plain(value: Value) -> SettingValue {
        SettingValue::Plain(value)
    }

    fn value_of(resolution: &Resolution, path: &str) -> Option<Value> {
        resolution[path].value.as_ref().map(SettingValue::masked)
    }

    fn provider(resolution: &Resolution, path: &str) -> Option<PolicyId> {
        match &resolution[path].source {
            Some(Source::Policy(policy)) => Some(policy.id),
            _ => None,
        }
    }

    #[test]
    fn a_child_inherits_what_it_does_not_set() {
        let root = node(
            None,
            "Default",
            &[
                (SITE, json!("root.example")),
                (BOARD, json!({"id": 1, "name": "A"})),
            ],
            &[],
        );
        let child = node(
            Some(root.id),
            "Client",
            &[(BOARD, json!({"id": 2, "name": "B"}))],
            &[],
        );
        let resolution = resolve(&[&root, &child], &BTreeMap::new());
        assert_eq!(value_of(&resolution, SITE), Some(json!("root.example")));
        assert_eq!(provider(&resolution, SITE), Some(root.id));
        assert_eq!(value_of(&resolution, BOARD), Some(json!({"id": 2, "name": "B"})));
        assert_eq!(provider(&resolution, BOARD), Some(child.id));
        assert!(resolution.values().all(|f| f.locked_by.is_none()));
    }

    #[test]
    fn provenance_names_the_policy_version() {
        let mut root = node(None, "Default", &[(SITE, json!("root.example"))], &[]);
        root.version = 7;
        let resolution = resolve(&[&root], &BTreeMap::new());
        assert_eq!(resolution[SITE].source, Some(Source::Policy(root.reference())));
        let Some(Source::Policy(reference)) = &resolution[SITE].source else {
            unreachable!()
        };
        assert_eq!((reference.name.as_str(), reference.version), ("Default", 7));
    }

    #[test]
    fn the_nearest_setter_wins_and_removing_a_value_falls_back() {
        let root = node(None, "Default", &[(SITE, json!("root.example"))], &[]);
        let middle = node(Some(root.id), "Middle", &[(SITE, json!("middle.example"))], &[]);
        let mut leaf = node(Some(middle.id), "Leaf", &[(SITE, json!("leaf.example"))], &[]);
        assert_eq!(
            value_of(&resolve(&[&root, &middle, &leaf], &BTreeMap::new()), SITE),
            Some(json!("leaf.example"))
        );
        leaf.content.values.clear();
        let resolution = resolve(&[&root, &middle, &leaf], &BTreeMap::new());
        assert_eq!(value_of(&resolution, SITE), Some(json!("middle.example")));
        assert_eq!(provider(&resolution, SITE), Some(middle.id));
        let resolution = resolve(&[&root], &BTreeMap::new());
        assert_eq!(provider(&resolution, SITE), Some(root.id));
        assert!(resolve(&[&node(None, "Empty", &[], &[])], &BTreeMap::new()).is_empty());
    }

    #[test]
    fn the_topmost_lock_decides_even_over_values_set_below() {
        let root = node(None, "Default", &[(SITE, json!("root.example"))], &[SITE]);
        let middle = node(
            Some(root.id),
            "Middle",
            &[(SITE, json!("middle.example"))],
            &[SITE],
        );
        let leaf = node(Some(middle.id), "Leaf", &[(SITE, json!("leaf.example"))], &[]);
        let resolution = resolve(&[&root, &middle, &leaf], &BTreeMap::new());
        assert_eq!(value_of(&resolution, SITE), Some(json!("root.example")));
        assert_eq!(resolution[SITE].locked_by, Some(root.reference()));
    }

    #[test]
    fn a_lock_without_a_value_takes_the_first_value_at_or_above_it() {
        let root = node(None, "Default", &[(SITE, json!("root.example"))], &[]);
        let middle = node(Some(root.id), "Middle", &[], &[SITE]);
        let leaf = node(Some(middle.id), "Leaf", &[(SITE, json!("leaf.example"))], &[]);
        let resolution = resolve(&[&root, &middle, &leaf], &BTreeMap::new());
        assert_eq!(value_of(&resolution, SITE), Some(json!("root.example")));
        assert_eq!(resolution[SITE].locked_by, Some(middle.reference()));

        // Locked and set nowhere at or above the lock: locked unset.
        let root = node(None, "Default", &[], &[SITE]);
        let leaf = node(Some(root.id), "Leaf", &[(SITE, json!("leaf.example"))], &[]);
        let resolution = resolve(&[&root, &leaf], &BTreeMap::new());
        assert_eq!(resolution[SITE].value, None);
        assert_eq!(resolution[SITE].source, None);
        assert_eq!(resolution[SITE].locked_by, Some(root.reference()));
    }

    #[test]
    fn device_values_override_unlocked_fields_only() {
        let root = node(
            None,
            "Default",
            &[
                (SITE, json!("root.example")),
                (BOARD, json!({"id": 1, "name": "A"})),
            ],
            &[SITE],
        );
        let device: BTreeMap<String, SettingValue> = [
            (SITE.to_owned(), plain(json!("device.example"))),
            (BOARD.to_owned(), plain(json!({"id": 9, "name": "Local"}))),
            (
                "ticketing.service_ticket_company".to_owned(),
                plain(json!({"id": 3, "name": "Customer"})),
            ),
        ]
        .into();
        let resolution = resolve(&[&root], &device);
        assert_eq!(value_of(&resolution, SITE), Some(json!("root.example")));
        assert_eq!(
            value_of(&resolution, BOARD),
            Some(json!({"id": 9, "name": "Local"}))
        );
        assert_eq!(resolution[BOARD].source, Some(Source::Device));
        assert_eq!(
            resolution["ticketing.service_ticket_company"].source,
            Some(Source::Device)
        );
    }

    /// Random chains of up to five policies with random values and locks, checked against the
    /// rules stated in plain words.
    #[test]
    fn random_trees_obey_the_rules() {
        let mut rng = rand::rng();
        for _ in 0..2000 {
            let depth = rng.random_range(1..=5);
            let mut chain: Vec<PolicyNode> = Vec::new();
            for level in 0..depth {
                let mut values = Vec::new();
                let mut locks = Vec::new();
                if rng.random_bool(0.5) {
                    values.push((SITE, json!(format!("level{level}.example"))));
                }
                if rng.random_bool(0.25) {
                    locks.push(SITE);
                }
                chain.push(node(
                    chain.last().map(|n: &PolicyNode| n.id),
                    &format!("p{level}"),
                    &values,
                    &locks,
                ));
            }
            let device: BTreeMap<String, SettingValue> = if rng.random_bool(0.5) {
                [(SITE.to_owned(), plain(json!("device.example")))].into()
            } else {
                BTreeMap::new()
            };
            let refs: Vec<&PolicyNode> = chain.iter().collect();
            let resolution = resolve(&refs, &device);
            let sets = |n: &PolicyNode| n.content.values.contains_key(SITE);
            let topmost_lock = chain.iter().position(|n| n.content.locks.contains(SITE));

            let Some(field) = resolution.get(SITE) else {
                assert!(
                    !chain.iter().any(|n| sets(n) || n.content.locks.contains(SITE)) && device.is_empty()
                );
                continue;
            };
            assert_eq!(
                field.locked_by.as_ref().map(|r| r.id),
                topmost_lock.map(|i| chain[i].id)
            );
            match (&field.source, topmost_lock) {
                (Some(Source::Device), None) => assert!(!device.is_empty()),
                (Some(Source::Device), Some(_)) => panic!("a device overrode a locked field"),
                (Some(Source::Policy(p)), lock) => {
                    let at = chain.iter().position(|n| n.id == p.id).unwrap();
                    let limit = lock.unwrap_or(chain.len() - 1);
                    assert!(at <= limit, "value came from below the lock");
                    assert!(sets(&chain[at]));
                    assert!(
                        !chain[at + 1..=limit].iter().any(sets),
                        "a nearer setter was skipped"
                    );
                    assert!(
                        lock.is_some() || device.is_empty(),
                        "an unlocked device value was ignored"
                    );
                }
                (None, lock) => {
                    let limit = lock.expect("only a locked field may resolve to nothing");
                    assert!(!chain[..=limit].iter().any(sets));
                }
            }
        }
    }

    #[test]
    fn masked_values_hide_secrets() {
        use crate::domain::policy::{Sealed, SecretHandle};
        let mut root = node(None, "Default", &[(SITE, json!("root.example"))], &[]);
        root.content.values.insert(
            "connectwise.private_key".into(),
            SettingValue::Secret(SecretHandle {
                id: uuid::Uuid::now_v7(),
                changed_at: chrono::Utc::now(),
                sealed: Sealed {
                    kid: "k".into(),
                    nonce: "n".into(),
                    ciphertext: "SEALED".into(),
                },
            }),
        );
        let masked = masked_values(&resolve(&[&root], &BTreeMap::new()));
        assert_eq!(masked[SITE], json!("root.example"));
        assert_eq!(masked["connectwise.private_key"]["set"], true);
        assert!(!serde_json::to_string(&masked).unwrap().contains("SEALED"));
    }
}
