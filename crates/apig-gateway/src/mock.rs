//! MOCK backends: the gateway answers with the configured status and content itself.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

use apig_proto::MockBackend;

use crate::body::ResponseBody;

/// A prepared mock answer.
#[derive(Debug, Clone)]
pub(crate) struct MockResponse {
    status: StatusCode,
    body: Bytes,
    content_type: HeaderValue,
}

// === impl MockResponse ===

impl MockResponse {
    /// Status 0 means 200. The content type is `application/json` when the content looks like a
    /// JSON object or array, else `text/plain` (APIG's console sets headers by hand; the snapshot
    /// carries none).
    pub(crate) fn prepare(mock: &MockBackend) -> Result<Self, String> {
        let status = match mock.status_code {
            0 => StatusCode::OK,
            code => u16::try_from(code)
                .ok()
                .filter(|c| (100..=599).contains(c))
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| format!("invalid mock status code {code}"))?,
        };
        let trimmed = mock.result_content.trim_start();
        let content_type = if trimmed.starts_with('{') || trimmed.starts_with('[') {
            HeaderValue::from_static("application/json")
        } else {
            HeaderValue::from_static("text/plain; charset=utf-8")
        };
        Ok(Self {
            status,
            body: Bytes::from(mock.result_content.clone()),
            content_type,
        })
    }

    /// The response (the body is shared, not copied).
    pub(crate) fn respond(&self) -> Response<ResponseBody> {
        let mut response = Response::new(ResponseBody::full(self.body.clone()));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, self.content_type.clone());
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn answers_status_and_content() {
        let mock = MockResponse::prepare(&MockBackend {
            status_code: 201,
            result_content: r#"{"ok":true}"#.into(),
        })
        .unwrap();
        let response = mock.respond();
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"ok":true}"#);
    }

    #[test]
    fn status_defaults_to_200_and_invalid_is_refused() {
        let ok = MockResponse::prepare(&MockBackend {
            status_code: 0,
            result_content: "hi".into(),
        })
        .unwrap();
        assert_eq!(ok.respond().status(), 200);
        assert_eq!(
            ok.respond().headers()[CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        for bad in [42, 600, 70_000] {
            assert!(
                MockResponse::prepare(&MockBackend {
                    status_code: bad,
                    result_content: String::new(),
                })
                .is_err(),
                "{bad}"
            );
        }
    }
}
