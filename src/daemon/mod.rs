//! `daemon`: `hecto-watch run` — one supervisor for every account's watchers, the reminder
//! schedule, the outbox sender and the control socket (SPEC §7, §9).
//!
//! Shape (mini-redis `server::run`): the caller passes a shutdown token; every task gets a child
//! token and is spawned on a [`TaskTracker`]. SIGTERM/SIGINT cancel, the tracker is waited for
//! with a bound, sled is flushed, and the process exits 0. SIGHUP re-reads the configuration:
//! a valid one replaces the running generation of tasks, an invalid one is logged problem by
//! problem and the old one keeps running. A task that fails logs and retries on its own; it never
//! takes the others down.

pub mod alerting;
pub mod sd_notify;
pub mod storage;

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
use crate::health::liveness::{self, Liveness};
use crate::ingest::Ingest;
use crate::notify::DrainLock;
use crate::schedule::Calendar;
use crate::store::Store;
use sd_notify::Notifier;

/// How long `run` waits for a command that holds the database to let go of it.
const START_WAIT: Duration = Duration::from_secs(10);

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
    // A command may hold the database for a moment (it opened it just before us): wait for it.
    let store = Store::open_waiting(&opts.state_dir, START_WAIT)?;
    let (listener, socket_path) = server::bind(&opts.state_dir)?;
    let notifier = Arc::new(Notifier::from_env());
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    spawn_signal_handlers(shutdown.clone())?;

    let mut config = Arc::new(config);
    let (fault_tx, mut fault_rx) = tokio::sync::mpsc::channel::<String>(1);
    let lasting = Lasting {
        fault_tx,
        counters: Arc::default(),
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
            Some(reason) = fault_rx.recv() => {
                // systemd's Restart=on-failure starts it again, on a database that opens.
                notifier.notify("STOPPING=1");
                generation.stop().await;
                let _ = std::fs::remove_file(&socket_path);
                anyhow::bail!("{reason}");
            }
            _ = hup.recv() => {
                notifier.notify("RELOADING=1");
                let Some(path) = &opts.config_path else {
                    tracing::info!("SIGHUP: running on built-in defaults, nothing to re-read");
                    notifier.notify("READY=1");
                    continue;
                };
                match Config::load(path) {
                    Ok(mut new) => {
                        crate::auth::attach(&mut new, &opts.state_dir);
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
    let flushed = store.flush().await;
    if let Some(fault) = store.fault() {
        let saved = store.save_sent_unrecorded();
        anyhow::bail!(
            "stopped with the database in {} not writable ({}){}",
            opts.state_dir.display(),
            fault.error,
            match saved {
                Ok(_) => String::new(),
                Err(e) => format!("; messages sent meanwhile may be sent again: {e:#}"),
            }
        );
    }
    flushed?;
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

/// What outlives a configuration generation.
struct Lasting {
    /// Where a generation's storage watch says that the daemon must restart.
    fault_tx: tokio::sync::mpsc::Sender<String>,
    store: Store,
    listener: Arc<UnixListener>,
    /// systemd's notification socket.
    notifier: Arc<Notifier>,
    /// One for every generation: an old generation's drain may outlive its stop by a send.
    drain_lock: DrainLock,
    /// What `/metrics` counts since the start, across reloads.
    counters: Arc<crate::http::metrics::Counters>,
    shutdown: CancellationToken,
}

fn start(opts: &RunOptions, config: &Arc<Config>, lasting: &Lasting, reloaded: bool) -> anyhow::Result<Generation> {
    let Lasting { store, listener, notifier, drain_lock, counters, shutdown, fault_tx } = lasting;
    let cancel = shutdown.child_token();
    let tracker = TaskTracker::new();
    let calendar = Arc::new(Calendar::from_config(&config.calendar)?);
    let ingest = Ingest::new(store.clone(), config, opts.clock);
    let liveness = Arc::new(Liveness::new(config.accounts.iter().map(|a| a.name.as_str())));
    let sender = match &config.smtp {
        Some(_) => {
            // Whoever drains (the sender, or the schedule's tick) or waits on the drain makes
            // progress with every message sent, however slow the SMTP server.
            let l = liveness.clone();
            let progress = crate::clock::Heartbeat::new(move || {
                l.beat("sender", TASK_BOUND);
                l.beat("schedule", TASK_BOUND);
            });
            let n = crate::notify::smtp_notifier(store.clone(), config)?;
            Some(Arc::new(n.with_drain_lock(drain_lock.clone()).with_progress(progress)))
        }
        None => None,
    };
    let engine = Engine {
        store: store.clone(),
        config: config.clone(),
        calendar: calendar.clone(),
        ingest: ingest.clone(),
        notifier: sender.clone(),
        liveness: Some(liveness.clone()),
    };
    // Bound before anything starts: a taken port fails the start (or the reload) with its reason.
    let http = crate::http::bind(&engine)?;

    tracker.spawn(server::serve(listener.clone(), engine.clone(), cancel.clone(), tracker.clone()));
    if let Some((http_listener, token)) = http {
        tracker.spawn(crate::http::serve(http_listener, token, engine.clone(), counters.clone(), cancel.clone()));
    }
    tracker.spawn(supervise(engine.clone(), liveness.clone(), notifier.clone(), reloaded, cancel.clone()));
    tracker.spawn({
        let watch = storage::watch(store.clone(), config.clone(), sender.clone(), notifier.clone(), cancel.clone());
        let fault_tx = fault_tx.clone();
        async move {
            if let Some(reason) = watch.await {
                let _ = fault_tx.send(reason).await;
            }
        }
    });
    spawn_looping(&liveness, &tracker, "alerts", TASK_BOUND, &cancel, {
        let (liveness, cancel) = (liveness.clone(), cancel.clone());
        move |beat| async move {
            // Before the first attempts a stored outage would be judged on the last run's
            // statuses: an alert for an account that is about to be read fine.
            if workers::wait_ready(&liveness, &beat, &cancel).await {
                alerting::run(engine, beat, cancel).await;
            }
        }
    });
    let generation = Generation { cancel, tracker };
    workers::spawn(config, &ingest, &calendar, sender, &liveness, counters, &generation);
    Ok(generation)
}

/// How long the daemon's own loops (alerts, reminder schedule, outbox sender) may go without a
/// beat: each wakes at least every minute; a send is bounded by `[smtp] timeout`.
const TASK_BOUND: Duration = Duration::from_secs(5 * 60);

/// A test hook: `HECTO_WATCH_TEST_WEDGE=TASK` (alerts, schedule, sender) wedges that task on
/// purpose: it runs until its first beat and is then never polled again — as if stuck in a future
/// that never ends — while its bound is a second, so a test sees the watchdog stop. Never set
/// in production.
const WEDGE_HOOK: &str = "HECTO_WATCH_TEST_WEDGE";

/// Spawn one of the daemon's own loops with its heartbeat; a loop that returns is no longer
/// waited for.
fn spawn_looping<F, Fut>(
    liveness: &Arc<Liveness>,
    tracker: &TaskTracker,
    task: &str,
    bound: Duration,
    cancel: &CancellationToken,
    f: F,
) where
    F: FnOnce(crate::clock::Heartbeat) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (liveness, name) = (liveness.clone(), task.to_owned());
    if std::env::var(WEDGE_HOOK).is_ok_and(|t| t == task) {
        tracing::warn!(task, "{WEDGE_HOOK}: this task is wedged on purpose after its first beat");
        let beaten = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hb = {
            let (liveness, name, beaten) = (liveness.clone(), name.clone(), beaten.clone());
            liveness.beat(&name, Duration::from_secs(1));
            crate::clock::Heartbeat::new(move || {
                liveness.beat(&name, Duration::from_secs(1));
                beaten.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        };
        let (fut, cancel) = (f(hb), cancel.clone());
        tracker.spawn(async move {
            let mut fut = std::pin::pin!(fut);
            std::future::poll_fn(|cx| {
                if beaten.load(std::sync::atomic::Ordering::SeqCst) {
                    return std::task::Poll::Ready(());
                }
                fut.as_mut().poll(cx)
            })
            .await;
            cancel.cancelled().await;
        });
        return;
    }
    let fut = f(liveness.heartbeat(task, bound));
    tracker.spawn(async move {
        fut.await;
        liveness.forget(&name);
    });
}

/// READY once every account has had its first attempt (at most [`liveness::READY_WITHIN`] after
/// the start); WATCHDOG while no task is wedged; STATUS with the merchants and the accounts'
/// health. After a SIGHUP (`reloaded`) the daemon is ready already.
async fn supervise(
    engine: Engine,
    liveness: Arc<Liveness>,
    notifier: Arc<Notifier>,
    reloaded: bool,
    cancel: CancellationToken,
) {
    let watchdog = sd_notify::watchdog_interval();
    let started = Instant::now();
    if reloaded {
        liveness.set_ready();
    }
    let mut last_watchdog = Instant::now();
    let mut status_line = StatusLine { counts: None };
    let mut last_status: Option<(Instant, String)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
            () = liveness.wait_attempted(), if !liveness.is_ready() => {}
        }
        if !liveness.is_ready() {
            let attempted = liveness.all_attempted();
            if !attempted && started.elapsed() < liveness::READY_WITHIN {
                continue;
            }
            liveness.set_ready();
            let status = status_line.render(&engine).await;
            if attempted {
                tracing::info!(
                    took_ms = started.elapsed().as_millis() as u64,
                    "Ready: every account has had its first sync attempt"
                );
            } else {
                tracing::warn!(
                    accounts = %liveness.unattempted().join(", "),
                    bound_s = liveness::READY_WITHIN.as_secs(),
                    "Ready without the first attempt of some accounts: their servers are slow to answer; they go on being tried"
                );
            }
            notifier.notify(&format!("READY=1\nSTATUS={status}"));
            last_status = Some((Instant::now(), status));
        }
        if let Some(every) = watchdog {
            if last_watchdog.elapsed() >= every {
                last_watchdog = Instant::now();
                match liveness.wedged() {
                    None => notifier.notify("WATCHDOG=1"),
                    // No ping: if this lasts, systemd restarts us (WatchdogSec=), which is the point.
                    Some((task, since)) => {
                        tracing::error!(%task, last_beat_s = since.as_secs(), "A task has stopped making progress; withholding the watchdog ping")
                    }
                }
            }
        }
        // STATUS= when it changes (looked at every few seconds) and every 30 s regardless.
        let due = last_status.as_ref().is_none_or(|(t, _)| t.elapsed() >= Duration::from_secs(3));
        if due {
            let status = status_line.render(&engine).await;
            let changed =
                last_status.as_ref().is_none_or(|(t, s)| *s != status || t.elapsed() >= Duration::from_secs(30));
            if changed {
                notifier.notify(&format!("STATUS={status}"));
            }
            last_status = Some((Instant::now(), status));
        }
    }
}

/// `STATUS=`: `3 merchants, 1 overdue, last sync 09:00:12 KST; account "shop" unreadable since
/// 02-10 09:12 KST: login refused`. The accounts' part is read every few seconds (a handful of
/// keys); the merchants' counts, which decode every merchant, at most every 30 s.
struct StatusLine {
    counts: Option<(Instant, Option<(usize, usize)>)>,
}

impl StatusLine {
    const COUNTS_EVERY: Duration = Duration::from_secs(30);

    async fn render(&mut self, engine: &Engine) -> String {
        let stale = self.counts.as_ref().is_none_or(|(t, _)| t.elapsed() >= Self::COUNTS_EVERY);
        let e = engine.clone();
        let now = engine.ingest.clock().now();
        let read = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let counts = if stale {
                let rows = crate::ops::status(&e.store, &e.config, &e.calendar, now)?;
                Some((rows.len(), rows.iter().filter(|r| r.overdue).count()))
            } else {
                None
            };
            Ok((counts, crate::ops::health(&e.store, &e.config)?))
        })
        .await;
        let (counts, health) = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return format!("cannot read the database: {e:#}"),
            Err(_) => return "status unavailable".into(),
        };
        if stale {
            self.counts = Some((Instant::now(), counts));
        }
        let last = health
            .iter()
            .flat_map(|a| a.folders.iter().filter_map(|f| f.status.last_ok))
            .max()
            .map(|t| t.with_timezone(&chrono_tz::Asia::Seoul).format("%H:%M:%S KST").to_string())
            .unwrap_or_else(|| "never".into());
        let mut line = match self.counts.as_ref().and_then(|(_, c)| *c) {
            Some((n, overdue)) => {
                format!(
                    "{}, {overdue} overdue, last sync {last}",
                    crate::text::count(n as u64, "merchant", "merchants")
                )
            }
            None => format!("last sync {last}"),
        };
        let trouble = crate::health::trouble_line(&health);
        if !trouble.is_empty() {
            line.push_str("; ");
            line.push_str(&trouble);
        }
        line
    }
}

