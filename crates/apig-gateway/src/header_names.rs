//! Header names the request path reads or writes on every request, as `HeaderName` constants:
//! a `&str` name is parsed and validated again at each lookup (measured: several hundred
//! instructions each, a few percent of a proxied request).

use http::HeaderName;

pub(crate) const X_STAGE: HeaderName = HeaderName::from_static("x-stage");
pub(crate) const X_APIG_MODE: HeaderName = HeaderName::from_static("x-apig-mode");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub(crate) const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
