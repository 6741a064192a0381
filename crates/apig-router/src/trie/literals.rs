//! The literal children of every trie node, in one arena: per node, an immutable
//! open-addressing table (linear probing, at most half full) of 32-byte slots.
//!
//! Why not a `HashMap` per node: a lookup hashes each path segment once; a slot holds a key of
//! up to 8 bytes inline (most path segments: `v1`, `users`, `orders`), so a step compares two
//! integers without touching another cache line or calling `memcmp`; longer keys keep 32 bits
//! of their hash in the slot and are compared in a shared key string only when those match.
//! A slot also holds a copy of its child [`Node`], so walking down a literal edge costs one
//! memory access instead of two dependent ones (the slot, then the node): on large tables
//! those accesses are cache misses and dominate a lookup.

use super::{Node, TooLarge};
use crate::hash::pack_short;

/// Keys up to this long live inside their slot.
const INLINE_KEY: usize = 8;

/// `len` of an empty slot.
const EMPTY: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// A short key: its bytes ([`pack_short`]). A long key: its hash's low 32 bits in the high
    /// half and its offset in [`Literals::keys`] in the low half.
    word: u64,
    len: u32,
    node: Node,
}

const EMPTY_SLOT: Slot = Slot {
    word: 0,
    len: EMPTY,
    node: Node::EMPTY,
};

/// Where one node's table sits in the arena. `cap` is 0 (no literal children) or a power of
/// two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Table {
    start: u32,
    cap: u32,
}

impl Table {
    /// No literal children.
    pub(crate) const EMPTY: Table = Table { start: 0, cap: 0 };

    #[inline]
    pub(crate) fn is_empty(self) -> bool {
        self.cap == 0
    }
}

/// A path segment prepared for probing: its hash and the word its slot would hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe<'a> {
    seg: &'a str,
    hash: u64,
    word: u64,
}

impl<'a> Probe<'a> {
    /// `hash` is [`hash_str`](crate::hash::hash_str) of `seg`.
    #[inline]
    pub(crate) fn new(seg: &'a str, hash: u64) -> Probe<'a> {
        Probe {
            seg,
            hash,
            word: key_word(seg, hash, 0),
        }
    }
}

/// The slot word of a key: inline bytes, or the hash's low half over `offset`.
#[inline]
fn key_word(key: &str, hash: u64, offset: u32) -> u64 {
    if key.len() <= INLINE_KEY {
        pack_short(key.as_bytes())
    } else {
        ((hash & 0xffff_ffff) << 32) | u64::from(offset)
    }
}

/// All literal tables of a trie.
#[derive(Debug, Default)]
pub(crate) struct Literals {
    slots: Vec<Slot>,
    keys: String,
}

impl Literals {
    /// Reserves an empty table for `n` entries.
    pub(crate) fn reserve(&mut self, n: usize) -> Result<Table, TooLarge> {
        if n == 0 {
            return Ok(Table::EMPTY);
        }
        let cap = n
            .checked_mul(2)
            .and_then(usize::checked_next_power_of_two)
            .ok_or(TooLarge)?;
        let start = self.slots.len();
        let table = Table {
            start: u32::try_from(start).map_err(|_| TooLarge)?,
            cap: u32::try_from(cap).map_err(|_| TooLarge)?,
        };
        u32::try_from(start + cap).map_err(|_| TooLarge)?;
        self.slots.resize(start + cap, EMPTY_SLOT);
        Ok(table)
    }

