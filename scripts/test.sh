#!/usr/bin/env bash
# The test command: the embedding model (fetched and verified once), the
# real peers the tests drive (MCP SDK, MCP Inspector, schemathesis),
# formatting, lints, every test, and benchmarks compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-model.sh
bash scripts/setup-peers.sh
export CTXPLANE_REQUIRE_PEERS=1
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
cargo bench --workspace --locked --no-run
