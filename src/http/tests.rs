//! The router without a socket: admission before the body, the status of
//! every kind of mistake, JSON bodies for every rejection, and the OpenAPI
//! document against the routes.

use std::sync::Arc;

use axum::body::Body as AxBody;
use axum::http::{Request, StatusCode, header};
use plane::{Embedding, PassKind, Plane, Profile, Settings};
use registry::{ContentHash, RegistryStore, SystemClock};
use serde_json::{Value, json};
use tower::ServiceExt;

const STEWARD: &str = "steward-token-0123456789";
const AGENT: &str = "agent-token-0123456789";
const CI: &str = "ci-token-0123456789";

struct Fixture {
    _dir: tempfile::TempDir,
    plane: Arc<Plane>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(
        root.join("docs/runbook.md"),
        "# Failover\n\nPromote the replica, then repoint the pooler.\n",
    )
    .unwrap();
    std::fs::write(
        root.join("docs/replicas.md"),
        "# Replicas\n\nEach primary has one replica.\n\n## Lag\n\nA replica lagging over a minute is not promoted.\n",
    )
    .unwrap();
    let hash = |t: &str| ContentHash::of(t.as_bytes()).to_hex();
    std::fs::write(
        root.join("registry.toml"),
        format!(
            r#"version = 1

[[sources]]
id = "docs"
kind = "dir"
location = "docs"
owner = "platform"
tier = 1
status = "approved"

[[sources]]
id = "wiki"
kind = "dir"
location = "docs"
owner = "platform"
tier = 1
status = "proposed"

[[principals]]
name = "steward"
role = "steward"
token_hash = "{}"
tier_ceiling = 4
sources = ["*"]

[[principals]]
name = "agent"
role = "agent"
token_hash = "{}"
tier_ceiling = 2
sources = ["*"]

[[principals]]
name = "ci"
role = "ci"
token_hash = "{}"
tier_ceiling = 2
sources = ["*"]
"#,
            hash(STEWARD),
            hash(AGENT),
            hash(CI)
        ),
    )
    .unwrap();
    let settings = Settings::resolve(plane::Overrides {
        registry: Some(root.join("registry.toml")),
        data_dir: Some(root.join(".ctxplane")),
        actor: Some("test".into()),
        ..Default::default()
    })
    .unwrap();
    let store = RegistryStore::new(&settings.registry, &settings.data_dir, Arc::new(SystemClock));
    let plane = Plane::open(settings, store, Profile::reader(Embedding::Off("test".into()))).unwrap();
    plane.update(None, PassKind::Full, &mut plane::Quiet).unwrap();
    Fixture {
        _dir: dir,
        plane: Arc::new(plane),
    }
}

async fn call(
    f: &Fixture,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<(&str, &str)>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some((ctype, text)) => req
            .header(header::CONTENT_TYPE, ctype)
            .body(AxBody::from(text.to_string()))
            .unwrap(),
        None => req.body(AxBody::empty()).unwrap(),
    };
    let r = super::router(f.plane.clone(), None).oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, v)
}

const JSON: &str = "application/json";

