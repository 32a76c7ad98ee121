//! `daemon`: `hecto-watch run` — one supervisor for every account's watchers, the reminder
//! schedule, the outbox sender and the control socket (SPEC §7, §9).
//!
//! Shape (mini-redis `server::run`): the caller passes a shutdown token; every task gets a child
//! token and is spawned on a [`TaskTracker`]. SIGTERM/SIGINT cancel, the tracker is waited for
//! with a bound, sled is flushed, and the process exits 0. SIGHUP re-reads the configuration:
//! a valid one replaces the running generation of tasks, an invalid one is logged problem by
//! problem and the old one keeps running. A task that fails logs and retries on its own; it never
//! takes the others down.

pub mod health;
pub mod sd_notify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::Config;
use crate::control::{server, Engine};
use crate::ingest::Ingest;
use crate::notify::DrainLock;
use crate::schedule::Calendar;
use crate::store::Store;
use health::Health;
use sd_notify::Notifier;

/// How long the tasks get to finish the mail in hand after SIGTERM before they are abandoned
/// (sled is flushed either way); well inside systemd's `TimeoutStopSec=`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

pub struct RunOptions {
    /// Re-read on SIGHUP; `None` when running on built-in defaults.
    pub config_path: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub clock: Clock,
}

/// One configuration's worth of running tasks.
struct Generation {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Generation {
    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait()).await.is_err() {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "Some tasks did not stop in time; abandoning them");
        }
    }
}

/// Run until `shutdown` is cancelled (by a signal, or by a test).
pub async fn run(opts: RunOptions, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = Store::open(&opts.state_dir)?;
    let (listener, socket_path) = server::bind(&opts.state_dir)?;
    let notifier = Arc::new(Notifier::from_env());
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    spawn_signal_handlers(shutdown.clone())?;

    let mut config = Arc::new(config);
    let lasting = Lasting {
        store: store.clone(),
        listener: Arc::new(listener),
        notifier: notifier.clone(),
        drain_lock: DrainLock::default(),
        shutdown: shutdown.clone(),
    };
    let mut generation = start(&opts, &config, &lasting, false)?;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = hup.recv() => {
                notifier.notify("RELOADING=1");
                let Some(path) = &opts.config_path else {
                    tracing::info!("SIGHUP: running on built-in defaults, nothing to re-read");
                    notifier.notify("READY=1");
                    continue;
                };
                match Config::load(path) {
                    Ok(new) => {
                        if new.store.path != config.store.path {
                            tracing::warn!("SIGHUP: [store] path changed; the new path takes effect at the next start");
                        }
                        tracing::info!(config = %path.display(), "SIGHUP: configuration re-read, restarting watchers");
                        generation.stop().await;
                        let new = Arc::new(new);
                        // A config can parse and still fail to start (an unreadable password or
                        // holiday file): then the old one runs on rather than the daemon exiting.
                        generation = match start(&opts, &new, &lasting, true) {
                            Ok(g) => {
                                config = new;
                                g
                            }
                            Err(e) => {
                                tracing::error!(config = %path.display(), error = %format!("{e:#}"), "SIGHUP: the new configuration cannot start, keeping the old one");
                                start(&opts, &config, &lasting, true)?
                            }
                        };
                    }
                    Err(errors) => {
                        for p in &errors.problems {
                            tracing::error!(config = %path.display(), problem = %p, "SIGHUP: invalid configuration, keeping the old one");
                        }
                    }
                }
                notifier.notify("READY=1");
            }
        }
    }
    notifier.notify("STOPPING=1");
    tracing::info!("Shutting down: finishing the mail in hand");
    generation.stop().await;
    // Commands fall back to opening the database themselves once the socket is gone.
    let _ = std::fs::remove_file(&socket_path);
    store.flush().await?;
    tracing::info!("Stopped");
    Ok(())
}

fn spawn_signal_handlers(shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
            () = shutdown.cancelled() => return,
        }
        shutdown.cancel();
    });
    Ok(())
}

