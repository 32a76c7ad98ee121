//! Connecting and logging in: TCP → TLS (implicit or STARTTLS; plain only on loopback or with
//! `allow_insecure`) → greeting → AUTHENTICATE PLAIN or LOGIN → CAPABILITY.
//!
//! Every step has a deadline, and every failure names the host, the port and the likely fix
//! (lldap-style advice: a TLS mismatch says which `tls =` setting was probably meant). The
//! password is read from its [`Secret`](crate::config::Secret) at each connect and never logged.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_imap::imap_proto::{Response, Status};
use async_imap::types::Capabilities;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;
use tracing::{debug, info_span, Instrument};

use super::transport::{Counted, Timed, Transport};
use crate::config::{is_loopback, Account, AuthMethod, TlsMode};
use crate::health::Trouble;

/// The stream type of every session.
pub type ImapStream = Timed<Transport>;
/// A logged-in IMAP session.
pub type Session = async_imap::Session<ImapStream>;
type Client = async_imap::Client<ImapStream>;

/// TCP connect, including name resolution.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// TLS handshake.
pub const TLS_TIMEOUT: Duration = Duration::from_secs(20);
/// The server's greeting after connect (and after STARTTLS's OK).
pub const GREETING_TIMEOUT: Duration = Duration::from_secs(20);
/// Any single read or write on an established session (not a whole command: a long FETCH that
/// keeps streaming is fine). IDLE lifts it and uses its own timeout.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// LOGIN/AUTHENTICATE (servers delay failed logins on purpose; Dovecot up to 15 s).
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(45);
/// LOGOUT is a courtesy: never wait long for it.
pub const LOGOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server can do, from CAPABILITY after login.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub idle: bool,
    /// RFC 6851 `UID MOVE`.
    pub move_: bool,
    /// RFC 4315 `UID EXPUNGE` (and COPYUID).
    pub uidplus: bool,
    /// RFC 6154 attributes in LIST.
    pub special_use: bool,
    /// RFC 4959: AUTHENTICATE with the initial response on the command line (one round trip).
    pub sasl_ir: bool,
    /// RFC 5819: LIST … RETURN (STATUS …), every folder's counters with the listing.
    pub list_status: bool,
}

impl Caps {
    fn from_capabilities(c: &Capabilities) -> Caps {
        Caps::from_names(c.iter().map(|c| match c {
            async_imap::types::Capability::Imap4rev1 => "IMAP4rev1".to_owned(),
            async_imap::types::Capability::Auth(m) => format!("AUTH={m}"),
            async_imap::types::Capability::Atom(a) => a.clone(),
        }))
    }

    fn from_names(names: impl IntoIterator<Item = String>) -> Caps {
        let mut caps = Caps::default();
        for name in names {
            match name.to_ascii_uppercase().as_str() {
                "IDLE" => caps.idle = true,
                "MOVE" => caps.move_ = true,
                "UIDPLUS" => caps.uidplus = true,
                "SPECIAL-USE" => caps.special_use = true,
                "SASL-IR" => caps.sasl_ir = true,
                "LIST-STATUS" => caps.list_status = true,
                _ => {}
            }
        }
        caps
    }
}

/// A logged-in session and what the server can do.
pub struct Connection {
    pub session: Session,
    pub caps: Caps,
    /// An `EXISTS` or `RECENT` came while a command ran: seen by [`fast_fetch`](super::fast_fetch)
    /// or [`Connection::run_checked`], or drained from async-imap's unsolicited responses by
    /// [`Connection::note_unsolicited`].
    pub announced: bool,
    /// This connection's round trips so far ([`Counted`]).
    pub(crate) trips: Arc<AtomicU64>,
    /// Completions of pipelined commands that came while another command's answer was read,
    /// kept for their own [`Connection::finish`]: a server may run pipelined commands at once
    /// and complete them in any order (RFC 3501 §5.5). Dovecot and Cyrus complete in order.
    pub(crate) early: Vec<(String, Completed)>,
}

/// How a command ended (its tagged response), kept until its reader asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completed {
    Ok(String),
    No(String),
    Bad(String),
    Other(String),
}

impl Completed {
    fn into_result(self) -> Result<(), async_imap::error::Error> {
        use async_imap::error::Error;
        match self {
            Completed::Ok(_) => Ok(()),
            Completed::No(text) => Err(Error::No(text)),
            Completed::Bad(text) => Err(Error::Bad(text)),
            Completed::Other(text) => Err(Error::Io(io::Error::other(text))),
        }
    }
}

