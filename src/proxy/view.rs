//! What the decisions read of a request: its method, version, path, host and
//! headers. Pingora's proxy hands them a `RequestHeader`; the fast path hands them
//! the client's head where it was parsed, without a header map (see
//! `fast::head::Head`). The decisions are the same code for both.

use bits_proto::HeaderSource;
use pingora::http::{RequestHeader, ResponseHeader};

/// A request as the decisions read it.
pub trait RequestView {
    /// Its headers.
    type Headers: HeaderSource + ?Sized;

    /// The method, as sent.
    fn method(&self) -> &str;
    /// HTTP/1.0 or older: no keep-alive by default, and no BITS.
    fn before_http_11(&self) -> bool;
    /// The path and query of the target (origin form), as sent.
    fn path_and_query(&self) -> &str;
    /// The path of the target.
    fn path(&self) -> &str {
        let target = self.path_and_query();
        target.split_once('?').map_or(target, |(path, _)| path)
    }
    /// `Host`, or the authority of a target in absolute form.
    fn host(&self) -> Option<&str>;
    /// The headers.
    fn headers(&self) -> &Self::Headers;
}

impl RequestView for RequestHeader {
    type Headers = http::HeaderMap;

    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn before_http_11(&self) -> bool {
        self.version < http::Version::HTTP_11
    }

    fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map_or("", |p| p.as_str())
    }

    fn path(&self) -> &str {
        self.uri.path()
    }

    fn host(&self) -> Option<&str> {
        self.headers
            .first_str(&http::header::HOST)
            .or_else(|| self.uri.host())
    }

    fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }
}

/// A backend's answer as learning reads and edits it. Pingora's proxy hands it a
/// `ResponseHeader`; the fast path the backend's head where it was parsed, with the
/// edits kept beside it (see `fast::response::RawAnswer`).
pub trait AnswerView {
    /// Its headers, as edited so far.
    type Headers: HeaderSource + ?Sized;

    /// The status, as edited so far.
    fn status(&self) -> u16;
    /// The headers.
    fn headers(&self) -> &Self::Headers;
    /// Sets the status.
    fn set_status(&mut self, status: u16) -> pingora::Result<()>;
    /// Removes every value of a header.
    fn remove_header(&mut self, name: &'static str);
    /// Sets a header to one value.
    fn insert_header(&mut self, name: &'static str, value: &str) -> pingora::Result<()>;
}

impl AnswerView for ResponseHeader {
    type Headers = http::HeaderMap;

    fn status(&self) -> u16 {
        self.status.as_u16()
    }

    fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }

    fn set_status(&mut self, status: u16) -> pingora::Result<()> {
        ResponseHeader::set_status(self, status)
    }

    fn remove_header(&mut self, name: &'static str) {
        ResponseHeader::remove_header(self, name);
    }

    fn insert_header(&mut self, name: &'static str, value: &str) -> pingora::Result<()> {
        ResponseHeader::insert_header(self, name, value)
    }
}
