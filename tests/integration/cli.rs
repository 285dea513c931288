//! The operator's commands (`bitsgate backends`, `sessions`, `drain`, `undrain`,
//! `cancel`, `reload`, `probe`) run as the real binary against a running bitsgate,
//! reading the admin address and token from a configuration file.

use crate::cluster::Cluster;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOKEN: &str = "cli-test-token-0123456789";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

fn bitsgate(args: &[&str]) -> Run {
    let output = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_bitsgate"))
            .args(args)
            .env_remove("BITSGATE_CONFIG")
            .output()
            .expect("bitsgate runs")
    });
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A configuration file as an operator has it: the running bitsgate's admin address
/// and the token in a file of its own.
fn client_config(dir: &Path, admin: SocketAddr, token: &str) -> PathBuf {
    client_config_with(dir, admin, token, "")
}

/// An operator's configuration file naming the admin address and a token file, with
/// `extra` keys of `[admin]`.
fn client_config_with(dir: &Path, admin: SocketAddr, token: &str, extra: &str) -> PathBuf {
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = dir.join("operator.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\naddress = \"{admin}\"\ntoken_file = \"{}\"\n{extra}",
            token_file.display()
        ),
    )
    .unwrap();
    config
}

fn with_config<'a>(args: &[&'a str], config: &'a Path) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.push("--config");
    all.push(config.to_str().expect("utf-8 path"));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_list_drain_undrain_cancel_and_reload_a_running_bitsgate() {
    let cluster = Cluster::new()
        .backends(3)
        .configured(2)
        .admin_token(TOKEN)
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = client_config(dir.path(), cluster.proxy.admin_addr, TOKEN);
    let session = cluster.create_session("/uploads/cli.bin").await;
    let owner = format!("b{}", cluster.owners_of(&session)[0]);
    let other = if owner == "b0" { "b1" } else { "b0" };

    let listed = bitsgate(&with_config(&["backends", "--json"], &config));
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let ids: Vec<String> = listed.json()["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| b["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids, ["b0", "b1"]);
    let table = bitsgate(&with_config(&["backends"], &config));
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.contains("ADDRESS"), "{}", table.stdout);
    assert!(table.stdout.contains("b1"), "{}", table.stdout);

    let sessions = bitsgate(&with_config(&["sessions", "--json"], &config));
    assert_eq!(sessions.code, 0, "{}", sessions.stderr);
    assert_eq!(sessions.json()["total"], 1);
    assert_eq!(sessions.json()["sessions"][0]["id"], session.as_str());
    let of_owner = bitsgate(&with_config(
        &["sessions", "--backend", &owner, "--json"],
        &config,
    ));
    assert_eq!(of_owner.json()["total"], 1, "{}", of_owner.stdout);
    let of_other = bitsgate(&with_config(
        &["sessions", "--backend", other, "--json"],
        &config,
    ));
    assert_eq!(of_other.json()["total"], 0, "{}", of_other.stdout);
    let table = bitsgate(&with_config(&["sessions"], &config));
    assert!(table.stdout.contains(&session), "{}", table.stdout);
    assert!(table.stdout.contains("1 session(s)"), "{}", table.stdout);

    let drained = bitsgate(&with_config(&["drain", other, "--json"], &config));
    assert_eq!(drained.code, 0, "{}", drained.stderr);
    assert_eq!(drained.json()["drain_admin"], true);
    let (_, backends) = cluster.admin_json("GET", "/backends", Some(TOKEN)).await;
    let state = |id: &str| {
        backends["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == id)
            .map(|b| b["state"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(state(other).as_deref(), Some("drained"));
    let undrained = bitsgate(&with_config(&["undrain", other], &config));
    assert_eq!(undrained.code, 0, "{}", undrained.stderr);
    assert!(undrained.stdout.contains("active"), "{}", undrained.stdout);
    let unknown = bitsgate(&with_config(&["undrain", "nosuch"], &config));
    assert_eq!(unknown.code, 1);
    assert!(unknown.stderr.contains("no backend"), "{}", unknown.stderr);

    let cancelled = bitsgate(&with_config(&["cancel", &session, "--json"], &config));
    assert_eq!(cancelled.code, 0, "{}", cancelled.stderr);
    assert_eq!(cancelled.json()["unpinned"], true);
    assert_eq!(cancelled.json()["cancel"]["status"], 200);
    let (status, _) = cluster
        .admin_json(
            "GET",
            &format!("/sessions/{}", encode(&session)),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 404, "the pin is gone");
    let again = bitsgate(&with_config(&["cancel", &session], &config));
    assert_eq!(again.code, 1, "{}", again.stdout);

    cluster.write_config(|_| true, "");
    let reloaded = bitsgate(&with_config(&["reload"], &config));
    assert_eq!(reloaded.code, 0, "{}", reloaded.stderr);
    assert!(reloaded.stdout.contains("added: b2"), "{}", reloaded.stdout);
    let listed = bitsgate(&with_config(&["backends", "--json"], &config));
    assert_eq!(listed.json()["backends"].as_array().map(Vec::len), Some(3));

    cluster.write_raw_config("[listener]\naddress = 1\n");
    let refused = bitsgate(&with_config(&["reload", "--json"], &config));
    assert_eq!(refused.code, 1);
    assert_eq!(refused.json()["outcome"], "refused");
    let refused = bitsgate(&with_config(&["reload"], &config));
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("listener"),
        "the error names the key: {}",
        refused.stderr
    );
}

fn encode(session: &str) -> String {
    session.replace('{', "%7B").replace('}', "%7D")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_send_the_token_from_the_file_and_reads_do_not_need_it() {
    let cluster = Cluster::new()
        .backends(2)
        .admin_token(TOKEN)
        .admin_config("protect_reads = false")
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = client_config_with(
        dir.path(),
        cluster.proxy.admin_addr,
        "wrong-token-0123456789",
        "protect_reads = false\n",
    );
    let refused = bitsgate(&with_config(&["drain", "b0"], &wrong));
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let (_, backends) = cluster.admin_json("GET", "/backends", None).await;
    assert_eq!(backends["backends"][0]["drain_admin"], false);

    // Without protect_reads, listing works even when the token file is unreadable.
    std::fs::remove_file(dir.path().join("admin-token")).unwrap();
    let listed = bitsgate(&with_config(&["backends"], &wrong));
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    // Session ids are capabilities: listing them always needs the token.
    let sessions = bitsgate(&with_config(&["sessions"], &wrong));
    assert_eq!(sessions.code, 64, "{}", sessions.stderr);
    let no_token = bitsgate(&with_config(&["drain", "b0"], &wrong));
    assert_eq!(
        no_token.code, 64,
        "an unreadable token file is a config error"
    );
    assert!(
        no_token.stderr.contains("token_file"),
        "{}",
        no_token.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_exits_0_while_bitsgate_answers_and_1_when_it_does_not() {
    let cluster = Cluster::new().backends(1).start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = client_config(dir.path(), cluster.proxy.admin_addr, TOKEN);
    let live = bitsgate(&with_config(&["probe"], &config));
    assert_eq!(live.code, 0, "{}", live.stderr);
    let ready = bitsgate(&with_config(&["probe", "--ready"], &config));
    assert_eq!(ready.code, 0, "{}", ready.stderr);

    // Alive but not ready once the only backend drains.
    let (status, _) = cluster.admin_json("POST", "/backends/b0/drain", None).await;
    assert_eq!(status, 200);
    let ready = bitsgate(&with_config(&["probe", "--ready"], &config));
    assert_eq!(ready.code, 1);
    assert!(ready.stderr.contains("503"), "{}", ready.stderr);
    let live = bitsgate(&with_config(&["probe"], &config));
    assert_eq!(live.code, 0, "{}", live.stderr);

    // Nothing listening: down.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = closed.local_addr().unwrap().to_string();
    drop(closed);
    let down = bitsgate(&["probe", "--admin", &nobody, "--timeout", "2s"]);
    assert_eq!(down.code, 1, "{}", down.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_man_pages_come_from_the_command_line_definition() {
    let bash = bitsgate(&["completions", "bash"]);
    assert_eq!(bash.code, 0, "{}", bash.stderr);
    for word in ["backends", "sessions", "undrain", "--json"] {
        assert!(bash.stdout.contains(word), "bash completion lacks {word}");
    }
    let zsh = bitsgate(&["completions", "zsh"]);
    assert!(zsh.stdout.contains("#compdef bitsgate"), "{}", zsh.stdout);

    let man = bitsgate(&["man"]);
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(
        man.stdout.starts_with(".ie"),
        "{}",
        &man.stdout[..80.min(man.stdout.len())]
    );
    assert!(man.stdout.contains(".TH bitsgate 1"), "roff title");
    assert!(
        man.stdout.contains("bitsgate\\-drain(1)"),
        "links the command pages"
    );

    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let written = bitsgate(&["man", "--dir", pages.to_str().unwrap()]);
    assert_eq!(written.code, 0, "{}", written.stderr);
    for page in ["bitsgate.1", "bitsgate-drain.1", "bitsgate-probe.1"] {
        assert!(pages.join(page).exists(), "{page} missing");
    }
}
