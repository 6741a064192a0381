//! Data-driven routing tests: (routes, request) → API, params, remainder, or the miss.

mod common;

use apig_router::{canonicalize, CompileError, Miss, RouteTable, TemplateError};
use common::snapshot;

const HOST: &str = "api.example.com";

enum Want {
    /// API id, params, SWA remainder.
    Hit(
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    ),
    Miss(Miss),
}
use Want::{Hit, Miss as M};

struct Case {
    name: &'static str,
    routes: &'static [&'static str],
    host: &'static str,
    stage: Option<&'static str>,
    method: &'static str,
    path: &'static str,
    want: Want,
}

/// A request to the default host, no x-stage.
const fn get(
    name: &'static str,
    routes: &'static [&'static str],
    method: &'static str,
    path: &'static str,
    want: Want,
) -> Case {
    Case {
        name,
        routes,
        host: HOST,
        stage: None,
        method,
        path,
        want,
    }
}

const NORMAL_VS_SWA: &[&str] = &["s g1 RELEASE GET S /a/b", "n g1 RELEASE GET N /a/{x}"];
const SWA_ONLY: &[&str] = &["s g1 RELEASE GET S /test/AA"];
const SWA_LONGEST: &[&str] = &[
    "s1 g1 RELEASE GET S /a",
    "s2 g1 RELEASE GET S /a/b",
    "s4 g1 RELEASE GET S /a/b/c/d",
];
const SPECIFICITY: &[&str] = &[
    "lit g1 RELEASE GET N /a/b",
    "par g1 RELEASE GET N /a/{x}",
    "gre g1 RELEASE GET N /a/{x+}",
];
const BACKTRACK: &[&str] = &[
    "1 g1 RELEASE GET N /a/b/c/z",
    "2 g1 RELEASE GET N /a/b/{y}/w",
    "3 g1 RELEASE GET N /a/{x}/c/w",
    "4 g1 RELEASE GET N /a/{x}/{y}/v",
];
const GREEDY_BACKTRACK: &[&str] = &["g g1 RELEASE GET N /a/{x+}", "p g1 RELEASE GET N /a/{x}/b"];
const METHODS: &[&str] = &["any g1 RELEASE ANY N /a", "get g1 RELEASE GET N /a"];
const GET_ONLY: &[&str] = &["get g1 RELEASE GET N /a"];
const METHOD_FALLTHROUGH: &[&str] = &[
    "lit g1 RELEASE POST N /u/me",
    "par g1 RELEASE GET N /u/{id}",
    "n g1 RELEASE POST N /v/b",
    "s g1 RELEASE GET S /v",
];
const STAGES: &[&str] = &[
    "rel g1 RELEASE GET N /a",
    "tst g1 TEST GET N /a",
    "onlytest g1 TEST GET N /t",
];
const HOSTS: &[&str] = &[
    "one g1 RELEASE GET N /h",
    "two g2 RELEASE GET N /h",
    "three g3 RELEASE GET N /h",
];
const GREEDY: &[&str] = &["g g1 RELEASE GET N /files/{path+}"];
const ROOT: &[&str] = &["root g1 RELEASE GET N /"];
const ROOT_SWA: &[&str] = &["root g1 RELEASE GET S /"];
const TRAILING: &[&str] = &["slash g1 RELEASE GET N /a/", "plain g1 RELEASE GET N /a"];
const SWA_TRAILING: &[&str] = &["s g1 RELEASE GET S /a/"];
const SWA_BOTH: &[&str] = &["s1 g1 RELEASE GET S /a", "s2 g1 RELEASE GET S /a/"];
const DECODED: &[&str] = &[
    "u g1 RELEASE GET N /u/{name}",
    "sp g1 RELEASE GET N /a%20b/caf%C3%A9",
];
const SWA_PARAM: &[&str] = &[
    "t g1 RELEASE GET S /v1/{tenant}",
    "l g1 RELEASE GET S /v1/admin",
];
const MANY_PARAMS: &[&str] = &["p g1 RELEASE GET N /{a}/{b}/{c}/{d}/{e}/{f}"];

