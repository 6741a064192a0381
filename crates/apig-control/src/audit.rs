//! The audit log: every management write (POST, PUT, DELETE, PATCH under `/v2/...`) that passed
//! authentication is recorded with who made it, what it changed, when, its outcome and its
//! request id, together with the request body (secrets masked) and, on success, the answer
//! (masked the same way).
//!
//! Entries live in the store under `v1/audit/<project>/<id>`, where `id` is a zero-padded,
//! strictly increasing number of microseconds since the Unix epoch, so key order is time order.
//! Each project keeps its newest [`DEFAULT_MAX_PER_PROJECT`] entries; older ones are pruned in
//! steps of 1 % (at least one) so pruning does not scan the project on every write.
//!
//! The entry is written (and flushed) before the answer leaves, so an acknowledged write has an
//! audit record. A failure to write the record is logged; it does not undo the change, which is
//! already committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use apig_model::ApiError;
use apig_store::{Batch, Store};
use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use http_body::Body as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{Caller, MAX_BODY_BYTES};
use crate::error::store_error;
use crate::keys;
use crate::ControlState;

/// Entries kept per project.
pub const DEFAULT_MAX_PER_PROJECT: usize = 100_000;
/// Request and answer bodies larger than this (after masking) are stored truncated.
pub const MAX_BODY_RECORDED: usize = 16 * 1024;
/// Answers larger than this are not read back for the record.
const MAX_ANSWER_READ: u64 = 1024 * 1024;
/// What a masked value becomes.
pub const MASK: &str = "******";

/// The request id the `request_id` middleware gave the request (and puts on the answer).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// One recorded management write.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub id: String,
    /// RFC 3339, UTC.
    pub time: String,
    pub request_id: Option<String>,
    pub project_id: String,
    pub access_key: String,
    pub admin: bool,
    pub method: String,
    pub path: String,
    pub instance_id: Option<String>,
    /// The literal path segments after the instance (`apps`, `apps/secret`,
    /// `vpc-channels/members`), `instances` for an instance itself, or the project-level
    /// resource (`credentials`, `projects`, `tokens`).
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub status: u16,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub request_body: Option<Value>,
    pub response_body: Option<Value>,
    /// A body was longer than [`MAX_BODY_RECORDED`] and is stored as a cut string.
    pub truncated: bool,
}

pub struct AuditLog {
    max_per_project: usize,
    last_id: AtomicU64,
    /// Entries per project, learnt by one scan on a project's first write.
    counts: tokio::sync::Mutex<HashMap<String, usize>>,
}

impl Default for AuditLog {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PER_PROJECT)
    }
}

impl AuditLog {
    pub fn new(max_per_project: usize) -> Self {
        Self {
            max_per_project: max_per_project.max(1),
            last_id: AtomicU64::new(0),
            counts: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A strictly increasing, time-ordered id: microseconds since the epoch, bumped by one when
    /// two entries fall into the same microsecond.
    pub fn next_id(&self) -> String {
        let now = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0);
        let mut prev = self.last_id.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match self.last_id.compare_exchange_weak(
                prev,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return format!("{next:020}"),
                Err(p) => prev = p,
            }
        }
    }

    /// Stores `entry` durably, pruning the project's oldest entries beyond the bound.
    pub async fn append(&self, store: Arc<dyn Store>, entry: &AuditEntry) -> Result<(), ApiError> {
        let mut counts = self.counts.lock().await;
        let project = entry.project_id.clone();
        let prefix = keys::audits(&project);
        let count = match counts.get(&project) {
            Some(c) => *c,
            None => {
                let (s, p) = (store.clone(), prefix.clone());
                tokio::task::spawn_blocking(move || s.scan(&p).map(|v| v.len()))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(store_error)?
            }
        };
        let mut batch = Batch::new();
        batch
            .put_json(keys::audit(&project, &entry.id), entry)
            .map_err(store_error)?;
        let slack = (self.max_per_project / 100).max(1);
        let mut after = count + 1;
        if after > self.max_per_project + slack - 1 {
            let (s, p) = (store.clone(), prefix.clone());
            let existing: Vec<String> = tokio::task::spawn_blocking(move || {
                s.scan(&p).map(|v| v.into_iter().map(|(k, _)| k).collect())
            })
            .await
            .map_err(ApiError::internal)?
            .map_err(store_error)?;
            let excess = (existing.len() + 1).saturating_sub(self.max_per_project);
            for k in existing.into_iter().take(excess) {
                batch.delete(k);
            }
            after = self.max_per_project.min(after);
        }
        tokio::task::spawn_blocking(move || store.commit(batch))
            .await
            .map_err(ApiError::internal)?
            .map_err(store_error)?;
        counts.insert(project, after);
        Ok(())
    }
}

