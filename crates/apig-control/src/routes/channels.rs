//! Load-balance channels (`/vpc-channels`): the channel, its members, member groups and health
//! check. A channel is one stored record; every change recompiles the snapshot, so member
//! changes reach the replicas without republishing the APIs that use the channel.

use std::sync::Arc;

use apig_model::api::Api;
use apig_model::channel::{
    self, Channel, ChannelSpec, HealthSpec, Member, MemberGroup, MemberGroupSpec, MemberSpec,
    MAX_CHANNELS, MAX_MEMBERS,
};
use apig_model::validate::Problems;
use apig_model::{ids, time, ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::{created, eq_filter, name_matches, no_content, ok, page_of, paged, Params, Result};
use crate::error::parse_json;
use crate::tx::Reader;
use crate::{backend_address, keys, ControlState};

type Res<T> = std::result::Result<T, ApiError>;

pub fn load(r: &(impl Reader + ?Sized), inst: &str, id: &str) -> Res<Channel> {
    r.get_json(&keys::channel(inst, id))?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::ChannelNotFound,
            format!("The VPC channel {id} does not exist"),
        )
    })
}

fn all(r: &(impl Reader + ?Sized), inst: &str) -> Res<Vec<Channel>> {
    r.scan_json(&keys::channels(inst))
}

fn check_name(all: &[Channel], name: &str, except: Option<&str>) -> Res<()> {
    super::unique_name(
        all.iter().map(|x| (x.id.as_str(), x.name.as_str())),
        name,
        except,
        ErrorCode::ChannelNameExists,
        "VPC channel",
    )
}

/// Ids of the APIs (in their current definition) that use the channel.
fn users(r: &(impl Reader + ?Sized), inst: &str, id: &str) -> Res<Vec<String>> {
    let apis: Vec<Api> = r.scan_json(&keys::apis(inst))?;
    Ok(apis
        .into_iter()
        .filter(|a| a.spec.channel_ids().any(|c| c == id))
        .map(|a| a.id)
        .collect())
}

/// Builds member groups from a body, keeping the ids (and creation times) of groups that
/// already exist under the same name.
fn merge_groups(old: &[MemberGroup], specs: Vec<MemberGroupSpec>, now: &str) -> Vec<MemberGroup> {
    specs
        .into_iter()
        .map(|g| {
            let name = g.member_group_name.unwrap_or_default();
            let existing = old.iter().find(|o| o.name == name);
            MemberGroup {
                id: existing.map_or_else(ids::new_id, |o| o.id.clone()),
                create_time: existing.map_or_else(|| now.to_owned(), |o| o.create_time.clone()),
                name,
                remark: g.member_group_remark.unwrap_or_default(),
                weight: g.member_group_weight,
                update_time: now.to_owned(),
            }
        })
        .collect()
}

/// Builds a member from a body (validated), keeping the id of an existing member with the same
/// host and port.
fn member(old: &[Member], groups: &[MemberGroup], m: MemberSpec, now: &str) -> Member {
    let host = m.host.unwrap_or_default();
    let port = m.port.unwrap_or(0);
    let existing = old
        .iter()
        .find(|o| o.host.eq_ignore_ascii_case(&host) && o.port == port);
    Member {
        id: existing.map_or_else(ids::new_id, |o| o.id.clone()),
        create_time: existing.map_or_else(|| now.to_owned(), |o| o.create_time.clone()),
        host,
        port,
        weight: m.weight.unwrap_or(1),
        is_backup: m.is_backup.unwrap_or(false),
        member_group_id: m
            .member_group_name
            .filter(|n| !n.is_empty())
            .and_then(|n| groups.iter().find(|g| g.name == n).map(|g| g.id.clone())),
        status: m.status.unwrap_or(1),
    }
}

/// Stores a channel and recompiles the instance's snapshot.
async fn store(s: &ControlState, inst: &str, c: &Channel) -> Res<()> {
    s.save(inst, keys::channel(inst, &c.id), c).await
}

