//! Time, injected: the system clock in production, a fixed or shifted instant under `--now` and
//! in tests, so nothing that depends on "today" needs a sleep to be tested.

use std::time::Instant;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    /// Always this instant (`--now` for one-shot commands).
    Fixed(DateTime<Utc>),
    /// Starts at this instant and runs (`--now` for the daemon).
    From(DateTime<Utc>, Instant),
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(t) => *t,
            Clock::From(t, start) => *t + chrono::Duration::from_std(start.elapsed()).unwrap_or_default(),
        }
    }

    /// A running clock that starts at `t` now.
    pub fn starting_at(t: DateTime<Utc>) -> Clock {
        Clock::From(t, Instant::now())
    }
}

/// A long-running task's proof of progress, for the daemon's watchdog (SPEC §9): the task calls
/// [`Heartbeat::beat`] from inside its loop each time round. Outside the daemon it does nothing.
#[derive(Clone, Default)]
pub struct Heartbeat(Option<std::sync::Arc<dyn Fn() + Send + Sync>>);

impl Heartbeat {
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Heartbeat {
        Heartbeat(Some(std::sync::Arc::new(f)))
    }

    pub fn none() -> Heartbeat {
        Heartbeat(None)
    }

    pub fn beat(&self) {
        if let Some(f) = &self.0 {
            f();
        }
    }
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Heartbeat" } else { "Heartbeat(none)" })
    }
}
