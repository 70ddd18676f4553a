#!/usr/bin/env bash
# thinfs and thin-provisioning-tools read each other's metadata:
#  1. thinfs's dump goes through thin_restore, and thin_check passes;
#  2. thin_ls's mapped/exclusive/shared counts equal pool_list's;
#  3. thin_dump prints the same devices and mappings thinfs dumped;
#  4. thin_delta and pool_delta agree on every pair of devices;
#  5. XML made by thin_dump (from a hand-written one with sharing, and from
#     step 1) restores into a pool whose check is clean, with the same counts.
# No root needed (the tools work on a metadata file); skips (77) when the tools
# are missing and cannot be installed.
set -u
B=${THINFS_BUILD:-$(cd "$(dirname "$0")/../../build" && pwd)}
H=$B/interop_helper
say() { echo "== 30_thin_tools_interop: $*"; }
skip() { echo "SKIP 30_thin_tools_interop: $*"; exit 77; }
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

[ -x "$H" ] || skip "build the helper first (make)"
if ! command -v thin_restore >/dev/null 2>&1 || ! command -v thin_dump >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq thin-provisioning-tools \
			>/dev/null 2>&1 || true
	fi
fi
for t in thin_restore thin_dump thin_check thin_ls thin_delta; do
	command -v $t >/dev/null 2>&1 || skip "$t not found (apt-get install thin-provisioning-tools)"
done

T=$(mktemp -d /tmp/thinfs-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
P=$T/pool

meta_from() { # XML -> a fresh dm-thin metadata file $2
	rm -f "$2"
	truncate -s 64M "$2"
	thin_restore -q -i "$1" -o "$2"
}

# the devices and mappings of an XML, without comments, the superblock line
# (thin_restore does not keep thinfs's uuid) or the devices' transaction ids
# (thinfs has none per device: it dumps the pool's)
body() {
	grep -v -e '<!--' -e '^<superblock' "$1" |
		sed -E 's/(<device [^>]*) transaction="[0-9]+"/\1/'
}

ls_counts() { # metadata file -> "ID MAPPED EXCLUSIVE SHARED" sorted
	thin_ls --no-headers --format "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS" "$1" |
		awk 'NF == 4 { print $1, $2, $3, $4 }' | sort -n
}

say "1. thinfs dump -> thin_restore -> thin_check"
"$H" build "$P" || exit 1
"$H" dump "$P" > "$T/thinfs.xml" || exit 1
if meta_from "$T/thinfs.xml" "$T/meta.bin" && thin_check -q "$T/meta.bin"; then
	ok "thin_restore + thin_check accept thinfs's dump"
else
	bad "thin_restore/thin_check refused thinfs's dump"
	exit 1
fi

say "2. thin_ls counts = pool_list counts"
ls_counts "$T/meta.bin" > "$T/ls.txt"
"$H" list "$P" | sort -n > "$T/list.txt"
if [ -s "$T/ls.txt" ] && diff "$T/ls.txt" "$T/list.txt"; then
	ok "thin_ls and pool_list agree on $(wc -l < "$T/ls.txt") devices"
else
	bad "thin_ls and pool_list differ"
fi

say "3. thin_dump prints what thinfs dumped"
thin_dump "$T/meta.bin" > "$T/back.xml"
if diff <(body "$T/thinfs.xml") <(body "$T/back.xml"); then
	ok "devices and mappings identical"
else
	bad "thin_dump's devices or mappings differ from thinfs's dump"
fi

say "4. thin_delta = pool_delta"
ids=$(awk '{ print $1 }' "$T/list.txt")
pairs=0
for a in $ids; do
	for b in $ids; do
		[ "$a" = "$b" ] && continue
		thin_delta --snap1 "$a" --snap2 "$b" "$T/meta.bin" | sed 1d > "$T/td.txt"
		"$H" delta "$P" "$a" "$b" | sed 1d > "$T/pd.txt"
		if ! diff "$T/td.txt" "$T/pd.txt" > "$T/delta.diff"; then
			bad "delta $a $b differs:"
			cat "$T/delta.diff"
		fi
		pairs=$((pairs + 1))
	done
done
ok "$pairs pairs compared"

say "5. thin_dump's XML restores into a clean pool"
cat > "$T/hand.xml" <<'EOF'
<superblock uuid="" time="2" transaction="5" flags="0" version="2" data_block_size="128" nr_data_blocks="1000">
  <device dev_id="1" mapped_blocks="12" transaction="0" creation_time="0" snap_time="2">
    <range_mapping origin_begin="0" data_begin="0" length="8" time="0"/>
    <range_mapping origin_begin="8" data_begin="100" length="2" time="1"/>
    <range_mapping origin_begin="20" data_begin="200" length="2" time="2"/>
  </device>
  <device dev_id="2" mapped_blocks="9" transaction="0" creation_time="1" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="6" time="0"/>
    <range_mapping origin_begin="6" data_begin="300" length="3" time="1"/>
  </device>
  <device dev_id="3" mapped_blocks="11" transaction="0" creation_time="2" snap_time="2">
    <range_mapping origin_begin="0" data_begin="0" length="8" time="0"/>
    <range_mapping origin_begin="8" data_begin="100" length="2" time="1"/>
    <single_mapping origin_block="30" data_block="400" time="2"/>
  </device>
  <device dev_id="7" mapped_blocks="0" transaction="0" creation_time="2" snap_time="2">
  </device>
</superblock>
EOF
meta_from "$T/hand.xml" "$T/hand.bin" || { bad "thin_restore refused the hand-written XML"; exit 1; }
thin_dump "$T/hand.bin" > "$T/hand_dumped.xml"
for src in hand_dumped back; do
	rm -rf "$T/r_$src"
	if ! "$H" restore "$T/r_$src" "$T/$src.xml"; then
		bad "restore of thin_dump's $src.xml failed"
		continue
	fi
	if "$H" check "$T/r_$src" > "$T/check.txt" && [ ! -s "$T/check.txt" ]; then
		ok "$src: restored pool checks clean"
	else
		bad "$src: restored pool's check: $(cat "$T/check.txt")"
	fi
	meta=$T/$( [ $src = back ] && echo meta.bin || echo hand.bin )
	if diff <(ls_counts "$meta") <("$H" list "$T/r_$src" | sort -n); then
		ok "$src: counts equal thin_ls's"
	else
		bad "$src: counts differ from thin_ls's"
	fi
	# and back again: the restored pool's dump is what thin_dump printed
	"$H" dump "$T/r_$src" > "$T/again.xml"
	if diff <(body "$T/$src.xml") <(body "$T/again.xml"); then
		ok "$src: dump of the restored pool has the same mappings"
	else
		bad "$src: dump of the restored pool differs"
	fi
done

[ $fails = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all passed"
