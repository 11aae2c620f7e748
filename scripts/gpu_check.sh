#!/usr/bin/env bash
# One check of metaconf on a CUDA machine, from a clone of this repository:
#   1. installs metaconf[vllm,train,hub] (+ dev, for pytest) into its own environment (uv if present, else pip)
#   2. runs the demo with model.engine: vllm
#   3. runs the vLLM tests (tests/test_vllm.py, tests/test_engine_vllm.py) against that environment's vLLM
#   4. runs the generation benchmark (HF engine vs vLLM offline / vllm serve) and the training benchmark (ours vs TRL
#      defaults on the same LoRA job)
#   5. prints one markdown table: each step, ok or FAILED, its time and its headline numbers (paste into BENCHMARKS.md)
# Every step runs even if an earlier one failed; the exit status is non-zero if any failed. Logs and JSON results are
# kept in the output folder.
#
# usage: scripts/gpu_check.sh [--dry-run] [--venv DIR] [--out DIR] [--python PY]
#   --dry-run   print every command it would run, and check on this machine (no GPU needed) what can be checked:
#               the files exist, the configs parse, every python command's --help works (with --python, default
#               `python3`, which must import metaconf)
#   --venv DIR  the environment to create / reuse (default .venv-gpu)
#   --out DIR   logs, JSON results and summary.md (default gpu-check/)
set -euo pipefail

DRY_RUN=0
VENV=.venv-gpu
OUT=gpu-check
CHECK_PYTHON=python3
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --venv) VENV="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --python) CHECK_PYTHON="$2"; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
REPO=$(pwd)
PY="$REPO/$VENV/bin/python"
ROWS=()
FAILED=0

say() { printf '%s\n' "$*" >&2; }
# show CMD...: print a command as it can be pasted into a shell (arguments with other characters single-quoted)
show() {
    local out="" a
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./=:,@%+-]+$ ]]; then out+="$a "; else out+="'${a//\'/\'\\\'\'}' "; fi
    done
    printf '+ %s\n' "${out% }"
}

# step NAME CMD...: run CMD with its output in $OUT/NAME.log, record ok/FAILED and seconds (dry run: print it)
step() {
    local name=$1; shift
    show "$@"
    if [[ $DRY_RUN -eq 1 ]]; then return 0; fi
    local start=$SECONDS status=ok
    if ! "$@" >"$OUT/$name.log" 2>&1; then status=FAILED; FAILED=1; tail -n 20 "$OUT/$name.log" >&2; fi
    ROWS+=("$name|$status|$((SECONDS - start))")
    say "gpu_check: $name: $status ($((SECONDS - start)) s)"
}

# check DESCRIPTION CMD...: a dry-run check, run quietly; a failure stops the dry run
check() {
    local what=$1; shift
    if "$@" >/dev/null 2>"$OUT/dry-run-check.err"; then
        say "check ok: $what"
    else
        say "check FAILED: $what"; cat "$OUT/dry-run-check.err" >&2; exit 1
    fi
}

install_env() {
    if command -v uv >/dev/null 2>&1; then
        uv venv --python python3 "$VENV" && uv pip install --python "$PY" -e ".[vllm,train,hub,dev]"
    else
        python3 -m venv "$VENV" && "$PY" -m pip install --upgrade pip && "$PY" -m pip install -e ".[vllm,train,hub,dev]"
    fi
}

DEMO_ARGS=(-m metaconf demo --model.engine vllm --model.name embedded --out "$OUT/demo-vllm" --quiet)
VLLM_TESTS=(-m pytest -q tests/test_vllm.py tests/test_engine_vllm.py)
GEN_ARGS=(benchmarks/bench_generation.py --questions 64 --repeats 3 --dtypes auto --skip-naive --vllm-python "$PY"
    --json "$OUT/generation.json")
TRAIN_ARGS=(benchmarks/bench_training.py throughput --steps 8 --repeats 3 --variants bf16-weights,trl-plain
    --json "$OUT/training.json")

