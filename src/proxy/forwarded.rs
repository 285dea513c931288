//! `X-Forwarded-For` on forwarded requests, as HAProxy's `option forwardfor` and
//! nginx's `$proxy_add_x_forwarded_for` build it: the client's address appended to
//! what the request brought, so IIS logs and the server application see the client
//! rather than bitsgate. With `trusted_forwarders`, only a client inside them may
//! bring a value of its own; anyone else's is dropped, so it cannot pose as another
//! address.

use crate::config::UpstreamConfig;
use bits_proto::HeaderSource;
use pingora::http::RequestHeader;
use std::net::{IpAddr, SocketAddr};

/// The header's name, spelled as IIS logs it.
pub const X_FORWARDED_FOR: &str = "X-Forwarded-For";
static X_FORWARDED_FOR_NAME: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// Sets `X-Forwarded-For` on `request` for a client at `client`.
pub fn apply(
    request: &mut RequestHeader,
    client: Option<SocketAddr>,
    config: &UpstreamConfig,
) -> pingora::Result<()> {
    match value_for(&request.headers, client, config) {
        // Replaces every value the request brought (and their spelling).
        Some(value) => request.insert_header(X_FORWARDED_FOR, value),
        None => Ok(()),
    }
}

/// The one `X-Forwarded-For` value a request with `headers` from `client` is sent
/// with, replacing any it brought; `None` when it is sent as it came.
pub fn value_for<H: HeaderSource + ?Sized>(
    headers: &H,
    client: Option<SocketAddr>,
    config: &UpstreamConfig,
) -> Option<Vec<u8>> {
    if !config.forwarded_for {
        return None;
    }
    let ip = client?.ip().to_canonical();
    Some(forwarded_value(
        headers.values(&X_FORWARDED_FOR_NAME),
        ip,
        trusted(config, ip),
    ))
}

/// Whether `ip` may bring an `X-Forwarded-For` of its own.
fn trusted(config: &UpstreamConfig, ip: IpAddr) -> bool {
    match &config.trusted_forwarders {
        None => true,
        Some(nets) => nets.iter().any(|net| net.contains(&ip)),
    }
}

/// The incoming values (kept when `keep`), then `ip`, as one comma-separated list.
fn forwarded_value<'a>(
    incoming: impl Iterator<Item = &'a [u8]>,
    ip: IpAddr,
    keep: bool,
) -> Vec<u8> {
    let mut value = Vec::with_capacity(64);
    if keep {
        for part in incoming {
            let part = part.trim_ascii();
            if part.is_empty() {
                continue;
            }
            value.extend_from_slice(part);
            value.extend_from_slice(b", ");
        }
    }
    put_ip(&mut value, ip);
    value
}

/// Writes `ip` as text, in place. An IPv4 address, by far the common case, is four
/// numbers written with `itoa`, a fraction of what `Display`'s formatter costs per
/// request.
fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        IpAddr::V6(_) => {
            let _ = std::io::Write::write_fmt(out, format_args!("{ip}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(forwarded_for: bool, trusted: Option<&[&str]>) -> UpstreamConfig {
        let mut config =
            crate::config::load_str("[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:8081\"\n")
                .expect("defaults")
                .upstream;
        config.forwarded_for = forwarded_for;
        config.trusted_forwarders =
            trusted.map(|t| t.iter().map(|n| n.parse().expect("net")).collect());
        config
    }

    fn applied(incoming: &[&str], client: &str, config: &UpstreamConfig) -> Option<String> {
        let mut request = RequestHeader::build("BITS_POST", b"/upload", None).expect("request");
        for value in incoming {
            request
                .append_header(X_FORWARDED_FOR, *value)
                .expect("header");
        }
        apply(&mut request, Some(client.parse().expect("addr")), config).expect("applies");
        let values: Vec<_> = request
            .headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(|v| v.to_str().expect("text").to_owned())
            .collect();
        assert!(values.len() <= 1, "one header: {values:?}");
        values.into_iter().next()
    }

    #[test]
    fn the_client_is_appended_after_what_came_in() {
        let c = config(true, None);
        assert_eq!(
            applied(&[], "192.0.2.7:5000", &c).as_deref(),
            Some("192.0.2.7")
        );
        assert_eq!(
            applied(&["203.0.113.1", "10.0.0.2 "], "192.0.2.7:5000", &c).as_deref(),
            Some("203.0.113.1, 10.0.0.2, 192.0.2.7")
        );
        assert_eq!(
            applied(&[], "0.10.255.100:1", &c).as_deref(),
            Some("0.10.255.100")
        );
        assert_eq!(
            applied(&[], "[::ffff:192.0.2.7]:5000", &c).as_deref(),
            Some("192.0.2.7")
        );
        assert_eq!(
            applied(&[], "[2001:db8::7]:5000", &c).as_deref(),
            Some("2001:db8::7")
        );
    }

    #[test]
    fn only_trusted_forwarders_may_bring_a_value() {
        let c = config(true, Some(&["10.0.0.0/8"]));
        assert_eq!(
            applied(&["203.0.113.1"], "10.1.2.3:5000", &c).as_deref(),
            Some("203.0.113.1, 10.1.2.3")
        );
        assert_eq!(
            applied(&["203.0.113.1"], "192.0.2.7:5000", &c).as_deref(),
            Some("192.0.2.7")
        );
    }

    #[test]
    fn off_leaves_the_request_alone() {
        let c = config(false, None);
        assert_eq!(
            applied(&["203.0.113.1"], "192.0.2.7:5000", &c).as_deref(),
            Some("203.0.113.1")
        );
        assert_eq!(applied(&[], "192.0.2.7:5000", &c), None);
    }
}
