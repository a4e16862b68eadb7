//! Scheduled jobs. Each job body is a plain async function that tests call directly;
//! `tokio-cron-scheduler` only wires them to intervals, and a lease row in the database makes
//! each tick run on exactly one replica.

use crate::db;
use crate::db::repo::maintenance::{self, Aged};
use crate::db::repo::{connectivity, devices, job_leases};
use crate::domain::audit::{Actor, NewEntry};
use crate::domain::device::{Connectivity, Device, connectivity};
use crate::domain::diff::Change;
use crate::domain::{DeviceId, TenantId};
use crate::error::ApiError;
use crate::services::{audit, checkins, rollouts, served_audit, ui_sessions};
use crate::state::AppState;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;
use tokio_cron_scheduler::{Job, JobScheduler};

/// What a job run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Rows changed or deleted.
    pub changed: u64,
}

/// Devices read and written per round of the connectivity job.
const PAGE: usize = 500;

/// Marks devices `stale` (past `next_pull_after` + grace) and `offline` (silent for longer),
/// writing each transition to the change log once; `online` comes back on the next pull. Also
/// refreshes the per-tenant device gauges.
///
/// The database finds the transitions and counts the devices: reading every device into the
/// server instead took longer than the job's one-minute interval at 1,000,000 devices, so the
/// job never finished and kept a core busy. This replica's buffered check-ins are written
/// first, so the counts and the transitions see them; another replica's are at most one flush
/// interval behind.
pub async fn connectivity_job(state: &AppState, now: DateTime<Utc>) -> Result<Outcome, ApiError> {
    let thresholds = state.config.thresholds();
    checkins::flush(state).await?;
    let mut outcome = Outcome::default();
    let mut found: BTreeMap<TenantId, Vec<DeviceId>> = BTreeMap::new();
    for (tenant, device) in connectivity::transitions(&state.db, now, thresholds).await? {
        found.entry(tenant).or_default().push(device);
    }
    for (tenant, ids) in found {
        for chunk in ids.chunks(PAGE) {
            for device in devices::get_many(&state.db, tenant, chunk).await? {
                // A pull since the flush above moved the device on.
                let (seen, next) = match state.checkins.pending(device.id) {
                    Some((seen, next)) => (Some(seen), Some(next)),
                    None => (device.last_seen_at, device.next_pull_after),
                };
                let current = connectivity(seen, next, now, thresholds);
                if current == device.recorded_connectivity
                    || !matches!(current, Connectivity::Stale | Connectivity::Offline)
                {
                    continue;
                }
                record_transition(state, &device, current).await?;
                outcome.changed += 1;
            }
        }
    }
    let counts = connectivity::counts(&state.db, now, thresholds)
        .await?
        .into_iter()
        .map(|(tenant, current, devices)| ((tenant.to_string(), current.as_str().to_owned()), devices))
        .collect();
    state.metrics.set_devices(counts);
    Ok(outcome)
}

