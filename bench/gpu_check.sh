#!/usr/bin/env bash
# The GPU path, once, on a lent CUDA machine: training and sampling benchmarks at the quick, gpu and GPT-B sizes
# (bf16 autocast, fused AdamW), then the whole demo at its gpu preset. Numbers and a few small files go to $OUT.
#   OUT=/tmp/gpu bash bench/gpu_check.sh
# Packages the machine lacks travel as wheels in .whl/. A dry run on a CPU:
#   DEVICE=cpu DEMO_PRESET=smoke BENCH_PRESETS=quick BENCH_STEPS=2 SAMPLING=0 bash bench/gpu_check.sh
set -uo pipefail
OUT=${OUT:-runs/gpu-check}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
{
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
} > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"
for preset in ${BENCH_PRESETS:-quick gpu gpt-b}; do
  timeout 120 python3 bench/train.py --device "$DEVICE" --preset "$preset" --batch 64 --steps "${BENCH_STEPS:-20}"
done | tee "$OUT/train.jsonl"
if [ "${SAMPLING:-1}" = 1 ]; then
  timeout 240 python3 bench/sampling.py --device "$DEVICE" --batch 64 | tee "$OUT/sampling.jsonl"
fi
start=$(date +%s)
timeout "${DEMO_SECONDS:-420}" python3 -m tessera.cli demo --preset "${DEMO_PRESET:-gpu}" --out "$OUT/demo" \
  model.data.cache="$OUT/cache" > "$OUT/demo.log" 2>&1
echo "demo exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/demo.log"
tail -n 12 "$OUT/demo.log"
cp "$OUT/demo/shapes_eval/results.json" "$OUT/demo-results.json" 2>/dev/null
cp "$OUT/demo/timings.json" "$OUT/demo-timings.json" 2>/dev/null
cp "$OUT/demo/samples.png" "$OUT/demo-samples.png" 2>/dev/null
rm -rf "$OUT/demo" "$OUT/cache"  # only the small files come back
