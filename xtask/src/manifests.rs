//! Checks of the Kubernetes manifests in `deploy/kubernetes/` (run by `cargo test`): every
//! document is well-formed and every workload has what production needs (image, resources,
//! probes, non-root, read-only root filesystem); the control plane keeps its data on a volume
//! claim; the autoscaler and the disruption budget point at the gateway; a container that names
//! a configuration file (`APIG_CONFIG`) mounts it from a ConfigMap that has it.

use serde::Deserialize;
use std::collections::BTreeMap;

use serde_json::Value;

use super::root;

/// Every YAML document of every `*.yaml` file under `deploy/kubernetes/`, as (file, document).
pub fn load() -> Vec<(String, Value)> {
    let dir = root().join("deploy").join("kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for d in yaml_serde::Deserializer::from_str(&text) {
            let v = Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if !v.is_null() {
                docs.push((f.display().to_string(), v));
            }
        }
    }
    docs
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn name(v: &Value) -> String {
    format!(
        "{} {}",
        s(v, &["kind"]).unwrap_or("?"),
        s(v, &["metadata", "name"]).unwrap_or("?")
    )
}

/// `[table] key = value` settings of the `apig.toml` entries of the ConfigMaps (a small reader
/// for our own file: one `key = value` per line, string quotes dropped).
fn config_file_settings(docs: &[(String, Value)]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut tables: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (_, d) in docs {
        if s(d, &["kind"]) != Some("ConfigMap") {
            continue;
        }
        let Some(text) = s(d, &["data", "apig.toml"]) else {
            continue;
        };
        let mut table = String::new();
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                table = name.trim().to_owned();
            } else if let Some((k, v)) = line.split_once('=') {
                if !k.trim_start().starts_with('#') {
                    let v = v.trim().trim_matches('"').to_owned();
                    tables
                        .entry(table.clone())
                        .or_default()
                        .insert(k.trim().to_owned(), v);
                }
            }
        }
    }
    tables
}

