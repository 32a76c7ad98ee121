//! Bytes → an `import` file (`store::Export` JSON) → `ops::check_import`, and for every file it
//! accepts, what later commands compute from the records (`status`, `reminders`, the reminder
//! log), at the import instant and far past it. A file `check_import` accepts must never make a
//! later command panic: that is the promise its date bounds exist for.
#![no_main]

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use hecto_watch::config::{Reminders, Windows};
use hecto_watch::schedule::{due, Calendar};
use libfuzzer_sys::fuzz_target;

static NOW: LazyLock<DateTime<Utc>> = LazyLock::new(|| "2026-12-01T00:00:00Z".parse().unwrap());
static CAL: LazyLock<Calendar> = LazyLock::new(Calendar::builtin);

fuzz_target!(|data: &[u8]| {
    let Ok(export) = serde_json::from_slice::<hecto_watch::store::Export>(data) else {
        return;
    };
    if hecto_watch::ops::check_import(&export, *NOW).is_err() {
        return;
    }
    let windows = Windows::default();
    let reminders = Reminders::default();
    let log = due::reminder_log(&export.outbox);
    for later in [0, 30, 400, 3650] {
        let now = *NOW + chrono::Duration::days(later);
        let rows = due::status(&export.merchants, &windows, &CAL, now);
        assert_eq!(rows.len(), export.merchants.len());
        let _ = serde_json::to_string(&rows).unwrap();
        let _ = due::due_reminders(&export.merchants, &log, &windows, &reminders, &Default::default(), &CAL, now);
    }
});
