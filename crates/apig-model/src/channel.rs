//! Load-balance channels ("VPC channels"): members (servers), member groups and the health check
//! (semantics digest §9). A self-hosted gateway has no ECS inventory: members are addresses
//! (`member_type: ip`).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::validate::{self, Problems};
use crate::ApiError;

/// Members per channel.
pub const MAX_MEMBERS: usize = 200;
/// Member groups per channel.
pub const MAX_MEMBER_GROUPS: usize = 50;
/// Channels per instance (APIG's quota).
pub const MAX_CHANNELS: usize = 200;

static CHANNEL_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z\p{Han}][A-Za-z0-9\p{Han}\-_.]{2,63}$").expect("static regex")
});

/// VpcCreate: the body of channel create and update.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct ChannelSpec {
    pub name: Option<String>,
    pub port: Option<i64>,
    pub balance_strategy: Option<i64>,
    pub member_type: Option<String>,
    #[serde(rename = "type")]
    pub channel_type: Option<i64>,
    pub vpc_channel_type: Option<String>,
    pub dict_code: Option<String>,
    pub member_groups: Option<Vec<MemberGroupSpec>>,
    pub members: Option<Vec<MemberSpec>>,
    pub vpc_health_config: Option<HealthSpec>,
    pub microservice_info: Option<Value>,
}

/// MemberGroupCreate.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct MemberGroupSpec {
    pub member_group_name: Option<String>,
    pub member_group_remark: Option<String>,
    pub member_group_weight: Option<i64>,
    pub dict_code: Option<String>,
    pub microservice_version: Option<String>,
    pub microservice_port: Option<i64>,
    pub microservice_labels: Option<Value>,
    pub reference_vpc_channel_id: Option<String>,
}

/// MemberInfo.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct MemberSpec {
    pub host: Option<String>,
    pub weight: Option<i64>,
    pub is_backup: Option<bool>,
    pub member_group_name: Option<String>,
    pub status: Option<i64>,
    pub port: Option<i64>,
    pub ecs_id: Option<String>,
    pub ecs_name: Option<String>,
}

/// VpcHealthConfig.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct HealthSpec {
    pub protocol: Option<String>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub port: Option<i64>,
    pub threshold_normal: Option<i64>,
    pub threshold_abnormal: Option<i64>,
    pub time_interval: Option<i64>,
    pub http_code: Option<String>,
    pub enable_client_ssl: Option<bool>,
    pub status: Option<i64>,
    pub timeout: Option<i64>,
}

