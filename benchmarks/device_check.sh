#!/usr/bin/env bash
# The GPU check, in one script (under 8 minutes on one GPU): the CUDA-marked tests (every head forward/backward on
# CUDA in float32 and bf16 autocast, a bf16-mixed training run, a one-process nccl DDP run), then the heads
# benchmark and the training-loop benchmark on CUDA. Writes their JSON under ${OUT:-benchmarks/results/cuda}.
#
#     bash benchmarks/device_check.sh            # from the repository root, with .venv installed (make install)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEST=${OUT:-benchmarks/results/cuda}
mkdir -p "$DEST"
status=0
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" \
    || exit 2
echo "== CUDA-marked tests"
"$PY" -m pytest -q -m cuda tests/cuda --junitxml "$DEST/cuda_tests.xml" || status=1
echo "== heads benchmark (CUDA)"
"$PY" benchmarks/heads.py --device cuda --out "$DEST/heads.json" || status=1
echo "== training-loop benchmark (CUDA)"
"$PY" benchmarks/train_loop.py --device cuda --epochs 2 --repeats 3 --out "$DEST/train_loop.json" || status=1
echo "== device_check: $([ $status = 0 ] && echo passed || echo FAILED); JSON in $DEST"
exit $status
