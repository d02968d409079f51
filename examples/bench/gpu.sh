#!/usr/bin/env bash
# The GPU figures of issue #8 in one script (H100/H200, fp16, 512x512, 50 steps, random full-size weights).
# Run from the repository root on a machine with one CUDA GPU:  bash examples/bench/gpu.sh runs/bench-gpu
# Each line writes one JSON file; docs/benchmarks.md explains the fields.
set -euo pipefail
out="${1:-runs/bench-gpu}"
mkdir -p "$out"
ek() { .venv/bin/editkit bench --device cuda --dtype float16 --size full --resolution 512 --steps 50 "$@"; }

# ip2p vs diffusers' StableDiffusionInstructPix2PixPipeline, both eager, same modules, same run
ek --guide ip2p --batch 1 --compare diffusers --repeats 5 --json "$out/ip2p_eager.json"
# compiled UNet (diffusers' pipeline gets the same compiled UNet); compilation shows in warmup_s
ek --guide ip2p --batch 1 --compare diffusers --compile max-autotune --warmup 2 --repeats 5 --json "$out/ip2p_compiled.json"
# MGIE end to end: 32-token expressive instruction + 8 [IMG], edit head, 50 steps, VAE; static-cache compiled decode
ek --guide mgie --batch 1,8 --new-tokens 40 --set llm_cache=static --set compile_llm=true --compile max-autotune \
   --warmup 2 --repeats 3 --json "$out/mgie_fast.json"
ek --guide mgie --batch 1 --new-tokens 40 --no-fast --repeats 3 --json "$out/mgie_eager.json"
