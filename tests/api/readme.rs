//! The README's walkthrough, run as written against a fresh server, and the README's links.
//!
//! Each `sh` block of the "Walkthrough" section runs in one bash session, in order, as a reader
//! would paste them. The first block starts the server: the test starts the real binary with the
//! same variables instead. `cargo run --release …` runs the binaries this test was built with,
//! through a `cargo` stand-in on the `PATH`, so the test needs no release build.

use crate::helpers::{Server, TestDb};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const README: &str = include_str!("../../README.md");

/// The `sh` blocks of the section under `heading`, in order.
fn sh_blocks(heading: &str) -> Vec<String> {
    let start = README
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("the README has a section {heading}"));
    let section = &README[start + heading.len() + 2..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("\n```").expect("a closed block");
        blocks.push(body[..close].to_owned());
        rest = &body[close + 4..];
    }
    blocks
}

/// `NAME='value' NAME2='value' cargo run --release -- serve` → the variables.
fn serve_variables(block: &str) -> Vec<(String, String)> {
    let command = block.trim();
    let prefix = command
        .strip_suffix("cargo run --release -- serve")
        .unwrap_or_else(|| panic!("the first block starts the server: {command}"));
    let mut variables = Vec::new();
    let mut rest = prefix.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("='").expect("NAME='value'");
        let (value, after) = after.split_once('\'').expect("a closing quote");
        variables.push((name.to_owned(), value.to_owned()));
        rest = after.trim();
    }
    variables
}

const CARGO_STAND_IN: &str = r#"#!/bin/sh
# Stands in for `cargo run --release [--bin NAME] -- ARGS`: runs the test's own build.
[ "$1" = run ] && [ "$2" = --release ] || { echo "unexpected: cargo $*" >&2; exit 97; }
shift 2
bin=gmp
if [ "$1" = --bin ]; then bin=$2; shift 2; fi
[ "$1" = -- ] && shift
exec "$WALKTHROUGH_BIN_DIR/$bin" "$@"
"#;

#[tokio::test]
async fn the_walkthrough_runs_as_written_on_a_fresh_start() {
    let blocks = sh_blocks("## Walkthrough");
    assert!(
        blocks.len() >= 8,
        "the walkthrough has its steps: {}",
        blocks.len()
    );
    let db = TestDb::fresh().await;
    let variables = serve_variables(&blocks[0]);
    assert!(
        variables
            .iter()
            .any(|(name, _)| name == "GMP_BOOTSTRAP_ADMIN_PASSWORD"),
        "the walkthrough chooses the admin's password"
    );
    let env: Vec<(&str, &str)> = variables.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let server = Server::start(&db, &env);

    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let cargo = bin.join("cargo");
    std::fs::write(&cargo, CARGO_STAND_IN).unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let built = Path::new(env!("CARGO_BIN_EXE_gmp")).parent().unwrap().to_owned();

    let script = blocks[1..].join("\n");
    let url = server.url("");
    let dir = work.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(dir)
            .env("SERVER", url.trim_end_matches('/'))
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()),
            )
            .env("WALKTHROUGH_BIN_DIR", built)
            .output()
            .expect("bash runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walkthrough failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server\n{}",
        server.output()
    );
    // What each step says it shows.
    for expected in [
        r#""tenant": "Acme MSP""#,
        r#""connectwise.private_key": {"#,
        r#""set": true"#,
        r#""changed": true"#,
        r#""field": "ticketing.events.failed_backup.enabled""#,
        r#""reassert": ["#,
        r#""ticketing.service_ticket_company": {"#,
        r#""registered": 4"#,
        r#""errors": 0"#,
    ] {
        assert!(
            stdout.contains(expected),
            "the output shows {expected}:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("privkey456") && !stderr.contains("privkey456"),
        "the secret is never shown to the operator"
    );
    assert!(
        work.path().join("gmp-device-sim.state.json").exists(),
        "the simulator kept its credentials"
    );
}

#[test]
fn the_readme_links_only_to_files_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut rest = README;
    let mut checked = 0;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let target = &after[..after.find(')').expect("a closed link")];
        rest = after;
        if target.starts_with('#') || target.starts_with("http") {
            continue;
        }
        let path = target.split('#').next().unwrap();
        assert!(!path.starts_with(".."), "{target} is outside the repository");
        assert!(root.join(path).exists(), "{target} does not exist");
        checked += 1;
    }
    assert!(checked >= 2, "the README links to files: {checked}");
}
