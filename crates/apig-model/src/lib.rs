//! Management resources of the APIG V2 API as serde types, their validation, ids and the APIG
//! error codes the management API answers with.
//!
//! Pure: no I/O. Request bodies deserialize into `*Spec` types whose fields are all optional so
//! that a missing field is reported as an APIG error (not a serde one), then `validate` collects
//! every problem at once and fills defaults.

pub mod api;
pub mod app;
pub mod channel;
pub mod env;
pub mod error;
pub mod group;
pub mod ids;
pub mod instance;
pub mod page;
pub mod policy;
pub mod project;
pub mod publish;
pub mod quota;
pub mod sign;
pub mod time;
pub mod validate;

pub use error::{ApiError, ErrorCode};
