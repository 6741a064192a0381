//! The management API's error answer: an HTTP status and `{"error_code","error_msg"}`.
//!
//! Every failure of the control plane is turned into an [`ApiError`] here and only here, so the
//! codes stay consistent with APIG's table (apig-semantics.md §2.4).

use serde::Serialize;

/// APIG management error codes used by this control plane, with their HTTP status and the
/// message APIG uses for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400 Parameter error (malformed body, wrong JSON).
    ParameterError,
    /// 400 A required parameter is missing.
    ParameterRequired,
    /// 400 A parameter value is invalid.
    InvalidParameter,
    /// 400 Request path parameters are not defined.
    PathParamsUndefined,
    /// 400 Backend path parameters are not defined.
    BackendPathParamsUndefined,
    /// 400 Request parameters mapped to backend parameters are not defined.
    MappedParamUndefined,
    /// 400 A backend address (URL domain, channel member, function URL) is a literal IP the
    /// gateway always refuses to connect to (link-local, metadata, unspecified, multicast,
    /// broadcast): APIG's "The URL domain is included in the IP address blacklist."
    BackendAddressRefused,
    GroupNameExists,
    ApiNameExists,
    EnvNameExists,
    ParamNameExists,
    ApiExists,
    EnvVariableExists,
    AppNameExists,
    AppKeyExists,
    ThrottleNameExists,
    AclNameExists,
    SpecialExists,
    ChannelNameExists,
    SignNameExists,
    OrchestrationNameExists,
    AuthorizerNameExists,
    /// 400 A custom authorizer used by APIs cannot be deleted.
    AuthorizerInUse,
    /// 400 Authorizer context parameters (or conditions) on an API without that authorizer.
    AuthorizerParamsUnavailable,
    /// 400 The domain name is not a valid domain.
    InvalidDomain,
    DomainExists,
    CertificateDomainMismatch,
    /// 400 The certificate, its key or its chain cannot be used.
    CertificateInvalid,
    CertificateKeyMismatch,
    CertificateExpired,
    CertificateChainMismatch,
    EncryptedKeyUnsupported,
    /// 400 The domain already presents another certificate.
    DomainHasCertificate,
    /// 400 The certificate is attached to domains and cannot be deleted.
    CertificateInUse,
    /// 409 `algorithm_type` does not match the certificate's key.
    CertificateAlgorithmMismatch,

    AppAuthExists,
    /// 400 The API is not published in the environment (authorizing apps needs it).
    ApiNotPublished,
    /// 401 No credential in the request.
    AuthMissing,
    /// 401 The credential or signature is not valid.
    AuthInvalid,
    /// 403 Quota reached.
    EnvQuota,
    VariableQuota,
    /// 403 The policy is bound to APIs and cannot be deleted.
    AclBound,
    ThrottleBound,
    /// 403 Quotas and references of load-balance channels.
    ChannelQuota,
    ChannelMemberQuota,
    ChannelInUse,
    SignQuota,
    AuthorizerQuota,
    OrchestrationQuota,
    DomainQuota,
    AppCodeQuota,
    /// 403 The operation needs an administrator credential.
    AdminOnly,
    GroupHasApis,
    ApiPublished,
    EnvHasPublishedApis,
    /// 403 The built-in RELEASE environment cannot be changed.
    DefaultEnvReadOnly,
    GroupNotFound,
    ApiNotFound,
    EnvNotFound,
    EnvVariableNotFound,
    AppNotFound,
    AppCodeNotFound,
    AppAuthNotFound,
    CredentialNotFound,
    ThrottleNotFound,
    AclNotFound,
    SpecialNotFound,
    ChannelNotFound,
    SignNotFound,
    AuthorizerNotFound,
    OrchestrationNotFound,
    DomainNotFound,
    CertificateBindingNotFound,
    CertificateNotFound,
    SignBindingNotFound,
    /// 404 A member (or member group) of a channel.
    ChannelMemberNotFound,
    QuotaNotFound,
    BindingNotFound,
    AclBindingNotFound,
    PublicationNotFound,
    VersionNotFound,
    InstanceNotFound,
    /// 404 No such route in the management API.
    ResourceNotFound,
    /// 409 The orchestration rule is used by APIs.
    OrchestrationInUse,
    /// 405 The route exists but not for this method.
    MethodNotAllowed,
    /// 412 The feature does not exist in a self-hosted gateway (or not yet).
    NotSupported,
    /// 413 The request body is too large.
    BodyTooLarge,
    /// 500 Unexpected failure.
    Internal,
    /// 503 The store could not persist the change.
    StoreUnavailable,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            ParameterError
            | ParameterRequired
            | InvalidParameter
            | PathParamsUndefined
            | BackendPathParamsUndefined
            | MappedParamUndefined
            | BackendAddressRefused
            | GroupNameExists
            | ApiNameExists
            | EnvNameExists
            | ParamNameExists
            | ApiExists
            | EnvVariableExists
            | AppNameExists
            | AppKeyExists
            | ThrottleNameExists
            | AclNameExists
            | SpecialExists
            | ChannelNameExists
            | SignNameExists
            | OrchestrationNameExists
            | AuthorizerNameExists
            | AuthorizerInUse
            | AuthorizerParamsUnavailable
            | InvalidDomain
            | DomainExists
            | CertificateDomainMismatch
            | CertificateInvalid
            | CertificateKeyMismatch
            | CertificateExpired
            | CertificateChainMismatch
            | EncryptedKeyUnsupported
            | DomainHasCertificate
            | CertificateInUse
            | AppAuthExists
            | ApiNotPublished => 400,
            AuthMissing | AuthInvalid => 401,
            EnvQuota | VariableQuota | AclBound | ThrottleBound | AppCodeQuota | AdminOnly
            | ChannelQuota | ChannelMemberQuota | ChannelInUse | SignQuota | AuthorizerQuota
            | OrchestrationQuota | DomainQuota | GroupHasApis | ApiPublished
            | EnvHasPublishedApis | DefaultEnvReadOnly => 403,
            GroupNotFound
            | ApiNotFound
            | EnvNotFound
            | EnvVariableNotFound
            | AppNotFound
            | AppCodeNotFound
            | AppAuthNotFound
            | CredentialNotFound
            | ThrottleNotFound
            | AclNotFound
            | SpecialNotFound
            | QuotaNotFound
            | BindingNotFound
            | AclBindingNotFound
            | PublicationNotFound
            | VersionNotFound
            | InstanceNotFound
            | ChannelNotFound
            | SignNotFound
            | AuthorizerNotFound
            | SignBindingNotFound
            | OrchestrationNotFound
            | DomainNotFound
            | CertificateBindingNotFound
            | CertificateNotFound
            | ChannelMemberNotFound
            | ResourceNotFound => 404,
            MethodNotAllowed => 405,
            OrchestrationInUse | CertificateAlgorithmMismatch => 409,
            NotSupported => 412,
            BodyTooLarge => 413,
            Internal => 500,
            StoreUnavailable => 503,
        }
    }

    pub fn code(self) -> &'static str {
        use ErrorCode::*;
        match self {
            ParameterError => "APIG.2000",
            ParameterRequired => "APIG.2001",
            InvalidParameter => "APIG.2012",
            PathParamsUndefined => "APIG.2026",
            BackendPathParamsUndefined => "APIG.2027",
            MappedParamUndefined => "APIG.2028",
            BackendAddressRefused => "APIG.2022",
            GroupNameExists => "APIG.3201",
            ApiNameExists => "APIG.3202",
            EnvNameExists => "APIG.3205",
            ParamNameExists => "APIG.3209",
            ApiExists => "APIG.3301",
            EnvVariableExists => "APIG.3303",
            AppNameExists => "APIG.3203",
            ThrottleNameExists => "APIG.3204",
            AclNameExists => "APIG.3206",
            SpecialExists => "APIG.3308",
            ChannelNameExists => "APIG.3208",
            SignNameExists => "APIG.3207",
            OrchestrationNameExists => "APIG.3331",
            AuthorizerNameExists => "APIG.3211",
            AuthorizerQuota => "APIG.3116",
            AuthorizerNotFound => "APIG.3081",
            // APIG has no dedicated code for an authorizer in use; as for certificates, 2012.
            AuthorizerInUse => "APIG.2012",
            AuthorizerParamsUnavailable => "APIG.2036",
            InvalidDomain => "APIG.2024",
            DomainExists => "APIG.3305",
            DomainQuota => "APIG.3108",
            DomainNotFound => "APIG.3020",
            CertificateDomainMismatch => "APIG.2103",
            CertificateBindingNotFound => "APIG.3097",
            CertificateNotFound => "APIG.3021",
            CertificateInvalid => "APIG.2106",
            CertificateKeyMismatch => "APIG.2101",
            CertificateExpired => "APIG.2102",
            CertificateChainMismatch => "APIG.2104",
            EncryptedKeyUnsupported => "APIG.2105",
            DomainHasCertificate => "APIG.2051",
            // APIG has no dedicated code; its documented answer to a refused delete is 2012.
            CertificateInUse => "APIG.2012",
            CertificateAlgorithmMismatch => "APIG.3709",
            OrchestrationQuota => "APIG.3150",
            OrchestrationNotFound => "APIG.3095",
            OrchestrationInUse => "APIG.3716",
            SignQuota => "APIG.3105",
            SignNotFound => "APIG.3017",
            SignBindingNotFound => "APIG.3018",
            ChannelQuota => "APIG.3109",
            ChannelMemberQuota => "APIG.3110",
            ChannelInUse => "APIG.3414",
            ChannelNotFound => "APIG.3023",
            ChannelMemberNotFound => "APIG.3024",
            AclBound => "APIG.3447",
            ThrottleBound => "APIG.3451",
            AclBindingNotFound => "APIG.3010",
            ThrottleNotFound => "APIG.3005",
            AclNotFound => "APIG.3006",
            SpecialNotFound => "APIG.3013",
            QuotaNotFound => "APIG.3007",
            BindingNotFound => "APIG.3012",
            AppKeyExists => "APIG.3310",
            AppAuthExists => "APIG.3316",
            ApiNotPublished => "APIG.2011",
            AppCodeQuota => "APIG.3114",
            AdminOnly => "APIG.1005",
            AppNotFound => "APIG.3004",
            AppCodeNotFound => "APIG.3082",
            AppAuthNotFound => "APIG.3009",
            CredentialNotFound => "APIG.3007",
            AuthMissing => "APIG.1000",
            AuthInvalid => "APIG.1002",
            EnvQuota => "APIG.3104",
            VariableQuota => "APIG.3106",
            GroupHasApis => "APIG.3415",
            ApiPublished => "APIG.3416",
            EnvHasPublishedApis => "APIG.3418",
            DefaultEnvReadOnly => "APIG.1103",
            GroupNotFound => "APIG.3001",
            ApiNotFound => "APIG.3002",
            EnvNotFound => "APIG.3003",
            EnvVariableNotFound => "APIG.3011",
            PublicationNotFound => "APIG.3015",
            VersionNotFound => "APIG.3022",
            InstanceNotFound => "APIG.3030",
            ResourceNotFound => "APIG.3007",
            MethodNotAllowed => "APIG.1005",
            NotSupported => "APIG.3458",
            BodyTooLarge => "APIG.2003",
            Internal | StoreUnavailable => "APIG.9999",
        }
    }
}

