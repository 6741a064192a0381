//! Path parameters of a match, without a heap allocation for the common case of at most
//! [`INLINE_PARAMS`] parameters.

use std::fmt;
use std::ops::Deref;

/// How many parameters fit without allocating.
pub const INLINE_PARAMS: usize = 4;

/// Path parameters in template order: `(name, decoded value)`. Dereferences to a slice.
///
/// Names borrow from the route table (`'t`), values from the request path (`'p`). A greedy
/// `{name+}` value may contain `/`.
#[derive(Clone, Default)]
pub struct Params<'t, 'p> {
    inline: [(&'t str, &'p str); INLINE_PARAMS],
    len: usize,
    /// Used instead of `inline` once there are more than [`INLINE_PARAMS`] parameters.
    spilled: Vec<(&'t str, &'p str)>,
}

impl<'t, 'p> Params<'t, 'p> {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, name: &'t str, value: &'p str) {
        if self.spilled.is_empty() {
            if let Some(slot) = self.inline.get_mut(self.len) {
                *slot = (name, value);
                self.len += 1;
                return;
            }
            self.spilled.reserve(self.len + 1);
            self.spilled.extend_from_slice(&self.inline[..]);
        }
        self.spilled.push((name, value));
    }

    /// The value of the parameter `name` (names compare case-insensitively, as in APIG).
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn as_slice(&self) -> &[(&'t str, &'p str)] {
        if self.spilled.is_empty() {
            self.inline.get(..self.len).unwrap_or_default()
        } else {
            &self.spilled
        }
    }
}

impl<'t, 'p> Deref for Params<'t, 'p> {
    type Target = [(&'t str, &'p str)];

    fn deref(&self) -> &Self::Target {
        self.as_slice()
    }
}

impl fmt::Debug for Params<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl PartialEq for Params<'_, '_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Params<'_, '_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spills_past_the_inline_capacity_in_order() {
        let names = ["a", "b", "c", "d", "e", "f"];
        let mut p = Params::new();
        for (i, n) in names.iter().enumerate() {
            p.push(n, n);
            assert_eq!(p.len(), i + 1);
            assert_eq!(p.iter().map(|(n, _)| *n).collect::<Vec<_>>(), names[..=i]);
        }
        assert_eq!(p.get("E"), Some("e"));
        assert_eq!(p.get("x"), None);
    }
}
