//! The client edge: what happens to a client connection before and around the HTTP
//! proxy. Connection limits (`max_connections`, `header_timeout`,
//! `max_header_block`, `body_timeout`), the PROXY protocol, and the client's
//! address.

mod accept;
pub mod capacity;
pub mod client;
mod gate;
mod proxy_header;
mod stream;
mod tls;
mod transport;

pub use accept::Accepting;
pub use client::{announce, client_addr, cut_short, stay_on_general_path};
pub use gate::{places, Arrival, Gate, Places};
pub use stream::{EdgeStream, Phase, Waited};
pub use tls::acceptor as tls_acceptor;
pub use transport::Transport;
