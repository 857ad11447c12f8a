#!/usr/bin/env bash
# Installs the real peers the tests drive ctxplane with, from their
# registries, into vendor/peers/ (idempotent; versions pinned):
# - the official MCP Python SDK (PyPI `mcp`, auto mode by default) and
#   jsonschema, for tests/peers/mcp_sdk.py;
# - schemathesis (PyPI), the OpenAPI fuzzer;
# - MCP Inspector's CLI (npm `@modelcontextprotocol/inspector`);
# - a real browser for the console tests: Debian's chromium (apt, when
#   missing and this user may install) driven by playwright-core (npm).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=vendor/peers
want="mcp==2.3.0 schemathesis==4.32.5 jsonschema==4.26.0 @modelcontextprotocol/inspector@2.12.0 playwright-core@1.64.1"
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if [ -f "$dest/installed" ] && [ "$(cat "$dest/installed")" = "$want" ] \
  && [ -x "$dest/venv/bin/st" ] && [ -x "$dest/npm/node_modules/.bin/mcp-inspector" ] \
  && [ -f "$dest/npm/node_modules/playwright-core/package.json" ]; then
  echo "test peers ready in $dest"
  exit 0
fi
mkdir -p "$dest"
[ -x "$dest/venv/bin/python" ] || python3 -m venv "$dest/venv"
"$dest/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  mcp==2.3.0 schemathesis==4.32.5 jsonschema==4.26.0
npm install --prefix "$dest/npm" --no-audit --no-fund --loglevel=error \
  @modelcontextprotocol/inspector@2.12.0 playwright-core@1.64.1
echo "$want" > "$dest/installed"
echo "test peers installed in $dest"
