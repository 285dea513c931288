//! The client edge: what happens to a client connection before and around the HTTP
//! proxy. Connection limits (`max_connections`, `header_timeout`,
//! `max_header_block`, `body_timeout`), the PROXY protocol, and the client's
//! address.

mod accept;
mod before_tls;
pub mod capacity;
pub mod client;
mod gate;
mod proxy_header;
mod stream;
mod transport;

pub use accept::Accepting;
pub use before_tls::{Arrivals, BeforeTls, Noted};
pub use client::{announce, client_addr, stay_on_general_path};
pub use gate::{places, Arrival, Gate, Places};
pub use stream::{EdgeStream, Phase, Waited};
pub use transport::Transport;
