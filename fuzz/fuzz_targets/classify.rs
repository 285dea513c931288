//! `classify` over arbitrary request heads (method and header set, as a client sends
//! them): never panics, a packet it accepts holds only valid parts, and every refusal
//! becomes a well-formed BITS error Ack. The first input byte picks the options.
#![no_main]

use bits_proto::{classify, Classified, ClassifyOptions, PacketType, SessionId};
use bitsgate_fuzz::headers_of;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&options, head)) = data.split_first() else {
        return;
    };
    let mut parsed = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut parsed);
    if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
        return;
    }
    let (Some(method), headers) = (request.method, headers_of(request.headers)) else {
        return;
    };
    let options = ClassifyOptions {
        allow_method_override: options & 1 == 1,
        // From 0 (refuse any value) to well past the 4 KiB default.
        max_header_value: usize::from(options >> 1) * 64,
    };
    match classify(method, &headers, &options) {
        Ok(Classified::Bits(packet)) => {
            if let Some(id) = packet.session_id {
                assert!(SessionId::validate(id.as_bytes()).is_ok(), "{id:?}");
            }
            if let (PacketType::Fragment, Some(range), Some(length)) =
                (packet.kind, packet.range, packet.content_length)
            {
                assert!(range.check_length(length).is_ok(), "{range:?} {length}");
            }
        }
        Ok(Classified::Other) => {}
        Err(reject) => {
            let ack = reject.ack();
            assert!((400..600).contains(&ack.status), "{}", ack.status);
            assert_eq!(ack.get("BITS-Packet-Type"), Some("Ack"));
        }
    }
});
