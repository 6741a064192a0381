//! The key layout in the store: `v1/<kind>/<scope>/<id>`. One place, so a newcomer can read
//! what is stored where.

pub const EPOCH: &str = "v1/meta/epoch";
pub const BOOTSTRAPPED: &str = "v1/meta/bootstrapped";

pub const PROJECTS: &str = "v1/project/";
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

/// The audit log of a project (`audit.rs`). Project-scoped, not per instance: the record of
/// deleting an instance outlives it, so `audit` is deliberately not in [`INSTANCE_KINDS`].
pub const AUDIT: &str = "v1/audit/";
pub fn audits(project: &str) -> String {
    format!("v1/audit/{project}/")
}
pub fn audit(project: &str, id: &str) -> String {
    format!("v1/audit/{project}/{id}")
}

/// SSL certificates are project-scoped (a `global` one serves every instance of the project), so
/// `cert` is not in [`INSTANCE_KINDS`]: deleting an instance removes its `instance`
/// certificates itself.
pub fn certificates(project: &str) -> String {
    format!("v1/cert/{project}/")
}
pub fn certificate(project: &str, id: &str) -> String {
    format!("v1/cert/{project}/{id}")
}

/// Every per-instance kind: deleting an instance removes these prefixes.
pub const INSTANCE_KINDS: &[&str] = &[
    "group",
    "env",
    "var",
    "api",
    "version",
    "pub",
    "app",
    "appcode",
    "appauth",
    "appacl",
    "throttle",
    "special",
    "acl",
    "tbind",
    "abind",
    "quota",
    "quotabind",
    "channel",
    "sign",
    "sbind",
    "orch",
    "domain",
    "authz",
];

pub fn domains(i: &str) -> String {
    format!("v1/domain/{i}/")
}
pub fn domain(i: &str, id: &str) -> String {
    format!("v1/domain/{i}/{id}")
}

pub fn orchestrations(i: &str) -> String {
    format!("v1/orch/{i}/")
}
pub fn orchestration(i: &str, id: &str) -> String {
    format!("v1/orch/{i}/{id}")
}

pub fn authorizers(i: &str) -> String {
    format!("v1/authz/{i}/")
}
pub fn authorizer(i: &str, id: &str) -> String {
    format!("v1/authz/{i}/{id}")
}

pub fn signs(i: &str) -> String {
    format!("v1/sign/{i}/")
}
pub fn sign(i: &str, id: &str) -> String {
    format!("v1/sign/{i}/{id}")
}

pub fn channels(i: &str) -> String {
    format!("v1/channel/{i}/")
}
pub fn channel(i: &str, id: &str) -> String {
    format!("v1/channel/{i}/{id}")
}

pub fn quotas(i: &str) -> String {
    format!("v1/quota/{i}/")
}
pub fn quota(i: &str, id: &str) -> String {
    format!("v1/quota/{i}/{id}")
}
pub fn quota_bindings(i: &str) -> String {
    format!("v1/quotabind/{i}/")
}
/// Keyed by app: an app has at most one credential quota.
pub fn quota_binding(i: &str, app: &str) -> String {
    format!("v1/quotabind/{i}/{app}")
}

pub fn throttles(i: &str) -> String {
    format!("v1/throttle/{i}/")
}
pub fn throttle(i: &str, id: &str) -> String {
    format!("v1/throttle/{i}/{id}")
}
pub fn specials_of(i: &str, throttle: &str) -> String {
    format!("v1/special/{i}/{throttle}/")
}
pub fn specials(i: &str) -> String {
    format!("v1/special/{i}/")
}
pub fn special(i: &str, throttle: &str, id: &str) -> String {
    format!("v1/special/{i}/{throttle}/{id}")
}
pub fn acls(i: &str) -> String {
    format!("v1/acl/{i}/")
}
pub fn acl(i: &str, id: &str) -> String {
    format!("v1/acl/{i}/{id}")
}
/// Bindings of one policy kind (`tbind`: throttling, `abind`: access control, `sbind`:
/// signature keys).
pub fn bindings(kind: &str, i: &str) -> String {
    format!("v1/{kind}/{i}/")
}
pub fn binding(kind: &str, i: &str, id: &str) -> String {
    format!("v1/{kind}/{i}/{id}")
}

pub const CREDENTIALS: &str = "v1/credential/";
/// The Ed25519 seed that signs IAM tokens (hex).
pub const TOKEN_SEED: &str = "v1/meta/token-seed";

pub fn apps(i: &str) -> String {
    format!("v1/app/{i}/")
}
pub fn app(i: &str, id: &str) -> String {
    format!("v1/app/{i}/{id}")
}
pub fn app_codes_of(i: &str, app: &str) -> String {
    format!("v1/appcode/{i}/{app}/")
}
pub fn app_codes(i: &str) -> String {
    format!("v1/appcode/{i}/")
}
pub fn app_code(i: &str, app: &str, id: &str) -> String {
    format!("v1/appcode/{i}/{app}/{id}")
}
pub fn app_auths(i: &str) -> String {
    format!("v1/appauth/{i}/")
}
pub fn app_auth(i: &str, id: &str) -> String {
    format!("v1/appauth/{i}/{id}")
}
pub fn app_acls(i: &str) -> String {
    format!("v1/appacl/{i}/")
}
pub fn app_acl(i: &str, app: &str) -> String {
    format!("v1/appacl/{i}/{app}")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deleting an instance removes `v1/<kind>/<instance>/` for every kind: each per-instance
    /// key function must use a kind that list knows.
    #[test]
    fn every_instance_scoped_key_is_covered_by_instance_deletion() {
        let i = "inst";
        let keys = [
            groups(i),
            envs(i),
            vars(i),
            apis(i),
            versions(i),
            pubs(i),
            apps(i),
            app_codes(i),
            app_auths(i),
            app_acls(i),
            throttles(i),
            specials(i),
            acls(i),
            bindings("tbind", i),
            bindings("abind", i),
            quotas(i),
            quota_bindings(i),
            channels(i),
            signs(i),
            bindings("sbind", i),
            orchestrations(i),
            domains(i),
            authorizers(i),
        ];
        let mut kinds: Vec<String> = Vec::new();
        for k in &keys {
            assert!(k.ends_with("/inst/"), "{k}");
            kinds.push(
                k.trim_start_matches("v1/")
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        kinds.sort();
        let mut expected: Vec<String> = INSTANCE_KINDS.iter().map(|k| k.to_string()).collect();
        expected.sort();
        assert_eq!(kinds, expected);
        assert!(!INSTANCE_KINDS.contains(&"cert"));
        assert!(certificate("p", "1").starts_with(&certificates("p")));
        assert!(
            !INSTANCE_KINDS.contains(&"audit"),
            "audit entries outlive the instances they record"
        );
        assert!(audit("p", "1").starts_with(&audits("p")) && audits("p").starts_with(AUDIT));
    }
}
