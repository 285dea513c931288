use crate::cluster::{options, random_bytes, Cluster};
use bits_proto::{ErrorCode, PacketType};
use bits_testkit::client::raw::RawRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_session_reaches_the_owner_which_deletes_its_temp_data() {
    let cluster = Cluster::new().backends(3).start().await;
    let session = cluster.create_session("/uploads/cancel.bin").await;
    let data = random_bytes(1000, 1);
    let fragment =
        RawRequest::fragment("/uploads/cancel.bin", &session, 0, data.slice(0..500), 1000);
    assert_eq!(cluster.send(&fragment).await.status, 200);
    let owner = cluster.owners_of(&session)[0];
    let sessions_dir = cluster.backend_root(owner).join(".bits-sessions");
    let temp_files = || {
        std::fs::read_dir(&sessions_dir)
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert!(temp_files() > 0, "the owner holds temp data");

    let cancel = cluster
        .send(
            &RawRequest::bits(PacketType::CancelSession, "/uploads/cancel.bin")
                .header("BITS-Session-Id", &session),
        )
        .await;
    assert_eq!(cancel.status, 200);
    let stats = cluster.stats(owner);
    assert_eq!(stats.sessions[&session].state, "cancelled");
    assert_eq!(
        stats.sessions[&session].packets.get("cancel_session"),
        Some(&1)
    );
    assert_eq!(temp_files(), 0, "temp data deleted");
    // No other backend saw the Cancel-Session.
    assert_eq!(cluster.owners_of(&session), vec![owner]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_close_or_cancel_the_session_is_unknown_and_answered_locally() {
    let cluster = Cluster::new().backends(2).start().await;
    for end in [PacketType::CloseSession, PacketType::CancelSession] {
        let session = cluster.create_session("/uploads/ended.bin").await;
        let ended = cluster
            .send(&RawRequest::bits(end, "/uploads/ended.bin").header("BITS-Session-Id", &session))
            .await;
        assert_eq!(ended.status, 200, "{end}");
        let before = cluster.requests_seen();
        let late = cluster
            .send(&RawRequest::fragment(
                "/uploads/ended.bin",
                &session,
                0,
                bytes::Bytes::from_static(&[0]),
                1,
            ))
            .await;
        assert_eq!(late.status, 500, "{end}");
        let ack = late.ack();
        assert_eq!(ack.error_code, Some(ErrorCode::SESSION_NOT_FOUND));
        assert_eq!(ack.session_id.map(|s| s.to_string()), Some(session.clone()));
        assert!(ack.is_ack);
        assert_eq!(
            cluster.requests_seen(),
            before,
            "answered by bitsgate, not a backend"
        );
    }
    assert_eq!(cluster.proxy.shared.table.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cancel_after_some_fragments_unpins_and_frees_the_backend() {
    let cluster = Cluster::new().backends(2).start().await;
    let data = random_bytes(1 << 20, 5);
    let mut opts = options(128 << 10);
    opts.cancel_after = Some(3);
    let report = cluster
        .upload("/uploads/c.bin", &data, &opts)
        .await
        .expect("cancel succeeds");
    assert!(report.cancelled);
    let session = report.session_id.expect("session id");
    let owner = cluster.owners_of(&session);
    assert_eq!(owner.len(), 1);
    assert_eq!(
        cluster.stats(owner[0]).sessions[&session].state,
        "cancelled"
    );
    assert_eq!(cluster.proxy.shared.table.len(), 0);
}
