//! Tenant value objects.

use super::FieldError;

/// Display name of an MSP organisation: 1–100 characters, trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        parse_display_text(field, raw, 100).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Trimmed human text of bounded length without control characters.
pub(crate) fn parse_display_text(field: &str, raw: &str, max_chars: usize) -> Result<String, FieldError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(FieldError::new(field, "required", "must not be empty"));
    }
    if text.chars().count() > max_chars {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("must be at most {max_chars} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "invalid_characters",
            "must not contain control characters",
        ));
    }
    Ok(text.to_owned())
}

/// An MSP organisation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: super::TenantId,
    pub name: String,
    pub version: i32,
    /// How often the tenant's devices pull, in seconds (4 hours by default).
    pub pull_interval_seconds: u32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_accepts_ordinary_names() {
        assert_eq!(
            TenantName::parse("name", "  Acme MSP ").unwrap().as_str(),
            "Acme MSP"
        );
    }

    #[test]
    fn rejects_empty_long_and_control_characters() {
        assert_eq!(TenantName::parse("name", "   ").unwrap_err().code, "required");
        assert_eq!(
            TenantName::parse("name", &"x".repeat(101)).unwrap_err().code,
            "too_long"
        );
        assert_eq!(
            TenantName::parse("name", "a\u{0007}b").unwrap_err().code,
            "invalid_characters"
        );
    }
}
