//! The numbers on /metrics after a known upload.

use crate::cluster::{options, random_bytes, sample, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_upload_exactly() {
    let cluster = Cluster::new().backends(2).start().await;
    let size = 1_000_000u64;
    let data = random_bytes(size as usize, 61);
    let mut opts = options(100_000);
    opts.ping = false;
    let report = cluster
        .upload("/uploads/m.bin", &data, &opts)
        .await
        .expect("upload");
    assert_eq!(report.fragments, 10);
    let owner = cluster.owners_of(report.session_id.as_deref().unwrap())[0];
    let b = format!("b{owner}");
    // The Close-Session is the last request; once it is counted, every other is too.
    let metrics = cluster
        .metrics_when(
            &format!(
                "bitsgate_requests_total{{backend=\"{b}\",class=\"2xx\",packet=\"close_session\"}}"
            ),
            1.0,
        )
        .await;
    let value =
        |name: &str| sample(&metrics, name).unwrap_or_else(|| panic!("{name} missing:\n{metrics}"));

    assert_eq!(
        value(&format!(
            "bitsgate_requests_total{{backend=\"{b}\",class=\"2xx\",packet=\"create_session\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(&format!(
            "bitsgate_requests_total{{backend=\"{b}\",class=\"2xx\",packet=\"fragment\"}}"
        )),
        10.0
    );
    assert_eq!(
        value(&format!(
            "bitsgate_requests_total{{backend=\"{b}\",class=\"2xx\",packet=\"close_session\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(&format!("bitsgate_uploaded_bytes_total{{backend=\"{b}\"}}")),
        size as f64
    );
    assert_eq!(
        value(&format!(
            "bitsgate_sessions_created_total{{backend=\"{b}\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(&format!(
            "bitsgate_sessions_ended_total{{backend=\"{b}\",reason=\"closed\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(&format!("bitsgate_sessions_active{{backend=\"{b}\"}}")),
        0.0
    );
    assert_eq!(value("bitsgate_pinned_sessions"), 0.0);
    assert_eq!(
        value("bitsgate_request_duration_seconds_count{packet=\"fragment\"}"),
        10.0
    );
    assert_eq!(
        value(&format!("bitsgate_backend_up{{backend=\"{b}\"}}")),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "bitsgate_local_acks_total{reason=\"session_not_found\"}"
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_session_shows_as_active_and_pinned() {
    let cluster = Cluster::new().backends(1).start().await;
    let response = cluster
        .send(
            &bits_testkit::client::raw::RawRequest::bits(
                bits_proto::PacketType::CreateSession,
                "/x",
            )
            .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL),
        )
        .await;
    assert_eq!(response.status, 200);
    let metrics = cluster.metrics().await;
    assert_eq!(sample(&metrics, "bitsgate_pinned_sessions"), Some(1.0));
    assert_eq!(
        sample(&metrics, "bitsgate_sessions_active{backend=\"b0\"}"),
        Some(1.0)
    );
}
/// Event series of one backend that dashboards and alerts take `rate()` or
/// `increase()` of: they must exist before the first event.
fn event_series_of(backend: &str) -> Vec<String> {
    [
        "bitsgate_backend_transitions_total{{backend=\"{b}\",to=\"down\"}}",
        "bitsgate_backend_transitions_total{{backend=\"{b}\",to=\"up\"}}",
        "bitsgate_upstream_connect_failures_total{{backend=\"{b}\"}}",
        "bitsgate_requests_total{{backend=\"{b}\",class=\"5xx\",packet=\"fragment\"}}",
        "bitsgate_uploaded_bytes_total{{backend=\"{b}\"}}",
        "bitsgate_sessions_created_total{{backend=\"{b}\"}}",
        "bitsgate_sessions_ended_total{{backend=\"{b}\",reason=\"not_found\"}}",
    ]
    .iter()
    .map(|pattern| {
        pattern
            .replace("{b}", backend)
            .replace("{{", "{")
            .replace("}}", "}")
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_has_its_event_series_at_zero_from_start_and_from_a_reload() {
    let cluster = Cluster::new().backends(2).configured(1).start().await;
    let metrics = cluster.metrics().await;
    for series in event_series_of("b0") {
        assert_eq!(sample(&metrics, &series), Some(0.0), "{series}:\n{metrics}");
    }
    for series in event_series_of("b1") {
        assert_eq!(sample(&metrics, &series), None, "b1 is not configured yet");
    }

    cluster.reconfigure(|_| true);
    let metrics = cluster.metrics().await;
    for series in event_series_of("b1") {
        assert_eq!(sample(&metrics, &series), Some(0.0), "{series}:\n{metrics}");
    }
    assert_eq!(
        sample(&metrics, "bitsgate_backend_retired{backend=\"b1\"}"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_retired_by_a_reload_is_marked_retired() {
    let cluster = Cluster::new().backends(2).start().await;
    let session = cluster.create_session("/uploads/r.bin").await;
    let owner = cluster.owners_of(&session)[0];
    let other = 1 - owner;
    cluster.write_config(|i| i != owner, "");
    let (status, body) = cluster.admin_json("POST", "/config/reload", None).await;
    assert_eq!(status, 200, "{body}");
    let metrics = cluster.metrics().await;
    let retired = |i: usize| {
        sample(
            &metrics,
            &format!("bitsgate_backend_retired{{backend=\"b{i}\"}}"),
        )
    };
    assert_eq!(retired(owner), Some(1.0), "{metrics}");
    assert_eq!(retired(other), Some(0.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_table_limit_is_exported_beside_its_fill() {
    let cluster = Cluster::new()
        .backends(1)
        .config("[sessions]\nmax_pinned = 1234")
        .start()
        .await;
    let metrics = cluster.metrics().await;
    assert_eq!(
        sample(&metrics, "bitsgate_max_pinned_sessions"),
        Some(1234.0)
    );
    assert_eq!(sample(&metrics, "bitsgate_pinned_sessions"), Some(0.0));
}

#[test]
fn every_metric_name_is_documented() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let doc = std::fs::read_to_string(&path).expect("docs/metrics.md exists");
    for name in bitsgate::metrics::names::ALL {
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} is not in docs/metrics.md"
        );
    }
}
