//! Windows authentication (NTLM, Negotiate) through bitsgate, against the reference
//! server's IIS-like `--auth` modes: every client connection that authenticates gets an
//! upstream connection of its own, kept on its backend, closed with it; and the health
//! probe's rules for farms that want credentials or serve BITS elsewhere than `/`.

use crate::cluster::{eventually, options, random_bytes, sample, sha256, Cluster};
use bits_proto::PacketType;
use bits_testkit::client::raw::RawRequest;
use bits_testkit::ntlm::{self, Message, Negotiate, Scheme, CLIENT_FLAGS};
use bits_testkit::server::AuthMode;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(15);

fn auth(mode: AuthMode) -> impl Fn(usize, &mut bits_testkit::server::ServerConfig) {
    move |_, config| config.auth = Some(mode)
}

/// Several users upload at once through one bitsgate; on the server's side no upstream
/// connection carries packets of two users, and every upload completes.
async fn users_at_once_never_share_an_upstream_connection(mode: AuthMode, backends: usize) {
    let cluster = Cluster::new()
        .backends(backends)
        .server(auth(mode))
        .start()
        .await;
    let users = ["CORP\\alice", "CORP\\bob", "CORP\\carol", "CORP\\dave"];
    let data: Vec<Bytes> = (0..users.len())
        .map(|i| random_bytes(64 << 10, i as u64))
        .collect();
    let upload = |i: usize| {
        let (cluster, data, user) = (&cluster, data[i].clone(), users[i]);
        async move {
            let mut options = options(4 << 10);
            options.ntlm_user = Some(user.to_owned());
            cluster
                .upload(&format!("/up/{i}.bin"), &data, &options)
                .await
        }
    };
    let (a, b, c, d) = tokio::join!(upload(0), upload(1), upload(2), upload(3));
    for (i, result) in [a, b, c, d].into_iter().enumerate() {
        let report = result.unwrap_or_else(|e| panic!("{}'s upload: {e}", users[i]));
        assert_eq!(report.restarts, 0, "{}", users[i]);
        let path = format!("/up/{i}.bin");
        assert_eq!(cluster.committed_sha256(&path), vec![sha256(&data[i])]);
    }
    for stats in cluster.all_stats() {
        let mut owner_of_connection = std::collections::BTreeMap::new();
        for session in stats.sessions.values() {
            assert_eq!(session.users.len(), 1, "{}: {session:?}", stats.name);
            let user = session.users.iter().next().cloned();
            for conn in &session.connections {
                let previous = owner_of_connection.insert(*conn, user.clone());
                assert!(
                    previous.is_none() || previous == Some(user.clone()),
                    "connection {conn} of {} carried packets of {previous:?} and {user:?}",
                    stats.name
                );
                assert_eq!(stats.connections[conn].user, user, "connection {conn}");
            }
        }
    }
    let sessions: usize = cluster.all_stats().iter().map(|s| s.sessions.len()).sum();
    assert_eq!(sessions, users.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_users_uploading_at_once_each_keep_their_own_upstream_connection() {
    users_at_once_never_share_an_upstream_connection(AuthMode::Ntlm, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiate_users_uploading_at_once_each_keep_their_own_upstream_connection() {
    users_at_once_never_share_an_upstream_connection(AuthMode::Negotiate, 2).await;
}

/// One client connection held open across requests, as WinHTTP holds it.
struct KeptAlive {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
}

/// An answer read off a kept-alive connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn headers(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl KeptAlive {
    async fn connect(addr: SocketAddr) -> Self {
        KeptAlive {
            stream: TcpStream::connect(addr).await.expect("connects"),
            host: addr.to_string(),
            buf: Vec::new(),
        }
    }

    /// Sends a request and reads its answer; `None` when the connection was closed
    /// without one.
    async fn send(&mut self, request: &RawRequest) -> Option<Answer> {
        self.stream
            .write_all(&request.encode(&self.host))
            .await
            .ok()?;
        tokio::time::timeout(DEADLINE, self.read_answer())
            .await
            .expect("an answer or a close in time")
    }

    async fn read_answer(&mut self) -> Option<Answer> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let answer = Answer { status, headers };
        let length: usize = answer
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while self.buf.len() < head_end + length {
            self.fill().await?;
        }
        self.buf.drain(..head_end + length);
        Some(answer)
    }

    async fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 16 << 10];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }

    /// Runs the NTLM handshake as `user` with a Ping: type 1, challenge, type 3.
    /// Returns the answers to both steps.
    async fn authenticate(&mut self, path: &str, user: &str) -> (Answer, Answer) {
        let negotiate = Message::Negotiate(Negotiate {
            flags: CLIENT_FLAGS,
        });
        let first = RawRequest::bits(PacketType::Ping, path)
            .header("Authorization", Scheme::Ntlm.header_value(&negotiate));
        let challenged = self.send(&first).await.expect("a challenge");
        assert_eq!(challenged.status, 401, "{challenged:?}");
        let challenge = challenged
            .headers("www-authenticate")
            .into_iter()
            .find_map(|v| match ntlm::split_header(v) {
                Some((_, Some(token))) => match ntlm::decode_token(token) {
                    Ok(Message::Challenge(c)) => Some(c),
                    _ => None,
                },
                _ => None,
            })
            .unwrap_or_else(|| panic!("no NTLM challenge in {challenged:?}"));
        let authenticate = Message::Authenticate(ntlm::authenticate_for(
            &challenge,
            "CORP",
            user,
            "BITS-CLIENT",
        ));
        let second = RawRequest::bits(PacketType::Ping, path)
            .header("Authorization", Scheme::Ntlm.header_value(&authenticate));
        let done = self.send(&second).await.expect("the handshake's answer");
        (challenged, done)
    }
}

