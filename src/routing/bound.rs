//! The backend a client connection bound by Windows authentication keeps using: its
//! authenticated upstream connection lives there. Session packets are not affected
//! (a pinned session goes to its owner whatever the connection), nor is a request whose
//! `Host` names another backend; the caller then moves the binding to that backend.

use super::{RouteRequest, Target};
use crate::backend::Farm;

/// The bound backend, when this request may go there: a Ping or a non-BITS request
/// while it is up, a Create-Session while it is ready (not draining), never a backend
/// this request already failed to reach. `None`: route by the ordinary rules.
pub fn bound_choice(
    request: &RouteRequest<'_>,
    farm: &Farm,
    bound: Option<usize>,
) -> Option<usize> {
    let index = bound?;
    let backend = farm.backends.get(index)?;
    if request.exclude.contains(&index) {
        return None;
    }
    let elsewhere = request.host_backend.is_some_and(|host| host != index);
    let usable = match request.target {
        Target::SessionPacket { .. } | Target::Reply { .. } => false,
        Target::Ping | Target::Other => !elsewhere && backend.status.is_up(),
        Target::CreateSession => backend.is_ready(),
    };
    usable.then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendSlot, SlotRegistry};
    use crate::config::{BackendConfig, HostIdMode};

    fn farm(n: usize) -> Farm {
        let registry = SlotRegistry::default();
        let configs: Vec<BackendConfig> = (0..n)
            .map(|i| BackendConfig {
                id: format!("b{i}"),
                address: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                weight: 1,
                host_id: None,
                public_host_id: None,
                drain: false,
                health_check: None,
                tls: None,
            })
            .collect();
        Farm::build(&configs, HostIdMode::Strip, &registry).unwrap()
    }

    fn request(target: Target) -> RouteRequest<'static> {
        RouteRequest {
            target,
            host_backend: None,
            path: "/up/a.bin",
            tick: 0,
            exclude: &[],
        }
    }

    #[test]
    fn ping_create_session_and_other_requests_stay_on_the_bound_backend() {
        let farm = farm(3);
        for target in [Target::Ping, Target::CreateSession, Target::Other] {
            assert_eq!(bound_choice(&request(target), &farm, Some(2)), Some(2));
            assert_eq!(bound_choice(&request(target), &farm, None), None);
        }
    }

    #[test]
    fn session_packets_follow_their_pin_not_the_binding() {
        let farm = farm(3);
        for owner in [Some(BackendSlot(0)), None] {
            let req = request(Target::SessionPacket { owner });
            assert_eq!(bound_choice(&req, &farm, Some(2)), None);
        }
    }

    #[test]
    fn a_down_bound_backend_or_one_already_tried_is_left() {
        let farm = farm(2);
        farm.backends[1].status.set_up(false);
        assert_eq!(bound_choice(&request(Target::Ping), &farm, Some(1)), None);
        let tried = [0];
        let req = RouteRequest {
            exclude: &tried,
            ..request(Target::Ping)
        };
        assert_eq!(bound_choice(&req, &farm, Some(0)), None);
        assert_eq!(bound_choice(&request(Target::Ping), &farm, Some(7)), None);
    }

    #[test]
    fn a_draining_bound_backend_keeps_pings_but_takes_no_new_session() {
        let farm = farm(2);
        farm.backends[1].status.set_draining(true);
        assert_eq!(
            bound_choice(&request(Target::Ping), &farm, Some(1)),
            Some(1)
        );
        assert_eq!(
            bound_choice(&request(Target::CreateSession), &farm, Some(1)),
            None
        );
    }

    #[test]
    fn a_host_naming_another_backend_wins_over_the_binding() {
        let farm = farm(2);
        let req = RouteRequest {
            host_backend: Some(0),
            ..request(Target::Ping)
        };
        assert_eq!(bound_choice(&req, &farm, Some(1)), None);
        let req = RouteRequest {
            host_backend: Some(1),
            ..request(Target::Other)
        };
        assert_eq!(bound_choice(&req, &farm, Some(1)), Some(1));
    }
}
