//! Prometheus metrics, kept in memory per process and rendered in the text exposition format
//! at `GET /metrics` on the metrics listener. Counters only grow; gauges are set by whoever
//! knows the value (the connectivity job sets device counts, so a scrape never queries the
//! fleet). No label ever carries a tenant's name: device counts are totals, or per tenant id
//! when `metrics_per_tenant` asks for it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const LATENCY_BUCKETS: [f64; 11] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, count) in LATENCY_BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bucket {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bucket, count) in LATENCY_BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bucket}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// The requests of one route template.
#[derive(Debug, Default)]
struct RouteStats {
    /// By method and status.
    responses: BTreeMap<(&'static str, u16), u64>,
    latency: Histogram,
}

/// The method as a label: the standard ones by name, any other as `other` (a client may send
/// any token as a method, and each would be a label of its own).
fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    STANDARD.into_iter().find(|m| *m == method).unwrap_or("other")
}

#[derive(Debug, Default)]
struct Inner {
    /// By route template. Looked up by the borrowed template: a request allocates nothing here
    /// once its route has been seen.
    http: BTreeMap<String, RouteStats>,
    pulls: BTreeMap<u16, u64>,
    reports: BTreeMap<u16, u64>,
    devices: BTreeMap<(String, String), u64>,
    job_runs: BTreeMap<(String, &'static str), u64>,
    job_duration: BTreeMap<String, Histogram>,
    checkins_flushed: u64,
    /// Queries that read missed devices (several misses share one under load).
    device_read_queries: u64,
}

/// The process's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    /// Device credential lookups answered from memory, and from the database: counted on every
    /// pull, outside the lock the request metrics take, so the HTTP workers do not queue on it
    /// twice per pull.
    directory_hits: AtomicU64,
    directory_misses: AtomicU64,
}

