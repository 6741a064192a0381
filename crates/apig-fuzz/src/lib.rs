//! Fuzz entry points: each takes arbitrary bytes, must never panic, and asserts what must hold
//! for any input. The cargo-fuzz targets in `fuzz/` call them (coverage-guided, nightly), and
//! `cargo test` replays the seed corpora in `fuzz/corpus/<target>/` through them plus a few
//! thousand deterministic mutations of each seed, so a crash found once stays fixed.

use apig_proto::{Api, Environment, Group, MatchMode, Snapshot};
use apig_router::{canonicalize, RouteTable};

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// The targets by name (the names of `fuzz/fuzz_targets/*.rs` and of the corpus directories).
pub const TARGETS: &[(&str, Target)] = &[
    ("canonical_path", canonical_path),
    ("signed_request", signed_request),
    ("route_table", route_table),
    ("snapshot", snapshot),
    ("openapi_import", openapi_import),
];

/// The path canonicaliser: a canonical path satisfies its invariants, and canonicalising its
/// wire form gives it back (routing, ACLs, signatures and the backend agree on one path).
pub fn canonical_path(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = canonicalize(raw) else {
        return;
    };
    let s = path.as_str();
    assert!(s.starts_with('/'), "{s:?}");
    let inner = s.strip_suffix('/').unwrap_or(s);
    for segment in inner.split('/').skip(1) {
        assert!(
            !segment.is_empty() && segment != "." && segment != "..",
            "segment {segment:?} in {s:?}"
        );
        assert!(!segment.contains('\\') && !segment.chars().any(char::is_control));
    }
    let again = canonicalize(&path.to_encoded()).expect("a canonical path's wire form is valid");
    assert_eq!(again, path, "wire form {:?}", path.to_encoded());
}

/// The `SDK-HMAC-SHA256` verifier over a whole request given as text: a request line
/// `METHOD /path?query`, header lines `name: value`, an empty line, the body.
pub fn signed_request(data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let (method, target) = request_line
        .split_once(' ')
        .unwrap_or(("GET", request_line));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let _ = apig_sign::canonical_uri(path);
    let _ = apig_sign::canonical_query(query);
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("authorization") {
            let _ = apig_sign::Authorization::parse(value);
        }
    }
    let view = apig_sign::RequestView {
        method,
        path,
        query,
        headers: &headers,
    };
    // A fixed clock near the corpus dates, and one key whose secret is known.
    let now = 1_767_225_600; // 2026-01-01T00:00:00Z
    let _ = apig_sign::verify(&view, body, now, |key| {
        (key == "fuzz-app-key").then_some(b"fuzz-app-secret-0123456789".as_slice())
    });
}

/// The router: each line `METHOD N|S /template` is an API of one group in RELEASE; lines
/// `> host METHOD /path` are lookups. Compiling may refuse a table; a compiled table answers
/// every lookup without panicking, and each API's own literal path finds a route.
/// A snapshot of instance `i1` with one group `g1` (domains `api.example.com` and
/// `*.wild.example.com`), the RELEASE environment `env-release`, and `apis`.
pub fn one_group_snapshot(version: u64, apis: Vec<Api>) -> Snapshot {
    Snapshot {
        instance_id: "i1".into(),
        epoch: "e1".into(),
        version,
        groups: vec![Group {
            id: "g1".into(),
            name: "g1".into(),
            domains: vec!["api.example.com".into(), "*.wild.example.com".into()],
        }],
        environments: vec![Environment {
            id: "env-release".into(),
            name: "RELEASE".into(),
        }],
        apis,
        ..Default::default()
    }
}

