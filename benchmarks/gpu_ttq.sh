#!/usr/bin/env bash
# Time to quality on one GPU (BENCHMARKS.md, "time to quality"): the paper and fast recipes
# train side by side for MIN minutes with `videogen train` (snapshots of the EMA weights on the
# clock), then every snapshot is scored on the same test clips and the curves are drawn.
#
#   bash benchmarks/gpu_ttq.sh start MIN [RUN...]   # launch the trainings detached
#   bash benchmarks/gpu_ttq.sh eval [RUN...]        # wait for them, evaluate, plot, pack to $OUT
#
# On the device tool, whose calls end after 10 minutes and whose machine can go between calls,
# the whole experiment runs detached and later calls collect it:
#
#   bash benchmarks/gpu_ttq.sh detach MIN [RUN...]  # start, then eval, in the background
#   bash benchmarks/gpu_ttq.sh collect SECONDS      # wait for it (at most SECONDS), copy the
#                                                   # results so far to $OUT (8 files at most)
#
# (detach keeps its results in $KEEP, default /tmp/ttq-keep, since the device tool empties $OUT
# before every call; each collect brings back what exists, so a lost machine loses less.)
#
# RUN: mcvd-paper mcvd-v mcvd-fast mcvd-fastv mcvd-minsnr mcvd-lognorm mcvd-const mcvd-b256
# ramvid-paper ramvid-fast ramvid-fastc ramvid-nosnr ramvid-b16 vflow-paper vflow-fast vflow-mix
# vfusion-paper vfusion-fast vfusion-b8 vfusion-compiled vfusion-base4 (default: mcvd-paper
# mcvd-fast ramvid-paper ramvid-fast vflow-fast vfusion-paper vfusion-fast).
# All runs share the GPU, so a minute here is a minute of a shared GPU, the same for every run
# compared.
# Environment: EXTRA (overrides for every training), EXTRA_MCVD / EXTRA_RAMVID / EXTRA_VFLOW /
# EXTRA_VFUSION (overrides for that method's runs only, after EXTRA), CLIPS / FINAL_CLIPS /
# SAMPLER_CLIPS (test clips of the curves, of the final scores and of the sampler comparison:
# 128 / 256 / 64), EVAL_ARGS (appended to every evaluation, e.g. "--steps 2" for a quick check
# on a CPU).
set -u
what=${1:-}
shift || true
if [[ $what == start || $what == detach ]]; then
  minutes=${1:?usage: $0 $what MIN [RUN...]}
  shift
