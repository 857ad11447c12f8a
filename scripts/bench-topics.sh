#!/usr/bin/env bash
# Tier-1 benchmark: topic packages over Django 5.1.4's docs against hybrid
# search. Calibrates the match threshold on the dev half of the labelled
# query set and reports precision, share served, tokens and latency on the
# test half. Usage: scripts/bench-topics.sh
set -euo pipefail
cd "$(dirname "$0")/.."
data=vendor/bench
bash scripts/fetch-django.sh
bash scripts/setup-model.sh
cargo build --release --locked -p benches --bin topic_eval
target/release/topic_eval --django "$data/Django-5.1.4"
