use super::*;

fn seed(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../fuzz/corpus/openapi_import/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn imported(name: &str) -> Imported {
    let doc = parse_document(&seed(name)).unwrap();
    import(&doc, &ImportOptions::default()).unwrap()
}

fn find<'a>(i: &'a Imported, name: &str) -> &'a ApiDefinition {
    &i.definitions
        .apis
        .iter()
        .find(|(_, d)| d.spec.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{name} not imported: {:?}", i.failures))
        .1
}

/// Validates like CreateApiV2 does (the caller gives the group).
fn validated(def: &ApiDefinition) -> Result<ApiSpec, ApiError> {
    let mut spec = def.spec.clone();
    spec.group_id = Some("g".into());
    spec.validate_and_normalize()?;
    Ok(spec)
}

#[test]
fn swagger_yaml_with_http_mock_and_policies() {
    let i = imported("swagger_http_mock.yaml");
    assert!(i.failures.is_empty(), "{:?}", i.failures);
    assert_eq!(i.definitions.title, "orders_demo");
    let get = find(&i, "getOrder");
    let s = validated(get).unwrap();
    assert_eq!(s.req_method.as_deref(), Some("GET"));
    assert_eq!(s.req_uri.as_deref(), Some("/orders/{orderId}"));
    assert_eq!(s.req_protocol.as_deref(), Some("BOTH"));
    assert_eq!(s.auth_type.as_deref(), Some("APP"));
    assert_eq!(s.cors, Some(true));
    let b = s.backend_api.as_ref().unwrap();
    assert_eq!(b.url_domain.as_deref(), Some("127.0.0.1:9000"));
    assert_eq!(b.req_uri.as_deref(), Some("/backend/orders/{id}"));
    let params = s.req_params.as_ref().unwrap();
    let verbose = params
        .iter()
        .find(|p| p.name.as_deref() == Some("verbose"))
        .unwrap();
    assert_eq!(verbose.enumerations.as_deref(), Some("true,false"));
    let tenant = params
        .iter()
        .find(|p| p.name.as_deref() == Some("X-Tenant"))
        .unwrap();
    assert_eq!(
        (
            tenant.location.as_deref(),
            tenant.max_size,
            tenant.valid_enable
        ),
        (Some("HEADER"), Some(32), Some(1))
    );
    assert_eq!(get.ratelimit.as_deref(), Some("orders_limit"));
    assert_eq!(get.access_control.as_deref(), Some("office_only"));
    let r = &i.definitions.ratelimits["orders_limit"];
    assert_eq!(
        (r.api_limit, r.user_limit, r.app_limit, r.interval),
        (100, Some(50), Some(10), 1)
    );
    assert_eq!(
        i.definitions.access_controls["office_only"].value,
        "127.0.0.1,10.0.0.0/8"
    );

    let health = validated(find(&i, "health")).unwrap();
    assert_eq!(health.req_method.as_deref(), Some("ANY"));
    assert_eq!(health.match_mode.as_deref(), Some("SWA"));
    assert_eq!(health.auth_type.as_deref(), Some("NONE"));
    assert_eq!(
        health.mock_info.as_ref().unwrap().result_content.as_deref(),
        Some("{\"status\":\"up\"}")
    );
}

