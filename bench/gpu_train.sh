#!/usr/bin/env bash
# GRPO step on a GPU: our grpo_step against TRL's GRPO loss on the same batch. What it measures,
# the sizes and the wheels: bench/gpu_train.py's docstring.
#
#   bench/gpu_train.sh [gpu_train.py flags]   run it (on a GPU machine: no flags; --tiny on a CPU)
#   bench/gpu_train.sh --download-wheels      with a package index: fetch the wheels into .whl/
#
# When .whl/ holds wheels and the Python lacks trl (a GPU machine's image, no network), they are
# installed with pip --target into a folder of their own, ahead of the installed packages on
# PYTHONPATH. Our packages come from the source tree. PYTHON picks the interpreter (default: the
# project's .venv when present, else python3); WHEEL_PYTHON_VERSION (default 3.12) the wheels'
# Python; WHEEL_DIR (default .whl) where they are.
#
# Figures: a table and JSON on stdout; with $OUT set, also $OUT/gpu_train.json and the whole
# output in $OUT/gpu_train.log. The exit status is not 0 when either engine failed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then python=.venv/bin/python; fi
wheel_dir=${WHEEL_DIR:-.whl}
wheels=(
  trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
  transformers==5.23.0 peft==0.21.2
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
)

if [[ "${1:-}" == "--download-wheels" ]]; then
  platforms=()
  for p in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$p")
  done
  "$python" -m pip download --no-deps --only-binary=:all: \
    --python-version "${WHEEL_PYTHON_VERSION:-3.12}" --implementation cp "${platforms[@]}" \
    -d "$wheel_dir" "${wheels[@]}"
  du -sh "$wheel_dir"
  exit 0
fi

if compgen -G "$wheel_dir/*.whl" >/dev/null && ! "$python" -c "import trl" 2>/dev/null; then
  site=${WHEEL_SITE:-/tmp/gpu_train_site}
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$wheel_dir"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/services/trainer/src:$PWD/proto/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=false

if [[ -n "${OUT:-}" ]]; then
  if command -v nvidia-smi >/dev/null; then
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true; } |
      tee "$OUT/gpu_train.log"
  fi
  "$python" bench/gpu_train.py --json "$OUT/gpu_train.json" "$@" 2>&1 |
    tee -a "$OUT/gpu_train.log"
else
  "$python" bench/gpu_train.py "$@"
fi
