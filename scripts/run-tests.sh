#!/usr/bin/env bash
# Run pytest, robust to the temporalio interpreter-exit crash (sdk-python issue 300).
#
# The SDK's native runtime can abort while Python tears down, turning a green run into exit
# 134. conftest.py records pytest's own verdict at session finish; only when that verdict is
# 0 *and* the process then died of a signal do we report success. Any failing, erroring or
# interrupted session keeps its exit code.
set -uo pipefail
cd "$(dirname "$0")/.."

status_file="$(mktemp)"
trap 'rm -f "$status_file"' EXIT
PYTEST_STATUS_FILE="$status_file" .venv/bin/python -m pytest "$@"
rc=$?
verdict="$(cat "$status_file" 2>/dev/null || true)"
if [ "$rc" -ge 128 ] && [ "$verdict" = "0" ]; then
  echo "run-tests: pytest passed; the interpreter then died with exit $rc at shutdown" \
       "(temporalio sdk-python#300). Reporting pytest's verdict: passed."
  exit 0
fi
exit "$rc"
