//! Storage keys: an accepted key is non-empty, within the limit, and free of
//! control characters (the namespace separator among them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tarkd::broker::storage::check_key;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    for max in [1, 16, 512] {
        if check_key(key, max).is_ok() {
            assert!(!key.is_empty() && key.len() <= max);
            assert!(!key.chars().any(char::is_control), "{key:?}");
        }
    }
});
