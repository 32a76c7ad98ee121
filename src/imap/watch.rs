//! The daemon's side: keep every watched folder in sync until cancelled (SPEC §6).
//!
//! **One task and one connection per folder.** IDLE occupies a connection (RFC 2177: one selected
//! mailbox, no other commands until DONE), so INBOX needs its own; giving every other folder its
//! own connection too means a slow or broken folder — a huge junk folder being back-filled, a
//! folder deleted under us — never delays another folder or another account, and reconnecting
//! is local to the task that lost its connection. The cost is about three connections per
//! account, well within server limits (Dovecot's default mail_max_userip_connections is 10,
//! Gmail allows 15).
//!
//! Each task loops: connect → sync → wait (IDLE on INBOX where the server has it and `idle =
//! true`, else sleep `poll_interval`) → sync …; any error drops the connection and reconnects
//! after a jittered, capped backoff (2 s → 80 s, as Delta Chat's `Imap::connect`). Every wait has
//! a cancellation branch; IDLE is re-issued every [`IDLE_REFRESH`] (< 29 min, RFC 2177), and DONE
//! must be answered within [`DONE_TIMEOUT`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rand::Rng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

use super::connect::{connect, ConnectError, Connection, IO_TIMEOUT, LOGOUT_TIMEOUT};
use super::folders::WatchedFolder;
use super::sync::{sync_folder, FolderCtx, SyncError};
use super::{Hooks, ImapEvent};
use crate::config::{Account, Config};
use crate::health::Trouble;
use crate::ingest::{FolderRole, Ingest};

/// IDLE is ended and re-issued this often. Well under RFC 2177's 29 minutes, and short enough
/// that a connection that died silently (no RST, no server keepalive) is noticed: DONE then has
/// [`DONE_TIMEOUT`] to be answered.
pub const IDLE_REFRESH: Duration = Duration::from_secs(10 * 60);
/// DONE must be answered within this.
pub const DONE_TIMEOUT: Duration = Duration::from_secs(15);
/// After cancellation, tasks get this long to finish the mail in hand and log out; then abort.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Jittered exponential backoff, capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    min: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(2), Duration::from_secs(80))
    }
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { attempt: 0, min, max }
    }

    /// The ceiling of the next delay: min · 2^attempt, capped at max.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(16)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The next delay: uniformly in [ceiling/2, ceiling], so many clients that lost the same
    /// server do not all come back in the same second.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter_ms = rand::thread_rng().gen_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter_ms)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay after a failure that is the configuration's (a refused login): one quick
    /// retry rules out a passing refusal (a server restarting its auth backend), and is the
    /// second try that alerts the operators; after that a wrong password will not fix itself
    /// in seconds, and hammering the server gets accounts locked.
    pub fn next_delay_for_configuration(&mut self) -> Duration {
        let retried = self.attempt > 0;
        let d = self.next_delay();
        if retried {
            d.max(CONFIGURATION_RETRY_MIN)
        } else {
            d
        }
    }
}

/// The shortest wait between refused logins after the first retry.
pub const CONFIGURATION_RETRY_MIN: Duration = Duration::from_secs(60);

/// Sleep unless cancelled first; `false` when cancelled.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Watch every account of the configuration until `cancel`; then stop within [`SHUTDOWN_GRACE`].
pub async fn watch(config: &Config, ingest: Ingest, cancel: CancellationToken, hooks: Hooks) {
    let mut tasks = JoinSet::new();
    for account in &config.accounts {
        let account = Arc::new(account.clone());
        let span = info_span!("account", account = %account.name);
        tasks.spawn(watch_account(account, ingest.clone(), cancel.clone(), hooks.clone()).instrument(span));
    }
    cancel.cancelled().await;
    shutdown(tasks).await;
}

