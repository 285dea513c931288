//! `BITS-Supported-Protocols` and the protocol GUID.

/// "BITS 1.5 Upload Protocol", the only protocol defined.
pub const BITS_1_5_PROTOCOL: &str = "{7df0354d-249b-430f-820d-3d2a9bef4931}";

/// Whether a GUID names BITS 1.5 (compared case-insensitively, braces required).
pub fn is_bits_1_5(guid: &str) -> bool {
    guid.trim_matches([' ', '\t'])
        .eq_ignore_ascii_case(BITS_1_5_PROTOCOL)
}

/// The GUIDs of a `BITS-Supported-Protocols` value, most preferred first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedProtocols<'a>(pub &'a str);

impl<'a> SupportedProtocols<'a> {
    /// Each GUID; separators are spaces, tabs and commas, in any run.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> {
        self.0
            .split([' ', '\t', ','])
            .filter(|part| !part.is_empty())
    }

    /// The protocol the server should pick: the first one it supports (BITS 1.5 only).
    pub fn choose(&self) -> Option<&'static str> {
        self.iter().any(is_bits_1_5).then_some(BITS_1_5_PROTOCOL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_the_guid_case_insensitively() {
        assert!(is_bits_1_5("{7df0354d-249b-430f-820D-3D2A9BEF4931}"));
        assert!(is_bits_1_5("{7DF0354D-249B-430F-820D-3D2A9BEF4931}"));
        assert!(!is_bits_1_5("7df0354d-249b-430f-820d-3d2a9bef4931"));
        assert!(!is_bits_1_5("{00000000-0000-0000-0000-000000000000}"));
    }

    #[test]
    fn splits_on_spaces_and_commas() {
        let list = SupportedProtocols("{a} {b},{c} ,, {d}\t{e}");
        assert_eq!(
            list.iter().collect::<Vec<_>>(),
            ["{a}", "{b}", "{c}", "{d}", "{e}"]
        );
    }

    #[test]
    fn chooses_bits_1_5_wherever_it_is_listed() {
        let list = SupportedProtocols(
            "{11111111-0000-0000-0000-000000000000}, {7DF0354D-249b-430f-820d-3d2a9bef4931}",
        );
        assert_eq!(list.choose(), Some(BITS_1_5_PROTOCOL));
        assert_eq!(SupportedProtocols("{x}").choose(), None);
        assert_eq!(SupportedProtocols("").choose(), None);
    }
}
