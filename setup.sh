#!/usr/bin/env bash
# Create .venv and install mrl-plugins (editable) with its offline-model, demo, test and export extras.
# Safe to run again: it reinstalls only when a pyproject.toml changed. pip runs with -qq: errors
# still show, warnings do not.
#
# torch is pinned here, not in the package metadata: torch==2.13.0 resolves to a CPU build on
# the project's CI machines, while an unpinned torch pulls a multi-GB CUDA build. On a GPU
# machine choose your build with TORCH_SPEC, e.g. TORCH_SPEC="torch" ./setup.sh.
set -euo pipefail
trap 'echo "setup.sh: failed at line $LINENO; nothing after it was installed." >&2' ERR
cd "$(dirname "$0")"
python=${PYTHON:-python3}
torch_spec=${TORCH_SPEC:-torch==2.13.0}
packages=(-e ".[offline,demo,test,export]" -e plugins/mrl-msmarco -e plugins/mrl-homedepot)

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.mrl-installed
shopt -s nullglob
manifests=(pyproject.toml plugins/*/pyproject.toml)
want=$( (echo "$torch_spec"; cat "${manifests[@]}") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -qq --upgrade pip
  .venv/bin/python -m pip install -qq "$torch_spec" "${packages[@]}"
  echo "$want" > "$stamp"
fi
