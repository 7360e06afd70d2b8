#!/usr/bin/env bash
# The short quality runs behind BENCHMARKS.md, on one GPU: MCVD (SMMNIST config), a reduced
# RaMViD, VideoFlow (stochastic shapes) and VideoFusion (its demo) train side by side for
# SECONDS each (SIGTERM at the end saves a checkpoint), then each is evaluated.
# Usage: bash benchmarks/gpu_quality.sh [SECONDS]. Logs and evaluations go to runs/q-logs; the
# GIF grids and training curves are copied to $OUT (or ./quality-out) at the end.
set -u
secs=${1:-300}
out=runs/q-logs
keep=${OUT:-quality-out}
mkdir -p "$out" "$keep"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
vg="python3 -m videogen"
common="train.log_every=100 train.sample_every=0 train.ckpt_every=1000000"
train() {  # train NAME CONFIG OVERRIDES...: bounded by SIGTERM, which checkpoints
  local name=$1
  shift
  timeout -s TERM "$secs" $vg train "$@" train.out="runs/q-$name" $common --quiet \
    >"$out/train_$name.log" 2>&1
}
train mcvd configs/mcvd/smmnist.yaml data.num_workers=4 &
train ramvid configs/ramvid/tiny.yaml data.num_workers=2 &
train videoflow configs/videoflow/stochastic_shapes.yaml train.warmup=500 data.num_workers=2 &
timeout -s TERM "$secs" python3 benchmarks/videofusion.py --device cuda --demo 300 \
  --out runs/q-videofusion >"$out/videofusion_demo.log" 2>&1 &
wait
for name in mcvd ramvid videoflow; do
  echo "== $name: $(tail -n 1 runs/q-$name/metrics.jsonl)"
  cp "runs/q-$name/metrics.jsonl" "$out/metrics_$name.jsonl"
done
tail -n 25 "$out/videofusion_demo.log"
python3 benchmarks/quality.py runs/q-mcvd --frames 15 --task predict:known=5 --best-of 10 \
  --clips 64 --sampler dpm++ --steps 25 --out "$out/q_mcvd" 2>&1 | tail -n 6
python3 benchmarks/quality.py runs/q-ramvid --frames 8 --task predict:known=2 \
  --task infill:first=2,last=2 --best-of 10 --clips 64 --sampler dpm++ --steps 25 \
  --out "$out/q_ramvid" 2>&1 | tail -n 9
$vg eval runs/q-videoflow --metrics bpd --num-clips 256 --out "$out/e_videoflow" 2>&1 |
  grep -A 2 '"bpd"'
$vg sample runs/q-mcvd --task predict --known 5 --frames 15 --clips 3 --samples 2 \
  --sampler dpm++ --steps 25 -o "$out/mcvd_smmnist.gif" --quiet
$vg sample runs/q-ramvid --task infill --known 2 --frames 8 --clips 3 --samples 2 \
  --sampler dpm++ --steps 25 -o "$out/ramvid_infill.gif" --quiet
$vg sample runs/q-videoflow --task predict --known 1 --frames 5 --clips 4 --samples 2 \
  --temperature 0.6 -o "$out/videoflow_shapes.gif" --quiet
cp "$out"/{mcvd_smmnist,ramvid_infill,videoflow_shapes}.gif "$out"/metrics_{mcvd,videoflow}.jsonl \
  "$keep"/
cp runs/q-videofusion/samples.gif "$keep"/videofusion_samples.gif
cp runs/q-videofusion/long.gif "$keep"/videofusion_long.gif