    /// Adds `key` → `node` to a table reserved for at least as many distinct keys.
    pub(crate) fn insert(
        &mut self,
        table: Table,
        key: &str,
        hash: u64,
        node: Node,
    ) -> Result<(), TooLarge> {
        let len = u32::try_from(key.len())
            .ok()
            .filter(|&l| l != EMPTY)
            .ok_or(TooLarge)?;
        let word = if key.len() <= INLINE_KEY {
            key_word(key, hash, 0)
        } else {
            let offset = u32::try_from(self.keys.len()).map_err(|_| TooLarge)?;
            u32::try_from(self.keys.len() + key.len()).map_err(|_| TooLarge)?;
            self.keys.push_str(key);
            key_word(key, hash, offset)
        };
        let start = table.start as usize;
        let slots = self
            .slots
            .get_mut(start..start + table.cap as usize)
            .ok_or(TooLarge)?;
        let mask = slots.len().wrapping_sub(1);
        let mut i = hash as usize & mask;
        for _ in 0..slots.len() {
            let s = slots.get_mut(i).ok_or(TooLarge)?;
            if s.len == EMPTY {
                *s = Slot { word, len, node };
                return Ok(());
            }
            i = (i + 1) & mask;
        }
        // Full: the caller reserved too little.
        Err(TooLarge)
    }

    /// The child node for the probed segment.
    #[inline]
    pub(crate) fn get(&self, table: Table, probe: Probe<'_>) -> Option<Node> {
        let start = table.start as usize;
        let slots = self.slots.get(start..start + table.cap as usize)?;
        let mask = slots.len().wrapping_sub(1);
        let len = probe.seg.len();
        let mut i = probe.hash as usize & mask;
        for _ in 0..slots.len() {
            let s = slots.get(i)?;
            if s.len == EMPTY {
                return None;
            }
            if s.len as usize == len {
                if len <= INLINE_KEY {
                    if s.word == probe.word {
                        return Some(s.node);
                    }
                } else if s.word >> 32 == probe.word >> 32 {
                    let at = (s.word & 0xffff_ffff) as usize;
                    if self.keys.get(at..at + len) == Some(probe.seg) {
                        return Some(s.node);
                    }
                }
            }
            i = (i + 1) & mask;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_str;

    /// A node told apart by its `param` field.
    fn node(id: u32) -> Node {
        Node {
            param: id,
            ..Node::EMPTY
        }
    }

    fn get(lits: &Literals, t: Table, key: &str, hash: u64) -> Option<u32> {
        lits.get(t, Probe::new(key, hash)).map(|n| n.param)
    }

    #[test]
    fn finds_every_key_and_nothing_else() {
        let mut lits = Literals::default();
        // Short (inline) and long keys.
        let keys: Vec<String> = (0..100)
            .map(|i| {
                if i % 2 == 0 {
                    format!("k{i}")
                } else {
                    format!("a-longer-key-{i}")
                }
            })
            .collect();
        let mut tables = Vec::new();
        for n in [0usize, 1, 2, 3, 8, 9, 100] {
            let t = lits.reserve(n).unwrap();
            for (i, k) in keys[..n].iter().enumerate() {
                lits.insert(t, k, hash_str(k), node(i as u32)).unwrap();
            }
            tables.push((n, t));
        }
        for (n, t) in tables {
            assert_eq!(t.is_empty(), n == 0);
            for (i, k) in keys.iter().enumerate() {
                let want = (i < n).then_some(i as u32);
                assert_eq!(get(&lits, t, k, hash_str(k)), want, "{n} {k}");
            }
            assert_eq!(get(&lits, t, "", hash_str("")), None);
        }
    }

    #[test]
    fn colliding_hashes_fall_back_to_key_comparison() {
        let mut lits = Literals::default();
        let long = ["long-key-a", "long-key-b", "long-key-c", "long-key-d"];
        let entries = [("a", 1), ("b", 2), (long[0], 3), (long[1], 4), (long[2], 5)];
        let t = lits.reserve(entries.len()).unwrap();
        for (k, c) in entries {
            lits.insert(t, k, 7, node(c)).unwrap();
        }
        for (k, c) in entries {
            assert_eq!(get(&lits, t, k, 7), Some(c), "{k}");
        }
        assert_eq!(get(&lits, t, "d", 7), None);
        assert_eq!(get(&lits, t, long[3], 7), None);
        // A table never overfills.
        let small = lits.reserve(1).unwrap();
        lits.insert(small, "x", 1, node(1)).unwrap();
        lits.insert(small, "y", 1, node(2)).unwrap();
        assert!(lits.insert(small, "z", 1, node(3)).is_err());
    }
}
