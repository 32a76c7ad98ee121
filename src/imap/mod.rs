//! `imap`: the mail source. Second stage of the flow:
//!
//! ```text
//! config ─► **imap** (connect, folders, cursor, IDLE/poll) ─► mail (classify) ─► merchant ─► store
//! ```
//!
//! It connects to each `[[accounts]]` server ([`connect`]), finds INBOX, the junk and the sent
//! folder ([`folders`]), and feeds every new mail to [`crate::ingest::Ingest`] in UID order
//! ([`sync`]), once ([`scan_once`]) or for as long as the daemon runs ([`watch()`]).
//!
//! It knows nothing of merchants or stages: it hands over raw bytes with their provenance
//! ([`crate::ingest::MailSource`]: account, folder, role, UID, UIDVALIDITY, INTERNALDATE) and
//! reads back only what it needs to report and whether to move a mail out of junk.
//!
//! What it must never do (SPEC §6): change a mail — bodies are fetched with `BODY.PEEK` from a
//! folder opened with EXAMINE, so nothing gets `\Seen`; the only write is the opt-in
//! `move_found_in_spam`, which moves exactly the UIDs concerned (a plain EXPUNGE only where the
//! server has neither MOVE nor UIDPLUS and no other mail of the folder is `\Deleted`). It never
//! advances a folder's cursor past a mail whose effects are not committed, and never
//! logs a password or a mail body.
//!
//! Files: [`transport`] (TCP/TLS stream with read/write deadlines), [`connect`] (TLS, login,
//! capabilities, advice on errors), [`utf7`] (modified UTF-7 names), [`folders`] (roles),
//! [`sync`] (one folder pass), [`watch`] (IDLE/poll loops, reconnect), this file (scan once,
//! folder listing, events).

pub mod connect;
pub mod fast_fetch;
pub mod folders;
pub mod sync;
pub mod transport;
pub mod utf7;
pub mod watch;

use std::io::IsTerminal;

use futures::FutureExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

pub use connect::{connect, Caps, ConnectError, Connection};
pub use folders::{detect_roles, FolderInfo, ListedFolder, Roles, WatchedFolder, Why};
pub use sync::{SyncError, SyncStats};
pub use watch::{watch, watch_account, Backoff};

use crate::config::{Account, Config};
use crate::health::Trouble;
pub use crate::ingest::FolderRole;
use crate::ingest::Ingest;
use crate::mail::MailKind;

/// One mail the IMAP side handed to the ingest, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailReport {
    pub account: String,
    pub folder: String,
    pub role: FolderRole,
    pub uid: u32,
    pub message_id: Option<String>,
    pub kind: MailKind,
    pub merchant: Option<String>,
    pub stage_changed: bool,
    pub found_in_spam: bool,
    pub unassigned: bool,
    pub duplicate: bool,
    /// `move_found_in_spam`: the mail is moved to INBOX at the end of this folder pass.
    pub will_move_to_inbox: bool,
}

/// What the IMAP side is doing, for the daemon (systemd READY/WATCHDOG), tests and metrics.
#[derive(Debug, Clone)]
pub enum ImapEvent {
    /// The folders an account will watch, decided once its folder list is known: the account's
    /// first full sync is done when each of them has synced.
    Planned {
        account: String,
        folders: Vec<String>,
    },
    Connected {
        account: String,
        folder: String,
        /// Waiting with IDLE rather than polling.
        idle: bool,
    },
    /// A folder pass completed (the daemon is READY after the first, and "fresh" while they come).
    Synced {
        account: String,
        folder: String,
        role: FolderRole,
        stats: SyncStats,
        /// What the pass cost on the folder's own held connection: the daemon's watchers
        /// measure it; `scan --once`, whose folders share connections, does not.
        cost: Option<PassCost>,
    },
    /// A mail whose body was fetched went through the ingest.
    Mail(MailReport),
    Disconnected {
        account: String,
        folder: Option<String>,
        error: String,
    },
}

/// The time and the round trips one folder pass took (see [`ImapEvent::Synced`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassCost {
    pub took: std::time::Duration,
    pub round_trips: u64,
}

/// Optional observers of a scan or watch, and a test's knob.
#[derive(Clone, Default)]
pub struct Hooks {
    pub events: Option<broadcast::Sender<ImapEvent>>,
    pub progress: Option<ProgressBar>,
    /// How often the watcher reads an account's folder list again; `None`: [`watch::RELIST_EVERY`].
    pub relist_every: Option<std::time::Duration>,
}

impl Hooks {
    /// Hooks that publish events on a new channel; subscribe before starting.
    pub fn with_events(capacity: usize) -> (Hooks, broadcast::Sender<ImapEvent>) {
        let (tx, _) = broadcast::channel(capacity);
        (Hooks { events: Some(tx.clone()), ..Hooks::default() }, tx)
    }

