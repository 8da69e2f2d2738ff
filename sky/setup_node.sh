#!/usr/bin/env bash
# `setup:` of the sky/*.yaml tasks: install fastchat-lite on a GPU node, with CUDA torch.
#
# Usage (from the synced workdir, i.e. the repository root): bash sky/setup_node.sh train,flash
#
# Order matters. torch comes first from PyPI's default index, whose Linux x86_64 wheel is the
# CUDA build (the CPU wheel the README installs locally would train at CPU speed). flash-attn
# comes second with --no-build-isolation, because its build imports the torch already installed.
# The project goes last, so pip finds both requirements satisfied and replaces neither.
# Re-running it (a recovered managed job sets up fresh nodes) is safe.
set -euo pipefail

extras="${1:-train}"
torch_version="${TORCH_VERSION:-2.13.0}"
pip=(python -m pip install --progress-bar off)

"${pip[@]}" --upgrade pip
"${pip[@]}" "torch==${torch_version}"

if [[ ",${extras}," == *",flash,"* ]]; then
  "${pip[@]}" packaging ninja wheel
  # Without a prebuilt wheel for this torch/CUDA this compiles (long): MAX_JOBS bounds its RAM.
  MAX_JOBS="${MAX_JOBS:-8}" "${pip[@]}" "flash-attn>=2.6" --no-build-isolation
fi

"${pip[@]}" -e ".[${extras}]"

python - <<'PY'
import torch

assert torch.version.cuda, f"torch {torch.__version__} is a CPU build: expected the CUDA wheel"
assert torch.cuda.is_available(), "torch cannot see a GPU on this node"
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), {torch.cuda.device_count()} GPU(s)")
PY
