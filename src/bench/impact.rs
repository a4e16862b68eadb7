//! `gmp-bench impact`: how long the impact preview of a draft takes on a large fleet, through
//! the real server. A fleet is seeded (some devices with values of their own, some of those
//! overriding the changed field, so the preview has many groups to resolve), a draft on the
//! root policy changes a field every other device inherits, and
//! `GET /api/v1/policies/{id}/drafts/{draft_id}/impact` (the totals and the first page) is
//! timed against `gmp serve`, several times, on SQLite and PostgreSQL.

use super::load;
use super::operator::{create_editor, sign_in};
use super::run::{Servers, free_port, fresh_dir, on_engines, serve, server_env};
use super::seed::{self, OVERRIDDEN, SeedOptions};
use crate::config::Config;
use crate::db::repo::{device_groups, policies as policy_repo};
use crate::domain::audit::Actor;
use crate::services::drafts;
use crate::services::policy_edit::PolicyEdit;
use crate::state::AppState;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct ImpactOptions {
    pub servers: Servers,
    pub devices: u64,
    pub policies: u32,
    /// Every n-th device has values of its own (see [`SeedOptions::own_values_every`]).
    pub own_values_every: u64,
    /// Timed requests after the first (which is reported on its own).
    pub runs: usize,
    /// Devices per page of the preview.
    pub page: u64,
}

/// One engine's results. Times in milliseconds, measured by the client (the whole request).
#[derive(Debug, Serialize)]
pub struct ImpactReport {
    pub engine: String,
    pub devices: u64,
    pub seed_seconds: f64,
    /// Distinct (policy, values of their own) groups the preview resolves.
    pub groups: u64,
    pub devices_in_scope: u64,
    pub devices_changing: u64,
    pub hidden_by_override: u64,
    /// The first request after the server started (its caches cold).
    pub first_ms: f64,
    pub runs: usize,
    pub p50_ms: f64,
    pub max_ms: f64,
}

/// Runs the scenario on every engine asked for and returns the reports and a printed table.
pub async fn run(options: &ImpactOptions) -> Result<(Vec<ImpactReport>, String), String> {
    let reports = on_engines(&options.servers, "impact-", async |engine, dir, url| {
        run_engine(options, engine, dir, url).await
    })
    .await?;
    let printed = table(&reports);
    Ok((reports, printed))
}

/// The seeded fleet's root policy, a draft on it and the operator who previews it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub root: uuid::Uuid,
    pub draft: uuid::Uuid,
    pub email: String,
    pub password: String,
    /// Distinct (policy, values of their own) groups under the root.
    pub groups: u64,
    pub seed_seconds: f64,
}

/// Seeds the fleet (every device steady, 1 h pull interval), an editor to preview with, and a
/// draft on the root policy that turns [`OVERRIDDEN`] off.
pub async fn prepare(
    state: &AppState,
    devices: u64,
    policies: u32,
    own_values_every: u64,
) -> Result<Prepared, String> {
    let describe = |e: crate::error::ApiError| seed::describe(&e);
    let fleet = SeedOptions {
        steady: devices,
        new: 0,
        policies,
        pull_interval_seconds: 3600,
        own_values_every,
    };
    let seeded = seed::seed(state, &fleet).await.map_err(describe)?;
    let actor = Actor::system(seeded.tenant);
    let editor = create_editor(state, seeded.tenant, "impact").await?;
    let root = policy_repo::root_id(&state.db, seeded.tenant)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the seeded tenant has no root policy")?;
    let edit = PolicyEdit {
        set: BTreeMap::from([(OVERRIDDEN.to_owned(), json!(false))]),
        comment: Some("no disk tickets".into()),
        ..PolicyEdit::default()
    };
    let draft = drafts::create(state, &actor, root, edit)
        .await
        .map_err(describe)?;
    // The groups the preview resolves: the devices under the root per (policy, own values).
    let tree = policy_repo::load_tree(&state.db, seeded.tenant)
        .await
        .map_err(|e| e.to_string())?;
    let scope: Vec<_> = std::iter::once(root).chain(tree.descendants(root)).collect();
    let groups = device_groups::value_groups(&state.db, seeded.tenant, &scope)
        .await
        .map_err(|e| e.to_string())?
        .len() as u64;
    Ok(Prepared {
        root: root.0,
        draft: draft.id.0,
        email: editor.email,
        password: editor.password,
        groups,
        seed_seconds: seeded.elapsed.as_secs_f64(),
    })
}