/// A stored channel: its members and groups live inside it (bounded by [`MAX_MEMBERS`] and
/// [`MAX_MEMBER_GROUPS`]), so every change is one record.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub port: i64,
    pub balance_strategy: i64,
    pub member_type: String,
    pub create_time: String,
    pub member_groups: Vec<MemberGroup>,
    pub members: Vec<Member>,
    pub health: Option<HealthCheck>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MemberGroup {
    pub id: String,
    pub name: String,
    pub remark: String,
    /// Given to every member of the group (APIG propagates the group weight).
    pub weight: Option<i64>,
    pub create_time: String,
    pub update_time: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Member {
    pub id: String,
    pub host: String,
    /// 0: the channel's port.
    pub port: i64,
    pub weight: i64,
    pub is_backup: bool,
    pub member_group_id: Option<String>,
    /// 1 enabled, 2 disabled.
    pub status: i64,
    pub create_time: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HealthCheck {
    pub id: String,
    pub protocol: String,
    pub path: String,
    pub method: String,
    pub port: i64,
    pub threshold_normal: i64,
    pub threshold_abnormal: i64,
    /// Seconds.
    pub time_interval: i64,
    /// Seconds.
    pub timeout: i64,
    pub http_code: String,
    pub create_time: String,
}

// === validation ===

impl ChannelSpec {
    /// Checks the whole body, every problem at once.
    pub fn validate(&self) -> Result<(), ApiError> {
        self.validate_with(&[])
    }

    /// Like [`ChannelSpec::validate`], where members may also name the groups `known_groups`
    /// (those of the channel an update changes).
    pub fn validate_with(&self, known_groups: &[&str]) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match validate::required("name", &self.name) {
            Ok(n) => p.check(channel_name("name", n)),
            Err(e) => p.push(e),
        }
        match self.port {
            Some(port) if (1..=65535).contains(&port) => {}
            Some(_) => p.push(ApiError::invalid("port", "1 to 65535")),
            None => p.push(ApiError::required("port")),
        }
        match self.balance_strategy {
            Some(1..=4) | None => {}
            Some(_) => p.push(ApiError::invalid(
                "balance_strategy",
                "1 (WRR), 2 (WLC), 3 (source IP hash) or 4 (URI hash)",
            )),
        }
        match self.member_type.as_deref() {
            None | Some("ip") => {}
            Some("ecs") => p.push(ApiError::not_supported(
                "member_type ecs (a self-hosted gateway has no cloud server inventory; use ip)",
            )),
            Some(_) => p.push(ApiError::invalid("member_type", "ip")),
        }
        match self.channel_type {
            None | Some(2) => {}
            Some(3) => p.push(ApiError::not_supported("microservice channels (type 3)")),
            Some(_) => p.push(ApiError::invalid("type", "2 (server)")),
        }
        match self.vpc_channel_type.as_deref() {
            None | Some("" | "builtin") => {}
            Some(other) => p.push(ApiError::not_supported(format!(
                "vpc_channel_type {other} (only builtin)"
            ))),
        }
        if self
            .microservice_info
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            p.push(ApiError::not_supported("microservice_info"));
        }
        let groups = self.member_groups.as_deref().unwrap_or_default();
        check_groups(&mut p, groups);
        let mut names: HashSet<&str> = groups
            .iter()
            .filter_map(|g| g.member_group_name.as_deref())
            .collect();
        names.retain(|n| !n.is_empty());
        if self.member_groups.is_none() {
            names.extend(known_groups);
        }
        check_members(
            &mut p,
            self.members.as_deref().unwrap_or_default(),
            &|name| names.contains(name),
        );
        if let Some(h) = &self.vpc_health_config {
            p.check(h.validate());
        }
        p.into_result()
    }
}

/// 3–64 characters, starting with a letter (or Chinese character); letters, digits, `-_.`.
pub fn channel_name(field: &str, v: &str) -> Result<(), ApiError> {
    if CHANNEL_NAME.is_match(v) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "3 to 64 characters: letters, digits, Chinese characters and -_., starting with a letter or Chinese character",
        ))
    }
}

/// Checks member groups (names unique within the body).
pub fn check_groups(p: &mut Problems, groups: &[MemberGroupSpec]) {
    if groups.len() > MAX_MEMBER_GROUPS {
        p.push(ApiError::invalid(
            "member_groups",
            format!("at most {MAX_MEMBER_GROUPS} member groups"),
        ));
    }
    let mut seen = HashSet::new();
    for g in groups {
        match validate::required("member_groups.member_group_name", &g.member_group_name) {
            Ok(n) => {
                p.check(channel_name("member_groups.member_group_name", n));
                if !seen.insert(n) {
                    p.push(ApiError::invalid(
                        "member_groups.member_group_name",
                        format!("{n} appears more than once"),
                    ));
                }
            }
            Err(e) => p.push(e),
        }
        if g.member_group_weight
            .is_some_and(|w| !(0..=100).contains(&w))
        {
            p.push(ApiError::invalid(
                "member_groups.member_group_weight",
                "0 to 100",
            ));
        }
        if let Some(r) = &g.member_group_remark {
            p.check(validate::max_chars(
                "member_groups.member_group_remark",
                r,
                255,
            ));
        }
        if g.microservice_version.is_some()
            || g.microservice_port.is_some()
            || g.microservice_labels.as_ref().is_some_and(|v| !v.is_null())
            || g.reference_vpc_channel_id.is_some()
        {
            p.push(ApiError::not_supported(
                "microservice and reference member groups",
            ));
        }
    }
}

