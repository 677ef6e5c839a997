#!/usr/bin/env bash
# Build, verify and time liquidgemm on a GPU machine in one go: what produced the committed H100 results.
#   bench/run_device.sh CONFIGS STEP...      CONFIGS: all | ci | comma list of config ids
#   steps: build peer test sass ncu timeconfigs sanitize bench70 bench8 layer tune e2e overhead fused accuracy
# Logs and results go to $OUT (default /tmp/liquidgemm-out). Offline machines: put the nvidia-cutlass wheel in
# .whl/ and it is installed from there.
set -uo pipefail
OUT=${OUT:-/tmp/liquidgemm-out}
mkdir -p "$OUT"
CONFIGS=${1:-all}
shift
export PYTHONUNBUFFERED=1 PIP_ROOT_USER_ACTION=ignore
GPU_SLUG=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | grep -o -i "h[0-9]00" | tr A-Z a-z)

step_build() {
  if ls .whl/nvidia_cutlass-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps .whl/nvidia_cutlass-*.whl
  fi
  local t0=$SECONDS
  LIQUIDGEMM_CONFIGS=$CONFIGS python3 -m pip install -v --no-build-isolation --no-deps . >"$OUT/build.log" 2>&1 ||
    { tail -60 "$OUT/build.log"; return 1; }
  echo "build: $((SECONDS - t0)) s for configs=$CONFIGS"
  grep -E "registers|spill" "$OUT/build.log" | sort | uniq -c | sort -rn | head -20
  python3 -c "import liquidgemm, liquidgemm._native as n; print(n.is_available(), n.unavailable_reason(), len(n.configs()))"
}
step_peer() {  # CUTLASS's own mixed-input GEMM, benchmark-only (bench/cutlass_peer)
  local t0=$SECONDS
  python3 -m pip install -v --no-build-isolation --no-deps ./bench/cutlass_peer >"$OUT/peer_build.log" 2>&1 ||
    { tail -40 "$OUT/peer_build.log"; return 1; }
  echo "peer build: $((SECONDS - t0)) s"
}
step_test() { timeout -s KILL ${TEST_TIMEOUT:-420} python3 -m pytest tests -q -m gpu --timeout 120 -p no:cacheprovider 2>&1 | tee "$OUT/pytest_gpu.log" | tail -40; }
step_sass() {
  local so
  so=$(python3 -c "import liquidgemm._C as c; print(c.__file__)")
  cuobjdump -sass "$so" >"$OUT/kernels.sass" 2>/dev/null
  python3 bench/sass_stats.py "$OUT/kernels.sass" | tee "$OUT/sass_stats.txt"
}
# Extra bench flags come from $BENCH_ARGS (e.g. "--quick --m 1,16").
step_bench70() { python3 -m liquidgemm.bench --model llama3-70b --out "bench/results/$GPU_SLUG" ${BENCH_ARGS:-} 2>&1 | tail -60; }
step_bench8() { python3 -m liquidgemm.bench --model llama3-8b --out "bench/results/$GPU_SLUG" ${BENCH_ARGS:-} 2>&1 | tail -60; }
step_layer() { python3 -m liquidgemm.bench --layer --out "bench/results/$GPU_SLUG" 2>&1 | tail -30; }
step_tune() {
  python3 -m liquidgemm.tune --model llama3-8b,llama3-70b --json-out "bench/results/$GPU_SLUG/tune.json" \
    --write-heuristic "python/liquidgemm/data/heuristic_$GPU_SLUG.json" ${TUNE_ARGS:-} 2>&1 | tail -60
}
step_e2e() { python3 bench/e2e_llama.py --out "bench/results/$GPU_SLUG" ${E2E_ARGS:-} 2>&1 | tail -40; }
step_overhead() { python3 bench/e2e_llama.py --overhead --out "bench/results/$GPU_SLUG" 2>&1 | tail -15; }
# ncu of single GEMMs: $NCU_RUNS = space-separated "config:N,K:M" (reports + text pages to $OUT/ncu_<i>.*).
step_ncu() {
  local i=0 spec config shape m
  for spec in ${NCU_RUNS:-}; do
    IFS=: read -r config shape m <<<"$spec"
    i=$((i + 1))
    ncu -k regex:w4a8_gemm_kernel --launch-skip 3 --launch-count 1 --set full --import-source yes \
      --clock-control none -f -o "$OUT/ncu_$i" \
      python3 bench/profile_decode.py --shape "$shape" --m "$m" --config "$config" --ncu >"$OUT/ncu_$i.log" 2>&1 ||
      { tail -20 "$OUT/ncu_$i.log"; continue; }
    ncu -i "$OUT/ncu_$i.ncu-rep" --page details >"$OUT/ncu_$i.txt"
    ncu -i "$OUT/ncu_$i.ncu-rep" --page source --csv --print-source sass >"$OUT/ncu_${i}_sass.csv" 2>&1
    echo "--- $spec"
    grep -E "Duration|Grid Size|DRAM Throughput|Memory Throughput|Registers Per|Achieved Occupancy|One or More|No Eligible" \
      "$OUT/ncu_$i.txt" | head -12
  done
}
step_timeconfigs() { python3 bench/profile_decode.py ${PROFILE_ARGS:-} 2>&1 | tail -80; }
step_sanitize() {
  local tool
  for tool in memcheck racecheck; do
    timeout -s KILL 240 compute-sanitizer --tool "$tool" --print-limit 20 python3 bench/sanitize_cases.py \
      ${SANITIZE_CONFIGS:-} >"$OUT/sanitize_$tool.log" 2>&1
    echo "$tool: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|cases passed' "$OUT/sanitize_$tool.log" | tr '\n' ' ')"
  done
}
step_fused() { python3 bench/fused_decode.py --out "bench/results/$GPU_SLUG" ${FUSED_ARGS:-} 2>&1 | tail -70; }
step_accuracy() { python3 bench/accuracy_minilm.py --device cuda 2>&1 | tail -30; }

# Results travel back as one archive (the device tool returns at most 8 files).
trap 'tar -cf "$OUT/results.tar" bench/results python/liquidgemm/data; tar -cf "$OUT/logs.tar" -C "$OUT" \
  --exclude results.tar --exclude logs.tar . 2>/dev/null' EXIT
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
for step in "$@"; do
  echo "=== $step"
  "step_$step" || { echo "step $step failed"; exit 1; }
done
