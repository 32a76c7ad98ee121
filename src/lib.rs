//! hecto-watch — shepherds merchants through the Hecto Financial (헥토파이낸셜) contract.
//!
//! # Layout
//!
//! Data flows one way; each stage is a folder and knows nothing of the stages after it:
//!
//! ```text
//! config ─► imap (connect, folders, cursor, IDLE/poll) ─► mail (parse → classify, pure)
//!        ─► merchant (stage machine, matching, pure) ─► store (sled, one transaction per mail)
//!        ─► schedule (business days, due reminders) ─► notify (outbox → SMTP)
//! ```
//!
//! - [`auth`]: OAuth 2.0 sign-in (device grant, refresh tokens) and the SASL token messages.
//! - [`config`]: the TOML file, validated all at once; secrets with a redacted `Debug`.
//! - [`mail`]: raw RFC 5322 bytes → [`mail::Classified`]. Pure; never panics.
//! - [`merchant`]: stages, the forward-only stage machine and mail → merchant matching. Pure.
//! - [`store`]: the only module that touches sled. One transaction per mail.
//! - [`schedule`]: Korean business days and what is due at a given instant. Pure.
//! - [`notify`]: the outbox → SMTP: templates, deterministic Message-IDs, retries, the cron tick.
//! - [`health`]: whether each account can be read, why not, the likely fix, and when to alert.
//!   Pure, from the folder statuses the watchers record.
//! - [`http`]: the read-only status server (`/healthz`, `/metrics`, the HTML status page).
//! - [`ingest`]: one mail's path classify → match → apply, shared by IMAP and `import-mail`.
//! - [`cli`]: the command line, a thin layer over the library.
//!
//! The binary (`src/main.rs`) only parses arguments and calls [`cli::main`].

pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod health;
pub mod http;
pub mod imap;
pub mod ingest;
pub mod mail;
pub mod merchant;
pub mod notify;
pub mod ops;
pub mod schedule;
pub mod store;
pub mod text;