/// The anonymous request's 401 binds the client connection to the backend that
/// answered: the handshake and everything after it reach that backend, over one
/// upstream connection, although Pings would otherwise be spread over the farm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_401_keeps_the_client_connection_on_its_backend() {
    let cluster = Cluster::new()
        .backends(3)
        .server(auth(AuthMode::Ntlm))
        .start()
        .await;
    let mut client = KeptAlive::connect(cluster.proxy_addr()).await;
    let anonymous = client
        .send(&RawRequest::bits(PacketType::Ping, "/up/x"))
        .await
        .expect("an answer");
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.headers("www-authenticate").contains(&"NTLM"));
    let node = anonymous.header("server").expect("Server").to_owned();
    let (challenged, done) = client.authenticate("/up/x", "erin").await;
    assert_eq!(done.status, 200, "{done:?}");
    let mut seen = vec![challenged.header("server"), done.header("server")]
        .into_iter()
        .map(|s| s.unwrap_or_default().to_owned())
        .collect::<Vec<_>>();
    for _ in 0..6 {
        let ping = client
            .send(&RawRequest::bits(PacketType::Ping, "/up/x"))
            .await
            .expect("an answer");
        assert_eq!(
            ping.status, 200,
            "authenticated without credentials: {ping:?}"
        );
        seen.push(ping.header("server").unwrap_or_default().to_owned());
    }
    assert!(seen.iter().all(|s| *s == node), "{node} then {seen:?}");
    let index: usize = node.trim_start_matches('b').parse().expect("b<i>");
    let stats = cluster.stats(index);
    let users: Vec<_> = stats
        .connections
        .values()
        .filter_map(|c| c.user.clone())
        .collect();
    assert_eq!(users, vec!["CORP\\erin".to_owned()], "{stats:?}");
}

/// When the backend closes the authenticated connection, bitsgate closes the client's
/// instead of sending its next request anonymous over a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_connection_closed_by_the_backend_closes_the_client_connection() {
    let mut cluster = Cluster::new()
        .backends(1)
        .server(auth(AuthMode::Ntlm))
        .start()
        .await;
    let mut client = KeptAlive::connect(cluster.proxy_addr()).await;
    let (_, done) = client.authenticate("/up/y", "frank").await;
    assert_eq!(done.status, 200, "{done:?}");
    let ping = RawRequest::bits(PacketType::Ping, "/up/y");
    assert_eq!(client.send(&ping).await.expect("an answer").status, 200);
    // A restart closes every connection the server had.
    cluster.stop_backend(0).await;
    cluster.restart_backend(0).await;
    let after = client.send(&ping).await;
    assert!(
        after.is_none(),
        "the client connection stays open: {after:?}"
    );
    // A new client connection authenticates again and works.
    let mut again = KeptAlive::connect(cluster.proxy_addr()).await;
    let (_, done) = again.authenticate("/up/y", "frank").await;
    assert_eq!(done.status, 200, "{done:?}");
}

/// A Negotiate token of a user in many groups passes bitsgate whole: the server, not
/// bitsgate, judges it (it refuses non-NTLMSSP tokens with its own 401 and offers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_12_kib_negotiate_token_reaches_an_authenticating_backend() {
    let cluster = Cluster::new()
        .backends(1)
        .server(auth(AuthMode::Negotiate))
        .start()
        .await;
    let token = format!("Negotiate {}", "Y".repeat(12 << 10));
    let ping = RawRequest::bits(PacketType::Ping, "/up/z").header("Authorization", token);
    let response = cluster.send(&ping).await;
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(response.header("server"), Some("b0"));
    assert_eq!(cluster.stats(0).packets.get("unauthorized"), Some(&1));
}

