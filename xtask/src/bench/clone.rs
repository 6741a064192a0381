//! Many published APIs without the management API: one real API (created and published
//! through the control plane, so every document is what the control plane itself writes) is
//! cloned inside an `apig backup` file, which `apig restore` then loads into a fresh data dir.
//!
//! Creating 100k APIs one call at a time would take hours (each create scans the instance's
//! APIs, each publish recompiles the instance's snapshot), and none of that is what the scale
//! benchmark measures. The control plane compiles the restored state on start exactly as after
//! any restore, so the replicas see a snapshot like one built by 100k publishes.
//!
//! A clone differs from the template in every id that belongs to the API alone (its id, version,
//! publication, parameter ids: any 32-hex-digit token not listed as shared), in its name, its
//! path (`/v1/svc0/` becomes `/v1/svc{i}/`) and its group (round robin over `groups`).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// What to clone and how.
pub(super) struct Template<'a> {
    pub instance: &'a str,
    pub api_id: &'a str,
    /// The template's name; clone `i` is named `{name_prefix}{i}`.
    pub name: &'a str,
    pub name_prefix: &'a str,
    /// The template's path prefix (e.g. `/v1/svc0/`); clone `i` gets `{path_prefix}{i}/`.
    pub path: &'a str,
    pub path_prefix: &'a str,
    /// The template lives in `groups[0]`; clone `i` goes to `groups[i % groups.len()]`.
    pub groups: &'a [String],
    /// Ids the API refers to but does not own (instance, project, ...): kept as they are.
    pub shared_ids: &'a [String],
}

const MAGIC: &str = "apig-backup/1";

/// The export JSON of a backup file (header checked, checksum verified).
fn body_of(backup: &[u8]) -> Result<&[u8]> {
    let nl = backup
        .iter()
        .position(|&b| b == b'\n')
        .context("no header line")?;
    let header = std::str::from_utf8(&backup[..nl])?;
    let mut words = header.split(' ');
    if words.next() != Some(MAGIC) {
        bail!("not an apig backup");
    }
    let sha = words
        .find_map(|w| w.strip_prefix("sha256="))
        .context("no sha256 in the header")?;
    let body = &backup[nl + 1..];
    if hex::encode(Sha256::digest(body)) != sha {
        bail!("the backup's checksum does not match");
    }
    Ok(body)
}

/// Every maximal run of exactly 32 lower-case hex digits in `text`.
fn hex_ids(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut start = None;
    for (i, b) in bytes.iter().chain(std::iter::once(&b' ')).enumerate() {
        let hex = b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        match (hex, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s == 32 {
                    ids.insert(text[s..i].to_owned());
                }
                start = None;
            }
            _ => {}
        }
    }
    ids
}

/// Clone `i`'s id for a template id: the index in the first 8 digits, the rest kept (distinct
/// template ids stay distinct, clones of one id differ by index).
fn cloned_id(id: &str, i: usize) -> String {
    format!("{i:08x}{}", &id[8..])
}