fn group_exists_in(groups: &[MemberGroup]) -> impl Fn(&str) -> bool + '_ {
    move |name| groups.iter().any(|g| g.name == name)
}

// === channels ===

pub async fn list(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let mut channels = all(s.reader(), &inst)?;
    channels.retain(|c| {
        eq_filter(&q, "id", &c.id)
            && name_matches(&q, "name", &c.name)
            && q.get("member_host")
                .filter(|h| !h.is_empty())
                .is_none_or(|h| c.members.iter().any(|m| &m.host == h))
            && q.get("member_port")
                .filter(|p| !p.is_empty())
                .is_none_or(|p| c.members.iter().any(|m| m.port.to_string() == *p))
            && q.get("member_group_name")
                .filter(|g| !g.is_empty())
                .is_none_or(|g| c.member_groups.iter().any(|x| &x.name == g))
            && q.get("member_group_id")
                .filter(|g| !g.is_empty())
                .is_none_or(|g| c.member_groups.iter().any(|x| &x.id == g))
    });
    channels.sort_by(|a, b| (&a.create_time, &a.id).cmp(&(&b.create_time, &b.id)));
    let items = channels.iter().map(Channel::summary_json).collect();
    Ok(ok(paged(items, page, "vpc_channels")))
}

pub async fn create(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: ChannelSpec = parse_json(&body)?;
    spec.validate()?;
    backend_address::check_members(spec.members.as_deref().unwrap_or_default())?;
    let _w = s.lock_instance(&project, &inst).await?;
    let existing = all(s.reader(), &inst)?;
    if existing.len() >= MAX_CHANNELS {
        return Err(ApiError::new(
            ErrorCode::ChannelQuota,
            format!(
                "The number of VPC channels exceeds the maximum allowed limit ({MAX_CHANNELS})."
            ),
        )
        .into());
    }
    let name = spec.name.clone().unwrap_or_default();
    check_name(&existing, &name, None)?;
    let now = time::now_rfc3339();
    let c = build(None, spec, &now);
    store(&s, &inst, &c).await?;
    Ok(created(c.summary_json()))
}

/// A channel from a validated body; `old` (an update) keeps ids of unchanged parts. Parts
/// absent from an update body are kept as they are.
fn build(old: Option<&Channel>, spec: ChannelSpec, now: &str) -> Channel {
    let groups = match (spec.member_groups, old) {
        (Some(g), old) => merge_groups(
            old.map(|o| o.member_groups.as_slice()).unwrap_or_default(),
            g,
            now,
        ),
        (None, Some(o)) => o.member_groups.clone(),
        (None, None) => Vec::new(),
    };
    let old_members = old.map(|o| o.members.as_slice()).unwrap_or_default();
    let members = match (spec.members, old) {
        (Some(ms), _) => ms
            .into_iter()
            .map(|m| member(old_members, &groups, m, now))
            .collect(),
        (None, Some(o)) => o
            .members
            .iter()
            .filter(|m| {
                // A member whose group went away leaves with it.
                m.member_group_id
                    .as_ref()
                    .is_none_or(|g| groups.iter().any(|x| &x.id == g))
            })
            .cloned()
            .collect(),
        (None, None) => Vec::new(),
    };
    let health = match (spec.vpc_health_config, old) {
        (Some(h), old) => {
            let kept = old.and_then(|o| o.health.as_ref());
            Some(h.into_check(
                kept.map_or_else(ids::new_id, |k| k.id.clone()),
                kept.map_or_else(|| now.to_owned(), |k| k.create_time.clone()),
            ))
        }
        (None, Some(o)) => o.health.clone(),
        (None, None) => None,
    };
    Channel {
        id: old.map_or_else(ids::new_id, |o| o.id.clone()),
        create_time: old.map_or_else(|| now.to_owned(), |o| o.create_time.clone()),
        name: spec.name.unwrap_or_default(),
        port: spec.port.unwrap_or(80),
        balance_strategy: spec.balance_strategy.unwrap_or(1),
        member_type: "ip".into(),
        member_groups: groups,
        members,
        health,
    }
}

