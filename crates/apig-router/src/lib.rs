//! The pure route table of the gateway: the canonical request path, and matching of host,
//! environment, method and path compiled from a published snapshot.
//!
//! No I/O, no locks, no panics reachable from input: the data plane compiles each snapshot
//! into a [`RouteTable`] before swapping it in, and the control plane compiles it with the same
//! code before publishing.
//!
//! # The request view
//!
//! [`canonicalize`] turns the raw request path into a [`CanonicalPath`] once; routing, path
//! parameters, SWA remainders and the forwarded path ([`CanonicalPath::to_encoded`]) all derive
//! from it, so no two components can disagree about what a path means.
//!
//! # Matching (APIG's semantics, `apig-semantics.md` §3.2 and §4)
//!
//! 1. **Host → group.** A group's domains, case-insensitive; an exact domain beats a wildcard
//!    `*.example.com` (one or more labels before the suffix), the longest wildcard suffix wins.
//! 2. **Stage → environment.** The `x-stage` header names an environment, exactly (case
//!    matters); without the header, [`RELEASE`].
//! 3. **Path and method** within the group and environment:
//!    * a `NORMAL` template matches the whole path, an `SWA` template matches the path or a
//!      prefix of it ending at a `/` (`/test/AA` matches `/test/AA/BB`, not `/test/AACC`);
//!    * only routes with the request's method or `ANY` take part; on one template the exact
//!      method beats `ANY`; `HEAD` is not `GET`;
//!    * any `NORMAL` match beats any `SWA` match;
//!    * among `NORMAL` templates, at each segment a literal beats `{name}` beats `{name+}`,
//!      backtracking when the more specific branch fails deeper;
//!    * among `SWA` templates the longest prefix in segments wins (a trailing slash adds half a
//!      segment: `/a/` beats `/a`), ties broken by the same literal-first order;
//!    * if a template matches the path but has no route for the method, the miss is
//!      [`Miss::MethodNotAllowed`], otherwise [`Miss::NoRoute`].
//!
//! Templates: literal segments compare case-sensitively with the decoded path segment;
//! `{name}` is one non-empty segment; `{name+}` one or more segments, last only. A trailing
//! slash is significant: `NORMAL /a/` matches `/a/` only and `/a` matches `/a` only; `SWA /a/`
//! needs something after the slash (it matches `/a/` and `/a/b` but not `/a`), `SWA /a` matches
//! `/a`, `/a/` and `/a/b`. The root `/` is a template like any other (`NORMAL /` matches `/`,
//! `SWA /` matches every path).
//!
//! # Cost
//!
//! A lookup hashes the host and the stage, then walks one segment trie. Each node's literal
//! children sit in an open-addressing table whose slots hold short keys inline and a copy of
//! the child node, so a step is one hash and usually one memory access; the walk touches each
//! trie node at most once, so no path can make backtracking blow up. It allocates nothing for
//! routes with up to [`INLINE_PARAMS`] parameters. See `benches/lookup.rs`.

mod hash;
mod host;
mod params;
pub mod path;
pub mod table;
mod template;
mod trie;

pub use host::DomainError;
pub use params::{Params, INLINE_PARAMS};
pub use path::{
    canonicalize, encode_segment, CanonicalPath, PathError, MAX_PATH_LEN, MAX_SEGMENTS,
};
pub use table::{CompileError, Miss, RouteConflict, RouteMatch, RouteTable, RELEASE};
pub use template::TemplateError;
