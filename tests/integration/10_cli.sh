#!/usr/bin/env bash
# thinctl from the outside: every command's --help, every kind of bad input of
# DESIGN.md (names, sizes, block sizes, same file, missing origin, taken names,
# pool in use), clean one-line errors, refused commands that leave the pool's
# files unchanged, JSON that parses, and check's exit codes on damage.
# No root needed.
set -u
B=${THINFS_BUILD:-$(cd "$(dirname "$0")/../../build" && pwd)}
C=$B/thinctl
T=$(mktemp -d /tmp/thinfs-test.XXXXXX)
trap 'kill $LOCKPID 2>/dev/null; rm -rf "$T"' EXIT
LOCKPID=
P=$T/pool
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

# check reports findings on stdout: judge it by its exit code
expect_rc() {
	local want=$1; shift
	"$@" > "$T/out" 2> "$T/err"
	local rc=$?
	[ "$rc" = "$want" ] || { bad "$* -> exit $rc, wanted $want: $(cat "$T/out" "$T/err" | head -c 300)"; return 1; }
}
# run CMD..., expect exit code $1, one stderr line mentioning thinctl (if != 0)
expect() {
	local want=$1; shift
	"$@" > "$T/out" 2> "$T/err"
	local rc=$?
	if [ "$rc" != "$want" ]; then
		bad "$* -> exit $rc, wanted $want: $(head -c 300 "$T/err")"
		return 1
	fi
	if [ "$want" = 0 ] && [ -s "$T/err" ]; then
		bad "$* -> success with stderr: $(head -c 300 "$T/err")"
		return 1
	fi
	if [ "$want" = 1 ] && { [ "$(wc -l < "$T/err")" != 1 ] || ! grep -q "^thinctl: " "$T/err"; }; then
		bad "$* -> error is not one 'thinctl: ...' line: $(cat "$T/err")"
		return 1
	fi
	return 0
}
state() { sha256sum "$P/meta.db" "$P/data" 2>/dev/null | cut -c1-64 | tr '\n' ' '; }
# a refused changing command must leave the pool's files as they were
refused() {
	local before after
	before=$(state)
	expect 1 "$@" && { after=$(state); [ "$before" = "$after" ] && ok "refused, unchanged: ${*:2}" || bad "pool changed by refused: $*"; }
}
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# --help everywhere, usage errors exit 2
for cmd in format create snapshot delete rename resize grow list status check dump restore delta send receive; do
	expect 0 "$C" "$cmd" --help && grep -q "usage: thinctl $cmd" "$T/out" && ok "$cmd --help" || bad "$cmd --help"
	expect 2 "$C" "$cmd" --no-such-option "$P" && ok "$cmd bad option -> 2"
done
expect 0 "$C" --help && ok "thinctl --help"
expect 2 "$C" && ok "no command -> 2"
expect 2 "$C" frobnicate "$P" && ok "unknown command -> 2"
expect 2 "$C" create "$P" vol && ok "missing argument -> 2"
expect 2 "$C" list "$P" extra && ok "extra argument -> 2"

# format: block sizes (TESTING A4)
for bs in 0 1 3000 4095 66048 2G abc -1; do
	expect 1 "$C" format "$T/bs" --block-size "$bs" && grep -q "4K to 1G\|not a size\|power of two" "$T/err" \
		&& [ ! -e "$T/bs/meta.db" ] && ok "block size $bs refused, nothing made" || bad "block size $bs"
	rm -rf "$T/bs"
done
for bs in 4K 1G 64K 65536; do
	expect 0 "$C" format "$T/bs$bs" --block-size "$bs" --data-size 1G && ok "block size $bs" || true
	rm -rf "$T/bs$bs"
done
expect 0 "$C" format "$P" --data-size 16M && ok "format"
# a refused format leaves the parent exactly as it was (issue 17): no new
# directory, no lock file, in a new directory and in an existing empty one
listing() { find "$1" -mindepth 1 -printf '%P %y %s %m\n' | sort; }
mkdir -m 700 "$T/parent" "$T/parent/empty"
head -c 4096 /dev/urandom > "$T/parent/full.img"
before=$(listing "$T/parent")
for args in "new --block-size 3000" "new --data /nonexistent/x" "new --data $T/parent/full.img" \
	"empty --data $T/parent/full.img" "empty --data-size 1K" "new --data $T/parent/new/meta.db"; do
	set -- $args
	d=$1; shift
	expect 1 "$C" format "$T/parent/$d" "$@" && [ "$before" = "$(listing "$T/parent")" ] \
		&& ok "refused format $d $*: parent unchanged" \
		|| bad "refused format $d $* changed the parent: $(diff <(echo "$before") <(listing "$T/parent") | tr '\n' ' ')"