fi
clips=${CLIPS:-128}
final_clips=${FINAL_CLIPS:-256}
sampler_clips=${SAMPLER_CLIPS:-64}
logs=runs/ttq
keep=${OUT:-ttq-out}
mkdir -p "$logs" "$keep"
# the GPU machine lacks some dependencies (diffusers, PyAV): wheels carried in .whl/ (made by
# benchmarks/gpu_wheels.sh) are installed into /tmp/site once
if compgen -G ".whl/*.whl" >/dev/null && [[ ! -d /tmp/site ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl || exit 1
fi
[[ -d /tmp/site ]] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
ttq="python3 benchmarks/time_to_quality.py"
common="data.num_workers=2 train.log_every=100 train.sample_every=0 train.ckpt_every=1000000"
graphs="train.compile=true train.compile_mode=reduce-overhead"
compiled="train.channels_last=true $graphs"

config_of() {  # the config and overrides of a run
  case $1 in
    mcvd-paper) echo "configs/mcvd/smmnist.yaml $compiled" ;;
    mcvd-v) echo "configs/mcvd/smmnist.yaml diffusion.prediction=v $compiled" ;;
    mcvd-fast) echo "configs/mcvd/smmnist_fast.yaml $compiled" ;;
    # the fast recipe at its rate before session 9 (2e-4, constant); and 4x its batch over the
    # same number of clips
    mcvd-const) echo "configs/mcvd/smmnist_fast.yaml train.lr=2e-4 train.lr_schedule=constant \
train.steps=700000 $compiled" ;;
    mcvd-b256) echo "configs/mcvd/smmnist_fast.yaml train.batch_size=256 train.steps=3750 $compiled" ;;
    # the fast recipe with v prediction, as it was before session 17 (x0 won at 2,500 steps;
    # the run to set beside it for the full 15 minutes)
    mcvd-fastv) echo "configs/mcvd/smmnist_fast.yaml diffusion.prediction=v $compiled" ;;
    # the fast recipe with min-SNR-5 weights, as it was before session 14 (they lost to plain v)
    mcvd-minsnr) echo "configs/mcvd/smmnist_fast.yaml diffusion.prediction=v \
diffusion.loss_weighting=min_snr $compiled" ;;
    # the fast recipe with logit-normal timesteps (Esser et al. 2024; session 18, CPU demo)
    mcvd-lognorm) echo "configs/mcvd/smmnist_fast.yaml diffusion.timestep_sampling=logit_normal \
$compiled" ;;
    ramvid-paper) echo "configs/ramvid/tiny.yaml" ;;
    ramvid-fast) echo "configs/ramvid/tiny_fast.yaml" ;;
    # the fast recipe without min-SNR-5 (plain v loss), eager as ramvid-fast
    ramvid-nosnr) echo "configs/ramvid/tiny_fast.yaml diffusion.loss_weighting=none" ;;
    # the fast recipe's batch and rate before session 14 (batch 64 at 4e-4 won)
    ramvid-b16) echo "configs/ramvid/tiny_fast.yaml train.batch_size=16 train.lr=2e-4" ;;
    # compiled with CUDA graphs, contiguous (the 3.0M-parameter network is launch-bound eager)
    ramvid-fastc) echo "configs/ramvid/tiny_fast.yaml $graphs" ;;
    vflow-paper) echo "configs/videoflow/stochastic_shapes.yaml" ;;
    vflow-fast) echo "configs/videoflow/stochastic_shapes_fast.yaml" ;;
    # a mixture of 8 Gaussians per dynamics prior, trained by balanced hard assignment at each
    # time step, so both predicted frames of a 3-frame clip are scored (session 16, CPU)
    vflow-mix) echo "configs/videoflow/stochastic_shapes_fast.yaml model.prior_components=8 \
model.train_frames=3" ;;
    # eager: a step of 32 clips of 16 frames is long enough that CUDA graphs gain little, and
    # compiling the two networks beside other runs took minutes (session 8)
    vfusion-paper) echo "configs/videofusion/shapes.yaml" ;;
    vfusion-fast) echo "configs/videofusion/shapes_fast.yaml" ;;
    vfusion-b8) echo "configs/videofusion/shapes_fast.yaml train.batch_size=8" ;;
    # compiled with CUDA graphs but contiguous (channels-last costs VideoFusion 17%): since the
    # trainer compiles once (session 10) and the lambda cache lives outside the graphs
    # (session 8), the eager step's launch overhead (5% of the bf16 peak) is the thing to win
    vfusion-compiled) echo "configs/videofusion/shapes_fast.yaml train.compile=true \
train.compile_mode=reduce-overhead" ;;
    # the same with the base generator learning from 4 frames of each clip, not the key frame
    # alone (session 11: the key frame was the odd one out in every sample)
    vfusion-base4) echo "configs/videofusion/shapes_fast.yaml model.base_frames=4 \
train.compile=true train.compile_mode=reduce-overhead" ;;
    *) echo "unknown run $1" >&2 && exit 2 ;;
  esac
}
measure_of() {  # the measures and test clip length of a run
  case $1 in
    mcvd-*) echo "--measure predict:known=5 --frames 15 --sampler dpm++ --steps 25" ;;
    ramvid-*) echo "--measure predict:known=4 --measure infill:first=2" ;;
    vflow-*) echo "--measure shapes:known=1 --frames 5 --temperature 0.6" ;;
    vfusion-*) echo "--measure shapes-uncond --steps 50" ;;
  esac
}
runs=${*:-mcvd-paper mcvd-fast ramvid-paper ramvid-fast vflow-fast vfusion-paper vfusion-fast}

