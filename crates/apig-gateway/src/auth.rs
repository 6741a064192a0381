//! Who is calling, and may they call this API: the pipeline's authentication (APP, IAM) and
//! authorization (authorized apps, app ACLs) steps.
//!
//! [`Credentials`] is built once per snapshot (in `runtime`): apps indexed by app key, by AppCode
//! and by id, each app's parsed IP ACL, the project's IAM AK/SK pairs by access key, and a token
//! verifier over the control plane's Ed25519 keys. Requests only read it: hash-map lookups, no
//! locks, nothing at all for `NONE` APIs.
//!
//! APP (`Auth::App`), in order:
//! 1. `Authorization: SDK-HMAC-SHA256 ...` → [`apig_sign::verify`] against the app keys, over
//!    the raw request target (path and query exactly as received, not the canonical path: the
//!    SDKs sign what they send, and the canonical path has already refused the encodings the
//!    signer would read differently, `%2F` among them), the headers (`:authority` as `host` on
//!    HTTP/2), the body and the arrival time. The body is buffered for this (up to
//!    `Limits::max_signed_body_bytes`, APIG's 12 MB) unless `x-sdk-content-sha256:
//!    UNSIGNED-PAYLOAD` is signed, in which case it streams.
//! 2. Else `X-Apig-AppCode`, only where the API enables it (`app_code_auth_type = HEADER`) and
//!    the request came over TLS (as APIG: an AppCode is a bearer secret; see
//!    `Limits::allow_app_code_over_http`): looked up by value, then compared in constant time.
//!    Over plain HTTP it is refused with 401 `APIG.0303` whether or not it is valid.
//! 3. Else 401 `APIG.0303` "Authorization header is missing".
//!
//! Then authorization: the app must be authorized for the API in this environment (403
//! `APIG.0304`), and its IP ACL, if any, must allow the client IP (403 `APIG.0405`; the TCP peer,
//! or what a trusted proxy reports: `client_ip`).
//!
//! IAM (`Auth::Iam`): `X-Auth-Token` (an `APIGT1` token from the control plane: signature,
//! expiry, this snapshot's project, and an access key that still exists), else an
//! `SDK-HMAC-SHA256` signature by one of the project's AK/SK pairs; failures are 401
//! `APIG.0301`.
//!
//! An unknown app key or AK takes exactly the path of a wrong signature (same HMAC work, same
//! error, same message). Credentials the gateway consumed never reach the backend (`mapping`
//! strips them).

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use apig_policy::IpAcl;
use apig_proto::Snapshot;
use apig_sign::{
    format_sdk_date, Authorization, RequestView, SignError, TokenError, TokenVerifier, ALGORITHM,
    HEADER_CONTENT_SHA256, UNSIGNED_PAYLOAD,
};
use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::request::Parts;
use http::HeaderMap;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use subtle::ConstantTimeEq;

use crate::respond::GatewayErrorKind;

/// How a request reached the gateway, for the credentials that may only travel encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Over TLS (to this gateway, or to a trusted proxy in front that says so), or clear text
    /// the operator chose to treat as safe (`Limits::allow_app_code_over_http`).
    Secure,
    Clear,
}

/// The AppCode header (`X-Apig-AppCode`).
pub(crate) const X_APIG_APPCODE: &str = "x-apig-appcode";
/// The IAM token header (`X-Auth-Token`).
pub(crate) const X_AUTH_TOKEN: &str = "x-auth-token";

/// Who the caller proved to be. Carried in the request context for later steps (throttling per
/// app, system parameters, access logs).
#[derive(Debug, Clone, Default)]
pub(crate) enum Caller {
    /// `NONE` API: nobody was asked.
    #[default]
    Anonymous,
    App {
        id: Arc<str>,
        name: Arc<str>,
        method: AppMethod,
    },
    Iam {
        access_key: Arc<str>,
        method: IamMethod,
    },
}

/// How an app authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppMethod {
    Signature,
    AppCode,
}

/// How an IAM caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IamMethod {
    Signature,
    Token,
}