done
[ "$(json "d['block_size']" < <("$C" status "$P" --json))" = 65536 ] && ok "default block size 64K" || bad "default block size"
refused "$C" format "$P" --data-size 16M
grep -q -- "--force" "$T/err" && ok "format names --force" || bad "format without --force message"

# sizes (TESTING A6)
for s in 18446744073709551616 1X "" 12.5G; do
	refused "$C" create "$P" v "$s"
done
before=$(state); expect 2 "$C" create "$P" v -1 && [ "$before" = "$(state)" ] && ok "size -1 refused (a bad option)"
# the error names the argument that was wrong, not a neighbour (issue 17)
expect 2 "$C" create "$P" neg -1G && grep -q "'-1G' is negative" "$T/err" && ! grep -q "'neg'" "$T/err" \
	&& ok "a negative size is named" || bad "negative size: $(cat "$T/err")"
expect 2 "$C" create "$P" v 1G -x && grep -q "bad option '-x'" "$T/err" && ok "a bad short option is named" || bad "bad -x: $(cat "$T/err")"
# absurd sizes: refused against the pool's limit, which the message gives
lim=$("$C" status "$P" --json | json "d['max_device_size']")
[ "$lim" = $((1 << 52)) ] && ok "largest device of a 64K pool: 4 PiB" || bad "max_device_size $lim"
refused "$C" create "$P" absurd 100000T
grep -q "is beyond the limit of 4.0P ($lim bytes" "$T/err" && ok "100000T refused with the limit" || bad "100000T: $(cat "$T/err")"
expect 0 "$C" create "$P" edge "$lim" && ok "a device of exactly the limit" && "$C" delete "$P" edge
refused "$C" create "$P" over $((lim + 1))
expect 0 "$C" create "$P" zero 0 && ok "size 0 is valid"
expect 0 "$C" create "$P" huge 1T && ok "a size beyond the pool is valid (thin)"

# names (TESTING H5)
long255=$(printf 'a%.0s' $(seq 255)); long256=${long255}a
for n in "" . .. .x a/b "$long256"; do
	refused "$C" create "$P" "$n" 1M
done
expect 0 "$C" create "$P" "$long255" 1M && ok "255-byte name"
odd=("with space" $'new\nline' "ünïcødé" "a'b; DROP TABLE map;--" '"quoted"\back')
for n in "${odd[@]}"; do
	expect 0 "$C" create "$P" "$n" 1M || continue
	"$C" list "$P" --json | python3 -c 'import json,sys; names=[d["name"] for d in json.load(sys.stdin)["devices"]]; sys.exit(0 if sys.argv[1] in names else 1)' "$n" \
		&& ok "odd name round-trips: $(printf %q "$n")" || bad "odd name lost: $(printf %q "$n")"
done
expect 0 "$C" check "$P" && ok "check clean after odd names"

