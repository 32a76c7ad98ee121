//! `notify`: the last stage of the flow — the sled outbox → SMTP (SPEC §5). Reminders, spam
//! notices and operator notices are rendered from templates, written to the outbox with their
//! idempotency key and deterministic `Message-ID` before they are sent, sent through one reused
//! lettre transport, and retried with persisted backoff. This module decides nothing about *what*
//! is due (that is [`crate::schedule`], pure) and never touches sled except through [`Store`].
//!
//! - [`template`]: the `{{placeholder}}` language; [`render`]: entry → subject/text/HTML.
//! - [`message`]: rendered entry → lettre message (headers, `multipart/alternative`).
//! - [`smtp`]: the transport, timeouts, transient vs permanent failures.
//! - [`outbox`]: [`Notifier`] — drain, backoff, `retry`.
//! - [`schedule`]: [`tick`] and the cron loop [`run_schedule`]; [`sender`]: [`run_sender`].
//!
//! The daemon (`daemon::workers`) builds one [`Notifier`] with [`smtp_notifier`] per
//! configuration generation and spawns [`run_sender`] (woken by
//! [`crate::ingest::Ingest::outbox_ready`]) and [`run_schedule`].

pub mod message;
pub mod outbox;
pub mod render;
pub mod schedule;
pub mod sender;
pub mod smtp;
pub mod template;

use anyhow::{anyhow, Context};
use lettre::message::Mailbox;

pub use outbox::{retry, DrainLock, Notifier, Outcome, OutcomeKind, RetryPolicy};
pub use render::Renderer;
pub use schedule::{next_tick, run_schedule, tick, TickReport};
pub use sender::run_sender;
pub use smtp::{Deliver, SendError, SmtpDeliver};

use crate::config::Config;
use crate::store::Store;

/// A notifier sending through `[smtp]`. Call inside a tokio runtime. Fails (naming the key) when
/// there is no `[smtp]` section, a template is broken, or the password / CA file cannot be read.
/// The token source `[smtp] oauth2_account` names, with `smtp.auth = "oauth2"`.
pub fn smtp_tokens(config: &Config) -> Option<std::sync::Arc<crate::auth::TokenSource>> {
    let smtp = config.smtp.as_ref()?;
    let name = smtp.oauth2_account.as_ref()?;
    config.accounts.iter().find(|a| &a.name == name).and_then(|a| a.tokens.clone())
}

pub fn smtp_notifier(store: Store, config: &Config) -> anyhow::Result<Notifier<SmtpDeliver>> {
    let smtp = config.smtp.as_ref().ok_or_else(|| {
        anyhow!("no [smtp] section in the configuration: sending needs one (see config/hecto-watch.toml)")
    })?;
    let from: Mailbox =
        smtp.from.parse().with_context(|| format!("smtp.from: {:?} is not a mail address", smtp.from))?;
    let renderer = Renderer::new(&config.reminders)?;
    let deliver = SmtpDeliver::new(smtp, smtp_tokens(config))?;
    let calendar = crate::schedule::Calendar::from_config(&config.calendar)?;
    let watched = config.accounts.iter().flat_map(|a| std::iter::once(&a.username).chain(&a.addresses)).cloned();
    Ok(Notifier::new(store, deliver, renderer, from)
        .with_sending_hours(config.reminders.send_hours, std::sync::Arc::new(calendar))
        .with_watched_addresses(watched.collect(), config.reminders.in_doubt_wait))
}

/// The environment variable of the crash hook used by the exactly-once tests.
pub const CRASH_ENV: &str = "HECTO_WATCH_TEST_CRASH_AFTER";

/// Test hook: abort the process right after `point` (`enqueue`: due reminders enqueued and
/// flushed; `render`: an entry rendered and flushed, before it is marked as being sent; `marked`:
/// marked and flushed, before it is handed to the server; `accepted`: the server accepted it,
/// before "sent" is recorded) when
/// `HECTO_WATCH_TEST_CRASH_AFTER` names it — the state a SIGKILL at that instant would leave,
/// without racing a signal against the process.
pub(crate) fn crash_after(point: &str) {
    if std::env::var(CRASH_ENV).is_ok_and(|v| v == point) {
        eprintln!("hecto-watch: {CRASH_ENV}={point}: aborting as asked");
        std::process::abort();
    }
}
