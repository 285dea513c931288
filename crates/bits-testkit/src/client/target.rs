//! Where packets go: the scheme, host, port and path of an `http://` or `https://`
//! URL, the swap to a `BITS-Host-Id` host, and name resolution (with `--resolve`
//! style overrides).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

/// A parsed `http[s]://host[:port]/path[?query]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Whether the connection is TLS.
    pub https: bool,
    /// Host as written in the URL, without brackets for IPv6 literals, lower case.
    pub host: String,
    /// Port from the URL, or 80 (443 for https).
    pub port: u16,
    /// Request target: path and query, always starting with `/`.
    pub path: String,
    /// The `Host` header value, computed once: every packet sends it.
    authority: String,
}

impl Target {
    /// Parses an `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Target, String> {
        let url = url.trim();
        let (https, rest) = match strip_prefix_ignore_case(url, "http://") {
            Some(rest) => (false, rest),
            None => match strip_prefix_ignore_case(url, "https://") {
                Some(rest) => (true, rest),
                None => return Err("the URL must start with http:// or https://".to_owned()),
            },
        };
        // Fragment identifiers are never sent.
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err("credentials in the URL are not supported".to_owned());
        }
        let (host, port) = split_host_port(authority)?;
        let port = port.unwrap_or(default_port(https));
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        check_path(&path)?;
        Ok(Target::new(https, host, port, path))
    }

    /// A URL found in a response (`BITS-Reply-URL`): absolute, or a path on this
    /// target's host.
    pub fn reference(&self, url: &str) -> Result<Target, String> {
        let url = url.trim();
        if url.starts_with('/') {
            let path = url.split('#').next().unwrap_or_default().to_owned();
            check_path(&path)?;
            return Ok(Target::new(self.https, self.host.clone(), self.port, path));
        }
        Target::parse(url)
    }

    fn new(https: bool, host: String, port: u16, path: String) -> Target {
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let authority = if port == default_port(https) {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        Target {
            https,
            host,
            port,
            path,
            authority,
        }
    }

    /// The same path on the node named by a `BITS-Host-Id` value. The value is a name or
    /// an address; the URL's port and scheme are kept unless the value carries a port
    /// (`name:port`, `[v6]:port`). An `http://` or `https://` prefix or a trailing path
    /// are tolerated and dropped.
    pub fn with_host_id(&self, host_id: &str) -> Result<Target, String> {
        let value = host_id.trim();
        let value = strip_prefix_ignore_case(value, "http://")
            .or_else(|| strip_prefix_ignore_case(value, "https://"))
            .unwrap_or(value);
        let value = value.split('/').next().unwrap_or_default();
        // A bare IPv6 address has several colons and no port.
        let (host, port) = if value.matches(':').count() > 1 && !value.starts_with('[') {
            (value.to_ascii_lowercase(), None)
        } else {
            split_host_port(value)?
        };
        Ok(Target::new(
            self.https,
            host,
            port.unwrap_or(self.port),
            self.path.clone(),
        ))
    }

    /// The `Host` header value: `host[:port]`, the port left out when it is 80.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The URL this target stands for.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }

    /// The last path segment, percent-decoded: the name the file gets on the server.
    pub fn file_name(&self) -> String {
        let path = self.path.split('?').next().unwrap_or_default();
        let last = path.rsplit('/').next().unwrap_or_default();
        percent_encoding::percent_decode_str(last)
            .decode_utf8_lossy()
            .into_owned()
    }

    /// The address to connect to: an override from `resolve` (matched on the host name,
    /// case-insensitively), an IP literal, or the first address DNS returns.
    pub async fn resolve(&self, overrides: &HashMap<String, SocketAddr>) -> io::Result<SocketAddr> {
        if let Some(addr) = lookup_override(overrides, &self.host) {
            return Ok(addr);
        }
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .next()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} has no address", self.host),
                )
            })
    }
}

fn default_port(https: bool) -> u16 {
    if https {
        443
    } else {
        80
    }
}

fn check_path(path: &str) -> Result<(), String> {
    if path.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(
            "the path must be percent-encoded (no spaces, controls or non-ASCII)".to_owned(),
        );
    }
    Ok(())
}

