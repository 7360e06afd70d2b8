#!/usr/bin/env bash
# The speed benchmarks behind BENCHMARKS.md, on one GPU. Each benchmark prints one table;
# logs go to $OUT (or ./bench-logs). Usage: bash benchmarks/gpu_speed.sh [PART...]
# PART: tests | mcvd | mcvd-bair-graphs | fir | videoflow | videoflow-graphs | videoflow-profile |
#       videoflow-train | ramvid | metrics | videofusion | all
set -u
parts=${*:-all}
out=${OUT:-bench-logs}
mkdir -p "$out"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
run() {  # run NAME SECONDS CMD...: one benchmark, bounded in time, logged
  local name=$1 limit=$2
  shift 2
  echo "=== $name: $*"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "exit $?"
  grep -v "^\s*$" "$out/$name.log" | grep -v Warning | tail -n 22
}
want() { [[ " $parts " == *" $1 "* || " $parts " == *" all "* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
if want tests; then
  run gpu_tests 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests
fi
if want fir; then
  run fir_resample 120 python3 benchmarks/fir_resample.py --device cuda
fi
if want mcvd; then
  run mcvd_smmnist_compile 200 python3 benchmarks/mcvd.py --config configs/mcvd/smmnist.yaml \
    --batch 64 --compile --channels-last --samplers dpm++:25 --profile 3
  run mcvd_bair192_compile 200 python3 benchmarks/mcvd.py --config configs/mcvd/bair_ngf192.yaml \
    --batch 32 --compile --channels-last --samplers dpm++:25 --sample-batch 32
fi
if want mcvd-bair-graphs; then  # CUDA graphs; compiling takes over 200 s
  run mcvd_bair192_graphs 300 python3 benchmarks/mcvd.py --config configs/mcvd/bair_ngf192.yaml \
    --batch 32 --compile --compile-mode reduce-overhead --channels-last --samplers none
fi
if want mcvd-eager; then
  run mcvd_smmnist 110 python3 benchmarks/mcvd.py --config configs/mcvd/smmnist.yaml \
    --batch 64 --channels-last --samplers ddpm:100,dpm++:25,dpm++:10
  run mcvd_bair192 110 python3 benchmarks/mcvd.py --config configs/mcvd/bair_ngf192.yaml \
    --batch 32 --channels-last --samplers dpm++:25 --sample-batch 32
fi
if want videoflow; then
  run videoflow_graphs 120 python3 benchmarks/videoflow.py --bf16 --compile cuda-graphs
  run videoflow_graphs_fp32 90 python3 benchmarks/videoflow.py --compile cuda-graphs \
    --train-batch 0
  run videoflow_eager 90 python3 benchmarks/videoflow.py --bf16 --batches 1 --train-batch 0 \
    --repeats 3
fi
if want videoflow-graphs; then  # session 5: the default CUDA-graph sampler, fp32, +- cudnn.benchmark
  for cudnn in "" --cudnn-benchmark; do
    run "videoflow_graphs${cudnn:+_cudnnb}" 100 python3 benchmarks/videoflow.py \
      --compile cuda-graphs --train-batch 0 --batches 1 8 $cudnn
    # 3 known frames encoded and 1 generated: with the 20-frame clip, the cost of one frame
    run "videoflow_graphs_4f${cudnn:+_cudnnb}" 100 python3 benchmarks/videoflow.py \
      --compile cuda-graphs --train-batch 0 --batches 1 --frames 4 $cudnn
  done
fi
if want videoflow-train; then  # session 5: training steps of the stochastic-shapes config
  shapes="--config configs/videoflow/stochastic_shapes.yaml --compile cuda-graphs --batches 1"
  for setting in "10" "32" "32 --bf16" "64 --bf16 --cudnn-benchmark"; do
    run "videoflow_shapes_train_${setting// /_}" 100 python3 benchmarks/videoflow.py $shapes \
      --frames 5 --known 1 --train-batch $setting
  done
fi
if want videoflow-profile; then  # where one eager fp32 clip's GPU time goes, kernel by kernel
  run videoflow_profile 90 python3 benchmarks/videoflow.py --batches 1 --train-batch 0 \
    --repeats 1 --profile
fi
if want ramvid; then
  run ramvid_bair 150 python3 benchmarks/ramvid.py --config configs/ramvid/bair.yaml \
    --batches 4 16 --channels-last --sample-steps 50
fi
if want metrics; then
  run metrics 150 python3 benchmarks/metrics.py --device cuda
fi
if want videofusion; then
  run videofusion 150 python3 benchmarks/videofusion.py --device cuda
fi
