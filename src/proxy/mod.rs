//! The Pingora glue: one job per phase. Parsing lives in bits-proto, decisions in
//! `routing`, state in `session`; this module only wires them to the request.

mod acks;
mod binding;
mod ctx;
pub mod fast;
mod forwarded;
mod learn;
mod linger;
mod reply;
mod service;
mod upstream_socket;
mod view;

pub use ctx::RequestCtx;
pub use fast::{FastPath, Served};
pub use service::BitsProxy;
pub use view::{AnswerView, RequestView};
