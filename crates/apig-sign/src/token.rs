//! `APIGT1` tokens: IAM-style bearer tokens (`X-Auth-Token`) that the control plane issues and
//! gateway replicas verify offline, with nothing but the control plane's Ed25519 public keys.
//!
//! Wire format (base64url without padding, RFC 4648 §5):
//!
//! ```text
//! APIGT1.<b64url(claims JSON)>.<b64url(Ed25519 signature)>
//! ```
//!
//! The signature covers the ASCII bytes `APIGT1.<b64url(claims JSON)>`, so the verifier checks
//! exactly the bytes it received (no JSON canonicalisation). The claims are
//! `{"kid","prj","sub","iat","exp","jti"}`: key id, project id, access key, issued-at and
//! expiry (unix seconds) and a token id. The key id is the lowercase hex of the first 8 bytes
//! of SHA-256 of the 32-byte public key, so a verifier holding several keys (a rotation) picks
//! the right one without trying them all.
//!
//! Verification is strict: at most [`MAX_TOKEN_LEN`] bytes, canonical base64url (no padding,
//! no stray bits), claims with exactly the six fields, `verify_strict` (no malleable or
//! small-order signatures, no weak keys), `exp > now`, `exp > iat` and
//! `iat <= now + `[`MAX_TOKEN_CLOCK_SKEW_SECS`].
//! Times are checked only after the signature, so an error other than
//! [`TokenError::Malformed`], [`TokenError::UnknownKey`] or [`TokenError::BadSignature`] is
//! about a token the control plane did issue.
//!
//! Pure like the rest of the crate: no randomness and no clock; callers pass the seed, the
//! token id and `now`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The version token that starts every token.
pub const TOKEN_PREFIX: &str = "APIGT1";
/// Longest accepted token, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;
/// How far in the future `iat` may be (clocks of control plane and replica disagree a little).
pub const MAX_TOKEN_CLOCK_SKEW_SECS: i64 = 300;

/// What a token says, once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// Which signing key issued it (see the module documentation).
    pub key_id: String,
    /// The project the token is valid in.
    pub project_id: String,
    /// The access key (AK) the token was issued to.
    pub access_key: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; the token is refused from this second on.
    pub expires_at: i64,
    /// Random id chosen by the issuer (for logs and revocation lists).
    pub token_id: String,
}

/// Why a token was refused, or a key could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed `APIGT1` token: length, structure, base64url or claims.
    #[error("malformed token")]
    Malformed,
    /// The token names a key id this verifier does not hold.
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("token signature does not match")]
    BadSignature,
    /// `exp` is now or in the past (or not after `iat`).
    #[error("token expired")]
    Expired,
    /// `iat` is more than [`MAX_TOKEN_CLOCK_SKEW_SECS`] in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// A verification key is not 32 bytes, not a valid Ed25519 point, or a weak key.
    #[error("invalid Ed25519 public key")]
    InvalidKey,
}

/// The claims as they are serialised; field names are the wire format.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireClaims {
    kid: String,
    prj: String,
    sub: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Issues tokens with one Ed25519 key (control plane side).
pub struct TokenSigner {
    key: SigningKey,
    key_id: String,
}

/// Verifies tokens against a set of Ed25519 public keys (gateway side).
#[derive(Clone)]
pub struct TokenVerifier {
    /// (key id, key); usually one or two entries, so a linear scan is the fastest lookup.
    keys: Vec<(String, VerifyingKey)>,
}

/// Lowercase hex of the first 8 bytes of SHA-256 of the public key.
pub fn key_id(public_key: &[u8; 32]) -> String {
    let digest = Sha256::digest(public_key);
    hex::encode(digest.get(..8).unwrap_or_default())
}

// === impl TokenSigner ===

