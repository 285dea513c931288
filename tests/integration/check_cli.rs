//! `bitsgate check` on the shipped configs and on the broken ones in config/invalid/.

use std::path::Path;
use std::process::Command;

fn check(path: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_bitsgate"))
        .args(["check", "--config"])
        .arg(path)
        .output()
        .expect("bitsgate runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_shipped_configs_are_valid() {
    for file in ["config/bitsgate.toml", "config/minimal.toml"] {
        let (code, text) = check(&repo(file));
        assert_eq!(code, 0, "{file}: {text}");
    }
}

#[test]
fn every_broken_config_is_refused_with_exit_64_and_its_expected_messages() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo("config/invalid")).expect("config/invalid") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        seen += 1;
        let contents = std::fs::read_to_string(&path).expect("readable");
        let expected: Vec<&str> = contents
            .lines()
            .filter_map(|line| line.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no '# expect:' lines",
            path.display()
        );
        let (code, text) = check(&path);
        assert_eq!(code, 64, "{}: {text}", path.display());
        for message in expected {
            assert!(
                text.contains(message),
                "{}: missing {message:?} in:\n{text}",
                path.display()
            );
        }
    }
    assert!(seen >= 5, "only {seen} invalid configs");
}

#[test]
fn a_missing_file_is_reported_not_a_panic() {
    let (code, text) = check(Path::new("/nonexistent/bitsgate.toml"));
    assert_eq!(code, 64);
    assert!(text.contains("cannot read"), "{text}");
}

#[test]
fn check_names_an_admin_api_left_open_on_purpose() {
    let path =
        std::env::temp_dir().join(format!("bitsgate-open-admin-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[admin]\naddress = \"0.0.0.0:9090\"\nallow_unauthenticated = true\n\
         [[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:8081\"\n",
    )
    .expect("write");
    let (code, text) = check(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(
            "warning: admin.allow_unauthenticated: the admin API on 0.0.0.0:9090 needs no token"
        ),
        "{text}"
    );
}

#[test]
fn passthrough_mode_passes_with_a_warning_that_expiry_does_not_cancel() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("passthrough.toml");
    std::fs::write(
        &path,
        "[host_id]\nmode = \"passthrough\"\n[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:8081\"\n",
    )
    .expect("config file");
    let (code, text) = check(&path);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("warning: host_id.mode: \"passthrough\"")
            && text.contains("never sends Cancel-Session at expiry"),
        "{text}"
    );
    let (code, text) = check(&repo("config/bitsgate.toml"));
    assert_eq!(code, 0);
    assert!(!text.contains("warning:"), "{text}");
}
