//! Bytes → lossy UTF-8 → `Config::parse`, the path of every `check-config`, `run` and SIGHUP
//! reload. Must never panic, and every problem it reports is one line (the journal shows one
//! entry per problem; a line break in one would let a file forge the next).
#![no_main]

use hecto_watch::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = Config::parse(&text) {
        assert!(!e.problems.is_empty(), "an error names at least one problem");
        for p in &e.problems {
            assert!(!p.contains(['\n', '\r']), "one line per problem: {p:?}");
        }
        let _ = e.to_string();
    }
});
