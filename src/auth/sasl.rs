//! The SASL messages that carry an OAuth 2.0 access token: XOAUTH2 (Google's and Microsoft's
//! documented format) and OAUTHBEARER (RFC 7628). Pure.

use crate::config::SaslMechanism;

/// XOAUTH2: `user=USER ^A auth=Bearer TOKEN ^A ^A`.
pub fn xoauth2(user: &str, token: &str) -> Vec<u8> {
    format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// OAUTHBEARER (RFC 7628 §3.1): the GS2 header `n,a=USER,` then `^A`-separated key=value pairs
/// (host, port, auth) and a final `^A^A`. `,` and `=` in the authzid are escaped as RFC 5801 says.
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &str) -> Vec<u8> {
    let authzid = user.replace('=', "=3D").replace(',', "=2C");
    format!("n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// An IMAP `AUTHENTICATE` exchange for a token: the initial response first; if the server then
/// sends a challenge, the token was refused and the challenge is its JSON error — answered with
/// `^A` for OAUTHBEARER (RFC 7628 §3.2.3) and an empty response for XOAUTH2 (Google's documented
/// flow), so that the server ends the exchange with its tagged NO instead of waiting.
pub struct TokenAuth {
    first: Option<Vec<u8>>,
    mechanism: SaslMechanism,
    /// The server's error challenge, when it sent one (decoded by async-imap).
    pub error: Option<String>,
}

impl TokenAuth {
    pub fn new(mechanism: SaslMechanism, user: &str, host: &str, port: u16, token: &str) -> TokenAuth {
        let first = match mechanism {
            SaslMechanism::Xoauth2 => xoauth2(user, token),
            SaslMechanism::Oauthbearer => oauthbearer(user, host, port, token),
        };
        TokenAuth { first: Some(first), mechanism, error: None }
    }

    /// The initial response, for SASL-IR (RFC 4959): sent on the command line, so that any
    /// challenge that follows is the server's error.
    pub fn take_initial_response(&mut self) -> Vec<u8> {
        self.first.take().unwrap_or_default()
    }

    /// The IMAP mechanism name.
    pub fn name(mechanism: SaslMechanism) -> &'static str {
        match mechanism {
            SaslMechanism::Xoauth2 => "XOAUTH2",
            SaslMechanism::Oauthbearer => "OAUTHBEARER",
        }
    }
}

impl async_imap::Authenticator for &mut TokenAuth {
    type Response = Vec<u8>;
    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        match self.first.take() {
            Some(first) => first,
            None => {
                self.error = Some(String::from_utf8_lossy(challenge).into_owned());
                match self.mechanism {
                    SaslMechanism::Oauthbearer => vec![0x01],
                    SaslMechanism::Xoauth2 => Vec::new(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_imap::Authenticator as _;

    #[test]
    fn the_messages_are_as_the_specifications_write_them() {
        assert_eq!(
            xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
        // RFC 7628 §4.1's example.
        assert_eq!(oauthbearer("user@example.com", "server.example.com", 143, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="),
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01");
        assert!(oauthbearer("a,b=c", "h", 1, "t").starts_with(b"n,a=a=2Cb=3Dc,"));
    }

    #[test]
    fn an_error_challenge_is_answered_so_the_server_can_say_no() {
        let mut a = TokenAuth::new(SaslMechanism::Oauthbearer, "u", "h", 993, "t");
        let mut r = &mut a;
        assert!(r.process(b"").starts_with(b"n,a=u,"));
        assert_eq!(r.process(br#"{"status":"invalid_token"}"#), [0x01]);
        assert_eq!(a.error.as_deref(), Some(r#"{"status":"invalid_token"}"#));
        let mut x = TokenAuth::new(SaslMechanism::Xoauth2, "u", "h", 993, "t");
        let mut r = &mut x;
        r.process(b"");
        assert!(r.process(b"{}").is_empty());
    }
}
