#!/usr/bin/env bash
# Run the whole test suite with the project's venv. pytest's exit code 5 ("no tests collected") is a failure
# here: a suite that ran nothing has not passed.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest test "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "run_tests: pytest collected no tests; treating that as a failure" >&2
  exit 1
fi
exit "$status"
