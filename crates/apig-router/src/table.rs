//! The route table compiled from a snapshot: host → group, `x-stage` → environment, then
//! method and path through that (group, environment)'s trie.
//!
//! Compiled once per snapshot, off the request path, and immutable afterwards, so it can sit
//! behind `arc-swap` and be read without locks. The control plane compiles every snapshot with
//! this same code before publishing it, so a gateway rejecting one is rare and explained.

use std::fmt;

use apig_proto::{MatchMode, Snapshot};

use crate::hash::FxHashMap;
use crate::host::{DomainError, HostIndex};
use crate::params::Params;
use crate::path::CanonicalPath;
use crate::template::{self, TemplateError};
use crate::trie::{InsertError, Route, Trie, TrieBuilder};

/// The environment a request without `x-stage` goes to.
pub const RELEASE: &str = "RELEASE";

/// A successful lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'t, 'p> {
    /// Index into the snapshot's `apis`.
    pub api_index: usize,
    /// Path parameters in template order, name → decoded value (a `{name+}` value may contain
    /// `/`, and keeps the path's trailing slash).
    pub params: Params<'t, 'p>,
    /// For an `SWA` route, the path after the matched template, empty or starting with `/`:
    /// `/test/AA/BB` on template `/test` or `/test/` leaves `/AA/BB`; `/test/` on `/test/`
    /// leaves `/`. Empty for `NORMAL` routes and for a greedy parameter, which takes the rest.
    pub remainder: &'p str,
}

/// Why no route matched. The gateway answers APIG.0101 (404) for all of them; they differ for
/// logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Miss {
    /// The host names no group.
    #[error("no API group is bound to this host")]
    UnknownHost,
    /// `x-stage` (or `RELEASE` by default) names no environment.
    #[error("no such environment")]
    UnknownStage,
    /// No template matches the path in this group and environment.
    #[error("no API matches the path")]
    NoRoute,
    /// A template matches the path, but none of its routes is for this method (nor `ANY`).
    #[error("no API matches the method")]
    MethodNotAllowed,
}

/// Why a snapshot could not be compiled. Each names the offending resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("group {group_id:?} appears more than once")]
    DuplicateGroup { group_id: String },
    #[error("environment {env_id:?} appears more than once")]
    DuplicateEnvironment { env_id: String },
    #[error("environment name {name:?} is used by more than one environment")]
    DuplicateEnvironmentName { name: String },
    #[error("group {group_id:?}: {reason}")]
    Domain {
        group_id: String,
        reason: DomainError,
    },
    #[error("API {api_id:?} names group {group_id:?}, which is not in the snapshot")]
    UnknownGroup { api_id: String, group_id: String },
    #[error("API {api_id:?} names environment {env_id:?}, which is not in the snapshot")]
    UnknownEnvironment { api_id: String, env_id: String },
    #[error("API {api_id:?} has an invalid method {method:?}")]
    InvalidMethod { api_id: String, method: String },
    #[error("API {api_id:?} has an unknown match mode {value}")]
    InvalidMatchMode { api_id: String, value: i32 },
    #[error("API {api_id:?} has an invalid path {path:?}: {reason}")]
    InvalidPath {
        api_id: String,
        path: String,
        reason: TemplateError,
    },
    /// Boxed: it is the largest variant and keeps `Result<RouteTable, CompileError>` small.
    #[error("{0}")]
    DuplicateRoute(Box<RouteConflict>),
    #[error("the snapshot is too large to index")]
    TooLarge,
}

/// Two APIs with the same group, environment, method, path template and match mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "API {api_id:?} has the same method, path and match mode as API {other_api_id:?} \
     ({method} {path}, {mode}) in group {group_id:?}, environment {env_id:?}"
)]
pub struct RouteConflict {
    /// The API refused.
    pub api_id: String,
    /// The API compiled before it that holds the route.
    pub other_api_id: String,
    pub method: String,
    pub path: String,
    /// `NORMAL` or `SWA`.
    pub mode: &'static str,
    pub group_id: String,
    pub env_id: String,
}

