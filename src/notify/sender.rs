//! The sender task of the daemon: drains the outbox whenever the ingest says it queued something
//! ([`crate::ingest::Ingest::outbox_ready`] — a spam notice goes out within seconds, not at the
//! next cron tick) and whenever a retry falls due, until cancelled. Cancellation is only taken
//! between messages, never between "the server accepted" and "marked sent".

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::outbox::Notifier;
use super::smtp::Deliver;
use crate::clock::{Clock, Heartbeat};

/// Wake at least this often even with nothing pending (entries added by another path).
const IDLE_WAKE: Duration = Duration::from_secs(60);
/// Never spin faster than this when something stays due (e.g. a drain was cut short).
const MIN_WAKE: Duration = Duration::from_secs(1);

/// Run until `cancel`: drain, then sleep until `ready` is notified, the earliest retry is due, or
/// [`IDLE_WAKE`] passes.
pub async fn run_sender<D: Deliver>(
    notifier: Arc<Notifier<D>>,
    clock: Clock,
    ready: Arc<Notify>,
    beat: Heartbeat,
    cancel: CancellationToken,
) {
    info!("Outbox sender started");
    loop {
        beat.beat();
        if cancel.is_cancelled() {
            break;
        }
        // Entries queued meanwhile notify `ready`, so the next due time from the drain's own
        // read of the outbox is enough: the outbox (sent entries included) is read once a wake.
        let wait = match notifier.drain_and_next(clock.now(), &cancel).await {
            Ok((_, Some(t))) => (t - clock.now()).to_std().unwrap_or(Duration::ZERO).clamp(MIN_WAKE, IDLE_WAKE),
            Ok((_, None)) => IDLE_WAKE,
            Err(e) => {
                error!(error = %format!("{e:#}"), "Outbox drain failed; trying again later");
                Duration::from_secs(30)
            }
        };
        tokio::select! {
            () = cancel.cancelled() => break,
            () = ready.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    info!("Outbox sender stopped");
}
