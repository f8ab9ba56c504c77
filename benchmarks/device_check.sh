#!/usr/bin/env bash
# GPU readiness in one command (issue 16): writes device_check.json and device_check.md (a short
# table) plus each part's own JSON to $OUT. Under 8 minutes on one GPU and 16 cores:
#   1. learner samples/s on CUDA, fp32 and bf16 autocast, at the Atari batch and 4x it;
#   2. stackrl bench atari with the learner on the GPU and one actor process per core but one;
#   3. stackrl bench scale --no-update (the learner's ingest ceiling on this machine).
#
#   OUT=/tmp/out benchmarks/device_check.sh [--cpu-only] [--seconds S] [--scale-actors LIST]
#          [--scale-seconds S] [--scale-warmup S] [--scale-record N] [--atari-actors N]
#
# --cpu-only skips the CUDA parts (1) and runs the learner of (2) on the CPU: the test suite runs the
# script that way (tests/benchmarks/test_device_check.py) with tiny windows.
set -euo pipefail

cpu_only=0
seconds=30          # bench atari's end-to-end window
scale_seconds=12    # bench scale's window per actor count
scale_actors="8,32,128,256"
scale_warmup=2
scale_record=4
atari_actors=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu-only) cpu_only=1; shift ;;
    --seconds) seconds="$2"; shift 2 ;;
    --scale-seconds) scale_seconds="$2"; shift 2 ;;
    --scale-actors) scale_actors="$2"; shift 2 ;;
    --scale-warmup) scale_warmup="$2"; shift 2 ;;
    --scale-record) scale_record="$2"; shift 2 ;;
    --atari-actors) atari_actors="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "device_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
: "${OUT:?set OUT to the folder the results go to}"
mkdir -p "$OUT"

cores=$(nproc)
if [[ -z "$atari_actors" ]]; then
  atari_actors=$(( cores > 2 ? cores - 1 : 1 ))  # one core for the learner process
fi
gpu=""
if [[ $cpu_only -eq 0 ]] && command -v nvidia-smi >/dev/null; then
  gpu=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)
fi
python - "$OUT/machine.json" "$cores" "$gpu" "$cpu_only" <<'EOF'
import json, sys, platform, torch
path, cores, gpu, cpu_only = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
json.dump({"cores": cores, "gpu": gpu or None, "cpu_only": cpu_only, "torch": torch.__version__,
           "cuda_available": torch.cuda.is_available(), "python": platform.python_version()},
          open(path, "w"), indent=2)
EOF
start=$SECONDS
say() { echo "[device_check +$(( SECONDS - start ))s] $*"; }

if [[ $cpu_only -eq 0 ]]; then
  say "learner rates on CUDA (fp32, bf16; Atari batch and 4x)"
  timeout 180 python -m stackrl.experiments.device_check rates --device cuda --seconds 8 \
    --json "$OUT/learner_rates.json"
  learner_device=cuda
else
  say "--cpu-only: CUDA learner rates skipped"
  learner_device=cpu
fi

say "stackrl bench atari: learner on $learner_device, $atari_actors actor processes"
timeout 300 stackrl bench atari --actors "$atari_actors" --seconds "$seconds" \
  --warmup "$(( seconds / 2 > 2 ? seconds / 2 : 2 ))" \
  --set "learner.device=$learner_device" --json "$OUT/bench_atari.json" | tee "$OUT/bench_atari.txt"

say "stackrl bench scale --no-update --actors $scale_actors"
timeout 300 stackrl bench scale --no-update --actors "$scale_actors" --seconds "$scale_seconds" \
  --warmup "$scale_warmup" --record "$scale_record" --processes "$(( cores > 4 ? 4 : 2 ))" --json "$OUT/bench_scale.json" | tee "$OUT/bench_scale.txt"

say "summary"
python -m stackrl.experiments.device_check summary "$OUT"
say "done"