/// Start every task of one configuration.
/// What outlives a configuration generation.
struct Lasting {
    store: Store,
    listener: Arc<UnixListener>,
    /// systemd's notification socket.
    notifier: Arc<Notifier>,
    /// One for every generation: an old generation's drain may outlive its stop by a send.
    drain_lock: DrainLock,
    shutdown: CancellationToken,
}

fn start(opts: &RunOptions, config: &Arc<Config>, lasting: &Lasting, reloaded: bool) -> anyhow::Result<Generation> {
    let Lasting { store, listener, notifier, drain_lock, shutdown } = lasting;
    let cancel = shutdown.child_token();
    let tracker = TaskTracker::new();
    let calendar = Arc::new(Calendar::from_config(&config.calendar)?);
    let ingest = Ingest::new(store.clone(), config, opts.clock);
    let health = Arc::new(Health::new(config.accounts.iter().map(|a| a.name.as_str())));
    let sender = match &config.smtp {
        Some(_) => {
            Some(Arc::new(crate::notify::smtp_notifier(store.clone(), config)?.with_drain_lock(drain_lock.clone())))
        }
        None => None,
    };
    let engine = Engine {
        store: store.clone(),
        config: config.clone(),
        calendar: calendar.clone(),
        ingest: ingest.clone(),
        notifier: sender.clone(),
    };

    tracker.spawn(server::serve(listener.clone(), engine.clone(), cancel.clone(), tracker.clone()));
    tracker.spawn(supervise_health(engine, health.clone(), notifier.clone(), reloaded, cancel.clone()));
    workers::spawn(config, &ingest, &calendar, sender, &health, &cancel, &tracker);
    Ok(Generation { cancel, tracker })
}

/// READY once every account has synced; WATCHDOG only while every folder stays fresh; STATUS.
/// After a SIGHUP (`reloaded`) the daemon is ready already: the watchdog keeps being fed while
/// the new watchers sync, each folder within its bound from now.
async fn supervise_health(
    engine: Engine,
    health: Arc<Health>,
    notifier: Arc<Notifier>,
    reloaded: bool,
    cancel: CancellationToken,
) {
    let watchdog = sd_notify::watchdog_interval();
    let mut ready_at: Option<Instant> = reloaded.then(Instant::now);
    let mut last_watchdog = Instant::now();
    let mut last_status: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if ready_at.is_none() && health.all_ready() {
            ready_at = Some(Instant::now());
            notifier.notify(&format!("READY=1\nSTATUS={}", status_line(&engine, &health).await));
            tracing::info!("Ready: every account has synced once");
            last_status = Some(Instant::now());
        }
        let Some(ready) = ready_at else { continue };
        if let Some(every) = watchdog {
            if last_watchdog.elapsed() >= every {
                last_watchdog = Instant::now();
                if health.fresh(ready) {
                    notifier.notify("WATCHDOG=1");
                } else if let Some((account, folder, at)) = health.stalest() {
                    // No ping: if this lasts, systemd restarts us (WatchdogSec=), which is the point.
                    tracing::warn!(%account, %folder, last_sync = ?at, "A folder has not synced in time; withholding the watchdog ping");
                }
            }
        }
        if last_status.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
            last_status = Some(Instant::now());
            notifier.notify(&format!("STATUS={}", status_line(&engine, &health).await));
        }
    }
}

/// `3 merchants, 1 overdue, last sync 09:00:12 KST`
async fn status_line(engine: &Engine, health: &Health) -> String {
    let e = engine.clone();
    let now = engine.ingest.clock().now();
    let counts = tokio::task::spawn_blocking(move || {
        crate::ops::status(&e.store, &e.config, &e.calendar, now)
            .map(|rows| (rows.len(), rows.iter().filter(|r| r.overdue).count()))
    })
    .await;
    let last = health
        .last_sync()
        .map(|t| t.with_timezone(&chrono_tz::Asia::Seoul).format("%H:%M:%S KST").to_string())
        .unwrap_or_else(|| "never".into());
    match counts {
        Ok(Ok((n, overdue))) => format!("{n} merchants, {overdue} overdue, last sync {last}"),
        _ => format!("last sync {last}"),
    }
}

