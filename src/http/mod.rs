//! `http`: the read-only status server of `[http] listen` (SPEC §9), on axum over tokio:
//! - `/healthz` — 200 when every account is readable, else 503 with the reason;
//! - `/metrics` — the Prometheus text format ([`metrics`]);
//! - `/` and `/merchants/{id}` — the HTML status page ([`pages`]).
//!
//! Everything is read from the store on each request (on a blocking thread: sled reads are
//! synchronous), so the page says what `status` and `health` say. With `[http] token` every
//! request needs `Authorization: Bearer TOKEN` or `?token=TOKEN` (a browser link); the
//! configuration refuses a non-loopback `listen` without one.

pub mod metrics;
pub mod pages;

use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::control::Engine;
use metrics::Counters;

#[derive(Clone)]
struct AppState {
    engine: Engine,
    counters: Arc<Counters>,
    token: Option<Arc<str>>,
}

/// Bind `[http] listen` now, so a taken port or a bad address stops the start with a clear
/// error instead of failing later in a task. `None` when `[http]` is off.
pub fn bind(engine: &Engine) -> anyhow::Result<Option<(tokio::net::TcpListener, Option<String>)>> {
    let Some(addr) = engine.config.http.listen else { return Ok(None) };
    let token = match &engine.config.http.token {
        Some(t) => Some(t.reveal().context("http.token")?),
        None => None,
    };
    let std = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} ([http] listen): is another process using the port?"))?;
    std.set_nonblocking(true)?;
    Ok(Some((tokio::net::TcpListener::from_std(std)?, token)))
}

/// Serve until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    token: Option<String>,
    engine: Engine,
    counters: Arc<Counters>,
    cancel: CancellationToken,
) {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let state = AppState { engine, counters, token: token.map(Into::into) };
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/", get(index))
        .route("/merchants/{id}", get(merchant))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state);
    tracing::info!(%addr, "Status server listening (/, /healthz, /metrics)");
    let server = axum::serve(listener, app).with_graceful_shutdown(cancel.clone().cancelled_owned());
    // A browser keeps its connection open: graceful shutdown would wait for it, and a SIGHUP's
    // new generation could not bind the port while this one lingers. After a short grace the
    // server (and its listening socket) is dropped.
    let lingering = async {
        cancel.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = server => if let Err(e) = r {
            tracing::error!(%addr, error = %e, "The status server stopped");
        },
        () = lingering => tracing::debug!(%addr, "Closing the status server with connections still open"),
    }
}

/// How long open connections get to finish after a stop or reload.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(serde::Deserialize, Default)]
struct TokenQuery {
    token: Option<String>,
}

/// Whether `given` is the token, in a time that tells neither how much of a guess was right nor
/// the token's length (both sides are hashed first, then compared in constant time).
fn same(given: &str, token: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(token.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(expected) = &state.token {
        // RFC 7235: the scheme name is case-insensitive.
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        let given = bearer.or(q.token.as_deref());
        if !given.is_some_and(|g| same(g, expected)) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a token is needed: Authorization: Bearer TOKEN, or ?token=TOKEN\n",
            )
                .into_response();
        }
    }
    let mut response = next.run(request).await;
    // The pages carry merchants' names and mail subjects, and links may carry `?token=`: keep
    // them out of caches and out of the Referer of any link followed.
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    response
}

/// Run a store read on a blocking thread; a failure is a 500 with its message.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, (StatusCode, String)> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read the database: {e:#}\n"))),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e}\n"))),
    }
}

async fn healthz(State(s): State<AppState>) -> Response {
    let e = s.engine.clone();
    match blocking(move || crate::ops::health(&e.store, &e.config)).await {
        Ok(report) if crate::health::all_readable(&report) => (
            StatusCode::OK,
            format!("ok: {} readable\n", crate::text::count(report.len() as u64, "account", "accounts")),
        )
            .into_response(),
        Ok(report) if report.is_empty() => (StatusCode::OK, "ok: no accounts configured\n").into_response(),
        Ok(report) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", crate::health::trouble_line(&report))).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    let (e, counters) = (s.engine.clone(), s.counters.clone());
    let now = s.engine.ingest.clock().now();
    let text = blocking(move || {
        let health = crate::ops::health(&e.store, &e.config)?;
        let status = crate::ops::status(&e.store, &e.config, &e.calendar, now)?;
        let outbox = e.store.outbox_entries()?;
        Ok(metrics::render(&metrics::Snapshot {
            health: &health,
            status: &status,
            outbox: &outbox,
            counters: &counters,
            round_trips: crate::imap::transport::RoundTrips::now(),
        }))
    })
    .await;
    match text {
        Ok(t) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], t).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The query string links carry on: the token, when the browser came with `?token=`.
fn link_query(q: &TokenQuery) -> String {
    match &q.token {
        Some(t) => format!("?token={}", pages::url_segment(t)),
        None => String::new(),
    }
}

async fn index(State(s): State<AppState>, Query(q): Query<TokenQuery>) -> Response {
    let e = s.engine.clone();
    let now = s.engine.ingest.clock().now();
    let query = link_query(&q);
    let html = blocking(move || {
        let health = crate::ops::health(&e.store, &e.config)?;
        let status = crate::ops::status(&e.store, &e.config, &e.calendar, now)?;
        Ok(pages::index(&health, &status, now, &query))
    })
    .await;
    match html {
        Ok(h) => Html(h).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn merchant(State(s): State<AppState>, Path(id): Path<String>, Query(q): Query<TokenQuery>) -> Response {
    let e = s.engine.clone();
    let now = s.engine.ingest.clock().now();
    let query = link_query(&q);
    let html = blocking(move || {
        if e.store.merchant(&id)?.is_none() {
            return Ok(None);
        }
        let health = crate::ops::health(&e.store, &e.config)?;
        let detail = crate::ops::merchant_show(&e.store, &e.config, &e.calendar, &id)?;
        Ok(Some(pages::merchant(&health, &detail, now, &query)))
    })
    .await;
    match html {
        Ok(Some(h)) => Html(h).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such merchant\n").into_response(),
        Err(e) => e.into_response(),
    }
}
