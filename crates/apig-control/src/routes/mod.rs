//! The management REST API: APIG V2 paths under `/v2/{project_id}/apigw`.

mod acls;
mod apis;
mod app_auths;
mod apps;
mod audit;
mod authorizers;
mod backup;
mod bindings;
mod certificates;
mod channels;
mod credentials;
mod domains;
mod envs;
mod groups;
mod instances;
mod openapi;
mod orchestrations;
mod publish;
mod quotas;
mod replicas;
mod signs;
mod statistics;
mod throttles;
mod variables;

pub use certificates::migrate_embedded;
pub use instances::create_instance;

use std::collections::HashMap;
use std::sync::Arc;

use apig_model::page::Page;
use apig_model::{ApiError, ErrorCode};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use serde_json::Value;
use tracing::Instrument;

use crate::error::HttpError;
use crate::ControlState;

pub type Result<T> = std::result::Result<T, HttpError>;
pub type Params = Query<HashMap<String, String>>;

pub fn router(state: Arc<ControlState>) -> Router {
    let i = "/v2/{project_id}/apigw/instances/{instance_id}";
    let p = "/v2/{project_id}/apigw";
    let v2 = Router::new()
        .route(&format!("{p}/projects"), post(credentials::create_project))
        .route(
            &format!("{p}/credentials"),
            get(credentials::list).post(credentials::create),
        )
        .route(
            &format!("{p}/credentials/{{access_key}}"),
            axum::routing::delete(credentials::delete),
        )
        .route(&format!("{p}/tokens"), post(credentials::token))
        .route(&format!("{p}/audit-logs"), get(audit::list))
        .route(
            &format!("{p}/certificates"),
            get(certificates::list).post(certificates::create),
        )
        .route(
            &format!("{p}/certificates/{{certificate_id}}"),
            get(certificates::show)
                .put(certificates::update)
                .delete(certificates::delete),
        )
        .route(
            &format!("{p}/certificates/{{certificate_id}}/attached-domains"),
            get(certificates::attached_domains),
        )
        .route(
            &format!("{p}/certificates/{{certificate_id}}/domains/attach"),
            post(certificates::attach_domains),
        )
        .route(
            &format!("{p}/certificates/{{certificate_id}}/domains/detach"),
            post(certificates::detach_domains),
        )
        .route(&format!("{p}/backup"), get(backup::download))
        .route(&format!("{i}/apps"), get(apps::list).post(apps::create))
        .route(
            &format!("{i}/apps/secret/{{app_id}}"),
            axum::routing::put(apps::reset_secret),
        )
        .route(
            &format!("{i}/apps/validation/{{app_id}}"),
            get(apps::validation),
        )
        .route(
            &format!("{i}/apps/{{app_id}}"),
            get(apps::show).put(apps::update).delete(apps::delete),
        )
        .route(
            &format!("{i}/apps/{{app_id}}/app-codes"),
            get(apps::list_codes)
                .post(apps::create_code)
                .put(apps::generate_code),
        )
        .route(
            &format!("{i}/apps/{{app_id}}/app-codes/{{code_id}}"),
            get(apps::show_code).delete(apps::delete_code),
        )
        .route(
            &format!("{i}/apps/{{app_id}}/app-acl"),
            get(apps::show_acl)
                .put(apps::put_acl)
                .delete(apps::delete_acl),
        )
        .route(&format!("{i}/app-auths"), post(app_auths::create))
        .route(
            &format!("{i}/app-auths/binded-apis"),
            get(app_auths::bound_apis),
        )
        .route(
            &format!("{i}/app-auths/binded-apps"),
            get(app_auths::bound_apps),
        )
        .route(
            &format!("{i}/app-auths/unbinded-apis"),
            get(app_auths::unbound_apis),
        )
        .route(
            &format!("{i}/app-auths/{{auth_id}}"),
            axum::routing::delete(app_auths::delete),
        )
        .route(
            &format!("{i}/throttles"),
            get(throttles::list).post(throttles::create),
        )
        .route(
            &format!("{i}/throttles/{{throttle_id}}"),
            get(throttles::show)
                .put(throttles::update)
                .delete(throttles::delete),
        )
        .route(
            &format!("{i}/throttles/{{throttle_id}}/throttle-specials"),
            get(throttles::list_specials).post(throttles::create_special),
        )
        .route(
            &format!("{i}/throttles/{{throttle_id}}/throttle-specials/{{special_id}}"),
            axum::routing::put(throttles::update_special).delete(throttles::delete_special),
        )
        .route(
            &format!("{i}/throttle-bindings"),
            post(throttles::bind).put(throttles::unbind_batch),
        )
        .route(
            &format!("{i}/throttle-bindings/binded-apis"),
            get(throttles::bound_apis),
        )
        .route(
            &format!("{i}/throttle-bindings/unbinded-apis"),
            get(throttles::unbound_apis),
        )
        .route(
            &format!("{i}/throttle-bindings/binded-throttles"),
            get(throttles::bound_throttles),
        )
        .route(
            &format!("{i}/throttle-bindings/{{binding_id}}"),
            axum::routing::delete(throttles::unbind_one),
        )
        .route(
            &format!("{i}/acls"),
            get(acls::list).post(acls::create).put(acls::delete_batch),
        )
        .route(
            &format!("{i}/acls/{{acl_id}}"),
            get(acls::show).put(acls::update).delete(acls::delete),
        )
        .route(
            &format!("{i}/acl-bindings"),
            post(acls::bind).put(acls::unbind_batch),
        )
        .route(
            &format!("{i}/acl-bindings/binded-apis"),
            get(acls::bound_apis),
        )
        .route(
            &format!("{i}/acl-bindings/unbinded-apis"),
            get(acls::unbound_apis),
        )
        .route(
            &format!("{i}/acl-bindings/binded-acls"),
            get(acls::bound_acls),
        )
        .route(
            &format!("{i}/acl-bindings/{{binding_id}}"),
            axum::routing::delete(acls::unbind_one),
        )
        .route(
            &format!("{i}/app-quotas"),
            get(quotas::list).post(quotas::create),
        )
        .route(
            &format!("{i}/app-quotas/{{quota_id}}"),
            get(quotas::show).put(quotas::update).delete(quotas::delete),
        )
        .route(
            &format!("{i}/app-quotas/{{quota_id}}/binding-apps"),
            post(quotas::bind),
        )
        .route(
            &format!("{i}/app-quotas/{{quota_id}}/bound-apps"),
            get(quotas::bound_apps),
        )
        .route(
            &format!("{i}/app-quotas/{{quota_id}}/bindable-apps"),
            get(quotas::bindable_apps),
        )
        .route(
            &format!("{i}/app-quotas/{{quota_id}}/bound-apps/{{app_id}}"),
            axum::routing::delete(quotas::unbind),
        )
        .route(
            &format!("{i}/orchestrations"),
            get(orchestrations::list).post(orchestrations::create),
        )
        .route(
            &format!("{i}/orchestrations/{{orchestration_id}}"),
            get(orchestrations::show)
                .put(orchestrations::update)
                .delete(orchestrations::delete),
        )
        .route(
            &format!("{i}/orchestrations/{{orchestration_id}}/attached-apis"),
            get(orchestrations::attached_apis),
        )
        .route(
            &format!("{i}/authorizers"),
            get(authorizers::list).post(authorizers::create),
        )
        .route(
            &format!("{i}/authorizers/{{authorizer_id}}"),
            get(authorizers::show)
                .put(authorizers::update)
                .delete(authorizers::delete),
        )
        .route(&format!("{i}/signs"), get(signs::list).post(signs::create))
        .route(
            &format!("{i}/signs/{{sign_id}}"),
            axum::routing::put(signs::update).delete(signs::delete),
        )
        .route(&format!("{i}/sign-bindings"), post(signs::bind))
        .route(
            &format!("{i}/sign-bindings/binded-apis"),
            get(signs::bound_apis),
        )
        .route(
            &format!("{i}/sign-bindings/unbinded-apis"),
            get(signs::unbound_apis),
        )
        .route(
            &format!("{i}/sign-bindings/binded-signs"),
            get(signs::bound_signs),
        )
        .route(
            &format!("{i}/sign-bindings/{{sign_binding_id}}"),
            axum::routing::delete(signs::unbind),
        )
        .route(
            &format!("{i}/vpc-channels"),
            get(channels::list).post(channels::create),
        )
        .route(
            &format!("{i}/vpc-channels/{{channel_id}}"),
            get(channels::show)
                .put(channels::update)
                .delete(channels::delete),
        )
        .route(
            &format!("{i}/vpc-channels/{{channel_id}}/health-config"),
            axum::routing::put(channels::put_health),
        )
        .route(
            &format!("{i}/vpc-channels/{{channel_id}}/members"),
            get(channels::list_members)
                .post(channels::add_members)
                .put(channels::replace_members),
        )
        .route(
            &format!("{i}/vpc-channels/{{channel_id}}/members/batch-enable"),
            post(channels::enable_members),
        )
        .route(
            &format!("{i}/vpc-channels/{{channel_id}}/members/batch-disable"),
            post(channels::disable_members),
        )
        .route(
            &format!("{i}/vpc-channels/{{channel_id}}/members/{{member_id}}"),
            axum::routing::delete(channels::delete_member),
        )
        .route(
            &format!("{i}/vpc-channels/{{channel_id}}/member-groups"),
            get(channels::list_groups).post(channels::add_groups),
        )
        .route(
            &format!("{i}/vpc-channels/{{channel_id}}/member-groups/{{member_group_id}}"),
            get(channels::show_group)
                .put(channels::update_group)
                .delete(channels::delete_group),
        )
        .route(
            &format!("{p}/instances"),
            get(instances::list).post(instances::create),
        )
        .route(
            i,
            get(instances::show)
                .put(instances::update)
                .delete(instances::delete),
        )
        .route(&format!("{i}/replicas"), get(replicas::list))
        .route(
            &format!("{i}/statistics/api/latest"),
            get(statistics::api_latest),
        )
        .route(
            &format!("{i}/statistics/group/latest"),
            get(statistics::group_latest),
        )
        .route(&format!("{i}/metric-data"), get(statistics::metric_data))
        .route(
            &format!("{i}/api-groups"),
            get(groups::list).post(groups::create),
        )
        .route(
            &format!("{i}/api-groups/{{group_id}}/domains"),
            post(domains::bind),
        )
        .route(
            &format!("{i}/api-groups/{{group_id}}/domains/{{domain_id}}"),
            axum::routing::put(domains::update).delete(domains::unbind),
        )
        .route(
            &format!("{i}/api-groups/{{group_id}}/domains/{{domain_id}}/certificate"),
            post(domains::bind_certificate),
        )
        .route(
            &format!(
                "{i}/api-groups/{{group_id}}/domains/{{domain_id}}/certificate/{{certificate_id}}"
            ),
            get(domains::show_certificate).delete(domains::unbind_certificate),
        )
        .route(
            &format!("{i}/api-groups/{{group_id}}/domains/{{domain_id}}/certificates/attach"),
            post(certificates::attach_certs),
        )
        .route(
            &format!("{i}/api-groups/{{group_id}}/domains/{{domain_id}}/certificates/detach"),
            post(certificates::detach_certs),
        )
        .route(
            &format!("{i}/api-groups/{{group_id}}"),
            get(groups::show).put(groups::update).delete(groups::delete),
        )
        .route(&format!("{i}/envs"), get(envs::list).post(envs::create))
        .route(
            &format!("{i}/envs/{{env_id}}"),
            axum::routing::put(envs::update).delete(envs::delete),
        )
        .route(
            &format!("{i}/env-variables"),
            get(variables::list).post(variables::create),
        )
        .route(
            &format!("{i}/env-variables/{{var_id}}"),
            get(variables::show)
                .put(variables::update)
                .delete(variables::delete),
        )
        .route(&format!("{i}/openapi/import"), post(openapi::import))
        .route(&format!("{i}/openapi/export"), post(openapi::export))
        .route(
            &format!("{i}/openapi/async-import"),
            post(openapi::not_async),
        )
        .route(
            &format!("{i}/openapi/async-export"),
            post(openapi::not_async),
        )
        .route(
            &format!("{i}/async-tasks/{{task_id}}"),
            get(openapi::not_async),
        )
        .route(&format!("{i}/apis"), get(apis::list).post(apis::create))
        .route(&format!("{i}/apis/action"), post(publish::action))
        .route(&format!("{i}/apis/publish"), post(publish::batch))
        .route(
            &format!("{i}/apis/publish/{{api_id}}"),
            get(publish::history).put(publish::switch_version),
        )
        .route(
            &format!("{i}/apis/runtime/{{api_id}}"),
            get(publish::runtime),
        )
        .route(
            &format!("{i}/apis/versions/{{version_id}}"),
            get(publish::version_detail).delete(publish::version_offline),
        )
        .route(
            &format!("{i}/apis/{{api_id}}"),
            get(apis::show).put(apis::update).delete(apis::delete),
        )
        .method_not_allowed_fallback(method_not_allowed)
        // Inner to authentication: only authenticated writes are audited.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::audit::record,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_signature,
        ));
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(v2)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), request_id))
        .with_state(state)
}

