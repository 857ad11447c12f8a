//! The OpenAPI 3.1 document `ctxplane serve` serves at `/v1/openapi.json`.

use serde_json::{Value, json};

fn op(summary: &str, roles: &str, body: Option<Value>, params: Vec<Value>) -> Value {
    let mut o = json!({
        "summary": summary,
        "description": format!("Roles: {roles}."),
        "security": [{"bearer": []}],
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"},
            "403": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
            "413": {"$ref": "#/components/responses/Error"},
            "503": {"description": "Emergency stop: {\"error\": \"stopped\", \"reason\": ...}"},
        },
    });
    if let Some(schema) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema}}});
    }
    o
}

fn path_param(name: &str, what: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": what, "schema": {"type": "string"}})
}

fn query_param(name: &str, what: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": what, "schema": {"type": ty}})
}

pub fn document() -> Value {
    let str_array = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ctxplane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "What AI agents may know about an organisation's code and docs, with provenance. Every /v1 endpoint except openapi.json takes `Authorization: Bearer <token>`; 401 and 403 bodies say nothing about what exists.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "An error", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}},
        },
        "paths": {
            "/v1/context": {"post": op(
                "Context for a query: a topic package (tier 1) or hybrid search results (tier 2), within the caller's scope and the token budget, each with provenance.",
                "agent, developer, steward",
                Some(json!({"type": "object", "required": ["query"], "additionalProperties": false, "properties": {
                    "query": {"type": "string", "maxLength": 8192},
                    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 200000, "default": 4000},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                    "sources": str_array.clone(),
                    "mode": {"enum": ["hybrid", "lexical", "dense"]},
                    "packages": {"type": "boolean", "default": true},
                }})),
                vec![],
            )},
            "/v1/provenance/{result_id}": {"get": op(
                "The provenance of a result id (chunk `c-…` or `topic:<id>`) the caller may read; otherwise 404.",
                "agent, developer, steward",
                None,
                vec![path_param("result_id", "a result id from /v1/context")],
            )},
            "/v1/sources": {
                "get": op("Sources: the registry for stewards, the sources in scope for everyone else.", "all", None, vec![]),
                "post": op("Propose a source (status `proposed`).", "steward", Some(json!({"type": "object",
                    "required": ["id", "kind", "location", "owner", "tier"], "properties": {
                    "id": {"type": "string"}, "kind": {"enum": ["dir", "git"]}, "location": {"type": "string"},
                    "owner": {"type": "string"}, "tier": {"type": "integer", "minimum": 1, "maximum": 4},
                    "description": {"type": "string"}, "include": str_array.clone(), "exclude": str_array.clone(),
                    "never_ingest": str_array.clone()}})), vec![]),
            },
            "/v1/sources/{id}/{verb}": {"post": op(
                "approve, deny or revoke a source. Revoke purges every chunk, vector and manifest entry of the source and returns what remains (nothing, or 500); it works during an emergency stop.",
                "steward",
                Some(json!({"type": "object", "properties": {"reason": {"type": "string"}}})),
                vec![path_param("id", "source id"), path_param("verb", "approve | deny | revoke")],
            )},
            "/v1/exceptions": {
                "get": op("Exceptions and whether each is live.", "steward", None, vec![]),
                "post": op("Grant a never-ingest exception for a path glob until a time.", "steward", Some(json!({"type": "object",
                    "required": ["source", "path", "reason", "expires_at"], "properties": {
                    "id": {"type": "string"}, "source": {"type": "string"}, "path": {"type": "string"},
                    "reason": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}}})), vec![]),
            },
            "/v1/audit": {"get": op("The last audit entries.", "steward", None, vec![query_param("n", "how many (default 50)", "integer")])},
            "/v1/audit/verify": {"get": op("Verify the audit hash chain.", "steward", None, vec![])},
            "/v1/freshness": {"get": op("Freshness and drift per source (scope-filtered for non-stewards).", "all", None,
                vec![query_param("source", "one source", "string")])},
            "/v1/check": {"get": op("The `ctxplane check` report: context packages, topic packages, drift. Stewards see every source; CI and developers only the sources in their scope and the topic packages citing only those.", "ci, developer, steward", None,
                vec![query_param("source", "one source", "string")])},
            "/v1/admin/stop": {"post": op("Emergency stop: every /v1 endpoint but /v1/admin answers 503 with the reason, and ingestion pauses, until resumed (survives restarts).",
                "steward", Some(json!({"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string"}}})), vec![])},
            "/v1/admin/resume": {"post": op("Resume serving and ingesting; catches up on changes.", "steward", None, vec![])},
            "/v1/openapi.json": {"get": {"summary": "This document.", "responses": {"200": {"description": "OK"}}}},
            "/healthz": {"get": {"summary": "Liveness.", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Readiness: model and index status; 503 during an emergency stop.", "responses": {"200": {"description": "ready"}, "503": {"description": "stopped"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics: queries by tier, latency histogram, tokens served, index lag, vector coverage, denied and redacted counts, auth failures.", "responses": {"200": {"description": "text/plain"}}}},
        },
    })
}
