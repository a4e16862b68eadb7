//! What a server process costs, read from `/proc`: CPU time (user + system) and resident memory,
//! of one process or of every process of a name (PostgreSQL's), and waiting until a server is
//! quiet.

use std::time::{Duration, Instant};

/// The command name of PostgreSQL's processes (postmaster, backends, writers).
pub const POSTGRES: &str = "postgres";

/// CPU time used so far by process `pid` (all threads), or `None` off Linux.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks_to_time(ticks))
}

/// The command name and the CPU ticks (user + system) of a `/proc/<pid>/stat` line.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    // The command name may hold spaces and parentheses: fields are counted after the last `)`.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Fields 14 and 15 of proc(5) (utime, stime) are the 12th and 13th after the name.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((name, ticks))
}

fn ticks_to_time(ticks: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64)
}

/// CPU time used so far by every running process named `name` (its `comm`), or `None` when
/// `/proc` cannot be read. A process that ends in between takes its time with it: PostgreSQL's
/// backends live as long as the server's pooled connections, so a scenario loses little.
pub fn cpu_time_of_named(name: &str) -> Option<Duration> {
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((comm, used)) = parse_stat(&stat)
            && comm == name
        {
            ticks += used;
        }
    }
    Some(ticks_to_time(ticks))
}

/// A server is quiet when it used less than this share of one core over [`QUIET_WINDOW`].
const QUIET_SHARE: f64 = 0.05;
const QUIET_WINDOW: Duration = Duration::from_secs(1);

/// Longest wait for the server to be quiet before a measurement.
pub const QUIET_MAX: Duration = Duration::from_secs(120);

/// [`wait_quiet`] for at most [`QUIET_MAX`], saying on stderr how long it waited and whether
/// the server went quiet; the seconds waited.
pub async fn until_quiet(engine: &str, pid: u32) -> f64 {
    let (waited, quiet) = wait_quiet(pid, QUIET_MAX).await;
    eprintln!(
        "[{engine}] waited {:.1} s for the server to be quiet{}",
        waited.as_secs_f64(),
        if quiet { "" } else { " (it was not)" }
    );
    waited.as_secs_f64()
}

/// Waits until process `pid` is quiet (its background work, such as the audit writes a
/// warm-up queued, is done), at most `max`; returns how long it waited and whether it became
/// quiet (`false` also when its CPU cannot be read).
pub async fn wait_quiet(pid: u32, max: Duration) -> (Duration, bool) {
    let started = Instant::now();
    let Some(mut before) = cpu_time(pid) else {
        return (Duration::ZERO, false);
    };
    while started.elapsed() < max {
        tokio::time::sleep(QUIET_WINDOW).await;
        let Some(now) = cpu_time(pid) else {
            break;
        };
        if is_quiet(now.saturating_sub(before), QUIET_WINDOW) {
            return (started.elapsed(), true);
        }
        before = now;
    }
    (started.elapsed(), false)
}

fn is_quiet(used: Duration, window: Duration) -> bool {
    used.as_secs_f64() < QUIET_SHARE * window.as_secs_f64()
}

/// `sysconf(_SC_CLK_TCK)` without a libc binding: `getconf` knows it; Linux uses 100.
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

/// Resident memory of process `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        let busy: u64 = (0..2_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(busy > 0);
        assert!(cpu_time(pid).is_some());
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(cpu_time(u32::MAX).is_none());
        // This test binary's own name is in `comm` (truncated to 15 bytes): its time counts.
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert!(cpu_time_of_named(comm.trim()).unwrap() > Duration::ZERO);
        assert_eq!(cpu_time_of_named("no-such-process-name").unwrap(), Duration::ZERO);
    }

    #[test]
    fn a_stat_line_with_a_strange_name_parses() {
        let stat = "42 (post gres (x)) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 9 0 0";
        assert_eq!(parse_stat(stat), Some(("post gres (x)", 12)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn quiet_means_under_a_twentieth_of_a_core() {
        let second = Duration::from_secs(1);
        assert!(is_quiet(Duration::from_millis(40), second));
        assert!(!is_quiet(Duration::from_millis(60), second));
    }
}
