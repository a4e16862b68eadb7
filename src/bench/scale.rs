//! `gmp-bench scale`: the fleet-scale targets, through the real server (`gmp serve`).
//!
//! A large fleet (1,000,000 devices on PostgreSQL) and a small one (1,000 devices, a tenant of
//! its own in the same database) are seeded through the service layer, every 100th device
//! reporting a local override of [`OVERRIDDEN`]. Then, with the server started:
//!
//! - **steady pulls**: `304` pulls at a fixed rate (open loop) over distinct devices of the
//!   large fleet, each device once, as in production where each device pulls once per
//!   interval (so most pulls miss the server's device directory);
//! - **a policy edit every device inherits**: a save of the root policy through the operator
//!   API (`PATCH` with `If-Match`), timed on both fleets: O(1) means the same time (and on
//!   PostgreSQL the same rows written) at 1,000 and at 1,000,000 devices;
//! - **who overrides a field**: `GET /api/v1/audit/overrides?field=…&limit=100`, timed, and
//!   paged through once to check it finds every seeded overrider.

use super::load::{self, DevicePool, LoadOptions, LoadReport, Scenario};
use super::operator::{Credentials, create_editor, sign_in};
use super::process;
use super::run::{Servers, free_port, fresh_dir, on_engines, serve, server_env};
use super::seed::{self, OVERRIDDEN, SeedOptions};
use super::{Group, of_group};
use crate::config::Config;
use crate::db::repo::policies as policy_repo;
use crate::domain::TenantId;
use crate::state::AppState;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The field the edit changes: every device inherits it from the root policy.
const EDITED: &str = "ticketing.events.failed_backup.enabled";
/// Devices of the small fleet the edit is compared with.
const SMALL_FLEET: u64 = 1_000;
/// Overrides listed per page, as the target names it.
const PAGE: u64 = 100;
/// The devices' pull interval: 4 h, as in production.
const PULL_INTERVAL_SECONDS: u32 = 4 * 3600;
/// PostgreSQL flushes a backend's row counters at the latest 10 s after its last transaction.
const STATS_SETTLE: Duration = Duration::from_secs(11);

#[derive(Debug, Clone)]
pub struct ScaleOptions {
    pub servers: Servers,
    /// Devices of the large fleet on PostgreSQL.
    pub devices: u64,
    /// Devices of the large fleet on SQLite.
    pub sqlite_devices: u64,
    pub policies: u32,
    /// Every n-th device reports an override of [`OVERRIDDEN`].
    pub overrides_every: u64,
    /// Steady pulls per second.
    pub rate: f64,
    pub duration: Duration,
    pub connections: usize,
    /// Timed edits (per fleet) and timed override queries.
    pub runs: usize,
}

/// Timings in milliseconds, measured by the client (the whole request).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timed {
    pub runs: usize,
    pub p50_ms: f64,
    pub max_ms: f64,
}

impl Timed {
    fn of(mut times_ms: Vec<f64>) -> Self {
        times_ms.sort_by(f64::total_cmp);
        Self {
            runs: times_ms.len(),
            p50_ms: times_ms
                .get(times_ms.len().saturating_sub(1) / 2)
                .copied()
                .unwrap_or_default(),
            max_ms: times_ms.last().copied().unwrap_or_default(),
        }
    }
}

/// The policy edit on one fleet.
#[derive(Debug, Clone, Serialize)]
pub struct EditReport {
    pub devices: u64,
    pub timed: Timed,
    /// Rows inserted, updated and deleted per edit in the whole database (PostgreSQL's
    /// `pg_stat_database`; `None` on SQLite).
    pub rows_written_per_edit: Option<f64>,
}

