//! NTLMSSP messages as they travel in `Authorization` and `WWW-Authenticate` headers
//! (MS-NLMP §2.2.1): Negotiate (type 1), Challenge (type 2) and Authenticate (type 3).
//!
//! Written here rather than taken from a crate: the server side needs to parse type 1
//! and type 3 from untrusted input without panicking and to build type 2, and the
//! crates that do NTLM either parse with `unwrap` on attacker-controlled flags
//! (`ntlmclient`) or bring a whole SSPI stack and a newer Rust than the workspace's
//! (`sspi`). Only the framing is implemented: no password is ever checked and no
//! session key is derived, which is all a test peer needs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fmt;

/// Every NTLMSSP message starts with these 8 bytes.
pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// Strings are UTF-16LE (otherwise OEM, read here as Latin-1).
pub const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
/// OEM strings.
pub const NEGOTIATE_OEM: u32 = 0x0000_0002;
/// The client wants the server's target name.
pub const REQUEST_TARGET: u32 = 0x0000_0004;
/// NTLM authentication.
pub const NEGOTIATE_NTLM: u32 = 0x0000_0200;
/// Always sign.
pub const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
/// The target name is a domain.
pub const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
/// NTLM2 session security.
pub const NEGOTIATE_EXTENDED_SESSION_SECURITY: u32 = 0x0008_0000;
/// The Challenge carries target information (AV pairs).
pub const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
/// A version field follows the fixed header.
pub const NEGOTIATE_VERSION: u32 = 0x0200_0000;
/// 128-bit session keys.
pub const NEGOTIATE_128: u32 = 0x2000_0000;

/// Flags this implementation puts in the Negotiate messages it builds, like a Windows
/// client's NTLMv2 defaults.
pub const CLIENT_FLAGS: u32 = NEGOTIATE_UNICODE
    | NEGOTIATE_OEM
    | REQUEST_TARGET
    | NEGOTIATE_NTLM
    | NEGOTIATE_ALWAYS_SIGN
    | NEGOTIATE_EXTENDED_SESSION_SECURITY
    | NEGOTIATE_TARGET_INFO
    | NEGOTIATE_VERSION
    | NEGOTIATE_128;

/// Version field (Windows 10, NTLMSSP revision 15).
const VERSION: [u8; 8] = [10, 0, 0x61, 0x4a, 0, 0, 0, 15];
/// AV pair ids (MS-NLMP §2.2.2.1).
const AV_EOL: u16 = 0;
const AV_NB_COMPUTER_NAME: u16 = 1;
const AV_NB_DOMAIN_NAME: u16 = 2;

/// The HTTP authentication scheme that carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `NTLM <base64>`.
    Ntlm,
    /// `Negotiate <base64>` (SPNEGO; here only the raw NTLMSSP form Windows falls back to).
    Negotiate,
}

impl Scheme {
    /// The scheme name as written in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Ntlm => "NTLM",
            Scheme::Negotiate => "Negotiate",
        }
    }

    /// `Scheme base64(message)`, an `Authorization` or `WWW-Authenticate` value.
    pub fn header_value(self, message: &Message) -> String {
        format!("{} {}", self.as_str(), STANDARD.encode(message.to_bytes()))
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A header value split into scheme and token; `None` for other schemes.
/// The token is `None` when the scheme stands alone (an offer in `WWW-Authenticate`).
pub fn split_header(value: &str) -> Option<(Scheme, Option<&str>)> {
    let value = value.trim();
    let (name, rest) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if name.eq_ignore_ascii_case("NTLM") {
        Scheme::Ntlm
    } else if name.eq_ignore_ascii_case("Negotiate") {
        Scheme::Negotiate
    } else {
        return None;
    };
    let token = rest.trim();
    Some((scheme, (!token.is_empty()).then_some(token)))
}

/// Decodes a base64 token and parses the message in it.
pub fn decode_token(token: &str) -> Result<Message, ParseError> {
    let bytes = STANDARD
        .decode(token.trim())
        .map_err(|_| ParseError::Base64)?;
    Message::parse(&bytes)
}

/// Why bytes are not an NTLMSSP message this module understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The token is not base64.
    #[error("the token is not base64")]
    Base64,
    /// Shorter than the fixed part of its message type.
    #[error("message too short")]
    TooShort,
    /// Does not start with `NTLMSSP\0`.
    #[error("no NTLMSSP signature")]
    Signature,
    /// A message type other than 1, 2 or 3.
    #[error("unknown message type {0}")]
    UnknownType(u32),
    /// A field points outside the message.
    #[error("a field points outside the message")]
    OutOfBounds,
}

