//! `cli`: the command line (SPEC §7), a thin layer over [`crate::ops`] and friends.
//!
//! Data goes to stdout, logs to stderr; `--json` gives machine output. Exit status 0 on success,
//! 1 on a runtime failure, 2 on bad usage or configuration, with a one-line reason on stderr.

pub mod merchant_csv;
mod online;
mod print;
mod table;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::clock::Clock;
use crate::config::{Config, ConfigErrors, LogFormat};
use std::sync::Arc;

use crate::control::{client, Engine, Envelope, ImportedMail, MailFile, Reply, Request};
use crate::ingest::Ingest;
use crate::mail;
use crate::merchant::Merchant;
use crate::ops::{self, DueItem};
use crate::schedule::{Calendar, StatusRow};
use crate::store::{OutboxEntry, Refused, Store};

#[derive(Debug, Parser)]
#[command(name = "hecto-watch", version, about = "Shepherds merchants through the Hecto Financial contract")]
pub struct Cli {
    /// Configuration file [default: /etc/hecto-watch/config.toml when it exists, else built-in defaults]
    #[arg(long, global = true, env = "HECTO_WATCH_CONFIG", value_name = "FILE", help_heading = "Global options")]
    pub config: Option<PathBuf>,
    /// The sled database directory (overrides [store] path)
    #[arg(long, global = true, value_name = "DIR", help_heading = "Global options")]
    pub state_dir: Option<PathBuf>,
    /// Evaluate as if it were this instant (RFC 3339, e.g. 2027-02-15T09:00:00+09:00): for run,
    /// scan, status, reminders, remind, calendar, check-config and the times merchant commands
    /// record; refused where it means nothing
    #[arg(long, global = true, value_name = "RFC3339", help_heading = "Global options")]
    pub now: Option<String>,
    /// Machine-readable output: one JSON object per line (or one document)
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Log format on stderr [default: from the config, else text]
    #[arg(long, global = true, value_parser = ["text", "json"], help_heading = "Global options")]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: watch every account, send reminders, answer commands on the control socket
    #[command(after_help = "Examples:\n  hecto-watch --config /etc/hecto-watch/config.toml run\n  \
                            systemctl start hecto-watch      # the unit in systemd/ runs exactly this")]
    Run,
    /// Validate the configuration and report every problem at once
    #[command(after_help = "Examples:\n  hecto-watch --config /etc/hecto-watch/config.toml check-config\n  \
                            hecto-watch check-config --connect      # also log in everywhere")]
    CheckConfig {
        /// Also log in to every IMAP account and the SMTP server
        #[arg(long)]
        connect: bool,
    },
    /// One ingest pass over every watched folder of every account
    #[command(after_help = "Example:\n  hecto-watch --config /etc/hecto-watch/config.toml scan --once")]
    Scan {
        /// Scan once and exit; required (the daemon `run` watches continuously)
        #[arg(long, required = true)]
        once: bool,
    },
    /// List each account's folders with the role detected (inbox, junk, sent)
    #[command(after_help = "Example:\n  hecto-watch --config /etc/hecto-watch/config.toml folders")]
    Folders,
    /// Per account and folder: last successful sync, last error and since when, mails seen;
    /// exit 0 when every account is readable, 1 when one is not
    #[command(after_help = "Examples:\n  hecto-watch health\n  hecto-watch health --json | jq .")]
    Health,
    /// OAuth 2.0 sign-in of the accounts with auth = "oauth2"
    #[command(subcommand, after_help = "Examples:\n  hecto-watch oauth login m365\n  hecto-watch oauth status --json")]
    Oauth(OauthCmd),
    /// Classify .eml files offline (`-` reads stdin); changes nothing
    #[command(
        after_help = "Examples:\n  hecto-watch classify saved/*.eml\n  hecto-watch classify --json - < message.eml"
    )]
    Classify {
        /// .eml files, or - for stdin
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Manage merchants: add, import, edit, advance, pause, remove
    #[command(
        subcommand,
        after_help = "Examples:\n  hecto-watch merchant add --id acme --name \"주식회사 에이씨미\" --contact pay@acme.example\n  \
                      hecto-watch merchant import merchants.csv --dry-run\n  hecto-watch merchant show acme"
    )]
    Merchant(MerchantCmd),
    /// Per merchant: stage, since, deadline, overdue, found in spam
    #[command(
        after_help = "Examples:\n  hecto-watch status\n  hecto-watch status --json --now 2027-02-15T09:00:00+09:00"
    )]
    Status,
    /// What is due now (reminders, spam notices, operator notices), sending nothing
    #[command(after_help = "Examples:\n  hecto-watch reminders\n  hecto-watch reminders --json      \
                            # window, window_opened, key, state\n  hecto-watch reminders --failed")]
    Reminders(RemindersArgs),
    /// Send what is due now: one tick of the reminder schedule (enqueue due reminders, then send
    /// everything pending whose retry time has come)
    #[command(after_help = "Example:\n  hecto-watch --config /etc/hecto-watch/config.toml remind --once")]
    Remind {
        /// Do exactly one tick and exit; required (the daemon `run` follows the schedule)
        #[arg(long, required = true)]
        once: bool,
    },
    /// The Hecto mails no merchant could be matched to: list, show, assign to a merchant, dismiss
    #[command(
        subcommand,
        after_help = "Examples:\n  hecto-watch unassigned list\n  hecto-watch unassigned show 12\n  \
                      hecto-watch unassigned assign 12 acme --note \"shared agency inbox\"\n  \
                      hecto-watch unassigned dismiss 13 --note \"newsletter\""
    )]
    Unassigned(UnassignedCmd),
    /// What was sent, to whom, when and with which Message-ID, and what waits (oldest first)
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  hecto-watch outbox --pending\n  hecto-watch outbox --sent --json\n  \
                      hecto-watch outbox show reminder/acme/guidance@20270205/001"
    )]
    Outbox {
        #[command(subcommand)]
        show: Option<OutboxCmd>,
        /// Only the messages waiting to be sent (or retried)
        #[arg(long, group = "which")]
        pending: bool,
        /// Only the messages sent
        #[arg(long, group = "which")]
        sent: bool,
        /// Only the messages given up on (see `retry`)
        #[arg(long, group = "which")]
        failed: bool,
    },
    /// Put messages that failed permanently back into the outbox, to be sent at the next tick
    #[command(
        after_help = "Examples:\n  hecto-watch retry reminder/acme/guidance@20270205/001\n  hecto-watch retry --all"
    )]
    Retry {
        /// Outbox keys (see `reminders --failed`)
        #[arg(value_name = "KEY", conflicts_with = "all")]
        keys: Vec<String>,
        /// Every failed message
        #[arg(long)]
        all: bool,
    },
    /// Feed .eml files through the same pipeline as IMAP mail
    #[command(after_help = "Examples:\n  hecto-watch import-mail --folder Junk saved/*.eml     \
                            # counts as found in spam\n  hecto-watch import-mail --folder INBOX --account shop mail.eml")]
    ImportMail {
        /// The folder the mail was in; its role (inbox, junk, sent) comes from the name
        #[arg(long, value_name = "NAME")]
        folder: String,
        /// The account name recorded as evidence
        #[arg(long, default_value = "import", value_name = "ACCOUNT")]
        account: String,
        /// .eml files
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Write the whole database as JSON (stdout, or --output)
    #[command(
        after_help = "Examples:\n  hecto-watch export -o backup.json\n  hecto-watch --state-dir /var/lib/hecto-watch export > backup.json"
    )]
    Export {
        /// Write here (atomically: a temporary file renamed) instead of stdout
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// The non-business days of a year (Korean public holidays, substitute and temporary
    /// holidays, election days, extra_holidays) and the years the calendar data covers
    #[command(after_help = "Examples:\n  hecto-watch calendar\n  hecto-watch calendar 2027 --json")]
    Calendar {
        /// The year to list [default: this year in Seoul]
        #[arg(value_name = "YEAR")]
        year: Option<i32>,
    },
    /// Load an export into an empty state directory
    #[command(after_help = "Example:\n  hecto-watch --state-dir /var/lib/hecto-watch-new import backup.json")]
    Import {
        /// A file `export` wrote
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Shell completions on stdout
    #[command(after_help = "Examples:\n  hecto-watch completions bash > /etc/bash_completion.d/hecto-watch\n  \
                            hecto-watch completions zsh > ~/.zfunc/_hecto-watch\n  \
                            hecto-watch completions fish > ~/.config/fish/completions/hecto-watch.fish")]
    Completions {
        /// bash, zsh, fish, elvish or powershell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) on stdout
    #[command(after_help = "Example:\n  hecto-watch man > /usr/local/share/man/man1/hecto-watch.1 && man hecto-watch")]
    Man,
}

#[derive(Debug, Args)]
pub struct RemindersArgs {
    /// List the messages that failed permanently instead
    #[arg(long)]
    pub failed: bool,
}

#[derive(Debug, Subcommand)]
pub enum UnassignedCmd {
    /// The mails waiting for an operator, oldest first
    List {
        /// Also the ones already assigned or dismissed
        #[arg(long)]
        all: bool,
    },
    /// One mail: where it was, who it was to, what it says, why no merchant matched
    Show {
        /// The mail's id (see `unassigned list`)
        #[arg(value_name = "ID")]
        id: u64,
    },
    /// Apply the mail to a merchant exactly as if it had matched (stage, MIDs, found in spam and
    /// its notice); the timeline records "assigned by operator"
    Assign {
        /// The mail's id (see `unassigned list`)
        #[arg(value_name = "ID")]
        id: u64,
        /// The merchant's id
        #[arg(value_name = "MERCHANT")]
        merchant: String,
        /// Why, kept with the mail
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Set the mail aside (not Hecto's business after all, a duplicate, …)
    Dismiss {
        /// The mail's id (see `unassigned list`)
        #[arg(value_name = "ID")]
        id: u64,
        /// Why, kept with the mail
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCmd {
    /// One message with its headers and text, as sent (or, not tried yet, as it would be)
    Show {
        /// The outbox key (see `outbox`)
        #[arg(value_name = "KEY")]
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OauthCmd {
    /// Sign in with the device-authorization grant: prints a URL and a code to enter there,
    /// waits for the grant and keeps the refresh token in the state directory (mode 0600)
    Login {
        /// The account's `name` in the configuration
        #[arg(value_name = "ACCOUNT")]
        account: String,
    },
    /// Each OAuth account's token state (never a token)
    Status,
}

#[derive(Debug, Subcommand)]
pub enum MerchantCmd {
    /// Register a merchant (stage `applied`)
    #[command(
        after_help = "Examples:\n  hecto-watch merchant add --id acme --name \"주식회사 에이씨미\" --contact pay@acme.example \\\n      \
                            --business-no 123-45-67891 --applied-at 2027-02-05\n  \
                            hecto-watch merchant add --id beta --name Beta --contact a@beta.example --contact b@beta.example --language en"
    )]
    Add {
        /// 1–64 characters of A–Z, a–z, 0–9, '_', '-', '.'
        #[arg(long, value_name = "ID")]
        id: String,
        /// The company name as on the application (1–200 characters)
        #[arg(long, value_name = "NAME")]
        name: String,
        /// A contact address on the Hecto application (repeatable: reminders go to all)
        #[arg(long = "contact", value_name = "EMAIL", required = true)]
        contacts: Vec<String>,
        /// 사업자등록번호 (123-45-67891)
        #[arg(long, value_name = "NUMBER")]
        business_no: Option<String>,
        /// A MID already known (repeatable)
        #[arg(long = "mid", value_name = "MID")]
        mids: Vec<String>,
        /// When the application was made (2026-11-02 or RFC 3339) [default: now]
        #[arg(long, value_name = "DATE")]
        applied_at: Option<String>,
        /// The language of this merchant's reminders (ko, en) [default: reminders.language]
        #[arg(long, value_name = "LANG")]
        language: Option<crate::config::Language>,
        /// Register even when the business number or a MID is already another merchant's
        #[arg(long)]
        force: bool,
    },
    /// Change a merchant's name, contacts, business number, MIDs or language (the timeline
    /// records what changed)
    #[command(
        after_help = "Examples:\n  hecto-watch merchant edit acme --add-contact ops@acme.example --remove-contact old@acme.example\n  \
                            hecto-watch merchant edit acme --name \"주식회사 에이씨미\" --language en --note \"typo\""
    )]
    Edit {
        /// The merchant's id
        #[arg(value_name = "ID")]
        id: String,
        /// The company name (1–200 characters)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Add a contact address (repeatable)
        #[arg(long = "add-contact", value_name = "EMAIL")]
        add_contacts: Vec<String>,
        /// Remove a contact address (repeatable; one must remain)
        #[arg(long = "remove-contact", value_name = "EMAIL")]
        remove_contacts: Vec<String>,
        /// 사업자등록번호 (123-45-67891)
        #[arg(long, value_name = "NUMBER")]
        business_no: Option<String>,
        /// Add a MID (repeatable)
        #[arg(long = "mid", value_name = "MID")]
        mids: Vec<String>,
        /// Remove a MID (repeatable)
        #[arg(long = "remove-mid", value_name = "MID")]
        remove_mids: Vec<String>,
        /// The language of this merchant's reminders (ko, en)
        #[arg(long, value_name = "LANG")]
        language: Option<crate::config::Language>,
        /// Why, kept in the timeline
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// Accept a business number or MID that is already another merchant's
        #[arg(long)]
        force: bool,
    },
    /// Register many merchants from a CSV file (header row: id,name,contact,business_no,mid,
    /// applied_at,language; several contacts or MIDs separated by ';'); every row is checked
    /// first and nothing is written unless all are valid
    #[command(after_help = "Example file:\n  id,name,contact,business_no,mid,applied_at,language\n  \
                            acme,주식회사 에이씨미,pay@acme.example;ops@acme.example,123-45-67891,,2027-02-05,ko\n\n\
                            Examples:\n  hecto-watch merchant import merchants.csv --dry-run\n  hecto-watch merchant import merchants.csv")]
    Import {
        /// UTF-8 (with or without a BOM) or CP949, as Excel in Korea saves it
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Check the rows and show what would be added, writing nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// List merchants (a business number or MID two of them share is marked "(shared!)")
    List,
    /// A merchant with its timeline and evidence
    Show {
        /// The merchant's id
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Set a merchant's stage (any stage, forward or back)
    #[command(
        after_help = "Examples:\n  hecto-watch merchant advance acme contract_completed --at 2027-02-20 --note \"signed\"\n  \
                            hecto-watch merchant advance acme applied --at 2027-03-02      # a new application"
    )]
    Advance {
        /// The merchant's id
        #[arg(value_name = "ID")]
        id: String,
        /// The stage to set
        #[arg(value_name = "STAGE", value_parser = clap::builder::PossibleValuesParser::new(
            crate::merchant::Stage::ALL.map(|s| s.id())
        ))]
        stage: String,
        /// When it happened (2026-11-02 or RFC 3339) [default: now]
        #[arg(long, value_name = "DATE")]
        at: Option<String>,
        /// Why, kept in the timeline
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Remove a merchant (its timeline and outbox entries are archived, kept in `export`)
    Remove {
        /// The merchant's id
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Stop this merchant's reminders (mail still moves it through the stages)
    Pause {
        /// The merchant's id
        #[arg(value_name = "ID")]
        id: String,
        /// Why, kept in the timeline
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Start this merchant's reminders again
    Resume {
        /// The merchant's id
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// An error with the exit status it deserves.
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure { code: 2, message: message.into() }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        // `hecto-watch status | head` closing the pipe early is not an error worth a message.
        let broken_pipe = e
            .chain()
            .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe));
        if broken_pipe {
            return Failure { code: 0, message: String::new() };
        }
        let usage = e.downcast_ref::<Refused>().is_some() || e.downcast_ref::<ConfigErrors>().is_some();
        Failure { code: if usage { 2 } else { 1 }, message: format!("{e:#}") }
    }
}

/// Entry point of the binary; returns the exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // --help, --version.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            eprintln!("hecto-watch: {}", usage_error_line(&e.render().to_string()));
            return 2;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("hecto-watch: {}", f.message);
            }
            f.code
        }
    }
}

