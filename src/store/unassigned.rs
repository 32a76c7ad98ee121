//! The unassigned list (SPEC §4, §7): Hecto mails no single merchant could be matched to, until
//! an operator assigns one to a merchant — applied exactly as if it had matched, in one
//! transaction, with the original evidence plus "assigned by operator" — or dismisses it.
//! Either takes it off the list; the record stays, with how and when it was resolved.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::{
    abort, dec, enc, event_key, flatten_tx_error, mail_tag, same_identity, tx_bump_merchants_gen, tx_get, tx_next_seq,
    tx_spam_notice, Refused, SeenMail, Store, UnassignedMail,
};
use crate::mail::{Authenticated, Classified, Direction, Rules};
use crate::merchant::{self, FolderRole, Merchant};

/// How an operator took a mail off the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Resolution {
    Assigned { merchant: String, at: DateTime<Utc>, note: Option<String> },
    Dismissed { at: DateTime<Utc>, note: Option<String> },
}

impl Resolution {
    pub fn describe(&self) -> String {
        match self {
            Resolution::Assigned { merchant, at, .. } => format!("assigned to {merchant} at {}", at.to_rfc3339()),
            Resolution::Dismissed { at, .. } => format!("dismissed at {}", at.to_rfc3339()),
        }
    }
}

/// What `unassigned assign` did to the merchant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assigned {
    pub merchant: Merchant,
    pub stage_changed: bool,
    pub found_in_spam: bool,
    /// Outbox keys queued (the spam notice).
    pub enqueued: Vec<String>,
}

impl UnassignedMail {
    /// The classified mail to apply: as kept, or — a record from before the mail was kept —
    /// rebuilt from what the record says (enough for stage, MIDs and found-in-spam).
    pub fn classified(&self) -> Classified {
        if let Some(m) = &self.mail {
            return (**m).clone();
        }
        Classified {
            message_id: self.message_id.clone(),
            kind: self.kind,
            direction: Some(if self.source.role == FolderRole::Sent {
                Direction::Outgoing
            } else {
                Direction::Incoming
            }),
            sender: self.sender.clone(),
            sender_name: None,
            recipients: self.recipients.clone(),
            subject: self.subject.clone(),
            authenticated: Authenticated::None,
            spam_flagged: false,
            business_numbers: self.business_numbers.clone(),
            mids: self.mids.clone(),
            test_mids: Vec::new(),
            card_companies: Vec::new(),
            subject_card_companies: Vec::new(),
            date: self.date.map(|d| d.fixed_offset()),
            text: self.subject.clone(),
            content_hash: String::new(),
            own_key: None,
            unparseable: false,
        }
    }
}

fn not_found(id: u64) -> anyhow::Error {
    Refused::BadInput(format!("no unassigned mail {id} (see `hecto-watch unassigned list`)")).into()
}

fn already(id: u64, r: &Resolution) -> anyhow::Error {
    Refused::BadInput(format!("unassigned mail {id} was already {}", r.describe())).into()
}

impl Store {
    /// Every unassigned mail with its id, open or resolved, oldest first.
    pub fn unassigned_mails(&self) -> anyhow::Result<Vec<(u64, UnassignedMail)>> {
        self.unassigned
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((super::u64_be(Some(k)), dec("unassigned mail", &v)?))
            })
            .collect()
    }

    pub fn unassigned_mail(&self, id: u64) -> anyhow::Result<UnassignedMail> {
        self.unassigned
            .get(id.to_be_bytes())?
            .map(|v| dec("unassigned mail", &v))
            .transpose()?
            .ok_or_else(|| not_found(id))
    }

    /// `unassigned assign ID MERCHANT`: the mail applied to `merchant_id` through the merchant
    /// rules, as a matched mail is (stage, MIDs, found in spam and its notice), its events
    /// carrying the mail's evidence with the rule "assigned by operator".
    pub fn assign_unassigned(
        &self,
        id: u64,
        merchant_id: &str,
        note: Option<String>,
        rules: &Rules,
        operators: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<Assigned> {
        let trees = (&self.meta, &self.merchants, &self.events, &self.seen, &self.unassigned, &self.outbox);
        let r = trees.transaction(|(meta, merchants, events, seen, unassigned, outbox)| {
            let Some(mut record) = tx_get::<UnassignedMail>(unassigned, "unassigned mail", &id.to_be_bytes())? else {
                return abort(not_found(id));
            };
            if let Some(r) = &record.resolution {
                return abort(already(id, r));
            }
            let Some(m) = tx_get::<Merchant>(merchants, "merchant", merchant_id.as_bytes())? else {
                return abort(Refused::UnknownMerchant(merchant_id.to_owned()).into());
            };
            let mail = record.classified();
            let rule = format!("assigned by operator ({})", record.reason);
            let effect = merchant::apply_mail(&m, &mail, &record.source, rules, &rule, now);
            if !same_identity(&m, &effect.merchant) {
                tx_bump_merchants_gen(meta)?;
            }
            merchants.insert(merchant_id.as_bytes(), enc(&effect.merchant))?;
            for e in &effect.events {
                let seq = tx_next_seq(meta)?;
                events.insert(event_key(merchant_id, seq), enc(e))?;
            }
            let mut enqueued = Vec::new();
            if effect.spam_notice {
                let tag = mail_tag(&record.identity);
                enqueued.extend(tx_spam_notice(outbox, &effect.merchant, &mail, &record.source, &tag, operators, now)?);
            }
            if let Some(mut s) = tx_get::<SeenMail>(seen, "seen", record.identity.as_bytes())? {
                s.merchant = Some(merchant_id.to_owned());
                seen.insert(record.identity.as_bytes(), enc(&s))?;
            }
            record.resolution =
                Some(Resolution::Assigned { merchant: merchant_id.to_owned(), at: now, note: note.clone() });
            unassigned.insert(&id.to_be_bytes(), enc(&record))?;
            Ok(Assigned {
                merchant: effect.merchant,
                stage_changed: effect.stage_changed,
                found_in_spam: effect.spam_notice,
                enqueued,
            })
        });
        r.map_err(flatten_tx_error)
    }

    /// `unassigned dismiss ID`: set aside, with the operator's note.
    pub fn dismiss_unassigned(
        &self,
        id: u64,
        note: Option<String>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<UnassignedMail> {
        let r = self.unassigned.transaction(|unassigned| {
            let Some(mut record) = tx_get::<UnassignedMail>(unassigned, "unassigned mail", &id.to_be_bytes())? else {
                return abort(not_found(id));
            };
            if let Some(r) = &record.resolution {
                return abort(already(id, r));
            }
            record.resolution = Some(Resolution::Dismissed { at: now, note: note.clone() });
            unassigned.insert(&id.to_be_bytes(), enc(&record))?;
            Ok(record)
        });
        r.map_err(flatten_tx_error)
    }
}