/// Checks members; `group_exists` answers whether a member group name is known. Members are
/// unique by host and port.
pub fn check_members(
    p: &mut Problems,
    members: &[MemberSpec],
    group_exists: &dyn Fn(&str) -> bool,
) {
    if members.len() > MAX_MEMBERS {
        p.push(ApiError::invalid(
            "members",
            format!("at most {MAX_MEMBERS} members"),
        ));
    }
    let mut seen = HashSet::new();
    for m in members {
        if m.ecs_id.is_some() || m.ecs_name.is_some() {
            p.push(ApiError::not_supported(
                "members.ecs_id (cloud servers; give the member's host)",
            ));
        }
        match validate::required("members.host", &m.host) {
            Ok(h) => {
                p.check(member_host(h));
                if !seen.insert((h.to_ascii_lowercase(), m.port.unwrap_or(0))) {
                    p.push(ApiError::invalid(
                        "members.host",
                        format!("{h} appears more than once with the same port"),
                    ));
                }
            }
            Err(e) => p.push(e),
        }
        if m.weight.is_some_and(|w| !(0..=10_000).contains(&w)) {
            p.push(ApiError::invalid("members.weight", "0 to 10000"));
        }
        if m.port.is_some_and(|port| !(0..=65535).contains(&port)) {
            p.push(ApiError::invalid(
                "members.port",
                "0 (the channel port) to 65535",
            ));
        }
        if m.status.is_some_and(|s| s != 1 && s != 2) {
            p.push(ApiError::invalid(
                "members.status",
                "1 (enabled) or 2 (disabled)",
            ));
        }
        if let Some(g) = m.member_group_name.as_deref().filter(|g| !g.is_empty()) {
            if !group_exists(g) {
                p.push(ApiError::invalid(
                    "members.member_group_name",
                    format!("the member group {g} does not exist in the channel"),
                ));
            }
        }
    }
}

/// A member address: an IP address or a DNS name, nothing else (no scheme, port, path or
/// credentials), at most 64 characters.
pub fn member_host(h: &str) -> Result<(), ApiError> {
    let bad = || {
        ApiError::invalid(
            "members.host",
            "an IP address or host name, at most 64 characters",
        )
    };
    if h.len() > 64 {
        return Err(bad());
    }
    if h.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if h.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(bad())
    }
}

impl HealthSpec {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        let protocol = self.protocol.as_deref().unwrap_or("TCP");
        match protocol {
            "TCP" | "HTTP" | "HTTPS" => {}
            _ => p.push(ApiError::invalid(
                "vpc_health_config.protocol",
                "TCP, HTTP or HTTPS",
            )),
        }
        if protocol != "TCP" {
            match validate::required("vpc_health_config.path", &self.path) {
                Ok(path) => {
                    if !path.starts_with('/')
                        || path.len() > 512
                        || !path.bytes().all(|b| b.is_ascii_graphic())
                    {
                        p.push(ApiError::invalid(
                            "vpc_health_config.path",
                            "a path starting with /, printable ASCII, at most 512 characters",
                        ));
                    }
                }
                Err(e) => p.push(e),
            }
            match validate::required("vpc_health_config.http_code", &self.http_code) {
                Ok(codes) => {
                    if let Err(why) = parse_http_codes(codes) {
                        p.push(ApiError::invalid("vpc_health_config.http_code", why));
                    }
                }
                Err(e) => p.push(e),
            }
        }
        if let Some(m) = &self.method {
            p.check(validate::one_of(
                "vpc_health_config.method",
                m,
                &["GET", "HEAD"],
            ));
        }
        if self.port.is_some_and(|port| !(0..=65535).contains(&port)) {
            p.push(ApiError::invalid("vpc_health_config.port", "0 to 65535"));
        }
        for (field, v, range) in [
            (
                "vpc_health_config.threshold_normal",
                self.threshold_normal,
                1..=10,
            ),
            (
                "vpc_health_config.threshold_abnormal",
                self.threshold_abnormal,
                1..=10,
            ),
            (
                "vpc_health_config.time_interval",
                self.time_interval,
                1..=300,
            ),
            ("vpc_health_config.timeout", self.timeout, 1..=30),
        ] {
            match v {
                Some(v) if range.contains(&v) => {}
                Some(_) => p.push(ApiError::invalid(
                    field,
                    format!("{} to {}", range.start(), range.end()),
                )),
                None => p.push(ApiError::required(field)),
            }
        }
        if let (Some(interval), Some(timeout)) = (self.time_interval, self.timeout) {
            if timeout >= interval {
                p.push(ApiError::invalid(
                    "vpc_health_config.timeout",
                    "must be less than time_interval",
                ));
            }
        }
        if self.enable_client_ssl == Some(true) {
            p.push(ApiError::not_supported(
                "vpc_health_config.enable_client_ssl (backend client certificates)",
            ));
        }
        p.into_result()
    }

    /// The stored form; call after [`HealthSpec::validate`].
    pub fn into_check(self, id: String, create_time: String) -> HealthCheck {
        let protocol = self.protocol.unwrap_or_else(|| "TCP".into());
        HealthCheck {
            id,
            path: self.path.unwrap_or_default(),
            method: self.method.unwrap_or_else(|| "GET".into()),
            port: self.port.unwrap_or(0),
            threshold_normal: self.threshold_normal.unwrap_or(2),
            threshold_abnormal: self.threshold_abnormal.unwrap_or(5),
            time_interval: self.time_interval.unwrap_or(10),
            timeout: self.timeout.unwrap_or(5),
            http_code: self.http_code.unwrap_or_default(),
            protocol,
            create_time,
        }
    }
}

