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

#[cfg(test)]
mod tests {
    use super::*;

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
