//! Streaming a fragment body to disk, frame by frame, never holding a whole fragment.

use super::config::BODY_IDLE_TIMEOUT;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::io;
use tokio::fs::File;
use tokio::io::{AsyncWriteExt, BufWriter};

/// Write buffer: large enough that a fragment costs a few disk calls, small enough that
/// hundreds of concurrent uploads stay cheap.
const WRITE_BUFFER: usize = 256 * 1024;

/// How a body ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Every byte arrived.
    Complete,
    /// The client stopped sending (connection lost, reset, or idle too long).
    CutShort,
    /// Writing failed; nothing of this fragment may be counted.
    Failed(io::Error),
}

/// Bytes made durable in the file (well, handed to the OS) and how the body ended.
#[derive(Debug)]
pub(crate) struct Received {
    pub written: u64,
    pub end: End,
}

/// Reads `body`, drops its first `skip` bytes (already received: an overlapping
/// retransmission), and appends the rest to `file` if one is given. Without a file the
/// body is only consumed, which keeps the connection usable after a duplicate.
pub(crate) async fn receive(body: &mut Incoming, skip: u64, file: Option<File>) -> Received {
    let mut skip = skip;
    let mut sink = file.map(|f| BufWriter::with_capacity(WRITE_BUFFER, f));
    let mut written = 0u64;
    let end = loop {
        let frame = match tokio::time::timeout(BODY_IDLE_TIMEOUT, body.frame()).await {
            Err(_) | Ok(Some(Err(_))) => break End::CutShort,
            Ok(None) => break End::Complete,
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers carry no bytes of the file.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let mut chunk: &[u8] = &data;
        if skip > 0 {
            let n = usize::try_from(skip).unwrap_or(usize::MAX).min(chunk.len());
            chunk = &chunk[n..];
            skip -= n as u64;
        }
        let Some(sink) = sink.as_mut() else {
            continue;
        };
        if chunk.is_empty() {
            continue;
        }
        if let Err(e) = sink.write_all(chunk).await {
            break End::Failed(e);
        }
        written += chunk.len() as u64;
    };
    if let (Some(mut sink), false) = (sink, matches!(end, End::Failed(_))) {
        // Only bytes that reached the file count: the flush reports any write error.
        if let Err(e) = sink.flush().await {
            return Received {
                written: 0,
                end: End::Failed(e),
            };
        }
    }
    Received { written, end }
}
