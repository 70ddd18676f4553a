#!/bin/sh
# make soak: the crash tiers for longer than CI can.  Each round runs
#   40_kill9_fsx            SOAK_FSX_KILLS (30) kill -9s under thinfs-fsx,
#                           3 under fio
#   41_powercut             SOAK_FIO_CUTS (20) power cuts under fio sync=1
#                           (and its controls)
#   45_powercut_campaign    SOAK_ROUND_CUTS (100) cuts and SOAK_ROUND_KILLS
#                           (100) kills under ackwriter, SOAK_FILE_CUTS (10)
#                           ext4 file cuts, a new seed each round (and its
#                           controls)
#   44_stop_continue_storm  SOAK_STOPS (3000) SIGSTOP/SIGCONT pairs per mode
# and counts the power cuts, kill -9s and stop/continue pairs each one made.
# Rounds go on until MINUTES have passed AND at least SOAK_CUTS power cuts
# and SOAK_KILLS kill -9s (default 1000 each; about 80 minutes here) were
# made; SOAK_CUTS=0 SOAK_KILLS=0 gives a soak of MINUTES only.  The controls'
# cuts are not counted.  It ends with the totals and "N passed, N failed".
# Usage: soak.sh BUILD_DIR [MINUTES]   (root; each round prints its figures)
BUILD=$(cd "${1:-build}" && pwd)
MINUTES=${2:-30}
TOP=$(cd "$(dirname "$0")/.." && pwd)
WANT_CUTS=${SOAK_CUTS:-1000}
WANT_KILLS=${SOAK_KILLS:-1000}
ROUND_CUTS=${SOAK_ROUND_CUTS:-100}
ROUND_KILLS=${SOAK_ROUND_KILLS:-100}
STOPS=${SOAK_STOPS:-3000}
FSX_KILLS=${SOAK_FSX_KILLS:-30}
FIO_CUTS=${SOAK_FIO_CUTS:-20}
FILE_CUTS=${SOAK_FILE_CUTS:-10}
start=$(date +%s)
end=$((start + MINUTES * 60))
round=0 passed=0 failed=0 cuts=0 kills=0 stops=0
export THINFS_BUILD=$BUILD
LOG=$(mktemp /tmp/thinfs-soaklog.XXXXXX)
trap 'rm -f "$LOG"' EXIT

# run NAME [VAR=VALUE...]: one integration script; its output in $LOG
run() {
	name=$1
	shift
	t0=$(date +%s)
	env "$@" bash "$TOP/tests/integration/$name.sh" > "$LOG" 2>&1
	rc=$?
	secs=$(($(date +%s) - t0))
	if [ $rc = 0 ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAIL $name (round $round, exit $rc, ${secs}s; rerun with: $*)"
		sed 's/^/    | /' "$LOG" | tail -n 40
	fi
}

# count PATTERN: lines of $LOG that match (extended regex)
count() { grep -cE "$1" "$LOG"; }

while [ $round = 0 ] || [ "$(date +%s)" -lt "$end" ] || [ $cuts -lt "$WANT_CUTS" ] || [ $kills -lt "$WANT_KILLS" ]; do
	round=$((round + 1))
	echo "== soak round $round ($(( ($(date +%s) - start) / 60 )) min so far)"
	run 40_kill9_fsx THINFS_KILLS="$FSX_KILLS"
	k=$(count '^   (fio )?kill [0-9]+:')
	kills=$((kills + k))
	echo "   40_kill9_fsx: $k kills (${secs}s)"
	run 41_powercut THINFS_CUTS="$FIO_CUTS"
	c=$(count '^   cut [0-9]?[0-9]:') # seeds 1-20; 101 is the eatmydata control
	cuts=$((cuts + c))
	echo "   41_powercut: $c cuts (${secs}s)"
	run 45_powercut_campaign THINFS_CUTS="$ROUND_CUTS" THINFS_KILLS="$ROUND_KILLS" \
		THINFS_FILE_CUTS="$FILE_CUTS" THINFS_SEED=$round
	c=$(sed -n 's/^counts: cuts=\([0-9]*\) kills=\([0-9]*\)$/\1/p' "$LOG")
	k=$(sed -n 's/^counts: cuts=\([0-9]*\) kills=\([0-9]*\)$/\2/p' "$LOG")
	[ -n "$c" ] || c=$(count '^   (files )?cut [0-9]+ \(')
	[ -n "$k" ] || k=$(count '^   kill [0-9]+ \(')
	cuts=$((cuts + c)) kills=$((kills + k))
	echo "   45_powercut_campaign (seed $round): $c cuts, $k kills (${secs}s)"
	run 44_stop_continue_storm THINFS_STOPS="$STOPS"
	s=$(sed -n 's/^   \([0-9]*\) pairs .*/\1/p' "$LOG" | awk '{ s += $1 } END { print s + 0 }')
	stops=$((stops + s))
	echo "   44_stop_continue_storm: $s stop/continue pairs (${secs}s)"
	echo "   totals: $cuts power cuts, $kills kill -9s, $stops stop/continue pairs"
done
echo "soak: $round rounds in $(( ($(date +%s) - start) / 60 )) minutes: $cuts power cuts, $kills kill -9s," \
	"$stops SIGSTOP/SIGCONT pairs"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
