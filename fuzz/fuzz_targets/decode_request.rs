//! The moderator's strict request decoder on any subject and payload: it must return a
//! typed error or a request that passes validation, never panic, and an accepted request
//! must survive an encode/decode round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offpath_protocol::{Limits, decode_request, encode};

const SUBJECTS: [&str; 5] = [
    "offpath.req.acme",
    "offpath.req.",
    "offpath.req.a.b",
    "offpath.req.*",
    "elsewhere",
];

fuzz_target!(|data: &[u8]| {
    let Some((choice, payload)) = data.split_first() else {
        return;
    };
    let subject = SUBJECTS[usize::from(*choice) % SUBJECTS.len()];
    let limits = Limits::default();
    if let Ok(request) = decode_request(subject, payload, &limits) {
        let again = decode_request(subject, &encode(&request), &limits)
            .expect("an accepted request re-encodes to an accepted request");
        assert_eq!(again, request);
    }
});
