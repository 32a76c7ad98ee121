//! Bytes → lossy UTF-8 → `auth_results::parse` and `evaluate`. Must never panic; every result it reports has
//! a method and a result.
#![no_main]

use hecto_watch::mail::auth_results;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let parsed = auth_results::parse(&value);
    assert!(parsed.results.iter().all(|r| !r.method.is_empty() && !r.result.is_empty()));
    let _ = auth_results::evaluate([value.as_ref()], &[], Some("hectofinancial.co.kr"));
});
