//! The gateway's websocket frame parser on any text: a typed error frame or a valid client
//! frame, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = offpath_transport::frames::parse(text, 4096);
    }
});
