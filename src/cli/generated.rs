//! Shell completions and man pages, generated from the command line's definition so
//! they never fall behind it.

use super::args::Cli;
use anyhow::Context;
use clap::CommandFactory;
use std::path::Path;

/// Prints the completion script for a shell.
pub fn completions(shell: clap_complete::Shell) {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "bitsgate", &mut std::io::stdout());
}

/// Prints bitsgate(1), or writes it and a page per command into `dir`.
pub fn man(dir: Option<&Path>) -> anyhow::Result<()> {
    let command = Cli::command();
    match dir {
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .context("writing the man page"),
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))
        }
    }
}
