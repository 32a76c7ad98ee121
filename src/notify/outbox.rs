//! Draining the sled outbox: render (once, stored and flushed before the first try), send, and
//! record the outcome (flushed right after the server accepts, so a key is never sent twice in
//! normal operation). Transient failures are retried with persisted, capped, jittered exponential
//! backoff in `next_attempt_at`; permanent ones (5xx) give up after a few tries as
//! [`Delivery::Failed`], which `hecto-watch retry` puts back.
//!
//! Exactly-once holds except for one window no SMTP client can close: a crash after the server
//! accepted the message and before `Sent` reached the disk resends it once after the restart —
//! with the same `Message-ID`, so clients show it once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use super::message;
use super::render::Renderer;
use super::smtp::Deliver;
#[cfg(test)]
use super::smtp::SendError;
use crate::clock::Heartbeat;
use crate::config::SendHours;
use crate::merchant::Merchant;
use crate::schedule::due::{open_window, window_instance};
use crate::schedule::Calendar;
use crate::store::{Delivery, NoticeKind, OutboxEntry, Store};

/// How failed sends are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure; doubled after each further one.
    pub first: Duration,
    /// No delay longer than this.
    pub cap: Duration,
    /// A permanent (5xx) failure on this attempt or later gives up.
    pub permanent_tries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { first: Duration::from_secs(30), cap: Duration::from_secs(3600), permanent_tries: 3 }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempts` (1-based). `jitter` in `[0, 1)` takes up to
    /// a quarter off, so daemons restarted together do not retry in lockstep; never above `cap`.
    pub fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        let exp = attempts.saturating_sub(1).min(31);
        let full = self.first.checked_mul(1u32 << exp).unwrap_or(self.cap).min(self.cap);
        full.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
    }
}

/// What happened to one entry in a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Sent,
    /// Failed for now; tried again at `next_attempt_at`.
    Retrying,
    /// Gave up; see `reminders --failed`, `retry`.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Outcome {
    pub key: String,
    pub kind: NoticeKind,
    pub result: OutcomeKind,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub attempts: u32,
    pub error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl Outcome {
    fn of(e: &OutboxEntry, result: OutcomeKind) -> Outcome {
        Outcome {
            key: e.key.clone(),
            kind: e.kind,
            result,
            to: e.to.clone(),
            cc: e.cc.clone(),
            subject: e.rendered.as_ref().map(|r| r.subject.clone()),
            message_id: e.rendered.as_ref().map(|r| r.message_id.clone()),
            attempts: e.attempts,
            error: e.last_error.clone(),
            next_attempt_at: e.next_attempt_at,
        }
    }
}

/// Whether an entry waits to be sent at `now`.
pub fn is_due(e: &OutboxEntry, now: DateTime<Utc>) -> bool {
    e.status == Delivery::Pending && e.next_attempt_at.is_none_or(|t| t <= now)
}

/// The window instance a merchant has open now (`guidance@20270205`), for dropping reminders
/// that went stale while they waited (the guidance mail arrived during an SMTP outage).
fn open_instance(m: &Merchant) -> Option<String> {
    open_window(m).map(|(window, opened)| window_instance(window, opened))
}

/// The outbox and its sender: renders, sends through `D`, records outcomes.
pub struct Notifier<D: Deliver> {
    store: Store,
    deliver: D,
    renderer: Renderer,
    from: Mailbox,
    from_domain: String,
    policy: RetryPolicy,
    /// One drain at a time: the schedule's tick and the sender task may both drain, and so may
    /// the previous configuration's tasks for a while after a SIGHUP (see [`Notifier::with_drain_lock`]).
    drain_lock: DrainLock,
    /// When reminders may go out (SPEC §5: business days, inside `send_hours`, Asia/Seoul);
    /// `None`: at any time. Notices and alerts are never held.
    reminder_hours: Option<(SendHours, Arc<Calendar>)>,
    /// Beaten once per message a drain handles: a drain of many messages through a slow SMTP
    /// server is progress, not a wedged task (the daemon's watchdog, SPEC §9).
    progress: Heartbeat,
    /// The addresses of watched accounts (lower case): a message to one of them that may have
    /// been delivered before a crash is looked for there before it is resent.
    watched: Vec<String>,
    in_doubt_wait: chrono::Duration,
}

/// How long a message that may have been delivered before a crash (see [`in_doubt`]) waits for
/// its copy to show up in a watched mailbox before it is resent (with the same Message-ID), unless
/// `reminders.in_doubt_wait` says otherwise.
pub const IN_DOUBT_WAIT: chrono::Duration = chrono::Duration::minutes(10);

/// When an entry that was being handed to the SMTP server when the process ended is resent:
/// `None` — now (nobody watched receives it, so nothing can tell); `Some(t)` — at `t`, unless
/// the daemon reads its copy in a watched INBOX before (then it is recorded as sent).
pub fn in_doubt(e: &OutboxEntry, watched: &[String], wait: chrono::Duration) -> Option<DateTime<Utc>> {
    let since = e.sending_since?;
    let to_watched = e.to.iter().chain(&e.cc).any(|a| watched.iter().any(|w| w.eq_ignore_ascii_case(a.trim())));
    to_watched.then(|| since + wait)
}

/// Held by whoever drains an outbox.
pub type DrainLock = std::sync::Arc<tokio::sync::Mutex<()>>;

impl<D: Deliver> Notifier<D> {
    pub fn new(store: Store, deliver: D, renderer: Renderer, from: Mailbox) -> Notifier<D> {
        Notifier {
            from_domain: message::domain(&from),
            store,
            deliver,
            renderer,
            from,
            policy: RetryPolicy::default(),
            drain_lock: DrainLock::default(),
            reminder_hours: None,
            progress: Heartbeat::none(),
            watched: Vec::new(),
            in_doubt_wait: IN_DOUBT_WAIT,
        }
    }

    /// The watched accounts' addresses, and how long a message in doubt to one of them waits
    /// for its copy (see [`in_doubt`]).
    pub fn with_watched_addresses(mut self, addresses: Vec<String>, wait: std::time::Duration) -> Self {
        self.watched = addresses.into_iter().map(|a| a.trim().to_lowercase()).filter(|a| a.contains('@')).collect();
        self.in_doubt_wait = chrono::Duration::from_std(wait).unwrap_or(IN_DOUBT_WAIT);
        self
    }

    /// Beat `progress` for every message a drain handles (and so for whoever waits on the drain
    /// lock meanwhile).
    pub fn with_progress(mut self, progress: Heartbeat) -> Self {
        self.progress = progress;
        self
    }

    /// Send reminders only on business days of `calendar` inside `hours` (Asia/Seoul): a tick
    /// outside them enqueues none, and a reminder waiting in the outbox (a retry) waits for the
    /// next tick inside them. Spam and operator notices are sent at any day and hour.
    pub fn with_sending_hours(mut self, hours: SendHours, calendar: Arc<Calendar>) -> Self {
        self.reminder_hours = Some((hours, calendar));
        self
    }

    /// Whether a reminder may go out at `now`.
    pub fn reminders_allowed(&self, now: DateTime<Utc>) -> bool {
        self.reminder_hours.as_ref().is_none_or(|(hours, calendar)| {
            let local = now.with_timezone(&chrono_tz::Asia::Seoul);
            calendar.is_business_day(local.date_naive()) && hours.contains(local.time())
        })
    }

    /// Share the drain lock with other notifiers of the same outbox (the daemon's configuration
    /// generations), so two of them never send the same due entry at once.
    pub fn with_drain_lock(mut self, lock: DrainLock) -> Self {
        self.drain_lock = lock;
        self
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn deliverer(&self) -> &D {
        &self.deliver
    }

    /// Send a message that has no outbox entry (so nothing records it and nothing retries it):
    /// only for telling the operators that the outbox itself cannot be written.
    pub async fn send_unrecorded(&self, to: &[String], tag: &str, subject: &str, text: &str) -> anyhow::Result<()> {
        let msg = message::direct(&self.from, to, tag, subject, text)?;
        self.deliver.deliver(&msg).await?;
        Ok(())
    }

    /// Send every entry due at `now`, oldest first. Stops early (between messages) when `cancel`
    /// fires. Database errors end the drain; SMTP errors are recorded per entry.
    pub async fn drain(&self, now: DateTime<Utc>, cancel: &CancellationToken) -> anyhow::Result<Vec<Outcome>> {
        Ok(self.drain_and_next(now, cancel).await?.0)
    }

    /// [`Notifier::drain`], and when the earliest entry still pending afterwards becomes due
    /// (`None`: nothing pending), from the same read of the outbox.
    pub async fn drain_and_next(
        &self,
        now: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> anyhow::Result<(Vec<Outcome>, Option<DateTime<Utc>>)> {
        let _one_at_a_time = self.drain_lock.lock().await;
        if let Some(fault) = self.store.fault() {
            // Nothing is sent while the database cannot record it (SPEC §9 Durability); the
            // daemon restarts once the disk has room.
            debug!(error = %fault.error, "Not sending: the database could not be written");
            return Ok((Vec::new(), None));
        }
        let unrecorded = self.store.sent_unrecorded();
        // Reminders held outside the sending hours are neither sent nor woken for: the next
        // tick of the schedule inside the hours drains them.
        let reminders = self.reminders_allowed(now);
        let (mut due, waiting): (Vec<OutboxEntry>, Vec<OutboxEntry>) = self
            .store
            .outbox_entries()?
            .into_iter()
            .filter(|e| e.status == Delivery::Pending && (reminders || e.kind != NoticeKind::Reminder))
            .filter(|e| !unrecorded.sent.contains_key(&e.key))
            .partition(|e| is_due(e, now));
        let mut next = waiting.iter().filter_map(|e| e.next_attempt_at).min();
        // In doubt and looked for in a watched mailbox first: not yet.
        due.retain(|e| match in_doubt(e, &self.watched, self.in_doubt_wait) {
            Some(t) if t > now => {
                next = Some(next.map_or(t, |n| n.min(t)));
                false
            }
            _ => true,
        });
        due.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
        let mut outcomes = Vec::new();
        for entry in due {
            self.progress.beat();
            if cancel.is_cancelled() {
                // Still due: the next drain takes it.
                next = Some(now);
                break;
            }
            let span = info_span!(
                "notice",
                key = %entry.key,
                kind = entry.kind.as_str(),
                merchant = entry.merchant.as_deref().unwrap_or("-"),
            );
            if let Some(o) = self.send_one(&entry.key, now).instrument(span).await? {
                if let (OutcomeKind::Retrying, Some(t)) = (o.result, o.next_attempt_at) {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
                outcomes.push(o);
            }
        }
        Ok((outcomes, next))
    }

    async fn send_one(&self, key: &str, now: DateTime<Utc>) -> anyhow::Result<Option<Outcome>> {
        // Re-read: the entry may have changed since the list was made (`retry`, a removal).
        let Some(mut entry) = self.store.outbox_entry(key)? else {
            return Ok(None);
        };
        if !is_due(&entry, now) {
            return Ok(None);
        }
        if entry.kind == NoticeKind::Reminder {
            if let Some(stale) = self.stale_reason(&entry)? {
                return self.give_up(entry, format!("not sent: {stale}")).await.map(Some);
            }
        }
        let rendered = match &entry.rendered {
            Some(r) => r.clone(),
            None => {
                let r = match self.renderer.render(&entry, &self.from_domain) {
                    Ok(r) => r,
                    Err(e) => return self.give_up(entry, format!("cannot render: {e:#}")).await.map(Some),
                };
                // Written (and on disk) before the first try: a retry or a restart sends the
                // same subject, body and Message-ID.
                entry.rendered = Some(r.clone());
                self.store.update_outbox(&entry)?;
                self.store.flush().await?;
                super::crash_after("render");
                r
            }
        };
        let msg = match message::build(&entry, &rendered, &self.from) {
            Ok(m) => m,
            Err(e) => return self.give_up(entry, e.to_string()).await.map(Some),
        };
        if let Some(since) = entry.sending_since {
            info!(since = %since.to_rfc3339(), message_id = %rendered.message_id, "Resending a message that may have been delivered before the last stop (same Message-ID)");
        }
        // On disk before the server sees the message: a crash from here until the outcome is
        // recorded leaves the mark, and the next run knows the message may have been delivered.
        // A database that cannot take this write sends nothing.
        entry.sending_since = Some(now);
        self.store.update_outbox(&entry)?;
        self.store.flush().await?;
        super::crash_after("marked");
        entry.attempts = entry.attempts.saturating_add(1);
        debug!(attempt = entry.attempts, message_id = %rendered.message_id, "Sending");
        let handing_over = std::time::Instant::now();
        match self.deliver.deliver(&msg).await {
            Ok(()) => {
                let accepted = std::time::Instant::now();
                super::crash_after("accepted");
                entry.status = Delivery::Sent;
                entry.sent_at = Some(now);
                entry.last_error = None;
                entry.next_attempt_at = None;
                entry.sending_since = None;
                // Right after the server accepted: this flush is what keeps a key from being
                // sent twice. When it fails the key is remembered, so this process never sends
                // it again, and written down for the next one once the disk has room.
                let recorded = match self.store.update_outbox(&entry) {
                    Ok(_) => self.store.flush().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = recorded {
                    self.store.remember_sent_unrecorded(&entry.key, now);
                    // A small file may still fit where sled's write did not; the daemon writes it
                    // again once there is room, and a one-shot command may get no later chance.
                    let _ = self.store.save_sent_unrecorded();
                    return Err(e.context(format!("{} was sent but cannot be recorded as sent", entry.key)));
                }
                // The two windows a crash could hit (scripts/bench-kill-sending reads them): handing
                // the message over (a crash there leaves it in doubt) and accepted-but-unrecorded
                // (a crash there resends it).
                info!(
                    message_id = %rendered.message_id,
                    to = entry.to.len(),
                    cc = entry.cc.len(),
                    attempt = entry.attempts,
                    smtp_us = accepted.duration_since(handing_over).as_micros() as u64,
                    record_us = accepted.elapsed().as_micros() as u64,
                    "Notice sent"
                );
                Ok(Some(Outcome::of(&entry, OutcomeKind::Sent)))
            }
            Err(err) => {
                let permanent = err.is_permanent();
                entry.sending_since = None;
                entry.last_error = Some(err.to_string());
                if permanent && entry.attempts >= self.policy.permanent_tries {
                    entry.status = Delivery::Failed;
                    entry.next_attempt_at = None;
                    warn!(error = %err, attempts = entry.attempts, "Notice rejected permanently, giving up (see `hecto-watch reminders --failed`)");
                } else {
                    let delay = self.policy.backoff(entry.attempts, rand::random::<f64>());
                    let next = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
                    entry.next_attempt_at = Some(next);
                    warn!(
                        error = %err,
                        attempt = entry.attempts,
                        permanent,
                        retry_in_s = delay.as_secs(),
                        "Notice send failed, will retry"
                    );
                }
                self.store.update_outbox(&entry)?;
                self.store.flush().await?;
                let result = if entry.status == Delivery::Failed { OutcomeKind::Failed } else { OutcomeKind::Retrying };
                Ok(Some(Outcome::of(&entry, result)))
            }
        }
    }

    /// A problem of the entry itself (no recipients, bad address): retrying cannot help.
    async fn give_up(&self, mut entry: OutboxEntry, why: String) -> anyhow::Result<Outcome> {
        warn!(error = %why, "Notice cannot be sent, giving up (see `hecto-watch reminders --failed`)");
        entry.status = Delivery::Failed;
        entry.sending_since = None;
        entry.last_error = Some(why);
        entry.next_attempt_at = None;
        self.store.update_outbox(&entry)?;
        self.store.flush().await?;
        Ok(Outcome::of(&entry, OutcomeKind::Failed))
    }

    fn stale_reason(&self, entry: &OutboxEntry) -> anyhow::Result<Option<String>> {
        let Some(id) = &entry.merchant else {
            return Ok(None);
        };
        let Some(m) = self.store.merchant(id)? else {
            return Ok(Some(format!("merchant {id} no longer exists")));
        };
        if m.paused {
            return Ok(Some(format!("merchant {id}'s reminders are paused")));
        }
        if open_instance(&m).as_deref() == Some(entry.window.as_str()) {
            Ok(None)
        } else {
            Ok(Some(format!("window {} closed (merchant {id} is now at stage {})", entry.window, m.stage.id())))
        }
    }
}

/// Put failed (or waiting) entries back to be sent at the next drain: `keys`, or every failed one
/// with `all`. A sent key is refused — a key is never sent twice.
pub fn retry(store: &Store, keys: &[String], all: bool) -> anyhow::Result<Vec<OutboxEntry>> {
    use crate::store::Refused;
    let targets: Vec<OutboxEntry> = if all {
        crate::ops::failed(store)?
    } else {
        if keys.is_empty() {
            return Err(Refused::BadInput(
                "name the keys to retry (see `hecto-watch reminders --failed`), or pass --all".into(),
            )
            .into());
        }
        let mut out = Vec::new();
        for k in keys {
            match store.outbox_entry(k)? {
                None => {
                    return Err(Refused::BadInput(format!(
                        "no outbox entry {k:?} (see `hecto-watch reminders --failed`)"
                    ))
                    .into())
                }
                Some(e) if e.status == Delivery::Sent => {
                    return Err(Refused::BadInput(format!(
                        "{k:?} was already sent{}; a key is never sent twice",
                        e.sent_at.map(|t| format!(" at {}", t.to_rfc3339())).unwrap_or_default()
                    ))
                    .into())
                }
                Some(e) => out.push(e),
            }
        }
        out
    };
    let mut done = Vec::new();
    for mut e in targets {
        e.status = Delivery::Pending;
        e.attempts = 0;
        e.next_attempt_at = None;
        store.put_outbox(&e)?;
        done.push(e);
    }
    store.flush_blocking()?;
    Ok(done)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Reminders;
    use crate::store::NoticeFacts;
    use std::sync::Mutex;

    /// Replays scripted results and records what it was given.
    struct Script {
        results: Mutex<Vec<Result<(), SendError>>>,
        sent: Mutex<Vec<Vec<u8>>>,
    }

    impl Deliver for Script {
        async fn deliver(&self, m: &lettre::Message) -> Result<(), SendError> {
            self.sent.lock().unwrap().push(m.formatted());
            let mut r = self.results.lock().unwrap();
            if r.is_empty() {
                Ok(())
            } else {
                r.remove(0)
            }
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn setup(results: Vec<Result<(), SendError>>) -> (tempfile::TempDir, Notifier<Script>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let n = Notifier::new(
            store,
            Script { results: Mutex::new(results), sent: Mutex::new(Vec::new()) },
            Renderer::new(&Reminders::default()).unwrap(),
            "Hecto Watch <noreply@example.test>".parse().unwrap(),
        );
        (dir, n)
    }

    /// A pending spam notice for merchant `acme` (shared with the schedule's tests).
    pub(crate) fn spam_entry() -> OutboxEntry {
        OutboxEntry::pending(
            "spam/acme/00aa".into(),
            NoticeKind::SpamNotice,
            Some("acme".into()),
            "spam".into(),
            1,
            NoticeFacts::SpamNotice {
                merchant_name: "에이씨미".into(),
                account: "contracts".into(),
                folder: "Junk".into(),
                subject: "계약 안내".into(),
                mail_date: t("2027-02-08T11:00:00+09:00"),
                message_id: None,
                kind: "guidance".into(),
                moved_to_inbox: false,
            },
            t("2027-02-08T11:00:00+09:00"),
        )
        .to_contacts(&["pay@acme.test".into()], &["ops@example.test".into()])
    }

    #[test]
    fn backoff_doubles_from_30s_to_a_one_hour_cap_and_jitter_only_shortens() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=9).map(|a| p.backoff(a, 0.0).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(p.backoff(1000, 0.0), Duration::from_secs(3600));
        for a in 1..20 {
            for j in [0.0, 0.3, 0.999] {
                let d = p.backoff(a, j);
                assert!(d <= p.backoff(a, 0.0) && d >= p.backoff(a, 0.0).mul_f64(0.75));
            }
        }
    }

    #[tokio::test]
    async fn transient_failure_is_persisted_with_backoff_then_sent_once() {
        let (_d, n) = setup(vec![Err(SendError::Transient("connection refused".into()))]);
        n.store().enqueue(&[spam_entry()]).unwrap();
        let now = t("2027-02-08T11:00:05+09:00");
        let (out, next) = n.drain_and_next(now, &CancellationToken::new()).await.unwrap();
        assert_eq!(out[0].result, OutcomeKind::Retrying);
        let e = n.store().outbox_entry("spam/acme/00aa").unwrap().unwrap();
        assert_eq!(next, e.next_attempt_at, "the sender sleeps until the retry is due");
        assert_eq!(e.status, Delivery::Pending);
        assert_eq!(e.attempts, 1);
        assert_eq!(e.last_error.as_deref(), Some("connection refused"));
        let next = e.next_attempt_at.unwrap();
        assert!(next > now && next <= now + chrono::Duration::seconds(30), "{next}");
        assert!(e.rendered.is_some(), "rendered before the first try");
        // Not due again before next_attempt_at.
        let (out, next) = n.drain_and_next(now, &CancellationToken::new()).await.unwrap();
        assert!(out.is_empty());
        assert_eq!(next, e.next_attempt_at, "still waiting: still due then");
        let later = now + chrono::Duration::seconds(31);
        let out = n.drain(later, &CancellationToken::new()).await.unwrap();
        assert_eq!(out[0].result, OutcomeKind::Sent);
        assert_eq!(n.drain_and_next(later, &CancellationToken::new()).await.unwrap(), (vec![], None));
        let sent = n.deliverer().sent.lock().unwrap();
        assert_eq!(sent.len(), 2, "one failed try, one success");
        let parse = |raw: &[u8]| {
            let m = mail_parser::MessageParser::default().parse(raw).unwrap();
            (
                m.subject().map(str::to_owned),
                m.message_id().map(str::to_owned),
                m.body_text(0).map(|t| t.into_owned()),
                m.body_html(0).map(|t| t.into_owned()),
            )
        };
        // Only the MIME boundary may differ: a retry sends the same message.
        assert_eq!(parse(&sent[0]), parse(&sent[1]));
        assert!(parse(&sent[0]).1.unwrap().ends_with("@hecto-watch.example.test"));
    }

    #[tokio::test]
    async fn permanent_failures_give_up_after_three_tries_and_retry_puts_them_back() {
        let perm = || Err(SendError::Permanent("550 no such user".into()));
        let (_d, n) = setup(vec![perm(), perm(), perm()]);
        n.store().enqueue(&[spam_entry()]).unwrap();
        let mut now = t("2027-02-08T11:00:05+09:00");
        let mut results = Vec::new();
        for _ in 0..5 {
            for o in n.drain(now, &CancellationToken::new()).await.unwrap() {
                results.push(o.result);
            }
            now += chrono::Duration::hours(2);
        }
        assert_eq!(results, [OutcomeKind::Retrying, OutcomeKind::Retrying, OutcomeKind::Failed]);
        let failed = n.store().outbox_entry("spam/acme/00aa").unwrap().unwrap();
        assert_eq!(failed.status, Delivery::Failed);
        assert_eq!(failed.last_error.as_deref(), Some("550 no such user"));

        let back = retry(n.store(), &[], true).unwrap();
        assert_eq!(back.len(), 1);
        let out = n.drain(now, &CancellationToken::new()).await.unwrap();
        assert_eq!(out[0].result, OutcomeKind::Sent);
        let err = retry(n.store(), &["spam/acme/00aa".into()], false).unwrap_err();
        assert!(format!("{err}").contains("never sent twice"), "{err}");
        assert!(retry(n.store(), &["nope".into()], false).is_err());
    }

    #[tokio::test]
    async fn an_entry_without_recipients_fails_at_once() {
        let (_d, n) = setup(vec![]);
        let mut e = spam_entry();
        e.to.clear();
        n.store().enqueue(&[e]).unwrap();
        let out = n.drain(t("2027-02-08T11:00:05+09:00"), &CancellationToken::new()).await.unwrap();
        assert_eq!(out[0].result, OutcomeKind::Failed);
        assert!(out[0].error.as_deref().unwrap().contains("no recipients"));
        assert!(n.deliverer().sent.lock().unwrap().is_empty());
    }

    /// acme, applied Fri 2027-02-05, its guidance reminder enqueued at `now` (Mon 02-15 09:00).
    fn acme_reminder_enqueued<D: Deliver>(n: &Notifier<D>, now: DateTime<Utc>) {
        let new = crate::ops::NewMerchant {
            id: "acme".into(),
            name: "에이씨미".into(),
            contacts: vec!["pay@acme.test".into()],
            applied_at: Some("2027-02-05T10:00:00+09:00".into()),
            ..Default::default()
        };
        crate::ops::merchant_add(n.store(), &new, now).unwrap();
        let config = crate::config::Config::builtin();
        let cal = crate::schedule::Calendar::builtin();
        let (due, _) = crate::ops::reminders_due(n.store(), &config, &cal, now).unwrap();
        assert_eq!(due.len(), 1);
        n.store().enqueue(&due).unwrap();
    }

    #[tokio::test]
    async fn a_reminder_whose_window_closed_while_it_waited_is_not_sent() {
        let (_d, n) = setup(vec![Err(SendError::Transient("connection refused".into()))]);
        let now = t("2027-02-15T09:00:00+09:00");
        acme_reminder_enqueued(&n, now);
        let out = n.drain(now, &CancellationToken::new()).await.unwrap();
        assert_eq!(out[0].result, OutcomeKind::Retrying, "SMTP down at first");
        // The guidance mail arrives during the outage.
        crate::ops::merchant_advance(n.store(), "acme", "guidance_received", None, None, now).unwrap();
        let out = n.drain(now + chrono::Duration::hours(1), &CancellationToken::new()).await.unwrap();
        assert_eq!(out[0].result, OutcomeKind::Failed);
        assert!(out[0].error.as_deref().unwrap().contains("window guidance@20270205 closed"), "{out:?}");
        assert_eq!(n.deliverer().sent.lock().unwrap().len(), 1, "only the try during the outage");
    }

    #[tokio::test]
    async fn a_reminder_waiting_when_its_merchant_is_paused_is_not_sent() {
        let (_d, n) = setup(vec![Err(SendError::Transient("connection refused".into()))]);
        let now = t("2027-02-15T09:00:00+09:00");
        acme_reminder_enqueued(&n, now);
        assert_eq!(n.drain(now, &CancellationToken::new()).await.unwrap()[0].result, OutcomeKind::Retrying);
        crate::ops::merchant_pause(n.store(), "acme", true, None, now).unwrap();
        let out = n.drain(now + chrono::Duration::hours(1), &CancellationToken::new()).await.unwrap();
        assert_eq!(out[0].result, OutcomeKind::Failed);
        assert!(out[0].error.as_deref().unwrap().contains("paused"), "{out:?}");
        assert_eq!(n.deliverer().sent.lock().unwrap().len(), 1, "only the try before the pause");
    }

    /// An entry marked as being sent when the last run ended (a crash between "250" and the
    /// "sent" record).
    fn in_doubt_entry(n: &Notifier<Script>, since: DateTime<Utc>) -> crate::store::Rendered {
        n.store().enqueue(&[spam_entry()]).unwrap();
        let mut e = n.store().outbox_entry("spam/acme/00aa").unwrap().unwrap();
        let r = n.renderer.render(&e, &n.from_domain).unwrap();
        e.rendered = Some(r.clone());
        e.sending_since = Some(since);
        e.attempts = 1;
        n.store().put_outbox(&e).unwrap();
        r
    }

    fn sent_message_ids(n: &Notifier<Script>) -> Vec<String> {
        let sent = n.deliverer().sent.lock().unwrap();
        sent.iter()
            .map(|raw| mail_parser::MessageParser::default().parse(raw).unwrap().message_id().unwrap().to_owned())
            .map(|id| format!("<{id}>"))
            .collect()
    }

    #[tokio::test]
    async fn a_message_in_doubt_to_nobody_watched_is_resent_at_once_with_its_message_id() {
        let (_d, n) = setup(vec![]);
        let since = t("2027-02-08T11:00:05+09:00");
        let r = in_doubt_entry(&n, since);
        let out = n.drain(since + chrono::Duration::seconds(30), &CancellationToken::new()).await.unwrap();
        assert_eq!(out[0].result, OutcomeKind::Sent);
        assert_eq!(sent_message_ids(&n), [r.message_id]);
        assert_eq!(n.store().outbox_entry("spam/acme/00aa").unwrap().unwrap().sending_since, None);
    }

    #[tokio::test]
    async fn a_message_in_doubt_to_a_watched_mailbox_waits_for_its_copy_there_and_is_then_not_resent() {
        let (_d, n) = setup(vec![]);
        let n = n.with_watched_addresses(vec!["Pay@Acme.test".into()], IN_DOUBT_WAIT.to_std().unwrap());
        let since = t("2027-02-08T11:00:05+09:00");
        let r = in_doubt_entry(&n, since);
        let cancel = CancellationToken::new();
        let (out, next) = n.drain_and_next(since + chrono::Duration::minutes(1), &cancel).await.unwrap();
        assert!(out.is_empty(), "held while its copy may still arrive");
        assert_eq!(next, Some(since + IN_DOUBT_WAIT), "and looked at again when the wait ends");
        // The header pass reads our copy in the contact's INBOX.
        assert!(n.store().confirm_delivered("spam/acme/00aa", since + chrono::Duration::minutes(2)).unwrap());
        let e = n.store().outbox_entry("spam/acme/00aa").unwrap().unwrap();
        assert_eq!((e.status, e.sent_at, e.sending_since), (Delivery::Sent, Some(since), None));
        assert!(!n.store().confirm_delivered("spam/acme/00aa", since).unwrap(), "a sent entry is not in doubt");
        assert!(n.drain(since + IN_DOUBT_WAIT, &cancel).await.unwrap().is_empty());
        assert!(sent_message_ids(&n).is_empty(), "never resent: {}", r.message_id);
    }

    #[tokio::test]
    async fn a_message_in_doubt_whose_copy_never_shows_is_resent_when_the_wait_ends() {
        let (_d, n) = setup(vec![]);
        let n = n.with_watched_addresses(vec!["pay@acme.test".into()], IN_DOUBT_WAIT.to_std().unwrap());
        let since = t("2027-02-08T11:00:05+09:00");
        let r = in_doubt_entry(&n, since);
        let out = n.drain(since + IN_DOUBT_WAIT, &CancellationToken::new()).await.unwrap();
        assert_eq!(out[0].result, OutcomeKind::Sent);
        assert_eq!(sent_message_ids(&n), [r.message_id], "at least once, with the same Message-ID");
    }

    #[tokio::test]
    async fn a_key_sent_but_not_recorded_is_never_resent_and_the_next_open_records_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_d, n) = setup(vec![]);
            let store = Store::open(dir.path()).unwrap();
            store.enqueue(&[spam_entry()]).unwrap();
            let n = Notifier::new(store.clone(), n.deliver, n.renderer, n.from);
            let at = t("2027-02-08T11:00:05+09:00");
            store.remember_sent_unrecorded("spam/acme/00aa", at);
            assert!(n.drain(at, &CancellationToken::new()).await.unwrap().is_empty(), "not sent again");
            assert!(n.deliverer().sent.lock().unwrap().is_empty());
            assert_eq!(store.save_sent_unrecorded().unwrap(), 1);
        }
        let store = Store::open(dir.path()).unwrap();
        let e = store.outbox_entry("spam/acme/00aa").unwrap().unwrap();
        assert_eq!((e.status, e.sent_at), (Delivery::Sent, Some(t("2027-02-08T11:00:05+09:00"))));
        assert!(!crate::store::faults::sent_unrecorded_path(dir.path()).exists(), "applied once, then removed");
    }

    /// Takes 10 s to deliver (paused time) and counts deliveries.
    struct Slow(std::sync::atomic::AtomicU32);

    impl Deliver for Slow {
        async fn deliver(&self, _: &lettre::Message) -> Result<(), SendError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn notifiers_sharing_a_drain_lock_send_a_due_entry_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.enqueue(&[spam_entry()]).unwrap();
        let lock = DrainLock::default();
        // The old and the new configuration's notifiers over one outbox, right after a SIGHUP.
        let notifier = || {
            Notifier::new(
                store.clone(),
                Slow(std::sync::atomic::AtomicU32::new(0)),
                Renderer::new(&Reminders::default()).unwrap(),
                "Hecto Watch <noreply@example.test>".parse().unwrap(),
            )
            .with_drain_lock(lock.clone())
        };
        let (old, new) = (notifier(), notifier());
        let now = t("2027-02-08T11:00:05+09:00");
        let cancel = CancellationToken::new();
        let (a, b) = tokio::join!(old.drain(now, &cancel), new.drain(now, &cancel));
        assert_eq!(a.unwrap().len() + b.unwrap().len(), 1, "one of them sends it");
        let sent = |n: &Notifier<Slow>| n.deliverer().0.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(sent(&old) + sent(&new), 1);
    }
}