/// Everything a command needs, resolved from the global options.
pub struct Ctx {
    pub config: Config,
    pub clock: Clock,
    pub json: bool,
    state_dir: Option<PathBuf>,
}

impl Ctx {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| self.config.store.path.clone())
    }

    /// The daemon's reply, or the database opened here when no daemon runs. A daemon that is
    /// starting holds the database before its socket exists, and another command may hold it for
    /// a moment: wait (bounded) for either to settle instead of failing (SPEC §9's start race).
    fn call_or_open(&self, envelope: &Envelope) -> Result<Result<crate::control::Reply, Store>, Failure> {
        let dir = self.state_dir();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(reply) = client::call(&dir, envelope)? {
                return Ok(Ok(reply));
            }
            match Store::open(&dir) {
                Ok(store) => return Ok(Err(store)),
                Err(e) if e.is::<crate::store::InUse>() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn open_store(&self) -> Result<Store, Failure> {
        Ok(Store::open(&self.state_dir())?)
    }

    pub fn calendar(&self) -> Result<Calendar, Failure> {
        Calendar::from_config(&self.config.calendar).map_err(|e| Failure::usage(format!("{e:#}")))
    }

    /// Run a request through the daemon when one holds the database, else here.
    pub fn request<T: serde::de::DeserializeOwned>(&self, request: Request) -> Result<T, Failure> {
        let dir = self.state_dir();
        if dir.exists() && !dir.is_dir() {
            return Err(Failure::usage(format!(
                "the state directory {} is not a directory (is --state-dir right?)",
                dir.display()
            )));
        }
        // A command that only reads must not create an empty database where a mistyped
        // --state-dir points (an `export` would then write an empty backup and exit 0).
        if request.only_reads() && !dir.join("db").exists() && !dir.join(crate::control::SOCKET_NAME).exists() {
            return Err(Failure::usage(format!("no database at {} (is --state-dir right?)", dir.display())));
        }
        // Under `--now` (a fixed clock) the daemon must evaluate at our instant, not its own.
        let envelope = Envelope { now: matches!(self.clock, Clock::Fixed(_)).then(|| self.clock.now()), request };
        let reply = match self.call_or_open(&envelope)? {
            Ok(reply) => reply,
            Err(store) => {
                let engine = Engine {
                    ingest: Ingest::new(store.clone(), &self.config, self.clock),
                    store,
                    config: Arc::new(self.config.clone()),
                    calendar: Arc::new(self.calendar()?),
                    notifier: None,
                    liveness: None,
                };
                engine.reply(&envelope)
            }
        };
        match reply {
            Reply::Ok(v) => {
                serde_json::from_value(v).map_err(|e| Failure { code: 1, message: format!("unexpected reply: {e}") })
            }
            Reply::Err { code, message } => Err(Failure { code, message }),
        }
    }
}

fn load_config(path: Option<&Path>, required: bool) -> Result<Config, Failure> {
    let path = match path {
        Some(p) => Some(p.to_owned()),
        None if Path::new(crate::config::DEFAULT_PATH).exists() => Some(PathBuf::from(crate::config::DEFAULT_PATH)),
        None => None,
    };
    match path {
        Some(p) => Config::load(&p).map_err(|mut e| {
            // Every problem in one pass: what the file names (password files, credentials,
            // templates) is checked too, on what of it could be read.
            if let Some(partial) = Config::load_partial(&p) {
                for extra in runtime_problems(&partial) {
                    if !e.problems.contains(&extra) {
                        e.problems.push(extra);
                    }
                }
            }
            Failure::usage(e.to_string())
        }),
        None if required => Err(Failure::usage(format!(
            "no configuration file: {} does not exist — pass --config PATH (see config/hecto-watch.toml)",
            crate::config::DEFAULT_PATH
        ))),
        None => Ok(Config::builtin()),
    }
}

fn init_logging(config: &Config, format: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // async-imap logs every line it sends at debug/trace, the AUTHENTICATE response (a password,
    // an OAuth token, base64) included: never below info, whatever the filter asks for.
    let filter = match "async_imap=info".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    let json = match format {
        Some(f) => f == "json",
        None => config.log.format == LogFormat::Json,
    };
    use std::io::IsTerminal;
    // journald and log files get no colour codes; a person at a terminal does.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests calling run twice) is harmless: keep the first subscriber.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// clap's usage error as one line (SPEC §7: bad input is one line and exit 2): its message, the
/// possible values or a tip, without the usage block and the "For more information" line.
fn usage_error_line(rendered: &str) -> String {
    let kept: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:"))
        .collect();
    let line = kept.join("; ");
    format!("{} (see --help)", line.strip_prefix("error: ").unwrap_or(&line))
}

/// The command's name when `--now` means nothing for it (it reads no clock).
fn ignores_now(c: &Command) -> Option<&'static str> {
    match c {
        Command::Classify { .. } => Some("classify"),
        Command::Folders => Some("folders"),
        Command::Export { .. } => Some("export"),
        Command::Outbox { .. } => Some("outbox"),
        Command::Oauth(_) => Some("oauth"),
        Command::Completions { .. } => Some("completions"),
        Command::Man => Some("man"),
        _ => None,
    }
}

pub fn run(cli: Cli) -> Result<i32, Failure> {
    // Generated from the definitions: no configuration, no database.
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "hecto-watch", &mut std::io::stdout());
            return Ok(0);
        }
        Command::Man => {
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            let mut out = std::io::stdout().lock();
            man.render(&mut out).context("cannot write to stdout")?;
            return Ok(0);
        }
        _ => {}
    }
    if let (Some(_), Some(name)) = (&cli.now, ignores_now(&cli.command)) {
        return Err(Failure::usage(format!("--now means nothing for `{name}` (it reads no clock)")));
    }
    let required =
        matches!(cli.command, Command::CheckConfig { .. } | Command::Run | Command::Scan { .. } | Command::Folders);
    let config = load_config(cli.config.as_deref(), required)?;
    init_logging(&config, cli.log_format.as_deref());
    let clock = match &cli.now {
        Some(raw) => Clock::Fixed(ops::parse_time(raw, "--now").map_err(|e| Failure::usage(format!("{e:#}")))?),
        None => Clock::System,
    };
    let mut ctx = Ctx { config, clock, json: cli.json, state_dir: cli.state_dir };
    let state_dir = ctx.state_dir();
    crate::auth::attach(&mut ctx.config, &state_dir);
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Completions { .. } | Command::Man => Ok(0),
        Command::CheckConfig { connect } => check_config(&ctx, connect, &mut out),
        Command::Calendar { year } => {
            let cal = ctx.calendar()?;
            let year = year.unwrap_or_else(|| chrono::Datelike::year(&crate::schedule::calendar::kst_date(ctx.now())));
            print::calendar(&mut out, &cal, year, ctx.json)?;
            Ok(0)
        }
        Command::Scan { once: true } => online::scan_once(&ctx, &mut out),
        Command::Scan { once: false } => {
            Err(Failure::usage("scan needs --once (the daemon `hecto-watch run` watches continuously)"))
        }
        Command::Folders => online::folders(&ctx, &mut out),
        Command::Run => run_daemon(ctx),
        Command::Classify { files } => classify(&ctx, &files, &mut out),
        Command::Merchant(cmd) => merchant(&ctx, cmd, &mut out),
        Command::Oauth(cmd) => oauth(&ctx, cmd, &mut out),
        Command::Health => {
            let reply: crate::control::HealthReply = ctx.request(Request::Health)?;
            if reply.accounts.is_empty() {
                return Err(Failure::usage(
                    "health: the configuration has no [[accounts]] (is --config or HECTO_WATCH_CONFIG right?)",
                ));
            }
            print::health(&mut out, &reply, ctx.json)?;
            if !reply.daemon_running {
                // A check that runs `health` from cron must not take a stopped daemon's last
                // record for a watched mailbox.
                eprintln!("hecto-watch: warning: the daemon is not running: nothing is reading these mailboxes now; shown is the state it last recorded");
            }
            Ok(if reply.all_readable && reply.storage_fault.is_none() { 0 } else { 1 })
        }
        Command::Status => {
            let rows: Vec<StatusRow> = ctx.request(Request::Status)?;
            print::status(&mut out, &rows, ctx.json, ctx.now())?;
            Ok(0)
        }
        Command::Reminders(args) => {
            if args.failed {
                let failed: Vec<OutboxEntry> = ctx.request(Request::Reminders { failed: true })?;
                print::failed(&mut out, &failed, ctx.json)?;
            } else {
                let items: Vec<DueItem> = ctx.request(Request::Reminders { failed: false })?;
                print::due(&mut out, &items, ctx.json)?;
            }
            Ok(0)
        }
        Command::Remind { once } => remind(&ctx, once, &mut out),
        Command::Unassigned(cmd) => {
            match cmd {
                UnassignedCmd::List { all } => {
                    let rows: Vec<ops::UnassignedRow> = ctx.request(Request::UnassignedList { all })?;
                    print::unassigned(&mut out, &rows, ctx.json)?;
                }
                UnassignedCmd::Show { id } => {
                    let d: ops::UnassignedDetail = ctx.request(Request::UnassignedShow { id })?;
                    print::unassigned_detail(&mut out, &d, ctx.json)?;
                }
                UnassignedCmd::Assign { id, merchant, note } => {
                    let a: crate::store::unassigned::Assigned =
                        ctx.request(Request::UnassignedAssign { id, merchant, note })?;
                    if ctx.json {
                        print::json_line(&mut out, &a)?;
                    } else {
                        print::merchants(&mut out, std::slice::from_ref(&a.merchant), false)?;
                        for key in &a.enqueued {
                            writeln!(out, "queued {key}").context("cannot write to stdout")?;
                        }
                    }
                }
                UnassignedCmd::Dismiss { id, note } => {
                    let row: ops::UnassignedRow = ctx.request(Request::UnassignedDismiss { id, note })?;
                    print::unassigned(&mut out, std::slice::from_ref(&row), ctx.json)?;
                }
            }
            Ok(0)
        }
        Command::Outbox { show: Some(OutboxCmd::Show { key }), .. } => {
            let m: ops::OutboxMessage = ctx.request(Request::OutboxShow { key })?;
            print::outbox_message(&mut out, &m, ctx.json)?;
            Ok(0)
        }
        Command::Outbox { show: None, pending, sent, failed } => {
            use crate::store::Delivery;
            let status = [(pending, Delivery::Pending), (sent, Delivery::Sent), (failed, Delivery::Failed)]
                .into_iter()
                .find_map(|(on, s)| on.then_some(s));
            let rows: Vec<ops::OutboxRow> = ctx.request(Request::Outbox { status })?;
            print::outbox(&mut out, &rows, ctx.json)?;
            Ok(0)
        }
        Command::Retry { keys, all } => {
            let back: Vec<OutboxEntry> = ctx.request(Request::Retry { keys, all })?;
            print::retried(&mut out, &back, ctx.json)?;
            Ok(0)
        }
        Command::ImportMail { folder, account, files } => import_mail(&ctx, account, folder, &files, &mut out),
        Command::Export { output } => {
            let data: serde_json::Value = ctx.request(Request::Export)?;
            let text = serde_json::to_string_pretty(&data).context("cannot serialise the export")?;
            match output {
                Some(path) => {
                    // Write beside the target and rename, so a failed export never leaves half a file.
                    let tmp = path.with_extension("partial");
                    std::fs::write(&tmp, text.as_bytes()).with_context(|| format!("cannot write {}", tmp.display()))?;
                    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
                }
                None => writeln!(out, "{text}").context("cannot write to stdout")?,
            }
            Ok(0)
        }
        Command::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
            let data: crate::store::Export = serde_json::from_str(&text)
                .map_err(|e| Failure::usage(format!("{} is not a hecto-watch export: {e}", file.display())))?;
            // Every record checked before anything is written.
            crate::ops::check_import(&data, ctx.now())
                .map_err(|e| Failure::usage(format!("{}: {e}; nothing was imported", file.display())))?;
            // Import only ever targets an empty, offline database: never through a running daemon.
            let store = ctx.open_store()?;
            store.import(&data)?;
            store.flush_blocking()?;
            eprintln!(
                "imported {}, {}, {} into {}",
                crate::text::count(data.merchants.len() as u64, "merchant", "merchants"),
                crate::text::count(data.events.len() as u64, "event", "events"),
                crate::text::count(data.outbox.len() as u64, "outbox entry", "outbox entries"),
                ctx.state_dir().display()
            );
            Ok(0)
        }
    }
}

