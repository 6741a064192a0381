//! Management resources of the APIG V2 API as serde types, their validation, ids and the APIG
//! error codes the management API answers with.
//!
//! Pure: no I/O. Request bodies deserialize into `*Spec` types whose fields are all optional so
//! that a missing field is reported as an APIG error (not a serde one), then `validate` collects
//! every problem at once and fills defaults.

/// A serde struct whose fields are all optional (absent fields are neither required on input
/// nor written on output): APIG request bodies, whose problems `validate` reports itself.
macro_rules! opt_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq)]
        pub struct $name {
            $($(#[$fm])* #[serde(default, skip_serializing_if = "Option::is_none")] pub $f: Option<$t>,)*
        }
    };
}

pub mod api;
pub mod app;
pub mod authorizer;
pub mod backend_policy;
pub mod certificate;
pub mod channel;
pub mod domain;
pub mod env;
pub mod error;
pub mod function;
pub mod group;
pub mod ids;
pub mod instance;
pub mod orchestration;
pub mod page;
pub mod policy;
pub mod project;
pub mod publish;
pub mod quota;
pub mod sign;
pub mod time;
pub mod validate;
pub mod x509;

pub use error::{ApiError, ErrorCode};
