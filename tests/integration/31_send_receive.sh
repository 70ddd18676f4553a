#!/usr/bin/env bash
# Replication that never guesses (issue 12), through thinctl and real mounts:
# the issue's reproduction (a received copy written in place is no base);
# a writable base changed after its own full send; an unrelated base, which
# streams exactly; a flipped byte, a truncated stream, a wrong base: each
# refused with one line naming the reason, leaving the receiving pool
# identical (dump, the pool row, meta.db and data bytes); a device being
# written is not sent; --json progress parses; and a round trip of a
# RT_SIZE volume (default 256M here; make bench does 1 GiB) between two
# pools, compared with cmp, with the time of a plain cp beside it.
set -u
. "$(dirname "$0")/lib.sh"
require_root
require_cmd sqlite3 python3 cmp
setup
RT_SIZE=${RT_SIZE:-256M}
A=$T/a
BP=$T/b
MA=$T/ma
MB=$T/mb
mkdir -p "$MA" "$MB"
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

serve() { P=$1 M=$2 start_daemon; }
unserve() { P=$1 M=$2 stop_daemon || fail "thinfs on $1 exited non-zero"; }
# everything a receive could change: the dump, the pool row, the files
state() {
	"$THINCTL" dump "$1"
	sqlite3 "$1/meta.db" "SELECT transaction_id, pool_time, nr_data_blocks FROM pool"
	sqlite3 "$1/meta.db" "SELECT id, name, snap_time, generation, copy_of FROM devices"
	sha256sum "$1/meta.db" "$1/data" | cut -c1-64
}
# refused DESC TEXT POOL NAME STREAM: receive must exit 1 with one line
# holding TEXT, and leave POOL as it was
refused() {
	local desc=$1 text=$2 pool=$3 name=$4 stream=$5 rc
	state "$pool" > "$T/before"
	"$THINCTL" receive "$pool" "$name" < "$stream" > "$T/out" 2> "$T/err"
	rc=$?
	state "$pool" > "$T/after"
	if [ "$rc" != 1 ]; then
		bad "$desc: exit $rc, wanted 1: $(head -c 300 "$T/err")"
	elif [ "$(wc -l < "$T/err")" != 1 ] || ! grep -q "^thinctl: receive: .*$text" "$T/err"; then
		bad "$desc: not one line with '$text': $(cat "$T/err")"
	elif ! cmp -s "$T/before" "$T/after"; then
		bad "$desc: the pool changed: $(diff "$T/before" "$T/after" | head -5)"
	else
		ok "$desc: refused ($(cut -c1-110 "$T/err")), pool identical"
	fi
}
flip() { # flip FILE OFFSET: one bit of one byte
	python3 -c 'import sys
f = open(sys.argv[1], "r+b"); o = int(sys.argv[2]); f.seek(o); b = f.read(1)
f.seek(o); f.write(bytes([b[0] ^ 0x10]))' "$1" "$2"
}
received() { # received DESC POOL NAME STREAM
	"$THINCTL" receive "$2" "$3" < "$4" 2> "$T/err" && ok "$1" || bad "$1: $(cat "$T/err")"
}

say "source pool: vol written, set s1, written again, set pre"
"$THINCTL" format "$A" --data-size 128M > /dev/null || fail format
"$THINCTL" format "$BP" --data-size 128M > /dev/null || fail format
"$THINCTL" create "$A" vol 8M > /dev/null || fail create
"$THINCTL" create "$A" other 3M > /dev/null || fail create
head -c 8M /dev/urandom > "$T/r1"
head -c 1M /dev/urandom > "$T/r2"
serve "$A" "$MA"
dd if="$T/r1" of="$MA/vol" bs=1M conv=notrunc status=none || fail "write vol"
dd if="$T/r2" of="$MA/other" bs=64k seek=3 conv=notrunc status=none || fail "write other"
mkdir "$MA/.snapshots/s1" || fail "set s1"
dd if="$T/r2" of="$MA/vol" bs=4k seek=9 count=8 conv=notrunc status=none
dd if=/dev/zero of="$MA/vol" bs=64k seek=40 count=2 conv=notrunc status=none
fallocate -p -o $((64 * 1024 * 100)) -l 65536 "$MA/vol"
mkdir "$MA/.snapshots/pre" || fail "set pre"
cp "$MA/.snapshots/pre/vol" "$T/pre.img"
cp "$MA/.snapshots/s1/other" "$T/other.img"
unserve "$A" "$MA"
"$THINCTL" send "$A" s1/vol > "$T/full" || fail "send s1/vol"
"$THINCTL" send "$A" pre/vol --from s1/vol > "$T/inc" || fail "send pre/vol --from s1/vol"

say "the issue's reproduction: a received copy written in place is no base"
received "receive the full stream of s1/vol" "$BP" vol "$T/full"
serve "$BP" "$MB"
dd if="$T/r2" of="$MB/vol" bs=4k count=1 seek=37 conv=notrunc status=none # block 2, +20480
unserve "$BP" "$MB"
refused "incremental onto a written copy" "base 'vol' was written since it was received" \
	"$BP" vol2 "$T/inc"

say "a base received and left alone takes the incremental, byte for byte"
received "receive s1/vol again as s1copy" "$BP" s1copy "$T/full"
received "receive pre/vol --from s1/vol" "$BP" vol2 "$T/inc"
serve "$BP" "$MB"
cmp "$MB/vol2" "$T/pre.img" && ok "vol2 reads as pre/vol" || bad "vol2 differs from pre/vol"
unserve "$BP" "$MB"