    pub(crate) fn emit(&self, e: ImapEvent) {
        if let Some(tx) = &self.events {
            // No subscriber is fine.
            let _ = tx.send(e);
        }
    }
}

/// Whether `scan --once` draws a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// On stderr when stderr is a terminal; never in logs or pipes.
    #[default]
    Auto,
    Never,
}

/// The summary `scan --once` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanSummary {
    pub accounts: usize,
    pub folders: usize,
    /// The folders' counters added up (mails seen, Hecto mails, stage changes, …).
    #[serde(flatten)]
    pub mails: SyncStats,
    /// Folder-configuration problems (a configured folder that does not exist, …).
    pub warnings: Vec<String>,
    /// Accounts or folders that could not be scanned; non-empty → exit status 1.
    pub errors: Vec<String>,
    pub cancelled: bool,
    /// What the scan cost the network: round trips waited for, those of them spent logging in,
    /// connections (`scripts/bench-scan --rtt`).
    #[serde(flatten)]
    pub cost: transport::RoundTrips,
}

impl ScanSummary {
    fn merge(&mut self, o: ScanSummary) {
        self.accounts += o.accounts;
        self.folders += o.folders;
        self.mails.add(&o.mails);
        self.warnings.extend(o.warnings);
        self.errors.extend(o.errors);
        self.cancelled |= o.cancelled;
    }

    /// Every folder of every account was scanned to the end.
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty() && !self.cancelled
    }
}

