#!/usr/bin/env bash
# The main job: set up (model included), build, and run `ctxplane demo` on
# the example organisation in examples/acme: it indexes it, answers agent
# questions from both tiers with provenance, shows freshness, drift, the
# CI check and the audit chain, then serves the HTTP API on loopback with
# the demo tokens printed. Extra arguments go to `ctxplane demo`
# (e.g. --listen 127.0.0.1:8080, --no-serve).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-model.sh
cargo build --release --locked --bin ctxplane
data=target/demo-data
rm -rf "$data"
export CTXPLANE_REGISTRY=examples/acme/registry.toml CTXPLANE_DATA_DIR="$data" CTXPLANE_ACTOR=demo
exec "${CARGO_TARGET_DIR:-target}/release/ctxplane" demo "$@"
