//! Bytes as an IMAP server might send them → the header pass's framing and FETCH parser
//! (`imap::fast_fetch`). Must never panic; a framed response never runs past the input, and a
//! parsed header section lies within the response it came from (or is an unescaped copy).
#![no_main]

use hecto_watch::imap::fast_fetch::{parse_fetch, response_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Some(len) = response_len(rest) {
        assert!(len > 0 && len <= rest.len());
        let response = &rest[..len];
        if let Ok(f) = parse_fetch(response) {
            if let Some(h) = f.header {
                assert!(h.len() <= response.len());
            }
        }
        rest = &rest[len..];
    }
    // Whatever is left is an incomplete response; parsing it must fail cleanly, not panic.
    let _ = parse_fetch(rest);
});
