#!/usr/bin/env bash
# `run:` of sky/train.yaml: every node runs this once and it execs one torchrun per node.
#
# It lives outside the YAML so tests can run it with fake SKYPILOT_* variables and a stub
# `torchrun` on PATH. Inputs (all set by SkyPilot or by the YAML's `envs:`):
#   SKYPILOT_NUM_NODES, SKYPILOT_NODE_RANK, SKYPILOT_NODE_IPS (one IP a line, head first),
#   SKYPILOT_NUM_GPUS_PER_NODE; MODEL_PATH, DATA_PATH, OUTPUT_DIR and the hyperparameters.
# The gradient accumulation is derived, so 1 node x 8 GPUs and 2 nodes x 8 GPUs both train with
# GLOBAL_BATCH_SIZE sequences per optimizer step.
set -euo pipefail

die() {
  echo "launch_train.sh: $*" >&2
  exit 2
}

for name in SKYPILOT_NUM_NODES SKYPILOT_NODE_RANK SKYPILOT_NODE_IPS SKYPILOT_NUM_GPUS_PER_NODE \
  MODEL_PATH DATA_PATH OUTPUT_DIR; do
  [[ -n "${!name:-}" ]] || die "\$${name} is not set (SkyPilot sets SKYPILOT_*; --env for the rest)"
done

nnodes="${SKYPILOT_NUM_NODES}"
gpus="${SKYPILOT_NUM_GPUS_PER_NODE}"
master_addr="$(printf '%s\n' "${SKYPILOT_NODE_IPS}" | head -n 1)"
global_batch="${GLOBAL_BATCH_SIZE:-128}"
per_device="${PER_DEVICE_BATCH_SIZE:-2}"
ckpt_mount="${CKPT_MOUNT:-/checkpoints}"

per_step=$((per_device * nnodes * gpus))
if ((per_step < 1 || global_batch % per_step != 0)); then
  die "GLOBAL_BATCH_SIZE=${global_batch} is not a multiple of PER_DEVICE_BATCH_SIZE x nodes x" \
    "GPUs = ${per_device} x ${nnodes} x ${gpus}; change PER_DEVICE_BATCH_SIZE"
fi
grad_accum=$((global_batch / per_step))

case "${OUTPUT_DIR}" in
  "${ckpt_mount}"/*) ;;
  *) echo "launch_train.sh: warning: OUTPUT_DIR=${OUTPUT_DIR} is not under the bucket mount" \
    "${ckpt_mount}: checkpoints die with the node and a recovered job starts over" >&2 ;;
esac

# The trainer loads local directories only: fetch a hub id once per node (HF_TOKEN if gated).
model_dir="${MODEL_PATH}"
if [[ ! -d "${model_dir}" ]]; then
  model_dir="${MODEL_CACHE:-${HOME}/models}/${MODEL_PATH//\//--}"
  [[ -n "${HF_TOKEN:-}" ]] || unset HF_TOKEN
  echo "launch_train.sh: downloading ${MODEL_PATH} to ${model_dir}" >&2
  python - "${MODEL_PATH}" "${model_dir}" <<'PY'
import sys

from huggingface_hub import HfApi, snapshot_download

repo, target = sys.argv[1], sys.argv[2]
files = HfApi().list_repo_files(repo)
skip = ["*.pth", "original/*", "*.gguf"]
if any(f.endswith(".safetensors") for f in files):
    skip.append("*.bin")  # same weights twice: keep the safetensors
snapshot_download(repo, local_dir=target, ignore_patterns=skip)
PY
fi

read -r -a data_paths <<<"${DATA_PATH}"
read -r -a extra_args <<<"${TRAIN_EXTRA_ARGS:-}"

exec torchrun \
  --nnodes "${nnodes}" \
  --node_rank "${SKYPILOT_NODE_RANK}" \
  --master_addr "${master_addr}" \
  --master_port "${MASTER_PORT:-29500}" \
  --nproc_per_node "${gpus}" \
  -m fastchat_lite.cli train \
  --model-name-or-path "${model_dir}" \
  --data-path "${data_paths[@]}" \
  --output-dir "${OUTPUT_DIR}" \
  --resume auto \
  --template "${TEMPLATE:-vicuna_v1.1}" \
  --max-length "${MAX_LENGTH:-2048}" \
  --num-train-epochs "${NUM_EPOCHS:-3}" \
  --per-device-train-batch-size "${per_device}" \
  --gradient-accumulation-steps "${grad_accum}" \
  --learning-rate "${LEARNING_RATE:-2e-5}" \
  --weight-decay "${WEIGHT_DECAY:-0.0}" \
  --warmup-ratio "${WARMUP_RATIO:-0.03}" \
  --lr-scheduler-type "${LR_SCHEDULER:-cosine}" \
  --fsdp full_shard \
  --gradient-checkpointing true \
  --attn-implementation "${ATTN_IMPLEMENTATION:-auto}" \
  --save-steps "${SAVE_STEPS:-100}" \
  --save-total-limit "${SAVE_TOTAL_LIMIT:-2}" \
  --logging-steps "${LOGGING_STEPS:-1}" \
  "${extra_args[@]}"
