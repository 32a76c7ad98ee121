//! `/metrics`: the Prometheus text exposition format, version 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>): one `# HELP` and one
//! `# TYPE` line per family, then its samples; label values escaped (`\\`, `\"`, `\n`); counters
//! end in `_total`. Pure: [`render`] turns a [`Snapshot`] into text; the snapshot is read from the
//! store (what survives restarts: mails seen per folder, notices by state, merchants by stage)
//! and from the daemon's [`Counters`] (what it counted since it started).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::health::AccountHealth;
use crate::imap::{FolderRole, MailReport, PassCost};
use crate::mail::MailKind;
use crate::merchant::Stage;
use crate::schedule::StatusRow;
use crate::store::{Delivery, OutboxEntry};

/// What the daemon counted since it started, from the mails its watchers read.
#[derive(Debug, Default)]
pub struct Counters {
    inner: Mutex<CountersInner>,
}

#[derive(Debug, Default, Clone)]
struct CountersInner {
    hecto_mails: BTreeMap<&'static str, u64>,
    stage_changes: u64,
    found_in_spam: u64,
    /// By (account, folder, role): passes, their seconds, their round trips.
    passes: BTreeMap<(String, String, &'static str), (u64, f64, u64)>,
}

impl Counters {
    /// One mail went through the ingest.
    pub fn mail(&self, r: &MailReport) {
        if r.duplicate || matches!(r.kind, MailKind::NotHecto) {
            return;
        }
        if let Ok(mut c) = self.inner.lock() {
            *c.hecto_mails.entry(r.kind.as_str()).or_default() += 1;
            c.stage_changes += u64::from(r.stage_changed);
            c.found_in_spam += u64::from(r.found_in_spam);
        }
    }

    /// A watcher's pass over a folder ended, costing `cost`.
    pub fn pass(&self, account: &str, folder: &str, role: FolderRole, cost: PassCost) {
        if let Ok(mut c) = self.inner.lock() {
            let key = (account.to_owned(), folder.to_owned(), crate::store::role_name(role));
            let e = c.passes.entry(key).or_default();
            e.0 += 1;
            e.1 += cost.took.as_secs_f64();
            e.2 += cost.round_trips;
        }
    }
}

/// Everything `/metrics` shows, read at one scrape.
pub struct Snapshot<'a> {
    pub health: &'a [AccountHealth],
    pub status: &'a [StatusRow],
    pub outbox: &'a [OutboxEntry],
    pub counters: &'a Counters,
    /// Every IMAP connection's cost so far ([`crate::imap::transport::RoundTrips::now`]).
    pub round_trips: crate::imap::transport::RoundTrips,
}

/// The kinds of Hecto mail, each shown even at zero (a series that appears only with its first
/// sample breaks `rate()` and alert rules).
const HECTO_KINDS: [MailKind; 8] = [
    MailKind::Guidance,
    MailKind::DocumentsRequest,
    MailKind::ContractCompleted,
    MailKind::CardReviewRequested,
    MailKind::CardReviewProgress,
    MailKind::CardReviewCompleted,
    MailKind::OtherHecto,
    MailKind::Suspicious,
];

/// A label value, escaped as the format says.
fn esc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", esc(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

