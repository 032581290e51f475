#!/usr/bin/env bash
# `make test`: the whole suite in two phases, so a 2-core CI machine finishes in minutes, not a quarter hour.
#
#   1. Every test that measures no wall-clock timing, on all cores (pytest-xdist, one module per worker at a time),
#      while the Monado chroot for the OpenXR runtime tests builds in the background (cold: ~100 s, cached: 1 s).
#   2. The tests marked `realtime` (they record in real time, measure latency, rates or drops, or play sound
#      into the shared PulseAudio sink), one at a time on a machine that runs nothing else of ours.
#
# `tools/ci/run-tests.sh --start-build` only starts the chroot build in the background and returns: `make test`
# calls it before setting up .venv, so the build (~150 s cold: debootstrap, apt, wheels) overlaps the pip install
# instead of phase 1's tests (on 2 cores that cost phase 1 ~80 s). The run then waits for that build.
#
# Usage: tools/ci/run-tests.sh PYTHON [PYTEST ARGS...]. VRCAP_TEST_WORKERS sets phase 1's worker count (default:
# the cores, at most 4: each worker may train a model or drive a browser). Plain `pytest` still runs everything
# in one process, in order. Exit status: phase 1's if it failed, else phase 2's; pytest's 5 ("no tests
# collected") fails like any other error.
set -uo pipefail
cd "$(dirname "$0")/../.."
STATUS=.cache/openxr-build.status # written by the background build when it ends: its exit code

if [ "${1:-}" = "--start-build" ]; then
  if [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then
    mkdir -p .cache
    rm -f "$STATUS"
    echo "run-tests: building the Monado chroot in the background (log: .cache/openxr-build.log)"
    ( bash tools/ci/openxr-runtime.sh build >.cache/openxr-build.log 2>&1; echo $? >"$STATUS" ) </dev/null >/dev/null 2>&1 &
    echo $! >.cache/openxr-build.pid
  fi
  exit 0
fi

PY="${1:-.venv/bin/python}"
shift || true

cores="$(nproc 2>/dev/null || echo 2)"
workers="${VRCAP_TEST_WORKERS:-$((cores < 4 ? cores : 4))}"

build_pid=""
started="" # a build begun by `--start-build` (not our child: waited for through its status file)
if [ -f .cache/openxr-build.pid ] && { [ -f "$STATUS" ] || kill -0 "$(cat .cache/openxr-build.pid)" 2>/dev/null; }; then
  started=1
  rm -f .cache/openxr-build.pid
elif [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then
  mkdir -p .cache
  echo "run-tests: building the Monado chroot in the background (log: .cache/openxr-build.log)"
  bash tools/ci/openxr-runtime.sh build >.cache/openxr-build.log 2>&1 &
  build_pid=$!
fi

echo "run-tests: phase 1 of 2, tests that measure no timing, $workers workers"
"$PY" -m pytest -m "not realtime" -n "$workers" --dist loadfile "$@"
first=$?

if [ -n "$started" ]; then
  while [ ! -f "$STATUS" ]; do sleep 1; done
  if [ "$(cat "$STATUS")" = 0 ]; then
    echo "run-tests: Monado chroot ready"
  else
    echo "run-tests: the Monado chroot build failed; last lines of .cache/openxr-build.log:"
    tail -n 5 .cache/openxr-build.log
  fi
elif [ -n "$build_pid" ]; then
  if wait "$build_pid"; then
    echo "run-tests: Monado chroot ready"
  else
    # Not fatal here: the OpenXR test builds again and reports the failure itself (and fails in CI).
    echo "run-tests: the Monado chroot build failed; last lines of .cache/openxr-build.log:"
    tail -n 5 .cache/openxr-build.log
  fi
fi

echo "run-tests: phase 2 of 2, realtime tests, one at a time"
"$PY" -m pytest -m realtime "$@"
second=$?

if [ "$first" -ne 0 ]; then
  echo "run-tests: phase 1 failed (pytest exit $first)"
  exit "$first"
fi
exit "$second"
