//! The settings catalogue: every field a policy or a device can hold, as data.
//!
//! Values live in the database as JSON keyed by path, so adding a field or an event class is a
//! change to this file, not a migration. A second PSA would add its own namespace here.

use super::FieldError;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

/// Who may provide a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Policies provide it; devices inherit it.
    Managed,
    /// Only set per device, never inherited (e.g. which customer a device bills).
    Device,
}

/// What a ConnectWise reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    Company,
    Agreement,
    Addition,
    Board,
    Status,
}

/// The type of a field's value and how it is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Bool,
    /// A ConnectWise host name or https base URL, normalised to `host[:port]`.
    Site,
    /// Free text limited to `charset`, `1..=max_chars` long.
    Text {
        max_chars: usize,
        charset: Charset,
    },
    /// `{id, name}`: the ConnectWise id and the display name the operator picked.
    Reference(ReferenceKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Letters and digits only (API keys).
    Alphanumeric,
    /// Letters, digits, `_`, `-` and `.` (ConnectWise company ids).
    Identifier,
    /// Any printable character except white space (secrets).
    Printable,
}

impl Charset {
    fn allows(self, c: char) -> bool {
        match self {
            Charset::Alphanumeric => c.is_ascii_alphanumeric(),
            Charset::Identifier => c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'),
            Charset::Printable => !c.is_whitespace() && !c.is_control(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Charset::Alphanumeric => "letters and digits",
            Charset::Identifier => "letters, digits, `_`, `-` and `.`",
            Charset::Printable => "printable characters without spaces",
        }
    }
}

/// One entry of the catalogue.
#[derive(Debug, Clone)]
pub struct FieldDef {
    /// Dotted path, e.g. `ticketing.events.failed_backup.service_board`.
    pub path: String,
    pub field_type: FieldType,
    pub scope: Scope,
    /// Write-only and encrypted at rest; only the device itself ever receives it in clear.
    pub secret: bool,
    pub display_name: String,
    pub help: String,
    /// What a device does when the field is unset.
    pub when_unset: &'static str,
}

/// A device alert type that can open ConnectWise tickets.
#[derive(Debug, Clone, Copy)]
pub struct EventClass {
    pub key: &'static str,
    pub display_name: &'static str,
}

pub const EVENT_CLASSES: &[EventClass] = &[
    EventClass {
        key: "agent_status",
        display_name: "Agent Status",
    },
    EventClass {
        key: "boot_vm_check",
        display_name: "Boot VM Check",
    },
    EventClass {
        key: "disk_usage",
        display_name: "Disk Usage",
    },
    EventClass {
        key: "failed_backup",
        display_name: "Failed Backup",
    },
    EventClass {
        key: "missed_backup",
        display_name: "Missed Backup",
    },
    EventClass {
        key: "successful_backup",
        display_name: "Successful Backup",
    },
    EventClass {
        key: "pool_status",
        display_name: "Pool Status",
    },
    EventClass {
        key: "replication",
        display_name: "Replication",
    },
];

/// Fields that only make sense together: the ConnectWise credentials.
pub const CREDENTIAL_FIELDS: [&str; 4] = [
    "connectwise.site",
    "connectwise.company_id",
    "connectwise.public_key",
    "connectwise.private_key",
];

/// The device-scoped billing fields that `billing.enabled` needs.
const BILLING_FIELDS: [&str; 3] = ["billing.company", "billing.agreement", "billing.addition"];

pub struct Catalog {
    fields: Vec<FieldDef>,
    index: HashMap<String, usize>,
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::build);

fn field(
    path: impl Into<String>,
    field_type: FieldType,
    scope: Scope,
    display_name: impl Into<String>,
    help: impl Into<String>,
    when_unset: &'static str,
) -> FieldDef {
    FieldDef {
        path: path.into(),
        field_type,
        scope,
        secret: false,
        display_name: display_name.into(),
        help: help.into(),
        when_unset,
    }
}

impl Catalog {
    pub fn get() -> &'static Catalog {
        &CATALOG
    }