pub fn render(s: &Snapshot<'_>) -> String {
    let mut o = Out(String::new());

    o.family(
        "hecto_watch_account_readable",
        "gauge",
        "1 when every watched folder of the account was read to its end on its last pass, else 0.",
    );
    for a in s.health {
        o.sample("hecto_watch_account_readable", &[("account", &a.account)], u8::from(a.readable));
    }
    o.family(
        "hecto_watch_account_down_since_timestamp_seconds",
        "gauge",
        "When an unreadable account's trouble began (Unix time); absent while readable.",
    );
    for a in s.health {
        if let Some(t) = a.since {
            o.sample("hecto_watch_account_down_since_timestamp_seconds", &[("account", &a.account)], t.timestamp());
        }
    }
    // Per watched folder: when it was last read to its end, failures in a row, mails seen.
    type PerFolder = fn(&crate::health::FolderStatus) -> Option<i64>;
    let per_folder: [(&str, &str, &str, PerFolder); 3] = [
        (
            "hecto_watch_folder_last_success_timestamp_seconds",
            "gauge",
            "The end of the last pass that read the folder to its newest mail (Unix time).",
            |st| st.last_ok.map(|t| t.timestamp()),
        ),
        (
            "hecto_watch_folder_failures",
            "gauge",
            "Passes over the folder failed in a row (0 when its last pass succeeded).",
            |st| Some(i64::from(st.failures)),
        ),
        (
            "hecto_watch_mails_seen_total",
            "counter",
            "Mails whose headers were looked at, per watched folder (kept across restarts).",
            |st| i64::try_from(st.mails_seen).ok(),
        ),
    ];
    for (name, kind, help, value) in per_folder {
        o.family(name, kind, help);
        for a in s.health {
            for f in &a.folders {
                if let Some(v) = value(&f.status) {
                    o.sample(name, &[("account", &a.account), ("folder", &f.folder), ("role", &f.role)], v);
                }
            }
        }
    }

    let counters = s.counters.inner.lock().map(|c| c.clone()).unwrap_or_default();
    o.family(
        "hecto_watch_hecto_mails_total",
        "counter",
        "Hecto mails read since the daemon started, by kind (duplicates not counted).",
    );
    for kind in HECTO_KINDS {
        let n = counters.hecto_mails.get(kind.as_str()).copied().unwrap_or(0);
        o.sample("hecto_watch_hecto_mails_total", &[("kind", kind.as_str())], n);
    }
    o.family(
        "hecto_watch_stage_changes_total",
        "counter",
        "Merchant stage changes made by mail since the daemon started.",
    );
    o.sample("hecto_watch_stage_changes_total", &[], counters.stage_changes);
    o.family(
        "hecto_watch_found_in_spam_total",
        "counter",
        "Hecto mails for a merchant found in a spam folder since the daemon started.",
    );
    o.sample("hecto_watch_found_in_spam_total", &[], counters.found_in_spam);

    // What reading the folders costs the network and the server: a poll that finds nothing new
    // is one round trip on the folder's held connection (SPEC §6).
    o.family(
        "hecto_watch_folder_pass_seconds",
        "summary",
        "Successful passes over the folder since the daemon started, and the seconds they took.",
    );
    for ((account, folder, role), (n, secs, _)) in &counters.passes {
        let labels = [("account", account.as_str()), ("folder", folder.as_str()), ("role", role)];
        o.sample("hecto_watch_folder_pass_seconds_sum", &labels, secs);
        o.sample("hecto_watch_folder_pass_seconds_count", &labels, n);
    }
    o.family(
        "hecto_watch_folder_pass_round_trips_total",
        "counter",
        "Round trips those passes waited for on the folder's own connection (a big pass's second connection not included).",
    );
    for ((account, folder, role), (_, _, trips)) in &counters.passes {
        let labels = [("account", account.as_str()), ("folder", folder.as_str()), ("role", role)];
        o.sample("hecto_watch_folder_pass_round_trips_total", &labels, trips);
    }
    let net = s.round_trips;
    o.family(
        "hecto_watch_imap_connections_total",
        "counter",
        "IMAP connections logged in since the daemon started, reconnections included.",
    );
    o.sample("hecto_watch_imap_connections_total", &[], net.connections);
    o.family(
        "hecto_watch_imap_round_trips_total",
        "counter",
        "Round trips waited for on every IMAP connection since the daemon started, logging in included.",
    );
    o.sample("hecto_watch_imap_round_trips_total", &[], net.round_trips);

    // Notices from the outbox, which keeps every one: sent is a count that only grows.
    let mut by: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for kind in ["reminder", "spam_notice", "operator_notice"] {
        for state in ["sent", "pending", "failed"] {
            by.insert((kind, state), 0);
        }
    }
    for e in s.outbox {
        let state = match e.status {
            Delivery::Sent => "sent",
            Delivery::Pending => "pending",
            Delivery::Failed => "failed",
        };
        *by.entry((e.kind.as_str(), state)).or_default() += 1;
    }
    let families = [
        (
            "sent",
            "hecto_watch_notices_sent_total",
            "counter",
            "Reminders and notices sent, by kind (from the outbox, kept across restarts).",
        ),
        (
            "pending",
            "hecto_watch_notices_pending",
            "gauge",
            "Reminders and notices waiting to be sent (new, or retrying after an SMTP failure), by kind.",
        ),
        (
            "failed",
            "hecto_watch_notices_failed",
            "gauge",
            "Reminders and notices that gave up after permanent SMTP rejections, by kind (`retry` puts them back).",
        ),
    ];
    for (want, name, kind, help) in families {
        o.family(name, kind, help);
        for ((notice, state), n) in &by {
            if *state == want {
                o.sample(name, &[("kind", notice)], n);
            }
        }
    }

    o.family("hecto_watch_merchants", "gauge", "Merchants by onboarding stage.");
    for stage in Stage::ALL {
        let n = s.status.iter().filter(|r| r.stage == stage).count();
        o.sample("hecto_watch_merchants", &[("stage", stage.id())], n);
    }
    o.family("hecto_watch_overdue_windows", "gauge", "Merchants whose window (guidance, card_review) has lapsed.");
    for window in ["guidance", "card_review"] {
        let n =
            s.status.iter().filter(|r| r.overdue && r.deadline.is_some_and(|d| d.window.as_str() == window)).count();
        o.sample("hecto_watch_overdue_windows", &[("window", window)], n);
    }
    o.family(
        "hecto_watch_merchants_found_in_spam",
        "gauge",
        "Merchants whose Hecto mail was once found in a spam folder.",
    );
    o.sample("hecto_watch_merchants_found_in_spam", &[], s.status.iter().filter(|r| r.found_in_spam).count());
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_every_family_has_help_and_type() {
        assert_eq!(esc("a\"b\\c\nd 스팸"), "a\\\"b\\\\c\\nd 스팸");
        let counters = Counters::default();
        let text = render(&Snapshot {
            health: &[],
            status: &[],
            outbox: &[],
            counters: &counters,
            round_trips: Default::default(),
        });
        let mut families = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                families += 1;
                let name = rest.split(' ').next().unwrap();
                assert!(text.contains(&format!("# HELP {name} ")), "{name} has HELP");
            }
        }
        assert!(families >= 14, "{text}");
        assert!(text.contains("hecto_watch_hecto_mails_total{kind=\"guidance\"} 0"), "{text}");
        assert!(text.contains("hecto_watch_merchants{stage=\"applied\"} 0"), "{text}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn folder_passes_add_up_their_seconds_and_round_trips_per_folder() {
        let counters = Counters::default();
        let cost = |ms, round_trips| PassCost { took: std::time::Duration::from_millis(ms), round_trips };
        counters.pass("a", "Junk", FolderRole::Junk, cost(30, 1));
        counters.pass("a", "Junk", FolderRole::Junk, cost(45, 1));
        counters.pass("a", "Sent", FolderRole::Sent, cost(250, 7));
        let round_trips = crate::imap::transport::RoundTrips { round_trips: 21, login_round_trips: 8, connections: 2 };
        let text = render(&Snapshot { health: &[], status: &[], outbox: &[], counters: &counters, round_trips });
        let junk = "{account=\"a\",folder=\"Junk\",role=\"junk\"}";
        for want in [
            format!("hecto_watch_folder_pass_seconds_sum{junk} 0.075"),
            format!("hecto_watch_folder_pass_seconds_count{junk} 2"),
            format!("hecto_watch_folder_pass_round_trips_total{junk} 2"),
            "hecto_watch_folder_pass_round_trips_total{account=\"a\",folder=\"Sent\",role=\"sent\"} 7".to_owned(),
            "hecto_watch_imap_connections_total 2".to_owned(),
            "hecto_watch_imap_round_trips_total 21".to_owned(),
        ] {
            assert!(text.lines().any(|l| l == want), "{want} in\n{text}");
        }
    }
}
