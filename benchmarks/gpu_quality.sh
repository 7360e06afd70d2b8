#!/usr/bin/env bash
# The short quality runs behind BENCHMARKS.md, on one GPU. MCVD (SMMNIST config) trains for
# MCVD_MIN minutes; VideoFlow (stochastic shapes) and VideoFusion (its demo) train beside it
# for OTHER_MIN minutes. Each stops on time through train.max_minutes (checkpoint + export),
# then is evaluated. Logs and evaluations go to runs/q-logs; GIFs, curves and tables are copied
# to $OUT (or ./quality-out).
#
#   bash benchmarks/gpu_quality.sh all MCVD_MIN OTHER_MIN   # everything, in the foreground
#   bash benchmarks/gpu_quality.sh start MCVD_MIN OTHER_MIN # launch the trainings detached
#   bash benchmarks/gpu_quality.sh start-others 0 OTHER_MIN # only VideoFlow and VideoFusion
#   bash benchmarks/gpu_quality.sh start-mcvd-videofusion MCVD_MIN OTHER_MIN  # no VideoFlow
#   bash benchmarks/gpu_quality.sh start-videoflow 0 OTHER_MIN  # VideoFlow alone
#   bash benchmarks/gpu_quality.sh videoflow                # wait for VideoFlow, evaluate it
# VIDEOFLOW_ARGS adds overrides to VideoFlow's training (session 5: "train.batch_size=32
# train.grad_clip=1.0").
#   bash benchmarks/gpu_quality.sh others                   # wait for VideoFlow/VideoFusion, eval
#   bash benchmarks/gpu_quality.sh mcvd                     # wait for MCVD, evaluate it
set -u
what=${1:-all}
mcvd_min=${2:-12}
other_min=${3:-5}
logs=runs/q-logs
keep=${OUT:-quality-out}
mkdir -p "$logs" "$keep"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
vg="python3 -m videogen"
common="train.log_every=100 train.sample_every=0 train.ckpt_every=2000 --quiet"

launch() {  # launch NAME CMD...: detached (survives this shell), pid in runs/q-logs/NAME.pid
  local name=$1
  shift
  setsid nohup "$@" >"$logs/train_$name.log" 2>&1 </dev/null &
  echo $! >"$logs/$name.pid"
}
await() {  # await NAME: until the training exits
  local pid
  pid=$(cat "$logs/$1.pid")
  while kill -0 "$pid" 2>/dev/null; do sleep 5; done
  echo "== $1 done: $(tail -n 2 "$logs/train_$1.log" | tr '\n' ' ')"
}
start_mcvd() {
  launch mcvd $vg train configs/mcvd/smmnist.yaml train.out=runs/q-mcvd \
    train.max_minutes="$mcvd_min" train.channels_last=true train.compile=true \
    train.compile_mode=reduce-overhead data.num_workers=6 $common
}
start_videoflow() {
  launch videoflow $vg train configs/videoflow/stochastic_shapes.yaml train.out=runs/q-videoflow \
    train.max_minutes="$other_min" train.warmup=500 data.num_workers=3 $common ${VIDEOFLOW_ARGS:-}
}
start_videofusion() {  # KEY_LAMBDA=none: the key frame refined by the residual generator too
  launch videofusion python3 benchmarks/videofusion.py --device cuda --demo 100000 \
    --minutes "$other_min" --out runs/q-videofusion --key-lambda "${KEY_LAMBDA:-1}"
}
videoflow() {
  await videoflow
  cp runs/q-videoflow/metrics.jsonl "$keep/metrics_videoflow.jsonl"
  $vg eval runs/q-videoflow --metrics bpd,ssim,psnr --num-clips 256 --best-of 10 \
    --temperature 0.6 --out "$logs/e_videoflow" 2>&1 | tail -n 30 >"$keep/eval_videoflow.txt"
  cp "$logs/e_videoflow/metrics.json" "$keep/eval_videoflow.json"
  python3 benchmarks/shapes_motion.py runs/q-videoflow --clips 256 --known 1 --frames 5 \
    --temperature 0.6 --device cuda 2>&1 | tail -n 8 | tee "$keep/shapes_motion.txt"
  $vg sample runs/q-videoflow --task predict --known 1 --frames 5 --clips 4 --samples 2 \
    --temperature 0.6 -o "$keep/videoflow_shapes.gif" --quiet
}
videofusion() {
  await videofusion
  tail -n 30 "$logs/train_videofusion.log" | tee "$keep/videofusion_demo.txt"
  cp runs/q-videofusion/samples.gif "$keep/videofusion_samples.gif"
  cp runs/q-videofusion/long.gif "$keep/videofusion_long.gif"
}
mcvd() {  # best of 10, 5 -> 10 frames: the paper's DDPM-100 against fewer solver steps
  await mcvd
  cp runs/q-mcvd/metrics.jsonl "$keep/metrics_mcvd.jsonl"
  local q="python3 benchmarks/quality.py runs/q-mcvd --frames 15 --task predict:known=5 --best-of 10"
  : >"$keep/quality_mcvd.txt"
  for sampler in ddpm:100 dpm++:25 dpm++:10; do
    $q --clips 64 --batch-size 64 --sampler "${sampler%:*}" --steps "${sampler#*:}" \
      --out "$logs/q_mcvd_${sampler%:*}${sampler#*:}" 2>&1 | tail -n 6 | tee -a "$keep/quality_mcvd.txt"
  done
  $vg sample runs/q-mcvd --task predict --known 5 --frames 15 --clips 3 --samples 2 \
    --sampler dpm++ --steps 25 -o "$keep/mcvd_smmnist.gif" --quiet
}
case $what in
  start) start_mcvd && start_videoflow && start_videofusion ;;
  start-others) start_videoflow && start_videofusion ;;
  start-mcvd-videofusion) start_mcvd && start_videofusion ;;
  start-videoflow) start_videoflow ;;
  others) videoflow && videofusion ;;
  videoflow) videoflow ;;
  videofusion) videofusion ;;
  mcvd) mcvd ;;
  all) start_mcvd && start_videoflow && start_videofusion && videoflow && videofusion && mcvd ;;
  *) echo "usage: $0 all|start|start-others|start-mcvd-videofusion|start-videoflow|others|videoflow|videofusion|mcvd" \
    "[MCVD_MIN OTHER_MIN]" >&2 && exit 2 ;;
esac
