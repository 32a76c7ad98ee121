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
