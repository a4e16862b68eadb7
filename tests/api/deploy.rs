//! The files in `deploy/` cannot run here (no container engine, no cluster, no systemd), so
//! this checks what can be checked: they parse, refer to real paths, binaries, routes and
//! configuration keys.

use serde_yaml::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

use serde::Deserialize;

fn spec_paths() -> Vec<String> {
    let spec = serde_json::to_value(gmp::http::spec()).unwrap();
    spec["paths"].as_object().unwrap().keys().cloned().collect()
}

#[test]
fn every_yaml_file_parses() {
    let mut files = vec![root().join("deploy/compose.yaml")];
    for entry in std::fs::read_dir(root().join("deploy/k8s")).unwrap() {
        files.push(entry.unwrap().path());
    }
    for file in &files {
        let docs = yaml_documents(file);
        assert!(!docs.is_empty(), "{} is empty", file.display());
    }
    assert!(files.len() >= 7);
}

#[test]
fn the_image_build_copies_real_paths_and_builds_real_binaries() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let mut copies = 0;
    for line in dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(
                root().join(source).exists(),
                "Dockerfile copies `{source}`, which does not exist"
            );
            copies += 1;
        }
    }
    assert!(copies >= 3);
    for binary in ["gmp", "gmp-device-sim"] {
        assert!(
            dockerfile.contains(&format!("--bin {binary}")),
            "{binary} is not built"
        );
        assert!(
            cargo.contains(&format!("name = \"{binary}\"")),
            "{binary} is not a binary of the package"
        );
        assert!(dockerfile.contains(&format!("target/release/{binary}")));
    }
    assert!(dockerfile.contains("USER 10001"), "the runtime image is not root");
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("\"healthcheck\""));
}

#[test]
fn kubernetes_runs_three_probed_replicas_after_a_migration_job() {
    let deployment = &yaml_documents(&root().join("deploy/k8s/deployment.yaml"))[0];
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let paths = spec_paths();
    for probe in ["readinessProbe", "livenessProbe"] {
        let path = container[probe]["httpGet"]["path"].as_str().unwrap();
        assert!(paths.iter().any(|p| p == path), "{probe} {path} is not a route");
    }
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    // The metrics port is the one the ConfigMap binds, and the Service does not expose it.
    let configmap = &yaml_documents(&root().join("deploy/k8s/configmap.yaml"))[0];
    let metrics_bind = configmap["data"]["GMP_METRICS_BIND"].as_str().unwrap();
    let metrics_port: u64 = metrics_bind.rsplit(':').next().unwrap().parse().unwrap();
    let ports = container["ports"].as_sequence().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "metrics" && p["containerPort"] == metrics_port)
    );
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.io/port"],
        metrics_port.to_string().as_str()
    );
    let service = &yaml_documents(&root().join("deploy/k8s/service.yaml"))[0];
    assert_eq!(service["spec"]["ports"].as_sequence().unwrap().len(), 1);
    // Sessions live in the database: no replica needs to see a client again.
    assert_eq!(service["spec"]["sessionAffinity"], "None");
    assert!(container["resources"]["requests"]["cpu"].is_string());
    let refs: Vec<&str> = container["envFrom"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| {
            e["configMapRef"]["name"]
                .as_str()
                .or(e["secretRef"]["name"].as_str())
        })
        .collect();
    assert_eq!(refs, ["gmp-config", "gmp-secrets"]);
    let pdb = &yaml_documents(&root().join("deploy/k8s/pdb.yaml"))[0];
    assert_eq!(pdb["kind"], "PodDisruptionBudget");
    let job = &yaml_documents(&root().join("deploy/k8s/migrate-job.yaml"))[0];
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"],
        Value::from(vec!["migrate", "up"])
    );
    let secret = &yaml_documents(&root().join("deploy/k8s/secret.yaml"))[0];
    for key in ["GMP_JWT_SECRET", "GMP_MASTER_KEY", "GMP_DATABASE_URL"] {
        assert!(secret["stringData"][key].is_string(), "the Secret lacks {key}");
    }
    // Every GMP_* variable the manifests set is a real configuration key.
    let config = &yaml_documents(&root().join("deploy/k8s/configmap.yaml"))[0];
    let names = config["data"]
        .as_mapping()
        .unwrap()
        .keys()
        .chain(secret["stringData"].as_mapping().unwrap().keys());
    let env: Vec<(String, String)> = names
        .map(|k| (k.as_str().unwrap().to_owned(), "1".to_owned()))
        .collect();
    assert_only_known_keys(&env);
}