/// The long-running workers of one generation: IMAP watchers, reminder schedule, outbox sender.
mod workers {
    use super::*;
    use crate::health::liveness::{account_task, folder_task};
    use crate::imap::{self, Hooks, ImapEvent};
    use crate::notify;

    /// How long a folder's watcher may go without an event (a sync, a connection, a failed
    /// attempt): an IDLE folder syncs at least every [`imap::watch::IDLE_REFRESH`], a polled one
    /// every `poll_interval`, a failing one retries within the 80 s backoff cap; the margin
    /// covers a slow sync and connection timeouts.
    fn folder_bound(idle: bool, poll: Duration) -> Duration {
        let cycle = if idle { imap::watch::IDLE_REFRESH } else { poll };
        cycle * 2 + Duration::from_secs(180)
    }

    /// An account's listing retries within the backoff cap; a connection attempt is bounded by
    /// the connect and I/O timeouts.
    const LISTING_BOUND: Duration = Duration::from_secs(5 * 60);

    pub fn spawn(
        config: &Arc<Config>,
        ingest: &Ingest,
        calendar: &Arc<Calendar>,
        notifier: Option<Arc<notify::Notifier<notify::SmtpDeliver>>>,
        liveness: &Arc<Liveness>,
        counters: &Arc<crate::http::metrics::Counters>,
        generation: &Generation,
    ) {
        let Generation { cancel, tracker } = generation;
        let (hooks, events) = Hooks::with_events(4096);
        tracker.spawn(count_mails(events.subscribe(), counters.clone(), cancel.clone()));
        for a in &config.accounts {
            liveness.beat(&account_task(&a.name), LISTING_BOUND);
        }
        tracker.spawn(track_progress(events.subscribe(), config.clone(), liveness.clone(), cancel.clone()));
        {
            let (config, ingest, cancel) = (config.clone(), ingest.clone(), cancel.clone());
            tracker.spawn(async move { imap::watch(&config, ingest, cancel, hooks).await });
        }
        let Some(notifier) = notifier else {
            tracing::warn!("No [smtp] section: reminders and notices are queued in the outbox but not sent");
            return;
        };
        // The outbox and the schedule run from READY on (SPEC §9): the first tick makes up for
        // ticks missed while we were down, so it must see the mail that arrived meanwhile in
        // every account that can be read — and not wait for one that cannot.
        spawn_looping(liveness, tracker, "sender", TASK_BOUND, cancel, {
            let (notifier, clock, ready, liveness, cancel) =
                (notifier.clone(), ingest.clock(), ingest.outbox_ready(), liveness.clone(), cancel.clone());
            move |beat| async move {
                if wait_ready(&liveness, &beat, &cancel).await {
                    notify::run_sender(notifier, clock, ready, beat, cancel).await;
                }
            }
        });
        spawn_looping(liveness, tracker, "schedule", TASK_BOUND, cancel, {
            let (config, calendar, clock, liveness, cancel) =
                (config.clone(), calendar.clone(), ingest.clock(), liveness.clone(), cancel.clone());
            move |beat| async move {
                if wait_ready(&liveness, &beat, &cancel).await {
                    notify::run_schedule(notifier, config, calendar, clock, beat, cancel).await;
                }
            }
        });
    }

