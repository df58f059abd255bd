//! Short codes: how an id becomes a code, and what a code may look like.
//!
//! # Why ids, a permutation and base62
//!
//! Hashing the long URL and keeping a prefix gives codes that collide, and every create then
//! needs a lookup-and-retry loop that gets slower as the table fills. Encoding a unique id in
//! base62 cannot collide, but a plain counter makes codes sequential: anyone can walk the
//! whole link table by counting. Basis keeps the counter (ids leased in blocks, see
//! `basis_store::ids`) and passes each id through a keyed permutation of `[0, 62^7)` before
//! encoding it. A permutation is a bijection, so distinct ids still give distinct codes, with
//! no lookup; without the key the sequence of codes looks random. Every id below 62^7
//! (3.5 trillion) gets a code of exactly 7 characters.
//!
//! The permutation is a balanced Feistel network over 42-bit values (two 21-bit halves),
//! restricted to `[0, 62^7)` by cycle walking: a value that lands outside the range is
//! permuted again until it lands inside. Because 62^7 is 80 % of 2^42, a walk takes 1.25
//! steps on average. The key lives in the database so every instance agrees on it.
//!
//! # Codes are computed, not stored
//!
//! Because the permutation can be inverted, a generated code is never stored: a request for
//! a 7-character code decodes it to the id and reads the row by primary key. Only custom
//! aliases are stored. To keep the two apart, a new alias may not have the shape of a
//! generated code (exactly seven letters and digits; see `input::Alias`), so the shape of
//! a code alone says which lookup to make ([`CodeBook::key_of`]). Aliases of that shape made
//! before this rule (migration 0004) are *held*: the id each one decodes to is never handed
//! to a new link while the alias exists, and a request for it looks up both the alias and
//! the id, alias first ([`LinkKey::IdOrAlias`]).

use std::collections::HashSet;
use std::fmt;

use basis_store::links::{LinkKey, LinkRow};

/// The base62 alphabet, in the order that makes id 125 encode as `cb`.
const ALPHABET: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// Length of a generated code.
pub const CODE_LEN: usize = 7;
/// The size of the permuted id space: 62^7.
pub const CODE_SPACE: u64 = 62u64.pow(CODE_LEN as u32);
const HALF_BITS: u32 = 21;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;
const ROUNDS: usize = 6;
/// Longest accepted code (generated codes are 7 characters, aliases up to 64).
pub const MAX_CODE_LEN: usize = 64;

/// Encodes `n` in base62, most significant digit first, with no padding.
pub fn base62_encode(mut n: u64) -> String {
    if n == 0 {
        return (ALPHABET[0] as char).to_string();
    }
    let mut digits = Vec::with_capacity(11);
    while n > 0 {
        digits.push(ALPHABET[(n % 62) as usize]);
        n /= 62;
    }
    digits.reverse();
    String::from_utf8(digits).expect("the alphabet is ASCII")
}

/// Decodes a base62 string; `None` on a foreign character or overflow.
pub fn base62_decode(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        let digit = match b {
            b'a'..=b'z' => b - b'a',
            b'A'..=b'Z' => b - b'A' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            _ => return None,
        };
        acc.checked_mul(62)?.checked_add(u64::from(digit))
    })
}

/// The keyed bijection between ids and codes, and the ids held back for old aliases.
#[derive(Clone)]
pub struct CodeBook {
    round_keys: [u64; ROUNDS],
    /// Ids whose generated code equals an alias made before migration 0004.
    held: HashSet<u64>,
}

impl fmt::Debug for CodeBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeBook { .. }")
    }
}

