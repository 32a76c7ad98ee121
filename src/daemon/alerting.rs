//! The daemon's alert task (SPEC §5): every [`ALERT_CHECK_EVERY`] it derives each account's
//! health from the stored folder statuses, lets [`crate::health::alerts::decide`] say what to do
//! with the stored outage, and records outage and notice in one transaction; the sender is
//! woken after the commit, so an alert goes at once (alerts are never held by `send_hours`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::Heartbeat;
use crate::control::Engine;
use crate::health::alerts::{decide, notice, Decision};

/// How often the accounts' health is looked at: the alert latency beyond `account_down_after`.
pub const ALERT_CHECK_EVERY: Duration = Duration::from_secs(1);

pub async fn run(engine: Engine, beat: Heartbeat, cancel: CancellationToken) {
    if engine.config.accounts.is_empty() {
        return;
    }
    if engine.config.reminders.operators.is_empty() {
        warn!("[reminders] operators is empty: an unreadable account is reported in `health` and STATUS= but alerts no one");
    }
    let mut tick = tokio::time::interval(ALERT_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        beat.beat();
        let e = engine.clone();
        match tokio::task::spawn_blocking(move || check(&e)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(_)) => engine.ingest.outbox_ready().notify_one(),
            Ok(Err(err)) => error!(error = %format!("{err:#}"), "Cannot check the accounts for alerts; trying again"),
            Err(err) => error!(error = %err, "The alert check failed; trying again"),
        }
    }
}

/// One look at every account; returns how many notices were queued.
fn check(engine: &Engine) -> anyhow::Result<usize> {
    let (store, config) = (&engine.store, &engine.config);
    let now = engine.ingest.clock().now();
    let operators = &config.reminders.operators;
    let mut queued = 0;
    // An account no longer configured has no outage to keep (re-added later, it starts afresh).
    for gone in store.outages()?.into_keys().filter(|a| !config.accounts.iter().any(|c| c.name == *a)) {
        store.record_outage(&gone, None, None)?;
    }
    for health in crate::ops::health(store, config)? {
        let account = &health.account;
        let stored = store.outage(account)?;
        let fix = health.fix.clone().unwrap_or_default();
        match decide(stored.as_ref(), &health, now, config.alerts.account_down_after) {
            Decision::Nothing => {}
            Decision::Keep(outage) => {
                store.record_outage(account, Some(&outage), None)?;
            }
            Decision::AlertDown(outage) => {
                let n = (!operators.is_empty()).then(|| notice(account, &outage, &fix, None, operators, now));
                if store.record_outage(account, Some(&outage), n.as_ref())? {
                    queued += 1;
                }
                error!(%account, since = %outage.since, error = %outage.last_error, fix = %fix, "Account unreadable: operators alerted");
            }
            Decision::Recovered { outage, notify } => {
                let n = (notify && !operators.is_empty())
                    .then(|| notice(account, &outage, &fix, Some(now), operators, now));
                if store.record_outage(account, None, n.as_ref())? {
                    queued += 1;
                }
                info!(%account, since = %outage.since, "Account readable again");
            }
        }
    }
    Ok(queued)
}
