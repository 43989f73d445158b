#!/usr/bin/env bash
# Train the five shipped models at once on one CUDA GPU with their GPU-sized recipes, then write their
# compact weights into models/ (each card in models/ says how its own run went). Five runs share the
# GPU much better under CUDA MPS, which is started when its control program is on the PATH.
# Usage: scripts/train_shipped_models.sh   (from the project root, after `make venv`)
set -euo pipefail
declare -A shipped=(
  [sr_bbcu-l_x4]=bbcu-l-x4 [sr_bbcu-m_x4]=bbcu-m-x4 [sr_bbcu-l_x2]=bbcu-l-x2
  [denoise_dncnn-bbcu]=dncnn-bbcu-blind [jpeg_dncnn3-bbcu]=dncnn3-bbcu-blind
)
if command -v nvidia-cuda-mps-control >/dev/null; then nvidia-cuda-mps-control -d || true; fi
mkdir -p runs
pids=()
for run in "${!shipped[@]}"; do
  .venv/bin/bbcu train "configs/gpu/$run.yml" > "runs/$run.log" 2>&1 &
  pids+=("$!")
done
for pid in "${pids[@]}"; do wait "$pid"; done  # a failed run stops here (its log says why)
for run in "${!shipped[@]}"; do
  .venv/bin/bbcu export --format weights "runs/$run/weights/last.safetensors" -o "models/${shipped[$run]}.safetensors"
done
