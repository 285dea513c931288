//! The access log: real requests through the proxy, read back from the file.

use crate::cluster::{eventually, options, random_bytes, Cluster};
use bits_proto::PacketType;
use bits_testkit::client::raw::RawRequest;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_for_lines(path: &Path, count: usize) -> Vec<String> {
    eventually(
        &format!("{count} lines in {}", path.display()),
        Duration::from_secs(10),
        || lines(path).len() >= count,
    )
    .await;
    lines(path)
}

fn log_config(path: &Path, format: &str) -> String {
    format!(
        "[log]\naccess = {:?}\nformat = \"{format}\"\n",
        path.display().to_string()
    )
}

/// `key=value` pairs of a text line, quoted values unescaped.
fn text_fields(line: &str) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    let mut rest = line;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').expect("key=value");
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .char_indices()
                .scan(false, |escaped, (i, c)| {
                    let done = c == '"' && !*escaped;
                    *escaped = c == '\\' && !*escaped;
                    Some((i, done))
                })
                .find(|(_, done)| *done)
                .map(|(i, _)| i)
                .expect("closing quote");
            (
                quoted[..end].replace("\\\"", "\"").replace("\\\\", "\\"),
                &quoted[end + 1..],
            )
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        fields.insert(key.trim().to_owned(), value);
        rest = after.trim_start();
    }
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_describe_each_request_of_an_upload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let cluster = Cluster::new()
        .backends(2)
        .config(&log_config(&path, "json"))
        .start()
        .await;
    let data = random_bytes(300_000, 7);
    let mut opts = options(100_000);
    opts.ping = false;
    let report = cluster
        .upload("/uploads/log.bin", &data, &opts)
        .await
        .expect("upload");
    let session = report.session_id.expect("session id");
    // A packet for a session nobody knows: answered by bitsgate itself.
    let unknown = RawRequest::bits(PacketType::Fragment, "/uploads/x.bin")
        .header("BITS-Session-Id", "{00000000-0000-0000-0000-000000000000}")
        .header("Content-Range", "bytes 0-1/2")
        .body(vec![0u8, 1]);
    assert_eq!(cluster.send(&unknown).await.status, 500);

    // Create, three fragments, close, and the refused one.
    let lines = wait_for_lines(&path, 6).await;
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let owner = format!("b{}", cluster.owners_of(&session)[0]);
    let packets: Vec<&str> = records
        .iter()
        .map(|r| r["packet"].as_str().unwrap())
        .collect();
    assert_eq!(
        packets,
        [
            "create_session",
            "fragment",
            "fragment",
            "fragment",
            "close_session",
            "fragment"
        ]
    );
    for record in &records[..5] {
        assert_eq!(record["session"], session.as_str(), "{record}");
        assert_eq!(record["backend"], owner.as_str());
        assert_eq!(record["status"], 200);
        assert_eq!(record["answer"], "forwarded");
        assert_eq!(record["method"], "BITS_POST");
        assert_eq!(record["path"], "/uploads/log.bin");
        assert_eq!(record["bits_error"], serde_json::Value::Null);
        assert!(record["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(record["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(record["time"].as_str().unwrap().ends_with('Z'));
    }
    let fragment_bytes: u64 = records[1..4]
        .iter()
        .map(|r| r["bytes_in"].as_u64().unwrap())
        .sum();
    assert_eq!(fragment_bytes, 300_000);
    let refused = &records[5];
    assert_eq!(refused["answer"], "local");
    assert_eq!(refused["reason"], "session_not_found");
    assert_eq!(refused["backend"], serde_json::Value::Null);
    assert_eq!(refused["status"], 500);
    assert_eq!(refused["bits_error"], "0x8020001F");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_are_key_value_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let cluster = Cluster::new()
        .backends(1)
        .config(&log_config(&path, "text"))
        .start()
        .await;
    let ping = RawRequest::bits(PacketType::Ping, "/uploads/a%20b.bin");
    assert_eq!(cluster.send(&ping).await.status, 200);
    let lines = wait_for_lines(&path, 1).await;
    let fields = text_fields(&lines[0]);
    assert_eq!(fields["packet"], "ping", "{}", lines[0]);
    assert_eq!(fields["path"], "/uploads/a%20b.bin");
    assert_eq!(fields["backend"], "b0");
    assert_eq!(fields["status"], "200");
    assert_eq!(fields["session"], "-");
    assert_eq!(fields["bits_error"], "-");
    assert_eq!(fields["answer"], "forwarded");
    for key in [
        "time",
        "client",
        "method",
        "bytes_in",
        "bytes_out",
        "duration_ms",
    ] {
        assert!(fields.contains_key(key), "{key} missing: {}", lines[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reopens_the_access_log_after_logrotate_renamed_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let cluster = Cluster::new()
        .backends(1)
        .config(&log_config(&path, "text"))
        .start()
        .await;
    let ping = RawRequest::bits(PacketType::Ping, "/uploads/");
    cluster.send(&ping).await;
    wait_for_lines(&path, 1).await;
    std::fs::rename(&path, &rotated).unwrap();
    let (status, _) = cluster.admin_json("POST", "/config/reload", None).await;
    assert_eq!(status, 200);
    cluster.send(&ping).await;
    cluster.send(&ping).await;
    wait_for_lines(&path, 2).await;
    assert_eq!(
        lines(&rotated).len(),
        1,
        "nothing more went to the renamed file"
    );
}

fn mkfifo(path: &PathBuf) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_are_dropped_and_counted_while_the_writer_is_stuck() {
    let dir = tempfile::tempdir().unwrap();
    // Opening a FIFO for writing blocks until someone reads it: a stuck disk.
    let path = dir.path().join("access.fifo");
    mkfifo(&path);
    let cluster = Cluster::new()
        .backends(1)
        .config(&(log_config(&path, "text") + "access_buffer = 2\n"))
        .start()
        .await;
    let ping = RawRequest::bits(PacketType::Ping, "/uploads/");
    for _ in 0..10 {
        assert_eq!(cluster.send(&ping).await.status, 200);
    }
    cluster
        .metrics_when("bitsgate_access_log_dropped_total", 8.0)
        .await;
    // Requests went on meanwhile; once read, the two queued lines come out.
    let reader = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let file = std::fs::File::open(&path).expect("open the FIFO");
        std::io::BufReader::new(file)
            .lines()
            .take(2)
            .collect::<Result<Vec<_>, _>>()
            .expect("read lines")
    });
    let queued = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the queued lines arrive")
        .unwrap();
    assert!(
        queued.iter().all(|l| l.contains("packet=ping")),
        "{queued:?}"
    );
}