/// Early completions kept at most: only the commands of one pipeline are ever in flight.
const EARLY_KEPT: usize = 32;

impl Connection {
    /// The round trips this connection has waited for so far.
    pub fn round_trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// Go through what async-imap set aside while commands ran: `EXISTS`/`RECENT` set
    /// [`Connection::announced`], and `* OK [ALERT] …` texts are logged (RFC 3501 §7.1: an alert
    /// must reach a person). The rest (EXPUNGE, FETCH FLAGS) is of no use to a reader by UID.
    pub fn note_unsolicited(&mut self) {
        use async_imap::types::UnsolicitedResponse;
        while let Ok(r) = self.session.unsolicited_responses.try_recv() {
            match r {
                UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_) => self.announced = true,
                UnsolicitedResponse::Other(data) => log_alert(data.parsed()),
                _ => {}
            }
        }
    }

    /// Run `command` to its tagged completion, handing every untagged response to `each`; a NO
    /// or BAD completion is an error with the server's words. async-imap's own FETCH, SEARCH,
    /// STORE, EXPUNGE and LIST streams end at the tagged response without looking at it, so a
    /// refusal (`NO [UNAVAILABLE]`) would read like an OK with nothing in it — "no mail there",
    /// "no other mail is \Deleted", "no junk folder" (SPEC §6: never). `EXISTS`/`RECENT` set
    /// [`Connection::announced`] and ALERTs are logged, as [`Connection::note_unsolicited`] does.
    pub async fn run_checked(
        &mut self,
        command: impl AsRef<str>,
        each: impl FnMut(&Response<'_>),
    ) -> Result<(), async_imap::error::Error> {
        let tag = self.send(command).await?;
        self.finish(&tag, each).await
    }

    /// The completion of `tag` if it came while another command's answer was read.
    pub(crate) fn take_early(&mut self, tag: &str) -> Option<Completed> {
        let i = self.early.iter().position(|(t, _)| t == tag)?;
        Some(self.early.remove(i).1)
    }

    /// Keep the completion of `tag`, read before its own reader asked (see `early`).
    pub(crate) fn keep_early(&mut self, tag: String, completed: Completed) {
        if self.early.len() == EARLY_KEPT {
            self.early.remove(0);
        }
        self.early.push((tag, completed));
    }

    /// Send `command` without waiting for its answer (pipelining, RFC 3501 §5.5: several
    /// commands in flight answer in one round trip); read it with [`Connection::finish`], in
    /// the order sent.
    pub async fn send(
        &mut self,
        command: impl AsRef<str>,
    ) -> Result<async_imap::imap_proto::RequestId, async_imap::error::Error> {
        self.session.run_command(command).await
    }

    /// Read the answer of a command [`Connection::send`] sent, as [`Connection::run_checked`]
    /// does. Whatever comes before its completion is handed to `each`, so commands sent after it
    /// must not be ones whose untagged answers `each` could take for its own.
    pub async fn finish(
        &mut self,
        tag: &async_imap::imap_proto::RequestId,
        each: impl FnMut(&Response<'_>),
    ) -> Result<(), async_imap::error::Error> {
        self.finish_inner(tag, each, false).await
    }

    /// `EXAMINE` sent with [`Connection::send`], read: the folder's state as SELECT/EXAMINE
    /// tell it (RFC 3501 §6.3.1). Its EXISTS is the folder's size, not news.
    pub async fn finish_examine(
        &mut self,
        tag: &async_imap::imap_proto::RequestId,
    ) -> Result<async_imap::types::Mailbox, async_imap::error::Error> {
        use async_imap::imap_proto::{MailboxDatum, ResponseCode};
        let mut mbox = async_imap::types::Mailbox::default();
        self.finish_inner(
            tag,
            |r| match r {
                Response::MailboxData(MailboxDatum::Exists(n)) => mbox.exists = *n,
                Response::MailboxData(MailboxDatum::Recent(n)) => mbox.recent = *n,
                Response::Data { status: Status::Ok, outcome } => match outcome.code {
                    Some(ResponseCode::UidValidity(v)) => mbox.uid_validity = Some(v),
                    Some(ResponseCode::UidNext(n)) => mbox.uid_next = Some(n),
                    Some(ResponseCode::HighestModSeq(m)) => mbox.highest_modseq = Some(m),
                    Some(ResponseCode::Unseen(n)) => mbox.unseen = Some(n),
                    _ => {}
                },
                _ => {}
            },
            true,
        )
        .await?;
        Ok(mbox)
    }

    async fn finish_inner(
        &mut self,
        tag: &async_imap::imap_proto::RequestId,
        mut each: impl FnMut(&Response<'_>),
        selecting: bool,
    ) -> Result<(), async_imap::error::Error> {
        use async_imap::error::Error;
        use async_imap::imap_proto::MailboxDatum;
        let tag = tag.clone();
        if let Some(done) = self.take_early(&tag.0) {
            return done.into_result();
        }
        loop {
            let Some(data) = self.session.read_response().await? else {
                return Err(Error::ConnectionLost);
            };
            match data.parsed() {
                Response::Done { tag: done, status, outcome } => {
                    let code = outcome.code.as_ref().map(|c| format!("[{c:?}] ")).unwrap_or_default();
                    let text = format!("{code}{}", outcome.information.as_deref().unwrap_or(""));
                    let completed = match status {
                        Status::Ok => Completed::Ok(text),
                        Status::No => Completed::No(text),
                        Status::Bad => Completed::Bad(text),
                        other => Completed::Other(format!("{other:?} {text}")),
                    };
                    if *done == tag {
                        return completed.into_result();
                    }
                    // A command sent after ours completed first: its reader will ask.
                    self.keep_early(done.0.clone(), completed);
                }
                Response::MailboxData(MailboxDatum::Exists(_) | MailboxDatum::Recent(_)) if !selecting => {
                    self.announced = true
                }
                other => {
                    log_alert(other);
                    each(other);
                }
            }
        }
    }

    /// LOGOUT without waiting for the answer: nothing in it matters (RFC 3501 §6.1.3: BYE,
    /// then OK), and over a distant link waiting would cost a round trip per connection. The
    /// command is written and the TLS session closed (close_notify), bounded by
    /// [`LOGOUT_TIMEOUT`]; the server then ends the session as if it had answered.
    pub async fn logout(mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(LOGOUT_TIMEOUT, async {
            self.session.run_command("LOGOUT").await?;
            self.session.get_mut().shutdown().await?;
            Ok::<(), async_imap::error::Error>(())
        })
        .await;
    }
}

/// `* OK [ALERT] …` (or NO/BAD) reaches a person through the log (RFC 3501 §7.1).
fn log_alert(r: &Response<'_>) {
    use async_imap::imap_proto::ResponseCode;
    if let Response::Data { outcome, .. } = r {
        if matches!(outcome.code, Some(ResponseCode::Alert)) {
            tracing::warn!(alert = %outcome.information.as_deref().unwrap_or(""), "The IMAP server says");
        }
    }
}

/// Why a connection could not be made. Display texts are the messages operators see.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("refusing to send the password for account {account:?} in clear text to {endpoint}: use tls = \"starttls\" or \"implicit\", or set allow_insecure = true")]
    Insecure { account: String, endpoint: String },
    #[error("cannot read the IMAP password of account {account:?}: {reason}")]
    Password { account: String, reason: String },
    #[error("cannot use ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot connect to {endpoint}: {reason}{hint}")]
    Connect { endpoint: String, reason: String, hint: String },
    #[error("cannot connect to {endpoint} with TLS: {reason}{hint}")]
    Tls { endpoint: String, reason: String, hint: String },
    #[error("no IMAP greeting from {endpoint}: {reason}{hint}")]
    Greeting { endpoint: String, reason: String, hint: String },
    #[error("{endpoint} refused STARTTLS ({reason}) — the server may only offer implicit TLS (tls = \"implicit\", port 993)")]
    StartTls { endpoint: String, reason: String },
    #[error("login as {user:?} at {endpoint} failed: {reason} — check username and password")]
    Auth { endpoint: String, user: String, reason: String },
    #[error("{endpoint}: {what} failed: {reason}")]
    Protocol { endpoint: String, what: &'static str, reason: String },
    /// No access token: the grant is gone, not signed in yet, or the provider is unreachable.
    #[error("{reason}")]
    OAuth { reason: String, revoked: bool, configuration: bool },
}

impl ConnectError {
    fn oauth(e: &crate::auth::AuthError) -> ConnectError {
        ConnectError::OAuth { reason: e.to_string(), revoked: e.is_revoked(), configuration: e.is_configuration() }
    }

    /// The kind of trouble, for `health` and the operator alert's likely fix.
    pub fn trouble(&self) -> Trouble {
        match self {
            ConnectError::OAuth { revoked: true, .. } => Trouble::OauthRevoked,
            ConnectError::OAuth { configuration: true, .. } => Trouble::Configuration,
            ConnectError::OAuth { .. } => Trouble::Unreachable,
            ConnectError::Insecure { .. }
            | ConnectError::Password { .. }
            | ConnectError::CaFile { .. }
            | ConnectError::StartTls { .. } => Trouble::Configuration,
            ConnectError::Auth { .. } => Trouble::LoginRefused,
            ConnectError::Tls { reason, .. } => {
                // rustls: `invalid peer certificate: NotValidForName` (0.23.0–0.23.17) or
                // `… certificate not valid for name "x"; certificate is only valid for …`.
                let r = reason.to_ascii_lowercase();
                if r.contains("notvalidforname") || r.contains("not valid for name") {
                    Trouble::TlsName
                } else if r.contains("certificate") {
                    Trouble::TlsTrust
                } else {
                    Trouble::Unreachable
                }
            }
            ConnectError::Connect { .. } | ConnectError::Greeting { .. } | ConnectError::Protocol { .. } => {
                Trouble::Unreachable
            }
        }
    }

    /// A mistake in the configuration rather than a network problem: retrying soon won't help.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            ConnectError::Insecure { .. }
                | ConnectError::Password { .. }
                | ConnectError::CaFile { .. }
                | ConnectError::Auth { .. }
                | ConnectError::OAuth { configuration: true, .. }
        )
    }
}