/// Type 1, from the client: what it can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiate {
    /// NegotiateFlags.
    pub flags: u32,
}

/// Type 2, from the server: its challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// NegotiateFlags.
    pub flags: u32,
    /// The server's domain (or computer) name.
    pub target_name: String,
    /// The 8 random bytes the client must answer.
    pub server_challenge: [u8; 8],
    /// AV pairs, as sent.
    pub target_info: Vec<u8>,
}

/// Type 3, from the client: who it is and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticate {
    /// NegotiateFlags.
    pub flags: u32,
    /// Domain of the user.
    pub domain: String,
    /// The user name.
    pub user: String,
    /// The client computer.
    pub workstation: String,
    /// LmChallengeResponse.
    pub lm_response: Vec<u8>,
    /// NtChallengeResponse.
    pub nt_response: Vec<u8>,
}

/// One NTLMSSP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Type 1.
    Negotiate(Negotiate),
    /// Type 2.
    Challenge(Challenge),
    /// Type 3.
    Authenticate(Authenticate),
}

impl Message {
    /// The message type number (1, 2 or 3).
    pub fn message_type(&self) -> u32 {
        match self {
            Message::Negotiate(_) => 1,
            Message::Challenge(_) => 2,
            Message::Authenticate(_) => 3,
        }
    }

    /// Parses a message; never panics, whatever the bytes.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        if bytes.len() < 12 {
            return Err(ParseError::TooShort);
        }
        if &bytes[..8] != SIGNATURE {
            return Err(ParseError::Signature);
        }
        let r = Reader(bytes);
        match r.u32(8)? {
            1 => Ok(Message::Negotiate(Negotiate { flags: r.u32(12)? })),
            2 => {
                let flags = r.u32(20)?;
                let target_name = r.string(12, flags)?;
                let mut server_challenge = [0u8; 8];
                server_challenge.copy_from_slice(r.slice(24, 8)?);
                let target_info = r.buffer(40)?.to_vec();
                Ok(Message::Challenge(Challenge {
                    flags,
                    target_name,
                    server_challenge,
                    target_info,
                }))
            }
            3 => {
                let flags = r.u32(60)?;
                Ok(Message::Authenticate(Authenticate {
                    lm_response: r.buffer(12)?.to_vec(),
                    nt_response: r.buffer(20)?.to_vec(),
                    domain: r.string(28, flags)?,
                    user: r.string(36, flags)?,
                    workstation: r.string(44, flags)?,
                    flags,
                }))
            }
            other => Err(ParseError::UnknownType(other)),
        }
    }

    /// The message on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Negotiate(m) => {
                // Empty domain and workstation buffers, then the version.
                let mut w = Writer::new(1, 40);
                w.u32(m.flags);
                w.buffer(&[]);
                w.buffer(&[]);
                w.raw(&VERSION);
                w.finish()
            }
            Message::Challenge(m) => {
                let mut w = Writer::new(2, 56);
                w.buffer(&encode_string(&m.target_name, m.flags));
                w.u32(m.flags);
                w.raw(&m.server_challenge);
                w.raw(&[0; 8]);
                w.buffer(&m.target_info);
                w.raw(&VERSION);
                w.finish()
            }
            Message::Authenticate(m) => {
                let mut w = Writer::new(3, 72);
                w.buffer(&m.lm_response);
                w.buffer(&m.nt_response);
                w.buffer(&encode_string(&m.domain, m.flags));
                w.buffer(&encode_string(&m.user, m.flags));
                w.buffer(&encode_string(&m.workstation, m.flags));
                w.buffer(&[]);
                w.u32(m.flags);
                w.raw(&VERSION);
                w.finish()
            }
        }
    }
}

