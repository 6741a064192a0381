//! `GET /v2/{project_id}/apigw/instances/{instance_id}/replicas`: the gateway replicas of an
//! instance, the snapshot version each runs and the one they should run. Not an APIG operation:
//! a self-hosted gateway needs it to see its fleet.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;

use super::{ok, page_of, paged, Params, Result};
use crate::ControlState;

pub async fn list(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let current = s.publisher.current(&inst);
    let desired = current.as_ref().map_or(0, |c| c.version);
    let items = s
        .publisher
        .replicas(&inst)
        .into_iter()
        .map(|mut r| {
            r.desired_version = desired;
            serde_json::to_value(r).unwrap_or_default()
        })
        .collect();
    let mut body = paged(items, page, "replicas");
    body["snapshot_version"] = desired.into();
    body["epoch"] = s.epoch.clone().into();
    Ok(ok(body))
}
