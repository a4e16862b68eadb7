//! Operator value objects: roles, emails and passwords.

use super::FieldError;
use std::fmt;
use std::str::FromStr;

/// What an operator may do inside its tenant. Ordered: each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything of the tenant, changes nothing.
    Viewer,
    /// Also edits policies, devices and enrollment tokens.
    Editor,
    /// Also manages the tenant's operators.
    Admin,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// True when this role includes everything `required` may do.
    pub fn includes(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role `{other}`")),
        }
    }
}

/// A normalised (trimmed, lower-cased) email address; the operator's login name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let email = raw.trim().to_lowercase();
        let invalid = |message: &str| FieldError::new(field, "invalid_email", message);
        if email.is_empty() || email.len() > 254 {
            return Err(invalid("must be an email address of at most 254 characters"));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid("must contain `@`"));
        };
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return Err(invalid("must look like name@example.com"));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("must not contain spaces or control characters"));
        }
        if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return Err(invalid("has a malformed domain"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password an operator chooses. Bounded on both sides: too short is weak, too long makes
/// hashing a denial-of-service lever.
#[derive(Clone, PartialEq, Eq)]
pub struct NewPassword(String);

impl NewPassword {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_BYTES: usize = 1024;

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        if raw.chars().count() < Self::MIN_CHARS {
            return Err(FieldError::new(
                field,
                "too_short",
                format!("must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(FieldError::new(
                field,
                "too_long",
                format!("must be at most {} bytes", Self::MAX_BYTES),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword([redacted])")
    }
}

/// An operator as the rest of the system sees it (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: super::OperatorId,
    pub tenant_id: super::TenantId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    /// May create and list tenants. Only the platform's own operators have it.
    pub platform_admin: bool,
    pub version: i32,
    /// Access tokens issued under an older epoch no longer work: bumped when the operator's
    /// sessions must end (password, role, sign-out, deletion).
    pub session_epoch: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_what_they_include() {
        assert!(Role::Admin.includes(Role::Editor));
        assert!(Role::Editor.includes(Role::Viewer));
        assert!(Role::Editor.includes(Role::Editor));
        assert!(!Role::Viewer.includes(Role::Editor));
        assert!(!Role::Editor.includes(Role::Admin));
    }

    #[test]
    fn role_round_trips_through_its_name() {
        for role in [Role::Viewer, Role::Editor, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("owner".parse::<Role>().is_err());
    }

    #[test]
    fn email_is_normalised() {
        assert_eq!(
            Email::parse("email", "  Ops@Example.COM ").unwrap().as_str(),
            "ops@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in [
            "",
            "no-at-sign",
            "@example.com",
            "a@",
            "a@b@c",
            "a b@example.com",
            "a@.example",
            "a@example..com",
        ] {
            let error = Email::parse("email", bad).unwrap_err();
            assert_eq!(error.code, "invalid_email", "{bad:?} should be rejected");
            assert_eq!(error.field, "email");
        }
    }

    #[test]
    fn password_length_is_bounded() {
        assert_eq!(
            NewPassword::parse("password", "short").unwrap_err().code,
            "too_short"
        );
        assert_eq!(
            NewPassword::parse("password", &"x".repeat(1025))
                .unwrap_err()
                .code,
            "too_long"
        );
        assert!(NewPassword::parse("password", "correct horse battery").is_ok());
    }

    #[test]
    fn password_debug_never_shows_the_password() {
        let password = NewPassword::parse("password", "correct horse battery").unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }
}
