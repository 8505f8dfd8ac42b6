#!/usr/bin/env bash
# The end-to-end run (make e2e): every package with e2e tests, one at a
# time. These tests compare tracerd with the truth of real clocks on a
# shared machine, where a descheduled thread now and then stretches one
# side's time past a test's tolerance. A test that fails is run again
# once, alone; the run fails if it fails again, or if more than
# MAX_RERUNS top-level tests failed (that is no longer noise). Every
# rerun is reported as FLAKY with the first failure's output kept above.
set -uo pipefail
GO=${GO:-go}
MAX_RERUNS=${MAX_RERUNS:-3}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

"$GO" test -tags e2e -count=1 -p 1 -timeout 45m "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] && exit 0

# Top-level failures, with their packages: "--- FAIL: TestX" lines are
# followed, at the package's end, by "FAIL<TAB>pkg".
mapfile -t failed < <(awk '
	/^--- FAIL: / { tests[$3] = 1; next }
	/^FAIL\t/ { for (t in tests) print $2 " " t; delete tests }
' "$log" | sort -u)
if [ "${#failed[@]}" -eq 0 ]; then
	echo "e2e: failed without a failing test (build error, panic or timeout): not rerun" >&2
	exit "$status"
fi
if [ "${#failed[@]}" -gt "$MAX_RERUNS" ]; then
	echo "e2e: ${#failed[@]} tests failed (more than $MAX_RERUNS): not rerun" >&2
	exit "$status"
fi
rc=0
for f in "${failed[@]}"; do
	pkg=${f% *} test=${f#* }
	echo "e2e: $test ($pkg) failed; running it again, alone" >&2
	if "$GO" test -tags e2e -count=1 -timeout 20m -run "^${test}\$" "$pkg"; then
		echo "e2e: FLAKY: $test ($pkg) failed once and passed when run again" >&2
	else
		echo "e2e: $test ($pkg) failed twice" >&2
		rc=1
	fi
done
exit "$rc"
