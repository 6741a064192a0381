//! Hashes, HMAC, string to sign.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::ALGORITHM;

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `SDK-HMAC-SHA256\n<X-Sdk-Date>\n<hex sha256(canonical request)>`.
pub fn string_to_sign(sdk_date: &str, canonical_request: &str) -> String {
    string_to_sign_from_hash(sdk_date, &sha256_hex(canonical_request.as_bytes()))
}

pub(crate) fn string_to_sign_from_hash(sdk_date: &str, canonical_hash: &str) -> String {
    format!("{ALGORITHM}\n{sdk_date}\n{canonical_hash}")
}

/// Lowercase hex HMAC-SHA256 of `string_to_sign` keyed with the secret's bytes.
pub fn signature(secret: &[u8], string_to_sign: &str) -> String {
    // HMAC takes keys of any length, so `None` cannot happen; an empty string would never
    // verify anyway.
    hmac_sha256(secret, string_to_sign.as_bytes())
        .map(hex::encode)
        .unwrap_or_default()
}

/// `None` only if the HMAC implementation refused the key, which RFC 2104 HMAC never does.
pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> Option<[u8; 32]> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(msg);
    Some(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vector() {
        let sts = string_to_sign_from_hash(
            "20240101T000000Z",
            "045df9aa16d47ae882e3a6e859f61f0a41bbd021967a8790f28b0aadf9137b8e",
        );
        assert_eq!(
            signature(b"SK456", &sts),
            "2cdaa154ff349e3e1a592900e739155712dec2a246496e002136d28720e48616"
        );
        assert_eq!(sha256_hex(b""), crate::EMPTY_SHA256);
    }

    #[test]
    fn long_keys_are_fine() {
        assert_eq!(signature(&[7u8; 200], "x").len(), 64);
        assert_eq!(signature(b"", "x").len(), 64);
    }
}