/// `200,201,210-299`: status codes and inclusive ranges within 100–599.
pub fn parse_http_codes(codes: &str) -> Result<Vec<(u16, u16)>, String> {
    let mut out = Vec::new();
    for part in codes.split(',') {
        let part = part.trim();
        let (from, to) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| format!("{part:?} is not a status code or range within 100-599"))
        };
        let (from, to) = (parse(from)?, parse(to)?);
        if from > to {
            return Err(format!("{part:?}: the range is reversed"));
        }
        out.push((from, to));
    }
    if out.is_empty() || out.len() > 50 {
        return Err("1 to 50 codes or ranges".into());
    }
    Ok(out)
}

// === responses ===

impl Channel {
    /// VpcChannelInfo (list and create answers).
    pub fn summary_json(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "port": self.port,
            "balance_strategy": self.balance_strategy, "member_type": self.member_type,
            "type": 2, "vpc_channel_type": "builtin", "dict_code": "",
            "create_time": self.create_time, "status": 1,
            "member_groups": self.member_groups.iter().map(MemberGroup::to_json).collect::<Vec<_>>(),
        })
    }

    /// ShowDetailsOfVpcChannelV2Response: the summary, members and health check.
    pub fn detail_json(&self) -> Value {
        let mut v = self.summary_json();
        v["members"] = self.members.iter().map(|m| self.member_json(m)).collect();
        if let Some(h) = &self.health {
            v["vpc_health_config"] = self.health_json(h);
        }
        v
    }

    pub fn group_name(&self, id: &str) -> Option<&str> {
        self.member_groups
            .iter()
            .find(|g| g.id == id)
            .map(|g| g.name.as_str())
    }

    /// VpcMemberInfo.
    pub fn member_json(&self, m: &Member) -> Value {
        json!({
            "id": m.id, "host": m.host, "port": m.port, "weight": m.weight,
            "is_backup": m.is_backup, "status": m.status, "vpc_channel_id": self.id,
            "create_time": m.create_time,
            "member_group_id": m.member_group_id.clone().unwrap_or_default(),
            "member_group_name": m.member_group_id.as_deref().and_then(|g| self.group_name(g)).unwrap_or_default(),
            "ecs_id": "", "ecs_name": "",
        })
    }

    /// VpcHealthConfigInfo.
    pub fn health_json(&self, h: &HealthCheck) -> Value {
        json!({
            "id": h.id, "vpc_channel_id": self.id, "protocol": h.protocol, "path": h.path,
            "method": h.method, "port": h.port, "threshold_normal": h.threshold_normal,
            "threshold_abnormal": h.threshold_abnormal, "time_interval": h.time_interval,
            "timeout": h.timeout, "http_code": h.http_code, "enable_client_ssl": false,
            "status": 1, "create_time": h.create_time,
        })
    }

    /// The weight a member receives traffic with: its group's weight when the group has one.
    pub fn effective_weight(&self, m: &Member) -> i64 {
        m.member_group_id
            .as_deref()
            .and_then(|g| self.member_groups.iter().find(|x| x.id == g))
            .and_then(|g| g.weight)
            .unwrap_or(m.weight)
    }
}

