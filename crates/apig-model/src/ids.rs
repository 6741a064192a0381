//! Resource ids: 32 lowercase hex characters, as APIG's.

use uuid::Uuid;

/// A fresh random id (122 random bits).
pub fn new_id() -> String {
    Uuid::new_v4().simple().to_string()
}

/// Whether `s` looks like one of our ids. Used to reject hostile path segments early.
pub fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The id of the built-in RELEASE environment.
pub const RELEASE_ENV_ID: &str = "DEFAULT_ENVIRONMENT_RELEASE_ID";
pub const RELEASE_ENV_NAME: &str = "RELEASE";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(id, new_id());
        assert!(is_id(&id));
        assert!(is_id(RELEASE_ENV_ID));
        assert!(!is_id("../x"));
        assert!(!is_id(""));
    }
}
