//! Property tests: what we emit parses back to the same value, the parsers agree with
//! the rules of the spec on generated input, and no input makes any of them panic.

use bits_proto::ack::{self, Ack, AckInfo};
use bits_proto::headers as h;
use bits_proto::{
    classify, is_bits_1_5, Classified, ClassifyOptions, ContentRange, ErrorCode, ErrorContext,
    PacketType, RangeError, SessionId, SessionIdError, SupportedProtocols, BITS_1_5_PROTOCOL,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------

/// `F <= L < T` over the whole u64 domain, so the edges (0, u64::MAX) come up.
fn valid_range() -> impl Strategy<Value = ContentRange> {
    (1..=u64::MAX)
        .prop_flat_map(|total| (0..total, Just(total)))
        .prop_flat_map(|(last, total)| (0..=last, Just(last), Just(total)))
        .prop_map(|(first, last, total)| ContentRange { first, last, total })
}

/// Visible ASCII, 1 to 100 characters: what spec §3 allows a session id to be.
fn valid_session_id() -> impl Strategy<Value = String> {
    "[!-~]{1,100}"
}

fn random_case(text: &str, mask: &[bool]) -> String {
    text.chars()
        .zip(mask.iter().cycle())
        .map(|(c, &upper)| {
            if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Header names classify reads, plus a few others, plus arbitrary tokens.
fn header_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(vec![
            h::PACKET_TYPE,
            h::SESSION_ID,
            h::CONTENT_RANGE,
            h::CONTENT_LENGTH,
            h::TRANSFER_ENCODING,
            h::SUPPORTED_PROTOCOLS,
            h::METHOD_OVERRIDE,
            h::CONTENT_NAME,
            h::ERROR_CODE,
            h::ERROR_CODE_ALT,
            h::ERROR_CONTEXT,
            h::RECEIVED_CONTENT_RANGE,
            h::HOST_ID_FALLBACK_TIMEOUT,
            "Host",
        ])
        .prop_map(|name| name.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..24),
    ]
}

/// Values that are sometimes nearly right (so the deep paths run) and sometimes noise.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..64),
        1 => "(Ping|Create-Session|Fragment|Close-Session|Cancel-Session|Ack|fragment|BITS_POST)"
            .prop_map(String::into_bytes),
        1 => "[ \t]{0,2}bytes[ =]{0,2}[0-9]{0,21}-[0-9]{0,21}/[0-9]{0,21}[ \t]{0,2}"
            .prop_map(String::into_bytes),
        1 => "[0-9]{0,22}".prop_map(String::into_bytes),
        1 => "[!-~ \t]{0,110}".prop_map(String::into_bytes),
    ]
}

fn noisy(near_valid: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        16 => near_valid.prop_map(String::into_bytes),
        3 => prop::collection::vec(any::<u8>(), 0..24),
        1 => Just(vec![b'x'; h::MAX_HEADER_VALUE_BYTES + 1]),
    ]
    .boxed()
}

/// The header, present four times in five.
fn sometimes(
    name: &'static str,
    value: BoxedStrategy<Vec<u8>>,
) -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    proptest::option::weighted(0.8, value).prop_map(move |value| {
        value
            .map(|value| (name.as_bytes().to_vec(), value))
            .into_iter()
            .collect()
    })
}

/// A request's headers: each header classify reads is usually present with a value that
/// is right or nearly right, so every refusal and every acceptance gets exercised, and
/// a few arbitrary headers ride along.
fn request_headers() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let packet_type = noisy(prop_oneof![
        "(Ping|Create-Session|Fragment|Close-Session|Cancel-Session)",
        "(?i)(ping|create-session|fragment|close-session|cancel-session|ack|frag)",
    ]);
    let session = noisy("[!-~]{1,100}|[ -~]{0,105}");
    // Small ranges so that a short Content-Length below matches them now and then.
    let range = noisy(prop_oneof![
        (0u64..4, 0u64..4).prop_map(|(first, extra)| format!("bytes {first}-{}/8", first + extra)),
        valid_range().prop_map(|range| range.to_string()),
        "(?i)bytes[ =]?[0-9]{0,3}-[0-9]{0,3}/[0-9]{0,4}",
    ]);
    let length = noisy("[1-4]|[0-9]{1,4}|[0-9 +-]{0,21}");
    (
        sometimes(h::PACKET_TYPE, packet_type),
        sometimes(h::SESSION_ID, session),
        sometimes(h::CONTENT_RANGE, range),
        sometimes(h::CONTENT_LENGTH, length),
        prop::collection::vec((header_name(), header_value()), 0..4),
    )
        .prop_map(|(a, b, c, d, rest)| [a, b, c, d, rest].concat())
        .prop_shuffle()
}

