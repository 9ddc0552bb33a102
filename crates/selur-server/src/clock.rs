//! Time as controllers see it: a trait so tests can drive it instead of
//! sleeping. A server started with a [`ManualClock`] (through
//! [`crate::ServerConfig::clock`]) runs its CronJobs, Job deadlines and TTLs
//! at the times the test sets: each [`ManualClock::advance`] makes every
//! controller look at all its objects again.

use std::sync::Mutex;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use tokio::sync::watch;

/// A source of the current time.
pub trait Clock: std::fmt::Debug + Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// Told when the time jumps (a manual clock moved); `None` for a clock
    /// that only runs forward with real time.
    fn jumps(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

/// Wait for the next jump of a clock's [`Clock::jumps`]; never returns
/// for a clock that does not jump (or once its sender is gone).
pub async fn next_jump(jumps: &mut Option<watch::Receiver<u64>>) {
    if let Some(j) = jumps {
        if j.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    jumps: watch::Sender<u64>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
            jumps: watch::Sender::new(0),
        }
    }

    /// Move the time forward by `by` and tell the controllers.
    pub fn advance(&self, by: Duration) {
        {
            let mut t = self.now.lock().unwrap_or_else(|p| p.into_inner());
            *t += by;
        }
        self.jumps.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn jumps(&self) -> Option<watch::Receiver<u64>> {
        Some(self.jumps.subscribe())
    }
}

/// RFC 3339 with seconds, as Kubernetes writes `metav1.Time`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