pub async fn show(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    Ok(ok(load(s.reader(), &inst, &id)?.detail_json()))
}

pub async fn update(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: ChannelSpec = parse_json(&body)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let old = load(s.reader(), &inst, &id)?;
    // Members of an update may name groups that already exist in the channel.
    let known: Vec<&str> = old.member_groups.iter().map(|g| g.name.as_str()).collect();
    spec.validate_with(&known)?;
    backend_address::check_members(spec.members.as_deref().unwrap_or_default())?;
    check_name(
        &all(s.reader(), &inst)?,
        spec.name.as_deref().unwrap_or_default(),
        Some(&id),
    )?;
    let c = build(Some(&old), spec, &time::now_rfc3339());
    store(&s, &inst, &c).await?;
    Ok(ok(c.summary_json()))
}

pub async fn delete(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    load(s.reader(), &inst, &id)?;
    let used_by = users(s.reader(), &inst, &id)?;
    if !used_by.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ChannelInUse,
            format!(
                "The VPC channel is used by APIs and cannot be deleted: {}",
                used_by.join(", ")
            ),
        )
        .into());
    }
    let mut tx = s.tx();
    tx.delete(keys::channel(&inst, &id));
    s.commit(tx, &[&inst]).await?;
    Ok(no_content())
}

pub async fn put_health(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: HealthSpec = parse_json(&body)?;
    spec.validate()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut c = load(s.reader(), &inst, &id)?;
    let now = time::now_rfc3339();
    let kept = c.health.as_ref();
    let check = spec.into_check(
        kept.map_or_else(ids::new_id, |k| k.id.clone()),
        kept.map_or_else(|| now.clone(), |k| k.create_time.clone()),
    );
    let body = c.health_json(&check);
    c.health = Some(check);
    store(&s, &inst, &c).await?;
    Ok(ok(body))
}

// === members ===

fn members_json(c: &Channel, members: Vec<&Member>, page: apig_model::page::Page) -> Value {
    let items = members.into_iter().map(|m| c.member_json(m)).collect();
    paged(items, page, "members")
}

pub async fn list_members(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let c = load(s.reader(), &inst, &id)?;
    let members: Vec<&Member> = c
        .members
        .iter()
        .filter(|m| {
            name_matches(&q, "name", &m.host)
                && eq_filter(
                    &q,
                    "member_group_id",
                    m.member_group_id.as_deref().unwrap_or_default(),
                )
                && q.get("member_group_name")
                    .filter(|n| !n.is_empty())
                    .is_none_or(|n| {
                        m.member_group_id.as_deref().and_then(|g| c.group_name(g))
                            == Some(n.as_str())
                    })
        })
        .collect();
    Ok(ok(members_json(&c, members, page)))
}

#[derive(Deserialize, Default)]
struct MembersBody {
    members: Option<Vec<MemberSpec>>,
    member_group_name: Option<String>,
}

fn checked_members(c: &Channel, specs: &[MemberSpec]) -> Res<()> {
    let mut p = Problems::new();
    if specs.is_empty() {
        p.push(ApiError::required("members"));
    }
    channel::check_members(&mut p, specs, &group_exists_in(&c.member_groups));
    p.into_result()?;
    backend_address::check_members(specs)
}

fn refuse_too_many(n: usize) -> Res<()> {
    if n > MAX_MEMBERS {
        return Err(ApiError::new(
            ErrorCode::ChannelMemberQuota,
            format!("The number of members in the VPC channel exceeds the maximum allowed limit ({MAX_MEMBERS})."),
        ));
    }
    Ok(())
}