async fn shutdown(mut tasks: JoinSet<()>) {
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "IMAP tasks did not stop in time; aborting them");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Discover an account's folders (retrying with backoff), then one task per watched folder.
pub async fn watch_account(account: Arc<Account>, ingest: Ingest, cancel: CancellationToken, hooks: Hooks) {
    let mut backoff = Backoff::default();
    let plan = loop {
        // A panic while listing (see the supervision of the folder watchers below) is an error
        // to retry like any other, not the silent end of the account's watch.
        let listing = std::panic::AssertUnwindSafe(super::list_once(&account)).catch_unwind();
        let listed = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listing => r.unwrap_or_else(|p| Err(anyhow::anyhow!("listing the folders failed ({})", panic_text(p.as_ref())))),
        };
        let planned = listed.and_then(|list| {
            let (plan, problems, recorded) = super::adopt(&list, &account, &ingest);
            if let Err(e) = recorded {
                warn!(error = %format!("{e:#}"), "Cannot record the folder roles");
            }
            // Folders may yet be created; meanwhile the account is unreadable, not quiet.
            if plan.is_empty() {
                anyhow::bail!(super::nothing_to_watch(&problems));
            }
            Ok(plan)
        });
        match planned {
            Ok(plan) => break plan,
            Err(e) => {
                let configuration =
                    e.chain().any(|c| c.downcast_ref::<ConnectError>().is_some_and(ConnectError::is_configuration));
                let delay = if configuration { backoff.next_delay_for_configuration() } else { backoff.next_delay() };
                warn!(error = %format!("{e:#}"), retry_in_s = delay.as_secs(), "Cannot list folders");
                super::record_account_failure(&ingest, &account.name, &format!("{e:#}"), super::sync::trouble_of(&e));
                hooks.emit(ImapEvent::Disconnected {
                    account: account.name.clone(),
                    folder: None,
                    error: format!("{e:#}"),
                });
                if !sleep_or_cancel(delay, &cancel).await {
                    return;
                }
            }
        }
    };
    info!(
        folders = %plan.iter().map(|f| format!("{}={}", f.name, crate::store::role_name(f.role))).collect::<Vec<_>>().join(","),
        "Watching"
    );
    hooks.emit(ImapEvent::Planned {
        account: account.name.clone(),
        folders: plan.iter().map(|f| f.name.clone()).collect(),
    });
    // Each folder's watcher is supervised: one that panics (a bug, or a server response the IMAP
    // library cannot take — imap-proto has panicked on malformed text) would otherwise leave its
    // folder unwatched without a word. It is reported as the folder's error and restarted.
    let mut tasks = JoinSet::new();
    let mut watched: HashMap<tokio::task::Id, (WatchedFolder, Backoff)> = HashMap::new();
    let spawn = |tasks: &mut JoinSet<()>, folder: WatchedFolder, delay: Duration| {
        let span = info_span!("folder", folder = %folder.name);
        let (account, ingest, cancel, hooks) = (account.clone(), ingest.clone(), cancel.clone(), hooks.clone());
        tasks
            .spawn(
                async move {
                    if sleep_or_cancel(delay, &cancel).await {
                        watch_folder(account, folder, ingest, cancel, hooks).await;
                    }
                }
                .instrument(span),
            )
            .id()
    };
    for folder in plan {
        let id = spawn(&mut tasks, folder.clone(), Duration::ZERO);
        watched.insert(id, (folder, Backoff::default()));
    }
    // The folder list is read again now and then: a server may create a spam folder only when
    // the first spam arrives (or the merchant adds a filter), and every junk candidate is watched.
    let every = hooks.relist_every.unwrap_or(RELIST_EVERY);
    let mut relist = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let done = tokio::select! {
            done = tasks.join_next_with_id() => done,
            _ = relist.tick(), if !cancel.is_cancelled() => {
                let found = tokio::select! {
                    _ = cancel.cancelled() => continue,
                    found = new_folders(&account, &ingest, &watched) => found,
                };
                for folder in found {
                    info!(folder = %folder.name, role = crate::store::role_name(folder.role), why = folder.why.as_str(), "A new folder to watch");
                    let id = spawn(&mut tasks, folder.clone(), Duration::ZERO);
                    watched.insert(id, (folder, Backoff::default()));
                }
                continue;
            }
        };
        let Some(done) = done else { return }; // every watcher stopped: cancelled
        let (id, panic) = match done {
            Ok((id, ())) => (id, None),
            Err(e) => (e.id(), e.try_into_panic().ok().map(|p| panic_text(p.as_ref()))),
        };
        let Some((folder, mut backoff)) = watched.remove(&id) else { continue };
        let Some(panic) = panic.filter(|_| !cancel.is_cancelled()) else { continue };
        let delay = backoff.next_delay();
        let error = format!("the watcher of {:?} failed ({panic}); restarting it", folder.name);
        error!(folder = %folder.name, error = %error, retry_in_s = delay.as_secs(), "Folder watcher failed");
        super::sync::record_failure(&ingest, &account.name, &folder.name, &error, Trouble::Internal);
        hooks.emit(ImapEvent::Disconnected { account: account.name.clone(), folder: Some(folder.name.clone()), error });
        let id = spawn(&mut tasks, folder.clone(), delay);
        watched.insert(id, (folder, backoff));
    }
}

