//! A name as the decision sees it: lowercase wire-format labels, walked by suffix without allocating.
//!
//! Matching works on labels, never on dotted text, so a label that itself contains a `.` byte
//! cannot pose as two labels and slip under somebody else's domain.

use std::fmt;
use std::sync::OnceLock;

/// The longest name the wire format allows, in bytes (RFC 1035 §3.1).
pub const MAX_WIRE_LEN: usize = 255;
/// At most this many labels fit in [`MAX_WIRE_LEN`] bytes.
pub const MAX_LABELS: usize = 127;

/// A lowercase domain name in wire form (length-prefixed labels, ending with the root's zero),
/// held on the stack, with the offset of each label so that every suffix is a tail slice.
#[derive(Clone)]
pub struct QName {
    wire: [u8; MAX_WIRE_LEN],
    len: u8,
    labels: u8,
    starts: [u8; MAX_LABELS],
}

/// Why bytes are not a usable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QNameError {
    #[error("name is longer than 255 bytes")]
    TooLong,
    #[error("label is longer than 63 bytes")]
    LabelTooLong,
    #[error("name runs past the end of the message")]
    Truncated,
    #[error("compression pointer where none is allowed")]
    Compressed,
    #[error("empty label")]
    EmptyLabel,
}

impl QName {
    /// The root name `.`.
    pub fn root() -> Self {
        QName {
            wire: [0; MAX_WIRE_LEN],
            len: 1,
            labels: 0,
            starts: [0; MAX_LABELS],
        }
    }

    /// Reads an uncompressed name at the start of `bytes`, lowercasing ASCII letters.
    /// Returns the name and how many bytes it took.
    pub fn from_wire(bytes: &[u8]) -> Result<(Self, usize), QNameError> {
        let mut name = QName::root();
        let mut pos = 0;
        loop {
            let len = *bytes.get(pos).ok_or(QNameError::Truncated)? as usize;
            if len == 0 {
                return Ok((name, pos + 1));
            }
            if len & 0xC0 != 0 {
                return Err(QNameError::Compressed);
            }
            let label = bytes
                .get(pos + 1..pos + 1 + len)
                .ok_or(QNameError::Truncated)?;
            name.push_label(label)?;
            pos += 1 + len;
        }
    }

    /// Builds a name from dotted text that is already normalised (lowercase A-labels).
    pub fn from_dotted(text: &str) -> Result<Self, QNameError> {
        let mut name = QName::root();
        let text = text.strip_suffix('.').unwrap_or(text);
        if text.is_empty() {
            return Ok(name);
        }
        for label in text.split('.') {
            if label.is_empty() {
                return Err(QNameError::EmptyLabel);
            }
            name.push_label(label.as_bytes())?;
        }
        Ok(name)
    }

    /// Appends one label (lowercased) before the root.
    pub fn push_label(&mut self, label: &[u8]) -> Result<(), QNameError> {
        if label.is_empty() {
            return Err(QNameError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(QNameError::LabelTooLong);
        }
        let at = self.len as usize - 1;
        let end = at + 1 + label.len();
        if end + 1 > MAX_WIRE_LEN || self.labels as usize >= MAX_LABELS {
            return Err(QNameError::TooLong);
        }
        self.wire[at] = label.len() as u8;
        for (dst, src) in self.wire[at + 1..end].iter_mut().zip(label) {
            *dst = src.to_ascii_lowercase();
        }
        self.wire[end] = 0;
        self.starts[self.labels as usize] = at as u8;
        self.labels += 1;
        self.len = (end + 1) as u8;
        Ok(())
    }

    /// The whole name in wire form, root included.
    pub fn wire(&self) -> &[u8] {
        &self.wire[..self.len as usize]
    }

    pub fn label_count(&self) -> usize {
        self.labels as usize
    }

    /// The name without its first `skip` labels, in wire form: `suffix(0)` is the whole name,
    /// `suffix(label_count())` is the root.
    pub fn suffix(&self, skip: usize) -> &[u8] {
        match self.starts.get(skip) {
            Some(&start) if skip < self.labels as usize => {
                &self.wire[start as usize..self.len as usize]
            }
            _ => &self.wire[self.len as usize - 1..self.len as usize],
        }
    }

    /// The last label (the TLD) in wire form, or the root for the root name.
    pub fn tld(&self) -> &[u8] {
        self.suffix(self.label_count().saturating_sub(1))
    }

    /// The keyed hash of every suffix, longest first: `out[i]` hashes `suffix(i)`.
    /// Computed in one right-to-left pass, so each label is hashed once.
    /// `out` must hold at least `label_count()` entries.
    pub fn suffix_hashes(&self, out: &mut [u64]) -> usize {
        let n = self.labels as usize;
        let mut h = hash_seed();
        for i in (0..n).rev() {
            let start = self.starts[i] as usize;
            let len = self.wire[start] as usize;
            h = hash_label(h, &self.wire[start + 1..start + 1 + len]);
            out[i] = finish(h);
        }
        n
    }

    /// Dotted text without the trailing dot (`.` for the root), for logs and explanations.
    pub fn to_dotted(&self) -> String {
        wire_to_dotted(self.wire())
    }
}

impl fmt::Display for QName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_dotted())
    }
}