/// Loading fails on an unknown key; anything else (like a bad value) is fine here.
fn assert_only_known_keys(env: &[(String, String)]) {
    for (name, value) in env {
        if let Err(error) = gmp::config::Config::load(None, [(name.clone(), value.clone())]) {
            assert!(
                !error.to_string().contains("unknown configuration key"),
                "{error}"
            );
        }
    }
}

#[test]
fn compose_runs_postgres_two_replicas_and_a_balancer() {
    let compose = &yaml_documents(&root().join("deploy/compose.yaml"))[0];
    let services = compose["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(names, ["postgres", "gmp1", "gmp2", "lb", "prometheus"]);
    let env: Vec<(String, String)> = compose["x-gmp"]["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap_or("1").to_owned(),
            )
        })
        .collect();
    assert_only_known_keys(&env);
    assert_eq!(compose["x-gmp"]["build"]["dockerfile"], "deploy/Dockerfile");
    let nginx = std::fs::read_to_string(root().join("deploy/nginx.conf")).unwrap();
    assert!(nginx.contains("server gmp1:8080") && nginx.contains("server gmp2:8080"));
    assert!(
        !["ip_hash", "hash ", "sticky"].iter().any(|s| nginx.contains(s)),
        "no sticky balancing: the web UI's sessions live in the database"
    );

    // Prometheus scrapes each replica's metrics listener, which is not published.
    let metrics_bind = compose["x-gmp"]["environment"]["GMP_METRICS_BIND"]
        .as_str()
        .unwrap();
    let port = metrics_bind.rsplit(':').next().unwrap();
    assert!(compose["services"]["gmp1"]["ports"].is_null());
    let mount = compose["services"]["prometheus"]["volumes"][0].as_str().unwrap();
    let source = mount.split(':').next().unwrap();
    let scrape = &yaml_documents(&root().join("deploy").join(source))[0];
    let targets = &scrape["scrape_configs"][0]["static_configs"][0]["targets"];
    assert_eq!(
        targets,
        &Value::from(vec![format!("gmp1:{port}"), format!("gmp2:{port}")])
    );
}

/// The value compose passes for `${NAME:-default}`, when `NAME` is not set.
fn compose_value(value: &str) -> &str {
    value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .and_then(|v| v.split_once(":-"))
        .map_or(value, |(_, default)| default)
}

#[test]
fn the_keys_shipped_in_deploy_files_are_refused() {
    let compose = &yaml_documents(&root().join("deploy/compose.yaml"))[0];
    let secret = &yaml_documents(&root().join("deploy/k8s/secret.yaml"))[0];
    let shipped = [&compose["x-gmp"]["environment"], &secret["stringData"]];
    for env in shipped {
        for (variable, key) in [
            ("GMP_JWT_SECRET", "`jwt_secret`"),
            ("GMP_MASTER_KEY", "`master_key`"),
        ] {
            let value = compose_value(env[variable].as_str().unwrap());
            // The other key is a good one, so the refusal is this key's.
            let mut vars = vec![
                (
                    "GMP_JWT_SECRET".to_owned(),
                    crate::helpers::test_jwt_secret().to_owned(),
                ),
                (
                    "GMP_MASTER_KEY".to_owned(),
                    crate::helpers::test_master_key().to_owned(),
                ),
            ];
            vars.retain(|(name, _)| name != variable);
            vars.push((variable.to_owned(), value.to_owned()));
            let config = gmp::config::Config::load(None, vars).unwrap();
            let error = config.load_keys().unwrap_err().to_string();
            assert!(error.contains(key), "{variable}={value}: {error}");
        }
    }
}

#[test]
fn the_example_configuration_loads() {
    let config =
        gmp::config::Config::load(Some(&root().join("deploy/gmp.example.toml")), Vec::new()).unwrap();
    assert_eq!(config.bind, "0.0.0.0:8080");
}

#[test]
fn the_systemd_unit_runs_gmp_hardened() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/gmp.service")).unwrap();
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| l.split_once('=').unwrap_or_else(|| panic!("not key=value: {l}")))
        .collect();
    let get = |key: &str| settings.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    assert_eq!(
        get("ExecStart"),
        Some("/usr/local/bin/gmp --config /etc/gmp/gmp.toml serve")
    );
    for (key, value) in [
        ("NoNewPrivileges", "true"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "true"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(get(key), Some(value), "{key}");
    }
    assert_eq!(get("User"), Some("gmp"));
}