/// SplitMix64's finaliser: a fast, well-mixing 64-bit function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl CodeBook {
    /// A code book for `key` (kept secret and fixed for the life of the installation).
    pub fn new(key: u64) -> Self {
        let mut state = key;
        let round_keys = std::array::from_fn(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix(state)
        });
        Self {
            round_keys,
            held: HashSet::new(),
        }
    }

    /// This code book, holding back the ids that `aliases` (code-shaped aliases made before
    /// migration 0004) decode to. Other aliases are ignored.
    pub fn holding<'a>(mut self, aliases: impl IntoIterator<Item = &'a str>) -> Self {
        let held: Vec<u64> = aliases
            .into_iter()
            .filter(|a| is_code_shaped(a))
            .filter_map(|a| self.decode(a))
            .collect();
        self.held.extend(held);
        self
    }

    /// Whether `id` must not be given to a new link (its code is an old alias).
    pub fn is_held(&self, id: u64) -> bool {
        self.held.contains(&id)
    }

    /// How to look up the link behind `code`: by id for the shape of a generated code, by
    /// alias otherwise, and both for a held id.
    pub fn key_of<'a>(&self, code: &'a str) -> LinkKey<'a> {
        let id = is_code_shaped(code)
            .then(|| self.decode(code))
            .flatten()
            .and_then(|id| i64::try_from(id).ok());
        match id {
            Some(id) if self.held.contains(&(id as u64)) => LinkKey::IdOrAlias(id, code),
            Some(id) => LinkKey::Id(id),
            None => LinkKey::Alias(code),
        }
    }

    /// The code that reaches `row`: its alias, or the code generated from its id.
    pub fn code_of(&self, row: &LinkRow) -> String {
        match &row.alias {
            Some(alias) => alias.clone(),
            None => self.encode(row.id as u64),
        }
    }

    fn round(&self, half: u64, i: usize) -> u64 {
        mix(half ^ self.round_keys[i]) & HALF_MASK
    }

    fn feistel(&self, x: u64) -> u64 {
        let (mut left, mut right) = (x >> HALF_BITS, x & HALF_MASK);
        for i in 0..ROUNDS {
            (left, right) = (right, left ^ self.round(right, i));
        }
        (left << HALF_BITS) | right
    }

    fn feistel_inverse(&self, x: u64) -> u64 {
        let (mut left, mut right) = (x >> HALF_BITS, x & HALF_MASK);
        for i in (0..ROUNDS).rev() {
            (left, right) = (right ^ self.round(left, i), left);
        }
        (left << HALF_BITS) | right
    }

    /// Permutes `id` within `[0, 62^7)`; ids outside that range are returned unchanged.
    pub fn permute(&self, id: u64) -> u64 {
        if id >= CODE_SPACE {
            return id;
        }
        let mut x = self.feistel(id);
        while x >= CODE_SPACE {
            x = self.feistel(x);
        }
        x
    }

    /// The inverse of [`permute`](Self::permute).
    pub fn unpermute(&self, value: u64) -> u64 {
        if value >= CODE_SPACE {
            return value;
        }
        let mut x = self.feistel_inverse(value);
        while x >= CODE_SPACE {
            x = self.feistel_inverse(x);
        }
        x
    }

    /// The code of `id`: exactly 7 characters below 62^7, longer (and unpermuted) above.
    pub fn encode(&self, id: u64) -> String {
        let digits = base62_encode(self.permute(id));
        if digits.len() >= CODE_LEN {
            return digits;
        }
        let mut code = String::with_capacity(CODE_LEN);
        code.extend(std::iter::repeat_n(
            ALPHABET[0] as char,
            CODE_LEN - digits.len(),
        ));
        code.push_str(&digits);
        code
    }

    /// The id a generated code stands for, if `code` has the shape of one.
    pub fn decode(&self, code: &str) -> Option<u64> {
        if code.len() < CODE_LEN {
            return None;
        }
        base62_decode(code).map(|v| self.unpermute(v))
    }
}