async fn run_engine(
    options: &ImpactOptions,
    engine: &str,
    dir: &Path,
    database_url: &str,
) -> Result<ImpactReport, String> {
    fresh_dir(dir)?;
    let port = free_port().map_err(|e| e.to_string())?;
    let env = server_env(dir, database_url, port, options.servers.workers);
    eprintln!("[{engine}] seeding {} devices", options.devices);
    let config = Config::load(None, env.clone()).map_err(|e| e.to_string())?;
    let state = seed::open(config).await?;
    let prepared = prepare(
        &state,
        options.devices,
        options.policies,
        options.own_values_every,
    )
    .await;
    state.db.close().await.ok();
    let prepared = prepared?;
    eprintln!("[{engine}] seeded in {:.1} s", prepared.seed_seconds);

    let (server, base) = serve(&options.servers.gmp_bin, dir, &env, port).await?;
    eprintln!("[{engine}] timing the impact preview");
    let measured = measure(&base, &prepared, options.runs, options.page).await;
    drop(server);
    let measured = measured?;
    let times = &measured.times_ms;
    Ok(ImpactReport {
        engine: engine.to_owned(),
        devices: options.devices,
        seed_seconds: prepared.seed_seconds,
        groups: prepared.groups,
        devices_in_scope: measured.devices_in_scope,
        devices_changing: measured.devices_changing,
        hidden_by_override: measured.hidden_by_override,
        first_ms: measured.first_ms,
        runs: times.len(),
        p50_ms: times.get(times.len() / 2).copied().unwrap_or_default(),
        max_ms: times.last().copied().unwrap_or_default(),
    })
}

/// What the preview answered, and how long it took.
#[derive(Debug, Clone)]
pub struct Measured {
    pub devices_in_scope: u64,
    pub devices_changing: u64,
    /// Of [`OVERRIDDEN`].
    pub hidden_by_override: u64,
    /// Devices on the first page.
    pub listed: usize,
    pub first_ms: f64,
    /// The other requests, in milliseconds, sorted.
    pub times_ms: Vec<f64>,
}

/// Signs in as the prepared operator at `base` and requests the draft's impact (totals and the
/// first page of `page` devices) `1 + runs` times, one after the other.
pub async fn measure(base: &str, prepared: &Prepared, runs: usize, page: u64) -> Result<Measured, String> {
    let client = load::http_client(1);
    let token = sign_in(&client, base, &prepared.email, &prepared.password).await?;
    let url = format!(
        "{base}/api/v1/policies/{}/drafts/{}/impact?limit={page}",
        prepared.root, prepared.draft
    );
    let once = async || -> Result<(f64, Value), String> {
        let started = Instant::now();
        let response = client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.json::<Value>().await.map_err(|e| e.to_string())?;
        let took = started.elapsed().as_secs_f64() * 1000.0;
        if !status.is_success() {
            return Err(format!("{url}: {status} {body}"));
        }
        Ok((took, body))
    };
    let (first_ms, body) = once().await?;
    let mut times_ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        times_ms.push(once().await?.0);
    }
    times_ms.sort_by(f64::total_cmp);
    let count = |v: &Value| v.as_u64().unwrap_or_default();
    let field = body["fields"]
        .as_array()
        .and_then(|fields| fields.iter().find(|f| f["path"] == OVERRIDDEN))
        .cloned()
        .unwrap_or_default();
    Ok(Measured {
        devices_in_scope: count(&body["devices_in_scope"]),
        devices_changing: count(&body["devices_changing"]),
        hidden_by_override: count(&field["hidden_by_override"]),
        listed: body["devices"].as_array().map_or(0, Vec::len),
        first_ms,
        times_ms,
    })
}

/// The results as a Markdown table.
pub fn table(reports: &[ImpactReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| engine | devices | groups | in scope | changing | hidden by override | first ms | runs | p50 ms | max ms |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {:.0} | {:.0} |",
            r.engine,
            r.devices,
            r.groups,
            r.devices_in_scope,
            r.devices_changing,
            r.hidden_by_override,
            r.first_ms,
            r.runs,
            r.p50_ms,
            r.max_ms
        );
    }
    out
}