/// One engine's results.
#[derive(Debug, Serialize)]
pub struct ScaleReport {
    pub engine: String,
    pub devices: u64,
    pub seed_seconds: f64,
    /// Seconds `VACUUM (ANALYZE)` and `CHECKPOINT` took after seeding (PostgreSQL).
    pub vacuum_seconds: Option<f64>,
    /// Devices seeded as overriding [`OVERRIDDEN`] (large fleet).
    pub overriders: u64,
    /// Seconds waited for the server to be quiet before the steady pulls.
    pub quiet_wait_seconds: f64,
    pub steady: LoadReport,
    pub edit_large: EditReport,
    pub edit_small: EditReport,
    pub overrides: Timed,
    /// Overrides of [`OVERRIDDEN`] listed over all pages; should equal `overriders`.
    pub overrides_listed: u64,
    /// The items of one page that were not overrides of [`OVERRIDDEN`] (should be 0).
    pub overrides_wrong: u64,
}

/// Runs the scenario on every engine asked for and returns the reports and a printed table.
pub async fn run(options: &ScaleOptions) -> Result<(Vec<ScaleReport>, String), String> {
    let reports = on_engines(&options.servers, "scale-", async |engine, dir, url| {
        run_engine(options, engine, dir, url).await
    })
    .await?;
    let printed = table(&reports);
    Ok((reports, printed))
}

/// A seeded fleet as the measurements need it.
pub struct Fleet {
    pub devices: u64,
    /// Devices seeded as overriding [`OVERRIDDEN`].
    pub overriders: u64,
    pub root: uuid::Uuid,
    pub editor: Credentials,
    /// Credentials and ETags of its devices (all steady).
    pub pulls: Vec<super::BenchDevice>,
    pub seconds: f64,
}

/// Seeds a tenant with `devices` steady devices over `policies` child policies (a 4 h pull
/// interval), every `overrides_every`-th device reporting an override of [`OVERRIDDEN`], and
/// an editor to call the operator API as.
pub async fn seed_fleet(
    state: &AppState,
    devices: u64,
    policies: u32,
    overrides_every: u64,
    purpose: &str,
) -> Result<Fleet, String> {
    let fleet = SeedOptions {
        steady: devices,
        new: 0,
        policies,
        pull_interval_seconds: PULL_INTERVAL_SECONDS,
        own_values_every: 0,
    };
    let seeded = seed::seed_reporting(state, &fleet, overrides_every)
        .await
        .map_err(|e| seed::describe(&e))?;
    let root = root_of(state, seeded.tenant).await?;
    let editor = create_editor(state, seeded.tenant, purpose).await?;
    Ok(Fleet {
        devices,
        overriders: devices.div_ceil(overrides_every.max(1)),
        root,
        editor,
        pulls: of_group(&seeded.devices, Group::Steady),
        seconds: seeded.elapsed.as_secs_f64(),
    })
}

async fn root_of(state: &AppState, tenant: TenantId) -> Result<uuid::Uuid, String> {
    Ok(policy_repo::root_id(&state.db, tenant)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the seeded tenant has no root policy")?
        .0)
}

