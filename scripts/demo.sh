#!/usr/bin/env bash
# The main job: build ctxplane and walk through the example organisation:
# sources, principals and their scopes, policy decisions on real files
# (including a planted .env that must stay out), indexing with redaction and
# tree-sitter chunking, topic packages (tier 1) and scoped search (tier 2),
# provenance, freshness and drift, the CI check, and the audit chain.
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
step packages list
step query "is it safe to retry a capture?" --as coding-agent
step query "is it safe to retry a capture?" --as support-agent --max-tokens 400
step query "how do we fail over the database?" --as support-agent
step query "are reconciliation mismatches fixed automatically?" --as coding-agent
step query "who owns the ledger writer?" --as coding-agent --limit 3
step query "DATABASE_URL password" --json --limit 1 --no-packages
id=$("$bin" query "retry a failed payment" --json --limit 1 --no-packages | grep -o '"id": "c-[0-9a-f]*"' | head -1 | cut -d'"' -f4)
step provenance "$id"
step provenance topic:ledger-reconciliation
step freshness
printf '\n(check exits 1: the example plants drift, an incomplete context package and two stale topic packages)\n'
step check || true
step status
step audit tail
step audit verify
