//! UTF-8: a validated byte-string type and the incremental validator used across fragments.

use bytes::Bytes;

/// Bytes that are known to be valid UTF-8: the payload of a text message.
///
/// Cheap to clone (it is a [`Bytes`]) and dereferences to `str`.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// An empty string.
    pub const fn new() -> Self {
        Utf8Bytes(Bytes::new())
    }

    /// A string from a static `str`, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // The invariant of the type: the bytes were validated on construction. Fall back to an
        // empty string instead of panicking should it ever not hold.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Converts into the underlying [`Bytes`].
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Wraps bytes already validated by this crate.
    pub(crate) fn from_validated(b: Bytes) -> Self {
        Utf8Bytes(b)
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Self {
        s.0
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = std::str::Utf8Error;
    fn try_from(b: Bytes) -> Result<Self, Self::Error> {
        match simdutf8::basic::from_utf8(&b) {
            Ok(_) => Ok(Utf8Bytes(b)),
            // Re-run the standard validator for a detailed error; rare path.
            Err(_) => std::str::from_utf8(&b).map(|_| Utf8Bytes(b.clone())),
        }
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Whether `b` is entirely valid UTF-8 (SIMD-accelerated).
pub fn is_valid(b: &[u8]) -> bool {
    simdutf8::basic::from_utf8(b).is_ok()
}

/// The outcome of checking a prefix of a message that may still grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partial {
    /// Everything up to the given offset is valid and complete; the rest (at most 3 bytes) is
    /// the start of a character that later bytes may complete.
    ValidUpTo(usize),
    /// The bytes contain a sequence no continuation can make valid (fail fast, 1007).
    Invalid,
}

/// Validates `b`, which may end in the middle of a character.
pub fn validate_partial(b: &[u8]) -> Partial {
    match simdutf8::compat::from_utf8(b) {
        Ok(_) => Partial::ValidUpTo(b.len()),
        Err(e) => match e.error_len() {
            None => Partial::ValidUpTo(e.valid_up_to()),
            Some(_) => Partial::Invalid,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_invalid_sequences_rejected() {
        let bad: &[&[u8]] = &[
            b"\xc0\xaf",         // overlong '/'
            b"\xe0\x80\xaf",     // overlong
            b"\xed\xa0\x80",     // surrogate U+D800
            b"\xf4\x90\x80\x80", // above U+10FFFF
            b"\xff",             // never valid
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        ];
        for b in bad {
            assert!(!is_valid(b), "{b:?}");
            assert_eq!(validate_partial(b), Partial::Invalid, "{b:?}");
        }
    }

    #[test]
    fn f16_truncated_sequences_are_incomplete_not_invalid() {
        assert_eq!(validate_partial(b"ab\xe2\x82"), Partial::ValidUpTo(2));
        assert_eq!(validate_partial(b"\xf0\x9f\x98"), Partial::ValidUpTo(0));
        assert!(!is_valid(b"ab\xe2\x82"));
        assert_eq!(validate_partial("κόσμε".as_bytes()), Partial::ValidUpTo(10));
    }

    #[test]
    fn utf8bytes_roundtrip() {
        let u = Utf8Bytes::try_from(Bytes::from_static("héllo".as_bytes())).unwrap_or_default();
        assert_eq!(u, "héllo");
        assert!(Utf8Bytes::try_from(Bytes::from_static(b"\xff")).is_err());
    }
}
