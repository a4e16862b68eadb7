//! Configuration loading: layers, key names, value checks.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn environment_overrides_file_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gmp.toml");
    std::fs::write(
        &file,
        "bind = \"0.0.0.0:9000\"\nmax_body_bytes = 2048\nlog_level = \"debug\"\n",
    )
    .unwrap();
    let config = Config::load(
        Some(&file),
        env(&[("GMP_BIND", "127.0.0.1:7000"), ("PATH", "/bin")]),
    )
    .unwrap();
    assert_eq!(config.bind, "127.0.0.1:7000");
    assert_eq!(config.max_body_bytes, 2048);
    assert_eq!(config.log_level, "debug");
    assert_eq!(config.access_token_ttl_seconds, 900);
}

#[test]
fn unknown_keys_are_named_in_the_error() {
    let error = Config::load(None, env(&[("GMP_BINDD", "x")]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`bindd`") && error.contains("GMP_BINDD"),
        "{error}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gmp.toml");
    std::fs::write(&file, "databse_url = \"x\"\n").unwrap();
    let error = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
    assert!(
        error.contains("`databse_url`") && error.contains("gmp.toml"),
        "{error}"
    );
}

#[test]
fn every_listed_key_is_accepted() {
    for key in KEYS {
        let result = Config::default().set(key, "1".into(), "test");
        assert!(
            !matches!(result, Err(ConfigError::UnknownKey { .. })),
            "`{key}` is listed but not handled"
        );
    }
}

#[test]
fn numbers_out_of_range_are_refused_before_use() {
    for (key, value) in [
        ("GMP_RETENTION_DAYS", "18446744073709551615"),
        ("GMP_STALE_GRACE_SECONDS", "9223372036854775807"),
        ("GMP_ACCESS_TOKEN_TTL_SECONDS", "0"),
        ("GMP_WORKERS", "0"),
    ] {
        let error = Config::load(None, env(&[(key, value)])).unwrap_err().to_string();
        assert!(error.contains("out of range"), "{key}: {error}");
    }
    let config = Config::load(None, env(&[("GMP_RETENTION_DAYS", "30")])).unwrap();
    assert_eq!(config.retention_days, 30);
}

#[test]
fn bad_values_are_named_in_the_error() {
    let error = Config::load(None, env(&[("GMP_MAX_BODY_BYTES", "lots")]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("max_body_bytes") && error.contains("lots"),
        "{error}"
    );
    let error = Config::load(None, env(&[("GMP_LOG_FORMAT", "xml")]))
        .unwrap_err()
        .to_string();
    assert!(error.contains("log_format"), "{error}");
}

#[test]
fn trusted_proxies_are_addresses_or_ranges() {
    let config = Config::load(
        None,
        env(&[("GMP_TRUSTED_PROXIES", "10.0.0.5, 172.16.0.0/12,fd00::/8")]),
    )
    .unwrap();
    let [one, range, v6] = config.trusted_proxies[..] else {
        panic!("three entries")
    };
    assert!(one.contains("10.0.0.5".parse().unwrap()));
    assert!(!one.contains("10.0.0.6".parse().unwrap()));
    assert!(range.contains("172.31.255.1".parse().unwrap()));
    assert!(range.contains("::ffff:172.20.0.1".parse().unwrap()));
    assert!(!range.contains("172.32.0.1".parse().unwrap()));
    assert!(v6.contains("fd12::1".parse().unwrap()));
    assert!(!v6.contains("10.0.0.5".parse().unwrap()));
    assert!(
        IpRange::parse("0.0.0.0/0")
            .unwrap()
            .contains("203.0.113.9".parse().unwrap())
    );
    for bad in ["nginx", "10.0.0.0/33", "10.0.0.0/x"] {
        let error = Config::load(None, env(&[("GMP_TRUSTED_PROXIES", bad)]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("trusted_proxies"), "{error}");
    }
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let config = Config::load(
        None,
        env(&[
            ("GMP_DATABASE_URL", "postgres://gmp:hunter2@db/gmp"),
            ("GMP_JWT_SECRET", "jwt-secret-value-that-is-long-enough-0123"),
            ("GMP_BOOTSTRAP_ADMIN_PASSWORD", "bootstrap-password-value"),
        ]),
    )
    .unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"));
    assert!(!debug.contains("jwt-secret-value"));
    assert!(!debug.contains("bootstrap-password-value"));
    assert!(debug.contains("[redacted]"));
}
