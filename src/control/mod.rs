//! `control`: the commands as data. The CLI builds a [`Request`]; with no daemon running it
//! executes it itself on the database ([`Engine::execute`]), and while `run` holds the database
//! (sled admits one process) it sends the same request over a unix socket in the state directory
//! and the daemon executes it on its own handle — so both paths give the same answer (SPEC §7).

pub mod client;
pub mod server;

use std::sync::Arc;

use anyhow::Context;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::ingest::{role_from_name, Ingest, MailSource};
use crate::mail::ClassifyReport;
use crate::notify::{Notifier, SmtpDeliver};
use crate::ops::{self, NewMerchant};
use crate::schedule::Calendar;
use crate::store::{Refused, Store};

/// Name of the control socket inside the state directory.
pub const SOCKET_NAME: &str = "control.sock";

/// One `.eml` given to `import-mail`, carried to wherever the database is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailFile {
    pub name: String,
    /// Raw bytes, base64 (JSON has no byte strings).
    pub data: String,
    pub mtime: Option<DateTime<Utc>>,
}

impl MailFile {
    pub fn new(name: String, bytes: &[u8], mtime: Option<DateTime<Utc>>) -> MailFile {
        MailFile { name, data: base64::engine::general_purpose::STANDARD.encode(bytes), mtime }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    Reminders {
        failed: bool,
    },
    MerchantAdd(NewMerchant),
    MerchantList,
    MerchantShow {
        id: String,
    },
    MerchantAdvance {
        id: String,
        stage: String,
        at: Option<String>,
        note: Option<String>,
    },
    MerchantRemove {
        id: String,
    },
    MerchantEdit {
        id: String,
        edit: crate::merchant::Edit,
        #[serde(default)]
        force: bool,
    },
    /// `merchant import FILE.csv`: the rows, each with its line in the file.
    MerchantImport {
        rows: Vec<ops::ImportRow>,
        #[serde(default)]
        dry_run: bool,
    },
    /// `merchant pause` (`paused`) / `merchant resume`.
    MerchantPause {
        id: String,
        paused: bool,
        note: Option<String>,
    },
    ImportMail {
        account: String,
        folder: String,
        mails: Vec<MailFile>,
    },
    Export,
    UnassignedList {
        #[serde(default)]
        all: bool,
    },
    UnassignedShow {
        id: u64,
    },
    UnassignedAssign {
        id: u64,
        merchant: String,
        note: Option<String>,
    },
    UnassignedDismiss {
        id: u64,
        note: Option<String>,
    },
    /// `outbox [--pending|--sent|--failed]`.
    Outbox {
        status: Option<crate::store::Delivery>,
    },
    OutboxShow {
        key: String,
    },
    /// One reminder tick: enqueue what is due, send everything due (`remind --once`).
    Remind,
    /// Put failed or waiting outbox entries back to pending.
    Retry {
        keys: Vec<String>,
        all: bool,
    },
    /// Every account's health (`health`).
    Health,
}

/// What `health` answers: the accounts, and whether the daemon answered (live) or the state
/// was read from the database with no daemon running (as last recorded).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthReply {
    pub daemon_running: bool,
    /// The daemon's tasks and their last beats (what WATCHDOG= is derived from).
    #[serde(default)]
    pub tasks: Vec<crate::health::liveness::TaskBeat>,
    pub accounts: Vec<crate::health::AccountHealth>,
    pub all_readable: bool,
    /// The daemon could not write its database (a full disk): it sends and advances nothing
    /// until it has restarted (SPEC §9 Durability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_fault: Option<crate::store::faults::Fault>,
}

impl Request {
    /// It changes nothing: run on a state directory without a database it is a mistake, not a
    /// reason to create one.
    pub fn only_reads(&self) -> bool {
        matches!(
            self,
            Request::Status
                | Request::Reminders { .. }
                | Request::MerchantList
                | Request::MerchantShow { .. }
                | Request::Export
                | Request::Outbox { .. }
                | Request::UnassignedList { .. }
                | Request::UnassignedShow { .. }
                | Request::OutboxShow { .. }
                | Request::Health
        )
    }
}

