//! The key layout in the store: `v1/<kind>/<scope>/<id>`. One place, so a newcomer can read
//! what is stored where.

pub const EPOCH: &str = "v1/meta/epoch";
pub const BOOTSTRAPPED: &str = "v1/meta/bootstrapped";

pub fn project(id: &str) -> String {
    format!("v1/project/{id}")
}
pub fn credential(ak: &str) -> String {
    format!("v1/credential/{ak}")
}
pub const INSTANCES: &str = "v1/instance/";
pub fn instance(id: &str) -> String {
    format!("v1/instance/{id}")
}
/// The snapshot version and digest last published for an instance.
pub fn snapshot_meta(instance: &str) -> String {
    format!("v1/snapshot/{instance}")
}

/// Every per-instance kind: deleting an instance removes these prefixes.
pub const INSTANCE_KINDS: &[&str] = &["group", "env", "var", "api", "version", "pub"];

pub fn groups(i: &str) -> String {
    format!("v1/group/{i}/")
}
pub fn group(i: &str, id: &str) -> String {
    format!("v1/group/{i}/{id}")
}
pub fn envs(i: &str) -> String {
    format!("v1/env/{i}/")
}
pub fn env(i: &str, id: &str) -> String {
    format!("v1/env/{i}/{id}")
}
pub fn vars(i: &str) -> String {
    format!("v1/var/{i}/")
}
pub fn var(i: &str, id: &str) -> String {
    format!("v1/var/{i}/{id}")
}
pub fn apis(i: &str) -> String {
    format!("v1/api/{i}/")
}
pub fn api(i: &str, id: &str) -> String {
    format!("v1/api/{i}/{id}")
}
pub fn versions_of(i: &str, api: &str) -> String {
    format!("v1/version/{i}/{api}/")
}
pub fn versions(i: &str) -> String {
    format!("v1/version/{i}/")
}
pub fn version(i: &str, api: &str, id: &str) -> String {
    format!("v1/version/{i}/{api}/{id}")
}
pub fn pubs(i: &str) -> String {
    format!("v1/pub/{i}/")
}
pub fn pubs_of(i: &str, api: &str) -> String {
    format!("v1/pub/{i}/{api}/")
}
pub fn publication(i: &str, api: &str, env: &str) -> String {
    format!("v1/pub/{i}/{api}/{env}")
}
