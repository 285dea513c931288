//! The admin API's answers as the commands read them, and the tables made of them.
//! Unknown fields are ignored, so a newer bitsgate's answers still read.

use comfy_table::{presets, CellAlignment, Table};
use serde::Deserialize;
use std::time::Duration;

/// One backend (`GET /backends`, drain and undrain).
#[derive(Debug, Deserialize)]
pub struct Backend {
    pub id: String,
    pub address: String,
    pub weight: u32,
    pub up: bool,
    pub state: String,
    pub drain_admin: bool,
    pub drain_config: bool,
    pub retired: bool,
    pub sessions: u64,
    pub uploaded_bytes: u64,
}

/// `GET /backends`.
#[derive(Debug, Deserialize)]
pub struct Backends {
    pub backends: Vec<Backend>,
}

/// One pinned session.
#[derive(Debug, Deserialize)]
pub struct Session {
    pub id: String,
    pub backend: String,
    pub dir: String,
    pub age_s: u64,
    pub idle_s: u64,
    pub bytes: u64,
    pub packets: u64,
}

/// `GET /sessions`.
#[derive(Debug, Deserialize)]
pub struct Sessions {
    pub sessions: Vec<Session>,
    pub total: u64,
}

/// The owner's answer to bitsgate's Cancel-Session.
#[derive(Debug, Deserialize)]
pub struct CancelAnswer {
    pub status: u16,
    pub error_code: Option<String>,
}

/// `DELETE /sessions/{id}`.
#[derive(Debug, Deserialize)]
pub struct Cancelled {
    pub session: String,
    pub unpinned: bool,
    pub cancel: Option<CancelAnswer>,
}

/// What a successful reload changed.
#[derive(Debug, Deserialize)]
pub struct ReloadReport {
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
    #[serde(default)]
    pub retired: Vec<String>,
    #[serde(default)]
    pub ended_sessions: u64,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One error of a refused reload.
#[derive(Debug, Deserialize)]
pub struct ReloadError {
    pub key: String,
    pub message: String,
    pub fix: String,
}

/// `POST /config/reload`, accepted or refused.
#[derive(Debug, Deserialize)]
pub struct Reload {
    pub outcome: String,
    pub report: Option<ReloadReport>,
    #[serde(default)]
    pub errors: Vec<ReloadError>,
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_header(header.to_vec());
    table
}

/// The table's text without the padding at the end of each line.
fn text(table: &Table) -> String {
    table
        .lines()
        .map(|line| line.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn align_right(table: &mut Table, columns: &[usize]) {
    for &index in columns {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// Backends as a table for people.
pub fn backends_table(backends: &[Backend]) -> String {
    let mut table = table(&[
        "ID",
        "ADDRESS",
        "UP",
        "STATE",
        "DRAINED BY",
        "SESSIONS",
        "UPLOADED",
        "WEIGHT",
    ]);
    for b in backends {
        table.add_row(vec![
            b.id.clone(),
            b.address.clone(),
            if b.up { "yes" } else { "no" }.to_owned(),
            b.state.clone(),
            drained_by(b),
            b.sessions.to_string(),
            human_bytes(b.uploaded_bytes),
            b.weight.to_string(),
        ]);
    }
    align_right(&mut table, &[5, 6, 7]);
    text(&table)
}

fn drained_by(b: &Backend) -> String {
    let reasons: Vec<&str> = [
        (b.drain_admin, "admin"),
        (b.drain_config, "config"),
        (b.retired, "retired"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    if reasons.is_empty() {
        "-".to_owned()
    } else {
        reasons.join(",")
    }
}

/// Sessions as a table for people, with a line saying how many there are in all.
pub fn sessions_table(sessions: &Sessions) -> String {
    let mut table = table(&[
        "SESSION", "BACKEND", "DIR", "AGE", "IDLE", "BYTES", "PACKETS",
    ]);
    for s in &sessions.sessions {
        table.add_row(vec![
            s.id.clone(),
            s.backend.clone(),
            s.dir.clone(),
            seconds(s.age_s),
            seconds(s.idle_s),
            human_bytes(s.bytes),
            s.packets.to_string(),
        ]);
    }
    align_right(&mut table, &[3, 4, 5, 6]);
    let shown = sessions.sessions.len() as u64;
    let footer = if shown < sessions.total {
        format!(
            "{shown} of {} sessions shown (raise --limit)",
            sessions.total
        )
    } else {
        format!("{} session(s)", sessions.total)
    };
    if shown == 0 {
        footer
    } else {
        format!("{}\n{footer}", text(&table))
    }
}

/// The outcome of a cancel, in one sentence.
pub fn cancelled_line(c: &Cancelled) -> String {
    let owner = match &c.cancel {
        Some(CancelAnswer {
            status,
            error_code: Some(code),
        }) => format!("its backend answered {status} with BITS error {code}"),
        Some(CancelAnswer { status, .. }) => format!("its backend answered {status}"),
        None => "its backend could not be asked".to_owned(),
    };
    let pin = if c.unpinned {
        "unpinned"
    } else {
        "had already ended"
    };
    format!("{}: {pin}; {owner}", c.session)
}

/// A successful reload's report, one line per change.
pub fn reload_lines(report: &ReloadReport) -> String {
    let mut lines = vec!["configuration reloaded".to_owned()];
    for (name, ids) in [
        ("added", &report.added),
        ("removed", &report.removed),
        ("retired", &report.retired),
    ] {
        if !ids.is_empty() {
            lines.push(format!("  {name}: {}", ids.join(", ")));
        }
    }
    if report.ended_sessions > 0 {
        lines.push(format!("  ended sessions: {}", report.ended_sessions));
    }
    for warning in &report.warnings {
        lines.push(format!("  not applied: {warning}"));
    }
    lines.join("\n")
}

fn seconds(s: u64) -> String {
    humantime::format_duration(Duration::from_secs(s)).to_string()
}

/// Bytes in binary units, one decimal above 1 KiB.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 << 30), "10.0 GiB");
    }

    #[test]
    fn a_truncated_session_list_says_how_many_there_are() {
        let sessions = Sessions {
            sessions: vec![Session {
                id: "{a}".into(),
                backend: "b1".into(),
                dir: "/u/".into(),
                age_s: 65,
                idle_s: 0,
                bytes: 10,
                packets: 2,
            }],
            total: 3,
        };
        let text = sessions_table(&sessions);
        assert!(text.contains("1 of 3 sessions shown"), "{text}");
        assert!(text.contains("1m 5s"), "{text}");
    }
}
