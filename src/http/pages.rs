//! The read-only HTML status page (SPEC §9): the accounts' health on top, the merchants table,
//! and a page per merchant with its timeline and evidence. Server-rendered HTML with one inline
//! stylesheet and no JavaScript; a table scrolls sideways on a narrow phone screen instead of
//! squeezing. Pure: data in, HTML out, every value escaped.

use chrono::{DateTime, Utc};
use chrono_tz::Asia::Seoul;

use crate::health::{AccountHealth, AccountState};
use crate::merchant::Evidence;
use crate::notify::template::html_escape as esc;
use crate::ops::MerchantDetail;
use crate::schedule::StatusRow;

const STYLE: &str = r#"
:root { color-scheme: light; --line: #d8dde3; --muted: #5f6b7a; --bad: #b42318; --bad-bg: #fef3f2;
        --ok: #067647; --ok-bg: #ecfdf3; --warn: #b54708; --warn-bg: #fffaeb; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "Noto Sans KR", "Noto Sans CJK KR",
       "Apple SD Gothic Neo", "Malgun Gothic", sans-serif; color: #1d2939; background: #f8fafc;
       word-break: keep-all; }
header { background: #1d2939; color: #fff; padding: 12px 20px; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
header .as-of { color: #cbd5e1; font-size: 13px; margin-left: 8px; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 20px 40px; }
h1 { font-size: 22px; margin: 8px 0 16px; }
h2 { font-size: 17px; margin: 24px 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; align-items: start; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card.down { border-color: var(--bad); background: var(--bad-bg); }
.card.unchecked { border-color: var(--warn); background: var(--warn-bg); }
.card h3 { margin: 0 0 4px; font-size: 15px; overflow-wrap: anywhere; }
.card p { margin: 4px 0; font-size: 13px; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600;
         white-space: nowrap; }
.badge.ok { color: var(--ok); background: var(--ok-bg); }
.badge.bad { color: var(--bad); background: var(--bad-bg); }
.badge.warn { color: var(--warn); background: var(--warn-bg); }
.scroll { overflow-x: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; min-width: 640px; }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); background: #f1f5f9; }
tr:last-child td { border-bottom: 0; }
td.when { white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.overdue td { background: var(--bad-bg); }
.muted { color: var(--muted); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; background: #fff;
     border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
code { font-size: 12px; overflow-wrap: anywhere; }
@media (max-width: 600px) { main { padding: 12px; } h1 { font-size: 19px; } }
"#;

/// `2027-02-10 09:00 KST`
fn kst(t: DateTime<Utc>) -> String {
    t.with_timezone(&Seoul).format("%Y-%m-%d %H:%M KST").to_string()
}

fn page(title: &str, now: DateTime<Utc>, home: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"ko\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} — hecto-watch</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><a href=\"{home}\">hecto-watch</a><span class=\"as-of\">as of {now}</span></header>\n\
         <main>\n{body}</main>\n</body>\n</html>\n",
        title = esc(title),
        home = esc(home),
        now = esc(&kst(now)),
    )
}

/// The accounts' health as cards: readable, not checked yet, or unreadable with since when, the
/// last error and the likely fix.
fn accounts(health: &[AccountHealth]) -> String {
    let mut s = String::from("<h2>Mail accounts</h2>\n<div class=\"cards\" id=\"accounts\">\n");
    if health.is_empty() {
        s.push_str("<p class=\"muted\">No accounts configured.</p>\n");
    }
    for a in health {
        let (class, badge) = match a.state {
            AccountState::Ok => ("ok", "<span class=\"badge ok\">readable</span>".to_owned()),
            AccountState::Unchecked => ("unchecked", "<span class=\"badge warn\">not checked yet</span>".to_owned()),
            AccountState::Down => ("down", "<span class=\"badge bad\">unreadable</span>".to_owned()),
        };
        s.push_str(&format!(
            "<div class=\"card {class}\" data-account=\"{name}\" data-state=\"{state}\"><h3>{name} {badge}</h3>\n",
            name = esc(&a.account),
            state = class,
        ));
        let folders: Vec<String> = a.folders.iter().map(|f| format!("{} ({})", esc(&f.folder), esc(&f.role))).collect();
        if !folders.is_empty() {
            s.push_str(&format!("<p>Folders: {}</p>\n", folders.join(", ")));
        }
        match a.last_ok {
            Some(t) => s.push_str(&format!("<p>All read at least since {}</p>\n", esc(&kst(t)))),
            None => s.push_str("<p class=\"muted\">Not read to its end yet</p>\n"),
        }
        if let Some(since) = a.since {
            s.push_str(&format!(
                "<p><strong>Unreadable since {}</strong> ({} failed tries)</p>\n",
                esc(&kst(since)),
                a.failures
            ));
        }
        if let Some(e) = &a.last_error {
            s.push_str(&format!("<p>Last error: <code>{}</code></p>\n", esc(e)));
        }
        if let Some(f) = &a.fix {
            s.push_str(&format!("<p>Likely fix: {}</p>\n", esc(f)));
        }
        s.push_str(&format!(
            "<p class=\"muted\">{} seen</p>\n</div>\n",
            crate::text::count(a.mails_seen, "mail", "mails")
        ));
    }
    s.push_str("</div>\n");
    s
}

/// `/`: health, then one row per merchant.
pub fn index(health: &[AccountHealth], rows: &[StatusRow], now: DateTime<Utc>, query: &str) -> String {
    let mut body = String::from("<h1>Hecto Financial onboarding · 헥토파이낸셜 계약 진행</h1>\n");
    body.push_str(&accounts(health));
    let overdue = rows.iter().filter(|r| r.overdue).count();
    body.push_str(&format!(
        "<h2>Merchants <span class=\"muted\">{} · {overdue} overdue</span></h2>\n<div class=\"scroll\">\n\
         <table id=\"merchants\">\n<thead><tr><th>Merchant</th><th>Stage</th><th>Since</th><th>Deadline</th>\
         <th>Overdue</th><th>Found in spam</th><th>Reminders</th></tr></thead>\n<tbody>\n",
        rows.len()
    ));
    if rows.is_empty() {
        body.push_str("<tr><td colspan=\"7\" class=\"muted\">No merchants yet.</td></tr>\n");
    }
    for r in rows {
        let deadline = r
            .deadline
            .map(|d| format!("{} <span class=\"muted\">({})</span>", esc(&kst(d.due)), d.window.as_str()))
            .unwrap_or_else(|| "-".into());
        body.push_str(&format!(
            "<tr class=\"{row}\" data-merchant=\"{id}\"><td><a href=\"/merchants/{href}{query}\">{name}</a><br><span class=\"muted\">{id}</span></td>\
             <td>{stage}<br><span class=\"muted\">{stage_id}</span></td><td class=\"when\">{since}</td><td class=\"when\">{deadline}</td>\
             <td>{overdue}</td><td>{spam}</td><td>{paused}</td></tr>\n",
            row = if r.overdue { "overdue" } else { "" },
            id = esc(&r.id),
            href = esc(&url_segment(&r.id)),
            query = esc(query),
            name = esc(&r.name),
            stage = esc(r.stage.korean()),
            stage_id = r.stage.id(),
            since = esc(&kst(r.stage_since)),
            overdue = if r.overdue { "<span class=\"badge bad\">overdue</span>" } else { "-" },
            spam = if r.found_in_spam { "<span class=\"badge warn\">found in spam</span>" } else { "-" },
            paused = if r.paused { "<span class=\"badge warn\">paused</span>" } else { "on" },
        ));
    }
    body.push_str("</tbody>\n</table>\n</div>\n");
    page("Status", now, &format!("/{query}"), &body)
}

/// `/merchants/{id}`: identity, deadline, and the timeline with the evidence of every step.
pub fn merchant(health: &[AccountHealth], d: &MerchantDetail, now: DateTime<Utc>, query: &str) -> String {
    let m = &d.merchant;
    let mut body = format!("<h1>{} <span class=\"muted\">{}</span></h1>\n", esc(&m.name), esc(&m.id));
    if health.iter().any(|a| !a.readable) {
        body.push_str(&accounts(health));
    }
    let deadline = match &d.deadline {
        Some(dl) => format!(
            "{} — {}{}",
            dl.window.as_str(),
            esc(&kst(dl.due)),
            if now > dl.due { " <span class=\"badge bad\">overdue</span>" } else { "" }
        ),
        None => "-".into(),
    };
    body.push_str(&format!(
        "<dl id=\"merchant\">\n<dt>Stage</dt><dd>{stage} <span class=\"muted\">{stage_id}</span>, since {since}</dd>\n\
         <dt>Applied</dt><dd>{applied}</dd>\n<dt>Contact</dt><dd>{contact}</dd>\n\
         <dt>Business no.</dt><dd>{bno}</dd>\n<dt>MIDs</dt><dd>{mids}</dd>\n\
         <dt>Deadline</dt><dd>{deadline}</dd>\n<dt>Found in spam</dt><dd>{spam}</dd>\n\
         <dt>Reminders</dt><dd>{paused}</dd>\n</dl>\n",
        stage = esc(m.stage.korean()),
        stage_id = m.stage.id(),
        since = esc(&kst(m.stage_since)),
        applied = esc(&kst(m.applied_at)),
        contact = esc(&m.contacts.join(", ")),
        bno = esc(m.business_no.as_deref().unwrap_or("-")),
        mids = if m.mids.is_empty() { "-".into() } else { esc(&m.mids.join(", ")) },
        spam = if m.found_in_spam { "yes" } else { "no" },
        paused = if m.paused { "paused" } else { "on" },
    ));
    body.push_str(
        "<h2>Timeline</h2>\n<div class=\"scroll\">\n<table id=\"timeline\">\n<thead><tr><th>When</th><th>What</th>\
         <th>Evidence</th></tr></thead>\n<tbody>\n",
    );
    for e in &d.events {
        let evidence = match &e.evidence {
            Evidence::Operator { note } => {
                format!("operator{}", note.as_deref().map(|n| format!(": {}", esc(n))).unwrap_or_default())
            }
            Evidence::Mail { account, folder, message_id, uid, subject, rule, .. } => format!(
                "mail in <strong>{}</strong> / <strong>{}</strong>{}<br>“{}”<br><code>{}</code><br><code>{}</code>",
                esc(account),
                esc(folder),
                uid.map(|u| format!(" (UID {u})")).unwrap_or_default(),
                esc(subject),
                esc(message_id.as_deref().unwrap_or("no Message-ID")),
                esc(rule),
            ),
        };
        body.push_str(&format!(
            "<tr><td class=\"when\">{}</td><td>{}</td><td>{evidence}</td></tr>\n",
            esc(&kst(e.at)),
            esc(&e.change.describe())
        ));
    }
    body.push_str("</tbody>\n</table>\n</div>\n");
    page(&m.name, now, &format!("/{query}"), &body)
}

/// Percent-encode a path segment (merchant ids are free text).
pub fn url_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_ids_percent_encoded() {
        assert_eq!(url_segment("가 b/c"), "%EA%B0%80%20b%2Fc");
        let html = index(&[], &[], DateTime::from_timestamp(0, 0).unwrap(), "?token=a&b");
        assert!(html.contains("href=\"/?token=a&amp;b\""), "{html}");
        assert!(html.contains("No merchants yet"));
        assert!(html.contains("<meta name=\"viewport\""));
    }
}