fn oauth(ctx: &Ctx, cmd: OauthCmd, out: &mut impl Write) -> Result<i32, Failure> {
    let oauth_accounts: Vec<&crate::config::Account> =
        ctx.config.accounts.iter().filter(|a| a.auth == crate::config::AuthMethod::Oauth2).collect();
    match cmd {
        OauthCmd::Login { account } => {
            let Some(a) = ctx.config.accounts.iter().find(|a| a.name == account) else {
                return Err(Failure::usage(format!("oauth login: no account {account:?} in the configuration")));
            };
            let Some(settings) = a.oauth2.as_ref().filter(|_| a.auth == crate::config::AuthMethod::Oauth2) else {
                return Err(Failure::usage(format!(
                    "oauth login: account {account:?} does not use OAuth (set auth = \"oauth2\" and [accounts.oauth2])"
                )));
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let state_dir = ctx.state_dir();
            let done = runtime.block_on(crate::auth::tokens::device_login(&state_dir, &a.name, settings, |code| {
                let minutes = code.expires_in.as_secs().div_ceil(60);
                let _ = writeln!(
                    std::io::stdout(),
                    "To sign in account {account:?}, open {} and enter the code {} (valid for {minutes} min).",
                    code.verification_uri,
                    code.user_code
                );
                if let Some(direct) = &code.verification_uri_complete {
                    let _ = writeln!(std::io::stdout(), "Or open {direct}");
                }
                let _ = writeln!(std::io::stdout(), "Waiting for the sign-in …");
                let _ = std::io::stdout().flush();
            }));
            match done {
                Ok(_) => {
                    let path = crate::auth::tokens::token_path(&state_dir, &a.name);
                    writeln!(
                        out,
                        "signed in: account {account:?}; its refresh token is kept in {} (owner-only)",
                        path.display()
                    )
                    .context("cannot write to stdout")?;
                    Ok(0)
                }
                Err(e) if e.is_configuration() => Err(Failure::usage(e.to_string())),
                Err(e) => Err(Failure { code: 1, message: e.to_string() }),
            }
        }
        OauthCmd::Status => {
            let state_dir = ctx.state_dir();
            let statuses: Vec<crate::auth::TokenStatus> = oauth_accounts
                .iter()
                .map(|a| crate::auth::tokens::status_of(&crate::auth::tokens::token_path(&state_dir, &a.name), &a.name))
                .collect();
            if ctx.json {
                for s in &statuses {
                    print::json_line(out, s)?;
                }
            } else if statuses.is_empty() {
                writeln!(out, "no account uses OAuth (auth = \"oauth2\")").context("cannot write to stdout")?;
            } else {
                let mut t = table::Table::new(&["ACCOUNT", "STATE", "SIGNED IN", "LAST REFRESH", "DETAIL"]);
                for s in &statuses {
                    t.row(vec![
                        s.account.clone(),
                        s.state.to_owned(),
                        s.obtained_at.map_or("-".into(), print::kst),
                        s.refreshed_at.map_or("-".into(), print::kst),
                        s.detail.clone().unwrap_or_else(|| "-".into()),
                    ]);
                }
                out.write_all(t.render().as_bytes()).context("cannot write to stdout")?;
            }
            // Not signed in or revoked: an account that cannot log in.
            Ok(if statuses.iter().all(|s| s.state == "signed_in") { 0 } else { 1 })
        }
    }
}

fn run_daemon(ctx: Ctx) -> Result<i32, Failure> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let clock = match ctx.clock {
        // A daemon under --now keeps running from that instant instead of standing still.
        Clock::Fixed(t) => Clock::starting_at(t),
        other => other,
    };
    let opts = crate::daemon::RunOptions {
        // The file the configuration came from (`--config` or the default): SIGHUP re-reads it.
        config_path: ctx.config.source.clone(),
        state_dir: ctx.state_dir(),
        clock,
    };
    runtime.block_on(crate::daemon::run(opts, ctx.config, tokio_util::sync::CancellationToken::new()))?;
    Ok(0)
}