impl fmt::Debug for QName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QName({self})")
    }
}

/// Dotted text of an uncompressed wire name; bytes that are not printable are escaped as `\DDD`.
pub fn wire_to_dotted(wire: &[u8]) -> String {
    let mut text = String::with_capacity(wire.len());
    push_dotted(wire, &mut text);
    text
}

/// [`wire_to_dotted`] appended to `text`, for callers that fill one buffer again and again.
pub fn push_dotted(wire: &[u8], text: &mut String) {
    let start = text.len();
    let mut pos = 0;
    while let Some(&len) = wire.get(pos) {
        if len == 0 {
            break;
        }
        if text.len() > start {
            text.push('.');
        }
        let label = wire.get(pos + 1..pos + 1 + len as usize).unwrap_or(&[]);
        for &b in label {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*' {
                text.push(b as char);
            } else {
                use std::fmt::Write;
                let _ = write!(text, "\\{b:03}");
            }
        }
        pos += 1 + len as usize;
    }
    if text.len() == start {
        text.push('.');
    }
}

/// The keyed hash of a dotted, normalised name: equal to `suffix_hashes(..)[0]` of the same name.
pub fn hash_dotted(text: &str) -> u64 {
    let mut h = hash_seed();
    let text = text.strip_suffix('.').unwrap_or(text);
    let mut out = 0;
    if text.is_empty() {
        return finish(h);
    }
    for label in text.rsplit('.') {
        h = hash_label(h, label.as_bytes());
        out = finish(h);
    }
    out
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// The per-process key. Names are hashed with a secret seed so that nobody can craft a name
/// whose hash lands on a listed domain's slot without first learning the seed.
fn hash_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| rand::random::<u64>() | 1)
}

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    let x = (h ^ v).wrapping_mul(K);
    x ^ (x >> 29)
}

#[inline]
fn hash_label(mut h: u64, label: &[u8]) -> u64 {
    h = mix(h, 0x100 | label.len() as u64);
    let mut chunks = label.chunks_exact(8);
    for c in &mut chunks {
        h = mix(
            h,
            u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        );
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(b));
    }
    h
}

/// murmur3's finaliser: spreads every input bit over the whole word.
#[inline]
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip_lowercases() {
        let (name, used) = QName::from_wire(b"\x03WwW\x07Example\x03COM\x00rest").unwrap();
        assert_eq!(used, 17);
        assert_eq!(name.to_dotted(), "www.example.com");
        assert_eq!(name.label_count(), 3);
        assert_eq!(name.suffix(1), b"\x07example\x03com\x00");
        assert_eq!(name.suffix(3), b"\x00");
        assert_eq!(name.tld(), b"\x03com\x00");
    }

    #[test]
    fn suffix_hashes_match_dotted_hashes() {
        let name = QName::from_dotted("a.b.example.com").unwrap();
        let mut hashes = [0u64; MAX_LABELS];
        let n = name.suffix_hashes(&mut hashes);
        assert_eq!(n, 4);
        assert_eq!(hashes[0], hash_dotted("a.b.example.com"));
        assert_eq!(hashes[2], hash_dotted("example.com"));
        assert_eq!(hashes[3], hash_dotted("com"));
        assert_ne!(hashes[1], hashes[2]);
    }

    #[test]
    fn a_dot_inside_a_label_is_not_a_label_boundary() {
        let mut name = QName::root();
        name.push_label(b"evil.example").unwrap();
        name.push_label(b"com").unwrap();
        let mut hashes = [0u64; MAX_LABELS];
        name.suffix_hashes(&mut hashes);
        assert_ne!(hashes[0], hash_dotted("evil.example.com"));
        assert_eq!(name.to_dotted(), "evil\\046example.com");
    }

    #[test]
    fn rejects_bad_wire_names() {
        assert_eq!(
            QName::from_wire(b"\x03ww").unwrap_err(),
            QNameError::Truncated
        );
        assert_eq!(
            QName::from_wire(b"\xc0\x0c").unwrap_err(),
            QNameError::Compressed
        );
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert_eq!(QName::from_wire(&long).unwrap_err(), QNameError::TooLong);
    }

    #[test]
    fn root_is_dot() {
        let (name, used) = QName::from_wire(b"\x00").unwrap();
        assert_eq!(used, 1);
        assert_eq!(name.to_dotted(), ".");
        assert_eq!(hash_dotted("."), hash_dotted(""));
    }
}
