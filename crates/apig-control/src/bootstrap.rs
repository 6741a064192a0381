//! First start: the bootstrap credential, its project, the first gateway instance, the cluster
//! token and the store epoch. Taken from `APIG_*` environment variables where set, otherwise
//! generated, stored under the data dir readable by its owner only, and printed once.

use std::io::Write;
use std::path::Path;

use apig_model::instance::Instance;
use apig_model::{ids, time};
use rand::distr::{Alphanumeric, SampleString};

use crate::auth::Credential;
use crate::keys;
use crate::tx::Reader;
use crate::{ControlError, ControlState};

/// Seeds for the first start, usually from the environment.
#[derive(Default, Clone)]
pub struct Seed {
    pub admin_ak: Option<String>,
    pub admin_sk: Option<String>,
    pub project_id: Option<String>,
    /// The bootstrap project's account name (`APIG_PROJECT_NAME`).
    pub project_name: Option<String>,
    pub instance_id: Option<String>,
}

impl std::fmt::Debug for Seed {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seed")
            .field("admin_ak", &self.admin_ak)
            .field("admin_sk", &self.admin_sk.as_ref().map(|_| "<redacted>"))
            .field("project_id", &self.project_id)
            .field("project_name", &self.project_name)
            .field("instance_id", &self.instance_id)
            .finish()
    }
}

impl Seed {
    pub fn from_env() -> Seed {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Seed {
            admin_ak: get("APIG_ADMIN_AK"),
            admin_sk: get("APIG_ADMIN_SK"),
            project_id: get("APIG_PROJECT_ID"),
            project_name: get("APIG_PROJECT_NAME"),
            instance_id: get("APIG_INSTANCE_ID"),
        }
    }
}

/// What the first start created (or found).
#[derive(Clone, Debug)]
pub struct Bootstrap {
    pub project_id: String,
    pub instance_id: String,
    pub access_key: String,
}

