#!/usr/bin/env bash
# Fetches the repositories of the file-localisation benchmark
# (benches/data/file-localisation/repos.txt) as bare clones into
# target/bench-repos/<owner>+<name>.git, and checks that each pinned commit
# is there. Nothing is committed; the test suite never needs these.
#
#   bash scripts/fetch-bench-repos.sh
#   BENCH_MIRRORS=/path/with/<owner>+<name>/repo bash scripts/fetch-bench-repos.sh   # link local bare copies instead
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/bench-repos
mkdir -p "$dest"
grep -v '^\s*#' benches/data/file-localisation/repos.txt | while read -r name commit _lang; do
  [ -n "${name:-}" ] || continue
  dir="$dest/${name/\//+}.git"
  if [ ! -d "$dir" ]; then
    local_copy="${BENCH_MIRRORS:-}/${name/\//+}/repo"
    if [ -n "${BENCH_MIRRORS:-}" ] && [ -d "$local_copy" ]; then
      ln -s "$(cd "$local_copy" && pwd)" "$dir"
    else
      git clone --bare --quiet "https://github.com/$name.git" "$dir"
    fi
  fi
  if ! git --git-dir="$dir" cat-file -e "$commit^{commit}" 2>/dev/null; then
    git --git-dir="$dir" fetch --quiet origin "$commit" || {
      echo "$name: commit $commit not found" >&2
      exit 1
    }
  fi
  echo "$name: $(git --git-dir="$dir" rev-list --count "$commit") commits up to ${commit:0:12}"
done