    fn build() -> Self {
        use FieldType::*;
        use Scope::*;
        let mut fields = vec![
            field(
                "connectwise.enabled",
                Bool,
                Device,
                "Enable ConnectWise integration",
                "The device must enable the integration itself the first time.",
                "integration disabled",
            ),
            field(
                "connectwise.site",
                Site,
                Managed,
                "Site",
                "Your ConnectWise site, e.g. na.myconnectwise.net.",
                "integration not configured",
            ),
            field(
                "connectwise.company_id",
                Text {
                    max_chars: 64,
                    charset: Charset::Identifier,
                },
                Managed,
                "Company",
                "The company id you sign in to ConnectWise with.",
                "integration not configured",
            ),
            field(
                "connectwise.public_key",
                Text {
                    max_chars: 64,
                    charset: Charset::Alphanumeric,
                },
                Managed,
                "API Key",
                "Public key of the ConnectWise API member.",
                "integration not configured",
            ),
            FieldDef {
                secret: true,
                ..field(
                    "connectwise.private_key",
                    Text {
                        max_chars: 256,
                        charset: Charset::Printable,
                    },
                    Managed,
                    "API Secret",
                    "Private key of the ConnectWise API member. Write-only.",
                    "integration not configured",
                )
            },
            field(
                "ticketing.service_ticket_company",
                Reference(ReferenceKind::Company),
                Device,
                "Service Ticket Company",
                "The ConnectWise company tickets of this device are opened for.",
                "no tickets are opened",
            ),
        ];
        for class in EVENT_CLASSES {
            let prefix = format!("ticketing.events.{}", class.key);
            let name = class.display_name;
            fields.push(field(
                format!("{prefix}.enabled"),
                Bool,
                Managed,
                format!("{name}: open tickets"),
                format!("Open a ConnectWise ticket for {name} alerts."),
                "no tickets for this event class",
            ));
            fields.push(field(
                format!("{prefix}.service_board"),
                Reference(ReferenceKind::Board),
                Managed,
                format!("{name}: service board"),
                format!("The service board {name} tickets are opened on."),
                "no tickets for this event class",
            ));
            fields.push(field(
                format!("{prefix}.new_status"),
                Reference(ReferenceKind::Status),
                Managed,
                format!("{name}: New status"),
                "Status of a newly opened ticket; must belong to the service board.",
                "no tickets for this event class",
            ));
            fields.push(field(
                format!("{prefix}.closed_status"),
                Reference(ReferenceKind::Status),
                Managed,
                format!("{name}: Closed status"),
                "Status a ticket is set to when the alert resolves; a closed status of the board.",
                "no tickets for this event class",
            ));
        }
        fields.extend([
            field(
                "billing.enabled",
                Bool,
                Device,
                "Enable billing integration",
                "The device updates the agreement addition with its storage in GB.",
                "billing disabled",
            ),
            field(
                "billing.company",
                Reference(ReferenceKind::Company),
                Device,
                "Billing company",
                "The customer this device is billed to.",
                "billing disabled",
            ),
            field(
                "billing.agreement",
                Reference(ReferenceKind::Agreement),
                Device,
                "Agreement",
                "The agreement holding the monthly fixed billing for this device.",
                "billing disabled",
            ),
            field(
                "billing.addition",
                Reference(ReferenceKind::Addition),
                Device,
                "Addition",
                "The addition whose quantity the device sets to its storage in GB.",
                "billing disabled",
            ),
        ]);
        let index = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.path.clone(), i))
            .collect();
        Self { fields, index }
    }

    pub fn fields(&self) -> &[FieldDef] {
        &self.fields
    }

    pub fn field(&self, path: &str) -> Option<&FieldDef> {
        self.index.get(path).map(|&i| &self.fields[i])
    }

    pub fn is_secret(&self, path: &str) -> bool {
        self.field(path).is_some_and(|f| f.secret)
    }

    /// The error for a path that is not a setting, suggesting the nearest one.
    pub fn unknown(&self, request_field: impl Into<String>, path: &str) -> FieldError {
        let hint = match super::suggest::nearest(path, self.fields.iter().map(|f| f.path.as_str())) {
            Some(near) => format!("did you mean `{near}`? "),
            None => String::new(),
        };
        FieldError::new(
            request_field,
            "unknown_setting",
            format!("`{path}` is not a setting; {hint}see GET /api/v1/settings/catalog"),
        )
    }

    /// A managed field, or the reason `path` cannot be set by a policy. `request_field` names
    /// the field in the request for the error.
    pub fn managed_field(&self, request_field: &str, path: &str) -> Result<&FieldDef, FieldError> {
        match self.field(path) {
            None => Err(self.unknown(request_field, path)),
            Some(def) if def.scope == Scope::Device => Err(FieldError::new(
                request_field,
                "device_scoped_setting",
                format!(
                    "`{path}` is set per device (it differs on every device) and cannot come from a policy"
                ),
            )),
            Some(def) => Ok(def),
        }
    }

    /// Validates one raw value and returns it normalised. For secrets the result is the
    /// plaintext string, to be sealed by the caller.
    pub fn validate(&self, request_field: &str, def: &FieldDef, raw: &Value) -> Result<Value, FieldError> {
        let invalid = |code: &'static str, message: String| FieldError::new(request_field, code, message);
        match def.field_type {
            FieldType::Bool => match raw {
                Value::Bool(_) => Ok(raw.clone()),
                _ => Err(invalid("invalid_type", "must be true or false".into())),
            },
            FieldType::Site => {
                let text = raw
                    .as_str()
                    .ok_or_else(|| invalid("invalid_type", "must be a string".into()))?;
                normalise_site(text)
                    .map(Value::String)
                    .map_err(|message| invalid("invalid_site", message))
            }
            FieldType::Text { max_chars, charset } => {
                let text = raw
                    .as_str()
                    .ok_or_else(|| invalid("invalid_type", "must be a string".into()))?;
                let text = text.trim();
                if text.is_empty() {
                    return Err(invalid("required", "must not be empty".into()));
                }
                if text.chars().count() > max_chars {
                    return Err(invalid(
                        "too_long",
                        format!("must be at most {max_chars} characters"),
                    ));
                }
                if !text.chars().all(|c| charset.allows(c)) {
                    return Err(invalid(
                        "invalid_characters",
                        format!("may contain only {}", charset.describe()),
                    ));
                }
                Ok(Value::String(text.to_owned()))
            }
            FieldType::Reference(_) => {
                validate_reference(raw).map_err(|message| invalid("invalid_reference", message))
            }
        }
    }

    /// Rules across fields, checked on a resolved set of values (a policy with its ancestors,
    /// or a device's effective config): credentials come together, an enabled event class has
    /// a board and two different statuses, enabled billing names what it bills.
    pub fn check_consistency(&self, values: &BTreeMap<String, Value>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let present = |path: &str| values.get(path).is_some_and(|v| !v.is_null());
        if CREDENTIAL_FIELDS.iter().any(|p| present(p)) {
            for path in CREDENTIAL_FIELDS.iter().filter(|p| !present(p)) {
                errors.push(FieldError::new(
                    *path,
                    "required_with",
                    "the ConnectWise site, company, API key and API secret are needed together",
                ));
            }
        }
        for class in EVENT_CLASSES {
            let path = |leaf: &str| format!("ticketing.events.{}.{leaf}", class.key);
            if values.get(&path("enabled")) != Some(&Value::Bool(true)) {
                continue;
            }
            for leaf in ["service_board", "new_status", "closed_status"] {
                if !present(&path(leaf)) {
                    errors.push(FieldError::new(
                        path(leaf),
                        "required_when_enabled",
                        format!("{} tickets are enabled, so this is required", class.display_name),
                    ));
                }
            }
            let id_of = |leaf: &str| {
                values
                    .get(&path(leaf))
                    .and_then(|v| v.get("id"))
                    .and_then(Value::as_i64)
            };
            if let (Some(new), Some(closed)) = (id_of("new_status"), id_of("closed_status"))
                && new == closed
            {
                errors.push(FieldError::new(
                    path("closed_status"),
                    "statuses_must_differ",
                    "the Closed status must differ from the New status",
                ));
            }
        }
        if values.get("billing.enabled") == Some(&Value::Bool(true)) {
            for path in BILLING_FIELDS.iter().filter(|p| !present(p)) {
                errors.push(FieldError::new(
                    *path,
                    "required_when_enabled",
                    "billing is enabled, so this is required",
                ));
            }
        }
        errors
    }
}

