//! Master-key rotation covers every sealed value: after `gmp keys rotate` and a restart without
//! the old key, devices whose own values hold a secret still pull it.

use crate::helpers::{SERVER_ADMIN, Server, ServerSession, TestDb, gmp_command};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::StatusCode;
use serde_json::{Value, json};

const DEVICE_SECRET: &str = "DEVICE-OWN-PRIVATE-KEY-91c2";

/// A key with no pattern to it (the server refuses placeholder-looking keys).
fn key(seed: u8) -> String {
    let bytes: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(seed).rotate_left(3) ^ seed)
        .collect();
    BASE64.encode(bytes)
}

fn env(master: &str, previous: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("GMP_BOOTSTRAP_ADMIN_EMAIL", SERVER_ADMIN.0.to_owned()),
        ("GMP_BOOTSTRAP_ADMIN_PASSWORD", SERVER_ADMIN.1.to_owned()),
        ("GMP_MASTER_KEY", master.to_owned()),
    ];
    if let Some(previous) = previous {
        env.push(("GMP_PREVIOUS_MASTER_KEYS", previous.to_owned()));
    }
    env
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn pull(signed: &ServerSession, server: &Server, credential: &str) -> reqwest::Response {
    signed
        .client
        .get(server.url("/device/v1/config"))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn rotation_reseals_device_secrets_and_every_device_still_pulls() {
    let db = TestDb::fresh().await;
    let (old_key, new_key) = (key(11), key(97));
    let old_env = env(&old_key, None);
    let server = Server::start(&db, &refs(&old_env));
    let signed = server.sign_in().await;
    let token: Value = signed
        .client
        .post(server.url("/api/v1/enrollment-tokens"))
        .bearer_auth(&signed.token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let registered: Value = signed
        .client
        .post(server.url("/device/v1/register"))
        .json(
            &json!({"enrollment_token": token["token"], "kind": "appliance", "hardware_id": "HW-ROT",
                      "hostname": "rot.local", "software_version": "1"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_url = server.url(&format!(
        "/api/v1/devices/{}",
        registered["device_id"].as_str().unwrap()
    ));
    // The device carries its own ConnectWise credentials, the secret among them.
    let saved = signed
        .client
        .patch(&device_url)
        .bearer_auth(&signed.token)
        .header("if-match", "*")
        .json(&json!({"set": {
            "connectwise.site": "device.myconnectwise.invalid",
            "connectwise.company_id": "acme",
            "connectwise.public_key": "PUBLIC0123",
            "connectwise.private_key": DEVICE_SECRET,
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::OK, "{}", saved.text().await.unwrap());
    assert!(server.terminate().success());

    let output = gmp_command(&db, &refs(&env(&new_key, Some(&old_key))))
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        printed.contains("and 1 devices, re-encrypted 1 secrets"),
        "{printed}"
    );

    // Restarted without the old key: the device's secret still opens.
    let new_env = env(&new_key, None);
    let server = Server::start(&db, &refs(&new_env));
    let signed = server.sign_in().await;
    let credential = registered["credential"].as_str().unwrap();
    let pulled = pull(&signed, &server, credential).await;
    assert_eq!(pulled.status(), StatusCode::OK);
    let config: Value = pulled.json().await.unwrap();
    assert_eq!(config["settings"]["connectwise.private_key"], DEVICE_SECRET);
    assert!(server.terminate().success());
}
