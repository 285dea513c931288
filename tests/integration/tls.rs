//! HTTPS on the listener: a BITS Ping over TLS reaches a backend and comes back as an Ack.

use crate::cluster::{access_log_clients, eventually, Cluster};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// Accepts exactly the test certificate (pinned), checking the handshake signatures.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the test certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client trusting only the test certificate.
fn client_config() -> rustls::ClientConfig {
    let pem = std::fs::read(fixture("cert.pem")).unwrap();
    let cert = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { cert, provider }))
        .with_no_client_auth()
}

/// Sends `request` over TLS (trusting only the test certificate) and reads the answer
/// until the server closes.
async fn exchange_over_tls(addr: std::net::SocketAddr, request: &'static [u8]) -> String {
    exchange_over_tls_after(addr, &[], Preamble::Alone, request).await
}

/// How a preamble travels.
#[derive(Clone, Copy)]
enum Preamble {
    /// In a write of its own.
    Alone,
    /// In one write with the TLS ClientHello that follows it.
    WithClientHello,
}

/// As [`exchange_over_tls`], with `preamble` (a PROXY protocol header) written on the
/// TCP connection before the TLS handshake.
async fn exchange_over_tls_after(
    addr: std::net::SocketAddr,
    preamble: &'static [u8],
    how: Preamble,
    request: &'static [u8],
) -> String {
    exchange_and_close(addr, preamble, how, request).await.0
}

/// The exchange of [`exchange_over_tls_after`]: the answer, and whether the server's
/// close was a TLS close (close_notify) rather than a bare TCP close.
async fn exchange_and_close(
    addr: std::net::SocketAddr,
    preamble: &'static [u8],
    how: Preamble,
    request: &'static [u8],
) -> (String, Result<(), String>) {
    let config = client_config();
    tokio::task::spawn_blocking(move || {
        let mut connection =
            rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap())
                .unwrap();
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        match how {
            Preamble::Alone => socket.write_all(preamble).unwrap(),
            Preamble::WithClientHello => {
                let mut first = preamble.to_vec();
                connection.write_tls(&mut first).unwrap();
                socket.write_all(&first).unwrap();
            }
        }
        let mut tls = rustls::Stream::new(&mut connection, &mut socket);
        // A server that refuses the handshake (closes) answers nothing.
        if let Err(e) = tls.write_all(request) {
            return (String::new(), Err(e.to_string()));
        }
        let mut answer = Vec::new();
        let closed = tls
            .read_to_end(&mut answer)
            .map(drop)
            .map_err(|e| e.to_string());
        (String::from_utf8_lossy(&answer).into_owned(), closed)
    })
    .await
    .unwrap()
}

