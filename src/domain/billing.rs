//! Billing usage: the storage an appliance reports for its ConnectWise addition, what a
//! device's billing settings name, and the rule that billing is for appliances.
//!
//! The appliance sets the quantity of its agreement's addition to the storage in GB used on all
//! vaults by all its protected systems; systems replicated to several vaults count once per
//! vault. So a device reports one total and, optionally, the same total split by vault.

use super::device::DeviceKind;
use super::policy::SettingValue;
use super::{DeviceId, FieldError};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The largest storage a report may carry: 100 PB. More is a unit mix-up, not a fleet.
pub const MAX_STORAGE_GB: f64 = 100_000_000.0;
/// The most vaults one report may list.
pub const MAX_VAULTS: usize = 100;
/// The longest vault name or id.
pub const MAX_VAULT_CHARS: usize = 200;

/// The billing settings of a device, in the catalogue.
pub const BILLING_PATHS: [&str; 4] = [
    "billing.enabled",
    "billing.company",
    "billing.agreement",
    "billing.addition",
];

/// Storage on one vault.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VaultUsage {
    /// The vault's name or id, as the appliance knows it.
    pub vault: String,
    pub storage_gb: f64,
}

/// What a device reports under `billing`.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    /// The total over all vaults: the addition's quantity.
    pub storage_gb: f64,
    /// The same total by vault, when the device sends it.
    pub vaults: Option<Vec<VaultUsage>>,
}

/// A device's usage as recorded, and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub device_id: DeviceId,
    pub usage: Usage,
    pub at: DateTime<Utc>,
}

/// Storage is kept to the megabyte (three decimals of a GB), so totals add up exactly as shown.
pub fn round_gb(gb: f64) -> f64 {
    (gb * 1000.0).round() / 1000.0
}

fn storage(field: String, gb: f64) -> Result<f64, FieldError> {
    if !gb.is_finite() || gb < 0.0 {
        return Err(FieldError::new(
            field,
            "out_of_range",
            "must be a number of GB, 0 or more",
        ));
    }
    if gb > MAX_STORAGE_GB {
        return Err(FieldError::new(
            field,
            "out_of_range",
            format!("must be at most {MAX_STORAGE_GB} GB"),
        ));
    }
    Ok(round_gb(gb))
}

