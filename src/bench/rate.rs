//! The fixed-rate (open-loop) schedule: request `i` is due at `start + i / rate`, whatever the
//! server answers, so a slow answer cannot hold the next requests back and hide itself (the
//! "coordinated omission" of a closed loop). Latency counts from the moment a request was due,
//! not from when it could be sent. At most `connections` requests are in flight; a request due
//! while all are busy is a *late start*: it waits for a free one, and its wait is in its latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// When each request of a fixed-rate run is due.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    count: u64,
}

impl Schedule {
    /// `rate` requests per second for `duration`, at most `limit` requests (the devices there
    /// are to use once).
    pub fn new(start: Instant, rate: f64, duration: Duration, limit: Option<u64>) -> Self {
        let planned = (rate.max(0.0) * duration.as_secs_f64()).floor() as u64;
        Self {
            start,
            rate,
            count: limit.map_or(planned, |limit| planned.min(limit)),
        }
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// When request `i` is due: it depends on `i` only, never on earlier answers.
    pub fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How long the schedule lasts: from the start to the last request's due time plus one
    /// interval.
    pub fn span(&self) -> Duration {
        Duration::from_secs_f64(self.count as f64 / self.rate)
    }
}

/// The requests in flight, at most as many as the connections, and the late starts.
pub struct InFlight {
    permits: Arc<Semaphore>,
    size: usize,
    late_starts: AtomicU64,
}

impl InFlight {
    pub fn new(connections: usize) -> Self {
        let size = connections.max(1);
        Self {
            permits: Arc::new(Semaphore::new(size)),
            size,
            late_starts: AtomicU64::new(0),
        }
    }

    /// A slot for a request that is due now: at once when a connection is free; otherwise the
    /// request is a late start and waits for one.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return permit;
        }
        self.late_starts.fetch_add(1, Ordering::Relaxed);
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the in-flight semaphore is never closed")
    }

    /// Waits until every request in flight has ended.
    pub async fn drain(&self) {
        let all = u32::try_from(self.size).unwrap_or(u32::MAX);
        drop(self.permits.acquire_many(all).await);
    }

    pub fn late_starts(&self) -> u64 {
        self.late_starts.load(Ordering::Relaxed)
    }
}

/// A request's latency in microseconds: from when it was due to when its answer was read.
pub fn latency_us(due: Instant, done: Instant) -> u32 {
    done.saturating_duration_since(due)
        .as_micros()
        .min(u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_due_at_fixed_intervals_up_to_the_limit() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 2000.0, Duration::from_secs(30), None);
        assert_eq!(schedule.len(), 60_000);
        assert_eq!(schedule.due(0), start);
        assert_eq!(schedule.due(1) - schedule.due(0), Duration::from_micros(500));
        assert_eq!(schedule.due(2000) - start, Duration::from_secs(1));
        assert_eq!(schedule.span(), Duration::from_secs(30));
        // Fewer devices than the rate and the time allow: each is used once, no more.
        assert_eq!(
            Schedule::new(start, 2000.0, Duration::from_secs(30), Some(10)).len(),
            10
        );
        assert!(Schedule::new(start, 0.0, Duration::from_secs(30), None).is_empty());
    }

    #[test]
    fn latency_counts_from_the_due_time_not_the_send_time() {
        let due = Instant::now();
        // Sent 3 ms late, answered 1 ms after sending: 4 ms.
        let done = due + Duration::from_millis(4);
        assert_eq!(latency_us(due, done), 4_000);
        // An answer cannot come before its due time; it never goes negative.
        assert_eq!(latency_us(done, due), 0);
    }

    #[tokio::test]
    async fn a_request_due_while_every_connection_is_busy_is_a_late_start() {
        let in_flight = Arc::new(InFlight::new(2));
        let first = in_flight.slot().await;
        let second = in_flight.slot().await;
        assert_eq!(in_flight.late_starts(), 0);
        let waiting = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.slot().await }
        });
        // The third waits until a connection frees up, and counts as late.
        for _ in 0..1000 {
            if in_flight.late_starts() == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(in_flight.late_starts(), 1);
        drop(first);
        let third = waiting.await.unwrap();
        assert_eq!(in_flight.late_starts(), 1);
        drop(third);
        drop(second);
        in_flight.drain().await;
        let _fourth = in_flight.slot().await;
        assert_eq!(in_flight.late_starts(), 1);
    }
}
