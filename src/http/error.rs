//! The one place where errors become HTTP responses: plane errors, axum's
//! own rejections (malformed JSON, wrong content type, oversized bodies),
//! unknown routes, wrong methods and timeouts all answer with a JSON body.

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A plane error on its way out.
#[derive(Debug)]
pub struct ApiError(pub plane::Error);

impl From<plane::Error> for ApiError {
    fn from(e: plane::Error) -> Self {
        ApiError(e)
    }
}

/// The status for each kind of plane error.
pub fn status_of(e: &plane::Error) -> StatusCode {
    use plane::Error::*;
    match e {
        Unauthorized => StatusCode::UNAUTHORIZED,
        Forbidden => StatusCode::FORBIDDEN,
        Stopped { .. } | Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        NotFound(_) => StatusCode::NOT_FOUND,
        Conflict(_) => StatusCode::CONFLICT,
        BadRequest(_) => StatusCode::BAD_REQUEST,
        // A field past its limit inside a body within the body limit: the
        // request is malformed, not too large to read (bodies over the
        // limit are 413 from the body limit itself).
        TooLarge(_) => StatusCode::BAD_REQUEST,
        Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Config(_) | PurgeIncomplete { .. } | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use plane::Error::*;
        let status = status_of(&self.0);
        let body = match &self.0 {
            // Fixed strings: they never say what exists.
            Unauthorized => json!({"error": "unauthorized"}),
            Forbidden => json!({"error": "forbidden"}),
            Stopped { reason } => json!({"error": "stopped", "reason": reason}),
            Limited {
                reason,
                retry_after_secs,
            } => json!({"error": "rate_limited", "reason": reason, "retry_after_secs": retry_after_secs}),
            PurgeIncomplete { detail } => {
                tracing::error!(detail = %detail, "purge incomplete");
                json!({"error": "purge incomplete", "detail": detail})
            }
            Unavailable { reason, detail } => {
                plane::warn_unavailable(reason, detail);
                json!({"error": "unavailable", "reason": reason, "retry_after_secs": plane::UNAVAILABLE_RETRY_SECS})
            }
            Config(m) => {
                tracing::error!(error = %m, "configuration problem");
                json!({"error": "internal error; see the server log"})
            }
            Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                json!({"error": "internal error; see the server log"})
            }
            other => json!({"error": other.to_string(), "kind": other.kind()}),
        };
        let mut r = (status, Json(body)).into_response();
        let retry_after = match &self.0 {
            Limited { retry_after_secs, .. } => Some(*retry_after_secs),
            Unavailable { .. } => Some(plane::UNAVAILABLE_RETRY_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ctxplane\""),
            );
        }
        r
    }
}

/// A JSON body rejected by axum, as the client should hear it.
pub fn json_rejection(r: JsonRejection) -> Response {
    let (status, msg) = match &r {
        JsonRejection::MissingJsonContentType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected a body with Content-Type: application/json".to_string(),
        ),
        JsonRejection::JsonSyntaxError(e) => (
            StatusCode::BAD_REQUEST,
            format!("malformed JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.body_text()),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {} bytes", super::MAX_BODY_BYTES),
        ),
        other => (other.status(), other.body_text()),
    };
    (status, Json(json!({"error": msg, "kind": "bad_request"}))).into_response()
}

pub fn query_rejection(r: QueryRejection) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": format!("bad query string: {}", r.body_text()), "kind": "bad_request"})),
    )
        .into_response()
}

/// Any error response that is not JSON yet (a 405 from the router, a 408
/// from the timeout layer, a 413 from the body limit) gets a JSON body
/// naming the status; headers such as `Allow` are kept.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    let status = r.status();
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if status.is_success() || status.is_redirection() || is_json || status == StatusCode::SWITCHING_PROTOCOLS
    {
        return r;
    }
    let (mut parts, _) = r.into_parts();
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    let body = json!({"error": reason}).to_string();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