#[test]
fn openapi3_json_with_function_channel_and_backend_policies() {
    let i = imported("oas3_function_vpc.json");
    assert!(i.failures.is_empty(), "{:?}", i.failures);
    let f = validated(find(&i, "invokeFunction")).unwrap();
    assert_eq!(f.backend_type.as_deref(), Some("FUNCTION"));
    assert_eq!(f.auth_type.as_deref(), Some("IAM"));
    assert_eq!(f.req_protocol.as_deref(), Some("HTTPS"));
    assert_eq!(
        f.func_info.as_ref().unwrap().function_urn.as_deref(),
        Some("http://127.0.0.1:9000/fn")
    );
    let count = f
        .req_params
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some("count"))
        .unwrap();
    assert_eq!(
        (
            count.param_type.as_deref(),
            count.min_num,
            count.max_num,
            count.default_value.as_deref()
        ),
        (Some("NUMBER"), Some(1), Some(10), Some("1"))
    );
    // The request body is not a parameter.
    assert_eq!(f.req_params.as_ref().unwrap().len(), 3);

    let mut pooled = find(&i, "pooled").clone();
    let b = pooled.spec.backend_api.as_ref().unwrap();
    assert_eq!(b.vpc_channel_status, Some(1));
    // The channel is named until the control plane resolves it.
    let mut seen = Vec::new();
    map_channels(&mut pooled.spec, |name| {
        seen.push(name.to_owned());
        Ok(format!("id-of-{name}"))
    })
    .unwrap();
    assert_eq!(seen, ["pool_a", "pool_b"]);
    let s = validated(&pooled).unwrap();
    assert_eq!(s.channel_id(), Some("id-of-pool_a"));
    let gold = &s.policy_https.as_ref().unwrap()[0];
    let c = &gold.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (
            c.condition_origin.as_deref(),
            c.condition_type.as_deref(),
            c.req_param_name.as_deref()
        ),
        (Some("param"), Some("exact"), Some("tier"))
    );
    let archive = &s.policy_https.as_ref().unwrap()[1];
    assert_eq!(archive.effect_mode.as_deref(), Some("ALL"));
    assert_eq!(archive.channel_id(), Some("id-of-pool_b"));
}

#[test]
fn unsupported_constructs_fail_with_a_reason_and_the_rest_imports() {
    let i = imported("oas3_unsupported.yaml");
    let failed: Vec<(&str, &str)> = i
        .failures
        .iter()
        .map(|f| (f.operation.path.as_str(), f.error.message.as_str()))
        .collect();
    assert!(
        failed
            .iter()
            .any(|(p, m)| *p == "/plugins" && m.contains("plug-ins")),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|(p, m)| *p == "/form" && m.contains("cookie")),
        "{failed:?}"
    );
    assert!(
        i.failures.iter().all(|f| f.error.status() == 412),
        "{failed:?}"
    );
    assert_eq!(
        i.ignored,
        vec![Operation {
            method: "TRACE".into(),
            path: "/anchors".into()
        }]
    );
    // A YAML anchor reused for a second operation.
    let anchored: Vec<_> = i
        .definitions
        .apis
        .iter()
        .filter(|(_, d)| d.spec.name.as_deref() == Some("anchored"))
        .collect();
    assert_eq!(anchored.len(), 2);
    find(&i, "fine_one");
}

#[test]
fn documents_that_are_not_openapi_are_refused() {
    for doc in [
        "{}",
        "[1,2]",
        "swagger: '1.2'\npaths: {}",
        "openapi: 3.1.0\npaths: {}",
        "swagger: '2.0'\npaths: [1]",
    ] {
        let v = parse_document(doc.as_bytes()).unwrap();
        let e = import(&v, &ImportOptions::default()).unwrap_err();
        assert!(matches!(e, ImportError::NotOpenApi(_)), "{doc}: {e}");
        assert_eq!(ApiError::from(e).status(), 400);
    }
}

#[test]
fn too_many_apis_are_refused() {
    let mut paths = serde_json::Map::new();
    for i in 0..=MAX_APIS {
        paths.insert(format!("/p{i}"), serde_json::json!({"get": {}}));
    }
    let doc = serde_json::json!({"swagger": "2.0", "paths": paths});
    assert!(matches!(
        import(&doc, &ImportOptions::default()),
        Err(ImportError::TooManyApis { .. })
    ));
}

#[test]
fn missing_backend_needs_mock_mode() {
    let doc = parse_document(
        br#"{"swagger":"2.0","info":{"title":"t"},"paths":{"/a":{"get":{"operationId":"a_api"}}}}"#,
    )
    .unwrap();
    let i = import(&doc, &ImportOptions::default()).unwrap();
    assert_eq!(i.failures.len(), 1);
    assert!(i.failures[0].error.message.contains("mock_mode"));
    let i = import(&doc, &ImportOptions { mock_mode: true }).unwrap();
    let s = validated(&i.definitions.apis[0].1).unwrap();
    assert_eq!(s.backend_type.as_deref(), Some("MOCK"));
}

