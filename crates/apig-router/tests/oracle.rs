//! Differential test: random tables and paths, the trie against a brute-force matcher that
//! states the precedence rules directly over the list of routes.

mod common;

use apig_router::{canonicalize, Miss, RouteTable};
use common::snapshot;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

#[derive(Clone, Debug)]
enum Seg {
    Lit(&'static str),
    Param(String),
    Greedy(String),
}

#[derive(Clone, Debug)]
struct Route {
    segs: Vec<Seg>,
    trailing: bool,
    swa: bool,
    method: &'static str,
}

impl Route {
    fn template(&self) -> String {
        let mut t = String::new();
        for s in &self.segs {
            t.push('/');
            match s {
                Seg::Lit(l) => t.push_str(l),
                Seg::Param(n) => t.push_str(&format!("{{{n}}}")),
                Seg::Greedy(n) => t.push_str(&format!("{{{n}+}}")),
            }
        }
        if self.trailing || t.is_empty() {
            t.push('/');
        }
        t
    }
    /// What makes two routes the same for the table: names of parameters do not count.
    fn key(&self) -> String {
        let shape: String = self
            .segs
            .iter()
            .map(|s| match s {
                Seg::Lit(l) => format!("/{l}"),
                Seg::Param(_) => "/{}".into(),
                Seg::Greedy(_) => "/{+}".into(),
            })
            .collect();
        format!(
            "{shape}|{}|{}|{}",
            self.trailing || self.segs.is_empty(),
            self.swa,
            self.method
        )
    }
}

const LITS: &[&str] = &["a", "b", "c"];
const METHODS: &[&str] = &["GET", "POST", "ANY"];

fn random_route(rng: &mut Rng) -> Route {
    let n = rng.below(5);
    let mut segs = Vec::new();
    for i in 0..n {
        let s = match rng.below(6) {
            0..=2 => Seg::Lit(LITS[rng.below(LITS.len())]),
            3..=4 => Seg::Param(format!("p{i}")),
            _ if i + 1 == n => Seg::Greedy(format!("g{i}")),
            _ => Seg::Param(format!("q{i}")),
        };
        segs.push(s);
    }
    let greedy = matches!(segs.last(), Some(Seg::Greedy(_)));
    Route {
        segs,
        trailing: !greedy && rng.chance(4),
        swa: rng.chance(2),
        method: METHODS[rng.below(METHODS.len())],
    }
}

/// A candidate: template kinds (0 literal, 1 param, 2 greedy) for ordering, params, remainder.
struct Cand {
    index: usize,
    kinds: Vec<u8>,
    rank: usize,
    params: Vec<(String, String)>,
    remainder: String,
    any: bool,
}

/// `path`: the canonical segments plus an empty last one for a trailing slash.
fn try_match(index: usize, r: &Route, path: &[&str]) -> Option<Cand> {
    let mut kinds = Vec::new();
    let mut params = Vec::new();
    let mut i = 0;
    for s in &r.segs {
        match s {
            Seg::Lit(l) => {
                if path.get(i) != Some(l) {
                    return None;
                }
                kinds.push(0);
            }
            Seg::Param(n) => {
                let v = path.get(i).filter(|v| !v.is_empty())?;
                params.push((n.clone(), v.to_string()));
                kinds.push(1);
            }
            Seg::Greedy(n) => {
                path.get(i).filter(|v| !v.is_empty())?;
                params.push((n.clone(), path[i..].join("/")));
                kinds.push(2);
                let _ = i;
                let rank = 2 * r.segs.len();
                return Some(Cand {
                    index,
                    kinds,
                    rank,
                    params,
                    remainder: String::new(),
                    any: r.method == "ANY",
                });
            }
        }
        i += 1;
    }
    let trailing = r.trailing || r.segs.is_empty();
    let rest = &path[i..];
    let remainder = if r.swa {
        if trailing && rest.is_empty() {
            return None;
        }
        if rest.is_empty() {
            String::new()
        } else {
            format!("/{}", rest.join("/"))
        }
    } else {
        // NORMAL: the rest must be exactly the trailing slash's empty segment, or nothing.
        match (trailing, rest) {
            (true, [""]) => kinds.push(0),
            (false, []) => {}
            _ => return None,
        }
        String::new()
    };
    let rank = 2 * r.segs.len() + usize::from(trailing);
    Some(Cand {
        index,
        kinds,
        rank,
        params,
        remainder,
        any: r.method == "ANY",
    })
}

type Outcome = Result<(usize, Vec<(String, String)>, String), Miss>;

fn oracle(routes: &[Route], method: &str, path: &[&str]) -> Outcome {
    let mut matched_path = false;
    let mut normal: Vec<Cand> = Vec::new();
    let mut swa: Vec<Cand> = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        let Some(c) = try_match(i, r, path) else {
            continue;
        };
        matched_path = true;
        if r.method != method && r.method != "ANY" {
            continue;
        }
        if r.swa {
            swa.push(c)
        } else {
            normal.push(c)
        }
    }
    // NORMAL: literal < param < greedy, segment by segment; then the exact method over ANY.
    let best = normal
        .into_iter()
        .min_by(|a, b| a.kinds.cmp(&b.kinds).then(a.any.cmp(&b.any)))
        .or_else(|| {
            // SWA: the longest prefix, then the same order.
            swa.into_iter().min_by(|a, b| {
                b.rank
                    .cmp(&a.rank)
                    .then(a.kinds.cmp(&b.kinds))
                    .then(a.any.cmp(&b.any))
            })
        });
    match best {
        Some(c) => Ok((c.index, c.params, c.remainder)),
        None if matched_path => Err(Miss::MethodNotAllowed),
        None => Err(Miss::NoRoute),
    }
}

#[test]
fn trie_agrees_with_brute_force() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut hits = 0usize;
    for _ in 0..3_000 {
        let mut routes: Vec<Route> = Vec::new();
        let mut keys = std::collections::HashSet::new();
        for _ in 0..1 + rng.below(12) {
            let r = random_route(&mut rng);
            if keys.insert(r.key()) {
                routes.push(r);
            }
        }
        let specs: Vec<String> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mode = if r.swa { "S" } else { "N" };
                format!("r{i} g1 RELEASE {} {mode} {}", r.method, r.template())
            })
            .collect();
        let refs: Vec<&str> = specs.iter().map(String::as_str).collect();
        let table =
            RouteTable::compile(&snapshot(&refs)).unwrap_or_else(|e| panic!("{e}\n{specs:#?}"));
        for _ in 0..30 {
            let n = rng.below(6);
            let mut raw: String = (0..n)
                .map(|_| format!("/{}", ["a", "b", "c", "d"][rng.below(4)]))
                .collect();
            if raw.is_empty() || rng.chance(4) {
                raw.push('/');
            }
            let path = canonicalize(&raw).unwrap();
            let mut segs: Vec<&str> = path.segments().collect();
            if path.has_trailing_slash() {
                segs.push("");
            }
            for method in ["GET", "POST", "PUT"] {
                let want = oracle(&routes, method, &segs);
                let got: Outcome = table
                    .lookup("api.example.com", None, method, &path)
                    .map(|m| {
                        let params = m
                            .params
                            .iter()
                            .map(|(n, v)| (n.to_string(), v.to_string()))
                            .collect();
                        (m.api_index, params, m.remainder.to_owned())
                    });
                hits += usize::from(got.is_ok());
                assert_eq!(got, want, "{method} {raw}\n{specs:#?}");
            }
        }
    }
    // The generator must exercise matches, not only misses.
    assert!(hits > 20_000, "{hits}");
}
