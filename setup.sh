#!/usr/bin/env bash
# Create .venv and install mrl-plugins (editable) with its offline-model, demo, test, export and sweep extras.
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
packages=(-e ".[offline,demo,test,export,sweep]" -e plugins/mrl-msmarco -e plugins/mrl-homedepot -e plugins/mrl-pgvector
          -e plugins/mrl-ray -e plugins/mrl-annoy -e plugins/mrl-spark -e plugins/mrl-mteb)

# plugins/mrl-spark runs Spark, which needs a Java 17+ runtime: Debian's, installed here when it is
# missing and this runs as root with apt-get (as .ci/run installs Debian's chromium); otherwise
# install one yourself (the Spark tests say so, and fail where CI requires them)
if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup.sh: installing Debian's Java 17 runtime for Spark (plugins/mrl-spark)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless) >/dev/null 2>&1 \
    || echo "setup.sh: could not install openjdk-17-jre-headless; the Spark executor will not start" >&2
fi

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

# The oldest sentence-transformers the package metadata allows, unpacked beside the venv (not
# installed in it): tests/test_st_compat.py runs a whole tiny recipe on it, so the floor in
# pyproject.toml is tested, not assumed. Pure Python, no dependencies of its own to install.
floor=$(.venv/bin/python - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(next(re.search(r">=\s*([\w.]+)", d).group(1) for d in deps if d.startswith("sentence-transformers")))
PY
)
oldest=.venv/oldest/sentence-transformers-$floor
if [ ! -f "$oldest/sentence_transformers/__init__.py" ]; then
  rm -rf "$oldest" "$oldest.download"
  .venv/bin/python -m pip download -qq --no-deps "sentence-transformers==$floor" -d "$oldest.download"
  .venv/bin/python -m zipfile -e "$oldest.download"/sentence_transformers-*.whl "$oldest"
  rm -rf "$oldest.download"
fi

# Serving stacks the export and the published models are tested against (tests/test_serving_stacks.py),
# each in its own venv under .venv/stacks: their pins conflict with ours (fastembed wants
# huggingface_hub 1.x; infinity-emb numpy 1.x, sentence-transformers 3 and transformers 4).
# Versions are pinned so a new release cannot change what the tests claim about them.
stack() {
  local name=$1; shift
  local venv=.venv/stacks/$name want
  want=$(echo "$*" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$venv/.mrl-installed" 2>/dev/null)" != "$want" ]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -qq "$@"
    echo "$want" > "$venv/.mrl-installed"
  fi
}
stack fastembed "fastembed==0.9.1"
stack infinity "$torch_spec" "infinity-emb[server,torch]==0.0.78"