pub fn route_table(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut apis = Vec::new();
    let mut lookups = Vec::new();
    for line in text.lines().take(512) {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields[..] {
            [">", host, method, path] => lookups.push((host, method, path)),
            [method, mode, template] => apis.push(Api {
                id: format!("a{}", apis.len()),
                name: format!("a{}", apis.len()),
                group_id: "g1".into(),
                env_id: "env-release".into(),
                req_method: method.into(),
                req_uri: template.into(),
                match_mode: if mode == "S" {
                    MatchMode::Swa
                } else {
                    MatchMode::Normal
                } as i32,
                ..Default::default()
            }),
            _ => {}
        }
    }
    let snapshot = one_group_snapshot(1, apis);
    let Ok(table) = RouteTable::compile(&snapshot) else {
        return;
    };
    for (host, method, path) in lookups {
        if let Ok(path) = canonicalize(path) {
            let _ = table.lookup(host, None, method, &path);
        }
    }
    // The control plane only publishes APIG's methods; others may compile but need not route.
    let methods = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "ANY",
    ];
    for api in &snapshot.apis {
        let literal = !api.req_uri.contains('{') && methods.contains(&api.req_method.as_str());
        if let (true, Ok(path)) = (literal, canonicalize(&api.req_uri)) {
            let method = if api.req_method == "ANY" {
                "GET"
            } else {
                api.req_method.as_str()
            };
            assert!(
                table.lookup("api.example.com", None, method, &path).is_ok(),
                "{} {} does not route to anything",
                api.req_method,
                api.req_uri
            );
        }
    }
}

/// Snapshot bytes from the wire or a cache file: decoding and compiling either succeeds or
/// gives a reason; it never panics (a replica NACKs and keeps its last good snapshot).
pub fn snapshot(data: &[u8]) {
    let _ = apig_gateway::check_snapshot(data);
}

/// OpenAPI import (`ImportApiDefinitionsV2`): a document is refused with an error or
/// converts; each converted API passes the model's validation (what `CreateApiV2` runs) or is
/// refused by it with a 4xx; and what passed exports (Swagger 2.0 as JSON, OpenAPI 3.0 as
/// YAML) to a document that imports again to the same definitions.
pub fn openapi_import(data: &[u8]) {
    use apig_openapi::{comparable, ExportOptions, ImportOptions, OasVersion};

    let Ok(doc) = apig_openapi::parse_document(data) else {
        return;
    };
    let options = ImportOptions {
        mock_mode: data.len() & 1 == 0,
    };
    let Ok(imported) = apig_openapi::import(&doc, &options) else {
        return;
    };
    for f in &imported.failures {
        assert!((400..500).contains(&f.error.status()), "{:?}", f.error);
    }
    let validated = |def: &apig_openapi::ApiDefinition| {
        let mut spec = def.spec.clone();
        spec.group_id = Some("g".into());
        spec.validate_and_normalize().map(|()| spec)
    };
    let mut defs = imported.definitions.clone();
    defs.apis.retain(|(_, def)| match validated(def) {
        Ok(_) => true,
        Err(e) => {
            assert!((400..500).contains(&e.status()), "{e:?}");
            false
        }
    });
    defs.prune_policies();
    let key = |d: &apig_openapi::Definitions| {
        let mut v: Vec<(String, Option<String>, Option<String>)> = d
            .apis
            .iter()
            .map(|(_, def)| {
                let spec = validated(def).expect("re-imported definition validates");
                (
                    comparable(&spec).to_string(),
                    def.ratelimit.clone(),
                    def.access_control.clone(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let expected = key(&defs);
    for (oas, yaml) in [(OasVersion::Swagger2, false), (OasVersion::OpenApi3, true)] {
        let opts = ExportOptions {
            oas,
            backends: true,
            policies: true,
            version: "fuzz".into(),
            host: "g.apig.localhost".into(),
        };
        let text = apig_openapi::render(&apig_openapi::export(&defs, &opts), yaml)
            .expect("an exported document renders");
        let doc = apig_openapi::parse_document(text.as_bytes())
            .unwrap_or_else(|e| panic!("the export does not parse: {e}\n{text}"));
        let again = apig_openapi::import(&doc, &ImportOptions::default())
            .unwrap_or_else(|e| panic!("the export does not import: {e}\n{text}"));
        assert!(again.failures.is_empty(), "{:?}\n{text}", again.failures);
        assert_eq!(key(&again.definitions), expected, "{oas:?}\n{text}");
        assert_eq!(again.definitions.ratelimits, defs.ratelimits);
        assert_eq!(again.definitions.access_controls, defs.access_controls);
    }
}
