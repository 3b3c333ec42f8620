#!/usr/bin/env bash
# jaxnets vs PyTorch AMP on one NVIDIA GPU: resnet50 (224 px) and resnet20 (32 px), train and
# eval img/s, bf16 compute with fp32 master weights on both sides; PyTorch as eager NCHW, eager
# channels_last and torch.compile (inductor); the machine, the versions and a parity line (fp32
# logits at the highest matmul precision, max |Δ| ≤ 1e-4) with the table. Sized to finish in
# under 8 minutes on an H200 (most of it compilation: XLA's and inductor's).
#
#   scripts/bench_gpu.sh                 # on the GPU machine (python3 with jax[cuda], torch)
#   scripts/bench_gpu.sh --smoke         # CPU dry run: tiny batches and images, same code path
#   PYTHON=.venv/bin/python scripts/bench_gpu.sh --smoke
#
# Extra arguments go to scripts/bench_models.py (e.g. --json runs/bench_gpu.json, --record).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# Models resolve conv_impl="auto" to plain XLA convolutions on a GPU (the custom conv VJP of
# jaxnets.models.layers is for XLA:CPU); the override makes --smoke on a CPU take that path too.
export JAXNETS_CONV=xla
# jax and torch share the GPU: jax would take 75 % of its memory up front by default.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}

mode=gpu
if [[ "${1:-}" == "--smoke" ]]; then
    mode=smoke
    shift
fi

if [[ $mode == gpu ]]; then
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
        --format=csv,noheader || true
    args=(--device gpu --models resnet50,resnet20 --batch resnet50=256,resnet20=512
          --precision bf16 --repeats 5 --warmup 3 --min-time 0.5 --retries 0)
else
    # CPU: batch 2, resnet50 at 32 px, one repeat of one step; exercises every code path
    # (conversion, the PyTorch variants, interleaving, parity, the table) in a few minutes.
    args=(--device cpu --models resnet50,resnet20 --quick --image-size 32 --precision bf16
          --threads 1)
fi
variants=${TORCH_VARIANTS:-eager,channels_last,compile}

"$PYTHON" - <<'EOF'
import platform
from importlib import metadata
names = ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "optax", "torch",
         "torchvision", "timm", "numpy")
found = []
for name in names:
    try:
        found.append(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
print(f"python {platform.python_version()}; " + ", ".join(found))
EOF
exec "$PYTHON" scripts/bench_models.py "${args[@]}" --torch-variants "$variants" "$@"
