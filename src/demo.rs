//! `bitsgate demo`: three reference BITS servers and the proxy in front of them, on
//! loopback, in one process, ready for an upload.

use crate::config::{self, Config};
use crate::demo_tls::DemoPki;
use crate::runner;
use anyhow::Context;
use bits_testkit::server::{self, AuthMode, ServerConfig, ServerHandle};
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
    /// Proxy replicas; more than one shares pins through a redis-server the demo
    /// starts, replica `i` listening on the ports of `listen` and `admin` plus `i`.
    pub replicas: usize,
    /// Windows authentication required by the reference servers.
    pub auth: Option<AuthMode>,
    /// The reference servers run upload-reply jobs.
    pub reply: bool,
    /// The reference servers serve HTTPS with a certificate made at start.
    pub backend_tls: bool,
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
    let pki = if options.backend_tls {
        Some(DemoPki::create(&base.join("tls"))?)
    } else {
        None
    };
    let backends = runtime.block_on(start_backends(&base, &options, pki.as_ref()))?;
    let redis = if options.replicas > 1 {
        Some(crate::demo_redis::DemoRedis::start(&base)?)
    } else {
        None
    };
    let mut proxies = Vec::new();
    for i in 0..options.replicas.max(1) {
        let data_dir = base.join(if i == 0 {
            "data".into()
        } else {
            format!("data{i}")
        });
        let storage = match &redis {
            Some(redis) => format!(
                "[storage]\nmode = \"redis\"\nredis_url = \"redis://{}/0\"\n",
                redis.addr
            ),
            None => format!(
                "[storage]\ndata_dir = {:?}\n",
                data_dir.display().to_string()
            ),
        };
        std::fs::create_dir_all(&data_dir)?;
        let config = demo_config(&options, i, &storage, &backends, pki.as_ref(), &data_dir)?;
        proxies.push(runner::spawn(config).context("starting the proxy")?);
    }
    let proxy = &proxies[0];
    let sample = write_sample(&base)?;

    let scheme = if pki.is_some() { "https" } else { "http" };
    println!("bitsgate demo is running.");
    println!();
    for backend in &backends {
        println!(
            "  backend {:<4} {scheme}://{}  (files land in {})",
            backend.name(),
            backend.addr(),
            base.join(backend.name()).display()
        );
    }
    if let Some(pki) = &pki {
        println!(
            "  backend CA   {}  (the proxy's [upstream] ca_file)",
            pki.ca.display()
        );
    }
    if let Some(redis) = &redis {
        println!(
            "  redis        redis://{}/0  (keys bitsgate:pin:*)",
            redis.addr
        );
    }
    for (i, replica) in proxies.iter().enumerate() {
        println!("  proxy {i:<6} http://{}/", replica.proxy_addr);
        println!("  metrics {i:<4} http://{}/metrics", replica.admin_addr);
    }
    println!();
    println!("Upload a file through the proxy (in another terminal):");
    println!(
        "  cargo run --release -p bits-testkit --bin bits-upload --{} http://{}/uploads/sample.bin {}",
        client_flags(&options),
        proxy.proxy_addr,
        sample.display()
    );
    if let Some(second) = proxies.get(1) {
        let (a, b) = (proxy.proxy_addr, second.proxy_addr);
        println!("One upload through both replicas: create the session at one, send its");
        println!("fragment to the other (which finds the pin in Redis), close it at the first:");
        println!("  P='{{7df0354d-249b-430f-820d-3d2a9bef4931}}'");
        println!(
            "  ID=$(curl -si -X BITS_POST -H 'BITS-Packet-Type: Create-Session' -H \"BITS-Supported-Protocols: $P\" http://{a}/uploads/both.txt | tr -d '\\r' | awk -F': ' 'tolower($1)==\"bits-session-id\"{{print $2}}')"
        );
        println!(
            "  curl -si -X BITS_POST -H 'BITS-Packet-Type: Fragment' -H \"BITS-Session-Id: $ID\" -H 'Content-Range: bytes 0-4/5' --data-binary hello http://{b}/uploads/both.txt"
        );
        println!(
            "  curl -si -X BITS_POST -H 'BITS-Packet-Type: Close-Session' -H \"BITS-Session-Id: $ID\" -H 'Content-Length: 0' http://{a}/uploads/both.txt"
        );
    }
    match &pki {
        Some(pki) => println!(
            "Each backend's view: curl --cacert {} https://<backend>/_bits/stats",
            pki.ca.display()
        ),
        None => println!("Each backend's view: curl http://<backend>/_bits/stats"),
    }
    println!();
    println!("Press Ctrl-C to stop.");
    std::io::stdout().flush()?;

    runtime.block_on(tokio::signal::ctrl_c())?;
    println!("stopping");
    for proxy in proxies {
        proxy.stop();
    }
    drop(redis);
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

/// The `bits-upload` flags an upload needs in the demo's modes, each with a space
/// before it.
fn client_flags(options: &DemoOptions) -> String {
    let mut flags = String::new();
    if options.auth.is_some() {
        // The reference servers accept any user name; no password is involved.
        flags.push_str(" --ntlm-user 'DEMO\\alice'");
    }
    if options.reply {
        flags.push_str(" --reply");
    }
    flags
}

async fn start_backends(
    base: &Path,
    options: &DemoOptions,
    pki: Option<&DemoPki>,
) -> anyhow::Result<Vec<ServerHandle>> {
    let mut handles = Vec::with_capacity(options.backends);
    for i in 1..=options.backends {
        let name = format!("b{i}");
        let mut config = ServerConfig::new(base.join(&name));
        config.name = name.clone();
        config.auth = options.auth;
        config.reply = options.reply;
        config.tls = pki.map(|pki| pki.server.clone());
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
    replica: usize,
    storage: &str,
    backends: &[ServerHandle],
    pki: Option<&DemoPki>,
    data_dir: &Path,
) -> anyhow::Result<Config> {
    let offset = |addr: SocketAddr| {
        let port = addr.port().checked_add(u16::try_from(replica)?);
        port.map(|port| SocketAddr::new(addr.ip(), port))
            .ok_or_else(|| anyhow::anyhow!("no port left above {addr} for replica {replica}"))
    };
    let mut text = format!(
        "[listener]\naddress = \"{}\"\n[admin]\naddress = \"{}\"\n[sessions]\nsweep_interval = \"10s\"\n{storage}[server]\nupgrade_sock = {:?}\npid_file = {:?}\n",
        offset(options.listen)?,
        offset(options.admin)?,
        data_dir.join("upgrade.sock").display().to_string(),
        data_dir.join("bitsgate.pid").display().to_string(),
    );
    if let Some(pki) = pki {
        text.push_str(&format!(
            "[upstream]\nca_file = {:?}\n",
            pki.ca.display().to_string()
        ));
    }
    for backend in backends {
        text.push_str(&format!(
            "[[backends]]\nid = \"{}\"\naddress = \"{}\"\ntls = {}\n",
            backend.name(),
            backend.addr(),
            pki.is_some()
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
