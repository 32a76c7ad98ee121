//! When an account's trouble is told to the operators (SPEC §5 "Alerts to operators"): once
//! when it has been unreadable for `[alerts] account_down_after` (a refused login after two
//! tries), and once when it can be read again — never once per retry. The outage is stored (the
//! store's `outages` tree), so a daemon restarted during the same outage does not alert again.
//! Pure: [`decide`] turns the stored outage and the account's health into what to do; the daemon
//! does it (one transaction for the outage and its notice) and sends after the commit.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AccountHealth, AccountState, Trouble};
use crate::store::{NoticeFacts, NoticeKind, OutboxEntry};

/// An account's current outage, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// When it became unreadable (its failing folders' first failure).
    pub since: DateTime<Utc>,
    /// When the operators were told; `None` while the outage is younger than the threshold.
    pub alerted_at: Option<DateTime<Utc>>,
    pub last_error: String,
    pub trouble: Trouble,
}

/// What to do about one account now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// Store this outage (new, or its last error changed), no notice yet.
    Keep(Outage),
    /// Store this outage, now alerted, and send the "account down" notice.
    AlertDown(Outage),
    /// The account is readable again: forget the outage; tell the operators if they were told
    /// it was down.
    Recovered {
        outage: Outage,
        notify: bool,
    },
}

/// Decide at `now` from the stored `outage` and the account's `health`.
pub fn decide(outage: Option<&Outage>, health: &AccountHealth, now: DateTime<Utc>, down_after: Duration) -> Decision {
    match health.state {
        AccountState::Unchecked => Decision::Nothing,
        AccountState::Ok => match outage {
            Some(o) => Decision::Recovered { outage: o.clone(), notify: o.alerted_at.is_some() },
            None => Decision::Nothing,
        },
        AccountState::Down => {
            let trouble = health.trouble.unwrap_or(Trouble::Folder);
            let last_error = health.last_error.clone().unwrap_or_default();
            let current = match outage {
                Some(o) => Outage { last_error: last_error.clone(), trouble, ..o.clone() },
                None => Outage {
                    since: health.since.unwrap_or(now),
                    alerted_at: None,
                    last_error: last_error.clone(),
                    trouble,
                },
            };
            if current.alerted_at.is_none() {
                let lasted = (now - current.since).to_std().unwrap_or(Duration::ZERO);
                let refused_twice = trouble.alert_at_once() && health.failures >= 2;
                if lasted >= down_after || refused_twice {
                    return Decision::AlertDown(Outage { alerted_at: Some(now), ..current });
                }
            }
            if outage == Some(&current) {
                Decision::Nothing
            } else {
                Decision::Keep(current)
            }
        }
    }
}

