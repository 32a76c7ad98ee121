//! The reminder schedule: `[reminders] schedule` (cron with seconds) evaluated in Asia/Seoul. Each
//! tick recomputes the due set from stored state ([`ops::reminders_due`]), enqueues it
//! insert-if-absent, flushes, then drains the outbox. Because the due set comes from state and the
//! keys are idempotency keys, a tick missed while the daemon was down is made up by the tick
//! [`run_schedule`] runs at start-up, and a tick replayed at the same instant enqueues nothing new.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Asia::Seoul;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, Instrument};

use super::outbox::{Notifier, Outcome};
use super::smtp::Deliver;
use crate::clock::Clock;
use crate::config::Config;
use crate::ops;
use crate::schedule::Calendar;

/// What one tick did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TickReport {
    pub at: DateTime<Utc>,
    /// Reminder keys newly enqueued by this tick.
    pub enqueued: Vec<String>,
    /// Every entry the drain tried (reminders of this tick and anything else due).
    pub outcomes: Vec<Outcome>,
}

/// One tick at `now`: enqueue the reminders due, flush, then send everything due.
pub async fn tick<D: Deliver>(
    notifier: &Notifier<D>,
    config: &Config,
    calendar: &Calendar,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> anyhow::Result<TickReport> {
    let store = notifier.store();
    let (due, _) = ops::reminders_due(store, config, calendar, now).context("cannot compute the reminders due")?;
    let enqueued = store.enqueue(&due)?;
    store.flush().await?;
    if !enqueued.is_empty() {
        info!(count = enqueued.len(), "Reminders enqueued");
    }
    super::crash_after("enqueue");
    let outcomes = notifier.drain(now, cancel).await?;
    Ok(TickReport { at: now, enqueued, outcomes })
}

/// The first schedule time strictly after `after`, evaluated in Asia/Seoul.
pub fn next_tick(schedule: &cron::Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.after(&after.with_timezone(&Seoul)).next().map(|t| t.with_timezone(&Utc))
}

/// Longest single sleep: the next tick is recomputed at least this often, so a wall-clock jump
/// (suspend, NTP step) delays a tick by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// The schedule loop for the daemon: one tick at once (making up for missed ones), then one at each
/// cron time, until `cancel`. A failing tick is logged and the loop goes on.
pub async fn run_schedule<D: Deliver>(
    notifier: Arc<Notifier<D>>,
    config: Arc<Config>,
    calendar: Arc<Calendar>,
    clock: Clock,
    cancel: CancellationToken,
) {
    let Some(schedule) = config.schedule.clone() else {
        error!("reminders.schedule did not parse; no reminders will be sent");
        cancel.cancelled().await;
        return;
    };
    let mut at = clock.now();
    loop {
        let span = info_span!("tick", at = %at.with_timezone(&Seoul).to_rfc3339());
        match tick(&notifier, &config, &calendar, at, &cancel).instrument(span).await {
            Ok(r) => info!(enqueued = r.enqueued.len(), tried = r.outcomes.len(), "Reminder tick done"),
            Err(e) => {
                error!(error = %format!("{e:#}"), "Reminder tick failed; the next tick recomputes")
            }
        }
        let Some(next) = next_tick(&schedule, at) else {
            info!("reminders.schedule has no further times");
            cancel.cancelled().await;
            return;
        };
        info!(next = %next.with_timezone(&Seoul).to_rfc3339(), "Next reminder tick");
        loop {
            let now = clock.now();
            if now >= next {
                at = now;
                break;
            }
            let wait = (next - now).to_std().unwrap_or(Duration::ZERO).min(MAX_SLEEP);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn default_schedule_is_weekdays_at_nine_in_seoul() {
        let s = cron::Schedule::from_str("0 0 9 * * Mon-Fri").unwrap();
        // Friday 10:00 KST → Monday 09:00 KST (= Monday 00:00 UTC).
        assert_eq!(next_tick(&s, t("2027-02-12T10:00:00+09:00")), Some(t("2027-02-15T09:00:00+09:00")));
        // Thursday 23:30 UTC is already Friday 08:30 in Seoul → Friday 09:00 KST.
        assert_eq!(next_tick(&s, t("2027-02-11T23:30:00Z")), Some(t("2027-02-12T09:00:00+09:00")));
        // Strictly after: at 09:00 sharp the next one is the next day.
        assert_eq!(next_tick(&s, t("2027-02-15T09:00:00+09:00")), Some(t("2027-02-16T09:00:00+09:00")));
    }

    #[tokio::test]
    async fn run_schedule_ends_when_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        struct Never;
        impl Deliver for Never {
            async fn deliver(&self, _: &lettre::Message) -> Result<(), super::super::smtp::SendError> {
                Ok(())
            }
        }
        let notifier = Arc::new(Notifier::new(
            store,
            Never,
            super::super::render::Renderer::new(&Default::default()).unwrap(),
            "noreply@example.test".parse().unwrap(),
        ));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_schedule(
            notifier,
            Arc::new(Config::builtin()),
            Arc::new(Calendar::builtin()),
            Clock::System,
            cancel.clone(),
        ));
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run_schedule returns promptly after cancel")
            .unwrap();
    }
}