/// `na.myconnectwise.net`, `https://na.myconnectwise.net/` or `https://cw.example.com:8443`
/// become `host[:port]`, lower-cased. Anything that is not plainly an https site is refused:
/// other schemes, credentials, paths, queries and fragments.
pub fn normalise_site(raw: &str) -> Result<String, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    let rest = match text.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
        Some((scheme, _)) => return Err(format!("must use https, not `{scheme}`")),
        None => text,
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if tail.contains(['?', '#']) {
        return Err("must not contain a query or fragment".into());
    }
    if !(tail.is_empty() || tail == "/") {
        return Err("must be the site's address only; the API path is discovered".into());
    }
    if authority.contains('@') {
        return Err("must not contain credentials; use the API key fields".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("`{port}` is not a port number"))?;
            if port == 0 {
                return Err("the port must not be 0".into());
            }
            (host, Some(port))
        }
        None => (authority, None),
    };
    let host = host.to_ascii_lowercase();
    if !is_host_name(&host) {
        return Err(format!("`{host}` is not a valid host name"));
    }
    Ok(match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn validate_reference(raw: &Value) -> Result<Value, String> {
    let object = raw
        .as_object()
        .ok_or("must be an object {\"id\": …, \"name\": …}")?;
    if let Some(extra) = object.keys().find(|k| !matches!(k.as_str(), "id" | "name")) {
        return Err(format!(
            "has an unknown key `{extra}`; only `id` and `name` are allowed"
        ));
    }
    let id = object
        .get("id")
        .and_then(Value::as_i64)
        .filter(|id| (1..=i64::from(i32::MAX)).contains(id))
        .ok_or("`id` must be a positive integer (the ConnectWise id)")?;
    let name = object
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().count() <= 100 && !n.chars().any(char::is_control))
        .ok_or("`name` must be the display name, 1–100 characters")?;
    Ok(serde_json::json!({"id": id, "name": name}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> &'static Catalog {
        Catalog::get()
    }

    fn check(path: &str, raw: Value) -> Result<Value, FieldError> {
        let def = catalog().field(path).unwrap();
        catalog().validate("value", def, &raw)
    }

    #[test]
    fn catalogue_has_every_event_class_with_four_fields() {
        assert_eq!(EVENT_CLASSES.len(), 8);
        for class in EVENT_CLASSES {
            for leaf in ["enabled", "service_board", "new_status", "closed_status"] {
                let def = catalog()
                    .field(&format!("ticketing.events.{}.{leaf}", class.key))
                    .unwrap();
                assert_eq!(def.scope, Scope::Managed);
            }
        }
        assert!(catalog().field("connectwise.private_key").unwrap().secret);
        assert_eq!(catalog().fields().iter().filter(|f| f.secret).count(), 1);
        let device: Vec<&str> = catalog()
            .fields()
            .iter()
            .filter(|f| f.scope == Scope::Device)
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(
            device,
            vec![
                "connectwise.enabled",
                "ticketing.service_ticket_company",
                "billing.enabled",
                "billing.company",
                "billing.agreement",
                "billing.addition"
            ]
        );
    }

    #[test]
    fn sites_are_normalised() {
        for (raw, expected) in [
            ("na.myconnectwise.net", "na.myconnectwise.net"),
            ("  NA.MyConnectWise.net ", "na.myconnectwise.net"),
            ("https://na.myconnectwise.net", "na.myconnectwise.net"),
            ("HTTPS://na.myconnectwise.net/", "na.myconnectwise.net"),
            ("https://cw.example.com:8443", "cw.example.com:8443"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
        ] {
            assert_eq!(normalise_site(raw).as_deref(), Ok(expected), "{raw}");
        }
    }

    #[test]
    fn bad_sites_are_refused_with_a_reason() {
        for (raw, reason) in [
            ("http://na.myconnectwise.net", "https"),
            ("file:///etc/passwd", "https"),
            ("https://user:pass@na.myconnectwise.net", "credentials"),
            (
                "https://na.myconnectwise.net/v4_6_release/apis/3.0",
                "address only",
            ),
            ("https://na.myconnectwise.net/?x=1", "query"),
            ("https://na.myconnectwise.net#frag", "query or fragment"),
            ("na.myconnectwise.net:99999", "port"),
            ("na.myconnectwise.net:0", "port"),
            ("bad_host.example", "host name"),
            ("-bad.example", "host name"),
            ("a..b", "host name"),
            ("", "empty"),
        ] {
            let error = normalise_site(raw).unwrap_err();
            assert!(error.contains(reason), "{raw}: {error}");
        }
    }

    #[test]
    fn values_are_type_checked_and_normalised() {
        assert_eq!(
            check("ticketing.events.failed_backup.enabled", json!(true)),
            Ok(json!(true))
        );
        assert_eq!(
            check("ticketing.events.failed_backup.enabled", json!("yes"))
                .unwrap_err()
                .code,
            "invalid_type"
        );
        assert_eq!(
            check("connectwise.company_id", json!(" acme_corp ")),
            Ok(json!("acme_corp"))
        );
        assert_eq!(
            check("connectwise.company_id", json!("acme corp"))
                .unwrap_err()
                .code,
            "invalid_characters"
        );
        assert_eq!(
            check("connectwise.company_id", json!("")).unwrap_err().code,
            "required"
        );
        assert_eq!(
            check("connectwise.company_id", json!("x".repeat(65)))
                .unwrap_err()
                .code,
            "too_long"
        );
        assert_eq!(
            check("connectwise.public_key", json!("abc-123"))
                .unwrap_err()
                .code,
            "invalid_characters"
        );
        assert_eq!(
            check("connectwise.private_key", json!("has space"))
                .unwrap_err()
                .code,
            "invalid_characters"
        );
        assert_eq!(
            check("connectwise.site", json!(5)).unwrap_err().code,
            "invalid_type"
        );
        assert_eq!(
            check("connectwise.site", json!("http://x.example"))
                .unwrap_err()
                .code,
            "invalid_site"
        );
    }

    #[test]
    fn references_need_a_positive_id_and_a_name() {
        let board = "ticketing.events.failed_backup.service_board";
        assert_eq!(
            check(board, json!({"id": 7, "name": " Help Desk "})),
            Ok(json!({"id": 7, "name": "Help Desk"}))
        );
        for bad in [
            json!(7),
            json!({"id": 0, "name": "x"}),
            json!({"id": -1, "name": "x"}),
            json!({"id": "7", "name": "x"}),
            json!({"id": 7}),
            json!({"id": 7, "name": ""}),
            json!({"id": 7, "name": "x", "extra": 1}),
            json!({"id": 3_000_000_000i64, "name": "x"}),
        ] {
            assert_eq!(
                check(board, bad.clone()).unwrap_err().code,
                "invalid_reference",
                "{bad}"
            );
        }
    }

    #[test]
    fn device_scoped_and_unknown_fields_cannot_come_from_a_policy() {
        let error = catalog().managed_field(
            "set.ticketing.service_ticket_company",
            "ticketing.service_ticket_company",
        );
        assert_eq!(error.unwrap_err().code, "device_scoped_setting");
        assert_eq!(
            catalog().managed_field("x", "connectwise.nope").unwrap_err().code,
            "unknown_setting"
        );
        assert!(catalog().managed_field("x", "connectwise.site").is_ok());
    }

    fn values(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn credentials_come_together() {
        let errors = catalog().check_consistency(&values(&[("connectwise.site", json!("a.example"))]));
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "connectwise.company_id",
                "connectwise.public_key",
                "connectwise.private_key"
            ]
        );
        assert!(errors.iter().all(|e| e.code == "required_with"));
        let complete = values(&[
            ("connectwise.site", json!("a.example")),
            ("connectwise.company_id", json!("acme")),
            ("connectwise.public_key", json!("abc")),
            ("connectwise.private_key", json!({"sealed": true})),
        ]);
        assert!(catalog().check_consistency(&complete).is_empty());
        assert!(catalog().check_consistency(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn an_enabled_event_class_needs_a_board_and_two_different_statuses() {
        let p = |leaf: &str| format!("ticketing.events.disk_usage.{leaf}");
        let enabled_only = values(&[(&p("enabled"), json!(true))]);
        let errors = catalog().check_consistency(&enabled_only);
        assert_eq!(errors.len(), 3);
        assert!(errors.iter().all(|e| e.code == "required_when_enabled"));

        let same_status = values(&[
            (&p("enabled"), json!(true)),
            (&p("service_board"), json!({"id": 1, "name": "Help Desk"})),
            (&p("new_status"), json!({"id": 5, "name": "New"})),
            (&p("closed_status"), json!({"id": 5, "name": "New"})),
        ]);
        let errors = catalog().check_consistency(&same_status);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].field.as_str(), errors[0].code),
            (p("closed_status").as_str(), "statuses_must_differ")
        );

        // A disabled class may keep half a configuration.
        let disabled = values(&[
            (&p("enabled"), json!(false)),
            (&p("new_status"), json!({"id": 5, "name": "New"})),
        ]);
        assert!(catalog().check_consistency(&disabled).is_empty());
    }

    #[test]
    fn enabled_billing_needs_company_agreement_and_addition() {
        let errors = catalog().check_consistency(&values(&[("billing.enabled", json!(true))]));
        assert_eq!(errors.len(), 3);
    }
}
