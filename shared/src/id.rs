//! Identifiers for apps, fns, triggers and calls.
//!
//! An ID is a ULID: 48 bits of Unix milliseconds followed by 80 random bits, written as 26 characters of
//! upper-case Crockford base32, the same text form as Fn's IDs. Fn filled the low 80 bits with the node's
//! IP address, port and a counter, which collides when two nodes share an address (containers, NAT) and
//! leaks topology. Random bits need no coordination between nodes. Within one process IDs are also
//! strictly increasing (the generator increments the random part inside a millisecond), so they sort by
//! creation time, which the call listing relies on.

use std::sync::Mutex;

/// Length of an ID's text form.
pub const ID_LEN: usize = 26;

static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);

/// A new, unique, time-sortable ID.
pub fn new_id() -> String {
    let mut guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    // `generate` fails only when 2^80 IDs were made in one millisecond; a fresh ULID is then still unique.
    generator.generate().unwrap_or_else(|_| ulid::Ulid::new()).to_string()
}

/// Whether `s` has the form of an ID (26 Crockford base32 characters).
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && ulid::Ulid::from_string(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_26_chars_unique_and_increasing() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        assert!(ids.iter().all(|id| id.len() == ID_LEN && is_id(id)));
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "IDs must increase");
        assert!(ids[0].chars().all(|c| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c)));
    }
}
