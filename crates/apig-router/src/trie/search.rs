//! Matching: a depth-first search of one trie, with all state on the stack.
//!
//! Precedence: any `NORMAL` match beats any `SWA` match. `NORMAL` templates are tried depth
//! first, at each segment literal before `{name}` before `{name+}`, backtracking when a branch
//! fails deeper; the first template with a route for the method (or `ANY`) wins. Among `SWA`
//! templates with a route for the method, the longest prefix in segments wins, a trailing
//! slash counting as half a segment; ties go to the first found in the same literal-first
//! order. Parameter values are cut out of the path only once the winner is known.

use super::literals::Probe;
use super::{
    pick, MethodId, Node, Route, Trie, GREEDY_NORMAL, GREEDY_SWA, NONE, NORMAL, SWA, SWA_SLASH,
};
use crate::hash::hash_str;
use crate::params::Params;
use crate::path::CanonicalPath;
use crate::table::{Miss, RouteMatch};

/// The best `SWA` candidate so far.
struct SwaHit<'t> {
    route: &'t Route,
    /// 2 × template segments, + 1 for a trailing slash: longer prefixes rank higher.
    rank: usize,
    /// Byte offset of the remainder in the path.
    remainder: usize,
}

struct Search<'t, 'p, 'm> {
    trie: &'t Trie,
    path: &'p str,
    method: &'m str,
    method_id: MethodId,
    swa: Option<SwaHit<'t>>,
    /// Some template matched the path, whatever its method: tells `MethodNotAllowed` from
    /// `NoRoute`.
    path_matched: bool,
}

impl Trie {
    /// Matches `method` and `path` in the trie rooted at `root`.
    pub(crate) fn find<'t, 'p>(
        &'t self,
        root: u32,
        method: &str,
        path: &'p CanonicalPath,
    ) -> Result<RouteMatch<'t, 'p>, Miss> {
        let p = path.as_str();
        let mut s = Search {
            trie: self,
            path: p,
            method,
            method_id: MethodId::of(method),
            swa: None,
            path_matched: false,
        };
        let root = *self.nodes.get(root as usize).ok_or(Miss::NoRoute)?;
        if let Some(route) = s.dfs(root, 0, 0) {
            return Ok(build(route, p, p.len()));
        }
        if let Some(h) = s.swa {
            return Ok(build(h.route, p, h.remainder));
        }
        Err(if s.path_matched {
            Miss::MethodNotAllowed
        } else {
            Miss::NoRoute
        })
    }
}

/// Cuts the route's parameter values out of the path.
fn build<'t, 'p>(route: &'t Route, path: &'p str, remainder: usize) -> RouteMatch<'t, 'p> {
    let mut params = Params::new();
    let mut want = route.params.iter().peekable();
    let mut offset = 1;
    for (i, seg) in path.get(1..).unwrap_or_default().split('/').enumerate() {
        let Some(p) = want.peek() else { break };
        if usize::from(p.segment) == i {
            let value = if p.greedy {
                path.get(offset..).unwrap_or_default()
            } else {
                seg
            };
            params.push(&p.name, value);
            want.next();
        }
        offset += seg.len() + 1;
    }
    RouteMatch {
        api_index: route.api,
        params,
        remainder: path.get(remainder..).unwrap_or_default(),
    }
}

impl<'t> Search<'t, '_, '_> {
    #[inline]
    fn pick(&self, routes: &'t [Route]) -> Option<&'t Route> {
        pick(routes, self.method_id, self.method)
    }

    fn offer_swa(&mut self, ep: &'t [Route], rank: usize, remainder: usize) {
        self.path_matched = true;
        if self.swa.as_ref().is_some_and(|h| h.rank >= rank) {
            return;
        }
        if let Some(route) = self.pick(ep) {
            self.swa = Some(SwaHit {
                route,
                rank,
                remainder,
            });
        }
    }

    /// Searches from `node`, which consumed `d` segments; `at` is the byte offset of the `/`
    /// before the next segment, or the path's length once it is used up. Returns the first
    /// `NORMAL` match and records `SWA` candidates on the way.
    fn dfs(&mut self, n: Node, d: usize, at: usize) -> Option<&'t Route> {
        let trie = self.trie;
        let ends = (n.ends != NONE)
            .then(|| trie.ends.get(n.ends as usize))
            .flatten();
        let more = at < self.path.len();
        if let Some(ends) = ends {
            if more {
                if let Some(ep) = trie.endpoint(ends, SWA_SLASH) {
                    self.offer_swa(ep, 2 * d + 1, at);
                }
            }
            if let Some(ep) = trie.endpoint(ends, SWA) {
                self.offer_swa(ep, 2 * d, at);
            }
        }
        if !more {
            // The path is used up: only a NORMAL template ending here matches.
            let ep = trie.endpoint(ends?, NORMAL)?;
            self.path_matched = true;
            return self.pick(ep);
        }
        let start = at + 1;
        let end = self
            .path
            .as_bytes()
            .get(start..)
            .and_then(|rest| rest.iter().position(|&b| b == b'/'))
            .map_or(self.path.len(), |i| start + i);
        let seg = self.path.get(start..end)?;
        if !n.literals.is_empty() {
            if let Some(child) = trie
                .literals
                .get(n.literals, Probe::new(seg, hash_str(seg)))
            {
                if let Some(r) = self.dfs(child, d + 1, end) {
                    return Some(r);
                }
            }
        }
        // Parameters never match an empty segment (the one a trailing slash makes).
        if seg.is_empty() {
            return None;
        }
        if let Some(&child) = trie.nodes.get(n.param as usize) {
            if let Some(r) = self.dfs(child, d + 1, end) {
                return Some(r);
            }
        }
        let ends = ends?;
        if let Some(ep) = trie.endpoint(ends, GREEDY_NORMAL) {
            self.path_matched = true;
            if let Some(r) = self.pick(ep) {
                return Some(r);
            }
        }
        if let Some(ep) = trie.endpoint(ends, GREEDY_SWA) {
            self.offer_swa(ep, 2 * (d + 1), self.path.len());
        }
        None
    }
}
