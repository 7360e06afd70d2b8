#!/usr/bin/env bash
# The wheels the GPU machine lacks (diffusers, PyAV and diffusers' importlib_metadata), for
# CPython 3.12 on x86-64 Linux, into .whl/ (git ignores it). The device tool carries them with
# `carry: [".whl"]`; gpu_ttq.sh, gpu_pvdm.sh and gpu_ddp.sh install them into /tmp/site.
#
#   bash benchmarks/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
  manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d .whl diffusers==0.42.1 importlib_metadata av==18.1.0
ls -la .whl