/// The credentials of one snapshot, indexed for the request path.
pub(crate) struct Credentials {
    /// The instance's project: every app and IAM credential of a snapshot belongs to it, so it
    /// is every authenticated caller's project (the throttle "user" key, the DOMAIN_ID ACL).
    project_id: Arc<str>,
    /// Its account name (the DOMAIN ACL).
    project_name: Arc<str>,
    apps: Vec<AppEntry>,
    by_key: HashMap<String, usize>,
    by_code: HashMap<Box<[u8]>, usize>,
    by_id: HashMap<String, usize>,
    iam: HashMap<String, IamEntry>,
    tokens: TokenVerifier,
}

struct AppEntry {
    id: Arc<str>,
    name: Arc<str>,
    secret: Box<[u8]>,
    acl: Option<IpAcl>,
}

struct IamEntry {
    access_key: Arc<str>,
    secret: Box<[u8]>,
}

/// What one API asks of its callers, pre-computed from the snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiAuth {
    /// `app_code_auth_type = HEADER`: `X-Apig-AppCode` is accepted.
    pub app_code: bool,
    /// Indexes (into the snapshot's apps) of the apps authorized for the API; sorted.
    pub authorized_apps: Vec<usize>,
}

/// The client's body after authentication: untouched, or read whole for a signature check
/// (then it is forwarded from the buffer).
#[derive(Debug)]
pub(crate) enum ClientBody<B> {
    Streaming(B),
    Buffered(Bytes),
}

/// Bounds on reading a body for a signature check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyBounds {
    pub max_bytes: u64,
    pub timeout: Duration,
}

/// Which key table a signature is checked against.
#[derive(Clone, Copy)]
enum KeyTable {
    Apps,
    Iam,
}

// === impl Caller ===