#[rustfmt::skip]
const CASES: &[Case] = &[
    // NORMAL: the whole path.
    get("normal exact", GET_ONLY, "GET", "/a", Hit("get", &[], "")),
    get("normal longer path", GET_ONLY, "GET", "/a/b", M(Miss::NoRoute)),
    get("normal trailing slash differs", GET_ONLY, "GET", "/a/", M(Miss::NoRoute)),
    get("literals are case-sensitive", GET_ONLY, "GET", "/A", M(Miss::NoRoute)),
    // SWA: the path equals the template or goes on after a '/'.
    get("swa equal", SWA_ONLY, "GET", "/test/AA", Hit("s", &[], "")),
    get("swa continues", SWA_ONLY, "GET", "/test/AA/BB", Hit("s", &[], "/BB")),
    get("swa continues deep", SWA_ONLY, "GET", "/test/AA/BB/CC/", Hit("s", &[], "/BB/CC/")),
    get("swa slash after", SWA_ONLY, "GET", "/test/AA/", Hit("s", &[], "/")),
    get("swa needs a segment boundary", SWA_ONLY, "GET", "/test/AACC", M(Miss::NoRoute)),
    get("swa shorter path", SWA_ONLY, "GET", "/test", M(Miss::NoRoute)),
    get("swa longest prefix 1", SWA_LONGEST, "GET", "/a/x", Hit("s1", &[], "/x")),
    get("swa longest prefix 2", SWA_LONGEST, "GET", "/a/b/c", Hit("s2", &[], "/c")),
    get("swa longest prefix 4", SWA_LONGEST, "GET", "/a/b/c/d/e", Hit("s4", &[], "/e")),
    get("swa exact prefix", SWA_LONGEST, "GET", "/a/b", Hit("s2", &[], "")),
    get("swa with param", SWA_PARAM, "GET", "/v1/t1/x/y", Hit("t", &[("tenant", "t1")], "/x/y")),
    get("swa literal beats param at same length", SWA_PARAM, "GET", "/v1/admin/x", Hit("l", &[], "/x")),
    // NORMAL beats SWA, even a less specific NORMAL against a more specific SWA.
    get("normal param beats swa literal", NORMAL_VS_SWA, "GET", "/a/b", Hit("n", &[("x", "b")], "")),
    get("swa when normal fails", NORMAL_VS_SWA, "GET", "/a/b/c", Hit("s", &[], "/c")),
    // Literal beats {x} beats {x+}.
    get("literal first", SPECIFICITY, "GET", "/a/b", Hit("lit", &[], "")),
    get("param second", SPECIFICITY, "GET", "/a/c", Hit("par", &[("x", "c")], "")),
    get("greedy last", SPECIFICITY, "GET", "/a/b/c", Hit("gre", &[("x", "b/c")], "")),
    get("greedy needs a segment", SPECIFICITY, "GET", "/a/", M(Miss::NoRoute)),
    // Backtracking out of a more specific branch that fails deeper.
    get("no backtrack needed", BACKTRACK, "GET", "/a/b/c/z", Hit("1", &[], "")),
    get("backtrack one level", BACKTRACK, "GET", "/a/b/c/w", Hit("2", &[("y", "c")], "")),
    get("backtrack two levels", BACKTRACK, "GET", "/a/q/c/w", Hit("3", &[("x", "q")], "")),
    get("backtrack to params", BACKTRACK, "GET", "/a/b/c/v", Hit("4", &[("x", "b"), ("y", "c")], "")),
    get("backtrack fails", BACKTRACK, "GET", "/a/b/c/u", M(Miss::NoRoute)),
    get("param before greedy", GREEDY_BACKTRACK, "GET", "/a/c/b", Hit("p", &[("x", "c")], "")),
    get("greedy after param fails", GREEDY_BACKTRACK, "GET", "/a/c/d", Hit("g", &[("x", "c/d")], "")),
    // Methods.
    get("specific beats any", METHODS, "GET", "/a", Hit("get", &[], "")),
    get("any catches others", METHODS, "POST", "/a", Hit("any", &[], "")),
    get("any catches HEAD", METHODS, "HEAD", "/a", Hit("any", &[], "")),
    get("method not allowed", GET_ONLY, "POST", "/a", M(Miss::MethodNotAllowed)),
    get("HEAD is not GET", GET_ONLY, "HEAD", "/a", M(Miss::MethodNotAllowed)),
    get("methods compare exactly", GET_ONLY, "get", "/a", M(Miss::MethodNotAllowed)),
    get("less specific template with the method", METHOD_FALLTHROUGH, "GET", "/u/me", Hit("par", &[("id", "me")], "")),
    get("more specific template with the method", METHOD_FALLTHROUGH, "POST", "/u/me", Hit("lit", &[], "")),
    get("no template with the method", METHOD_FALLTHROUGH, "PUT", "/u/me", M(Miss::MethodNotAllowed)),
    get("swa when normal lacks the method", METHOD_FALLTHROUGH, "GET", "/v/b", Hit("s", &[], "/b")),
    get("neither has the method", METHOD_FALLTHROUGH, "PUT", "/v/b", M(Miss::MethodNotAllowed)),
    // Greedy parameters capture '/'.
    get("greedy one segment", GREEDY, "GET", "/files/a", Hit("g", &[("path", "a")], "")),
    get("greedy many segments", GREEDY, "GET", "/files/a/b/c.txt", Hit("g", &[("path", "a/b/c.txt")], "")),
    get("greedy keeps trailing slash", GREEDY, "GET", "/files/a/", Hit("g", &[("path", "a/")], "")),
    get("greedy decoded", GREEDY, "GET", "/files/a%20b/%C3%A9", Hit("g", &[("path", "a b/é")], "")),
    get("greedy not empty", GREEDY, "GET", "/files/", M(Miss::NoRoute)),
    get("greedy not absent", GREEDY, "GET", "/files", M(Miss::NoRoute)),
    // The root.
    get("root", ROOT, "GET", "/", Hit("root", &[], "")),
    get("root from slashes", ROOT, "GET", "//", Hit("root", &[], "")),
    get("root is not a prefix", ROOT, "GET", "/a", M(Miss::NoRoute)),
    get("root swa on root", ROOT_SWA, "GET", "/", Hit("root", &[], "/")),
    get("root swa on anything", ROOT_SWA, "GET", "/a/b", Hit("root", &[], "/a/b")),
    // Trailing slashes are significant.
    get("trailing slash template", TRAILING, "GET", "/a/", Hit("slash", &[], "")),
    get("no trailing slash template", TRAILING, "GET", "/a", Hit("plain", &[], "")),
    get("trailing slash after normalising", TRAILING, "GET", "//a//", Hit("slash", &[], "")),
    get("trailing slash from a dot segment", TRAILING, "GET", "/a/b/..", Hit("slash", &[], "")),
    get("swa slash needs more", SWA_TRAILING, "GET", "/a", M(Miss::NoRoute)),
    get("swa slash on slash", SWA_TRAILING, "GET", "/a/", Hit("s", &[], "/")),
    get("swa slash continues", SWA_TRAILING, "GET", "/a/b/c", Hit("s", &[], "/b/c")),
    get("swa slash beats plain", SWA_BOTH, "GET", "/a/b", Hit("s2", &[], "/b")),
    get("swa plain when no slash", SWA_BOTH, "GET", "/a", Hit("s1", &[], "")),
    // Parameters and literals see the decoded path.
    get("decoded param", DECODED, "GET", "/u/J%C3%BCrgen%20M", Hit("u", &[("name", "Jürgen M")], "")),
    get("encoded %2525 decodes once", DECODED, "GET", "/u/%2525", Hit("u", &[("name", "%25")], "")),
    get("decoded literal", DECODED, "GET", "/a%20b/caf%C3%A9", Hit("sp", &[], "")),
    get("decoded literal raw", DECODED, "GET", "/a%20b/café", Hit("sp", &[], "")),
    get("dot segments resolved first", DECODED, "GET", "/x/../u/%2e/bob", Hit("u", &[("name", "bob")], "")),
    get("more than inline params", MANY_PARAMS, "GET", "/1/2/3/4/5/6",
        Hit("p", &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5"), ("f", "6")], "")),
    // Hosts.
    Case { name: "exact host", routes: HOSTS, host: "api.example.com", stage: None, method: "GET", path: "/h", want: Hit("one", &[], "") },
    Case { name: "host any case", routes: HOSTS, host: "API.Example.COM", stage: None, method: "GET", path: "/h", want: Hit("one", &[], "") },
    Case { name: "exact beats wildcard", routes: HOSTS, host: "other.example.com", stage: None, method: "GET", path: "/h", want: Hit("two", &[], "") },
    Case { name: "wildcard", routes: HOSTS, host: "x.example.com", stage: None, method: "GET", path: "/h", want: Hit("two", &[], "") },
    Case { name: "wildcard several labels", routes: HOSTS, host: "a.b.c.example.com", stage: None, method: "GET", path: "/h", want: Hit("two", &[], "") },
    Case { name: "longer wildcard wins", routes: HOSTS, host: "x.wild.example.com", stage: None, method: "GET", path: "/h", want: Hit("one", &[], "") },
    Case { name: "longest wildcard wins", routes: HOSTS, host: "x.deep.wild.example.com", stage: None, method: "GET", path: "/h", want: Hit("three", &[], "") },
    Case { name: "wildcard needs a label", routes: HOSTS, host: "example.com", stage: None, method: "GET", path: "/h", want: M(Miss::UnknownHost) },
    Case { name: "unknown host", routes: HOSTS, host: "example.org", stage: None, method: "GET", path: "/h", want: M(Miss::UnknownHost) },
    Case { name: "group without routes in env", routes: HOSTS, host: HOST, stage: Some("TEST"), method: "GET", path: "/h", want: M(Miss::NoRoute) },
    // Stages.
    Case { name: "default stage is RELEASE", routes: STAGES, host: HOST, stage: None, method: "GET", path: "/a", want: Hit("rel", &[], "") },
    Case { name: "explicit RELEASE", routes: STAGES, host: HOST, stage: Some("RELEASE"), method: "GET", path: "/a", want: Hit("rel", &[], "") },
    Case { name: "x-stage selects", routes: STAGES, host: HOST, stage: Some("TEST"), method: "GET", path: "/a", want: Hit("tst", &[], "") },
    Case { name: "route only in another stage", routes: STAGES, host: HOST, stage: None, method: "GET", path: "/t", want: M(Miss::NoRoute) },
    Case { name: "stage names are exact", routes: STAGES, host: HOST, stage: Some("test"), method: "GET", path: "/a", want: M(Miss::UnknownStage) },
    Case { name: "unknown stage", routes: STAGES, host: HOST, stage: Some("NOPE"), method: "GET", path: "/a", want: M(Miss::UnknownStage) },
    Case { name: "empty stage", routes: STAGES, host: HOST, stage: Some(""), method: "GET", path: "/a", want: M(Miss::UnknownStage) },
    Case { name: "host checked before stage", routes: STAGES, host: "nope", stage: Some("NOPE"), method: "GET", path: "/a", want: M(Miss::UnknownHost) },
];

#[test]
fn routing_table() {
    let mut failures = Vec::new();
    for c in CASES {
        let snap = snapshot(c.routes);
        let table = RouteTable::compile(&snap).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(table.len(), c.routes.len());
        let path = canonicalize(c.path).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let got = table.lookup(c.host, c.stage, c.method, &path).map(|m| {
            let params: Vec<(String, String)> = m
                .params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            (
                snap.apis[m.api_index].id.clone(),
                params,
                m.remainder.to_owned(),
            )
        });
        let want = match &c.want {
            Hit(id, params, rem) => Ok((
                id.to_string(),
                params
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                rem.to_string(),
            )),
            M(m) => Err(*m),
        };
        if got != want {
            failures.push(format!("{}: got {got:?}, want {want:?}", c.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn params_lookup_by_name() {
    let snap = snapshot(&["u g1 RELEASE GET N /u/{Id}/f/{path+}"]);
    let table = RouteTable::compile(&snap).unwrap();
    let path = canonicalize("/u/7/f/a/b").unwrap();
    let m = table.lookup(HOST, None, "GET", &path).unwrap();
    assert_eq!(m.params.get("id"), Some("7"));
    assert_eq!(m.params.get("PATH"), Some("a/b"));
    assert_eq!(m.params.len(), 2);
}

#[test]
fn hostile_deep_path_against_a_backtracking_trie_is_fast() {
    // 127 templates, each literal 'x' for k segments then parameters to 127 segments and a
    // literal that never matches: the path below is consistent with every branch, so the
    // search must visit every node, once.
    let specs: Vec<String> = (0..127)
        .map(|k| {
            let mut t = String::new();
            for i in 0..127 {
                if i < k {
                    t.push_str("/x");
                } else {
                    t.push_str(&format!("/{{p{i}}}"));
                }
            }
            format!("r{k} g1 RELEASE GET N {t}/never")
        })
        .collect();
    let refs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let table = RouteTable::compile(&snapshot(&refs)).unwrap();
    let path = canonicalize(&format!("{}/y", "/x".repeat(127))).unwrap();
    let start = std::time::Instant::now();
    for _ in 0..20 {
        assert_eq!(
            table.lookup(HOST, None, "GET", &path).unwrap_err(),
            Miss::NoRoute
        );
    }
    assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
    let hit = canonicalize(&format!("{}/never", "/x".repeat(127))).unwrap();
    let m = table.lookup(HOST, None, "GET", &hit).unwrap();
    assert_eq!(m.api_index, 126);
}

#[test]
fn table_is_shareable() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<RouteTable>();
    let empty = RouteTable::compile(&snapshot(&[])).unwrap();
    assert!(empty.is_empty());
    let root = canonicalize("/").unwrap();
    assert_eq!(empty.lookup(HOST, None, "GET", &root), Err(Miss::NoRoute));
    assert_eq!(
        RouteTable::default().lookup(HOST, None, "GET", &root),
        Err(Miss::UnknownHost)
    );
}

fn compile_err(apis: &[&str]) -> CompileError {
    RouteTable::compile(&snapshot(apis)).expect_err("should not compile")
}

#[test]
fn duplicate_routes_are_refused() {
    let e = compile_err(&["a g1 RELEASE GET N /x/{id}", "b g1 RELEASE GET N /x/{id}"]);
    assert!(
        matches!(&e, CompileError::DuplicateRoute(c) if c.api_id == "b" && c.other_api_id == "a"),
        "{e}"
    );
    // Parameter names do not make templates different.
    let e = compile_err(&["a g1 RELEASE GET N /x/{id}", "b g1 RELEASE GET N /x/{name}"]);
    assert!(matches!(e, CompileError::DuplicateRoute(_)), "{e}");
    // Methods are compared after upper-casing.
    let e = compile_err(&["a g1 RELEASE get S /x", "b g1 RELEASE GET S /x"]);
    assert!(matches!(e, CompileError::DuplicateRoute(_)), "{e}");
    let e = compile_err(&["a g1 RELEASE ANY N /x/{p+}", "b g1 RELEASE ANY N /x/{q+}"]);
    assert!(matches!(e, CompileError::DuplicateRoute(_)), "{e}");
    // Any of group, environment, method, match mode, template or trailing slash differing is fine.
    let ok = [
        "a g1 RELEASE GET N /x",
        "b g2 RELEASE GET N /x",
        "c g1 TEST GET N /x",
        "d g1 RELEASE POST N /x",
        "e g1 RELEASE ANY N /x",
        "f g1 RELEASE GET S /x",
        "g g1 RELEASE GET N /x/",
        "h g1 RELEASE GET S /x/",
        "i g1 RELEASE GET N /{x}",
    ];
    assert_eq!(RouteTable::compile(&snapshot(&ok)).unwrap().len(), ok.len());
}

#[test]
fn bad_templates_are_refused() {
    let cases: &[(&str, TemplateError)] = &[
        ("/x/{}", TemplateError::EmptyParamName),
        ("/{a+}/b", TemplateError::GreedyNotLast),
        ("/{a", TemplateError::UnbalancedBrace),
        ("/a}", TemplateError::UnbalancedBrace),
        ("/{a}{b}", TemplateError::MixedSegment),
        ("/a//b", TemplateError::EmptySegment),
        ("/a/../b", TemplateError::DotSegment),
        ("/{a}/{a}", TemplateError::DuplicateParamName("a".into())),
        ("a", TemplateError::NotAbsolute),
    ];
    for (path, want) in cases {
        let e = compile_err(&[&format!("a g1 RELEASE GET N {path}")]);
        match e {
            CompileError::InvalidPath { reason, .. } => assert_eq!(&reason, want, "{path}"),
            other => panic!("{path}: {other}"),
        }
    }
}

#[test]
fn dangling_and_malformed_references_are_refused() {
    let e = compile_err(&["a nogroup RELEASE GET N /x"]);
    assert!(matches!(e, CompileError::UnknownGroup { .. }), "{e}");
    let e = compile_err(&["a g1 env-nope GET N /x"]);
    assert!(matches!(e, CompileError::UnknownEnvironment { .. }), "{e}");
    let e = compile_err(&["a g1 RELEASE G(T N /x"]);
    assert!(matches!(e, CompileError::InvalidMethod { .. }), "{e}");

    let mut snap = snapshot(&["a g1 RELEASE GET N /x"]);
    snap.apis[0].req_method = String::new();
    assert!(matches!(
        RouteTable::compile(&snap),
        Err(CompileError::InvalidMethod { .. })
    ));
    snap.apis[0].req_method = "GET".into();
    snap.apis[0].match_mode = 7;
    assert!(matches!(
        RouteTable::compile(&snap),
        Err(CompileError::InvalidMatchMode { value: 7, .. })
    ));

    let mut snap = snapshot(&[]);
    snap.groups.push(snap.groups[0].clone());
    assert!(matches!(
        RouteTable::compile(&snap),
        Err(CompileError::DuplicateGroup { .. })
    ));
    let mut snap = snapshot(&[]);
    snap.environments.push(snap.environments[0].clone());
    assert!(matches!(
        RouteTable::compile(&snap),
        Err(CompileError::DuplicateEnvironment { .. })
    ));
    let mut snap = snapshot(&[]);
    snap.environments[1].name = "RELEASE".into();
    assert!(matches!(
        RouteTable::compile(&snap),
        Err(CompileError::DuplicateEnvironmentName { .. })
    ));
    let mut snap = snapshot(&[]);
    snap.groups[1].domains.push("API.example.com".into());
    assert!(matches!(
        RouteTable::compile(&snap),
        Err(CompileError::Domain { .. })
    ));
    let mut snap = snapshot(&[]);
    snap.groups[1].domains.push("a.*.com".into());
    assert!(matches!(
        RouteTable::compile(&snap),
        Err(CompileError::Domain { .. })
    ));
}

#[test]
fn errors_read_well() {
    let e = compile_err(&["a g1 RELEASE GET N /x/{id}", "b g1 RELEASE GET N /x/{n}"]);
    assert_eq!(
        e.to_string(),
        "API \"b\" has the same method, path and match mode as API \"a\" (GET /x/{n}, NORMAL) \
         in group \"g1\", environment \"env-release\""
    );
    let e = compile_err(&["a g1 RELEASE GET N /{a+}/b"]);
    assert_eq!(
        e.to_string(),
        "API \"a\" has an invalid path \"/{a+}/b\": a greedy parameter {name+} must be the last segment"
    );
}
