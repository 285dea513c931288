//! `classify`: one test per rule that refuses a BITS packet, and the paths that accept.
//!
//! Expected Acks come from the spec, not from the implementation: every malformed packet
//! is answered 400 + E_INVALIDARG (`0x80070057`) with context `0x5` (remote file, the
//! server itself raised it) [§6, §8]; every Ack carries `BITS-Packet-Type: Ack` and
//! `Content-Length` [§2, §5]; `BITS-Session-Id` on an Ack must equal the request's value
//! [§5], so only a valid one is echoed.

use bits_proto::headers as h;
use bits_proto::{
    classify, Classified, ClassifyOptions, ContentRange, ErrorCode, Packet, PacketType, Reject,
    RejectReason, SessionId, BITS_1_5_PROTOCOL,
};
use bits_proto::{RangeError, SessionIdError};
use http::{HeaderMap, HeaderName, HeaderValue};

const SESSION: &str = "{5e53c221-f2d6-4bf2-b994-1dc43ceaca8d}";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    map
}

/// A Fragment as the Windows client sends it (spec §2 and §4): 64 KiB of a 1 MiB file.
fn windows_fragment() -> HeaderMap {
    headers(&[
        ("Host", "uploads.example.com"),
        ("User-Agent", "Microsoft BITS/7.8"),
        ("Accept", "*/*"),
        ("BITS-Packet-Type", "Fragment"),
        ("BITS-Session-Id", SESSION),
        ("Content-Name", "report.bin"),
        ("Content-Range", "bytes 0-65535/1048576"),
        ("Content-Length", "65536"),
        ("Connection", "Keep-Alive"),
    ])
}

fn without(mut map: HeaderMap, name: &str) -> HeaderMap {
    map.remove(name);
    map
}

fn with(mut map: HeaderMap, name: &str, value: &str) -> HeaderMap {
    map.insert(
        HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
        HeaderValue::from_str(value).expect("test header value"),
    );
    map
}

fn also(mut map: HeaderMap, name: &str, value: &str) -> HeaderMap {
    map.append(
        HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
        HeaderValue::from_str(value).expect("test header value"),
    );
    map
}

fn packet<'a>(method: &str, map: &'a HeaderMap) -> Packet<'a> {
    match classify(method, map, &ClassifyOptions::default()) {
        Ok(Classified::Bits(packet)) => packet,
        other => panic!("expected an accepted BITS packet, got {other:?}"),
    }
}