/// The control plane's admin listener: `/health`, `/ready` (the store answers) and `/metrics`.
pub fn admin_router(state: Arc<ControlState>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/ready",
            get(
                |axum::extract::State(s): axum::extract::State<Arc<ControlState>>| async move {
                    match s.reader().get(crate::keys::EPOCH) {
                        Ok(_) => (StatusCode::OK, "ready").into_response(),
                        Err(_) => {
                            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
                        }
                    }
                },
            ),
        )
        .route(
            "/metrics",
            get(
                |axum::extract::State(s): axum::extract::State<Arc<ControlState>>| async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        s.metrics.render(&s.publisher),
                    )
                },
            ),
        )
        .with_state(state)
}

/// Every management answer carries `X-Request-Id`, as APIG's do (the SDK reports it in errors),
/// and is counted.
async fn request_id(
    axum::extract::State(state): axum::extract::State<Arc<ControlState>>,
    mut req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let id = apig_model::ids::new_id();
    req.extensions_mut()
        .insert(crate::audit::RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    // Disabled, and free, unless OpenTelemetry export is on.
    let span = crate::otel::request_span(
        &method,
        req.extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|m| m.as_str()),
        &id,
        req.headers(),
    );
    let mut resp = next.run(req).instrument(span.clone()).await;
    crate::otel::record_outcome(&span, resp.status().as_u16(), started);
    state
        .metrics
        .management_request(method.as_str(), resp.status().as_u16());
    tracing::debug!(request_id = %id, %method, %path, status = resp.status().as_u16(), "management request");
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn not_found() -> Response {
    HttpError(ApiError::new(
        ErrorCode::ResourceNotFound,
        "The resource does not exist.",
    ))
    .into_response()
}

async fn method_not_allowed() -> Response {
    HttpError(ApiError::new(
        ErrorCode::MethodNotAllowed,
        "No permissions to request this method.",
    ))
    .into_response()
}

/// Refuses `name` when another resource (any id but `except`) already has it, with `code` and
/// APIG's "The <what> name already exists" message. `taken` yields (id, name) pairs.
pub fn unique_name<'a>(
    mut taken: impl Iterator<Item = (&'a str, &'a str)>,
    name: &str,
    except: Option<&str>,
    code: ErrorCode,
    what: &str,
) -> std::result::Result<(), ApiError> {
    if taken.any(|(id, n)| n == name && Some(id) != except) {
        return Err(ApiError::new(
            code,
            format!("The {what} name already exists: {name}"),
        ));
    }
    Ok(())
}

