#!/usr/bin/env bash
# Fetches Django 5.1.4's source distribution from PyPI into vendor/bench/
# (once): the real repository the indexing and topic benchmarks run on.
set -euo pipefail
cd "$(dirname "$0")/.."
data=vendor/bench
if [ ! -d "$data/Django-5.1.4" ]; then
  mkdir -p "$data"
  python3 -m pip download --quiet --no-deps --no-binary :all: "django==5.1.4" -d "$data"
  tar -xzf "$data/Django-5.1.4.tar.gz" -C "$data"
fi
