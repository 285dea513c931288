//! `bitsgate run` under systemd's `Type=notify`: a notification socket of the test's
//! own stands in for systemd and must get READY=1 only once both listeners accept
//! connections, watchdog pings when a watchdog is asked for, and STOPPING=1 at a stop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Kills the process if the test fails before stopping it.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits for a datagram containing `wanted`, returning every message seen.
fn receive_until(socket: &UnixDatagram, wanted: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
            let done = message.lines().any(|line| line == wanted);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }
    panic!("no {wanted} within {limit:?}; got {seen:?}");
}

#[test]
fn bitsgate_run_tells_systemd_it_is_ready_once_its_listeners_accept() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let admin = free_port();
    let config = dir.path().join("bitsgate.toml");
    std::fs::write(
        &config,
        format!(
            "[listener]\naddress = \"{proxy}\"\n[admin]\naddress = \"{admin}\"\n[storage]\nmode = \"memory\"\n[server]\ngrace_period = \"1s\"\nshutdown_timeout = \"1s\"\nupgrade_sock = \"{}\"\npid_file = \"{}\"\n[health_check]\nkind = \"none\"\npassive_failures = 0\n[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:9\"\n",
            dir.path().join("upgrade.sock").display(),
            dir.path().join("bitsgate.pid").display(),
        ),
    )
    .unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();

    let child = Command::new(env!("CARGO_BIN_EXE_bitsgate"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bitsgate starts");
    let mut child = Killed(child);

    receive_until(&socket, "READY=1", Duration::from_secs(30));
    // READY=1 came after the binds: both listeners accept at once, no retry.
    for address in [proxy, admin] {
        TcpStream::connect_timeout(&address, Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("READY=1 sent before {address} listened: {e}"));
    }
    receive_until(&socket, "WATCHDOG=1", Duration::from_secs(10));

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    receive_until(&socket, "STOPPING=1", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "bitsgate did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}
