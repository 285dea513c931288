//! The config parser: any text yields a config or a list of errors, each naming a key
//! and saying what to do, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(errors) = bitsgate::config::load_str(text) {
        assert!(!errors.0.is_empty());
        for error in &errors.0 {
            assert!(!error.message.is_empty(), "{error:?}");
        }
    }
});
