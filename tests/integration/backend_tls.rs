//! HTTPS to the backends: reference servers with certificates made here (a CA the
//! proxy trusts, and one it does not), uploads over verified TLS, and a backend
//! whose certificate fails verification getting no request at all.

use crate::cluster::{eventually, options, random_bytes, sample, sha256, Cluster};
use bits_proto::PacketType;
use bits_testkit::client::raw::RawRequest;
use bits_testkit::server::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Certificates for one test: `ca.pem` (trusted by the proxy), `good.pem` (a leaf
/// for 127.0.0.1 from it), `rogue.pem` (a leaf for 127.0.0.1 from an unknown CA) and
/// `client.pem` (a client certificate from the trusted CA), each with its `-key.pem`.
struct Pki {
    dir: tempfile::TempDir,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let trusted = ca("bitsgate test CA");
        let unknown = ca("somebody else's CA");
        std::fs::write(pki.path("ca.pem"), trusted.pem()).expect("ca.pem");
        pki.leaf("good", &trusted, "127.0.0.1");
        pki.leaf("rogue", &unknown, "127.0.0.1");
        pki.leaf("client", &trusted, "bitsgate.client.example");
        pki
    }

    fn leaf(&self, name: &str, issuer: &CertifiedIssuer<'static, KeyPair>, san: &str) {
        let params = CertificateParams::new(vec![san.to_owned()]).expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, issuer).expect("leaf");
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).expect("leaf file");
        std::fs::write(self.path(&format!("{name}-key.pem")), key.serialize_pem())
            .expect("key file");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn files(&self, name: &str) -> TlsFiles {
        TlsFiles {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}-key.pem")),
        }
    }

    /// `[upstream]` keys that trust this CA.
    fn upstream(&self) -> String {
        format!("ca_file = {:?}", path_text(&self.path("ca.pem")))
    }
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}

/// Two HTTPS backends: `b0` with a certificate from the trusted CA, `b1` with
/// `b1_cert` (`good` or `rogue`).
async fn cluster(pki: &Pki, b1_cert: &'static str, extra: &str) -> Cluster {
    let files = [pki.files("good"), pki.files(b1_cert)];
    Cluster::new()
        .backends(2)
        .server(move |i, config| config.tls = Some(files[i].clone()))
        .upstream_config(&pki.upstream())
        .backend_keys(|_| "tls = true".into())
        .config(extra)
        .start()
        .await
}