/// `POST …/members`: adds members; a member with the host and port of an existing one updates
/// it (APIG's "add or update").
pub async fn add_members(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let req: MembersBody = parse_json(&body)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut c = load(s.reader(), &inst, &id)?;
    let specs = req.members.unwrap_or_default();
    checked_members(&c, &specs)?;
    let now = time::now_rfc3339();
    let mut touched = Vec::new();
    for spec in specs {
        let m = member(&c.members, &c.member_groups, spec, &now);
        touched.push(m.id.clone());
        match c.members.iter_mut().find(|o| o.id == m.id) {
            Some(slot) => *slot = m,
            None => c.members.push(m),
        }
    }
    refuse_too_many(c.members.len())?;
    store(&s, &inst, &c).await?;
    let rows: Vec<&Member> = c
        .members
        .iter()
        .filter(|m| touched.contains(&m.id))
        .collect();
    Ok(created(members_json(
        &c,
        rows,
        apig_model::page::Page::all(),
    )))
}

/// `PUT …/members`: replaces all members (or, with `member_group_name`, those of that group).
pub async fn replace_members(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let req: MembersBody = parse_json(&body)?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut c = load(s.reader(), &inst, &id)?;
    let mut specs = req.members.unwrap_or_default();
    checked_members(&c, &specs)?;
    let group = match req.member_group_name.filter(|g| !g.is_empty()) {
        Some(name) => Some(
            c.member_groups
                .iter()
                .find(|g| g.name == name)
                .map(|g| g.id.clone())
                .ok_or_else(|| member_group_missing(&name))?,
        ),
        None => None,
    };
    let now = time::now_rfc3339();
    if let Some(g) = &group {
        let name = c.group_name(g).unwrap_or_default().to_owned();
        for spec in &mut specs {
            spec.member_group_name.get_or_insert_with(|| name.clone());
        }
    }
    let new: Vec<Member> = specs
        .into_iter()
        .map(|m| member(&c.members, &c.member_groups, m, &now))
        .collect();
    c.members
        .retain(|m| group.is_some() && m.member_group_id != group);
    c.members.extend(new);
    refuse_too_many(c.members.len())?;
    store(&s, &inst, &c).await?;
    let rows: Vec<&Member> = c
        .members
        .iter()
        .filter(|m| group.is_none() || m.member_group_id == group)
        .collect();
    Ok(ok(members_json(&c, rows, apig_model::page::Page::all())))
}

fn member_group_missing(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ChannelMemberNotFound,
        format!("The member group {name} does not exist"),
    )
}

pub async fn delete_member(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id, member_id)): Path<(String, String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    let mut c = load(s.reader(), &inst, &id)?;
    let before = c.members.len();
    c.members.retain(|m| m.id != member_id);
    if c.members.len() == before {
        return Err(ApiError::new(
            ErrorCode::ChannelMemberNotFound,
            format!("The backend instance {member_id} does not exist"),
        )
        .into());
    }
    store(&s, &inst, &c).await?;
    Ok(no_content())
}

#[derive(Deserialize, Default)]
struct MemberIds {
    member_ids: Option<Vec<String>>,
}

async fn set_status(
    s: &ControlState,
    project: &str,
    inst: &str,
    id: &str,
    body: &[u8],
    status: i64,
) -> Result<Response> {
    let req: MemberIds = parse_json(body)?;
    let wanted = req.member_ids.unwrap_or_default();
    if wanted.is_empty() {
        return Err(ApiError::required("member_ids").into());
    }
    let _w = s.lock_instance(project, inst).await?;
    let mut c = load(s.reader(), inst, id)?;
    if let Some(missing) = wanted
        .iter()
        .find(|w| !c.members.iter().any(|m| &m.id == *w))
    {
        return Err(ApiError::new(
            ErrorCode::ChannelMemberNotFound,
            format!("The backend instance {missing} does not exist"),
        )
        .into());
    }
    for m in c.members.iter_mut().filter(|m| wanted.contains(&m.id)) {
        m.status = status;
    }
    store(s, inst, &c).await?;
    Ok(no_content())
}

pub async fn enable_members(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    set_status(&s, &project, &inst, &id, &body, 1).await
}

pub async fn disable_members(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    set_status(&s, &project, &inst, &id, &body, 2).await
}

// === member groups ===

