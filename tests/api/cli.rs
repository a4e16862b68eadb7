//! The command line's admin tasks on a real database: key rotation and policy documents.

use crate::helpers::{SERVER_ADMIN, Server, TestDb, contains_bytes, gmp_command};
use crate::policies::{SECRET, seed_settings};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use gmp::secrets::{PassphraseBox, key_id};
use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

const PASSPHRASE: &str = "a long export passphrase";

fn env_with_key(key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GMP_BOOTSTRAP_ADMIN_EMAIL", SERVER_ADMIN.0.to_owned()),
        ("GMP_BOOTSTRAP_ADMIN_PASSWORD", SERVER_ADMIN.1.to_owned()),
        ("GMP_MASTER_KEY", key.to_owned()),
    ]
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn run(db: &TestDb, env: &[(&'static str, String)], args: &[&str]) -> String {
    let output = gmp_command(db, &as_refs(env)).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "gmp {args:?}: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Every stored policy version's values, as the database holds them now.
async fn stored_values(db: &TestDb) -> String {
    let conn = sea_orm::Database::connect(db.binary_url()).await.unwrap();
    let rows = conn
        .query_all_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT setting_values FROM policy_versions",
        ))
        .await
        .unwrap();
    conn.close().await.unwrap();
    rows.iter()
        .map(|row| row.try_get::<String>("", "setting_values").unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn rotating_the_master_key_reseals_every_secret() {
    let db = TestDb::fresh().await;
    let (old_key, new_key): ([u8; 32], [u8; 32]) = (rand::random(), rand::random());
    let old_env = env_with_key(&BASE64.encode(old_key));
    let server = Server::start(&db, &as_refs(&old_env));
    let signed = server.sign_in().await;
    let saved = signed
        .client
        .patch(&signed.policy_url)
        .bearer_auth(&signed.token)
        .header("if-match", "\"1\"")
        .json(&seed_settings())
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::OK);
    assert!(server.terminate().success());
    assert!(contains_bytes(&db.dump(), &key_id(&old_key)));

    let mut rotate_env = env_with_key(&BASE64.encode(new_key));
    rotate_env.push(("GMP_PREVIOUS_MASTER_KEYS", BASE64.encode(old_key)));
    let output = run(&db, &rotate_env, &["keys", "rotate"]);
    assert!(output.contains("re-encrypted 1 secrets"), "{output}");
    let stored = stored_values(&db).await;
    assert!(
        !stored.contains(&key_id(&old_key)),
        "no secret is left under the old key"
    );
    assert!(stored.contains(&key_id(&new_key)));
    assert!(
        run(&db, &rotate_env, &["keys", "rotate"]).contains("re-encrypted 0 secrets"),
        "idempotent"
    );

    // The old key is gone from the configuration, and the secret still opens.
    let new_env = env_with_key(&BASE64.encode(new_key));
    let server = Server::start(&db, &as_refs(&new_env));
    let signed = server.sign_in().await;
    let document: Value = signed
        .client
        .post(format!("{}/export", signed.policy_url))
        .bearer_auth(&signed.token)
        .json(&json!({"passphrase": PASSPHRASE}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sealed: PassphraseBox = serde_json::from_value(document["secrets"].clone()).unwrap();
    let opened: Value = serde_json::from_slice(&sealed.open(PASSPHRASE).unwrap()).unwrap();
    assert_eq!(opened["connectwise.private_key"], SECRET);
    assert!(server.terminate().success());
}

#[tokio::test]
async fn policies_export_and_import_from_the_command_line() {
    let db = TestDb::fresh().await;
    let env = env_with_key(&BASE64.encode(rand::random::<[u8; 32]>()));
    let server = Server::start(&db, &as_refs(&env));
    let signed = server.sign_in().await;
    let policy: Value = signed
        .client
        .patch(&signed.policy_url)
        .bearer_auth(&signed.token)
        .header("if-match", "\"1\"")
        .json(&seed_settings())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: Value = signed
        .client
        .get(server.url("/api/v1/me"))
        .bearer_auth(&signed.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(server.terminate().success());
    let tenant = me["tenant"]["id"].as_str().unwrap();
    let id = policy["id"].as_str().unwrap();

    let passphrase_file = db.dir.path().join("passphrase");
    std::fs::write(&passphrase_file, format!("{PASSPHRASE}\n")).unwrap();
    let passphrase_arg = passphrase_file.to_str().unwrap();
    let exported = run(
        &db,
        &env,
        &[
            "policy",
            "export",
            "--tenant",
            tenant,
            "--policy",
            id,
            "--passphrase-file",
            passphrase_arg,
        ],
    );
    let document: Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(document["values"]["connectwise.site"], "na.myconnectwise.invalid");
    assert!(document["secrets"].is_object() && !exported.contains(SECRET));

    let file = db.dir.path().join("policy.json");
    std::fs::write(&file, &exported).unwrap();
    let file_arg = file.to_str().unwrap();
    let dry = run(
        &db,
        &env,
        &[
            "policy",
            "import",
            "--tenant",
            tenant,
            "--policy",
            id,
            "--file",
            file_arg,
            "--passphrase-file",
            passphrase_arg,
            "--dry-run",
        ],
    );
    assert!(dry.contains("dry run: nothing changed"), "{dry}");
    let real = run(
        &db,
        &env,
        &[
            "policy",
            "import",
            "--tenant",
            tenant,
            "--policy",
            id,
            "--file",
            file_arg,
            "--passphrase-file",
            passphrase_arg,
        ],
    );
    assert!(real.contains("saved version 3"), "{real}");
}