/// Pool figures sampled at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub size: u32,
    pub idle: usize,
    pub max: u32,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// One served HTTP request, by route template (never the raw path: ids would explode the
    /// label set). Device pulls and reports are also counted by outcome.
    pub fn http_request(&self, route: &str, method: &str, status: u16, latency: Duration) {
        let mut inner = self.inner.lock().expect("metrics");
        if !inner.http.contains_key(route) {
            inner.http.insert(route.to_owned(), RouteStats::default());
        }
        let stats = inner.http.get_mut(route).expect("inserted above");
        *stats.responses.entry((method_label(method), status)).or_default() += 1;
        stats.latency.observe(latency.as_secs_f64());
        match route {
            "/device/v1/config" => *inner.pulls.entry(status).or_default() += 1,
            "/device/v1/report" => *inner.reports.entry(status).or_default() += 1,
            _ => {}
        }
    }

    pub fn job_run(&self, job: &str, succeeded: bool, duration: Duration) {
        let mut inner = self.inner.lock().expect("metrics");
        let outcome = if succeeded { "success" } else { "failure" };
        *inner.job_runs.entry((job.to_owned(), outcome)).or_default() += 1;
        inner
            .job_duration
            .entry(job.to_owned())
            .or_default()
            .observe(duration.as_secs_f64());
    }

    /// Replaces the device counts by tenant id and connectivity.
    pub fn set_devices(&self, counts: BTreeMap<(String, String), u64>) {
        self.inner.lock().expect("metrics").devices = counts;
    }

    /// A device credential looked up: in memory (`hit`) or in the database.
    pub fn device_directory(&self, hit: bool) {
        let counter = if hit {
            &self.directory_hits
        } else {
            &self.directory_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// One query reading the devices of missed lookups.
    pub fn device_read_query(&self) {
        self.inner.lock().expect("metrics").device_read_queries += 1;
    }

    pub fn checkins_flushed(&self, n: u64) {
        self.inner.lock().expect("metrics").checkins_flushed += n;
    }

    /// The exposition text; device counts per tenant id only when `per_tenant`.
    pub fn render(&self, pool: Option<PoolStats>, per_tenant: bool) -> String {
        let inner = self.inner.lock().expect("metrics");
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP gmp_http_requests_total HTTP requests by route template, method and status."
        );
        let _ = writeln!(out, "# TYPE gmp_http_requests_total counter");
        for (route, stats) in &inner.http {
            for ((method, status), n) in &stats.responses {
                let _ = writeln!(
                    out,
                    "gmp_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP gmp_http_request_duration_seconds HTTP request latency by route template."
        );
        let _ = writeln!(out, "# TYPE gmp_http_request_duration_seconds histogram");
        for (route, stats) in &inner.http {
            stats.latency.render(
                &mut out,
                "gmp_http_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }
        let _ = writeln!(
            out,
            "# HELP gmp_device_pulls_total Device config pulls by outcome (200, 304, 401, 429, …)."
        );
        let _ = writeln!(out, "# TYPE gmp_device_pulls_total counter");
        for (status, n) in &inner.pulls {
            let _ = writeln!(out, "gmp_device_pulls_total{{outcome=\"{status}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP gmp_device_reports_total Device reports by status.");
        let _ = writeln!(out, "# TYPE gmp_device_reports_total counter");
        for (status, n) in &inner.reports {
            let _ = writeln!(out, "gmp_device_reports_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP gmp_devices Active devices by connectivity (and tenant id if configured), as of the last connectivity job."
        );
        let _ = writeln!(out, "# TYPE gmp_devices gauge");
        if per_tenant {
            for ((tenant, status), n) in &inner.devices {
                let _ = writeln!(
                    out,
                    "gmp_devices{{tenant=\"{}\",status=\"{status}\"}} {n}",
                    escape(tenant)
                );
            }
        } else {
            let mut totals = BTreeMap::<&str, u64>::new();
            for ((_, status), n) in &inner.devices {
                *totals.entry(status).or_default() += n;
            }
            for (status, n) in totals {
                let _ = writeln!(out, "gmp_devices{{status=\"{status}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP gmp_job_runs_total Scheduled job runs on this replica by outcome."
        );
        let _ = writeln!(out, "# TYPE gmp_job_runs_total counter");
        for ((job, outcome), n) in &inner.job_runs {
            let _ = writeln!(
                out,
                "gmp_job_runs_total{{job=\"{job}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP gmp_job_duration_seconds Scheduled job run time.");
        let _ = writeln!(out, "# TYPE gmp_job_duration_seconds histogram");
        for (job, histogram) in &inner.job_duration {
            histogram.render(&mut out, "gmp_job_duration_seconds", &format!("job=\"{job}\""));
        }
        let _ = writeln!(
            out,
            "# HELP gmp_checkins_flushed_total Device check-ins written in batches."
        );
        let _ = writeln!(out, "# TYPE gmp_checkins_flushed_total counter");
        let _ = writeln!(out, "gmp_checkins_flushed_total {}", inner.checkins_flushed);
        let _ = writeln!(
            out,
            "# HELP gmp_device_lookups_total Device credential lookups, answered from memory (hit) or the database (miss)."
        );
        let _ = writeln!(out, "# TYPE gmp_device_lookups_total counter");
        for (result, counter) in [("hit", &self.directory_hits), ("miss", &self.directory_misses)] {
            let n = counter.load(Ordering::Relaxed);
            let _ = writeln!(out, "gmp_device_lookups_total{{result=\"{result}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP gmp_device_read_queries_total Database queries reading the devices of missed lookups (misses arriving together share one)."
        );
        let _ = writeln!(out, "# TYPE gmp_device_read_queries_total counter");
        let _ = writeln!(out, "gmp_device_read_queries_total {}", inner.device_read_queries);
        if let Some(pool) = pool {
            let _ = writeln!(
                out,
                "# HELP gmp_db_pool_connections Database pool connections by state."
            );
            let _ = writeln!(out, "# TYPE gmp_db_pool_connections gauge");
            let _ = writeln!(out, "gmp_db_pool_connections{{state=\"idle\"}} {}", pool.idle);
            let _ = writeln!(
                out,
                "gmp_db_pool_connections{{state=\"in_use\"}} {}",
                (pool.size as usize).saturating_sub(pool.idle)
            );
            let _ = writeln!(out, "gmp_db_pool_connections{{state=\"max\"}} {}", pool.max);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let metrics = Metrics::default();
        metrics.http_request("/device/v1/config", "GET", 304, Duration::from_millis(3));
        metrics.http_request("/device/v1/config", "GET", 304, Duration::from_millis(30));
        metrics.http_request(
            "/api/v1/policies/{policy_id}",
            "GET",
            200,
            Duration::from_millis(7),
        );
        metrics.job_run("connectivity", true, Duration::from_millis(12));
        metrics.set_devices(
            [
                (("tenant-a".to_owned(), "online".to_owned()), 3),
                (("tenant-b".to_owned(), "online".to_owned()), 2),
            ]
            .into(),
        );
        let pool = PoolStats {
            size: 4,
            idle: 3,
            max: 10,
        };
        let text = metrics.render(Some(pool), false);
        assert!(text.contains(
            "gmp_http_requests_total{route=\"/device/v1/config\",method=\"GET\",status=\"304\"} 2"
        ));
        assert!(text.contains("gmp_device_pulls_total{outcome=\"304\"} 2"));
        assert!(text.contains(
            "gmp_http_request_duration_seconds_bucket{route=\"/device/v1/config\",le=\"0.005\"} 1"
        ));
        assert!(
            text.contains(
                "gmp_http_request_duration_seconds_bucket{route=\"/device/v1/config\",le=\"+Inf\"} 2"
            )
        );
        assert!(text.contains("gmp_job_runs_total{job=\"connectivity\",outcome=\"success\"} 1"));
        assert!(text.contains("gmp_devices{status=\"online\"} 5"));
        assert!(!text.contains("tenant-a"), "totals only unless asked");
        assert!(text.contains("gmp_db_pool_connections{state=\"in_use\"} 1"));
        let per_tenant = metrics.render(Some(pool), true);
        assert!(per_tenant.contains("gmp_devices{tenant=\"tenant-a\",status=\"online\"} 3"));
    }

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        let metrics = Metrics::default();
        for i in 0..100 {
            metrics.http_request("unmatched", &format!("M{i}"), 405, Duration::from_millis(1));
        }
        metrics.http_request("unmatched", "DELETE", 404, Duration::from_millis(1));
        let text = metrics.render(None, false);
        assert!(
            text.contains("gmp_http_requests_total{route=\"unmatched\",method=\"other\",status=\"405\"} 100")
        );
        assert!(
            text.contains("gmp_http_requests_total{route=\"unmatched\",method=\"DELETE\",status=\"404\"} 1")
        );
        assert!(!text.contains("M7"), "a client's method token is never a label");
    }
}
