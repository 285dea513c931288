//! Validation of the client edge: connection limits, the PROXY protocol and
//! `X-Forwarded-For`.

use super::defaults as d;
use super::model::*;
use super::raw::*;
use super::validate::Validator;

impl Validator {
    pub(super) fn edge_limits(&mut self, raw: &RawListener) -> EdgeLimits {
        let header_timeout = self.duration(
            "listener.header_timeout",
            raw.header_timeout.as_deref(),
            d::LISTENER_HEADER_TIMEOUT,
        );
        if header_timeout > d::LISTENER_HEADER_TIMEOUT_MAX {
            self.push(
                "listener.header_timeout",
                format!("{} is longer than 60s", humantime::format_duration(header_timeout)),
                "keep it at most \"60s\": every second of it is a second a silent client holds a connection",
            );
        }
        let max_header_block = self.bytes(
            "listener.max_header_block",
            raw.max_header_block.as_ref(),
            d::LISTENER_MAX_HEADER_BLOCK,
        );
        if !(1024..=1024 * 1024).contains(&max_header_block) {
            self.push(
                "listener.max_header_block",
                format!("{max_header_block} is outside 1KiB..=1MiB"),
                "keep the default \"64KiB\" unless clients send very long headers",
            );
        }
        let body_min_bytes = self.bytes(
            "listener.body_min_bytes",
            raw.body_min_bytes.as_ref(),
            d::LISTENER_BODY_MIN_BYTES,
        );
        if body_min_bytes == 0 {
            self.push(
                "listener.body_min_bytes",
                "must be at least 1",
                "write the least bytes a body must bring per body_timeout, e.g. 1024",
            );
        }
        let max_connections = match raw.max_connections {
            None => crate::edge::capacity::default_max_connections(),
            Some(0) => {
                self.push(
                    "listener.max_connections",
                    "must be at least 1",
                    "leave it out to size it from the file descriptor limit",
                );
                1
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        EdgeLimits {
            header_timeout,
            max_header_block,
            body_timeout: self.duration(
                "listener.body_timeout",
                raw.body_timeout.as_deref(),
                d::LISTENER_BODY_TIMEOUT,
            ),
            body_min_bytes,
            max_connections,
        }
    }

    pub(super) fn trusted_forwarders(
        &mut self,
        raw: Option<&Vec<String>>,
    ) -> Option<Vec<ipnet::IpNet>> {
        let raw = raw?;
        let mut nets = Vec::with_capacity(raw.len());
        for text in raw {
            // A bare address is a network of one.
            let parsed = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => nets.push(net.trunc()),
                Err(_) => self.push(
                    "upstream.trusted_forwarders",
                    format!("{text:?} is not a network"),
                    "write CIDRs such as \"10.0.0.0/8\" or addresses such as \"192.0.2.10\"",
                ),
            }
        }
        Some(nets)
    }
}
