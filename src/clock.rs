//! The time the services and jobs go by. Production reads the system clock; tests hold a
//! manual clock and move it forward, so hold periods and pull intervals pass without sleeping.

use chrono::{DateTime, Duration, Utc};
use std::sync::{Arc, Mutex};

/// The current time, shared by every clone. `Clock::default()` is the system clock.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None`: the system clock. `Some`: a time that moves only when told to.
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock standing at `start` until advanced.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self {
            manual: Some(Arc::new(Mutex::new(start))),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            None => Utc::now(),
            Some(at) => *at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    /// Moves a manual clock forward; the system clock cannot be moved (nothing happens).
    pub fn advance(&self, by: Duration) {
        if let Some(at) = &self.manual {
            let mut at = at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *at += by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let start = Utc::now();
        let clock = Clock::manual(start);
        let copy = clock.clone();
        assert_eq!(copy.now(), start);
        clock.advance(Duration::seconds(90));
        assert_eq!(copy.now(), start + Duration::seconds(90));
        let system = Clock::system();
        system.advance(Duration::days(1));
        assert!(system.now() < Utc::now() + Duration::hours(1));
    }
}
