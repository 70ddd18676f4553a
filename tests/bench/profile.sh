#!/bin/bash
# profile.sh BUILD WORK [JOB...] - where the CPU goes while fio drives a thinfs
# volume, and the same job on libfuse's do-nothing passthrough for contrast
# when it is installed.  Each JOB (randwrite randread seqwrite seqread, all by
# default) runs under `perf record -a -g`; the summary splits all CPU samples
# into fio, the daemon's own code (thinfs and libthinfs), libfuse, SQLite,
# libc, the kernel on the daemon's behalf, and idle, then lists the hottest
# symbols.  This is the evidence behind README's "what bounds it" column.
# Needs root, perf and /dev/fuse; cleans up its mount and files.
set -u
BUILD=$(realpath "${1:-build}")
WORK=${2:-/var/tmp}
shift 2 2>/dev/null
JOBS=${*:-randwrite randread seqwrite seqread}
RT=${PROFILE_RUNTIME:-8}
command -v perf >/dev/null || { echo "profile: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }

T=$(mktemp -d "$WORK/thinfs-profile.XXXXXX") || exit 1
PID=
cleanup() {
	mountpoint -q "$T/mnt" && umount "$T/mnt"
	[ -n "$PID" ] && wait "$PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$T/mnt"

fio_args() { # JOB
	case $1 in
	randwrite) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
	randread) echo "--rw=randread --bs=4k --iodepth=32" ;;
	seqwrite) echo "--rw=write --bs=1M --iodepth=8" ;;
	seqread) echo "--rw=read --bs=1M --iodepth=8" ;;
	*) echo "profile: unknown job $1" >&2; exit 2 ;;
	esac
}

# summary LABEL DAEMON-COMM: shares of all samples, then the hottest symbols
summary() {
	perf report -i "$T/perf.data" --no-children --sort comm,dso --stdio -q -g none \
		--percent-limit 0 2>/dev/null | awk -v d="$2" -v label="$1" '
	NF >= 3 && $1 ~ /%$/ {
		p = $1; sub(/%/, "", p); comm = $2; dso = $NF
		if (comm == "fio") k = "fio"
		else if (comm ~ /^iou-/) k = "io_uring workers"
		else if (comm == "swapper") k = "idle"
		else if (index(comm, d) == 1 || comm ~ /^thinfs/) {
			if (dso ~ /kernel/) k = "kernel for the daemon"
			else if (dso ~ /libfuse/) k = "libfuse"
			else if (dso ~ /sqlite/) k = "SQLite"
			else if (dso ~ /libc/) k = "libc"
			else if (dso ~ /thinfs|passthrough/) k = "daemon code"
			else k = "daemon, other"
		} else k = "other"
		s[k] += p
	}
	END {
		printf "%s:", label
		n = split("fio|io_uring workers|daemon code|libfuse|SQLite|libc|kernel for the daemon|daemon, other|other|idle", K, "|")
		for (i = 1; i <= n; i++) printf " %s %.1f%%;", K[i], s[K[i]]
		printf "\n"
	}'
	echo "  hottest symbols (share of all samples):"
	perf report -i "$T/perf.data" --no-children --sort comm,sym --stdio -q -g none 2>/dev/null |
		awk 'NF >= 3 && $1 ~ /%$/ && $2 != "swapper" {print "   ", $0}' | head -12
}

run_job() { # LABEL FILE DAEMON-COMM JOB
	fio --name=p --filename="$2" --ioengine=io_uring --direct=1 --time_based \
		--runtime=$((RT + 1)) --ramp_time=1 --size=1G $(fio_args "$4") \
		--output-format=terse >"$T/fio.out" 2>&1 &
	local fio_pid=$!
	sleep 1
	perf record -a -g -o "$T/perf.data" -- sleep "$RT" >/dev/null 2>&1
	wait $fio_pid
	summary "$1 $4 ($(awk -F';' '{printf "%.0f IOPS", $8 + $49}' "$T/fio.out"))" "$3"
}

"$BUILD/thinctl" format "$T/pool" --data-size 4G >/dev/null || exit 1
"$BUILD/thinctl" create "$T/pool" vol0 1G >/dev/null || exit 1
"$BUILD/thinfs" "$T/pool" "$T/mnt" -f 2>>"$T/daemon.log" &
PID=$!
for _ in $(seq 100); do mountpoint -q "$T/mnt" && break; sleep 0.1; done
mountpoint -q "$T/mnt" || { echo "profile: the daemon did not mount" >&2; exit 1; }
fio --name=fill --filename="$T/mnt/vol0" --rw=write --bs=1M --iodepth=8 --ioengine=io_uring \
	--direct=1 --size=1G >/dev/null || exit 1
echo "== CPU profile, perf record -a -g, ${RT}s per job, $(nproc) cpus ($(date -u +%F), commit $(git rev-parse --short HEAD 2>/dev/null))"
for j in $JOBS; do run_job thinfs "$T/mnt/vol0" thinfs "$j"; done
umount "$T/mnt" && wait "$PID"
PID=

# libfuse's passthrough_ll example over a directory: what FUSE alone costs
# for the same job
# (peers.sh builds it, patched for O_DIRECT writes, in /var/tmp/peers/build).
PT=${PASSTHROUGH:-/var/tmp/peers/build/passthrough_ll}
if [ -n "$PT" ] && [ -x "$PT" ]; then
	mkdir -p "$T/src"
	fio --name=fill --filename="$T/src/f" --rw=write --bs=1M --iodepth=8 --ioengine=io_uring \
		--direct=1 --size=1G >/dev/null || exit 1
	"$PT" -f -o source="$T/src" "$T/mnt" 2>/dev/null &
	PID=$!
	for _ in $(seq 100); do mountpoint -q "$T/mnt" && break; sleep 0.1; done
	if mountpoint -q "$T/mnt"; then
		for j in $JOBS; do run_job passthrough "$T/mnt/f" "$(basename "$PT" | cut -c1-15)" "$j"; done
		umount "$T/mnt" && wait "$PID"
	fi
	PID=
else
	echo "(no passthrough_ll at $PT: run make bench once, or set PASSTHROUGH=path, for the contrast)"
fi
