//! `Debug` views that hide secrets, for types that carry setting values as a client sent them
//! (in clear, before they are sealed). Anything that can reach a log line goes through these.

use super::catalog::Catalog;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

pub const REDACTED: &str = "<redacted>";

/// Setting values by path, with the value of every secret field hidden.
pub struct RedactedValues<'a>(pub &'a BTreeMap<String, Value>);

impl fmt::Debug for RedactedValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let catalog = Catalog::get();
        f.debug_map()
            .entries(self.0.iter().map(|(path, value)| {
                let shown: &dyn fmt::Debug = if catalog.is_secret(path) { &REDACTED } else { value };
                (path, shown)
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_hidden_and_the_rest_shown() {
        let values: BTreeMap<String, Value> = [
            ("connectwise.private_key".to_owned(), json!("TOP-SECRET-1")),
            ("connectwise.site".to_owned(), json!("na.example")),
        ]
        .into_iter()
        .collect();
        let shown = format!("{:?}", RedactedValues(&values));
        assert!(!shown.contains("TOP-SECRET-1"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("na.example"),
            "{shown}"
        );
    }
}
