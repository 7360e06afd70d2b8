#!/usr/bin/env bash
# Data-parallel training and evaluation on 2 GPUs (issue 19), in one call of about 9 minutes:
#   bash benchmarks/gpu_ddp.sh            # on the 2-GPU machine: summary + PNGs + logs in $OUT
#   DDP_TINY=1 bash benchmarks/gpu_ddp.sh # the same sequence on 2 CPU processes (gloo), tiny
# For each method, WORK/<method>/ holds (benchmarks/ddp.py's layout):
#   1gpu, 2gpu      the same global batch on 1 and on 2 processes (loss curves + agreement;
#                   1gpu is also the 1-process throughput)
#   tput2           1gpu's per-process batch on 2 processes (clips/s scaling, memory, util)
#   resume-2to1/-1to2  copies of 2gpu / 1gpu continued on the other number of processes (MCVD)
#   eval1, eval2    `videogen eval` of 1gpu's export on 1 and 2 processes (MCVD)
#   compile2        `accelerate launch`, torch.compile (CUDA graphs) + bf16, 2 processes (MCVD)
# The 1-process runs use GPU 0 only; every run is alone on the machine (throughput is honest).
# Methods: MCVD configs/mcvd/smmnist.yaml as it is; RaMViD configs/ramvid/bair.yaml's network
# (235M) on the built-in moving digits in RGB (BAIR itself is not on the machine); PVDM's
# latent U-Net (configs/pvdm/moving_digits_diffusion.yaml) over a latent cache written by a
# 10-step stage-1 export (untrained latents: enough to compare 1 and 2 processes).
# Parts run in order of importance; one that no longer fits the time left (DDP_BUDGET_S,
# default 510 s) is skipped and named in the summary. DDP_PARTS picks some:
# "mcvd ramvid compile pvdm" (default all, in this order).
set -u
out=$(realpath -m "${OUT:-ddp-out}")
work=$(realpath -m "${DDP_WORK:-runs/ddp}")
budget=${DDP_BUDGET_S:-510}
parts=${DDP_PARTS:-mcvd ramvid compile pvdm}
tiny=${DDP_TINY:-0}
# the device rules: NVLink multicast (NVLS, symmetric-memory multicast) stays off
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
# the GPU machine lacks some dependencies (diffusers, PyAV): wheels carried in .whl/ (made by
# benchmarks/gpu_wheels.sh) are installed into /tmp/site once
if compgen -G ".whl/*.whl" >/dev/null && [[ ! -d /tmp/site ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl || exit 1
fi
[[ -d /tmp/site ]] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
start=$SECONDS
rm -rf "$work"
mkdir -p "$work" "$out"
notes=$work/notes.md
left() { echo $((budget - (SECONDS - start))); }
note() { echo "- $*" | tee -a "$notes"; }
fits() {  # fits PART SECONDS: is there time for it?
  if (($(left) < $2)); then
    note "skipped $1: $(left) s left of $budget, it needs about $2 s"
    return 1
  fi
}
want() { [[ " $parts " == *" $1 "* ]]; }
launch() {  # launch DIR PROCS CAP [--gpus G] [--accelerate] -- videogen args...
  local dir=$1 procs=$2 cap=$3
  shift 3
  local limit=$(($(left) - 25))
  ((limit > cap)) && limit=$cap
  ((limit < 10)) && limit=10
  $py benchmarks/ddp.py launch --dir "$dir" --procs "$procs" --timeout "$limit" "$@"
}

if ((tiny)); then
  gpu0=()
  quiet=(--quiet)
  common=(train.sample_every=0 train.ckpt_every=0 train.log_every=1 data.num_workers=0)
  mcvd=(model.ngf=8 "model.ch_mult=[1,2]" model.num_res_blocks=1 "model.attn_resolutions=[]"
    data.size=16 train.warmup=10)
  mcvd_steps=16 mcvd_batch=4 mcvd_more=4 tput_steps=6
  ramvid_cfg=configs/ramvid/tiny.yaml
  ramvid=(model.channels=8 "model.channel_mult=[1,2]" "model.attention_resolutions=[]"
    data.frames=4 data.size=16 train.warmup=10)
  ramvid_steps=12 ramvid_batch=4 ramvid_tput=6
  pvdm_ae=(model.clip=4 data.frames=4 data.size=32 model.width=32 model.depth=1 model.heads=2
    model.head_dim=16 model.proj_depth=1 model.proj_heads=2 model.proj_head_dim=16
    model.proj_mlp=32 model.disc_ndf=8 model.disc_layers=2)
  pvdm=(model.clip=4 data.frames=8 data.size=32 model.width=32 model.depth=1 model.heads=2
    model.head_dim=16 model.proj_depth=1 model.proj_heads=2 model.proj_head_dim=16
    model.proj_mlp=32 model.model_channels=16 "model.channel_mult=[1,2]"
    "model.attention_resolutions=[2]" model.unet_heads=2 train.warmup=0)
  pvdm_items=64 pvdm_steps=12 pvdm_batch=4
  eval=(--num-clips 4 --batch-size 2 --sampler ddim --steps 4)
  compile=(train.mixed_precision=bf16) # inductor on this CPU takes minutes: compile is GPU-only
  window=4
else
  gpu0=(--gpus 0)
  quiet=(--quiet)
  common=(train.sample_every=0 train.ckpt_every=0 train.log_every=5)
  mcvd=()
  mcvd_steps=500 mcvd_batch=64 mcvd_more=50 tput_steps=150
  ramvid_cfg=configs/ramvid/bair.yaml
  ramvid=(data.name=moving-digits data.channels=3)
  ramvid_steps=150 ramvid_batch=4 ramvid_tput=60
  pvdm_ae=()
  pvdm=()
  pvdm_items=1024 pvdm_steps=150 pvdm_batch=32
  eval=(--num-clips 64 --batch-size 16 --sampler dpm++ --steps 25)
  compile=(train.compile=true "train.compile_mode=${DDP_COMPILE_MODE:-reduce-overhead}"
    train.channels_last=true train.mixed_precision=bf16)
  window=10
fi

{
  echo "Machine: $(nproc) CPU cores; $(date -u +%FT%TZ); tiny=$tiny"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader |
      sed 's/^/  GPU /'
    nvidia-smi topo -m 2>/dev/null | head -n 4 | sed 's/^/    /'
  fi
  $py -c "import torch, accelerate; print('torch', torch.__version__, 'accelerate', \
accelerate.__version__, 'NCCL', torch.cuda.nccl.version() if torch.cuda.is_available() else '-')"
  echo "NCCL_NVLS_ENABLE=$NCCL_NVLS_ENABLE TORCH_SYMM_MEM_DISABLE_MULTICAST=$TORCH_SYMM_MEM_DISABLE_MULTICAST"
} | sed 's/^/    /' >"$notes"
cat "$notes"

m=$work/mcvd r=$work/ramvid
mcvd_train=(train "${quiet[@]}" configs/mcvd/smmnist.yaml "${common[@]}" "${mcvd[@]}")
ramvid_train=(train "${quiet[@]}" "$ramvid_cfg" "${common[@]}" "${ramvid[@]}")
half=$((mcvd_batch / 2)) rhalf=$((ramvid_batch / 2))
note "MCVD: configs/mcvd/smmnist.yaml ${mcvd[*]}: curves $mcvd_steps steps at a global batch of \
$mcvd_batch (1 x $mcvd_batch, 2 x $half); throughput at $mcvd_batch per process"
note "RaMViD: $ramvid_cfg ${ramvid[*]}: curves $ramvid_steps steps at a global batch of \
$ramvid_batch; throughput at $ramvid_batch per process ($ramvid_tput steps)"
note "PVDM: configs/pvdm/moving_digits_diffusion.yaml ${pvdm[*]} over $pvdm_items cached items \
of a 10-step stage-1 export: curves $pvdm_steps steps at a global batch of $pvdm_batch"
note "common overrides: ${common[*]}; eval: ssim, psnr and FVD with random features for I3D's (${eval[*]});
  compile2: ${compile[*]}"

# 1. MCVD: the same global batch on 1 and 2 processes, then 1gpu's batch on 2 processes
if want mcvd; then
  fits "mcvd 1gpu" 50 && launch "$m/1gpu" 1 120 "${gpu0[@]}" -- "${mcvd_train[@]}" \
    train.steps=$mcvd_steps train.batch_size=$mcvd_batch --out "$m/1gpu"
  fits "mcvd 2gpu" 50 && launch "$m/2gpu" 2 120 -- "${mcvd_train[@]}" \
    train.steps=$mcvd_steps train.batch_size=$half --out "$m/2gpu"
  fits "mcvd tput2" 40 && launch "$m/tput2" 2 90 -- "${mcvd_train[@]}" \
    train.steps=$tput_steps train.batch_size=$mcvd_batch --out "$m/tput2"
fi

# 2. RaMViD (BAIR's network): the same
if want ramvid; then
  fits "ramvid 1gpu" 50 && launch "$r/1gpu" 1 120 "${gpu0[@]}" -- "${ramvid_train[@]}" \
    train.steps=$ramvid_steps train.batch_size=$ramvid_batch --out "$r/1gpu"
  fits "ramvid 2gpu" 60 && launch "$r/2gpu" 2 120 -- "${ramvid_train[@]}" \
    train.steps=$ramvid_steps train.batch_size=$rhalf --out "$r/2gpu"
  fits "ramvid tput2" 40 && launch "$r/tput2" 2 90 -- "${ramvid_train[@]}" \
    train.steps=$ramvid_tput train.batch_size=$ramvid_batch --out "$r/tput2"
fi

# 3. MCVD resume across world sizes (at the same global batch) and sharded evaluation
if want mcvd; then
  if [[ -d $m/2gpu/ckpt ]] && fits "mcvd resume-2to1" 30; then
    cp -r "$m/2gpu" "$m/resume-2to1"
    launch "$m/resume-2to1" 1 60 -- "${mcvd_train[@]}" \
      train.steps=$((mcvd_steps + mcvd_more)) train.batch_size=$mcvd_batch --out "$m/resume-2to1"
  fi
  if [[ -d $m/1gpu/ckpt ]] && fits "mcvd resume-1to2" 30; then
    cp -r "$m/1gpu" "$m/resume-1to2"
    launch "$m/resume-1to2" 2 60 -- "${mcvd_train[@]}" \
      train.steps=$((mcvd_steps + mcvd_more)) train.batch_size=$half --out "$m/resume-1to2"
  fi
  if [[ -d $m/1gpu/export ]] && fits "mcvd eval" 60; then
    $py benchmarks/ddp.py random-i3d "$work/i3d_random.pt" >/dev/null
    for n in 1 2; do
      launch "$m/eval$n" $n 60 -- eval "$m/1gpu/export" --metrics ssim,psnr,fvd \
        --i3d "$work/i3d_random.pt" --trust-torchscript "${eval[@]}" --cache-dir "$m/cache$n" --out "$m/eval$n"
    done
  fi
fi

# 4. accelerate launch, compiled (CUDA graphs) + bf16 under DDP: MCVD at 1gpu's batch
if want compile && fits "compile2" 90; then
  launch "$m/compile2" 2 240 --accelerate -- "${mcvd_train[@]}" "${compile[@]}" \
    train.steps=$tput_steps train.batch_size=$mcvd_batch --out "$m/compile2"
fi

# 5. PVDM's latent U-Net over a latent cache of a short stage-1 run
if want pvdm && fits "pvdm" 90; then
  p=$work/pvdm
  launch "$p/ae" 1 60 -- train "${quiet[@]}" configs/pvdm/moving_digits_autoencoder.yaml \
    "${common[@]}" "${pvdm_ae[@]}" train.steps=10 --out "$p/ae"
  timeout 90 $py -m videogen pvdm-cache "$p/ae" moving-digits "$p/latents" --items $pvdm_items \
    --quiet >"$p/cache.log" 2>&1 || note "pvdm-cache failed: see logs/pvdm/cache.log"
  pvdm_train=(train "${quiet[@]}" configs/pvdm/moving_digits_diffusion.yaml "${common[@]}"
    "${pvdm[@]}" "model.autoencoder.path=$p/ae" "model.cache=$p/latents")
  fits "pvdm 1gpu" 30 && launch "$p/1gpu" 1 60 -- "${pvdm_train[@]}" \
    train.steps=$pvdm_steps train.batch_size=$pvdm_batch --out "$p/1gpu"
  fits "pvdm 2gpu" 30 && launch "$p/2gpu" 2 60 -- "${pvdm_train[@]}" \
    train.steps=$pvdm_steps train.batch_size=$((pvdm_batch / 2)) --out "$p/2gpu"
fi

note "total wall time $((SECONDS - start)) s"
$py benchmarks/ddp.py summary "$work" "$out" --window $window \
  --header "# Data-parallel checks ($( ((tiny)) && echo "2 CPU processes, gloo, tiny sizes" || echo "2 GPUs"))"
# every log, metrics.jsonl, config and metrics.json: small text files, one archive
(cd "$work" && find . \( -name 'launch.*' -o -name metrics.jsonl -o -name config.yaml \
  -o -name metrics.json -o -name '*.log' -o -name notes.md \) -print0 |
  tar czf "$out/logs.tar.gz" --null -T -)
ls -la "$out"
