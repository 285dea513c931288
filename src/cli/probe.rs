//! `bitsgate probe`: the container's health check, with no curl in the image.

use super::args::AdminTarget;
use super::client::{Access, AdminClient};
use super::ops::report_call_error;
use std::process::ExitCode;
use std::time::Duration;

/// 0 when the probe answers 200, 1 otherwise (64 for an unusable config file).
pub fn run(target: &AdminTarget, ready: bool, timeout: Duration) -> ExitCode {
    let path = if ready { "/readyz" } else { "/livez" };
    let answer =
        AdminClient::connect(target, Access::Probe, timeout).and_then(|client| client.get(path));
    match answer {
        Ok(answer) if answer.status == 200 => ExitCode::SUCCESS,
        Ok(answer) => {
            eprintln!(
                "bitsgate: {path} answered {}: {}",
                answer.status,
                answer.body.trim()
            );
            ExitCode::FAILURE
        }
        Err(error) => report_call_error(&error),
    }
}
