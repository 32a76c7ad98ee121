//! Raw bytes → `classify` with the default rules. Must never panic or hang, and the report must
//! always serialise.
#![no_main]

use std::sync::LazyLock;

use hecto_watch::mail::{classify, Rules};
use libfuzzer_sys::fuzz_target;

static RULES: LazyLock<Rules> = LazyLock::new(Rules::default);

fuzz_target!(|data: &[u8]| {
    let c = classify(data, &RULES);
    // Invariants the later stages rely on.
    assert!(c.text.len() <= hecto_watch::mail::TEXT_LIMIT);
    // The identity of a mail without a Message-ID is its hash.
    assert!(c.message_id.is_some() || c.content_hash.len() == 64);
    assert!(c.business_numbers.iter().all(|b| hecto_watch::mail::valid_business_number(b)));
    assert!(serde_json::to_string(&c.report("fuzz.eml")).is_ok());
});
