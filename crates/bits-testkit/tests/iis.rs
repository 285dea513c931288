//! The reference server in its IIS-like modes (Windows authentication per connection,
//! upload-reply, TLS) against raw requests and against the upload client.

#[path = "server_support/mod.rs"]
mod support;

use bits_testkit::client::{upload, NoObserver, UploadError, UploadOptions, UploadSource};
use bits_testkit::ntlm::{self, Message, Negotiate, Scheme, CLIENT_FLAGS};
use bits_testkit::reply::{is_reply_to, REPLY_PATH_PREFIX};
use bits_testkit::server::{spawn, AuthMode, ServerConfig, ServerHandle, Stats, TlsFiles};
use bytes::Bytes;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{data, Conn, Resp};

/// A server on 127.0.0.1:0 over a temp directory, configured by the test.
struct Node {
    dir: tempfile::TempDir,
    server: ServerHandle,
}

impl Node {
    async fn start(configure: impl FnOnce(&mut ServerConfig, &Path)) -> Node {
        Node::start_result(configure).await.unwrap()
    }

    async fn start_result(
        configure: impl FnOnce(&mut ServerConfig, &Path),
    ) -> std::io::Result<Node> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path().join("root"));
        configure(&mut config, dir.path());
        let server = spawn(config).await?;
        Ok(Node { dir, server })
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    fn url(&self, scheme: &str, name: &str) -> String {
        format!("{scheme}://{}/up/{name}", self.addr())
    }

    fn stats(&self) -> Stats {
        self.server.stats()
    }

    fn uploaded(&self, name: &str) -> PathBuf {
        self.dir.path().join("root/up").join(name)
    }
}

fn options() -> UploadOptions {
    UploadOptions {
        fragment_size: 4096,
        retry_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(100),
        ..UploadOptions::default()
    }
}

async fn send(
    source: &[u8],
    url: &str,
    options: &UploadOptions,
) -> Result<bits_testkit::client::UploadReport, UploadError> {
    upload(
        url,
        UploadSource::Bytes(Bytes::copy_from_slice(source)),
        options,
        &NoObserver,
    )
    .await
}

// ------------------------------------------------------------ raw NTLM helpers

fn type1() -> String {
    Scheme::Ntlm.header_value(&Message::Negotiate(Negotiate {
        flags: CLIENT_FLAGS,
    }))
}

fn type3(challenge: &Resp, user: &str) -> String {
    let value = challenge
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("WWW-Authenticate"))
        .find_map(|(_, v)| ntlm::split_header(v).and_then(|(_, t)| t.map(str::to_owned)))
        .expect("a challenge token");
    let Message::Challenge(c) = ntlm::decode_token(&value).expect("a valid type 2") else {
        panic!("not a type 2 message")
    };
    Scheme::Ntlm.header_value(&Message::Authenticate(ntlm::authenticate_for(
        &c, "CORP", user, "WS",
    )))
}

async fn ping_with(conn: &mut Conn, authorization: Option<&str>) -> Resp {
    let mut headers = vec![("BITS-Packet-Type", "Ping")];
    if let Some(value) = authorization {
        headers.push(("Authorization", value));
    }
    conn.request("BITS_POST", "/up/x", &headers, b"").await
}

/// Runs type 1 → type 2 → type 3 on `conn` (the type 3 rides on a Ping).
async fn authenticate(conn: &mut Conn, user: &str) -> Resp {
    let challenge = ping_with(conn, Some(&type1())).await;
    assert_eq!(challenge.status, 401, "{challenge:?}");
    ping_with(conn, Some(&type3(&challenge, user))).await
}

fn www_authenticate(resp: &Resp) -> Vec<&str> {
    resp.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("WWW-Authenticate"))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn has_bits_headers(resp: &Resp) -> bool {
    resp.headers
        .iter()
        .any(|(n, _)| n.to_ascii_lowercase().starts_with("bits-"))
}