/// Writes a device's new connectivity and its change-log entry.
async fn record_transition(state: &AppState, device: &Device, current: Connectivity) -> Result<(), ApiError> {
    let txn = db::begin_write(&state.db).await?;
    devices::set_connectivity(&txn, device, current).await?;
    let changes = vec![Change::of(
        "connectivity",
        Some(device.recorded_connectivity.as_str().into()),
        Some(current.as_str().into()),
    )];
    let entry = NewEntry {
        action: if current == Connectivity::Stale {
            "device.stale"
        } else {
            "device.offline"
        },
        target_type: "device",
        target_id: device.id.0,
        changes,
    };
    audit::record_at(
        &txn,
        &Actor::system(device.tenant_id),
        device.tenant_id,
        entry,
        state.clock.now(),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Deletes device field history, billing usage history and change-log entries older than
/// `retention_days`, in batches of `batch`, so one run never holds a long lock.
pub async fn retention_job(state: &AppState, now: DateTime<Utc>, batch: u64) -> Result<Outcome, ApiError> {
    let cutoff = now - Duration::days(state.config.retention_days as i64);
    let mut outcome = Outcome::default();
    for what in Aged::ALL {
        loop {
            let deleted = maintenance::prune(&state.db, what, cutoff, batch).await?;
            outcome.changed += deleted;
            if deleted < batch {
                break;
            }
        }
    }
    Ok(outcome)
}

/// Deletes tokens long past their use: refresh tokens a day after they expired or were
/// revoked, enrollment tokens 30 days after they expired, web UI sessions once they ended.
pub async fn expiry_job(state: &AppState, now: DateTime<Utc>) -> Result<Outcome, ApiError> {
    Ok(Outcome {
        changed: maintenance::delete_expired_tokens(&state.db, now).await?
            + ui_sessions::prune(state, now).await?,
    })
}

/// Runs `body` for `tick` if this replica (`holder`) wins the job's lease, renewing the lease
/// while it runs and releasing it after. `None` when another replica has this tick.
pub async fn run_with_lease<F, Fut>(
    state: &AppState,
    job: &str,
    holder: &str,
    tick: i64,
    lease: std::time::Duration,
    body: F,
) -> Result<Option<Outcome>, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Outcome, ApiError>>,
{
    let now = state.clock.now();
    let lease_for = Duration::from_std(lease).unwrap_or(Duration::minutes(5));
    if !job_leases::acquire(&state.db, job, holder, tick, now, now + lease_for).await? {
        return Ok(None);
    }
    let renewer = {
        let (db, job, holder) = (state.db.clone(), job.to_owned(), holder.to_owned());
        let clock = state.clock.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let _ = job_leases::renew(&db, &job, &holder, clock.now() + lease_for).await;
            }
        })
    };
    let started = Instant::now();
    let result = body().await;
    renewer.abort();
    job_leases::release(&state.db, job, holder).await?;
    state.metrics.job_run(job, result.is_ok(), started.elapsed());
    match &result {
        Ok(outcome) => tracing::info!(
            job,
            changed = outcome.changed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "job ran"
        ),
        Err(error) => tracing::error!(job, %error, "job failed"),
    }
    result.map(Some)
}

/// The current tick of a job that runs every `every` seconds.
pub fn tick(now: DateTime<Utc>, every: u64) -> i64 {
    now.timestamp() / every.max(1) as i64
}

/// Starts the scheduler with every job, and the check-in flusher. Each job runs on whichever
/// replica takes its lease first at each tick.
pub async fn start(
    state: AppState,
    holder: String,
) -> Result<JobScheduler, tokio_cron_scheduler::JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    let config = state.config.clone();
    if config.checkin_flush_interval_ms > 0 {
        let state = state.clone();
        let every = std::time::Duration::from_millis(config.checkin_flush_interval_ms);
        scheduler
            .add(Job::new_repeated_async(every, move |_, _| {
                let state = state.clone();
                Box::pin(async move {
                    if let Err(error) = checkins::flush(&state).await {
                        tracing::error!(%error, "check-in flush failed");
                    }
                    if let Err(error) = served_audit::flush(&state).await {
                        tracing::error!(%error, "served-audit flush failed");
                    }
                })
            })?)
            .await?;
    }
    if config.jobs_enabled {
        let jobs: [(&'static str, u64); 4] = [
            ("connectivity", config.job_connectivity_interval_seconds),
            ("retention", config.job_retention_interval_seconds),
            ("expiry", config.job_expiry_interval_seconds),
            ("rollouts", config.job_rollout_interval_seconds),
        ];
        for (name, every) in jobs {
            let (state, holder) = (state.clone(), holder.clone());
            let period = std::time::Duration::from_secs(every.max(1));
            scheduler
                .add(Job::new_repeated_async(period, move |_, _| {
                    let (state, holder) = (state.clone(), holder.clone());
                    Box::pin(async move {
                        let now = state.clock.now();
                        let lease = period.max(std::time::Duration::from_secs(30));
                        let ran = run_with_lease(&state, name, &holder, tick(now, every), lease, || async {
                            match name {
                                "connectivity" => connectivity_job(&state, now).await,
                                "retention" => retention_job(&state, now, 1000).await,
                                "rollouts" => rollouts::rollout_job(&state, now).await,
                                _ => expiry_job(&state, now).await,
                            }
                        })
                        .await;
                        if let Err(error) = ran {
                            tracing::error!(job = name, %error, "job failed");
                        }
                    })
                })?)
                .await?;
        }
    }
    scheduler.start().await?;
    Ok(scheduler)
}