/// The TLS client configuration: Mozilla's roots (webpki-roots) plus the account's `ca_file`.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, ConnectError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let ca_err = |reason: String| ConnectError::CaFile { path: path.display().to_string(), reason };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| ca_err(format!("not a PEM certificate: {e}")))?;
            roots.add(cert).map_err(|e| ca_err(format!("not a usable CA certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(ca_err("contains no PEM certificate".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls { endpoint: String::new(), reason: e.to_string(), hint: String::new() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Connect, secure, greet and log in to one account's server.
pub async fn connect(account: &Account) -> Result<Connection, ConnectError> {
    let endpoint = format!("{}:{}", account.host, account.port);
    let span = info_span!("connect", account = %account.name, endpoint = %endpoint);
    connect_inner(account, endpoint).instrument(span).await
}

async fn connect_inner(account: &Account, endpoint: String) -> Result<Connection, ConnectError> {
    if account.tls == TlsMode::None && !account.allow_insecure && !is_loopback(&account.host) {
        return Err(ConnectError::Insecure { account: account.name.clone(), endpoint });
    }
    // Read the secret first: a missing credential is a configuration error, not a network one.
    // With OAuth, the access token (refreshed if need be) before any connection: a revoked grant
    // will not be fixed by the server.
    let credential = match (account.auth, &account.tokens) {
        (AuthMethod::Oauth2, Some(source)) => {
            let token = source.access_token(false).await.map_err(|e| ConnectError::oauth(&e))?;
            Credential::Token(source.clone(), token)
        }
        (AuthMethod::Oauth2, None) => {
            return Err(ConnectError::Password {
                account: account.name.clone(),
                reason: "auth = \"oauth2\" but no token store is attached (a bug: report it)".into(),
            })
        }
        (AuthMethod::Password, _) => Credential::Password(
            account
                .password
                .as_ref()
                .ok_or_else(|| ConnectError::Password {
                    account: account.name.clone(),
                    reason: "no password configured".into(),
                })?
                .reveal()
                .map_err(|e| ConnectError::Password { account: account.name.clone(), reason: format!("{e:#}") })?,
        ),
    };
    let tls = match account.tls {
        TlsMode::None => None,
        _ => Some(tls_config(account.ca_file.as_deref())?),
    };

    let tcp = tcp_connect(account, &endpoint).await?;
    let trips = tcp.trips();
    // The capabilities the greeting carries (`* OK [CAPABILITY …]`, as Dovecot and Cyrus send
    // it) spare a CAPABILITY round trip before login; after STARTTLS they no longer count
    // (RFC 3501 §6.2.1).
    let (client, greeted) = match account.tls {
        TlsMode::Implicit => {
            let stream = tls_handshake(tls.clone(), account, &endpoint, tcp).await?;
            let mut client = Client::new(Timed::new(stream, IO_TIMEOUT));
            let greeted = read_greeting(&mut client, account, &endpoint).await?;
            (client, greeted)
        }
        TlsMode::Starttls => {
            let mut client = Client::new(Timed::new(Transport::Plain(tcp), IO_TIMEOUT));
            read_greeting(&mut client, account, &endpoint).await?;
            match tokio::time::timeout(GREETING_TIMEOUT, client.run_command_and_check_ok("STARTTLS", None)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(ConnectError::StartTls { endpoint, reason: e.to_string() }),
                Err(_) => return Err(ConnectError::StartTls { endpoint, reason: "no answer".into() }),
            }
            // After the tagged OK the server sends nothing until our ClientHello, so the
            // client's read buffer is empty and the raw socket can be taken back.
            let Transport::Plain(tcp) = client.into_inner().into_inner() else {
                return Err(ConnectError::Protocol {
                    endpoint,
                    what: "STARTTLS",
                    reason: "the connection was already encrypted".into(),
                });
            };
            let stream = tls_handshake(tls.clone(), account, &endpoint, tcp).await?;
            (Client::new(Timed::new(stream, IO_TIMEOUT)), None)
        }
        TlsMode::None => {
            let mut client = Client::new(Timed::new(Transport::Plain(tcp), IO_TIMEOUT));
            let greeted = read_greeting(&mut client, account, &endpoint).await?;
            (client, greeted)
        }
    };

    let (mut session, told) = match &credential {
        Credential::Password(password) => login(client, greeted, account, password, &endpoint).await?,
        Credential::Token(source, token) => {
            let sasl_ir = match &greeted {
                Some(names) => Caps::from_names(names.iter().cloned()).sasl_ir,
                None => false,
            };
            (login_with_token(client, sasl_ir, account, source, token, &endpoint).await?, None)
        }
    };
    drop(credential);
    // Most servers tell their capabilities in the login's OK (`OK [CAPABILITY …] Logged in`);
    // only the others are asked.
    let caps = match told {
        Some(caps) => caps,
        None => match tokio::time::timeout(IO_TIMEOUT, session.capabilities()).await {
            Ok(Ok(c)) => Caps::from_capabilities(&c),
            Ok(Err(e)) => return Err(ConnectError::Protocol { endpoint, what: "CAPABILITY", reason: e.to_string() }),
            Err(_) => return Err(ConnectError::Protocol { endpoint, what: "CAPABILITY", reason: "no answer".into() }),
        },
    };
    let round_trips = trips.load(Ordering::Relaxed);
    super::transport::RoundTrips::logged_in(round_trips);
    debug!(
        idle = caps.idle,
        r#move = caps.move_,
        uidplus = caps.uidplus,
        special_use = caps.special_use,
        list_status = caps.list_status,
        round_trips,
        "Logged in"
    );
    Ok(Connection { session, caps, announced: false, trips, early: Vec::new() })
}

async fn tcp_connect(account: &Account, endpoint: &str) -> Result<Counted<TcpStream>, ConnectError> {
    let err = |reason: String, hint: String| ConnectError::Connect { endpoint: endpoint.to_owned(), reason, hint };
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((account.host.as_str(), account.port))).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            let s = Counted::new(s);
            s.count_one(); // SYN, SYN-ACK
            Ok(s)
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Err(err(
            "connection refused".into(),
            format!(" — is the IMAP server running, and is {} its {} port?", account.port, tls_word(account.tls)),
        )),
        Ok(Err(e)) => Err(err(e.to_string(), dns_hint(&e, &account.host))),
        Err(_) => Err(err(
            format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            " — is a firewall dropping the connection, or is the host/port wrong?".into(),
        )),
    }
}

fn tls_word(tls: TlsMode) -> &'static str {
    match tls {
        TlsMode::Implicit => "implicit-TLS (IMAPS)",
        TlsMode::Starttls | TlsMode::None => "IMAP",
    }
}

