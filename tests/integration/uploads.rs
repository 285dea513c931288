use crate::cluster::{options, random_bytes, sha256, Cluster};
use futures_free::join_all;

mod futures_free {
    /// Awaits every task spawned on the runtime, in order.
    pub async fn join_all<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await.expect("task panicked"));
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_uploads_over_new_connections_arrive_intact_each_on_one_backend() {
    let cluster = std::sync::Arc::new(Cluster::new().backends(3).start().await);
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let cluster = cluster.clone();
        tasks.push(tokio::spawn(async move {
            let size = (1 << 20) + (i as usize * 7919 * 17) % (7 << 20);
            let data = random_bytes(size, i);
            let mut opts = options(256 << 10);
            opts.new_connection_per_packet = true;
            let path = format!("/uploads/file-{i}.bin");
            let report = cluster
                .upload(&path, &data, &opts)
                .await
                .expect("upload succeeds");
            (path, sha256(&data), report)
        }));
    }
    let results = join_all(tasks).await;
    let mut per_backend = vec![0; cluster.backend_count()];
    for (path, expected, report) in &results {
        assert_eq!(report.restarts, 0, "{path} restarted");
        assert_eq!(
            cluster.committed_sha256(path),
            vec![expected.clone()],
            "{path}"
        );
        let session = report.session_id.as_deref().expect("session id");
        let owners = cluster.owners_of(session);
        assert_eq!(
            owners.len(),
            1,
            "{path}: session seen by backends {owners:?}"
        );
        per_backend[owners[0]] += 1;
    }
    // Round robin spreads the sessions: every backend owns some.
    assert!(per_backend.iter().all(|&n| n > 0), "{per_backend:?}");
    // Every pin was removed by its Close-Session.
    assert_eq!(cluster.proxy.shared.table.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_upload_goes_through_one_backend_and_is_byte_identical() {
    let cluster = Cluster::new().backends(2).start().await;
    let data = random_bytes(3 << 20, 99);
    let report = cluster
        .upload("/uploads/keepalive.bin", &data, &options(300_001))
        .await
        .expect("upload succeeds");
    assert_eq!(
        cluster.committed_sha256("/uploads/keepalive.bin"),
        vec![sha256(&data)]
    );
    let session = report.session_id.expect("session id");
    let owners = cluster.owners_of(&session);
    assert_eq!(owners.len(), 1);
    let stats = cluster.stats(owners[0]);
    let seen = &stats.sessions[&session].packets;
    assert_eq!(seen.get("fragment").copied(), Some(report.fragments));
    assert_eq!(seen.get("close_session").copied(), Some(1));
}
