//! The steward console: server-rendered pages at `/console`, served by
//! `ctxplane serve` from what is compiled into the binary (nothing is
//! fetched from any other host). It is another adapter over the plane:
//! every read and every action calls the same plane functions as the HTTP
//! API and MCP after the same admission (`Plane::authorize` with the
//! action's operation), so policy, audit and purge proof are the same.
//!
//! Sign-in exchanges a steward's or developer's token for a session
//! cookie (HttpOnly, SameSite=Strict, Secure behind TLS, 8 hours); the
//! token never appears in a URL or in page storage, and agents and CI are
//! refused. Sessions live in this process's memory, keyed by a hash of the
//! cookie, and are re-checked against the registry on every request (a
//! removed principal or a changed token ends them). Every form carries the
//! session's CSRF token and must come from this origin. Pages are sent
//! with a strict Content-Security-Policy; every value is escaped by the
//! templates (maud).

mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json};
use plane::overview::{ActivityFilter, PrincipalRequest};
use plane::stewardship::{ExceptionGrant, SourceProposal, StatusOutcome};
use plane::{Operation, Plane, Who};
use registry::{ContentHash, Decision, Role, Status};
use serde::Deserialize;
use serde_json::{Value, json};

/// The session cookie's name.
pub const COOKIE: &str = "ctxplane_session";
/// How long a session lasts from sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Most sessions held at once (expired ones are dropped first).
pub const MAX_SESSIONS: usize = 1_000;

/// The policy every console response carries: only this origin's script,
/// style and requests; no frames, no plugins, no inline code.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

/// What the next page shows once, after an action.
#[derive(Clone, Debug)]
pub enum Flash {
    Done(String),
    Failed(String),
    /// A status change; a revocation carries the purge proof.
    Status(Box<StatusOutcome>),
    /// A new principal's token: shown once, then gone from memory.
    Token {
        principal: String,
        token: String,
    },
    Decisions(Vec<Decision>),
    Verified(Value),
}

#[derive(Debug)]
struct Session {
    principal: String,
    token_hash: ContentHash,
    csrf: String,
    expires: Instant,
    flash: Option<Flash>,
}

#[derive(Debug)]
pub struct Console {
    plane: Arc<Plane>,
    sessions: Mutex<HashMap<String, Session>>,
}

/// A signed-in caller for one request.
pub struct Signed {
    pub who: Who,
    key: String,
    pub csrf: String,
    pub flash: Option<Flash>,
    pub stopped: Option<String>,
}

impl Signed {
    pub fn steward(&self) -> bool {
        self.who.principal.role == Role::Steward
    }
}

fn random_hex(n: usize) -> Option<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Sessions are keyed by a hash of the cookie, so the map never holds a
/// value that would open a session.
fn key_of(cookie: &str) -> String {
    blake3::hash(cookie.as_bytes()).to_hex().to_string()
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// Constant-time comparison of two secrets.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A state-changing request must come from this origin: an `Origin` (or,
/// failing that, `Sec-Fetch-Site`) naming another site refuses it.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let Some(host) = host else { return false };
        return origin == format!("http://{host}") || origin == format!("https://{host}");
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

pub fn page_error(status: StatusCode, message: &str) -> Response {
    (status, Html(pages::error_page(status, message).into_string())).into_response()
}

fn blocking_err(e: tokio::task::JoinError) -> Response {
    tracing::error!(error = %e, "console task failed");
    page_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see the server log",
    )
}

/// A plane error as a page: the same status the API would answer, and what
/// it says (internal detail stays in the log).
fn plane_error(e: plane::Error) -> Response {
    let msg = error_text(&e);
    let status = crate::http::error::ApiError(e).into_response().status();
    page_error(status, &msg)
}

