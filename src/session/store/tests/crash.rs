//! A real `kill -9`: a child process pins sessions and reports each acknowledgement;
//! the parent kills it mid-stream and reopens the journal. Every pin the child saw
//! acknowledged must be there.

use super::{guid, open, temp_dir};
use crate::session::store::{PinStore, StorageSync};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const CHILD_DIR: &str = "BITSGATE_PIN_STORE_CHILD_DIR";
const CHILD_TEST: &str = "session::store::tests::crash::child_pins_until_killed";

#[test]
fn every_pin_acknowledged_before_a_kill_9_is_loaded_after_it() {
    let dir = temp_dir();
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            CHILD_TEST,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acked = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        if let Some(n) = line.strip_prefix("acked ") {
            acked = Some(n.parse::<u32>().expect("acked count"));
            if acked >= Some(2000) {
                break;
            }
        }
    }
    // SIGKILL: no destructor, no flush; the writer may be mid-write.
    child.kill().expect("kill child");
    child.wait().expect("reap child");
    let acked = acked.expect("the child acknowledged pins");

    let (_, loaded) = open(dir.path());
    assert!(
        loaded.pins.len() as u32 > acked,
        "{} <= {acked}",
        loaded.pins.len()
    );
    for n in 0..=acked {
        assert!(
            loaded.pins.iter().any(|(key, ..)| *key == guid(n)),
            "pin {n} lost"
        );
    }
}

/// Run only as the child of the test above.
#[tokio::test]
#[ignore = "the child process of every_pin_acknowledged_before_a_kill_9_is_loaded_after_it"]
async fn child_pins_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let (store, _) = PinStore::open(dir.as_ref(), StorageSync::Write).expect("child open");
    // Bounded, so an orphaned child ends on its own.
    for n in 0..1_000_000 {
        store
            .pin(&guid(n), "b1", None, "/uploads/", n)
            .await
            .expect("child pin");
        println!("acked {n}");
    }
}