fn tls_files(section: &str) -> String {
    format!(
        "[{section}]\ncert_path = {:?}\nkey_path = {:?}",
        fixture("cert.pem").display().to_string(),
        fixture("key.pem").display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_speaks_https_when_given_a_certificate() {
    let token = "0123456789abcdef0123";
    let cluster = Cluster::new()
        .backends(1)
        .admin_token(token)
        .admin_config(&tls_files("admin.tls"))
        .start()
        .await;
    let probe = exchange_over_tls(
        cluster.admin_addr(),
        b"GET /readyz/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(probe.starts_with("HTTP/1.1 200"), "{probe}");
    let sessions = exchange_over_tls(
        cluster.admin_addr(),
        b"GET /sessions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(sessions.starts_with("HTTP/1.1 401"), "{sessions}");
    // Plain HTTP on the HTTPS admin port gets no answer.
    let plain = bits_testkit::client::raw::send(
        cluster.admin_addr(),
        &bits_testkit::client::raw::RawRequest::new("GET", "/livez"),
    )
    .await;
    assert!(plain.is_err(), "{plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bits_ping_over_tls_is_proxied_to_a_backend() {
    let cluster = Cluster::new()
        .backends(1)
        .config(&tls_files("listener.tls"))
        .start()
        .await;
    let response = exchange_over_tls(
        cluster.proxy_addr(),
        b"BITS_POST /uploads/t.bin HTTP/1.1\r\nHost: localhost\r\nBITS-Packet-Type: Ping\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("bits-packet-type: ack"),
        "{response}"
    );
    assert_eq!(cluster.stats(0).packets.get("ping"), Some(&1));
    // BITS packets over TLS take the fast path, as over plain TCP.
    cluster
        .metrics_when("bitsgate_fast_path_requests_total", 1.0)
        .await;
}

/// A whole upload over TLS, fragments of 64 KiB and more (the size plain TCP would
/// splice) and a last short one, kept alive: byte-identical on one backend, every
/// packet on the fast path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_tls_takes_the_fast_path_and_arrives_intact() {
    use bits_testkit::client::UploadOptions;
    // A leaf for localhost that the client trusts as it is (the fixture is a CA
    // certificate, which the client's verifier refuses as a server's).
    let dir = tempfile::tempdir().expect("temp dir");
    let leaf = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("leaf");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, leaf.cert.pem()).expect("cert.pem");
    std::fs::write(&key, leaf.signing_key.serialize_pem()).expect("key.pem");
    let cluster = Cluster::new()
        .backends(2)
        .config(&format!(
            "[listener.tls]\ncert_path = {:?}\nkey_path = {:?}",
            cert.display().to_string(),
            key.display().to_string()
        ))
        .start()
        .await;
    let data = crate::cluster::random_bytes((300 << 10) + 77, 15);
    let options = UploadOptions {
        fragment_size: 100 << 10,
        ca_file: Some(cert.clone()),
        ..UploadOptions::default()
    };
    let url = format!(
        "https://localhost:{}/uploads/tls.bin",
        cluster.proxy_addr().port()
    );
    let report = bits_testkit::client::upload(
        &url,
        bits_testkit::client::UploadSource::Bytes(data.clone()),
        &options,
        &bits_testkit::client::NoObserver,
    )
    .await
    .expect("the upload completes");
    assert_eq!(report.restarts, 0);
    assert_eq!(
        cluster.committed_sha256("/uploads/tls.bin"),
        vec![crate::cluster::sha256(&data)]
    );
    // Ping, Create-Session, four Fragments, Close-Session.
    let metrics = cluster
        .metrics_when("bitsgate_fast_path_requests_total", 7.0)
        .await;
    assert_eq!(
        crate::cluster::sample(&metrics, "bitsgate_fast_path_spliced_bytes_total"),
        Some(0.0),
        "no splice(2) under TLS"
    );
}

/// Exactly one client connection was closed for `reason`.
async fn assert_closed_once(cluster: &Cluster, reason: &str) {
    let metrics = cluster.metrics().await;
    let name = format!("bitsgate_client_connections_closed_total{{reason=\"{reason}\"}}");
    assert_eq!(
        crate::cluster::sample(&metrics, &name),
        Some(1.0),
        "{metrics}"
    );
}

const PING_CLOSE: &[u8] = b"BITS_POST /uploads/t.bin HTTP/1.1\r\nHost: localhost\r\nBITS-Packet-Type: Ping\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_before_the_tls_handshake_names_the_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.log");
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("proxy_protocol = true")
        .config(&format!(
            "{}\n[log]\naccess = {:?}\n",
            tls_files("listener.tls"),
            log.display().to_string()
        ))
        .start()
        .await;
    let addr = cluster.proxy_addr();
    let v1: &[u8] = b"PROXY TCP4 192.0.2.7 127.0.0.1 50123 443\r\n";
    let answer = exchange_over_tls_after(addr, v1, Preamble::Alone, PING_CLOSE).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The TLS bytes read with the header open the handshake.
    let answer = exchange_over_tls_after(addr, v1, Preamble::WithClientHello, PING_CLOSE).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Without the header, the TLS bytes are not a PROXY header: closed, nothing sent.
    let refused = exchange_over_tls_after(addr, &[], Preamble::Alone, PING_CLOSE).await;
    assert!(refused.is_empty(), "{refused}");
    assert_eq!(cluster.stats(0).packets.get("ping"), Some(&2));
    eventually(
        "two access-log lines",
        std::time::Duration::from_secs(10),
        || access_log_clients(&log).len() >= 2,
    )
    .await;
    assert_eq!(
        access_log_clients(&log),
        vec!["192.0.2.7:50123".to_owned(); 2]
    );
    assert_closed_once(&cluster, "proxy_header_invalid").await;
}

/// A TLS listener with a one-second `header_timeout`; a connection to it that sends
/// `first` and then nothing is closed after that second, and counted.
async fn closed_at_the_header_timeout_after(first: &[u8]) -> Cluster {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("header_timeout = \"1s\"")
        .config(&tls_files("listener.tls"))
        .start()
        .await;
    let started = std::time::Instant::now();
    let mut stalled = tokio::net::TcpStream::connect(cluster.proxy_addr())
        .await
        .expect("connects");
    stalled.write_all(first).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stalled.read(&mut byte))
        .await
        .expect("closed at the header timeout, well before any limit of rustls's own");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900)
            && waited < std::time::Duration::from_secs(5),
        "{waited:?}"
    );
    assert_closed_once(&cluster, "header_timeout").await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_to_the_tls_listener_is_closed_after_the_header_timeout() {
    let cluster = closed_at_the_header_timeout_after(&[]).await;
    // A real client still gets through.
    let answer = exchange_over_tls(cluster.proxy_addr(), PING_CLOSE).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_stalls_is_cut_at_the_header_timeout() {
    // The start of a ClientHello record, whose rest never comes.
    closed_at_the_header_timeout_after(&[0x16, 0x03, 0x01, 0x02, 0x00]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_owes_its_first_request_header_timeout_after_accept() {
    let cluster = Cluster::new()
        .backends(1)
        .listener_config("header_timeout = \"2s\"")
        .config(&tls_files("listener.tls"))
        .start()
        .await;
    // The handshake starts 1.5 s after connecting (in time) and then no request
    // comes: the connection closes 2 s after accept, not 2 s after the handshake.
    let config = client_config();
    let addr = cluster.proxy_addr();
    let waited = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let mut connection =
            rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap())
                .unwrap();
        while connection.is_handshaking() {
            connection.complete_io(&mut socket).expect("handshake");
        }
        let mut tls = rustls::Stream::new(&mut connection, &mut socket);
        let mut rest = Vec::new();
        // A TLS close (close_notify), not a truncation, which rustls reports as an error.
        tls.read_to_end(&mut rest)
            .expect("closed with a close_notify");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(
        waited >= std::time::Duration::from_millis(1900)
            && waited < std::time::Duration::from_millis(2900),
        "closed {waited:?} after connecting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_listener_is_counted_and_a_bare_connect_or_reset_is_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = Cluster::new()
        .backends(1)
        .config(&tls_files("listener.tls"))
        .start()
        .await;
    // A load balancer's TCP health checks: connect, then close, or reset (HAProxy's).
    drop(
        tokio::net::TcpStream::connect(cluster.proxy_addr())
            .await
            .expect("connects"),
    );
    let reset = tokio::net::TcpStream::connect(cluster.proxy_addr())
        .await
        .expect("connects");
    reset.set_zero_linger().unwrap();
    drop(reset);
    let mut plain = tokio::net::TcpStream::connect(cluster.proxy_addr())
        .await
        .expect("connects");
    plain.write_all(PING_CLOSE).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        plain.read_to_end(&mut answer),
    )
    .await
    .expect("the connection closes");
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"),
        "{answer:?}"
    );
    assert_closed_once(&cluster, "tls_handshake_failed").await;
    assert_eq!(cluster.stats(0).packets.get("ping"), None);
}

/// Every way a TLS connection can end after a request: the fast path, Pingora's
/// proxy, answers bitsgate makes itself, and Pingora's error answer when no backend
/// is up, which it ends by dropping the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tls_connection_bitsgate_ends_ends_with_a_close_notify() {
    let mut cluster = Cluster::new()
        .backends(1)
        .config(&tls_files("listener.tls"))
        .start()
        .await;
    let get: &[u8] = b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let http10: &[u8] = b"GET /x HTTP/1.0\r\nHost: localhost\r\n\r\n";
    let cases: [(&str, &'static [u8], &str); 5] = [
        ("a Ping (fast path)", PING_CLOSE, "HTTP/1.1 200"),
        ("a GET (Pingora's proxy)", get, "HTTP/1.1 404"),
        ("an HTTP/1.0 GET", http10, "HTTP/1.1 404"),
        ("a request line that is not HTTP", b"NOT HTTP\r\n\r\n", "HTTP/1.1 400"),
        (
            "an unknown packet type",
            b"BITS_POST /u HTTP/1.1\r\nHost: localhost\r\nBITS-Packet-Type: Nonsense\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 400",
        ),
    ];
    for (what, request, status) in cases {
        let (answer, closed) =
            exchange_and_close(cluster.proxy_addr(), &[], Preamble::Alone, request).await;
        assert!(answer.starts_with(status), "{what}: {answer}");
        assert_eq!(closed, Ok(()), "{what}");
    }
    cluster.stop_backend(0).await;
    for (what, request, _) in &cases[..3] {
        let (answer, closed) =
            exchange_and_close(cluster.proxy_addr(), &[], Preamble::Alone, request).await;
        assert!(
            answer.starts_with("HTTP/1.1 503"),
            "{what}, no backend: {answer}"
        );
        assert_eq!(closed, Ok(()), "{what}, no backend");
    }
}

/// A backend that answers every request with a head announcing 1,000 bytes of body,
/// sends 10 and closes.
async fn backend_that_breaks_off() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head =
                    "HTTP/1.1 200 OK\r\nBITS-Packet-Type: Ack\r\nContent-Length: 1000\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(b"0123456789").await;
            });
        }
    });
    address
}

