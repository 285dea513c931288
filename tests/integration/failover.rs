//! Owners that go away: temporarily (503, the pin is kept, the same session completes)
//! and for good (not-found, the client restarts on another backend).

use crate::cluster::{options, random_bytes, sha256, Cluster};
use bits_proto::PacketType;
use bits_testkit::client::{self, Event, Observer, UploadSource};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PATH: &str = "/uploads/f.bin";

/// Holds the upload still once `pause_at` bytes are acknowledged, until released, and
/// records what the client went through.
pub struct Pauser {
    pause_at: u64,
    paused: AtomicBool,
    reached: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<mpsc::Receiver<()>>,
    statuses_503: AtomicU32,
    restarts: AtomicU32,
}

impl Observer for Pauser {
    fn on_progress(&self, acked: u64, _total: u64) {
        if acked >= self.pause_at && !self.paused.swap(true, Ordering::SeqCst) {
            if let Some(reached) = self.reached.lock().unwrap().take() {
                let _ = reached.send(());
            }
            // Holds this upload task only. block_in_place moves the worker's other
            // tasks (and its timer duties) elsewhere, so the test can drive the cluster.
            tokio::task::block_in_place(|| {
                let _ = self
                    .release
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30));
            });
        }
    }

    fn on_response(&self, _packet: PacketType, status: u16, _latency: Duration) {
        if status == 503 {
            self.statuses_503.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn on_event(&self, event: &Event) {
        if matches!(event, Event::Restart { .. }) {
            self.restarts.fetch_add(1, Ordering::SeqCst);
        }
    }
}

pub fn pauser(pause_at: u64) -> (Arc<Pauser>, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (reached_tx, reached_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let pauser = Arc::new(Pauser {
        pause_at,
        paused: AtomicBool::new(false),
        reached: Mutex::new(Some(reached_tx)),
        release: Mutex::new(release_rx),
        statuses_503: AtomicU32::new(0),
        restarts: AtomicU32::new(0),
    });
    (pauser, reached_rx, release_tx)
}

/// Uploads `data` to PATH in the background with `observer` watching; yields the report
/// and the data's sha256.
fn spawn_upload(
    cluster: &Cluster,
    data: bytes::Bytes,
    opts: bits_testkit::client::UploadOptions,
    observer: Arc<Pauser>,
) -> tokio::task::JoinHandle<
    Result<(bits_testkit::client::UploadReport, String), bits_testkit::client::UploadError>,
> {
    let url = cluster.url(PATH);
    tokio::spawn(async move {
        client::upload(&url, UploadSource::Bytes(data.clone()), &opts, &*observer)
            .await
            .map(|report| (report, sha256(&data)))
    })
}

pub async fn wait_for(rx: &mpsc::Receiver<()>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match rx.try_recv() {
            Ok(()) => return,
            Err(mpsc::TryRecvError::Empty) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("the upload never reached the pause point: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owner_that_stops_gets_503_and_the_same_session_completes_when_it_returns() {
    let mut cluster = Cluster::new().backends(3).start().await;
    let data = random_bytes(2 << 20, 31);
    let (pauser, reached, release) = pauser(512 << 10);
    let mut opts = options(128 << 10);
    opts.new_connection_per_packet = true;
    opts.max_retries = 1000;
    opts.retry_delay = Duration::from_millis(10);
    opts.max_retry_delay = Duration::from_millis(50);
    let upload = spawn_upload(&cluster, data, opts, pauser.clone());

    wait_for(&reached).await;
    assert_eq!(cluster.proxy.shared.table.len(), 1);
    let owner = (0..3)
        .find(|&i| cluster.stats(i).sessions_open == 1)
        .expect("an owner");
    cluster.stop_backend(owner).await;
    release.send(()).expect("release");
    crate::cluster::eventually("a 503 reaches the client", Duration::from_secs(20), || {
        pauser.statuses_503.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(
        cluster.proxy.shared.table.len(),
        1,
        "the pin is kept while the owner is away"
    );
    cluster.restart_backend(owner).await;

    let (report, expected) = upload.await.expect("task").expect("upload completes");
    assert_eq!(report.restarts, 0, "no restart from byte 0");
    assert_eq!(pauser.restarts.load(Ordering::SeqCst), 0);
    let session = report.session_id.expect("session");
    assert_eq!(
        cluster.owners_of(&session),
        vec![owner],
        "no other backend saw the session"
    );
    assert_eq!(cluster.committed_sha256(PATH), vec![expected]);
    let metrics = cluster.metrics().await;
    assert!(
        crate::cluster::sample(
            &metrics,
            "bitsgate_local_acks_total{reason=\"owner_unavailable\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owner_removed_from_the_config_makes_the_client_restart_on_another_backend() {
    let cluster = Cluster::new().backends(2).start().await;
    let data = random_bytes(1 << 20, 41);
    let (pauser, reached, release) = pauser(256 << 10);
    let mut opts = options(64 << 10);
    opts.new_connection_per_packet = true;
    let upload = spawn_upload(&cluster, data, opts, pauser.clone());

    wait_for(&reached).await;
    let owner = (0..2)
        .find(|&i| cluster.stats(i).sessions_open == 1)
        .expect("an owner");
    cluster.reconfigure(|i| i != owner);
    release.send(()).expect("release");

    let (report, expected) = upload.await.expect("task").expect("upload completes");
    assert_eq!(report.restarts, 1, "one clean restart");
    let other = 1 - owner;
    let session = report.session_id.expect("session");
    assert_eq!(cluster.owners_of(&session), vec![other]);
    let file = std::fs::read(
        cluster
            .backend_root(other)
            .join(PATH.trim_start_matches('/')),
    )
    .expect("file on the other backend");
    assert_eq!(sha256(&file), expected);
    let metrics = cluster.metrics().await;
    let removed =
        format!("bitsgate_sessions_ended_total{{backend=\"b{owner}\",reason=\"backend_removed\"}}");
    assert_eq!(
        crate::cluster::sample(&metrics, &removed),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_session_skips_a_backend_that_refuses_connections() {
    let mut cluster = Cluster::new().backends(2).start().await;
    cluster.stop_backend(0).await;
    let data = random_bytes(100_000, 51);
    for i in 0..4 {
        let path = format!("/uploads/skip-{i}.bin");
        let report = cluster
            .upload(&path, &data, &options(64 << 10))
            .await
            .expect("upload");
        assert_eq!(report.restarts, 0);
        assert_eq!(
            cluster.owners_of(report.session_id.as_deref().unwrap()),
            vec![1]
        );
    }
}
