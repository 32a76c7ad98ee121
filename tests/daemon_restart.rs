//! `hecto-watch run` keeps working when Dovecot restarts underneath it: it reconnects and mail
//! delivered afterwards is processed. A private mail stack, so restarting it disturbs no other test.

mod daemon_support;
mod notify_support;
mod support;

use std::time::Duration;

use daemon_support::{eventually, Daemon};
use lettre::AsyncTransport;

async fn deliver(stack: &notify_support::Stack, to: &str, raw: &[u8]) {
    let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(stack.port("MAILSTACK_SMTP_PORT"))
        .build();
    let envelope = lettre::address::Envelope::new(
        Some("contract@hectofinancial.co.kr".parse().unwrap()),
        vec![to.parse().unwrap()],
    )
    .unwrap();
    transport.send_raw(&envelope, raw).await.expect("SMTP delivery to the private stack");
}

#[test]
fn dovecot_restarted_under_the_daemon_then_later_mail_is_processed() {
    let stack = notify_support::Stack::private("daemon-restart", 21000);
    let user = stack.fresh_user("restart");
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[accounts]]\nname = \"contracts\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"starttls\"\n\
         ca_file = \"{ca}\"\nusername = \"{user}\"\npassword = {{ value = \"{pw}\" }}\npoll_interval = \"1s\"\n",
        port = stack.port("MAILSTACK_IMAP_PORT"),
        ca = stack.ca_file(),
        pw = stack.password(),
    );
    let d = Daemon::start(dir.path(), &config, &[]);
    d.wait_ready();
    d.add_merchant("acme", "에이씨미", &user, None);

    stack.script(&["restart-dovecot"]);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(deliver(&stack, &user, &support::guidance_mail(&user, &support::message_id("restart"), &[])));
    // Reconnect backoff starts at 2 s and doubles; a minute covers several attempts.
    eventually(Duration::from_secs(60), "guidance_received after Dovecot restarted", || {
        d.json(&["status"])[0]["stage"] == "guidance_received"
    });
    let log = d.log_text();
    assert!(log.contains("Connection lost; reconnecting"), "the restart was noticed and survived:\n{log}");
    assert_eq!(d.terminate().0, Some(0));
}
