//! `ingest`: one mail's path from raw bytes to committed effects — classify → match → apply —
//! shared by the IMAP sync and `import-mail`, so both behave identically.
//!
//! The IMAP side calls [`Ingest::apply`] for mail whose body it fetched and [`Ingest::skip`] for
//! mail whose headers showed it is none of our business; either advances the folder's cursor in
//! the same transaction as the mail's effects. Call [`Ingest::flush`] before treating a batch as
//! done. Whoever sends the outbox waits on [`Ingest::outbox_ready`], which is notified after a
//! commit that queued a notice (the spam notice goes out at once, not at the next cron tick).

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::mail::prefilter::Prefilter;
use crate::mail::{self, Classified, Rules};
pub use crate::merchant::{FolderRole, MailSource};
use crate::store::Store;
pub use crate::store::{Applied, Cursor};

#[derive(Clone)]
pub struct Ingest {
    store: Store,
    rules: Arc<Rules>,
    /// Built once from `rules`: the header pass asks it about every mail.
    prefilter: Arc<Prefilter>,
    operators: Arc<Vec<String>>,
    clock: Clock,
    outbox_ready: Arc<tokio::sync::Notify>,
}

impl Ingest {
    pub fn new(store: Store, config: &Config, clock: Clock) -> Ingest {
        Ingest {
            store,
            rules: Arc::new(config.rules.clone()),
            prefilter: Arc::new(Prefilter::new(&config.rules)),
            operators: Arc::new(config.reminders.operators.clone()),
            clock,
            outbox_ready: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn prefilter(&self) -> &Prefilter {
        &self.prefilter
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Our own messages `keys`, seen in a watched folder by the header pass: delivered.
    pub fn confirm_delivered(&self, keys: &[String]) -> anyhow::Result<()> {
        for key in keys {
            self.store.confirm_delivered(key, self.clock.now())?;
        }
        Ok(())
    }

    /// Notified whenever a committed mail queued something in the outbox.
    pub fn outbox_ready(&self) -> Arc<tokio::sync::Notify> {
        self.outbox_ready.clone()
    }

    pub fn cursor(&self, account: &str, folder: &str) -> anyhow::Result<Option<Cursor>> {
        self.store.cursor(account, folder)
    }

    /// Classify and apply one mail; advances the cursor when `source` has a UID.
    pub fn apply(&self, source: &MailSource, raw: &[u8]) -> anyhow::Result<(Classified, Applied)> {
        let classified = mail::classify(raw, &self.rules);
        let applied = self.apply_classified(source, &classified)?;
        Ok((classified, applied))
    }

    pub fn apply_classified(&self, source: &MailSource, mail: &Classified) -> anyhow::Result<Applied> {
        let applied = self.store.apply_mail(mail, source, &self.rules, &self.operators, self.clock.now())?;
        if !applied.enqueued.is_empty() {
            self.outbox_ready.notify_one();
        }
        Ok(applied)
    }

    /// Advance a folder's cursor past a mail that needed no body.
    pub fn skip(&self, account: &str, folder: &str, uid_validity: u32, uid: u32) -> anyhow::Result<()> {
        self.store.advance_cursor(account, folder, Cursor::at(uid_validity, uid))
    }

    /// A first sync or rescan of `folder` sets out to read up to `newest`: a new cursor before
    /// its first mail that remembers the back-fill (see [`Cursor::backfill_to`]).
    pub fn begin_backfill(&self, account: &str, folder: &str, uid_validity: u32, newest: u32) -> anyhow::Result<()> {
        self.store.advance_cursor(account, folder, Cursor { uid_validity, last_uid: 0, backfill_to: Some(newest) })
    }

    pub async fn flush(&self) -> anyhow::Result<()> {
        self.store.flush().await
    }
}

/// The role a folder name suggests (SPEC §6): the same names the IMAP side recognises, for
/// `import-mail --folder NAME` and for servers without SPECIAL-USE. `name` is already decoded
/// from modified UTF-7.
pub fn role_from_name(name: &str) -> FolderRole {
    let lower = name.to_lowercase();
    // The last hierarchy level decides ("[Gmail]/Spam", "INBOX.Junk", "INBOX/스팸메일함").
    let leaf = lower.rsplit(['/', '.']).next().unwrap_or(&lower).trim();
    if lower == "inbox" || leaf == "inbox" || leaf == "받은편지함" || leaf == "받은메일함" {
        return FolderRole::Inbox;
    }
    const JUNK: [&str; 8] = ["junk", "spam", "스팸", "정크", "bulk", "불량메일", "광고메일", "유해메일"];
    const SENT: [&str; 6] = ["sent", "보낸", "발신", "outbox", "envoy", "gesendet"];
    if JUNK.iter().any(|w| leaf.contains(w)) {
        FolderRole::Junk
    } else if SENT.iter().any(|w| leaf.contains(w)) {
        FolderRole::Sent
    } else {
        FolderRole::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_give_roles() {
        let table = [
            ("INBOX", FolderRole::Inbox),
            ("Junk", FolderRole::Junk),
            ("Spam", FolderRole::Junk),
            ("[Gmail]/Spam", FolderRole::Junk),
            ("스팸메일함", FolderRole::Junk),
            ("스팸편지함", FolderRole::Junk),
            ("정크 메일", FolderRole::Junk),
            ("INBOX.Junk", FolderRole::Junk),
            ("Sent", FolderRole::Sent),
            ("Sent Items", FolderRole::Sent),
            ("보낸메일함", FolderRole::Sent),
            ("보낸편지함", FolderRole::Sent),
            ("[Gmail]/Sent Mail", FolderRole::Sent),
            ("Archive", FolderRole::Other),
        ];
        for (name, role) in table {
            assert_eq!(role_from_name(name), role, "{name}");
        }
    }
}
