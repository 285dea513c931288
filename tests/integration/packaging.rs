//! The container image: its build stage copies everything Cargo needs to read the
//! manifests, its health check needs no curl, and its configuration takes the admin
//! token from a file. With podman or docker at hand, the image is built for real.

use std::path::{Path, PathBuf};
use std::process::Command;

const CONTAINERFILE: &str = "deploy/container/Containerfile";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn containerfile() -> String {
    std::fs::read_to_string(repo(CONTAINERFILE)).expect("Containerfile")
}

/// The instructions of the first (build) stage, continuation lines joined.
fn build_stage(text: &str) -> Vec<String> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    let mut stages = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                if current.starts_with("FROM ") {
                    stages += 1;
                }
                if stages == 1 {
                    instructions.push(std::mem::take(&mut current));
                }
                current.clear();
            }
        }
    }
    instructions
}

/// What the build stage copies from the build context.
fn copied(stage: &[String]) -> Vec<String> {
    stage
        .iter()
        .filter_map(|i| i.strip_prefix("COPY "))
        .filter(|args| !args.starts_with("--from"))
        .flat_map(|args| {
            let words: Vec<&str> = args.split_whitespace().collect();
            words[..words.len().saturating_sub(1)]
                .iter()
                .map(|w| w.trim_end_matches('/').to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every file Cargo opens to read the workspace's manifests: each manifest, the lock
/// file, and the source file of every declared target.
fn manifest_needs() -> Vec<String> {
    let mut needed = vec!["Cargo.toml".to_owned(), "Cargo.lock".to_owned()];
    let root: toml::Table = std::fs::read_to_string(repo("Cargo.toml"))
        .expect("Cargo.toml")
        .parse()
        .expect("valid TOML");
    let members: Vec<String> = root["workspace"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m.as_str())
        .map(|m| m.trim_start_matches("./").to_owned())
        .collect();
    for member in members {
        let prefix = if member == "." {
            String::new()
        } else {
            format!("{member}/")
        };
        let manifest: toml::Table = std::fs::read_to_string(repo(&format!("{prefix}Cargo.toml")))
            .expect("member manifest")
            .parse()
            .expect("valid TOML");
        needed.push(format!("{prefix}Cargo.toml"));
        needed.push(format!("{prefix}src"));
        for (kind, dir) in [
            ("bench", "benches"),
            ("test", "tests"),
            ("example", "examples"),
            ("bin", "src/bin"),
        ] {
            for target in manifest
                .get(kind)
                .and_then(|t| t.as_array())
                .into_iter()
                .flatten()
            {
                let path = match (target.get("path"), target.get("name")) {
                    (Some(path), _) => path.as_str().unwrap_or_default().to_owned(),
                    (None, Some(name)) => format!("{dir}/{}.rs", name.as_str().unwrap_or("")),
                    (None, None) => continue,
                };
                needed.push(format!("{prefix}{path}"));
            }
        }
        if repo(&format!("{prefix}build.rs")).exists() {
            needed.push(format!("{prefix}build.rs"));
        }
    }
    needed
}

fn covered(path: &str, sources: &[String]) -> bool {
    sources
        .iter()
        .any(|s| s == "." || path == s || path.starts_with(&format!("{s}/")))
}

#[test]
fn the_containerfile_copies_every_path_the_manifests_need() {
    let stage = build_stage(&containerfile());
    let sources = copied(&stage);
    assert!(!sources.is_empty(), "no COPY in the build stage: {stage:?}");
    let needed = manifest_needs();
    assert!(
        needed.iter().any(|p| p.starts_with("benches/")),
        "the manifest's [[bench]] targets were not found: {needed:?}"
    );
    // The files the build stage checks with `bitsgate check --config FILE`.
    let checked: Vec<String> = stage
        .iter()
        .flat_map(|i| {
            i.split("--config ")
                .skip(1)
                .filter_map(|rest| rest.split_whitespace().next().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!checked.is_empty(), "the build stage checks no config");
    for path in needed.iter().chain(&checked) {
        assert!(repo(path).exists(), "{path} is not in the repository");
        assert!(
            covered(path, &sources),
            "{CONTAINERFILE} does not copy {path} (copies {sources:?})"
        );
    }
}

#[test]
fn the_image_checks_its_health_with_bitsgate_probe_not_curl() {
    let text = containerfile();
    let healthcheck: String = text
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .take_while(|l| l.starts_with("HEALTHCHECK") || l.starts_with("  CMD"))
        .collect();
    assert!(
        healthcheck.contains(r#""/usr/local/bin/bitsgate", "probe""#),
        "{healthcheck:?}"
    );
    let instructions = text.lines().filter(|l| !l.trim_start().starts_with('#'));
    assert!(
        !instructions.clone().any(|l| l.contains("curl")),
        "the image has no curl"
    );
    assert!(
        instructions
            .clone()
            .any(|l| l.contains("cargo build") && l.contains("--no-default-features")),
        "the image carries the production binary"
    );
}

#[test]
fn the_container_config_takes_the_admin_token_from_a_file_and_is_valid() {
    let text = std::fs::read_to_string(repo("deploy/container/bitsgate.toml")).unwrap();
    let config: toml::Table = text.parse().unwrap();
    let admin = config["admin"].as_table().expect("[admin]");
    assert!(admin.get("token").is_none(), "no token in the file itself");
    let token_file = admin["token_file"].as_str().expect("token_file");
    assert!(token_file.starts_with("/run/secrets/"), "{token_file}");

    // Checked as the build stage does: with a token file where the secret will be.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "container-test-token-0123456789\n").unwrap();
    let config = dir.path().join("bitsgate.toml");
    std::fs::write(
        &config,
        text.replace(token_file, token.to_str().expect("utf-8 path")),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_bitsgate"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("bitsgate runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_debian_unit_is_the_systemd_unit_with_the_packages_paths_and_account() {
    let from = |path: &str| -> String {
        let text = std::fs::read_to_string(repo(path)).expect("unit file");
        let start = text.find("[Unit]").expect("[Unit]");
        text[start..].to_owned()
    };
    let expected: String = from("deploy/systemd/bitsgate.service")
        .replace("/usr/local/bin/bitsgate", "/usr/bin/bitsgate")
        .lines()
        .filter(|line| *line != "DynamicUser=yes")
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        from("deploy/debian/bitsgate.service"),
        expected,
        "deploy/debian/bitsgate.service drifted from deploy/systemd/bitsgate.service"
    );
}

/// A container engine that answers, if any.
fn container_engine() -> Option<&'static str> {
    ["podman", "docker"].into_iter().find(|engine| {
        Command::new(engine)
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn the_image_builds_when_a_container_engine_is_present() {
    let Some(engine) = container_engine() else {
        eprintln!("no podman or docker daemon answers; the COPY check above stands in");
        return;
    };
    let mut build = Command::new(engine);
    build.arg("build");
    if engine == "podman" {
        build.args(["--format", "docker"]);
    }
    let output = build
        .args(["-f", CONTAINERFILE, "-t", "bitsgate:test", "."])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the engine runs");
    assert!(
        output.status.success(),
        "{engine} build failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