    /// Wait for READY, beating meanwhile; `false` when cancelled first.
    pub(super) async fn wait_ready(
        liveness: &Liveness,
        beat: &crate::clock::Heartbeat,
        cancel: &CancellationToken,
    ) -> bool {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = liveness.wait_ready() => return true,
                () = tokio::time::sleep(Duration::from_secs(5)) => beat.beat(),
            }
        }
    }

    /// Count the mails the watchers read and what their passes cost, for `/metrics`.
    async fn count_mails(
        mut events: tokio::sync::broadcast::Receiver<ImapEvent>,
        counters: Arc<crate::http::metrics::Counters>,
        cancel: CancellationToken,
    ) {
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                e = events.recv() => e,
            };
            match event {
                Ok(ImapEvent::Mail(report)) => counters.mail(&report),
                Ok(ImapEvent::Synced { account, folder, role, cost: Some(cost), .. }) => {
                    counters.pass(&account, &folder, role, cost)
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Turn the watchers' events into beats and first attempts.
    async fn track_progress(
        mut events: tokio::sync::broadcast::Receiver<ImapEvent>,
        config: Arc<Config>,
        liveness: Arc<Liveness>,
        cancel: CancellationToken,
    ) {
        if config.accounts.is_empty() {
            return;
        }
        let bound = |account: &str, folder: &str, idle: Option<bool>| {
            let a = config.accounts.iter().find(|a| a.name == account);
            let poll = a.map_or(Duration::from_secs(60), |a| a.poll_interval);
            let idle = idle.unwrap_or_else(|| folder.eq_ignore_ascii_case("INBOX") && a.is_some_and(|a| a.idle));
            folder_bound(idle, poll)
        };
        // The bound announced by the latest connection (which knows whether the server has IDLE).
        let mut announced: std::collections::HashMap<String, Duration> = std::collections::HashMap::new();
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                e = events.recv() => e,
            };
            let event = match event {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "Progress tracker lagged behind IMAP events");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            match event {
                ImapEvent::Planned { account, folders } => {
                    for folder in &folders {
                        liveness.beat(&folder_task(&account, folder), bound(&account, folder, None));
                    }
                    // From here on the folders' watchers beat for the account.
                    liveness.forget(&account_task(&account));
                    liveness.planned(&account, &folders);
                }
                ImapEvent::Connected { account, folder, idle } => {
                    let task = folder_task(&account, &folder);
                    let b = bound(&account, &folder, Some(idle));
                    announced.insert(task.clone(), b);
                    liveness.beat(&task, b);
                }
                ImapEvent::Synced { account, folder, .. } => {
                    let task = folder_task(&account, &folder);
                    let b = announced.get(&task).copied().unwrap_or_else(|| bound(&account, &folder, None));
                    liveness.beat(&task, b);
                    liveness.folder_tried(&account, &folder);
                }
                ImapEvent::Disconnected { account, folder: Some(folder), .. } => {
                    let task = folder_task(&account, &folder);
                    let b = announced.get(&task).copied().unwrap_or_else(|| bound(&account, &folder, None));
                    liveness.beat(&task, b);
                    liveness.folder_tried(&account, &folder);
                }
                ImapEvent::Disconnected { account, folder: None, .. } => {
                    liveness.beat(&account_task(&account), LISTING_BOUND);
                    liveness.listing_failed(&account);
                }
                // A long first sync reads mail for minutes before its pass ends: progress too.
                ImapEvent::Mail(report) => {
                    let task = folder_task(&report.account, &report.folder);
                    let b =
                        announced.get(&task).copied().unwrap_or_else(|| bound(&report.account, &report.folder, None));
                    liveness.beat(&task, b);
                }
            }
        }
    }
}
