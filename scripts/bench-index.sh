#!/usr/bin/env bash
# Indexing benchmark on a real repository: Django 5.1.4's source
# distribution from PyPI (~6,800 files: Python, RST docs, JS, HTML, PO).
# Prints full-index throughput, no-op re-index time and edit -> searchable
# latency under --watch. Usage: scripts/bench-index.sh [--edits N]
set -euo pipefail
cd "$(dirname "$0")/.."
data=vendor/bench
bash scripts/fetch-django.sh
cargo build --release --locked -p ctxplane -p benches --bin ctxplane --bin index_bench
target/release/index_bench --repo "$data/Django-5.1.4" "$@"
