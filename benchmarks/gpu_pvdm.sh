#!/usr/bin/env bash
# PVDM on one GPU in one foreground call of about 9 minutes (BENCHMARKS.md, issue 15):
#   1. speed: benchmarks/pvdm.py at the official 256²x16 shapes in bf16 (autoencoder step, latent
#      U-Net step from random latents and encoding every step), at the largest batches that stay
#      within the official code's peak memory (2 / 24: 22.2 and 17.6 GiB; session 9 measured
#      4 / 32 at 40.6 and 20.3 GiB), then at the official batches (1 / 8);
#   2. quality on moving digits 64²x16: stage 1 for MIN1 minutes, its reconstructions scored
#      against the all-black and clip-mean-frame baselines (benchmarks/pvdm_quality.py, the
#      `videogen eval --task reconstruct` protocol) with a GIF; the latent cache; stage 2 for
#      MIN2 minutes; unconditional and continued samples (GIFs);
#   3. $OUT/summary.md with every number and command line.
#
#   bash benchmarks/gpu_pvdm.sh            # on the GPU; results in $OUT (default pvdm-out)
#                                          # about 2.5 + 3.5 + 3 + 0.5 min; summary.md grows as
#                                          # it goes, so a cut-off call still returns it
#   TINY=1 bash benchmarks/gpu_pvdm.sh     # CPU check of the whole script: tiny models, seconds
#
# Environment: MIN1 / MIN2 (training minutes: 3 / 2.5), CLIPS (test clips scored: 256),
# ITEMS (training items in the latent cache: 10000), SPEED_ARGS (extra benchmarks/pvdm.py
# arguments, e.g. --compile), SPEED_S (seconds for the speed part: 150; compiling wants about
# 500), PARTS (speed, quality or both: "speed quality"), WORKERS (data loader processes: 6).
#   SPEED_ARGS="--compile --sample-steps 0" SPEED_S=500 PARTS=speed bash benchmarks/gpu_pvdm.sh
#                                          # compiled speed (sampling would compile again)
# Results that come back: summary.md, recon.gif, uncond.gif, continued.gif, logs.tar.gz.
set -u
keep=${OUT:-pvdm-out}
runs=runs/gpu_pvdm
mkdir -p "$keep" "$runs"
# the GPU machine lacks some dependencies (diffusers, PyAV): wheels carried in .whl/ (made by
# benchmarks/gpu_wheels.sh) are installed into /tmp/site once
if compgen -G ".whl/*.whl" >/dev/null && [[ ! -d /tmp/site ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl || exit 1
fi
[[ -d /tmp/site ]] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
summary=$keep/summary.md
parts=${PARTS:-speed quality}
speed_s=${SPEED_S:-150}
t0=$(date +%s)

if [[ ${TINY:-0} == 1 ]]; then
  device=cpu
  min1=${MIN1:-0.3} min2=${MIN2:-0.3} clips=${CLIPS:-8} items=${ITEMS:-16} workers=${WORKERS:-0}
  clip=4 size=32 batch1=4 batch2=8 cache_batch=8 log_every=5
  speed=(--tiny --device cpu)
  speed_big=(--tiny --device cpu --ae-batch 2 --unet-batch 4)
  tiny_ae="model.clip=4 data.frames=4 data.size=32 model.width=32 model.depth=1 model.heads=2
    model.head_dim=16 model.proj_heads=2 model.proj_head_dim=16 model.proj_mlp=32
    model.disc_ndf=8 model.disc_start=20"
  tiny_unet="model.clip=4 data.frames=8 data.size=32 model.model_channels=16
    model.channel_mult=[1,2] model.attention_resolutions=[2] model.unet_heads=2"
  sample_steps=4
else
  device=cuda
  min1=${MIN1:-3} min2=${MIN2:-2.5} clips=${CLIPS:-256} items=${ITEMS:-10000}
  workers=${WORKERS:-6}
  clip=16 size=64 batch1=16 batch2=32 cache_batch=64 log_every=50
  speed=(--device cuda --ae-batch 1 --unet-batch 8 --encode --iters 10 --warmup 3
    --sample-steps 0)
  speed_big=(--device cuda --ae-batch 2 --unet-batch 24 --encode --iters 10 --warmup 3
    --sample-steps 25)
  tiny_ae="" tiny_unet="" sample_steps=50
fi
common="data.num_workers=$workers train.log_every=$log_every train.sample_every=0
  train.ckpt_every=100000000 train.steps=100000000"

note() { printf '%s\n' "$@" >>"$summary"; }
step() {  # step LOG TIMEOUT_S CMD...: run, keep its output in LOG, record it in the summary
  local log=$1 limit=$2
  shift 2
  note "" "\`\`\`" "$*" "\`\`\`"
  local start rc
  start=$(date +%s)
  timeout "$limit" "$@" >"$log" 2>&1
  rc=$?
  note "(exit $rc, $(($(date +%s) - start)) s)"
  ((rc == 0)) || { echo "FAILED ($rc): $*" >&2; tail -n 20 "$log" >&2; }
  return $rc
}
last_row() { [[ -f $1 ]] && tail -n 1 "$1"; }

{
  echo "# PVDM on one GPU: speed at 256²x16, a short run on moving digits"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")')"
  echo "git $(git rev-parse --short HEAD 2>/dev/null || echo '?'), TINY=${TINY:-0}"
  echo
  echo "## 1. Speed (bf16 autocast on CUDA; eager unless SPEED_ARGS says --compile)"
} >"$summary"
if [[ " $parts " == *" speed "* ]]; then
  # the row that decides the targets (the largest batches within the official peaks) first, so a
  # short SPEED_S cuts the official-batch row rather than it
  for args in "speed_big" "speed"; do
    declare -n a=$args
    # the speed part keeps to SPEED_S seconds in all (TINY: no limit but the step's own)
    left=$((${TINY:-0} == 1 ? 600 : speed_s - ($(date +%s) - t0)))
    ((left >= 20)) || { note "" "($args skipped: the speed part's $speed_s s are spent)" && continue; }
    if step "$runs/$args.log" "$left" python3 benchmarks/pvdm.py "${a[@]}" ${SPEED_ARGS:-}; then
      note "" "$(grep '^|' "$runs/$args.log")"
    else
      note "" "(failed or out of time; last lines:)" '```' "$(tail -n 5 "$runs/$args.log")" '```'
    fi
  done
fi

if [[ " $parts " == *" quality "* ]]; then
  note "" "## 2. Quality on moving digits (${size}²x$clip, grey)" "" "### Stage 1: the autoencoder, $min1 min"
  ae=$runs/ae
  # shellcheck disable=SC2086
  step "$runs/train_ae.log" "$(python3 -c "print(int($min1 * 60 + 240))")" \
    python3 -m videogen train configs/pvdm/moving_digits_autoencoder.yaml "train.out=$ae" \
    "train.max_minutes=$min1" "train.batch_size=$batch1" $common $tiny_ae --quiet
  note "" "last log row: \`$(last_row "$ae/metrics.jsonl")\`"
  if step "$runs/quality_ae.log" 240 python3 benchmarks/pvdm_quality.py "$ae" --clips "$clips" \
    --device "$device" --gif "$keep/recon.gif" --out "$runs/eval_ae"; then
    note "" "$(grep '^|' "$runs/quality_ae.log")" "" "recon.gif: test clips (top) over their reconstructions"
  fi

  note "" "### The latent cache, then stage 2: latent diffusion, $min2 min"
  latents=$runs/latents
  step "$runs/cache.log" 240 python3 -m videogen pvdm-cache "$ae" moving-digits "$latents" \
    --items "$items" --batch-size "$cache_batch" --device "$device" --quiet
  s2=$runs/diffusion
  # shellcheck disable=SC2086
  step "$runs/train_s2.log" "$(python3 -c "print(int($min2 * 60 + 240))")" \
    python3 -m videogen train configs/pvdm/moving_digits_diffusion.yaml "train.out=$s2" \
    "model.autoencoder.path=$ae" "model.cache=$latents" "train.max_minutes=$min2" \
    "train.batch_size=$batch2" $common $tiny_unet --quiet
  note "" "last log row: \`$(last_row "$s2/metrics.jsonl")\`"
  step "$runs/sample_uncond.log" 120 python3 -m videogen sample "$s2" --task unconditional \
    --frames "$((2 * clip))" --clips 4 --steps "$sample_steps" --device "$device" \
    -o "$keep/uncond.gif" --quiet &&
    note "" "uncond.gif: 4 new videos of two clips (the second continues the sampled first)"
  step "$runs/sample_continued.log" 120 python3 -m videogen sample "$s2" --task predict \
    --known "$clip" --frames "$((4 * clip))" --clips 4 --steps "$sample_steps" \
    --device "$device" -o "$keep/continued.gif" --quiet &&
    note "" "continued.gif: 4 test clips (top rows: truth) continued by three clips, clip by clip"
fi

note "" "## 3. Totals" "" "wall time $(($(date +%s) - t0)) s; logs, metrics.jsonl and metrics.json in logs.tar.gz"
tar czf "$keep/logs.tar.gz" --exclude='*.safetensors' --exclude='*.pt' --exclude='*.gif' \
  --exclude='*.html' --exclude='latents' "$runs"
ls -la "$keep"
cat "$summary"
