//! The reference server's protocol rules, one test per rule, over raw HTTP.

#[path = "server_support/mod.rs"]
mod support;

use support::*;

const FILE: &str = "/up/file.bin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_then_close_commit_a_byte_identical_file() {
    let fx = Fixture::start().await;
    let body = data(100_000, 7);
    let id = upload(fx.addr(), FILE, &body, 30_000).await;
    let written = std::fs::read(fx.root().join("up/file.bin")).expect("committed file");
    assert_eq!(sha256(&written), sha256(&body));
    assert!(
        fx.session_files(&id).is_empty(),
        "session files left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ack_is_well_formed_and_names_the_server() {
    let fx = Fixture::start().await;
    let create = create(fx.addr(), FILE).await;
    assert_eq!(create.status, 200);
    assert_eq!(create.header("BITS-Protocol"), Some(BITS_1_5));
    assert_eq!(create.header("Accept-Encoding"), Some("Identity"));
    assert!(create.session().starts_with('{') && create.session().ends_with('}'));
    let id = create.session();
    let frag = fragment(fx.addr(), FILE, &id, 0, 10, b"0123456789").await;
    let unknown = close(fx.addr(), FILE, "{nope}").await;
    let stats = once(fx.addr(), "GET", "/_bits/stats", &[], b"").await;
    let missing = once(fx.addr(), "GET", "/nothing", &[], b"").await;
    for resp in [&create, &frag, &unknown, &ping(fx.addr()).await] {
        assert_eq!(resp.header("BITS-Packet-Type"), Some("Ack"), "{resp:?}");
        assert_eq!(resp.header("Content-Length"), Some("0"), "{resp:?}");
    }
    for resp in [&create, &frag] {
        assert_eq!(resp.error(), None, "success Acks carry no error headers");
    }
    for resp in [&create, &frag, &unknown, &stats, &missing] {
        assert_eq!(resp.header("Server"), Some(NAME), "{resp:?}");
    }
    assert_eq!(missing.status, 404);
    let delete = once(fx.addr(), "DELETE", "/x", &[], b"").await;
    assert_eq!((delete.status, delete.header("Server")), (405, Some(NAME)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_and_missing_protocol_get_400_invalidarg() {
    let fx = Fixture::start().await;
    let unknown_type = once(
        fx.addr(),
        "BITS_POST",
        FILE,
        &[("BITS-Packet-Type", "Bogus")],
        b"",
    )
    .await;
    let no_protocol = once(
        fx.addr(),
        "BITS_POST",
        FILE,
        &[
            ("BITS-Packet-Type", "Create-Session"),
            (
                "BITS-Supported-Protocols",
                "{11111111-2222-3333-4444-555555555555}",
            ),
        ],
        b"",
    )
    .await;
    for resp in [unknown_type, no_protocol] {
        assert_eq!(resp.status, 400, "{resp:?}");
        assert_eq!(resp.error(), Some(("0x80070057", "0x5")));
    }
    assert_eq!(fx.server.stats().packets.get("rejected"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_with_method_override_is_a_bits_packet() {
    let fx = Fixture::start().await;
    let resp = once(
        fx.addr(),
        "POST",
        FILE,
        &[
            ("X-Http-Method-Override", "BITS_POST"),
            ("BITS-Packet-Type", "Create-Session"),
            ("BITS-Supported-Protocols", BITS_1_5),
        ],
        b"",
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(fx.server.stats().sessions_open, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_gets_416_with_next_and_writes_nothing() {
    let fx = Fixture::start().await;
    let id = open(fx.addr(), FILE).await;
    assert_eq!(
        fragment(fx.addr(), FILE, &id, 0, 100, &[1; 10])
            .await
            .status,
        200
    );
    let mut conn = support::Conn::connect(fx.addr()).await;
    let resp = conn
        .request(
            "BITS_POST",
            FILE,
            &[
                ("BITS-Packet-Type", "Fragment"),
                ("BITS-Session-Id", &id),
                ("Content-Range", "bytes 20-29/100"),
            ],
            &[2; 10],
        )
        .await;
    assert_eq!(resp.status, 416);
    assert_eq!(resp.received(), 10);
    assert_eq!(resp.session(), id);
    assert_eq!(
        fx.part_len(&id),
        Some(10),
        "nothing of the gap fragment was written"
    );
    assert_eq!(fx.server.stats().bytes_received, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_writes_only_the_new_tail() {
    let fx = Fixture::start().await;
    let id = open(fx.addr(), FILE).await;
    fragment(fx.addr(), FILE, &id, 0, 20, b"AAAAAAAAAA").await;
    // Bytes 5..10 differ from what was received: they must not replace it.
    let resp = fragment(fx.addr(), FILE, &id, 5, 20, b"xxxxxBBBBBBBBBB").await;
    assert_eq!((resp.status, resp.received()), (200, 20));
    assert_eq!(fx.server.stats().bytes_received, 20);
    let written = std::fs::read(fx.root().join("up/file.bin")).expect("committed");
    assert_eq!(written, b"AAAAAAAAAABBBBBBBBBB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_writes_nothing_and_answers_next() {
    let fx = Fixture::start().await;
    let id = open(fx.addr(), FILE).await;
    fragment(fx.addr(), FILE, &id, 0, 20, b"AAAAAAAAAA").await;
    let resp = fragment(fx.addr(), FILE, &id, 0, 20, b"xxxxx").await;
    assert_eq!((resp.status, resp.received()), (200, 10));
    assert_eq!(fx.part_len(&id), Some(10));
    assert_eq!(fx.server.stats().bytes_received, 10);
    fragment(fx.addr(), FILE, &id, 10, 20, b"BBBBBBBBBB").await;
    let written = std::fs::read(fx.root().join("up/file.bin")).expect("committed");
    assert_eq!(written, b"AAAAAAAAAABBBBBBBBBB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmitted_final_fragment_after_completion_is_acknowledged_without_a_write() {
    let fx = Fixture::start().await;
    let id = open(fx.addr(), FILE).await;
    assert_eq!(
        fragment(fx.addr(), FILE, &id, 0, 4, b"abcd")
            .await
            .received(),
        4
    );
    let again = fragment(fx.addr(), FILE, &id, 0, 4, b"wxyz").await;
    assert_eq!((again.status, again.received()), (200, 4));
    assert_eq!(
        std::fs::read(fx.root().join("up/file.bin")).unwrap(),
        b"abcd"
    );
    assert_eq!(fx.server.stats().bytes_received, 4);
    assert_eq!(fx.server.stats().sessions[&id].state, "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_length_change_gets_400_invalidarg() {
    let fx = Fixture::start().await;
    let id = open(fx.addr(), FILE).await;
    fragment(fx.addr(), FILE, &id, 0, 100, &[1; 10]).await;
    let resp = fragment(fx.addr(), FILE, &id, 10, 200, &[1; 10]).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error(), Some(("0x80070057", "0x5")));
    assert_eq!(fx.part_len(&id), Some(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_above_max_upload_gets_500_too_large() {
    let fx = Fixture::start_with(|c| c.max_upload = 10).await;
    let id = open(fx.addr(), FILE).await;
    let resp = fragment(fx.addr(), FILE, &id, 0, 11, &[1; 5]).await;
    assert_eq!(resp.status, 500);
    assert_eq!(resp.error(), Some(("0x80200020", "0x5")));
    assert_eq!(fx.part_len(&id), Some(0));
    assert_eq!(
        fragment(fx.addr(), FILE, &id, 0, 10, &[1; 10]).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_above_max_fragment_gets_413_before_its_body_is_sent() {
    let fx = Fixture::start_with(|c| c.max_fragment = 1024).await;
    let id = open(fx.addr(), FILE).await;
    let mut conn = support::Conn::connect(fx.addr()).await;
    // Only the head goes out: an answer proves the server did not wait for the body.
    conn.write_head(
        "BITS_POST",
        FILE,
        &[
            ("BITS-Packet-Type", "Fragment"),
            ("BITS-Session-Id", &id),
            ("Content-Range", "bytes 0-1024/5000"),
        ],
        1025,
    )
    .await;
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 413);
    assert_eq!(resp.session(), id);
    assert!(
        conn.closed_by_server().await,
        "connection must close: the body was never read"
    );
    assert_eq!(fx.part_len(&id), Some(0));
    assert_eq!(
        fragment(fx.addr(), FILE, &id, 0, 5000, &[1; 1024])
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_session_gets_500_session_not_found_echoing_the_id() {
    let fx = Fixture::start().await;
    let id = "{00000000-0000-0000-0000-000000000000}";
    for resp in [
        fragment(fx.addr(), FILE, id, 0, 10, &[1; 10]).await,
        close(fx.addr(), FILE, id).await,
        cancel(fx.addr(), FILE, id).await,
    ] {
        assert_eq!(resp.status, 500, "{resp:?}");
        assert_eq!(resp.error(), Some(("0x8020001F", "0x5")));
        assert_eq!(resp.session(), id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_before_completion_deletes_the_partial_data() {
    let fx = Fixture::start().await;
    let id = open(fx.addr(), FILE).await;
    fragment(fx.addr(), FILE, &id, 0, 100, &[1; 10]).await;
    assert_eq!(close(fx.addr(), FILE, &id).await.status, 200);
    assert!(fx.session_files(&id).is_empty());
    assert!(
        !fx.root().join("up/file.bin").exists(),
        "no partial uploads"
    );
    assert_eq!(
        fragment(fx.addr(), FILE, &id, 10, 100, &[1; 10])
            .await
            .status,
        500
    );
    assert_eq!(fx.server.stats().sessions[&id].state, "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_deletes_temp_data_but_keeps_a_committed_file() {
    let fx = Fixture::start().await;
    let id = open(fx.addr(), FILE).await;
    fragment(fx.addr(), FILE, &id, 0, 100, &[1; 10]).await;
    assert_eq!(cancel(fx.addr(), FILE, &id).await.status, 200);
    assert!(fx.session_files(&id).is_empty());
    assert!(!fx.root().join("up/file.bin").exists());
    assert_eq!(fx.server.stats().sessions[&id].state, "cancelled");

    let done = open(fx.addr(), FILE).await;
    fragment(fx.addr(), FILE, &done, 0, 3, b"abc").await;
    assert_eq!(cancel(fx.addr(), FILE, &done).await.status, 200);
    assert_eq!(
        std::fs::read(fx.root().join("up/file.bin")).unwrap(),
        b"abc"
    );
    assert!(fx.session_files(&done).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_without_fragments_commits_an_empty_file() {
    let fx = Fixture::start().await;
    let id = open(fx.addr(), "/empty.txt").await;
    assert_eq!(close(fx.addr(), "/empty.txt", &id).await.status, 200);
    let meta = std::fs::metadata(fx.root().join("empty.txt")).expect("0-byte file");
    assert_eq!(meta.len(), 0);
    assert!(fx.session_files(&id).is_empty());
    assert_eq!(fx.server.stats().sessions_completed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_escape_the_root_are_refused() {
    let fx = Fixture::start().await;
    let before: Vec<_> = std::fs::read_dir(fx.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for target in [
        "/../escape.bin",
        "/a/../../escape.bin",
        "/%2e%2e/escape.bin",
        "/%2E%2E%2Fescape.bin",
        "/a%2Fb.bin",
        "/a%5Cb.bin",
        "/a\\..\\escape.bin",
        "/a%00b.bin",
        "/dir/",
        "/",
        "//escape.bin",
        "/.bits-sessions/x.part",
    ] {
        let resp = create(fx.addr(), target).await;
        assert_eq!(resp.status, 400, "{target}: {resp:?}");
        assert_eq!(resp.header("BITS-Session-Id"), None, "{target}");
    }
    let after: Vec<_> = std::fs::read_dir(fx.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "nothing appears next to the root");
    assert_eq!(
        std::fs::read_dir(fx.root()).unwrap().count(),
        1,
        "only the sessions dir in the root"
    );
    assert_eq!(std::fs::read_dir(fx.sessions_dir()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_destination_is_refused_without_overwrite() {
    let fx = Fixture::start().await;
    upload(fx.addr(), FILE, b"first", 5).await;
    let resp = create(fx.addr(), FILE).await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.error(), Some(("0x80070005", "0x5")));
    // Two sessions racing for one path: the second commit is refused, not clobbering.
    std::fs::remove_file(fx.root().join("up/file.bin")).unwrap();
    let a = open(fx.addr(), FILE).await;
    let b = open(fx.addr(), FILE).await;
    assert_eq!(fragment(fx.addr(), FILE, &a, 0, 1, b"a").await.status, 200);
    let late = fragment(fx.addr(), FILE, &b, 0, 1, b"b").await;
    assert_eq!(late.status, 403);
    assert_eq!(std::fs::read(fx.root().join("up/file.bin")).unwrap(), b"a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_destination_is_replaced_with_overwrite() {
    let fx = Fixture::start_with(|c| c.allow_overwrite = true).await;
    upload(fx.addr(), FILE, b"first", 5).await;
    upload(fx.addr(), FILE, b"second", 3).await;
    assert_eq!(
        std::fs::read(fx.root().join("up/file.bin")).unwrap(),
        b"second"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_id_headers_are_sent_only_when_configured() {
    let plain = Fixture::start().await;
    let resp = create(plain.addr(), FILE).await;
    assert_eq!(resp.header("BITS-Host-Id"), None);
    assert_eq!(resp.header("BITS-Host-Id-Fallback-Timeout"), None);

    let fx = Fixture::start_with(|c| {
        c.host_id = Some("node7.example".into());
        c.host_id_fallback_timeout = Some(600);
    })
    .await;
    let resp = create(fx.addr(), FILE).await;
    assert_eq!(resp.header("BITS-Host-Id"), Some("node7.example"));
    assert_eq!(resp.header("BITS-Host-Id-Fallback-Timeout"), Some("600"));
    let frag = fragment(fx.addr(), FILE, &resp.session(), 0, 2, b"ab").await;
    assert_eq!(
        frag.header("BITS-Host-Id"),
        None,
        "only on Create-Session Acks"
    );
}