fn lookup_override(overrides: &HashMap<String, SocketAddr>, host: &str) -> Option<SocketAddr> {
    overrides.get(host).copied().or_else(|| {
        overrides
            .iter()
            .find(|(name, _)| name.trim_matches(['[', ']']).eq_ignore_ascii_case(host))
            .map(|(_, addr)| *addr)
    })
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; the host comes back lower case
/// and without brackets.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or("unterminated [IPv6] host")?;
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("garbage after ]")?),
        };
        (&rest[..end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host".to_owned());
    }
    if host
        .bytes()
        .any(|b| !(b.is_ascii_alphanumeric() || b"-._:%".contains(&b)))
    {
        return Err(format!("{host:?} is not a host name or address"));
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
    };
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn parses_host_port_and_path() {
        let t = parse("http://Example.COM:8080/up/file.bin?x=1#frag");
        assert_eq!(t.host, "example.com");
        assert_eq!(t.port, 8080);
        assert_eq!(t.path, "/up/file.bin?x=1");
        assert_eq!(t.authority(), "example.com:8080");
        assert_eq!(t.url(), "http://example.com:8080/up/file.bin?x=1");
    }

    #[test]
    fn defaults_to_port_80_and_root_path() {
        let t = parse("HTTP://host");
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        assert_eq!(t.authority(), "host");
        assert_eq!(parse("http://host?q").path, "/?q");
    }

    #[test]
    fn parses_ipv6_literals() {
        let t = parse("http://[::1]:9000/a");
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert_eq!(t.authority(), "[::1]:9000");
    }

    #[test]
    fn refuses_what_it_cannot_send() {
        for bad in [
            "ftp://h/x",
            "http:///x",
            "http://u:p@h/x",
            "http://h:99999/x",
            "http://h/a b",
            "http://[::1/x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn https_defaults_to_port_443_and_keeps_its_scheme() {
        let t = parse("HTTPS://h/up/f");
        assert!(t.https);
        assert_eq!((t.port, t.authority()), (443, "h"));
        assert_eq!(t.url(), "https://h/up/f");
        assert_eq!(parse("https://h:80/").authority(), "h:80");
        assert!(t.with_host_id("n2").unwrap().https);
    }

    #[test]
    fn reply_urls_are_absolute_or_paths_on_the_same_host() {
        let t = parse("https://front:8443/up/f");
        let same = t.reference("/_bits/replies/x?y").unwrap();
        assert_eq!(same.url(), "https://front:8443/_bits/replies/x?y");
        let other = t.reference("http://10.0.0.5:81/r").unwrap();
        assert_eq!(other.url(), "http://10.0.0.5:81/r");
        assert!(t.reference("r/x").is_err());
    }

    #[test]
    fn host_id_keeps_the_url_port_unless_it_has_one() {
        let t = parse("http://front:8080/up/f");
        let same_port = t.with_host_id("node2").unwrap();
        assert_eq!(same_port.authority(), "node2:8080");
        assert_eq!(same_port.path, "/up/f");
        assert_eq!(t.with_host_id("node2:9000").unwrap().port, 9000);
        assert_eq!(
            t.with_host_id("[fe80::1]:81").unwrap().authority(),
            "[fe80::1]:81"
        );
        assert_eq!(
            t.with_host_id("fe80::1").unwrap().authority(),
            "[fe80::1]:8080"
        );
        assert_eq!(
            t.with_host_id("http://node3/ignored").unwrap().authority(),
            "node3:8080"
        );
        assert!(t.with_host_id("bad host").is_err());
    }

    #[test]
    fn the_file_name_is_the_decoded_last_segment() {
        assert_eq!(
            parse("http://h/a/my%20file.bin?x").file_name(),
            "my file.bin"
        );
    }

    #[tokio::test]
    async fn resolve_overrides_win_over_dns_and_match_any_case() {
        let addr: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let overrides = HashMap::from([("Node2".to_owned(), addr)]);
        assert_eq!(
            parse("http://node2:80/").resolve(&overrides).await.unwrap(),
            addr
        );
        let literal = parse("http://127.0.0.2:81/")
            .resolve(&overrides)
            .await
            .unwrap();
        assert_eq!(literal, "127.0.0.2:81".parse().unwrap());
    }
}
