#!/bin/bash
# The GPU checks, as one script (each step has a time limit; 13 minutes at most in all, about 5 expected): memtool on CUDA end to end for every family, fp32
# against bf16 autocast, the step time of the 1k joint MemN2N config alone and as ten stacked restarts,
# and how each family's cost grows with size. Each figure is a real `memtool train` run's own training
# speed (examples_per_second in its metrics.jsonl: data, start-up and validation excluded).
#
#   bash bench/gpu_check.sh [BUNDLE] [OUT]     # BUNDLE from bench/offline_bundle.sh (default .gpu);
#                                              # OUT gets the runs' logs and gpu_check.txt (default runs/gpu)
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=${1:-.gpu}
out=${2:-runs/gpu}
mkdir -p "$out"
python=${PYTHON:-python3}
device=${DEVICE:-cuda}  # DEVICE=cpu tries the script itself on a machine without a GPU
scale=${STEPS_SCALE:-1}  # STEPS_SCALE=0.05: a smoke test of the script
if [ -d "$bundle/wheels" ] && ! "$python" -c "import pydantic" 2>/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --target "$bundle/installed" "$bundle"/wheels/*.whl
    export PYTHONPATH="$PWD:$PWD/$bundle/installed:$PWD/$bundle/site${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 MEMTOOL_CACHE_DIR=off
babi="$bundle/babi/en"
report="$out/gpu_check.txt"
{ nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; } | tee "$report"
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" | tee -a "$report"

# one training run for a fixed number of steps; prints its speed and its last validation
train() {  # name, seconds allowed, steps (0: the config's own), config, arguments...
    local name=$1 limit=$2 steps=$3 config=$4
    shift 4
    if [ "$steps" -gt 0 ] || [ "$scale" != 1 ]; then  # a whole run only at full scale
        set -- "$@" --set train.max_steps="$("$python" -c "print(max(2, round(${steps/#0/400} * $scale)))")"
    fi
    local started=$SECONDS
    rm -rf "${out:?}/$name"
    timeout "$limit" "$python" -m memtool train "$config" --device "$device" --out "$out/$name" "$@" \
        > "$out/$name.log" 2>&1
    local code=$?
    "$python" - "$out/$name" "$name" "$code" "$((SECONDS - started))" <<'PY' | tee -a "$report"
import json, sys
from pathlib import Path
run, name, code, wall = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
if not lines:
    print(f"{name}: exit {code}, no record after {wall} s (see its .log)")
    sys.exit()
last = json.loads(lines[-1])
scores = {k: round(v, 4) for k, v in last.items() if k.startswith("valid_") and isinstance(v, float)}
print(f"{name}: exit {code}, {wall} s in all, step {last['step']}, "
      f"{last.get('examples_per_second', float('nan')):.1f} examples/s, {scores}")
PY
}

B="--set data.path=$babi"
train quickstart 150 0 configs/quickstart.yaml
train joint1k-fp32 90 3000 configs/memn2n_babi_1k_joint.yaml $B
train joint1k-bf16 90 3000 configs/memn2n_babi_1k_joint.yaml $B --set train.precision=bf16
train joint1k-stack10 120 1000 configs/memn2n_babi_1k_joint.yaml $B --set train.restarts=10 \
    --set train.stack_restarts=true
train ntm-copy-fp32 60 300 configs/ntm_copy.yaml
train ntm-copy-bf16 60 300 configs/ntm_copy.yaml --set train.precision=bf16
train captioner-fp32 60 200 configs/captioner_shapes.yaml
train captioner-bf16 60 200 configs/captioner_shapes.yaml --set train.precision=bf16
[ "$scale" = 1 ] && timeout 90 "$python" bench/scaling.py --device "$device" --quick 2>&1 | tail -n 40 | tee -a "$report"
echo "report: $report"
