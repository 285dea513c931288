//! Settings that are valid but risky: `bitsgate check` prints them and `bitsgate run`
//! logs them at every start, so a risk that was chosen stays visible.

use super::model::Config;

/// One risky setting, with the key that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Key path, as in errors.
    pub key: &'static str,
    /// What the setting exposes.
    pub message: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every risky setting of a valid config.
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
    found
}