/// A management API failure, ready to be rendered as APIG's error body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} {}: {message}", code.status(), code.code())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// The JSON body APIG answers on management errors.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error_code: &'static str,
    pub error_msg: &'a str,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error_code: self.code.code(),
            error_msg: &self.message,
        }
    }

    /// `Invalid parameter value,parameterName:<name>. <why>` as APIG words it.
    pub fn invalid(name: &str, why: impl AsRef<str>) -> Self {
        Self::new(
            ErrorCode::InvalidParameter,
            format!(
                "Invalid parameter value,parameterName:{name}. {}",
                why.as_ref()
            ),
        )
    }

    pub fn required(name: &str) -> Self {
        Self::new(
            ErrorCode::ParameterRequired,
            format!("The request parameters must be specified,parameterName:{name}"),
        )
    }

    pub fn not_supported(what: impl AsRef<str>) -> Self {
        Self::new(
            ErrorCode::NotSupported,
            format!("{} is not supported by this gateway", what.as_ref()),
        )
    }

    pub fn instance_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::InstanceNotFound,
            format!("The instance does not exist;id:{id}"),
        )
    }

    pub fn group_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::GroupNotFound,
            format!("API group {id} does not exist"),
        )
    }

    pub fn api_not_found(id: &str) -> Self {
        Self::new(ErrorCode::ApiNotFound, format!("API {id} does not exist"))
    }

    pub fn env_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::EnvNotFound,
            format!("Environment {id} does not exist"),
        )
    }

    pub fn certificate_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::CertificateNotFound,
            format!("The SSL certificate does not exist;id:{id}"),
        )
    }

    pub fn internal(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, format!("System error: {what}"))
    }
}