/// How often a watched account's folder list is read again for new folders to watch.
pub const RELIST_EVERY: Duration = Duration::from_secs(15 * 60);

/// The folders the account's plan has now that no watcher serves. A listing that fails changes
/// nothing (the watchers report their own folders' trouble); it is tried again next time.
async fn new_folders(
    account: &Account,
    ingest: &Ingest,
    watched: &HashMap<tokio::task::Id, (WatchedFolder, Backoff)>,
) -> Vec<WatchedFolder> {
    let listing = std::panic::AssertUnwindSafe(super::list_once(account)).catch_unwind().await;
    let list = match listing {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => {
            debug!(error = %format!("{e:#}"), "Cannot list the folders again; the watched ones go on");
            return Vec::new();
        }
        Err(p) => {
            warn!(error = %panic_text(p.as_ref()), "Listing the folders again failed; the watched ones go on");
            return Vec::new();
        }
    };
    // Quietly: the configuration problems were logged when the watch began.
    let (plan, roles) = super::folders::plan(&list, account);
    if let Err(e) = ingest.store().set_folder_roles(&account.name, &super::folders::listing(&list, &roles)) {
        warn!(error = %format!("{e:#}"), "Cannot record the folder roles");
    }
    plan.into_iter().filter(|f| !watched.values().any(|(w, _)| w.raw == f.raw)).collect()
}

/// A panic's message, for the folder's error.
pub(super) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// Keep one folder in sync until cancelled, reconnecting as needed.
pub async fn watch_folder(
    account: Arc<Account>,
    folder: WatchedFolder,
    ingest: Ingest,
    cancel: CancellationToken,
    hooks: Hooks,
) {
    let mut backoff = Backoff::default();
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let conn = tokio::select! {
            _ = cancel.cancelled() => return,
            r = connect(&account) => r,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                let configuration = e.is_configuration();
                let delay = if configuration { backoff.next_delay_for_configuration() } else { backoff.next_delay() };
                if configuration {
                    error!(error = %e, retry_in_s = delay.as_secs(), "Cannot connect");
                } else {
                    warn!(error = %e, retry_in_s = delay.as_secs(), "Cannot connect");
                }
                super::sync::record_failure(&ingest, &account.name, &folder.name, &e.to_string(), e.trouble());
                hooks.emit(ImapEvent::Disconnected {
                    account: account.name.clone(),
                    folder: Some(folder.name.clone()),
                    error: e.to_string(),
                });
                if !sleep_or_cancel(delay, &cancel).await {
                    return;
                }
                continue;
            }
        };
        let use_idle = folder.role == FolderRole::Inbox && account.idle && conn.caps.idle;
        if folder.role == FolderRole::Inbox && account.idle && !conn.caps.idle {
            info!("The server has no IDLE; polling INBOX instead");
        }
        hooks.emit(ImapEvent::Connected { account: account.name.clone(), folder: folder.name.clone(), idle: use_idle });
        let ctx = FolderCtx {
            account: &account,
            folder: &folder,
            ingest: &ingest,
            cancel: &cancel,
            hooks: &hooks,
            listed: None,
        };
        match serve(conn, &ctx, use_idle, &mut backoff).await {
            Ok(()) => {
                // A long poll interval: the connection was closed on purpose; come back later.
                if !sleep_or_cancel(account.poll_interval, &cancel).await {
                    return;
                }
            }
            Err(SyncError::Cancelled) => {
                debug!("Stopped");
                return;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                match &e {
                    SyncError::Store(_) => {
                        error!(error = %e, retry_in_s = delay.as_secs(), "Sync failed (database)")
                    }
                    _ => {
                        warn!(error = %e, retry_in_s = delay.as_secs(), "Connection lost; reconnecting")
                    }
                }
                hooks.emit(ImapEvent::Disconnected {
                    account: account.name.clone(),
                    folder: Some(folder.name.clone()),
                    error: e.to_string(),
                });
                if !sleep_or_cancel(delay, &cancel).await {
                    return;
                }
            }
        }
    }
}

/// Polling less often than this closes the connection between polls: servers log idle clients
/// out after 30 minutes (RFC 3501 §5.4), and an idle socket would only die unnoticed meanwhile.
pub const KEEP_CONNECTION_MAX_POLL: Duration = Duration::from_secs(5 * 60);