/// An immutable route table.
#[derive(Default)]
pub struct RouteTable {
    hosts: HostIndex,
    envs: FxHashMap<Box<str>, u32>,
    /// Per group: (environment, trie root) for each environment with routes. A group has few
    /// environments (APIG allows 10), so a scan beats a map.
    group_roots: Vec<Box<[(u32, u32)]>>,
    trie: Trie,
    routes: usize,
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("groups", &self.group_roots.len())
            .field("environments", &self.envs.len())
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl RouteTable {
    /// Compiles every API of the snapshot.
    ///
    /// Fails on an invalid path template, method or match mode; a duplicate route (same group,
    /// environment, method, template and match mode, where templates differing only in
    /// parameter names count as the same); an API whose group or environment is not in the
    /// snapshot; duplicate group or environment ids or environment names; and invalid domains
    /// or a domain bound to two groups.
    pub fn compile(snapshot: &Snapshot) -> Result<RouteTable, CompileError> {
        let mut hosts = HostIndex::default();
        let mut group_ids: FxHashMap<&str, u32> = FxHashMap::default();
        for (i, g) in snapshot.groups.iter().enumerate() {
            let gi = u32::try_from(i).map_err(|_| CompileError::TooLarge)?;
            if group_ids.insert(g.id.as_str(), gi).is_some() {
                return Err(CompileError::DuplicateGroup {
                    group_id: g.id.clone(),
                });
            }
            for d in &g.domains {
                hosts.insert(d, gi).map_err(|reason| CompileError::Domain {
                    group_id: g.id.clone(),
                    reason,
                })?;
            }
        }

        let mut env_ids: FxHashMap<&str, u32> = FxHashMap::default();
        let mut envs: FxHashMap<Box<str>, u32> = FxHashMap::default();
        for (i, e) in snapshot.environments.iter().enumerate() {
            let ei = u32::try_from(i).map_err(|_| CompileError::TooLarge)?;
            if env_ids.insert(e.id.as_str(), ei).is_some() {
                return Err(CompileError::DuplicateEnvironment {
                    env_id: e.id.clone(),
                });
            }
            if envs.insert(e.name.as_str().into(), ei).is_some() {
                return Err(CompileError::DuplicateEnvironmentName {
                    name: e.name.clone(),
                });
            }
        }

        let mut builder = TrieBuilder::default();
        let mut roots: FxHashMap<(u32, u32), u32> = FxHashMap::default();
        for (i, api) in snapshot.apis.iter().enumerate() {
            let &g =
                group_ids
                    .get(api.group_id.as_str())
                    .ok_or_else(|| CompileError::UnknownGroup {
                        api_id: api.id.clone(),
                        group_id: api.group_id.clone(),
                    })?;
            let &e = env_ids.get(api.env_id.as_str()).ok_or_else(|| {
                CompileError::UnknownEnvironment {
                    api_id: api.id.clone(),
                    env_id: api.env_id.clone(),
                }
            })?;
            let method =
                normalize_method(&api.req_method).ok_or_else(|| CompileError::InvalidMethod {
                    api_id: api.id.clone(),
                    method: api.req_method.clone(),
                })?;
            let mode = MatchMode::try_from(api.match_mode).map_err(|_| {
                CompileError::InvalidMatchMode {
                    api_id: api.id.clone(),
                    value: api.match_mode,
                }
            })?;
            let tpl =
                template::parse(&api.req_uri).map_err(|reason| CompileError::InvalidPath {
                    api_id: api.id.clone(),
                    path: api.req_uri.clone(),
                    reason,
                })?;
            let root = match roots.get(&(g, e)) {
                Some(&r) => r,
                None => {
                    let r = builder.new_root().map_err(|_| CompileError::TooLarge)?;
                    roots.insert((g, e), r);
                    r
                }
            };
            let route = Route::new(i, &method, &tpl);
            let swa = mode == MatchMode::Swa;
            match builder.insert(root, &tpl, swa, route) {
                Ok(()) => {}
                Err(InsertError::TooLarge) => return Err(CompileError::TooLarge),
                Err(InsertError::Conflict(other)) => {
                    return Err(CompileError::DuplicateRoute(Box::new(RouteConflict {
                        api_id: api.id.clone(),
                        other_api_id: snapshot
                            .apis
                            .get(other)
                            .map(|a| a.id.clone())
                            .unwrap_or_default(),
                        method,
                        path: api.req_uri.clone(),
                        mode: if swa { "SWA" } else { "NORMAL" },
                        group_id: api.group_id.clone(),
                        env_id: api.env_id.clone(),
                    })))
                }
            }
        }

        let mut group_roots: Vec<Vec<(u32, u32)>> = vec![Vec::new(); snapshot.groups.len()];
        for ((g, e), r) in roots {
            if let Some(v) = group_roots.get_mut(g as usize) {
                v.push((e, r));
            }
        }
        Ok(RouteTable {
            hosts,
            envs,
            group_roots: group_roots.into_iter().map(Vec::into_boxed_slice).collect(),
            trie: builder.finish().map_err(|_| CompileError::TooLarge)?,
            routes: snapshot.apis.len(),
        })
    }

    /// Finds the route for a request.
    ///
    /// `host`: the Host header (or `:authority`) without its port, any case. `stage`: the
    /// `x-stage` header, an environment *name*, compared exactly; `None` means [`RELEASE`].
    /// `method`: the request method, upper case (`HEAD` is not `GET`). `path`: canonical.
    ///
    /// Checks in order host, stage, then path and method (see [`RouteMatch`] and the crate
    /// docs for precedence). Allocates nothing unless a route has more than
    /// [`INLINE_PARAMS`](crate::INLINE_PARAMS) parameters.
    pub fn lookup<'t, 'p>(
        &'t self,
        host: &str,
        stage: Option<&str>,
        method: &str,
        path: &'p CanonicalPath,
    ) -> Result<RouteMatch<'t, 'p>, Miss> {
        let g = self.hosts.lookup(host).ok_or(Miss::UnknownHost)?;
        let &e = self
            .envs
            .get(stage.unwrap_or(RELEASE))
            .ok_or(Miss::UnknownStage)?;
        let root = self
            .group_roots
            .get(g as usize)
            .and_then(|envs| envs.iter().find(|(env, _)| *env == e))
            .map(|&(_, root)| root)
            .ok_or(Miss::NoRoute)?;
        self.trie.find(root, method, path)
    }

    /// Number of routes (the snapshot's APIs).
    pub fn len(&self) -> usize {
        self.routes
    }

    /// Whether the table has no route.
    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }
}

/// Upper-cases a method and checks it is an HTTP token (RFC 9110 `tchar`), at most 32 bytes.
fn normalize_method(m: &str) -> Option<String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    (!m.is_empty() && m.len() <= 32 && m.bytes().all(tchar)).then(|| m.to_ascii_uppercase())
}
