//! The two real IMAP servers of the mail stack, behind one face, so the tests that matter run
//! against both (SPEC §6: every server that follows RFC 3501 / 9051):
//!
//! | | Dovecot | Cyrus |
//! |---|---|---|
//! | namespace | `INBOX`, `Junk`, `Sent` (separator `/`) | `INBOX`, `INBOX.Junk`, `INBOX.Sent` (separator `.`) |
//! | special-use | `\Junk`, `\Sent` | `\junk`, `\sent` (lower case) |
//! | mail arrives by | Postfix → LMTP, Sieve files spam into Junk | APPEND (no MTA in front) |
//! | users | passwd-file | sasldb (`scripts/mailstack add-cyrus-user`) |

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Dovecot,
    Cyrus,
}

impl Server {
    /// A new user nobody else uses, on this server.
    pub fn fresh_user(self, tag: &str) -> String {
        match self {
            Server::Dovecot => fresh_user(tag, false),
            Server::Cyrus => {
                static N: AtomicU32 = AtomicU32::new(0);
                let n = N.fetch_add(1, Ordering::SeqCst);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                let user = format!("{}-{}-{n}-{nanos}@example.test", tag.to_lowercase(), std::process::id());
                stack();
                mailstack_ok(&["add-cyrus-user", &user]);
                user
            }
        }
    }

    /// The `[[accounts]]` TOML for a user of this server.
    pub fn account_toml(self, name: &str, user: &str, tls: Tls, extra: &str) -> String {
        match self {
            Server::Dovecot => account_toml(name, user, tls, extra),
            Server::Cyrus => {
                let s = stack();
                let (mode, port) = match tls {
                    Tls::Implicit => ("implicit", s.cyrus_imaps_port),
                    Tls::Starttls => ("starttls", s.cyrus_imap_port),
                    Tls::None => ("none", s.cyrus_imap_port),
                };
                format!(
                    "\n[[accounts]]\nname = \"{name}\"\nhost = \"{host}\"\nport = {port}\ntls = \"{mode}\"\nca_file = \"{ca}\"\nusername = \"{user}\"\npassword = {{ value = \"{pw}\" }}\n{extra}\n",
                    host = s.host,
                    ca = s.ca_file.display(),
                    pw = s.password,
                )
            }
        }
    }

    pub fn account(self, name: &str, user: &str, tls: Tls, extra: &str) -> Account {
        let c = config(&std::env::temp_dir(), &self.account_toml(name, user, tls, extra));
        c.accounts.into_iter().next().expect("one account")
    }

    /// The junk and sent folders' wire names, and the hierarchy separator.
    pub fn junk(self) -> &'static str {
        match self {
            Server::Dovecot => "Junk",
            Server::Cyrus => "INBOX.Junk",
        }
    }

    pub fn sent(self) -> &'static str {
        match self {
            Server::Dovecot => "Sent",
            Server::Cyrus => "INBOX.Sent",
        }
    }

    /// A wire name for a new top-level personal folder.
    pub fn folder(self, utf7_leaf: &str) -> String {
        match self {
            Server::Dovecot => utf7_leaf.to_owned(),
            Server::Cyrus => format!("INBOX.{utf7_leaf}"),
        }
    }

    pub async fn login(self, user: &str) -> Connection {
        let a = self.account("helper", user, Tls::Starttls, "");
        connect(&a).await.unwrap_or_else(|e| panic!("login as {user} on {self:?}: {e}"))
    }

    pub async fn append(self, user: &str, folder_raw: &str, raw: &[u8], flags: Option<&str>) {
        let mut conn = self.login(user).await;
        conn.session
            .append(folder_raw, flags, None, raw)
            .await
            .unwrap_or_else(|e| panic!("APPEND to {folder_raw}: {e}"));
        conn.logout().await;
    }

    pub async fn create(self, user: &str, folder_raw: &str) {
        let mut conn = self.login(user).await;
        conn.session.create(folder_raw).await.unwrap_or_else(|e| panic!("CREATE {folder_raw}: {e}"));
        conn.logout().await;
    }

    /// A mail that the server's spam filing puts into the junk folder: through Postfix and
    /// Sieve on Dovecot, by APPEND on Cyrus (no MTA in front of it here).
    pub async fn deliver_spam(self, user: &str, raw_with_spam_header: &[u8]) {
        match self {
            Server::Dovecot => {
                smtp_deliver("contract@hectofinancial.co.kr", user, raw_with_spam_header).await;
                wait_for_mail(user, "Junk", 1).await;
            }
            Server::Cyrus => self.append(user, self.junk(), raw_with_spam_header, None).await,
        }
    }

    /// A mail delivered to INBOX, as an MTA would (Postfix on Dovecot, APPEND on Cyrus).
    pub async fn deliver(self, from: &str, user: &str, raw: &[u8]) {
        match self {
            Server::Dovecot => smtp_deliver(from, user, raw).await,
            Server::Cyrus => self.append(user, "INBOX", raw, None).await,
        }
    }

    /// `UID → flags` of every mail in a folder (via EXAMINE, so looking changes nothing).
    pub async fn flags(self, user: &str, folder_raw: &str) -> std::collections::BTreeMap<u32, Vec<String>> {
        use futures::TryStreamExt;
        let mut conn = self.login(user).await;
        conn.session.examine(folder_raw).await.expect("EXAMINE");
        let fetches: Vec<_> =
            conn.session.uid_fetch("1:*", "(UID FLAGS)").await.expect("FETCH").try_collect().await.expect("FETCH");
        let mut out = std::collections::BTreeMap::new();
        for f in &fetches {
            if let Some(uid) = f.uid {
                let mut v: Vec<String> = f.flags().map(|fl| format!("{fl:?}")).collect();
                v.sort();
                out.insert(uid, v);
            }
        }
        conn.logout().await;
        out
    }

    /// Stop or start this server (`scripts/mailstack stop-cyrus`, …).
    pub fn stop(self) {
        mailstack_ok(&[match self {
            Server::Dovecot => "stop-dovecot",
            Server::Cyrus => "stop-cyrus",
        }]);
    }

    pub fn start(self) {
        mailstack_ok(&[match self {
            Server::Dovecot => "start-dovecot",
            Server::Cyrus => "start-cyrus",
        }]);
    }
}