/// Checks a reported usage (fields named under `billing.`) and returns it with every figure
/// rounded to the megabyte. A breakdown must name each vault once and add up to the total.
pub fn validate_usage(raw: &Usage) -> Result<Usage, Vec<FieldError>> {
    let mut errors = Vec::new();
    let total = storage("billing.storage_gb".into(), raw.storage_gb).map_err(|e| errors.push(e));
    let mut vaults = None;
    if let Some(list) = &raw.vaults {
        if list.len() > MAX_VAULTS {
            errors.push(FieldError::new(
                "billing.vaults",
                "too_many",
                format!("at most {MAX_VAULTS} vaults"),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut checked = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().take(MAX_VAULTS).enumerate() {
            let field = |leaf: &str| format!("billing.vaults[{i}].{leaf}");
            let name = super::tenant::parse_display_text(&field("vault"), &entry.vault, MAX_VAULT_CHARS)
                .map_err(|e| errors.push(e));
            if let Ok(name) = &name
                && !seen.insert(name.clone())
            {
                errors.push(FieldError::new(
                    field("vault"),
                    "duplicate_vault",
                    format!("vault “{name}” is listed twice"),
                ));
            }
            let gb = storage(field("storage_gb"), entry.storage_gb).map_err(|e| errors.push(e));
            if let (Ok(vault), Ok(storage_gb)) = (name, gb) {
                checked.push(VaultUsage { vault, storage_gb });
            }
        }
        // Each figure is rounded on its own: allow their rounding, nothing more.
        let tolerance = 0.001 * (checked.len() as f64 + 1.0);
        let sum: f64 = checked.iter().map(|v| v.storage_gb).sum();
        if let Ok(total) = total
            && errors.is_empty()
            && (sum - total).abs() > tolerance
        {
            errors.push(FieldError::new(
                "billing.vaults",
                "breakdown_mismatch",
                format!(
                    "the vaults add up to {} GB but storage_gb is {total} GB; storage_gb is the total over all vaults",
                    round_gb(sum)
                ),
            ));
        }
        vaults = Some(checked);
    }
    match (errors.is_empty(), total) {
        (true, Ok(storage_gb)) => Ok(Usage { storage_gb, vaults }),
        _ => Err(errors),
    }
}

/// The report of a device that may not bill, or `None`.
pub fn usage_refused(kind: DeviceKind) -> Option<FieldError> {
    (kind == DeviceKind::Vault).then(|| {
        FieldError::new(
            "billing",
            "billing_not_for_vaults",
            "billing usage is reported by appliances; a vault does not bill ConnectWise",
        )
    })
}

/// Billing values an edit gives a vault: each is a `billing_not_for_vaults` error under
/// `prefix`. Billing is for appliances. Values the vault already had (from before this rule)
/// and `billing.enabled: false` pass, so any vault can be cleaned up.
pub fn vault_billing_errors(
    kind: DeviceKind,
    before: &BTreeMap<String, SettingValue>,
    after: &BTreeMap<String, SettingValue>,
    prefix: &str,
) -> Vec<FieldError> {
    if kind != DeviceKind::Vault {
        return Vec::new();
    }
    BILLING_PATHS
        .iter()
        .filter(|path| {
            let value = after.get(**path);
            value.is_some()
                && value != before.get(**path)
                && value != Some(&SettingValue::Plain(Value::Bool(false)))
        })
        .map(|path| {
            FieldError::new(
                format!("{prefix}{path}"),
                "billing_not_for_vaults",
                "billing is for appliances: a vault cannot enable billing or name a billing company, agreement or addition",
            )
        })
        .collect()
}

/// A ConnectWise record a setting names: its id and the name the operator picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub id: i64,
    pub name: String,
}

/// What an appliance with billing enabled bills: the addition of an agreement of a company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingTarget {
    pub company: Reference,
    pub agreement: Reference,
    pub addition: Reference,
}

impl BillingTarget {
    /// Devices billing the same addition of the same agreement and company share a key.
    pub fn key(&self) -> (i64, i64, i64) {
        (self.company.id, self.agreement.id, self.addition.id)
    }
}

fn reference(values: &BTreeMap<String, SettingValue>, path: &str) -> Option<Reference> {
    match values.get(path)? {
        SettingValue::Plain(v) => Some(Reference {
            id: v.get("id")?.as_i64()?,
            name: v.get("name")?.as_str()?.to_owned(),
        }),
        SettingValue::Secret(_) => None,
    }
}

/// What a device bills, from its device values (billing settings are device-scoped: no policy
/// provides them). `None` unless billing is enabled; enabled billing always names all three,
/// as saves check.
pub fn billing_target(values: &BTreeMap<String, SettingValue>) -> Option<BillingTarget> {
    if values.get("billing.enabled") != Some(&SettingValue::Plain(Value::Bool(true))) {
        return None;
    }
    Some(BillingTarget {
        company: reference(values, "billing.company")?,
        agreement: reference(values, "billing.agreement")?,
        addition: reference(values, "billing.addition")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vault(name: &str, gb: f64) -> VaultUsage {
        VaultUsage {
            vault: name.into(),
            storage_gb: gb,
        }
    }

    fn codes(errors: Vec<FieldError>) -> Vec<(String, &'static str)> {
        errors.into_iter().map(|e| (e.field, e.code)).collect()
    }

    #[test]
    fn usage_is_rounded_to_the_megabyte_and_its_breakdown_adds_up() {
        let usage = Usage {
            storage_gb: 120.50049,
            vaults: Some(vec![vault(" vault-1 ", 100.25), vault("vault-2", 20.2505)]),
        };
        let checked = validate_usage(&usage).unwrap();
        assert_eq!(checked.storage_gb, 120.5);
        assert_eq!(
            checked.vaults.unwrap(),
            vec![vault("vault-1", 100.25), vault("vault-2", 20.251)]
        );
        assert!(
            validate_usage(&Usage {
                storage_gb: 0.0,
                vaults: None
            })
            .is_ok()
        );
    }

    #[test]
    fn out_of_range_figures_and_bad_breakdowns_are_named() {
        for gb in [-0.5, f64::NAN, f64::INFINITY, MAX_STORAGE_GB * 2.0] {
            let errors = validate_usage(&Usage {
                storage_gb: gb,
                vaults: None,
            })
            .unwrap_err();
            assert_eq!(codes(errors), [("billing.storage_gb".to_owned(), "out_of_range")]);
        }
        let errors = validate_usage(&Usage {
            storage_gb: 10.0,
            vaults: Some(vec![vault("a", 5.0), vault("a", -1.0), vault("", 1.0)]),
        })
        .unwrap_err();
        assert_eq!(
            codes(errors),
            [
                ("billing.vaults[1].vault".to_owned(), "duplicate_vault"),
                ("billing.vaults[1].storage_gb".to_owned(), "out_of_range"),
                ("billing.vaults[2].vault".to_owned(), "required"),
            ]
        );
        let errors = validate_usage(&Usage {
            storage_gb: 10.0,
            vaults: Some(vec![vault("a", 5.0), vault("b", 4.0)]),
        })
        .unwrap_err();
        assert_eq!(
            codes(errors),
            [("billing.vaults".to_owned(), "breakdown_mismatch")]
        );
        let many = (0..=MAX_VAULTS).map(|i| vault(&format!("v{i}"), 0.0)).collect();
        let errors = validate_usage(&Usage {
            storage_gb: 0.0,
            vaults: Some(many),
        })
        .unwrap_err();
        assert_eq!(codes(errors), [("billing.vaults".to_owned(), "too_many")]);
    }

    fn values(pairs: &[(&str, Value)]) -> BTreeMap<String, SettingValue> {
        pairs
            .iter()
            .map(|(p, v)| ((*p).to_owned(), SettingValue::Plain(v.clone())))
            .collect()
    }

    #[test]
    fn vaults_cannot_take_new_billing_values() {
        let none = BTreeMap::new();
        let enabling = values(&[
            ("billing.enabled", json!(true)),
            ("billing.company", json!({"id": 1, "name": "A"})),
        ]);
        assert!(vault_billing_errors(DeviceKind::Appliance, &none, &enabling, "set.").is_empty());
        assert_eq!(
            codes(vault_billing_errors(DeviceKind::Vault, &none, &enabling, "set.")),
            [
                ("set.billing.enabled".to_owned(), "billing_not_for_vaults"),
                ("set.billing.company".to_owned(), "billing_not_for_vaults"),
            ]
        );
        let disabled = values(&[("billing.enabled", json!(false))]);
        assert!(vault_billing_errors(DeviceKind::Vault, &none, &disabled, "set.").is_empty());
        assert!(
            vault_billing_errors(DeviceKind::Vault, &enabling, &enabling, "set.").is_empty(),
            "values a vault already had do not block its other edits"
        );
    }

    #[test]
    fn only_enabled_billing_has_a_target() {
        let mut billing = values(&[
            ("billing.enabled", json!(true)),
            ("billing.company", json!({"id": 1, "name": "A"})),
            ("billing.agreement", json!({"id": 71, "name": "Backup"})),
            ("billing.addition", json!({"id": 501, "name": "GB"})),
        ]);
        assert_eq!(billing_target(&billing).unwrap().key(), (1, 71, 501));
        billing.insert("billing.enabled".into(), SettingValue::Plain(json!(false)));
        assert!(billing_target(&billing).is_none());
    }
}
