#!/usr/bin/env bash
# Install everything, check the Dockerfile, then run the whole test suite (fast
# and slow tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# No Docker engine here: parse the Dockerfile and check what it relies on
# (scripts/check_dockerfile.py); a broken Dockerfile fails the run. The install
# steps it runs are the ones just done above.
.venv/bin/python scripts/check_dockerfile.py Dockerfile
set +e
.venv/bin/python -m pytest -q -ra "$@"
rc=$?
set -e
# pytest exits 5 when no test was collected (e.g. a -k filter that matches none).
if [ "$rc" = 5 ]; then echo "no tests collected"; exit 0; fi
exit "$rc"
