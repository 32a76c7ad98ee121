//! Bytes as an operator's CSV file → `merchant import`'s reading (`cli::merchant_csv::parse`:
//! UTF-8 with or without a BOM, else CP949; the header; `;` lists) and, for every row, the
//! merchant checks `merchant add` applies (`ops::new_merchant`). Must never panic; rows come with
//! increasing line numbers after the header; every message is one line except the import's own
//! list of bad rows (made elsewhere).
#![no_main]

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

static NOW: LazyLock<DateTime<Utc>> = LazyLock::new(|| "2026-12-01T00:00:00Z".parse().unwrap());

fuzz_target!(|data: &[u8]| {
    match hecto_watch::cli::merchant_csv::parse(data) {
        Ok(rows) => {
            let mut last = 1;
            for row in &rows {
                assert!(row.line > last, "line numbers increase after the header: {} after {last}", row.line);
                last = row.line;
                if let Err(e) = hecto_watch::ops::new_merchant(&row.merchant, *NOW) {
                    assert!(!e.contains('\n'), "one line: {e:?}");
                }
            }
        }
        Err(e) => assert!(!e.contains('\n'), "one line: {e:?}"),
    }
});