fn dns_hint(e: &io::Error, host: &str) -> String {
    let text = e.to_string();
    if text.contains("failed to lookup") || text.contains("Name or service not known") {
        format!(" — cannot resolve {host}; check the host name")
    } else {
        String::new()
    }
}

async fn tls_handshake(
    config: Option<Arc<rustls::ClientConfig>>,
    account: &Account,
    endpoint: &str,
    tcp: Counted<TcpStream>,
) -> Result<Transport, ConnectError> {
    let tls_err = |reason: String, hint: String| ConnectError::Tls { endpoint: endpoint.to_owned(), reason, hint };
    let Some(config) = config else {
        return Err(tls_err("no TLS configuration".into(), String::new()));
    };
    let name = rustls::pki_types::ServerName::try_from(account.host.clone())
        .map_err(|e| tls_err(format!("{:?} is not a valid server name: {e}", account.host), String::new()))?;
    let connector = TlsConnector::from(config);
    match tokio::time::timeout(TLS_TIMEOUT, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(Transport::Tls(Box::new(s))),
        Ok(Err(e)) => {
            let (reason, hint) = explain_tls_error(&e, account);
            Err(tls_err(reason, hint))
        }
        Err(_) => Err(tls_err(
            format!("no TLS handshake within {} s", TLS_TIMEOUT.as_secs()),
            if account.tls == TlsMode::Implicit {
                " — is `tls = \"starttls\"` with port 143 what you meant?".into()
            } else {
                String::new()
            },
        )),
    }
}

