//! The SMTP side: one lettre `AsyncSmtpTransport` built from `[smtp]` and reused (it pools its
//! connections), every send bounded by `smtp.timeout`, and every failure sorted into
//! [`SendError::Transient`] (retry with backoff) or [`SendError::Permanent`] (give up after a few
//! tries) with a message that names the server and the likely fix. Never logs the password.

use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Context};
use lettre::message::Message;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

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

/// Delivery through `[smtp]`.
pub struct SmtpDeliver {
    /// The transport, and with OAuth the access token it was built with (rebuilt when the token
    /// is refreshed: lettre keeps credentials per transport).
    transport: tokio::sync::Mutex<(AsyncSmtpTransport<Tokio1Executor>, Option<String>)>,
    /// Everything but the credentials, to rebuild it.
    builder: lettre::transport::smtp::AsyncSmtpTransportBuilder,
    /// `auth = "oauth2"`: the user and the account whose tokens AUTH XOAUTH2 uses.
    oauth: Option<(String, std::sync::Arc<crate::auth::TokenSource>)>,
    host: String,
    port: u16,
    tls: TlsMode,
    timeout: Duration,
}

impl SmtpDeliver {
    /// Build the transport once (reads `ca_file` and the password now, so a missing file is
    /// reported at start-up). Must be called inside a tokio runtime (the pool spawns a task).
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
        let tls = match smtp.tls {
            TlsMode::Implicit => Tls::Wrapper(tls_parameters()?),
            TlsMode::Starttls => Tls::Required(tls_parameters()?),
            TlsMode::None => {
                // The configuration refuses this already; keep the promise here too.
                if !is_loopback(&host) && !smtp.allow_insecure {
                    bail!(
                        "smtp.tls = \"none\" would send mail and password in clear to {host}; \
                         use \"starttls\" or \"implicit\", or set smtp.allow_insecure = true"
                    );
                }
                Tls::None
            }
        };
        let base = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(smtp.timeout))
            .pool_config(PoolConfig::new().max_size(2).idle_timeout(Duration::from_secs(60)));
        let mut oauth = None;
        let transport = match (smtp.auth, &smtp.username) {
            (crate::config::AuthMethod::Oauth2, user) => {
                let Some(source) = tokens else {
                    bail!("smtp.auth = \"oauth2\" needs smtp.oauth2_account naming an account with auth = \"oauth2\"");
                };
                let user = user.clone().unwrap_or_default();
                oauth = Some((user, source));
                // Built with a token at the first send.
                base.clone().build()
            }
            (_, Some(user)) => {
                let password = match &smtp.password {
                    Some(p) => p.reveal().context("smtp.password")?,
                    None => bail!("smtp.username is set but smtp.password is not; AUTH needs both"),
                };
                base.clone().credentials(Credentials::new(user.clone(), password)).build()
            }
            (_, None) => base.clone().build(),
        };
        Ok(SmtpDeliver {
            transport: tokio::sync::Mutex::new((transport, None)),
            builder: base,
            oauth,
            host,
            port: smtp.port,
            tls: smtp.tls,
            timeout: smtp.timeout,
        })
    }

    /// The transport to send with: with OAuth, one carrying a valid access token (`fresh`: a
    /// newly refreshed one, after the server refused the held one).
    async fn transport(&self, fresh: bool) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
        let mut held = self.transport.lock().await;
        let Some((user, source)) = &self.oauth else { return Ok(held.0.clone()) };
        // Not signed in or revoked: the reminder waits in the outbox for `oauth login` rather
        // than being given up (the account's alert tells the operators).
        let token = source.access_token(fresh).await.map_err(|e| SendError::Transient(e.to_string()))?;
        if held.1.as_deref() != Some(token.as_str()) {
            let t = self
                .builder
                .clone()
                .credentials(Credentials::new(user.clone(), token.clone()))
                .authentication(vec![lettre::transport::smtp::authentication::Mechanism::Xoauth2])
                .build();
            *held = (t, Some(token));
        }
        Ok(held.0.clone())
    }

    /// Connect and say EHLO (and AUTH), for `check-config --connect`.
    pub async fn test_connection(&self) -> anyhow::Result<()> {
        let transport = self.transport(false).await.map_err(|e| anyhow::anyhow!(e.to_string()))?;
        match tokio::time::timeout(self.timeout, transport.test_connection()).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => bail!("{}:{} did not answer NOOP", self.host, self.port),
            Ok(Err(e)) => Err(anyhow::anyhow!(self.classify(&e).to_string())),
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
        let transport = self.transport(fresh).await.map_err(|e| (e, false))?;
        // lettre's timeout covers connecting; this bounds the whole exchange (AUTH, DATA, QUIT).
        match tokio::time::timeout(self.timeout, transport.send(message.clone())).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(e)) => {
                // A refused token: 535, or — Dovecot and Gmail answer XOAUTH2 with a JSON error
                // challenge (334) that lettre's mechanism cannot answer — a client error about it.
                let auth_refused = e.status().is_some_and(|c| c.to_string().starts_with("53"))
                    || (self.oauth.is_some() && e.is_client() && e.to_string().contains("challenge"));
                Err((self.classify(&e), auth_refused))
            }
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
