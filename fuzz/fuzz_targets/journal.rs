//! Opening a damaged journal: whatever the file holds, opening it never panics; it
//! either loads the pins it can read or refuses with an error, and a second open of
//! what the first one left behind loads the same pins (the repair is stable).
#![no_main]

use bitsgate::config::model::StorageSync;
use bitsgate::session::store::PinStore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("pins.journal"), data).expect("writes the journal");
    let first = match PinStore::open(dir.path(), StorageSync::Write) {
        Ok((store, loaded)) => {
            drop(store);
            loaded.pins.len()
        }
        Err(_) => return,
    };
    let (_, again) = PinStore::open(dir.path(), StorageSync::Write).expect("reopens what it repaired");
    assert_eq!(again.pins.len(), first);
});
