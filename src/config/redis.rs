//! `[storage] mode = "redis"`: where the shared pin store is and how long to wait for it.

use super::defaults as d;
use super::model::StorageMode;
use super::raw::RawStorage;
use super::sentinel::{self, SentinelUrl};
use super::validate::Validator;
use std::fmt;
use std::time::Duration;

/// The Redis (or Valkey) server every replica shares its pins through.
#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://HOST:PORT/DB`, `rediss://…` (TLS) or `redis+sentinel://…`, as
    /// configured.
    pub url: String,
    /// The sentinels to find the master through, for a `redis+sentinel://` URL.
    pub sentinel: Option<SentinelUrl>,
    /// From `redis_password_file`; overrides a password in the URL.
    pub password: Option<String>,
    /// Put before every key, so several farms can share one Redis.
    pub key_prefix: String,
    /// How long establishing a connection may take.
    pub connect_timeout: Duration,
    /// How long one command may take.
    pub timeout: Duration,
}

/// Never prints the password, in the URL or from the file: configs are logged.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redacted_url(&self.url))
            .field("sentinel", &self.sentinel)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The URL with any `user:password@` replaced, for logs.
pub fn redacted_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…{}", &url[at..]),
        _ => url.to_owned(),
    }
}

impl Validator {
    pub(super) fn redis_storage(
        &mut self,
        raw: &RawStorage,
        mode: StorageMode,
    ) -> Option<RedisConfig> {
        let set_keys = [
            ("storage.redis_url", raw.redis_url.is_some()),
            (
                "storage.redis_password_file",
                raw.redis_password_file.is_some(),
            ),
            ("storage.redis_key_prefix", raw.redis_key_prefix.is_some()),
            (
                "storage.redis_connect_timeout",
                raw.redis_connect_timeout.is_some(),
            ),
            ("storage.redis_timeout", raw.redis_timeout.is_some()),
        ];
        if mode != StorageMode::Redis {
            for (key, _) in set_keys.iter().filter(|(_, set)| *set) {
                self.push(
                    *key,
                    "is set but storage.mode is not \"redis\"",
                    "set storage.mode = \"redis\", or remove the key",
                );
            }
            return None;
        }
        let mut sentinel = None;
        let url = match raw.redis_url.as_deref() {
            None | Some("") => {
                self.push(
                    "storage.redis_url",
                    "is required with storage.mode = \"redis\"",
                    "name the server, e.g. \"redis://10.0.0.5:6379/0\" (\"rediss://\" for TLS)",
                );
                String::new()
            }
            Some(url) if url.starts_with(sentinel::SCHEME) => {
                match sentinel::parse(url) {
                    Ok(parsed) => sentinel = Some(parsed),
                    Err(e) => self.push(
                        "storage.redis_url",
                        format!("{:?} {e}", redacted_url(url)),
                        "write redis+sentinel://HOST:PORT,HOST:PORT/MASTER-NAME/DB",
                    ),
                }
                url.to_owned()
            }
            Some(url) if !(url.starts_with("redis://") || url.starts_with("rediss://")) => {
                self.push(
                    "storage.redis_url",
                    format!(
                        "{:?} is not a redis://, rediss:// or redis+sentinel:// URL",
                        redacted_url(url)
                    ),
                    "write redis://HOST:PORT/DB, rediss://HOST:PORT/DB for TLS, or redis+sentinel://HOST:PORT,HOST:PORT/MASTER-NAME/DB",
                );
                String::new()
            }
            Some(url) => {
                if let Err(e) = ::redis::Client::open(url) {
                    self.push(
                        "storage.redis_url",
                        format!("{:?} cannot be used: {e}", redacted_url(url)),
                        "write redis://HOST:PORT/DB, or rediss://HOST:PORT/DB for TLS",
                    );
                }
                url.to_owned()
            }
        };
        let password = raw.redis_password_file.as_deref().and_then(|path| {
            match std::fs::read_to_string(path) {
                Ok(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
                Ok(_) => {
                    self.push(
                        "storage.redis_password_file",
                        format!("{path:?} is empty"),
                        "put the Redis password (or ACL user's password) in the file",
                    );
                    None
                }
                Err(e) => {
                    self.push(
                        "storage.redis_password_file",
                        format!("cannot read {path:?}: {e}"),
                        "point it at a readable file that holds the password",
                    );
                    None
                }
            }
        });
        let connect_timeout = self.duration(
            "storage.redis_connect_timeout",
            raw.redis_connect_timeout.as_deref(),
            d::STORAGE_REDIS_CONNECT_TIMEOUT,
        );
        let timeout = self.duration(
            "storage.redis_timeout",
            raw.redis_timeout.as_deref(),
            d::STORAGE_REDIS_TIMEOUT,
        );
        Some(RedisConfig {
            url,
            sentinel,
            password,
            key_prefix: raw
                .redis_key_prefix
                .clone()
                .unwrap_or_else(|| d::STORAGE_REDIS_KEY_PREFIX.to_owned()),
            connect_timeout,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_the_debug_output() {
        let config = RedisConfig {
            url: "redis://user:hunter2hunter2@10.0.0.5:6379/0".into(),
            sentinel: None,
            password: Some("s3cret-from-file".into()),
            key_prefix: "bitsgate:".into(),
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_millis(500),
        };
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("@10.0.0.5:6379/0"), "{text}");
    }

    #[test]
    fn redis_mode_needs_a_url_and_takes_the_password_from_its_file() {
        let errors = crate::config::load_str(
            "[storage]\nmode = \"redis\"\n[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:1\"\n",
        )
        .unwrap_err();
        assert!(
            errors.0.iter().any(|e| e.key == "storage.redis_url"),
            "{errors}"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("redis.pass");
        std::fs::write(&file, "pw-from-file\n").unwrap();
        let config = crate::config::load_str(&format!(
            "[storage]\nmode = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/2\"\nredis_password_file = {file:?}\nredis_key_prefix = \"farm-a:\"\nredis_timeout = \"250ms\"\n[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:1\"\n"
        ))
        .unwrap();
        let redis = config.storage.redis.unwrap();
        assert_eq!(redis.password.as_deref(), Some("pw-from-file"));
        assert_eq!(redis.key_prefix, "farm-a:");
        assert_eq!(redis.timeout, Duration::from_millis(250));
        assert_eq!(redis.connect_timeout, d::STORAGE_REDIS_CONNECT_TIMEOUT);
    }

    #[test]
    fn a_sentinel_url_names_the_sentinels_and_the_master() {
        let config = crate::config::load_str(
            "[storage]\nmode = \"redis\"\nredis_url = \"redis+sentinel://10.0.0.5,10.0.0.6:26380/bits/1\"\n[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let sentinel = config.storage.redis.unwrap().sentinel.expect("sentinels");
        assert_eq!(sentinel.sentinels.len(), 2);
        assert_eq!((sentinel.master.as_str(), sentinel.db), ("bits", 1));
        let errors = crate::config::load_str(
            "[storage]\nmode = \"redis\"\nredis_url = \"redis+sentinel://10.0.0.5\"\n[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:1\"\n",
        )
        .unwrap_err();
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.key == "storage.redis_url" && e.message.contains("MASTER-NAME")),
            "{errors}"
        );
    }

    #[test]
    fn redis_keys_outside_redis_mode_are_refused() {
        let errors = crate::config::load_str(
            "[storage]\nmode = \"memory\"\nredis_url = \"redis://127.0.0.1/\"\n[[backends]]\nid = \"b1\"\naddress = \"127.0.0.1:1\"\n",
        )
        .unwrap_err();
        assert!(
            errors.0.iter().any(|e| e.key == "storage.redis_url"),
            "{errors}"
        );
    }
}
