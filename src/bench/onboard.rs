//! Onboarding through the real HTTP API: a tenant and an enrollment token made as the bootstrap
//! admin, then many clients at once each registering a device and making its first pull.

use super::load::{PULL_PATH, http_client};
use super::operator::sign_in;
use super::seed::root_settings;
use crate::auth::token;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// An enrollment token allows at most this many registrations.
pub const MAX_DEVICES: u32 = 100_000;

#[derive(Debug, Clone)]
pub struct OnboardOptions {
    pub base_url: String,
    pub admin_email: String,
    pub admin_password: String,
    pub devices: u32,
    pub clients: usize,
    /// Devices not started by then are not onboarded (the report says how many were).
    pub time_limit: Duration,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OnboardReport {
    pub devices: u32,
    /// Devices that registered (`201`) and got their config (`200`).
    pub onboarded: u64,
    pub seconds: f64,
    pub devices_per_second: f64,
    pub register_statuses: BTreeMap<u16, u64>,
    pub pull_statuses: BTreeMap<u16, u64>,
    /// Answers other than `201`/`200`, and requests without an answer.
    pub errors: u64,
}

#[derive(Default)]
struct Tally {
    onboarded: u64,
    register: BTreeMap<u16, u64>,
    pull: BTreeMap<u16, u64>,
    errors: u64,
}

async fn call(request: reqwest::RequestBuilder) -> Result<Value, String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let url = response.url().path().to_owned();
    let body: Value = response.json().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url}: {status}: {body}"));
    }
    Ok(body)
}

async fn post(
    client: &reqwest::Client,
    url: String,
    bearer: Option<&str>,
    body: &Value,
) -> Result<Value, String> {
    let mut request = client.post(&url).json(body);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    call(request).await
}

/// A new tenant and an enrollment token for `devices` registrations in it.
async fn enrollment_token(client: &reqwest::Client, options: &OnboardOptions) -> Result<String, String> {
    let base = options.base_url.trim_end_matches('/');
    let platform = sign_in(client, base, &options.admin_email, &options.admin_password).await?;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let email = format!("bench-admin-{run}@bench.test");
    let password = token::generate("");
    let tenant =
        json!({"name": format!("Onboarding {run}"), "admin": {"email": email, "password": password}});
    post(client, format!("{base}/api/v1/tenants"), Some(&platform), &tenant).await?;
    let admin = &sign_in(client, base, &email, &password).await?;
    // The same settings as a seeded tenant, so a first pull serves (and audits) a real config.
    let policies = call(client.get(format!("{base}/api/v1/policies")).bearer_auth(admin)).await?;
    let root = policies["items"]
        .as_array()
        .and_then(|items| items.iter().find(|p| p["parent_id"].is_null()))
        .and_then(|p| p["id"].as_str())
        .ok_or("no root policy")?;
    let settings = json!({"set": root_settings(), "comment": "ConnectWise integration"});
    let save = client
        // Bench sites are not real ConnectWise hosts: no reference check.
        .patch(format!("{base}/api/v1/policies/{root}?validate=false"))
        .bearer_auth(admin)
        .header("if-match", "*")
        .json(&settings);
    call(save).await?;
    let body = json!({"label": "benchmark onboarding", "max_uses": options.devices});
    let created = post(
        client,
        format!("{base}/api/v1/enrollment-tokens"),
        Some(admin),
        &body,
    )
    .await?;
    Ok(created["token"].as_str().ok_or("no enrollment token")?.to_owned())
}

/// Onboards `options.devices` devices with `options.clients` clients at once.
pub async fn run(options: &OnboardOptions) -> Result<OnboardReport, String> {
    if !(1..=MAX_DEVICES).contains(&options.devices) {
        return Err(format!("onboarding takes 1 to {MAX_DEVICES} devices"));
    }
    let client = http_client(options.clients);
    let enrollment = Arc::new(enrollment_token(&client, options).await?);
    let base = Arc::new(options.base_url.trim_end_matches('/').to_owned());
    let next = Arc::new(AtomicU32::new(0));
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let started = Instant::now();
    let deadline = started + options.time_limit;
    let total = options.devices;
    let workers: Vec<_> = (0..options.clients.max(1))
        .map(|_| {
            let (client, enrollment, base, next) =
                (client.clone(), enrollment.clone(), base.clone(), next.clone());
            let run_id = run_id.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total || Instant::now() >= deadline {
                        break tally;
                    }
                    onboard_one(
                        &client,
                        &base,
                        &enrollment,
                        &format!("ONB-{run_id}-{index}"),
                        &mut tally,
                    )
                    .await;
                }
            })
        })
        .collect();
    let mut report = OnboardReport {
        devices: options.devices,
        ..OnboardReport::default()
    };
    for worker in workers {
        let tally = worker.await.map_err(|e| e.to_string())?;
        report.onboarded += tally.onboarded;
        report.errors += tally.errors;
        for (status, n) in tally.register {
            *report.register_statuses.entry(status).or_default() += n;
        }
        for (status, n) in tally.pull {
            *report.pull_statuses.entry(status).or_default() += n;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.devices_per_second = report.onboarded as f64 / report.seconds.max(f64::EPSILON);
    Ok(report)
}

async fn onboard_one(
    client: &reqwest::Client,
    base: &str,
    enrollment: &str,
    hardware_id: &str,
    tally: &mut Tally,
) {
    let body = json!({
        "enrollment_token": enrollment,
        "kind": "appliance",
        "hardware_id": hardware_id,
        "hostname": format!("{}.local", hardware_id.to_lowercase()),
        "software_version": "12.4.1",
    });
    let registered = match client
        .post(format!("{base}/device/v1/register"))
        .json(&body)
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            *tally.register.entry(status).or_default() += 1;
            let body: Option<Value> = response.json().await.ok();
            match (status, body) {
                (201, Some(body)) => body["credential"].as_str().map(str::to_owned),
                _ => None,
            }
        }
        Err(_) => None,
    };
    let Some(credential) = registered else {
        tally.errors += 1;
        return;
    };
    match client
        .get(format!("{base}{PULL_PATH}"))
        .bearer_auth(&credential)
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            *tally.pull.entry(status).or_default() += 1;
            let complete = response.bytes().await.is_ok();
            if status == 200 && complete {
                tally.onboarded += 1;
            } else {
                tally.errors += 1;
            }
        }
        Err(_) => tally.errors += 1,
    }
}
