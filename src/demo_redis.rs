//! The redis-server `bitsgate demo --replicas N` shares its replicas' pins through: a
//! child process on a free loopback port, without persistence, stopped with the demo.

use anyhow::Context;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server, killed when dropped.
pub struct DemoRedis {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl DemoRedis {
    /// Starts `redis-server` from the PATH, its files in `dir`, and waits until it
    /// accepts connections.
    pub fn start(dir: &Path) -> anyhow::Result<DemoRedis> {
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &addr.port().to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (install it: apt-get install redis-server)")?;
        let mut redis = DemoRedis { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            if let Some(status) = redis.child.try_wait()? {
                anyhow::bail!("redis-server exited at start ({status})");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "redis-server did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }
}

impl Drop for DemoRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
