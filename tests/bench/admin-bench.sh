#!/bin/bash
# admin-bench.sh BUILD [WORK] - issue 13's benchmarks, on a mounted pool of
# 4 KiB blocks:
#  1. the worst 4 KiB write latency of a paced writer (fio, O_DIRECT, 500
#     IOPS) on one volume while another volume of 262144 mapped blocks is
#     deleted (rm through the mount), and while a snapshot set holding
#     131072 exclusive blocks is removed (rmdir), each as a ratio to the
#     worst latency of the same writer without a delete, in the same run
#     (goal: under 10x and under 50 ms);
#  2. the latency of each changing thinctl command while mounted (goal:
#     under 100 ms, grow of a large file aside).
# Needs root and fio.  Prints a table; nothing is kept.
set -eu
BUILD=$(cd "${1:-build}" && pwd)
WORK=${2:-/var/tmp}
command -v fio > /dev/null || { echo "== admin bench skipped (no fio)"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "== admin bench skipped (needs root)"; exit 0; }
T=$(mktemp -d "$WORK/thinfs-admin-bench.XXXXXX")
P=$T/pool M=$T/mnt PID=
mkdir -p "$M"
cleanup() {
	mountpoint -q "$M" && umount "$M"
	[ -n "$PID" ] && wait "$PID" 2> /dev/null
	rm -rf "$T"
}
trap cleanup EXIT
tc() { "$BUILD/thinctl" "$@"; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

tc format "$P" --block-size 4K --data-size 6G > /dev/null
tc create "$P" paced 64M > /dev/null
tc create "$P" big 1G > /dev/null
tc create "$P" sv 512M > /dev/null
"$BUILD/thinfs" "$P" "$M" -f 2>> "$T/daemon.log" &
PID=$!
for _ in $(seq 50); do mountpoint -q "$M" && break; sleep 0.1; done
dd if=/dev/zero of="$M/paced" bs=1M count=64 oflag=direct status=none
dd if=/dev/urandom of="$M/big" bs=1M count=1024 oflag=direct status=none
dd if=/dev/urandom of="$M/sv" bs=1M count=512 oflag=direct status=none
mkdir "$M/.snapshots/S"
dd if=/dev/urandom of="$M/sv" bs=1M count=512 oflag=direct conv=notrunc status=none
sync
sleep 3 # let the host's writeback of the fills settle

# paced_writer SECONDS OUT: prints nothing; OUT gets fio's JSON
paced_writer() {
	fio --name=paced --filename="$M/paced" --rw=randwrite --bs=4k --size=64M --direct=1 \
		--ioengine=psync --rate_iops=500 --time_based --runtime="$1" \
		--output-format=json --output="$2" > /dev/null 2>&1
}
worst_ms() {
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]["write"]; print("%.2f %.2f" % (j["clat_ns"]["max"]/1e6, j["clat_ns"]["percentile"]["99.000000"]/1e6))' "$1"
}

paced_writer 6 "$T/base.json"
paced_writer 8 "$T/rm.json" &
W=$!
sleep 2
t0=$(date +%s%N)
rm "$M/big"
rm_ms=$(ms "$t0")
while tc status --json "$P" | grep -q '"reclaim_devices":[1-9]'; do sleep 0.1; done
reclaim_ms=$(ms "$t0")
wait $W
paced_writer 8 "$T/rmdir.json" &
W=$!
sleep 2
t0=$(date +%s%N)
rmdir "$M/.snapshots/S"
rmdir_ms=$(ms "$t0")
while tc status --json "$P" | grep -q '"reclaim_devices":[1-9]'; do sleep 0.1; done
rmdir_reclaim_ms=$(ms "$t0")
wait $W
paced_writer 6 "$T/base2.json" # a second baseline after both deletes

read -r base1_max base1_p99 <<< "$(worst_ms "$T/base.json")"
read -r base2_max base2_p99 <<< "$(worst_ms "$T/base2.json")"
# the worse of the two baselines: the conservative ratio
read -r base_max base_p99 <<< "$(awk -v a="$base1_max" -v b="$base2_max" -v p="$base1_p99" -v q="$base2_p99" 'BEGIN { print (a > b ? a : b), (a > b ? p : q) }')"
read -r rm_max rm_p99 <<< "$(worst_ms "$T/rm.json")"
read -r rd_max rd_p99 <<< "$(worst_ms "$T/rmdir.json")"
echo "== delete latency (issue 13; $(date -u +%F), $(nproc) cpus, commit $(git rev-parse --short HEAD 2> /dev/null))"
echo "| paced 4 KiB writer (500 IOPS, O_DIRECT) | worst ms | p99 ms | worst / baseline | delete returned (ms) | space back (ms) |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| no delete (baselines before and after) | $base1_max, $base2_max | $base1_p99, $base2_p99 | 1.00 | | |"
awk -v a="$rm_max" -v b="$base_max" -v p="$rm_p99" -v r="$rm_ms" -v s="$reclaim_ms" \
	'BEGIN { printf "| rm of a volume of 262144 blocks | %s | %s | %.2f | %s | %s |\n", a, p, a / b, r, s }'
awk -v a="$rd_max" -v b="$base_max" -v p="$rd_p99" -v r="$rmdir_ms" -v s="$rmdir_reclaim_ms" \
	'BEGIN { printf "| rmdir of a set of 131072 exclusive blocks | %s | %s | %.2f | %s | %s |\n", a, p, a / b, r, s }'

echo
echo "== changing commands on the mounted pool (ms, one run each)"
echo "| command | ms |"
echo "|---|---:|"
timed() { local what=$1 t; shift; t=$(date +%s%N); "$@" > /dev/null; echo "| $what | $(ms "$t") |"; }
timed "create" tc create "$P" n1 1G
timed "snapshot (of a 64 MiB volume)" tc snapshot "$P" paced clone
timed "snapshot --set" tc snapshot "$P" --set S2
timed "rename" tc rename "$P" clone clone2
timed "rename a set" tc rename "$P" S2 S3
timed "resize" tc resize "$P" n1 2G
timed "rollback" tc rollback "$P" clone2 S3/paced
timed "delete" tc delete "$P" clone2
timed "delete --set" tc delete "$P" --set S3
timed "check --repair (mounted)" tc check --repair "$P"
timed "grow (6 GiB to 8 GiB)" tc grow "$P" --data-size 8G
