//! Request bodies: empty, a slice of an in-memory buffer, or a byte range of a file
//! streamed in chunks (a fragment is never read whole into memory).

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Largest chunk read from a file per body frame.
const FILE_CHUNK: usize = 64 * 1024;

/// The body of one BITS packet.
pub(crate) enum PacketBody {
    /// No body (every packet but Fragment).
    Empty,
    /// An in-memory slice, sent as one frame.
    Bytes(Option<Bytes>),
    /// `remaining` bytes of an open file, read from its current position.
    File {
        file: tokio::fs::File,
        remaining: u64,
        buf: BytesMut,
    },
}

impl PacketBody {
    /// A file body; `file` must already be positioned at the fragment's first byte.
    pub fn file(file: tokio::fs::File, len: u64) -> Self {
        PacketBody::File {
            file,
            remaining: len,
            buf: BytesMut::new(),
        }
    }
}

impl Body for PacketBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            PacketBody::Empty => Poll::Ready(None),
            PacketBody::Bytes(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            PacketBody::File {
                file,
                remaining,
                buf,
            } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = (*remaining).min(FILE_CHUNK as u64) as usize;
                // Zero-filled rather than uninitialised: the memset is cheap next to the
                // read, and it keeps this module free of unsafe code.
                buf.clear();
                buf.resize(want, 0);
                let mut read_buf = ReadBuf::new(&mut buf[..]);
                ready!(Pin::new(file).poll_read(cx, &mut read_buf))?;
                let n = read_buf.filled().len();
                if n == 0 {
                    // The file shrank after the upload started.
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the source file is shorter than when the upload started",
                    ))));
                }
                buf.truncate(n);
                *remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(buf.split().freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            PacketBody::Empty => true,
            PacketBody::Bytes(data) => data.is_none(),
            PacketBody::File { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            PacketBody::Empty => SizeHint::with_exact(0),
            PacketBody::Bytes(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            PacketBody::File { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}
