//! `scan --once` and `folders` through the real binary: a folder that could not be read makes
//! `scan --once` exit 1 naming it (never "0 mails seen" and exit 0, the Courier report), and
//! `folders` shows every folder's role, why and whether it is watched — against the quirk server
//! and the real Cyrus.

mod support;

use std::path::Path;
use std::process::Output;

use support::quirk::{QuirkServer, INBOX_ONLY};
use support::servers::Server;
use support::{guidance_mail, message_id, Tls};

/// Run the binary with a config file holding `accounts` and the store in `dir`.
async fn hw(dir: &Path, accounts: &str, args: &[&str]) -> Output {
    let config = dir.join("config.toml");
    let text = format!("[store]\npath = \"{}\"\n{accounts}", dir.join("state").display());
    std::fs::write(&config, text).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hecto-watch"));
    cmd.arg("--config").arg(&config).args(args).env_remove("HECTO_WATCH_CONFIG");
    cmd.output().await.unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[tokio::test]
async fn scan_once_exits_1_naming_the_folder_it_could_not_read_then_0_when_it_can() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    server.with(|s| {
        s.deliver("INBOX", guidance_mail("m1@corp.example", &message_id("cli"), &[]));
        // Courier's answers, and a header FETCH that answers nothing.
        s.quirks.no_uidnext = true;
        s.quirks.empty_search = true;
        s.quirks.silent_header_fetch = true;
    });
    let dir = tempfile::tempdir().unwrap();
    let accounts = server.account_toml("courier", "");
    let o = hw(dir.path(), &accounts, &["scan", "--once"]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert!(err.contains("\"courier\"") && err.contains("\"INBOX\""), "names the account and folder: {err}");

    server.with(|s| s.quirks.silent_header_fetch = false);
    let o = hw(dir.path(), &accounts, &["scan", "--once"]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    assert!(out.contains("1 mail seen") && out.contains("1 Hecto mail,"), "{out}");
}

#[tokio::test]
async fn folders_shows_every_folder_with_its_role_why_and_whether_it_is_watched() {
    let server = Server::Cyrus;
    let user = server.fresh_user("cli-folders");
    let korean = server.folder(&hecto_watch::imap::utf7::encode("스팸메일함"));
    server.create(&user, &korean).await;
    server.create(&user, &server.folder("Archive")).await;
    let dir = tempfile::tempdir().unwrap();
    let o = hw(dir.path(), &server.account_toml("c", &user, Tls::Implicit, ""), &["folders", "--json"]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let line =
        |name: &str| lines.iter().find(|l| l["folder"] == name).unwrap_or_else(|| panic!("{name} in {out}")).clone();
    let want = |name: &str, role: &str, why: serde_json::Value, watched: bool| {
        let l = line(name);
        assert_eq!((&l["role"], &l["why"], &l["watched"]), (&role.into(), &why, &watched.into()), "{name}: {l}");
    };
    want("INBOX", "inbox", "inbox".into(), true);
    want("INBOX.Junk", "junk", "special-use".into(), true);
    want("INBOX.스팸메일함", "junk", "name".into(), true);
    want("INBOX.Sent", "sent", "special-use".into(), true);
    want("INBOX.Archive", "other", serde_json::Value::Null, false);

    // And as a table for people.
    let o = hw(dir.path(), &server.account_toml("c", &user, Tls::Implicit, ""), &["folders"]).await;
    let (out, _) = text(&o);
    let row = out.lines().find(|l| l.contains("스팸메일함")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("junk") && row.contains("name") && row.contains("yes"), "{row}");
}

/// A configured folder the server does not have cannot be read: `health` says so (exit 1, the
/// folder's error), instead of the account looking fine with the folder silently left out.
#[tokio::test]
async fn a_configured_folder_the_server_lacks_makes_the_account_unreadable() {
    let server = QuirkServer::start(INBOX_ONLY).await;
    let dir = tempfile::tempdir().unwrap();
    let accounts = server.account_toml("shop", "junk = \"스팸메일함\"\n");
    let o = hw(dir.path(), &accounts, &["scan", "--once"]).await;
    let (out, err) = text(&o);
    assert!(err.contains("no such folder"), "stdout: {out}\nstderr: {err}");
    let o = hw(dir.path(), &accounts, &["--json", "health"]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    let h: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(h["state"], "down", "{h}");
    let junk = h["folders"].as_array().unwrap().iter().find(|f| f["folder"] == "스팸메일함").cloned();
    let junk = junk.unwrap_or_else(|| panic!("the missing folder has a status: {h}"));
    assert!(junk["last_error"].as_str().unwrap().contains("no such folder"), "{junk}");
    assert_eq!(h["trouble"], "folder");
    assert!(err.contains("the daemon is not running"), "{err}");
}
