#!/usr/bin/env bash
# Train the five shipped models at once on one CUDA GPU with their GPU-sized recipes (configs/<task>/*.gpu.yml),
# then write their compact weights into src/bbcu/models/ (each card there says how its own run went). Five
# runs share the GPU much better under CUDA MPS, which is started when its control program is on the PATH.
# Usage: scripts/train_shipped_models.sh   (from the project root, after `make venv`)
set -euo pipefail
declare -A shipped=(
  [sr/bbcu-l_x4]=bbcu-l-x4 [sr/bbcu-m_x4]=bbcu-m-x4 [sr/bbcu-l_x2]=bbcu-l-x2
  [denoise/dncnn-bbcu]=dncnn-bbcu-blind [jpeg/dncnn3-bbcu]=dncnn3-bbcu-blind
)
run_name() { echo "$(basename "$1").gpu"; }  # bbcu train's default run directory: runs/<recipe file name>
if command -v nvidia-cuda-mps-control >/dev/null; then nvidia-cuda-mps-control -d || true; fi
mkdir -p runs
pids=()
for recipe in "${!shipped[@]}"; do
  .venv/bin/bbcu train "configs/$recipe.gpu.yml" > "runs/$(run_name "$recipe").log" 2>&1 &
  pids+=("$!")
done
for pid in "${pids[@]}"; do wait "$pid"; done  # a failed run stops here (its log says why)
for recipe in "${!shipped[@]}"; do
  .venv/bin/bbcu export --format weights "runs/$(run_name "$recipe")/weights/last.safetensors" \
    -o "src/bbcu/models/${shipped[$recipe]}.safetensors"
done