impl Caller {
    /// The app's id (`$context.appId`), if an app authenticated.
    pub(crate) fn app_id(&self) -> Option<&str> {
        match self {
            Self::App { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The app's id as shared text (a throttle key), if an app authenticated.
    pub(crate) fn app_key(&self) -> Option<&Arc<str>> {
        match self {
            Self::App { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Whether an APP or IAM caller authenticated.
    pub(crate) fn is_authenticated(&self) -> bool {
        !matches!(self, Self::Anonymous)
    }

    /// The app's name (`$context.appName`), if an app authenticated.
    pub(crate) fn app_name(&self) -> Option<&str> {
        match self {
            Self::App { name, .. } => Some(name),
            _ => None,
        }
    }
}

impl std::fmt::Display for Caller {
    /// For logs: `-`, `app:<id> (signature|appcode)` or `iam:<AK> (signature|token)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("-"),
            Self::App { id, method, .. } => {
                let how = match method {
                    AppMethod::Signature => "signature",
                    AppMethod::AppCode => "appcode",
                };
                write!(f, "app:{id} ({how})")
            }
            Self::Iam { access_key, method } => {
                let how = match method {
                    IamMethod::Signature => "signature",
                    IamMethod::Token => "token",
                };
                write!(f, "iam:{access_key} ({how})")
            }
        }
    }
}

// === impl Credentials ===

impl Credentials {
    /// Indexes the snapshot's credentials. Refuses (the snapshot is NACKed) duplicated ids, app
    /// keys, AppCodes or access keys, empty keys or secrets, an ACL that does not parse and a
    /// token key that is not an Ed25519 public key: each would make some credential ambiguous
    /// or unusable.
    pub(crate) fn prepare(snapshot: &Snapshot) -> Result<Self, String> {
        let mut apps = Vec::with_capacity(snapshot.apps.len());
        let mut by_key = HashMap::with_capacity(snapshot.apps.len());
        let mut by_code = HashMap::new();
        let mut by_id = HashMap::with_capacity(snapshot.apps.len());
        for (index, app) in snapshot.apps.iter().enumerate() {
            let what = || format!("app {} ({})", app.id, app.name);
            if app.id.is_empty() {
                return Err(format!("app {:?} has an empty id", app.name));
            }
            if app.app_key.is_empty() || app.app_secret.is_empty() {
                return Err(format!("{}: empty app key or secret", what()));
            }
            if by_id.insert(app.id.clone(), index).is_some() {
                return Err(format!("{}: duplicated app id", what()));
            }
            if by_key.insert(app.app_key.clone(), index).is_some() {
                return Err(format!("{}: its app key is used by another app", what()));
            }
            for code in &app.app_codes {
                if code.is_empty() {
                    return Err(format!("{}: empty AppCode", what()));
                }
                let key: Box<[u8]> = code.as_bytes().into();
                if by_code.insert(key, index).is_some() {
                    return Err(format!("{}: an AppCode is used twice", what()));
                }
            }
            let acl = match &app.acl {
                Some(acl) => Some(
                    IpAcl::parse(acl.permit, &acl.values)
                        .map_err(|e| format!("{}: app ACL: {e}", what()))?,
                ),
                None => None,
            };
            apps.push(AppEntry {
                id: Arc::from(app.id.as_str()),
                name: Arc::from(app.name.as_str()),
                secret: app.app_secret.as_bytes().into(),
                acl,
            });
        }
        let mut iam = HashMap::with_capacity(snapshot.iam_credentials.len());
        for cred in &snapshot.iam_credentials {
            if cred.access_key.is_empty() || cred.secret_key.is_empty() {
                return Err("an IAM credential has an empty access key or secret".into());
            }
            let entry = IamEntry {
                access_key: Arc::from(cred.access_key.as_str()),
                secret: cred.secret_key.as_bytes().into(),
            };
            if iam.insert(cred.access_key.clone(), entry).is_some() {
                return Err(format!(
                    "IAM access key {} appears more than once",
                    cred.access_key
                ));
            }
        }
        for (i, key) in snapshot.token_keys.iter().enumerate() {
            TokenVerifier::new(&[key])
                .map_err(|e| format!("token key {i} ({} bytes): {e}", key.len()))?;
        }
        let tokens = TokenVerifier::new(&snapshot.token_keys).map_err(|e| e.to_string())?;
        Ok(Self {
            project_id: Arc::from(snapshot.project_id.as_str()),
            project_name: Arc::from(snapshot.project_name.as_str()),
            apps,
            by_key,
            by_code,
            by_id,
            iam,
            tokens,
        })
    }

    /// What `api` asks of callers: AppCode allowed or not, and its authorized apps. Ids of apps
    /// the snapshot does not hold are skipped (nobody can authenticate as them).
    pub(crate) fn api_auth(&self, api: &apig_proto::Api) -> ApiAuth {
        let mut authorized_apps: Vec<usize> = Vec::with_capacity(api.authorized_app_ids.len());
        for id in &api.authorized_app_ids {
            match self.by_id.get(id) {
                Some(&index) => authorized_apps.push(index),
                None => tracing::warn!(
                    api_id = %api.id,
                    app_id = %id,
                    "the API authorizes an app the snapshot does not contain; ignored"
                ),
            }
        }
        authorized_apps.sort_unstable();
        authorized_apps.dedup();
        ApiAuth {
            app_code: api.app_code_auth_type.eq_ignore_ascii_case("HEADER"),
            authorized_apps,
        }
    }

    fn app_caller(&self, index: usize, method: AppMethod) -> Option<Caller> {
        self.apps.get(index).map(|a| Caller::App {
            id: Arc::clone(&a.id),
            name: Arc::clone(&a.name),
            method,
        })
    }

    /// APP authentication; returns the app's index (for [`Self::authorize_app`]), the caller
    /// and the body.
    pub(crate) async fn authenticate_app<B>(
        &self,
        api: &ApiAuth,
        parts: &Parts,
        body: B,
        bounds: BodyBounds,
        now: i64,
        transport: Transport,
    ) -> Result<(usize, Caller, ClientBody<B>), GatewayErrorKind>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        if has_signature(&parts.headers) {
            let (body, bytes) = body_for_signature(parts, body, bounds).await?;
            let found = self
                .verify_signature(KeyTable::Apps, parts, &bytes, now)
                .map_err(|e| GatewayErrorKind::AppAuthFailed(sign_reason(&e)))?;
            let index = found.app.ok_or(GatewayErrorKind::Internal)?;
            let caller = self
                .app_caller(index, AppMethod::Signature)
                .ok_or(GatewayErrorKind::Internal)?;
            return Ok((index, caller, body));
        }
        if api.app_code {
            // Refused before it is looked up: whether a code sent in clear is valid is not
            // something to answer (or time) on a connection anyone on the path can read.
            if transport == Transport::Clear && parts.headers.contains_key(X_APIG_APPCODE) {
                return Err(GatewayErrorKind::AppAuthFailed(
                    "AppCode authentication requires HTTPS".into(),
                ));
            }
            if let Some(index) = self.app_code(&parts.headers)? {
                let caller = self
                    .app_caller(index, AppMethod::AppCode)
                    .ok_or(GatewayErrorKind::Internal)?;
                return Ok((index, caller, ClientBody::Streaming(body)));
            }
        }
        Err(GatewayErrorKind::AppAuthMissing)
    }

    /// The project of every caller these credentials authenticate.
    pub(crate) fn project_id(&self) -> &Arc<str> {
        &self.project_id
    }

    /// The account name of that project.
    pub(crate) fn project_name(&self) -> &str {
        &self.project_name
    }

    /// Authorization of an authenticated app: authorized for the API (403 `APIG.0304`), then
    /// its IP ACL against the client IP (403 `APIG.0405`).
    pub(crate) fn authorize_app(
        &self,
        api: &ApiAuth,
        app_index: usize,
        client_ip: IpAddr,
    ) -> Result<(), GatewayErrorKind> {
        if api.authorized_apps.binary_search(&app_index).is_err() {
            return Err(GatewayErrorKind::AppNotAuthorized);
        }
        let app = self.apps.get(app_index).ok_or(GatewayErrorKind::Internal)?;
        match &app.acl {
            Some(acl) if !acl.allows(client_ip) => Err(GatewayErrorKind::AppIpDenied),
            _ => Ok(()),
        }
    }

    /// The app index of a valid `X-Apig-AppCode`; `None` when the header is absent.
    fn app_code(&self, headers: &HeaderMap) -> Result<Option<usize>, GatewayErrorKind> {
        let mut values = headers.get_all(X_APIG_APPCODE).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(GatewayErrorKind::AppAuthFailed(
                "more than one X-Apig-AppCode header".into(),
            ));
        }
        let provided = value.as_bytes();
        // Codes are high-entropy secrets, so a hash lookup by value leaks nothing useful; the
        // stored code found is still compared in constant time.
        match self.by_code.get_key_value(provided) {
            Some((stored, &index)) if bool::from(stored.as_ref().ct_eq(provided)) => {
                Ok(Some(index))
            }
            _ => Err(GatewayErrorKind::AppAuthFailed("invalid AppCode".into())),
        }
    }

    /// IAM authentication: `X-Auth-Token`, else an AK/SK signature.
    pub(crate) async fn authenticate_iam<B>(
        &self,
        parts: &Parts,
        body: B,
        bounds: BodyBounds,
        now: i64,
    ) -> Result<(Caller, ClientBody<B>), GatewayErrorKind>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let mut tokens = parts.headers.get_all(X_AUTH_TOKEN).iter();
        if let Some(token) = tokens.next() {
            if tokens.next().is_some() {
                return Err(GatewayErrorKind::IamAuthFailed(
                    "more than one X-Auth-Token header".into(),
                ));
            }
            let token = token
                .to_str()
                .map_err(|_| token_failure(TokenError::Malformed))?;
            let caller = self.verify_token(token, now)?;
            return Ok((caller, ClientBody::Streaming(body)));
        }
        if has_signature(&parts.headers) {
            let (body, bytes) = body_for_signature(parts, body, bounds).await?;
            let found = self
                .verify_signature(KeyTable::Iam, parts, &bytes, now)
                .map_err(|e| GatewayErrorKind::IamAuthFailed(sign_reason(&e)))?;
            let caller = Caller::Iam {
                access_key: found.iam.ok_or(GatewayErrorKind::Internal)?,
                method: IamMethod::Signature,
            };
            return Ok((caller, body));
        }
        Err(GatewayErrorKind::IamAuthMissing)
    }

    fn verify_token(&self, token: &str, now: i64) -> Result<Caller, GatewayErrorKind> {
        let claims = self.tokens.verify(token, now).map_err(token_failure)?;
        if self.project_id.is_empty() || *claims.project_id != *self.project_id {
            return Err(GatewayErrorKind::IamAuthFailed(
                "the token is not valid in this project".into(),
            ));
        }
        // Deleting an AK/SK revokes the tokens issued to it, from the next snapshot on.
        let entry = self.iam.get(&claims.access_key).ok_or_else(|| {
            GatewayErrorKind::IamAuthFailed("the token's credential no longer exists".into())
        })?;
        Ok(Caller::Iam {
            access_key: Arc::clone(&entry.access_key),
            method: IamMethod::Token,
        })
    }

    /// Checks an `SDK-HMAC-SHA256` signature against one key table.
    fn verify_signature(
        &self,
        table: KeyTable,
        parts: &Parts,
        body: &[u8],
        now: i64,
    ) -> Result<Found, SignError> {
        let headers = header_pairs(parts);
        let view = RequestView {
            method: parts.method.as_str(),
            // The raw request target, as the client signed it.
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &headers,
        };
        let mut found = Found::default();
        apig_sign::verify(&view, body, now, |key| match table {
            KeyTable::Apps => {
                found.app = self.by_key.get(key).copied();
                found.app.and_then(|i| self.apps.get(i)).map(|a| &*a.secret)
            }
            KeyTable::Iam => {
                found.iam = self.iam.get(key).map(|e| Arc::clone(&e.access_key));
                self.iam.get(key).map(|e| &*e.secret)
            }
        })?;
        Ok(found)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("Credentials")
            .field("project_id", &self.project_id)
            .field("apps", &self.apps.len())
            .field("app_codes", &self.by_code.len())
            .field("iam_credentials", &self.iam.len())
            .field("token_keys", &self.tokens.key_count())
            .finish()
    }
}

/// Whose signature verified.
#[derive(Default)]
struct Found {
    /// Index of the app (app table).
    app: Option<usize>,
    /// The access key (IAM table).
    iam: Option<Arc<str>>,
}

/// Whether an `Authorization` header carries the gateway's own signature scheme.
pub(crate) fn has_signature(headers: &HeaderMap) -> bool {
    headers
        .get_all(AUTHORIZATION)
        .iter()
        .any(|v| is_gateway_signature(v.as_bytes()))
}

/// `Authorization` values the gateway verifies (and strips before the backend).
pub(crate) fn is_gateway_signature(value: &[u8]) -> bool {
    value.starts_with(ALGORITHM.as_bytes())
}

/// The request's headers for the verifier; HTTP/2's `:authority` stands in for a missing
/// `Host`. Values that are not UTF-8 are left out: if such a header was signed the signature
/// fails as "not present", which is the honest answer.
fn header_pairs(parts: &Parts) -> Vec<(&str, &str)> {
    let mut out = Vec::with_capacity(parts.headers.len() + 1);
    for (name, value) in &parts.headers {
        if let Ok(v) = std::str::from_utf8(value.as_bytes()) {
            out.push((name.as_str(), v));
        }
    }
    if !parts.headers.contains_key(HOST) {
        if let Some(authority) = parts.uri.authority() {
            out.push(("host", authority.as_str()));
        }
    }
    out
}

/// What the verifier gets as the body: the whole body, read here, or (for a signed
/// `UNSIGNED-PAYLOAD`) a stand-in that is empty exactly when the real body is empty, since the
/// verifier only looks at whether it is empty then.
async fn body_for_signature<B>(
    parts: &Parts,
    body: B,
    bounds: BodyBounds,
) -> Result<(ClientBody<B>, Bytes), GatewayErrorKind>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let declared = declared_length(&parts.headers);
    match payload_mode(&parts.headers) {
        PayloadMode::Unsigned => {
            let empty = declared == Some(0) || (declared.is_none() && body.is_end_stream());
            let stand_in = if empty {
                Bytes::new()
            } else {
                Bytes::from_static(b"-")
            };
            Ok((ClientBody::Streaming(body), stand_in))
        }
        PayloadMode::NotNeeded => Ok((ClientBody::Streaming(body), Bytes::new())),
        PayloadMode::Hashed => {
            if declared.is_some_and(|len| len > bounds.max_bytes) {
                return Err(GatewayErrorKind::BodyTooLarge);
            }
            let bytes = read_bounded(body, bounds).await?;
            Ok((ClientBody::Buffered(bytes.clone()), bytes))
        }
    }
}

