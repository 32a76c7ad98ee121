//! Which merchant a mail belongs to (SPEC §4). Pure.
//!
//! One mailbox often serves several merchants (an agency's shared contract address), so the
//! address only gives candidates; business number, then MID, then company name narrow them.
//! Nothing is guessed: anything but exactly one candidate leaves the mail unassigned.

use serde::{Deserialize, Serialize};

use super::{normalise_company, Merchant};
use crate::mail::{Classified, Direction};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOutcome {
    /// Exactly one merchant; `rule` says which signal decided it.
    Matched { id: String, rule: String },
    /// None or several; `candidates` are the ids left (empty when none).
    Unassigned { candidates: Vec<String>, reason: String },
}

/// Match a classified Hecto mail against all merchants.
pub fn match_mail<'a>(mail: &Classified, merchants: impl IntoIterator<Item = &'a Merchant>) -> MatchOutcome {
    let all: Vec<&Merchant> = merchants.into_iter().collect();
    let addresses: Vec<&str> = match mail.direction {
        Some(Direction::Incoming) => mail.recipients.iter().map(String::as_str).collect(),
        Some(Direction::Outgoing) => mail.sender.as_deref().into_iter().collect(),
        None => Vec::new(),
    };
    let mut candidates: Vec<&Merchant> =
        all.iter().copied().filter(|m| addresses.iter().any(|a| m.has_contact(a))).collect();
    let mut rule = vec!["contact"];

    if candidates.is_empty() {
        // With no address match, a unique business-number or MID match still counts.
        let by_bn: Vec<&Merchant> = all.iter().copied().filter(|m| shares_business_no(mail, m)).collect();
        if by_bn.len() == 1 {
            return MatchOutcome::Matched { id: by_bn[0].id.clone(), rule: "business_no".into() };
        }
        let by_mid: Vec<&Merchant> = all.iter().copied().filter(|m| shares_mid(mail, m)).collect();
        if by_mid.len() == 1 {
            return MatchOutcome::Matched { id: by_mid[0].id.clone(), rule: "mid".into() };
        }
        let reason = if by_bn.len() > 1 || by_mid.len() > 1 {
            "no contact address matched and the business number/MID fits several merchants"
        } else {
            "no merchant's contact address, business number or MID appears in the mail"
        };
        let mut ids: Vec<String> = by_bn.iter().chain(by_mid.iter()).map(|m| m.id.clone()).collect();
        ids.sort();
        ids.dedup();
        return MatchOutcome::Unassigned { candidates: ids, reason: reason.into() };
    }

    // Narrow: a step applies when the mail carries that signal and some candidate shares it.
    let text = normalised_text(mail);
    type Step = (&'static str, fn(&Classified, &Merchant, &str) -> bool);
    let steps: [Step; 3] = [
        ("business_no", |mail, m, _| shares_business_no(mail, m)),
        ("mid", |mail, m, _| shares_mid(mail, m)),
        ("company_name", |_, m, text| {
            let name = normalise_company(&m.name);
            !name.is_empty() && text.contains(&name)
        }),
    ];
    for (name, shares) in steps {
        if candidates.len() <= 1 {
            break;
        }
        let narrowed: Vec<&Merchant> = candidates.iter().copied().filter(|m| shares(mail, m, &text)).collect();
        if !narrowed.is_empty() {
            candidates = narrowed;
            rule.push(name);
        }
    }
    match candidates.as_slice() {
        [one] => MatchOutcome::Matched { id: one.id.clone(), rule: rule.join("+") },
        several => MatchOutcome::Unassigned {
            candidates: several.iter().map(|m| m.id.clone()).collect(),
            reason: format!(
                "{} merchants share this contact address and nothing in the mail tells them apart",
                several.len()
            ),
        },
    }
}

fn shares_business_no(mail: &Classified, m: &Merchant) -> bool {
    m.business_no.as_ref().is_some_and(|bn| mail.business_numbers.contains(bn))
}

fn shares_mid(mail: &Classified, m: &Merchant) -> bool {
    m.mids.iter().any(|mid| mail.mids.iter().any(|x| x.eq_ignore_ascii_case(mid)))
}

fn normalised_text(mail: &Classified) -> String {
    let mut s = String::with_capacity(mail.subject.len() + mail.text.len());
    s.push_str(&mail.subject);
    s.push('\n');
    s.push_str(&mail.text);
    normalise_company(&s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::MailKind;
    use crate::merchant::tests::{mail, merchant};

    fn incoming_to(rcpts: &[&str]) -> Classified {
        let mut c = mail(MailKind::Guidance, Some(Direction::Incoming), "2026-11-04T11:00:00+09:00");
        c.recipients = rcpts.iter().map(|s| s.to_string()).collect();
        c
    }

    #[test]
    fn matching_table() {
        let mut a = merchant("alpha", "contracts@agency.test");
        a.name = "주식회사 알파상점".into();
        a.business_no = Some("1234567891".into());
        let mut b = merchant("beta", "contracts@agency.test");
        b.name = "(주)베타몰".into();
        b.mids = vec!["beta0001".into()];
        let mut c = merchant("gamma", "pay@gamma.test");
        c.business_no = Some("2208162517".into());
        let all = [a, b, c];

        // (description, mail, expected id or None)
        let mut cases: Vec<(&str, Classified, Option<&str>)> = Vec::new();
        cases.push(("unique contact", incoming_to(&["pay@gamma.test"]), Some("gamma")));
        cases.push(("shared contact, no signal", incoming_to(&["contracts@agency.test"]), None));
        let mut m = incoming_to(&["contracts@agency.test"]);
        m.business_numbers = vec!["1234567891".into()];
        cases.push(("shared contact + business no", m, Some("alpha")));
        let mut m = incoming_to(&["contracts@agency.test"]);
        m.mids = vec!["BETA0001".into()];
        cases.push(("shared contact + MID (case-insensitive)", m, Some("beta")));
        let mut m = incoming_to(&["contracts@agency.test"]);
        m.text = "베타몰 담당자님께 계약 안내 드립니다".into();
        cases.push(("shared contact + company name", m, Some("beta")));
        let mut m = incoming_to(&["contracts@agency.test"]);
        m.business_numbers = vec!["9999999999".into()];
        cases.push(("signal no candidate shares is ignored", m, None));
        let mut m = incoming_to(&["someone@else.test"]);
        m.business_numbers = vec!["2208162517".into()];
        cases.push(("no address, unique business no", m, Some("gamma")));
        let mut m = incoming_to(&["someone@else.test"]);
        m.mids = vec!["beta0001".into()];
        cases.push(("no address, unique MID", m, Some("beta")));
        cases.push(("nothing", incoming_to(&["someone@else.test"]), None));
        let mut out = mail(MailKind::CardReviewRequested, Some(Direction::Outgoing), "2026-11-04T11:00:00+09:00");
        out.sender = Some("pay@gamma.test".into());
        out.recipients = vec!["contract@hectofinancial.co.kr".into()];
        cases.push(("outgoing matched by sender", out, Some("gamma")));

        for (what, mail, want) in cases {
            let got = match_mail(&mail, all.iter());
            match (want, &got) {
                (Some(id), MatchOutcome::Matched { id: got_id, .. }) => {
                    assert_eq!(got_id, id, "{what}")
                }
                (None, MatchOutcome::Unassigned { .. }) => {}
                _ => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn shared_contact_unassigned_lists_the_candidates() {
        let all = [merchant("alpha", "c@agency.test"), merchant("beta", "c@agency.test")];
        match match_mail(&incoming_to(&["c@agency.test"]), all.iter()) {
            MatchOutcome::Unassigned { candidates, .. } => {
                assert_eq!(candidates, vec!["alpha", "beta"])
            }
            other => panic!("{other:?}"),
        }
    }
}
