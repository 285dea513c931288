//! Local Acks written before the request body was read reach a client that is still
//! writing that body: bitsgate reads and discards the rest instead of resetting the
//! connection, and keeps the connection when the rest was small.

use crate::cluster::{random_bytes, Cluster};
use bits_proto::ErrorCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATH: &str = "/uploads/linger.bin";
const EIGHT_MIB: usize = 8 << 20;

/// One response read off a connection that stays usable afterwards.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client as simple as many are: it writes the whole request, body included, and
/// only then reads the answer. A write that fails (the proxy reset the connection)
/// fails the test.
struct Client {
    stream: TcpStream,
    /// Bytes read past the end of the previous response.
    pending: Vec<u8>,
}

impl Client {
    async fn connect(cluster: &Cluster) -> Client {
        Client {
            stream: TcpStream::connect(cluster.proxy_addr())
                .await
                .expect("connects"),
            pending: Vec::new(),
        }
    }

    async fn exchange(&mut self, head: &str, body: &[u8]) -> Response {
        let exchange = async {
            self.stream
                .write_all(head.as_bytes())
                .await
                .expect("the request header is written");
            self.stream
                .write_all(body)
                .await
                .expect("the whole body is written: no reset while the client writes");
            self.read_response().await
        };
        tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .expect("an answer within a minute")
    }

    async fn read_response(&mut self) -> Response {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(end) =
                parsed.parse(&self.pending).expect("an HTTP response")
            {
                let response = Response {
                    status: parsed.code.expect("a status"),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                };
                let length: usize = response
                    .header("Content-Length")
                    .map_or(0, |v| v.trim().parse().expect("a Content-Length"));
                while self.pending.len() < end + length {
                    self.read_more().await;
                }
                self.pending.drain(..end + length);
                return response;
            }
            self.read_more().await;
        }
    }

    async fn read_more(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .expect("the answer is read: no reset");
        assert!(n > 0, "the connection closed before the whole answer");
        self.pending.extend_from_slice(&chunk[..n]);
    }
}

fn fragment_head(session: &str, length: usize) -> String {
    format!(
        "BITS_POST {PATH} HTTP/1.1\r\nHost: client.example\r\nBITS-Packet-Type: Fragment\r\nBITS-Session-Id: {session}\r\nContent-Range: bytes 0-{}/{length}\r\nContent-Length: {length}\r\n\r\n",
        length - 1
    )
}

fn unknown_session() -> String {
    let (a, b): (u32, u64) = (rand::random(), rand::random());
    format!("{{{a:08X}-0000-4000-8000-{:012X}}}", b & 0xFFFF_FFFF_FFFF)
}

fn is_close(response: &Response) -> bool {
    response
        .header("Connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_mib_fragment_for_an_unknown_session_always_gets_its_not_found_ack() {
    let cluster = Cluster::new().backends(1).start().await;
    let body = random_bytes(EIGHT_MIB, 11);
    for attempt in 0..5 {
        let mut client = Client::connect(&cluster).await;
        let response = client
            .exchange(&fragment_head(&unknown_session(), EIGHT_MIB), &body)
            .await;
        assert_eq!(response.status, 500, "attempt {attempt}: {response:?}");
        assert_eq!(
            response.header("BITS-Error-Code"),
            Some(ErrorCode::SESSION_NOT_FOUND.to_string().as_str()),
            "attempt {attempt}"
        );
        assert!(is_close(&response), "a large rest is drained, then closed");
    }
    assert_eq!(cluster.requests_seen(), 0, "nothing reached a backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_mib_fragment_over_a_1_mib_limit_always_gets_its_413() {
    let cluster = Cluster::new()
        .backends(1)
        .config("[limits]\nmax_fragment_bytes = \"1MiB\"")
        .start()
        .await;
    let session = cluster.create_session(PATH).await;
    let body = random_bytes(EIGHT_MIB, 12);
    for attempt in 0..5 {
        let mut client = Client::connect(&cluster).await;
        let response = client
            .exchange(&fragment_head(&session, EIGHT_MIB), &body)
            .await;
        assert_eq!(response.status, 413, "attempt {attempt}: {response:?}");
        assert_eq!(response.header("BITS-Packet-Type"), Some("Ack"));
        assert_eq!(response.header("BITS-Session-Id"), Some(session.as_str()));
    }
    assert_eq!(
        cluster.stats(0).packets.get("fragment"),
        None,
        "no fragment reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_refused_fragment_is_drained_and_the_connection_serves_the_next_request() {
    let cluster = Cluster::new().backends(1).start().await;
    let mut client = Client::connect(&cluster).await;
    let body = random_bytes(16 << 10, 13);
    let refused = client
        .exchange(&fragment_head(&unknown_session(), body.len()), &body)
        .await;
    assert_eq!(refused.status, 500, "{refused:?}");
    assert!(!is_close(&refused), "the connection is kept: {refused:?}");
    // The same connection carries the next packet to the backend.
    let ping = client
        .exchange(
            &format!("BITS_POST {PATH} HTTP/1.1\r\nHost: client.example\r\nBITS-Packet-Type: Ping\r\nContent-Length: 0\r\n\r\n"),
            b"",
        )
        .await;
    assert_eq!(ping.status, 200, "{ping:?}");
    assert_eq!(cluster.stats(0).packets.get("ping"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_mib_fragment_to_an_unreachable_owner_gets_its_503_ack() {
    let mut cluster = Cluster::new().backends(1).start().await;
    let session = cluster.create_session(PATH).await;
    // No health checks here: the owner looks up, the connect fails, and the Ack is
    // written from fail_to_proxy with the body still unread.
    cluster.stop_backend(0).await;
    let body = random_bytes(EIGHT_MIB, 14);
    for attempt in 0..3 {
        let mut client = Client::connect(&cluster).await;
        let response = client
            .exchange(&fragment_head(&session, EIGHT_MIB), &body)
            .await;
        assert_eq!(response.status, 503, "attempt {attempt}: {response:?}");
        assert_eq!(response.header("BITS-Session-Id"), Some(session.as_str()));
        assert!(is_close(&response), "closed after a failure");
    }
}

/// The backend refuses a fragment over its own limit before reading a byte of it
/// (the reference server's 413, as IIS's request filtering does) and closes: the
/// client gets that answer, not an error of bitsgate's, on either HTTP path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_the_backend_refuses_before_reading_it_gets_the_backends_answer() {
    for listener in ["fast_path = false", "fast_path = true"] {
        let cluster = Cluster::new()
            .backends(1)
            .listener_config(listener)
            .server(|_, config| config.max_fragment = 1 << 20)
            .start()
            .await;
        let session = cluster.create_session(PATH).await;
        let body = random_bytes(EIGHT_MIB, 14);
        for attempt in 0..3 {
            let mut client = Client::connect(&cluster).await;
            let response = client
                .exchange(&fragment_head(&session, EIGHT_MIB), &body)
                .await;
            assert_eq!(
                response.status, 413,
                "{listener}, attempt {attempt}: {response:?}"
            );
            assert_eq!(
                response.header("BITS-Error-Code"),
                Some(ErrorCode::http_error(413).to_string().as_str()),
                "{listener}, attempt {attempt}"
            );
            assert!(is_close(&response), "{listener}: the rest is not forwarded");
        }
    }
}
