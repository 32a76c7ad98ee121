//! The CLI's side of the control socket: one request, one reply, newline-delimited JSON.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::{Envelope, Reply, SOCKET_NAME};

/// Long enough for an export of a big database, short enough that a hung daemon is noticed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// Send `envelope` to a daemon running on `state_dir`, or `None` when no daemon listens there.
pub fn call(state_dir: &Path, envelope: &Envelope) -> anyhow::Result<Option<Reply>> {
    let path = state_dir.join(SOCKET_NAME);
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        // No socket, or a stale one from a daemon that died: nobody holds the database.
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Ok(None)
        }
        Err(e) => return Err(e).with_context(|| format!("cannot connect to the daemon at {}", path.display())),
    };
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut line = serde_json::to_vec(envelope).context("cannot encode the request")?;
    line.push(b'\n');
    writer.write_all(&line).with_context(|| format!("cannot send the request to {}", path.display()))?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .with_context(|| format!("no reply from the daemon at {}", path.display()))?;
    let reply: Reply = serde_json::from_str(&reply).context("the daemon sent an unreadable reply")?;
    Ok(Some(reply))
}
