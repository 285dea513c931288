//! Where a parsed part of a head lies in the bytes it was parsed from: the fast path
//! keeps these instead of copies of names and values.

/// A part of a head's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Where `part`, a slice of `bytes` (as `httparse` hands them back), lies in them.
    pub fn of(bytes: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - bytes.as_ptr() as usize;
        debug_assert!(start + part.len() <= bytes.len());
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    /// The part, in `bytes`.
    pub fn in_bytes(self, bytes: &[u8]) -> &[u8] {
        &bytes[self.start as usize..self.end as usize]
    }
}

/// Each header of a parsed head as the spans of its name and value.
pub fn header_spans(bytes: &[u8], headers: &[httparse::Header<'_>]) -> Vec<[Span; 2]> {
    headers
        .iter()
        .map(|h| [Span::of(bytes, h.name.as_bytes()), Span::of(bytes, h.value)])
        .collect()
}

/// The values of header `name` among `headers`, spans into `bytes`.
pub fn values<'a, 'n>(
    bytes: &'a [u8],
    headers: &'a [[Span; 2]],
    name: &'n [u8],
) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
    headers
        .iter()
        .filter(move |[n, _]| n.in_bytes(bytes).eq_ignore_ascii_case(name))
        .map(move |[_, v]| v.in_bytes(bytes))
}
