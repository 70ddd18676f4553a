#!/bin/sh
# The test runner: every cmocka unit test, then every integration script.
# Usage: run-tests.sh BUILD_DIR [unit|integration]
# An integration script exits 0 (pass), 77 (skip) or anything else (fail); it
# needs root, /dev/fuse and loop devices and otherwise skips.  The last line is
# "N passed, N failed, N skipped".
BUILD=${1:-build}
TIER=${2:-all}
BUILD=$(cd "$BUILD" && pwd)
TOP=$(cd "$(dirname "$0")/.." && pwd)
export THINFS_BUILD="$BUILD"
pass=0; fail=0; skip=0; failed=""
run_one() { # name cmd...
	name=$1; shift
	log=$(mktemp /tmp/thinfs-testlog.XXXXXX)
	start=$(date +%s)
	timeout -k 10 "${TEST_TIMEOUT:-600}" "$@" > "$log" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	case $rc in
	0) pass=$((pass + 1)); echo "PASS $name (${secs}s)" ;;
	77) skip=$((skip + 1)); echo "SKIP $name: $(tail -n 1 "$log")" ;;
	*) fail=$((fail + 1)); failed="$failed $name"; echo "FAIL $name (exit $rc, ${secs}s)"
	   sed 's/^/    | /' "$log" | tail -n 60 ;;
	esac
	rm -f "$log"
}
if [ "$TIER" = all ] || [ "$TIER" = unit ]; then
	for t in "$BUILD"/tests/test_*; do
		[ -x "$t" ] || continue
		run_one "unit/$(basename "$t")" "$t"
	done
	# the buffered data path (file systems without O_DIRECT, e.g. tmpfs)
	for t in test_pool test_model test_concurrency test_ring; do
		[ -x "$BUILD/tests/$t" ] || continue
		run_one "unit-buffered/$t" env THINFS_DATA_BUFFERED=1 "$BUILD/tests/$t"
	done
	# the library's files call each other without cycles
	run_one layout/deps sh "$TOP/tests/check-deps.sh" "$BUILD"
	# every document, scenario and invariant the code cites exists
	run_one docs/refs sh "$TOP/tests/check-doc-refs.sh"
	# negative controls: the test must fail against the broken build
	for t in "$BUILD"/tests/control_*; do
		[ -x "$t" ] || continue
		run_one "control/$(basename "$t")" sh -c '"$1" > /dev/null 2>&1 && { echo "control passed: the test cannot fail"; exit 1; }; echo "failed as it must"; exit 0' sh "$t"
	done
fi
if [ "$TIER" = all ] || [ "$TIER" = integration ]; then
	for t in "$TOP"/tests/integration/[0-9]*.sh; do
		[ -f "$t" ] || continue
		run_one "integration/$(basename "$t" .sh)" bash "$t"
	done
fi
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