/// Turn a rustls failure into what happened and what to change.
fn explain_tls_error(e: &io::Error, account: &Account) -> (String, String) {
    let rustls_err = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_err {
        Some(rustls::Error::InvalidMessage(_)) => (
            "the server did not answer in TLS".into(),
            if account.tls == TlsMode::Implicit {
                " — is `tls = \"starttls\"` with port 143 what you meant?".into()
            } else {
                String::new()
            },
        ),
        Some(rustls::Error::InvalidCertificate(cert)) => {
            use rustls::CertificateError as C;
            let hint = match cert {
                C::UnknownIssuer | C::BadSignature => {
                    " — the certificate is not signed by a trusted CA; if the server uses its own CA, set ca_file to that CA's PEM file".to_owned()
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                    " — the certificate is not valid for {:?}; use the host name it was issued for",
                    account.host
                ),
                C::Expired | C::ExpiredContext { .. } => {
                    " — the server's certificate has expired".to_owned()
                }
                _ => String::new(),
            };
            (format!("invalid certificate: {cert:?}"), hint)
        }
        Some(other) => (other.to_string(), String::new()),
        None if e.kind() == io::ErrorKind::UnexpectedEof => (
            "the server closed the connection during the TLS handshake".into(),
            if account.tls == TlsMode::Implicit {
                " — is `tls = \"starttls\"` with port 143 what you meant?".into()
            } else {
                String::new()
            },
        ),
        None => (e.to_string(), String::new()),
    }
}