fn refused(method: &str, map: &HeaderMap) -> Reject {
    match classify(method, map, &ClassifyOptions::default()) {
        Err(reject) => reject,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Checks the whole error Ack the spec prescribes for bad input, and which session id
/// it may echo.
fn assert_invalid_arg_ack(reject: &Reject, echoed: Option<&str>) {
    assert_eq!(reject.reason.status(), 400);
    assert_eq!(reject.reason.error_code(), ErrorCode(0x8007_0057));
    let ack = reject.ack();
    assert_eq!(ack.status, 400);
    assert_eq!(ack.get("BITS-Packet-Type"), Some("Ack"));
    assert_eq!(ack.get("Content-Length"), Some("0"));
    assert_eq!(ack.get("BITS-Error-Code"), Some("0x80070057"));
    assert_eq!(ack.get("BITS-Error-Context"), Some("0x5"));
    assert_eq!(ack.get("BITS-Session-Id"), echoed);
    assert_eq!(reject.session_id.as_ref().map(SessionId::as_str), echoed);
    let session_headers = ack
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("BITS-Session-Id"))
        .count();
    assert_eq!(session_headers, usize::from(echoed.is_some()));
}

fn assert_refused(map: &HeaderMap, reason: RejectReason, echoed: Option<&str>) {
    let reject = refused("BITS_POST", map);
    assert_eq!(reject.reason, reason);
    assert_invalid_arg_ack(&reject, echoed);
}

// ---------------------------------------------------------------------------------
// Refusals: packet type
// ---------------------------------------------------------------------------------

#[test]
fn a_bits_post_without_packet_type_is_refused_as_missing_packet_type() {
    let map = without(windows_fragment(), "BITS-Packet-Type");
    assert_refused(&map, RejectReason::MissingPacketType, Some(SESSION));
}

#[test]
fn an_empty_packet_type_is_refused_as_unknown() {
    let map = with(windows_fragment(), "BITS-Packet-Type", "");
    assert_refused(&map, RejectReason::UnknownPacketType, Some(SESSION));
}

#[test]
fn a_packet_type_the_protocol_does_not_define_is_refused_as_unknown() {
    for value in ["Upload", "Frag", "Create_Session", "Fragments", "BITS_POST"] {
        let map = with(windows_fragment(), "BITS-Packet-Type", value);
        assert_refused(&map, RejectReason::UnknownPacketType, Some(SESSION));
    }
}

#[test]
fn an_ack_sent_as_a_request_is_refused_as_unknown_packet_type() {
    // Ack is a response packet only (spec §5); a client never sends one.
    let map = headers(&[("BITS-Packet-Type", "Ack"), ("Content-Length", "0")]);
    assert_refused(&map, RejectReason::UnknownPacketType, None);
}

#[test]
fn two_different_packet_types_are_refused_as_conflicting() {
    let map = also(windows_fragment(), "BITS-Packet-Type", "Close-Session");
    assert_refused(
        &map,
        RejectReason::ConflictingHeaders(h::PACKET_TYPE),
        Some(SESSION),
    );
}

// ---------------------------------------------------------------------------------
// Refusals: session id
// ---------------------------------------------------------------------------------

#[test]
fn session_packets_without_a_session_id_are_refused_as_missing_session_id() {
    let fragment = without(windows_fragment(), "BITS-Session-Id");
    assert_refused(&fragment, RejectReason::MissingSessionId, None);
    for kind in ["Close-Session", "Cancel-Session"] {
        let map = headers(&[("BITS-Packet-Type", kind), ("Content-Length", "0")]);
        assert_refused(&map, RejectReason::MissingSessionId, None);
    }
}

#[test]
fn an_empty_session_id_is_refused_and_not_echoed() {
    for value in ["", "   ", "\t"] {
        let map = with(windows_fragment(), "BITS-Session-Id", value);
        assert_refused(
            &map,
            RejectReason::InvalidSessionId(SessionIdError::Empty),
            None,
        );
    }
}

#[test]
fn a_session_id_of_101_characters_is_refused_and_100_accepted() {
    // Spec §3: any HTTP-legal string of up to 100 characters.
    let long = "s".repeat(101);
    let map = with(windows_fragment(), "BITS-Session-Id", &long);
    assert_refused(
        &map,
        RejectReason::InvalidSessionId(SessionIdError::TooLong(101)),
        None,
    );
    let limit = "s".repeat(100);
    let map = with(windows_fragment(), "BITS-Session-Id", &limit);
    assert_eq!(packet("BITS_POST", &map).session_id, Some(limit.as_str()));
}

#[test]
fn a_session_id_with_a_space_or_tab_inside_is_refused_and_not_echoed() {
    // DEL and other controls cannot reach classify: `HeaderValue` refuses them.
    for (value, bad) in [("{a b}", b' '), ("{a\tb}", b'\t')] {
        let mut map = windows_fragment();
        map.insert(
            "BITS-Session-Id",
            HeaderValue::from_bytes(value.as_bytes()).expect("legal header bytes"),
        );
        assert_refused(
            &map,
            RejectReason::InvalidSessionId(SessionIdError::InvalidByte(bad)),
            None,
        );
    }
}

#[test]
fn a_session_id_with_non_ascii_bytes_is_refused_and_not_echoed() {
    let mut map = windows_fragment();
    map.insert(
        "BITS-Session-Id",
        HeaderValue::from_bytes("{caf\u{e9}}".as_bytes()).expect("obs-text is legal"),
    );
    assert_refused(
        &map,
        RejectReason::InvalidSessionId(SessionIdError::InvalidByte(0xC3)),
        None,
    );
}

#[test]
fn two_different_session_ids_on_a_fragment_are_refused_and_neither_is_echoed() {
    let map = also(windows_fragment(), "BITS-Session-Id", "{other}");
    assert_refused(&map, RejectReason::ConflictingHeaders(h::SESSION_ID), None);
}

// ---------------------------------------------------------------------------------
// Refusals: Content-Range and Content-Length on a Fragment
// ---------------------------------------------------------------------------------

#[test]
fn a_fragment_without_content_range_is_refused() {
    let map = without(windows_fragment(), "Content-Range");
    assert_refused(&map, RejectReason::MissingContentRange, Some(SESSION));
}

#[test]
fn a_fragment_whose_last_byte_is_before_its_first_is_refused() {
    let map = with(windows_fragment(), "Content-Range", "bytes 10-9/100");
    assert_refused(
        &map,
        RejectReason::InvalidContentRange(RangeError::LastBeforeFirst),
        Some(SESSION),
    );
}

#[test]
fn a_fragment_whose_total_is_not_after_its_last_byte_is_refused() {
    for value in ["bytes 0-65535/65535", "bytes 0-65535/10"] {
        let map = with(windows_fragment(), "Content-Range", value);
        assert_refused(
            &map,
            RejectReason::InvalidContentRange(RangeError::TotalNotAfterLast),
            Some(SESSION),
        );
    }
}

#[test]
fn a_fragment_range_number_beyond_64_bits_is_refused_as_overflow() {
    // 2^64 does not fit; 2^64 - 1 is the largest total a u64 can carry.
    let map = with(
        windows_fragment(),
        "Content-Range",
        "bytes 0-65535/18446744073709551616",
    );
    assert_refused(
        &map,
        RejectReason::InvalidContentRange(RangeError::Overflow),
        Some(SESSION),
    );
}

#[test]
fn a_fragment_range_with_a_missing_part_is_refused_as_malformed() {
    for value in [
        "bytes -65535/1048576",
        "bytes 0-/1048576",
        "bytes 0-65535/",
        "bytes 0-65535",
        "bytes */1048576",
        "bytes",
    ] {
        let map = with(windows_fragment(), "Content-Range", value);
        assert_refused(
            &map,
            RejectReason::InvalidContentRange(RangeError::Malformed),
            Some(SESSION),
        );
    }
}

#[test]
fn a_fragment_range_with_trailing_garbage_is_refused_as_malformed() {
    for value in [
        "bytes 0-65535/1048576x",
        "bytes 0-65535/1048576, bytes 0-1/2",
        "bytes 0-65535/1048576/1",
    ] {
        let map = with(windows_fragment(), "Content-Range", value);
        assert_refused(
            &map,
            RejectReason::InvalidContentRange(RangeError::Malformed),
            Some(SESSION),
        );
    }
}

#[test]
fn a_fragment_range_without_the_bytes_unit_is_refused() {
    for value in ["0-65535/1048576", "items 0-65535/1048576"] {
        let map = with(windows_fragment(), "Content-Range", value);
        assert_refused(
            &map,
            RejectReason::InvalidContentRange(RangeError::MissingUnit),
            Some(SESSION),
        );
    }
}

#[test]
fn two_different_content_ranges_are_refused_as_conflicting() {
    let map = also(
        windows_fragment(),
        "Content-Range",
        "bytes 65536-131071/1048576",
    );
    assert_refused(
        &map,
        RejectReason::ConflictingHeaders(h::CONTENT_RANGE),
        Some(SESSION),
    );
}

#[test]
fn a_fragment_without_content_length_is_refused() {
    let map = without(windows_fragment(), "Content-Length");
    assert_refused(&map, RejectReason::MissingContentLength, Some(SESSION));
}

#[test]
fn a_content_length_that_is_not_a_decimal_number_is_refused() {
    for value in [
        "abc",
        "-1",
        "+65536",
        "6.5e4",
        "0x10000",
        "18446744073709551616",
    ] {
        let map = with(windows_fragment(), "Content-Length", value);
        assert_refused(&map, RejectReason::InvalidContentLength, Some(SESSION));
    }
}

#[test]
fn a_fragment_whose_content_length_differs_from_the_range_length_is_refused() {
    // bytes 0-65535 is 65536 bytes; one more or one fewer is a mismatch (spec §4, §6).
    for value in ["65535", "65537", "0"] {
        let map = with(windows_fragment(), "Content-Length", value);
        assert_refused(&map, RejectReason::ContentLengthMismatch, Some(SESSION));
    }
}

#[test]
fn two_different_content_lengths_are_refused_on_every_packet_type() {
    // Two framings of one body is the classic smuggling vector: refuse it everywhere.
    let fragment = also(windows_fragment(), "Content-Length", "65535");
    assert_refused(
        &fragment,
        RejectReason::ConflictingHeaders(h::CONTENT_LENGTH),
        Some(SESSION),
    );
    let ping = headers(&[
        ("BITS-Packet-Type", "Ping"),
        ("Content-Length", "0"),
        ("Content-Length", "5"),
    ]);
    assert_refused(
        &ping,
        RejectReason::ConflictingHeaders(h::CONTENT_LENGTH),
        None,
    );
}

// ---------------------------------------------------------------------------------
// Refusals: header size and transfer coding
// ---------------------------------------------------------------------------------

#[test]
fn a_header_value_of_4097_bytes_is_refused_as_too_long() {
    let map = with(windows_fragment(), "Content-Name", &"n".repeat(4097));
    assert_refused(&map, RejectReason::HeaderTooLong, Some(SESSION));
}

#[test]
fn a_header_value_of_exactly_4096_bytes_is_accepted() {
    let name = "n".repeat(4096);
    let map = with(windows_fragment(), "Content-Name", &name);
    assert_eq!(packet("BITS_POST", &map).kind, PacketType::Fragment);
}

#[test]
fn an_over_long_second_value_of_a_repeated_header_is_refused() {
    let map = also(windows_fragment(), "BITS-Trace", "short");
    let map = also(map, "BITS-Trace", &"t".repeat(4097));
    assert_refused(&map, RejectReason::HeaderTooLong, Some(SESSION));
}

#[test]
fn an_over_long_bits_header_is_refused_whatever_its_case() {
    let map = with(windows_fragment(), "bits-reply-url", &"u".repeat(4097));
    assert_refused(&map, RejectReason::HeaderTooLong, Some(SESSION));
}

/// A Kerberos ticket of a user in many groups is often over 4 KB; the protocol's
/// bound is about its own headers.
#[test]
fn a_12_kib_authorization_token_passes_on_ping_create_session_and_fragment() {
    let token = format!("Negotiate {}", "Y".repeat(12 << 10));
    let ping = headers(&[("BITS-Packet-Type", "Ping"), ("Authorization", &token)]);
    assert_eq!(packet("BITS_POST", &ping).kind, PacketType::Ping);
    let create = headers(&[
        ("BITS-Packet-Type", "Create-Session"),
        ("BITS-Supported-Protocols", BITS_1_5_PROTOCOL),
        ("Authorization", &token),
    ]);
    assert_eq!(packet("BITS_POST", &create).kind, PacketType::CreateSession);
    let fragment = with(windows_fragment(), "Authorization", &token);
    assert_eq!(packet("BITS_POST", &fragment).kind, PacketType::Fragment);
}

#[test]
fn long_values_of_other_headers_are_not_judged() {
    let map = with(windows_fragment(), "Cookie", &"c".repeat(20_000));
    let map = also(map, "X-Trace", &"t".repeat(8192));
    assert_eq!(packet("BITS_POST", &map).kind, PacketType::Fragment);
}

#[test]
fn the_header_limit_follows_the_configured_option() {
    let map = with(windows_fragment(), "Content-Name", &"n".repeat(101));
    let strict = ClassifyOptions {
        max_header_value: 100,
        ..ClassifyOptions::default()
    };
    let reject = classify("BITS_POST", &map, &strict).expect_err("over the 100-byte limit");
    assert_eq!(reject.reason, RejectReason::HeaderTooLong);
    assert_invalid_arg_ack(&reject, Some(SESSION));
}

#[test]
fn transfer_encoding_on_a_fragment_is_refused() {
    let map = with(windows_fragment(), "Transfer-Encoding", "chunked");
    assert_refused(&map, RejectReason::TransferEncoding, Some(SESSION));
}

#[test]
fn transfer_encoding_on_a_bodiless_packet_is_refused_too() {
    let map = headers(&[
        ("BITS-Packet-Type", "Create-Session"),
        ("BITS-Supported-Protocols", BITS_1_5_PROTOCOL),
        ("Transfer-Encoding", "identity"),
    ]);
    assert_refused(&map, RejectReason::TransferEncoding, None);
}

#[test]
fn a_valid_session_id_is_echoed_on_a_refused_close_session() {
    let map = headers(&[
        ("BITS-Packet-Type", "Close-Session"),
        ("BITS-Session-Id", SESSION),
        ("Transfer-Encoding", "chunked"),
    ]);
    assert_refused(&map, RejectReason::TransferEncoding, Some(SESSION));
}

#[test]
fn every_reason_maps_to_400_and_e_invalidarg_with_a_distinct_label() {
    let reasons = [
        RejectReason::MissingPacketType,
        RejectReason::UnknownPacketType,
        RejectReason::MissingSessionId,
        RejectReason::InvalidSessionId(SessionIdError::Empty),
        RejectReason::MissingContentRange,
        RejectReason::InvalidContentRange(RangeError::Malformed),
        RejectReason::MissingContentLength,
        RejectReason::InvalidContentLength,
        RejectReason::ContentLengthMismatch,
        RejectReason::ConflictingHeaders(h::CONTENT_LENGTH),
        RejectReason::HeaderTooLong,
        RejectReason::TransferEncoding,
    ];
    let mut labels: Vec<_> = reasons.iter().map(|r| r.label()).collect();
    for reason in reasons {
        assert_eq!(reason.status(), 400, "{reason:?}");
        assert_eq!(reason.error_code(), ErrorCode::INVALID_ARG, "{reason:?}");
    }
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(
        labels.len(),
        reasons.len(),
        "labels must tell reasons apart"
    );
}

// ---------------------------------------------------------------------------------
// Accepted packets
// ---------------------------------------------------------------------------------

#[test]
fn a_windows_client_fragment_is_accepted_with_its_range_and_length() {
    let map = windows_fragment();
    let packet = packet("BITS_POST", &map);
    assert_eq!(packet.kind, PacketType::Fragment);
    assert_eq!(packet.session_id, Some(SESSION));
    assert_eq!(packet.range, ContentRange::new(0, 65535, 1_048_576).ok());
    assert_eq!(packet.content_length, Some(65536));
    assert_eq!(packet.supported_protocols, None);
    assert!(!packet.via_method_override);
}

#[test]
fn a_ping_is_accepted_without_a_session_id() {
    let map = headers(&[
        ("User-Agent", "Microsoft BITS/7.8"),
        ("BITS-Packet-Type", "Ping"),
        ("Content-Length", "0"),
    ]);
    let packet = packet("BITS_POST", &map);
    assert_eq!(packet.kind, PacketType::Ping);
    assert_eq!(packet.session_id, None);
    assert_eq!(packet.range, None);
    assert_eq!(packet.content_length, Some(0));
}

#[test]
fn a_create_session_is_accepted_with_its_supported_protocols() {
    // The header set of the [M] §4.1 capture (spec §2).
    let map = headers(&[
        ("Accept", "*/*"),
        ("BITS-Packet-Type", "Create-Session"),
        (
            "BITS-Supported-Protocols",
            "{7df0354d-249b-430f-820d-3d2a9bef4931}",
        ),
        ("Content-Name", "report.bin"),
        ("User-Agent", "Microsoft BITS/6.7"),
        ("Host", "uploads.example.com"),
        ("Content-Length", "0"),
        ("Connection", "Keep-Alive"),
    ]);
    let packet = packet("BITS_POST", &map);
    assert_eq!(packet.kind, PacketType::CreateSession);
    assert_eq!(packet.session_id, None);
    let protocols = packet.supported_protocols.expect("protocols were sent");
    assert_eq!(protocols.choose(), Some(BITS_1_5_PROTOCOL));
}

#[test]
fn close_and_cancel_session_are_accepted_with_their_session_id() {
    for (value, kind) in [
        ("Close-Session", PacketType::CloseSession),
        ("Cancel-Session", PacketType::CancelSession),
    ] {
        let map = headers(&[
            ("BITS-Packet-Type", value),
            ("BITS-Session-Id", SESSION),
            ("Content-Length", "0"),
        ]);
        let packet = packet("BITS_POST", &map);
        assert_eq!(packet.kind, kind);
        assert_eq!(packet.session_id, Some(SESSION));
        assert_eq!(packet.range, None);
    }
}

#[test]
fn packet_types_are_accepted_in_the_upper_case_of_the_open_specification() {
    for kind in PacketType::REQUESTS {
        let mut map = windows_fragment();
        map.insert(
            "BITS-Packet-Type",
            HeaderValue::from_str(&kind.as_str().to_ascii_uppercase()).expect("ascii"),
        );
        assert_eq!(packet("BITS_POST", &map).kind, kind);
    }
}

#[test]
fn a_range_with_the_capitalised_unit_of_the_win32_docs_is_accepted() {
    let map = with(windows_fragment(), "Content-Range", "Bytes 0-65535/1048576");
    assert_eq!(
        packet("BITS_POST", &map).range,
        ContentRange::new(0, 65535, 1_048_576).ok()
    );
}

#[test]
fn the_final_fragment_of_a_file_is_accepted() {
    let map = with(
        windows_fragment(),
        "Content-Range",
        "bytes 1048575-1048575/1048576",
    );
    let map = with(map, "Content-Length", "1");
    let range = packet("BITS_POST", &map).range.expect("fragment range");
    assert!(range.is_final());
}

#[test]
fn a_session_id_is_returned_without_surrounding_spaces() {
    let padded = format!("  {SESSION}\t");
    let map = with(windows_fragment(), "BITS-Session-Id", &padded);
    assert_eq!(packet("BITS_POST", &map).session_id, Some(SESSION));
}

#[test]
fn duplicate_but_equal_headers_are_tolerated() {
    let map = also(windows_fragment(), "BITS-Packet-Type", "FRAGMENT");
    let map = also(map, "BITS-Session-Id", SESSION);
    let map = also(map, "Content-Range", "bytes 0-65535/1048576");
    let map = also(map, "Content-Length", "65536");
    let packet = packet("BITS_POST", &map);
    assert_eq!(packet.kind, PacketType::Fragment);
    assert_eq!(packet.session_id, Some(SESSION));
    assert_eq!(packet.content_length, Some(65536));
}

#[test]
fn a_stray_session_id_on_a_ping_or_create_session_is_ignored() {
    for kind in ["Ping", "Create-Session"] {
        for stray in [vec![SESSION], vec!["a b"], vec![SESSION, "{other}"]] {
            let mut map = headers(&[("BITS-Packet-Type", kind), ("Content-Length", "0")]);
            for value in &stray {
                map.append("BITS-Session-Id", HeaderValue::from_str(value).unwrap());
            }
            let packet = packet("BITS_POST", &map);
            assert_eq!(packet.session_id, None, "{kind} with {stray:?}");
        }
    }
}

#[test]
fn a_content_range_on_a_non_fragment_packet_is_not_judged() {
    // Only a Fragment carries a range (spec §4); others are passed on untouched.
    let map = headers(&[
        ("BITS-Packet-Type", "Close-Session"),
        ("BITS-Session-Id", SESSION),
        ("Content-Range", "nonsense"),
        ("Content-Length", "0"),
    ]);
    assert_eq!(packet("BITS_POST", &map).range, None);
}

// ---------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------

#[test]
fn post_with_the_method_override_is_accepted_when_allowed() {
    let map = with(windows_fragment(), "X-Http-Method-Override", "BITS_POST");
    let allowed = ClassifyOptions {
        allow_method_override: true,
        ..ClassifyOptions::default()
    };
    match classify("POST", &map, &allowed) {
        Ok(Classified::Bits(packet)) => {
            assert!(packet.via_method_override);
            assert_eq!(packet.kind, PacketType::Fragment);
            assert_eq!(packet.session_id, Some(SESSION));
        }
        other => panic!("expected a BITS packet, got {other:?}"),
    }
}

#[test]
fn post_with_the_method_override_is_other_when_not_allowed() {
    let map = with(windows_fragment(), "X-Http-Method-Override", "BITS_POST");
    let strict = ClassifyOptions {
        allow_method_override: false,
        ..ClassifyOptions::default()
    };
    assert_eq!(classify("POST", &map, &strict), Ok(Classified::Other));
}

#[test]
fn the_method_override_is_allowed_by_default() {
    // Spec §2: a proxy should accept both forms.
    assert!(ClassifyOptions::default().allow_method_override);
    assert_eq!(
        ClassifyOptions::default().max_header_value,
        h::MAX_HEADER_VALUE_BYTES
    );
    assert_eq!(h::MAX_HEADER_VALUE_BYTES, 4096);
}

#[test]
fn a_malformed_packet_behind_the_method_override_is_refused_like_a_bits_post() {
    let map = with(windows_fragment(), "X-Http-Method-Override", "BITS_POST");
    let map = without(map, "Content-Range");
    let reject = classify("POST", &map, &ClassifyOptions::default()).expect_err("no range");
    assert_eq!(reject.reason, RejectReason::MissingContentRange);
    assert_invalid_arg_ack(&reject, Some(SESSION));
}

#[test]
fn non_bits_methods_are_other_even_with_bits_headers() {
    let map = windows_fragment();
    for method in [
        "GET",
        "HEAD",
        "PUT",
        "POST",
        "OPTIONS",
        "bits_post",
        "BITS_POSTX",
    ] {
        assert_eq!(
            classify(method, &map, &ClassifyOptions::default()),
            Ok(Classified::Other),
            "{method}"
        );
    }
}

#[test]
fn a_post_overriding_to_another_method_is_other() {
    let map = with(windows_fragment(), "X-Http-Method-Override", "PUT");
    assert_eq!(
        classify("POST", &map, &ClassifyOptions::default()),
        Ok(Classified::Other)
    );
}

#[test]
fn a_get_of_a_reply_url_is_other_and_never_refused() {
    // Upload-reply clients fetch the reply with an ordinary download (spec §7).
    let map = headers(&[("Range", "bytes=0-99"), ("Transfer-Encoding", "chunked")]);
    assert_eq!(
        classify("GET", &map, &ClassifyOptions::default()),
        Ok(Classified::Other)
    );
}
