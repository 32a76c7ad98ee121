//! OAuth 2.0 against real parts (issue 10): Dovecot's `oauth2` passdb checks every token by
//! introspection at the tests' identity provider (`scripts/mailstack.d/idp.py`, started by
//! `scripts/mailstack`), Postfix's SMTP AUTH goes through Dovecot SASL, and the real binary runs
//! `oauth login` (the test plays the user approving the code), `scan --once`, `remind --once`.

mod daemon_support;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::{fresh_user, guidance_mail, message_id, smtp_deliver, stack};

/// The identity provider's base URL.
fn idp() -> String {
    stack();
    let out = Command::new(support::repo_root().join("scripts/mailstack")).arg("env").output().unwrap();
    let env = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = env.lines().find(|l| l.starts_with("export MAILSTACK_IDP_URL=")).expect("MAILSTACK_IDP_URL");
    line.split_once('=').unwrap().1.trim_matches('\'').to_owned()
}

/// POST a form to the identity provider; its JSON answer.
fn idp_post(path: &str, form: &str) -> serde_json::Value {
    let base = idp();
    let hostport = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap()
}

fn idp_stats() -> serde_json::Value {
    let base = idp();
    let hostport = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    s.write_all(format!("GET /stats HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap()
}

/// A config with one OAuth account on the stack's Dovecot and `[smtp]` AUTH XOAUTH2 as the same
/// mailbox through Postfix.
fn write_config(dir: &Path, user: &str, mechanism: &str) -> std::path::PathBuf {
    let s = stack();
    let base = idp();
    let text = format!(
        r#"[store]
path = "{state}"

[[accounts]]
name = "contracts"
host = "{host}"
port = {port}
tls = "starttls"
ca_file = "{ca}"
username = "{user}"
auth = "oauth2"
poll_interval = "1s"

[accounts.oauth2]
provider = "custom"
client_id = "hecto-watch-test"
token_url = "{base}/token"
device_url = "{base}/device"
mechanism = "{mechanism}"
scopes = ["mail"]

[smtp]
host = "{host}"
port = {submission}
tls = "starttls"
ca_file = "{ca}"
username = "{user}"
auth = "oauth2"
oauth2_account = "contracts"
from = "Hecto Watch <{user}>"

[reminders]
operators = []
"#,
        state = dir.join("state").display(),
        host = s.host,
        port = s.imap_port,
        ca = s.ca_file.display(),
        submission = s.submission_port,
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn hw(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hecto-watch"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("HECTO_WATCH_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `oauth login`: read the code it prints, approve it as `user` at the provider, wait for it to end.
fn login(config: &Path, user: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hecto-watch"))
        .arg("--config")
        .arg(config)
        .args(["oauth", "login", "contracts"])
        .env_remove("HECTO_WATCH_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("/verify") && first.contains("enter the code"), "{first}");
    let code = first.split("enter the code ").nth(1).unwrap().split(' ').next().unwrap().to_owned();
    let approved = idp_post("/approve", &format!("user_code={code}&username={user}"));
    assert_eq!(approved["approved"], true, "{approved}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "oauth login failed: {first}{rest}{err}");
    assert!(rest.contains("signed in"), "{rest}");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn device_login_then_scan_and_smtp_with_xoauth2_and_the_token_rotated_on_every_refresh() {
    let user = fresh_user("oauth-x", false);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &user, "xoauth2");
    // Before any login: a clear error naming the fix.
    let o = hw(&config, &["scan", "--once"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("run `hecto-watch oauth login contracts`"), "{}", text(&o));

    login(&config, &user);
    let file = std::fs::read_dir(dir.path().join("state/oauth"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("the token file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600, "owner-only");
    let first_refresh =
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&file).unwrap()).unwrap()["refresh_token"].clone();

    rt().block_on(smtp_deliver(
        "contract@hectofinancial.co.kr",
        &user,
        &guidance_mail(&user, &message_id("oauth"), &[]),
    ));
    rt().block_on(support::wait_for_mail(&user, "INBOX", 1));
    let o = hw(
        &config,
        &["merchant", "add", "--id", "acme", "--name", "에이씨미", "--contact", &user, "--applied-at", "2027-02-05"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Two scans, two processes: each refreshes, the provider rotates the refresh token and the
    // old one stops working — so the second works only if the first kept the new one.
    for _ in 0..2 {
        let o = hw(&config, &["scan", "--once"], &[("RUST_LOG", "trace")]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        // No token in any log line, at the most verbose level.
        // Raw, and as the SASL messages carry it (base64), as a library logging the wire would.
        let stats = idp_stats();
        let all = text(&o);
        for t in stats["issued_access"].as_array().unwrap().iter().chain(stats["issued_refresh"].as_array().unwrap()) {
            let t = t.as_str().unwrap();
            assert!(!all.contains(t), "a token in the output: {all}");
            let sasl = support::b64(&hecto_watch::auth::sasl::xoauth2(&user, t));
            assert!(!all.contains(&sasl[..sasl.len() - 4]), "a SASL message with a token in the output: {all}");
        }
    }
    let stored = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&file).unwrap()).unwrap();
    assert_ne!(stored["refresh_token"], first_refresh, "the rotated refresh token replaced the old one");
    assert!(idp_stats()["refreshes"][&user].as_u64() >= Some(2));
    assert!(idp_stats()["introspections"].as_u64() > Some(0), "Dovecot checked the tokens at the provider");
    let o = hw(&config, &["status", "--json"], &[]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"stage\":\"guidance_received\""), "{}", text(&o));

    // SMTP AUTH XOAUTH2 through Postfix → Dovecot SASL → the provider: a reminder goes out.
    let o = hw(&config, &["merchant", "advance", "acme", "applied", "--at", "2027-02-05T10:00:00+09:00"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = hw(&config, &["remind", "--once", "--now", "2027-02-15T09:00:00+09:00"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("sent"), "{}", text(&o));

    let o = hw(&config, &["--json", "oauth", "status"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(s["state"], "signed_in", "{s}");
}

#[test]
fn oauthbearer_a_refused_token_is_refreshed_once_and_a_revoked_grant_is_a_clear_error_until_a_new_login() {
    let user = fresh_user("oauth-b", false);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &user, "oauthbearer");
    login(&config, &user);
    // In one process (the library, as the daemon does): connect, then the provider kills the
    // access tokens; the next connection's held token is refused, refreshed once, and works.
    let mut cfg = hecto_watch::config::Config::load(&config).unwrap();
    hecto_watch::auth::attach(&mut cfg, &dir.path().join("state"));
    let account = cfg.accounts[0].clone();
    let before = idp_stats()["refreshes"][&user].as_u64().unwrap_or(0);
    rt().block_on(async {
        hecto_watch::imap::list_folders(&account).await.expect("first login");
        idp_post("/expire", &format!("username={user}"));
        hecto_watch::imap::list_folders(&account).await.expect("the refused token is refreshed and the login works");
    });
    assert_eq!(idp_stats()["refreshes"][&user].as_u64().unwrap_or(0), before + 2, "one refresh each");

    // Two processes refreshing at once (the daemon, and `folders` beside it) — two token sources
    // on one file here: each rotation voids the previous refresh token, so without the lock one
    // of them would get invalid_grant and take the grant for revoked.
    let settings = cfg.accounts[0].oauth2.clone().unwrap();
    let state = dir.path().join("state");
    let (a, b) = (
        hecto_watch::auth::TokenSource::new(&state, "contracts", settings.clone()),
        hecto_watch::auth::TokenSource::new(&state, "contracts", settings),
    );
    let (ra, rb) = rt().block_on(async { tokio::join!(a.access_token(true), b.access_token(true)) });
    assert!(ra.is_ok() && rb.is_ok(), "{:?} {:?}", ra.err().map(|e| e.to_string()), rb.err().map(|e| e.to_string()));

    // Revoked at the provider: the error names the fix; health carries it as the trouble.
    idp_post("/revoke", &format!("username={user}"));
    rt().block_on(smtp_deliver(
        "contract@hectofinancial.co.kr",
        &user,
        &guidance_mail(&user, &message_id("revoked"), &[]),
    ));
    rt().block_on(support::wait_for_mail(&user, "INBOX", 1));
    let o = hw(&config, &["scan", "--once"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("revoked or has expired")
            && text(&o).contains("run `hecto-watch oauth login contracts` again"),
        "{}",
        text(&o)
    );
    let o = hw(&config, &["--json", "health"], &[]);
    let h: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!((h["state"].as_str(), h["trouble"].as_str()), (Some("down"), Some("oauth_revoked")), "{h}");
    assert!(h["fix"].as_str().unwrap().contains("oauth login contracts"), "{h}");
    let o = hw(&config, &["oauth", "status"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("revoked"), "{}", text(&o));

    // A new login, and the mail that came meanwhile is read: nothing lost.
    login(&config, &user);
    let o = hw(&config, &["scan", "--once"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 Hecto mail,"), "{}", text(&o));
}

/// The daemon keeps reading while access tokens expire: IDLE goes on on its authenticated
/// connection, and when Dovecot drops every session (`doveadm kick`) the watchers reconnect, their
/// held token is refused, refreshed once, and the next mail is read.
#[test]
fn the_daemon_reads_on_when_the_access_tokens_expire_and_its_sessions_are_dropped() {
    let user = fresh_user("oauth-d", false);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &user, "xoauth2");
    login(&config, &user);
    let text_cfg = std::fs::read_to_string(&config).unwrap();
    let d = daemon_support::Daemon::start(dir.path(), &text_cfg, &[]);
    d.wait_ready();
    d.add_merchant("acme", "에이씨미", &user, None);
    d.add_merchant("beta", "베타", &format!("other-{user}"), None);
    // The access tokens stop working at the provider; the sessions stay logged in.
    idp_post("/expire", &format!("username={user}"));
    rt().block_on(smtp_deliver(
        "contract@hectofinancial.co.kr",
        &user,
        &guidance_mail(&user, &message_id("idle-1"), &[]),
    ));
    daemon_support::eventually(std::time::Duration::from_secs(20), "the mail read over IDLE", || {
        d.json(&["status"]).iter().any(|r| r["id"] == "acme" && r["stage"] == "guidance_received")
    });
    // Every session dropped: reconnecting needs a token, and the held one is dead.
    let before = idp_stats()["refreshes"][&user].as_u64().unwrap_or(0);
    let conf = stack().dir.join("dovecot/dovecot.conf");
    let kick = Command::new("doveadm").arg("-c").arg(&conf).args(["kick", &user]).output().unwrap();
    assert!(kick.status.success(), "{}", String::from_utf8_lossy(&kick.stderr));
    let mail = support::mail(
        "\"헥토파이낸셜\" <contract@hectofinancial.co.kr>",
        &user,
        "[헥토파이낸셜] 구비서류 안내",
        &message_id("idle-2"),
        &[],
        "구비서류를 보내 주세요.",
    );
    rt().block_on(smtp_deliver("contract@hectofinancial.co.kr", &user, &mail));
    daemon_support::eventually(std::time::Duration::from_secs(60), "the mail read after the reconnect", || {
        d.json(&["status"]).iter().any(|r| r["id"] == "acme" && r["stage"] == "contracting")
    });
    assert!(idp_stats()["refreshes"][&user].as_u64().unwrap_or(0) > before, "a fresh token after the refusal");
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
}