impl Console {
    pub fn new(plane: Arc<Plane>) -> Arc<Console> {
        Arc::new(Console {
            plane,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The signed-in caller, admitted for `op`; `None` when there is no
    /// live session (or its principal is gone or has a new token).
    async fn signed(
        self: &Arc<Self>,
        headers: &HeaderMap,
        op: Operation,
    ) -> Result<Option<Signed>, Response> {
        let Some(cookie) = cookie_value(headers) else {
            return Ok(None);
        };
        let key = key_of(&cookie);
        let (name, hash, csrf, flash) = {
            let mut s = self.sessions();
            let Some(sess) = s.get_mut(&key) else {
                return Ok(None);
            };
            if sess.expires <= Instant::now() {
                s.remove(&key);
                return Ok(None);
            }
            (
                sess.principal.clone(),
                sess.token_hash,
                sess.csrf.clone(),
                if op == Operation::ConsoleRead || op == Operation::ConsoleOversee {
                    sess.flash.take()
                } else {
                    None
                },
            )
        };
        let plane = self.plane.clone();
        let who = tokio::task::spawn_blocking(move || {
            let who = plane
                .principal_named(&name)
                .ok()
                .filter(|w| w.principal.token_hash == hash);
            who.map(|w| plane.authorize(&w, op).map(|()| (w, plane.stopped())))
        })
        .await
        .map_err(blocking_err)?;
        match who {
            None => {
                self.sessions().remove(&key);
                Ok(None)
            }
            Some(Err(e)) => Err(plane_error(e)),
            Some(Ok((who, stopped))) => Ok(Some(Signed {
                who,
                key,
                csrf,
                flash,
                stopped,
            })),
        }
    }

    /// For a page: the signed-in caller, or a redirect to sign in.
    async fn page(self: &Arc<Self>, headers: &HeaderMap, op: Operation) -> Result<Signed, Response> {
        match self.signed(headers, op).await? {
            Some(s) => Ok(s),
            None => Err(Redirect::to("/console/signin").into_response()),
        }
    }

    /// For a form post: a session, this origin, the session's CSRF token,
    /// then admission for `op`. Anything else is refused (403), never
    /// redirected, so a forged post does nothing.
    async fn action(
        self: &Arc<Self>,
        headers: &HeaderMap,
        csrf: &str,
        op: Operation,
    ) -> Result<Signed, Response> {
        if !same_origin(headers) {
            return Err(page_error(StatusCode::FORBIDDEN, "cross-site request refused"));
        }
        // The CSRF token is checked before admission so a forged post
        // cannot even spend the caller's rate limit.
        let Some(s) = self.signed(headers, Operation::ConsoleRead).await.ok().flatten() else {
            return Err(page_error(StatusCode::FORBIDDEN, "sign in first"));
        };
        if !same_secret(&s.csrf, csrf) {
            return Err(page_error(
                StatusCode::FORBIDDEN,
                "missing or wrong form token; reload the page",
            ));
        }
        match self.signed(headers, op).await? {
            Some(s) => Ok(s),
            None => Err(page_error(StatusCode::FORBIDDEN, "sign in first")),
        }
    }

    fn flash(&self, s: &Signed, f: Flash) {
        if let Some(sess) = self.sessions().get_mut(&s.key) {
            sess.flash = Some(f);
        }
    }

    /// Runs `f` on the blocking pool and records its outcome as the flash
    /// of the next page (`to`).
    async fn act<T: Send + 'static>(
        self: &Arc<Self>,
        s: &Signed,
        to: &str,
        f: impl FnOnce(&Plane, &Who) -> plane::Result<T> + Send + 'static,
        done: impl FnOnce(T) -> Flash,
    ) -> Response {
        let (plane, who) = (self.plane.clone(), s.who.clone());
        let r = tokio::task::spawn_blocking(move || f(&plane, &who)).await;
        let flash = match r {
            Ok(Ok(v)) => done(v),
            Ok(Err(e)) => Flash::Failed(error_text(&e)),
            Err(e) => return blocking_err(e),
        };
        self.flash(s, flash);
        Redirect::to(to).into_response()
    }
}

/// What a failed action says on the page (internal detail stays in the log).
fn error_text(e: &plane::Error) -> String {
    match e {
        plane::Error::Internal(_) | plane::Error::Config(_) => {
            tracing::error!(error = %e, "console action failed");
            "internal error; see the server log".into()
        }
        plane::Error::PurgeIncomplete { detail } => format!("purge incomplete: {detail}"),
        plane::Error::Unavailable { reason, detail } => {
            plane::warn_unavailable(reason, detail);
            format!("unavailable: {reason}; try again shortly")
        }
        other => other.to_string(),
    }
}

/// Security headers on every console response.
async fn headers_layer(req: axum::extract::Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

type C = State<Arc<Console>>;

async fn root() -> Redirect {
    Redirect::to("/console")
}

async fn console_home(State(c): C, headers: HeaderMap) -> Response {
    match c.signed(&headers, Operation::ConsoleRead).await {
        Ok(Some(_)) => Redirect::to("/console/sources").into_response(),
        _ => Redirect::to("/console/signin").into_response(),
    }
}

async fn signin_page() -> Response {
    Html(pages::signin(None).into_string()).into_response()
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    token: String,
}

async fn signin(State(c): C, headers: HeaderMap, Form(f): Form<SignIn>) -> Response {
    if !same_origin(&headers) {
        return page_error(StatusCode::FORBIDDEN, "cross-site request refused");
    }
    let plane = c.plane.clone();
    let token = f.token;
    let admitted = tokio::task::spawn_blocking(move || {
        let who = plane.authenticate(Some(&token))?;
        if let Err(e) = plane.authorize(&who, Operation::ConsoleRead) {
            // A known principal whose role may not sign in: audited.
            let _ = plane.store().record(vec![
                registry::audit::Event::new(who.name(), "console.sign_in_refused", who.name())
                    .detail("role", who.principal.role.as_str()),
            ]);
            return Err(e);
        }
        plane
            .store()
            .record(vec![
                registry::audit::Event::new(who.name(), "console.sign_in", who.name())
                    .detail("role", who.principal.role.as_str()),
            ])
            .map_err(plane::Error::from)?;
        Ok(who)
    })
    .await;
    let who = match admitted {
        Ok(Ok(w)) => w,
        Ok(Err(plane::Error::Unauthorized)) => {
            return (
                StatusCode::UNAUTHORIZED,
                Html(pages::signin(Some("unknown token")).into_string()),
            )
                .into_response();
        }
        Ok(Err(plane::Error::Forbidden)) => {
            return (
                StatusCode::FORBIDDEN,
                Html(pages::signin(Some("agents and CI cannot sign in to the console")).into_string()),
            )
                .into_response();
        }
        Ok(Err(e)) => return plane_error(e),
        Err(e) => return blocking_err(e),
    };
    let (cookie, csrf) = match (random_hex(32), random_hex(32)) {
        (Some(a), Some(b)) => (a, b),
        _ => return page_error(StatusCode::INTERNAL_SERVER_ERROR, "no randomness for a session"),
    };
    {
        let mut s = c.sessions();
        let now = Instant::now();
        s.retain(|_, v| v.expires > now);
        if s.len() >= MAX_SESSIONS {
            return page_error(StatusCode::SERVICE_UNAVAILABLE, "too many sessions; try later");
        }
        s.insert(
            key_of(&cookie),
            Session {
                principal: who.name().to_string(),
                token_hash: who.principal.token_hash,
                csrf,
                expires: now + SESSION_TTL,
                flash: None,
            },
        );
    }
    let mut r = Redirect::to("/console/sources").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&cookie, SESSION_TTL.as_secs(), behind_tls(&headers)),
    );
    r
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn signout(State(c): C, headers: HeaderMap, Form(f): Form<CsrfOnly>) -> Response {
    let s = match c.action(&headers, &f.csrf, Operation::ConsoleRead).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    c.sessions().remove(&s.key);
    let _ = c.plane.store().record(vec![registry::audit::Event::new(
        s.who.name(),
        "console.sign_out",
        s.who.name(),
    )]);
    let mut r = Redirect::to("/console/signin").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0, behind_tls(&headers)));
    r
}

