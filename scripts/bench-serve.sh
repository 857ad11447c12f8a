#!/usr/bin/env bash
# Load on `ctxplane serve` from a second process on loopback: queries/s and
# p50/p99 at 1, 8 and 32 clients, with and without a concurrent re-index,
# errors and server memory, then a 120 s soak showing memory levels off.
# Usage: scripts/bench-serve.sh [--seconds N] [--soak N]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-django.sh
bash scripts/setup-model.sh
cargo build --release --locked -p ctxplane -p benches --bin ctxplane --bin serve_load
target/release/serve_load --django vendor/bench/Django-5.1.4 --soak 120 "$@"
