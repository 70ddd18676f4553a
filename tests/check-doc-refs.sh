#!/bin/sh
# check-doc-refs.sh [-v] [REPO_ROOT] - every document, scenario, section and
# invariant that the code cites must exist.  POSIX sh and awk, no root.
#
# Scans the comments of src/ include/ tools/ tests/ contrib/ and the Makefile
# (C: /* */ and //; everything else: text after a '#' that starts a line or
# follows a blank; man pages: every line) and checks:
#   1. a document name (a word ending in .md) names a file that exists in
#      docs/, at the repository root, or relative to the citing file;
#   2. "TESTING ID", "TESTING.md ID, ID/ID", ranges such as I1-I4, and ids
#      after "scenario(s)" or "control(s)": each id has an entry in
#      docs/TESTING.md (a line "- **ID..." or a heading "### ID...");
#   3. "TESTING.md section N" and "DESIGN.md N.N": that heading exists;
#   4. "invariant N": N is a numbered item of the Invariants section of
#      docs/DESIGN.md; "invariants I1-I3": oracle entries in docs/TESTING.md.
# Bare ids ("(I4)", "B11:") are not checked: snapshot names and variables
# look the same (S1, N0, K64).  Prints one line per dangling reference,
# "file:line: what", and exits 1 if there is any, else 0; 2 on bad usage.
# -v also lists every reference it checked.
#
# What is deliberately not a citation:
#   - a name that follows '$' or '}' is a path built at run time (the bench
#     writes "$T/report.md"), one after ':' is in a URL, and only comments
#     are read, never code;
#   - ALLOW lists output files that comments may still mention by name.
# This script is skipped: its comments describe the patterns.
set -u
LC_ALL=C
export LC_ALL

# file names that are outputs, not documents: name, and why
#   report.md  tests/bench/run-bench.sh writes it into its temp dir
ALLOW="report.md"

VERBOSE=0
case ${1:-} in
-h | --help)
	sed -n '2,/^set -u/p' "$0" | sed '$d'
	exit 0
	;;
-v)
	VERBOSE=1
	shift
	;;
esac
ROOT=${1:-$(dirname "$0")/..}
if ! ROOT=$(cd "$ROOT" 2> /dev/null && pwd) || [ ! -d "$ROOT/src" ]; then
	echo "usage: check-doc-refs.sh [-v] [REPO_ROOT]  (no src/ in ${1:-$ROOT})" >&2
	exit 2
fi