/// What only reading the files a configuration names can find: password files and credentials,
/// the holiday file, the templates.
fn runtime_problems(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = Calendar::from_config(&config.calendar) {
        problems.push(format!("{e:#}"));
    }
    for (i, a) in config.accounts.iter().enumerate() {
        if let Some(Err(e)) =
            a.password.as_ref().filter(|_| a.auth == crate::config::AuthMethod::Password).map(|p| p.reveal())
        {
            problems.push(format!("accounts[{i}].password: {e:#}"));
        }
        if let Some(Err(e)) = a.oauth2.as_ref().and_then(|o| o.client_secret.as_ref()).map(|s| s.reveal()) {
            problems.push(format!("accounts[{i}].oauth2.client_secret: {e:#}"));
        }
    }
    if let Some(Err(e)) = config.http.token.as_ref().map(|t| t.reveal()) {
        problems.push(format!("http.token: {e:#}"));
    }
    if let Some(s) = &config.smtp {
        if let Some(Err(e)) = s.password.as_ref().map(|p| p.reveal()) {
            problems.push(format!("smtp.password: {e:#}"));
        }
    }
    if let Err(e) = crate::notify::Renderer::new(&config.reminders) {
        problems.push(format!("{e:#}"));
    }
    problems
}

fn check_config(ctx: &Ctx, connect: bool, out: &mut impl Write) -> Result<i32, Failure> {
    let problems = runtime_problems(&ctx.config);
    let source = ctx.config.source.as_ref().map_or("built-in defaults".into(), |p| p.display().to_string());
    if problems.is_empty() && connect {
        let failures = online::connect_all(ctx, out)?;
        if !failures.is_empty() {
            let n = failures.len();
            return Err(Failure {
                code: 1,
                message: format!(
                    "{source}: {n} connection problem{}\n  {}",
                    if n == 1 { "" } else { "s" },
                    failures.join("\n  ")
                ),
            });
        }
    }
    if problems.is_empty() {
        for (path, f) in &ctx.config.presets {
            writeln!(
                out,
                "{path}: preset {:?} filled in: {}",
                f.preset,
                if f.keys.is_empty() { "nothing (every key given)".to_owned() } else { f.keys.join(", ") }
            )
            .context("cannot write to stdout")?;
            writeln!(out, "{path}: still to do at the provider: {}", f.todo).context("cannot write to stdout")?;
        }
        for a in ctx.config.accounts.iter().filter(|a| a.auth == crate::config::AuthMethod::Oauth2) {
            let status =
                crate::auth::tokens::status_of(&crate::auth::tokens::token_path(&ctx.state_dir(), &a.name), &a.name);
            if status.state != "signed_in" {
                writeln!(
                    out,
                    "account {:?}: OAuth {}: run `hecto-watch oauth login {}`",
                    a.name,
                    status.state.replace('_', " "),
                    a.name
                )
                .context("cannot write to stdout")?;
            }
        }
        // Business days are counted from the data file: a year it does not cover counts every
        // weekday, holidays included (the daemon warns too, once a day).
        if let Ok(cal) = ctx.calendar() {
            let this = chrono::Datelike::year(&crate::schedule::calendar::kst_date(ctx.now()));
            for y in [this, this + 1].into_iter().filter(|y| !cal.covered_years().contains(y)) {
                writeln!(
                    out,
                    "warning: the holiday calendar does not cover {y} (it covers {}): update hecto-watch or set \
                     calendar.holidays_file, or every weekday of {y} counts as a business day",
                    print::years(cal.covered_years())
                )
                .context("cannot write to stdout")?;
            }
        }
        let n = ctx.config.accounts.len();
        writeln!(out, "{source}: ok ({n} account{})", if n == 1 { "" } else { "s" })
            .context("cannot write to stdout")?;
        Ok(0)
    } else {
        let errors = ConfigErrors { file: ctx.config.source.clone(), problems };
        Err(Failure::usage(errors.to_string()))
    }
}

