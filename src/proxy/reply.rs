//! Upload-reply jobs (spec §5, §7): the final Fragment's Ack carries `BITS-Reply-URL`,
//! and the client then downloads the reply with `HEAD` and ranged `GET`s, without a
//! session id, on connections of its own, before its Close-Session.
//!
//! An IIS server names itself in that URL; behind bitsgate the client must come back
//! through bitsgate instead, and reach the node that ran the job. So a URL whose
//! authority names a backend is rewritten to the authority the client used, and the
//! URL's path and query are routed to the session's owner until the session ends.

use super::ctx::{Chosen, PacketInfo};
use super::learn::RequestUrl;
use super::view::{AnswerView, RequestView};
use crate::backend::Farm;
use crate::routing::Target;
use crate::session::UrlRegistry;
use crate::state::{Generation, Shared};
use bits_proto::HeaderSource;
use bits_proto::{headers as h, PacketType};
use http::Method;

/// The routing target of a request that is not a BITS packet: a live reply route for
/// `HEAD` and `GET` (the only methods that look it up), else [`Target::Other`].
pub fn target_of<R: RequestView + ?Sized>(shared: &Shared, req: &R) -> Target {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Target::Other;
    }
    match shared.reply_owner(req.path_and_query()) {
        Some(owner) => Target::Reply { owner },
        None => Target::Other,
    }
}

/// A `BITS-Reply-URL` value, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyUrl<'a> {
    /// `scheme://authority/path?query`, or `//authority/path?query` (no scheme).
    Absolute {
        scheme: Option<&'a str>,
        authority: &'a str,
        path_and_query: &'a str,
    },
    /// `/path?query`: on whatever host the client used.
    AbsolutePath(&'a str),
    /// `name?query`, relative to the directory of the upload's URL.
    RelativePath(&'a str),
}

fn parse(value: &str) -> ReplyUrl<'_> {
    // A fragment never reaches the server: it is not part of the route.
    let value = value.split('#').next().unwrap_or_default();
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
        {
            (Some(scheme), rest)
        }
        _ => match value.strip_prefix("//") {
            Some(rest) => (None, rest),
            None if value.starts_with('/') => return ReplyUrl::AbsolutePath(value),
            None => return ReplyUrl::RelativePath(value),
        },
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    ReplyUrl::Absolute {
        scheme,
        authority: &rest[..end],
        path_and_query: &rest[end..],
    }
}

/// The backend an authority names (`host` or `host:port`, case-insensitive): by its
/// address, `host_id` or `public_host_id`, whatever the port.
fn names_a_backend(farm: &Farm, authority: &str) -> bool {
    let host = crate::reach::host_of(authority);
    farm.backends.iter().any(|b| {
        let ip = b.address.ip().to_string();
        host.eq_ignore_ascii_case(&ip)
            || [&b.host_id, &b.public_host_id]
                .into_iter()
                .flatten()
                .any(|name| host.eq_ignore_ascii_case(crate::reach::host_of(name)))
    })
}

/// What a reply URL becomes and where its downloads go.
#[derive(Debug, PartialEq, Eq)]
struct Relayed {
    /// The new header value, when it changes.
    rewritten: Option<String>,
    /// The path and query the client will request through bitsgate, when it will.
    route: Option<String>,
    /// The URL names a host that is neither a backend nor relative.
    foreign: bool,
}

fn relay(value: &str, farm: &Farm, https: bool, request: RequestUrl<'_>) -> Relayed {
    let keep = |route: Option<String>| Relayed {
        rewritten: None,
        route,
        foreign: false,
    };
    match parse(value) {
        ReplyUrl::AbsolutePath(path) => keep(Some(path.to_owned())),
        ReplyUrl::RelativePath(name) => {
            // Resolved as the client resolves it; dot segments are left to a client
            // that normalises them, so no route is guessed for them.
            let dotted = name.split(['/', '?']).any(|s| s == "." || s == "..");
            let route = (!dotted && !name.is_empty())
                .then(|| format!("{}{name}", UrlRegistry::dir_of(request.path)));
            keep(route)
        }
        ReplyUrl::Absolute {
            scheme,
            authority,
            path_and_query,
        } => {
            if !names_a_backend(farm, authority) {
                return Relayed {
                    rewritten: None,
                    route: None,
                    foreign: true,
                };
            }
            let path_and_query = if path_and_query.starts_with('/') {
                path_and_query.to_owned()
            } else {
                format!("/{path_and_query}")
            };
            let rewritten = match (request.host, scheme) {
                (Some(host), Some(_)) => {
                    let scheme = if https { "https" } else { "http" };
                    format!("{scheme}://{host}{path_and_query}")
                }
                (Some(host), None) => format!("//{host}{path_and_query}"),
                // No Host to name: a path on whatever host the client used.
                (None, _) => path_and_query.clone(),
            };
            Relayed {
                rewritten: Some(rewritten),
                route: Some(path_and_query),
                foreign: false,
            }
        }
    }
}