#[tokio::test]
async fn admission_comes_before_the_body() {
    let f = fixture();
    // No token and a body that would not parse: 401, not 415 or 422.
    let (s, h, v) = call(&f, "POST", "/v1/context", None, Some(("text/plain", "garbage"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v, json!({"error": "unauthorized"}));
    assert!(
        h.get(header::WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    // An unknown token, likewise.
    let (s, _, _) = call(&f, "POST", "/v1/context", Some("nope"), Some((JSON, "{"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The wrong role: 403 whatever the body.
    let (s, _, v) = call(&f, "POST", "/v1/context", Some(CI), Some((JSON, "{"))).await;
    assert_eq!((s, v), (StatusCode::FORBIDDEN, json!({"error": "forbidden"})));
    let (s, _, _) = call(&f, "POST", "/v1/sources", Some(AGENT), Some((JSON, "{}"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn malformed_requests_get_json_4xx() {
    let f = fixture();
    let ask = |ctype: &'static str, body: &'static str| {
        call(&f, "POST", "/v1/context", Some(AGENT), Some((ctype, body)))
    };
    let (s, _, v) = ask("text/plain", r#"{"query":"x"}"#).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    assert!(v["error"].is_string());
    let (s, _, v) = ask(JSON, "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _, v) = ask(JSON, r#"{"query":"x","bogus":1}"#).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"].as_str().unwrap().contains("bogus"), "{v}");
    // Out of range is refused, not clamped.
    let (s, _, v) = ask(JSON, r#"{"query":"failover","limit":0}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _, v) = ask(JSON, r#"{"query":"failover","max_tokens":999999}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _, _) = ask(JSON, r#"{"query":"   "}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let big = format!(r#"{{"query":"{}"}}"#, "x".repeat(33_000));
    let (s, _, v) = call(&f, "POST", "/v1/context", Some(AGENT), Some((JSON, &big))).await;
    assert_eq!(
        (s, v["kind"].as_str()),
        (StatusCode::BAD_REQUEST, Some("too_large")),
        "{v}"
    );
    let huge = format!(r#"{{"query":"{}"}}"#, "x".repeat(250_000));
    let (s, _, v) = call(&f, "POST", "/v1/context", Some(AGENT), Some((JSON, &huge))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["error"].is_string());
    // A good one answers, with the budget honoured.
    let (s, _, v) = ask(JSON, r#"{"query":"failover replica","max_tokens":2000}"#).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["delivered_tokens"].as_u64().unwrap() <= 2000, "{v}");
    assert_eq!(v["results"][0]["provenance"]["source"], "docs");
}

/// `group_by: "file"`: files ranked by their chunks, each naming chunks
/// that are in `results` with their provenance, within the budget; the
/// OpenAPI document says so.
#[tokio::test]
async fn answers_grouped_by_file() {
    let f = fixture();
    let ask = |body: String| {
        let f = &f;
        async move {
            let (s, _, v) = call(f, "POST", "/v1/context", Some(AGENT), Some((JSON, &body))).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v
        }
    };
    let v = ask(
        json!({"query": "promote a lagging replica", "group_by": "file", "limit": 5, "packages": false})
            .to_string(),
    )
    .await;
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{v:#}");
    let results = v["results"].as_array().unwrap();
    let mut named = 0;
    for f in files {
        assert_eq!(f["source"], "docs");
        let chunks = f["chunks"].as_array().unwrap();
        assert!(!chunks.is_empty() && chunks.len() <= 3);
        for id in chunks {
            let r = results.iter().find(|r| &r["id"] == id).unwrap();
            assert_eq!(r["provenance"]["path"], f["path"], "{v:#}");
            named += 1;
        }
    }
    assert_eq!(named, results.len(), "every result belongs to a file");
    assert!(files[0]["score"].as_f64().unwrap() >= files[1]["score"].as_f64().unwrap());
    // limit counts files.
    let one = ask(
        json!({"query": "promote a lagging replica", "group_by": "file", "limit": 1, "packages": false})
            .to_string(),
    )
    .await;
    assert_eq!(one["files"].as_array().unwrap().len(), 1, "{one:#}");
    // The budget bounds what is delivered: a file without a chunk that fits goes.
    let tight = ask(json!({"query": "promote a lagging replica", "group_by": "file", "max_tokens": 600, "packages": false}).to_string()).await;
    let kept = tight["results"].as_array().unwrap();
    assert!(tight["over_budget"].as_u64().unwrap() > 0, "{tight:#}");
    assert!(
        tight["delivered_tokens"].as_u64().unwrap() <= 600 || kept.len() == 1,
        "{tight:#}"
    );
    assert_eq!(tight["files"].as_array().unwrap().len(), 1, "{tight:#}");
    for id in tight["files"][0]["chunks"].as_array().unwrap() {
        assert!(kept.iter().any(|r| &r["id"] == id), "{tight:#}");
    }
    // Chunks, the default, have no `files`.
    let plain = ask(json!({"query": "promote a lagging replica", "packages": false}).to_string()).await;
    assert!(plain.get("files").is_none(), "{plain:#}");
    let (s, _, v) = call(
        &f,
        "POST",
        "/v1/context",
        Some(AGENT),
        Some((JSON, r#"{"query":"x","group_by":"folder"}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let text = super::openapi::document().to_string();
    assert!(
        text.contains("group_by") && text.contains("\"file\""),
        "the OpenAPI document names group_by"
    );
}

#[tokio::test]
async fn wrong_methods_and_routes_are_json() {
    let f = fixture();
    let (s, h, v) = call(&f, "GET", "/v1/context", Some(AGENT), None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(h.get(header::ALLOW).is_some());
    assert!(v["error"].is_string(), "{v}");
    let (s, _, v) = call(&f, "GET", "/v1/nothing-here", Some(AGENT), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["error"].is_string());
}

#[tokio::test]
async fn steward_mistakes_are_4xx_that_say_what_was_wrong() {
    let f = fixture();
    let post = |uri: &'static str, body: String| {
        let f = &f;
        async move { call(f, "POST", uri, Some(STEWARD), Some((JSON, &body))).await }
    };
    let source = |id: &str, glob: &str| {
        json!({"id": id, "kind": "dir", "location": "docs", "owner": "platform", "tier": 1, "include": [glob]}).to_string()
    };
    let (s, _, v) = post("/v1/sources", source("docs", "**/*.md")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("already exists"), "{v}");
    let (s, _, v) = post("/v1/sources", source("fresh-one", "[unclosed")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _, v) = post("/v1/sources", source("Bad Id", "**")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _, v) = post("/v1/sources", source("fresh-one", "**/*.md")).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _, v) = post("/v1/sources/ghost/approve", String::new()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _, v) = post("/v1/sources/docs/approve", String::new()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, _, v) = post("/v1/sources/docs/revoke", "{}".into()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"].as_str().unwrap().contains("reason"), "{v}");
    let (s, _, v) = post("/v1/sources/docs/revoke", r#"{"reason":"   "}"#.into()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("a reason is required"),
        "{v}"
    );
    let grant = |id: &str, expires: &str| {
        json!({"id": id, "source": "docs", "path": "secrets/x.md", "reason": "r", "expires_at": expires})
            .to_string()
    };
    let (s, _, v) = post("/v1/exceptions", grant("exc-old", "2020-01-01T00:00:00Z")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30)).to_string();
    let (s, _, v) = post("/v1/exceptions", grant("exc-a", &soon)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _, v) = post("/v1/exceptions", grant("exc-a", &soon)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, _, v) = post("/v1/exceptions", grant("exc-b", "tomorrow")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn the_stop_gate_lets_through_only_stop_resume_and_revoke() {
    let f = fixture();
    let (s, _, v) = call(
        &f,
        "POST",
        "/v1/admin/stop",
        Some(STEWARD),
        Some((JSON, r#"{"reason":"drill"}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _, v) = call(
        &f,
        "POST",
        "/v1/context",
        Some(AGENT),
        Some((JSON, r#"{"query":"x"}"#)),
    )
    .await;
    assert_eq!(
        (s, v["reason"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("drill"))
    );
    // Still 401/403 first: the stop says nothing to strangers.
    let (s, _, _) = call(&f, "GET", "/v1/sources", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, v) = call(
        &f,
        "POST",
        "/v1/sources/docs/revoke",
        Some(STEWARD),
        Some((JSON, r#"{"reason":"leak"}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["purge_verified"], true, "{v}");
    let (s, _, _) = call(&f, "POST", "/v1/admin/resume", Some(STEWARD), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(&f, "GET", "/v1/sources", Some(AGENT), None).await;
    assert_eq!(s, StatusCode::OK);
}

#[test]
fn the_openapi_document_covers_exactly_the_routes() {
    use axum::http::Method;
    let doc = super::openapi::document();
    let documented = super::openapi::documented();
    for (method, path, op) in &documented {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        assert_eq!(super::operation(&m, path), *op, "{method} {path}");
        let o = &doc["paths"][path][method.to_lowercase()];
        assert!(o["operationId"].is_string(), "{method} {path}");
        assert!(o["responses"]["401"]["headers"]["WWW-Authenticate"].is_object());
    }
    // Every operation the router gates is documented.
    for (m, p) in [
        ("POST", "/v1/context"),
        ("GET", "/v1/provenance/{id}"),
        ("GET", "/v1/snapshots/{id}"),
        ("GET", "/v1/sources"),
        ("POST", "/v1/sources"),
        ("POST", "/v1/sources/{id}/approve"),
        ("POST", "/v1/sources/{id}/deny"),
        ("POST", "/v1/sources/{id}/revoke"),
        ("GET", "/v1/exceptions"),
        ("POST", "/v1/exceptions"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/audit/verify"),
        ("GET", "/v1/freshness"),
        ("GET", "/v1/check"),
        ("GET", "/v1/principals"),
        ("POST", "/v1/principals"),
        ("POST", "/v1/policy/decide"),
        ("POST", "/v1/admin/stop"),
        ("POST", "/v1/admin/resume"),
    ] {
        assert!(documented.iter().any(|(dm, dp, _)| dm == m && dp == p), "{m} {p}");
    }
    let ids: std::collections::BTreeSet<_> = documented.iter().map(|d| d.2.map(|o| o.name())).collect();
    assert_eq!(ids.len(), documented.len(), "operation ids are unique");
    // Schemas are derived: the context request has its fields and limits.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["ContextRequest"]["properties"]["limit"]["maximum"], 100);
    assert_eq!(schemas["ContextRequest"]["additionalProperties"], false);
}

/// A console request: form body, cookie, origin; (status, headers, text).
async fn console(
    app: &axum::Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
    form: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1:7411");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, format!("{}={c}", super::console::COOKIE));
    }
    if let Some(o) = origin {
        req = req.header(header::ORIGIN, o);
    }
    let req = match form {
        Some(text) => req
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(AxBody::from(text.to_string()))
            .unwrap(),
        None => req.body(AxBody::empty()).unwrap(),
    };
    let r = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

const HERE: &str = "http://127.0.0.1:7411";

/// Signs in; the session cookie's value.
async fn sign_in(app: &axum::Router, token: &str) -> String {
    let (s, h, body) = console(
        app,
        "POST",
        "/console/signin",
        None,
        Some(HERE),
        Some(&format!("token={token}")),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let set = h.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(set.contains(attr), "{set}");
    }
    set.split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

fn csrf_in(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..at + 64].to_string()
}

#[tokio::test]
async fn console_sign_in_is_for_people_with_a_known_token() {
    let f = fixture();
    let app = super::router(f.plane.clone(), None);
    for (token, want) in [
        (AGENT, StatusCode::FORBIDDEN),
        (CI, StatusCode::FORBIDDEN),
        ("nope", StatusCode::UNAUTHORIZED),
        (&"x".repeat(600), StatusCode::UNAUTHORIZED),
    ] {
        let (s, h, body) = console(
            &app,
            "POST",
            "/console/signin",
            None,
            Some(HERE),
            Some(&format!("token={token}")),
        )
        .await;
        assert_eq!(s, want, "{body}");
        assert!(h.get(header::SET_COOKIE).is_none());
        assert!(h.get(header::CONTENT_SECURITY_POLICY).is_some());
    }
    // A sign-in posted from another site is refused before the token is looked at.
    let (s, _, _) = console(
        &app,
        "POST",
        "/console/signin",
        None,
        Some("http://evil.example"),
        Some(&format!("token={STEWARD}")),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Pages without a session send you to sign in; state is not readable.
    let (s, h, _) = console(&app, "GET", "/console/sources", None, None, None).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(h.get(header::LOCATION).unwrap(), "/console/signin");
    let (s, _, _) = console(&app, "GET", "/console/sources", Some(&"0".repeat(64)), None, None).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let log = std::fs::read_to_string(f.plane.store().audit().log_path()).unwrap();
    assert_eq!(log.matches("\"console.sign_in_refused\"").count(), 2, "{log}");
}

#[tokio::test]
async fn console_forms_need_this_origin_and_the_session_token() {
    let f = fixture();
    let app = super::router(f.plane.clone(), None);
    let cookie = sign_in(&app, STEWARD).await;
    let (s, _, page) = console(&app, "GET", "/console/sources", Some(&cookie), None, None).await;
    assert_eq!(s, StatusCode::OK);
    let csrf = csrf_in(&page);
    let stop = |c: &str| format!("csrf={c}&reason=drill");
    // Wrong token, no token, another origin: refused, nothing stopped.
    for (origin, body) in [
        (Some(HERE), stop(&"0".repeat(64))),
        (Some(HERE), "reason=drill".to_string()),
        (Some("http://127.0.0.1:9999"), stop(&csrf)),
    ] {
        let (s, _, _) = console(&app, "POST", "/console/stop", Some(&cookie), origin, Some(&body)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{origin:?} {body}");
        assert!(f.plane.stopped().is_none());
    }
    // No session at all: refused, not redirected.
    let (s, _, _) = console(
        &app,
        "POST",
        "/console/stop",
        None,
        Some(HERE),
        Some(&stop(&csrf)),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The real form works, and the stop is the plane's stop.
    let (s, _, _) = console(
        &app,
        "POST",
        "/console/stop",
        Some(&cookie),
        Some(HERE),
        Some(&stop(&csrf)),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(f.plane.stopped().as_deref(), Some("drill"));
    // While stopped the pages still render, with the banner.
    let (s, _, page) = console(&app, "GET", "/console/sources", Some(&cookie), None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("Emergency stop in force") && page.contains("drill"));
    // And an approval is refused by the stop gate, saying why.
    let (s, _, page) = console(
        &app,
        "POST",
        "/console/sources/wiki/approve",
        Some(&cookie),
        Some(HERE),
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.contains("drill"), "{page}");
}

#[tokio::test]
async fn console_sessions_end_when_the_principal_changes() {
    let f = fixture();
    let app = super::router(f.plane.clone(), None);
    let cookie = sign_in(&app, STEWARD).await;
    let (s, _, _) = console(&app, "GET", "/console/principals", Some(&cookie), None, None).await;
    assert_eq!(s, StatusCode::OK);
    // The steward's token is rotated in the registry file.
    let path = f.plane.store().registry_path().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    let old = ContentHash::of(STEWARD.as_bytes()).to_hex();
    let new = ContentHash::of(b"rotated-steward-token").to_hex();
    std::fs::write(&path, text.replace(&old, &new)).unwrap();
    let (s, h, _) = console(&app, "GET", "/console/principals", Some(&cookie), None, None).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(h.get(header::LOCATION).unwrap(), "/console/signin");
    // The session is gone for good, even if the old token came back.
    std::fs::write(&path, text).unwrap();
    let (s, _, _) = console(&app, "GET", "/console/principals", Some(&cookie), None, None).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn principals_and_policy_questions_over_http() {
    let f = fixture();
    let body = r#"{"name": "bot", "role": "agent", "tier_ceiling": 1, "sources": ["docs"]}"#;
    let (s, _, v) = call(&f, "POST", "/v1/principals", Some(AGENT), Some((JSON, body))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _, v) = call(&f, "POST", "/v1/principals", Some(STEWARD), Some((JSON, body))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ctx_") && token.len() == 68, "{v}");
    // The new token reads what it was granted; the registry holds only its hash.
    let (s, _, v) = call(
        &f,
        "POST",
        "/v1/context",
        Some(&token),
        Some((JSON, r#"{"query": "failover"}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let reg = std::fs::read_to_string(f.plane.store().registry_path()).unwrap();
    assert!(!reg.contains(&token));
    let (s, _, v) = call(&f, "POST", "/v1/principals", Some(STEWARD), Some((JSON, body))).await;
    assert!(s.is_client_error(), "a duplicate name is refused: {s} {v}");
    let (s, _, v) = call(&f, "GET", "/v1/principals", Some(STEWARD), None).await;
    assert_eq!(s, StatusCode::OK);
    let bot = v["principals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bot")
        .unwrap();
    assert_eq!(bot["reads"], json!(["docs"]), "{v}");
    assert!(!v.to_string().contains(&token));
    let (s, _, v) = call(
        &f,
        "POST",
        "/v1/policy/decide",
        Some(STEWARD),
        Some((JSON, r#"{"source": "docs", "paths": ["runbook.md", ".env"]}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = v["decisions"].as_array().unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0]["outcome"], "allow", "{v}");
    assert_eq!(d[1]["outcome"], "deny", "{v}");
    let (s, _, _) = call(
        &f,
        "POST",
        "/v1/policy/decide",
        Some(STEWARD),
        Some((JSON, r#"{"source": "docs", "paths": []}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn console_decisions_need_a_reason_and_go_through_the_plane() {
    let f = fixture();
    let app = super::router(f.plane.clone(), None);
    let cookie = sign_in(&app, STEWARD).await;
    let (_, _, page) = console(&app, "GET", "/console/sources/wiki", Some(&cookie), None, None).await;
    let csrf = csrf_in(&page);
    let approve = |body: String| {
        let (app, cookie) = (app.clone(), cookie.clone());
        async move {
            console(
                &app,
                "POST",
                "/console/sources/wiki/approve",
                Some(&cookie),
                Some(HERE),
                Some(&body),
            )
            .await
        }
    };
    let wiki_status = || {
        let reg = f.plane.registry().unwrap();
        let wiki = reg.sources.values().find(|s| s.id.as_str() == "wiki").unwrap();
        wiki.status
    };
    let (s, _, _) = approve(format!("csrf={csrf}&reason=+")).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (_, _, page) = console(&app, "GET", "/console/sources/wiki", Some(&cookie), None, None).await;
    assert!(page.contains("a reason is required"), "{page}");
    assert_eq!(wiki_status(), registry::Status::Proposed);
    let (s, _, _) = approve(format!("csrf={csrf}&reason=reviewed")).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (_, _, page) = console(&app, "GET", "/console/sources/wiki", Some(&cookie), None, None).await;
    assert!(page.contains("source.approve wiki"), "{page}");
    assert_eq!(wiki_status(), registry::Status::Approved);
}