fn progress_bar(mode: ProgressMode) -> Option<ProgressBar> {
    if mode == ProgressMode::Never || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {pos}/{len} mails [{elapsed_precise}] {wide_msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(bar)
}

/// `scan --once`: one pass over every watched folder of every account (accounts in parallel,
/// two connections per account: see `scan_account`). Never fails as a whole: what
/// could not be scanned is listed in [`ScanSummary::errors`]. Cancelling stops at the next safe
/// point (between mails), with everything done so far committed (the caller flushes).
pub async fn scan_once(
    config: &Config,
    ingest: &Ingest,
    cancel: &CancellationToken,
    progress: ProgressMode,
) -> ScanSummary {
    scan_once_with(config, ingest, cancel, progress, Hooks::default()).await
}

/// [`scan_once`] with observers (tests subscribe to [`ImapEvent`]s).
pub async fn scan_once_with(
    config: &Config,
    ingest: &Ingest,
    cancel: &CancellationToken,
    progress: ProgressMode,
    mut hooks: Hooks,
) -> ScanSummary {
    let bar = progress_bar(progress);
    let began = transport::RoundTrips::now();
    if hooks.progress.is_none() {
        hooks.progress = bar.clone();
    }
    let scans = config.accounts.iter().map(|account| {
        let span = info_span!("account", account = %account.name);
        // A panic while scanning one account (a bug, or a server response the IMAP library
        // cannot take) is that account's error, not the end of the scan of every other.
        let scan = std::panic::AssertUnwindSafe(scan_account(account, ingest, cancel, &hooks).instrument(span));
        async move {
            scan.catch_unwind().await.unwrap_or_else(|p| {
                let error = format!("account {:?}: the scan failed ({})", account.name, watch::panic_text(p.as_ref()));
                record_account_failure(ingest, &account.name, &error, Trouble::Internal);
                ScanSummary { accounts: 1, errors: vec![error], ..ScanSummary::default() }
            })
        }
    });
    let mut summary = ScanSummary::default();
    for s in futures::future::join_all(scans).await {
        summary.merge(s);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    summary.cost = transport::RoundTrips::now().since(began);
    summary
}

async fn scan_account(account: &Account, ingest: &Ingest, cancel: &CancellationToken, hooks: &Hooks) -> ScanSummary {
    let mut summary = ScanSummary { accounts: 1, ..ScanSummary::default() };
    let name = &account.name;
    // An account scanned before usually has nothing new: its folders' counters come with the
    // listing (LIST-STATUS, else a pipelined STATUS each), the unchanged ones are passed without
    // a command, and a second connection is opened only for a folder that has news. On a first
    // scan every folder has work, so the second lane's connection logs in while the first one
    // does and lists the folders: a login is mostly waiting for the server.
    let first = ingest.store().status_folders(name).map_or(true, |f| f.is_empty());
    let listed = async {
        let mut conn = sync::connect_or_cancel(account, cancel).await?;
        match folders::list_with_counts(&mut conn, true).await {
            Ok((list, counts)) => Ok((conn, list, counts)),
            Err(e) => Err(SyncError::Imap(e)),
        }
    };
    let early_lane = async {
        match first {
            true => Some(sync::connect_or_cancel(account, cancel).await),
            false => None,
        }
    };
    let (listed, lane_conn) = futures::join!(listed, early_lane);
    let lane_conn = lane_conn.and_then(Result::ok);
    let (mut conn, list, mut counts) = match listed {
        Ok(l) => l,
        Err(e) => {
            if let Some(c) = lane_conn {
                c.logout().await;
            }
            match e {
                SyncError::Cancelled => summary.cancelled = true,
                e => {
                    warn!(error = %e, "Cannot connect");
                    record_account_failure(ingest, name, &e.to_string(), e.trouble());
                    summary.errors.push(format!("account {name:?}: {e}"));
                }
            }
            return summary;
        }
    };
    let (plan, problems, recorded) = adopt(&list, account, ingest);
    summary.warnings.extend(problems.iter().map(|p| format!("account {name:?}: {p}")));
    if let Err(e) = recorded {
        summary.errors.push(format!("account {name:?}: cannot record folder roles: {e:#}"));
    }
    if plan.is_empty() {
        // Nothing to read is not "nothing there".
        let e = nothing_to_watch(&problems);
        record_account_failure(ingest, name, &e, Trouble::Folder);
        summary.errors.push(format!("account {name:?}: {e}"));
        conn.logout().await;
        if let Some(c) = lane_conn {
            c.logout().await;
        }
        return summary;
    }
    if !first && !conn.caps.list_status {
        // No LIST-STATUS: the watched folders' STATUS, all in one round trip.
        let raw: Vec<&str> = plan.iter().map(|f| f.raw.as_str()).collect();
        match folders::status_counts(&mut conn, &raw).await {
            Ok(c) => counts = c,
            Err(e) => debug!(error = %format!("{e:#}"), "No folder counters; every folder is selected"),
        }
    }
    // Two lanes, each on one connection: the connection that listed the folders serves INBOX —
    // usually by far the biggest folder and so the critical path — and starts fetching at once;
    // a second connection serves the other folders in turn meanwhile and is then handed to
    // INBOX, should a big pass there want one for bodies. Not a connection per folder: a login
    // costs the server ~20 ms of CPU (a process, a TLS handshake), more than a junk or sent
    // folder usually takes to scan.
    let served = plan.iter().position(|f| f.role == FolderRole::Inbox).unwrap_or(0);
    let rest: Vec<usize> = (0..plan.len()).filter(|i| *i != served).collect();
    let (hand_over, promised) = tokio::sync::oneshot::channel::<Connection>();
    let counts = &counts;
    let inbox_lane = async {
        let folder = plan.get(served)?;
        let span = info_span!("folder", folder = %folder.name);
        let listed = folders::counts_for(counts, folder);
        Some(
            scan_folder(account, folder, listed, Some(conn), Some(promised), ingest, cancel, hooks)
                .instrument(span)
                .await,
        )
    };
    let other_lane =
        scan_lane(account, rest.iter().map(|i| &plan[*i]), counts, lane_conn, hand_over, ingest, cancel, hooks);
    let (mut inbox, others) = futures::join!(inbox_lane, other_lane);
    let mut others = others.into_iter();
    let results: Vec<Result<SyncStats, SyncError>> = (0..plan.len())
        .map(|i| if i == served { inbox.take() } else { others.next() })
        .map(|r| r.unwrap_or(Err(SyncError::Cancelled)))
        .collect();
    for (folder, result) in plan.iter().zip(results) {
        match result {
            Ok(stats) => {
                summary.folders += 1;
                summary.mails.add(&stats);
                info!(
                    folder = %folder.name,
                    role = crate::store::role_name(folder.role),
                    mails = stats.mails_seen,
                    hecto = stats.hecto_mails,
                    stage_changes = stats.stage_changes,
                    "Folder scanned"
                );
                hooks.emit(ImapEvent::Synced {
                    account: name.clone(),
                    folder: folder.name.clone(),
                    role: folder.role,
                    stats,
                    cost: None,
                });
            }
            Err(SyncError::Cancelled) => summary.cancelled = true,
            Err(e) => {
                warn!(folder = %folder.name, error = %e, "Folder scan failed");
                summary.errors.push(format!("account {name:?}, folder {:?}: {e}", folder.name));
            }
        }
    }
    summary
}

/// One folder of `scan --once`, on `conn` or a connection of its own (`helper`: see
/// [`sync::sync_folder_with`]).
#[allow(clippy::too_many_arguments)]
async fn scan_folder(
    account: &Account,
    folder: &WatchedFolder,
    listed: Option<folders::FolderCounts>,
    conn: Option<Connection>,
    helper: Option<tokio::sync::oneshot::Receiver<Connection>>,
    ingest: &Ingest,
    cancel: &CancellationToken,
    hooks: &Hooks,
) -> Result<SyncStats, SyncError> {
    let mut conn = match conn {
        Some(c) => c,
        None => sync::connect_or_cancel(account, cancel).await?,
    };
    let ctx = sync::FolderCtx { account, folder, ingest, cancel, hooks, listed };
    let result = sync::sync_folder_with(&mut conn, &ctx, helper).await;
    conn.logout().await;
    result
}

/// Folders of `scan --once` one after another on one connection, opened when first needed (a
/// folder whose counters show nothing new needs none) and again after a folder failed (the
/// connection may be what failed). At the end the connection goes to `hand_over` (INBOX's big
/// pass may want it), or is logged out if nobody does.
#[allow(clippy::too_many_arguments)]
async fn scan_lane<'a>(
    account: &Account,
    folders: impl Iterator<Item = &'a WatchedFolder>,
    counts: &folders::Counts,
    conn: Option<Connection>,
    hand_over: tokio::sync::oneshot::Sender<Connection>,
    ingest: &Ingest,
    cancel: &CancellationToken,
    hooks: &Hooks,
) -> Vec<Result<SyncStats, SyncError>> {
    let mut results = Vec::new();
    let mut conn = conn;
    for folder in folders {
        let span = info_span!("folder", folder = %folder.name);
        let ctx =
            sync::FolderCtx { account, folder, ingest, cancel, hooks, listed: folders::counts_for(counts, folder) };
        if let Some(unchanged) = sync::pass_unchanged(&ctx) {
            results.push(unchanged);
            continue;
        }
        let result = async {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match sync::connect_or_cancel(account, cancel).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        if !matches!(e, SyncError::Cancelled) {
                            sync::record_failure(ingest, &account.name, &folder.name, &e.to_string(), e.trouble());
                        }
                        return Err(e);
                    }
                },
            };
            sync::sync_folder(c, &ctx).await
        }
        .instrument(span)
        .await;
        if result.is_err() {
            conn = None;
        }
        results.push(result);
    }
    if let Some(c) = conn {
        if let Err(c) = hand_over.send(c) {
            c.logout().await;
        }
    }
    results
}