/// Rewrites the `BITS-Reply-URL` of a final Fragment's Ack and routes the reply's path
/// to the session's owner. The route is journaled before the Ack is released, as a pin
/// is, so a restart between the Ack and the download keeps it.
pub async fn relay_reply_url<A: AnswerView + ?Sized>(
    shared: &Shared,
    generation: &Generation,
    packet: &PacketInfo,
    chosen: &Chosen,
    response: &mut A,
    request: RequestUrl<'_>,
) {
    if packet.kind != PacketType::Fragment || !(200..300).contains(&response.status()) {
        return;
    }
    let Some(value) = response.headers().first(&h::names::REPLY_URL) else {
        return;
    };
    let Some(value) = bits_proto::header_source::visible_ascii(value) else {
        tracing::debug!(target: "bitsgate::reply", backend = %chosen.id, "BITS-Reply-URL is not ASCII; relayed as it is");
        return;
    };
    let https = generation.config.listener.tls.is_some();
    let relayed = relay(value, &generation.farm, https, request);
    if relayed.foreign && shared.replies.first_foreign_reply_url() {
        tracing::warn!(target: "bitsgate::reply", backend = %chosen.id, reply_url = value, "a BITS-Reply-URL names a host that is not a backend: relayed as it is, and its downloads are not routed to the owner; list that name as the backend's host_id or public_host_id if it should be (logged once)");
    }
    if let Some(rewritten) = &relayed.rewritten {
        tracing::debug!(target: "bitsgate::reply", backend = %chosen.id, from = value, to = %rewritten, "BITS-Reply-URL rewritten");
        if let Err(e) = response.insert_header(h::REPLY_URL, rewritten) {
            tracing::warn!(target: "bitsgate::reply", backend = %chosen.id, error = %e, "could not rewrite BITS-Reply-URL; relayed as it is");
        }
    }
    let (Some(route), Some(key)) = (relayed.route, &packet.session) else {
        return;
    };
    // Only a pinned session has an end that can end the route with it.
    if shared.table.owner(key) != Some(chosen.slot) {
        return;
    }
    match shared.add_reply_route(key, chosen.slot, &route) {
        Ok(Some(write)) => {
            if let Err(e) = write.await {
                shared.metrics.store_errors.inc();
                tracing::debug!(target: "bitsgate::store", session = %key, error = %e, "a reply route could not be journaled; it is kept in memory only");
            }
        }
        Ok(None) => {}
        Err(holder) => {
            let holder = shared.backend_name(holder);
            tracing::warn!(target: "bitsgate::reply", session = %key, backend = %chosen.id, holder = %holder, reply_path = %route, "a backend sent a reply URL whose path is the reply of a live session of another backend; the route stays with that backend");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::SlotRegistry;
    use crate::config::{BackendConfig, HostIdMode};

    fn farm() -> Farm {
        let configs: Vec<BackendConfig> = (0..2)
            .map(|i| BackendConfig {
                id: format!("b{i}"),
                address: format!("10.0.0.{}:8080", i + 1).parse().unwrap(),
                weight: 1,
                host_id: Some(format!("NODE{i}")),
                public_host_id: Some(format!("b{i}.bits.example")),
                drain: false,
                health_check: None,
                tls: None,
            })
            .collect();
        // Strip: the farm's own host lookup knows no names, the reply rewrite still does.
        Farm::build(&configs, HostIdMode::Strip, &SlotRegistry::default()).unwrap()
    }

    const CLIENT: RequestUrl<'static> = RequestUrl {
        host: Some("bits.example.com:8443"),
        path: "/uploads/a.bin",
    };

    fn rewritten(value: &str, https: bool) -> Relayed {
        relay(value, &farm(), https, CLIENT)
    }

    #[test]
    fn a_url_naming_a_backend_by_any_of_its_names_is_rewritten_to_the_clients_host() {
        for authority in [
            "10.0.0.1:8080",
            "10.0.0.2",
            "node0",
            "NODE1:80",
            "b0.bits.example",
            "B1.BITS.EXAMPLE:443",
        ] {
            let got = rewritten(&format!("http://{authority}/_r/1?v=2#frag"), false);
            assert_eq!(
                got,
                Relayed {
                    rewritten: Some("http://bits.example.com:8443/_r/1?v=2".into()),
                    route: Some("/_r/1?v=2".into()),
                    foreign: false,
                },
                "{authority}"
            );
        }
    }

    #[test]
    fn the_scheme_is_the_listeners() {
        let got = rewritten("http://NODE0/r", true);
        assert_eq!(
            got.rewritten.as_deref(),
            Some("https://bits.example.com:8443/r")
        );
        let got = rewritten("https://NODE0?q", false);
        assert_eq!(
            got.rewritten.as_deref(),
            Some("http://bits.example.com:8443/?q")
        );
        assert_eq!(got.route.as_deref(), Some("/?q"));
    }

    #[test]
    fn relative_urls_are_relayed_as_they_are_and_routed() {
        assert_eq!(
            rewritten("/_r/1?x", false),
            Relayed {
                rewritten: None,
                route: Some("/_r/1?x".into()),
                foreign: false
            }
        );
        assert_eq!(
            rewritten("reply.bin?x", false).route.as_deref(),
            Some("/uploads/reply.bin?x")
        );
        assert_eq!(rewritten("../reply.bin", false).route, None);
    }

    #[test]
    fn another_host_is_left_alone_and_not_routed() {
        for value in [
            "http://10.0.0.3:8080/r",
            "http://bits.example.com/r",
            "//cdn.example/r",
        ] {
            assert_eq!(
                rewritten(value, false),
                Relayed {
                    rewritten: None,
                    route: None,
                    foreign: true
                },
                "{value}"
            );
        }
    }

    #[test]
    fn without_a_host_header_the_rewrite_is_a_path_on_the_clients_host() {
        let got = relay(
            "http://NODE1:80/r?1",
            &farm(),
            false,
            RequestUrl {
                host: None,
                path: "/u",
            },
        );
        assert_eq!(got.rewritten.as_deref(), Some("/r?1"));
        assert_eq!(got.route.as_deref(), Some("/r?1"));
    }
}
