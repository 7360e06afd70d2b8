#!/usr/bin/env bash
# The speed benchmarks behind BENCHMARKS.md, on one GPU. Each benchmark prints one table;
# logs go to $OUT (or ./bench-logs). Usage: bash benchmarks/gpu_speed.sh [PART]
# PART: diffusion (MCVD, RaMViD) | other (VideoFlow, metrics, VideoFusion, GPU tests) | all
set -u
part=${1:-all}
out=${OUT:-bench-logs}
mkdir -p "$out"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
run() {  # run NAME SECONDS CMD...: one benchmark, bounded in time, logged
  local name=$1 limit=$2
  shift 2
  echo "=== $name: $*"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "exit $?"
  tail -n 25 "$out/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
if [ "$part" = diffusion ] || [ "$part" = all ]; then
  run mcvd_smmnist 110 python3 benchmarks/mcvd.py --config configs/mcvd/smmnist.yaml \
    --batch 64 --channels-last --samplers ddpm:100,dpm++:25,dpm++:10
  run mcvd_smmnist_compile 190 python3 benchmarks/mcvd.py --config configs/mcvd/smmnist.yaml \
    --batch 64 --compile --channels-last --samplers dpm++:25
  run mcvd_bair192 110 python3 benchmarks/mcvd.py --config configs/mcvd/bair_ngf192.yaml \
    --batch 32 --channels-last --samplers dpm++:25 --sample-batch 32
  run ramvid_bair 150 python3 benchmarks/ramvid.py --config configs/ramvid/bair.yaml \
    --batches 4 16 --channels-last --sample-steps 50
fi
if [ "$part" = other ] || [ "$part" = all ]; then
  run gpu_tests 120 python3 -m pytest -q -m gpu tests
  run videoflow 120 python3 benchmarks/videoflow.py --bf16
  run videoflow_graphs 200 python3 benchmarks/videoflow.py --compile reduce-overhead --bf16
  run metrics 150 python3 benchmarks/metrics.py --device cuda
  run videofusion 150 python3 benchmarks/videofusion.py --device cuda
fi