impl MemberGroup {
    /// MemberGroupInfo.
    pub fn to_json(&self) -> Value {
        json!({
            "member_group_id": self.id, "member_group_name": self.name,
            "member_group_remark": self.remark,
            "member_group_weight": self.weight.unwrap_or(0), "dict_code": "",
            "create_time": self.create_time, "update_time": self.update_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> ChannelSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_full_channel_validates() {
        let ok = spec(json!({
            "name": "orders-lb", "port": 8080, "balance_strategy": 1, "member_type": "ip",
            "member_groups": [{"member_group_name": "blue", "member_group_weight": 3}],
            "members": [
                {"host": "10.0.0.1", "weight": 10},
                {"host": "backend-2.internal", "port": 9090, "member_group_name": "blue"},
                {"host": "::1", "is_backup": true, "status": 2}
            ],
            "vpc_health_config": {"protocol": "HTTP", "path": "/health", "http_code": "200,201-204",
                "threshold_normal": 2, "threshold_abnormal": 3, "time_interval": 5, "timeout": 2}
        }));
        ok.validate().unwrap();
    }

    #[test]
    fn bad_channels_are_refused_with_every_problem() {
        let e = spec(json!({
            "name": "x", "port": 0, "balance_strategy": 9,
            "members": [{"host": "http://evil"}, {"host": "10.0.0.1", "weight": 10001},
                        {"host": "10.0.0.2", "member_group_name": "nope"}]
        }))
        .validate()
        .unwrap_err();
        for what in [
            "name",
            "port",
            "balance_strategy",
            "members.host",
            "members.weight",
            "nope",
        ] {
            assert!(e.message.contains(what), "{what}: {}", e.message);
        }
        let dup = spec(json!({"name": "dup-lb", "port": 80,
            "members": [{"host": "10.0.0.1"}, {"host": "10.0.0.1"}]}));
        assert!(dup.validate().is_err());
        let ecs = spec(json!({"name": "ecs-lb", "port": 80, "member_type": "ecs"}));
        assert_eq!(ecs.validate().unwrap_err().status(), 412);
    }

    #[test]
    fn health_rules() {
        let h = |v: Value| serde_json::from_value::<HealthSpec>(v).unwrap().validate();
        assert!(h(
            json!({"protocol": "TCP", "threshold_normal": 1, "threshold_abnormal": 1,
            "time_interval": 2, "timeout": 1})
        )
        .is_ok());
        // timeout must be below the interval; HTTP needs a path and codes.
        assert!(h(
            json!({"protocol": "TCP", "threshold_normal": 1, "threshold_abnormal": 1,
            "time_interval": 2, "timeout": 2})
        )
        .is_err());
        assert!(h(
            json!({"protocol": "HTTP", "threshold_normal": 1, "threshold_abnormal": 1,
            "time_interval": 2, "timeout": 1})
        )
        .is_err());
        assert!(h(json!({"protocol": "TCP"})).is_err());
    }

    #[test]
    fn http_codes() {
        assert_eq!(
            parse_http_codes("200, 201,210-299").unwrap(),
            vec![(200, 200), (201, 201), (210, 299)]
        );
        for bad in ["", "99", "600", "300-200", "abc", "200-"] {
            assert!(parse_http_codes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn member_hosts() {
        for ok in ["10.0.0.1", "::1", "a.b-c.internal", "localhost"] {
            assert!(member_host(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "http://x", "x:80", "a/b", "-a", "a..b", "u@h"] {
            assert!(member_host(bad).is_err(), "{bad}");
        }
    }
}
