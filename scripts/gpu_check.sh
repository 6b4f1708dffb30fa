#!/usr/bin/env bash
# The prepared GPU check: from a fresh checkout on a machine with one CUDA GPU, in at most
# GPU_CHECK_BUDGET_S seconds (default 480 = 8 minutes) in all:
#   install (pip install -e ".[dev]"), the CUDA-marked tests (pytest -m cuda), airbench94 (5 dense runs, a
#   FlipOut run, its training step: targets below), a 3-epoch VGG19 FlipOut run
#   on synthetic CIFAR-10 files in fp32 and in bf16 (masks, sparsity, no NaN checked), the CPU inference
#   benchmark of the fp32 run, a 2-epoch LeNet-300-100 run with 2:4 masks and its 2:4 semi-structured
#   inference timing (dense, to_sparse_semi_structured, CSR; fp16), JPEG decoding in DataLoader workers vs on the GPU (scripts/decode_bench.py),
#   the throughput matrix (VGG19 and ResNet18, batch 128, fp32/bf16,
#   eager/compiled; dense, global_magnitude, flipout_no_noise, flipout; ratios measured in one process
#   per cell by flipout-bench), then OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md.
# Every step has its own time limit (and never more than what is left of the budget); a step that fails
# or runs out of time is recorded and the next one runs, so the script always ends with its summary.
# Steps are ordered by importance: the compiled cells (slow to compile) come last.
#
#   scripts/gpu_check.sh [--dry-run] OUT_DIR
#   --dry-run: print the steps (name, time limit, command) and run nothing.
# Environment: PYTHON (default python3), GPU_CHECK_BUDGET_S (480), GPU_CHECK_SKIP_INSTALL=1, CIFAR10_ROOT (real
# CIFAR-10 for airbench94's accuracy; synthetic files otherwise).
set -u

DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
if [ $# -ne 1 ]; then echo "usage: scripts/gpu_check.sh [--dry-run] OUT_DIR" >&2; exit 2; fi
OUT=$(realpath -m "$1")
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-480}
TOOLS="scripts/gpu_check_tools.py"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, even if the install step fails
export PYTHONUNBUFFERED=1
SECONDS=0

if [ "$DRY" = 0 ]; then
  mkdir -p "$OUT/logs" || exit 2
  : > "$OUT/steps.jsonl"
fi

# step NAME LIMIT_S COMMAND...: run COMMAND under a time limit, its output in OUT/logs/NAME.log, and
# record {step, status, rc, seconds, limit_s} in OUT/steps.jsonl.
step() {
  local name=$1 limit=$2
  shift 2
  if [ "$DRY" = 1 ]; then
    echo "[$name] (at most ${limit}s) $*"
    return 0
  fi
  local left=$((BUDGET - SECONDS - 15))  # 15 s kept for the summary
  local status rc start=$SECONDS
  if [ "$left" -lt 10 ]; then
    status=skipped; rc=-1
  else
    [ "$limit" -gt "$left" ] && limit=$left
    echo "[$name] (at most ${limit}s) $*"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
    rc=$?
    if [ "$rc" = 0 ]; then status=ok; elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=timeout; else status=failed; fi
    echo "    -> $status (rc $rc, $((SECONDS - start))s)"
  fi
  printf '{"step": "%s", "status": "%s", "rc": %s, "seconds": %s, "limit_s": %s}\n' \
    "$name" "$status" "$rc" "$((SECONDS - start))" "$limit" >> "$OUT/steps.jsonl"
}

if [ "${GPU_CHECK_SKIP_INSTALL:-0}" != 1 ]; then
  step install 120 "$PY" -m pip install -q -e ".[dev]"
