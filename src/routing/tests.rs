use super::*;
use crate::backend::SlotRegistry;
use crate::config::{BackendConfig, HostIdMode};
use std::collections::HashMap;

struct Fixture {
    farm: Farm,
    registry: SlotRegistry,
}

fn farm(mode: HostIdMode, n: usize) -> Fixture {
    let registry = SlotRegistry::default();
    let configs: Vec<BackendConfig> = (0..n)
        .map(|i| BackendConfig {
            id: format!("b{i}"),
            address: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
            weight: 1,
            host_id: Some(format!("NODE{i}")),
            public_host_id: Some(format!("b{i}.bits.example")),
            drain: false,
            health_check: None,
            tls: None,
        })
        .collect();
    Fixture {
        farm: Farm::build(&configs, mode, &registry).unwrap(),
        registry,
    }
}

fn request(target: Target) -> RouteRequest<'static> {
    RouteRequest {
        target,
        host_backend: None,
        path: "/upload/a.bin",
        tick: 0,
        exclude: &[],
    }
}

fn run(fx: &Fixture, request: &RouteRequest<'_>) -> Route {
    route(request, &fx.farm, BalancingPolicy::RoundRobin, &|_| 0)
}

#[test]
fn ping_goes_to_any_ready_backend() {
    let fx = farm(HostIdMode::Strip, 3);
    fx.farm.backends[0].status.set_up(false);
    fx.farm.backends[1].status.set_draining(true);
    for tick in 0..5 {
        let req = RouteRequest {
            tick,
            ..request(Target::Ping)
        };
        assert_eq!(run(&fx, &req), Route::Forward(2));
    }
}

#[test]
fn ping_with_no_ready_backend_is_answered_503_locally() {
    let fx = farm(HostIdMode::Strip, 2);
    fx.farm.backends[0].status.set_up(false);
    fx.farm.backends[1].status.set_up(false);
    assert_eq!(
        run(&fx, &request(Target::Ping)),
        Route::Local(LocalReply::NoBackend)
    );
}

#[test]
fn create_session_round_robins_over_ready_backends_only() {
    let fx = farm(HostIdMode::Strip, 3);
    fx.farm.backends[1].status.set_draining(true);
    let picks: Vec<Route> = (0..4)
        .map(|tick| {
            run(
                &fx,
                &RouteRequest {
                    tick,
                    ..request(Target::CreateSession)
                },
            )
        })
        .collect();
    assert_eq!(
        picks,
        [
            Route::Forward(0),
            Route::Forward(2),
            Route::Forward(0),
            Route::Forward(2)
        ]
    );
}