/// The Challenge a server named `computer` in `domain` sends for a client's Negotiate.
pub fn challenge_for(negotiate: &Negotiate, domain: &str, computer: &str) -> Challenge {
    let unicode = if negotiate.flags & NEGOTIATE_UNICODE != 0 {
        NEGOTIATE_UNICODE
    } else {
        NEGOTIATE_OEM
    };
    let flags = unicode
        | REQUEST_TARGET
        | NEGOTIATE_NTLM
        | NEGOTIATE_ALWAYS_SIGN
        | TARGET_TYPE_DOMAIN
        | NEGOTIATE_EXTENDED_SESSION_SECURITY
        | NEGOTIATE_TARGET_INFO
        | NEGOTIATE_VERSION
        | (negotiate.flags & NEGOTIATE_128);
    let mut target_info = Vec::new();
    for (id, value) in [(AV_NB_DOMAIN_NAME, domain), (AV_NB_COMPUTER_NAME, computer)] {
        let value = encode_utf16(value);
        target_info.extend_from_slice(&id.to_le_bytes());
        target_info.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_le_bytes());
        target_info.extend_from_slice(&value);
    }
    target_info.extend_from_slice(&AV_EOL.to_le_bytes());
    target_info.extend_from_slice(&0u16.to_le_bytes());
    Challenge {
        flags,
        target_name: domain.to_owned(),
        server_challenge: rand::random(),
        target_info,
    }
}

/// The Authenticate a client sends for `user` after `challenge`. The responses have
/// the NTLMv2 layout (proof, then a blob naming the client challenge and the server's
/// target info) but the proof is random: there is no password to derive it from.
pub fn authenticate_for(
    challenge: &Challenge,
    domain: &str,
    user: &str,
    workstation: &str,
) -> Authenticate {
    let mut nt_response = Vec::with_capacity(48 + challenge.target_info.len());
    nt_response.extend_from_slice(&rand::random::<[u8; 16]>());
    nt_response.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    nt_response.extend_from_slice(&[0; 8]); // timestamp: not needed without a check
    nt_response.extend_from_slice(&rand::random::<[u8; 8]>());
    nt_response.extend_from_slice(&[0; 4]);
    nt_response.extend_from_slice(&challenge.target_info);
    nt_response.extend_from_slice(&[0; 4]);
    Authenticate {
        flags: challenge.flags & !TARGET_TYPE_DOMAIN,
        domain: domain.to_owned(),
        user: user.to_owned(),
        workstation: workstation.to_owned(),
        lm_response: vec![0; 24],
        nt_response,
    }
}

fn encode_utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn encode_string(s: &str, flags: u32) -> Vec<u8> {
    if flags & NEGOTIATE_UNICODE != 0 {
        encode_utf16(s)
    } else {
        s.chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect()
    }
}

fn decode_string(bytes: &[u8], flags: u32) -> String {
    if flags & NEGOTIATE_UNICODE != 0 {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        bytes.iter().map(|&b| char::from(b)).collect()
    }
}

