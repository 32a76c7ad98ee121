//! The commands that talk to the mail servers: `scan --once`, `folders`, `check-config --connect`.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{print, Ctx, Failure};
use crate::imap::{self, ProgressMode};
use crate::ingest::Ingest;
use crate::store;

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?)
}

/// One ingest pass over every watched folder of every account.
pub fn scan_once(ctx: &Ctx, out: &mut impl Write) -> Result<i32, Failure> {
    let store = ctx.open_store()?;
    let ingest = Ingest::new(store.clone(), &ctx.config, ctx.clock);
    let rt = runtime()?;
    let summary = rt.block_on(async {
        let cancel = CancellationToken::new();
        // Ctrl-C stops at the next safe point; what is done stays committed.
        let c = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                c.cancel();
            }
        });
        let summary = imap::scan_once(&ctx.config, &ingest, &cancel, ProgressMode::Auto).await;
        store.flush().await.map(|()| summary)
    })?;
    if ctx.json {
        print::json_line(out, &summary)?;
    } else {
        use crate::text::count;
        writeln!(
            out,
            "scanned {} of {}: {} seen, {}, {}, {} found in spam, {} unassigned",
            count(summary.folders as u64, "folder", "folders"),
            count(summary.accounts as u64, "account", "accounts"),
            count(summary.mails.mails_seen, "mail", "mails"),
            count(summary.mails.hecto_mails, "Hecto mail", "Hecto mails"),
            count(summary.mails.stage_changes, "stage change", "stage changes"),
            summary.mails.found_in_spam,
            summary.mails.unassigned
        )
        .context("cannot write to stdout")?;
        for w in &summary.warnings {
            eprintln!("hecto-watch: warning: {w}");
        }
    }
    for e in &summary.errors {
        eprintln!("hecto-watch: {e}");
    }
    Ok(if summary.is_complete() { 0 } else { 1 })
}

#[derive(Serialize)]
struct FolderLine<'a> {
    account: &'a str,
    folder: &'a str,
    role: &'a str,
    /// Why it has that role: `inbox`, `special-use`, `name`, `configured`, `folders`; null for
    /// a folder with none.
    why: Option<&'a str>,
    watched: bool,
}

/// Each account's folders with the role detected, why, and whether the daemon watches it.
pub fn folders(ctx: &Ctx, out: &mut impl Write) -> Result<i32, Failure> {
    let rt = runtime()?;
    let mut status = 0;
    let mut table = super::table::Table::new(&["ACCOUNT", "FOLDER", "ROLE", "WHY", "WATCHED"]);
    for account in &ctx.config.accounts {
        match rt.block_on(imap::list_folders(account)) {
            Ok(list) => {
                for f in &list {
                    let role = store::role_name(f.role);
                    let why = f.why.map(imap::Why::as_str);
                    let watched = f.watched;
                    if ctx.json {
                        let line = FolderLine { account: &account.name, folder: &f.name, role, why, watched };
                        print::json_line(out, &line)?;
                    } else {
                        table.row(vec![
                            account.name.clone(),
                            f.name.clone(),
                            role.to_owned(),
                            why.unwrap_or("-").to_owned(),
                            if watched { "yes" } else { "no" }.to_owned(),
                        ]);
                    }
                }
            }
            Err(e) => {
                eprintln!("hecto-watch: account {:?}: {e:#}", account.name);
                status = 1;
            }
        }
    }
    if !ctx.json {
        out.write_all(table.render().as_bytes()).context("cannot write to stdout")?;
    }
    Ok(status)
}

/// `check-config --connect`: log in to every IMAP account and the SMTP server; every failure
/// is listed (host, port and advice come from the connectors), none of them shows a secret.
pub fn connect_all(ctx: &Ctx, out: &mut impl Write) -> Result<Vec<String>, Failure> {
    let rt = runtime()?;
    let mut problems = Vec::new();
    rt.block_on(async {
        for (i, account) in ctx.config.accounts.iter().enumerate() {
            match imap::connect(account).await {
                Ok(conn) => {
                    conn.logout().await;
                    let _ = writeln!(
                        out,
                        "accounts[{i}] {:?}: logged in to {}:{}",
                        account.name, account.host, account.port
                    );
                }
                Err(e) => problems.push(format!("accounts[{i}] {:?}: {e}", account.name)),
            }
        }
        if let Some(smtp) = &ctx.config.smtp {
            let result = match crate::notify::SmtpDeliver::new(smtp, crate::notify::smtp_tokens(&ctx.config)) {
                Ok(d) => d.test_connection().await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    let _ = writeln!(out, "smtp: connected to {}:{}", smtp.host, smtp.port);
                }
                Err(e) => problems.push(format!("smtp: {e:#}")),
            }
        }
    });
    Ok(problems)
}
