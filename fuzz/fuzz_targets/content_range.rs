//! `Content-Range` parsing: never panics, and what it accepts satisfies the invariants
//! `ContentRange::new` checks, so the two can never disagree.
#![no_main]

use bits_proto::ContentRange;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(range) = ContentRange::parse(data) {
        assert!(range.first <= range.last && range.last < range.total, "{range:?}");
        assert_eq!(ContentRange::new(range.first, range.last, range.total), Ok(range));
        assert_eq!(range.len(), range.last - range.first + 1);
        assert!(range.check_length(range.len()).is_ok());
    }
});