say "a writable base changed after its own full send"
"$THINCTL" send "$A" vol > "$T/volfull" || fail "send vol"
received "receive vol as wvol" "$BP" wvol "$T/volfull"
serve "$A" "$MA"
dd if="$T/r2" of="$MA/vol" bs=4k count=1 seek=3 conv=notrunc status=none
mkdir "$MA/.snapshots/t1"
unserve "$A" "$MA"
"$THINCTL" send "$A" t1/vol --from vol > "$T/stale" || fail "send t1/vol --from vol"
refused "incremental from a base changed after its full send" "the sender's base changed" \
	"$BP" t1vol "$T/stale"

say "an unrelated base streams exactly (send t1/other --from vol)"
"$THINCTL" send "$A" vol > "$T/volfull2" || fail "send vol"
received "receive the new vol as vol3" "$BP" vol3 "$T/volfull2"
"$THINCTL" send "$A" t1/other --from vol > "$T/unrel" || fail "send t1/other --from vol"
received "receive t1/other against vol's copy" "$BP" other "$T/unrel"
serve "$BP" "$MB"
cmp "$MB/other" "$T/other.img" && ok "other reads as t1/other" || bad "other differs"
unserve "$BP" "$MB"

say "a wrong base, corrupt and short streams"
"$THINCTL" format "$T/c" --data-size 64M > /dev/null
refused "incremental with no base in the pool" "no device here is the stream's base 's1/vol'" \
	"$T/c" x "$T/inc"
size=$(stat -c %s "$T/full")
cp "$T/full" "$T/flip"
flip "$T/flip" $((size * 3 / 4))
refused "a flipped byte" "checksum mismatch in the record of vblock" "$BP" x "$T/flip"
cp "$T/full" "$T/flip0"
flip "$T/flip0" 200
refused "a flipped byte in the first record" "record of vblock 0" "$BP" x "$T/flip0"
head -c $((size / 3)) "$T/full" > "$T/short"
refused "a truncated stream" "the stream ends" "$BP" x "$T/short"
head -c $((size - 5)) "$T/full" > "$T/noend"
refused "a stream without its end" "the stream ends in its end record" "$BP" x "$T/noend"
refused "an existing name" "already exists" "$BP" vol "$T/full"

say "a device being written is not sent"
serve "$A" "$MA"
exec 3<> "$MA/vol"
printf x >&3
if "$THINCTL" send "$A" vol > /dev/null 2> "$T/err"; then
	bad "send of a volume being written succeeded"
else
	grep -q "is being written" "$T/err" && ok "send refused: $(cat "$T/err")" ||
		bad "send refused with: $(cat "$T/err")"
fi
exec 3>&-
unserve "$A" "$MA"
"$THINCTL" send "$A" vol > /dev/null && ok "sent once closed" || bad "send after close"

say "--json progress"
"$THINCTL" send "$A" pre/vol --json > /dev/null 2> "$T/prog" || bad "send --json"
python3 - "$T/prog" << 'EOF' && ok "--json progress: JSON lines, the last done" || bad "--json progress: $(tail -2 "$T/prog")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines and lines[-1]["done"] and lines[-1]["done_bytes"] == lines[-1]["total_bytes"] > 0
assert all(l["op"] == "send" for l in lines)
EOF
"$THINCTL" send "$A" pre/vol > /dev/null 2> "$T/prog"
[ -s "$T/prog" ] && bad "progress printed without a terminal or --json" || ok "quiet without a tty"

say "round trip of a $RT_SIZE volume between two pools"
"$THINCTL" format "$T/rt" --data-size 2G > /dev/null
"$THINCTL" format "$T/rt2" --data-size 2G > /dev/null
"$THINCTL" create "$T/rt" big "$RT_SIZE" > /dev/null
head -c "$RT_SIZE" /dev/urandom > "$T/big.img"
serve "$T/rt" "$MA"
dd if="$T/big.img" of="$MA/big" bs=1M conv=notrunc status=none
unserve "$T/rt" "$MA"
t0=$(date +%s.%N)
cp "$T/big.img" "$T/big.copy"
t1=$(date +%s.%N)
"$THINCTL" send "$T/rt" big > "$T/big.stream" || bad "send big"
t2=$(date +%s.%N)
"$THINCTL" receive "$T/rt2" big < "$T/big.stream" || bad "receive big"
t3=$(date +%s.%N)
serve "$T/rt2" "$MB"
cmp "$MB/big" "$T/big.img" && ok "round trip of $RT_SIZE compares equal" || bad "round trip differs"
unserve "$T/rt2" "$MB"
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN {
	printf "info: cp %.2fs, send %.2fs, receive %.2fs (make bench measures the ratio)\n", b - a, c - b, d - c }'
rm -f "$T/big.img" "$T/big.copy" "$T/big.stream"
for p in "$A" "$BP" "$T/c" "$T/rt" "$T/rt2"; do
	"$THINCTL" check "$p" > "$T/check" 2>&1 || bad "check $p: $(cat "$T/check")"
done

[ "$fails" = 0 ] || fail "$fails check(s) failed"
echo "PASS $TEST_NAME"