fn read_input(path: &Path) -> std::io::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().lock().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

fn classify(ctx: &Ctx, files: &[PathBuf], out: &mut impl Write) -> Result<i32, Failure> {
    let mut status = 0;
    for path in files {
        let name = path.display().to_string();
        let raw = match read_input(path) {
            Ok(r) => r,
            // A missing file or a directory is bad input (SPEC §7): exit 2, after the others.
            Err(e) => {
                eprintln!("hecto-watch: cannot read {name}: {e}");
                status = 2;
                continue;
            }
        };
        let c = mail::classify(&raw, &ctx.config.rules);
        if c.unparseable {
            eprintln!("hecto-watch: {name}: unparseable mail, classified as not_hecto");
        }
        print::classified(out, &name, &c, ctx.json)?;
    }
    Ok(status)
}

fn merchant(ctx: &Ctx, cmd: MerchantCmd, out: &mut impl Write) -> Result<i32, Failure> {
    match cmd {
        MerchantCmd::Add { id, name, contacts, business_no, mids, applied_at, language, force } => {
            let new = ops::NewMerchant { id, name, contacts, business_no, mids, applied_at, language, force };
            let m: Merchant = ctx.request(Request::MerchantAdd(new))?;
            print::merchants(out, std::slice::from_ref(&m), ctx.json)?;
        }
        MerchantCmd::Edit {
            id,
            name,
            add_contacts,
            remove_contacts,
            business_no,
            mids,
            remove_mids,
            language,
            note,
            force,
        } => {
            let edit = crate::merchant::Edit {
                name,
                add_contacts,
                remove_contacts,
                business_no,
                add_mids: mids,
                remove_mids,
                language,
                note,
            };
            let m: Merchant = ctx.request(Request::MerchantEdit { id, edit, force })?;
            print::merchants(out, std::slice::from_ref(&m), ctx.json)?;
        }
        MerchantCmd::Import { file, dry_run } => {
            let bytes =
                std::fs::read(&file).map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
            let rows = merchant_csv::parse(&bytes).map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
            let added: Vec<Merchant> = ctx
                .request(Request::MerchantImport { rows, dry_run })
                .map_err(|f| Failure { message: format!("{}: {}", file.display(), f.message), ..f })?;
            print::merchants(out, &added, ctx.json)?;
            if !ctx.json {
                let n = added.len();
                let what = format!("{n} merchant{}", if n == 1 { "" } else { "s" });
                if dry_run {
                    eprintln!("{}: every row is valid; would add {what} (nothing written: --dry-run)", file.display());
                } else {
                    eprintln!("{}: added {what}", file.display());
                }
            }
        }
        MerchantCmd::List => {
            let list: Vec<Merchant> = ctx.request(Request::MerchantList)?;
            print::merchants(out, &list, ctx.json)?;
        }
        MerchantCmd::Show { id } => {
            let detail: ops::MerchantDetail = ctx.request(Request::MerchantShow { id })?;
            print::merchant_detail(out, &detail, ctx.json, ctx.now())?;
        }
        MerchantCmd::Advance { id, stage, at, note } => {
            let m: Merchant = ctx.request(Request::MerchantAdvance { id, stage, at, note })?;
            print::merchants(out, std::slice::from_ref(&m), ctx.json)?;
        }
        MerchantCmd::Pause { id, note } => {
            let m: Merchant = ctx.request(Request::MerchantPause { id, paused: true, note })?;
            print::merchants(out, std::slice::from_ref(&m), ctx.json)?;
        }
        MerchantCmd::Resume { id } => {
            let m: Merchant = ctx.request(Request::MerchantPause { id, paused: false, note: None })?;
            print::merchants(out, std::slice::from_ref(&m), ctx.json)?;
        }
        MerchantCmd::Remove { id } => {
            let m: Merchant = ctx.request(Request::MerchantRemove { id })?;
            if ctx.json {
                print::json_line(out, &m)?;
            } else {
                writeln!(out, "removed {} ({}); its timeline is kept", m.id, m.name)
                    .context("cannot write to stdout")?;
            }
        }
    }
    Ok(0)
}