# devices: missing and taken (TESTING B13, H6)
expect 0 "$C" create "$P" v1 64M && ok "create v1"
refused "$C" create "$P" v1 64M
refused "$C" snapshot "$P" nosuch s1
refused "$C" snapshot "$P" v1 v1
refused "$C" delete "$P" nosuch
refused "$C" rename "$P" nosuch x
refused "$C" rename "$P" v1 zero
refused "$C" rename "$P" v1 .hidden
refused "$C" resize "$P" nosuch 1M
refused "$C" grow "$P" --data-size 1M
tid0=$("$C" status "$P" --json | json "d['commit_id']")
expect 0 "$C" snapshot "$P" v1 s1 && ok "snapshot"
expect 0 "$C" snapshot "$P" --set monday && ok "snapshot set"
refused "$C" snapshot "$P" --set monday
expect 0 "$C" snapshot "$P" monday/v1 restored && ok "writable snapshot of a set member"
refused "$C" resize "$P" monday/v1 1M
expect 0 "$C" rename "$P" s1 s2 && ok "rename"
expect 0 "$C" resize "$P" s2 128M && ok "resize"
expect 0 "$C" grow "$P" --data-size 32M && ok "grow"
tid1=$("$C" status "$P" --json | json "d['commit_id']")
[ "$tid1" -ge $((tid0 + 6)) ] && ok "transaction id rises per change ($tid0 -> $tid1)" || bad "transaction id $tid0 -> $tid1"
[ "$("$C" status "$P" --json | json "d['used_blocks']")" = 0 ] && ok "no data written, no block used" || bad "used blocks"
[ "$("$C" status "$P" --json | json "d['nr_data_blocks']")" = 512 ] && ok "grown to 32M" || bad "grow"
expect 0 "$C" delete "$P" --set monday && ok "delete set"
expect 0 "$C" delete "$P" s2 && ok "delete"
"$C" list "$P" --json | python3 -m json.tool > /dev/null && ok "list --json parses" || bad "list --json"
refused "$C" resize "$P" v1 $((lim + 65536))
grep -q "beyond the limit of" "$T/err" && ok "resize past the limit names it" || bad "resize limit: $(cat "$T/err")"
"$C" status "$P" --json | python3 -m json.tool > /dev/null && ok "status --json parses" || bad "status --json"
[ "$("$C" list "$P" | head -1 2>&1)" != "" ] && ok "list | head quiet"

# sizes in bytes and human units beside blocks; --json on every reading command (issue 17)
"$C" resize "$P" v1 1G > /dev/null
expect 0 "$C" info "$P" v1 && grep -q "^size: *1.0G (1073741824 B, 16384 blocks)$" "$T/out" \
	&& ok "info: size in human units, bytes and blocks" || bad "info: $(cat "$T/out")"
expect 0 "$C" info "$P" v1 --json && [ "$(json "d['device']['size'], d['device']['size_blocks'], d['device']['mapped_bytes']" < "$T/out")" = "(1073741824, 16384, 0)" ] \
	&& ok "info --json: bytes and blocks" || bad "info --json: $(cat "$T/out")"
expect 1 "$C" info "$P" nosuch && grep -q "device 'nosuch' does not exist" "$T/err" && ok "info of a missing device names it"
expect 0 "$C" list "$P" && grep -q "^v1 .* 1.0G  *0B (0) " "$T/out" && ok "list: sizes and counts in bytes and blocks" || bad "list: $(cat "$T/out")"
expect 0 "$C" list "$P" --json && [ "$(json "[x['size_blocks'] for x in d['devices'] if x['name']=='v1'][0]" < "$T/out")" = 16384 ] \
	&& ok "list --json: size_blocks beside size" || bad "list --json sizes"
expect 0 "$C" status "$P" && grep -q "^data size: *32.0M (33554432 B, 512 blocks)$" "$T/out" \
	&& ok "status: data size in bytes and blocks" || bad "status: $(cat "$T/out")"
[ "$("$C" status "$P" --json | json "d['data_bytes'], d['free_bytes'] + d['used_bytes']")" = "(33554432, 33554432)" ] \
	&& ok "status --json: bytes beside blocks" || bad "status --json bytes"
expect 0 "$C" check "$P" --json && [ "$(json "d['result'], d['exit'], d['findings']" < "$T/out")" = "('clean', 0, [])" ] \
	&& ok "check --json of a clean pool" || bad "check --json: $(cat "$T/out")"
expect 0 "$C" delta "$P" v1 zero --json && [ "$(json "d['ranges'], d['bytes']" < "$T/out")" = "([], 0)" ] \
	&& ok "delta --json parses" || bad "delta --json: $(cat "$T/out")"

# same file (TESTING H1): data on the metadata, also via symlink and hard link
refused "$C" format "$P" --force --data "$P/meta.db"
ln -s "$P/meta.db" "$T/link"; ln "$P/meta.db" "$T/hard"
refused "$C" format "$P" --force --data "$T/link"
refused "$C" format "$P" --force --data "$T/hard"
refused "$C" format "$T/other" --data "$P/meta.db"
grep -q "SQLite database" "$T/err" && ok "another pool's meta.db is never data" || bad "meta.db as data: $(cat "$T/err")"
refused "$C" format "$T/other" --data "$P/data"
grep -q "another pool's data" "$T/err" && ok "another pool's data needs --force" || bad "data reuse: $(cat "$T/err")"
head -c 1M /dev/urandom > "$T/precious"
refused "$C" format "$T/other" --data "$T/precious"
cmp -s <(head -c 1M "$T/precious") "$T/precious" && ok "a file holding data needs --force" || bad "precious"
truncate -s 64M "$T/empty.img"
expect 0 "$C" format "$T/other" --data "$T/empty.img" && ok "an empty sparse file is taken as data" || true

