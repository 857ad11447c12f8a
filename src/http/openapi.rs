//! The OpenAPI 3.1 document served at `/v1/openapi.json`. Request and
//! response schemas are derived from the very types the handlers
//! deserialize and return (schemars), so the document cannot drift from
//! the server; the route list is checked against the router's operation
//! table by a test.

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use plane::Operation;
use plane::query::{ContextRequest, Delivered, MAX_QUERY_BYTES};
use plane::stewardship::{ExceptionGrant, GrantOutcome, SourceProposal};

use super::{ReasonBody, RequiredReason, StopBody};

/// One documented operation.
struct Op {
    method: &'static str,
    path: &'static str,
    op: Option<Operation>,
    summary: &'static str,
    body: Option<(Value, bool)>,
    params: Vec<Value>,
    ok: (u16, Value),
}

fn path_param(name: &str, what: &str, max: Option<usize>) -> Value {
    let mut schema = json!({"type": "string", "minLength": 1});
    if let Some(m) = max {
        schema["maxLength"] = json!(m);
    }
    json!({"name": name, "in": "path", "required": true, "description": what, "schema": schema})
}

fn query_param(name: &str, what: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": what, "schema": schema})
}

fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

fn object(description: &str) -> Value {
    json!({"type": "object", "description": description})
}

fn roles(op: Operation) -> String {
    let names: Vec<&str> = op.roles().iter().map(|r| r.as_str()).collect();
    let stop = if op.even_when_stopped() {
        " Allowed during an emergency stop."
    } else {
        ""
    };
    format!("Roles: {}.{stop}", names.join(", "))
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    })
}