/// A request with the instant it is evaluated at (`--now`, else the caller's clock).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub now: Option<DateTime<Utc>>,
    pub request: Request,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok(serde_json::Value),
    /// `code` is the exit status the CLI should use (2 refused, 1 failure).
    Err {
        code: i32,
        message: String,
    },
}

/// What `import-mail` reports per file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedMail {
    #[serde(flatten)]
    pub report: ClassifyReport,
    pub merchant: Option<String>,
    pub stage_changed: bool,
    pub found_in_spam: bool,
    pub duplicate: bool,
    pub unassigned: bool,
    pub own_mail: bool,
}

/// Everything a request needs; the daemon keeps one, the CLI makes one per command.
#[derive(Clone)]
pub struct Engine {
    pub store: Store,
    pub config: Arc<Config>,
    pub calendar: Arc<Calendar>,
    pub ingest: Ingest,
    /// The daemon's notifier (one SMTP transport, one drain at a time); `None` in a one-shot
    /// command, which builds its own when it needs to send.
    pub notifier: Option<Arc<Notifier<SmtpDeliver>>>,
    /// The running daemon's own progress (`None` in a one-shot command).
    pub liveness: Option<Arc<crate::health::liveness::Liveness>>,
}

impl Engine {
    /// Execute one request at `now`. Refusals (bad input) come back as [`Refused`] errors.
    pub fn execute(&self, request: &Request, now: DateTime<Utc>) -> anyhow::Result<serde_json::Value> {
        let (store, config, cal) = (&self.store, &*self.config, &*self.calendar);
        let v = match request {
            Request::Status => json(ops::status(store, config, cal, now)?)?,
            Request::Reminders { failed: true } => json(ops::failed(store)?)?,
            Request::Reminders { failed: false } => json(ops::reminders_due(store, config, cal, now)?.1)?,
            Request::MerchantAdd(new) => {
                let m = ops::merchant_add(store, new, now)?;
                store.flush_blocking()?;
                json(m)?
            }
            Request::MerchantList => json(store.merchants()?)?,
            Request::UnassignedList { all } => json(ops::unassigned_list(store, *all)?)?,
            Request::UnassignedShow { id } => json(ops::unassigned_show(store, *id)?)?,
            Request::UnassignedAssign { id, merchant, note } => {
                let a = store.assign_unassigned(
                    *id,
                    merchant,
                    note.clone(),
                    &config.rules,
                    &config.reminders.operators,
                    now,
                )?;
                store.flush_blocking()?;
                json(a)?
            }
            Request::UnassignedDismiss { id, note } => {
                store.dismiss_unassigned(*id, note.clone(), now)?;
                store.flush_blocking()?;
                json(ops::unassigned_show(store, *id)?.row)?
            }
            Request::Outbox { status } => json(ops::outbox(store, *status)?)?,
            Request::OutboxShow { key } => json(ops::outbox_show(store, config, key)?)?,
            Request::MerchantShow { id } => json(ops::merchant_show(store, config, cal, id)?)?,
            Request::MerchantAdvance { id, stage, at, note } => {
                let m = ops::merchant_advance(store, id, stage, at.as_deref(), note.clone(), now)?;
                store.flush_blocking()?;
                json(m)?
            }
            Request::MerchantPause { id, paused, note } => {
                let m = ops::merchant_pause(store, id, *paused, note.clone(), now)?;
                store.flush_blocking()?;
                json(m)?
            }
            Request::MerchantEdit { id, edit, force } => {
                let m = ops::merchant_edit(store, id, edit, *force, now)?;
                store.flush_blocking()?;
                json(m)?
            }
            Request::MerchantImport { rows, dry_run } => {
                let added = ops::merchant_import(store, rows, *dry_run, now)?;
                if !dry_run {
                    store.flush_blocking()?;
                }
                json(added)?
            }
            Request::MerchantRemove { id } => {
                let m = store.remove_merchant(id, now)?;
                store.flush_blocking()?;
                json(m)?
            }
            Request::ImportMail { account, folder, mails } => {
                let role = role_from_name(folder);
                let mut out = Vec::with_capacity(mails.len());
                for f in mails {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(&f.data)
                        .map_err(|e| Refused::BadInput(format!("{}: not base64: {e}", f.name)))?;
                    let source = MailSource {
                        account: account.clone(),
                        folder: folder.clone(),
                        role,
                        uid: None,
                        uid_validity: None,
                        internal_date: f.mtime,
                        move_to_inbox: false,
                    };
                    let (c, a) = self.ingest.apply(&source, &raw)?;
                    out.push(ImportedMail {
                        report: c.report(&f.name),
                        merchant: a.merchant,
                        stage_changed: a.stage_changed,
                        found_in_spam: a.found_in_spam,
                        duplicate: a.duplicate,
                        unassigned: a.unassigned,
                        own_mail: a.own_mail,
                    });
                }
                store.flush_blocking()?;
                json(out)?
            }
            Request::Export => json(store.export()?)?,
            Request::Remind => json(self.remind(now)?)?,
            Request::Health => {
                let report = ops::health(store, config)?;
                json(HealthReply {
                    daemon_running: self.liveness.is_some(),
                    tasks: self.liveness.as_ref().map(|l| l.tasks()).unwrap_or_default(),
                    all_readable: crate::health::all_readable(&report),
                    accounts: report,
                    storage_fault: store.fault(),
                })?
            }
            Request::Retry { keys, all } => {
                let back = crate::notify::retry(store, keys, *all)?;
                // In the daemon the sender sends them now, not at its next minutely look.
                self.ingest.outbox_ready().notify_one();
                json(back)?
            }
        };
        Ok(v)
    }

