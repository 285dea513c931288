//! The load generator against the reference server on 127.0.0.1:0: its numbers must
//! agree with each other and with what the server counted.

use bits_testkit::load::{run, run_blocking, LoadConfig, LoadMode, LoadReport};
use bits_testkit::server::{spawn, ServerConfig, ServerHandle, TlsFiles};
use std::time::Duration;

async fn server(configure: impl FnOnce(&mut ServerConfig)) -> (tempfile::TempDir, ServerHandle) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    configure(&mut config);
    let handle = spawn(config).await.unwrap();
    (dir, handle)
}

/// Checks what must hold for any report.
fn assert_consistent(report: &LoadReport) {
    assert_eq!(
        report.requests,
        report.statuses.values().sum::<u64>() + failures(report)
    );
    assert!(report.elapsed_s > 0.0);
    let rps = report.requests as f64 / report.elapsed_s;
    assert!(
        (report.requests_per_s - rps).abs() < 1e-6 * rps.max(1.0),
        "{report:?}"
    );
    let mib_s = report.bytes as f64 / 1048576.0 / report.elapsed_s;
    assert!(
        (report.throughput_mib_s - mib_s).abs() < 1e-6 * mib_s.max(1.0),
        "{report:?}"
    );
    let l = report.latency_us;
    assert!(
        l.p50 > 0 && l.p50 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
        "{l:?}"
    );
    assert!(l.mean > 0.0 && l.mean <= l.max as f64, "{l:?}");
    // No request can take longer than the whole run.
    assert!(
        l.max as f64 <= report.elapsed_s * 1e6 * 1.01 + 1000.0,
        "{report:?}"
    );
}

/// Requests that got no response: the part of `errors` not explained by statuses.
fn failures(report: &LoadReport) -> u64 {
    let bad: u64 = report
        .statuses
        .iter()
        .filter(|(s, _)| **s >= 400 && **s != 416)
        .map(|(_, n)| n)
        .sum();
    report.errors - bad
}

#[tokio::test]
async fn an_upload_run_reports_non_zero_self_consistent_numbers() {
    let (dir, server) = server(|_| {}).await;
    let report = run(LoadConfig {
        mode: LoadMode::Upload {
            size: 64 * 1024,
            fragment_size: 16 * 1024,
        },
        uploads: 40,
        concurrency: 8,
        ..LoadConfig::new(format!("http://{}/load/", server.addr()))
    })
    .await
    .unwrap();
    assert_consistent(&report);
    assert_eq!((report.uploads_ok, report.uploads_failed), (40, 0));
    // Create-Session, 4 fragments and Close-Session per upload, all answered 200.
    assert_eq!(report.requests, 40 * 6);
    assert_eq!(report.statuses.get(&200), Some(&240));
    assert_eq!((report.errors, report.restarts, report.retries), (0, 0, 0));
    assert_eq!(report.bytes, 40 * 64 * 1024);
    assert!(report.throughput_mib_s > 0.0 && report.requests_per_s > 0.0);

    let stats = server.stats();
    assert_eq!(stats.packets.get("fragment"), Some(&160));
    assert_eq!(stats.sessions_closed, 40);
    assert_eq!(stats.bytes_received, report.bytes);
    let files = std::fs::read_dir(dir.path().join("load")).unwrap().count();
    assert_eq!(files, 40);
}

#[tokio::test]
async fn a_ping_run_sends_exactly_the_requested_pings() {
    let (_dir, server) = server(|_| {}).await;
    let report = run(LoadConfig {
        mode: LoadMode::Ping { requests: 500 },
        concurrency: 4,
        ..LoadConfig::new(format!("http://{}/ping", server.addr()))
    })
    .await
    .unwrap();
    assert_consistent(&report);
    assert_eq!(report.mode, "ping");
    assert_eq!(report.requests, 500);
    assert_eq!(report.statuses.get(&200), Some(&500));
    assert_eq!(server.stats().packets.get("ping"), Some(&500));
}

#[tokio::test]
async fn a_rate_holds_the_pings_back_to_their_schedule() {
    let (_dir, server) = server(|_| {}).await;
    let report = run(LoadConfig {
        mode: LoadMode::Ping { requests: 200 },
        concurrency: 4,
        rate: Some(1000.0),
        ..LoadConfig::new(format!("http://{}/", server.addr()))
    })
    .await
    .unwrap();
    assert_eq!(report.statuses.get(&200), Some(&200));
    // Ping 199 may not start before 199 ms; unpaced, 200 loopback Pings take a few.
    assert!(report.elapsed_s >= 0.199, "{report:?}");
}

