//! The PROXY protocol header (HAProxy's v1 text and v2 binary forms) a load balancer
//! sends first on every connection, parsed with the `ppp` crate: it parses both
//! versions, partial input included, has no dependencies beyond `thiserror`, and is
//! maintained. Only the header's bytes are consumed: what follows is the client's
//! HTTP, handed back to be read first.

use bytes::{Bytes, BytesMut};
use ppp::{v1, v2, HeaderResult, PartialResult};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Longest header accepted: a v1 header is at most 107 bytes; a v2 header's TLVs
/// from load balancers (AWS NLB, HAProxy) stay far below this.
const MAX_HEADER: usize = 16 * 1024;

/// A header read off a connection.
#[derive(Debug, PartialEq)]
pub struct ProxyHeader {
    /// The client's address; none for a `LOCAL` (v2) or `UNKNOWN` (v1) header, sent by
    /// the load balancer's own health checks: the TCP peer then stands for the client.
    pub source: Option<SocketAddr>,
    /// Bytes read past the header.
    pub rest: Bytes,
}

/// Why a connection's header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a PROXY protocol header (or a damaged one).
    Invalid,
    /// It did not arrive by the deadline.
    Timeout,
    /// The connection closed first.
    Closed,
}

impl Refused {
    /// The close reason a refusal is counted under; none for a connection that
    /// closed first (a load balancer's TCP health check).
    pub fn close_reason(self) -> Option<crate::metrics::EdgeClose> {
        match self {
            Refused::Invalid => Some(crate::metrics::EdgeClose::ProxyHeaderInvalid),
            Refused::Timeout => Some(crate::metrics::EdgeClose::HeaderTimeout),
            Refused::Closed => None,
        }
    }
}

/// Reads the header that must open `stream`, by `deadline`; a refusal is counted in
/// `metrics` (unless the connection just closed) and logged, and the connection is to
/// close.
pub async fn read_or_refuse<S: AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Instant,
    metrics: &crate::metrics::EdgeMetrics,
) -> Option<ProxyHeader> {
    match read(stream, deadline).await {
        Ok(header) => Some(header),
        Err(refused) => {
            if let Some(reason) = refused.close_reason() {
                metrics.closed(reason);
            }
            tracing::debug!(target: "bitsgate::edge", ?refused, "connection without a valid PROXY protocol header closed");
            None
        }
    }
}

/// Reads the header that must open `stream`, by `deadline`.
pub async fn read<S: AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Instant,
) -> Result<ProxyHeader, Refused> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await;
        match read {
            Err(_) => return Err(Refused::Timeout),
            Ok(Err(_)) | Ok(Ok(0)) => return Err(Refused::Closed),
            Ok(Ok(_)) => {}
        }
        match parse(&buf) {
            Parsed::Incomplete if buf.len() < MAX_HEADER => continue,
            Parsed::Incomplete | Parsed::Invalid => return Err(Refused::Invalid),
            Parsed::Header { len, source } => {
                // A copy, not a slice of `buf`: the connection keeps `rest` until it is
                // read, and a slice would keep the whole read buffer with it.
                let rest = match &buf[len..] {
                    [] => Bytes::new(),
                    after => Bytes::copy_from_slice(after),
                };
                return Ok(ProxyHeader { source, rest });
            }
        }
    }
}

enum Parsed {
    Incomplete,
    Invalid,
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Longest v1 header, its line end included.
const MAX_V1: usize = 107;

fn parse(input: &[u8]) -> Parsed {
    // A v1 line is only judged whole: a partial address ("192.0") is not an error.
    let v1_prefix = input.starts_with(b"PROXY") || b"PROXY".starts_with(input);
    if v1_prefix {
        if !input.contains(&b'\n') && input.len() < MAX_V1 {
            return Parsed::Incomplete;
        }
        // The whole line is in: whatever it lacks is missing for good.
        return match v1::Header::try_from(input) {
            Ok(header) => v1_header(&header),
            Err(_) => Parsed::Invalid,
        };
    }
    let result = HeaderResult::parse(input);
    if result.is_incomplete() {
        return Parsed::Incomplete;
    }
    match result {
        HeaderResult::V1(Ok(header)) => v1_header(&header),
        HeaderResult::V2(Ok(header)) => Parsed::Header {
            len: header.len(),
            source: match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => None,
            },
        },
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Parsed::Invalid,
    }
}

fn v1_header(header: &v1::Header<'_>) -> Parsed {
    Parsed::Header {
        len: header.header.len(),
        source: match header.addresses {
            v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Unknown => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(input: &[u8]) -> Option<(usize, Option<SocketAddr>)> {
        match parse(input) {
            Parsed::Header { len, source } => Some((len, source)),
            _ => None,
        }
    }

    #[test]
    fn v1_gives_the_source_and_its_length() {
        let text = b"PROXY TCP4 192.0.2.7 198.51.100.1 50123 8080\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parsed(text),
            Some((46, Some("192.0.2.7:50123".parse().expect("addr"))))
        );
        assert_eq!(
            parsed(b"PROXY TCP6 2001:db8::7 2001:db8::1 50123 8080\r\n").map(|p| p.1),
            Some(Some("[2001:db8::7]:50123".parse().expect("addr")))
        );
        assert_eq!(parsed(b"PROXY UNKNOWN\r\n"), Some((15, None)));
    }

    #[test]
    fn v2_gives_the_source_and_local_gives_none() {
        let header = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                "[2001:db8::9]:4000".parse::<SocketAddr>().expect("addr"),
                "[2001:db8::1]:8080".parse::<SocketAddr>().expect("addr"),
            ),
        )
        .build()
        .expect("builds");
        let mut input = header.clone();
        input.extend_from_slice(b"GET /");
        assert_eq!(
            parsed(&input),
            Some((
                header.len(),
                Some("[2001:db8::9]:4000".parse().expect("addr"))
            ))
        );
        let local = v2::Builder::new(
            v2::Version::Two | v2::Command::Local,
            v2::AddressFamily::Unspecified | v2::Protocol::Unspecified,
        )
        .build()
        .expect("builds");
        assert_eq!(parsed(&local), Some((16, None)));
    }

    #[test]
    fn partial_headers_wait_and_http_is_refused() {
        assert!(matches!(parse(b"PROXY TCP4 192.0"), Parsed::Incomplete));
        assert!(matches!(parse(b"\r\n\r\n\0\r\nQU"), Parsed::Incomplete));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Invalid));
        assert!(matches!(parse(b"PROXY TCP4 nonsense\r\n"), Parsed::Invalid));
    }
}