fn operations(g: &mut SchemaGenerator) -> Vec<Op> {
    use Operation::*;
    let source = || {
        let mut p = path_param("id", "A source id.", Some(64));
        p["schema"]["pattern"] = json!("^[a-z0-9][a-z0-9._-]{0,63}$");
        p
    };
    vec![
        Op {
            method: "post",
            path: "/v1/context",
            op: Some(Context),
            summary: "Grounded context for a question: a topic package when one answers it, otherwise search results; every item with provenance; trimmed so that max_tokens bounds everything returned.",
            body: Some((of::<ContextRequest>(g), true)),
            params: vec![],
            ok: (200, of::<Delivered>(g)),
        },
        Op {
            method: "get",
            path: "/v1/provenance/{id}",
            op: Some(Provenance),
            summary: "The whole chain behind a result id (`c-…` or `topic:<id>`), or an answer's snapshot (`snap-…`, as under /v1/snapshots); a result outside the caller's scope is the same 404 as an unknown one.",
            body: None,
            params: vec![path_param("id", "A result id from /v1/context.", Some(200))],
            ok: (
                200,
                object(
                    "The result's content, provenance tag, registry entry and history, ingest, redactions and checks now.",
                ),
            ),
        },
        Op {
            method: "get",
            path: "/v1/snapshots/{id}",
            op: Some(Snapshot),
            summary: "An answer's snapshot (the `snapshot.id` of a /v1/context answer): what it was grounded in and whether each part still holds now (unchanged, moved, changed with the changed lines, removed, source revoked, now never-ingest), with a verdict. Stewards see every snapshot, a principal its own and those whose every result it may read; any other is the same 404 as an unknown one.",
            body: None,
            params: vec![{
                let mut p = path_param("id", "A snapshot id, `snap-<yyyymmdd>-<24 hex>`.", Some(200));
                p["schema"]["pattern"] = json!("^(ctxplane:)?snap-[0-9]{8}-[0-9a-f]{24}$");
                p
            }],
            ok: (200, of::<plane::snapshots::Resolution>(g)),
        },
        Op {
            method: "get",
            path: "/v1/sources",
            op: Some(ListSources),
            summary: "Sources: stewards see the registry; everyone else the sources in their scope.",
            body: None,
            params: vec![],
            ok: (200, object("{sources: [...]} (stewards also registry_version).")),
        },
        Op {
            method: "post",
            path: "/v1/sources",
            op: Some(ProposeSource),
            summary: "Propose a source (status proposed).",
            body: Some((of::<SourceProposal>(g), true)),
            params: vec![],
            ok: (201, object("{status, source, audit_seq, registry_version}.")),
        },
        Op {
            method: "post",
            path: "/v1/sources/{id}/approve",
            op: Some(Approve),
            summary: "Approve a source; a serving process starts ingesting it at once.",
            body: Some((of::<ReasonBody>(g), false)),
            params: vec![source()],
            ok: (200, of::<plane::stewardship::StatusOutcome>(g)),
        },
        Op {
            method: "post",
            path: "/v1/sources/{id}/deny",
            op: Some(Deny),
            summary: "Deny a proposed source (a reason is required).",
            body: Some((of::<RequiredReason>(g), true)),
            params: vec![source()],
            ok: (200, of::<plane::stewardship::StatusOutcome>(g)),
        },
        Op {
            method: "post",
            path: "/v1/sources/{id}/revoke",
            op: Some(Revoke),
            summary: "Revoke a source (a reason is required): its content is purged from every store at once and the answer proves what remains (all zero), or 500 with the remainder.",
            body: Some((of::<RequiredReason>(g), true)),
            params: vec![source()],
            ok: (200, of::<plane::stewardship::StatusOutcome>(g)),
        },
        Op {
            method: "get",
            path: "/v1/exceptions",
            op: Some(ListExceptions),
            summary: "Exceptions and their window now (live, not yet live, expired).",
            body: None,
            params: vec![],
            ok: (200, object("{now, exceptions: [...]}.")),
        },
        Op {
            method: "post",
            path: "/v1/exceptions",
            op: Some(GrantException),
            summary: "Grant a never-ingest exception for one path, for at most 366 days.",
            body: Some((of::<ExceptionGrant>(g), true)),
            params: vec![],
            ok: (201, of::<GrantOutcome>(g)),
        },
        Op {
            method: "get",
            path: "/v1/audit",
            op: Some(ReadAudit),
            summary: "The latest audit entries.",
            body: None,
            params: vec![query_param(
                "n",
                "How many entries (default 50).",
                json!({"type": "integer", "minimum": 1, "maximum": 10000}),
            )],
            ok: (200, object("{entries: [...]}.")),
        },
        Op {
            method: "get",
            path: "/v1/audit/verify",
            op: Some(VerifyAudit),
            summary: "Verify the audit chain.",
            body: None,
            params: vec![],
            ok: (200, object("{entries, intact, first_bad, notes}.")),
        },
        Op {
            method: "get",
            path: "/v1/freshness",
            op: Some(Freshness),
            summary: "Freshness per source (stewards: every source; others: their scope).",
            body: None,
            params: vec![query_param(
                "source",
                "Only this source.",
                json!({"type": "string"}),
            )],
            ok: (200, of::<plane::lookup::FreshnessReport>(g)),
        },
        Op {
            method: "get",
            path: "/v1/check",
            op: Some(Check),
            summary: "The CI check (context packages, topic packages, version drift); stewards: every source, others: their scope.",
            body: None,
            params: vec![query_param(
                "source",
                "Only this source.",
                json!({"type": "string"}),
            )],
            ok: (200, of::<plane::check::CheckReport>(g)),
        },
        Op {
            method: "post",
            path: "/v1/admin/stop",
            op: Some(Stop),
            summary: "Emergency stop: every /v1 operation but stop, resume and revoke answers 503 and ingestion pauses, until resumed; survives a restart.",
            body: Some((of::<StopBody>(g), true)),
            params: vec![],
            ok: (200, of::<plane::access::StopState>(g)),
        },
        Op {
            method: "get",
            path: "/v1/principals",
            op: Some(ListPrincipals),
            summary: "Principals: role, tier ceiling, grant, what each may read now and a token hash prefix (never a token).",
            body: None,
            params: vec![],
            ok: (200, object("{principals: [...]}.")),
        },
        Op {
            method: "post",
            path: "/v1/principals",
            op: Some(AddPrincipal),
            summary: "Add a principal with a fresh token, returned once; the registry keeps only its hash.",
            body: Some((of::<plane::overview::PrincipalRequest>(g), true)),
            params: vec![],
            ok: (201, of::<plane::overview::PrincipalAdded>(g)),
        },
        Op {
            method: "post",
            path: "/v1/policy/decide",
            op: Some(DecidePolicy),
            summary: "What the policy decides now for paths of a source (allow, or deny with the reason; audited as policy.decide).",
            body: Some((of::<plane::overview::DecideRequest>(g), true)),
            params: vec![],
            ok: (
                200,
                object(
                    "{decisions: [{id, source, path, registry_version, outcome (allow or deny), reason, ...}]}.",
                ),
            ),
        },
        Op {
            method: "post",
            path: "/v1/admin/resume",
            op: Some(Resume),
            summary: "Lift the emergency stop and catch up on changes.",
            body: None,
            params: vec![],
            ok: (200, of::<plane::access::StopState>(g)),
        },
    ]
}

/// The (method, path, operation) of every documented `/v1` operation.
#[cfg(test)]
pub fn documented() -> Vec<(String, String, Option<Operation>)> {
    let mut g = SchemaSettings::draft2020_12().into_generator();
    operations(&mut g)
        .into_iter()
        .map(|o| (o.method.to_uppercase(), o.path.to_string(), o.op))
        .collect()
}

