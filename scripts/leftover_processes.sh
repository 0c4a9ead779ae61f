#!/usr/bin/env bash
# leftover_processes.sh RUN_ID [--kill]: the processes still alive that carry TANGO2_TEST_RUN=RUN_ID in their
# environment, i.e. that a test run started (nodes, brokers, servers) and did not end. They would take the names
# and ports of the next run. Lists them and exits 1 when there are any; --kill also ends them.
set -uo pipefail
run_id="${1:?usage: leftover_processes.sh RUN_ID [--kill]}"
leftovers=()
for environ in /proc/[0-9]*/environ; do
  pid="${environ#/proc/}"; pid="${pid%/environ}"
  [ "$pid" = "$$" ] && continue
  if { tr '\0' '\n' < "$environ"; } 2>/dev/null | grep -qx "TANGO2_TEST_RUN=$run_id"; then
    leftovers+=("$pid $({ tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | cut -c1-160)")
  fi
done
[ ${#leftovers[@]} -eq 0 ] && exit 0
echo "processes the test run left behind:" >&2
printf '  %s\n' "${leftovers[@]}" >&2
if [ "${2:-}" = "--kill" ]; then
  for entry in "${leftovers[@]}"; do kill "${entry%% *}" 2>/dev/null || true; done
fi
exit 1