#[test]
fn create_session_respects_weights_in_round_robin() {
    let registry = SlotRegistry::default();
    let configs = [("b0", 3), ("b1", 1)].map(|(id, weight)| BackendConfig {
        id: id.into(),
        address: "127.0.0.1:1".parse().unwrap(),
        weight,
        host_id: None,
        public_host_id: None,
        drain: false,
        health_check: None,
        tls: None,
    });
    let farm = Farm::build(&configs, HostIdMode::Strip, &registry).unwrap();
    let mut counts = [0; 2];
    for tick in 0..400 {
        let req = RouteRequest {
            tick,
            ..request(Target::CreateSession)
        };
        match route(&req, &farm, BalancingPolicy::RoundRobin, &|_| 0) {
            Route::Forward(i) => counts[i] += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(counts, [300, 100]);
}

#[test]
fn create_session_with_least_sessions_picks_the_emptiest_backend() {
    let fx = farm(HostIdMode::Strip, 3);
    let loads: HashMap<BackendSlot, u64> = fx
        .farm
        .backends
        .iter()
        .zip([5, 1, 3])
        .map(|(b, n)| (b.slot, n))
        .collect();
    for tick in 0..3 {
        let req = RouteRequest {
            tick,
            ..request(Target::CreateSession)
        };
        let decision = route(&req, &fx.farm, BalancingPolicy::LeastSessions, &|slot| {
            loads[&slot]
        });
        assert_eq!(decision, Route::Forward(1));
    }
}

#[test]
fn least_sessions_spreads_ties_across_backends() {
    let fx = farm(HostIdMode::Strip, 3);
    let picks: std::collections::HashSet<Route> = (0..3)
        .map(|tick| {
            let req = RouteRequest {
                tick,
                ..request(Target::CreateSession)
            };
            route(&req, &fx.farm, BalancingPolicy::LeastSessions, &|_| 0)
        })
        .collect();
    assert_eq!(picks.len(), 3);
}

#[test]
fn create_session_with_url_hash_is_stable_per_path_and_spreads_paths() {
    let fx = farm(HostIdMode::Strip, 3);
    let pick = |path: &str, tick| {
        let req = RouteRequest {
            path,
            tick,
            ..request(Target::CreateSession)
        };
        route(&req, &fx.farm, BalancingPolicy::UrlHash, &|_| 0)
    };
    assert_eq!(pick("/a", 0), pick("/a", 7));
    let spread: std::collections::HashSet<Route> =
        (0..50).map(|i| pick(&format!("/file{i}"), 0)).collect();
    assert_eq!(spread.len(), 3);
}

#[test]
fn url_hash_moves_only_the_paths_of_a_backend_that_is_not_ready() {
    let fx = farm(HostIdMode::Strip, 3);
    let pick = |path: &str| {
        let req = RouteRequest {
            path,
            ..request(Target::CreateSession)
        };
        route(&req, &fx.farm, BalancingPolicy::UrlHash, &|_| 0)
    };
    let before: Vec<Route> = (0..60).map(|i| pick(&format!("/f{i}"))).collect();
    fx.farm.backends[2].status.set_draining(true);
    for (i, old) in before.iter().enumerate() {
        let new = pick(&format!("/f{i}"));
        if *old != Route::Forward(2) {
            assert_eq!(new, *old, "path /f{i} moved although its backend is ready");
        } else {
            assert_ne!(new, Route::Forward(2));
        }
    }
}

#[test]
fn create_session_with_no_ready_backend_is_answered_503_locally() {
    let fx = farm(HostIdMode::Strip, 2);
    fx.farm.backends[0].status.set_draining(true);
    fx.farm.backends[1].status.set_up(false);
    assert_eq!(
        run(&fx, &request(Target::CreateSession)),
        Route::Local(LocalReply::NoBackend)
    );
}

#[test]
fn create_session_skips_backends_that_already_failed_to_connect() {
    let fx = farm(HostIdMode::Strip, 2);
    let req = RouteRequest {
        exclude: &[0],
        ..request(Target::CreateSession)
    };
    assert_eq!(run(&fx, &req), Route::Forward(1));
    let req = RouteRequest {
        exclude: &[0, 1],
        ..request(Target::CreateSession)
    };
    assert_eq!(run(&fx, &req), Route::Local(LocalReply::NoBackend));
}

#[test]
fn create_session_ignores_a_host_naming_a_backend() {
    let fx = farm(HostIdMode::Rewrite, 2);
    fx.farm.backends[1].status.set_draining(true);
    let req = RouteRequest {
        host_backend: Some(1),
        ..request(Target::CreateSession)
    };
    assert_eq!(run(&fx, &req), Route::Forward(0));
}

#[test]
fn session_packets_go_to_their_owner_only() {
    let fx = farm(HostIdMode::Strip, 3);
    let owner = fx.farm.backends[2].slot;
    for tick in 0..5 {
        let req = RouteRequest {
            tick,
            ..request(Target::SessionPacket { owner: Some(owner) })
        };
        assert_eq!(run(&fx, &req), Route::Forward(2));
    }
}

#[test]
fn session_packets_reach_a_draining_owner() {
    let fx = farm(HostIdMode::Strip, 2);
    fx.farm.backends[1].status.set_draining(true);
    let req = request(Target::SessionPacket {
        owner: Some(fx.farm.backends[1].slot),
    });
    assert_eq!(run(&fx, &req), Route::Forward(1));
}

#[test]
fn an_unknown_session_is_answered_not_found_locally() {
    let fx = farm(HostIdMode::Strip, 2);
    let req = request(Target::SessionPacket { owner: None });
    assert_eq!(run(&fx, &req), Route::Local(LocalReply::SessionNotFound));
}

#[test]
fn a_down_owner_is_answered_503_and_never_replaced() {
    let fx = farm(HostIdMode::Strip, 3);
    fx.farm.backends[0].status.set_up(false);
    let req = request(Target::SessionPacket {
        owner: Some(fx.farm.backends[0].slot),
    });
    assert_eq!(run(&fx, &req), Route::Local(LocalReply::OwnerUnavailable));
}

#[test]
fn an_owner_that_failed_to_connect_is_answered_503() {
    let fx = farm(HostIdMode::Strip, 2);
    let req = RouteRequest {
        exclude: &[0],
        ..request(Target::SessionPacket {
            owner: Some(fx.farm.backends[0].slot),
        })
    };
    assert_eq!(run(&fx, &req), Route::Local(LocalReply::OwnerUnavailable));
}

#[test]
fn an_owner_removed_from_the_config_is_answered_not_found() {
    let fx = farm(HostIdMode::Strip, 2);
    let (gone, _) = fx.registry.slot("gone").unwrap();
    let req = request(Target::SessionPacket { owner: Some(gone) });
    assert_eq!(run(&fx, &req), Route::Local(LocalReply::OwnerRemoved));
}

#[test]
fn an_unpinned_session_packet_whose_host_names_a_backend_goes_there() {
    let fx = farm(HostIdMode::Rewrite, 3);
    let req = RouteRequest {
        host_backend: Some(2),
        ..request(Target::SessionPacket { owner: None })
    };
    assert_eq!(run(&fx, &req), Route::Forward(2));
}

#[test]
fn the_pin_wins_over_the_host_name() {
    let fx = farm(HostIdMode::Rewrite, 3);
    let req = RouteRequest {
        host_backend: Some(2),
        ..request(Target::SessionPacket {
            owner: Some(fx.farm.backends[0].slot),
        })
    };
    assert_eq!(run(&fx, &req), Route::Forward(0));
}

#[test]
fn a_ping_whose_host_names_a_backend_goes_there_or_gets_503() {
    let fx = farm(HostIdMode::Passthrough, 3);
    let req = RouteRequest {
        host_backend: Some(1),
        ..request(Target::Ping)
    };
    assert_eq!(run(&fx, &req), Route::Forward(1));
    fx.farm.backends[1].status.set_up(false);
    assert_eq!(run(&fx, &req), Route::Local(LocalReply::OwnerUnavailable));
}

#[test]
fn non_bits_requests_go_to_a_ready_backend_or_the_named_one() {
    let fx = farm(HostIdMode::Rewrite, 3);
    fx.farm.backends[0].status.set_up(false);
    assert_eq!(run(&fx, &request(Target::Other)), Route::Forward(1));
    let req = RouteRequest {
        host_backend: Some(2),
        ..request(Target::Other)
    };
    assert_eq!(run(&fx, &req), Route::Forward(2));
    let req = RouteRequest {
        host_backend: Some(0),
        ..request(Target::Other)
    };
    assert_eq!(run(&fx, &req), Route::Forward(1));
}

#[test]
fn a_reply_download_goes_to_its_owner_only_whatever_the_host_and_tick() {
    let fx = farm(HostIdMode::Rewrite, 3);
    let owner = fx.farm.backends[2].slot;
    for tick in 0..6 {
        let req = RouteRequest {
            tick,
            host_backend: Some(0),
            ..request(Target::Reply { owner })
        };
        assert_eq!(run(&fx, &req), Route::Forward(2));
    }
    // Draining owners still serve the replies of their sessions.
    fx.farm.backends[2].status.set_draining(true);
    assert_eq!(
        run(&fx, &request(Target::Reply { owner })),
        Route::Forward(2)
    );
}

#[test]
fn a_reply_download_whose_owner_is_down_or_unreachable_gets_503_never_another_node() {
    let fx = farm(HostIdMode::Strip, 3);
    let owner = fx.farm.backends[1].slot;
    let req = RouteRequest {
        exclude: &[1],
        ..request(Target::Reply { owner })
    };
    assert_eq!(run(&fx, &req), Route::Local(LocalReply::OwnerUnavailable));
    fx.farm.backends[1].status.set_up(false);
    assert_eq!(
        run(&fx, &request(Target::Reply { owner })),
        Route::Local(LocalReply::OwnerUnavailable)
    );
}

#[test]
fn a_reply_route_of_a_removed_backend_is_routed_like_any_other_request() {
    let fx = farm(HostIdMode::Strip, 2);
    let (gone, _) = fx.registry.slot("gone").unwrap();
    let req = RouteRequest {
        tick: 1,
        ..request(Target::Reply { owner: gone })
    };
    assert_eq!(
        run(&fx, &req),
        run(
            &fx,
            &RouteRequest {
                tick: 1,
                ..request(Target::Other)
            }
        )
    );
}
