//! The address to call one of bitsgate's own listeners on, from the same machine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A listener bound to every address (`0.0.0.0`, `[::]`) is called on loopback; any
/// other address as it is.
pub fn connectable(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), address.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), address.port())
        }
        _ => address,
    }
}

/// The host part of an authority or address: without user info, port or IPv6
/// brackets (`u@h.example:1` → `h.example`, `[::1]:443` → `::1`, `h` → `h`).
pub fn host_of(authority: &str) -> &str {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(inner) = authority.strip_prefix('[') {
        return inner.split(']').next().unwrap_or(inner);
    }
    match authority.rsplit_once(':') {
        // A bare IPv6 address has colons but no port.
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_port_user_info_and_brackets() {
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("u:p@h.example:1"), "h.example");
        assert_eq!(host_of("h"), "h");
    }

    #[test]
    fn an_unspecified_address_is_called_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        let v6: SocketAddr = "[::]:9090".parse().unwrap();
        let other: SocketAddr = "10.1.2.3:9090".parse().unwrap();
        assert_eq!(connectable(v4), "127.0.0.1:9090".parse().unwrap());
        assert_eq!(connectable(v6), "[::1]:9090".parse().unwrap());
        assert_eq!(connectable(other), other);
    }
}
