//! One generation of the backend farm: immutable, swapped whole on reload.

use super::slots::{BackendSlot, BackendStatus, SlotRegistry, SlotsExhausted};
use crate::config::{BackendConfig, HostIdMode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// One configured backend.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Interned id.
    pub slot: BackendSlot,
    /// Id from the config.
    pub id: Arc<str>,
    /// Where it listens.
    pub address: SocketAddr,
    /// Share of new sessions.
    pub weight: u32,
    /// What it sends in `BITS-Host-Id`.
    pub host_id: Option<String>,
    /// What clients call it in rewrite mode.
    pub public_host_id: Option<String>,
    /// Health and drain state, shared across generations.
    pub status: Arc<BackendStatus>,
    /// Left the config; kept only until its sessions end.
    pub retired: bool,
    /// HTTPS settings; `None` is plain HTTP.
    pub tls: Option<crate::config::BackendTls>,
}

impl Backend {
    /// Reachable and not draining: may take new sessions.
    pub fn is_ready(&self) -> bool {
        self.status.is_up() && !self.status.is_draining()
    }

    /// Left the config here, or (Redis store) at another replica's reload: kept only
    /// for the sessions it owns.
    pub fn is_retired(&self) -> bool {
        self.retired || self.status.is_retired_elsewhere()
    }
}

/// The backends of one config generation, with lookups by slot and by host name.
#[derive(Debug, Default)]
pub struct Farm {
    /// In config order.
    pub backends: Vec<Backend>,
    by_slot: HashMap<BackendSlot, usize>,
    by_host: HashMap<String, usize>,
}

impl Farm {
    /// Builds a generation; host names are indexed as the Host-Id mode needs them.
    pub fn build(
        configs: &[BackendConfig],
        mode: HostIdMode,
        registry: &SlotRegistry,
    ) -> Result<Farm, SlotsExhausted> {
        Self::build_with_retired(configs, &[], mode, registry)
    }

    /// Builds a generation that also keeps `retired` backends (gone from the config,
    /// still owning sessions): they serve their pins and take nothing new.
    pub fn build_with_retired(
        configs: &[BackendConfig],
        retired: &[BackendConfig],
        mode: HostIdMode,
        registry: &SlotRegistry,
    ) -> Result<Farm, SlotsExhausted> {
        let mut farm = Farm::default();
        let all = configs
            .iter()
            .map(|c| (c, false))
            .chain(retired.iter().map(|c| (c, true)));
        for (index, (config, is_retired)) in all.enumerate() {
            let (slot, status) = registry.slot(&config.id)?;
            status.set_retired(is_retired);
            status.set_config_drain(config.drain);
            let host_name = match mode {
                HostIdMode::Rewrite => config.public_host_id.as_deref(),
                HostIdMode::Passthrough => config.host_id.as_deref(),
                HostIdMode::Strip => None,
            };
            if let Some(name) = host_name.filter(|_| !is_retired) {
                farm.by_host.insert(name.to_ascii_lowercase(), index);
            }
            farm.by_slot.insert(slot, index);
            farm.backends.push(Backend {
                slot,
                id: config.id.as_str().into(),
                address: config.address,
                weight: config.weight,
                host_id: config.host_id.clone(),
                public_host_id: config.public_host_id.clone(),
                status,
                retired: is_retired,
                tls: config.tls.clone(),
            });
        }
        Ok(farm)
    }

    /// The index of the backend with this id.
    pub fn index_of_id(&self, id: &str) -> Option<usize> {
        self.backends.iter().position(|b| &*b.id == id)
    }

    /// The index of the backend with this slot, if it is in this generation.
    pub fn index_of(&self, slot: BackendSlot) -> Option<usize> {
        self.by_slot.get(&slot).copied()
    }

    /// The backend a request's `Host` names (port ignored, case-insensitive).
    pub fn index_for_host(&self, host: &str) -> Option<usize> {
        if self.by_host.is_empty() {
            return None;
        }
        let name = strip_port(host.trim());
        if let Some(&index) = self.by_host.get(name) {
            return Some(index);
        }
        self.by_host.get(&name.to_ascii_lowercase()).copied()
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(inner) = host.strip_prefix('[') {
        // [v6]:port; a Host without the closing bracket is kept as it is.
        return inner.find(']').map_or(host, |i| &host[..i + 2]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(id: &str, host_id: Option<&str>, public: Option<&str>) -> BackendConfig {
        BackendConfig {
            id: id.into(),
            address: "127.0.0.1:1".parse().unwrap(),
            weight: 1,
            host_id: host_id.map(Into::into),
            public_host_id: public.map(Into::into),
            drain: false,
            health_check: None,
            tls: None,
        }
    }

    #[test]
    fn rewrite_mode_indexes_public_names_and_ignores_ports_and_case() {
        let registry = SlotRegistry::default();
        let farm = Farm::build(
            &[
                backend("b1", Some("NODE1"), Some("b1.bits.example")),
                backend("b2", None, Some("b2.bits.example")),
            ],
            HostIdMode::Rewrite,
            &registry,
        )
        .unwrap();
        assert_eq!(farm.index_for_host("b2.bits.example"), Some(1));
        assert_eq!(farm.index_for_host("B1.Bits.Example:8080"), Some(0));
        assert_eq!(farm.index_for_host("NODE1"), None);
        assert_eq!(farm.index_for_host("other"), None);
    }

    #[test]
    fn passthrough_mode_indexes_backend_host_ids() {
        let registry = SlotRegistry::default();
        let farm = Farm::build(
            &[backend("b1", Some("NODE1"), Some("pub1"))],
            HostIdMode::Passthrough,
            &registry,
        )
        .unwrap();
        assert_eq!(farm.index_for_host("node1"), Some(0));
        assert_eq!(farm.index_for_host("pub1"), None);
    }

    #[test]
    fn strip_mode_routes_no_host_names() {
        let registry = SlotRegistry::default();
        let farm = Farm::build(
            &[backend("b1", Some("NODE1"), Some("pub1"))],
            HostIdMode::Strip,
            &registry,
        )
        .unwrap();
        assert_eq!(farm.index_for_host("node1"), None);
        assert_eq!(farm.index_for_host("pub1"), None);
    }

    #[test]
    fn slots_are_stable_across_generations() {
        let registry = SlotRegistry::default();
        let first = Farm::build(
            &[backend("b1", None, None), backend("b2", None, None)],
            HostIdMode::Strip,
            &registry,
        )
        .unwrap();
        let second =
            Farm::build(&[backend("b2", None, None)], HostIdMode::Strip, &registry).unwrap();
        assert_eq!(first.backends[1].slot, second.backends[0].slot);
        assert_eq!(second.index_of(first.backends[0].slot), None);
    }

    #[test]
    fn strips_ports_from_host_headers() {
        assert_eq!(strip_port("a.example:80"), "a.example");
        assert_eq!(strip_port("a.example"), "a.example");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        // Client-controlled input: never a panic.
        assert_eq!(strip_port("["), "[");
        assert_eq!(strip_port("[abc"), "[abc");
        assert_eq!(strip_port("]:80"), "]");
    }
}