/// `remind --once`: one tick at `--now` (or now), printing what was sent. Exit 1 when something
/// could not be sent (it stays queued, or is listed by `reminders --failed`).
fn remind(ctx: &Ctx, once: bool, out: &mut impl Write) -> Result<i32, Failure> {
    if !once {
        return Err(Failure::usage("remind needs --once (the daemon `hecto-watch run` sends on the schedule)"));
    }
    let report: crate::notify::TickReport = ctx.request(Request::Remind)?;
    print::remind(out, &report, ctx.json)?;
    let unsent = report.outcomes.iter().any(|o| o.result != crate::notify::OutcomeKind::Sent);
    Ok(if unsent { 1 } else { 0 })
}

fn import_mail(
    ctx: &Ctx,
    account: String,
    folder: String,
    files: &[PathBuf],
    out: &mut impl Write,
) -> Result<i32, Failure> {
    let mut status = 0;
    let mut mails = Vec::new();
    for path in files {
        let name = path.display().to_string();
        match read_input(path) {
            Ok(raw) => {
                let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from);
                mails.push(MailFile::new(name, &raw, mtime));
            }
            Err(e) => {
                eprintln!("hecto-watch: cannot read {name}: {e}");
                status = 2;
            }
        }
    }
    if mails.is_empty() {
        return Ok(status);
    }
    let results: Vec<ImportedMail> = ctx.request(Request::ImportMail { account, folder, mails })?;
    for r in &results {
        print::imported(out, r, ctx.json)?;
    }
    Ok(status)
}
