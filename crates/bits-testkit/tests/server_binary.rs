//! The `bits-server` program: prints its addresses, serves, stops on SIGTERM.

#[path = "server_support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use support::*;

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_each_listening_address_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bits-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--name",
            "cli-node",
        ])
        .arg("--root")
        .arg(dir.path().join("root"))
        .args(["--host-id", "cli-host", "--host-id-fallback-timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bits-server");
    let stdout = child.stdout.take().expect("stdout");
    // Blocking reads are fine here: the program prints right after binding.
    let addrs: Vec<SocketAddr> = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(2)
            .map(|line| {
                let line = line.expect("line");
                let addr = line.strip_prefix("listening on ").expect("listening line");
                addr.parse().expect("address")
            })
            .collect()
    })
    .await
    .unwrap();
    assert_eq!(addrs.len(), 2);
    let resp = create(addrs[1], "/cli.bin").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Server"), Some("cli-node"));
    assert_eq!(resp.header("BITS-Host-Id"), Some("cli-host"));
    let id = resp.session();
    assert_eq!(
        fragment(addrs[0], "/cli.bin", &id, 0, 2, b"hi")
            .await
            .status,
        200
    );
    assert_eq!(close(addrs[0], "/cli.bin", &id).await.status, 200);
    assert_eq!(
        std::fs::read(dir.path().join("root/cli.bin")).unwrap(),
        b"hi"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .expect("wait");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}