fn header_map(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        // Skip what the http crate refuses: such a request never reaches classify.
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&name),
            HeaderValue::from_bytes(&value),
        ) else {
            continue;
        };
        map.append(name, value);
    }
    map
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("BITS_POST".to_owned()),
        1 => Just("POST".to_owned()),
        1 => ".{0,12}",
    ]
}

fn ack_to_header_map(ack: &Ack) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in &ack.headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("Ack names are tokens"),
            HeaderValue::from_str(value).expect("Ack values are visible ASCII"),
        );
    }
    map
}

// ---------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------

proptest! {
    #[test]
    fn content_range_display_parses_back_to_the_same_range(
        range in valid_range(),
        unit_mask in prop::collection::vec(any::<bool>(), 5),
    ) {
        let text = range.to_string();
        prop_assert_eq!(ContentRange::parse(text.as_bytes()), Ok(range));
        // The unit is case-insensitive (spec §4: [W] prints "Bytes").
        let recased = format!("{}{}", random_case("bytes", &unit_mask), &text[5..]);
        prop_assert_eq!(ContentRange::parse(recased.as_bytes()), Ok(range));
        prop_assert_eq!(
            u128::from(range.len()),
            u128::from(range.last) - u128::from(range.first) + 1
        );
        prop_assert_eq!(range.check_length(range.len()), Ok(()));
        prop_assert_eq!(range.is_final(), u128::from(range.last) + 1 == u128::from(range.total));
    }

    #[test]
    fn content_range_accepts_exactly_the_ranges_the_spec_allows(
        first in any::<u64>(),
        last in any::<u64>(),
        total in any::<u64>(),
    ) {
        // Spec §6: refuse L < F and T <= L; anything else is a valid range.
        let parsed = ContentRange::parse(format!("bytes {first}-{last}/{total}").as_bytes());
        let expected = if last < first {
            Err(RangeError::LastBeforeFirst)
        } else if total <= last {
            Err(RangeError::TotalNotAfterLast)
        } else {
            Ok(ContentRange { first, last, total })
        };
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn content_length_matches_only_the_range_length(
        range in valid_range(),
        length in any::<u64>(),
    ) {
        let expected = u128::from(length) == u128::from(range.last) - u128::from(range.first) + 1;
        prop_assert_eq!(range.check_length(length).is_ok(), expected);
    }

    #[test]
    fn error_code_display_is_0x_and_eight_upper_case_digits_and_parses_back(code in any::<u32>()) {
        let text = ErrorCode(code).to_string();
        prop_assert_eq!(text.len(), 10);
        prop_assert!(text.starts_with("0x"));
        prop_assert!(text[2..].bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
        prop_assert_eq!(ErrorCode::parse(text.as_bytes()), Some(ErrorCode(code)));
    }

    #[test]
    fn error_codes_parse_in_every_lenient_spelling(code in any::<u32>()) {
        // Spec §2: optional 0x or x prefix, any case, with or without leading zeros.
        for spelling in [
            format!("0x{code:08x}"),
            format!("0X{code:X}"),
            format!("x{code:08X}"),
            format!("X{code:x}"),
            format!("{code:x}"),
            format!("{code:08X}"),
            format!(" \t0x{code:X} "),
        ] {
            prop_assert_eq!(ErrorCode::parse(spelling.as_bytes()), Some(ErrorCode(code)), "{}", spelling);
        }
    }

    #[test]
    fn error_context_display_parses_back(context in any::<u32>()) {
        let text = ErrorContext(context).to_string();
        prop_assert_eq!(ErrorContext::parse(text.as_bytes()), Some(ErrorContext(context)));
    }

    #[test]
    fn packet_types_parse_back_in_any_case_and_padding(
        kind in prop::sample::select(vec![
            PacketType::Ping,
            PacketType::CreateSession,
            PacketType::Fragment,
            PacketType::CloseSession,
            PacketType::CancelSession,
            PacketType::Ack,
        ]),
        mask in prop::collection::vec(any::<bool>(), 1..16),
        left in "[ \t]{0,3}",
        right in "[ \t]{0,3}",
    ) {
        let text = format!("{left}{}{right}", random_case(kind.as_str(), &mask));
        prop_assert_eq!(PacketType::parse(text.as_bytes()), Ok(kind));
        prop_assert_eq!(kind.to_string(), kind.as_str());
    }

    #[test]
    fn valid_session_ids_parse_back_unchanged(id in valid_session_id()) {
        let parsed = SessionId::parse(&id).expect("visible ASCII, 1 to 100 characters");
        prop_assert_eq!(parsed.as_str(), id.as_str());
        prop_assert_eq!(parsed.to_string(), id.clone());
        prop_assert_eq!(SessionId::parse(parsed.as_str()), Ok(parsed.clone()));
    }

    #[test]
    fn session_ids_with_any_other_byte_inside_are_refused(
        prefix in "[!-~]{1,40}",
        bad in any::<u8>().prop_filter("not visible ASCII", |b| !b.is_ascii_graphic()),
        suffix in "[!-~]{1,40}",
    ) {
        let mut value = prefix.into_bytes();
        value.push(bad);
        value.extend_from_slice(suffix.as_bytes());
        prop_assert_eq!(SessionId::validate(&value), Err(SessionIdError::InvalidByte(bad)));
    }

    #[test]
    fn session_ids_over_100_characters_are_refused(id in "[!-~]{101,300}") {
        prop_assert_eq!(SessionId::parse(&id), Err(SessionIdError::TooLong(id.len())));
    }

    #[test]
    fn the_protocol_guid_matches_in_any_case(mask in prop::collection::vec(any::<bool>(), 1..38)) {
        let guid = random_case(BITS_1_5_PROTOCOL, &mask);
        prop_assert!(is_bits_1_5(&guid));
        let list = format!("{{00000000-0000-0000-0000-000000000000}}, {guid}");
        prop_assert_eq!(SupportedProtocols(&list).choose(), Some(BITS_1_5_PROTOCOL));
    }

    #[test]
    fn error_acks_read_back_through_ack_info(
        status in 400u16..600,
        code in any::<u32>(),
        context in any::<u32>(),
        session in proptest::option::of(valid_session_id()),
    ) {
        let session = session.map(|id| SessionId::parse(&id).expect("valid id"));
        let ack = Ack::error(status, ErrorCode(code), ErrorContext(context))
            .with_session(session.as_ref());
        let map = ack_to_header_map(&ack);
        let info = AckInfo::from_headers(&map);
        prop_assert!(info.is_ack);
        prop_assert_eq!(info.error_code, Some(ErrorCode(code)));
        prop_assert_eq!(ack::error_code(&map), Some(ErrorCode(code)));
        prop_assert_eq!(info.error_context, Some(ErrorContext(context)));
        prop_assert_eq!(info.session_id, session);
        prop_assert_eq!(map.get(h::CONTENT_LENGTH).map(|v| v.as_bytes()), Some(&b"0"[..]));
    }

    #[test]
    fn success_acks_read_back_through_ack_info(
        session in valid_session_id(),
        next in any::<u64>(),
    ) {
        let id = SessionId::parse(&session).expect("valid id");
        let create = ack_to_header_map(&Ack::create_session_ok(&session, BITS_1_5_PROTOCOL));
        let info = AckInfo::from_headers(&create);
        prop_assert!(info.is_ack);
        prop_assert_eq!(info.session_id.as_ref(), Some(&id));
        prop_assert_eq!(info.protocol.as_deref(), Some(BITS_1_5_PROTOCOL));
        prop_assert_eq!(info.error_code, None);

        for ack in [Ack::fragment_ok(&session, next), Ack::fragment_out_of_sync(&session, next)] {
            let info = AckInfo::from_headers(&ack_to_header_map(&ack));
            prop_assert!(info.is_ack);
            prop_assert_eq!(info.session_id.as_ref(), Some(&id));
            prop_assert_eq!(info.received, Some(next));
            prop_assert_eq!(info.error_code, None);
            prop_assert_eq!(info.error_context, None);
        }
        for ack in [Ack::close_session_ok(&session), Ack::cancel_session_ok(&session)] {
            let info = AckInfo::from_headers(&ack_to_header_map(&ack));
            prop_assert!(info.is_ack);
            prop_assert_eq!(info.session_id.as_ref(), Some(&id));
            prop_assert_eq!(info.error_code, None);
        }
    }

    #[test]
    fn a_well_formed_fragment_is_accepted_with_the_range_it_carries(
        range in valid_range(),
        session in valid_session_id(),
        kind_mask in prop::collection::vec(any::<bool>(), 8),
    ) {
        let mut map = HeaderMap::new();
        map.insert(h::PACKET_TYPE, HeaderValue::from_str(&random_case("Fragment", &kind_mask)).unwrap());
        map.insert(h::SESSION_ID, HeaderValue::from_str(&session).unwrap());
        map.insert(h::CONTENT_RANGE, HeaderValue::from_str(&range.to_string()).unwrap());
        map.insert(h::CONTENT_LENGTH, HeaderValue::from(range.len()));
        match classify("BITS_POST", &map, &ClassifyOptions::default()) {
            Ok(Classified::Bits(packet)) => {
                prop_assert_eq!(packet.kind, PacketType::Fragment);
                prop_assert_eq!(packet.range, Some(range));
                prop_assert_eq!(packet.content_length, Some(range.len()));
                prop_assert_eq!(packet.session_id, Some(session.as_str()));
            }
            other => prop_assert!(false, "refused a well-formed fragment: {:?}", other),
        }
    }
}

// ---------------------------------------------------------------------------------
// No input panics
// ---------------------------------------------------------------------------------

proptest! {
    #[test]
    fn no_byte_string_makes_a_value_parser_panic(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        let _ = ContentRange::parse(&bytes);
        let _ = ErrorCode::parse(&bytes);
        let _ = ErrorContext::parse(&bytes);
        let _ = PacketType::parse(&bytes);
        let _ = SessionId::validate(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = SessionId::parse(&text);
        let _ = text.parse::<PacketType>();
        let _ = is_bits_1_5(&text);
        let list = SupportedProtocols(&text);
        prop_assert!(list.iter().all(|guid| !guid.is_empty() && !guid.contains([' ', '\t', ','])));
        let _ = list.choose();
    }

    #[test]
    fn no_range_like_text_makes_the_range_parser_panic(text in "[ \t]{0,2}[bByYtTeEsS=* ]{0,8}[0-9 +*/-]{0,50}") {
        if let Ok(range) = ContentRange::parse(text.as_bytes()) {
            // Anything accepted satisfies the spec's F <= L < T.
            prop_assert!(range.first <= range.last && range.last < range.total);
            prop_assert_eq!(ContentRange::parse(range.to_string().as_bytes()), Ok(range));
        }
    }

    #[test]
    fn no_hand_built_range_makes_its_helpers_panic(first in any::<u64>(), last in any::<u64>(), total in any::<u64>()) {
        let range = ContentRange { first, last, total };
        let _ = range.len();
        let _ = range.is_final();
        let _ = range.check_length(0);
        let _ = range.to_string();
        let _ = ContentRange::new(first, last, total);
    }

    #[test]
    fn no_header_map_makes_ack_readers_panic(
        pairs in prop::collection::vec((header_name(), header_value()), 0..12),
    ) {
        let map = header_map(pairs);
        let info = AckInfo::from_headers(&map);
        let _ = ack::error_code(&map);
        if let Some(id) = info.session_id {
            prop_assert!(SessionId::parse(id.as_str()).is_ok());
        }
    }

    #[test]
    fn no_request_makes_classify_panic_and_every_outcome_keeps_its_promises(
        method in method(),
        pairs in request_headers(),
        allow_method_override in any::<bool>(),
    ) {
        let map = header_map(pairs);
        let options = ClassifyOptions { allow_method_override, ..ClassifyOptions::default() };
        match classify(&method, &map, &options) {
            Ok(Classified::Other) => {}
            Ok(Classified::Bits(packet)) => {
                prop_assert!(packet.kind != PacketType::Ack);
                prop_assert_eq!(packet.session_id.is_some(), packet.kind.needs_session());
                if let Some(id) = packet.session_id {
                    prop_assert!(SessionId::parse(id).is_ok());
                }
                if packet.kind == PacketType::Fragment {
                    let range = packet.range.expect("a fragment has a range");
                    prop_assert_eq!(packet.content_length, Some(range.len()));
                } else {
                    prop_assert_eq!(packet.range, None);
                }
                prop_assert!(map.values().all(|v| v.len() <= options.max_header_value));
                prop_assert!(!map.contains_key(h::TRANSFER_ENCODING));
            }
            Err(reject) => {
                let ack = reject.ack();
                prop_assert_eq!(ack.status, 400);
                prop_assert_eq!(ack.get(h::PACKET_TYPE), Some("Ack"));
                prop_assert_eq!(ack.get(h::CONTENT_LENGTH), Some("0"));
                prop_assert_eq!(ack.get(h::ERROR_CODE), Some("0x80070057"));
                prop_assert_eq!(ack.get(h::ERROR_CONTEXT), Some("0x5"));
                // An echoed id is the request's own, and a valid one (spec §5).
                if let Some(id) = &reject.session_id {
                    let sent: Vec<_> = map.get_all(h::SESSION_ID).iter().collect();
                    prop_assert!(!sent.is_empty());
                    prop_assert!(sent.iter().all(|v| SessionId::validate(v.as_bytes()) == Ok(id.as_str())));
                    prop_assert_eq!(ack.get(h::SESSION_ID), Some(id.as_str()));
                } else {
                    prop_assert_eq!(ack.get(h::SESSION_ID), None);
                }
            }
        }
    }
}
