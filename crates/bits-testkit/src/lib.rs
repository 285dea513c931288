//! Reference BITS upload server, upload client and load generator.
//!
//! These speak the protocol from both ends so that the proxy can be tested against real
//! peers. They depend on `bits-proto` only, never on the proxy.

pub mod client;
pub mod load;
pub mod ntlm;
pub mod reply;
pub mod server;
pub mod tls;
