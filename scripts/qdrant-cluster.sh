#!/usr/bin/env bash
# Starts a three-node Qdrant cluster on loopback from a server binary (built
# from Qdrant's source; see the README), for the scale-out tests and for
# trying ctxplane on a cluster:
#
#   scripts/qdrant-cluster.sh start BIN DIR [BASE_PORT]   (default 16400)
#   scripts/qdrant-cluster.sh stop DIR
#
# Node N (1..3) keeps its storage in DIR/nodeN and listens on BASE_PORT+N*10
# +1 (REST), +2 (gRPC), +3 (peer-to-peer); node 1 starts the cluster and the
# others join it. `start` returns once the cluster has three peers and
# prints the gRPC URLs (qdrant_url takes any of them); each node's pid is in
# DIR/nodeN/pid.
set -euo pipefail
cmd=${1:?usage: qdrant-cluster.sh start BIN DIR [BASE_PORT] | stop DIR}
case "$cmd" in
start)
  bin=$(realpath "${2:?the Qdrant binary}")
  dir=$(realpath -m "${3:?a directory for the nodes}")
  base=${4:-16400}
  mkdir -p "$dir"
  for n in 1 2 3; do
    node="$dir/node$n"
    mkdir -p "$node"
    p=$((base + n * 10))
    args=(--uri "http://127.0.0.1:$((p + 3))")
    if [ "$n" != 1 ]; then
      args+=(--bootstrap "http://127.0.0.1:$((base + 13))")
    fi
    (
      cd "$node"
      QDRANT__SERVICE__HOST=127.0.0.1 \
      QDRANT__SERVICE__HTTP_PORT=$((p + 1)) QDRANT__SERVICE__GRPC_PORT=$((p + 2)) \
      QDRANT__CLUSTER__ENABLED=true QDRANT__CLUSTER__P2P__PORT=$((p + 3)) \
      QDRANT__STORAGE__STORAGE_PATH="$node/storage" QDRANT__STORAGE__SNAPSHOTS_PATH="$node/snapshots" \
      QDRANT__TELEMETRY_DISABLED=true \
      exec "$bin" "${args[@]}" >"$node/qdrant.log" 2>&1 </dev/null
    ) &
    echo $! >"$node/pid"
    # The first node must be up before the others bootstrap from it.
    for _ in $(seq 1 120); do
      curl -sf "http://127.0.0.1:$((p + 1))/readyz" >/dev/null 2>&1 && break
      sleep 0.5
    done
  done
  for _ in $(seq 1 120); do
    peers=$(curl -sf "http://127.0.0.1:$((base + 11))/cluster" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["result"]["peers"]))' 2>/dev/null || echo 0)
    [ "$peers" = 3 ] && break
    sleep 0.5
  done
  if [ "$peers" != 3 ]; then
    echo "the cluster did not form (peers: $peers); logs in $dir/node*/qdrant.log" >&2
    exit 1
  fi
  for n in 1 2 3; do echo "http://127.0.0.1:$((base + n * 10 + 2))"; done
  ;;
stop)
  dir=${2:?the cluster directory}
  for pid in "$dir"/node*/pid; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  ;;
*)
  echo "usage: qdrant-cluster.sh start BIN DIR [BASE_PORT] | stop DIR" >&2
  exit 2
  ;;
esac