/// Read the greeting; the capabilities it names, if any.
async fn read_greeting(
    client: &mut Client,
    account: &Account,
    endpoint: &str,
) -> Result<Option<Vec<String>>, ConnectError> {
    let err = |reason: String| ConnectError::Greeting {
        endpoint: endpoint.to_owned(),
        reason,
        hint: if account.tls != TlsMode::Implicit && account.port == 993 {
            " — port 993 speaks implicit TLS; is `tls = \"implicit\"` what you meant?".into()
        } else {
            String::new()
        },
    };
    match tokio::time::timeout(GREETING_TIMEOUT, client.read_response()).await {
        Err(_) => Err(err(format!("nothing within {} s", GREETING_TIMEOUT.as_secs()))),
        Ok(Err(e)) => Err(err(e.to_string())),
        Ok(Ok(None)) => Err(err("the server closed the connection".into())),
        Ok(Ok(Some(resp))) => match resp.parsed() {
            Response::Data { status: Status::Ok | Status::PreAuth, outcome } => Ok(match &outcome.code {
                Some(async_imap::imap_proto::ResponseCode::Capabilities(list)) => {
                    Some(list.iter().map(capability_name).collect())
                }
                _ => None,
            }),
            Response::Data { status: Status::Bye, outcome } => {
                Err(err(format!("the server said BYE: {}", outcome.information.as_deref().unwrap_or(""))))
            }
            _ => Err(err("unexpected first line (not an IMAP server?)".into())),
        },
    }
}

/// CAPABILITY before login. async-imap's `Client` has no such call, so run the command and pick
/// the untagged `* CAPABILITY` line out of the unsolicited responses. Empty when it fails (then
/// LOGIN is tried, which every server without LOGINDISABLED accepts).
async fn pre_auth_capabilities(client: &mut Client) -> Vec<String> {
    let (tx, rx) = async_channel::bounded(16);
    let ok = tokio::time::timeout(IO_TIMEOUT, client.run_command_and_check_ok("CAPABILITY", Some(tx))).await;
    if !matches!(ok, Ok(Ok(()))) {
        return Vec::new();
    }
    let mut caps = Vec::new();
    while let Ok(r) = rx.try_recv() {
        if let async_imap::types::UnsolicitedResponse::Other(data) = r {
            if let Response::Capabilities(list) = data.parsed() {
                caps.extend(list.iter().map(capability_name));
            }
        }
    }
    caps
}