/// A backup file holding everything of `backup` plus `clones` copies of the template API.
pub(super) fn clone_api(backup: &[u8], t: &Template<'_>, clones: usize) -> Result<Vec<u8>> {
    let export: serde_json::Value = serde_json::from_slice(body_of(backup)?)?;
    let entries = export["entries"]
        .as_object()
        .context("the backup has no entries")?;
    // The API's own documents: its definition, its versions, its publications.
    let own: Vec<(&String, String)> = entries
        .iter()
        .filter(|(k, _)| {
            ["api", "version", "pub"]
                .iter()
                .any(|kind| k.starts_with(&format!("v1/{kind}/{}/{}", t.instance, t.api_id)))
        })
        .map(|(k, v)| Ok((k, serde_json::to_string(v)?)))
        .collect::<Result<_>>()?;
    if !own.iter().any(|(k, _)| k.starts_with("v1/pub/")) {
        bail!("the template API {} is not published", t.api_id);
    }
    let shared: BTreeSet<&str> = t
        .shared_ids
        .iter()
        .chain(t.groups)
        .map(String::as_str)
        .collect();
    let mut owned_ids = BTreeSet::new();
    for (k, v) in &own {
        owned_ids.extend(hex_ids(k));
        owned_ids.extend(hex_ids(v));
    }
    owned_ids.retain(|id| !shared.contains(id.as_str()));

    let count = entries.len() + clones * own.len();
    let mut out = String::with_capacity(count * own.first().map_or(0, |(_, v)| v.len() + 80));
    write!(
        out,
        r#"{{"format":"apig-store-backup/1","revision":{},"count":{count},"entries":{{"#,
        export["revision"].as_u64().unwrap_or(0)
    )?;
    let mut first = true;
    let mut entry = |out: &mut String, k: &str, v: &str| -> Result<()> {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&serde_json::to_string(k)?);
        out.push(':');
        out.push_str(v);
        Ok(())
    };
    for (k, v) in entries {
        entry(&mut out, k, &serde_json::to_string(v)?)?;
    }
    let path_from = format!("\"{}", t.path);
    let name_from = format!("\"{}\"", t.name);
    for i in 1..=clones {
        let group = &t.groups[i % t.groups.len()];
        let subst = |text: &str| {
            let mut s = text.to_owned();
            for id in &owned_ids {
                s = s.replace(id.as_str(), &cloned_id(id, i));
            }
            s.replace(t.groups[0].as_str(), group)
                .replace(&path_from, &format!("\"{}{i}/", t.path_prefix))
                .replace(&name_from, &format!("\"{}{i}\"", t.name_prefix))
        };
        for (k, v) in &own {
            entry(&mut out, &subst(k), &subst(v))?;
        }
    }
    out.push_str("}}");
    let sha = hex::encode(Sha256::digest(out.as_bytes()));
    let mut file = format!("{MAGIC} sha256={sha} length={}\n", out.len()).into_bytes();
    file.extend_from_slice(out.as_bytes());
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const INST: &str = "fedcba9876543210fedcba9876543210";
    const API: &str = "aaaaaaaa11111111222222223333333a";
    const VER: &str = "bbbbbbbb11111111222222223333333b";
    const PARAM: &str = "cccccccc11111111222222223333333c";
    const G0: &str = "dddddddd11111111222222223333333d";
    const G1: &str = "eeeeeeee11111111222222223333333e";

    fn backup(entries: serde_json::Value) -> Vec<u8> {
        let count = entries.as_object().map_or(0, |e| e.len());
        let body = serde_json::to_vec(
            &json!({"format": "apig-store-backup/1", "revision": 7, "count": count, "entries": entries}),
        )
        .unwrap();
        let mut file = format!(
            "{MAGIC} sha256={} length={}\n",
            hex::encode(Sha256::digest(&body)),
            body.len()
        )
        .into_bytes();
        file.extend_from_slice(&body);
        file
    }

    #[test]
    fn clones_get_own_ids_paths_names_and_groups_and_the_file_verifies() {
        let api = json!({"id": API, "name": "tpl", "group_id": G0, "req_uri": "/v1/svc0/items/{id}",
                         "req_params": [{"id": PARAM, "name": "id"}], "instance": INST});
        let src = backup(json!({
            format!("v1/api/{INST}/{API}"): api,
            format!("v1/version/{INST}/{API}/{VER}"): {"version_id": VER, "api_id": API, "spec": {"group_id": G0, "req_uri": "/v1/svc0/items/{id}", "name": "tpl"}},
            format!("v1/pub/{INST}/{API}/RELEASE"): {"api_id": API, "version_id": VER},
            format!("v1/group/{INST}/{G0}"): {"id": G0},
            format!("v1/group/{INST}/{G1}"): {"id": G1},
        }));
        let groups = [G0.to_owned(), G1.to_owned()];
        let t = Template {
            instance: INST,
            api_id: API,
            name: "tpl",
            name_prefix: "api_",
            path: "/v1/svc0/",
            path_prefix: "/v1/svc",
            groups: &groups,
            shared_ids: &[INST.to_owned()],
        };
        let out = clone_api(&src, &t, 3).unwrap();
        let export: serde_json::Value = serde_json::from_slice(body_of(&out).unwrap()).unwrap();
        let entries = export["entries"].as_object().unwrap();
        assert_eq!(export["count"], 5 + 9);
        assert_eq!(entries.len(), 5 + 9);
        assert_eq!(export["revision"], 7);

        let api3 = &entries[&format!("v1/api/{INST}/{}", cloned_id(API, 3))];
        assert_eq!(api3["id"], cloned_id(API, 3));
        assert_eq!(api3["name"], "api_3");
        assert_eq!(api3["req_uri"], "/v1/svc3/items/{id}");
        assert_eq!(api3["group_id"], G1);
        assert_eq!(api3["req_params"][0]["id"], cloned_id(PARAM, 3));
        assert_eq!(api3["instance"], INST, "shared ids are kept");
        let api2 = &entries[&format!("v1/api/{INST}/{}", cloned_id(API, 2))];
        assert_eq!(api2["group_id"], G0);
        let pub3 = &entries[&format!("v1/pub/{INST}/{}/RELEASE", cloned_id(API, 3))];
        assert_eq!(pub3["version_id"], cloned_id(VER, 3));
        let ver3 = &entries[&format!(
            "v1/version/{INST}/{}/{}",
            cloned_id(API, 3),
            cloned_id(VER, 3)
        )];
        assert_eq!(ver3["spec"]["req_uri"], "/v1/svc3/items/{id}");
        // The template itself is untouched.
        assert_eq!(entries[&format!("v1/api/{INST}/{API}")]["name"], "tpl");

        // A corrupted source is refused.
        let mut bad = src.clone();
        let last = bad.len() - 2;
        bad[last] ^= 1;
        assert!(clone_api(&bad, &t, 1).is_err());
    }

    #[test]
    fn an_unpublished_template_is_refused() {
        let src = backup(json!({format!("v1/api/{INST}/{API}"): {"id": API}}));
        let t = Template {
            instance: INST,
            api_id: API,
            name: "tpl",
            name_prefix: "api_",
            path: "/v1/svc0/",
            path_prefix: "/v1/svc",
            groups: &[G0.to_owned()],
            shared_ids: &[],
        };
        assert!(clone_api(&src, &t, 1).is_err());
    }
}
