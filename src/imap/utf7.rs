//! Modified UTF-7 mailbox names (RFC 3501 §5.1.3): how `스팸메일함` travels as `&wqTTOLpUx3zVaA-`.
//!
//! Printable US-ASCII except `&` stands for itself, `&` is `&-`, and everything else is UTF-16BE
//! in base64 with `,` for `/`, no padding, between `&` and `-`. Servers that implement RFC 9051
//! (IMAP4rev2) or `UTF8=ACCEPT` may send raw UTF-8 instead; the decoder passes such names through.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utf7Error {
    pub name: String,
    pub reason: &'static str,
}

impl fmt::Display for Utf7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mailbox name {:?} is not valid modified UTF-7: {}", self.name, self.reason)
    }
}

impl std::error::Error for Utf7Error {}

fn sextet(b: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == b).map(|p| p as u32)
}

/// Decode a mailbox name as sent by the server.
pub fn decode(name: &str) -> Result<String, Utf7Error> {
    let err = |reason| Utf7Error { name: name.to_owned(), reason };
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'&' {
            // Raw UTF-8 (IMAP4rev2 / UTF8=ACCEPT) or plain ASCII: copy the whole char.
            let ch = name[i..].chars().next().ok_or_else(|| err("truncated"))?;
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let start = i + 1;
        let end = bytes[start..]
            .iter()
            .position(|&c| c == b'-')
            .map(|p| start + p)
            .ok_or_else(|| err("`&` without a closing `-`"))?;
        if end == start {
            out.push('&');
            i = end + 1;
            continue;
        }
        let mut units: Vec<u16> = Vec::with_capacity((end - start) * 6 / 16);
        let mut acc: u32 = 0;
        let mut bits = 0u32;
        for &c in &bytes[start..end] {
            let v = sextet(c).ok_or_else(|| err("a character outside the base64 alphabet"))?;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 16 {
                bits -= 16;
                units.push(((acc >> bits) & 0xFFFF) as u16);
                acc &= (1 << bits) - 1;
            }
        }
        // Leftover bits are padding: fewer than 6 and all zero.
        if bits >= 6 || acc != 0 {
            return Err(err("bad padding in a base64 run"));
        }
        if units.is_empty() {
            return Err(err("an empty base64 run"));
        }
        for r in char::decode_utf16(units.iter().copied()) {
            out.push(r.map_err(|_| err("an unpaired UTF-16 surrogate"))?);
        }
        i = end + 1;
    }
    Ok(out)
}

/// Decode, falling back to the name as sent (a display name must never fail).
pub fn decode_lossy(name: &str) -> String {
    decode(name).unwrap_or_else(|_| name.to_owned())
}

/// Encode a UTF-8 name for the wire.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        out.push('&');
        let mut acc: u32 = 0;
        let mut bits = 0u32;
        for &u in run.iter() {
            acc = (acc << 16) | u as u32;
            bits += 16;
            while bits >= 6 {
                bits -= 6;
                out.push(ALPHABET[((acc >> bits) & 0x3F) as usize] as char);
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            out.push(ALPHABET[((acc << (6 - bits)) & 0x3F) as usize] as char);
        }
        out.push('-');
        run.clear();
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut run, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_round_trip() {
        let table = [
            ("INBOX", "INBOX"),
            ("스팸메일함", "&wqTTOLpUx3zVaA-"),
            ("보낸메일함", "&vPSwuLpUx3zVaA-"),
            ("스팸편지함", "&wqTTONO4ycDVaA-"),
            ("정크 메일", "&yBXQbA- &ulTHfA-"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("[Gmail]/Spam", "[Gmail]/Spam"),
            ("😀", "&2D3eAA-"),
        ];
        for (utf8, wire) in table {
            assert_eq!(encode(utf8), wire, "encode {utf8}");
            assert_eq!(decode(wire).as_deref(), Ok(utf8), "decode {wire}");
        }
    }

    #[test]
    fn rfc3501_example() {
        // RFC 3501 §5.1.3: "~peter/mail/&U,BTFw-/&ZeVnLIqe-" is "~peter/mail/台北/日本語".
        assert_eq!(decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(), "~peter/mail/台北/日本語");
    }

    #[test]
    fn raw_utf8_passes_through() {
        assert_eq!(decode("스팸메일함").unwrap(), "스팸메일함");
    }

    #[test]
    fn malformed_names_are_errors_and_lossy_keeps_them() {
        for bad in ["&", "&wqTT", "&!!!-", "&2D0-", "&wqTTOLpUx3zVaB-", "&-&"] {
            assert!(decode(bad).is_err(), "{bad} should not decode");
            assert_eq!(decode_lossy(bad), bad);
        }
    }

    #[test]
    fn every_char_class_round_trips() {
        let s: String = (0x20u32..0x3000).step_by(7).filter_map(char::from_u32).collect();
        assert_eq!(decode(&encode(&s)).unwrap(), s);
    }
}
