//! The BITS upload protocol, without I/O.
//!
//! Everything here is pure: parsers, validators and builders that the proxy, the
//! reference server and the client share, so all three read and write the wire the same
//! way. Nothing here depends on a runtime; the only dependency is the `http` crate's
//! header types.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ack;
pub mod classify;
pub mod error_code;
pub mod header_source;
pub mod headers;
pub mod packet;
pub mod protocols;
pub mod range;
pub mod session_id;

pub use ack::{Ack, AckInfo};
pub use classify::{classify, Classified, ClassifyOptions, Packet, Reject, RejectReason};
pub use error_code::{ErrorCode, ErrorContext};
pub use header_source::HeaderSource;
pub use packet::PacketType;
pub use protocols::{is_bits_1_5, SupportedProtocols, BITS_1_5_PROTOCOL};
pub use range::{ContentRange, RangeError};
pub use session_id::{SessionId, SessionIdError};