/// The replica link of `apig control` and `apig gateway` containers must run mutual TLS, set by
/// flags or by the plane's table of the configuration file the container reads.
fn cluster_link_problems(
    who: &str,
    c: &Value,
    file: &BTreeMap<String, BTreeMap<String, String>>,
) -> Vec<String> {
    let args: Vec<&str> = c["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let plane = args.first().copied().unwrap_or_default();
    if plane != "control" && plane != "gateway" {
        return Vec::new();
    }
    let reads_file = c["env"]
        .as_array()
        .is_some_and(|e| e.iter().any(|v| s(v, &["name"]) == Some("APIG_CONFIG")));
    let empty = BTreeMap::new();
    let table = if reads_file {
        file.get(plane).unwrap_or(&empty)
    } else {
        &empty
    };
    // A flag wins over the file, as in apig itself.
    let setting = |key: &str| -> Option<String> {
        let flag = format!("--{}=", key.replace('_', "-"));
        args.iter()
            .find_map(|a| a.strip_prefix(flag.as_str()).map(str::to_owned))
            .or_else(|| table.get(key).cloned())
    };
    let mut out = Vec::new();
    for key in ["cluster_ca", "cluster_cert", "cluster_key"] {
        if setting(key).is_none() {
            out.push(format!("{who}: no {key}"));
        }
    }
    let plaintext = args
        .iter()
        .any(|a| a.starts_with("--allow-plaintext-cluster"))
        || table
            .get("allow_plaintext_cluster")
            .is_some_and(|v| v == "true");
    if plaintext {
        out.push(format!("{who}: plaintext replica link allowed"));
    }
    if plane == "gateway" && !setting("control_plane").is_some_and(|u| u.starts_with("https://")) {
        out.push(format!("{who}: the control plane URL is not https"));
    }
    out
}

/// Every problem found; empty when the manifests are fit to apply.
pub fn problems(docs: &[(String, Value)]) -> Vec<String> {
    let mut out = Vec::new();
    let workloads = ["Deployment", "StatefulSet", "DaemonSet"];
    let settings = config_file_settings(docs);
    for (file, d) in docs {
        for field in [&["apiVersion"][..], &["kind"], &["metadata", "name"]] {
            if s(d, field).is_none() {
                out.push(format!("{file}: a document lacks {}", field.join(".")));
            }
        }
        let kind = s(d, &["kind"]).unwrap_or_default();
        if !workloads.contains(&kind) {
            continue;
        }
        let pod = &d["spec"]["template"]["spec"];
        let pod_non_root = pod["securityContext"]["runAsNonRoot"] == true;
        let containers = pod["containers"].as_array().cloned().unwrap_or_default();
        if containers.is_empty() {
            out.push(format!("{}: no containers", name(d)));
        }
        for c in &containers {
            let who = format!("{} container {}", name(d), s(c, &["name"]).unwrap_or("?"));
            if s(c, &["image"]).is_none() {
                out.push(format!("{who}: no image"));
            }
            for part in ["requests", "limits"] {
                for res in ["cpu", "memory"] {
                    if c["resources"][part][res].is_null() {
                        out.push(format!("{who}: no resources.{part}.{res}"));
                    }
                }
            }
            for probe in ["livenessProbe", "readinessProbe"] {
                let p = &c[probe];
                if !["httpGet", "tcpSocket", "grpc", "exec"]
                    .iter()
                    .any(|h| p.get(h).is_some())
                {
                    out.push(format!("{who}: no {probe}"));
                }
            }
            let sc = &c["securityContext"];
            if !(sc["runAsNonRoot"] == true || (pod_non_root && sc["runAsNonRoot"] != false)) {
                out.push(format!("{who}: not runAsNonRoot"));
            }
            if sc["readOnlyRootFilesystem"] != true {
                out.push(format!("{who}: root filesystem not read-only"));
            }
            if sc["allowPrivilegeEscalation"] != false {
                out.push(format!("{who}: allowPrivilegeEscalation not false"));
            }
            out.extend(cluster_link_problems(&who, c, &settings));
        }
        if kind == "StatefulSet"
            && d["spec"]["volumeClaimTemplates"]
                .as_array()
                .is_none_or(Vec::is_empty)
        {
            out.push(format!("{}: no volumeClaimTemplates", name(d)));
        }
    }

    out.extend(config_file_problems(docs));

    let find = |kind: &str| -> Vec<&Value> {
        docs.iter()
            .map(|(_, d)| d)
            .filter(|d| s(d, &["kind"]) == Some(kind))
            .collect()
    };
    if find("StatefulSet").is_empty() {
        out.push("no StatefulSet (the control plane)".into());
    }
    let gateway = find("Deployment")
        .into_iter()
        .find(|d| s(d, &["metadata", "name"]) == Some("apig-gateway"));
    let Some(gateway) = gateway else {
        out.push("no Deployment apig-gateway".into());
        return out;
    };
    let hpas = find("HorizontalPodAutoscaler");
    if !hpas.iter().any(|h| {
        s(h, &["spec", "scaleTargetRef", "kind"]) == Some("Deployment")
            && s(h, &["spec", "scaleTargetRef", "name"]) == Some("apig-gateway")
    }) {
        out.push("no HorizontalPodAutoscaler targets Deployment apig-gateway".into());
    }
    let labels = gateway["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let pdb_selects_gateway = find("PodDisruptionBudget").iter().any(|p| {
        p["spec"]["selector"]["matchLabels"]
            .as_object()
            .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
    });
    if !pdb_selects_gateway {
        out.push("no PodDisruptionBudget selects the gateway pods".into());
    }
    out
}