fn operation_id(o: &Op) -> String {
    match o.op {
        Some(op) => {
            let mut out = String::new();
            let mut up = false;
            for c in op.name().chars() {
                if c == '_' {
                    up = true;
                } else if up {
                    out.extend(c.to_uppercase());
                    up = false;
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => o.path.trim_start_matches('/').replace('/', "_"),
    }
}

pub fn document() -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "#/components/schemas/".into())
        .into_generator();
    let ops = operations(&mut g);
    let mut paths = Map::new();
    for o in &ops {
        let mut responses = Map::new();
        responses.insert(
            o.ok.0.to_string(),
            json!({"description": "Success.", "content": {"application/json": {"schema": o.ok.1}}}),
        );
        responses.insert("400".into(), error_response("Malformed or out-of-range input."));
        responses.insert(
            "401".into(),
            json!({
                "description": "No valid bearer token.",
                "headers": {"WWW-Authenticate": {"required": true, "schema": {"type": "string"}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }),
        );
        responses.insert(
            "403".into(),
            error_response("The principal's role may not use this operation."),
        );
        responses.insert(
            "404".into(),
            error_response("No such thing, or nothing the caller may see."),
        );
        responses.insert("405".into(), error_response("Method not allowed."));
        responses.insert("408".into(), error_response("The request took longer than 30 s."));
        responses.insert(
            "500".into(),
            error_response("A fault of the server (see its log)."),
        );
        responses.insert(
            "503".into(),
            json!({
                "description": "An emergency stop is in force (`error`: stopped), or a read-only replica cannot reach its index server yet (`error`: unavailable, with Retry-After).",
                "headers": {"Retry-After": {"required": false, "description": "Seconds until a retry may succeed (unavailable only).", "schema": {"type": "integer"}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }),
        );
        responses.insert(
            "429".into(),
            json!({
                "description": "The principal's request rate or daily context-token quota is used up.",
                "headers": {"Retry-After": {"required": true, "description": "Seconds until a retry can succeed.", "schema": {"type": "integer"}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }),
        );
        if o.body.is_some() {
            responses.insert("409".into(), error_response("Conflicts with the current state."));
            responses.insert(
                "413".into(),
                error_response("Body or query larger than the limits."),
            );
            responses.insert("415".into(), error_response("The body is not application/json."));
            responses.insert(
                "422".into(),
                error_response("The JSON does not match the request schema."),
            );
        }
        let mut op = json!({
            "operationId": operation_id(o),
            "summary": o.summary,
            "description": o.op.map(roles).unwrap_or_default(),
            "responses": responses,
            "security": [{"bearer": []}],
        });
        if !o.params.is_empty() {
            op["parameters"] = json!(o.params);
        }
        if let Some((schema, required)) = &o.body {
            op["requestBody"] = json!({
                "required": required,
                "content": {"application/json": {"schema": schema}},
            });
        }
        paths
            .entry(o.path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|m| m.insert(o.method.to_string(), op));
    }
    let text =
        |desc: &str| json!({"description": desc, "content": {"text/plain": {"schema": {"type": "string"}}}});
    paths.insert(
        "/healthz".into(),
        json!({"get": {"operationId": "healthz", "summary": "Liveness.", "security": [], "responses": {"200": text("ok"), "405": error_response("Method not allowed.")}}}),
    );
    paths.insert(
        "/readyz".into(),
        json!({"get": {"operationId": "readyz", "summary": "Readiness: model, index, emergency stop.", "security": [],
            "responses": {"200": {"description": "Serving.", "content": {"application/json": {"schema": {"type": "object"}}}},
                          "503": {"description": "Stopped, no index, or the index server cannot be reached.", "content": {"application/json": {"schema": {"type": "object"}}}},
                          "405": error_response("Method not allowed.")}}}),
    );
    paths.insert(
        "/metrics".into(),
        json!({"get": {"operationId": "metrics", "summary": "Prometheus metrics (text format 0.0.4).", "security": [], "responses": {"200": text("metrics"), "405": error_response("Method not allowed.")}}}),
    );
    paths.insert(
        "/v1/openapi.json".into(),
        json!({"get": {"operationId": "openapi", "summary": "This document.", "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}, "405": error_response("Method not allowed.")}}}),
    );
    let mut schemas = g.take_definitions(true);
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "What was wrong (fixed strings for 401 and 403)."},
                "kind": {"type": "string"},
                "reason": {"type": "string", "description": "The emergency stop's reason or what cannot be reached (503), or which limit was reached (429)."},
                "retry_after_secs": {"type": "integer", "description": "Seconds until a retry can succeed (429, and 503 unavailable)."},
                "detail": {"type": "object"},
            },
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ctxplane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "What AI agents may know about an organisation's code and docs, with provenance. Every /v1 operation takes Authorization: Bearer <token>; the caller is authenticated and authorised before the body is read. Bodies are at most {} bytes, queries at most {MAX_QUERY_BYTES} bytes of UTF-8, requests at most 30 s.",
                super::MAX_BODY_BYTES
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}
