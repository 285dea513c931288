//! Mapping a request URL path to a destination below the upload root.
//!
//! This is the server's only defence against writes outside the root, so it is strict
//! and pure: it never touches the file system and refuses anything that is not a plain
//! sequence of ordinary file-name components.

use percent_encoding::percent_decode_str;
use std::path::{Path, PathBuf};

/// Longest accepted component, in bytes (the usual file system limit).
const MAX_COMPONENT_BYTES: usize = 255;

/// Why a URL path cannot be an upload destination. Every case answers 400 + E_INVALIDARG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/` (absolute-form or `*` targets).
    #[error("the URL path must start with '/'")]
    NotAbsolute,
    /// `/` or a path ending in `/`: a directory, not a file (spec §8).
    #[error("the URL names a directory")]
    Directory,
    /// `//` somewhere in the path.
    #[error("the URL path has an empty component")]
    EmptyComponent,
    /// `.` or `..`, literally or percent-encoded.
    #[error("the URL path has a '.' or '..' component")]
    DotComponent,
    /// `%2F`, `\` or `%5C` inside a component: a hidden separator.
    #[error("the URL path has an encoded separator or a backslash")]
    Separator,
    /// NUL or another control character.
    #[error("the URL path has a control character")]
    ControlCharacter,
    /// Not UTF-8 after percent-decoding.
    #[error("the URL path is not UTF-8 after percent-decoding")]
    NotUtf8,
    /// A component longer than file systems allow.
    #[error("a URL path component is longer than 255 bytes")]
    TooLong,
    /// The destination lies in the sessions directory.
    #[error("the URL path names the server's sessions directory")]
    SessionsDir,
}

/// A destination relative to the upload root, made only of ordinary components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath(Vec<String>);

impl RelPath {
    /// Parses a raw (percent-encoded) URL path such as `/upload/report%201.bin`.
    pub fn from_url_path(raw: &str) -> Result<Self, PathError> {
        let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        if rest.is_empty() || rest.ends_with('/') {
            return Err(PathError::Directory);
        }
        rest.split('/')
            .map(decode_component)
            .collect::<Result<Vec<_>, _>>()
            .map(RelPath)
    }

    /// Rebuilds a relative path stored by [`RelPath::as_string`], with the same checks.
    pub fn from_stored(stored: &str) -> Result<Self, PathError> {
        stored
            .split('/')
            .map(|c| check_component(c.to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map(RelPath)
    }

    /// Components joined with `/`, decoded (for metadata and stats).
    pub fn as_string(&self) -> String {
        self.0.join("/")
    }

    /// The destination under `root`; refuses anything inside `sessions_dir`. Both
    /// directories must already be in canonical form, so the prefix test is exact.
    pub fn under(&self, root: &Path, sessions_dir: &Path) -> Result<PathBuf, PathError> {
        let mut path = root.to_path_buf();
        path.extend(&self.0);
        if path.starts_with(sessions_dir) {
            return Err(PathError::SessionsDir);
        }
        Ok(path)
    }
}

fn decode_component(raw: &str) -> Result<String, PathError> {
    if raw.contains('\\') {
        return Err(PathError::Separator);
    }
    let bytes: Vec<u8> = percent_decode_str(raw).collect();
    let text = String::from_utf8(bytes).map_err(|_| PathError::NotUtf8)?;
    check_component(text)
}

fn check_component(text: String) -> Result<String, PathError> {
    if text.is_empty() {
        return Err(PathError::EmptyComponent);
    }
    if text == "." || text == ".." {
        return Err(PathError::DotComponent);
    }
    if text.contains(['/', '\\']) {
        return Err(PathError::Separator);
    }
    if text.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    if text.len() > MAX_COMPONENT_BYTES {
        return Err(PathError::TooLong);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<String, PathError> {
        RelPath::from_url_path(raw).map(|p| p.as_string())
    }

    #[test]
    fn accepts_plain_and_encoded_names() {
        assert_eq!(parse("/a.bin"), Ok("a.bin".into()));
        assert_eq!(
            parse("/up/load/r%20e%C3%A9.bin"),
            Ok("up/load/r eé.bin".into())
        );
        assert_eq!(parse("/.hidden"), Ok(".hidden".into()));
        assert_eq!(parse("/a..b"), Ok("a..b".into()));
    }

    #[test]
    fn refuses_directories_and_empty_components() {
        assert_eq!(parse("/"), Err(PathError::Directory));
        assert_eq!(parse("/dir/"), Err(PathError::Directory));
        assert_eq!(parse("/a//b"), Err(PathError::EmptyComponent));
        assert_eq!(parse("a"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn refuses_dot_components_literal_or_encoded() {
        for raw in ["/../x", "/a/../x", "/./x", "/%2e%2e/x", "/%2E./x", "/a/%2e"] {
            assert_eq!(parse(raw), Err(PathError::DotComponent), "{raw}");
        }
    }

    #[test]
    fn refuses_hidden_separators_and_control_characters() {
        for raw in ["/a%2Fb", "/a%2fb", "/a\\b", "/a%5Cb", "/..%2Fetc"] {
            assert_eq!(parse(raw), Err(PathError::Separator), "{raw}");
        }
        assert_eq!(parse("/a%00b"), Err(PathError::ControlCharacter));
        assert_eq!(parse("/a%0Ab"), Err(PathError::ControlCharacter));
        assert_eq!(parse("/a%FFb"), Err(PathError::NotUtf8));
        assert_eq!(
            parse(&format!("/{}", "x".repeat(256))),
            Err(PathError::TooLong)
        );
    }

    #[test]
    fn refuses_the_sessions_directory() {
        let root = Path::new("/srv/up");
        let sessions = Path::new("/srv/up/.bits-sessions");
        let inside = RelPath::from_url_path("/.bits-sessions/x.part").unwrap();
        assert_eq!(inside.under(root, sessions), Err(PathError::SessionsDir));
        let outside = RelPath::from_url_path("/.bits-sessionsX").unwrap();
        assert_eq!(
            outside.under(root, sessions),
            Ok(PathBuf::from("/srv/up/.bits-sessionsX"))
        );
    }

    #[test]
    fn stored_form_round_trips_and_is_rechecked() {
        let path = RelPath::from_url_path("/a/b%20c").unwrap();
        assert_eq!(RelPath::from_stored(&path.as_string()), Ok(path));
        assert_eq!(RelPath::from_stored("a/../b"), Err(PathError::DotComponent));
    }
}
