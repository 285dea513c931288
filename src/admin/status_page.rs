//! `GET /`: the status page. One self-contained HTML document (styles and script
//! inline, no external assets), rendered on the server from the same state the JSON
//! endpoints read, and refreshed in place by its own script. Everything that comes
//! from the config, a client or a backend is escaped.

use super::history::{Condition, Counts, Snapshot, StatusHistory};
use super::html::{age, bytes, count, rate, Esc};
use crate::session::{unix_now, Pin, SessionKey};
use crate::state::Shared;
use std::fmt::Write as _;

/// Sessions listed in each of the "largest" and "oldest" tables.
const TOP_SESSIONS: usize = 10;
/// Health-history cells shown per backend.
const HISTORY_CELLS: usize = 60;
/// Seconds between refreshes of the page.
pub const REFRESH_SECONDS: u32 = 5;

const STYLE: &str = include_str!("assets/status.css");
const SCRIPT: &str = include_str!("assets/status.js");

/// The page shown to a browser that lacks the token when reads are protected: it asks
/// for the token and loads the page with it.
pub const LOGIN_PAGE: &str = include_str!("assets/login.html");

/// Renders the whole page.
pub fn render(shared: &Shared, history: &StatusHistory) -> String {
    let snapshot = history.snapshot(shared);
    let mut out = String::with_capacity(32 * 1024);
    let generation = shared.generation();
    let config = &generation.config;
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>bitsgate status</title><style>{STYLE}</style></head>\n<body data-refresh=\"{REFRESH_SECONDS}\">\
         <header><div class=\"brand\">bitsgate <span>status</span></div>\
         <div class=\"meta\">listener {} &middot; version {} &middot; {} backend(s)</div>\
         <div class=\"controls\"><input id=\"token\" type=\"password\" placeholder=\"admin token\" autocomplete=\"off\" aria-label=\"admin token\">\
         <button type=\"button\" class=\"secondary\" data-action=\"reload\">Reload config</button></div></header>\n\
         <div id=\"message\" role=\"status\" hidden></div>\n<main id=\"live\">",
        Esc(&config.listener.address.to_string()),
        Esc(env!("CARGO_PKG_VERSION")),
        generation.farm.backends.len(),
    );
    summary(&mut out, shared, &snapshot);
    backends(&mut out, shared, &snapshot);
    sessions(&mut out, shared);
    local_answers(&mut out, shared, &snapshot);
    let _ = write!(
        out,
        "<p class=\"generated\">Rendered {} UTC &middot; rates over the last {:.0} s &middot; health history of {} &middot; refreshes every {REFRESH_SECONDS} s</p></main>\n\
         <footer>JSON: <a href=\"/backends\">/backends</a> &middot; <a href=\"/sessions\">/sessions</a> &middot; <a href=\"/metrics\">/metrics</a></footer>\n\
         <script>{SCRIPT}</script></body></html>\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .trim_end_matches('Z')
            .replace('T', " "),
        snapshot.rate_window_s,
        age(snapshot.history_s),
    );
    out
}

fn total(snapshot: &Snapshot) -> (Counts, f64, f64) {
    let mut counts = Counts::default();
    for c in snapshot.counts.values() {
        counts.requests += c.requests;
        counts.client_errors += c.client_errors;
        counts.server_errors += c.server_errors;
        counts.bytes += c.bytes;
    }
    let requests = snapshot.rates.values().map(|r| r.requests).sum();
    let bytes = snapshot.rates.values().map(|r| r.bytes).sum();
    (counts, requests, bytes)
}

fn summary(out: &mut String, shared: &Shared, snapshot: &Snapshot) {
    let generation = shared.generation();
    let backends = &generation.farm.backends;
    let ready = backends.iter().filter(|b| b.is_ready()).count();
    let (counts, requests, bytes_rate) = total(snapshot);
    let has_rate = snapshot.rate_window_s > 0.0;
    let card = |out: &mut String, label: &str, value: &str, note: &str, class: &str| {
        let _ = write!(
            out,
            "<div class=\"card {class}\"><div class=\"label\">{label}</div><div class=\"value\">{value}</div><div class=\"note\">{note}</div></div>"
        );
    };
    out.push_str("<section class=\"cards\">");
    card(
        out,
        "Ready backends",
        &format!("{ready} / {}", backends.len()),
        "up and taking new sessions",
        if ready == 0 { "bad" } else { "" },
    );
    card(
        out,
        "Pinned sessions",
        &count(shared.table.len()),
        &format!(
            "of {} allowed",
            count(generation.config.sessions.max_pinned)
        ),
        "",
    );
    card(
        out,
        "Requests / s",
        &if has_rate {
            rate(requests)
        } else {
            "&ndash;".into()
        },
        &format!("{} since start", count(counts.requests)),
        "",
    );
    card(
        out,
        "Upload rate",
        &if has_rate {
            format!("{}/s", bytes(bytes_rate))
        } else {
            "&ndash;".into()
        },
        &format!("{} since start", bytes(counts.bytes as f64)),
        "",
    );
    card(
        out,
        "Error answers",
        &format!("{} &middot; {}", counts.client_errors, counts.server_errors),
        "4xx &middot; 5xx since start",
        if counts.server_errors > 0 { "warn" } else { "" },
    );
    out.push_str("</section>\n");
}

