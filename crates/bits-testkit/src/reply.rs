//! The reply the reference server gives to upload-reply jobs, known to both ends so the
//! client can check what it downloaded.
//!
//! The reply is the upload's SHA-256 in `sha256sum` format, `"<hex>  <path>\n"`, with
//! the path relative to the upload root: small, derived from every byte of the upload,
//! and readable by `sha256sum -c` from the root.

use sha2::{Digest, Sha256};

/// Replies are served below this path, at `<prefix><session uuid without braces>`.
pub const REPLY_PATH_PREFIX: &str = "/_bits/replies/";

/// The reply for an upload whose SHA-256 is `sha256`, stored at `path`.
pub fn reply_body(sha256: &[u8], path: &str) -> String {
    format!("{}  {path}\n", hex::encode(sha256))
}

/// Whether `reply` is the reference server's reply to an upload of `data`.
pub fn is_reply_to(reply: &[u8], data: &[u8]) -> bool {
    is_reply_for_digest(reply, &Sha256::digest(data))
}

/// Whether `reply` is the reference server's reply to an upload hashing to `sha256`.
pub fn is_reply_for_digest(reply: &[u8], sha256: &[u8]) -> bool {
    let expected = hex::encode(sha256);
    reply.len() > expected.len() + 2
        && reply[..expected.len()] == *expected.as_bytes()
        && &reply[expected.len()..expected.len() + 2] == b"  "
        && reply.ends_with(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_names_the_digest_of_its_upload() {
        let digest = Sha256::digest(b"hello");
        let reply = reply_body(&digest, "up/h.txt");
        assert!(reply.starts_with(
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824  up/h.txt"
        ));
        assert!(is_reply_to(reply.as_bytes(), b"hello"));
        assert!(!is_reply_to(reply.as_bytes(), b"hellO"));
        assert!(!is_reply_to(b"", b"hello"));
    }
}
