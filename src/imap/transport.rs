//! The byte stream under an IMAP session: TCP, optionally TLS, with **read and write deadlines**.
//!
//! async-imap has no timeouts of its own (only IDLE takes one), so a server that stops answering
//! mid-FETCH would hang a task forever. Every read or write that stays pending longer than the
//! deadline fails with `TimedOut` instead, which the session reports as a lost connection and the
//! watcher turns into a reconnect. The deadline is per I/O operation, not per command, so a big
//! FETCH that keeps streaming is never cut off. During IDLE the read deadline is lifted (IDLE has
//! its own, shorter-than-29-minutes timeout) and restored after DONE.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::client::TlsStream;

/// Plain TCP (loopback, or after opting in) or TLS over TCP.
pub enum Transport {
    Plain(Counted<TcpStream>),
    Tls(Box<TlsStream<Counted<TcpStream>>>),
}

/// Round trips of every IMAP connection of this process so far (see [`Counted`]).
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

/// Of those, the round trips spent connecting and logging in; and the connections made.
static LOGIN_ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// What every IMAP connection of this process has cost so far, in round trips waited for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoundTrips {
    /// All of them.
    pub round_trips: u64,
    /// Those spent connecting and logging in (TCP, TLS, greeting, login, capabilities).
    pub login_round_trips: u64,
    /// Connections logged in.
    pub connections: u64,
}

impl RoundTrips {
    pub fn now() -> RoundTrips {
        RoundTrips {
            round_trips: ROUND_TRIPS.load(Ordering::Relaxed),
            login_round_trips: LOGIN_ROUND_TRIPS.load(Ordering::Relaxed),
            connections: CONNECTIONS.load(Ordering::Relaxed),
        }
    }

    /// What was spent since `earlier`.
    pub fn since(self, earlier: RoundTrips) -> RoundTrips {
        RoundTrips {
            round_trips: self.round_trips - earlier.round_trips,
            login_round_trips: self.login_round_trips - earlier.login_round_trips,
            connections: self.connections - earlier.connections,
        }
    }

    /// A connection logged in after `trips` round trips.
    pub(crate) fn logged_in(trips: u64) {
        LOGIN_ROUND_TRIPS.fetch_add(trips, Ordering::Relaxed);
        CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// A socket that counts **round trips**: each time the client, having sent something, has to
/// wait for the server's answer (a read that finds nothing yet after a write). That is what a
/// conversation costs on a distant server (SPEC §6: 10–50 ms each), and what pipelining saves:
/// commands written back to back and answered in one flight count once, and a response already
/// on its way when the next command goes out costs no wait. Counted under TLS, so the handshake's
/// flights count too; the TCP handshake is added by whoever connects ([`Counted::count_one`]).
pub struct Counted<S> {
    inner: S,
    wrote: bool,
    trips: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    pub fn new(inner: S) -> Counted<S> {
        Counted { inner, wrote: false, trips: Arc::new(AtomicU64::new(0)) }
    }

    /// This connection's round-trip counter, to read while the stream is owned by the session.
    pub fn trips(&self) -> Arc<AtomicU64> {
        self.trips.clone()
    }

    /// One round trip that happened outside the stream (the TCP handshake).
    pub fn count_one(&self) {
        self.trips.fetch_add(1, Ordering::Relaxed);
        ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_pending() && this.wrote {
            this.wrote = false;
            this.count_one();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote = true;
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Plain(_) => f.write_str("Transport::Plain"),
            Transport::Tls(_) => f.write_str("Transport::Tls"),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A stream whose reads and writes fail with `TimedOut` when pending for longer than a deadline.
pub struct Timed<S> {
    inner: S,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    read_sleep: Option<Pin<Box<Sleep>>>,
    write_sleep: Option<Pin<Box<Sleep>>>,
    /// Bytes already read from the socket that the next reads return first (see [`Timed::unread`]).
    unread: Vec<u8>,
}

impl<S> Timed<S> {
    pub fn new(inner: S, timeout: Duration) -> Timed<S> {
        Timed {
            inner,
            read_timeout: Some(timeout),
            write_timeout: Some(timeout),
            read_sleep: None,
            write_sleep: None,
            unread: Vec::new(),
        }
    }

    /// `None` lifts the read deadline (IDLE); the pending timer, if any, is dropped.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
        self.read_sleep = None;
    }

    /// Give back bytes a reader took from the socket but does not own (what followed the end of
    /// its command): the next reads return them before anything new.
    pub fn unread(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            let mut v = bytes.to_vec();
            v.append(&mut self.unread);
            self.unread = v;
        }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> fmt::Debug for Timed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timed")
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}

fn timed_out(what: &str, after: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the server did not {what} for {} s (connection presumed lost)", after.as_secs()),
    )
}

/// Arms the deadline on the first `Pending`, clears it on progress; `Err` when it expired.
fn poll_deadline(
    sleep: &mut Option<Pin<Box<Sleep>>>,
    timeout: Option<Duration>,
    cx: &mut Context<'_>,
) -> Result<(), Duration> {
    let Some(t) = timeout else {
        return Ok(());
    };
    let s = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
    if s.as_mut().poll(cx).is_ready() {
        *sleep = None;
        return Err(t);
    }
    Ok(())
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.drain(..n);
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_sleep = None;
                Poll::Ready(r)
            }
            Poll::Pending => match poll_deadline(&mut this.read_sleep, this.read_timeout, cx) {
                Ok(()) => Poll::Pending,
                Err(t) => Poll::Ready(Err(timed_out("send anything", t))),
            },
        }
    }
}

impl<S> Timed<S> {
    /// A write or flush that made progress clears the deadline; one still pending runs it.
    fn write_deadline<T>(&mut self, polled: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.write_sleep = None;
                Poll::Ready(r)
            }
            Poll::Pending => match poll_deadline(&mut self.write_sleep, self.write_timeout, cx) {
                Ok(()) => Poll::Pending,
                Err(t) => Poll::Ready(Err(timed_out("accept data", t))),
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.write_deadline(polled, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.write_deadline(polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_the_read() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut timed = Timed::new(client, Duration::from_secs(30));
        server.write_all(b"* OK").await.unwrap();
        let mut buf = [0u8; 4];
        timed.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"* OK");
        // Nothing more comes: with time paused the deadline fires at once, deterministically.
        let err = timed.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn unread_bytes_come_back_before_new_ones() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut timed = Timed::new(client, Duration::from_secs(30));
        server.write_all(b"new").await.unwrap();
        timed.unread(b"lo");
        timed.unread(b"hel");
        let mut buf = [0u8; 8];
        let mut got = Vec::new();
        while got.len() < 8 {
            let n = timed.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"hellonew");
    }

    #[tokio::test(start_paused = true)]
    async fn lifting_the_read_deadline_lets_a_read_wait() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut timed = Timed::new(client, Duration::from_secs(1));
        timed.set_read_timeout(None);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 2];
            timed.read_exact(&mut buf).await.map(|_| buf)
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        server.write_all(b"ok").await.unwrap();
        assert_eq!(&reader.await.unwrap().unwrap(), b"ok");
    }
}