/// A container that names a configuration file (`APIG_CONFIG`) must mount it: a volume at the
/// file's directory from a ConfigMap that has the file's name as a key.
fn config_file_problems(docs: &[(String, Value)]) -> Vec<String> {
    let mut out = Vec::new();
    let config_maps: Vec<&Value> = docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| s(d, &["kind"]) == Some("ConfigMap"))
        .collect();
    for (_, d) in docs {
        let pod = &d["spec"]["template"]["spec"];
        let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
        for c in pod["containers"].as_array().into_iter().flatten() {
            let who = format!("{} container {}", name(d), s(c, &["name"]).unwrap_or("?"));
            let Some(path) = c["env"].as_array().into_iter().flatten().find_map(|e| {
                (s(e, &["name"]) == Some("APIG_CONFIG")).then(|| s(e, &["value"]))?
            }) else {
                continue;
            };
            let Some((dir, file)) = path.rsplit_once('/') else {
                out.push(format!("{who}: APIG_CONFIG {path} is not an absolute path"));
                continue;
            };
            let mount = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| s(m, &["mountPath"]) == Some(dir));
            let Some(volume) = mount.and_then(|m| s(m, &["name"])) else {
                out.push(format!(
                    "{who}: nothing is mounted at {dir} for APIG_CONFIG"
                ));
                continue;
            };
            let map = volumes
                .iter()
                .find(|v| s(v, &["name"]) == Some(volume))
                .and_then(|v| s(v, &["configMap", "name"]));
            let has_file = map.is_some_and(|m| {
                config_maps.iter().any(|cm| {
                    s(cm, &["metadata", "name"]) == Some(m) && s(cm, &["data", file]).is_some()
                })
            });
            if !has_file {
                out.push(format!(
                    "{who}: no ConfigMap with a key {file} is mounted at {dir} (APIG_CONFIG)"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_manifests_are_complete() {
        let docs = load();
        assert!(docs.len() >= 7, "{} documents", docs.len());
        assert_eq!(problems(&docs), Vec::<String>::new());
    }

    fn gateway_container(docs: &mut [(String, Value)]) -> &mut Value {
        let (_, d) = docs
            .iter_mut()
            .find(|(_, d)| d["kind"] == "Deployment")
            .expect("the gateway Deployment");
        &mut d["spec"]["template"]["spec"]["containers"][0]
    }

    #[test]
    fn a_missing_probe_or_a_wrong_target_is_caught() {
        let mut docs = load();
        let c = gateway_container(&mut docs);
        c.as_object_mut().unwrap().remove("readinessProbe");
        let p = problems(&docs);
        assert!(p.iter().any(|x| x.contains("no readinessProbe")), "{p:?}");

        // The replica link's settings, in the ConfigMap's file: plaintext URL, a key missing.
        let mut docs = load();
        for (_, d) in docs.iter_mut() {
            if let Some(text) = d["data"]["apig.toml"].as_str() {
                let text = text
                    .replace("control_plane = \"https://", "control_plane = \"http://")
                    .lines()
                    .filter(|l| !l.contains("replica-key.pem"))
                    .collect::<Vec<_>>()
                    .join("\n");
                d["data"]["apig.toml"] = text.into();
            }
        }
        let p = problems(&docs).join("\n");
        assert!(p.contains("the control plane URL is not https"), "{p}");
        assert!(p.contains("no cluster_key"), "{p}");
        assert!(
            !p.contains("StatefulSet apig-control container control: no"),
            "{p}"
        );

        let mut docs = load();
        gateway_container(&mut docs)["securityContext"]["readOnlyRootFilesystem"] = false.into();
        for (_, d) in docs.iter_mut() {
            if d["kind"] == "HorizontalPodAutoscaler" {
                d["spec"]["scaleTargetRef"]["name"] = "other".into();
            }
            if d["kind"] == "StatefulSet" {
                d["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("volumeClaimTemplates");
            }
            if d["kind"] == "PodDisruptionBudget" {
                d["spec"]["selector"]["matchLabels"] = serde_json::json!({"app": "x"});
            }
        }
        for (_, d) in docs.iter_mut() {
            if d["kind"] == "ConfigMap" {
                d["data"] = serde_json::json!({"other.toml": ""});
            }
        }
        let p = problems(&docs).join("\n");
        for want in [
            "no ConfigMap with a key apig.toml is mounted at /etc/apig",
            "root filesystem not read-only",
            "no HorizontalPodAutoscaler",
            "no volumeClaimTemplates",
            "no PodDisruptionBudget",
        ] {
            assert!(p.contains(want), "{want} missing from:\n{p}");
        }
    }
}