/// An answer a backend breaks off mid-body reaches the client as a truncation, on
/// either path: a close_notify would tell it the answer was complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_off_mid_body_ends_without_a_close_notify() {
    let backend = backend_that_breaks_off().await;
    let cluster = Cluster::new()
        .backends(0)
        .config(&format!(
            "{}\n[[backends]]\nid = \"cut\"\naddress = \"{backend}\"\n",
            tls_files("listener.tls")
        ))
        .start()
        .await;
    let get: &[u8] = b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    for (what, request) in [
        ("a Ping (fast path)", PING_CLOSE),
        ("a GET (Pingora's proxy)", get),
    ] {
        let (answer, closed) =
            exchange_and_close(cluster.proxy_addr(), &[], Preamble::Alone, request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{what}: {answer}");
        assert!(answer.ends_with("0123456789"), "{what}: {answer}");
        assert!(
            closed.as_ref().is_err_and(|e| e.contains("close_notify")),
            "{what}: {closed:?}"
        );
    }
}

/// A request still waiting for its answer when bitsgate stops ends as a truncation,
/// not a TLS close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_by_a_stop_ends_without_a_close_notify() {
    use tokio::io::AsyncReadExt;
    // A backend that reads requests and never answers; it says when one came.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = silent.local_addr().unwrap();
    let (arrived, mut request_in) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = silent.accept().await {
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await.is_ok_and(|n| n > 0) {
                let _ = arrived.send(());
            }
            held.push(stream);
        }
    });
    let cluster = Cluster::new()
        .backends(0)
        .config(&format!(
            "{}\n[[backends]]\nid = \"silent\"\naddress = \"{backend}\"\n",
            tls_files("listener.tls")
        ))
        .start()
        .await;
    let client = tokio::spawn(exchange_and_close(
        cluster.proxy_addr(),
        &[],
        Preamble::Alone,
        PING_CLOSE,
    ));
    tokio::time::timeout(std::time::Duration::from_secs(10), request_in.recv())
        .await
        .expect("the Ping reaches the backend");
    tokio::task::block_in_place(|| drop(cluster));
    let (answer, closed) = client.await.unwrap();
    assert!(answer.is_empty(), "{answer}");
    assert!(
        closed.as_ref().is_err_and(|e| e.contains("close_notify")),
        "{closed:?}"
    );
}
