//! Session ids: validation never panics, what it accepts parses to the same text, and
//! the pin table's key for it names the same session when formatted and read again.
#![no_main]

use bits_proto::SessionId;
use bitsgate::session::SessionKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = SessionId::validate(data) {
        let id = SessionId::parse(text).expect("a validated id parses");
        assert_eq!(id.as_str(), text);
        let key = SessionKey::new(text);
        assert_eq!(SessionKey::new(&key.to_string()), key, "{text:?}");
    }
});
