//! A small, fast, non-cryptographic string hasher for the route table's maps and tables.
//!
//! SipHash (std's default) costs more than the rest of a trie step for short path segments.
//! Hash flooding is not a concern here: the maps' keys come from the published snapshot, not
//! from requests; a request can only probe, and a probe costs at most one bucket scan among
//! keys the operator configured. (This is the Fx hash of rustc, with a final rotation so the
//! high bits that hashbrown uses for its control bytes are well mixed.)

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` using [`FxHasher`].
pub(crate) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The hash of a string's bytes, as the trie's literal tables store it.
#[inline]
pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    h.finish()
}

const SEED: u64 = 0xf135_7aea_2e62_a9c5;

/// The bytes of `s` (at most 8) as a little-endian `u64`, zero-padded: exact, so two short
/// strings of equal length are equal iff their packed values are.
///
/// Built from overlapping fixed-size loads rather than a copy into a buffer, which would cost a
/// call and a store-forwarding stall on every hashed segment.
#[inline]
pub(crate) fn pack_short(s: &[u8]) -> u64 {
    let n = s.len();
    let word4 = |i: usize| {
        s.get(i..i + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
    };
    let byte = |i: usize| s.get(i).map_or(0, |&b| u64::from(b));
    match n {
        0 => 0,
        1..=3 => byte(0) | (byte(n / 2) << (8 * (n / 2))) | (byte(n - 1) << (8 * (n - 1))),
        4..=8 => word4(0) | (word4(n - 4) << (8 * (n - 4))),
        _ => 0,
    }
}

#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Mix in the length so "a" and "a\0" differ.
            self.add(pack_short(rest) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn pack_short_is_exact() {
        let s = b"abcdefgh";
        for n in 0..=8 {
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(&s[..n]);
            assert_eq!(pack_short(&s[..n]), u64::from_le_bytes(w), "{n}");
        }
    }

    #[test]
    fn distinguishes_similar_keys() {
        let b = BuildHasherDefault::<FxHasher>::default();
        let keys = [
            "",
            "a",
            "a\0",
            "b",
            "ab",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghi",
        ];
        let hashes: Vec<u64> = keys.iter().map(|k| b.hash_one(k)).collect();
        for (i, a) in hashes.iter().enumerate() {
            for c in &hashes[i + 1..] {
                assert_ne!(a, c);
            }
        }
    }
}
