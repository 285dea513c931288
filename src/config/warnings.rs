//! Valid settings whose combination deserves a word: `bitsgate check` prints these and
//! `bitsgate run` logs them, but neither refuses the file.

use super::model::{Config, HostIdMode};

/// The warnings for a validated config, one sentence each, naming the keys involved.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if config.host_id.mode == HostIdMode::Passthrough {
        out.push(format!(
            "host_id.mode = \"passthrough\": clients send their packets straight to the backends, so bitsgate sees no activity and every pin expires {} after its Create-Session even while its upload goes on. bitsgate therefore never sends Cancel-Session at expiry in this mode{}; a client that falls back to bitsgate's address after its pin expired gets not-found and restarts its upload. Use \"rewrite\" to keep the packets flowing through bitsgate.",
            humantime::format_duration(config.sessions.idle_timeout),
            if config.sessions.cancel_on_expiry {
                " (sessions.cancel_on_expiry is ignored)"
            } else {
                ""
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: &str) -> Config {
        crate::config::load_str(&format!(
            "[host_id]\nmode = \"{mode}\"\n[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:1\"\n"
        ))
        .expect("valid config")
    }

    #[test]
    fn passthrough_mode_is_warned_about_and_the_other_modes_are_not() {
        let warned = warnings(&config("passthrough"));
        assert_eq!(warned.len(), 1);
        assert!(
            warned[0].contains("cancel_on_expiry is ignored"),
            "{warned:?}"
        );
        assert!(warnings(&config("strip")).is_empty());
    }
}