/// Reads a whole request body within `bounds`: too large → 413, too slow → 408, broken → 400.
pub(crate) async fn read_bounded<B>(body: B, bounds: BodyBounds) -> Result<Bytes, GatewayErrorKind>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let limit = usize::try_from(bounds.max_bytes).unwrap_or(usize::MAX);
    let read = tokio::time::timeout(bounds.timeout, Limited::new(body, limit).collect());
    match read.await {
        Err(_elapsed) => Err(GatewayErrorKind::RequestTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(GatewayErrorKind::BodyTooLarge),
        Ok(Err(error)) => {
            tracing::debug!(%error, "reading a request body failed");
            Err(GatewayErrorKind::BadRequest(
                "the request body could not be read".into(),
            ))
        }
    }
}

/// Whether verifying needs the body's bytes.
#[derive(Debug, PartialEq, Eq)]
enum PayloadMode {
    /// The body's hash is signed: read it.
    Hashed,
    /// `x-sdk-content-sha256: UNSIGNED-PAYLOAD` is signed: the body is not covered.
    Unsigned,
    /// The `Authorization` header does not parse (or is repeated): verification fails before
    /// the body matters, so do not read it.
    NotNeeded,
}

fn payload_mode(headers: &HeaderMap) -> PayloadMode {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return PayloadMode::NotNeeded;
    };
    let Ok(text) = value.to_str() else {
        return PayloadMode::NotNeeded;
    };
    let Ok(auth) = Authorization::parse(text) else {
        return PayloadMode::NotNeeded;
    };
    if !auth.signed_headers.contains(&HEADER_CONTENT_SHA256) {
        return PayloadMode::Hashed;
    }
    let mut hashes = headers.get_all(HEADER_CONTENT_SHA256).iter();
    match (hashes.next(), hashes.next()) {
        (Some(v), None) if v.as_bytes().trim_ascii() == UNSIGNED_PAYLOAD.as_bytes() => {
            PayloadMode::Unsigned
        }
        _ => PayloadMode::Hashed,
    }
}

