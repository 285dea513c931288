//! `bitsgate demo` as a process in its IIS-like modes: reference servers that want NTLM,
//! run upload-reply jobs and serve HTTPS with a certificate the demo makes, and one
//! upload through the demo's proxy in that mode.

use crate::cluster::{random_bytes, sha256};
use crate::process::{free_port, options, wait_listening, Proc};
use bits_testkit::client::{self, NoObserver, UploadOptions, UploadSource};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Waits until the demo has printed its banner (everything is started by then), and
/// returns what it printed.
fn wait_banner(stdout: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(stdout).unwrap_or_default();
        if text.contains("Press Ctrl-C to stop.") {
            return text;
        }
        assert!(Instant::now() < deadline, "the demo never started: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_with_ntlm_reply_and_backend_tls_completes_an_upload_reply_job() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = (free_port(), free_port());
    let stdout = dir.path().join("stdout");
    let _demo = Command::new(env!("CARGO_BIN_EXE_bitsgate"))
        .args(["demo", "--auth", "ntlm", "--reply", "--backend-tls"])
        .args(["--backends", "2", "--listen", &proxy.to_string()])
        .args(["--admin", &admin.to_string(), "--data-dir"])
        .arg(dir.path().join("demo"))
        // The reference servers log each connection that authenticates.
        .env("BITSGATE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .map(Proc)
        .expect("bitsgate demo starts");
    let banner = tokio::task::block_in_place(|| wait_banner(&stdout));
    tokio::task::block_in_place(|| wait_listening(proxy));
    assert!(
        banner.contains("backend b1   https://127.0.0.1:"),
        "{banner}"
    );
    assert!(banner.contains("--ntlm-user"), "{banner}");
    assert!(banner.contains("--reply"), "{banner}");

    let data = random_bytes(100_000, 11);
    let options = UploadOptions {
        ntlm_user: Some("DEMO\\alice".into()),
        upload_reply: true,
        ..options()
    };
    let report = client::upload(
        &format!("http://{proxy}/uploads/demo.bin"),
        UploadSource::Bytes(data.clone()),
        &options,
        &NoObserver,
    )
    .await
    .expect("the upload-reply job completes through the demo");
    assert!(report.close_acknowledged);
    let reply_url = report.reply_url.expect("a reply URL");
    assert!(
        reply_url.starts_with(&format!("http://{proxy}/")),
        "{reply_url}"
    );
    assert!(report.reply.is_some_and(|r| !r.is_empty()), "a reply");

    let landed: Vec<String> = ["b1", "b2"]
        .iter()
        .filter_map(|b| {
            std::fs::read(dir.path().join("demo").join(b).join("uploads/demo.bin")).ok()
        })
        .map(|bytes| sha256(&bytes))
        .collect();
    assert_eq!(landed, vec![sha256(&data)]);
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(
        log.contains("connection authenticated") && log.contains("DEMO\\alice"),
        "the backends asked for NTLM: {log}"
    );
}