/// `{"total": n, "size": page, "<key>": [...]}` as every APIG list answers.
pub fn paged(items: Vec<Value>, page: Page, key: &str) -> Value {
    let total = items.len();
    let items = page.apply(items);
    let mut m = serde_json::Map::new();
    m.insert("total".into(), total.into());
    m.insert("size".into(), items.len().into());
    m.insert(key.into(), Value::Array(items));
    Value::Object(m)
}

pub fn page_of(q: &HashMap<String, String>) -> std::result::Result<Page, ApiError> {
    Page::parse(
        q.get("offset").map(String::as_str),
        q.get("limit").map(String::as_str),
    )
}

/// A name filter: exact when `precise_search` names the field, else a substring match.
pub fn name_matches(q: &HashMap<String, String>, field: &str, value: &str) -> bool {
    match q.get(field).filter(|v| !v.is_empty()) {
        None => true,
        Some(want) => {
            let precise = q
                .get("precise_search")
                .is_some_and(|p| p.split(',').any(|f| f.trim() == field));
            if precise {
                value == want
            } else {
                value.contains(want.as_str())
            }
        }
    }
}

pub fn eq_filter(q: &HashMap<String, String>, field: &str, value: &str) -> bool {
    q.get(field)
        .filter(|v| !v.is_empty())
        .is_none_or(|want| want == value)
}

pub fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

pub fn ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}
