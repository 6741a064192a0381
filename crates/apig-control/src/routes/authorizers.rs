//! Custom authorizers (`/authorizers`). An authorizer's changes reach the gateway with the next
//! snapshot of its instance (every save recompiles it), without republishing the APIs using it.

use std::sync::Arc;

use apig_model::api::{Api, ApiSpec};
use apig_model::authorizer::{Authorizer, AuthorizerSpec, MAX_AUTHORIZERS};
use apig_model::publish::{ApiVersion, Publication};
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;

use super::{created, eq_filter, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{backend_address, keys, ControlState};

type Res<T> = std::result::Result<T, ApiError>;

pub fn load(r: &(impl Reader + ?Sized), inst: &str, id: &str) -> Res<Authorizer> {
    r.get_json(&keys::authorizer(inst, id))?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::AuthorizerNotFound,
            format!("The authorizer does not exist: authorizer with id: {id} not found"),
        )
    })
}

/// The authorizers an API definition names exist in the instance and are of the right type:
/// FRONTEND for `authorizer_id`, BACKEND for the backends' `authorizer_id`.
pub fn check_api(r: &(impl Reader + ?Sized), inst: &str, spec: &ApiSpec) -> Res<()> {
    let wrong = |field: &str, a: &Authorizer, want: &str| {
        ApiError::invalid(
            field,
            format!(
                "the authorizer {} is a {} authorizer; a {want} one is needed here",
                a.id, a.kind
            ),
        )
    };
    if let Some(id) = spec.frontend_authorizer_id() {
        let a = load(r, inst, id)?;
        if !a.is_frontend() {
            return Err(wrong("authorizer_id", &a, "FRONTEND"));
        }
    }
    for (field, id) in spec.backend_authorizer_ids() {
        let a = load(r, inst, id)?;
        if a.is_frontend() {
            return Err(wrong(field, &a, "BACKEND"));
        }
    }
    Ok(())
}

fn names(spec: &ApiSpec, id: &str) -> bool {
    spec.frontend_authorizer_id() == Some(id)
        || spec.backend_authorizer_ids().iter().any(|(_, a)| *a == id)
}

/// The APIs whose definition or a published version names the authorizer.
fn users(r: &(impl Reader + ?Sized), inst: &str, id: &str) -> Res<Vec<String>> {
    let mut out: Vec<String> = Reader::scan_json::<Api>(r, &keys::apis(inst))?
        .into_iter()
        .filter(|a| names(&a.spec, id))
        .map(|a| a.id)
        .collect();
    for p in Reader::scan_json::<Publication>(r, &keys::pubs(inst))? {
        let version: Option<ApiVersion> =
            r.get_json(&keys::version(inst, &p.api_id, &p.version_id))?;
        if version.is_some_and(|v| names(&v.spec, id)) && !out.contains(&p.api_id) {
            out.push(p.api_id);
        }
    }
    Ok(out)
}

fn check_name(all: &[Authorizer], name: &str, except: Option<&str>) -> Res<()> {
    super::unique_name(
        all.iter().map(|x| (x.id.as_str(), x.name.as_str())),
        name,
        except,
        ErrorCode::AuthorizerNameExists,
        "authorizer",
    )
}

fn check_spec(spec: &AuthorizerSpec) -> Res<()> {
    spec.validate()?;
    backend_address::check_function_url(
        "authorizer_uri",
        spec.authorizer_uri.as_deref().unwrap_or_default(),
    )
}

pub async fn list(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let mut all: Vec<Authorizer> = Reader::scan_json(s.reader(), &keys::authorizers(&inst))?;
    all.retain(|x| {
        eq_filter(&q, "id", &x.id)
            && name_matches(&q, "name", &x.name)
            && eq_filter(&q, "type", &x.kind)
    });
    all.sort_by(|a, b| (&a.create_time, &a.id).cmp(&(&b.create_time, &b.id)));
    let items = all.iter().map(Authorizer::to_json).collect();
    Ok(ok(paged(items, page, "authorizer_list")))
}

pub async fn show(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    Ok(ok(load(s.reader(), &inst, &id)?.to_json()))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: AuthorizerSpec = parse_json(&body)?;
    check_spec(&spec)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let all: Vec<Authorizer> = Reader::scan_json(s.reader(), &keys::authorizers(&inst))?;
    if all.len() >= MAX_AUTHORIZERS {
        return Err(ApiError::new(
            ErrorCode::AuthorizerQuota,
            format!(
                "The number of authorizers exceeds the maximum allowed limit ({MAX_AUTHORIZERS})."
            ),
        )
        .into());
    }
    check_name(&all, spec.name.as_deref().unwrap_or_default(), None)?;
    let a = spec.into_authorizer(ids::new_id(), time::now_rfc3339());
    s.save(&inst, keys::authorizer(&inst, &a.id), &a).await?;
    Ok(created(a.to_json()))
}

pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: AuthorizerSpec = parse_json(&body)?;
    check_spec(&spec)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let old = load(s.reader(), &inst, &id)?;
    if spec.authorizer_kind.as_deref() != Some(old.kind.as_str()) {
        return Err(ApiError::invalid(
            "type",
            format!(
                "the type of an authorizer cannot be changed (it is {})",
                old.kind
            ),
        )
        .into());
    }
    let all: Vec<Authorizer> = Reader::scan_json(s.reader(), &keys::authorizers(&inst))?;
    check_name(&all, spec.name.as_deref().unwrap_or_default(), Some(&id))?;
    let a = spec.into_authorizer(id.clone(), old.create_time);
    // The APIs using it run the new definition from the next snapshot on (saved = recompiled).
    s.save(&inst, keys::authorizer(&inst, &id), &a).await?;
    Ok(ok(a.to_json()))
}

/// An authorizer that an API (its definition or a published version) names cannot be deleted.
pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    let users = users(s.reader(), &inst, &id)?;
    if !users.is_empty() {
        return Err(ApiError::new(
            ErrorCode::AuthorizerInUse,
            format!(
                "The authorizer is used by APIs and cannot be deleted: {}",
                users.join(", ")
            ),
        )
        .into());
    }
    let mut tx = s.tx();
    tx.delete(keys::authorizer(&inst, &id));
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;
    use apig_model::instance::Instance;
    use axum::response::IntoResponse;
    use serde_json::{json, Value};

    async fn state() -> Arc<ControlState> {
        let s = ControlState::new(
            Arc::new(apig_store::MemoryStore::new()),
            "epoch".into(),
            "apigw.test".into(),
            apig_sign::token::TokenSigner::from_seed(&[7; 32]),
            crate::metrics::ControlMetrics::new().unwrap(),
        );
        let inst = Instance {
            id: "i1".into(),
            project_id: "p1".into(),
            instance_name: "default".into(),
            description: String::new(),
            create_time: 0,
        };
        let mut tx = s.tx();
        crate::routes::create_instance(&mut tx, &inst).unwrap();
        s.commit(tx, &["i1"]).await.unwrap();
        Arc::new(s)
    }

    async fn answer(r: Result<Response>) -> (u16, Value) {
        let resp = r.unwrap_or_else(IntoResponse::into_response);
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn at(project: &str) -> Path<(String, String)> {
        Path((project.into(), "i1".into()))
    }

    fn one(id: &str) -> Path<(String, String, String)> {
        Path(("p1".into(), "i1".into(), id.into()))
    }

    fn body(v: Value) -> Bytes {
        Bytes::from(v.to_string())
    }

    fn authorizer(name: &str, kind: &str, extra: Value) -> Value {
        let mut v = json!({"name": name, "type": kind, "authorizer_type": "FUNC",
                           "authorizer_uri": "http://127.0.0.1:9000/authorize"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    fn query(pairs: &[(&str, &str)]) -> Params {
        axum::extract::Query(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[tokio::test]
    async fn authorizers_are_checked_referenced_compiled_and_guarded() {
        let s = state().await;
        let create_one = |v: Value| create(State(Arc::clone(&s)), at("p1"), body(v));
        let (status, front) = answer(
            create_one(authorizer(
                "front_auth",
                "FRONTEND",
                json!({"ttl": 10, "identities": [{"name": "X-Token", "location": "HEADER"}]}),
            ))
            .await,
        )
        .await;
        assert_eq!(status, 201, "{front}");
        let front_id = front["id"].as_str().unwrap().to_owned();
        let (status, back) = answer(
            create_one(authorizer(
                "back_auth",
                "BACKEND",
                json!({"user_data": "u1"}),
            ))
            .await,
        )
        .await;
        assert_eq!(status, 201, "{back}");
        let back_id = back["id"].as_str().unwrap().to_owned();

        // Duplicate names, another project's instance, refused addresses: nothing stored.
        let (status, e) =
            answer(create_one(authorizer("front_auth", "BACKEND", json!({}))).await).await;
        assert_eq!((status, e["error_code"].as_str()), (400, Some("APIG.3211")));
        let (status, e) = answer(
            create(
                State(Arc::clone(&s)),
                at("p2"),
                body(authorizer("other", "BACKEND", json!({}))),
            )
            .await,
        )
        .await;
        assert_eq!((status, e["error_code"].as_str()), (404, Some("APIG.3030")));
        let (status, e) = answer(
            create_one(authorizer(
                "meta_auth",
                "BACKEND",
                json!({"authorizer_uri": "http://169.254.169.254/x"}),
            ))
            .await,
        )
        .await;
        assert_eq!((status, e["error_code"].as_str()), (400, Some("APIG.2022")));
        let (_, listed) = answer(
            list(
                State(Arc::clone(&s)),
                at("p1"),
                query(&[("type", "BACKEND")]),
            )
            .await,
        )
        .await;
        assert_eq!(listed["total"], 1);
        assert_eq!(listed["authorizer_list"][0]["id"], back_id.as_str());

        // APIs name them: existing, and of the right type.
        let (_, group) = answer(
            super::super::groups::create(
                State(Arc::clone(&s)),
                at("p1"),
                body(json!({"name": "grp_one"})),
            )
            .await,
        )
        .await;
        let api_body = |front: &str, back: &str| {
            body(
                json!({"name": "guarded", "type": 1, "req_protocol": "HTTP", "req_method": "GET",
                "req_uri": "/guarded", "auth_type": "AUTHORIZER", "authorizer_id": front,
                "backend_type": "HTTP", "group_id": group["id"],
                "backend_api": {"url_domain": "127.0.0.1:9001", "req_protocol": "HTTP",
                    "req_method": "GET", "req_uri": "/", "timeout": 1000, "authorizer_id": back}}),
            )
        };
        let api_create = |b: Bytes| super::super::apis::create(State(Arc::clone(&s)), at("p1"), b);
        let (status, e) = answer(api_create(api_body(&back_id, &back_id)).await).await;
        assert_eq!(
            (status, e["error_code"].as_str()),
            (400, Some("APIG.2012")),
            "{e}"
        );
        let (status, e) = answer(api_create(api_body(&front_id, &front_id)).await).await;
        assert_eq!(
            (status, e["error_code"].as_str()),
            (400, Some("APIG.2012")),
            "{e}"
        );
        let (status, e) = answer(api_create(api_body("nope", &back_id)).await).await;
        assert_eq!(
            (status, e["error_code"].as_str()),
            (404, Some("APIG.3081")),
            "{e}"
        );
        let (status, api) = answer(api_create(api_body(&front_id, &back_id)).await).await;
        assert_eq!(status, 201, "{api}");
        let (status, published) = answer(
            super::super::publish::action(
                State(Arc::clone(&s)),
                at("p1"),
                body(json!({"action": "online", "api_id": api["id"],
                            "env_id": "DEFAULT_ENVIRONMENT_RELEASE_ID"})),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201, "{published}");

        // The snapshot carries them.
        let snap = s.publisher.current("i1").unwrap();
        let compiled = &snap.apis[0];
        assert_eq!(compiled.authorizer_id, front_id);
        assert_eq!(compiled.backend_authorizer_id, back_id);
        assert_eq!(snap.authorizers.len(), 2);
        let fa = snap.authorizers.iter().find(|a| a.id == front_id).unwrap();
        assert!(!fa.backend && fa.ttl_seconds == 10 && fa.identities.len() == 1);

        // A change republishes the instance without republishing the API.
        let (status, updated) = answer(
            update(
                State(Arc::clone(&s)),
                one(&back_id),
                body(authorizer(
                    "back_auth",
                    "BACKEND",
                    json!({"user_data": "u2"}),
                )),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{updated}");
        let after = s.publisher.current("i1").unwrap();
        assert!(after.version > snap.version);
        let ba = after.authorizers.iter().find(|a| a.id == back_id).unwrap();
        assert_eq!(ba.user_data, "u2");
        // The type is immutable.
        let (status, e) = answer(
            update(
                State(Arc::clone(&s)),
                one(&back_id),
                body(authorizer("back_auth", "FRONTEND", json!({}))),
            )
            .await,
        )
        .await;
        assert_eq!((status, e["error_code"].as_str()), (400, Some("APIG.2012")));

        // In use: not deletable. Unknown: 404.
        for id in [&front_id, &back_id] {
            let (status, e) = answer(delete(State(Arc::clone(&s)), one(id)).await).await;
            assert_eq!(
                (status, e["error_code"].as_str()),
                (400, Some("APIG.2012")),
                "{e}"
            );
        }
        let (status, e) = answer(delete(State(Arc::clone(&s)), one("nope")).await).await;
        assert_eq!((status, e["error_code"].as_str()), (404, Some("APIG.3081")));
        let (status, _) = answer(show(State(Arc::clone(&s)), one(&front_id)).await).await;
        assert_eq!(status, 200);

        // The quota: 50 per instance.
        for n in 2..MAX_AUTHORIZERS {
            let (status, e) =
                answer(create_one(authorizer(&format!("extra_{n}"), "BACKEND", json!({}))).await)
                    .await;
            assert_eq!(status, 201, "{e}");
        }
        let (status, e) =
            answer(create_one(authorizer("one_more", "BACKEND", json!({}))).await).await;
        assert_eq!((status, e["error_code"].as_str()), (403, Some("APIG.3116")));
        // An unused one is deleted.
        let (_, listed) = answer(
            list(
                State(Arc::clone(&s)),
                at("p1"),
                query(&[("name", "extra_2")]),
            )
            .await,
        )
        .await;
        let extra = listed["authorizer_list"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, _) = answer(delete(State(Arc::clone(&s)), one(&extra)).await).await;
        assert_eq!(status, 204);
        let (status, _) = answer(show(State(Arc::clone(&s)), one(&extra)).await).await;
        assert_eq!(status, 404);
    }
}