/// Renders a page from plane data read on the blocking pool.
async fn render<T: Send + 'static>(
    c: &Arc<Console>,
    s: Signed,
    read: impl FnOnce(&Plane, &Who) -> plane::Result<T> + Send + 'static,
    view: impl FnOnce(&Signed, T) -> maud::Markup,
) -> Response {
    let (plane, who) = (c.plane.clone(), s.who.clone());
    match tokio::task::spawn_blocking(move || read(&plane, &who)).await {
        Ok(Ok(v)) => Html(view(&s, v).into_string()).into_response(),
        Ok(Err(e)) => plane_error(e),
        Err(e) => blocking_err(e),
    }
}

macro_rules! page_or_return {
    ($c:expr, $h:expr, $op:expr) => {
        match $c.page(&$h, $op).await {
            Ok(s) => s,
            Err(r) => return r,
        }
    };
}

macro_rules! action_or_return {
    ($c:expr, $h:expr, $csrf:expr, $op:expr) => {
        match $c.action(&$h, $csrf, $op).await {
            Ok(s) => s,
            Err(r) => return r,
        }
    };
}

async fn sources_page(State(c): C, headers: HeaderMap) -> Response {
    let s = page_or_return!(c, headers, Operation::ConsoleRead);
    render(&c, s, |p, w| p.source_rows(w), pages::sources).await
}

