//! Bytes as an IMAP server might send them in answer to the header pass's `UID FETCH`, through
//! the whole response path of one pass: framing, the fast FETCH parser, the general parser it
//! falls back to, alerts and the completion (`imap::fast_fetch::read_buffered`, which the socket
//! loop calls after every read). Must never panic, and must not depend on where the reads end:
//! the same bytes fed in pieces (as the socket delivers them) give the same mails, in the same
//! order, and the same outcome as fed whole.
#![no_main]

use hecto_watch::imap::fast_fetch::read_buffered;
use libfuzzer_sys::fuzz_target;

type Mails = Vec<(u32, Option<Vec<u8>>)>;
/// How the command ended: the completion text, or the error, each marked.
type Outcome = Option<Result<String, String>>;

/// Feed `data` in pieces of `piece` bytes (0: whole), as the socket loop does: what was not
/// consumed stays at the front of the buffer.
fn run(data: &[u8], piece: usize) -> (Mails, Outcome) {
    let mut mails = Mails::new();
    let mut each = |uid: u32, header: Option<&[u8]>| mails.push((uid, header.map(<[u8]>::to_vec)));
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    loop {
        let progress = read_buffered(&buf, "A0009", &mut each);
        assert!(progress.consumed <= buf.len());
        if let Some(done) = progress.done {
            return (mails, Some(done.map_err(|e| e.to_string())));
        }
        buf.drain(..progress.consumed);
        if fed == data.len() {
            return (mails, None);
        }
        let n = if piece == 0 { data.len() - fed } else { piece.min(data.len() - fed) };
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, data)) = input.split_first() else {
        return;
    };
    let whole = run(data, 0);
    let pieces = run(data, usize::from(first % 64) + 1);
    assert_eq!(whole, pieces, "the outcome depends on where reads end");
});