# pool in use (TESTING A9): a changing command names the holder
echo "thinfs pid 4242 on /mnt/demo" > "$P/lock"
# the holder is the sleeping process itself, so killing it frees the lock
( exec 9>>"$P/lock"; flock 9; exec sleep 30 ) > /dev/null 2>&1 & LOCKPID=$!
sleep 0.3
refused "$C" create "$P" v9 1M
grep -q "in use by thinfs pid 4242 on /mnt/demo" "$T/err" && ok "names the holder" || bad "holder not named: $(cat "$T/err")"
expect 0 "$C" list "$P" && ok "list works while in use"
expect 0 "$C" check "$P" && ok "check works while in use"
kill $LOCKPID; wait $LOCKPID 2>/dev/null; LOCKPID=
expect 0 "$C" create "$P" v9 1M && ok "lock released"

# not a pool (TESTING H3)
mkdir "$T/empty" "$T/junk"; head -c 8192 /dev/urandom > "$T/junk/meta.db"; chmod 600 "$T/junk/meta.db"
expect 1 "$C" status "$T/empty" && grep -q "not a thinfs pool" "$T/err" && ok "empty dir: not a pool" || bad "empty dir"
expect 1 "$C" status "$T/junk" && grep -q "not a thinfs pool\|not a database" "$T/err" && ok "garbage meta.db: not a pool" || bad "garbage meta.db: $(cat "$T/err")"
expect 1 "$C" list "$T/nosuch" && ok "missing pool"
cp -r "$P" "$T/newer"; sqlite3 "$T/newer/meta.db" "PRAGMA user_version=99"
expect 1 "$C" status "$T/newer" && grep -q "format 99 newer" "$T/err" && ok "newer format refused" || bad "newer format: $(cat "$T/err")"

# damage around the database (TESTING A8, H3): clear errors, nothing repaired behind our back
cp -r "$P" "$T/shortdata"; truncate -s 4096 "$T/shortdata/data"
expect 1 "$C" status "$T/shortdata" && grep -q "data file is 4096 bytes" "$T/err" && ok "a truncated data file is refused" || bad "short data: $(cat "$T/err")"
cp -r "$P" "$T/nodata"; rm "$T/nodata/data"
expect 1 "$C" list "$T/nodata" && grep -q "data file" "$T/err" && ok "a missing data file is refused" || bad "missing data: $(cat "$T/err")"
cp -r "$P" "$T/dirdata"; rm "$T/dirdata/data"; mkdir "$T/dirdata/data"
expect 1 "$C" create "$T/dirdata" x 1M && grep -q "not a regular file or block device\|data file" "$T/err" && ok "a directory as data file is refused" || bad "dir data: $(cat "$T/err")"
cp -r "$P" "$T/trunc"; truncate -s 4096 "$T/trunc/meta.db"
before=$(sha256sum "$T/trunc/meta.db")
expect 1 "$C" status "$T/trunc" && [ "$before" = "$(sha256sum "$T/trunc/meta.db")" ] && ok "a truncated meta.db: clear error, left as it was" || bad "truncated meta.db: $(cat "$T/err")"
expect_rc 2 "$C" check "$T/trunc" && ok "check of a truncated meta.db is fatal (exit 2)"