async fn source_page(State(c): C, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let s = page_or_return!(c, headers, Operation::ConsoleRead);
    render(&c, s, move |p, w| p.source_detail(w, &id), pages::source).await
}

async fn packages_page(State(c): C, headers: HeaderMap) -> Response {
    let s = page_or_return!(c, headers, Operation::ConsoleRead);
    render(&c, s, |p, w| p.packages(w), pages::packages).await
}

async fn exceptions_page(State(c): C, headers: HeaderMap) -> Response {
    let s = page_or_return!(c, headers, Operation::ConsoleOversee);
    render(
        &c,
        s,
        |p, w| Ok((p.exceptions(w), p.source_rows(w)?)),
        |s, (x, rows)| pages::exceptions(s, &x, &rows),
    )
    .await
}

async fn principals_page(State(c): C, headers: HeaderMap) -> Response {
    let s = page_or_return!(c, headers, Operation::ConsoleOversee);
    render(
        &c,
        s,
        |p, w| Ok(serde_json::to_value(p.principals(w))?),
        pages::principals,
    )
    .await
}

async fn activity_page(State(c): C, headers: HeaderMap, Query(f): Query<ActivityFilter>) -> Response {
    let s = page_or_return!(c, headers, Operation::ConsoleOversee);
    let shown = f.clone();
    render(
        &c,
        s,
        move |p, _| p.activity(&f),
        move |s, a| pages::activity(s, &shown, &a),
    )
    .await
}

/// Changes the page should pick up without a reload: the registry, a pass,
/// the stop, the audit log's length and the vectors built.
async fn state(State(c): C, headers: HeaderMap) -> Response {
    if let Err(r) = c.page(&headers, Operation::ConsoleRead).await {
        return r;
    }
    let plane = c.plane.clone();
    let g = tokio::task::spawn_blocking(move || {
        let version = plane.registry().map(|r| r.version.to_hex()).unwrap_or_default();
        let audit = std::fs::metadata(plane.store().audit().log_path()).map_or(0, |m| m.len());
        let vectors = plane.retriever().map_or(0, |r| r.dense_status().vectors);
        let stopped = plane.stopped().is_some();
        format!("{version}:{}:{stopped}:{audit}:{vectors}", plane.passes())
    })
    .await
    .unwrap_or_default();
    Json(json!({"generation": g})).into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return page_error(StatusCode::NOT_FOUND, "no such asset"),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[derive(Deserialize)]
struct ProposeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    include: String,
    #[serde(default)]
    exclude: String,
    #[serde(default)]
    never_ingest: String,
}

