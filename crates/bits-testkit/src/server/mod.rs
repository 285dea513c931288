//! Reference BITS upload server.
