//! The SMTP side: one connection from `[smtp]`, kept between sends (see [`SmtpDeliver`]), every
//! send bounded by `smtp.timeout`, and every failure sorted into
//! [`SendError::Transient`] (retry with backoff) or [`SendError::Permanent`] (give up after a few
//! tries) with a message that names the server and the likely fix. Never logs the password.

use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Context};
use lettre::message::Message;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio_rustls::rustls;

use crate::config::{is_loopback, Smtp, TlsMode};

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Connection refused or lost, timeout, TLS trouble, a 4xx reply: try again later.
    #[error("{0}")]
    Transient(String),
    /// A 5xx reply or a message the server can never take: a few more tries, then give up.
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Permanent(_))
    }
}

/// Something that delivers a built message: SMTP in production, a recorder in unit tests.
pub trait Deliver: Send + Sync + 'static {
    fn deliver(&self, message: &Message) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// Delivery through `[smtp]`: one connection, kept between sends (SMTP allows any number of
/// transactions on one), opened again when the server has closed it.
///
/// The connection is ours, not lettre's pooled transport's, for one reason: TCP_NODELAY. lettre
/// writes the final "." of a message as a small write right after the body; with Nagle's
/// algorithm it waits for the server's delayed ACK of the body (40 ms on Linux). The server
/// only accepts the message once the "." is there, but the kernel sends what was written even
/// when we crash — so those 40 ms were a window in which a crash delivered the message without
/// our record of it (scripts/bench-kill-sending measured 34 duplicates in 50 kills).
pub struct SmtpDeliver {
    /// The open connection, and with OAuth the access token it authenticated with.
    held: tokio::sync::Mutex<Option<(AsyncSmtpConnection, Option<String>)>>,
    /// Implicit TLS: our handshake before the greeting. STARTTLS: lettre's, after EHLO.
    implicit: Option<std::sync::Arc<rustls::ClientConfig>>,
    starttls: Option<TlsParameters>,
    /// Password AUTH.
    credentials: Option<Credentials>,
    /// `auth = "oauth2"`: the user and the account whose tokens AUTH XOAUTH2 uses.
    oauth: Option<(String, std::sync::Arc<crate::auth::TokenSource>)>,
    hello: ClientId,
    host: String,
    port: u16,
    tls: TlsMode,
    timeout: Duration,
}