# check (TESTING K1): a leak is a warning; mapped-but-free is damage
cp -r "$P" "$T/leak"
sqlite3 "$T/leak/meta.db" "INSERT OR REPLACE INTO space(chunk, bits) VALUES(0, x'0f' || zeroblob(4095))"
expect_rc 0 "$C" check "$T/leak" && grep -q "leak" "$T/out" && ok "leak is a warning (exit 0)" || bad "leak: $(cat "$T/out")"
expect_rc 0 "$C" check --repair "$T/leak" && expect_rc 0 "$C" check "$T/leak" && ! grep -q leak "$T/out" && ok "repair fixes the leak" || bad "repair leak"
cp -r "$P" "$T/dmg"
sqlite3 "$T/dmg/meta.db" "INSERT INTO map(layer, vblock, dblock, time) SELECT layer, 0, 5, 0 FROM devices WHERE name = 'v1'; UPDATE space SET bits = zeroblob(4096)"
expect_rc 1 "$C" check "$T/dmg" && grep -q "marked free" "$T/out" && ok "mapped-but-free is damage (exit 1)" || bad "damage: $(cat "$T/out")"
sqlite3 "$T/dmg/meta.db" "INSERT INTO map(layer, vblock, dblock, time) SELECT layer, 1, 999999, 0 FROM devices WHERE name = 'v1'"
expect_rc 1 "$C" check "$T/dmg" && grep -q "past the end" "$T/out" && ok "mapping past the end is damage (exit 1)" || bad "past end: $(cat "$T/out")"
sqlite3 "$T/dmg/meta.db" "DELETE FROM map WHERE dblock = 999999; INSERT INTO map(layer, vblock, dblock, time) SELECT layer, 2, 5, 0 FROM devices WHERE name = 'zero'"
expect_rc 1 "$C" check "$T/dmg" && grep -q "mapped twice" "$T/out" && ok "block mapped twice is damage (exit 1)" || bad "twice: $(cat "$T/out")"
# damage found by check is remembered: the pool opens read-only until repaired (issue 12)
expect 0 "$C" status "$T/dmg" && grep -q "needs_check" "$T/out" && ok "damage found: the pool is needs_check" || bad "dmg status: $(cat "$T/out")"
expect_rc 0 "$C" check --repair "$T/dmg" && grep -q "mapped twice.*: repaired (the second mapping got its own copy" "$T/out" && ok "repair copies a block mapped twice" || bad "repair twice: $(cat "$T/out")"
expect_rc 0 "$C" check "$T/dmg" && [ ! -s "$T/out" ] && [ ! -e "$T/dmg/needs_check" ] && ok "after the repair: clean, marker gone" || bad "after repair: $(cat "$T/out")"
# a finding repair cannot fix is said, with a non-zero exit, and nothing changes
cp -r "$P" "$T/fatal"; sqlite3 "$T/fatal/meta.db" "PRAGMA wal_checkpoint(TRUNCATE)" > /dev/null
root=$(sqlite3 "$T/fatal/meta.db" "SELECT rootpage FROM sqlite_master WHERE name = 'map'")
psize=$(sqlite3 "$T/fatal/meta.db" "PRAGMA page_size")
head -c "$psize" /dev/urandom | dd of="$T/fatal/meta.db" bs="$psize" seek=$((root - 1)) conv=notrunc status=none
before=$(sha256sum "$T/fatal/meta.db")
expect_rc 2 "$C" check "$T/fatal" && ok "a garbage page in meta.db is fatal (exit 2)" || bad "garbage page: $(cat "$T/out" "$T/err")"
expect_rc 2 "$C" check --repair "$T/fatal" && ! grep -q ": repaired" "$T/out" && [ "$before" = "$(sha256sum "$T/fatal/meta.db")" ] && ok "repair of fatal damage claims nothing, changes nothing (exit 2)" || bad "fatal repair: $(cat "$T/out" "$T/err")"
# an index that disagrees with its table is rebuilt
cp -r "$P" "$T/index"; sqlite3 "$T/index/meta.db" "PRAGMA writable_schema=ON; UPDATE sqlite_master SET sql = 'CREATE INDEX layers_parent ON layers(nr_rows)' WHERE name = 'layers_parent'"
expect_rc 1 "$C" check "$T/index" && grep -q "missing from index\|wrong # of entries" "$T/out" && ok "a stale index is damage (exit 1)" || bad "index: $(cat "$T/out")"
expect_rc 0 "$C" check --repair "$T/index" && grep -q "indexes rebuilt" "$T/out" && expect_rc 0 "$C" check "$T/index" && ok "repair rebuilds the index" || bad "reindex: $(cat "$T/out")"
expect 0 "$C" check "$P" && ok "the original pool is still clean"