impl From<crate::certificate::CertError> for ApiError {
    fn from(e: crate::certificate::CertError) -> Self {
        use crate::certificate::CertError::*;
        let code = match &e {
            // A CA bundle is an ordinary parameter; a certificate or key has its own code.
            Malformed {
                field: "trusted_root_ca",
                why,
            } => return ApiError::invalid("trusted_root_ca", why),
            Malformed { .. } => ErrorCode::CertificateInvalid,
            EncryptedKey => ErrorCode::EncryptedKeyUnsupported,
            KeyMismatch => ErrorCode::CertificateKeyMismatch,
            Expired { .. } => ErrorCode::CertificateExpired,
            ChainOrder => ErrorCode::CertificateChainMismatch,
            DomainMismatch { .. } => ErrorCode::CertificateDomainMismatch,
            AlgorithmMismatch { .. } => ErrorCode::CertificateAlgorithmMismatch,
        };
        let message = match &e {
            Malformed { field, why } => {
                format!("Invalid certificate or private key. {field}: {why}")
            }
            other => other.to_string(),
        };
        ApiError::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_apig_shape() {
        let e = ApiError::group_not_found("abc");
        let json = serde_json::to_value(e.body()).unwrap();
        assert_eq!(json["error_code"], "APIG.3001");
        assert_eq!(json["error_msg"], "API group abc does not exist");
        assert_eq!(e.status(), 404);
    }

    #[test]
    fn certificate_problems_have_apig_codes() {
        use crate::certificate::CertError;
        for (e, status, code) in [
            (
                CertError::Malformed {
                    field: "cert_content",
                    why: "x".into(),
                },
                400,
                "APIG.2106",
            ),
            (
                CertError::Malformed {
                    field: "trusted_root_ca",
                    why: "x".into(),
                },
                400,
                "APIG.2012",
            ),
            (CertError::KeyMismatch, 400, "APIG.2101"),
            (CertError::EncryptedKey, 400, "APIG.2105"),
            (
                CertError::DomainMismatch {
                    domain: "a.b".into(),
                },
                400,
                "APIG.2103",
            ),
        ] {
            let a = ApiError::from(e);
            assert_eq!((a.status(), a.code.code()), (status, code));
        }
    }

    #[test]
    fn duplicates_are_400_as_in_apig() {
        assert_eq!(ErrorCode::ApiExists.status(), 400);
        assert_eq!(ErrorCode::GroupNameExists.code(), "APIG.3201");
    }
}