async fn run_engine(
    options: &ScaleOptions,
    engine: &str,
    dir: &Path,
    database_url: &str,
) -> Result<ScaleReport, String> {
    fresh_dir(dir)?;
    let postgres = database_url.starts_with("postgres");
    let devices = if postgres {
        options.devices
    } else {
        options.sqlite_devices
    };
    let port = free_port().map_err(|e| e.to_string())?;
    let env = server_env(dir, database_url, port, options.servers.workers);
    eprintln!("[{engine}] seeding {devices} + {SMALL_FLEET} devices");
    let config = Config::load(None, env.clone()).map_err(|e| e.to_string())?;
    let state = seed::open(config).await?;
    let fleets = async {
        let (policies, every) = (options.policies, options.overrides_every);
        let large = seed_fleet(&state, devices, policies, every, "scale").await?;
        let small = seed_fleet(&state, SMALL_FLEET, policies, every, "scale-small").await?;
        Ok::<_, String>((large, small))
    }
    .await;
    let vacuum = if postgres && fleets.is_ok() {
        Some(settle(&state).await?)
    } else {
        None
    };
    state.db.close().await.ok();
    let (large, small) = fleets?;
    eprintln!("[{engine}] seeded in {:.1} s", large.seconds + small.seconds);
    if let Some(seconds) = vacuum {
        eprintln!("[{engine}] VACUUM (ANALYZE) and CHECKPOINT took {seconds:.1} s");
    }

    let (server, base) = serve(&options.servers.gmp_bin, dir, &env, port).await?;
    let server_pid = server.0.id();
    let counter = if postgres {
        Some(Database::connect(database_url).await.map_err(|e| e.to_string())?)
    } else {
        None
    };

    let waited = process::until_quiet(engine, server_pid).await;
    eprintln!(
        "[{engine}] steady pulls at {}/s for {} s",
        options.rate,
        options.duration.as_secs()
    );
    let steady = load::run(
        Scenario::NotModified,
        Arc::new(DevicePool::once(large.pulls.clone())),
        &LoadOptions {
            base_url: base.clone(),
            connections: options.connections,
            duration: options.duration,
            rate: Some(options.rate),
            server_pid: Some(server_pid),
            database_cpu: postgres,
        },
    )
    .await;
    // The check-ins of the steady pulls are written in the background: let them end.
    process::wait_quiet(server_pid, process::QUIET_MAX).await;

    let client = load::http_client(1);
    eprintln!("[{engine}] timing the policy edit");
    let edit_large = time_edits(&client, &base, &large, options.runs, counter.as_ref()).await?;
    let edit_small = time_edits(&client, &base, &small, options.runs, counter.as_ref()).await?;
    eprintln!("[{engine}] timing who overrides {OVERRIDDEN}");
    let overrides = time_overrides(&client, &base, &large, options.runs).await?;
    if let Some(counter) = counter {
        counter.close().await.ok();
    }
    drop(server);
    Ok(ScaleReport {
        engine: engine.to_owned(),
        devices,
        seed_seconds: large.seconds + small.seconds,
        vacuum_seconds: vacuum,
        overriders: large.overriders,
        quiet_wait_seconds: waited,
        steady,
        edit_large,
        edit_small,
        overrides: overrides.timed,
        overrides_listed: overrides.listed,
        overrides_wrong: overrides.wrong,
    })
}

/// "Who overrides [`OVERRIDDEN`]", timed.
#[derive(Debug, Clone)]
pub struct OverridesMeasured {
    /// The first page (`limit=100`), requested `runs` times.
    pub timed: Timed,
    /// Items of that page that were not overrides of [`OVERRIDDEN`] (should be 0).
    pub wrong: u64,
    /// Overrides listed over all pages (untimed): should be every seeded overrider.
    pub listed: u64,
}

/// Signs in as the fleet's editor at `base` and asks who overrides [`OVERRIDDEN`]: the first
/// page `runs` times, timed, then every page once to count them.
pub async fn time_overrides(
    client: &reqwest::Client,
    base: &str,
    fleet: &Fleet,
    runs: usize,
) -> Result<OverridesMeasured, String> {
    let token = sign_in(client, base, &fleet.editor.email, &fleet.editor.password).await?;
    let url = format!("{base}/api/v1/audit/overrides?field={OVERRIDDEN}&limit={PAGE}");
    let mut times_ms = Vec::with_capacity(runs);
    let mut wrong = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let page = get_json(client, &url, &token).await?;
        times_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        wrong = page["items"]
            .as_array()
            .map_or(0, |items| items.iter().filter(|item| !is_override(item)).count()) as u64;
    }
    Ok(OverridesMeasured {
        timed: Timed::of(times_ms),
        wrong,
        listed: count_overrides(client, &url, &token).await?,
    })
}