#[tokio::test]
async fn pings_over_https_trust_the_given_ca_file() {
    let certs = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let (_dir, server) = server(|c| {
        c.tls = Some(TlsFiles {
            cert: cert_path.clone(),
            key: key_path,
        })
    })
    .await;
    let config = |ca_file| LoadConfig {
        mode: LoadMode::Ping { requests: 50 },
        concurrency: 2,
        ca_file,
        ..LoadConfig::new(format!("https://{}/", server.addr()))
    };
    let report = run(config(Some(cert_path))).await.unwrap();
    assert_consistent(&report);
    assert_eq!(report.statuses.get(&200), Some(&50), "{report:?}");
    // Without it the system's roots do not know the certificate: every Ping fails.
    let untrusted = run(config(None)).await.unwrap();
    assert_eq!(untrusted.errors, 50, "{untrusted:?}");
    assert_eq!(server.stats().packets.get("ping"), Some(&50));
}

#[tokio::test]
async fn two_hundred_concurrent_uploads_with_a_connection_per_packet() {
    let (_dir, server) = server(|_| {}).await;
    let report = run(LoadConfig {
        mode: LoadMode::Upload {
            size: 10_000,
            fragment_size: 4096,
        },
        uploads: 200,
        concurrency: 200,
        new_connection_per_packet: true,
        ..LoadConfig::new(format!("http://{}/many/{{n}}.bin", server.addr()))
    })
    .await
    .unwrap();
    assert_consistent(&report);
    assert_eq!((report.uploads_ok, report.errors), (200, 0), "{report}");
    assert_eq!(server.stats().sessions_closed, 200);
}

#[tokio::test]
async fn failed_uploads_are_counted_with_their_first_error() {
    let (_dir, server) = server(|c| c.max_upload = 100).await;
    let report = run(LoadConfig {
        mode: LoadMode::Upload {
            size: 1000,
            fragment_size: 1000,
        },
        uploads: 5,
        concurrency: 2,
        ..LoadConfig::new(format!("http://{}/big/", server.addr()))
    })
    .await
    .unwrap();
    assert_eq!((report.uploads_ok, report.uploads_failed), (0, 5));
    assert_eq!(report.errors, 5);
    assert!(
        report
            .first_error
            .as_deref()
            .unwrap()
            .contains("BG_E_TOO_LARGE"),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_duration_cap_stops_a_run_that_is_too_long_to_finish() {
    let (_dir, server) = server(|_| {}).await;
    let report = run(LoadConfig {
        mode: LoadMode::Ping { requests: u64::MAX },
        concurrency: 2,
        duration: Some(Duration::from_millis(200)),
        ..LoadConfig::new(format!("http://{}/", server.addr()))
    })
    .await
    .unwrap();
    assert!(report.requests > 0);
    assert!(report.elapsed_s < 30.0, "{report:?}");
}

#[test]
fn run_blocking_uses_a_single_thread_when_asked() {
    let server_runtime = tokio::runtime::Runtime::new().unwrap();
    let (_dir, server) = server_runtime.block_on(server(|_| {}));
    let report = run_blocking(LoadConfig {
        mode: LoadMode::Ping { requests: 100 },
        concurrency: 3,
        threads: Some(1),
        ..LoadConfig::new(format!("http://{}/", server.addr()))
    })
    .unwrap();
    assert_eq!(report.statuses.get(&200), Some(&100));
    drop(server);
}

#[tokio::test]
async fn invalid_configurations_are_refused_before_starting() {
    for config in [
        LoadConfig::new("ftp://nowhere/"),
        LoadConfig {
            concurrency: 0,
            ..LoadConfig::new("http://127.0.0.1:1/")
        },
        LoadConfig {
            mode: LoadMode::Upload {
                size: 1,
                fragment_size: 0,
            },
            ..LoadConfig::new("http://127.0.0.1:1/")
        },
        LoadConfig {
            rate: Some(0.0),
            ..LoadConfig::new("http://127.0.0.1:1/")
        },
        LoadConfig {
            rate: Some(f64::NAN),
            ..LoadConfig::new("http://127.0.0.1:1/")
        },
        LoadConfig {
            rate: Some(1e-300),
            ..LoadConfig::new("http://127.0.0.1:1/")
        },
        LoadConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..LoadConfig::new("https://127.0.0.1:1/")
        },
    ] {
        let refused = run(config).await;
        assert!(
            matches!(
                refused,
                Err(bits_testkit::load::LoadError::InvalidConfig(_))
            ),
            "{refused:?}"
        );
    }
}
