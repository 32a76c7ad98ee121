//! `[http] listen` (issue 11): `/healthz`, `/metrics` parsed by a real Prometheus parser (Python's
//! `prometheus_client`), and the status page rendered by headless Chromium, whose DOM is checked.
//! The real binary against the real mail stack.

mod daemon_support;
mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use daemon_support::{eventually, Daemon};
use support::{account_toml, fresh_user, Tls};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One HTTP/1.1 GET: (status, headers, body).
fn get(port: u16, path: &str, headers: &[&str]) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    // Small bodies without chunking when the length is known; undo chunked encoding otherwise.
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    (status, head.to_owned(), body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// Parse with `prometheus_client.parser` (Debian's python3-prometheus-client); returns one
/// `name{labels} value` line per sample, labels sorted. A malformed exposition raises.
fn parse_prometheus(text: &str) -> Vec<String> {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{fam.type} {s.name}{{{labels}}} {s.value}")
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (scripts/test installs python3-prometheus-client)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

/// Headless Chromium (Debian's `chromium`): the DOM after the page rendered.
fn chromium_dom(url: &str) -> String {
    let out = chromium(&["--dump-dom", url]);
    String::from_utf8(out).unwrap()
}

fn chromium(args: &[&str]) -> Vec<u8> {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--lang=ko-KR"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium (scripts/test installs it)");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn screenshot(url: &str, path: &Path, size: &str) {
    chromium(&[&format!("--screenshot={}", path.display()), &format!("--window-size={size}"), url]);
    let png = std::fs::read(path).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let (w, h) =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    let want: Vec<u32> = size.split(',').map(|x| x.parse().unwrap()).collect();
    assert_eq!((w, h), (want[0], want[1]), "screenshot size");
}

fn import(d: &Daemon, folder: &str, name: &str, raw: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(name);
    std::fs::write(&f, raw).unwrap();
    let o = d.cli(&["import-mail", "--account", "contracts", "--folder", folder, f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn healthz_metrics_and_the_status_page_in_a_real_browser() {
    let user = fresh_user("http", false);
    let port = free_port();
    let dead = free_port();
    let config = format!(
        "{}[[accounts]]\nname = \"dead\"\nhost = \"127.0.0.1\"\nport = {dead}\ntls = \"none\"\nusername = \"x@example.test\"\npassword = {{ value = \"x\" }}\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n",
        account_toml("contracts", &user, Tls::Starttls, "poll_interval = \"1s\""),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &config, &[]);
    d.wait_ready();
    d.add_merchant("acme", "주식회사 에이씨미 <Pay> & Co", &user, Some("2026-11-02"));
    d.add_merchant("beta", "베타상점", "beta@example.test", None);
    import(&d, "Junk", "guidance.eml", &support::guidance_mail(&user, &support::message_id("http"), &[]));
    assert_eq!(d.cli(&["merchant", "pause", "beta", "--note", "on hold"]).status.code(), Some(0));

    // /healthz: 503 naming the dead account while it cannot be read.
    eventually(Duration::from_secs(20), "the good account read", || {
        let (code, _, body) = get(port, "/healthz", &[]);
        code == 503 && body.contains("account \"dead\" unreadable") && !body.contains("contracts")
    });

    // /metrics: the Prometheus text format, as a real parser reads it.
    let (code, head, text) = get(port, "/metrics", &[]);
    assert_eq!(code, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4; charset=utf-8"), "{head}");
    let samples = parse_prometheus(&text);
    let has = |line: &str| samples.iter().any(|s| s == line);
    assert!(has("gauge hecto_watch_account_readable{account=\"contracts\"} 1.0"), "{samples:#?}");
    assert!(has("gauge hecto_watch_account_readable{account=\"dead\"} 0.0"), "{samples:#?}");
    assert!(has("gauge hecto_watch_merchants{stage=\"guidance_received\"} 1.0"), "{samples:#?}");
    assert!(has("gauge hecto_watch_merchants{stage=\"applied\"} 1.0"), "{samples:#?}");
    assert!(has("gauge hecto_watch_merchants_found_in_spam{} 1.0"), "{samples:#?}");
    assert!(
        samples.iter().any(|s| s.starts_with(
            "counter hecto_watch_mails_seen_total{account=\"contracts\",folder=\"INBOX\",role=\"inbox\"}"
        )),
        "{samples:#?}"
    );
    assert!(
        samples.iter().any(|s| s.starts_with(
            "gauge hecto_watch_folder_last_success_timestamp_seconds{account=\"contracts\",folder=\"Junk\""
        )),
        "{samples:#?}"
    );
    assert!(
        has("counter hecto_watch_notices_sent_total{kind=\"spam_notice\"} 0.0")
            || samples.iter().any(|s| s.contains("hecto_watch_notices_pending{kind=\"spam_notice\"}")),
        "{samples:#?}"
    );

    // What the passes cost: the empty Sent folder, polled every second on its held
    // connection, costs one round trip (EXAMINE) a pass, the first one included.
    let sent = "account=\"contracts\",folder=\"Sent\",role=\"sent\"";
    let value = |samples: &[String], name: &str| {
        samples.iter().find_map(|s| s.strip_prefix(&format!("{name}{{{sent}}} "))?.parse::<f64>().ok())
    };
    let mut passes = Vec::new();
    eventually(Duration::from_secs(20), "two passes over Sent", || {
        passes = parse_prometheus(&get(port, "/metrics", &[]).2);
        value(&passes, "summary hecto_watch_folder_pass_seconds_count").is_some_and(|n| n >= 2.0)
    });
    let (n, trips, secs) = (
        value(&passes, "summary hecto_watch_folder_pass_seconds_count").unwrap(),
        value(&passes, "counter hecto_watch_folder_pass_round_trips_total").unwrap(),
        value(&passes, "summary hecto_watch_folder_pass_seconds_sum").unwrap(),
    );
    assert!(trips == n && secs > 0.0, "{n} passes, {trips} round trips, {secs} s: {passes:#?}");
    let connections = passes.iter().find_map(|s| s.strip_prefix("counter hecto_watch_imap_connections_total{} "));
    assert!(connections.and_then(|c| c.parse::<f64>().ok()).is_some_and(|c| c >= 3.0), "{passes:#?}");

    // The status page, as headless Chromium rendered it.
    let base = format!("http://127.0.0.1:{port}");
    let dom = chromium_dom(&format!("{base}/"));
    assert!(dom.contains("<html lang=\"ko\">"), "{dom}");
    assert!(dom.contains("data-account=\"dead\" data-state=\"down\""), "the dead account on top: {dom}");
    assert!(dom.contains("data-account=\"contracts\" data-state=\"ok\""), "{dom}");
    assert!(dom.contains("주식회사 에이씨미 &lt;Pay&gt; &amp; Co"), "Korean text, escaped: {dom}");
    assert!(dom.contains("계약안내 수신") && dom.contains("found in spam"), "{dom}");
    assert!(dom.contains("href=\"/merchants/acme\""), "{dom}");
    assert!(dom.contains("<span class=\"badge warn\">paused</span>"), "beta's reminders paused: {dom}");
    let merchant = chromium_dom(&format!("{base}/merchants/acme"));
    assert!(merchant.contains("id=\"timeline\""), "{merchant}");
    assert!(
        merchant.contains("found in spam folder") && merchant.contains("applied → guidance_received"),
        "{merchant}"
    );
    assert!(merchant.contains("[헥토파이낸셜] 전자결제 서비스 계약 안내"), "the evidence's subject: {merchant}");
    assert!(merchant.contains("kind=guidance"), "the rule that matched: {merchant}");
    assert_eq!(get(port, "/merchants/nobody", &[]).0, 404);

    // Screenshots at laptop and phone width (the README shows them).
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"));
    screenshot(&format!("{base}/"), &out.join("status-page.png"), "1280,900");
    screenshot(&format!("{base}/"), &out.join("status-page-phone.png"), "390,844");
    eprintln!("screenshots: {}", out.join("status-page*.png").display());
    d.terminate();
}

#[test]
fn a_token_guards_every_path() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[http]\nlisten = \"127.0.0.1:{port}\"\ntoken = {{ value = \"s3cret-token\" }}\n");
    let d = Daemon::start(dir.path(), &config, &[]);
    d.wait_ready();
    for path in ["/", "/healthz", "/metrics", "/merchants/x"] {
        let (code, head, _) = get(port, path, &[]);
        assert_eq!(code, 401, "{path}");
        assert!(head.to_ascii_lowercase().contains("www-authenticate: bearer"), "{head}");
        assert_eq!(get(port, &format!("{path}?token=wrong"), &[]).0, 401, "{path}");
    }
    assert_eq!(get(port, "/healthz", &["Authorization: Bearer s3cret-token"]).0, 200);
    let (code, _, body) = get(port, "/?token=s3cret-token", &[]);
    assert_eq!(code, 200);
    assert!(body.contains("href=\"/?token=s3cret-token\""), "links keep the token: {body}");
    assert_eq!(get(port, "/healthz", &["Authorization: bearer s3cret-token"]).0, 200, "the scheme is case-insensitive");
    let (_, head, _) = get(port, "/?token=s3cret-token", &[]);
    let head = head.to_ascii_lowercase();
    assert!(head.contains("cache-control: no-store") && head.contains("referrer-policy: no-referrer"), "{head}");
    d.terminate();
}

#[test]
fn a_non_loopback_listen_without_a_token_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[http]\nlisten = \"0.0.0.0:9464\"\n").unwrap();
    let o =
        Command::new(daemon_support::bin()).args(["--config", cfg.to_str().unwrap(), "check-config"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("http.token: required"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