impl TokenSigner {
    /// The signer of the RFC 8032 secret key (seed) `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(&key.verifying_key().to_bytes());
        Self { key, key_id }
    }

    /// The 32-byte public key replicas verify with.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The key id written into the tokens' `kid`.
    pub fn key_id(&self) -> String {
        self.key_id.clone()
    }

    /// A token for `access_key` in `project_id`, valid from `issued_at` for `ttl_secs` seconds.
    ///
    /// Inputs are not checked: a token longer than [`MAX_TOKEN_LEN`] (huge ids) or with
    /// `ttl_secs <= 0` is produced but never verifies.
    pub fn issue(
        &self,
        project_id: &str,
        access_key: &str,
        issued_at: i64,
        ttl_secs: i64,
        token_id: &str,
    ) -> String {
        let claims = WireClaims {
            kid: self.key_id.clone(),
            prj: project_id.to_owned(),
            sub: access_key.to_owned(),
            iat: issued_at,
            exp: issued_at.saturating_add(ttl_secs),
            jti: token_id.to_owned(),
        };
        // Serialising strings and integers cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let mut token = String::with_capacity(TOKEN_PREFIX.len() + 2 + json.len() * 4 / 3 + 90);
        token.push_str(TOKEN_PREFIX);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        token
    }
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

// === impl TokenVerifier ===

impl TokenVerifier {
    /// A verifier accepting tokens signed by any of `keys` (32-byte Ed25519 public keys). No
    /// keys is allowed: every token is then [`TokenError::UnknownKey`].
    pub fn new(keys: &[impl AsRef<[u8]>]) -> Result<Self, TokenError> {
        let mut out: Vec<(String, VerifyingKey)> = Vec::with_capacity(keys.len());
        for raw in keys {
            let bytes: &[u8; 32] = raw
                .as_ref()
                .try_into()
                .map_err(|_| TokenError::InvalidKey)?;
            let key = VerifyingKey::from_bytes(bytes).map_err(|_| TokenError::InvalidKey)?;
            if key.is_weak() {
                return Err(TokenError::InvalidKey);
            }
            if !out.iter().any(|(_, k)| *k == key) {
                out.push((key_id(bytes), key));
            }
        }
        Ok(Self { keys: out })
    }

