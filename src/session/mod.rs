//! Session pinning: compact keys and the table.

pub mod clients;
pub mod key;
pub mod replies;
pub mod retired;
pub mod shared_store;
pub mod store;
pub mod table;
pub mod urls;

pub use key::SessionKey;
pub use replies::{ReplyRoute, ReplyRoutes};
pub use table::{Pin, PinError, SessionTable, UnixSecs};
pub use urls::{SessionUrl, UrlId, UrlRegistry};

/// The wall clock as [`UnixSecs`]; the one place that reads it.
pub fn unix_now() -> UnixSecs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}
