//! `routing::route`, the per-request decision, over farms of 3 and 50 ready backends:
//! a session packet whose owner the table knows, and a Create-Session under each
//! balancing policy (whose cost grows with the farm: every ready backend is looked at).
//!
//! Run with `cargo bench --bench routing -- --warm-up-time 1 --measurement-time 3`.

use bitsgate::backend::{BackendSlot, Farm, SlotRegistry};
use bitsgate::config::{BackendConfig, BalancingPolicy, HostIdMode};
use bitsgate::routing::{route, Route, RouteRequest, Target};
use bitsgate::session::{SessionKey, SessionTable, UrlId};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;

const PATH: &str = "/uploads/reports/2026-11-26/host-0042/report.bin";

fn farm(backends: usize, registry: &SlotRegistry) -> Farm {
    let configs: Vec<BackendConfig> = (0..backends)
        .map(|i| BackendConfig {
            id: format!("backend-{i:02}"),
            address: format!("10.0.0.{}:8080", i + 1).parse().expect("address"),
            weight: 1 + (i % 3) as u32,
            host_id: None,
            public_host_id: None,
            drain: false,
            health_check: None,
            tls: None,
        })
        .collect();
    Farm::build(&configs, HostIdMode::Strip, registry).expect("farm")
}

/// A table whose per-backend counts differ, so least_sessions has a real minimum to find.
fn table_for(farm: &Farm) -> SessionTable {
    let table = SessionTable::new(u64::MAX);
    let mut id = 0u32;
    for (i, backend) in farm.backends.iter().enumerate() {
        for _ in 0..=(i % 7) {
            id += 1;
            let key = SessionKey::new(&format!("{{00000000-0000-4000-8000-{id:012x}}}"));
            table
                .pin(key, backend.slot, UrlId(0), 0)
                .expect("unbounded table");
        }
    }
    table
}

fn bench_route(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    for size in [3usize, 50] {
        let registry = SlotRegistry::default();
        let farm = farm(size, &registry);
        let table = table_for(&farm);
        let sessions_of = |slot: BackendSlot| table.sessions_of(slot);

        // The owner is the middle backend: found through the slot index, not a scan.
        let owner = farm.backends[size / 2].slot;
        let packet = RouteRequest {
            target: Target::SessionPacket { owner: Some(owner) },
            host_backend: None,
            path: PATH,
            tick: 0,
            exclude: &[],
        };
        assert_eq!(
            route(&packet, &farm, BalancingPolicy::RoundRobin, &sessions_of),
            Route::Forward(size / 2)
        );
        group.bench_function(BenchmarkId::new("session_packet_known_owner", size), |b| {
            b.iter(|| {
                route(
                    black_box(&packet),
                    &farm,
                    BalancingPolicy::RoundRobin,
                    &sessions_of,
                )
            })
        });

        for policy in [
            BalancingPolicy::RoundRobin,
            BalancingPolicy::LeastSessions,
            BalancingPolicy::UrlHash,
        ] {
            let mut tick = 0u64;
            group.bench_function(
                BenchmarkId::new(format!("create_session_{}", policy.as_str()), size),
                |b| {
                    b.iter(|| {
                        tick += 1;
                        let request = RouteRequest {
                            target: Target::CreateSession,
                            host_backend: None,
                            path: PATH,
                            tick: black_box(tick),
                            exclude: &[],
                        };
                        let decision = route(&request, &farm, policy, &sessions_of);
                        debug_assert!(matches!(decision, Route::Forward(_)));
                        decision
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_route);
criterion_main!(benches);