/// Vacuums and analyses the freshly seeded database, as autovacuum long has in a database that
/// grew to this size over time, then checkpoints it, as the checkpointer long has; otherwise
/// autovacuum would work through the million new rows, and the checkpointer write out the
/// gigabyte just loaded, during the measurements. Returns the seconds it took.
async fn settle(state: &AppState) -> Result<f64, String> {
    let started = Instant::now();
    // Outside a transaction (VACUUM cannot run in one): a plain pooled connection.
    for statement in ["VACUUM (ANALYZE)", "CHECKPOINT"] {
        state
            .db
            .execute_unprepared(statement)
            .await
            .map_err(|e| format!("{statement}: {e}"))?;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn is_override(item: &Value) -> bool {
    item["field"] == OVERRIDDEN && item["reported"]["state"] == "overridden"
}

async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Result<Value, String> {
    let response = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.json::<Value>().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{url}: {status} {body}"))
    }
}

/// Pages through every override of [`OVERRIDDEN`] and counts them (untimed).
async fn count_overrides(client: &reqwest::Client, url: &str, token: &str) -> Result<u64, String> {
    let mut listed = 0;
    let mut next = url.to_owned();
    loop {
        let page = get_json(client, &next, token).await?;
        listed += page["items"]
            .as_array()
            .map_or(0, |items| items.iter().filter(|item| is_override(item)).count())
            as u64;
        match page["next_cursor"].as_str() {
            Some(cursor) => next = format!("{url}&cursor={cursor}"),
            None => return Ok(listed),
        }
    }
}

/// Saves the fleet's root policy `runs` times, turning [`EDITED`] off and on again, each save
/// with the `If-Match` of the previous one; on PostgreSQL also counts the rows written.
pub async fn time_edits(
    client: &reqwest::Client,
    base: &str,
    fleet: &Fleet,
    runs: usize,
    counter: Option<&sea_orm::DatabaseConnection>,
) -> Result<EditReport, String> {
    let token = sign_in(client, base, &fleet.editor.email, &fleet.editor.password).await?;
    let url = format!("{base}/api/v1/policies/{}", fleet.root);
    let current = client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let mut etag = etag_of(&current)?;
    let rows_before = match counter {
        Some(db) => Some(rows_written(db).await?),
        None => None,
    };
    let mut times_ms = Vec::with_capacity(runs);
    for run in 0..runs {
        let body = json!({"set": {EDITED: run % 2 == 1}, "comment": "benchmark edit"});
        let started = Instant::now();
        let response = client
            // Bench sites are not real ConnectWise hosts: no reference check.
            .patch(format!("{url}?validate=false"))
            .bearer_auth(&token)
            .header("if-match", &etag)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        etag = etag_of(&response)?;
        let saved = response.json::<Value>().await.map_err(|e| e.to_string())?;
        times_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        if !status.is_success() || saved["changed"] != true {
            return Err(format!("editing {url}: {status} {saved}"));
        }
    }
    let rows_written_per_edit = match (counter, rows_before) {
        (Some(db), Some(before)) => {
            let after = rows_written(db).await?;
            Some(after.saturating_sub(before) as f64 / runs.max(1) as f64)
        }
        _ => None,
    };
    Ok(EditReport {
        devices: fleet.devices,
        timed: Timed::of(times_ms),
        rows_written_per_edit,
    })
}

fn etag_of(response: &reqwest::Response) -> Result<String, String> {
    response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| format!("{}: {} without an ETag", response.url(), response.status()))
}

/// Rows inserted, updated and deleted so far in the current database, once every backend's
/// counters have reached the statistics (they are flushed lazily).
async fn rows_written(db: &sea_orm::DatabaseConnection) -> Result<u64, String> {
    tokio::time::sleep(STATS_SETTLE).await;
    let sql = "SELECT (tup_inserted + tup_updated + tup_deleted)::bigint AS rows \
               FROM pg_stat_database WHERE datname = current_database()";
    // A fresh snapshot: within a transaction the statistics would be read once.
    db.execute_unprepared("SELECT pg_stat_clear_snapshot()")
        .await
        .map_err(|e| e.to_string())?;
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("pg_stat_database has no row for this database")?;
    let rows: i64 = row.try_get("", "rows").map_err(|e| e.to_string())?;
    Ok(rows.max(0) as u64)
}

