#!/bin/bash
# daemon-bench.sh BUILD WORK - what the engine benchmarks cannot show: the
# daemon's resident memory per cached mapping, and whether a second job on
# another volume halves the first one's IOPS.  Each figure is printed beside
# its baseline from the same run (two raw files for the scaling), because the
# machines this runs on are noisy.  Needs root and /dev/fuse; cleans up after
# itself (mount, daemon, temporary directory) even when interrupted.
set -u
BUILD=${1:-build}
WORK=${2:-/var/tmp}
RT=${DAEMON_BENCH_RUNTIME:-6}
REPEAT=${DAEMON_BENCH_REPEAT:-3}
MAPPINGS=${DAEMON_BENCH_MAPPINGS:-1048576}

T=$(mktemp -d "$WORK/thinfs-dbench.XXXXXX") || exit 1
PID=
cleanup() {
	exec 3<&- 2>/dev/null
	mountpoint -q "$T/mnt" && umount "$T/mnt"
	[ -n "$PID" ] && wait "$PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$T/mnt"

mount_pool() { # POOL
	"$BUILD/thinfs" "$1" "$T/mnt" -f 2>>"$T/daemon.log" &
	PID=$!
	for _ in $(seq 100); do mountpoint -q "$T/mnt" && return 0; sleep 0.1; done
	echo "daemon-bench: the daemon did not mount $1" >&2
	exit 1
}
unmount_pool() {
	umount "$T/mnt" && wait "$PID"
	PID=
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$PID/status"; }
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
# busy and idle jiffies of all CPUs so far
cpu_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat; }
# fio --minimal: field 8 is read IOPS, 49 write IOPS, one line per job
fio_iops() { fio --minimal "$@" | awk -F';' '{printf "%.0f\n", $8 + $49}'; }

# ---- memory: RSS with a volume of N cached mappings, under I/O
# The pool comes from thin_dump XML (one long run), so no data is written.
# Prints the RSS with warm buffers (before the big volume is opened) and with
# its view cached, in KiB.
mem_at() { # N
	rm -rf "$T/mem"
	cat >"$T/dump.xml" <<EOF
<superblock uuid="" time="0" transaction="1" flags="0" version="2" data_block_size="8" nr_data_blocks="$(($1 + 4096))">
  <device dev_id="1" mapped_blocks="$1" transaction="0" creation_time="0" snap_time="0">
    <range_mapping origin_begin="0" data_begin="0" length="$1" time="0"/>
  </device>
  <device dev_id="2" mapped_blocks="4096" transaction="0" creation_time="0" snap_time="0">
    <range_mapping origin_begin="0" data_begin="$1" length="4096" time="0"/>
  </device>
</superblock>
EOF
	"$BUILD/thinctl" restore "$T/mem" -i "$T/dump.xml" >/dev/null || exit 1
	mount_pool "$T/mem"
	# warm every worker's buffers on the small volume first: that is the base
	io="--ioengine=io_uring --direct=1 --time_based --runtime=3"
	fio_iops --name=w --filename="$T/mnt/dev2" $io --rw=read --bs=1M --iodepth=16 >/dev/null
	fio_iops --name=w --filename="$T/mnt/dev2" $io --rw=randwrite --bs=4k --iodepth=32 >/dev/null
	base=$(rss_kb)
	exec 3<"$T/mnt/dev1" # holds the big volume's view in the cache
	fio_iops --name=w --filename="$T/mnt/dev1" $io --rw=randread --bs=4k --iodepth=32 >/dev/null
	fio_iops --name=w --filename="$T/mnt/dev1" $io --rw=read --bs=1M --iodepth=16 >/dev/null
	echo "$base $(rss_kb)"
	exec 3<&-
	unmount_pool
}
set -- $(mem_at "$MAPPINGS")
base=$1 rss1=$2
set -- $(mem_at $((2 * MAPPINGS)))
rss2=$2
echo "== daemon memory (VmRSS; 4 KiB blocks; SQLite's page cache is bounded at 16 MiB)"
awk -v b="$base" -v r1="$rss1" -v r2="$rss2" -v n="$MAPPINGS" 'BEGIN {
	printf "| buffers warm | %d cached mappings | %d cached mappings | bytes per cached mapping (slope) |\n", n, 2 * n
	printf "|---:|---:|---:|---:|\n"
	slope = (r2 - r1) * 1024 / n
	printf "| %.1f MiB | %.1f MiB | %.1f MiB | %.1f |\n", b / 1024, r1 / 1024, r2 / 1024, slope
	printf "goal: under 64 MiB plus at most 16 bytes per cached mapping: %s\n", \
		(r2 * 1024 <= 64 * 1048576 + 16 * 2 * n && slope <= 16) ? "met" : "NOT met"
}'

# ---- scaling: job A alone, then A beside job B on another volume
"$BUILD/thinctl" format "$T/pool" --data-size 4G >/dev/null || exit 1
"$BUILD/thinctl" create "$T/pool" vol0 1G >/dev/null || exit 1
"$BUILD/thinctl" create "$T/pool" vol1 1G >/dev/null || exit 1
mount_pool "$T/pool"
truncate -s 1G "$T/raw0" "$T/raw1"
for f in "$T/mnt/vol0" "$T/mnt/vol1" "$T/raw0" "$T/raw1"; do
	fio --name=fill --filename="$f" --rw=write --bs=1M --iodepth=8 --ioengine=io_uring \
		--direct=1 --size=1G >/dev/null || exit 1
done
job="--ioengine=io_uring --direct=1 --time_based --runtime=$RT --ramp_time=1 --bs=4k --iodepth=32"
echo "== two volumes at once: job A's IOPS with job B running, over A alone (medians of $REPEAT)"
echo "| 4 KiB qd32 job | thinfs: A alone | A beside B | ratio | A+B / A alone | CPU busy, A and B | raw files: A alone | A beside B | ratio | A+B / A alone | CPU busy, A and B |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for rw in randread randwrite; do
	line="| $rw"
	for pair in "$T/mnt/vol0 $T/mnt/vol1" "$T/raw0 $T/raw1"; do
		set -- $pair
		: >"$T/alone"
		: >"$T/beside"
		: >"$T/both"
		: >"$T/busy"
		for _ in $(seq "$REPEAT"); do
			fio_iops --name=a --filename="$1" $job --rw=$rw >>"$T/alone"
			set -- $1 $2 $(cpu_ticks)
			fio_iops --name=a --filename="$1" $job --rw=$rw \
				--name=b --filename="$2" $job --rw=$rw >"$T/pair"
			set -- $1 $2 $(cpu_ticks) $3 $4
			awk -v b="$(($3 - $5))" -v i="$(($4 - $6))" 'BEGIN {printf "%.0f\n", 100 * b / (b + i)}' >>"$T/busy"
			head -1 "$T/pair" >>"$T/beside"
			awk '{s += $1} END {print s}' "$T/pair" >>"$T/both"
		done
		a=$(median <"$T/alone")
		b=$(median <"$T/beside")
		ab=$(median <"$T/both")
		line="$line | $a | $b | $(awk -v a="$a" -v b="$b" -v ab="$ab" 'BEGIN {printf "%.2f | %.2f", b / a, ab / a}') | $(median <"$T/busy")%"
	done
	echo "$line |"
done
echo "goal: a second job must not halve the first one's IOPS (ratio >= 0.5); A+B / A alone"
echo "near 1 means the two share a fixed capacity (CPU or device), near 2 that it scales"
unmount_pool
