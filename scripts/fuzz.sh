#!/usr/bin/env bash
# Fuzz the parsers with cargo fuzz (libFuzzer): the registry, every
# lockfile format, topic and context packages, the redactor and the
# chunkers of every language.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, all)
#
# Seed corpora are built from the repository's own files (example registry,
# sources, topic packages, chunker fixtures) and fuzz/seeds/; corpora grow
# under target/fuzz-corpus/ and survive between runs. A crash leaves its
# input in fuzz/artifacts/<target>/ and fails the script; turn it into a
# regression test before fixing it. Per target it prints libFuzzer's final
# stats (executions, coverage). Uses a nightly toolchain when one is
# installed (with AddressSanitizer), else stable without a sanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(registry lockfile topic_package context_package redact chunk)
fi

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

toolchain=()
sanitizer=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  # libFuzzer's instrumentation flags are stable; the sanitizer is not.
  export RUSTC_BOOTSTRAP=1
  sanitizer=(--sanitizer none)
fi

corpus=target/fuzz-corpus
seed() { # seed TARGET PREFIX_BYTE FILE...
  local t=$1 prefix=$2
  shift 2
  mkdir -p "$corpus/$t"
  for f in "$@"; do
    [ -f "$f" ] || continue
    local out
    out="$corpus/$t/seed-$(basename "$f")-$prefix"
    if [ "$prefix" = "-" ]; then
      head -c 65536 "$f" >"$out"
    else
      { printf "\\x$(printf %02x "$prefix")"; head -c 65536 "$f"; } >"$out"
    fi
  done
}

seed registry - examples/acme/registry.toml
seed topic_package - examples/acme/topics/*.md
seed context_package - examples/acme/sources/*/context-package.toml
seed redact - examples/acme/sources/payments-api/config/* examples/acme/sources/*/README.md
# The first byte picks the format / language (the order of the lists in
# fuzz/fuzz_targets/lockfile.rs and chunk.rs).
seed lockfile 0 examples/acme/sources/payments-api/Cargo.lock
seed lockfile 1 fuzz/seeds/lockfile/package-lock.json
seed lockfile 3 fuzz/seeds/lockfile/pnpm-lock.yaml
seed lockfile 4 fuzz/seeds/lockfile/yarn.lock
seed lockfile 5 fuzz/seeds/lockfile/go.mod
seed lockfile 6 fuzz/seeds/lockfile/poetry.lock
seed lockfile 7 fuzz/seeds/lockfile/uv.lock
seed lockfile 8 fuzz/seeds/lockfile/Gemfile.lock
seed lockfile 9 fuzz/seeds/lockfile/requirements.txt examples/acme/sources/ledger-worker/requirements.txt
languages=(rust python javascript typescript tsx go java c cpp bash markdown rst toml yaml json text)
for i in "${!languages[@]}"; do
  case ${languages[$i]} in
    rust) ext=rs ;; python) ext=py ;; javascript) ext=js ;; typescript) ext=ts ;;
    tsx) ext=tsx ;; go) ext=go ;; java) ext=java ;; c) ext=c ;; cpp) ext=cpp ;;
    bash) ext=sh ;; markdown) ext=md ;; rst) ext=rst ;; toml) ext=toml ;;
    yaml) ext=yaml ;; json) ext=json ;; *) ext=txt ;;
  esac
  # shellcheck disable=SC2046
  seed chunk "$i" $(find indexer/tests/fixtures examples/acme -name "*.$ext" 2>/dev/null | head -5)
done

status=0
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${secs}s"
  mkdir -p "$corpus/$t" "fuzz/artifacts/$t"
  if ! (cd fuzz && cargo "${toolchain[@]}" fuzz run "${sanitizer[@]}" -O --fuzz-dir . \
      --target-dir ../target/fuzz "$t" "../$corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="artifacts/$t/" 2>&1 |
      grep -E '^(stat::|==|#[0-9]+ +DONE|Done|SUMMARY|.*panicked|.*ERROR|Test unit written|Base64)'); then
    :
  fi
  if ls "fuzz/artifacts/$t"/crash-* "fuzz/artifacts/$t"/timeout-* "fuzz/artifacts/$t"/oom-* >/dev/null 2>&1; then
    echo "!! $t: failing inputs in fuzz/artifacts/$t/" >&2
    status=1
  fi
done
exit $status