    /// How many distinct keys this verifier accepts.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Verifies `token` at unix time `now` and returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<TokenClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let rest = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|r| r.strip_prefix('.'))
            .ok_or(TokenError::Malformed)?;
        let (claims_b64, signature_b64) = rest.split_once('.').ok_or(TokenError::Malformed)?;
        let signed = token
            .get(..TOKEN_PREFIX.len() + 1 + claims_b64.len())
            .ok_or(TokenError::Malformed)?;

        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| TokenError::Malformed)?
            .try_into()
            .map_err(|_| TokenError::Malformed)?;
        let signature = Signature::from_bytes(&signature);
        let json = URL_SAFE_NO_PAD
            .decode(claims_b64)
            .map_err(|_| TokenError::Malformed)?;
        let claims: WireClaims =
            serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;

        let mut known = false;
        let mut valid = false;
        for (_, key) in self.keys.iter().filter(|(kid, _)| *kid == claims.kid) {
            known = true;
            if key.verify_strict(signed.as_bytes(), &signature).is_ok() {
                valid = true;
                break;
            }
        }
        if !known {
            return Err(TokenError::UnknownKey);
        }
        if !valid {
            return Err(TokenError::BadSignature);
        }
        // A lifetime of zero or less never was valid.
        if claims.exp <= now || claims.exp <= claims.iat {
            return Err(TokenError::Expired);
        }
        if claims.iat > now.saturating_add(MAX_TOKEN_CLOCK_SKEW_SECS) {
            return Err(TokenError::NotYetValid);
        }
        Ok(TokenClaims {
            key_id: claims.kid,
            project_id: claims.prj,
            access_key: claims.sub,
            issued_at: claims.iat,
            expires_at: claims.exp,
            token_id: claims.jti,
        })
    }
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field(
                "key_ids",
                &self.keys.iter().map(|(kid, _)| kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_704_067_200;
    const SEED: [u8; 32] = [7u8; 32];
    const OTHER_SEED: [u8; 32] = [9u8; 32];

    fn signer() -> TokenSigner {
        TokenSigner::from_seed(&SEED)
    }

    fn verifier(signers: &[&TokenSigner]) -> TokenVerifier {
        let keys: Vec<[u8; 32]> = signers.iter().map(|s| s.public_key()).collect();
        TokenVerifier::new(&keys).unwrap()
    }

    fn token() -> String {
        signer().issue("proj-1", "AK1", NOW, 3600, "0123abcd")
    }

    fn parts(token: &str) -> (String, String) {
        let mut it = token.splitn(3, '.');
        let _ = it.next();
        (it.next().unwrap().to_owned(), it.next().unwrap().to_owned())
    }

    /// Signs arbitrary claims JSON with `s`, as a well-behaved issuer of a future version might.
    fn sign_raw(s: &TokenSigner, json: &str) -> String {
        let mut token = format!("{TOKEN_PREFIX}.{}", URL_SAFE_NO_PAD.encode(json));
        let sig = s.key.sign(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        token
    }

    #[test]
    fn rfc8032_seed_gives_the_rfc_public_key() {
        // RFC 8032 §7.1, TEST 1.
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let s = TokenSigner::from_seed(&seed);
        assert_eq!(
            hex::encode(s.public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let digest = Sha256::digest(s.public_key());
        assert_eq!(s.key_id(), hex::encode(&digest[..8]));
        assert_eq!(s.key_id().len(), 16);
    }

    #[test]
    fn round_trip() {
        let s = signer();
        let t = token();
        assert!(t.starts_with("APIGT1."));
        assert_eq!(t.matches('.').count(), 2);
        assert!(!t.contains(['=', '+', '/']));
        let claims = verifier(&[&s]).verify(&t, NOW + 10).unwrap();
        assert_eq!(
            claims,
            TokenClaims {
                key_id: s.key_id(),
                project_id: "proj-1".into(),
                access_key: "AK1".into(),
                issued_at: NOW,
                expires_at: NOW + 3600,
                token_id: "0123abcd".into(),
            }
        );
        // The claims are the documented JSON.
        let (claims_b64, _) = parts(&t);
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims_b64).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kid": s.key_id(), "prj": "proj-1", "sub": "AK1",
                "iat": NOW, "exp": NOW + 3600, "jti": "0123abcd"})
        );
    }

    #[test]
    fn rotation_accepts_every_configured_key() {
        let (a, b) = (signer(), TokenSigner::from_seed(&OTHER_SEED));
        let v = verifier(&[&a, &b]);
        assert_eq!(v.key_count(), 2);
        assert!(v.verify(&a.issue("p", "AK", NOW, 60, "1"), NOW).is_ok());
        assert!(v.verify(&b.issue("p", "AK", NOW, 60, "2"), NOW).is_ok());
        // Duplicates collapse.
        assert_eq!(verifier(&[&a, &a]).key_count(), 1);
    }

    #[test]
    fn tampered_claims_fail() {
        let t = token();
        let (claims_b64, sig_b64) = parts(&t);
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(&claims_b64).unwrap()).unwrap();
        let v = verifier(&[&signer()]);
        for (from, to) in [
            ("proj-1", "proj-2"),
            ("\"AK1\"", "\"AK2\""),
            (&format!("{}", NOW + 3600), &format!("{}", NOW + 999_999)),
        ] {
            let forged = json.replace(from, to);
            assert_ne!(forged, json);
            let forged = format!("APIGT1.{}.{sig_b64}", URL_SAFE_NO_PAD.encode(forged));
            assert_eq!(v.verify(&forged, NOW), Err(TokenError::BadSignature));
        }
    }

    #[test]
    fn tampered_signature_fails() {
        let t = token();
        let (claims_b64, sig_b64) = parts(&t);
        let mut sig = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
        let v = verifier(&[&signer()]);
        for i in [0usize, 31, 32, 63] {
            sig[i] ^= 1;
            let forged = format!("APIGT1.{claims_b64}.{}", URL_SAFE_NO_PAD.encode(&sig));
            let got = v.verify(&forged, NOW);
            assert!(
                matches!(got, Err(TokenError::BadSignature)),
                "byte {i}: {got:?}"
            );
            sig[i] ^= 1;
        }
        // The prefix is signed too.
        let relabelled = format!("APIGT2.{claims_b64}.{}", URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(v.verify(&relabelled, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn wrong_or_unknown_key() {
        let other = TokenSigner::from_seed(&OTHER_SEED);
        let v = verifier(&[&signer()]);
        assert_eq!(
            v.verify(&other.issue("proj-1", "AK1", NOW, 60, "x"), NOW),
            Err(TokenError::UnknownKey)
        );
        // A token claiming our key id but signed by another key.
        let forged = sign_raw(
            &other,
            &format!(
                r#"{{"kid":"{}","prj":"p","sub":"AK","iat":{NOW},"exp":{},"jti":"x"}}"#,
                signer().key_id(),
                NOW + 60
            ),
        );
        assert_eq!(v.verify(&forged, NOW), Err(TokenError::BadSignature));
        let none = TokenVerifier::new(&[] as &[[u8; 32]]).unwrap();
        assert_eq!(none.verify(&token(), NOW), Err(TokenError::UnknownKey));
    }

    #[test]
    fn expiry_and_clock_skew() {
        let v = verifier(&[&signer()]);
        let t = token();
        assert!(v.verify(&t, NOW + 3599).is_ok());
        assert_eq!(v.verify(&t, NOW + 3600), Err(TokenError::Expired));
        assert_eq!(v.verify(&t, i64::MAX), Err(TokenError::Expired));
        // Issued slightly in the future is fine, further is not.
        assert!(v.verify(&t, NOW - MAX_TOKEN_CLOCK_SKEW_SECS).is_ok());
        assert_eq!(
            v.verify(&t, NOW - MAX_TOKEN_CLOCK_SKEW_SECS - 1),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(v.verify(&t, i64::MIN), Err(TokenError::NotYetValid));
        let zero_ttl = signer().issue("p", "AK", NOW, 0, "z");
        assert_eq!(v.verify(&zero_ttl, NOW - 1), Err(TokenError::Expired));
        let negative = signer().issue("p", "AK", NOW, -5, "z");
        assert_eq!(v.verify(&negative, NOW - 100), Err(TokenError::Expired));
    }

    #[test]
    fn strict_structure_and_encoding() {
        let s = signer();
        let v = verifier(&[&s]);
        let t = token();
        let (claims_b64, sig_b64) = parts(&t);
        let mut bad: Vec<String> = vec![
            String::new(),
            "APIGT1".into(),
            "APIGT1.".into(),
            "APIGT1..".into(),
            format!("APIGT1.{claims_b64}"),
            format!("APIGT1.{claims_b64}."),
            format!("apigt1.{claims_b64}.{sig_b64}"),
            format!(" {t}"),
            format!("{t} "),
            format!("{t}."),
            format!("{t}=="),
            format!("APIGT1.{claims_b64}=.{sig_b64}"),
            format!("APIGT1.{claims_b64}.{sig_b64}.x"),
            format!("APIGT1.{claims_b64}.{}", &sig_b64[..sig_b64.len() - 2]),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ];
        // Standard (non-URL) alphabet, where the encodings differ.
        if claims_b64.contains(['-', '_']) {
            let std_claims = base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(URL_SAFE_NO_PAD.decode(&claims_b64).unwrap());
            bad.push(format!("APIGT1.{std_claims}.{sig_b64}"));
        }
        let std_sig = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(URL_SAFE_NO_PAD.decode(&sig_b64).unwrap());
        if std_sig != sig_b64 {
            bad.push(format!("APIGT1.{claims_b64}.{std_sig}"));
        }
        // Non-canonical trailing bits: the last character of a 64-byte signature carries 2
        // unused bits.
        let last = sig_b64.chars().last().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.find(last).unwrap();
        let sibling = alphabet.chars().nth(idx ^ 1).unwrap();
        bad.push(format!(
            "APIGT1.{claims_b64}.{}{sibling}",
            &sig_b64[..sig_b64.len() - 1]
        ));
        for b in &bad {
            assert_eq!(v.verify(b, NOW), Err(TokenError::Malformed), "{b:?}");
        }
    }

    #[test]
    fn claims_must_be_exactly_the_six_fields() {
        let s = signer();
        let v = verifier(&[&s]);
        let kid = s.key_id();
        let exp = NOW + 60;
        let good =
            format!(r#"{{"kid":"{kid}","prj":"p","sub":"AK","iat":{NOW},"exp":{exp},"jti":"j"}}"#);
        assert!(v.verify(&sign_raw(&s, &good), NOW).is_ok());
        for json in [
            format!(r#"{{"kid":"{kid}","prj":"p","sub":"AK","iat":{NOW},"exp":{exp}}}"#),
            format!(
                r#"{{"kid":"{kid}","prj":"p","sub":"AK","iat":{NOW},"exp":{exp},"jti":"j","adm":true}}"#
            ),
            format!(
                r#"{{"kid":"{kid}","prj":"p","prj":"q","sub":"AK","iat":{NOW},"exp":{exp},"jti":"j"}}"#
            ),
            format!(
                r#"{{"kid":"{kid}","prj":"p","sub":"AK","iat":"{NOW}","exp":{exp},"jti":"j"}}"#
            ),
            format!(r#"{{"kid":"{kid}","prj":"p","sub":"AK","iat":{NOW},"exp":1e99,"jti":"j"}}"#),
            "[]".into(),
            "null".into(),
            "not json".into(),
        ] {
            assert_eq!(
                v.verify(&sign_raw(&s, &json), NOW),
                Err(TokenError::Malformed),
                "{json}"
            );
        }
    }

    #[test]
    fn invalid_keys_are_refused() {
        assert_eq!(
            TokenVerifier::new(&[[0u8; 31].as_slice()]).unwrap_err(),
            TokenError::InvalidKey
        );
        assert_eq!(
            TokenVerifier::new(&[[0u8; 33].as_slice()]).unwrap_err(),
            TokenError::InvalidKey
        );
        // The identity point is a weak (small-order) key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            TokenVerifier::new(&[identity]).unwrap_err(),
            TokenError::InvalidKey
        );
        // One bad key spoils the set.
        let good = signer().public_key();
        assert!(TokenVerifier::new(&[good.as_slice(), &[1, 2, 3]]).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let v = verifier(&[&signer()]);
        let t = token();
        let pieces = [
            "", ".", "..", "APIGT1", "APIGT1.", "=", "-", "_", "+", "/", "é", "\0", "e30", "AAAA",
            "%", " ", "{}", &t,
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let s = format!("{a}{b}.{c}");
                    assert!(v.verify(&s, NOW).is_err() || s.contains(&t));
                }
            }
        }
        // Every prefix and every single-byte corruption of a valid token.
        for i in 0..t.len() {
            let _ = v.verify(&t[..i], NOW);
            let mut bytes = t.clone().into_bytes();
            bytes[i] = bytes[i].wrapping_add(1);
            if let Ok(s) = String::from_utf8(bytes) {
                assert!(v.verify(&s, NOW).is_err(), "{s}");
            }
        }
    }

    #[test]
    fn debug_hides_the_private_key() {
        let s = signer();
        let text = format!("{s:?}");
        assert!(text.contains(&s.key_id()));
        assert!(!text.contains(&hex::encode(SEED)));
        assert!(!text.contains("[7, 7"));
    }
}