/// `Content-Length` when present and well formed (the pipeline has already refused bad ones).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The message (after "Incorrect ... authentication information: ") for a signature failure.
/// Wording follows APIG where it is known (semantics digest §1.4).
fn sign_reason(error: &SignError) -> std::borrow::Cow<'static, str> {
    match error {
        SignError::BadSignature => "verify signature fail".into(),
        SignError::Expired { signed, now } => format!(
            "signature expired, signature time:{},server time:{}",
            format_sdk_date(*signed),
            format_sdk_date(*now)
        )
        .into(),
        SignError::MalformedAuthorization(
            "Access is missing" | "Access is empty or contains spaces",
        )
        | SignError::MalformedAuthorization("no credentials after the algorithm") => {
            "Access or Credential is empty in Authorization".into()
        }
        SignError::MissingAuthorization => "Authorization header is missing".into(),
        other => other.to_string().into(),
    }
}

fn token_failure(error: TokenError) -> GatewayErrorKind {
    let reason = match error {
        // APIG's wording for a token it cannot read.
        TokenError::Malformed | TokenError::BadSignature | TokenError::InvalidKey => {
            "decrypt token fail"
        }
        TokenError::UnknownKey => "token signed by an unknown key",
        TokenError::Expired => "token expired",
        TokenError::NotYetValid => "token is not valid yet",
    };
    GatewayErrorKind::IamAuthFailed(reason.into())
}

/// Unix seconds of a time (0 before the epoch).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