/// True for JSON field names whose values are secrets.
pub fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["secret", "sk", "password", "token", "private_key"]
        .iter()
        .any(|s| n.contains(s))
        || matches!(
            n.as_str(),
            "app_secret" | "sign_secret" | "secret_key" | "app_code" | "authorization"
        )
}

/// Replaces every secret field's value (at any depth) by [`MASK`].
pub fn mask(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if is_secret_field(k) {
                    *val = Value::String(MASK.into());
                } else {
                    mask(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(mask),
        _ => {}
    }
}

/// A body as recorded: masked JSON, cut to [`MAX_BODY_RECORDED`] (as a string) when longer.
/// Bodies that are not JSON are not stored (their secrets could not be masked), only their size.
/// Returns (value, truncated).
pub fn recorded_body(bytes: &[u8]) -> (Option<Value>, bool) {
    if bytes.is_empty() {
        return (None, false);
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(bytes) else {
        return (
            Some(Value::String(format!("<{} bytes, not JSON>", bytes.len()))),
            false,
        );
    };
    mask(&mut v);
    let text = v.to_string();
    if text.len() <= MAX_BODY_RECORDED {
        return (Some(v), false);
    }
    let mut cut = MAX_BODY_RECORDED;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    (Some(Value::String(text[..cut].to_owned())), true)
}

/// What a path names: (instance id, resource type, resource id), from the matched route
/// template (`/v2/{project_id}/apigw/instances/{instance_id}/apps/{app_id}`) and the path.
pub fn resource_of(template: Option<&str>, path: &str) -> (Option<String>, String, Option<String>) {
    let segs: Vec<&str> = path.split('/').skip(4).collect();
    let tmpl: Vec<&str> = match template {
        Some(t) => t.split('/').skip(4).collect(),
        // No route matched: every segment is taken literally.
        None => segs.clone(),
    };
    let (instance, start) = if tmpl.first() == Some(&"instances") && segs.len() >= 2 {
        (Some(segs[1].to_owned()), 2)
    } else {
        (None, 0)
    };
    let mut literals = Vec::new();
    let mut last_param = None;
    for (t, s) in tmpl.iter().zip(segs.iter()).skip(start) {
        if t.starts_with('{') {
            last_param = Some((*s).to_owned());
        } else {
            literals.push(*t);
        }
    }
    if instance.is_some() && literals.is_empty() && last_param.is_none() {
        return (instance.clone(), "instances".into(), instance);
    }
    (instance, literals.join("/"), last_param)
}

fn audited(m: &Method) -> bool {
    *m == Method::POST || *m == Method::PUT || *m == Method::DELETE || *m == Method::PATCH
}

/// Middleware (inside authentication): records authenticated management writes.
pub async fn record(State(state): State<Arc<ControlState>>, req: Request, next: Next) -> Response {
    if !audited(req.method()) {
        return next.run(req).await;
    }
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return next.run(req).await;
    };
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let (parts, body) = req.into_parts();
    // Authentication has buffered the body already; this takes it back out of memory.
    let body = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "audit: request body unreadable");
            axum::body::Bytes::new()
        }
    };
    let (request_body, req_cut) = recorded_body(&body);
    let resp = next.run(Request::from_parts(parts, Body::from(body))).await;

    let status = resp.status();
    let (rparts, rbody) = resp.into_parts();
    let small = rbody
        .size_hint()
        .exact()
        .is_some_and(|n| n <= MAX_ANSWER_READ);
    let (answer, rbody) = if small {
        match to_bytes(rbody, MAX_ANSWER_READ as usize).await {
            Ok(b) => (Some(b.clone()), Body::from(b)),
            Err(e) => {
                tracing::error!(error = %e, "audit: answer body unreadable");
                (None, Body::empty())
            }
        }
    } else {
        (None, rbody)
    };
    let answer_json: Option<Value> = answer.as_ref().and_then(|b| serde_json::from_slice(b).ok());
    let (instance_id, resource_type, mut resource_id) = resource_of(template.as_deref(), &path);
    let (mut error_code, mut error_msg, mut response_body, mut resp_cut) =
        (None, None, None, false);
    if status.is_success() {
        if resource_id.is_none() {
            resource_id = answer_json
                .as_ref()
                .and_then(|v| v.get("id").or_else(|| v.get("project_id")))
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        if let Some(b) = &answer {
            (response_body, resp_cut) = recorded_body(b);
        }
    } else if let Some(v) = &answer_json {
        error_code = v
            .get("error_code")
            .and_then(Value::as_str)
            .map(str::to_owned);
        error_msg = v
            .get("error_msg")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    let entry = AuditEntry {
        id: state.audit.next_id(),
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        request_id,
        project_id: caller.project_id,
        access_key: caller.access_key,
        admin: caller.admin,
        method,
        path,
        instance_id,
        resource_type,
        resource_id,
        status: status.as_u16(),
        error_code,
        error_msg,
        request_body,
        response_body,
        truncated: req_cut || resp_cut,
    };
    if let Err(e) = state.audit.append(state.store.clone(), &entry).await {
        tracing::error!(error = %e.message, request_id = ?entry.request_id, "audit: entry not stored");
    }
    Response::from_parts(rparts, rbody)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apig_store::{MemoryStore, StoreExt};
    use serde_json::json;

    #[test]
    fn masks_secrets_at_any_depth() {
        let mut v = json!({
            "name": "a", "app_secret": "s1", "nested": [{"sign_secret": "s2", "SK": "s3",
            "user_password": "s4", "x_token": "s5", "keep": "k"}], "secret_key": "s6",
            "private_key": "s8", "private_key_sign": "s9",
            "app_code": "s7", "remark": "r", "cert_content": "public"
        });
        mask(&mut v);
        let text = v.to_string();
        for s in ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"] {
            assert!(!text.contains(&format!("\"{s}\"")), "{s} leaked: {text}");
        }
        assert_eq!(v["nested"][0]["keep"], "k");
        assert_eq!(v["remark"], "r");
        assert_eq!(v["cert_content"], "public");
        assert_eq!(v["app_secret"], MASK);
    }

    #[test]
    fn large_bodies_are_cut_and_non_json_not_stored() {
        let big = json!({"remark": "x".repeat(40_000), "app_secret": "zzsecretzz"});
        let (v, cut) = recorded_body(big.to_string().as_bytes());
        let Some(Value::String(s)) = v else {
            panic!("a cut string")
        };
        assert!(cut);
        assert_eq!(s.len(), MAX_BODY_RECORDED);
        assert!(!s.contains("zzsecretzz"));
        let (v, cut) = recorded_body(b"app_secret=plain");
        assert!(!cut);
        assert_eq!(v, Some(Value::String("<16 bytes, not JSON>".into())));
        assert_eq!(recorded_body(b""), (None, false));
    }

    #[test]
    fn resource_from_route() {
        let t = "/v2/{project_id}/apigw/instances/{instance_id}/apps/{app_id}";
        assert_eq!(
            resource_of(Some(t), "/v2/p/apigw/instances/i/apps/a1"),
            (Some("i".into()), "apps".into(), Some("a1".into()))
        );
        let t = "/v2/{project_id}/apigw/instances/{instance_id}/apis/action";
        assert_eq!(
            resource_of(Some(t), "/v2/p/apigw/instances/i/apis/action"),
            (Some("i".into()), "apis/action".into(), None)
        );
        let t = "/v2/{project_id}/apigw/instances/{instance_id}";
        assert_eq!(
            resource_of(Some(t), "/v2/p/apigw/instances/i"),
            (Some("i".into()), "instances".into(), Some("i".into()))
        );
        let t = "/v2/{project_id}/apigw/credentials/{access_key}";
        assert_eq!(
            resource_of(Some(t), "/v2/p/apigw/credentials/AK1"),
            (None, "credentials".into(), Some("AK1".into()))
        );
        assert_eq!(
            resource_of(None, "/v2/p/apigw/nothing/here"),
            (None, "nothing/here".into(), None)
        );
    }

    fn entry(log: &AuditLog, project: &str) -> AuditEntry {
        AuditEntry {
            id: log.next_id(),
            time: String::new(),
            request_id: None,
            project_id: project.into(),
            access_key: "AK".into(),
            admin: false,
            method: "POST".into(),
            path: "/".into(),
            instance_id: None,
            resource_type: "apps".into(),
            resource_id: None,
            status: 201,
            error_code: None,
            error_msg: None,
            request_body: None,
            response_body: None,
            truncated: false,
        }
    }

    #[tokio::test]
    async fn ids_increase_and_projects_are_bounded() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let log = AuditLog::new(5);
        let mut ids = Vec::new();
        for _ in 0..12 {
            let e = entry(&log, "p1");
            ids.push(e.id.clone());
            log.append(store.clone(), &e).await.unwrap();
        }
        log.append(store.clone(), &entry(&log, "p2")).await.unwrap();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids, "ids are unique and increasing");
        let kept: Vec<AuditEntry> = store.scan_json(&keys::audits("p1")).unwrap();
        assert_eq!(kept.len(), 5);
        let kept_ids: Vec<String> = kept.into_iter().map(|e| e.id).collect();
        assert_eq!(kept_ids, ids[7..].to_vec(), "the newest are kept");
        assert_eq!(store.scan(&keys::audits("p2")).unwrap().len(), 1);
        // A fresh log (a restart) learns the count from the store.
        let log = AuditLog::new(5);
        log.append(store.clone(), &entry(&log, "p1")).await.unwrap();
        assert_eq!(store.scan(&keys::audits("p1")).unwrap().len(), 5);
    }
}