/// Every seed: what imports and validates exports (both versions, JSON and YAML) and imports
/// again to the same definitions.
#[test]
fn export_then_import_gives_the_same_definitions() {
    for name in [
        "swagger_http_mock.yaml",
        "oas3_function_vpc.json",
        "swagger_min.json",
        "oas3_unsupported.yaml",
    ] {
        let first = imported(name);
        let mut defs = first.definitions.clone();
        defs.apis.retain(|(_, d)| validated(d).is_ok());
        assert!(!defs.apis.is_empty(), "{name}");
        for oas in [OasVersion::Swagger2, OasVersion::OpenApi3] {
            for yaml in [false, true] {
                let opts = ExportOptions {
                    oas,
                    backends: true,
                    policies: true,
                    version: "v1".into(),
                    host: "g.apig.localhost".into(),
                };
                let text = export::render(&export(&defs, &opts), yaml).unwrap();
                let again = import(
                    &parse_document(text.as_bytes()).unwrap(),
                    &ImportOptions::default(),
                )
                .unwrap();
                assert!(
                    again.failures.is_empty(),
                    "{name} {oas:?}: {:?}\n{text}",
                    again.failures
                );
                assert_eq!(again.definitions.title, defs.title);
                assert_eq!(again.definitions.ratelimits, defs.ratelimits, "{name}");
                assert_eq!(
                    again.definitions.access_controls, defs.access_controls,
                    "{name}"
                );
                let key = |d: &Definitions| {
                    let mut v: Vec<_> = d
                        .apis
                        .iter()
                        .map(|(_, a)| {
                            (
                                comparable(&validated(a).unwrap()).to_string(),
                                a.ratelimit.clone(),
                                a.access_control.clone(),
                            )
                        })
                        .collect();
                    v.sort();
                    v
                };
                assert_eq!(
                    key(&again.definitions),
                    key(&defs),
                    "{name} {oas:?} yaml={yaml}\n{text}"
                );
            }
        }
    }
}

#[test]
fn spec_export_has_no_backends_or_policies() {
    let defs = imported("swagger_http_mock.yaml").definitions;
    let opts = ExportOptions {
        oas: OasVersion::Swagger2,
        backends: false,
        policies: false,
        version: "v1".into(),
        host: "h".into(),
    };
    let text = export::render(&export(&defs, &opts), false).unwrap();
    assert!(!text.contains("x-apigateway-backend"), "{text}");
    assert!(!text.contains("x-apigateway-ratelimit"), "{text}");
    assert!(text.contains("\"operationId\": \"getOrder\""), "{text}");
    assert!(
        text.starts_with("{\n  \"swagger\": \"2.0\",\n  \"info\""),
        "{text}"
    );
    let opts = ExportOptions {
        oas: OasVersion::OpenApi3,
        ..opts
    };
    let yaml = export::render(&export(&defs, &opts), true).unwrap();
    assert!(yaml.starts_with("openapi: 3.0.1\ninfo:"), "{yaml}");
}

#[test]
fn custom_authorizer_apis_export_a_defined_scheme_that_import_refuses() {
    let mut defs = imported("swagger_min.json").definitions;
    for (_, d) in &mut defs.apis {
        d.spec.auth_type = Some("AUTHORIZER".into());
    }
    let opts = ExportOptions {
        oas: OasVersion::Swagger2,
        backends: true,
        policies: false,
        version: "v1".into(),
        host: "h".into(),
    };
    let doc = export(&defs, &opts);
    assert_eq!(
        doc["securityDefinitions"]["apig-auth-authorizer"]["x-apigateway-auth-type"],
        "AUTHORIZER"
    );
    let again = import(&doc, &ImportOptions::default()).unwrap();
    assert!(again.definitions.apis.is_empty());
    assert!(!again.failures.is_empty());
    assert!(
        again
            .failures
            .iter()
            .all(|f| format!("{f:?}").contains("AUTHORIZER")),
        "{:?}",
        again.failures
    );
}
