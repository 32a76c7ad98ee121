//! The daemon's side of the control socket: `control.sock` in the state directory, owner-only,
//! one request per connection, executed on the daemon's own database handle.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Engine, Envelope, Reply, SOCKET_NAME};

/// An import of many large mails is the biggest request; anything past this is refused.
const MAX_REQUEST: usize = 256 * 1024 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// Bind the socket (replacing a stale one) with owner-only permissions.
pub fn bind(state_dir: &Path) -> anyhow::Result<(UnixListener, PathBuf)> {
    let path = state_dir.join(SOCKET_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove the stale socket {}", path.display())),
    }
    let listener = UnixListener::bind(&path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to its owner", path.display()))?;
    Ok((listener, path))
}

/// Serve until cancelled; requests in flight finish (the tracker waits for them).
pub async fn serve(
    listener: std::sync::Arc<UnixListener>,
    engine: Engine,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let engine = engine.clone();
                    tracker.spawn(async move {
                        if let Err(e) = handle(stream, engine).await {
                            tracing::warn!(error = %format!("{e:#}"), "Control request failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot accept on the control socket");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
}

async fn handle(stream: UnixStream, engine: Engine) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
    let mut line = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, reader.read_until(b'\n', &mut line))
        .await
        .context("control request timed out")??;
    let reply = match serde_json::from_slice::<Envelope>(&line) {
        Ok(envelope) => {
            tracing::debug!(op = ?std::mem::discriminant(&envelope.request), "Control request");
            // sled calls block; keep them off the async workers.
            tokio::task::spawn_blocking(move || engine.reply(&envelope)).await.context("control request panicked")?
        }
        Err(e) => Reply::Err { code: 2, message: format!("unreadable control request: {e}") },
    };
    let mut bytes = serde_json::to_vec(&reply).context("cannot encode the reply")?;
    bytes.push(b'\n');
    tokio::time::timeout(IO_TIMEOUT, write.write_all(&bytes)).await.context("control reply timed out")??;
    Ok(())
}