# The awk program; it must hold no single quote (write \047).
# shellcheck disable=SC2016 # its $ are awk's
PROG='
function exists(p,   q, r) {
	if (p in exist_cache)
		return exist_cache[p]
	q = p
	gsub(/\047/, "\047\\\047\047", q)
	r = system("test -e \047" q "\047") == 0
	exist_cache[p] = r
	return r
}
function load_testing(path,   line, m, id) {
	while ((getline line < path) > 0) {
		if (match(line, /^#+ +[0-9]+(\.[0-9]+)*[. ]/)) {
			m = substr(line, RSTART, RLENGTH)
			sub(/^#+ +/, "", m); sub(/[. ]$/, "", m)
			tsec[m] = 1
		}
		if (match(line, /^(- |#+ +)\**[A-Z][0-9]+/)) {
			id = substr(line, RSTART, RLENGTH)
			if (substr(line, RSTART + RLENGTH, 1) ~ /[A-Za-z0-9_]/)
				continue
			sub(/^(- |#+ +)\**/, "", id)
			tid[id] = 1
		}
	}
	close(path)
}
function load_design(path,   line, m, ininv) {
	ininv = 0
	while ((getline line < path) > 0) {
		if (line ~ /^#/) {
			ininv = line ~ /[Ii]nvariants/
			if (match(line, /^#+ +[0-9]+(\.[0-9]+)*[. ]/)) {
				m = substr(line, RSTART, RLENGTH)
				sub(/^#+ +/, "", m); sub(/[. ]$/, "", m)
				dsec[m] = 1
			}
			continue
		}
		if (ininv && match(line, /^[0-9]+\. /)) {
			m = substr(line, 1, RLENGTH - 2)
			dinv[m] = 1
		}
	}
	close(path)
}
BEGIN {
	testing = root "/docs/TESTING.md"; design = root "/docs/DESIGN.md"
	have_testing = exists(testing); have_design = exists(design)
	if (have_testing) load_testing(testing)
	if (have_design) load_design(design)
	n = split(allow, a, " ")
	for (i = 1; i <= n; i++) allowed[a[i]] = 1
	nrefs = 0
}
function note(msg) {
	nrefs++
	if (verbose) print "R\t" pfile ":" pline ": " msg
}
function problem(msg,   key) {
	key = pfile SUBSEP pline SUBSEP msg
	if (key in seen) return
	seen[key] = 1
	print "P\t" pfile ":" pline ": " msg
}
# C comments of one line, keeping state across lines in incomment
function c_comment(line,   out, i, n, c, j, p, q) {
	if (!incomment && index(line, "/") == 0) return ""
	out = ""; i = 1; n = length(line)
	while (i <= n) {
		if (incomment) {
			p = index(substr(line, i), "*/")
			if (p == 0) { out = out substr(line, i); break }
			out = out substr(line, i, p - 1) " "
			i += p + 1; incomment = 0
			continue
		}
		c = substr(line, i, 1)
		if (c == "\"" || c == "\047") {
			for (j = i + 1; j <= n; j++) {
				q = substr(line, j, 1)
				if (q == "\\") j++
				else if (q == c) break
			}
			i = j + 1
		} else if (substr(line, i, 2) == "/*") {
			incomment = 1; i += 2
		} else if (substr(line, i, 2) == "//") {
			out = out " " substr(line, i + 2); break
		} else
			i++
	}
	return out
}
function sh_comment(line) {
	if (match(line, /^[ \t]*#/)) return substr(line, RSTART + RLENGTH)
	if (match(line, /[ \t]#/)) return substr(line, RSTART + 2)
	return ""
}
# ids at the start of s: "A4", "D7, D6", "F2/F3/I1-I4/I9", "E3/F2"; with
# nums, plain numbers too ("invariant 4").  Fills ids[1..k], returns k.
function idlist(s, ids, nums,   k, id, letter, from, to, x, r) {
	k = 0
	while (1) {
		if (match(s, /^[A-Z][0-9]+/) || (nums && match(s, /^[0-9]+/)))
			id = substr(s, 1, RLENGTH)
		else
			break
		if (substr(s, RLENGTH + 1, 1) ~ /[A-Za-z0-9_]/)
			break
		s = substr(s, RLENGTH + 1)
		letter = id ~ /^[A-Z]/ ? substr(id, 1, 1) : ""
		from = substr(id, length(letter) + 1) + 0
		if (match(s, /^(-|\342\200\223)[A-Z]?[0-9]+/)) {
			r = substr(s, 1, RLENGTH)
			sub(/^(-|\342\200\223)/, "", r)
			if ((letter == "" && r ~ /^[0-9]/) || substr(r, 1, 1) == letter) {
				to = substr(r, length(letter) + 1) + 0
				if (to >= from && to - from < 100) {
					for (x = from; x <= to; x++) ids[++k] = letter x
					s = substr(s, RLENGTH + 1)
				} else
					ids[++k] = id
			} else
				ids[++k] = id
		} else
			ids[++k] = id
		if (match(s, /^(, ?|\/| and | or )/) &&
		    (substr(s, RLENGTH + 1) ~ /^[A-Z][0-9]/ || (nums && substr(s, RLENGTH + 1) ~ /^[0-9]/)))
			s = substr(s, RLENGTH + 1)
		else
			break
	}
	return k
}
function check_ids(s, what, nums,   ids, k, i) {
	k = idlist(s, ids, nums)
	for (i = 1; i <= k; i++) {
		note((ids[i] ~ /^[0-9]/ ? "invariant" : what) " " ids[i])
		if (ids[i] ~ /^[0-9]/) {
			if (!have_design) problem("invariant " ids[i] ": docs/DESIGN.md does not exist")
			else if (!(ids[i] in dinv))
				problem("invariant " ids[i] ": no such numbered invariant in docs/DESIGN.md")
		} else if (!have_testing)
			problem(what " " ids[i] ": docs/TESTING.md does not exist")
		else if (!(ids[i] in tid))
			problem(what " " ids[i] ": no entry for " ids[i] " in docs/TESTING.md")
	}
	return k
}
function check_doc(name, dir,   base) {
	note("document " name)
	base = name; sub(/.*\//, "", base)
	if (base in allowed) return
	sub(/^\.\//, "", name)
	if (name ~ /^\//) { problem(name ": a document outside the repository"); return }
	if (exists(root "/docs/" name) || exists(root "/" name) || exists(root "/" dir "/" name))
		return
	problem(name ": no such document (looked in docs/ and the repository root)")
}
# every citation in t that starts within its first curlen bytes
function scan(t, curlen,   rest, off, s, e, tok, before, after, sec, dir, kw) {
	dir = pfile; if (!sub(/\/[^\/]*$/, "", dir)) dir = "."
	# 1. document names
	rest = t; off = 0
	while (match(rest, /[A-Za-z0-9_.\/-]*[A-Za-z0-9_-]\.md/)) {
		s = off + RSTART; e = s + RLENGTH
		tok = substr(t, s, RLENGTH)
		before = s > 1 ? substr(t, s - 1, 1) : ""
		after = substr(t, e, 1)
		off = e - 1; rest = substr(t, e)
		if (s > curlen) break
		# a path built at run time ($T/x.md, ${T}/x.md), or a URL
		if (after ~ /[A-Za-z0-9_]/ || before == "$" || before == "}" || before == ":")
			continue
		check_doc(tok, dir)
	}
	# 2, 3. TESTING and DESIGN citations
	rest = t; off = 0
	while (match(rest, /(TESTING|DESIGN)(\.md)?/)) {
		s = off + RSTART; e = s + RLENGTH
		kw = substr(t, s, RLENGTH)
		before = s > 1 ? substr(t, s - 1, 1) : ""
		off = e - 1; rest = substr(t, e)
		if (s > curlen) break
		if (before ~ /[A-Za-z0-9_]/ || substr(t, e, 1) ~ /[A-Za-z0-9_]/) continue
		after = substr(t, e)
		sub(/^[ :(]*/, "", after)
		if (match(after, /^((section|\302\247) ?)?[0-9]+(\.[0-9]+)*/)) {
			sec = substr(after, 1, RLENGTH)
			sub(/^(section|\302\247) ?/, "", sec)
			note(kw " section " sec)
			if (kw ~ /^TESTING/) {
				if (have_testing && !(sec in tsec))
					problem(kw " section " sec ": no such heading in docs/TESTING.md")
			} else if (have_design && !(sec in dsec))
				problem(kw " " sec ": no such heading in docs/DESIGN.md")
		} else if (kw ~ /^TESTING/)
			check_ids(after, "TESTING", 0)
		if (kw !~ /\.md$/ && (kw ~ /^TESTING/ ? !have_testing : !have_design))
			problem(kw ": docs/" kw ".md does not exist")
	}
	# 2. ids after "scenario(s)" and "control(s)"
	rest = t; off = 0
	while (match(rest, /(^|[^A-Za-z_])([Ss]cenarios?|[Cc]ontrols?) \(?/)) {
		s = off + RSTART; e = s + RLENGTH
		off = e - 1; rest = substr(t, e)
		if (s > curlen) break
		check_ids(substr(t, e), "scenario", 0)
	}
	# 4. invariants
	rest = t; off = 0
	while (match(rest, /(^|[^A-Za-z_])[Ii]nvariants? \(?/)) {
		s = off + RSTART; e = s + RLENGTH
		off = e - 1; rest = substr(t, e)
		if (s > curlen) break
		check_ids(substr(t, e), "oracle", 1)
	}
}
function flush(next_text, next_line,   t) {
	if (pfile == "") return
	t = ptext
	# a citation may go on in the comment of the next line (" * Q7")
	sub(/^[ \t]*\**[ \t]*/, "", next_text)
	if (next_line == pline + 1 && next_text != "") t = ptext " " next_text
	if (ptext != "") scan(t, length(ptext))
	pfile = ""
}
FNR == 1 {
	flush("", -1)
	incomment = 0
	rel = FILENAME
	if (substr(rel, 1, length(root) + 1) == root "/") rel = substr(rel, length(root) + 2)
	kind = rel ~ /\.[ch]$/ ? "c" : rel ~ /\.[1-9]$/ ? "man" : "sh"
}
{
	text = kind == "c" ? c_comment($0) : kind == "man" ? $0 : sh_comment($0)
	flush(text, FNR)
	pfile = rel; pline = FNR; ptext = text
}
END {
	flush("", -1)
	print "C\t" nrefs
}
'

dirs=""
for d in src include tools tests contrib; do
	[ -d "$ROOT/$d" ] && dirs="$dirs $d"
done
# (find may run awk more than once: each run ends with a "C count" line)
out=$(
	cd "$ROOT" || exit 2
	# shellcheck disable=SC2086 # the directory names have no blanks
	find $dirs -type f ! -path tests/check-doc-refs.sh \
		! -name '*.o' ! -name '*.a' ! -name '*.state' ! -name '*.img' \
		-exec awk -v root="$ROOT" -v allow="$ALLOW" -v verbose="$VERBOSE" "$PROG" {} +
	if [ -f Makefile ]; then
		awk -v root="$ROOT" -v allow="$ALLOW" -v verbose="$VERBOSE" "$PROG" Makefile
	fi
)
TAB=$(printf '\t')
case $out in
*"C$TAB"*) ;;
*)
	echo "check-doc-refs: the scan produced no result (awk failed?)" >&2
	exit 2
	;;
esac
[ "$VERBOSE" = 1 ] && printf '%s\n' "$out" | sed -n "s/^R$TAB//p" | sort -t: -k1,1 -k2,2n
problems=$(printf '%s\n' "$out" | sed -n "s/^P$TAB//p" | sort -t: -k1,1 -k2,2n)
refs=$(printf '%s\n' "$out" | sed -n "s/^C$TAB//p" | awk '{ n += $1 } END { print n + 0 }')
if [ -n "$problems" ]; then
	printf '%s\n' "$problems"
	echo "check-doc-refs: $(printf '%s\n' "$problems" | wc -l | tr -d ' ') dangling of $refs references" >&2
	exit 1
fi
echo "check-doc-refs: $refs references, all resolve"
exit 0