pub async fn list_groups(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    q: Params,
) -> Result<Response> {
    let page = page_of(&q)?;
    s.instance(s.reader(), &project, &inst)?;
    let c = load(s.reader(), &inst, &id)?;
    let items = c
        .member_groups
        .iter()
        .filter(|g| name_matches(&q, "member_group_name", &g.name))
        .map(MemberGroup::to_json)
        .collect();
    Ok(ok(paged(items, page, "member_groups")))
}

#[derive(Deserialize, Default)]
struct GroupsBody {
    member_groups: Option<Vec<MemberGroupSpec>>,
}

/// `POST …/member-groups`: adds groups; a group with the name of an existing one updates it.
pub async fn add_groups(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let req: GroupsBody = parse_json(&body)?;
    let specs = req.member_groups.unwrap_or_default();
    let mut p = Problems::new();
    if specs.is_empty() {
        p.push(ApiError::required("member_groups"));
    }
    channel::check_groups(&mut p, &specs);
    p.into_result()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut c = load(s.reader(), &inst, &id)?;
    let now = time::now_rfc3339();
    let merged = merge_groups(&c.member_groups, specs, &now);
    let touched: Vec<String> = merged.iter().map(|g| g.id.clone()).collect();
    for g in merged {
        match c.member_groups.iter_mut().find(|o| o.id == g.id) {
            Some(slot) => *slot = g,
            None => c.member_groups.push(g),
        }
    }
    if c.member_groups.len() > channel::MAX_MEMBER_GROUPS {
        return Err(ApiError::invalid(
            "member_groups",
            format!("at most {} member groups", channel::MAX_MEMBER_GROUPS),
        )
        .into());
    }
    store(&s, &inst, &c).await?;
    let items: Vec<Value> = c
        .member_groups
        .iter()
        .filter(|g| touched.contains(&g.id))
        .map(MemberGroup::to_json)
        .collect();
    Ok(created(paged(
        items,
        apig_model::page::Page::all(),
        "member_groups",
    )))
}

fn find_group<'a>(c: &'a Channel, group_id: &str) -> Res<&'a MemberGroup> {
    c.member_groups
        .iter()
        .find(|g| g.id == group_id)
        .ok_or_else(|| member_group_missing(group_id))
}

pub async fn show_group(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id, group_id)): Path<(String, String, String, String)>,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let c = load(s.reader(), &inst, &id)?;
    Ok(ok(find_group(&c, &group_id)?.to_json()))
}

pub async fn update_group(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id, group_id)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let spec: MemberGroupSpec = parse_json(&body)?;
    let mut p = Problems::new();
    channel::check_groups(&mut p, std::slice::from_ref(&spec));
    p.into_result()?;
    let _w = s.lock_instance(&project, &inst).await?;
    let mut c = load(s.reader(), &inst, &id)?;
    find_group(&c, &group_id)?;
    let name = spec.member_group_name.clone().unwrap_or_default();
    if c.member_groups
        .iter()
        .any(|g| g.name == name && g.id != group_id)
    {
        return Err(ApiError::invalid(
            "member_group_name",
            format!("another member group is named {name}"),
        )
        .into());
    }
    let now = time::now_rfc3339();
    let mut out = Value::Null;
    if let Some(g) = c.member_groups.iter_mut().find(|g| g.id == group_id) {
        g.name = name;
        g.remark = spec.member_group_remark.unwrap_or_default();
        g.weight = spec.member_group_weight;
        g.update_time = now;
        out = g.to_json();
    }
    store(&s, &inst, &c).await?;
    Ok(ok(out))
}

/// Deleting a group deletes its members with it (they only existed as part of it).
pub async fn delete_group(
    State(s): State<Arc<ControlState>>,
    Path((project, inst, id, group_id)): Path<(String, String, String, String)>,
) -> Result<Response> {
    let _w = s.lock_instance(&project, &inst).await?;
    let mut c = load(s.reader(), &inst, &id)?;
    find_group(&c, &group_id)?;
    c.member_groups.retain(|g| g.id != group_id);
    c.members
        .retain(|m| m.member_group_id.as_deref() != Some(group_id.as_str()));
    store(&s, &inst, &c).await?;
    Ok(no_content())
}
