//! Content normalisation and the content hash used for exact de-duplication.
//!
//! Two memories are "the same" when their redacted text is equal after Unicode compatibility
//! normalisation (NFKC), case folding and whitespace collapsing: "I like  TEA" and "i like tea"
//! are one memory. Punctuation is kept: "Call me." and "Call me?" differ in meaning.

use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

/// The canonical form that is hashed: NFKC, lower case, NFKC again, whitespace collapsed.
///
/// The second NFKC is needed because lower-casing can leave marks out of canonical order
/// ("İ" lowers to "i" + U+0307, which must then sort after a below-mark such as U+033A), and
/// two canonically equal texts must hash the same. Found by the `content` fuzz target.
pub fn normalise(text: &str) -> String {
    let folded: String = text.nfkc().collect::<String>().to_lowercase().nfkc().collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// SHA-256 (lowercase hex) of the normalised text.
pub fn content_hash(text: &str) -> String {
    sha256_hex(normalise(text).as_bytes())
}

/// SHA-256 of raw bytes, lowercase hex. Also the embedding cache key and the token hash.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_folds_case_width_and_spaces() {
        assert_eq!(normalise("  I like\tTEA\n\n now "), "i like tea now");
        // Full-width letters and the ligature fold under NFKC.
        assert_eq!(normalise("ＡＢＣ ﬁle"), "abc file");
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        // The fuzz finding: a dotted capital I followed by a combining mark below.
        let text = "\u{130}\u{33a} X";
        assert_eq!(normalise(&normalise(text)), normalise(text));
        assert_eq!(normalise(text), "i\u{33a}\u{307} x");
        assert_eq!(content_hash(text), content_hash("i\u{33a}\u{307} x"));
    }

    #[test]
    fn equal_after_normalisation_means_equal_hash() {
        assert_eq!(
            content_hash("User prefers  dark mode"),
            content_hash("user prefers dark mode")
        );
        assert_ne!(content_hash("Call me."), content_hash("Call me?"));
    }

    #[test]
    fn hash_is_sha256_hex() {
        // sha256("abc") from FIPS 180-2.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(content_hash("ABC"), sha256_hex(b"abc"));
        assert_eq!(content_hash("x").len(), 64);
    }
}
