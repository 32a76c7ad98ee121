//! What a scan costs the network, in round trips (issue 14): counted by the connection itself
//! (`imap::transport::Counted`: a wait for the server after sending), against the real Dovecot and
//! against the scripted server where the point is a server without LIST-STATUS. The counts are
//! process-wide, so this file's tests take turns ([`ONE_AT_A_TIME`]).

mod support;

use hecto_watch::imap::{self, ProgressMode, ScanSummary};
use support::quirk::{QuirkServer, PLAIN, USER};
use support::*;
use tokio_util::sync::CancellationToken;

/// The round-trip counters are the process's: one test at a time counts.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn scan(config: &hecto_watch::config::Config, ingest: &hecto_watch::ingest::Ingest) -> ScanSummary {
    let s = imap::scan_once(config, ingest, &CancellationToken::new(), ProgressMode::Never).await;
    assert!(s.errors.is_empty(), "scan errors: {:?}", s.errors);
    s
}

/// Dovecot names its capabilities in the greeting and in LOGIN's OK, and has LIST-STATUS: a
/// login is TCP, TLS, greeting and LOGIN, and a pass with nothing new is one LIST on one
/// connection, without selecting any folder. New mail in one folder costs that folder alone.
#[tokio::test]
async fn against_dovecot_a_login_takes_four_round_trips_and_nothing_new_one_more_on_one_connection() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let user = fresh_user("rt", false);
    let account = account("rt", &user, Tls::Implicit, "");
    let conn = imap::connect(&account).await.unwrap();
    // TCP, TLS 1.3, greeting, LOGIN: at most four; at least the TCP handshake and one wait for
    // the server (a counter that counts nothing fails here).
    assert!((2..=4).contains(&conn.round_trips()), "TCP, TLS 1.3, greeting, LOGIN: {} round trips", conn.round_trips());
    assert!(conn.caps.list_status && conn.caps.idle, "capabilities from LOGIN's OK: {:?}", conn.caps);
    conn.logout().await;

    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &account_toml("rt", &user, Tls::Implicit, ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m-rt", "m-rt@corp.example");
    append(&user, "INBOX", &plain_mail(&user, &message_id("rt0")), None).await;
    let first = scan(&config, &ingest).await;
    assert_eq!(first.folders, 3, "INBOX, Junk, Sent: {first:?}");

    let quiet = scan(&config, &ingest).await;
    assert_eq!(quiet.cost.connections, 1, "nothing new needs no second connection: {quiet:?}");
    assert!(quiet.cost.login_round_trips >= 2, "the login was counted: {:?}", quiet.cost);
    assert!(
        quiet.cost.round_trips - quiet.cost.login_round_trips <= 1,
        "nothing new: LIST-STATUS alone after login: {:?}",
        quiet.cost
    );
    assert_eq!(quiet.folders, 3, "every folder counts as scanned: {quiet:?}");

    append(&user, "Junk", &guidance_mail("m-rt@corp.example", &message_id("rt1"), &[]), None).await;
    let news = scan(&config, &ingest).await;
    assert_eq!((news.mails.mails_seen, news.mails.hecto_mails, news.mails.found_in_spam), (1, 1, 1), "{news:?}");
    assert!(news.cost.connections <= 2, "{:?}", news.cost);
}

/// A server without LIST-STATUS is asked STATUS for every watched folder, pipelined, and a
/// folder whose counters show nothing new is not selected; one with news is.
#[tokio::test]
async fn without_list_status_pipelined_status_spares_examining_unchanged_folders() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = QuirkServer::start(PLAIN).await;
    server.with(|s| {
        s.deliver("INBOX", plain_mail(USER, &message_id("q0")));
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.account_toml("q", ""));
    let (store, ingest) = ingest(&config);
    add_merchant(&store, "m-q", "m-q@corp.example");
    scan(&config, &ingest).await;
    let before = server.commands().len();

    server.deliver("Junk", guidance_mail("m-q@corp.example", &message_id("q1"), &[]));
    let s = scan(&config, &ingest).await;
    assert_eq!((s.mails.mails_seen, s.mails.found_in_spam), (1, 1), "{s:?}");
    let commands: Vec<String> = server.commands()[before..].to_vec();
    let status = commands.iter().filter(|c| c.starts_with("STATUS")).count();
    assert_eq!(status, 3, "one STATUS per watched folder: {commands:?}");
    let examined: Vec<&String> = commands.iter().filter(|c| c.starts_with("EXAMINE")).collect();
    assert_eq!(examined.len(), 1, "only the folder with news is selected: {commands:?}");
    assert!(examined[0].contains("Junk"), "{commands:?}");
}
