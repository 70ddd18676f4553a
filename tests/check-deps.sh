#!/bin/sh
# check-deps.sh BUILD_DIR - the library's files call each other without
# cycles: from the symbol tables of the built objects (nm), file A depends
# on file B when A uses a symbol B defines.  Prints the graph with -v; exits
# 1 naming the files of each cycle.  The layers above (daemon, tools) only
# call down by construction: they are not in the library.
BUILD=${1:-build}
VERBOSE=${2:-}
objs=$(ls "$BUILD"/engine/*.o "$BUILD"/interop/*.o "$BUILD"/control/*.o 2> /dev/null)
[ -n "$objs" ] || { echo "check-deps: no objects under $BUILD (build first)"; exit 1; }
for o in $objs; do
	me=$(basename "$o" .o)
	nm --defined-only -g "$o" | awk -v f="$me" '$2 ~ /^[TDBR]$/ { print "D", $3, f }'
	nm -u "$o" | awk -v f="$me" '{ print "U", $2, f }'
done | awk -v verbose="$VERBOSE" '
	$1 == "D" { def[$2] = $3; next }
	{ use[NR] = $2; user[NR] = $3 }
	END {
		for (i in use) {
			d = def[use[i]]
			if (d != "" && d != user[i] && !((user[i], d) in edge)) {
				edge[user[i], d] = 1; out[user[i]] = out[user[i]] " " d
			}
			node[user[i]] = 1
		}
		if (verbose != "")
			for (n in node) print n ":" out[n]
		# a cycle: a node that reaches itself (depth-first, iterative closure)
		bad = 0
		for (n in node) {
			delete seen; top = 0; stack[++top] = n
			while (top > 0) {
				v = stack[top--]; split(out[v], next_, " ")
				for (k in next_) {
					w = next_[k]; if (w == "") continue
					if (w == n) { cyc[n] = 1 }
					if (!(w in seen)) { seen[w] = 1; stack[++top] = w }
				}
			}
		}
		for (n in cyc) { printf "cycle through %s\n", n; bad = 1 }
		if (!bad) print "no cycles between the library files"
		exit bad
	}'
