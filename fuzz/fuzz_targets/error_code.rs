//! `BITS-Error-Code` and `BITS-Error-Context` parsing: never panics, and a parsed value
//! written back in the spec's form (`0x` and eight hex digits) reads back the same.
#![no_main]

use bits_proto::{ErrorCode, ErrorContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(code) = ErrorCode::parse(data) {
        let written = code.to_string();
        assert_eq!(ErrorCode::parse(written.as_bytes()), Some(code), "{written}");
    }
    if let Some(context) = ErrorContext::parse(data) {
        let written = context.to_string();
        assert_eq!(ErrorContext::parse(written.as_bytes()), Some(context), "{written}");
    }
});