fn capability_name(c: &async_imap::imap_proto::Capability<'_>) -> String {
    use async_imap::imap_proto::Capability;
    match c {
        Capability::Imap4rev1 => "IMAP4rev1".to_owned(),
        Capability::Auth(m) => format!("AUTH={m}"),
        Capability::Atom(a) => a.to_string(),
    }
}

/// What an account logs in with.
enum Credential {
    Password(String),
    /// The access token in hand, and where a fresh one comes from.
    Token(std::sync::Arc<crate::auth::TokenSource>, String),
}

/// AUTHENTICATE XOAUTH2 / OAUTHBEARER with the token in hand; if the server refuses it (it may
/// have expired early, or been revoked), once more with a freshly refreshed one.
async fn login_with_token(
    client: Client,
    sasl_ir: bool,
    account: &Account,
    source: &crate::auth::TokenSource,
    token: &str,
    endpoint: &str,
) -> Result<Session, ConnectError> {
    use crate::auth::sasl::TokenAuth;
    let mechanism = source.mechanism();
    let name = TokenAuth::name(mechanism);
    let attempt = |client: Client, token: String| async move {
        let mut auth = TokenAuth::new(mechanism, &account.username, &account.host, account.port, &token);
        // SASL-IR (RFC 4959): the token on the command line, one round trip instead of two. A
        // challenge that still comes is the server's error, answered as without SASL-IR.
        let command = match sasl_ir {
            true => format!("{name} {}", base64_encode(&auth.take_initial_response())),
            false => name.to_owned(),
        };
        let r = tokio::time::timeout(AUTH_TIMEOUT, client.authenticate(command, &mut auth)).await;
        (r, auth.error)
    };
    let refused = |text: &str, challenge: Option<String>| ConnectError::Auth {
        endpoint: endpoint.to_owned(),
        user: account.username.clone(),
        reason: match challenge {
            // The server's JSON error says why ({"status":"invalid_token"}); it holds no token.
            Some(c) => format!("{} (the server said {c})", text.trim()),
            None => text.trim().to_owned(),
        },
    };
    // One attempt's outcome: logged in, refused (with the connection back, for a retry), or any
    // other trouble (a temporary RFC 5530 code, a broken connection, no answer).
    enum Failed {
        Refused { client: Box<Client>, text: String, challenge: Option<String> },
        Other(ConnectError),
    }
    type Attempt =
        (Result<Result<Session, (async_imap::error::Error, Client)>, tokio::time::error::Elapsed>, Option<String>);
    let outcome = |(r, challenge): Attempt| -> Result<Session, Failed> {
        let other = |reason: String| {
            Failed::Other(ConnectError::Protocol { endpoint: endpoint.to_owned(), what: "login", reason })
        };
        match r {
            Ok(Ok(s)) => Ok(s),
            Ok(Err((async_imap::error::Error::No(t) | async_imap::error::Error::Bad(t), _))) if temporary(&t) => {
                Err(other(t.trim().to_owned()))
            }
            Ok(Err((async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text), client))) => {
                Err(Failed::Refused { client: Box::new(client), text, challenge })
            }
            Ok(Err((e, _))) => Err(other(e.to_string())),
            Err(_) => Err(other(format!("no answer within {} s", AUTH_TIMEOUT.as_secs()))),
        }
    };
    match outcome(attempt(client, token.to_owned()).await) {
        Ok(s) => Ok(s),
        Err(Failed::Other(e)) => Err(e),
        Err(Failed::Refused { client, text, challenge }) => {
            debug!(mechanism = name, reason = %text.trim(), "Token refused; refreshing it once");
            let fresh = source.access_token(true).await.map_err(|e| ConnectError::oauth(&e))?;
            match outcome(attempt(*client, fresh).await) {
                Ok(s) => Ok(s),
                Err(Failed::Other(e)) => Err(e),
                Err(Failed::Refused { text, challenge: again, .. }) => Err(refused(&text, again.or(challenge))),
            }
        }
    }
}

