//! What the fuzz targets share: turning parsed header lines into the `HeaderMap` the
//! proxy sees (Pingora builds the same map from the same parser's output).

use http::{HeaderMap, HeaderName, HeaderValue};

/// The headers `httparse` found, as a map; lines the `http` crate refuses are left out,
/// as Pingora refuses the whole request for them.
pub fn headers_of(parsed: &[httparse::Header<'_>]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for header in parsed {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}