/// Sync, wait, sync … on one connection until it fails or we are cancelled. `Ok(())`: the
/// connection was released until the next poll (long poll intervals).
async fn serve(
    mut conn: Connection,
    ctx: &FolderCtx<'_>,
    use_idle: bool,
    backoff: &mut Backoff,
) -> Result<(), SyncError> {
    loop {
        let (started, trips_before) = (std::time::Instant::now(), conn.round_trips());
        let stats = match sync_folder(&mut conn, ctx).await {
            Ok(s) => s,
            Err(SyncError::Cancelled) => {
                conn.logout().await;
                return Err(SyncError::Cancelled);
            }
            Err(e) => return Err(e),
        };
        backoff.reset();
        ctx.hooks.emit(ImapEvent::Synced {
            account: ctx.account.name.clone(),
            folder: ctx.folder.name.clone(),
            role: ctx.folder.role,
            stats,
            cost: Some(super::PassCost { took: started.elapsed(), round_trips: conn.round_trips() - trips_before }),
        });
        // Mail that arrived while we synced was announced with EXISTS on the side: sync again
        // right away rather than idle past it.
        if new_mail_announced(&mut conn) {
            continue;
        }
        if use_idle {
            conn = idle_once(conn, ctx).await?;
        } else if ctx.account.poll_interval >= KEEP_CONNECTION_MAX_POLL {
            conn.logout().await;
            return Ok(());
        } else {
            tokio::select! {
                _ = ctx.cancel.cancelled() => {
                    conn.logout().await;
                    return Err(SyncError::Cancelled);
                }
                _ = tokio::time::sleep(ctx.account.poll_interval) => {}
            }
        }
    }
}

/// Drain the unsolicited responses; whether any said a mail arrived.
fn new_mail_announced(conn: &mut Connection) -> bool {
    conn.note_unsolicited();
    std::mem::take(&mut conn.announced)
}

/// One IDLE: until the server reports something, [`IDLE_REFRESH`] passes, or we are cancelled.
async fn idle_once(conn: Connection, ctx: &FolderCtx<'_>) -> Result<Connection, SyncError> {
    let Connection { session, caps, announced, trips, early } = conn;
    let lost = |what: &str, e: String| SyncError::Imap(anyhow::anyhow!("{what} in {:?}: {e}", ctx.folder.name));
    let mut handle = session.idle();
    match tokio::time::timeout(IO_TIMEOUT, handle.init()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(lost("IDLE", e.to_string())),
        Err(_) => return Err(lost("IDLE", "no continuation from the server".into())),
    }
    // The server may stay silent for the whole IDLE: lift the read deadline (restored below).
    handle.as_mut().set_read_timeout(None);
    let (wait, stop) = handle.wait_with_timeout(IDLE_REFRESH);
    let outcome = tokio::select! {
        _ = ctx.cancel.cancelled() => None,
        // async-imap's own timeout restarts on every "* OK Still here", so bound the whole wait.
        r = tokio::time::timeout(IDLE_REFRESH, wait) => Some(r),
    };
    drop(stop);
    handle.as_mut().set_read_timeout(Some(IO_TIMEOUT));
    let cancelled = outcome.is_none();
    match outcome {
        Some(Ok(Err(e))) => return Err(lost("IDLE", e.to_string())),
        Some(Ok(Ok(r))) => debug!(response = ?r, "IDLE woke"),
        Some(Err(_)) => debug!("IDLE refresh"),
        None => {}
    }
    let done_within = if cancelled { LOGOUT_TIMEOUT } else { DONE_TIMEOUT };
    let session = match tokio::time::timeout(done_within, handle.done()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if !cancelled => return Err(lost("DONE", e.to_string())),
        Err(_) if !cancelled => return Err(lost("DONE", format!("no answer within {} s", DONE_TIMEOUT.as_secs()))),
        _ => return Err(SyncError::Cancelled),
    };
    let conn = Connection { session, caps, announced, trips, early };
    if cancelled {
        conn.logout().await;
        return Err(SyncError::Cancelled);
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_2s_to_an_80s_cap_with_jitter() {
        let mut b = Backoff::default();
        let ceilings: Vec<u64> = (0..9)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay();
                assert!(d >= c / 2 && d <= c, "{d:?} within [{:?}, {c:?}]", c / 2);
                c.as_secs()
            })
            .collect();
        assert_eq!(ceilings, [2, 4, 8, 16, 32, 64, 80, 80, 80]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(2));
    }

    #[test]
    fn backoff_jitter_spreads_delays() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(Duration::from_secs(80), Duration::from_secs(80));
            seen.insert(b.next_delay().as_millis());
        }
        assert!(seen.len() > 10, "jitter must vary the delay: {seen:?}");
    }
}
