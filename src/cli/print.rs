//! How command results look: JSON lines with `--json`, aligned tables for people. Times are shown
//! in Asia/Seoul for people and as RFC 3339 in JSON.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Asia::Seoul;
use serde::Serialize;

use super::table::Table;
use super::Failure;
use crate::control::ImportedMail;
use crate::health::AccountState;
use crate::mail::Classified;
use crate::merchant::{Evidence, Merchant};
use crate::notify::{OutcomeKind, TickReport};
use crate::ops::{DueItem, MerchantDetail};
use crate::schedule::StatusRow;
use crate::store::OutboxEntry;

type Out<'a> = &'a mut dyn Write;

fn w(out: Out, text: &str) -> Result<(), Failure> {
    out.write_all(text.as_bytes()).context("cannot write to stdout")?;
    Ok(())
}

pub fn json_line<T: Serialize>(out: &mut impl Write, v: &T) -> Result<(), Failure> {
    let line = serde_json::to_string(v).context("cannot serialise output")?;
    writeln!(out, "{line}").context("cannot write to stdout")?;
    Ok(())
}

/// Text from a server or a mail with its control characters replaced: it must not be able to
/// drive the operator's terminal.
fn clean(s: &str) -> String {
    super::table::printable(s)
}

/// `2026-11-04 11:00 KST`
pub fn kst(t: DateTime<Utc>) -> String {
    t.with_timezone(&Seoul).format("%Y-%m-%d %H:%M KST").to_string()
}

fn or_dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

pub fn classified(out: &mut impl Write, file: &str, c: &Classified, json: bool) -> Result<(), Failure> {
    if json {
        return json_line(out, &c.report(file));
    }
    let dir = match c.direction {
        Some(crate::mail::Direction::Incoming) => "incoming",
        Some(crate::mail::Direction::Outgoing) => "outgoing",
        None => "-",
    };
    let mut line = format!(
        "{}: {} ({dir}) from {} — {}",
        clean(file),
        c.kind.as_str(),
        clean(&or_dash(c.sender.as_deref())),
        clean(&c.subject)
    );
    if c.spam_flagged {
        line.push_str(" [spam-flagged]");
    }
    let extra: Vec<String> =
        [("business numbers", &c.business_numbers), ("MIDs", &c.mids), ("card companies", &c.card_companies)]
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}: {}", v.join(", ")))
            .collect();
    if !extra.is_empty() {
        line.push_str(&format!(" ({})", extra.join("; ")));
    }
    writeln!(out, "{line}").context("cannot write to stdout")?;
    Ok(())
}

pub fn status(out: &mut impl Write, rows: &[StatusRow], json: bool, now: DateTime<Utc>) -> Result<(), Failure> {
    if json {
        for r in rows {
            json_line(out, r)?;
        }
        return Ok(());
    }
    let mut t = Table::new(&["ID", "NAME", "STAGE", "SINCE", "WINDOW", "DUE", "OVERDUE", "SPAM", "REMINDERS"]);
    for r in rows {
        t.row(vec![
            r.id.clone(),
            r.name.clone(),
            r.stage.id().to_owned(),
            kst(r.stage_since),
            r.deadline.map_or("-".into(), |d| d.window.as_str().to_owned()),
            r.deadline.map_or("-".into(), |d| kst(d.due)),
            if r.overdue { "OVERDUE".into() } else { "-".into() },
            if r.found_in_spam { "found in spam".into() } else { "-".into() },
            if r.paused { "paused".into() } else { "-".into() },
        ]);
    }
    let overdue = rows.iter().filter(|r| r.overdue).count();
    w(out, &t.render())?;
    let plural = if rows.len() == 1 { "" } else { "s" };
    w(out, &format!("{} merchant{plural}, {overdue} overdue, as of {}\n", rows.len(), kst(now)))
}

