//! SMTP down: the reminder stays in the outbox with its error and a persisted retry time, and is
//! delivered exactly once when Postfix is back. Runs on a private mail stack (own directory and
//! ports), so stopping its Postfix disturbs no other test.

mod notify_support;

use notify_support::{expected_message_id, Env, Stack};

#[tokio::test]
async fn postfix_stopped_keeps_the_reminder_queued_with_its_error_then_delivers_it_exactly_once() {
    let stack = Stack::private("notify-outage", 4600);
    let env = Env::new(&stack, "outage");
    env.add_merchant("acme", "에이씨미", "2027-02-05T10:00:00+09:00");
    let key = "reminder/acme/guidance@20270205/001";
    let submission = format!("127.0.0.1:{}", stack.port("MAILSTACK_SUBMISSION_PORT"));

    stack.script(&["stop-postfix"]);
    let out = env.remind("2027-02-15T09:00:00+09:00", 1);
    assert!(out.contains(&format!("retrying {key}")), "{out}");
    let outbox = env.outbox();
    assert_eq!(outbox.len(), 1);
    let e = &outbox[0];
    assert_eq!(e["status"], "pending");
    assert_eq!(e["attempts"], 1);
    let error = e["last_error"].as_str().unwrap();
    assert!(error.contains(&submission), "the error names the server: {error}");
    assert!(e["next_attempt_at"].is_string(), "the retry time is persisted: {e}");
    assert_eq!(e["rendered"]["message_id"], format!("<{}>", expected_message_id(key)));
    let due = env.ok(0, &["reminders", "--json"]);
    assert!(due.contains("\"state\":\"retrying\""), "{due}");
    // Backoff: not tried again before its time.
    let out = env.remind("2027-02-15T09:00:00+09:00", 0);
    assert!(out.contains("nothing to send"), "{out}");

    stack.script(&["start-postfix"]);
    let out = env.remind("2027-02-15T09:05:00+09:00", 0);
    assert!(out.contains(&format!("sent     {key}")), "{out}");
    let out = env.remind("2027-02-15T09:10:00+09:00", 0);
    assert!(out.contains("nothing to send"), "{out}");
    let mails = stack.after_barrier(&env.contact).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].message_id, expected_message_id(key));
    let outbox = env.outbox();
    assert_eq!(outbox[0]["status"], "sent");
    assert_eq!(outbox[0]["attempts"], 2);
}
