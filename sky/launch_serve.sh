#!/usr/bin/env bash
# `run:` of sky/serve.yaml: copy the model off the bucket mount, then serve it on $PORT.
#
# Loading safetensors straight from a FUSE bucket mount reads them in random order, which is
# slow; one sequential copy to local disk is not. Only the model's own files are copied (the
# top level of MODEL_DIR), not the training checkpoints/ beside them. Tests run this script
# with a stub `fastchat-lite` on PATH.
set -euo pipefail

die() {
  echo "launch_serve.sh: $*" >&2
  exit 2
}

[[ -n "${MODEL_DIR:-}" ]] || die "\$MODEL_DIR is not set (--env MODEL_DIR=/checkpoints/...)"
[[ -f "${MODEL_DIR}/config.json" ]] ||
  die "${MODEL_DIR} has no config.json: is training finished, and is CKPT_BUCKET right?"

name="${MODEL_NAME:-$(basename "${MODEL_DIR}")}"
local_dir="${MODEL_CACHE:-${HOME}/models}/${name}"
mkdir -p "${local_dir}"
echo "launch_serve.sh: copying ${MODEL_DIR} to ${local_dir}" >&2
find "${MODEL_DIR}" -mindepth 1 -maxdepth 1 -type f -exec cp -p {} "${local_dir}/" \;

auth=()
[[ -z "${API_KEY:-}" ]] || auth=(--api-key "${API_KEY}")

exec fastchat-lite serve local \
  --model "${local_dir}" \
  --model-name "${name}" \
  --device cuda \
  --host 0.0.0.0 \
  --port "${PORT:-8000}" \
  --no-web \
  "${auth[@]}"
