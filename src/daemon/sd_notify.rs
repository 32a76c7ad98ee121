//! The systemd notification protocol (sd_notify(3)), without libsystemd: one datagram per
//! message to `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). Outside systemd
//! (no `$NOTIFY_SOCKET`) every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET").map(|p| p.to_string_lossy().into_owned()) else {
            return Notifier { socket: None };
        };
        match UnixDatagram::unbound() {
            Ok(sock) => Notifier { socket: Some((sock, path)) },
            Err(e) => {
                tracing::warn!(error = %e, "Cannot create the systemd notification socket");
                Notifier { socket: None }
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Send `READY=1`, `WATCHDOG=1`, `STATUS=…`, `STOPPING=1`, `RELOADING=1` (newline-separated).
    pub fn notify(&self, message: &str) {
        let Some((sock, path)) = &self.socket else { return };
        let result = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|addr| sock.send_to_addr(message.as_bytes(), &addr))
        } else {
            sock.send_to(message.as_bytes(), path)
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, socket = %path, "systemd notification not delivered");
        }
    }
}

/// Half of `$WATCHDOG_USEC` (as systemd recommends), when the service has `WatchdogSec=` and the
/// variable is meant for this process (`$WATCHDOG_PID` absent or ours).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_on_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let n = Notifier { socket: Some((UnixDatagram::unbound().unwrap(), path.to_string_lossy().into_owned())) };
        n.notify("READY=1\nSTATUS=ok");
        let mut buf = [0u8; 64];
        let len = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=ok");
    }
}
