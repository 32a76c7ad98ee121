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
use crate::clock::{Clock, Heartbeat};
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
    let enqueued = if notifier.reminders_allowed(now) {
        let (due, _) = ops::reminders_due(store, config, calendar, now).context("cannot compute the reminders due")?;
        let enqueued = store.enqueue(&due)?;
        store.flush().await?;
        if !enqueued.is_empty() {
            info!(count = enqueued.len(), "Reminders enqueued");
        }
        enqueued
    } else {
        // A public holiday, a weekend, or outside `send_hours` (the catch-up tick at 3 a.m.):
        // what is due stays due, and the next tick inside the hours sends it.
        info!("Outside the sending hours: no reminder now");
        Vec::new()
    };
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
    beat: Heartbeat,
    cancel: CancellationToken,
) {
    let Some(schedule) = config.schedule.clone() else {
        error!("reminders.schedule did not parse; no reminders will be sent");
        cancel.cancelled().await;
        return;
    };
    let mut at = clock.now();
    loop {
        beat.beat();
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
            beat.beat();
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

    /// Accepts every message.
    struct Accept;
    impl Deliver for Accept {
        async fn deliver(&self, _: &lettre::Message) -> Result<(), super::super::smtp::SendError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn reminders_wait_for_a_business_day_inside_the_sending_hours_notices_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        // Applied Mon 2027-02-01: the guidance window is overdue from Fri 02-05.
        let acme = crate::ops::NewMerchant {
            id: "acme".into(),
            name: "에이씨미".into(),
            contacts: vec!["pay@acme.test".into()],
            business_no: None,
            mids: Vec::new(),
            applied_at: Some("2027-02-01T10:00:00+09:00".into()),
            ..Default::default()
        };
        crate::ops::merchant_add(&store, &acme, t("2027-02-01T10:00:00+09:00")).unwrap();
        let spam = super::super::outbox::tests::spam_entry();
        store.enqueue(&[spam]).unwrap();
        let calendar = Arc::new(Calendar::builtin());
        let notifier = Notifier::new(
            store,
            Accept,
            super::super::render::Renderer::new(&Default::default()).unwrap(),
            "noreply@example.test".parse().unwrap(),
        )
        .with_sending_hours(crate::config::SendHours::default(), calendar.clone());
        let config = Config::builtin();
        let cancel = CancellationToken::new();
        let sent = |r: &TickReport| r.outcomes.iter().map(|o| o.key.clone()).collect::<Vec<_>>();

        // 설날 (Mon 2027-02-08, a public holiday) at 09:00: the spam notice goes, no reminder.
        let r = tick(&notifier, &config, &calendar, t("2027-02-08T09:00:00+09:00"), &cancel).await.unwrap();
        assert_eq!((r.enqueued.len(), sent(&r)), (0, vec!["spam/acme/00aa".to_owned()]));
        // Wed 2027-02-10, a business day, at 03:00 (a start at night): nothing.
        let r = tick(&notifier, &config, &calendar, t("2027-02-10T03:00:00+09:00"), &cancel).await.unwrap();
        assert_eq!((r.enqueued.len(), sent(&r).len()), (0, 0), "{r:?}");
        // The same day at 09:00: the reminder.
        let r = tick(&notifier, &config, &calendar, t("2027-02-10T09:00:00+09:00"), &cancel).await.unwrap();
        let key = "reminder/acme/guidance@20270201/001".to_owned();
        assert_eq!((r.enqueued.clone(), sent(&r)), (vec![key.clone()], vec![key]));
        // 18:00 is outside again.
        assert!(!notifier.reminders_allowed(t("2027-02-10T18:00:00+09:00")));
        assert!(notifier.reminders_allowed(t("2027-02-10T17:59:59+09:00")));
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
            Heartbeat::none(),
            cancel.clone(),
        ));
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run_schedule returns promptly after cancel")
            .unwrap();
    }
}