mkdir -p "$OUT"
if [[ $DRY_RUN -eq 1 ]]; then
    say "gpu_check: dry run: the commands below are printed, not run; then the checks that need no GPU"
    show nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    if command -v uv >/dev/null 2>&1; then
        show uv venv --python python3 "$VENV"; show uv pip install --python "$PY" -e ".[vllm,train,hub,dev]"
    else
        show python3 -m venv "$VENV"; show "$PY" -m pip install -e ".[vllm,train,hub,dev]"
    fi
fi

for f in pyproject.toml tests/test_vllm.py tests/test_engine_vllm.py benchmarks/bench_generation.py \
    benchmarks/bench_training.py src/metaconf/study/demo.yaml; do
    [[ -f $f ]] || { say "gpu_check: $f is missing (run from a clone of the repository)"; exit 1; }
done

if [[ $DRY_RUN -eq 0 ]]; then
    command -v nvidia-smi >/dev/null 2>&1 || { say "gpu_check: no nvidia-smi: not a CUDA machine (try --dry-run)"; exit 1; }
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
    show install_env
    step install install_env
fi

step demo_vllm "$PY" "${DEMO_ARGS[@]}"
step vllm_tests env METACONF_VLLM_PYTHON="$PY" "$PY" "${VLLM_TESTS[@]}"
step bench_generation "$PY" "${GEN_ARGS[@]}"
step bench_training "$PY" "${TRAIN_ARGS[@]}"

if [[ $DRY_RUN -eq 1 ]]; then
    check "pyproject.toml has the extras vllm, train, hub, dev" "$CHECK_PYTHON" -c "
import sys, tomllib
extras = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']
sys.exit(0 if {'vllm', 'train', 'hub', 'dev'} <= set(extras) else 1)"
    check "the demo config with model.engine: vllm parses" "$CHECK_PYTHON" -m metaconf demo --model.engine vllm \
        --model.name embedded --out "$OUT/demo-vllm" --show-config
    check "the accelerate launch configs parse" "$CHECK_PYTHON" -c "
import yaml
from metaconf.training.launch import launch_configs
for path in launch_configs().values():
    assert isinstance(yaml.safe_load(path.read_text()), dict), path"
    check "metaconf demo --help" "$CHECK_PYTHON" -m metaconf demo --help
    check "pytest collects the vLLM tests" "$CHECK_PYTHON" -m pytest -q --collect-only tests/test_vllm.py tests/test_engine_vllm.py
    check "bench_generation.py --help" "$CHECK_PYTHON" benchmarks/bench_generation.py --help
    check "bench_training.py throughput --help" "$CHECK_PYTHON" benchmarks/bench_training.py throughput --help
    rm -f "$OUT/dry-run-check.err"
    say "gpu_check: dry run done"
    exit 0
fi

# headline numbers from the JSON the benchmarks and the demo wrote (a step that failed has none)
headline() {
    "$PY" - "$OUT" "$1" <<'PY' 2>/dev/null || true
import json, sys
from pathlib import Path
out, name = Path(sys.argv[1]), sys.argv[2]
def load(p):
    return json.loads((out / p).read_text()) if (out / p).is_file() else None
if name == "demo_vllm" and (t := load("demo-vllm/timings.json")):
    stages = t.get("stages", t)
    print(", ".join(f"{k} {v:.0f}s" for k, v in stages.items() if isinstance(v, (int, float))))
elif name == "bench_generation" and (g := load("generation.json")):
    print(json.dumps(g.get("summary", g))[:300])
elif name == "bench_training" and (r := load("training.json")):
    print("; ".join(f"{v['name']}: {v['tokens_per_s']:.0f} tok/s" for v in r.get("variants", {}).values()))
PY
}

{
    echo "| step | result | seconds | numbers |"
    echo "|---|---|---:|---|"
    for row in "${ROWS[@]}"; do
        IFS='|' read -r name status secs <<<"$row"
        echo "| $name | $status | $secs | $(headline "$name" | tr '|' '/') |"
    done
    echo
    echo "GPU: $(cat "$OUT/gpu.txt" 2>/dev/null || echo unknown); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
} | tee "$OUT/summary.md"
exit $FAILED
