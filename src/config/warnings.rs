//! Settings that are valid but risky, or whose combination deserves a word: `bitsgate
//! check` prints them and `bitsgate run` logs them at every start, so a risk that was
//! chosen stays visible; neither refuses the file.

use super::model::{Config, HostIdMode};

/// One risky setting, with the key that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Key path, as in errors.
    pub key: &'static str,
    /// What the setting exposes or changes.
    pub message: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every warning for a validated config.
pub fn warnings(config: &Config) -> Vec<ConfigWarning> {
    let mut found = Vec::new();
    if config.admin.open_to_the_network() {
        found.push(ConfigWarning {
            key: "admin.allow_unauthenticated",
            message: format!(
                "the admin API on {} needs no token: anyone who reaches it can drain \
                 backends, reload and cancel uploads",
                config.admin.address
            ),
        });
    }
    if config.host_id.mode == HostIdMode::Passthrough {
        found.push(ConfigWarning {
            key: "host_id.mode",
            message: format!(
                "\"passthrough\": clients send their packets straight to the backends, so \
                 bitsgate sees no activity and every pin expires {} after its Create-Session \
                 even while its upload goes on. bitsgate therefore never sends Cancel-Session \
                 at expiry in this mode{}; a client that falls back to bitsgate's address after \
                 its pin expired gets not-found and restarts its upload. Use \"rewrite\" to keep \
                 the packets flowing through bitsgate.",
                humantime::format_duration(config.sessions.idle_timeout),
                if config.sessions.cancel_on_expiry {
                    " (sessions.cancel_on_expiry is ignored)"
                } else {
                    ""
                }
            ),
        });
    }
    found
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
        assert_eq!(warned[0].key, "host_id.mode");
        assert!(
            warned[0].message.contains("cancel_on_expiry is ignored"),
            "{warned:?}"
        );
        assert!(warnings(&config("strip")).is_empty());
    }
}