async fn propose(State(c): C, headers: HeaderMap, Form(f): Form<ProposeForm>) -> Response {
    let s = action_or_return!(c, headers, &f.csrf, Operation::ProposeSource);
    let proposal = serde_json::from_value::<SourceProposal>(json!({
        "id": f.id.trim(), "kind": f.kind.trim(), "location": f.location.trim(), "owner": f.owner.trim(),
        "tier": f.tier.trim().parse::<u8>().unwrap_or(0),
        "description": Some(f.description.trim()).filter(|d| !d.is_empty()),
        "include": lines(&f.include), "exclude": lines(&f.exclude), "never_ingest": lines(&f.never_ingest),
    }));
    let to = format!("/console/sources/{}", urlencode(f.id.trim()));
    match proposal {
        Ok(p) => {
            let id = p.id.clone();
            c.act(
                &s,
                &to,
                move |plane, who| plane.propose_source(who.name(), p),
                move |o| Flash::Done(format!("proposed {id} (audit #{})", o.audit_seq)),
            )
            .await
        }
        Err(e) => {
            c.flash(&s, Flash::Failed(format!("proposal: {e}")));
            Redirect::to("/console/sources").into_response()
        }
    }
}

#[derive(Deserialize)]
struct ReasonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

async fn transition(
    c: Arc<Console>,
    headers: HeaderMap,
    id: String,
    f: ReasonForm,
    status: Status,
) -> Response {
    let op = match status {
        Status::Approved => Operation::Approve,
        Status::Denied => Operation::Deny,
        _ => Operation::Revoke,
    };
    let s = action_or_return!(c, headers, &f.csrf, op);
    let to = format!("/console/sources/{}", urlencode(&id));
    let reason = Some(f.reason).filter(|r| !r.trim().is_empty());
    // On the console every decision states why, approvals included.
    if reason.is_none() {
        c.flash(&s, Flash::Failed("a reason is required".into()));
        return Redirect::to(&to).into_response();
    }
    c.act(
        &s,
        &to,
        move |plane, who| plane.set_status(who.name(), &id, status, reason),
        |o| Flash::Status(Box::new(o)),
    )
    .await
}

/// Approve, deny or revoke: `/console/sources/{id}/{verb}`.
async fn source_action(
    State(c): C,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    Form(f): Form<ReasonForm>,
) -> Response {
    let status = match verb.as_str() {
        "approve" => Status::Approved,
        "deny" => Status::Denied,
        "revoke" => Status::Revoked,
        _ => return page_error(StatusCode::NOT_FOUND, "no such action"),
    };
    transition(c, headers, id, f, status).await
}

#[derive(Deserialize)]
struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    paths: String,
}

async fn decide(
    State(c): C,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<DecideForm>,
) -> Response {
    let s = action_or_return!(c, headers, &f.csrf, Operation::DecidePolicy);
    let to = format!("/console/sources/{}", urlencode(&id));
    let paths = lines(&f.paths);
    c.act(
        &s,
        &to,
        move |plane, who| plane.decide(who.name(), &id, &paths),
        Flash::Decisions,
    )
    .await
}

#[derive(Deserialize)]
struct GrantForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    days: String,
}