/// `health`: one block per account — its state, and a row per folder.
pub fn health(out: &mut impl Write, reply: &crate::control::HealthReply, json: bool) -> Result<(), Failure> {
    if json {
        #[derive(Serialize)]
        struct Line<'a> {
            #[serde(flatten)]
            account: &'a crate::health::AccountHealth,
            daemon_running: bool,
            /// This account's watcher tasks and their last beats (through the daemon only).
            tasks: Vec<&'a crate::health::liveness::TaskBeat>,
            #[serde(skip_serializing_if = "Option::is_none")]
            storage_fault: Option<&'a crate::store::faults::Fault>,
        }
        for account in &reply.accounts {
            let tasks = reply
                .tasks
                .iter()
                .filter(|t| crate::health::liveness::is_account_task(&t.task, &account.account))
                .collect();
            let storage_fault = reply.storage_fault.as_ref();
            json_line(out, &Line { account, daemon_running: reply.daemon_running, tasks, storage_fault })?;
        }
        return Ok(());
    }
    let accounts = &reply.accounts;
    let time = |t: Option<DateTime<Utc>>| t.map_or("never".to_owned(), kst);
    let mut text = String::new();
    if !reply.daemon_running {
        text.push_str("(the daemon is not running: the state as it last recorded it)\n");
    }
    if let Some(f) = &reply.storage_fault {
        text.push_str(&format!(
            "DATABASE CANNOT BE WRITTEN since {}: {} — nothing is sent or advanced; free space in the \
             state directory and the daemon restarts by itself\n",
            kst(f.since),
            super::table::printable(&f.error)
        ));
    }
    for a in accounts {
        let state = match a.state {
            AccountState::Ok => "readable".to_owned(),
            AccountState::Unchecked => "not checked yet".to_owned(),
            AccountState::Down => format!("UNREADABLE since {}", time(a.since)),
        };
        text.push_str(&format!("account {}: {state}\n", clean(&a.account)));
        if let Some(e) = &a.last_error {
            text.push_str(&format!("  last error: {}\n", clean(e)));
        }
        for f in a.folders.iter().filter(|f| f.status.last_error.is_some() && f.status.last_error != a.last_error) {
            text.push_str(&format!(
                "  error of {}: {}\n",
                clean(&f.folder),
                clean(f.status.last_error.as_deref().unwrap_or_default())
            ));
        }
        if let Some(f) = &a.fix {
            text.push_str(&format!("  likely fix: {}\n", clean(f)));
        }
        let mut t = Table::new(&["  FOLDER", "ROLE", "LAST OK", "ERROR SINCE", "FAILURES", "MAILS SEEN"]);
        for f in &a.folders {
            t.row(vec![
                format!("  {}", clean(&f.folder)),
                f.role.clone(),
                time(f.status.last_ok),
                f.status.error_since.map_or("-".to_owned(), kst),
                f.status.failures.to_string(),
                f.status.mails_seen.to_string(),
            ]);
        }
        text.push_str(&t.render());
    }
    if let Some(t) = reply.tasks.iter().find(|t| t.wedged) {
        text.push_str(&format!(
            "task {} has not made progress for {} s (bound {} s): the watchdog is withheld\n",
            clean(&t.task),
            t.last_beat_ms_ago / 1000,
            t.bound_s
        ));
    }
    let bad = accounts.iter().filter(|a| !a.readable).count();
    text.push_str(&match bad {
        0 if accounts.len() == 1 => "the account is readable\n".to_owned(),
        0 => format!("all {} readable\n", crate::text::count(accounts.len() as u64, "account", "accounts")),
        n => format!("{n} of {} not readable\n", crate::text::count(accounts.len() as u64, "account", "accounts")),
    });
    w(out, &text)
}