/// Whether `s` has the shape of a generated code: exactly seven letters and digits.
pub fn is_code_shaped(s: &str) -> bool {
    s.len() == CODE_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A string that can be a short code: 1 to 64 characters of `[A-Za-z0-9_-]`. Anything else
/// cannot name a link, so it is answered with 404 before any lookup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShortCode<'a>(&'a str);

impl<'a> ShortCode<'a> {
    /// Parses a path segment (borrowed: checking a code copies nothing).
    pub fn parse(s: &'a str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= MAX_CODE_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then_some(Self(s))
    }

    /// The code.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl fmt::Display for ShortCode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn id_125_encodes_as_cb_like_the_guide_example() {
        assert_eq!(base62_encode(125), "cb");
        assert_eq!(base62_decode("cb"), Some(125));
    }

    #[test]
    fn decoding_rejects_foreign_characters_and_overflow() {
        assert_eq!(base62_decode("ab-c"), None);
        assert_eq!(base62_decode(""), None);
        assert_eq!(base62_decode("9999999999999"), None);
    }

    #[test]
    fn consecutive_ids_give_unrelated_seven_character_codes() {
        let book = CodeBook::new(42);
        let codes: Vec<String> = (1..=5).map(|id| book.encode(id)).collect();
        assert!(codes.iter().all(|c| c.len() == CODE_LEN), "{codes:?}");
        // No shared prefix longer than chance would give between neighbours.
        for pair in codes.windows(2) {
            assert_ne!(pair[0][..4], pair[1][..4], "{codes:?}");
        }
    }

    #[test]
    fn different_keys_give_different_codes() {
        assert_ne!(CodeBook::new(1).encode(7), CodeBook::new(2).encode(7));
    }

    #[test]
    fn the_first_ten_thousand_ids_have_distinct_codes() {
        let book = CodeBook::new(0xdead_beef);
        let codes: HashSet<String> = (0..10_000).map(|id| book.encode(id)).collect();
        assert_eq!(codes.len(), 10_000);
    }

    #[test]
    fn ids_beyond_the_seven_character_space_still_get_unique_longer_codes() {
        let book = CodeBook::new(9);
        let code = book.encode(CODE_SPACE + 5);
        assert!(code.len() > CODE_LEN);
        assert_eq!(book.decode(&code), Some(CODE_SPACE + 5));
    }

    #[test]
    fn the_shape_of_a_code_decides_the_lookup() {
        let book = CodeBook::new(7);
        let code = book.encode(1234);
        assert_eq!(book.key_of(&code), LinkKey::Id(1234));
        for alias in ["my-link", "abc_123", "short", "eightchr", "a-b"] {
            assert_eq!(book.key_of(alias), LinkKey::Alias(alias), "{alias}");
        }
    }

    #[test]
    fn an_old_code_shaped_alias_holds_back_its_id() {
        let plain = CodeBook::new(7);
        let id = plain.decode("Promo26").unwrap();
        let book = plain.holding(["Promo26", "not-code-shaped", "Abcdefgh"]);
        assert!(book.is_held(id));
        assert_eq!(book.held.len(), 1, "only code-shaped aliases hold an id");
        assert_eq!(
            book.key_of("Promo26"),
            LinkKey::IdOrAlias(id as i64, "Promo26")
        );
        assert_eq!(book.key_of(&book.encode(5)), LinkKey::Id(5));
    }

    #[test]
    fn short_code_accepts_only_the_code_alphabet() {
        assert!(ShortCode::parse("abc_DEF-123").is_some());
        for bad in ["", "a b", "a/b", "é", "a.b", "%20", &"x".repeat(65)] {
            assert!(ShortCode::parse(bad).is_none(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn base62_round_trips(n in any::<u64>()) {
            prop_assert_eq!(base62_decode(&base62_encode(n)), Some(n));
        }

        #[test]
        fn the_permutation_round_trips_and_stays_in_range(key in any::<u64>(), id in 0..CODE_SPACE) {
            let book = CodeBook::new(key);
            let p = book.permute(id);
            prop_assert!(p < CODE_SPACE);
            prop_assert_eq!(book.unpermute(p), id);
        }

        #[test]
        fn codes_decode_to_their_id(key in any::<u64>(), id in 0..CODE_SPACE) {
            let book = CodeBook::new(key);
            let code = book.encode(id);
            prop_assert_eq!(code.len(), CODE_LEN);
            prop_assert_eq!(book.decode(&code), Some(id));
        }

        #[test]
        fn distinct_ids_give_distinct_codes(key in any::<u64>(), a in 0..CODE_SPACE, b in 0..CODE_SPACE) {
            prop_assume!(a != b);
            let book = CodeBook::new(key);
            prop_assert_ne!(book.encode(a), book.encode(b));
        }
    }
}