fi
step gpu_visible 30 "$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print(torch.cuda.get_device_name(0), torch.__version__)"
step cuda_tests 60 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests --junitxml="$OUT/cuda_tests.xml"
# airbench94 (conf/experiment/airbench94.yaml): 5 dense runs (seeds 0-4) in one process, one FlipOut run at
# 93.75 %, and the training step of dense, FlipOut and RigL. Targets on an H100: a run under 6 s dense and
# under 7 s with FlipOut; 94.0 % mean test accuracy dense on real CIFAR-10 (CIFAR10_ROOT: a folder holding
# cifar-10-batches-py); on the synthetic files written here the accuracy means nothing, the times do.
AB_DATA=${CIFAR10_ROOT:-$OUT/cifar_full}
AB=(experiment=airbench94 device=cuda progress=false results_dir="$OUT/results_airbench")
if [ -z "${CIFAR10_ROOT:-}" ]; then
  step synthetic_cifar_full 40 "$PY" "$TOOLS" write-cifar "$OUT/cifar_full" --train 50000 --test 10000
fi
step airbench_dense 150 "$PY" "$TOOLS" train "$AB_DATA" -- -m "${AB[@]}" seed=0,1,2,3,4
step airbench_flipout 45 "$PY" "$TOOLS" train "$AB_DATA" -- "${AB[@]}" method=flipout sparsity=0.9375
step bench_airbench 60 "$PY" "$TOOLS" bench -- --experiment airbench94 --methods dense flipout rigl --device cuda --steps 10 --rounds 3 --warmup 3 --out "$OUT/bench_airbench"
step synthetic_cifar 20 "$PY" "$TOOLS" write-cifar "$OUT/data" --train 10000 --test 2000
RUN=(model=vgg19 method=flipout sparsity=0.75 epochs=3 schedule.rounding=exact device=cuda progress=false)
for prec in fp32 bf16; do
  step "run_$prec" 60 "$PY" "$TOOLS" train "$OUT/data" -- "${RUN[@]}" precision=$prec results_dir="$OUT/results_$prec"
  step "check_$prec" 20 "$PY" "$TOOLS" check-run "$OUT/results_$prec" "$OUT/run_$prec.json" --target 0.75
done
step inference 40 "$PY" "$TOOLS" inference "$OUT/results_fp32" -- --batches 1 16 --repeats 5 --warmup 1
# 2:4 semi-structured: LeNet-300-100 on the bundled subset with 2:4 masks (pattern=nm), then its
# Linear layers timed in fp16 as dense, torch.sparse.to_sparse_semi_structured and CSR on the GPU
NM=(experiment=quickstart method=flipout pattern=nm epochs=2 device=cuda progress=false)
step run_2_4 40 "$PY" -m flipout_repro.cli "${NM[@]}" results_dir="$OUT/results_2_4"
step inference_2_4 40 "$PY" "$TOOLS" inference "$OUT/results_2_4" -- --batches 1 64 --repeats 10 --warmup 2
# dataset.decode=workers vs device: an epoch of 1,024 synthetic 500x375 JPEGs each, into OUT/decode.json
step decode_bench 40 "$PY" scripts/decode_bench.py "$OUT/imagenet_jpeg" --out "$OUT/decode.json" --device cuda
BENCH=(--device cuda --batch-size 128 --channels-last --methods dense global_magnitude flipout_no_noise flipout
       --steps 20 --rounds 3 --warmup 5 --out "$OUT/bench")
for compiled in eager compiled; do
  for model in vgg19 resnet18; do
    for prec in fp32 bf16; do
      if [ "$compiled" = compiled ]; then flag=(--compile); limit=60; else flag=(); limit=20; fi
      step "bench_${model}_${prec}_${compiled}" "$limit" "$PY" "$TOOLS" bench -- --model "$model" --precision "$prec" "${BENCH[@]}" ${flag[@]+"${flag[@]}"}
    done
  done
done
if [ "$DRY" = 1 ]; then
  echo "[summary] $PY $TOOLS summarise $OUT  (writes $OUT/gpu_check.json and $OUT/gpu_check.md)"
  exit 0
fi
# the inference benchmark writes inference.json into the run folder: keep a copy beside the others
find "$OUT/results_fp32" -name inference.json -exec cp {} "$OUT/inference.json" \; 2>/dev/null
find "$OUT/results_2_4" -name inference.json -exec cp {} "$OUT/inference_2_4.json" \; 2>/dev/null
"$PY" "$TOOLS" summarise "$OUT"
echo "total ${SECONDS}s; written: $OUT/gpu_check.json, $OUT/gpu_check.md"
