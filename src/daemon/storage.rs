//! A storage fault in the running daemon (SPEC §9 Durability). Once a sled write fails, the
//! open database keeps failing, so the daemon does not try to carry on with it: nothing is sent
//! (the outbox refuses while [`Store::fault`] is set) and no cursor advances (the writes fail).
//! This task reports the fault — the journal, `health`, systemd's STATUS=, one alert to the
//! operators straight over SMTP — waits until the state directory has room, writes down what was
//! sent but not recorded, and ends the daemon with an error, so systemd starts it again on a
//! database that opens (the incomplete snapshot a full disk leaves is removed at every open).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::notify::{Notifier, SmtpDeliver};
use crate::store::{faults, Store};

/// How often the fault flag and then the free space are looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// What must fit on the disk before the daemon restarts on it.
const ROOM_NEEDED: usize = 1 << 20;

/// Returns (with the reason to exit) once a fault was seen and the disk has room again; never
/// while there is no fault, and not after `cancel`.
pub async fn watch(
    store: Store,
    config: Arc<Config>,
    sender: Option<Arc<Notifier<SmtpDeliver>>>,
    status: Arc<super::sd_notify::Notifier>,
    cancel: CancellationToken,
) -> Option<String> {
    let fault = loop {
        if let Some(f) = store.fault() {
            break f;
        }
        tokio::select! {
            () = cancel.cancelled() => return None,
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
    };
    let dir = store.path().display().to_string();
    tracing::error!(error = %fault.error, state_dir = %dir, "The database cannot be written: sending and advancing stopped until the disk has room; then the daemon restarts");
    status.notify(&format!("STATUS=the database in {dir} cannot be written ({}): free space there", fault.error));
    if let Some(sender) = &sender {
        let subject = "hecto-watch: the database cannot be written — nothing is sent or advanced";
        let text = format!(
            "hecto-watch could not write its database in {dir} since {} (KST: {}):\n\n  {}\n\n\
             Until it can, no reminder or notice is sent and no mail is processed. Free space on that \
             file system (or fix its permissions); the daemon then restarts by itself within a few \
             seconds and catches up. `hecto-watch health` shows the state.\n",
            fault.since.to_rfc3339(),
            fault.since.with_timezone(&chrono_tz::Asia::Seoul).format("%Y-%m-%d %H:%M"),
            fault.error
        );
        let tag = format!("alert/storage/{}", fault.since.timestamp());
        match sender.send_unrecorded(&config.reminders.operators, &tag, subject, &text).await {
            Ok(()) => tracing::info!("Operators told that the database cannot be written"),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "Cannot tell the operators that the database cannot be written")
            }
        }
    }
    loop {
        let d = store.path().to_owned();
        if tokio::task::spawn_blocking(move || faults::has_room(&d, ROOM_NEEDED)).await.unwrap_or(false) {
            break;
        }
        tokio::select! {
            // Stopping anyway: `run` writes down what it can.
            () = cancel.cancelled() => return None,
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
    Some(match store.save_sent_unrecorded() {
        Ok(0) => format!(
            "the database in {dir} could not be written ({}); restarting on it now that there is room",
            fault.error
        ),
        Ok(n) => format!(
            "the database in {dir} could not be written ({}); restarting on it now that there is room \
             ({n} message(s) sent meanwhile are recorded at the next start)",
            fault.error
        ),
        Err(e) => format!(
            "the database in {dir} could not be written ({}), nor the list of messages sent meanwhile: {e:#}",
            fault.error
        ),
    })
}