/// RFC 5530 codes of a login the server could not check now: its trouble, not a refusal.
fn temporary(text: &str) -> bool {
    ["[UNAVAILABLE]", "[SERVERBUG]", "[INUSE]", "[LIMIT]"].iter().any(|c| text.contains(c))
}

/// SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`, base64 by async-imap.
struct PlainAuth<'a> {
    user: &'a str,
    password: &'a str,
}

impl PlainAuth<'_> {
    fn message(&self) -> Vec<u8> {
        let mut r = Vec::with_capacity(self.user.len() + self.password.len() + 2);
        r.push(0);
        r.extend_from_slice(self.user.as_bytes());
        r.push(0);
        r.extend_from_slice(self.password.as_bytes());
        r
    }
}

impl async_imap::Authenticator for PlainAuth<'_> {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        self.message()
    }
}

/// Log in with the password: LOGIN where the server allows it and the password is ASCII (one
/// round trip, and the server's OK names its capabilities: no CAPABILITY after it), else SASL
/// PLAIN (8-bit-safe), with the initial response on the command line where the server has
/// SASL-IR. The capabilities before login come from the greeting when it named them (`greeted`),
/// else from CAPABILITY. Returns the capabilities the server told with its OK, if it did.
async fn login(
    mut client: Client,
    greeted: Option<Vec<String>>,
    account: &Account,
    password: &str,
    endpoint: &str,
) -> Result<(Session, Option<Caps>), ConnectError> {
    let auth_err =
        |reason: String| ConnectError::Auth { endpoint: endpoint.to_owned(), user: account.username.clone(), reason };
    let caps = match greeted {
        Some(caps) => caps,
        None => pre_auth_capabilities(&mut client).await,
    };
    let has = |name: &str| caps.iter().any(|c| c.eq_ignore_ascii_case(name));
    let plain = has("AUTH=PLAIN");
    let login_disabled = has("LOGINDISABLED");
    // LOGIN's quoted strings are 7-bit (RFC 3501 §4.3); a password beyond ASCII goes by PLAIN.
    let ascii = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
    let by_login = !login_disabled && ascii(password) && ascii(&account.username);
    let attempt = async {
        if by_login {
            client.login_with_capabilities(&account.username, password).await.map_err(|(e, _)| e)
        } else if plain {
            let auth = PlainAuth { user: &account.username, password };
            let command = match has("SASL-IR") {
                true => format!("PLAIN {}", base64_encode(&auth.message())),
                false => "PLAIN".to_owned(),
            };
            client.authenticate(command, auth).await.map(|s| (s, None)).map_err(|(e, _)| e)
        } else {
            Err(async_imap::error::Error::No("the server offers neither LOGIN nor AUTH=PLAIN".into()))
        }
    };
    match tokio::time::timeout(AUTH_TIMEOUT, attempt).await {
        Ok(Ok((s, told))) => Ok((s, told.map(|c| Caps::from_capabilities(&c)))),
        // RFC 5530: the server cannot check the password now — a passing trouble of the
        // server's, not a refused login (no "wrong password" alert, no long backoff).
        Ok(Err(async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text))) if temporary(&text) => {
            Err(ConnectError::Protocol { endpoint: endpoint.to_owned(), what: "login", reason: text.trim().to_owned() })
        }
        Ok(Err(async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text))) => {
            Err(auth_err(text.trim().to_owned()))
        }
        Ok(Err(e)) => {
            Err(ConnectError::Protocol { endpoint: endpoint.to_owned(), what: "login", reason: e.to_string() })
        }
        // A server that does not answer the login is slow or hung, not refusing the password.
        Err(_) => Err(ConnectError::Protocol {
            endpoint: endpoint.to_owned(),
            what: "login",
            reason: format!("no answer within {} s", AUTH_TIMEOUT.as_secs()),
        }),
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_certificate_errors_are_told_apart() {
        let tls = |e: rustls::Error| {
            let reason = io::Error::new(io::ErrorKind::InvalidData, e).to_string();
            ConnectError::Tls { endpoint: "imap.example.com:993".into(), reason, hint: String::new() }.trouble()
        };
        assert_eq!(tls(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)), Trouble::TlsName);
        assert_eq!(tls(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)), Trouble::TlsTrust);
        assert_eq!(tls(rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)), Trouble::TlsTrust);
        let auth = ConnectError::Auth { endpoint: "e".into(), user: "u".into(), reason: "NO".into() };
        assert_eq!(auth.trouble(), Trouble::LoginRefused);
    }
}
