//! Snapshot builders shared by the integration tests.
#![allow(dead_code)]

use apig_proto::{Api, Environment, Group, MatchMode, Snapshot};

/// Groups of the standard fixture: id and domains.
pub const GROUPS: &[(&str, &[&str])] = &[
    ("g1", &["api.example.com", "*.wild.example.com"]),
    ("g2", &["other.example.com", "*.example.com"]),
    ("g3", &["*.deep.wild.example.com"]),
];

/// Environments of the standard fixture: id and name.
pub const ENVS: &[(&str, &str)] = &[("env-release", "RELEASE"), ("env-test", "TEST")];

/// An API from a one-line spec: `ID GROUP ENV_NAME METHOD N|S PATH`.
pub fn api(spec: &str) -> Api {
    let f: Vec<&str> = spec.split_whitespace().collect();
    let [id, group, env, method, mode, path] = f[..] else {
        panic!("bad spec {spec:?}");
    };
    let env_id = ENVS
        .iter()
        .find(|(_, name)| *name == env)
        .map_or(env, |(id, _)| *id);
    Api {
        id: id.into(),
        name: id.into(),
        group_id: group.into(),
        env_id: env_id.into(),
        req_method: method.into(),
        req_uri: path.into(),
        match_mode: match mode {
            "N" => MatchMode::Normal,
            "S" => MatchMode::Swa,
            _ => panic!("bad mode in {spec:?}"),
        } as i32,
        ..Default::default()
    }
}

/// The standard groups and environments with these APIs.
pub fn snapshot(apis: &[&str]) -> Snapshot {
    Snapshot {
        instance_id: "i1".into(),
        epoch: "e1".into(),
        version: 1,
        groups: GROUPS
            .iter()
            .map(|(id, domains)| Group {
                id: (*id).into(),
                name: (*id).into(),
                domains: domains.iter().map(|d| (*d).into()).collect(),
            })
            .collect(),
        environments: ENVS
            .iter()
            .map(|(id, name)| Environment {
                id: (*id).into(),
                name: (*name).into(),
            })
            .collect(),
        apis: apis.iter().map(|s| api(s)).collect(),
        ..Default::default()
    }
}
