//! Projects (tenants). A project stands for an APIG account: its id is what `DOMAIN_ID` access
//! control policies list, its name what `DOMAIN` policies list.

use serde::{Deserialize, Serialize};

use crate::ApiError;

/// Longest account name (APIG: 1–64 characters).
pub const MAX_NAME_CHARS: usize = 64;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    /// The account name. Stores written before names existed have none: [`Project::name`]
    /// answers the default then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub create_time: String,
}

impl Project {
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| default_name(&self.id))
    }
}

/// The name of a project created without one: `project-` and the first 8 characters of its
/// id (never all digits, so always a valid account name).
pub fn default_name(id: &str) -> String {
    format!("project-{}", id.chars().take(8).collect::<String>())
}

/// An account name as APIG's `DOMAIN` access control entries accept them: 1–64 printable
/// ASCII characters, no comma (the list separator), no spaces, not all digits (that would read
/// as an id).
pub fn validate_name(field: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b',')
        && !name.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "1 to {MAX_NAME_CHARS} printable ASCII characters without commas or spaces, not all digits"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["acme", "a", "team-1_prod.x", &"n".repeat(64), "0x12"] {
            assert!(validate_name("name", ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "12345", "a,b", "a b", "é", &"n".repeat(65), "tab\t"] {
            assert!(validate_name("name", bad).is_err(), "{bad:?}");
        }
        assert_eq!(default_name("0123456789abcdef"), "project-01234567");
        assert!(validate_name("name", &default_name("00000000000")).is_ok());
    }
}