fn up(cluster: &Cluster, id: &str) -> Option<f64> {
    let text = cluster.proxy.shared.metrics.render();
    sample(
        &String::from_utf8_lossy(&text),
        &format!("bitsgate_backend_up{{backend=\"{id}\"}}"),
    )
}

/// Fast probes that take a backend down at the second failure.
fn probes(path: Option<&str>) -> String {
    let path = path
        .map(|p| format!("path = \"{p}\"\n"))
        .unwrap_or_default();
    format!("[health_check]\nkind = \"bits_ping\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 2\npassive_failures = 0\n{path}")
}

/// A farm whose every node wants credentials (an HTML 401 without BITS headers to the
/// probe's anonymous Ping) is alive, with the default path and with a configured one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farm_answering_only_401_stays_up() {
    for path in [None, Some("/up/")] {
        let cluster = Cluster::new()
            .backends(1)
            .server(auth(AuthMode::Negotiate))
            .config(&probes(path))
            .start()
            .await;
        let probed = |c: &Cluster| c.stats(0).packets.get("unauthorized").copied();
        eventually("five probes answered 401", DEADLINE, || {
            probed(&cluster).unwrap_or(0) >= 5
        })
        .await;
        assert_eq!(up(&cluster, "b0"), Some(1.0), "path {path:?}");
    }
}

/// A web server that answers every request with an HTML 404, counting them.
async fn not_found_server() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let address = listener.local_addr().expect("address");
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let body = "<html><body>404 - File or directory not found.</body></html>";
                let answer = format!("HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (address, count)
}

/// A node that serves BITS elsewhere answers `/` with a 404 page: alive under the
/// default probe, down when the configured BITS path is not served there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_at_the_default_path_is_alive_but_not_at_a_configured_bits_path() {
    for (path, alive) in [(None, true), (Some("/bits/"), false)] {
        let (address, seen) = not_found_server().await;
        let config = format!(
            "{}[[backends]]\nid = \"web\"\naddress = \"{address}\"\n",
            probes(path)
        );
        let cluster = Cluster::new().backends(0).config(&config).start().await;
        eventually("six probes", DEADLINE, || seen.load(Ordering::SeqCst) >= 6).await;
        let expected = if alive { 1.0 } else { 0.0 };
        eventually(
            &format!("web up == {expected} with path {path:?}"),
            DEADLINE,
            || up(&cluster, "web") == Some(expected),
        )
        .await;
    }
}

/// A bound client connection that sends a packet of a session pinned to another node:
/// the packet goes to the owner over a fresh private connection, the owner asks for
/// credentials, and the client's handshake on the same client connection then binds
/// it to the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_of_a_session_pinned_elsewhere_moves_the_binding_to_its_owner() {
    let cluster = Cluster::new()
        .backends(2)
        .server(auth(AuthMode::Ntlm))
        .start()
        .await;
    let create = RawRequest::bits(PacketType::CreateSession, "/up/moved.bin")
        .header("BITS-Supported-Protocols", bits_proto::BITS_1_5_PROTOCOL);
    // Two authenticated client connections on different nodes: the anonymous Ping's
    // 401 binds each to the node that answered it.
    let mut clients: Vec<(String, KeptAlive)> = Vec::new();
    for _ in 0..10 {
        let mut client = KeptAlive::connect(cluster.proxy_addr()).await;
        let anonymous = client
            .send(&RawRequest::bits(PacketType::Ping, "/up/x"))
            .await
            .expect("an answer");
        let node = anonymous.header("server").unwrap_or_default().to_owned();
        if clients.iter().any(|(n, _)| *n == node) {
            continue;
        }
        let (_, done) = client.authenticate("/up/x", "gina").await;
        assert_eq!(done.status, 200, "{done:?}");
        assert_eq!(done.header("server"), Some(node.as_str()));
        clients.push((node, client));
        if clients.len() == 2 {
            break;
        }
    }
    assert_eq!(clients.len(), 2, "Pings reach both nodes");
    let (owner, mut owning) = clients.pop().expect("two");
    let (other, mut elsewhere) = clients.pop().expect("two");
    let created = owning.send(&create).await.expect("an answer");
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(created.header("server"), Some(owner.as_str()));
    let session = created
        .header("bits-session-id")
        .expect("a session id")
        .to_owned();
    let data = Bytes::from_static(b"hello");
    let fragment = RawRequest::fragment("/up/moved.bin", &session, 0, data, 5);
    let refused = elsewhere.send(&fragment).await.expect("an answer");
    assert_eq!(
        refused.status, 401,
        "the owner wants credentials: {refused:?}"
    );
    assert_eq!(refused.header("server"), Some(owner.as_str()));
    let (challenged, done) = elsewhere.authenticate("/up/x", "gina").await;
    assert_eq!(challenged.header("server"), Some(owner.as_str()));
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.header("server"), Some(owner.as_str()), "not {other}");
    let sent = elsewhere.send(&fragment).await.expect("an answer");
    assert_eq!(sent.status, 200, "{sent:?}");
    let ping = elsewhere
        .send(&RawRequest::bits(PacketType::Ping, "/up/x"))
        .await
        .expect("an answer");
    assert_eq!(ping.status, 200);
    assert_eq!(
        ping.header("server"),
        Some(owner.as_str()),
        "bound to the owner now"
    );
}

