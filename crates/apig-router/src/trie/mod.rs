//! The segment trie that matches a method and a canonical path within one (group, environment).
//!
//! One arena holds the nodes of every (group, environment) trie; each trie is a root index.
//! An edge consumes exactly one path segment (a literal, or `{name}`), so a node sits at a
//! fixed depth and a lookup visits every node at most once: backtracking from a literal branch
//! to a parameter branch never redoes work, and a lookup costs at most the number of nodes
//! consistent with the path, whatever the path is. No memo table is needed for that.
//!
//! Routes hang off nodes as endpoints, one slot per kind:
//!
//! * `NORMAL`: the template ends here and so must the path. A template's trailing slash is an
//!   extra empty literal segment, matching the empty last segment a canonical path with a
//!   trailing slash has (`/a/` is segments `a`, ``); the root `/` is a single empty segment.
//! * `SWA`: the template (no trailing slash) ends here; the path may end or go on.
//! * `SWA_SLASH`: the template ends here with a trailing slash; the path must go on (`/a/`
//!   matches `/a/` and `/a/b`, not `/a`).
//! * `GREEDY_*`: the template's last segment is `{name+}` starting at the next path segment.
//!
//! Each endpoint keeps one route per method plus an optional `ANY` route.

mod literals;
mod search;

use crate::hash::{hash_str, FxHashMap};
use crate::template::{Segment, Template};
use literals::{Literals, Table};

const NORMAL: usize = 0;
const SWA: usize = 1;
const SWA_SLASH: usize = 2;
const GREEDY_NORMAL: usize = 3;
const GREEDY_SWA: usize = 4;

/// "No node" in the `u32` links of a [`Node`].
const NONE: u32 = u32::MAX;

/// A method, as a small integer for the common ones so choosing a route compares integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MethodId {
    Get,
    Post,
    Put,
    Delete,
    Patch,
    Head,
    Options,
    /// Any other token: compare the text.
    Other,
    /// A route's `ANY` (never a request's method).
    Any,
}

impl MethodId {
    /// The id of a request's method.
    #[inline]
    fn of(method: &str) -> MethodId {
        match method {
            "GET" => MethodId::Get,
            "POST" => MethodId::Post,
            "PUT" => MethodId::Put,
            "DELETE" => MethodId::Delete,
            "PATCH" => MethodId::Patch,
            "HEAD" => MethodId::Head,
            "OPTIONS" => MethodId::Options,
            _ => MethodId::Other,
        }
    }

    /// The id of a route's method, where `ANY` is special.
    fn of_route(method: &str) -> MethodId {
        if method == "ANY" {
            MethodId::Any
        } else {
            MethodId::of(method)
        }
    }
}

/// A path parameter of a route: its name and which segment (0-based) its value starts at.
#[derive(Debug)]
pub(crate) struct Param {
    pub(crate) name: Box<str>,
    pub(crate) segment: u16,
    /// `{name+}`: the value runs to the end of the path.
    pub(crate) greedy: bool,
}

/// One compiled route: which API it is, its method and where its parameters are.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) api: usize,
    method: MethodId,
    method_text: Box<str>,
    pub(crate) params: Box<[Param]>,
}

impl Route {
    /// The route for `api`: `method` upper case (or `ANY`), `template`'s parameters.
    pub(crate) fn new(api: usize, method: &str, template: &Template<'_>) -> Route {
        let params = template
            .segments
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let (name, greedy) = match s {
                    Segment::Param(n) => (n, false),
                    Segment::Greedy(n) => (n, true),
                    Segment::Literal(_) => return None,
                };
                // Templates have at most MAX_SEGMENTS (128) segments.
                let segment = u16::try_from(i).unwrap_or(u16::MAX);
                Some(Param {
                    name: (*name).into(),
                    segment,
                    greedy,
                })
            })
            .collect();
        Route {
            api,
            method: MethodId::of_route(method),
            method_text: method.into(),
            params,
        }
    }
}

/// Chooses among the routes of one template (specific methods first, `ANY` last): the exact
/// method beats `ANY`.
#[inline]
fn pick<'t>(routes: &'t [Route], id: MethodId, method: &str) -> Option<&'t Route> {
    routes
        .iter()
        .find(|r| r.method == id && (id != MethodId::Other || *r.method_text == *method))
        .or_else(|| routes.last().filter(|r| r.method == MethodId::Any))
}

/// A trie node: 16 bytes, copied into its parent's literal slot (see [`literals`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    literals: Table,
    /// The `{name}` child (index into [`Trie::nodes`]), or [`NONE`].
    param: u32,
    /// Index into [`Trie::ends`], or [`NONE`].
    ends: u32,
}

impl Node {
    const EMPTY: Node = Node {
        literals: Table::EMPTY,
        param: NONE,
        ends: NONE,
    };
}

/// A run of [`Trie::routes`]: the routes of one template, specific methods first, `ANY` last.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    start: u32,
    len: u32,
}

/// A node's endpoints by kind (`NORMAL`, …); an empty run where the kind is unused. Routes of
/// one template sit next to each other, so choosing by method reads one cache line.
type Ends = [Run; 5];

/// All tries of a route table, immutable once built.
#[derive(Debug, Default)]
pub(crate) struct Trie {
    nodes: Vec<Node>,
    literals: Literals,
    ends: Vec<Ends>,
    routes: Vec<Route>,
}

impl Trie {
    /// The routes of kind `kind` in `ends`; `None` if there are none.
    #[inline]
    fn endpoint(&self, ends: &Ends, kind: usize) -> Option<&[Route]> {
        let run = ends.get(kind)?;
        if run.len == 0 {
            return None;
        }
        let start = run.start as usize;
        self.routes.get(start..start + run.len as usize)
    }
}