start() {
  local points
  points=$(python3 -c "m=$minutes; print([round(m * f, 2) for f in (1/6, 1/3, 2/3)])")
  local family
  for name in $runs; do
    read -r -a cfg <<<"$(config_of "$name")"
    family=EXTRA_${name%%-*}
    family=${family^^}
    setsid nohup python3 -m videogen train "${cfg[@]}" "train.out=$logs/$name" \
      "train.max_minutes=$minutes" "train.snapshot_minutes=$points" $common ${EXTRA:-} \
      ${!family:-} --quiet \
      >"$logs/train_$name.log" 2>&1 </dev/null &
    echo $! >"$logs/$name.pid"
    echo "started $name (pid $!): ${cfg[*]}"
  done
}
await() {
  local pid
  pid=$(cat "$logs/$1.pid")
  while kill -0 "$pid" 2>/dev/null; do sleep 5; done
  echo "== $1: $(grep -c . "$logs/$1/metrics.jsonl") log rows; $(tail -n 1 "$logs/$1/metrics.jsonl")"
}
pack() {  # the runs' logs, tables and curves, without weights, GIFs or reports, to $1
  tar czf "$1" --exclude='*.safetensors' --exclude='*.pt' --exclude='*.gif' --exclude='*.html' \
    "$logs"
}
evaluate() {
  for name in $runs; do await "$name"; done
  # the curves: every snapshot, 128 test clips, best of 5 (all runs at once: eager sampling
  # leaves the GPU idle between launches)
  for name in $runs; do
    read -r -a m <<<"$(measure_of "$name")"
    $ttq eval "$logs/$name" "${m[@]}" --clips "$clips" --best-of 5 --batch-size 128 \
      ${EVAL_ARGS:-} >"$logs/eval_$name.log" 2>&1 &
  done
  # the targets' protocol on the final models of the fast MCVD recipes and RaMViD, beside the
  # curves (in session 14 the machine went after the curves, and these with it): 256 clips,
  # best of 10; the sampler step counts on 64 clips
  local q="python3 benchmarks/quality.py"
  for name in $runs; do
    case $name in
      mcvd-fast | mcvd-fastv | mcvd-minsnr | mcvd-lognorm | mcvd-const | mcvd-b256)
        (
          $q "$logs/$name" --frames 15 --task predict:known=5 --best-of 10 --clips "$final_clips" \
            --batch-size 128 --sampler dpm++ --steps 25 --out "$logs/q_$name" ${EVAL_ARGS:-}
          # the sampler step counts only on the fast recipe itself
          [[ $name == mcvd-fast ]] && for s in ddpm:100 dpm++:10 unipc:10; do
            $q "$logs/$name" --frames 15 --task predict:known=5 --best-of 10 \
              --clips "$sampler_clips" --batch-size 128 --sampler "${s%:*}" --steps "${s#*:}" \
              --out "$logs/q_${name}_${s%:*}${s#*:}" ${EVAL_ARGS:-}
          done
        ) >"$logs/final_$name.log" 2>&1 &
        ;;
      mcvd-* | vflow-* | vfusion-*) ;;
      ramvid-*)
        $q "$logs/$name" --task predict:known=4 --task infill:first=2 --best-of 10 \
          --clips "$final_clips" --batch-size 128 --out "$logs/q_$name" ${EVAL_ARGS:-} \
          >"$logs/final_$name.log" 2>&1 &
        ;;
    esac
  done
  wait
  for name in $runs; do tail -n 12 "$logs/eval_$name.log"; done
  local family members
  for family in mcvd ramvid vflow vfusion; do
    members=$(for r in $runs; do [[ $r == $family-* ]] && echo "$logs/$r"; done)
    [[ -n $members ]] && $ttq plot $members -o "$keep/ttq_$family.png" | tee "$logs/ttq_$family.md"
  done
  for name in $runs; do [[ -f $logs/final_$name.log ]] && grep "^|\|^run" "$logs/final_$name.log"; done
  for name in mcvd-paper mcvd-fast mcvd-fastv mcvd-minsnr mcvd-lognorm mcvd-const mcvd-b256; do
    [[ " $runs " == *" $name "* ]] && python3 -m videogen sample "$logs/$name" --task predict \
      --known 5 --frames 15 --clips 3 --samples 2 --sampler dpm++ --steps 25 \
      -o "$keep/${name}.gif" --quiet
  done
  for name in ramvid-fast ramvid-fastc ramvid-nosnr ramvid-b16; do
    [[ " $runs " == *" $name "* ]] && python3 -m videogen sample "$logs/$name" --task infill \
      --known 2 --clips 3 --samples 2 -o "$keep/$name-infill.gif" --quiet
  done
  [[ " $runs " == *" vflow-fast "* ]] && python3 -m videogen sample "$logs/vflow-fast" \
    --task predict --known 1 --frames 5 --clips 4 --samples 2 --temperature 0.6 \
    -o "$keep/vflow-fast.gif" --quiet
  for name in $runs; do
    [[ $name == vfusion-* ]] && python3 -m videogen sample "$logs/$name" --task unconditional \
      --clips 4 --samples 2 --steps 50 -o "$keep/$name.gif" --quiet
  done
  pack "$keep/ttq.tar.gz"
  ls -la "$keep"
}
detach() {
  local store=${KEEP:-/tmp/ttq-keep}
  mkdir -p "$store"
  # one background job: start the trainings, then evaluate them (eval waits for them)
  OUT=$store setsid nohup bash -c "bash '$0' start $minutes $runs && bash '$0' eval $runs \
    >'$store/eval.log' 2>&1; echo \"== done \$(date -u +%T)\"" >"$store/driver.log" 2>&1 \
    </dev/null &
  echo "detached: $runs for $minutes minutes; results in $store, collect with: $0 collect SECONDS"
}
collect() {
  local store=${KEEP:-/tmp/ttq-keep} out=${OUT:?collect copies to \$OUT}
  local end=$((SECONDS + ${1:-0})) f
  until grep -q "^== done" "$store/driver.log" 2>/dev/null || ((SECONDS >= end)); do sleep 10; done
  date -u +%T
  tail -n 40 "$store/driver.log" 2>/dev/null
  for f in "$logs"/*/metrics.jsonl; do [[ -f $f ]] && echo "$f: $(tail -n 1 "$f" | cut -c1-200)"; done
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=utilization.gpu,memory.used \
    --format=csv,noheader
  # the logs, tables and curves so far (no weights), the plots and GIFs once drawn
  cp "$store/driver.log" "$out/" 2>/dev/null
  [[ -f $store/eval.log ]] && cp "$store/eval.log" "$out/"
  pack "$out/partial.tar.gz" 2>/dev/null
  for f in "$store"/ttq_*.png; do [[ -f $f ]] && cp "$f" "$out/"; done
  compgen -G "$store/*.gif" >/dev/null && tar czf "$out/gifs.tar.gz" -C "$store" \
    $(cd "$store" && ls ./*.gif)
  ls -la "$out"
}
case $what in
  start) start ;;
  eval) evaluate ;;
  detach) detach ;;
  collect) collect "${1:-0}" ;;
  *) echo "usage: $0 start MIN [RUN...] | eval [RUN...] | detach MIN [RUN...] | collect SECONDS" \
    >&2 && exit 2 ;;
esac
