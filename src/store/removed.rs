//! `merchant remove`: the merchant goes, and with it its timeline and outbox entries — into an
//! archive record, not away (evidence is kept, `export` carries it). So `merchant add` with the
//! same id later starts a new, empty timeline, and its reminders are not taken for ones already
//! sent to the merchant that was removed (their keys would be the same).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::{abort, dec, enc, flatten_tx_error, tx_bump_merchants_gen, tx_get, u64_be, Refused, SeqEvent, Store};
use crate::merchant::Merchant;
use crate::store::OutboxEntry;

/// What `merchant remove` set aside: the merchant as it was, its events and outbox entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemovedMerchant {
    pub removed_at: DateTime<Utc>,
    pub merchant: Merchant,
    pub events: Vec<SeqEvent>,
    pub outbox: Vec<OutboxEntry>,
}

/// Events were appended between the read and the transaction: read again.
#[derive(Debug, thiserror::Error)]
#[error("the merchant's events changed while it was being removed")]
struct Changed;

pub(super) fn removed_key(id: &str, at: DateTime<Utc>) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&at.timestamp_micros().to_be_bytes());
    k
}

impl Store {
    /// Remove a merchant, archiving its events and outbox entries in one transaction. Pending
    /// entries are not sent: nobody is reminded about a merchant that no longer exists.
    pub fn remove_merchant(&self, id: &str, now: DateTime<Utc>) -> anyhow::Result<Merchant> {
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(0);
        loop {
            // Every event takes a sequence number: an unchanged `next_seq` inside the transaction
            // proves that the events read here are all of them (sled transactions cannot scan).
            let seq_before = u64_be(self.meta.get(b"next_seq")?);
            let events = self
                .events
                .scan_prefix(&prefix)
                .map(|kv| {
                    let (k, v) = kv?;
                    let seq = u64_be(Some(sled::IVec::from(&k[prefix.len()..])));
                    Ok((k, SeqEvent { seq, event: dec("event", &v)? }))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let outbox: Vec<OutboxEntry> =
                self.outbox_entries()?.into_iter().filter(|e| e.merchant.as_deref() == Some(id)).collect();
            let r = (&self.meta, &self.merchants, &self.events, &self.outbox, &self.removed).transaction(
                |(meta, merchants, events_t, outbox_t, removed)| {
                    if u64_be(meta.get(b"next_seq")?) != seq_before {
                        return abort(Changed.into());
                    }
                    let Some(m) = tx_get::<Merchant>(merchants, "merchant", id.as_bytes())? else {
                        return abort(Refused::UnknownMerchant(id.to_owned()).into());
                    };
                    merchants.remove(id.as_bytes())?;
                    for (k, _) in &events {
                        events_t.remove(k)?;
                    }
                    for e in &outbox {
                        outbox_t.remove(e.key.as_bytes())?;
                    }
                    let record = RemovedMerchant {
                        removed_at: now,
                        merchant: m.clone(),
                        events: events.iter().map(|(_, e)| e.clone()).collect(),
                        outbox: outbox.clone(),
                    };
                    removed.insert(removed_key(id, now), enc(&record))?;
                    tx_bump_merchants_gen(meta)?;
                    Ok(m)
                },
            );
            match r.map_err(flatten_tx_error) {
                Err(e) if e.is::<Changed>() => continue,
                other => return other,
            }
        }
    }

    /// Every archived merchant (`export`).
    pub fn removed_merchants(&self) -> anyhow::Result<Vec<RemovedMerchant>> {
        self.removed.iter().values().map(|v| dec("removed merchant", &v?)).collect()
    }
}