/// A TLS stream as lettre's connection takes it.
#[derive(Debug)]
struct TlsStream(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for TlsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl SmtpDeliver {
    /// Check and keep everything a connection needs (reads `ca_file` and the password now, so a
    /// missing file is reported at start-up); connects at the first send.
    pub fn new(smtp: &Smtp, tokens: Option<std::sync::Arc<crate::auth::TokenSource>>) -> anyhow::Result<SmtpDeliver> {
        let host = smtp.host.clone();
        let tls_parameters = || -> anyhow::Result<TlsParameters> {
            let mut b = TlsParameters::builder(host.clone());
            if let Some(ca) = &smtp.ca_file {
                let pem = std::fs::read(ca).with_context(|| format!("smtp.ca_file: cannot read {}", ca.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| anyhow::anyhow!("smtp.ca_file: {} is not a PEM certificate: {e}", ca.display()))?;
                b = b.add_root_certificate(cert);
            }
            b.build().map_err(|e| anyhow::anyhow!("cannot set up TLS for {host}: {e}"))
        };
        let (implicit, starttls) = match smtp.tls {
            TlsMode::Implicit => (Some(implicit_tls_config(smtp.ca_file.as_deref())?), None),
            TlsMode::Starttls => (None, Some(tls_parameters()?)),
            TlsMode::None => {
                // The configuration refuses this already; keep the promise here too.
                if !is_loopback(&host) && !smtp.allow_insecure {
                    bail!(
                        "smtp.tls = \"none\" would send mail and password in clear to {host}; \
                         use \"starttls\" or \"implicit\", or set smtp.allow_insecure = true"
                    );
                }
                (None, None)
            }
        };
        let mut oauth = None;
        let mut credentials = None;
        match (smtp.auth, &smtp.username) {
            (crate::config::AuthMethod::Oauth2, user) => {
                let Some(source) = tokens else {
                    bail!("smtp.auth = \"oauth2\" needs smtp.oauth2_account naming an account with auth = \"oauth2\"");
                };
                oauth = Some((user.clone().unwrap_or_default(), source));
            }
            (_, Some(user)) => {
                let password = match &smtp.password {
                    Some(p) => p.reveal().context("smtp.password")?,
                    None => bail!("smtp.username is set but smtp.password is not; AUTH needs both"),
                };
                credentials = Some(Credentials::new(user.clone(), password));
            }
            (_, None) => {}
        }
        let hello = ClientId::default();
        Ok(SmtpDeliver {
            held: tokio::sync::Mutex::new(None),
            implicit,
            starttls,
            credentials,
            oauth,
            hello,
            host,
            port: smtp.port,
            tls: smtp.tls,
            timeout: smtp.timeout,
        })
    }

    fn at(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Connect, secure, greet and authenticate (with `token` under OAuth). The error says
    /// whether the server refused the credentials (see [`SmtpDeliver::auth_failed`]).
    async fn connect(&self, token: Option<&str>) -> Result<AsyncSmtpConnection, (SendError, bool)> {
        let at = self.at();
        let unreachable = |e: &dyn std::fmt::Display| {
            SendError::Transient(format!(
                "cannot deliver through {at}: {e} — is the SMTP server running, and is smtp.tls = \"{}\" right for \
                 port {}?",
                tls_word(self.tls),
                self.port
            ))
        };
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| (unreachable(&e), false))?;
        // See the type's comment: the final "." goes out at once, not after the server's ACK.
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn AsyncTokioStream> = match &self.implicit {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(|e| {
                    (SendError::Transient(format!("{:?} is not a valid server name: {e}", self.host)), false)
                })?;
                let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.map_err(|e| {
                    let why = format!(
                        "TLS with {at} failed: {e} — does smtp.tls match the port ({}), and is the server's CA \
                         trusted (smtp.ca_file)?",
                        tls_hint(self.tls)
                    );
                    (SendError::Transient(why), false)
                })?;
                Box::new(TlsStream(tls))
            }
            None => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(|e| (self.classify(&e), false))?;
        if let Some(params) = &self.starttls {
            if let Err(e) = conn.starttls(params.clone(), &self.hello).await {
                conn.abort().await;
                return Err((self.classify(&e), false));
            }
        }
        let auth = match (&self.oauth, token, &self.credentials) {
            (Some((user, _)), Some(token), _) => {
                Some((Credentials::new(user.clone(), token.to_owned()), &[Mechanism::Xoauth2][..]))
            }
            (None, _, Some(c)) => Some((c.clone(), &[Mechanism::Plain, Mechanism::Login][..])),
            _ => None,
        };
        if let Some((credentials, mechanisms)) = auth {
            if let Err(e) = conn.auth(mechanisms, &credentials).await {
                conn.abort().await;
                return Err(self.auth_failed(&e));
            }
        }
        Ok(conn)
    }

    /// A failed AUTH, and whether the server refused the credentials: 535, or — Dovecot and
    /// Gmail answer XOAUTH2 with a JSON error challenge (334) that lettre's mechanism cannot
    /// answer — a client error about it. With OAuth a refused token is transient: a refresh may
    /// cure it, else the message waits in the outbox for `oauth login` (the account's alert tells
    /// the operators).
    fn auth_failed(&self, e: &lettre::transport::smtp::Error) -> (SendError, bool) {
        let refused = e.status().is_some_and(|c| c.to_string().starts_with("53"))
            || (self.oauth.is_some() && e.is_client() && e.to_string().contains("challenge"));
        let err = match self.classify(e) {
            SendError::Permanent(m) if self.oauth.is_some() && refused => SendError::Transient(format!(
                "{m} — the OAuth access token was refused; `hecto-watch oauth status` tells whether a new \
                 `oauth login` is needed"
            )),
            other => other,
        };
        (err, refused)
    }

    /// The connection to send on: the one held if the server still answers, else a new one
    /// (`fresh`: with a newly refreshed OAuth token, after the server refused the held one).
    async fn connection(&self, fresh: bool) -> Result<(AsyncSmtpConnection, Option<String>), (SendError, bool)> {
        let token = match &self.oauth {
            // Not signed in or revoked: the reminder waits in the outbox for `oauth login` rather
            // than being given up (the account's alert tells the operators).
            Some((_, source)) => {
                Some(source.access_token(fresh).await.map_err(|e| (SendError::Transient(e.to_string()), false))?)
            }
            None => None,
        };
        let held = self.held.lock().await.take();
        if let Some((mut conn, held_token)) = held {
            // A connection a NAT dropped silently would hold the NOOP for all of smtp.timeout.
            let alive = held_token == token
                && tokio::time::timeout(Duration::from_secs(5), conn.test_connected()).await.unwrap_or(false);
            if alive {
                return Ok((conn, held_token));
            }
            conn.abort().await;
        }
        Ok((self.connect(token.as_deref()).await?, token))
    }

    /// Connect and say EHLO (and AUTH), for `check-config --connect`.
    pub async fn test_connection(&self) -> anyhow::Result<()> {
        match tokio::time::timeout(self.timeout, self.connection(false)).await {
            Ok(Ok((mut conn, _))) => {
                let _ = conn.quit().await;
                Ok(())
            }
            Ok(Err((e, _))) => Err(anyhow::anyhow!(e.to_string())),
            Err(_) => Err(anyhow::anyhow!(self.timed_out().to_string())),
        }
    }

    fn timed_out(&self) -> SendError {
        SendError::Transient(format!(
            "sending through {}:{} took longer than smtp.timeout ({}s) — is the server reachable, \
             and does smtp.tls match the port ({})?",
            self.host,
            self.port,
            self.timeout.as_secs(),
            tls_hint(self.tls)
        ))
    }

    /// Sort a lettre error into transient/permanent with advice.
    fn classify(&self, e: &lettre::transport::smtp::Error) -> SendError {
        let at = format!("{}:{}", self.host, self.port);
        let detail = error_chain(e);
        if e.is_permanent() {
            let code = e.status().map(|c| c.to_string()).unwrap_or_default();
            let advice = if code.starts_with("53") {
                " — check smtp.username and smtp.password"
            } else if code.starts_with("55") {
                " — the server refuses this sender or a recipient; check smtp.from and the addresses"
            } else {
                ""
            };
            return SendError::Permanent(format!("{at} rejected the message: {detail}{advice}"));
        }
        if e.is_transient() {
            return SendError::Transient(format!("{at} refused the message for now: {detail}"));
        }
        if e.is_timeout() {
            return SendError::Transient(format!("{at} timed out: {detail} — is the server reachable?"));
        }
        if e.is_tls() {
            return SendError::Transient(format!(
                "TLS with {at} failed: {detail} — does smtp.tls match the port ({}), and is the \
                 server's CA trusted (smtp.ca_file)?",
                tls_hint(self.tls)
            ));
        }
        if e.is_client() && (e.to_string().contains("STARTTLS") || e.to_string().contains("authentication mechanism")) {
            // No STARTTLS, or none of our AUTH mechanisms, offered right now: never sent in clear
            // or unauthenticated, but not given up on either (a misconfigured moment, or someone
            // stripping STARTTLS on the way).
            return SendError::Transient(format!(
                "cannot send through {at} safely: {detail} — check smtp.tls and the server's STARTTLS and AUTH"
            ));
        }
        if e.is_client() {
            // Our own message cannot be sent as built (e.g. no recipients): retrying won't help.
            return SendError::Permanent(format!("cannot send through {at}: {detail}"));
        }
        SendError::Transient(format!(
            "cannot deliver through {at}: {detail} — is the SMTP server running, and is \
             smtp.tls = \"{}\" right for port {}?",
            tls_word(self.tls),
            self.port
        ))
    }
}

/// Implicit TLS: the bundled Mozilla roots, the system's store (which lettre uses for STARTTLS)
/// and `smtp.ca_file`.
fn implicit_tls_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("smtp.ca_file: cannot read {}", path.display()))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert =
                cert.map_err(|e| anyhow::anyhow!("smtp.ca_file: {} is not a PEM certificate: {e}", path.display()))?;
            roots.add(cert).map_err(|e| anyhow::anyhow!("smtp.ca_file: {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            bail!("smtp.ca_file: {} holds no PEM certificate", path.display());
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

fn tls_word(t: TlsMode) -> &'static str {
    match t {
        TlsMode::Implicit => "implicit",
        TlsMode::Starttls => "starttls",
        TlsMode::None => "none",
    }
}

fn tls_hint(t: TlsMode) -> &'static str {
    match t {
        TlsMode::Implicit => "implicit TLS is usually port 465",
        TlsMode::Starttls => "STARTTLS is usually port 587",
        TlsMode::None => "plain SMTP, loopback only",
    }
}

/// `error: source: source…` on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl SmtpDeliver {
    async fn send_once(&self, message: &Message, fresh: bool) -> Result<(), (SendError, bool)> {
        let envelope = message.envelope().clone();
        let bytes = message.formatted();
        let exchange = async {
            let (mut conn, token) = self.connection(fresh).await?;
            match conn.send(&envelope, &bytes).await {
                Ok(_response) => {
                    // Kept for the next message.
                    *self.held.lock().await = Some((conn, token));
                    Ok(())
                }
                Err(e) => {
                    conn.abort().await;
                    // A refused token: 535, or — Dovecot and Gmail answer XOAUTH2 with a JSON
                    // error challenge (334) that lettre's mechanism cannot answer — a client error.
                    let auth_refused = e.status().is_some_and(|c| c.to_string().starts_with("53"))
                        || (self.oauth.is_some() && e.is_client() && e.to_string().contains("challenge"));
                    Err((self.classify(&e), auth_refused))
                }
            }
        };
        // Bounds the whole exchange: connect, TLS, AUTH, DATA.
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err((self.timed_out(), false)),
        }
    }
}

impl Deliver for SmtpDeliver {
    async fn deliver(&self, message: &Message) -> Result<(), SendError> {
        match self.send_once(message, false).await {
            Ok(()) => Ok(()),
            // The held access token was refused (expired early, revoked): once more with a new one.
            Err((_, true)) if self.oauth.is_some() => self.send_once(message, true).await.map_err(|(e, _)| e),
            Err((e, _)) => Err(e),
        }
    }
}
