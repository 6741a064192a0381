//! `cargo xtask <task>`: the project's developer tasks.
//!
//! - `test`: every test: the Rust workspace, then the official-SDK suite in Python (a venv in
//!   `.venv` is created on first use).
//! - `ci`: formatting and lint checks, then `test`. This is what `.ci/run` calls.
//! - `bench propagation [N] [--replicas R]`: time from a publish answer to the change answering
//!   on every replica, under background load.
//! - `bench scale [N ...]`: a gateway with N published APIs against one with a single API.
//! - `bench peers`: against nginx, HAProxy and the backend itself, pinned cores.
//! - `bench instructions`: callgrind instructions per request, to compare builds.
//! - `bench cluster-throttle`: see `bench/mod.rs`.

mod bench;
#[cfg(test)]
mod manifests;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// `cargo`, without the variables `cargo run` set for xtask itself: build scripts that read
/// them (ring's does) would see them change between a plain `cargo build` and one run from here,
/// and rebuild the whole release graph every time.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_CRATE_")
            || key.starts_with("CARGO_BIN_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR" | "CARGO_MANIFEST_PATH" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// The Python interpreter of `.venv`, created with the pinned requirements when missing.
fn venv_python() -> Result<PathBuf> {
    let venv = root().join(".venv");
    let python = venv.join("bin/python");
    let stamp = venv.join(".requirements");
    let wanted = std::fs::read_to_string(root().join("tests/python/requirements.txt"))?;
    let current = std::fs::read_to_string(&stamp).unwrap_or_default();
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    if current != wanted {
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            "tests/python/requirements.txt",
        ]))?;
        std::fs::write(&stamp, wanted)?;
    }
    Ok(python)
}

fn test() -> Result<()> {
    // `cargo test` also builds target/debug/apig for the end-to-end tests; the Python suite
    // uses that binary (a separate `cargo build` would resolve other features and rebuild).
    run(cargo().args(["test", "--workspace", "--all-targets"]))?;
    let python = venv_python()?;
    run(Command::new(python)
        .args(["-m", "pytest", "-q", "tests/python"])
        .env("APIG_BIN", root().join("target/debug/apig")))
}

fn ci() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    test()
}

/// The resilience scenarios at the hardening issue's scale (10-minute outage and soak, 100
/// republishes with 20 control-plane restarts, 200 `kill -9` cycles): the tests of
/// `tests/e2e/resilience.rs` with `APIG_RESILIENCE_SCALE=full`, release build, one at a time, figures printed.
/// `cargo xtask resilience <filter>` runs only the scenarios whose name contains the filter.
fn resilience(filter: Option<&str>) -> Result<()> {
    let filter = format!("resilience::{}", filter.unwrap_or(""));
    run(cargo()
        .args([
            "test",
            "--release",
            "-p",
            "apig",
            "--test",
            "e2e",
            &filter,
            "--",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("APIG_RESILIENCE_SCALE", "full"))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("ci") => ci(),
        Some("bench") => bench::run(&args[1..]),
        Some("resilience") => resilience(args.get(1).map(String::as_str)),
        _ => {
            eprintln!("usage: cargo xtask <test|ci|bench ...|resilience [filter]>");
            std::process::exit(2)
        }
    }
}

#[cfg(test)]
mod architecture {
    //! The dependency rules of ARCHITECTURE.md, checked on the manifests.

    use super::root;

    /// The `[dependencies]` section of a crate's manifest (not dev- or build-dependencies).
    fn deps(krate: &str) -> Vec<String> {
        let text = std::fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml"))
            .expect("manifest");
        let mut out = Vec::new();
        let mut inside = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                inside = line == "[dependencies]";
                continue;
            }
            if inside {
                if let Some((name, _)) = line.split_once(['=', '.']) {
                    let name = name.trim();
                    if !name.is_empty() && !name.starts_with('#') {
                        out.push(name.to_owned());
                    }
                }
            }
        }
        out
    }

    #[test]
    fn data_plane_never_imports_the_control_plane() {
        for krate in ["apig-gateway", "apig-router", "apig-sign", "apig-proto"] {
            let d = deps(krate);
            assert!(
                !d.is_empty() || krate == "apig-sign",
                "{krate} has dependencies"
            );
            for forbidden in ["apig-control", "apig-store", "apig-model"] {
                assert!(
                    !d.iter().any(|x| x == forbidden),
                    "{krate} depends on {forbidden}"
                );
            }
        }
    }

    #[test]
    fn pure_core_does_no_io() {
        for krate in [
            "apig-sign",
            "apig-model",
            "apig-router",
            "apig-policy",
            "apig-openapi",
        ] {
            let d = deps(krate);
            for io in [
                "tokio",
                "hyper",
                "hyper-util",
                "sled",
                "tonic",
                "axum",
                "reqwest",
            ] {
                assert!(!d.iter().any(|x| x == io), "{krate} depends on {io}");
            }
        }
    }

    #[test]
    fn dependencies_point_one_way() {
        // Libraries never depend on the binary or the test kit.
        for krate in [
            "apig-sign",
            "apig-model",
            "apig-openapi",
            "apig-proto",
            "apig-router",
            "apig-store",
            "apig-control",
            "apig-gateway",
        ] {
            let d = deps(krate);
            assert!(
                !d.iter().any(|x| x == "apig" || x == "apig-testkit"),
                "{krate}: {d:?}"
            );
        }
        assert!(!deps("apig-control").iter().any(|x| x == "apig-gateway"));
        assert!(!deps("apig-gateway").iter().any(|x| x == "apig-control"));
    }
}
