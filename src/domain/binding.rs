//! A stored ConnectWise API secret is bound to the site and company it was entered with.
//!
//! The secret goes out as `Basic company+public:private` to the site. If the site (or the
//! company) could change while the secret stays, anyone allowed to edit a policy or a device
//! could send the stored secret to a host of their choosing, by the server's Test Connection or
//! by the devices themselves. So two rules hold for every policy and every device:
//!
//! 1. **One source.** The four credential fields resolve from the same place (one policy, or
//!    the device's own values) as the secret.
//! 2. **Re-entered on change.** A save that changes the site or the company where the secret is
//!    stored must enter the secret again.

use super::FieldError;
use super::catalog::CREDENTIAL_FIELDS;
use super::policy::SettingValue;
use super::resolve::Resolution;
use std::collections::BTreeMap;

pub const SECRET_FIELD: &str = "connectwise.private_key";

/// The fields the secret is bound to: a change to one of them needs the secret again.
const BOUND_FIELDS: [&str; 2] = ["connectwise.site", "connectwise.company_id"];

/// Rule 1 on a resolved configuration: every credential field that has a value comes from the
/// secret's source. Errors name the fields that come from elsewhere.
pub fn check_one_source(resolution: &Resolution) -> Vec<FieldError> {
    let Some(secret) = resolution.get(SECRET_FIELD).filter(|f| f.value.is_some()) else {
        return Vec::new();
    };
    CREDENTIAL_FIELDS
        .iter()
        .filter(|path| **path != SECRET_FIELD)
        .filter_map(|path| resolution.get(*path).map(|field| (*path, field)))
        .filter(|(_, field)| field.value.is_some() && field.source != secret.source)
        .map(|(path, _)| {
            FieldError::new(
                path,
                "credentials_split",
                "the ConnectWise site, company and API key must be set where the API secret is \
                 (the same policy, or the device's own values): set all four together",
            )
        })
        .collect()
}

/// Rule 2 on one holder's own values (a policy version, or a device's values): when the site or
/// the company changed but the secret is the one stored before, the secret must be entered
/// again. `prefix` names the request's field (`set.`).
pub fn check_reentered(
    before: &BTreeMap<String, SettingValue>,
    after: &BTreeMap<String, SettingValue>,
    prefix: &str,
) -> Vec<FieldError> {
    let (Some(old), Some(new)) = (before.get(SECRET_FIELD), after.get(SECRET_FIELD)) else {
        return Vec::new();
    };
    if !old.same_as(new) {
        return Vec::new();
    }
    let moved: Vec<&str> = BOUND_FIELDS
        .iter()
        .copied()
        .filter(|path| !same(before.get(*path), after.get(*path)))
        .collect();
    if moved.is_empty() {
        return Vec::new();
    }
    vec![FieldError::new(
        format!("{prefix}{SECRET_FIELD}"),
        "secret_reentry_required",
        format!(
            "the stored API secret was entered for another {}; enter the API secret again \
             with this change",
            moved
                .iter()
                .map(|p| if *p == "connectwise.site" {
                    "site"
                } else {
                    "company"
                })
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    )]
}

fn same(a: Option<&SettingValue>, b: Option<&SettingValue>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.same_as(b),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PolicyId;
    use crate::domain::policy::{PolicyRef, Sealed, SecretHandle};
    use crate::domain::resolve::{ResolvedField, Source};
    use chrono::Utc;
    use serde_json::json;
    use uuid::Uuid;

    fn secret() -> SettingValue {
        SettingValue::Secret(SecretHandle {
            id: Uuid::now_v7(),
            changed_at: Utc::now(),
            sealed: Sealed {
                kid: "k".into(),
                nonce: "n".into(),
                ciphertext: "c".into(),
            },
        })
    }

    fn plain(v: &str) -> SettingValue {
        SettingValue::Plain(json!(v))
    }

    fn values(pairs: Vec<(&str, SettingValue)>) -> BTreeMap<String, SettingValue> {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn from(source: Option<Source>, value: SettingValue) -> ResolvedField {
        ResolvedField {
            value: Some(value),
            source,
            locked_by: None,
        }
    }

    fn policy(name: &str) -> Option<Source> {
        Some(Source::Policy(PolicyRef {
            id: PolicyId(Uuid::from_u128(name.len() as u128)),
            name: name.into(),
            version: 1,
        }))
    }

    #[test]
    fn a_site_from_elsewhere_than_the_secret_is_refused() {
        let mut resolution = Resolution::new();
        resolution.insert(SECRET_FIELD.into(), from(policy("Default"), secret()));
        resolution.insert(
            "connectwise.company_id".into(),
            from(policy("Default"), plain("acme")),
        );
        resolution.insert(
            "connectwise.public_key".into(),
            from(policy("Default"), plain("pub")),
        );
        resolution.insert(
            "connectwise.site".into(),
            from(policy("Default"), plain("a.example")),
        );
        assert!(check_one_source(&resolution).is_empty());

        resolution.insert(
            "connectwise.site".into(),
            from(policy("Client A"), plain("evil.example")),
        );
        let errors = check_one_source(&resolution);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "connectwise.site");
        assert_eq!(errors[0].code, "credentials_split");

        resolution.insert(
            "connectwise.site".into(),
            from(Some(Source::Device), plain("evil.example")),
        );
        assert_eq!(check_one_source(&resolution)[0].field, "connectwise.site");
    }

    #[test]
    fn without_a_secret_nothing_is_bound() {
        let mut resolution = Resolution::new();
        resolution.insert(
            "connectwise.site".into(),
            from(policy("Client A"), plain("a.example")),
        );
        assert!(check_one_source(&resolution).is_empty());
    }

    #[test]
    fn moving_the_site_or_company_needs_the_secret_again() {
        let key = secret();
        let before = values(vec![
            ("connectwise.site", plain("a.example")),
            ("connectwise.company_id", plain("acme")),
            (SECRET_FIELD, key.clone()),
        ]);
        let mut after = before.clone();
        after.insert("connectwise.site".into(), plain("evil.example"));
        let errors = check_reentered(&before, &after, "set.");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "set.connectwise.private_key");
        assert_eq!(errors[0].code, "secret_reentry_required");

        let mut after = before.clone();
        after.insert("connectwise.company_id".into(), plain("other"));
        assert_eq!(check_reentered(&before, &after, "set.").len(), 1);

        let mut after = before.clone();
        after.remove("connectwise.site");
        assert_eq!(
            check_reentered(&before, &after, "set.").len(),
            1,
            "unset falls back elsewhere"
        );

        // Entered again with the change: allowed.
        let mut after = before.clone();
        after.insert("connectwise.site".into(), plain("b.example"));
        after.insert(SECRET_FIELD.into(), secret());
        assert!(check_reentered(&before, &after, "set.").is_empty());

        // Nothing bound changed: allowed.
        let mut after = before.clone();
        after.insert("connectwise.public_key".into(), plain("new"));
        assert!(check_reentered(&before, &after, "set.").is_empty());
    }
}
