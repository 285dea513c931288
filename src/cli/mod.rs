//! The `bitsgate` command line: the server's own commands (`run`, `check`, `demo`)
//! and the operator's commands that call a running bitsgate's admin API.

pub mod args;
mod client;
mod generated;
mod ops;
mod probe;
mod server;
mod views;

use args::{Cli, Command};
use clap::Parser;
use ops::Operation;
use std::process::ExitCode;

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => server::check(&config),
        Command::Run { config, upgrade } => {
            server::init_logging(bitsgate::config::peek_log_format(&config));
            report(server::run(&config, upgrade))
        }
        #[cfg(feature = "demo")]
        Command::Demo {
            listen,
            admin,
            backends,
            data_dir,
            replicas,
            auth,
            reply,
            backend_tls,
        } => {
            server::init_logging(bitsgate::config::LogFormat::Text);
            report(bitsgate::demo::run(bitsgate::demo::DemoOptions {
                listen,
                admin,
                backends: usize::from(backends),
                data_dir,
                replicas: usize::from(replicas),
                auth,
                reply,
                backend_tls,
            }))
        }
        Command::Probe {
            target,
            ready,
            timeout,
        } => probe::run(&target, ready, timeout),
        Command::Backends { call } => ops::run(Operation::Backends, &call),
        Command::Sessions {
            backend,
            limit,
            call,
        } => ops::run(Operation::Sessions { backend, limit }, &call),
        Command::Drain { id, call } => ops::run(Operation::Drain(id), &call),
        Command::Undrain { id, call } => ops::run(Operation::Undrain(id), &call),
        Command::Cancel { session, call } => ops::run(Operation::Cancel(session), &call),
        Command::Reload { call } => ops::run(Operation::Reload, &call),
        Command::Completions { shell } => {
            generated::completions(shell);
            ExitCode::SUCCESS
        }
        Command::Man { dir } => report(generated::man(dir.as_deref())),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bitsgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