/// More than `u32::MAX` nodes, slots or key bytes: no real snapshot gets here.
#[derive(Debug)]
pub(crate) struct TooLarge;

/// Why a route could not be added.
#[derive(Debug)]
pub(crate) enum InsertError {
    /// The slot (template, match mode, method) is taken by the API with this index.
    Conflict(usize),
    TooLarge,
}

impl From<TooLarge> for InsertError {
    fn from(_: TooLarge) -> Self {
        InsertError::TooLarge
    }
}

/// A node while building: literal children in a map until [`TrieBuilder::finish`].
#[derive(Default)]
struct BuildNode {
    literals: FxHashMap<Box<str>, u32>,
    param: Option<u32>,
    ends: Option<u32>,
}

/// The routes of one template while building.
#[derive(Default)]
struct BuildEndpoint {
    methods: Vec<Route>,
    any: Option<Route>,
}

/// Builds a [`Trie`].
#[derive(Default)]
pub(crate) struct TrieBuilder {
    nodes: Vec<BuildNode>,
    ends: Vec<[Option<BuildEndpoint>; 5]>,
}

impl TrieBuilder {
    /// A new empty trie; returns its root.
    pub(crate) fn new_root(&mut self) -> Result<u32, TooLarge> {
        self.push_node()
    }

    fn push_node(&mut self) -> Result<u32, TooLarge> {
        let id = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&id| id != NONE)
            .ok_or(TooLarge)?;
        self.nodes.push(BuildNode::default());
        Ok(id)
    }

    fn node(&mut self, id: u32) -> Result<&mut BuildNode, TooLarge> {
        self.nodes.get_mut(id as usize).ok_or(TooLarge)
    }

    fn literal_child(&mut self, node: u32, lit: &str) -> Result<u32, TooLarge> {
        if let Some(&c) = self.node(node)?.literals.get(lit) {
            return Ok(c);
        }
        let c = self.push_node()?;
        self.node(node)?.literals.insert(lit.into(), c);
        Ok(c)
    }

    fn param_child(&mut self, node: u32) -> Result<u32, TooLarge> {
        if let Some(c) = self.node(node)?.param {
            return Ok(c);
        }
        let c = self.push_node()?;
        self.node(node)?.param = Some(c);
        Ok(c)
    }

    /// Adds a route under `root`; a route for `ANY` fills the any-method slot.
    pub(crate) fn insert(
        &mut self,
        root: u32,
        template: &Template<'_>,
        swa: bool,
        route: Route,
    ) -> Result<(), InsertError> {
        let mut node = root;
        let mut kind = None;
        for seg in &template.segments {
            match seg {
                Segment::Literal(l) => node = self.literal_child(node, l)?,
                Segment::Param(_) => node = self.param_child(node)?,
                // The template parser guarantees a greedy segment is the last one.
                Segment::Greedy(_) => kind = Some(if swa { GREEDY_SWA } else { GREEDY_NORMAL }),
            }
        }
        let kind = match kind {
            Some(k) => k,
            None if swa && template.trailing_slash => SWA_SLASH,
            None if swa => SWA,
            None => {
                if template.trailing_slash {
                    node = self.literal_child(node, "")?;
                }
                NORMAL
            }
        };
        let ends_id = match self.node(node)?.ends {
            Some(e) => e,
            None => {
                let e = u32::try_from(self.ends.len())
                    .ok()
                    .filter(|&e| e != NONE)
                    .ok_or(TooLarge)?;
                self.ends.push(Default::default());
                self.node(node)?.ends = Some(e);
                e
            }
        };
        let ep = self
            .ends
            .get_mut(ends_id as usize)
            .and_then(|e| e.get_mut(kind))
            .ok_or(InsertError::TooLarge)?
            .get_or_insert_with(BuildEndpoint::default);
        if route.method == MethodId::Any {
            if let Some(r) = &ep.any {
                return Err(InsertError::Conflict(r.api));
            }
            ep.any = Some(route);
        } else {
            if let Some(r) = ep
                .methods
                .iter()
                .find(|r| r.method_text == route.method_text)
            {
                return Err(InsertError::Conflict(r.api));
            }
            ep.methods.push(route);
        }
        Ok(())
    }

    /// Freezes the builder into the compact lookup form.
    pub(crate) fn finish(self) -> Result<Trie, TooLarge> {
        // First every node's own fields (its table's place included), then the tables' slots,
        // which hold copies of the child nodes.
        let mut literals = Literals::default();
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            nodes.push(Node {
                literals: literals.reserve(n.literals.len())?,
                param: n.param.unwrap_or(NONE),
                ends: n.ends.unwrap_or(NONE),
            });
        }
        let mut entries = Vec::new();
        for (b, n) in self.nodes.iter().zip(&nodes) {
            entries.clear();
            entries.extend(b.literals.iter());
            // Deterministic layout whatever the map's iteration order.
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (key, &child) in &entries {
                let child = *nodes.get(child as usize).ok_or(TooLarge)?;
                literals.insert(n.literals, key, hash_str(key), child)?;
            }
        }
        let mut routes = Vec::new();
        let mut ends = Vec::with_capacity(self.ends.len());
        for e in self.ends {
            let mut runs = Ends::default();
            for (run, ep) in runs.iter_mut().zip(e) {
                let Some(ep) = ep else { continue };
                let start = u32::try_from(routes.len()).map_err(|_| TooLarge)?;
                routes.extend(ep.methods);
                routes.extend(ep.any);
                let end = u32::try_from(routes.len()).map_err(|_| TooLarge)?;
                *run = Run {
                    start,
                    len: end - start,
                };
            }
            ends.push(runs);
        }
        Ok(Trie {
            nodes,
            literals,
            ends,
            routes,
        })
    }
}
