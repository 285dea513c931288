//! Validation of the operations sections: admin auth, health checks, reload, storage.

use super::defaults as d;
use super::model::*;
use super::raw::*;
use super::validate::Validator;
use std::path::PathBuf;

impl Validator {
    pub(super) fn admin_token(&mut self, raw: &RawAdmin) -> Option<String> {
        let token = match (&raw.token, &raw.token_file) {
            (Some(_), Some(_)) => {
                self.push(
                    "admin.token_file",
                    "is set together with admin.token",
                    "keep one of them; token_file keeps the secret out of the config",
                );
                None
            }
            (Some(token), None) => Some(token.clone()),
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(text) => Some(text.trim().to_owned()),
                Err(e) => {
                    self.push(
                        "admin.token_file",
                        format!("cannot read {path:?}: {e}"),
                        "point it at a readable file that holds the token",
                    );
                    None
                }
            },
            (None, None) => None,
        };
        match token {
            Some(token) if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) => {
                self.push(
                    "admin.token",
                    "must be at least 16 visible ASCII characters",
                    "use a long random value, e.g. the output of `openssl rand -hex 32`",
                );
                None
            }
            other => other,
        }
    }

    pub(super) fn health_check_kind(&mut self, key: &str, value: &str) -> Option<HealthCheckKind> {
        match value {
            "bits_ping" => Some(HealthCheckKind::BitsPing),
            "tcp" => Some(HealthCheckKind::Tcp),
            "none" => Some(HealthCheckKind::None),
            other => {
                self.push(
                    key,
                    format!("{other:?} is not a health check kind"),
                    "use \"bits_ping\", \"tcp\" or \"none\"",
                );
                None
            }
        }
    }

    pub(super) fn health_check(&mut self, raw: &RawHealthCheck) -> HealthCheckConfig {
        let kind = self
            .health_check_kind(
                "health_check.kind",
                raw.kind.as_deref().unwrap_or(d::HEALTH_CHECK_KIND),
            )
            .unwrap_or(HealthCheckKind::BitsPing);
        let path = raw
            .path
            .clone()
            .unwrap_or_else(|| d::HEALTH_CHECK_PATH.to_owned());
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            self.push(
                "health_check.path",
                format!("{path:?} is not a URL path"),
                "start it with '/', e.g. \"/\" or \"/uploads/\"",
            );
        }
        let threshold = |v: &mut Self, key: &str, value: Option<u32>, default: u32| {
            let value = value.unwrap_or(default);
            if !(1..=100).contains(&value) {
                v.push(
                    key,
                    format!("{value} is outside 1..=100"),
                    "use a small count such as 2 or 3",
                );
            }
            value
        };
        let healthy_threshold = threshold(
            self,
            "health_check.healthy_threshold",
            raw.healthy_threshold,
            d::HEALTH_CHECK_HEALTHY_THRESHOLD,
        );
        let unhealthy_threshold = threshold(
            self,
            "health_check.unhealthy_threshold",
            raw.unhealthy_threshold,
            d::HEALTH_CHECK_UNHEALTHY_THRESHOLD,
        );
        let interval = self.duration(
            "health_check.interval",
            raw.interval.as_deref(),
            d::HEALTH_CHECK_INTERVAL,
        );
        let timeout = self.duration(
            "health_check.timeout",
            raw.timeout.as_deref(),
            d::HEALTH_CHECK_TIMEOUT,
        );
        HealthCheckConfig {
            kind,
            interval,
            timeout,
            require_ack: raw.path.is_some(),
            path,
            healthy_threshold,
            unhealthy_threshold,
            passive_failures: raw
                .passive_failures
                .unwrap_or(d::HEALTH_CHECK_PASSIVE_FAILURES),
        }
    }

    pub(super) fn reload(&mut self, raw: &RawReload) -> ReloadConfig {
        let removed_backends = match raw
            .removed_backends
            .as_deref()
            .unwrap_or(d::RELOAD_REMOVED_BACKENDS)
        {
            "drain" => RemovedBackends::Drain,
            "end" => RemovedBackends::End,
            other => {
                self.push(
                    "reload.removed_backends",
                    format!("{other:?} is not a choice"),
                    "use \"drain\" (finish their sessions) or \"end\" (not-found at once)",
                );
                RemovedBackends::Drain
            }
        };
        ReloadConfig {
            watch: raw.watch.unwrap_or(d::RELOAD_WATCH),
            removed_backends,
        }
    }

    pub(super) fn storage(&mut self, raw: &RawStorage) -> StorageConfig {
        let mode = match raw.mode.as_deref().unwrap_or(d::STORAGE_MODE) {
            "durable" => StorageMode::Durable,
            "memory" => StorageMode::Memory,
            "redis" => StorageMode::Redis,
            other => {
                self.push(
                    "storage.mode",
                    format!("{other:?} is not a mode"),
                    "use \"durable\" (pins survive restarts), \"memory\" or \"redis\" (shared by replicas)",
                );
                StorageMode::Durable
            }
        };
        let sync = match raw.sync.as_deref().unwrap_or(d::STORAGE_SYNC) {
            "write" => StorageSync::Write,
            "fsync" => StorageSync::Fsync,
            other => {
                self.push(
                    "storage.sync",
                    format!("{other:?} is not a choice"),
                    "use \"write\" (survives a crash of bitsgate) or \"fsync\" (also a power cut)",
                );
                StorageSync::Write
            }
        };
        let data_dir = raw.data_dir.as_deref().unwrap_or(d::STORAGE_DATA_DIR);
        if data_dir.is_empty() {
            self.push(
                "storage.data_dir",
                "is empty",
                "name a directory, e.g. \"/var/lib/bitsgate\"",
            );
        }
        let redis = self.redis_storage(raw, mode);
        StorageConfig {
            mode,
            data_dir: PathBuf::from(data_dir),
            sync,
            redis,
        }
    }
}
