#!/usr/bin/env bash
# The whole suite with the project's venv: lint (ruff), the unit tests with ROS made unimportable (the domain logic
# must not need it), then the integration and ROS tests. With arguments, only pytest with those arguments.
# pytest's exit code 5 ("no tests collected") is a failure here: a suite that ran nothing has not passed.
set -uo pipefail
cd "$(dirname "$0")/.."

pytest() {
  .venv/bin/python -m pytest "$@"
  local status=$?
  if [ "$status" -eq 5 ]; then
    echo "run_tests: pytest collected no tests in $*; treating that as a failure" >&2
    return 1
  fi
  return "$status"
}

if [ "$#" -gt 0 ]; then
  pytest "$@"
  exit $?
fi
.venv/bin/ruff check . || { echo "run_tests: lint failed (ruff check .)" >&2; exit 1; }
failed=0
export TANGO2_TEST_RUN="$$-$(date +%s)"  # inherited by every process the tests start, to find what is left
TANGO2_NO_ROS=1 pytest test/unit || failed=1
pytest test/integration test/ros || failed=1
sleep 2  # processes that are being shut down as pytest exits
scripts/leftover_processes.sh "$TANGO2_TEST_RUN" --kill || failed=1
exit "$failed"
