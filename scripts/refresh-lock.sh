#!/usr/bin/env bash
# Refresh requirements.lock: resolve the newest versions that pyproject.toml's ranges allow in a
# scratch venv (torch stays 2.13.0: newer releases on the index are CUDA builds), run the whole
# suite with them, and write the lock only if it is green.
#
#   scripts/refresh-lock.sh            resolve, test, write requirements.lock
#   scripts/refresh-lock.sh --check    resolve and test only (the suite with the newest versions)
#
# Env: PYTHON (python3), REFRESH_VENV (a scratch dir under /tmp), PYTEST_ARGS (extra pytest args).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
VENV=${REFRESH_VENV:-$(mktemp -d /tmp/hostctl-lock.XXXXXX)}
TORCH=torch==2.13.0
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "refresh-lock: scratch venv $VENV"
"$PY" -m venv --clear "$VENV"
"$VENV/bin/python" -m pip install -q "$TORCH"        # first, so no range pulls a CUDA torch
"$VENV/bin/python" -m pip install -q "$TORCH" -e '.[test,plot]'
new=$(mktemp)
{
    echo "# Exact versions the whole suite is green with (runtime, test, plot; transitive too)."
    echo "# Made by scripts/refresh-lock.sh; installed by scripts/dev and .ci/run. Python 3.11."
    "$VENV/bin/python" -m pip freeze --all --exclude-editable \
        | grep -vE '^(pip|wheel)==|^#|^-e ' \
        | sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/' \
        | LC_ALL=C sort -f
} > "$new"
echo "refresh-lock: resolved:"; diff <(grep -v '^#' requirements.lock 2>/dev/null) \
    <(grep -v '^#' "$new") || true

# The suite, as the README's test command runs it, but with this venv.
HOSTCTL_VENV=$VENV HOSTCTL_NO_SETUP=1 bash scripts/dev test ${PYTEST_ARGS:-} || {
    echo "refresh-lock: the suite is red with these versions; requirements.lock left as it was"
    exit 1
}
if [ "${1:-}" = "--check" ]; then
    echo "refresh-lock: green with the newest versions (requirements.lock not written)"
else
    cp "$new" requirements.lock
    echo "refresh-lock: requirements.lock written; commit it"
fi