pub fn due(out: &mut impl Write, items: &[DueItem], json: bool) -> Result<(), Failure> {
    if json {
        for i in items {
            json_line(out, i)?;
        }
        return Ok(());
    }
    if items.is_empty() {
        return w(out, "nothing is due\n");
    }
    let mut t = Table::new(&["KIND", "MERCHANT", "WINDOW", "N", "TO", "CC", "STATE"]);
    for i in items {
        t.row(vec![
            i.kind.clone(),
            or_dash(i.merchant.as_deref()),
            match i.window_opened {
                Some(d) => format!("{} since {d}", i.window),
                None => i.window.clone(),
            },
            i.n.to_string(),
            i.to.join(", "),
            if i.cc.is_empty() { "-".into() } else { i.cc.join(", ") },
            i.state.clone(),
        ]);
    }
    w(out, &t.render())
}

pub fn failed(out: &mut impl Write, entries: &[OutboxEntry], json: bool) -> Result<(), Failure> {
    if json {
        for e in entries {
            json_line(out, e)?;
        }
        return Ok(());
    }
    if entries.is_empty() {
        return w(out, "no failed messages\n");
    }
    let mut t = Table::new(&["KEY", "TO", "ATTEMPTS", "LAST ERROR"]);
    for e in entries {
        t.row(vec![e.key.clone(), e.to.join(", "), e.attempts.to_string(), or_dash(e.last_error.as_deref())]);
    }
    w(out, &t.render())
}

