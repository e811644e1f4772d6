#!/bin/sh
# Installs torch before the other dependencies of an image. TORCH_VARIANT=cuda (default) leaves
# it to the dependency layer (PyPI's default Linux build, with CUDA); TORCH_VARIANT=cpu installs
# the CPU build from local wheels (/wheels, when mounted) or TORCH_CPU_INDEX_URL, ~1.5 GB
# smaller. Usage: install-torch.sh TORCH_VERSION
set -eu
version="$1"
case "${TORCH_VARIANT:-cuda}" in
  cuda) echo "torch: the dependency layer installs PyPI's build of torch $version" ;;
  cpu)
    set -- --find-links /wheels
    if [ -n "${TORCH_CPU_INDEX_URL:-}" ]; then set -- "$@" --extra-index-url "$TORCH_CPU_INDEX_URL"; fi
    pip install "$@" "torch==$version+cpu" ;;
  *) echo "TORCH_VARIANT must be cpu or cuda, not ${TORCH_VARIANT}" >&2; exit 2 ;;
esac
