//! Reading a backend's Ack from arbitrary response heads: never panics whatever the
//! backend sends, and a session id it keeps is one the proxy would accept from a client.
#![no_main]

use bits_proto::{AckInfo, SessionId};
use bitsgate_fuzz::headers_of;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|head: &[u8]| {
    let mut parsed = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut parsed);
    if !matches!(response.parse(head), Ok(httparse::Status::Complete(_))) {
        return;
    }
    let headers = headers_of(response.headers);
    let info = AckInfo::from_headers(&headers);
    if let Some(id) = &info.session_id {
        assert!(SessionId::validate(id.as_str().as_bytes()).is_ok(), "{id:?}");
    }
    assert_eq!(info.error_code, bits_proto::ack::error_code(&headers));
});
