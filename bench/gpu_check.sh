#!/usr/bin/env bash
# The GPU path, once, on a lent CUDA machine: training and sampling benchmarks at the quick, gpu and GPT-B sizes
# (bf16 autocast, fused AdamW), the whole demo at its gpu preset (with GRPO), and `tessera unified` at its gpu
# preset (multi-task SFT, the CoRL ablation, introspection). Numbers and a few small files go to $OUT.
#   OUT=/tmp/gpu bash bench/gpu_check.sh            # all of it
#   OUT=/tmp/gpu JOBS=unified bash bench/gpu_check.sh  # some of it: bench demo unified
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
JOBS=${JOBS:-bench demo unified}
has() { [[ " $JOBS " == *" $1 "* ]]; }
has bench && for preset in ${BENCH_PRESETS:-quick gpu gpt-b}; do
  timeout 120 python3 bench/train.py --device "$DEVICE" --preset "$preset" --batch 64 --steps "${BENCH_STEPS:-20}"
done | tee "$OUT/train.jsonl"
if has bench && [ "${SAMPLING:-1}" = 1 ]; then
  timeout 240 python3 bench/sampling.py --device "$DEVICE" --batch 64 | tee "$OUT/sampling.jsonl"
  for batch in 1 8 64; do  # GPT-B at LlamaGen's configuration: per-step time against reading weights and cache
    timeout 120 python3 bench/llamagen.py --device "$DEVICE" --dtype bfloat16 --batch "$batch"
  done | tee "$OUT/llamagen.jsonl"
fi
if has demo; then
  start=$(date +%s)
  timeout "${DEMO_SECONDS:-420}" python3 -m tessera.cli demo --preset "${DEMO_PRESET:-gpu}" --out "$OUT/demo" \
    model.data.cache="$OUT/cache" > "$OUT/demo.log" 2>&1
  echo "demo exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/demo.log"
  tail -n 12 "$OUT/demo.log"
  cp "$OUT/demo/shapes_eval/results.json" "$OUT/demo-results.json" 2>/dev/null
  cp "$OUT/demo/stages.json" "$OUT/demo-stages.json" 2>/dev/null
  cp "$OUT/demo/shapes_eval/samples.png" "$OUT/demo-samples.png" 2>/dev/null
  cp "$OUT/demo/rl/metrics.jsonl" "$OUT/demo-rl-metrics.jsonl" 2>/dev/null
  cp "$OUT/demo/rl/shapes_eval/results.json" "$OUT/demo-rl-results.json" 2>/dev/null
  cp "$OUT/demo/report.html" "$OUT/demo/before-after-counting.png" "$OUT/" 2>/dev/null
  rm -rf "$OUT/demo" "$OUT/cache"  # only the small files come back
fi
if has unified; then
  start=$(date +%s)
  timeout "${UNIFIED_SECONDS:-480}" python3 -m tessera.cli unified --preset "${UNIFIED_PRESET:-gpu}" \
    --out /tmp/unified model.data.cache=/tmp/unified-cache > "$OUT/unified.log" 2>&1
  echo "unified exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/unified.log"
  grep -v "━" "$OUT/unified.log" | tail -n 8
  mkdir -p "$OUT/unified"
  cp /tmp/unified/results.json /tmp/unified/report.html /tmp/unified/*.png "$OUT/unified/" 2>/dev/null
  cat /tmp/unified/results.json 2>/dev/null
fi