fn backends(out: &mut String, shared: &Shared, snapshot: &Snapshot) {
    let generation = shared.generation();
    let failures = counter_by_label(&shared.metrics.connect_failures, "backend");
    out.push_str(
        "<section><h2>Backends</h2><table class=\"backends\"><thead><tr>\
         <th>Backend</th><th>Address</th><th>State</th><th class=\"num\">Weight</th>\
         <th class=\"num\">Sessions</th><th class=\"num\">Req/s</th><th class=\"num\">Upload/s</th>\
         <th class=\"num\">4xx</th><th class=\"num\">5xx</th><th class=\"num\">Connect fails</th>\
         <th>Health history</th><th></th></tr></thead><tbody>",
    );
    for backend in &generation.farm.backends {
        let id = &*backend.id;
        let condition = Condition::of(backend);
        let counts = snapshot.counts.get(id).copied().unwrap_or_default();
        let rates = snapshot.rates.get(id);
        let drained = shared.is_drained(backend);
        let mut notes = Vec::new();
        if backend.status.is_admin_draining() {
            notes.push("drained by operator");
        }
        if backend.status.is_config_draining() {
            notes.push("drain = true in the file");
        }
        if drained {
            notes.push("no session left: safe to stop");
        }
        if condition == Condition::Down && backend.status.is_draining() {
            notes.push("draining");
        }
        let _ = write!(
            out,
            "<tr data-backend=\"{eid}\" data-state=\"{state}\"><td class=\"id\">{eid}</td><td class=\"mono\">{addr}</td>\
             <td><span class=\"state {state}\">{state}</span><div class=\"sub\">{notes}</div></td>\
             <td class=\"num\">{weight}</td><td class=\"num\">{sessions}</td><td class=\"num\">{rps}</td><td class=\"num\">{bps}</td>\
             <td class=\"num\">{c4}</td><td class=\"num{c5class}\">{c5}</td><td class=\"num\">{fails}</td><td>",
            eid = Esc(id),
            addr = Esc(&backend.address.to_string()),
            state = condition.label(),
            notes = Esc(&notes.join(", ")),
            weight = backend.weight,
            sessions = shared.table.sessions_of(backend.slot),
            rps = rates.map_or_else(|| "&ndash;".to_owned(), |r| rate(r.requests)),
            bps = rates.map_or_else(|| "&ndash;".to_owned(), |r| bytes(r.bytes) + "/s"),
            c4 = counts.client_errors,
            c5 = counts.server_errors,
            c5class = if counts.server_errors > 0 { " warn" } else { "" },
            fails = failures.get(id).copied().unwrap_or(0),
        );
        health_strip(out, snapshot.conditions.get(id).map(Vec::as_slice));
        out.push_str("</td><td class=\"actions\">");
        if backend.is_retired() {
            out.push_str("<span class=\"sub\">change the file</span>");
        } else if backend.status.is_admin_draining() {
            let _ = write!(
                out,
                "<button type=\"button\" data-action=\"undrain\" data-backend=\"{}\">Undrain</button>",
                Esc(id)
            );
        } else {
            let _ = write!(
                out,
                "<button type=\"button\" class=\"danger\" data-action=\"drain\" data-backend=\"{}\">Drain</button>",
                Esc(id)
            );
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table></section>\n");
}

fn health_strip(out: &mut String, conditions: Option<&[Condition]>) {
    let conditions = conditions.unwrap_or(&[]);
    let shown = &conditions[conditions.len().saturating_sub(HISTORY_CELLS)..];
    out.push_str("<div class=\"strip\" aria-label=\"health history, oldest first\">");
    for _ in shown.len()..HISTORY_CELLS {
        out.push_str("<i></i>");
    }
    for condition in shown {
        let _ = write!(
            out,
            "<i class=\"{0}\" title=\"{0}\"></i>",
            condition.label()
        );
    }
    out.push_str("</div>");
}

/// The `TOP_SESSIONS` largest and oldest sessions, in one walk of the table.
/// Sessions chosen for a table, best first.
type Listed = Vec<(SessionKey, Pin)>;

fn top_sessions(shared: &Shared) -> (Listed, Listed) {
    let mut largest: Listed = Vec::with_capacity(TOP_SESSIONS + 1);
    let mut oldest: Listed = Vec::with_capacity(TOP_SESSIONS + 1);
    let keep = |list: &mut Listed, key: &SessionKey, pin: &Pin, better: fn(&Pin, &Pin) -> bool| {
        if list.len() == TOP_SESSIONS && !better(pin, &list[TOP_SESSIONS - 1].1) {
            return;
        }
        let at = list
            .iter()
            .position(|(_, p)| better(pin, p))
            .unwrap_or(list.len());
        list.insert(at, (key.clone(), *pin));
        list.truncate(TOP_SESSIONS);
    };
    shared.table.for_each(|key, pin| {
        keep(&mut largest, key, pin, |a, b| a.bytes > b.bytes);
        keep(&mut oldest, key, pin, |a, b| a.created < b.created);
    });
    (largest, oldest)
}

fn sessions(out: &mut String, shared: &Shared) {
    let (largest, oldest) = top_sessions(shared);
    out.push_str("<section class=\"two\">");
    for (title, list) in [("Largest sessions", largest), ("Oldest sessions", oldest)] {
        let _ = write!(out, "<div><h2>{title}</h2>");
        if list.is_empty() {
            out.push_str("<p class=\"empty\">No pinned session.</p></div>");
            continue;
        }
        out.push_str(
            "<table><thead><tr><th>Session</th><th>Backend</th><th>URL</th>\
             <th class=\"num\">Age</th><th class=\"num\">Idle</th><th class=\"num\">Uploaded</th>\
             <th class=\"num\">Packets</th></tr></thead><tbody>",
        );
        let now = unix_now();
        for (key, pin) in &list {
            let _ = write!(
                out,
                "<tr><td class=\"mono sid\" title=\"{0}\">{0}</td><td>{1}</td><td class=\"mono url\" title=\"{2}\">{2}</td><td class=\"num\">{3}</td>\
                 <td class=\"num\">{4}</td><td class=\"num\">{5}</td><td class=\"num\">{6}</td></tr>",
                Esc(&key.to_string()),
                Esc(&shared.backend_name(pin.backend)),
                Esc(&shared.urls.get(pin.url).path),
                age(u64::from(now.saturating_sub(pin.created))),
                age(u64::from(now.saturating_sub(pin.last_seen))),
                bytes(pin.bytes as f64),
                pin.packets,
            );
        }
        out.push_str("</tbody></table></div>");
    }
    out.push_str("</section>\n");
}

fn local_answers(out: &mut String, shared: &Shared, snapshot: &Snapshot) {
    let mut reasons: Vec<(String, u64)> = counter_by_label(&shared.metrics.local_acks, "reason")
        .into_iter()
        .collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let own = snapshot
        .counts
        .get(crate::metrics::names::NO_BACKEND)
        .copied()
        .unwrap_or_default();
    let _ = write!(
        out,
        "<section><h2>Answered by bitsgate itself</h2><p class=\"sub\">{} request(s) without a backend: {} 4xx, {} 5xx. \
         Reasons are the <code>reason</code> label of <code>bitsgate_local_acks_total</code>.</p>",
        own.requests, own.client_errors, own.server_errors
    );
    if reasons.is_empty() {
        out.push_str("<p class=\"empty\">None since start.</p></section>\n");
        return;
    }
    out.push_str("<table class=\"narrow\"><thead><tr><th>Reason</th><th class=\"num\">Answers</th></tr></thead><tbody>");
    for (reason, count) in reasons {
        let _ = write!(
            out,
            "<tr><td class=\"mono\">{}</td><td class=\"num\">{count}</td></tr>",
            Esc(&reason)
        );
    }
    out.push_str("</tbody></table></section>\n");
}

/// Sums a counter by one label.
fn counter_by_label(
    counter: &prometheus::IntCounterVec,
    name: &str,
) -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    for (labels, value) in super::history::counter_series(counter, &[name]) {
        for label in labels {
            *out.entry(label).or_default() += value;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "[storage]\nmode = \"memory\"\n\
        [[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:1\"\n\
        [[backends]]\nid = \"b2\"\naddress = \"127.0.0.1:2\"\ndrain = true\n";

    fn shared() -> std::sync::Arc<Shared> {
        let config = crate::config::load_str(CONFIG).expect("valid config");
        Shared::new(config, None, None).expect("shared state")
    }

    #[test]
    fn client_chosen_text_is_escaped() {
        let shared = shared();
        let generation = shared.generation();
        // Session ids and paths come from clients and backends: any visible ASCII.
        let key = SessionKey::new("<script>alert(1)</script>");
        let url = shared.urls.intern(None, "/up\"loads/<b>/file.bin");
        shared
            .table
            .pin(key, generation.farm.backends[0].slot, url, unix_now())
            .expect("pinned");
        let page = render(&shared, &shared.status_history);
        assert!(!page.contains("<script>alert"), "unescaped session id");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("<b>"), "unescaped path");
        assert!(page.contains("/up&quot;loads/&lt;b&gt;/"));
    }

    #[test]
    fn every_backend_has_a_row_with_its_state_and_action() {
        let shared = shared();
        let page = render(&shared, &shared.status_history);
        // No probe has run yet: backends start up.
        assert!(page.contains("<tr data-backend=\"b1\" data-state=\"up\">"));
        assert!(page.contains("<tr data-backend=\"b2\" data-state=\"draining\">"));
        assert!(page.contains("data-action=\"drain\" data-backend=\"b1\""));
        // Self-contained: no external script, style or image.
        for external in ["src=\"http", "href=\"http", "<link", "@import"] {
            assert!(!page.contains(external), "{external}");
        }
    }
}