/// One NTLM node; client connections may idle a minute, far longer than the tests
/// wait for an upstream connection to close.
async fn ntlm_node_with_long_keepalive() -> Cluster {
    Cluster::new()
        .backends(1)
        .server(auth(AuthMode::Ntlm))
        .listener_config("keepalive_timeout = \"60s\"")
        .start()
        .await
}

/// Server-side connections still open.
fn open_connections(cluster: &Cluster, backend: usize) -> Vec<u64> {
    let stats = cluster.stats(backend);
    stats
        .connections
        .iter()
        .filter(|(_, c)| !c.closed)
        .map(|(id, _)| *id)
        .collect()
}

/// The bound upstream connection goes when its client connection goes: it is not
/// left idle in the pool, where nobody else may use it, until a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_upstream_connection_closes_with_its_client_connection() {
    let cluster = ntlm_node_with_long_keepalive().await;
    let mut client = KeptAlive::connect(cluster.proxy_addr()).await;
    let (_, done) = client.authenticate("/up/q", "hugo").await;
    assert_eq!(done.status, 200, "{done:?}");
    let ping = RawRequest::bits(PacketType::Ping, "/up/q");
    assert_eq!(client.send(&ping).await.expect("an answer").status, 200);
    let bound = cluster
        .stats(0)
        .connections
        .iter()
        .find(|(_, c)| c.user.as_deref() == Some("CORP\\hugo"))
        .map(|(id, _)| *id)
        .expect("the authenticated connection");
    assert!(open_connections(&cluster, 0).contains(&bound));
    drop(client);
    eventually(
        "the bound upstream connection closed with its client",
        Duration::from_secs(3),
        || !open_connections(&cluster, 0).contains(&bound),
    )
    .await;
}

/// Once a backend has asked for NTLM, a client connection's anonymous request travels
/// on a connection of its own, and the handshake continues on that very connection,
/// as it would against IIS directly. The connection whose 401 first showed the
/// backend's scheme was shared: it is closed once its answer is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_that_carried_the_anonymous_401_is_the_bound_one() {
    let cluster = ntlm_node_with_long_keepalive().await;
    let anonymous_ping = RawRequest::bits(PacketType::Ping, "/up/r");
    let mut first = KeptAlive::connect(cluster.proxy_addr()).await;
    let learned = first.send(&anonymous_ping).await.expect("an answer");
    assert_eq!(learned.status, 401, "{learned:?}");
    eventually(
        "the shared connection that carried the first offer is closed",
        Duration::from_secs(3),
        || open_connections(&cluster, 0).is_empty(),
    )
    .await;

    let mut second = KeptAlive::connect(cluster.proxy_addr()).await;
    let refused = second.send(&anonymous_ping).await.expect("an answer");
    assert_eq!(refused.status, 401, "{refused:?}");
    let carried = open_connections(&cluster, 0);
    assert_eq!(
        carried.len(),
        1,
        "one connection carried the 401: {carried:?}"
    );
    let (_, done) = second.authenticate("/up/r", "ivy").await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(
        second.send(&anonymous_ping).await.map(|a| a.status),
        Some(200)
    );
    let stats = cluster.stats(0);
    assert_eq!(
        stats.connections[&carried[0]].user.as_deref(),
        Some("CORP\\ivy"),
        "the handshake ran on the 401's connection: {stats:?}"
    );
    assert_eq!(stats.connections_total, 2, "no other connection: {stats:?}");
    // The first client authenticates on its own connection too, never on ivy's.
    let (_, done) = first.authenticate("/up/r", "jon").await;
    assert_eq!(done.status, 200, "{done:?}");
    let stats = cluster.stats(0);
    let users: Vec<_> = stats
        .connections
        .values()
        .filter_map(|c| c.user.clone())
        .collect();
    assert_eq!(users.len(), 2, "{stats:?}");
    assert_eq!(
        stats.connections[&carried[0]].user.as_deref(),
        Some("CORP\\ivy")
    );
}
