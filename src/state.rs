//! What the proxy, the admin API and the background services share: the current
//! config generation (swapped whole on reload), the session table, the metrics.

use crate::backend::{Farm, HealthTable, SlotRegistry};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::session::SessionTable;
use arc_swap::ArcSwap;
use bits_proto::ClassifyOptions;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One configuration generation and everything derived from it.
pub struct Generation {
    /// The validated config.
    pub config: Config,
    /// The backends of this generation.
    pub farm: Farm,
    /// Packet validation options derived from the config.
    pub classify: ClassifyOptions,
}

/// Everything the services of one bitsgate instance share.
pub struct Shared {
    current: ArcSwap<Generation>,
    /// Session id → owner.
    pub table: SessionTable,
    /// Backend ids → slots and live status.
    pub slots: SlotRegistry,
    /// This instance's metrics.
    pub metrics: Metrics,
    /// Consecutive probe and traffic outcomes per backend slot.
    pub health: HealthTable,
    tick: AtomicU64,
}

impl Shared {
    /// Builds the first generation from a validated config.
    pub fn new(config: Config) -> anyhow::Result<Arc<Shared>> {
        let slots = SlotRegistry::default();
        let generation = Generation::build(config, &slots)?;
        let shared = Shared {
            table: SessionTable::new(generation.config.sessions.max_pinned),
            current: ArcSwap::from_pointee(generation),
            slots,
            metrics: Metrics::new(),
            health: HealthTable::default(),
            tick: AtomicU64::new(0),
        };
        shared.publish_backend_metrics();
        Ok(Arc::new(shared))
    }

    /// The generation in force.
    pub fn generation(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Swaps in a new config generation. The session table is kept; pins of backends
    /// that left the config are answered as removed when their next packet arrives.
    pub fn apply(&self, config: Config) -> anyhow::Result<()> {
        let generation = Generation::build(config, &self.slots)?;
        self.table
            .set_max_pinned(generation.config.sessions.max_pinned);
        self.current.store(Arc::new(generation));
        self.publish_backend_metrics();
        Ok(())
    }

    /// A counter for round robin.
    pub fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::Relaxed)
    }

    /// Sets the backend up/draining gauges from the live status.
    pub fn publish_backend_metrics(&self) {
        let generation = self.current.load();
        for backend in &generation.farm.backends {
            self.metrics
                .backend_up
                .with_label_values(&[&backend.id])
                .set(i64::from(backend.status.is_up()));
            self.metrics
                .backend_draining
                .with_label_values(&[&backend.id])
                .set(i64::from(backend.status.is_draining()));
        }
    }
}

impl Generation {
    /// Derives a generation from a config.
    pub fn build(config: Config, slots: &SlotRegistry) -> anyhow::Result<Generation> {
        let farm = Farm::build(&config.backends, config.host_id.mode, slots)?;
        let classify = ClassifyOptions {
            allow_method_override: config.listener.allow_method_override,
            max_header_value: config.limits.max_header_bytes,
        };
        Ok(Generation {
            config,
            farm,
            classify,
        })
    }
}