fn key_time(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// The notice for an alert: `alert/<account>/<since>/down` or `…/up`. The key is the outage's
/// identity, so even a lost outage record cannot make the same outage alert twice.
pub fn notice(
    account: &str,
    outage: &Outage,
    fix: &str,
    recovered_at: Option<DateTime<Utc>>,
    operators: &[String],
    now: DateTime<Utc>,
) -> OutboxEntry {
    let (what, window) = if recovered_at.is_some() { ("up", "account_up") } else { ("down", "account_down") };
    OutboxEntry::pending(
        format!("alert/{account}/{}/{what}", key_time(outage.since)),
        NoticeKind::OperatorNotice,
        None,
        window.into(),
        1,
        NoticeFacts::AccountAlert {
            account: account.to_owned(),
            since: outage.since,
            recovered_at,
            last_error: outage.last_error.clone(),
            trouble: outage.trouble.as_str().to_owned(),
            fix: fix.to_owned(),
        },
        now,
    )
    .to_operators(operators)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn health(state: AccountState, since: &str, trouble: Trouble, failures: u32) -> AccountHealth {
        AccountHealth {
            account: "shop".into(),
            state,
            readable: state == AccountState::Ok,
            last_ok: None,
            since: (state == AccountState::Down).then(|| t(since)),
            last_error: (state == AccountState::Down).then(|| "boom".to_owned()),
            trouble: (state == AccountState::Down).then_some(trouble),
            fix: None,
            failures,
            mails_seen: 0,
            folders: Vec::new(),
        }
    }

    const THIRTY_MIN: Duration = Duration::from_secs(30 * 60);

    #[test]
    fn an_outage_alerts_once_after_the_threshold_and_once_on_recovery() {
        let down = health(AccountState::Down, "2027-02-10T09:00:00+09:00", Trouble::Unreachable, 5);
        // Ten minutes in: stored, not alerted.
        let d = decide(None, &down, t("2027-02-10T09:10:00+09:00"), THIRTY_MIN);
        let Decision::Keep(o) = d else { panic!("{d:?}") };
        assert_eq!((o.since, o.alerted_at), (t("2027-02-10T09:00:00+09:00"), None));
        // Retries meanwhile change nothing.
        assert_eq!(decide(Some(&o), &down, t("2027-02-10T09:20:00+09:00"), THIRTY_MIN), Decision::Nothing);
        // Thirty minutes: the alert.
        let d = decide(Some(&o), &down, t("2027-02-10T09:30:00+09:00"), THIRTY_MIN);
        let Decision::AlertDown(o) = d else { panic!("{d:?}") };
        // Still down an hour later (a daemon restart reads the same stored outage): no second alert.
        assert_eq!(decide(Some(&o), &down, t("2027-02-10T10:30:00+09:00"), THIRTY_MIN), Decision::Nothing);
        // Readable: one recovery notice.
        let up = health(AccountState::Ok, "", Trouble::Unreachable, 0);
        assert_eq!(
            decide(Some(&o), &up, t("2027-02-10T10:31:00+09:00"), THIRTY_MIN),
            Decision::Recovered { outage: o.clone(), notify: true }
        );
        // Not yet checked after a restart: the outage stays as it is.
        let unchecked = health(AccountState::Unchecked, "", Trouble::Unreachable, 0);
        assert_eq!(decide(Some(&o), &unchecked, t("2027-02-10T10:31:00+09:00"), THIRTY_MIN), Decision::Nothing);
    }

    #[test]
    fn a_stored_outage_keeps_its_start_when_the_failing_folders_change() {
        // INBOX failed from 09:00; it comes back while Junk, failing since 09:20, does not: the
        // account was never readable in between, so it is the same outage, alerted once.
        let down = health(AccountState::Down, "2027-02-10T09:00:00+09:00", Trouble::Unreachable, 5);
        let Decision::AlertDown(o) = decide(None, &down, t("2027-02-10T09:40:00+09:00"), THIRTY_MIN) else { panic!() };
        let later = health(AccountState::Down, "2027-02-10T09:20:00+09:00", Trouble::Folder, 1);
        let d = decide(Some(&o), &later, t("2027-02-10T09:55:00+09:00"), THIRTY_MIN);
        let Decision::Keep(kept) = d else { panic!("{d:?}") };
        assert_eq!((kept.since, kept.alerted_at, kept.trouble), (o.since, o.alerted_at, Trouble::Folder));
    }

    #[test]
    fn a_short_outage_is_forgotten_without_a_word() {
        let down = health(AccountState::Down, "2027-02-10T09:00:00+09:00", Trouble::Unreachable, 1);
        let Decision::Keep(o) = decide(None, &down, t("2027-02-10T09:01:00+09:00"), THIRTY_MIN) else { panic!() };
        let up = health(AccountState::Ok, "", Trouble::Unreachable, 0);
        assert_eq!(
            decide(Some(&o), &up, t("2027-02-10T09:02:00+09:00"), THIRTY_MIN),
            Decision::Recovered { outage: o, notify: false }
        );
    }

    #[test]
    fn a_refused_login_alerts_after_two_tries() {
        let once = health(AccountState::Down, "2027-02-10T09:00:00+09:00", Trouble::LoginRefused, 1);
        let Decision::Keep(o) = decide(None, &once, t("2027-02-10T09:00:01+09:00"), THIRTY_MIN) else { panic!() };
        let twice = health(AccountState::Down, "2027-02-10T09:00:00+09:00", Trouble::LoginRefused, 2);
        let d = decide(Some(&o), &twice, t("2027-02-10T09:00:03+09:00"), THIRTY_MIN);
        assert!(matches!(d, Decision::AlertDown(_)), "{d:?}");
        // An unreachable server twice is not enough.
        let net = health(AccountState::Down, "2027-02-10T09:00:00+09:00", Trouble::Unreachable, 2);
        assert!(matches!(decide(None, &net, t("2027-02-10T09:00:03+09:00"), THIRTY_MIN), Decision::Keep(_)));
    }

    #[test]
    fn the_notice_keys_are_the_outage_identity() {
        let o = Outage {
            since: t("2027-02-10T09:00:00+09:00"),
            alerted_at: None,
            last_error: "boom".into(),
            trouble: Trouble::LoginRefused,
        };
        let ops = vec!["ops@example.test".to_owned()];
        let now = t("2027-02-10T09:30:00+09:00");
        let down = notice("shop", &o, "fix it", None, &ops, now);
        let up = notice("shop", &o, "fix it", Some(now), &ops, now);
        assert_eq!(down.key, "alert/shop/20270210T000000Z/down");
        assert_eq!(up.key, "alert/shop/20270210T000000Z/up");
        assert_eq!(down.to, ops);
    }
}