fn ms(value: f64) -> String {
    if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

fn edit_line(edit: &EditReport) -> String {
    let rows = edit
        .rows_written_per_edit
        .map_or(String::new(), |rows| format!("; {rows:.0} rows written per edit"));
    format!(
        "{} devices: p50 {} ms, max {} ms{rows}",
        edit.devices,
        ms(edit.timed.p50_ms),
        ms(edit.timed.max_ms)
    )
}

/// The results as a Markdown table: what was measured against each target.
pub fn table(reports: &[ScaleReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| engine | measure | measured | target | met |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for r in reports {
        let s = &r.steady;
        let database = s
            .database_cpu_us_per_request
            .map_or(String::new(), |us| format!(" + PostgreSQL {us:.0}"));
        let _ = writeln!(
            out,
            "| {} | `304` pulls at {:.0}/s for {:.0} s, {} distinct devices of {} | {:.0}/s achieved; p50 {} ms, p99 {} ms, max {} ms; {} late starts; statuses {:?}, {} without an answer; CPU µs per pull: server {}{database} | p99 < 5 ms | {} |",
            r.engine,
            s.target_rate.unwrap_or_default(),
            s.seconds,
            s.requests,
            r.devices,
            s.requests_per_second,
            ms(s.p50_ms),
            ms(s.p99_ms),
            ms(s.max_ms),
            s.late_starts,
            s.statuses,
            s.transport_errors,
            s.server_cpu_us_per_request
                .map_or("–".into(), |us| format!("{us:.0}")),
            met(s.p99_ms < 5.0 && s.errors == 0),
        );
        let (large, small) = (&r.edit_large, &r.edit_small);
        let same_rows = match (large.rows_written_per_edit, small.rows_written_per_edit) {
            (Some(a), Some(b)) => a <= b + 1.0,
            _ => true,
        };
        let _ = writeln!(
            out,
            "| {} | save of the root policy changing a field every device inherits, {} runs | {}; {}; ratio {:.2} | < 50 ms, O(1) | {} |",
            r.engine,
            large.timed.runs,
            edit_line(large),
            edit_line(small),
            large.timed.p50_ms / small.timed.p50_ms.max(f64::EPSILON),
            met(large.timed.p50_ms < 50.0 && same_rows),
        );
        let _ = writeln!(
            out,
            "| {} | who overrides `{OVERRIDDEN}` (`limit={PAGE}`), {} runs | p50 {} ms, max {} ms; {} of {} seeded overriders listed over all pages | < 100 ms | {} |",
            r.engine,
            r.overrides.runs,
            ms(r.overrides.p50_ms),
            ms(r.overrides.max_ms),
            r.overrides_listed,
            r.overriders,
            met(r.overrides.p50_ms < 100.0 && r.overrides_listed == r.overriders && r.overrides_wrong == 0),
        );
    }
    for r in reports {
        let _ = writeln!(
            out,
            "\n{}: {} + {SMALL_FLEET} devices seeded in {:.1} s{}; waited {:.1} s for a quiet server before the pulls",
            r.engine,
            r.devices,
            r.seed_seconds,
            r.vacuum_seconds.map_or(String::new(), |s| format!(
                ", VACUUM (ANALYZE) and CHECKPOINT {s:.1} s"
            )),
            r.quiet_wait_seconds
        );
        if let Some(error) = &r.steady.transport_error {
            let _ = writeln!(out, "{}: a pull without an answer: {error}", r.engine);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_give_the_lower_median_and_the_maximum() {
        let timed = Timed::of(vec![5.0, 1.0, 3.0, 2.0]);
        assert_eq!((timed.runs, timed.p50_ms, timed.max_ms), (4, 2.0, 5.0));
        assert_eq!(Timed::of(Vec::new()).runs, 0);
    }

    #[test]
    fn only_overrides_of_the_seeded_field_count() {
        let item = |field: &str, state: &str| json!({"field": field, "reported": {"state": state}});
        assert!(is_override(&item(OVERRIDDEN, "overridden")));
        assert!(!is_override(&item(OVERRIDDEN, "inherited")));
        assert!(!is_override(&item(EDITED, "overridden")));
    }
}
