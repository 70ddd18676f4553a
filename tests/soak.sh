#!/bin/sh
# make soak: the crash tiers for longer than CI can - kill -9 loops under
# thinfs-fsx and power cuts under fio, alternated until MINUTES have passed.
# Usage: soak.sh BUILD_DIR [MINUTES]   (root; each round prints its figures)
BUILD=$(cd "${1:-build}" && pwd)
MINUTES=${2:-30}
TOP=$(cd "$(dirname "$0")/.." && pwd)
end=$(( $(date +%s) + MINUTES * 60 ))
round=0 failed=0
export THINFS_BUILD=$BUILD
while [ "$(date +%s)" -lt "$end" ]; do
	round=$((round + 1))
	echo "== soak round $round"
	THINFS_KILLS=30 bash "$TOP/tests/integration/40_kill9_fsx.sh" || failed=$((failed + 1))
	THINFS_CUTS=20 bash "$TOP/tests/integration/41_powercut.sh" || failed=$((failed + 1))
done
echo "soak: $round rounds in $MINUTES minutes"
echo "$((round * 2 - failed)) passed, $failed failed"
[ "$failed" = 0 ]
