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
        None
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