    /// One reminder tick at `now`. In the daemon this runs on a blocking thread of its runtime
    /// and shares the daemon's notifier, so it never races the sender task; a one-shot command
    /// runs it on a runtime of its own.
    fn remind(&self, now: DateTime<Utc>) -> anyhow::Result<crate::notify::TickReport> {
        if self.config.smtp.is_none() {
            return Err(Refused::BadInput(
                "remind sends mail and needs an [smtp] section in the configuration (see config/hecto-watch.toml)"
                    .into(),
            )
            .into());
        }
        let tick = |notifier: Arc<Notifier<SmtpDeliver>>| {
            let (config, calendar) = (self.config.clone(), self.calendar.clone());
            async move {
                crate::notify::tick(&notifier, &config, &calendar, now, &tokio_util::sync::CancellationToken::new())
                    .await
            }
        };
        match (&self.notifier, tokio::runtime::Handle::try_current()) {
            (Some(n), Ok(handle)) => handle.block_on(tick(n.clone())),
            _ => {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                rt.block_on(async {
                    // Built inside the runtime: lettre's connection pool spawns a task.
                    let notifier = crate::notify::smtp_notifier(self.store.clone(), &self.config)
                        .map_err(|e| Refused::BadInput(format!("{e:#}")))?;
                    tick(Arc::new(notifier)).await
                })
            }
        }
    }

    /// Execute and wrap the outcome as a [`Reply`].
    pub fn reply(&self, envelope: &Envelope) -> Reply {
        let now = envelope.now.unwrap_or_else(|| self.ingest.clock().now());
        match self.execute(&envelope.request, now) {
            Ok(v) => Reply::Ok(v),
            Err(e) => {
                let code = if e.downcast_ref::<Refused>().is_some() { 2 } else { 1 };
                Reply::Err { code, message: format!("{e:#}") }
            }
        }
    }
}

fn json<T: Serialize>(v: T) -> anyhow::Result<serde_json::Value> {
    serde_json::to_value(v).context("cannot serialise the result")
}
