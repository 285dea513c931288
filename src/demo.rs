//! `bitsgate demo`: three reference BITS servers and the proxy in front of them, on
//! loopback, in one process, ready for an upload.

use crate::config::{self, Config};
use crate::runner;
use anyhow::Context;
use bits_testkit::server::{self, ServerConfig, ServerHandle};
use rand::RngCore;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What the demo listens on and where it keeps files.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Proxy address.
    pub listen: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// How many reference servers.
    pub backends: usize,
    /// Keep uploads here instead of a temporary directory removed at exit.
    pub data_dir: Option<PathBuf>,
}

/// Runs the demo until Ctrl-C.
pub fn run(options: DemoOptions) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new()
        .prefix("bitsgate-demo-")
        .tempdir()?;
    let base = options
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&base)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let backends = runtime.block_on(start_backends(&base, options.backends))?;
    let config = demo_config(&options, &backends, &base.join("data"))?;
    let proxy = runner::spawn(config).context("starting the proxy")?;
    let sample = write_sample(&base)?;

    println!("bitsgate demo is running.");
    println!();
    for backend in &backends {
        println!(
            "  backend {:<4} http://{}  (files land in {})",
            backend.name(),
            backend.addr(),
            base.join(backend.name()).display()
        );
    }
    println!("  proxy        http://{}/", proxy.proxy_addr);
    println!("  metrics      http://{}/metrics", proxy.admin_addr);
    println!();
    println!("Upload a file through the proxy (in another terminal):");
    println!(
        "  cargo run --release -p bits-testkit --bin bits-upload -- http://{}/uploads/sample.bin {}",
        proxy.proxy_addr,
        sample.display()
    );
    println!("Each backend's view: curl http://<backend>/_bits/stats");
    println!();
    println!("Press Ctrl-C to stop.");
    std::io::stdout().flush()?;

    runtime.block_on(tokio::signal::ctrl_c())?;
    println!("stopping");
    proxy.stop();
    runtime.block_on(async {
        for backend in backends {
            backend.shutdown().await;
        }
    });
    if options.data_dir.is_none() {
        println!("removed {}", temp.path().display());
    }
    Ok(())
}

async fn start_backends(base: &Path, count: usize) -> anyhow::Result<Vec<ServerHandle>> {
    let mut handles = Vec::with_capacity(count);
    for i in 1..=count {
        let name = format!("b{i}");
        let mut config = ServerConfig::new(base.join(&name));
        config.name = name.clone();
        std::fs::create_dir_all(&config.root)?;
        handles.push(
            server::spawn(config)
                .await
                .with_context(|| format!("starting reference server {name}"))?,
        );
    }
    Ok(handles)
}

fn demo_config(
    options: &DemoOptions,
    backends: &[ServerHandle],
    data_dir: &Path,
) -> anyhow::Result<Config> {
    let mut text = format!(
        "[listener]\naddress = \"{}\"\n[admin]\naddress = \"{}\"\n[sessions]\nsweep_interval = \"10s\"\n[storage]\ndata_dir = {:?}\n[server]\nupgrade_sock = {:?}\npid_file = {:?}\n",
        options.listen,
        options.admin,
        data_dir.display().to_string(),
        data_dir.join("upgrade.sock").display().to_string(),
        data_dir.join("bitsgate.pid").display().to_string(),
    );
    for backend in backends {
        text.push_str(&format!(
            "[[backends]]\nid = \"{}\"\naddress = \"{}\"\n",
            backend.name(),
            backend.addr()
        ));
    }
    config::load_str(&text).map_err(|e| anyhow::anyhow!("demo config: {e}"))
}

fn write_sample(base: &Path) -> anyhow::Result<PathBuf> {
    let path = base.join("sample.bin");
    let mut data = vec![0u8; 16 << 20];
    rand::thread_rng().fill_bytes(&mut data);
    std::fs::write(&path, data)?;
    Ok(path)
}
