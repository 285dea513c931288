//! BITS upload client.