async fn grant(State(c): C, headers: HeaderMap, Form(f): Form<GrantForm>) -> Response {
    let s = action_or_return!(c, headers, &f.csrf, Operation::GrantException);
    let days = match f.days.trim().parse::<i64>() {
        Ok(d) if (1..=registry::model::MAX_EXCEPTION_DAYS).contains(&d) => d,
        _ => {
            c.flash(
                &s,
                Flash::Failed(format!(
                    "days must be a whole number from 1 to {}",
                    registry::model::MAX_EXCEPTION_DAYS
                )),
            );
            return Redirect::to("/console/exceptions").into_response();
        }
    };
    c.act(
        &s,
        "/console/exceptions",
        move |plane, who| {
            let now = plane.store().clock().now();
            let expires = now
                .checked_add(jiff::SignedDuration::from_hours(24 * days))
                .map_err(|e| plane::Error::bad(e.to_string()))?;
            let g = ExceptionGrant {
                id: None,
                source: f.source.trim().to_string(),
                path: f.path.trim().to_string(),
                reason: f.reason.trim().to_string(),
                expires_at: expires.to_string(),
            };
            plane.grant_exception(who, g)
        },
        |o| Flash::Done(format!("exception {} granted (audit #{})", o.id, o.audit_seq)),
    )
    .await
}

#[derive(Deserialize)]
struct PrincipalForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    tier_ceiling: String,
    #[serde(default)]
    sources: String,
    #[serde(default)]
    all_sources: Option<String>,
    #[serde(default)]
    description: String,
}

async fn add_principal(State(c): C, headers: HeaderMap, Form(f): Form<PrincipalForm>) -> Response {
    let s = action_or_return!(c, headers, &f.csrf, Operation::AddPrincipal);
    let req = PrincipalRequest {
        name: f.name,
        role: f.role,
        tier_ceiling: f.tier_ceiling.trim().parse().unwrap_or(0),
        sources: f
            .sources
            .split([',', '\n', ' '])
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect(),
        all_sources: f.all_sources.is_some(),
        description: Some(f.description),
    };
    c.act(
        &s,
        "/console/principals",
        move |plane, who| plane.add_principal(who, req),
        |o| Flash::Token {
            principal: o.principal,
            token: o.token,
        },
    )
    .await
}

async fn verify(State(c): C, headers: HeaderMap, Form(f): Form<CsrfOnly>) -> Response {
    let s = action_or_return!(c, headers, &f.csrf, Operation::VerifyAudit);
    c.act(
        &s,
        "/console/activity",
        |plane, _| plane.audit_verify(),
        Flash::Verified,
    )
    .await
}

async fn stop(State(c): C, headers: HeaderMap, Form(f): Form<ReasonForm>) -> Response {
    let s = action_or_return!(c, headers, &f.csrf, Operation::Stop);
    let reason = f.reason;
    c.act(
        &s,
        "/console/sources",
        move |plane, who| plane.stop(who, &reason),
        |_| Flash::Done("stopped: every operation but resume and revoke is refused".into()),
    )
    .await
}

async fn resume(State(c): C, headers: HeaderMap, Form(f): Form<CsrfOnly>) -> Response {
    let s = action_or_return!(c, headers, &f.csrf, Operation::Resume);
    c.act(
        &s,
        "/console/sources",
        |plane, who| plane.resume(who),
        |_| Flash::Done("resumed".into()),
    )
    .await
}

/// Percent-encodes a path segment.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The console's routes, with their own state and security headers.
pub fn router(plane: Arc<Plane>) -> Router {
    let c = Console::new(plane);
    Router::new()
        .route("/", get(root))
        .route("/console", get(console_home))
        .route("/console/signin", get(signin_page).post(signin))
        .route("/console/signout", post(signout))
        .route("/console/sources", get(sources_page).post(propose))
        .route("/console/sources/{id}", get(source_page))
        .route("/console/sources/{id}/decide", post(decide))
        .route("/console/sources/{id}/{verb}", post(source_action))
        .route("/console/packages", get(packages_page))
        .route("/console/exceptions", get(exceptions_page).post(grant))
        .route("/console/principals", get(principals_page).post(add_principal))
        .route("/console/activity", get(activity_page))
        .route("/console/activity/verify", post(verify))
        .route("/console/stop", post(stop))
        .route("/console/resume", post(resume))
        .route("/console/state", get(state))
        .route("/console/assets/{name}", get(asset))
        .layer(from_fn(headers_layer))
        .with_state(c)
}