/// `folders`: every selectable folder of an account with the role detected (INBOX, junk, sent;
/// `Other` for the rest) and why (special-use, name, configuration).
pub async fn list_folders(account: &Account) -> anyhow::Result<Vec<folders::ListedFolder>> {
    let list = list_once(account).await?;
    let (plan, roles) = folders::plan(&list, account);
    Ok(folders::listing_with_reasons(&list, &roles, &plan))
}

/// The folders an account would watch, with their roles and any configuration problems.
pub async fn plan_folders(account: &Account) -> anyhow::Result<(Vec<WatchedFolder>, Vec<String>)> {
    let (plan, roles) = folders::plan(&list_once(account).await?, account);
    Ok((plan, roles.problems))
}

/// Connect, LIST, log out.
async fn list_once(account: &Account) -> anyhow::Result<Vec<folders::FolderInfo>> {
    let mut conn = connect(account).await?;
    let list = folders::list(&mut conn).await;
    conn.logout().await;
    list
}

/// The error of an account none of whose folders to watch exists.
fn nothing_to_watch(problems: &[String]) -> String {
    format!("none of the folders to watch exists on the server ({})", problems.join("; "))
}

/// An account could not even be listed (no connection, refused login): that is every watched
/// folder's error — those it watched last (by their statuses), else INBOX, which every account
/// watches.
fn record_account_failure(ingest: &Ingest, account: &str, error: &str, trouble: Trouble) {
    let mut folders = ingest.store().status_folders(account).unwrap_or_default();
    if folders.is_empty() {
        folders.push("INBOX".to_owned());
    }
    for folder in folders {
        sync::record_failure(ingest, account, &folder, error, trouble);
    }
}

/// What to watch in an account's listing, and the configuration problems found (each logged),
/// after recording every folder's role (for `folders` and status).
fn adopt(
    list: &[folders::FolderInfo],
    account: &Account,
    ingest: &Ingest,
) -> (Vec<WatchedFolder>, Vec<String>, anyhow::Result<()>) {
    let (plan, roles) = folders::plan(list, account);
    for p in &roles.problems {
        warn!(problem = %p, "Folder configuration");
    }
    let mut names: Vec<String> = plan.iter().map(|f| f.name.clone()).collect();
    names.extend(roles.missing.iter().map(|(name, _)| name.clone()));
    let recorded = ingest
        .store()
        .set_folder_roles(&account.name, &folders::listing(list, &roles))
        .and_then(|()| ingest.store().retain_folder_statuses(&account.name, &names));
    // A configured folder the server does not have cannot be read: the account is not fine.
    for (name, problem) in &roles.missing {
        sync::record_failure(ingest, &account.name, name, problem, Trouble::Folder);
    }
    (plan, roles.problems, recorded)
}