# dump / restore / delta / send / receive (issue 6) from the command line
expect 0 "$C" dump "$P" -o "$T/dump.xml" && ok "dump -o"
expect 0 "$C" restore "$T/restored" -i "$T/dump.xml" && ok "restore"
"$C" dump "$T/restored" | cmp -s - "$T/dump.xml" && ok "dump, restore, dump: byte-identical" || bad "round trip differs"
refused "$C" restore "$P" -i "$T/dump.xml"
expect 1 "$C" restore "$T/r2" -i /nonexistent && [ ! -e "$T/r2/meta.db" ] && ok "restore from a missing file: nothing made"
printf '<superblock uuid="x" time="0" transaction="1" flags="0" version="2" data_block_size="128" nr_data_blocks="10"><device dev_id="1" mapped_blocks="1" transaction="0" creation_time="0" snap_time="0"><single_mapping origin_block="0" data_block="99" time="0"/></device></superblock>\n' > "$T/bad.xml"
expect 1 "$C" restore "$T/r3" -i "$T/bad.xml" && [ ! -e "$T/r3/meta.db" ] && ok "restore: a block past the end is refused, nothing made" || bad "bad xml: $(cat "$T/err")"
expect 1 "$C" dump "$P" -o /nonexistent/dir/x && ok "dump to an unwritable path"
"$C" dump "$P" | head -1 > /dev/null 2> "$T/err"; [ ! -s "$T/err" ] && ok "dump | head -1 is quiet" || bad "dump | head: $(cat "$T/err")"
expect 1 "$C" dump "$P" -o /dev/full && grep -q "No space left" "$T/err" && ok "dump to a full device says so" || bad "dump /dev/full: $(cat "$T/err")"

# a closed pipe ends quietly, of SIGPIPE (issue 17): a reader that went away
# before thinctl wrote (deterministic), and a real | head -1 on a long dump
closed_pipe() {
	python3 -c 'import os, subprocess, sys
r, w = os.pipe(); os.close(r)
p = subprocess.run(sys.argv[1:], stdout=w, stderr=subprocess.PIPE)
sys.stderr.buffer.write(p.stderr); sys.exit(128 - p.returncode if p.returncode < 0 else p.returncode)' "$@"
}
python3 -c 'print("<superblock uuid=\"\" time=\"0\" transaction=\"1\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"100000\">")
for d in (1, 2):
    print("<device dev_id=\"%d\" mapped_blocks=\"20000\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\">" % d)
    for i in range(0, 40000, 2): print("<single_mapping origin_block=\"%d\" data_block=\"%d\" time=\"0\"/>" % (i, i + 40000 * (d - 1)))
    print("</device>")
print("</superblock>")' > "$T/long.xml"
"$C" restore "$T/long" -i "$T/long.xml" || bad "restore of the long pool"
for c in "list $T/long" "list $T/long --json" "info $T/long dev1" "info $T/long dev1 --json" "status $T/long" \
	"status $T/long --json" "check $T/long --json" "dump $T/long" "delta $T/long dev1 dev2" \
	"delta $T/long dev1 dev2 --ranges" "delta $T/long dev1 dev2 --json" "send $T/long dev1" "list --help"; do
	closed_pipe "$C" $c 2> "$T/err"; rc=$?
	[ "$rc" = 141 ] && [ ! -s "$T/err" ] && ok "closed pipe: $c ends quietly (141)" || bad "closed pipe: $c -> $rc: $(cat "$T/err")"
done
for c in "dump $T/long" "delta $T/long dev1 dev2" "delta $T/long dev1 dev2 --ranges" "send $T/long dev1"; do
	"$C" $c 2> "$T/err" | head -c 100 > /dev/null; rc=${PIPESTATUS[0]}
	[ "$rc" = 141 ] && [ ! -s "$T/err" ] && ok "$c | head: quiet, 141" || bad "$c | head -> $rc: $(cat "$T/err")"
done
expect 0 "$C" delta "$P" v1 restored --ranges && ok "delta --ranges"
expect 1 "$C" delta "$P" v1 nosuch && ok "delta of a missing device"
"$C" send "$P" v1 > "$T/stream" 2> "$T/err" && ok "send" || bad "send: $(cat "$T/err")"
expect 0 "$C" receive "$T/restored" copy < "$T/stream" && ok "receive"
head -c 100 "$T/stream" > "$T/short"
before=$(sha256sum "$T/restored/meta.db")
expect 1 "$C" receive "$T/restored" copy2 < "$T/short" && ok "a truncated stream is refused"
"$C" list "$T/restored" --json | grep -q copy2 && bad "a refused receive left a device" || ok "refused receive left nothing"

echo "$fails failed"
[ "$fails" = 0 ]
