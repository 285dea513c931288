//! The operator's commands: each is one call to the admin API, shown as a table or,
//! with `--json`, as the API's own JSON.

use super::args::Call;
use super::client::{segment, Access, AdminClient, Answer, CallError};
use super::views;
use serde::de::DeserializeOwned;
use std::process::ExitCode;

/// Exit status when the configuration file cannot be used (as `bitsgate check`).
pub const EXIT_CONFIG: u8 = 64;

/// One of the operator's calls.
pub enum Operation {
    Backends,
    Sessions { backend: Option<String>, limit: u32 },
    Drain(String),
    Undrain(String),
    Cancel(String),
    Reload,
}

impl Operation {
    fn access(&self) -> Access {
        match self {
            Operation::Backends => Access::Read,
            Operation::Sessions { .. } => Access::SessionRead,
            _ => Access::Write,
        }
    }

    fn send(&self, client: &AdminClient) -> Result<Answer, CallError> {
        match self {
            Operation::Backends => client.get("/backends"),
            Operation::Sessions { backend, limit } => {
                let mut path = format!("/sessions?limit={limit}");
                if let Some(id) = backend {
                    path.push_str(&format!("&backend={}", segment(id)));
                }
                client.get(&path)
            }
            Operation::Drain(id) => client.post(&format!("/backends/{}/drain", segment(id))),
            Operation::Undrain(id) => client.post(&format!("/backends/{}/undrain", segment(id))),
            Operation::Cancel(session) => client.delete(&format!("/sessions/{}", segment(session))),
            Operation::Reload => client.post("/config/reload"),
        }
    }

    /// The answer for people, or why it is not a success.
    fn render(&self, answer: &Answer) -> Result<String, String> {
        match self {
            Operation::Backends => {
                parse::<views::Backends>(answer).map(|b| views::backends_table(&b.backends))
            }
            Operation::Sessions { .. } => {
                parse::<views::Sessions>(answer).map(|s| views::sessions_table(&s))
            }
            Operation::Drain(_) | Operation::Undrain(_) => {
                parse::<views::Backend>(answer).map(|b| views::backends_table(&[b]))
            }
            Operation::Cancel(_) => {
                parse::<views::Cancelled>(answer).map(|c| views::cancelled_line(&c))
            }
            Operation::Reload => render_reload(answer),
        }
    }
}

fn render_reload(answer: &Answer) -> Result<String, String> {
    if answer.status != 422 && !answer.is_success() {
        return Err(answer.error_message());
    }
    let reload: views::Reload = serde_json::from_str(&answer.body)
        .map_err(|e| format!("unexpected answer ({e}): {}", answer.body.trim()))?;
    match (reload.outcome.as_str(), reload.report) {
        ("reloaded", Some(report)) => Ok(views::reload_lines(&report)),
        _ => {
            let mut text = format!(
                "reload refused: the configuration in force stays; {} error(s)",
                reload.errors.len()
            );
            for e in &reload.errors {
                text.push_str(&format!("\n  {}: {} (fix: {})", e.key, e.message, e.fix));
            }
            Err(text)
        }
    }
}

fn parse<T: DeserializeOwned>(answer: &Answer) -> Result<T, String> {
    if !answer.is_success() {
        return Err(answer.error_message());
    }
    serde_json::from_str(&answer.body)
        .map_err(|e| format!("unexpected answer ({e}): {}", answer.body.trim()))
}

/// Runs one call and prints its outcome: 0 on success, 1 when the call failed or was
/// refused, 64 when the configuration file cannot be used.
pub fn run(operation: Operation, call: &Call) -> ExitCode {
    let answer = AdminClient::connect(&call.target, operation.access(), call.timeout)
        .and_then(|client| operation.send(&client));
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => return report_call_error(&error),
    };
    if call.json {
        // Scripts get the API's answer as it is, errors included; the status tells.
        print!("{}", answer.body);
        if !answer.body.ends_with('\n') {
            println!();
        }
        return if answer.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    match operation.render(&answer) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!(
                "bitsgate: {} ({}): {message}",
                describe(&operation),
                answer.status
            );
            if answer.status == 401 {
                eprintln!("bitsgate: the token from the configuration file was refused; is it the file the running bitsgate was started with?");
            }
            ExitCode::FAILURE
        }
    }
}

fn describe(operation: &Operation) -> String {
    match operation {
        Operation::Backends => "backends".into(),
        Operation::Sessions { .. } => "sessions".into(),
        Operation::Drain(id) => format!("drain {id}"),
        Operation::Undrain(id) => format!("undrain {id}"),
        Operation::Cancel(session) => format!("cancel {session}"),
        Operation::Reload => "reload".into(),
    }
}

/// Prints why no answer came, with the exit status that goes with it.
pub fn report_call_error(error: &CallError) -> ExitCode {
    eprintln!("bitsgate: {error}");
    match error {
        CallError::Config { .. } | CallError::Https { .. } => ExitCode::from(EXIT_CONFIG),
        CallError::Unreachable { .. } => ExitCode::FAILURE,
    }
}
