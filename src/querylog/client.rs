//! How the query log shows the client that asked: its address, a keyed hash of it (the same
//! address gives the same hash under one key, and the address cannot be read back without
//! the key), or nothing.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What the log says of the client.
pub enum ClientShown {
    Address,
    Hash(HashKey),
    Hidden,
}

/// The key of the client hash: HMAC-SHA256 of the address's bytes, cut to 64 bits, in hex.
#[derive(Clone)]
pub struct HashKey {
    mac: Hmac<Sha256>,
    from_file: bool,
}

impl HashKey {
    /// A key from a secret file.
    pub fn new(key: &[u8]) -> HashKey {
        HashKey {
            mac: Hmac::new_from_slice(key).expect("HMAC takes keys of any length"),
            from_file: true,
        }
    }

    /// A key of this process alone: its hashes do not link across restarts.
    pub fn random() -> HashKey {
        let key: [u8; 32] = rand::random();
        HashKey {
            from_file: false,
            ..HashKey::new(&key)
        }
    }

    /// Whether the key came from a file, and so lasts across restarts.
    pub fn is_lasting(&self) -> bool {
        self.from_file
    }

    /// The client's hash: 16 hex digits.
    pub fn hash(&self, client: IpAddr) -> String {
        let mut mac = self.mac.clone();
        match client {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        let digest = mac.finalize().into_bytes();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_one_hash_per_address() {
        let key = HashKey::new(b"0123456789abcdef");
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(key.hash(a), key.hash(a));
        assert_eq!(key.hash(a).len(), 16);
        assert!(key.hash(a).chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(key.hash(a), key.hash(b));
        assert_ne!(
            key.hash(a),
            HashKey::new(b"another key, another hash").hash(a)
        );
        assert_ne!(key.hash(a), HashKey::random().hash(a));
        // `printf '\xc0\x00\x02\x01' | openssl dgst -sha256 -hmac 0123456789abcdef`, cut
        assert_eq!(key.hash(a), "0400ee4de38e1234");
    }
}
