//! Where [`crate::classify`] and the proxy's decisions read headers from: an
//! `http::HeaderMap`, or a head parsed in place, whose headers are never copied into
//! a map (a proxy's fast path parses each head once and reads it where it lies).

use http::{HeaderMap, HeaderName};

/// Read access to a request's or an answer's headers, in the order they came.
pub trait HeaderSource {
    /// The values of header `name`, in order.
    fn values<'s>(&'s self, name: &HeaderName) -> impl Iterator<Item = &'s [u8]>;

    /// Every header as (name, value), in order; the name as sent, or lower case.
    fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])>;

    /// The first value of header `name`.
    fn first<'s>(&'s self, name: &HeaderName) -> Option<&'s [u8]> {
        self.values(name).next()
    }

    /// The first value of header `name`, when it is visible ASCII (tabs and spaces
    /// included), as `http::HeaderValue::to_str` reads it.
    fn first_str<'s>(&'s self, name: &HeaderName) -> Option<&'s str> {
        self.first(name).and_then(visible_ascii)
    }

    /// Whether header `name` is present.
    fn has(&self, name: &HeaderName) -> bool {
        self.values(name).next().is_some()
    }
}

/// A header value as text when it is visible ASCII (tabs and spaces included), as
/// `http::HeaderValue::to_str` reads it.
pub fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

impl HeaderSource for HeaderMap {
    fn values<'s>(&'s self, name: &HeaderName) -> impl Iterator<Item = &'s [u8]> {
        self.get_all(name).iter().map(|v| v.as_bytes())
    }

    fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
    }
}