/// `2024–2027`, or `2024, 2026` when there is a gap.
pub fn years(covered: &std::collections::BTreeSet<i32>) -> String {
    let (Some(first), Some(last)) = (covered.first(), covered.last()) else { return "no year".into() };
    if i64::from(*last) - i64::from(*first) + 1 == covered.len() as i64 {
        if first == last {
            first.to_string()
        } else {
            format!("{first}–{last}")
        }
    } else {
        covered.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// `calendar [YEAR]`.
pub fn calendar(out: &mut impl Write, cal: &crate::schedule::Calendar, year: i32, json: bool) -> Result<(), Failure> {
    let days = cal.holidays_in(year);
    let covered = cal.covered_years().contains(&year);
    if json {
        #[derive(serde::Serialize)]
        struct Day<'a> {
            date: chrono::NaiveDate,
            weekday: String,
            #[serde(flatten)]
            holiday: &'a crate::schedule::calendar::Holiday,
        }
        #[derive(serde::Serialize)]
        struct Year<'a> {
            year: i32,
            covered: bool,
            covered_years: &'a std::collections::BTreeSet<i32>,
            days: Vec<Day<'a>>,
        }
        let days =
            days.iter().map(|h| Day { date: h.date, weekday: h.date.format("%a").to_string(), holiday: h }).collect();
        return json_line(out, &Year { year, covered, covered_years: cal.covered_years(), days });
    }
    let mut s = format!(
        "{year}: {}; the data covers {}. Saturdays and Sundays are non-business days too.\n",
        if covered {
            plural(days.len() as u32, "holiday", "holidays")
        } else {
            "NOT COVERED — every weekday counts as a business day".to_owned()
        },
        years(cal.covered_years())
    );
    let mut t = Table::new(&["DATE", "DAY", "KIND", "NAME"]);
    for h in &days {
        let kind = serde_json::to_value(h.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        t.row(vec![h.date.to_string(), h.date.format("%a").to_string(), kind, h.name.clone()]);
    }
    if !days.is_empty() {
        s.push_str(&t.render());
    }
    w(out, &s)
}

/// `unassigned list`.
pub fn unassigned(out: &mut impl Write, rows: &[crate::ops::UnassignedRow], json: bool) -> Result<(), Failure> {
    if json {
        for r in rows {
            json_line(out, r)?;
        }
        return Ok(());
    }
    if rows.is_empty() {
        return w(out, "no unassigned mail\n");
    }
    let mut t = Table::new(&["ID", "STATUS", "DATE", "FOLDER", "KIND", "SUBJECT", "CANDIDATES"]);
    for r in rows {
        t.row(vec![
            r.id.to_string(),
            r.status.clone(),
            r.date.map_or("-".into(), kst),
            format!("{}: {}", r.account, r.folder),
            r.kind.clone(),
            r.subject.clone(),
            if r.candidates.is_empty() { "-".into() } else { r.candidates.join(", ") },
        ]);
    }
    w(out, &t.render())
}

/// `unassigned show ID`.
pub fn unassigned_detail(out: &mut impl Write, d: &crate::ops::UnassignedDetail, json: bool) -> Result<(), Failure> {
    if json {
        return json_line(out, d);
    }
    let r = &d.row;
    let list = |v: &[String]| if v.is_empty() { "-".to_owned() } else { clean(&v.join(", ")) };
    let mut s =
        format!("unassigned mail {} ({})\n", r.id, r.resolution.as_ref().map_or("open".into(), |x| x.describe()));
    s.push_str(&format!("  subject:      {}\n", clean(&r.subject)));
    s.push_str(&format!("  from:         {}\n", clean(r.sender.as_deref().unwrap_or("-"))));
    s.push_str(&format!("  to:           {}\n", list(&r.recipients)));
    s.push_str(&format!("  date:         {}\n", r.date.map_or("-".into(), kst)));
    s.push_str(&format!("  found in:     {}: {}\n", clean(&r.account), clean(&r.folder)));
    s.push_str(&format!("  kind:         {}\n", r.kind));
    s.push_str(&format!("  message-id:   {}\n", clean(r.message_id.as_deref().unwrap_or("-"))));
    s.push_str(&format!("  business no:  {}\n", list(&r.business_numbers)));
    s.push_str(&format!("  MIDs:         {}\n", list(&r.mids)));
    s.push_str(&format!("  candidates:   {}\n", list(&r.candidates)));
    s.push_str(&format!("  why:          {}\n", clean(&r.reason)));
    if r.resolution.is_none() {
        s.push_str(&format!(
            "  resolve:      hecto-watch unassigned assign {id} MERCHANT  |  hecto-watch unassigned dismiss {id}\n",
            id = r.id
        ));
    }
    if !d.text.is_empty() {
        s.push('\n');
        for line in d.text.lines().take(40) {
            s.push_str(&clean(line));
            s.push('\n');
        }
    }
    w(out, &s)
}

/// `outbox`: one row per message, oldest first.
pub fn outbox(out: &mut impl Write, rows: &[crate::ops::OutboxRow], json: bool) -> Result<(), Failure> {
    use crate::store::Delivery;
    if json {
        for r in rows {
            json_line(out, r)?;
        }
        return Ok(());
    }
    if rows.is_empty() {
        return w(out, "the outbox is empty\n");
    }
    let mut t = Table::new(&["STATUS", "KEY", "TO", "WHEN", "MESSAGE-ID"]);
    for r in rows {
        let when = match r.status {
            Delivery::Sent => r.sent_at.map_or("-".into(), |t| format!("sent {}", kst(t))),
            Delivery::Failed => format!("gave up after {}", plural(r.attempts, "try", "tries")),
            Delivery::Pending => match r.next_attempt_at {
                Some(t) => format!("retry {} ({})", kst(t), plural(r.attempts, "try", "tries")),
                None => "next tick".into(),
            },
        };
        let status = match r.status {
            Delivery::Pending => "pending",
            Delivery::Sent => "sent",
            Delivery::Failed => "failed",
        };
        t.row(vec![status.into(), r.key.clone(), r.to.join(", "), when, or_dash(r.message_id.as_deref())]);
    }
    w(out, &t.render())
}

/// `N thing` / `N things`.
pub fn plural(n: u32, one: &str, many: &str) -> String {
    crate::text::count(n, one, many)
}

/// `outbox show KEY`: the headers and the text.
pub fn outbox_message(out: &mut impl Write, m: &crate::ops::OutboxMessage, json: bool) -> Result<(), Failure> {
    if json {
        return json_line(out, m);
    }
    let r = &m.row;
    let mut s = String::new();
    if m.preview {
        s.push_str("(not tried yet: rendered now as a preview; the message is rendered and kept at its first try)\n");
    }
    s.push_str(&format!("From: {}\n", clean(m.from.as_deref().unwrap_or("-"))));
    s.push_str(&format!("To: {}\n", clean(&r.to.join(", "))));
    if !r.cc.is_empty() {
        s.push_str(&format!("Cc: {}\n", clean(&r.cc.join(", "))));
    }
    s.push_str(&format!("Subject: {}\n", clean(r.subject.as_deref().unwrap_or_default())));
    s.push_str(&format!("Message-ID: {}\n", clean(r.message_id.as_deref().unwrap_or_default())));
    s.push_str(&format!("X-Hecto-Watch: {}\n", clean(&r.key)));
    let state = match (r.status, r.sent_at) {
        (crate::store::Delivery::Sent, Some(t)) => format!("sent {}", kst(t)),
        (crate::store::Delivery::Failed, _) => format!("failed: {}", clean(r.last_error.as_deref().unwrap_or("-"))),
        _ => "pending".to_owned(),
    };
    s.push_str(&format!("Status: {state}\n\n"));
    // The body keeps its line breaks; every other control character is replaced.
    for line in m.text.lines() {
        s.push_str(&clean(line));
        s.push('\n');
    }
    w(out, &s)
}

/// `remind --once`: one line per message tried.
pub fn remind(out: &mut impl Write, r: &TickReport, json: bool) -> Result<(), Failure> {
    if json {
        for o in &r.outcomes {
            json_line(out, o)?;
        }
        return Ok(());
    }
    if r.outcomes.is_empty() {
        return w(out, &format!("nothing to send at {}\n", kst(r.at)));
    }
    for o in &r.outcomes {
        let cc = if o.cc.is_empty() { String::new() } else { format!(" cc {}", o.cc.join(", ")) };
        let line = match o.result {
            OutcomeKind::Sent => {
                format!("sent     {}  to {}{cc}  {}\n", o.key, o.to.join(", "), or_dash(o.message_id.as_deref()))
            }
            OutcomeKind::Retrying => format!(
                "retrying {}  attempt {}, next at {}: {}\n",
                o.key,
                o.attempts,
                o.next_attempt_at.map_or_else(|| "-".into(), kst),
                or_dash(o.error.as_deref())
            ),
            OutcomeKind::Failed => {
                format!("failed   {}  after {} attempts: {}\n", o.key, o.attempts, or_dash(o.error.as_deref()))
            }
        };
        w(out, &line)?;
    }
    Ok(())
}

/// `retry`: the keys put back.
pub fn retried(out: &mut impl Write, entries: &[OutboxEntry], json: bool) -> Result<(), Failure> {
    if json {
        for e in entries {
            json_line(out, e)?;
        }
        return Ok(());
    }
    if entries.is_empty() {
        return w(out, "no failed messages to retry\n");
    }
    for e in entries {
        w(out, &format!("pending  {}  (sent at the next tick)\n", e.key))?;
    }
    Ok(())
}

pub fn merchants(out: &mut impl Write, list: &[Merchant], json: bool) -> Result<(), Failure> {
    if json {
        for m in list {
            json_line(out, m)?;
        }
        return Ok(());
    }
    // A business number or MID two merchants share (registered with --force) makes matching
    // by it ambiguous: marked, so the operator sees why such mail stays unassigned.
    let mut uses: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for m in list {
        for x in m.business_no.iter().chain(&m.mids) {
            *uses.entry(x.as_str()).or_default() += 1;
        }
    }
    let mark = |x: &str, shown: String| if uses.get(x) > Some(&1) { format!("{shown} (shared!)") } else { shown };
    let mut t = Table::new(&["ID", "NAME", "CONTACT", "BUSINESS NO", "MIDS", "STAGE", "SINCE"]);
    for m in list {
        t.row(vec![
            m.id.clone(),
            m.name.clone(),
            m.contacts.join(", "),
            m.business_no.as_deref().map_or("-".into(), |b| mark(b, format_business_no(b))),
            if m.mids.is_empty() {
                "-".into()
            } else {
                m.mids.iter().map(|x| mark(x, x.clone())).collect::<Vec<_>>().join(",")
            },
            if m.paused { format!("{} (paused)", m.stage.id()) } else { m.stage.id().to_owned() },
            kst(m.stage_since),
        ]);
    }
    w(out, &t.render())
}

fn format_business_no(d: &str) -> String {
    if d.len() == 10 && d.is_ascii() {
        format!("{}-{}-{}", &d[..3], &d[3..5], &d[5..])
    } else {
        d.to_owned()
    }
}

pub fn merchant_detail(
    out: &mut impl Write,
    d: &MerchantDetail,
    json: bool,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    if json {
        return json_line(out, d);
    }
    let m = &d.merchant;
    let mut s = String::new();
    let contacts: Vec<String> = m.contacts.iter().map(|c| format!("<{}>", clean(c))).collect();
    s.push_str(&format!("{}  {}  {}\n", clean(&m.id), clean(&m.name), contacts.join(", ")));
    s.push_str(&format!("  stage:        {} ({}) since {}\n", m.stage.id(), m.stage.korean(), kst(m.stage_since)));
    s.push_str(&format!("  applied:      {}\n", kst(m.applied_at)));
    s.push_str(&format!("  business no:  {}\n", m.business_no.as_deref().map_or("-".into(), format_business_no)));
    s.push_str(&format!("  MIDs:         {}\n", if m.mids.is_empty() { "-".into() } else { m.mids.join(", ") }));
    if !m.card_approvals.is_empty() {
        let list: Vec<String> = m.card_approvals.iter().map(|(c, t)| format!("{c} ({})", kst(*t))).collect();
        s.push_str(&format!("  approvals:    {}\n", list.join(", ")));
    }
    s.push_str(&format!("  in spam:      {}\n", if m.found_in_spam { "yes" } else { "no" }));
    s.push_str(&format!(
        "  reminders:    {}\n",
        if m.paused { "paused (`merchant resume` starts them again)" } else { "on" }
    ));
    match &d.deadline {
        Some(dl) => s.push_str(&format!(
            "  deadline:     {} due {}{}\n",
            dl.window.as_str(),
            kst(dl.due),
            if now > dl.due { "  OVERDUE" } else { "" }
        )),
        None => s.push_str("  deadline:     -\n"),
    }
    s.push_str("timeline:\n");
    for e in &d.events {
        let what = e.change.describe();
        let evidence = match &e.evidence {
            Evidence::Operator { note } => {
                format!("operator{}", note.as_deref().map(|n| format!(": {n}")).unwrap_or_default())
            }
            Evidence::Mail { account, folder, message_id, uid, subject, rule, .. } => format!(
                "mail {account}/{folder}{} <{}> \"{subject}\" [{rule}]",
                uid.map(|u| format!(" uid {u}")).unwrap_or_default(),
                message_id.as_deref().unwrap_or("no Message-ID"),
            ),
        };
        s.push_str(&format!("  {}  {}\n      {}\n", kst(e.at), clean(&what), clean(&evidence)));
    }
    w(out, &s)
}

pub fn imported(out: &mut impl Write, r: &ImportedMail, json: bool) -> Result<(), Failure> {
    if json {
        return json_line(out, r);
    }
    let what = if r.own_mail {
        "our own notice, ignored".to_owned()
    } else if !r.report.kind.is_hecto() {
        "not Hecto's, ignored".to_owned()
    } else if r.duplicate {
        "already seen".to_owned()
    } else if r.unassigned {
        "unassigned — operators will be told".to_owned()
    } else {
        let mut s = format!("merchant {}", r.merchant.as_deref().unwrap_or("-"));
        if r.stage_changed {
            s.push_str(", stage changed");
        }
        if r.found_in_spam {
            s.push_str(", found in spam");
        }
        s
    };
    writeln!(out, "{}: {} — {what}", r.report.file, r.report.kind.as_str()).context("cannot write to stdout")?;
    Ok(())
}