/// Bounds-checked reads at fixed offsets and through security buffers.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn slice(&self, at: usize, len: usize) -> Result<&'a [u8], ParseError> {
        let end = at.checked_add(len).ok_or(ParseError::OutOfBounds)?;
        self.0.get(at..end).ok_or(ParseError::TooShort)
    }

    fn u16(&self, at: usize) -> Result<u16, ParseError> {
        let b = self.slice(at, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&self, at: usize) -> Result<u32, ParseError> {
        let b = self.slice(at, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The bytes a security buffer (length, capacity, offset) at `at` points to.
    fn buffer(&self, at: usize) -> Result<&'a [u8], ParseError> {
        let len = usize::from(self.u16(at)?);
        let offset = usize::try_from(self.u32(at + 4)?).map_err(|_| ParseError::OutOfBounds)?;
        if len == 0 {
            return Ok(&[]);
        }
        let end = offset.checked_add(len).ok_or(ParseError::OutOfBounds)?;
        self.0.get(offset..end).ok_or(ParseError::OutOfBounds)
    }

    fn string(&self, at: usize, flags: u32) -> Result<String, ParseError> {
        Ok(decode_string(self.buffer(at)?, flags))
    }
}

/// Lays out a fixed header followed by the payload its security buffers point to.
struct Writer {
    head: Vec<u8>,
    payload: Vec<u8>,
    head_len: usize,
}

impl Writer {
    fn new(message_type: u32, head_len: usize) -> Self {
        let mut head = Vec::with_capacity(head_len);
        head.extend_from_slice(SIGNATURE);
        head.extend_from_slice(&message_type.to_le_bytes());
        Writer {
            head,
            payload: Vec::new(),
            head_len,
        }
    }

    fn u32(&mut self, v: u32) {
        self.head.extend_from_slice(&v.to_le_bytes());
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.head.extend_from_slice(bytes);
    }

    fn buffer(&mut self, bytes: &[u8]) {
        // Fields longer than a u16 cannot be described; nothing built here is that long.
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        let offset = u32::try_from(self.head_len + self.payload.len()).unwrap_or(u32::MAX);
        self.head.extend_from_slice(&len.to_le_bytes());
        self.head.extend_from_slice(&len.to_le_bytes());
        self.head.extend_from_slice(&offset.to_le_bytes());
        self.payload
            .extend_from_slice(&bytes[..usize::from(len).min(bytes.len())]);
    }

    fn finish(mut self) -> Vec<u8> {
        debug_assert_eq!(self.head.len(), self.head_len);
        self.head.append(&mut self.payload);
        self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_messages_survive_a_round_trip() {
        let negotiate = Negotiate {
            flags: CLIENT_FLAGS,
        };
        let challenge = challenge_for(&negotiate, "CORP", "IIS1");
        let auth = authenticate_for(&challenge, "CORP", "alice", "WS1");
        for m in [
            Message::Negotiate(negotiate),
            Message::Challenge(challenge),
            Message::Authenticate(auth),
        ] {
            let bytes = m.to_bytes();
            assert_eq!(&bytes[..8], SIGNATURE);
            assert_eq!(Message::parse(&bytes).unwrap(), m);
        }
    }

    #[test]
    fn the_user_name_is_read_from_a_windows_style_type_3() {
        let challenge = challenge_for(
            &Negotiate {
                flags: CLIENT_FLAGS,
            },
            "CORP",
            "IIS1",
        );
        let value = Scheme::Ntlm.header_value(&Message::Authenticate(authenticate_for(
            &challenge, "CORP", "Zoë", "WS1",
        )));
        let (scheme, token) = split_header(&value).unwrap();
        assert_eq!(scheme, Scheme::Ntlm);
        match decode_token(token.unwrap()).unwrap() {
            Message::Authenticate(m) => {
                assert_eq!((m.user.as_str(), m.domain.as_str()), ("Zoë", "CORP"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn broken_messages_are_errors_not_panics() {
        assert_eq!(Message::parse(b"NTLMSSP"), Err(ParseError::TooShort));
        assert_eq!(
            Message::parse(b"NTLMSSQ\0\x01\0\0\0\0\0\0\0"),
            Err(ParseError::Signature)
        );
        assert_eq!(
            Message::parse(b"NTLMSSP\0\x09\0\0\0"),
            Err(ParseError::UnknownType(9))
        );
        let mut type3 = Message::Authenticate(Authenticate {
            flags: NEGOTIATE_UNICODE,
            domain: "D".into(),
            user: "u".into(),
            workstation: "w".into(),
            lm_response: vec![],
            nt_response: vec![],
        })
        .to_bytes();
        // The user name buffer now points far past the end.
        type3[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Message::parse(&type3), Err(ParseError::OutOfBounds));
        for len in 0..type3.len() {
            let _ = Message::parse(&type3[..len]);
        }
        assert_eq!(decode_token("not base64!"), Err(ParseError::Base64));
    }

    #[test]
    fn headers_split_into_scheme_and_token() {
        assert_eq!(split_header("NTLM"), Some((Scheme::Ntlm, None)));
        assert_eq!(
            split_header("negotiate  abc= "),
            Some((Scheme::Negotiate, Some("abc=")))
        );
        assert_eq!(split_header("Basic abc"), None);
    }
}