/// The long-running workers of one generation: IMAP watchers, reminder schedule, outbox sender.
mod workers {
    use super::*;
    use crate::imap::{self, Hooks, ImapEvent};
    use crate::notify;

    /// How stale a folder may get before the watchdog ping is withheld: an IDLE folder syncs at
    /// least every [`imap::watch::IDLE_REFRESH`], a polled one every `poll_interval`; the margin
    /// covers a slow sync and one reconnect with backoff.
    fn freshness_bound(idle: bool, poll: Duration) -> Duration {
        let cycle = if idle { imap::watch::IDLE_REFRESH } else { poll };
        cycle * 2 + Duration::from_secs(120)
    }

    pub fn spawn(
        config: &Arc<Config>,
        ingest: &Ingest,
        calendar: &Arc<Calendar>,
        notifier: Option<Arc<notify::Notifier<notify::SmtpDeliver>>>,
        health: &Arc<Health>,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
    ) {
        let (hooks, events) = Hooks::with_events(4096);
        tracker.spawn(track_health(events.subscribe(), config.clone(), health.clone(), cancel.clone()));
        {
            let (config, ingest, cancel) = (config.clone(), ingest.clone(), cancel.clone());
            tracker.spawn(async move { imap::watch(&config, ingest, cancel, hooks).await });
        }
        let Some(notifier) = notifier else {
            tracing::warn!("No [smtp] section: reminders and notices are queued in the outbox but not sent");
            return;
        };
        tracker.spawn(notify::run_sender(notifier.clone(), ingest.clock(), ingest.outbox_ready(), cancel.clone()));
        let (config, calendar, health, cancel, clock) =
            (config.clone(), calendar.clone(), health.clone(), cancel.clone(), ingest.clock());
        tracker.spawn(async move {
            // The first tick makes up for ticks missed while we were down, so it must see the
            // mail that arrived meanwhile: wait for the first sync of every account.
            tokio::select! {
                () = cancel.cancelled() => return,
                () = health.wait_ready() => {}
            }
            notify::run_schedule(notifier, config, calendar, clock, cancel).await;
        });
    }

    /// Turn the watchers' events into folder freshness and account readiness.
    async fn track_health(
        mut events: tokio::sync::broadcast::Receiver<ImapEvent>,
        config: Arc<Config>,
        health: Arc<Health>,
        cancel: CancellationToken,
    ) {
        if config.accounts.is_empty() {
            return;
        }
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                e = events.recv() => e,
            };
            let event = match event {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "Health tracker lagged behind IMAP events");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            match event {
                ImapEvent::Planned { account, folders } => {
                    let a = config.accounts.iter().find(|a| a.name == account);
                    let poll = a.map_or(Duration::from_secs(60), |a| a.poll_interval);
                    // Every planned folder is registered before any sync counts, so the account is
                    // ready only once all of them have synced — not after the fastest one.
                    for folder in &folders {
                        let idle = folder.eq_ignore_ascii_case("INBOX") && a.is_some_and(|a| a.idle);
                        health.watch(&account, folder, freshness_bound(idle, poll));
                    }
                }
                ImapEvent::Connected { account, folder, idle } => {
                    let poll = config.accounts.iter().find(|a| a.name == account).map(|a| a.poll_interval);
                    health.watch(&account, &folder, freshness_bound(idle, poll.unwrap_or(Duration::from_secs(60))));
                }
                ImapEvent::Synced { account, folder, .. } => {
                    health.synced(&account, &folder);
                    if !health.all_ready() && health.account_synced(&account) {
                        tracing::info!(%account, "First sync of the account complete");
                        health.account_ready(&account);
                    }
                }
                ImapEvent::Mail(_) | ImapEvent::Disconnected { .. } => {}
            }
        }
    }
}