fn tls_failures(backend: &str, reason: &str) -> String {
    format!("bitsgate_upstream_tls_failures_total{{backend=\"{backend}\",reason=\"{reason}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_reach_only_the_backend_whose_certificate_verifies() {
    let pki = Pki::new();
    let cluster = cluster(&pki, "rogue", "").await;
    // Round robin offers every other Create-Session to b1: each must end up on b0.
    for i in 0..4 {
        let path = format!("/uploads/tls-{i}.bin");
        let data = random_bytes(5000, 40 + i);
        let report = cluster
            .upload(&path, &data, &options(2000))
            .await
            .expect("upload through bitsgate to an HTTPS backend");
        assert_eq!(report.restarts, 0);
        assert_eq!(cluster.committed_sha256(&path), vec![sha256(&data)]);
    }
    let good = cluster.stats(0);
    assert!(good.requests_total >= 4 * 4, "{good:?}");
    assert!(
        good.connections.values().all(|c| c.tls),
        "every connection to b0 was TLS: {good:?}"
    );
    let rogue = cluster.stats(1);
    assert_eq!(rogue.requests_total, 0, "b1 received nothing: {rogue:?}");
    let metrics = cluster.metrics().await;
    let failed = sample(&metrics, &tls_failures("b1", "unknown_issuer")).unwrap_or(0.0);
    assert!(failed >= 1.0, "{metrics}");
    assert_eq!(
        sample(&metrics, &tls_failures("b0", "unknown_issuer")),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_packet_for_an_owner_that_fails_verification_gets_503_without_a_bits_error() {
    let pki = Pki::new();
    let mut cluster = cluster(&pki, "good", "").await;
    // Find a session that b1 owns (round robin alternates).
    let mut owned = None;
    for _ in 0..4 {
        let session = cluster.create_session("/uploads/pinned.bin").await;
        if cluster.owners_of(&session) == vec![1] {
            owned = Some(session);
            break;
        }
    }
    let session = owned.expect("b1 owns one of the sessions");

    // b1 comes back with a certificate from a CA bitsgate does not trust.
    cluster.stop_backend(1).await;
    let rogue = pki.files("rogue");
    std::fs::copy(&rogue.cert, pki.path("good.pem")).expect("swap cert");
    std::fs::copy(&rogue.key, pki.path("good-key.pem")).expect("swap key");
    cluster.restart_backend(1).await;
    // Let the pool notice that b1's old connections are closed.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let data = random_bytes(1000, 7);
    let fragment = RawRequest::fragment("/uploads/pinned.bin", &session, 0, data, 1000);
    let answer = cluster.send(&fragment).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(
        answer.ack().error_code,
        None,
        "the client keeps its session"
    );
    assert_eq!(cluster.stats(1).requests_total, 0, "b1 received nothing");
    assert_eq!(cluster.stats(0).packets.get("fragment"), None, "nor did b0");
    cluster
        .metrics_when(&tls_failures("b1", "unknown_issuer"), 1.0)
        .await;

    // A Ping goes to the backend that verifies.
    let ping = cluster
        .send(&RawRequest::bits(PacketType::Ping, "/uploads/"))
        .await;
    assert_eq!(ping.status, 200, "{ping:?}");
    assert_eq!(
        cluster.stats(1).requests_total,
        0,
        "b1 still received nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_over_tls_keep_the_verified_backend_up_and_take_the_other_down() {
    let pki = Pki::new();
    let health = "[health_check]\nkind = \"bits_ping\"\ninterval = \"100ms\"\ntimeout = \"1s\"\nhealthy_threshold = 1\nunhealthy_threshold = 1\npassive_failures = 0";
    let cluster = cluster(&pki, "rogue", health).await;
    let up = |b: &str| format!("bitsgate_backend_up{{backend=\"{b}\"}}");
    cluster.metrics_when(&up("b1"), 0.0).await;
    // b0 answered pings over TLS and stays up.
    eventually("b0 answered a probe", Duration::from_secs(5), || {
        cluster.stats(0).packets.get("ping").copied().unwrap_or(0) >= 2
    })
    .await;
    let metrics = cluster.metrics().await;
    assert_eq!(sample(&metrics, &up("b0")), Some(1.0), "{metrics}");
    assert_eq!(cluster.stats(1).requests_total, 0, "b1 received nothing");
    let failed = sample(&metrics, &tls_failures("b1", "unknown_issuer")).unwrap_or(0.0);
    assert!(failed >= 1.0, "probes count too: {metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_server_name_fails_verification_and_a_client_certificate_loads() {
    let pki = Pki::new();
    let client = format!(
        "client_cert = {:?}\nclient_key = {:?}",
        path_text(&pki.path("client.pem")),
        path_text(&pki.path("client-key.pem"))
    );
    let files = pki.files("good");
    let cluster = Cluster::new()
        .backends(1)
        .server(move |_, config| config.tls = Some(files.clone()))
        .upstream_config(&format!("{}\n{client}", pki.upstream()))
        .backend_keys(|_| "tls = true\ntls_server_name = \"iis9.corp.example\"".into())
        .start()
        .await;
    let ping = cluster
        .send(&RawRequest::bits(PacketType::Ping, "/uploads/"))
        .await;
    assert_eq!(ping.status, 503, "{ping:?}");
    assert_eq!(cluster.stats(0).requests_total, 0, "b0 received nothing");
    cluster
        .metrics_when(&tls_failures("b0", "wrong_name"), 1.0)
        .await;
    let tls = &cluster.proxy.shared.generation().config.upstream.tls;
    assert!(tls.client.is_some(), "the client certificate is loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_requires_a_client_certificate_gets_bitsgates() {
    let pki = Pki::new();
    let client = format!(
        "client_cert = {:?}\nclient_key = {:?}",
        path_text(&pki.path("client.pem")),
        path_text(&pki.path("client-key.pem"))
    );
    // b0 asks for a client certificate from the farm's CA; bitsgate presents one.
    let start = |upstream: String| {
        let (files, ca) = (pki.files("good"), pki.path("ca.pem"));
        Cluster::new()
            .backends(1)
            .server(move |_, config| {
                config.tls = Some(files.clone());
                config.tls_client_ca = Some(ca.clone());
            })
            .upstream_config(&upstream)
            .backend_keys(|_| "tls = true".into())
            .start()
    };
    let cluster = start(format!("{}\n{client}", pki.upstream())).await;
    let data = random_bytes(3000, 5);
    cluster
        .upload("/uploads/mtls.bin", &data, &options(1000))
        .await
        .expect("upload with a client certificate");
    assert_eq!(
        cluster.committed_sha256("/uploads/mtls.bin"),
        vec![sha256(&data)]
    );
    drop(cluster);

    // Without one, the backend serves nothing. With TLS 1.3 the backend refuses the
    // certificate only after bitsgate's side of the handshake is done, at the first
    // read: the client gets what a failed connect gets (no other backend: 503), and
    // the failure is counted as a TLS failure of b0.
    let cluster = start(pki.upstream()).await;
    let ping = cluster
        .send(&RawRequest::bits(PacketType::Ping, "/uploads/"))
        .await;
    assert_eq!(ping.status, 503, "{ping:?}");
    assert_eq!(cluster.stats(0).requests_total, 0, "b0 served nothing");
    let metrics = cluster.metrics().await;
    assert_eq!(
        sample(&metrics, &tls_failures("b0", "handshake")),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitsgates_own_cancel_session_travels_over_verified_tls() {
    let pki = Pki::new();
    let cluster = cluster(&pki, "good", "").await;
    let session = cluster.create_session("/uploads/cancelled.bin").await;
    let owner = cluster.owners_of(&session)[0];
    let encoded = session.replace('{', "%7B").replace('}', "%7D");
    let (status, body) = cluster
        .admin_json("DELETE", &format!("/sessions/{encoded}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cancel"]["status"], 200, "{body}");
    let stats = cluster.stats(owner);
    assert_eq!(stats.sessions[&session].state, "cancelled");
    assert!(stats.connections.values().all(|c| c.tls), "{stats:?}");
}
