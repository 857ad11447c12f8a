#!/usr/bin/env bash
# The main job: build ctxplane and walk through the example organisation:
# sources, principals and their scopes, policy decisions on real files
# (including a planted .env that must stay out), indexing with redaction and
# tree-sitter chunking, scoped search, freshness, and the audit chain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-model.sh
cargo build --release --locked --bin ctxplane
bin=target/release/ctxplane
data=target/demo-data
rm -rf "$data"
export CTXPLANE_REGISTRY=examples/acme/registry.toml CTXPLANE_DATA_DIR="$data" CTXPLANE_ACTOR=demo
step() { printf '\n\033[1m$ ctxplane %s\033[0m\n' "$*"; "$bin" "$@"; }
step registry list
step registry principal list
step registry exception list
step policy scope support-agent
step policy scope coding-agent
step policy decide payments-api src/lib.rs docs/architecture.md config/.env config/.env.example ../../etc/passwd
step policy decide platform-docs adr/0001-use-postgres.md README.md
step policy decide people-ops handbook.md
step index
step search "retry backoff"
step search postgres
step search postgres --as support-agent
step search "DATABASE_URL password" --json --limit 2
step freshness
step audit tail
step audit verify
