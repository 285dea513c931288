//! What the client does with an Ack: a pure function of packet type, status and BITS
//! error code (spec §5, §6, §8).

use bits_proto::{ErrorCode, PacketType};

/// The client's reaction to one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 2xx: the packet was accepted.
    Accepted,
    /// 416 to a Fragment: resume at `BITS-Received-Content-Range` (spec §6).
    OutOfSync,
    /// 413 to a Fragment: shrink the fragment and resend (spec §6, §8).
    Shrink,
    /// `BG_E_SESSION_NOT_FOUND`: restart with a new session from byte 0, except for
    /// Close/Cancel, where it means "stop" (spec §5, §8).
    SessionNotFound,
    /// Resend the same packet after a delay: 502/503/504, or a 5xx without a BITS error
    /// code; for Close/Cancel any 5xx (spec §5 "Close/Cancel retry rule", §8).
    Transient,
    /// Give up: 1xx/3xx, 4xx other than 413/416, 5xx with a BITS error code, and 501/505
    /// (the server does not do BITS at all; retrying cannot help, spec §7's rule).
    Fatal,
}

/// Classifies a response.
pub(crate) fn verdict(packet: PacketType, status: u16, code: Option<ErrorCode>) -> Verdict {
    if (200..300).contains(&status) {
        return Verdict::Accepted;
    }
    if code == Some(ErrorCode::SESSION_NOT_FOUND) {
        return Verdict::SessionNotFound;
    }
    let fragment = packet == PacketType::Fragment;
    let session_end = matches!(packet, PacketType::CloseSession | PacketType::CancelSession);
    match status {
        416 if fragment => Verdict::OutOfSync,
        413 if fragment => Verdict::Shrink,
        502..=504 => Verdict::Transient,
        500..=599 if session_end => Verdict::Transient,
        501 | 505 => Verdict::Fatal,
        500..=599 if code.is_none() => Verdict::Transient,
        _ => Verdict::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PacketType::*;

    const NOT_FOUND: Option<ErrorCode> = Some(ErrorCode::SESSION_NOT_FOUND);

    #[test]
    fn success_is_any_2xx() {
        assert_eq!(verdict(CreateSession, 201, None), Verdict::Accepted);
        assert_eq!(verdict(Fragment, 200, None), Verdict::Accepted);
    }

    #[test]
    fn fragments_resync_on_416_and_shrink_on_413() {
        assert_eq!(verdict(Fragment, 416, None), Verdict::OutOfSync);
        assert_eq!(verdict(Fragment, 413, None), Verdict::Shrink);
    }

    #[test]
    fn only_fragments_resync_or_shrink() {
        assert_eq!(verdict(CreateSession, 416, None), Verdict::Fatal);
        assert_eq!(verdict(Ping, 413, None), Verdict::Fatal);
    }

    #[test]
    fn session_not_found_wins_over_the_status() {
        for packet in PacketType::REQUESTS {
            assert_eq!(verdict(packet, 500, NOT_FOUND), Verdict::SessionNotFound);
        }
        assert_eq!(verdict(Fragment, 503, NOT_FOUND), Verdict::SessionNotFound);
    }

    #[test]
    fn try_later_statuses_and_bare_5xx_are_transient() {
        for status in [500, 502, 503, 504, 507] {
            assert_eq!(
                verdict(Fragment, status, None),
                Verdict::Transient,
                "{status}"
            );
        }
        assert_eq!(
            verdict(Fragment, 503, Some(ErrorCode::FAIL)),
            Verdict::Transient
        );
    }

    #[test]
    fn a_5xx_with_a_bits_code_is_fatal_except_for_close_and_cancel() {
        let too_large = Some(ErrorCode::TOO_LARGE);
        assert_eq!(verdict(Fragment, 500, too_large), Verdict::Fatal);
        assert_eq!(
            verdict(CreateSession, 501, Some(ErrorCode::ACCESS_DENIED)),
            Verdict::Fatal
        );
        assert_eq!(verdict(CloseSession, 500, too_large), Verdict::Transient);
        assert_eq!(
            verdict(CancelSession, 500, Some(ErrorCode::FAIL)),
            Verdict::Transient
        );
    }

    #[test]
    fn a_server_without_bits_support_is_fatal() {
        assert_eq!(verdict(CreateSession, 501, None), Verdict::Fatal);
        assert_eq!(verdict(Ping, 505, None), Verdict::Fatal);
    }

    #[test]
    fn other_4xx_and_3xx_are_fatal() {
        for status in [301, 400, 401, 403, 404, 409, 411] {
            assert_eq!(verdict(Fragment, status, None), Verdict::Fatal, "{status}");
            assert_eq!(
                verdict(CloseSession, status, None),
                Verdict::Fatal,
                "{status}"
            );
        }
    }
}
