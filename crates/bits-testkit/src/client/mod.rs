//! BITS upload client: uploads one file the way the Windows BITS client does.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bits_testkit::client::UploadError> {
//! use bits_testkit::client::{upload, NoObserver, UploadOptions, UploadSource};
//! let report = upload(
//!     "http://127.0.0.1:8080/uploads/report.bin",
//!     UploadSource::File("report.bin".into()),
//!     &UploadOptions::default(),
//!     &NoObserver,
//! )
//! .await?;
//! println!("{} bytes in {} requests", report.bytes, report.requests);
//! # Ok(()) }
//! ```
//!
//! The packet sequence is Ping (optional), Create-Session, Fragment × N, Close-Session
//! (spec §4). The rules for every answer (resume, shrink, restart, retry, Host-Id and
//! its fallback) are in `docs/client.md`. [`raw`] sends single hand-made requests, for
//! tests that need malformed packets.

mod auth;
mod body;
mod error;
mod exchange;
mod fragments;
mod hostid;
mod options;
mod ping;
pub mod raw;
mod reply;
mod report;
mod request;
mod session;
mod source;
mod target;
mod transport;
mod verdict;

pub use error::UploadError;
pub use options::{
    parse_resolve, UploadOptions, UploadSource, DEFAULT_CONNECT_TIMEOUT, DEFAULT_FRAGMENT_SIZE,
    DEFAULT_MAX_RESTARTS, DEFAULT_MAX_RETRIES, DEFAULT_MAX_RETRY_DELAY, DEFAULT_MIN_FRAGMENT_SIZE,
    DEFAULT_REPLY_CHUNK_SIZE, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_DELAY,
};
pub use ping::{PingResponse, Pinger};
pub use report::{Event, NoObserver, Observer, UploadReport};

/// Uploads `source` to `url` (an `http://` or `https://` URL naming the remote file) and returns a
/// summary once the server acknowledged Close-Session, or Cancel-Session when
/// `options.cancel_after` asked for it.
pub async fn upload(
    url: &str,
    source: UploadSource,
    options: &UploadOptions,
    observer: &dyn Observer,
) -> Result<UploadReport, UploadError> {
    let origin = target::Target::parse(url).map_err(|reason| UploadError::InvalidUrl {
        url: url.to_owned(),
        reason,
    })?;
    let source = source::Source::open(source).await?;
    session::Uploader::new(url, origin, source, options, observer)?
        .run()
        .await
}
