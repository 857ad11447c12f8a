"""Drives ctxplane's MCP server with the official MCP Python SDK, in its
default (auto) mode: it probes with server/discover first, then falls back
to initialize. Every tool is called; structured results are validated
against the tools' declared output schemas (by the SDK itself, and again
here with jsonschema), and the refusals are checked.

    python mcp_sdk.py stdio CTXPLANE_BIN REGISTRY
    python mcp_sdk.py http URL

Tokens come from the example organisation's demo principals. Prints one
line per check and "N passed, M failed"; exits 1 on any failure.
"""

import asyncio
import json
import os
import sys

import jsonschema
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

AGENT = "demo-agent-platform-token"
SUPPORT = "demo-agent-support-token"
CI = "demo-ci-token"

results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"), flush=True)


def stdio_client(binary, registry, token):
    env = {"CTXPLANE_TOKEN": token, "RUST_LOG": "warn"}
    for k in ("CTXPLANE_MODEL_DIR", "CTXPLANE_DATA_DIR"):
        if k in os.environ:
            env[k] = os.environ[k]
    params = StdioServerParameters(command=binary, args=["--registry", registry, "mcp", "--no-watch"], env=env)
    return Client(params)  # default mode="auto"


class Http:
    def __init__(self, url, token):
        self.url, self.token = url, token

    async def __aenter__(self):
        self.http = create_mcp_http_client(headers={"Authorization": f"Bearer {self.token}"})
        await self.http.__aenter__()
        self.client = Client(streamable_http_client(self.url, http_client=self.http))
        return await self.client.__aenter__()

    async def __aexit__(self, *exc):
        await self.client.__aexit__(*exc)
        await self.http.__aexit__(*exc)


async def session(open_client, token, checks):
    async with open_client(token) as client:
        await checks(client)


async def as_agent(client):
    tools = {t.name: t for t in (await client.list_tools()).tools}
    check("four tools", set(tools) == {"get_context", "explain_provenance", "list_sources", "freshness_report"}, tools.keys())
    for name, t in tools.items():
        check(f"{name}: output schema declared", isinstance(t.output_schema, dict) and t.output_schema.get("type") == "object", t.output_schema)
        check(f"{name}: read-only annotation", t.annotations is not None and t.annotations.read_only_hint is True, t.annotations)
        schema = t.input_schema
        check(f"{name}: unknown arguments refused by the schema", schema.get("additionalProperties") is False, schema)
        for prop, s in schema.get("properties", {}).items():
            check(f"{name}.{prop}: a plain type", isinstance(s.get("type"), str) or "$ref" in s, s)

    def valid(name, res):
        try:
            jsonschema.validate(res.structured_content, tools[name].output_schema)
            return True, ""
        except jsonschema.ValidationError as e:
            return False, e.message

    res = await client.call_tool("get_context", {"query": "Is it safe to retry a capture?", "max_tokens": 3000, "limit": 5})
    check("get_context answers", not res.is_error and res.structured_content is not None, res.content)
    check("get_context matches its output schema", *valid("get_context", res))
    answer = res.structured_content or {}
    check("the budget bounds what is delivered", answer.get("delivered_tokens", 10**9) <= 3000
          or len(answer.get("results", [])) <= 1, answer.get("delivered_tokens"))
    text = "".join(getattr(c, "text", "") for c in res.content)
    check("the text rendering is short", len(text) < 300, len(text))

    res = await client.call_tool("get_context", {"query": "ledger reconciliation", "mode": "lexical", "packages": False, "sources": ["ledger-worker"], "limit": 3})
    hits = (res.structured_content or {}).get("results", [])
    check("get_context takes the HTTP options", not res.is_error and hits and all(h["provenance"]["source"] == "ledger-worker" for h in hits), res.content)
    rid = hits[0]["id"] if hits else "c-none"

    res = await client.call_tool("explain_provenance", {"result_id": rid})
    check("explain_provenance answers", not res.is_error and res.structured_content.get("result_id") == rid, res.content)
    check("explain_provenance matches its output schema", *valid("explain_provenance", res))

    res = await client.call_tool("list_sources", {})
    ids = sorted(s["id"] for s in (res.structured_content or {}).get("sources", []))
    check("list_sources: the scope", not res.is_error and ids == ["ledger-worker", "payments-api", "platform-docs"], ids)
    check("list_sources matches its output schema", *valid("list_sources", res))

    res = await client.call_tool("freshness_report", {})
    check("freshness_report answers", not res.is_error and len(res.structured_content["sources"]) == 3, res.content)
    check("freshness_report matches its output schema", *valid("freshness_report", res))

    res = await client.call_tool("get_context", {"query": "x", "bogus": 1})
    check("unknown arguments are refused", res.is_error, res.content)
    res = await client.call_tool("list_sources", {"bogus": 1})
    check("unknown arguments are refused without parameters too", res.is_error, res.content)
    res = await client.call_tool("get_context", {"query": "x", "limit": 1000})
    check("out-of-range options are refused", res.is_error, res.content)
    res = await client.call_tool("explain_provenance", {"result_id": "c-does-not-exist"})
    check("an unknown result id is a tool error", res.is_error, res.content)


async def as_support(client):
    # Tier ceiling 1: the tier-2 sources do not exist for it.
    res = await client.call_tool("list_sources", {})
    ids = sorted(s["id"] for s in res.structured_content.get("sources", []))
    check("a tier-1 agent sees only tier-1 sources", ids == ["platform-docs"], ids)
    res = await client.call_tool("get_context", {"query": "ledger capture payments", "packages": False})
    srcs = {h["provenance"]["source"] for h in res.structured_content.get("results", [])}
    check("and is served only from them", srcs <= {"platform-docs"}, srcs)


async def as_ci(client):
    for tool, args in [("get_context", {"query": "x"}), ("explain_provenance", {"result_id": "c-x"})]:
        res = await client.call_tool(tool, args)
        text = "".join(getattr(c, "text", "") for c in res.content)
        check(f"ci is refused {tool}, as over HTTP", res.is_error and "forbidden" in text, text)
    res = await client.call_tool("list_sources", {})
    check("ci may list its sources, as over HTTP", not res.is_error, res.content)


async def main():
    mode = sys.argv[1]
    if mode == "stdio":
        binary, registry = sys.argv[2], sys.argv[3]
        opener = lambda token: stdio_client(binary, registry, token)
    else:
        url = sys.argv[2]
        opener = lambda token: Http(url, token)
    await session(opener, AGENT, as_agent)
    await session(opener, SUPPORT, as_support)
    await session(opener, CI, as_ci)
    print(f"{results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    asyncio.run(main())