pub fn random(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

fn check(seed: &Seed) -> Result<(), ControlError> {
    let bad = |m: &str| Err(ControlError::Config(m.to_owned()));
    if let Some(ak) = &seed.admin_ak {
        if !(8..=128).contains(&ak.len()) || !ak.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return bad("APIG_ADMIN_AK must be 8 to 128 letters and digits");
        }
    }
    if let Some(sk) = &seed.admin_sk {
        if !(16..=128).contains(&sk.len()) || !sk.bytes().all(|b| b.is_ascii_graphic()) {
            return bad("APIG_ADMIN_SK must be 16 to 128 printable characters (no built-in or short secrets)");
        }
    }
    if seed.admin_ak.is_some() != seed.admin_sk.is_some() {
        return bad("set both APIG_ADMIN_AK and APIG_ADMIN_SK, or neither");
    }
    for (name, v) in [
        ("APIG_PROJECT_ID", &seed.project_id),
        ("APIG_INSTANCE_ID", &seed.instance_id),
    ] {
        if let Some(v) = v {
            if !(v.len() == 32
                && v.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
            {
                return Err(ControlError::Config(format!(
                    "{name} must be 32 lowercase hexadecimal characters"
                )));
            }
        }
    }
    if let Some(name) = &seed.project_name {
        if apig_model::project::validate_name("APIG_PROJECT_NAME", name).is_err() {
            return bad("APIG_PROJECT_NAME must be 1 to 64 printable ASCII characters without commas or spaces, not all digits");
        }
    }
    Ok(())
}

/// Writes `contents` to `path` readable by the owner only.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Runs once per data dir; later starts return what the first one stored.
pub async fn run(
    state: &ControlState,
    data_dir: &Path,
    seed: Seed,
) -> Result<Bootstrap, ControlError> {
    let store = state.reader();
    if let Some(b) = Reader::get_json::<serde_json::Value>(store, keys::BOOTSTRAPPED)? {
        let field = |k: &str| {
            b.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        if seed.admin_ak.is_some() || seed.instance_id.is_some() {
            tracing::warn!(
                "APIG_* seed variables are only read on the first start of a data dir; ignored"
            );
        }
        return Ok(Bootstrap {
            project_id: field("project_id"),
            instance_id: field("instance_id"),
            access_key: field("access_key"),
        });
    }
    check(&seed)?;
    let generated = seed.admin_ak.is_none();
    let ak = seed.admin_ak.unwrap_or_else(|| random(20).to_uppercase());
    let sk = seed.admin_sk.unwrap_or_else(|| random(40));
    let project_id = seed.project_id.unwrap_or_else(ids::new_id);
    let project_name = seed
        .project_name
        .unwrap_or_else(|| apig_model::project::default_name(&project_id));
    let instance_id = seed.instance_id.unwrap_or_else(ids::new_id);
    let now = time::now_rfc3339();

    let _w = state.write_lock().await;
    let mut tx = state.tx();
    tx.put(
        keys::project(&project_id),
        &apig_model::project::Project {
            id: project_id.clone(),
            name: Some(project_name.clone()),
            create_time: now.clone(),
        },
    )?;
    tx.put(
        keys::credential(&ak),
        &Credential {
            access_key: ak.clone(),
            secret_key: sk.clone(),
            project_id: project_id.clone(),
            create_time: now.clone(),
            admin: true,
        },
    )?;
    let instance = Instance {
        id: instance_id.clone(),
        project_id: project_id.clone(),
        instance_name: "default".into(),
        description: "Created on first start".into(),
        create_time: time::now_unix_ms(),
    };
    crate::routes::create_instance(&mut tx, &instance)?;
    tx.put(
        keys::BOOTSTRAPPED,
        &serde_json::json!({"project_id": project_id, "instance_id": instance_id, "access_key": ak, "at": now}),
    )?;
    // The credential file is written before the commit: if writing it fails nothing is
    // committed and the next start tries again, so the secret is never lost.
    let file = data_dir.join("admin-credentials.env");
    if generated {
        write_private(
            &file,
            &format!(
                "# Written on first start; readable by its owner only.\nAPIG_ADMIN_AK={ak}\nAPIG_ADMIN_SK={sk}\nAPIG_PROJECT_ID={project_id}\nAPIG_PROJECT_NAME={project_name}\nAPIG_INSTANCE_ID={instance_id}\n"
            ),
        )
        .map_err(|e| ControlError::Io(format!("{}: {e}", file.display())))?;
    }
    state.commit(tx, &[&instance_id]).await?;
    drop(_w);
    if generated {
        println!(
            "apig: first start: generated the bootstrap credential (shown once; also in {})",
            file.display()
        );
        println!("  APIG_ADMIN_AK={ak}");
        println!("  APIG_ADMIN_SK={sk}");
    } else {
        println!("apig: first start: seeded the bootstrap credential {ak} from APIG_ADMIN_AK");
    }
    println!("  APIG_PROJECT_ID={project_id}");
    println!("  APIG_PROJECT_NAME={project_name}");
    println!("  APIG_INSTANCE_ID={instance_id}");
    Ok(Bootstrap {
        project_id,
        instance_id,
        access_key: ak,
    })
}

/// The cluster token replicas must present: configured, or stored, or generated once.
pub fn cluster_token(data_dir: &Path, configured: Option<String>) -> Result<String, ControlError> {
    if let Some(t) = configured.filter(|t| !t.is_empty()) {
        if t.len() < 16 {
            return Err(ControlError::Config(
                "the cluster token must have at least 16 characters".into(),
            ));
        }
        return Ok(t);
    }
    let file = data_dir.join("cluster-token");
    match std::fs::read_to_string(&file) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        _ => {
            let t = random(48);
            write_private(&file, &format!("{t}\n"))
                .map_err(|e| ControlError::Io(format!("{}: {e}", file.display())))?;
            println!(
                "apig: generated the cluster token for gateway replicas (stored in {}):",
                file.display()
            );
            println!("  APIG_CLUSTER_TOKEN={t}");
            Ok(t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_checked() {
        assert!(check(&Seed::default()).is_ok());
        let weak = Seed {
            admin_ak: Some("ADMINAK1".into()),
            admin_sk: Some("short".into()),
            ..Default::default()
        };
        assert!(check(&weak).is_err());
        let half = Seed {
            admin_ak: Some("ADMINAK1".into()),
            ..Default::default()
        };
        assert!(check(&half).is_err());
        let bad_id = Seed {
            project_id: Some("XYZ".into()),
            ..Default::default()
        };
        assert!(check(&bad_id).is_err());
    }
}
