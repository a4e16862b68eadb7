//! The README documents every error code and configuration key the code has.

const README: &str = include_str!("../../README.md");

#[test]
fn readme_lists_every_error_code_with_its_status() {
    for code in gmp::error::Code::ALL {
        let row = format!("| `{}` | {} |", code.as_str(), code.status());
        assert!(README.contains(&row), "README's error table lacks {row}");
    }
}

#[test]
fn readme_lists_every_configuration_key() {
    for key in gmp::config::KEYS {
        assert!(
            README.contains(&format!("| `{key}` |")),
            "README's configuration table lacks `{key}`"
        );
    }
}