// ------------------------------------------------------------ Windows authentication

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_get_the_iis_html_401_without_bits_headers() {
    let node = Node::start(|c, _| c.auth = Some(AuthMode::Negotiate)).await;
    let mut conn = Conn::connect(node.addr()).await;
    let resp = ping_with(&mut conn, None).await;
    assert_eq!(resp.status, 401);
    assert!(!has_bits_headers(&resp), "{resp:?}");
    assert_eq!(resp.header("Content-Type"), Some("text/html"));
    assert!(String::from_utf8_lossy(&resp.body).contains("401 - Unauthorized"));
    assert_eq!(www_authenticate(&resp), ["Negotiate", "NTLM"]);
    // Basic credentials are not a scheme this site takes.
    let basic = ping_with(&mut conn, Some("Basic dTpw")).await;
    assert_eq!(basic.status, 401);
    // The connection stays open through 401s, as on IIS.
    assert_eq!(authenticate(&mut conn, "alice").await.status, 200);

    let ntlm_only = Node::start(|c, _| c.auth = Some(AuthMode::Ntlm)).await;
    let resp = ping_with(&mut Conn::connect(ntlm_only.addr()).await, None).await;
    assert_eq!(www_authenticate(&resp), ["NTLM"]);
    // The stats stay readable without credentials, for tests and scripts.
    let stats = support::once(ntlm_only.addr(), "GET", "/_bits/stats", &[], b"").await;
    assert_eq!(stats.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_authenticates_its_tcp_connection_and_no_other() {
    let node = Node::start(|c, _| c.auth = Some(AuthMode::Negotiate)).await;
    let mut conn = Conn::connect(node.addr()).await;
    let challenge = ping_with(&mut conn, Some(&type1())).await;
    assert_eq!(challenge.status, 401);
    assert!(!has_bits_headers(&challenge));
    let offered = www_authenticate(&challenge);
    assert_eq!(offered.len(), 1);
    assert!(offered[0].starts_with("NTLM "), "{offered:?}");
    let done = ping_with(&mut conn, Some(&type3(&challenge, "alice"))).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.header("BITS-Packet-Type"), Some("Ack"));
    // Later requests on the same connection need no credentials.
    assert_eq!(ping_with(&mut conn, None).await.status, 200);
    // A new connection must authenticate again.
    let mut other = Conn::connect(node.addr()).await;
    assert_eq!(ping_with(&mut other, None).await.status, 401);

    let stats = node.stats();
    let users: Vec<_> = stats.connections.values().map(|c| c.user.clone()).collect();
    assert_eq!(users, [Some("CORP\\alice".to_owned()), None]);
    // The Negotiate scheme carries the same NTLMSSP tokens.
    let mut negotiate = Conn::connect(node.addr()).await;
    let t1 = type1().replacen("NTLM", "Negotiate", 1);
    let challenge = ping_with(&mut negotiate, Some(&t1)).await;
    assert!(www_authenticate(&challenge)[0].starts_with("Negotiate "));
    let t3 = type3(&challenge, "bob").replacen("NTLM", "Negotiate", 1);
    assert_eq!(ping_with(&mut negotiate, Some(&t3)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_out_of_order_are_refused() {
    let node = Node::start(|c, _| c.auth = Some(AuthMode::Ntlm)).await;
    let mut first = Conn::connect(node.addr()).await;
    let challenge = ping_with(&mut first, Some(&type1())).await;
    let answer = type3(&challenge, "mallory");
    // A type 3 on a connection that was never challenged.
    let mut second = Conn::connect(node.addr()).await;
    assert_eq!(ping_with(&mut second, Some(&answer)).await.status, 401);
    // An anonymous request between the challenge and the type 3 starts over.
    assert_eq!(ping_with(&mut first, None).await.status, 401);
    assert_eq!(ping_with(&mut first, Some(&answer)).await.status, 401);
    // A type 1 twice, then garbage.
    assert_eq!(ping_with(&mut first, Some(&type1())).await.status, 401);
    assert_eq!(
        ping_with(&mut first, Some("NTLM bm90IG50bG0="))
            .await
            .status,
        401
    );
    assert!(node.stats().connections.values().all(|c| c.user.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_authenticates_every_new_connection() {
    let node = Node::start(|c, _| c.auth = Some(AuthMode::Ntlm)).await;
    let source = data(20_000, 3);
    let options = UploadOptions {
        ntlm_user: Some("CORP\\alice".into()),
        new_connection_per_packet: true,
        ..options()
    };
    let report = send(&source, &node.url("http", "a.bin"), &options)
        .await
        .unwrap();
    assert_eq!(std::fs::read(node.uploaded("a.bin")).unwrap(), source);
    let stats = node.stats();
    let session = &stats.sessions[report.session_id.as_deref().unwrap()];
    assert_eq!(session.users, BTreeSet::from(["CORP\\alice".to_owned()]));
    // Create-Session, 5 Fragments and Close-Session, each on its own connection.
    assert_eq!(session.connections.len(), 7);
    for id in &session.connections {
        assert_eq!(stats.connections[id].user.as_deref(), Some("CORP\\alice"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_at_once_never_share_a_connection() {
    let node = Node::start(|c, _| c.auth = Some(AuthMode::Negotiate)).await;
    let run = |user: &'static str, name: &'static str, seed: u8, fresh: bool| {
        let url = node.url("http", name);
        async move {
            let options = UploadOptions {
                ntlm_user: Some(format!("CORP\\{user}")),
                new_connection_per_packet: fresh,
                fragment_size: 1024,
                ..options()
            };
            send(&data(50_000, seed), &url, &options).await.unwrap()
        }
    };
    let (a, b) = tokio::join!(
        run("alice", "a.bin", 1, false),
        run("bob", "b.bin", 2, true)
    );
    let stats = node.stats();
    let sa = &stats.sessions[a.session_id.as_deref().unwrap()];
    let sb = &stats.sessions[b.session_id.as_deref().unwrap()];
    assert_eq!(sa.users, BTreeSet::from(["CORP\\alice".to_owned()]));
    assert_eq!(sb.users, BTreeSet::from(["CORP\\bob".to_owned()]));
    assert!(sa.connections.is_disjoint(&sb.connections));
    assert_eq!(sa.connections.len(), 1, "alice keeps her one connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_client_stops_at_the_401() {
    let node = Node::start(|c, _| c.auth = Some(AuthMode::Ntlm)).await;
    let err = send(b"x", &node.url("http", "x.bin"), &options())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UploadError::Unauthorized {
                handshake: false,
                ..
            }
        ),
        "{err}"
    );
}

// ------------------------------------------------------------ upload-reply

async fn raw_upload(
    addr: std::net::SocketAddr,
    path: &str,
    body: &[u8],
    chunk: usize,
) -> (String, Vec<Resp>) {
    let id = support::open(addr, path).await;
    let mut acks = Vec::new();
    for (i, part) in body.chunks(chunk).enumerate() {
        let first = (i * chunk) as u64;
        acks.push(support::fragment(addr, path, &id, first, body.len() as u64, part).await);
    }
    (id, acks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_ack_names_a_reply_served_with_head_and_ranged_get() {
    let node = Node::start(|c, _| c.reply = true).await;
    let body = data(3000, 7);
    let (id, acks) = raw_upload(node.addr(), "/up/r.bin", &body, 1000).await;
    assert!(acks.iter().all(|a| a.status == 200));
    assert!(acks[..2]
        .iter()
        .all(|a| a.header("BITS-Reply-URL").is_none()));
    let url = acks[2]
        .header("BITS-Reply-URL")
        .expect("Reply-URL on the final Ack")
        .to_owned();
    let path = format!("{REPLY_PATH_PREFIX}{}", id.trim_matches(['{', '}']));
    assert_eq!(url, format!("http://{}{path}", node.addr()));
    // The final Fragment sent again gets the same URL.
    let again = support::fragment(node.addr(), "/up/r.bin", &id, 2000, 3000, &body[2000..]).await;
    assert_eq!(again.header("BITS-Reply-URL"), Some(url.as_str()));

    let mut conn = Conn::connect(node.addr()).await;
    conn.write_head("HEAD", &path, &[], 0).await;
    let head = conn.read_head().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Accept-Ranges"), Some("bytes"));
    let len: usize = head.header("Content-Length").unwrap().parse().unwrap();
    let whole = support::once(node.addr(), "GET", &path, &[], b"").await;
    assert_eq!((whole.status, whole.body.len()), (200, len));
    assert!(
        is_reply_to(&whole.body, &body),
        "{:?}",
        String::from_utf8_lossy(&whole.body)
    );
    let part = support::once(node.addr(), "GET", &path, &[("Range", "bytes=10-19")], b"").await;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("Content-Range"),
        Some(format!("bytes 10-19/{len}").as_str())
    );
    assert_eq!(part.body, whole.body[10..20]);
    let past = support::once(
        node.addr(),
        "GET",
        &path,
        &[("Range", &format!("bytes={len}-"))],
        b"",
    )
    .await;
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("Content-Range"),
        Some(format!("bytes */{len}").as_str())
    );
    assert_eq!(node.stats().sessions[&id].reply_requests, 4);

    // Close ends the session and its reply.
    assert_eq!(
        support::close(node.addr(), "/up/r.bin", &id).await.status,
        200
    );
    assert_eq!(
        support::once(node.addr(), "GET", &path, &[], b"")
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_url_can_name_the_server_by_host_name() {
    let node = Node::start(|c, _| {
        c.reply = true;
        c.reply_host = Some("iis1.corp.example:8080".into());
    })
    .await;
    let (id, acks) = raw_upload(node.addr(), "/up/h.bin", b"named", 5).await;
    let uuid = id.trim_matches(['{', '}']);
    assert_eq!(
        acks[0].header("BITS-Reply-URL"),
        Some(format!("http://iis1.corp.example:8080{REPLY_PATH_PREFIX}{uuid}").as_str())
    );
    // The client reaches that name through its resolve table.
    let options = UploadOptions {
        upload_reply: true,
        resolve: [("iis1.corp.example".to_owned(), node.addr())].into(),
        ..options()
    };
    let report = send(b"via name", &node.url("http", "v.bin"), &options)
        .await
        .unwrap();
    assert!(is_reply_to(report.reply.as_ref().unwrap(), b"via name"));
    let bad = Node::start_result(|c, _| {
        c.reply = true;
        c.reply_host = Some("bad host/".into());
    })
    .await;
    assert!(bad.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_mode_sends_no_reply_url_and_serves_no_reply() {
    let node = Node::start(|_, _| {}).await;
    let (id, acks) = raw_upload(node.addr(), "/up/p.bin", b"plain", 5).await;
    assert_eq!(acks[0].status, 200);
    assert!(acks[0].header("BITS-Reply-URL").is_none());
    let path = format!("{REPLY_PATH_PREFIX}{}", id.trim_matches(['{', '}']));
    assert_eq!(
        support::once(node.addr(), "GET", &path, &[], b"")
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_downloads_and_checks_the_reply_over_new_connections() {
    let node = Node::start(|c, _| c.reply = true).await;
    let source = data(10_000, 9);
    let options = UploadOptions {
        upload_reply: true,
        reply_chunk_size: 16,
        new_connection_per_packet: true,
        ..options()
    };
    let report = send(&source, &node.url("http", "r.bin"), &options)
        .await
        .unwrap();
    let reply = report.reply.as_ref().expect("a reply");
    assert!(is_reply_to(reply, &source));
    assert!(report
        .reply_url
        .as_deref()
        .unwrap()
        .starts_with(&format!("http://{}{REPLY_PATH_PREFIX}", node.addr())));
    let chunks = reply.len().div_ceil(16) as u64;
    assert_eq!(report.reply_requests, 1 + chunks);
    let stats = node.stats();
    let session = &stats.sessions[report.session_id.as_deref().unwrap()];
    assert_eq!(session.reply_requests, 1 + chunks);
    assert_eq!(
        session.state, "closed",
        "Close-Session came after the download"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_reply_job_without_a_reply_url_fails() {
    let node = Node::start(|_, _| {}).await;
    let options = UploadOptions {
        upload_reply: true,
        ..options()
    };
    let err = send(b"abc", &node.url("http", "n.bin"), &options)
        .await
        .unwrap_err();
    assert!(matches!(err, UploadError::Protocol { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_ack_is_held_for_the_reply_delay() {
    let delay = Duration::from_secs(2);
    let node = Node::start(|c, _| {
        c.reply = true;
        c.reply_delay = delay;
    })
    .await;
    let id = support::open(node.addr(), "/up/d.bin").await;
    let first = support::fragment(node.addr(), "/up/d.bin", &id, 0, 4, b"ab").await;
    assert_eq!(first.status, 200);
    let started = Instant::now();
    let last = support::fragment(node.addr(), "/up/d.bin", &id, 2, 4, b"cd").await;
    let held = started.elapsed();
    assert_eq!(last.status, 200);
    assert!(last.header("BITS-Reply-URL").is_some());
    assert!(held >= delay, "final Ack after {held:?}, delay {delay:?}");
    // While the Ack was held the file was already in place.
    assert_eq!(std::fs::read(node.uploaded("d.bin")).unwrap(), b"abcd");
}

// ------------------------------------------------------------ TLS

struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA and a leaf for localhost and 127.0.0.1 it signed, as PEM files in `dir`.
fn pki(dir: &Path, name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let pki = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.cert, leaf.pem()).unwrap();
    std::fs::write(&pki.key, leaf_key.serialize_pem()).unwrap();
    pki
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_certificate_from_the_trusted_ca() {
    let certs = tempfile::tempdir().unwrap();
    let good = pki(certs.path(), "good");
    let node = Node::start(|c, _| {
        c.tls = Some(TlsFiles {
            cert: good.cert.clone(),
            key: good.key.clone(),
        })
    })
    .await;
    let source = data(9000, 5);
    let options = UploadOptions {
        ca_file: Some(good.ca.clone()),
        ..options()
    };
    let report = send(&source, &node.url("https", "t.bin"), &options)
        .await
        .unwrap();
    assert!(report.close_acknowledged);
    assert_eq!(std::fs::read(node.uploaded("t.bin")).unwrap(), source);
    let stats = node.stats();
    assert!(!stats.connections.is_empty());
    assert!(stats.connections.values().all(|c| c.tls));
    // Also by name, which the certificate names too.
    let by_name = format!("https://localhost:{}/up/n.bin", node.addr().port());
    send(b"n", &by_name, &options).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_certificate_from_another_ca_fails_before_any_request() {
    let certs = tempfile::tempdir().unwrap();
    let served = pki(certs.path(), "served");
    let other = pki(certs.path(), "other");
    let node = Node::start(|c, _| {
        c.tls = Some(TlsFiles {
            cert: served.cert.clone(),
            key: served.key.clone(),
        })
    })
    .await;
    let wrong_ca = UploadOptions {
        ca_file: Some(other.ca.clone()),
        ..options()
    };
    let err = send(b"x", &node.url("https", "x.bin"), &wrong_ca)
        .await
        .unwrap_err();
    assert!(matches!(err, UploadError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(node.stats().requests_total, 0);
    // Plain HTTP to the TLS listener does not get through either.
    let plain = send(
        b"x",
        &node.url("http", "x.bin"),
        &UploadOptions {
            max_retries: 0,
            ..options()
        },
    )
    .await;
    assert!(plain.is_err());
    assert_eq!(node.stats().requests_total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_reply_and_tls_together() {
    let certs = tempfile::tempdir().unwrap();
    let good = pki(certs.path(), "farm");
    let node = Node::start(|c, _| {
        c.auth = Some(AuthMode::Negotiate);
        c.reply = true;
        c.tls = Some(TlsFiles {
            cert: good.cert.clone(),
            key: good.key.clone(),
        });
    })
    .await;
    let source = data(30_000, 11);
    let options = UploadOptions {
        ca_file: Some(good.ca.clone()),
        ntlm_user: Some("CORP\\carol".into()),
        upload_reply: true,
        reply_chunk_size: 32,
        new_connection_per_packet: true,
        ..options()
    };
    let report = send(&source, &node.url("https", "all.bin"), &options)
        .await
        .unwrap();
    assert!(is_reply_to(report.reply.as_ref().unwrap(), &source));
    assert!(report.reply_url.as_deref().unwrap().starts_with("https://"));
    let stats = node.stats();
    let session = &stats.sessions[report.session_id.as_deref().unwrap()];
    assert_eq!(session.users, BTreeSet::from(["CORP\\carol".to_owned()]));
    assert!(session.reply_requests > 1);
    assert!(stats
        .connections
        .values()
        .filter(|c| c.requests > 0)
        .all(|c| c.tls && c.user.as_deref() == Some("CORP\\carol")));
}

// ------------------------------------------------------------ the programs

/// Kills the child when the test ends, passing or not.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_programs_in_every_mode_at_once() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let farm = pki(dir.path(), "farm");
    let other = pki(dir.path(), "other");
    let mut server = Command::new(env!("CARGO_BIN_EXE_bits-server"))
        .arg("--root")
        .arg(dir.path().join("root"))
        .args(["--auth", "negotiate", "--reply", "--reply-delay", "1s"])
        .arg("--tls-cert")
        .arg(&farm.cert)
        .arg("--tls-key")
        .arg(&farm.key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bits-server");
    let stdout = server.stdout.take();
    let _server = Running(server);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout.expect("stdout"))
            .read_line(&mut line)
            .expect("a line");
        line
    })
    .await
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_owned();
    let source = dir.path().join("report.bin");
    std::fs::write(&source, data(5000, 4)).unwrap();
    let reply_out = dir.path().join("reply.txt");
    let url = format!("https://{addr}/up/report.bin");
    let upload = |ca: &Path| {
        Command::new(env!("CARGO_BIN_EXE_bits-upload"))
            .args([url.as_str(), source.to_str().unwrap()])
            .arg("--ca-file")
            .arg(ca)
            .args([
                "--ntlm-user",
                "CORP\\dave",
                "--reply",
                "--reply-chunk-size",
                "16",
            ])
            .arg("--reply-out")
            .arg(&reply_out)
            .args(["--fragment-size", "1KiB", "--max-retries", "0"])
            .output()
            .expect("run bits-upload")
    };
    // The server is another process: blocking this test's thread holds nothing up.
    let refused = upload(&other.ca);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("TLS"));
    let done = upload(&farm.ca);
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(stdout.contains("reply: "), "{stdout}");
    assert!(stdout.contains("checked"), "{stdout}");
    let reply = std::fs::read(&reply_out).unwrap();
    assert!(is_reply_to(&reply, &data(5000, 4)));
    assert_eq!(
        std::fs::read(dir.path().join("root/up/report.bin")).unwrap(),
        data(5000, 4)
    );
}
