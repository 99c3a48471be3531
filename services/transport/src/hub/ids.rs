//! Message ids: unguessable, and prefixed with the gateway's instance.

/// A new message id, `<instance>.<32 hex digits>`: 128 bits from the OS random number
/// generator, so no one can tell the next id from the ones seen (a request published in
/// advance under it would otherwise take the real one's place). The instance prefix lets
/// this gateway recognise its own ids in verdicts it no longer tracks.
pub(crate) fn new_id(instance: &str) -> String {
    let mut bits = [0u8; 16];
    if let Err(err) = getrandom::fill(&mut bits) {
        // Not seen on Linux since 3.17 (getrandom(2) blocks until the pool is seeded). A
        // keyed hash seeded by the OS at start is the best left; still not a counter.
        tracing::error!("the OS random number generator failed ({err}); ids from a keyed hash");
        bits = fallback_bits();
    }
    let mut id = String::with_capacity(instance.len() + 33);
    id.push_str(instance);
    id.push('.');
    for byte in bits {
        use std::fmt::Write;
        // Writing to a String cannot fail.
        let _ = write!(id, "{byte:02x}");
    }
    id
}

/// 128 bits from two SipHash keys std drew from the OS, mixed with the time.
fn fallback_bits() -> [u8; 16] {
    use std::hash::BuildHasher;
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let high = std::collections::hash_map::RandomState::new().hash_one(time);
    let low = std::collections::hash_map::RandomState::new().hash_one(time);
    (u128::from(high) << 64 | u128::from(low)).to_be_bytes()
}
