//! `bitsgate run` and `bitsgate check`.

use anyhow::Context;
use bitsgate::app::{self, ProcessOptions};
use bitsgate::backend::probe;
use bitsgate::config;
use bitsgate::systemd::SystemdNotifier;
use pingora::server::RunArgs;
use pingora::services::background::background_service;
use std::path::Path;
use std::process::ExitCode;

/// Exit status of `check` for an invalid file (EX_DATAERR-style, as in sysexits.h).
const EXIT_INVALID_CONFIG: u8 = 64;

pub fn check(path: &Path) -> ExitCode {
    match config::load_file(path) {
        Ok(config) => {
            println!(
                "{}: valid ({} backend(s), listener {}, admin {})",
                path.display(),
                config.backends.len(),
                config.listener.address,
                config.admin.address
            );
            println!("  {}", probe::rule_summary(&config.health_check));
            for warning in config::warnings(&config) {
                println!("  warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            for error in &errors.0 {
                eprintln!("  {error}");
            }
            ExitCode::from(EXIT_INVALID_CONFIG)
        }
    }
}

pub fn run(path: &Path, upgrade: bool) -> anyhow::Result<()> {
    let config = config::load_file(path)
        .map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))?;
    tracing::info!(target: "bitsgate", listener = %config.listener.address, admin = %config.admin.address, backends = config.backends.len(), "starting");
    tracing::info!(target: "bitsgate::health", "{}", probe::rule_summary(&config.health_check));
    for warning in config::warnings(&config) {
        tracing::warn!(target: "bitsgate::config", key = warning.key, "{}", warning.message);
    }
    let listeners = vec![config.listener.address];
    let admin = config.admin.address;
    let process = ProcessOptions {
        upgrade,
        config_path: Some(path.to_owned()),
        reload_on_sighup: true,
        write_pid_file: true,
    };
    let mut instance = app::build(config, &process).context("building the server")?;
    if SystemdNotifier::wanted() {
        instance.server.add_service(background_service(
            "systemd notify",
            SystemdNotifier::new(listeners, admin),
        ));
    }
    instance.run(RunArgs::default());
    Ok(())
}

pub fn init_logging(format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BITSGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Text => builder.init(),
        config::LogFormat::Json => builder.json().init(),
    }
}
