/* SPDX-License-Identifier: MIT */
/*
 * thin_restore.c - a new pool from thin_dump XML (thin_dump.c's output, or
 * thin-provisioning-tools' own, with <def>/<ref> shared runs).
 *
 * dm-thin describes each device's view; thinfs stores views as a tree of
 * layers (layer.c).  Restore rebuilds a tree that yields exactly the views:
 *
 *  1. Parse (expat, streaming) into devices and runs (vblock, dblock, length,
 *     time); check every element, attribute and number; refuse overlapping
 *     mappings, blocks past nr_data_blocks, mapped_blocks that lie.
 *  2. Sweep the runs in dblock order: for each data block, the set of devices
 *     mapping it.  They must map it at the same vblock with the same time (a
 *     row has one of each); a block mapped twice by one device is refused.
 *  3. The layer tree:
 *     - from the <!-- thinfs layer --> comments of a thinfs dump (the dumped
 *       pool's own tree), checked: every interior layer has >= 2 children;
 *     - else derived from the sharing sets: sets of >= 2 devices become
 *       clusters greedily (sets that compete with another set at one vblock
 *       first, then the biggest), a set overlapping a chosen cluster without
 *       nesting gets the union of what it overlaps instead; the clusters are
 *       laminar, each one's parent is the smallest strict superset and each
 *       device's leaf hangs under the smallest cluster holding it.  For
 *       laminar sharing (most snapshot histories) every set is a cluster.
 *     Every interior layer has >= 2 children: its children cover it (each of
 *     its devices lies below one) and each is strictly smaller, so one child
 *     would have to be the whole layer.
 *  4. Each block's row goes in the lowest common ancestor of its devices'
 *     leaves (so every row is seen by >= 1 leaf).  Each device below that
 *     layer that is not in the set must not see the row: where it maps the
 *     vblock elsewhere, that row must sit strictly lower on its path (else
 *     the sharing cannot be represented: refused); where it maps nothing, its
 *     leaf gets a tombstone.  For a thinfs dump's own tree this always holds.
 *  5. Write: pool_format (or, to adopt a data image, our own meta_create,
 *     since format empties the data), then one metadata transaction with the
 *     layers, rows, devices, sets, space map and pool row; device ids are set
 *     to dm-thin's (meta_interop.c); then pool_check must find nothing; an
 *     adopted image gets its unmapped blocks punched.
 * Any error removes what this call created (never an adopted image).
 */
#include <errno.h>
#include <fcntl.h>
#include <expat.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "interop_internal.h"
#include "thinfs/pool_test.h"
#include "engine/util.h"

#define MAX_VBLOCK (1ull << 52)
#define MAX_DEVICE_SIZE ((uint64_t)INT64_MAX)
#define NO_NODE (-1)

struct rrun {
	uint32_t dev; /* device index; UINT32_MAX in a <def> */
	uint64_t vb, db, len, time;
};

struct rdev {
	uint64_t id, mapped_attr, creation_time, snap_time;
	/* from the <!-- thinfs device --> comment */
	bool has_comment, has_parent_layer;
	char set[POOL_NAME_MAX + 1], name[POOL_NAME_MAX + 1];
	uint64_t size, origin, parent_layer;
	bool has_size;
	int read_only;
	int64_t ctime, mtime;
	uint32_t uid, gid, mode;
	/* computed */
	size_t run0, nr_runs; /* its runs in runs[], sorted by vblock */
	uint64_t nr_mapped;
};

struct rdef {
	char *name;
	size_t first, n; /* in druns */
};

struct rlayer {
	uint64_t id, parent;
};

struct rsetc {
	char name[POOL_NAME_MAX + 1];
	int64_t ctime;
};

/* A run of rows of one sharing set. */
struct rowrun {
	uint32_t set;
	uint64_t vb, db, len, time;
};

struct tnode {
	int32_t parent;
	uint32_t depth;
	int32_t dev; /* its device for a leaf, else -1 */
	uint32_t nr_children;
	uint32_t tin, tout;
	uint64_t layer_id, nr_rows;
};

struct tomb {
	uint32_t dev;
	uint64_t vb;
};

struct restore {
	XML_Parser xp;
	char *msg;
	size_t msglen;
	int err;
	int64_t now;

	/* the superblock */
	bool sb_open, sb_done;
	char uuid[40];
	uint64_t time, transaction, nr_data_blocks, block_size;
	/* where the parser is */
	enum { IN_NONE, IN_SB, IN_DEV, IN_DEF, IN_MAP, IN_DEF_MAP } where;
	int depth;
	int32_t cur_dev, cur_def;

	struct rdev *devs;
	size_t nr_devs, cap_devs;
	struct rrun *runs;
	size_t nr_runs, cap_runs;
	struct rrun *druns;
	size_t nr_druns, cap_druns;
	struct rdef *defs;
	size_t nr_defs, cap_defs;
	struct rdev *cdevs; /* device comments, until matched */
	size_t nr_cdevs, cap_cdevs;
	struct rlayer *clayers;
	size_t nr_clayers, cap_clayers;
	struct rsetc *csets;
	size_t nr_csets, cap_csets;

	/* sharing sets: members (device indices, sorted) */
	uint32_t *members;
	size_t nr_members, cap_members;
	size_t *set_off, *set_len;
	size_t nr_sets, cap_sets;
	size_t *set_hash; /* open addressing: set index + 1 */
	size_t hash_cap;
	struct rowrun *rr;
	size_t nr_rr, cap_rr;

	/* the tree: interior nodes, then one leaf per device */
	struct tnode *nodes;
	size_t nr_nodes, nr_interior;
	int32_t *set_node; /* the layer of each set's rows */
	struct tomb *tombs;
	size_t nr_tombs, cap_tombs;
};

/* qsort and bsearch, which may not be handed a NULL array, even empty */
static void sort_n(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(base, n, size, cmp);
}

static void *search_n(const void *key, const void *base, size_t n, size_t size,
		      int (*cmp)(const void *, const void *))
{
	return n ? bsearch(key, base, n, size, cmp) : NULL;
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 16;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, n * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}
#define GROW(arr, nr, cap) grow((void **)&(arr), &(cap), (nr) + 1, sizeof(*(arr)))

static int fail(struct restore *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the first error (with the XML line while parsing) and stop the parser. */
static int fail(struct restore *r, int err, const char *fmt, ...)
{
	char text[POOL_MSG_MAX];
	va_list ap;

	if (r->err)
		return r->err;
	va_start(ap, fmt);
	/* clang 14's valist checker misreads this (a false positive) */
	vsnprintf(text, sizeof(text), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	r->err = err;
	if (r->xp)
		set_msg(r->msg, r->msglen, err, "line %lu: %s",
			(unsigned long)XML_GetCurrentLineNumber(r->xp), text);
	else
		set_msg(r->msg, r->msglen, err, "%s", text);
	if (r->xp)
		XML_StopParser(r->xp, XML_FALSE);
	return err;
}

/* ---- attributes ---- */

static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

static int parse_i64(const char *s, int64_t *out)
{
	uint64_t v;
	bool neg = *s == '-';
	int rc = parse_u64(s + neg, &v);

	if (rc)
		return rc;
	if (v > (uint64_t)INT64_MAX)
		return -ERANGE;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

/*
 * Match atts against names[] (nr of them): values[i] gets each one's value
 * (NULL if absent).  Unknown attributes and missing required ones (the first
 * nr_required names) fail.
 */
static int get_attrs(struct restore *r, const char *elem, const XML_Char **atts,
		     const char *const *names, size_t nr, size_t nr_required, const char **values)
{
	for (size_t i = 0; i < nr; i++)
		values[i] = NULL;
	for (size_t a = 0; atts[a]; a += 2) {
		size_t i;
		for (i = 0; i < nr; i++)
			if (!strcmp(atts[a], names[i]))
				break;
		if (i == nr)
			return fail(r, -EINVAL, "unknown attribute '%s' of <%s>", atts[a], elem);
		values[i] = atts[a + 1];
	}
	for (size_t i = 0; i < nr_required; i++)
		if (!values[i])
			return fail(r, -EINVAL, "<%s> lacks attribute '%s'", elem, names[i]);
	return 0;
}

/* Parse values[0..nr) (NULL: leave 0) as unsigned numbers. */
static int get_numbers(struct restore *r, const char *elem, const char *const *names,
		       const char **values, uint64_t *nums, size_t nr)
{
	for (size_t i = 0; i < nr; i++) {
		nums[i] = 0;
		if (values[i] && parse_u64(values[i], &nums[i]))
			return fail(r, -EINVAL, "<%s %s=\"%s\">: not a number (or too large)", elem,
				    names[i], values[i]);
	}
	return 0;
}

/* ---- elements ---- */

static void start_superblock(struct restore *r, const XML_Char **atts)
{
	static const char *const names[] = {
	    "uuid",	      "time",  "transaction", "data_block_size",
	    "nr_data_blocks", "flags", "version",     "metadata_snap"};
	const char *v[8];
	uint64_t n[8];

	if (get_attrs(r, "superblock", atts, names, 8, 5, v) ||
	    get_numbers(r, "superblock", names + 1, v + 1, n + 1, 7))
		return;
	if (strlen(v[0]) >= sizeof(r->uuid) ||
	    strspn(v[0], "0123456789abcdefABCDEF-") != strlen(v[0])) {
		fail(r, -EINVAL, "superblock uuid \"%s\" is not a uuid thinfs can keep", v[0]);
		return;
	}
	snprintf(r->uuid, sizeof(r->uuid), "%s", v[0]);
	r->time = n[1];
	r->transaction = n[2];
	if (v[6] && n[6] != 1 && n[6] != 2) {
		fail(r, -EPROTONOSUPPORT, "superblock version %llu (this reads 1 and 2)",
		     (unsigned long long)n[6]);
		return;
	}
	if (n[3] > POOL_MAX_BLOCK_SIZE / 512 || !is_pow2(n[3] * 512) ||
	    n[3] * 512 < POOL_MIN_BLOCK_SIZE) {
		fail(r, -EINVAL,
		     "data_block_size %llu sectors is not a power of two from 4K to 1G (thinfs "
		     "block sizes)",
		     (unsigned long long)n[3]);
		return;
	}
	r->block_size = n[3] * 512;
	if (!n[4] || n[4] > VM_DMASK - 1) {
		fail(r, -EINVAL, "nr_data_blocks %llu is out of range", (unsigned long long)n[4]);
		return;
	}
	r->nr_data_blocks = n[4];
	r->sb_open = true;
	r->where = IN_SB;
}

static int cmp_dev_id(const void *a, const void *b)
{
	const struct rdev *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static void start_device(struct restore *r, const XML_Char **atts)
{
	static const char *const names[] = {"dev_id", "mapped_blocks", "transaction",
					    "creation_time", "snap_time"};
	const char *v[5];
	uint64_t n[5];
	struct rdev *d;

	if (get_attrs(r, "device", atts, names, 5, 5, v) ||
	    get_numbers(r, "device", names, v, n, 5))
		return;
	if (r->nr_devs >= UINT32_MAX - 1 || GROW(r->devs, r->nr_devs, r->cap_devs)) {
		fail(r, -ENOMEM, "out of memory");
		return;
	}
	for (size_t i = 0; i < r->nr_devs; i++) {
		if (r->devs[i].id == n[0]) {
			fail(r, -EINVAL, "device %llu appears twice", (unsigned long long)n[0]);
			return;
		}
	}
	if (n[0] > (uint64_t)INT64_MAX) {
		fail(r, -EINVAL, "dev_id %llu is too large", (unsigned long long)n[0]);
		return;
	}
	d = &r->devs[r->nr_devs];
	memset(d, 0, sizeof(*d));
	d->id = n[0];
	d->mapped_attr = n[1];
	d->creation_time = n[3];
	d->snap_time = n[4];
	r->cur_dev = (int32_t)r->nr_devs++;
	r->where = IN_DEV;
}

/* Append a run (to a device or the current def), merging with the previous. */
static void add_run(struct restore *r, uint64_t vb, uint64_t db, uint64_t len, uint64_t time)
{
	bool in_def = r->where == IN_DEF;
	struct rrun **arr = in_def ? &r->druns : &r->runs;
	size_t *nr = in_def ? &r->nr_druns : &r->nr_runs,
	       *cap = in_def ? &r->cap_druns : &r->cap_runs;
	uint32_t dev = in_def ? UINT32_MAX : (uint32_t)r->cur_dev;
	size_t first = in_def ? r->defs[r->cur_def].first : 0;

	if (!len) {
		fail(r, -EINVAL, "a mapping of length 0");
		return;
	}
	if (vb > MAX_VBLOCK || len > MAX_VBLOCK - vb) {
		fail(r, -EINVAL, "vblock %llu + %llu is beyond what a device can hold",
		     (unsigned long long)vb, (unsigned long long)len);
		return;
	}
	if (db >= r->nr_data_blocks || len > r->nr_data_blocks - db) {
		fail(r, -EINVAL, "data block %llu is beyond nr_data_blocks %llu",
		     (unsigned long long)(db >= r->nr_data_blocks ? db : r->nr_data_blocks),
		     (unsigned long long)r->nr_data_blocks);
		return;
	}
	if (*nr > first) {
		struct rrun *p = &(*arr)[*nr - 1];
		if (p->dev == dev && p->time == time && p->vb + p->len == vb &&
		    p->db + p->len == db) {
			p->len += len;
			return;
		}
	}
	if (grow((void **)arr, cap, *nr + 1, sizeof(**arr))) {
		fail(r, -ENOMEM, "out of memory");
		return;
	}
	(*arr)[(*nr)++] = (struct rrun){dev, vb, db, len, time};
}

static void start_mapping(struct restore *r, const char *name, const XML_Char **atts)
{
	static const char *const range[] = {"origin_begin", "data_begin", "length", "time"};
	static const char *const single[] = {"origin_block", "data_block", "time"};
	const char *v[4];
	uint64_t n[4];

	if (!strcmp(name, "range_mapping")) {
		if (get_attrs(r, name, atts, range, 4, 4, v) ||
		    get_numbers(r, name, range, v, n, 4))
			return;
		add_run(r, n[0], n[1], n[2], n[3]);
	} else {
		if (get_attrs(r, name, atts, single, 3, 3, v) ||
		    get_numbers(r, name, single, v, n, 3))
			return;
		add_run(r, n[0], n[1], 1, n[2]);
	}
}

static struct rdef *find_def(struct restore *r, const char *name)
{
	for (size_t i = 0; i < r->nr_defs; i++)
		if (name && r->defs[i].name && !strcmp(r->defs[i].name, name))
			return &r->defs[i];
	return NULL;
}

static void start_def(struct restore *r, const XML_Char **atts)
{
	static const char *const names[] = {"name"};
	const char *v[1];

	if (get_attrs(r, "def", atts, names, 1, 1, v) || !v[0])
		return;
	if (find_def(r, v[0])) {
		fail(r, -EINVAL, "<def name=\"%s\"> appears twice", v[0]);
		return;
	}
	if (GROW(r->defs, r->nr_defs, r->cap_defs)) {
		fail(r, -ENOMEM, "out of memory");
		return;
	}
	r->defs[r->nr_defs].name = strdup(v[0]);
	r->defs[r->nr_defs].first = r->nr_druns;
	r->defs[r->nr_defs].n = 0;
	if (!r->defs[r->nr_defs].name) {
		fail(r, -ENOMEM, "out of memory");
		return;
	}
	r->cur_def = (int32_t)r->nr_defs++;
	r->where = IN_DEF;
}

static void start_ref(struct restore *r, const XML_Char **atts)
{
	static const char *const names[] = {"name"};
	const char *v[1];
	struct rdef *def;

	if (get_attrs(r, "ref", atts, names, 1, 1, v))
		return;
	def = find_def(r, v[0]);
	if (!def) {
		fail(r, -EINVAL, "<ref name=\"%s\"> names no <def> before it", v[0]);
		return;
	}
	for (size_t i = 0; i < def->n && !r->err; i++) {
		struct rrun *s = &r->druns[def->first + i];
		add_run(r, s->vb, s->db, s->len, s->time);
	}
}

static void XMLCALL on_start(void *arg, const XML_Char *name, const XML_Char **atts)
{
	struct restore *r = arg;

	if (r->err)
		return;
	r->depth++;
	switch (r->where) {
	case IN_NONE:
		if (r->sb_done || strcmp(name, "superblock"))
			fail(r, -EINVAL, "<%s> where <superblock> was expected", name);
		else
			start_superblock(r, atts);
		return;
	case IN_SB:
		if (!strcmp(name, "device"))
			start_device(r, atts);
		else if (!strcmp(name, "def"))
			start_def(r, atts);
		else
			fail(r, -EINVAL, "unknown element <%s> in <superblock>", name);
		return;
	case IN_DEV:
	case IN_DEF:
		if (!strcmp(name, "range_mapping") || !strcmp(name, "single_mapping")) {
			start_mapping(r, name, atts);
			if (!r->err)
				r->where = r->where == IN_DEV ? IN_MAP : IN_DEF_MAP;
		} else if (!strcmp(name, "ref") && r->where == IN_DEV) {
			start_ref(r, atts);
			if (!r->err)
				r->where = IN_MAP;
		} else {
			fail(r, -EINVAL, "unknown element <%s> in <%s>", name,
			     r->where == IN_DEV ? "device" : "def");
		}
		return;
	default:
		fail(r, -EINVAL, "<%s> inside a mapping element", name);
	}
}

static void XMLCALL on_end(void *arg, const XML_Char *name)
{
	struct restore *r = arg;

	if (r->err)
		return;
	r->depth--;
	if (r->where == IN_MAP) {
		r->where = IN_DEV;
	} else if (r->where == IN_DEF_MAP) {
		r->where = IN_DEF;
	} else if (r->where == IN_DEV || r->where == IN_DEF) {
		if (r->where == IN_DEF)
			r->defs[r->cur_def].n = r->nr_druns - r->defs[r->cur_def].first;
		r->where = IN_SB;
	} else if (r->where == IN_SB) {
		r->sb_done = true;
		r->where = IN_NONE;
	}
}

static void XMLCALL on_text(void *arg, const XML_Char *s, int len)
{
	struct restore *r = arg;

	for (int i = 0; i < len && !r->err; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			fail(r, -EINVAL, "unexpected text in the XML");
}

static void XMLCALL on_doctype(void *arg, const XML_Char *name, const XML_Char *sysid,
			       const XML_Char *pubid, int has_internal)
{
	fail(arg, -EINVAL, "a DOCTYPE is not part of thin_dump's format");
}

/* ---- the thinfs comments ---- */

/* Undo interop_put_escaped() into out (len bytes). */
static int unescape(const char *s, size_t n, char *out, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < n;) {
		char c = s[i];
		if (c == '&') {
			static const struct {
				const char *e;
				char c;
			} ents[] = {{"&amp;", '&'},
				    {"&lt;", '<'},
				    {"&gt;", '>'},
				    {"&quot;", '"'},
				    {"&#45;", '-'}};
			size_t k, el = 0;
			for (k = 0; k < sizeof(ents) / sizeof(ents[0]); k++) {
				el = strlen(ents[k].e);
				if (n - i >= el && !strncmp(s + i, ents[k].e, el))
					break;
			}
			if (k < sizeof(ents) / sizeof(ents[0])) {
				c = ents[k].c;
				i += el;
			} else if (n - i >= 6 && !strncmp(s + i, "&#x", 3) && s[i + 5] == ';') {
				char hex[3] = {s[i + 3], s[i + 4], 0}, *end;
				unsigned long b = strtoul(hex, &end, 16);
				if (*end || !b)
					return -EINVAL;
				c = (char)b;
				i += 6;
			} else {
				return -EINVAL;
			}
		} else {
			i++;
		}
		if (o + 1 >= len)
			return -ENAMETOOLONG;
		out[o++] = c;
	}
	out[o] = 0;
	return 0;
}

/* The next key="value" of a comment: key and value point into s. */
static int next_pair(const char **p, const char **key, size_t *klen, const char **val, size_t *vlen)
{
	const char *s = *p;

	s += strspn(s, " \t\r\n");
	if (!*s)
		return 0;
	*key = s;
	*klen = strcspn(s, "= \t\r\n");
	if (!*klen)
		return -EINVAL;
	s += *klen;
	if (*s != '=' || s[1] != '"')
		return -EINVAL;
	*val = s + 2;
	s = strchr(*val, '"');
	if (!s)
		return -EINVAL;
	*vlen = (size_t)(s - *val);
	*p = s + 1;
	return 1;
}

static bool key_is(const char *key, size_t klen, const char *want)
{
	return strlen(want) == klen && !strncmp(key, want, klen);
}

/* key="value" with a number value into *out. */
static int pair_number(const char *val, size_t vlen, bool is_signed, void *out)
{
	char buf[32];

	if (vlen >= sizeof(buf))
		return -ERANGE;
	memcpy(buf, val, vlen);
	buf[vlen] = 0;
	return is_signed ? parse_i64(buf, out) : parse_u64(buf, out);
}

static int comment_device(struct restore *r, const char *p)
{
	const char *key, *val;
	size_t klen, vlen;
	struct rdev d = {.has_comment = true};
	bool have_id = false, have_name = false;
	int rc;

	while ((rc = next_pair(&p, &key, &klen, &val, &vlen)) > 0) {
		uint64_t u = 0;
		if (key_is(key, klen, "set"))
			rc = unescape(val, vlen, d.set, sizeof(d.set));
		else if (key_is(key, klen, "name")) {
			rc = unescape(val, vlen, d.name, sizeof(d.name));
			have_name = true;
		} else if (key_is(key, klen, "ctime"))
			rc = pair_number(val, vlen, true, &d.ctime);
		else if (key_is(key, klen, "mtime"))
			rc = pair_number(val, vlen, true, &d.mtime);
		else {
			rc = pair_number(val, vlen, false, &u);
			if (rc)
				;
			else if (key_is(key, klen, "dev_id")) {
				d.id = u;
				have_id = true;
			} else if (key_is(key, klen, "size")) {
				d.size = u;
				d.has_size = true;
			} else if (key_is(key, klen, "read_only") && u <= 1)
				d.read_only = (int)u;
			else if (key_is(key, klen, "origin"))
				d.origin = u;
			else if (key_is(key, klen, "uid") && u <= UINT32_MAX)
				d.uid = (uint32_t)u;
			else if (key_is(key, klen, "gid") && u <= UINT32_MAX)
				d.gid = (uint32_t)u;
			else if (key_is(key, klen, "mode") && u <= 07777)
				d.mode = (uint32_t)u;
			else if (key_is(key, klen, "parent_layer")) {
				d.parent_layer = u;
				d.has_parent_layer = true;
			} else
				rc = -EINVAL;
		}
		if (rc)
			return fail(r, -EINVAL, "bad thinfs device comment at '%.*s'", (int)klen,
				    key);
	}
	if (rc || !have_id || !have_name)
		return fail(r, -EINVAL, "thinfs device comment without dev_id and name");
	if (!d.mode)
		d.mode = 0600;
	if (GROW(r->cdevs, r->nr_cdevs, r->cap_cdevs))
		return fail(r, -ENOMEM, "out of memory");
	r->cdevs[r->nr_cdevs++] = d;
	return 0;
}

static int comment_layer(struct restore *r, const char *p)
{
	const char *key, *val;
	size_t klen, vlen;
	struct rlayer l = {0};
	bool have_id = false, have_parent = false;
	int rc;

	while ((rc = next_pair(&p, &key, &klen, &val, &vlen)) > 0) {
		if (key_is(key, klen, "id") && !pair_number(val, vlen, false, &l.id))
			have_id = true;
		else if (key_is(key, klen, "parent") && !pair_number(val, vlen, false, &l.parent))
			have_parent = true;
		else
			return fail(r, -EINVAL, "bad thinfs layer comment at '%.*s'", (int)klen,
				    key);
	}
	if (rc || !have_id || !have_parent || !l.id)
		return fail(r, -EINVAL, "thinfs layer comment without a valid id and parent");
	if (GROW(r->clayers, r->nr_clayers, r->cap_clayers))
		return fail(r, -ENOMEM, "out of memory");
	r->clayers[r->nr_clayers++] = l;
	return 0;
}

static int comment_set(struct restore *r, const char *p)
{
	const char *key, *val;
	size_t klen, vlen;
	struct rsetc s = {0};
	bool have_name = false;
	int rc;

	while ((rc = next_pair(&p, &key, &klen, &val, &vlen)) > 0) {
		if (key_is(key, klen, "name") && !unescape(val, vlen, s.name, sizeof(s.name)))
			have_name = true;
		else if (!key_is(key, klen, "ctime") || pair_number(val, vlen, true, &s.ctime))
			return fail(r, -EINVAL, "bad thinfs set comment at '%.*s'", (int)klen, key);
	}
	if (rc || !have_name)
		return fail(r, -EINVAL, "thinfs set comment without a name");
	if (pool_name_valid(s.name, NULL, 0))
		return fail(r, -EINVAL, "thinfs set comment: invalid set name '%s'", s.name);
	for (size_t i = 0; i < r->nr_csets; i++)
		if (!strcmp(r->csets[i].name, s.name))
			return fail(r, -EINVAL, "set '%s' appears twice", s.name);
	if (GROW(r->csets, r->nr_csets, r->cap_csets))
		return fail(r, -ENOMEM, "out of memory");
	r->csets[r->nr_csets++] = s;
	return 0;
}

static void XMLCALL on_comment(void *arg, const XML_Char *text)
{
	struct restore *r = arg;
	const char *p = text + strspn(text, " \t\r\n");

	if (r->err || strncmp(p, "thinfs ", 7))
		return; /* not ours */
	p += 7;
	if (!strncmp(p, "device ", 7))
		comment_device(r, p + 7);
	else if (!strncmp(p, "layer ", 6))
		comment_layer(r, p + 6);
	else if (!strncmp(p, "set ", 4))
		comment_set(r, p + 4);
	else if (strncmp(p, "dump ", 5))
		fail(r, -EINVAL, "unknown thinfs comment '%.20s'", p);
}

static int parse(struct restore *r, FILE *in)
{
	char buf[65536];
	size_t n;
	bool done = false;

	r->xp = XML_ParserCreate("UTF-8");
	if (!r->xp)
		return fail(r, -ENOMEM, "out of memory");
	XML_SetUserData(r->xp, r);
	XML_SetElementHandler(r->xp, on_start, on_end);
	XML_SetCharacterDataHandler(r->xp, on_text);
	XML_SetCommentHandler(r->xp, on_comment);
	XML_SetStartDoctypeDeclHandler(r->xp, on_doctype);
	r->cur_dev = r->cur_def = -1;
	while (!done && !r->err) {
		n = fread(buf, 1, sizeof(buf), in);
		if (ferror(in))
			return fail(r, -EIO, "cannot read the XML: %s", strerror(errno));
		done = n < sizeof(buf) && feof(in);
		if (XML_Parse(r->xp, buf, (int)n, done) == XML_STATUS_ERROR && !r->err)
			fail(r, -EINVAL, "malformed XML: %s",
			     XML_ErrorString(XML_GetErrorCode(r->xp)));
	}
	XML_ParserFree(r->xp);
	r->xp = NULL;
	if (!r->err && !r->sb_done)
		return fail(r, -EINVAL, "no complete <superblock> in the XML");
	return r->err;
}

/* ---- devices: comments, names, sizes, overlaps ---- */

static int cmp_run_dev_vb(const void *a, const void *b)
{
	const struct rrun *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->vb < y->vb ? -1 : x->vb > y->vb;
}

static int cmp_name(const void *a, const void *b)
{
	const struct rdev *x = *(struct rdev *const *)a, *y = *(struct rdev *const *)b;
	int c = strcmp(x->set, y->set);

	return c ? c : strcmp(x->name, y->name);
}

static struct rsetc *find_cset(struct restore *r, const char *name)
{
	for (size_t i = 0; i < r->nr_csets; i++)
		if (!strcmp(r->csets[i].name, name))
			return &r->csets[i];
	return NULL;
}

static int prepare_devices(struct restore *r)
{
	struct rdev **byname;
	size_t i, k = 0;

	/* devices in id order (the runs' dev indices follow) */
	uint32_t *perm = malloc((r->nr_devs ? r->nr_devs : 1) * sizeof(*perm));
	if (!perm)
		return fail(r, -ENOMEM, "out of memory");
	for (i = 0; i < r->nr_devs; i++)
		r->devs[i].run0 = i; /* old index, for the permutation */
	sort_n(r->devs, r->nr_devs, sizeof(*r->devs), cmp_dev_id);
	for (i = 0; i < r->nr_devs; i++)
		perm[r->devs[i].run0] = (uint32_t)i;
	for (i = 0; i < r->nr_runs; i++)
		r->runs[i].dev = perm[r->runs[i].dev];
	free(perm);
	/* the comments */
	for (i = 0; i < r->nr_cdevs; i++) {
		struct rdev key = {.id = r->cdevs[i].id}, *d;
		d = search_n(&key, r->devs, r->nr_devs, sizeof(*d), cmp_dev_id);
		if (!d)
			return fail(r, -EINVAL,
				    "thinfs comment for device %llu, which has no <device>",
				    (unsigned long long)key.id);
		if (d->has_comment)
			return fail(r, -EINVAL, "two thinfs comments for device %llu",
				    (unsigned long long)key.id);
		struct rdev c = r->cdevs[i];
		c.mapped_attr = d->mapped_attr;
		c.creation_time = d->creation_time;
		c.snap_time = d->snap_time;
		*d = c;
	}
	/* runs per device, overlaps, sizes */
	sort_n(r->runs, r->nr_runs, sizeof(*r->runs), cmp_run_dev_vb);
	for (i = 0; i < r->nr_devs; i++) {
		struct rdev *d = &r->devs[i];
		uint64_t end = 0;
		d->run0 = k;
		while (k < r->nr_runs && r->runs[k].dev == i) {
			struct rrun *x = &r->runs[k];
			if (k > d->run0 && x->vb < end)
				return fail(r, -EINVAL, "device %llu maps vblock %llu twice",
					    (unsigned long long)d->id, (unsigned long long)x->vb);
			end = x->vb + x->len;
			d->nr_mapped += x->len;
			k++;
		}
		d->nr_runs = k - d->run0;
		if (d->nr_mapped != d->mapped_attr)
			return fail(
			    r, -EINVAL,
			    "device %llu: mapped_blocks says %llu but its mappings cover %llu",
			    (unsigned long long)d->id, (unsigned long long)d->mapped_attr,
			    (unsigned long long)d->nr_mapped);
		if (end > MAX_DEVICE_SIZE / r->block_size)
			return fail(r, -EFBIG, "device %llu maps past the largest device size",
				    (unsigned long long)d->id);
		if (!d->has_comment) {
			snprintf(d->name, sizeof(d->name), "dev%llu", (unsigned long long)d->id);
			d->mode = 0600;
			d->ctime = d->mtime = r->now;
		}
		if (!d->has_size) {
			d->size = end * r->block_size;
		} else if (d->size > MAX_DEVICE_SIZE / r->block_size * r->block_size) {
			return fail(r, -EFBIG, "device %llu: size %llu is too large",
				    (unsigned long long)d->id, (unsigned long long)d->size);
		} else if (div_round_up(d->size, r->block_size) < end) {
			return fail(r, -EINVAL, "device %llu maps vblock %llu beyond its size %llu",
				    (unsigned long long)d->id, (unsigned long long)(end - 1),
				    (unsigned long long)d->size);
		}
		if (pool_name_valid(d->name, NULL, 0))
			return fail(r, -EINVAL, "device %llu: invalid name '%s'",
				    (unsigned long long)d->id, d->name);
		if (d->set[0] && (pool_name_valid(d->set, NULL, 0) || !strcmp(d->set, DELETED_SET)))
			return fail(r, -EINVAL, "device %llu: invalid set name '%s'",
				    (unsigned long long)d->id, d->set);
		if (d->set[0] && !find_cset(r, d->set)) {
			if (GROW(r->csets, r->nr_csets, r->cap_csets))
				return fail(r, -ENOMEM, "out of memory");
			snprintf(r->csets[r->nr_csets].name, sizeof(r->csets[0].name), "%s",
				 d->set);
			r->csets[r->nr_csets++].ctime = r->now;
		}
	}
	/* (set, name) pairs are unique */
	byname = malloc((r->nr_devs ? r->nr_devs : 1) * sizeof(*byname));
	if (!byname)
		return fail(r, -ENOMEM, "out of memory");
	for (i = 0; i < r->nr_devs; i++)
		byname[i] = &r->devs[i];
	sort_n(byname, r->nr_devs, sizeof(*byname), cmp_name);
	for (i = 1; i < r->nr_devs; i++) {
		if (!cmp_name(&byname[i - 1], &byname[i])) {
			fail(r, -EINVAL, "devices %llu and %llu are both named '%s%s%s'",
			     (unsigned long long)byname[i - 1]->id,
			     (unsigned long long)byname[i]->id, byname[i]->set,
			     byname[i]->set[0] ? "/" : "", byname[i]->name);
			break;
		}
	}
	free(byname);
	return r->err;
}

/* ---- sharing sets ---- */

static size_t hash_set(const uint32_t *m, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++) {
		h ^= m[i];
		h *= 1099511628211ull;
	}
	return (size_t)(h ^ (h >> 29));
}

static int rehash(struct restore *r)
{
	size_t cap = r->hash_cap ? r->hash_cap * 2 : 1024;
	size_t *t = calloc(cap, sizeof(*t));

	if (!t)
		return -ENOMEM;
	for (size_t s = 0; s < r->nr_sets; s++) {
		size_t h = hash_set(r->members + r->set_off[s], r->set_len[s]) & (cap - 1);
		while (t[h])
			h = (h + 1) & (cap - 1);
		t[h] = s + 1;
	}
	free(r->set_hash);
	r->set_hash = t;
	r->hash_cap = cap;
	return 0;
}

/* The index of the set m[0..n) (sorted), added if new. */
static int intern_set(struct restore *r, const uint32_t *m, size_t n, uint32_t *out)
{
	size_t h;

	if ((r->nr_sets + 1) * 2 > r->hash_cap && rehash(r))
		return -ENOMEM;
	h = hash_set(m, n) & (r->hash_cap - 1);
	while (r->set_hash[h]) {
		size_t s = r->set_hash[h] - 1;
		if (r->set_len[s] == n && !memcmp(r->members + r->set_off[s], m, n * sizeof(*m))) {
			*out = (uint32_t)s;
			return 0;
		}
		h = (h + 1) & (r->hash_cap - 1);
	}
	if (r->nr_sets >= UINT32_MAX - 1 ||
	    grow((void **)&r->members, &r->cap_members, r->nr_members + n, sizeof(*m)) ||
	    grow((void **)&r->set_off, &r->cap_sets, r->nr_sets + 1, sizeof(size_t)))
		return -ENOMEM;
	/* set_len shares cap_sets: keep it as large as set_off */
	size_t *nl = realloc(r->set_len, r->cap_sets * sizeof(size_t));
	if (!nl)
		return -ENOMEM;
	r->set_len = nl;
	memcpy(r->members + r->nr_members, m, n * sizeof(*m));
	r->set_off[r->nr_sets] = r->nr_members;
	r->set_len[r->nr_sets] = n;
	r->nr_members += n;
	r->set_hash[h] = r->nr_sets + 1;
	*out = (uint32_t)r->nr_sets++;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_run_db(const void *a, const void *b)
{
	const struct rrun *x = *(struct rrun *const *)a, *y = *(struct rrun *const *)b;

	return x->db < y->db ? -1 : x->db > y->db;
}

/* Sweep the runs in dblock order: the row runs, each with its set. */
static int sweep_blocks(struct restore *r)
{
	struct rrun **idx = malloc((r->nr_runs ? r->nr_runs : 1) * sizeof(*idx));
	struct rrun **act = malloc((r->nr_devs ? r->nr_devs : 1) * sizeof(*act) + sizeof(*act));
	uint32_t *devs = malloc((r->nr_devs ? r->nr_devs : 1) * sizeof(*devs));
	size_t i = 0, na = 0;
	uint64_t p = 0;
	int rc = 0;

	if (!idx || !act || !devs) {
		rc = fail(r, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < r->nr_runs; k++)
		idx[k] = &r->runs[k];
	sort_n(idx, r->nr_runs, sizeof(*idx), cmp_run_db);
	while (i < r->nr_runs || na) {
		uint64_t next = UINT64_MAX;
		if (!na && i < r->nr_runs)
			p = idx[i]->db; // NOLINT(clang-analyzer-core.NullDereference)
		/* idx[0..nr_runs) is filled above: the analyzer loses track */
		while (i < r->nr_runs &&
		       idx[i]->db == p) { // NOLINT(clang-analyzer-core.NullDereference)
			if (na >= r->nr_devs) {
				rc = fail(r, -EINVAL,
					  "data block %llu is mapped twice by one device",
					  (unsigned long long)p);
				goto out;
			}
			act[na++] = idx[i++];
		}
		if (!na)
			break; /* cannot happen: a run starts at p */
		if (i < r->nr_runs)
			next = idx[i]->db;
		for (size_t a = 0; a < na; a++)
			if (act[a]->db + act[a]->len < next)
				next = act[a]->db + act[a]->len;
		/* [p, next): every active run maps it; all alike? */
		struct rrun *f = act[0];
		uint64_t vb = f->vb + (p - f->db);
		for (size_t a = 0; a < na; a++) {
			struct rrun *x = act[a];
			uint64_t xvb = x->vb + (p - x->db);
			devs[a] = x->dev;
			if (a && xvb != vb) {
				rc = fail(
				    r, -EINVAL,
				    "data block %llu is mapped at vblock %llu by device %llu and "
				    "at vblock %llu by device %llu: thinfs shares a block only "
				    "at one vblock",
				    (unsigned long long)p, (unsigned long long)vb,
				    (unsigned long long)r->devs[f->dev].id, (unsigned long long)xvb,
				    (unsigned long long)r->devs[x->dev].id);
				goto out;
			}
			if (a && x->time != f->time) {
				rc = fail(r, -EINVAL,
					  "data block %llu is shared by devices %llu and %llu with "
					  "different times (%llu, %llu)",
					  (unsigned long long)p,
					  (unsigned long long)r->devs[f->dev].id,
					  (unsigned long long)r->devs[x->dev].id,
					  (unsigned long long)f->time, (unsigned long long)x->time);
				goto out;
			}
		}
		sort_n(devs, na, sizeof(*devs), cmp_u32);
		for (size_t a = 1; a < na; a++) {
			if (devs[a] == devs[a - 1]) {
				rc = fail(
				    r, -EINVAL, "data block %llu is mapped twice by device %llu",
				    (unsigned long long)p, (unsigned long long)r->devs[devs[a]].id);
				goto out;
			}
		}
		uint32_t set;
		if (intern_set(r, devs, na, &set) || GROW(r->rr, r->nr_rr, r->cap_rr)) {
			rc = fail(r, -ENOMEM, "out of memory");
			goto out;
		}
		r->rr[r->nr_rr++] = (struct rowrun){set, vb, p, next - p, f->time};
		p = next;
		size_t keep = 0;
		for (size_t a = 0; a < na; a++)
			if (act[a]->db + act[a]->len > p)
				act[keep++] = act[a];
		na = keep;
	}
out:
	free(idx);
	free(act);
	free(devs);
	return rc;
}

/* ---- the tree ---- */

static int alloc_nodes(struct restore *r, size_t nr_interior)
{
	r->nr_interior = nr_interior;
	r->nr_nodes = nr_interior + r->nr_devs;
	r->nodes = calloc(r->nr_nodes ? r->nr_nodes : 1, sizeof(*r->nodes));
	if (!r->nodes)
		return fail(r, -ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nr_nodes; i++) {
		r->nodes[i].parent = NO_NODE;
		r->nodes[i].dev = i >= nr_interior ? (int32_t)(i - nr_interior) : -1;
	}
	return 0;
}

static int32_t leaf_of(struct restore *r, uint32_t dev)
{
	return (int32_t)(r->nr_interior + dev);
}

static int cmp_rlayer(const void *a, const void *b)
{
	const struct rlayer *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static int32_t clayer_node(struct restore *r, uint64_t id)
{
	struct rlayer key = {.id = id}, *l;

	l = search_n(&key, r->clayers, r->nr_clayers, sizeof(key), cmp_rlayer);
	return l ? (int32_t)(l - r->clayers) : NO_NODE;
}

/* The tree given by a thinfs dump's comments. */
static int tree_from_comments(struct restore *r)
{
	sort_n(r->clayers, r->nr_clayers, sizeof(*r->clayers), cmp_rlayer);
	for (size_t i = 1; i < r->nr_clayers; i++)
		if (r->clayers[i].id == r->clayers[i - 1].id)
			return fail(r, -EINVAL, "thinfs layer %llu appears twice",
				    (unsigned long long)r->clayers[i].id);
	if (r->nr_clayers > (size_t)INT32_MAX - r->nr_devs || alloc_nodes(r, r->nr_clayers))
		return fail(r, -ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nr_clayers; i++) {
		if (!r->clayers[i].parent)
			continue;
		r->nodes[i].parent = clayer_node(r, r->clayers[i].parent);
		if (r->nodes[i].parent == NO_NODE)
			return fail(r, -EINVAL, "thinfs layer %llu has unknown parent %llu",
				    (unsigned long long)r->clayers[i].id,
				    (unsigned long long)r->clayers[i].parent);
	}
	for (size_t i = 0; i < r->nr_devs; i++) {
		struct rdev *d = &r->devs[i];
		if (!d->has_parent_layer)
			return fail(r, -EINVAL, "device %llu has no parent_layer in its comment",
				    (unsigned long long)d->id);
		if (!d->parent_layer)
			continue;
		r->nodes[leaf_of(r, (uint32_t)i)].parent = clayer_node(r, d->parent_layer);
		if (r->nodes[leaf_of(r, (uint32_t)i)].parent == NO_NODE)
			return fail(r, -EINVAL, "device %llu: unknown parent_layer %llu",
				    (unsigned long long)d->id, (unsigned long long)d->parent_layer);
	}
	return 0;
}

/* members of set s */
#define SET_M(r, s) ((r)->members + (r)->set_off[s])

/* Sorted arrays: is a a subset of b?  do they intersect? */
static bool subset(const uint32_t *a, size_t na, const uint32_t *b, size_t nb)
{
	size_t i = 0, j = 0;

	while (i < na && j < nb) {
		if (a[i] == b[j])
			i++, j++;
		else if (a[i] > b[j])
			j++;
		else
			return false;
	}
	return i == na;
}

static bool intersect(const uint32_t *a, size_t na, const uint32_t *b, size_t nb)
{
	size_t i = 0, j = 0;

	while (i < na && j < nb) {
		if (a[i] == b[j])
			return true;
		if (a[i] < b[j])
			i++;
		else
			j++;
	}
	return false;
}

struct cluster {
	uint32_t *m;
	size_t n;
};

static bool overlap(const struct cluster *a, const struct cluster *b)
{
	return intersect(a->m, a->n, b->m, b->n) && !subset(a->m, a->n, b->m, b->n) &&
	       !subset(b->m, b->n, a->m, a->n);
}

struct cand {
	uint32_t set;
	bool competing;
	uint64_t blocks;
};

static int cmp_cand(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->competing != y->competing)
		return x->competing ? -1 : 1;
	if (x->blocks != y->blocks)
		return x->blocks > y->blocks ? -1 : 1;
	return x->set < y->set ? -1 : x->set > y->set;
}

static int cmp_rr_vb(const void *a, const void *b)
{
	const struct rowrun *x = *(struct rowrun *const *)a, *y = *(struct rowrun *const *)b;

	return x->vb < y->vb ? -1 : x->vb > y->vb;
}

/* Mark the sets that share a vblock with another set of >= 2 devices. */
static int find_competing(struct restore *r, struct cand *c, const uint32_t *cand_of)
{
	struct rowrun **v = malloc((r->nr_rr ? r->nr_rr : 1) * sizeof(*v));
	struct rowrun **act = malloc((r->nr_rr ? r->nr_rr : 1) * sizeof(*act));
	size_t n = 0, na = 0;

	if (!v || !act) {
		free(v);
		free(act);
		return -ENOMEM;
	}
	for (size_t i = 0; i < r->nr_rr; i++)
		if (r->set_len[r->rr[i].set] >= 2)
			v[n++] = &r->rr[i];
	sort_n(v, n, sizeof(*v), cmp_rr_vb);
	for (size_t i = 0; i < n; i++) {
		size_t keep = 0;
		for (size_t a = 0; a < na; a++)
			if (act[a]->vb + act[a]->len > v[i]->vb)
				act[keep++] = act[a];
		na = keep;
		for (size_t a = 0; a < na; a++) {
			if (act[a]->set != v[i]->set) {
				c[cand_of[act[a]->set]].competing = true;
				c[cand_of[v[i]->set]].competing = true;
			}
		}
		act[na++] = v[i];
	}
	free(v);
	free(act);
	return 0;
}

static int cmp_cluster_size(const void *a, const void *b)
{
	const struct cluster *x = a, *y = b;

	return x->n < y->n ? -1 : x->n > y->n;
}

/* The tree derived from the sharing sets (see the top of the file). */
static int tree_from_sets(struct restore *r)
{
	struct cand *c = NULL;
	uint32_t *cand_of = NULL;
	struct cluster *h = NULL;
	size_t nc = 0, nh = 0, cap_h = 0;
	int rc = -ENOMEM;

	cand_of = malloc((r->nr_sets ? r->nr_sets : 1) * sizeof(*cand_of));
	c = calloc(r->nr_sets ? r->nr_sets : 1, sizeof(*c));
	if (!cand_of || !c)
		goto out;
	for (size_t s = 0; s < r->nr_sets; s++) {
		cand_of[s] = UINT32_MAX;
		if (r->set_len[s] >= 2) {
			cand_of[s] = (uint32_t)nc;
			c[nc++].set = (uint32_t)s;
		}
	}
	for (size_t i = 0; i < r->nr_rr; i++)
		if (cand_of[r->rr[i].set] != UINT32_MAX)
			c[cand_of[r->rr[i].set]].blocks += r->rr[i].len;
	if (find_competing(r, c, cand_of))
		goto out;
	sort_n(c, nc, sizeof(*c), cmp_cand);
	/* choose the sets that overlap no chosen one */
	for (size_t i = 0; i < nc; i++) {
		struct cluster s = {SET_M(r, c[i].set), r->set_len[c[i].set]};
		bool ok = true;
		for (size_t k = 0; k < nh && ok; k++)
			ok = !overlap(&s, &h[k]);
		if (!ok)
			continue;
		if (grow((void **)&h, &cap_h, nh + 1, sizeof(*h)))
			goto out;
		h[nh].m = malloc(s.n * sizeof(*s.m));
		if (!h[nh].m)
			goto out;
		memcpy(h[nh].m, s.m, s.n * sizeof(*s.m));
		h[nh++].n = s.n;
	}
	/* every other set needs a cluster holding it: the union of what it overlaps */
	for (size_t i = 0; i < nc; i++) {
		struct cluster u = {NULL, 0};
		const uint32_t *sm = SET_M(r, c[i].set);
		size_t sn = r->set_len[c[i].set];
		bool covered = false, changed = true;
		for (size_t k = 0; k < nh && !covered; k++)
			covered = subset(sm, sn, h[k].m, h[k].n);
		if (covered)
			continue;
		u.m = malloc(r->nr_devs * sizeof(*u.m));
		if (!u.m)
			goto out;
		memcpy(u.m, sm, sn * sizeof(*sm));
		u.n = sn;
		while (changed) {
			changed = false;
			for (size_t k = 0; k < nh; k++) {
				if (!overlap(&u, &h[k]))
					continue;
				/* u |= h[k] (sorted merge in place via a copy) */
				uint32_t *tmp = malloc((u.n + h[k].n) * sizeof(*tmp));
				size_t a = 0, b = 0, o = 0;
				if (!tmp) {
					free(u.m);
					goto out;
				}
				while (a < u.n || b < h[k].n) {
					if (b >= h[k].n || (a < u.n && u.m[a] < h[k].m[b]))
						tmp[o++] = u.m[a++];
					else if (a >= u.n || h[k].m[b] < u.m[a])
						tmp[o++] = h[k].m[b++];
					else {
						tmp[o++] = u.m[a++];
						b++;
					}
				}
				memcpy(u.m, tmp, o * sizeof(*tmp));
				u.n = o;
				free(tmp);
				changed = true;
			}
		}
		if (grow((void **)&h, &cap_h, nh + 1, sizeof(*h))) {
			free(u.m);
			goto out;
		}
		h[nh++] = u;
	}
	/* the tree: clusters by size; each one's parent is the next larger
	 * cluster holding any of its devices (the chain through a device) */
	sort_n(h, nh, sizeof(*h), cmp_cluster_size);
	if (nh > (size_t)INT32_MAX - r->nr_devs || alloc_nodes(r, nh))
		goto out;
	for (uint32_t d = 0; d < r->nr_devs; d++) {
		int32_t below = leaf_of(r, d);
		for (size_t k = 0; k < nh; k++) {
			if (!search_n(&d, h[k].m, h[k].n, sizeof(d), cmp_u32))
				continue;
			/* sorted by size, so chain grows upwards */
			r->nodes[below].parent = (int32_t)k;
			below = (int32_t)k;
		}
	}
	rc = 0;
out:
	for (size_t k = 0; k < nh; k++)
		free(h[k].m);
	free(h);
	free(c);
	free(cand_of);
	if (rc)
		return fail(r, rc, "out of memory");
	return 0;
}

/* Depths, child counts, preorder times; refuse cycles and thin layers. */
static int finish_tree(struct restore *r)
{
	int32_t *first = NULL, *next = NULL, *stack = NULL;
	size_t n = r->nr_nodes, sp = 0;
	uint32_t clock = 0;
	int rc = 0;

	first = malloc((n ? n : 1) * sizeof(*first));
	next = malloc((n ? n : 1) * sizeof(*next));
	stack = malloc((n ? 2 * n : 1) * sizeof(*stack)); /* nodes + path markers */
	if (!first || !next || !stack) {
		rc = fail(r, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		first[i] = NO_NODE;
	for (size_t i = n; i-- > 0;) {
		int32_t p = r->nodes[i].parent;
		if (p == NO_NODE)
			continue;
		if (r->nodes[p].dev >= 0) {
			rc = fail(r, -EINVAL, "a device's leaf layer has children");
			goto out;
		}
		next[i] = first[p];
		first[p] = (int32_t)i;
		r->nodes[p].nr_children++;
	}
	for (size_t i = n; i-- > 0;)
		if (r->nodes[i].parent == NO_NODE)
			stack[sp++] = (int32_t)i;
	while (sp) {
		int32_t x = stack[--sp];
		if (x < 0) {
			r->nodes[-x - 2].tout = clock;
			continue;
		}
		r->nodes[x].tin = clock++;
		if (r->nodes[x].parent != NO_NODE)
			r->nodes[x].depth = r->nodes[r->nodes[x].parent].depth + 1;
		stack[sp++] = -x - 2;
		for (int32_t ch = first[x]; ch != NO_NODE; ch = next[ch])
			stack[sp++] = ch;
	}
	if (clock != n) {
		rc = fail(r, -EINVAL, "the thinfs layer comments make a cycle");
		goto out;
	}
	for (size_t i = 0; i < r->nr_interior; i++) {
		if (r->nodes[i].nr_children < 2) {
			rc =
			    fail(r, -EINVAL, "thinfs layer %zu has fewer than two children", i + 1);
			goto out;
		}
	}
out:
	free(first);
	free(next);
	free(stack);
	return rc;
}

static int32_t lca(struct restore *r, int32_t a, int32_t b)
{
	while (r->nodes[a].depth > r->nodes[b].depth)
		a = r->nodes[a].parent;
	while (r->nodes[b].depth > r->nodes[a].depth)
		b = r->nodes[b].parent;
	while (a != b) {
		a = r->nodes[a].parent;
		b = r->nodes[b].parent;
		if (a == NO_NODE || b == NO_NODE)
			return NO_NODE;
	}
	return a;
}

static int place_sets(struct restore *r)
{
	r->set_node = malloc((r->nr_sets ? r->nr_sets : 1) * sizeof(*r->set_node));
	if (!r->set_node)
		return fail(r, -ENOMEM, "out of memory");
	for (size_t s = 0; s < r->nr_sets; s++) {
		const uint32_t *m = SET_M(r, s);
		int32_t x = leaf_of(r, m[0]);
		for (size_t i = 1; i < r->set_len[s] && x != NO_NODE; i++)
			x = lca(r, x, leaf_of(r, m[i]));
		if (x == NO_NODE)
			return fail(r, -EINVAL,
				    "devices %llu and %llu share blocks but have no common layer",
				    (unsigned long long)r->devs[m[0]].id,
				    (unsigned long long)r->devs[m[r->set_len[s] - 1]].id);
		r->set_node[s] = x;
	}
	return 0;
}

/* The row run holding data block db (rr is in dblock order). */
static const struct rowrun *rr_of_db(struct restore *r, uint64_t db)
{
	size_t lo = 0, hi = r->nr_rr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r->rr[mid].db + r->rr[mid].len <= db)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < r->nr_rr && r->rr[lo].db <= db ? &r->rr[lo] : NULL;
}

static int add_tombs(struct restore *r, uint32_t dev, uint64_t vb, uint64_t n)
{
	if (grow((void **)&r->tombs, &r->cap_tombs, r->nr_tombs + n, sizeof(*r->tombs)))
		return fail(r, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < n; i++)
		r->tombs[r->nr_tombs++] = (struct tomb){dev, vb + i};
	return 0;
}

/* Device e (below the row run's layer, not in its set) must not see it. */
static int hide_from(struct restore *r, uint32_t e, const struct rowrun *x, int32_t layer)
{
	struct rdev *d = &r->devs[e];
	struct rrun *runs = r->runs + d->run0;
	size_t lo = 0, hi = d->nr_runs;
	uint64_t v = x->vb, end = x->vb + x->len;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (runs[mid].vb + runs[mid].len <= v)
			lo = mid + 1;
		else
			hi = mid;
	}
	while (v < end) {
		if (lo < d->nr_runs && runs[lo].vb <= v) {
			uint64_t re = runs[lo].vb + runs[lo].len, pe = re < end ? re : end;
			/* its own blocks there must sit strictly below `layer` */
			for (uint64_t db = runs[lo].db + (v - runs[lo].vb);
			     db < runs[lo].db + (pe - runs[lo].vb);) {
				const struct rowrun *o = rr_of_db(r, db);
				if (!o ||
				    r->nodes[r->set_node[o->set]].depth <= r->nodes[layer].depth) {
					uint64_t at = runs[lo].vb + (db - runs[lo].db);
					uint64_t other = x->db + (at - x->vb);
					return fail(
					    r, -EINVAL,
					    "cannot represent the sharing: device %llu maps "
					    "vblock %llu to data block %llu, but would see data "
					    "block %llu there through a layer it shares",
					    (unsigned long long)d->id, (unsigned long long)at,
					    (unsigned long long)db, (unsigned long long)other);
				}
				db = o->db + o->len;
			}
			v = pe;
			if (pe == re)
				lo++;
		} else {
			uint64_t ge = lo < d->nr_runs && runs[lo].vb < end ? runs[lo].vb : end;
			if (add_tombs(r, e, v, ge - v))
				return r->err;
			v = ge;
		}
	}
	return 0;
}

static int cmp_tomb(const void *a, const void *b)
{
	const struct tomb *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->vb < y->vb ? -1 : x->vb > y->vb;
}

static int cmp_tin(const void *a, const void *b, void *arg)
{
	struct restore *r = arg;
	uint32_t x = r->nodes[leaf_of(r, *(const uint32_t *)a)].tin;
	uint32_t y = r->nodes[leaf_of(r, *(const uint32_t *)b)].tin;

	return x < y ? -1 : x > y;
}

/* Every device below a row's layer and outside its set gets it hidden. */
static int plan_hiding(struct restore *r)
{
	uint32_t *by_tin = malloc((r->nr_devs ? r->nr_devs : 1) * sizeof(*by_tin));
	uint8_t *in_set = calloc(r->nr_devs ? r->nr_devs : 1, 1);
	int rc = 0;

	if (!by_tin || !in_set) {
		rc = fail(r, -ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < r->nr_devs; i++)
		by_tin[i] = i;
	qsort_r(by_tin, r->nr_devs, sizeof(*by_tin), cmp_tin, r);
	for (size_t i = 0; i < r->nr_rr && !rc; i++) {
		const struct rowrun *x = &r->rr[i];
		int32_t layer = r->set_node[x->set];
		const uint32_t *m = SET_M(r, x->set);
		struct tnode *t = &r->nodes[layer];
		if (t->dev >= 0)
			continue;
		/* devices whose leaf lies in [tin, tout) */
		size_t lo = 0, hi = r->nr_devs;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (r->nodes[leaf_of(r, by_tin[mid])].tin < t->tin)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (size_t k = 0; k < r->set_len[x->set]; k++)
			in_set[m[k]] = 1;
		for (; lo < r->nr_devs && r->nodes[leaf_of(r, by_tin[lo])].tin < t->tout && !rc;
		     lo++)
			if (!in_set[by_tin[lo]])
				rc = hide_from(r, by_tin[lo], x, layer);
		for (size_t k = 0; k < r->set_len[x->set]; k++)
			in_set[m[k]] = 0;
	}
	if (!rc && r->nr_tombs) {
		size_t o = 1;
		sort_n(r->tombs, r->nr_tombs, sizeof(*r->tombs), cmp_tomb);
		for (size_t i = 1; i < r->nr_tombs; i++)
			if (cmp_tomb(&r->tombs[i], &r->tombs[o - 1]))
				r->tombs[o++] = r->tombs[i];
		r->nr_tombs = o;
	}
out:
	free(by_tin);
	free(in_set);
	return rc;
}

/* ---- writing the pool ---- */

struct made {
	char *dir_path, *meta_path, *data_path, *lock_path;
	bool dir_created, data_created, pool_made, lock_existed, marker_made;
	const char *adopted; /* the adopted image (never removed) */
};

static void remove_made(struct made *mk)
{
	char *side;

	if (mk->pool_made) {
		unlink(mk->meta_path);
		if (asprintf(&side, "%s-wal", mk->meta_path) >= 0) {
			unlink(side);
			free(side);
		}
		if (asprintf(&side, "%s-shm", mk->meta_path) >= 0) {
			unlink(side);
			free(side);
		}
	}
	if (!mk->lock_existed && mk->lock_path)
		unlink(mk->lock_path);
	if (mk->marker_made) {
		if (asprintf(&side, "%s/needs_check", mk->dir_path) >= 0) {
			unlink(side);
			free(side);
		}
	}
	if (mk->data_created)
		unlink(mk->data_path);
	if (mk->adopted)
		removexattr(mk->adopted, META_UUID_XATTR);
	if (mk->dir_created)
		rmdir(mk->dir_path);
}

/* Create the pool's files (empty metadata): format, or adopt an image. */
static int make_pool(struct restore *r, const char *dir, const char *adopt, struct made *mk)
{
	struct stat sb;
	int rc;

	if (asprintf(&mk->meta_path, "%s/meta.db", dir) < 0 ||
	    asprintf(&mk->lock_path, "%s/lock", dir) < 0 ||
	    asprintf(&mk->data_path, "%s/data", dir) < 0 || !(mk->dir_path = strdup(dir)))
		return fail(r, -ENOMEM, "out of memory");
	mk->lock_existed = lstat(mk->lock_path, &sb) == 0;
	if (lstat(mk->meta_path, &sb) == 0)
		return fail(r, -EEXIST, "%s already holds a pool (restore makes a new one)", dir);
	mk->dir_created = stat(dir, &sb) < 0;
	if (!adopt) {
		struct pool_format_opts o = {.block_size = r->block_size,
					     .data_size = r->nr_data_blocks * r->block_size};
		if (lstat(mk->data_path, &sb) == 0)
			return fail(r, -EEXIST,
				    "%s exists (to keep a data image, restore with --data)",
				    mk->data_path);
		rc = pool_format(dir, &o, r->msg, r->msglen);
		if (rc) {
			r->err = rc;
			return rc;
		}
		mk->pool_made = mk->data_created = true;
		return 0;
	}
	/* adopt: the image keeps its content, so no pool_format (it empties it) */
	char real[PATH_MAX], meta_real[PATH_MAX];
	struct dio *d;
	uint64_t size, need = r->nr_data_blocks * r->block_size;
	if (stat(adopt, &sb) < 0)
		return fail(r, -errno, "data %s: %s", adopt, strerror(errno));
	if (!S_ISREG(sb.st_mode) && !S_ISBLK(sb.st_mode))
		return fail(r, -EINVAL, "data %s is not a regular file or block device", adopt);
	if (!realpath(adopt, real))
		return fail(r, -errno, "data %s: %s", adopt, strerror(errno));
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return fail(r, -errno, "cannot create %s: %s", dir, strerror(errno));
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode))
		return fail(r, -ENOTDIR, "%s is not a directory", dir);
	if (sb.st_mode & (S_IWGRP | S_IWOTH))
		return fail(r, -EPERM, "%s is writable by group or others; refusing (chmod go-w)",
			    dir);
	if (realpath(dir, meta_real)) {
		char mdb[PATH_MAX + 16];
		snprintf(mdb, sizeof(mdb), "%s/meta.db", meta_real);
		if (!strncmp(real, mdb, strlen(mdb)))
			return fail(r, -EINVAL, "data path %s is the metadata database", adopt);
	}
	rc = dio_open(adopt, false, &d, r->msg, r->msglen);
	if (rc) {
		r->err = rc;
		return rc;
	}
	rc = dio_size(d, &size);
	if (!rc && size < need)
		rc = dio_is_blockdev(d) ? -ENOSPC : dio_grow(d, need);
	dio_close(d);
	if (rc)
		return fail(r, rc, "data %s holds %llu bytes, %llu needed: %s", adopt,
			    (unsigned long long)size, (unsigned long long)need,
			    rc == -ENOSPC ? "too small" : strerror(-rc));
	struct meta_pool_row row = {
	    .block_size = r->block_size, .nr_data_blocks = r->nr_data_blocks, .created = r->now};
	util_uuid(row.uuid);
	snprintf(row.data_path, sizeof(row.data_path), "%s", real);
	rc = meta_create(mk->meta_path, &row, r->msg, r->msglen);
	if (rc) {
		r->err = rc;
		return rc;
	}
	mk->pool_made = true;
	mk->adopted = adopt;
	return 0;
}

static int write_rows(struct restore *r, struct meta *m, struct space *sp)
{
	int rc = 0;

	for (size_t i = 0; i < r->nr_rr && !rc; i++) {
		const struct rowrun *x = &r->rr[i];
		struct tnode *t = &r->nodes[r->set_node[x->set]];
		for (uint64_t k = 0; k < x->len && !rc; k++) {
			rc = meta_map_put(m, t->layer_id, x->vb + k, x->db + k, x->time);
			space_set_used(sp, x->db + k);
		}
		t->nr_rows += x->len;
	}
	for (size_t i = 0; i < r->nr_tombs && !rc; i++) {
		struct tnode *t = &r->nodes[leaf_of(r, r->tombs[i].dev)];
		rc = meta_map_put(m, t->layer_id, r->tombs[i].vb, META_TOMBSTONE, r->time);
		t->nr_rows++;
	}
	return rc;
}

static int cmp_depth(const void *a, const void *b, void *arg)
{
	struct restore *r = arg;
	uint32_t x = r->nodes[*(const uint32_t *)a].depth, y = r->nodes[*(const uint32_t *)b].depth;

	return x < y ? -1 : x > y;
}

static pool_crash_hook restore_hook;
static void *restore_hook_arg;

void pool_test_set_restore_hook(pool_crash_hook hook, void *arg)
{
	restore_hook = hook;
	restore_hook_arg = arg;
}

static int restore_point(const char *point)
{
	return restore_hook ? restore_hook(restore_hook_arg, point) : 0;
}

/*
 * While a restore runs, POOL/needs_check says so: a crash before the end
 * leaves a pool that opens read-only with the reason, never one that looks
 * complete (meta_create's first row is a clean, empty pool).
 */
static int restore_marker(struct made *mk, bool on)
{
	char *path = NULL;
	int rc = 0;

	if (asprintf(&path, "%s/needs_check", mk->dir_path) < 0)
		return -ENOMEM;
	if (on) {
		static const char why[] = "restore did not finish: restore again\n";
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 || write(fd, why, sizeof(why) - 1) != (ssize_t)(sizeof(why) - 1) ||
		    fsync(fd) < 0)
			rc = -errno;
		if (fd >= 0)
			close(fd);
		mk->marker_made = !rc;
	} else if (unlink(path) < 0 && errno != ENOENT) {
		rc = -errno;
	}
	if (!rc)
		rc = util_fsync_dir(mk->dir_path);
	free(path);
	return rc;
}

static int write_meta(struct restore *r, struct made *mk)
{
	struct meta *m = NULL;
	struct space sp = {0};
	struct meta_pool_row prow;
	uint32_t *order = NULL;
	uint64_t *from = NULL, *to = NULL;
	size_t nr_renum = 0;
	int rc;

	rc = meta_open(mk->meta_path, false, &m, r->msg, r->msglen);
	if (rc)
		return r->err = rc;
	order = malloc((r->nr_nodes ? r->nr_nodes : 1) * sizeof(*order));
	from = malloc((r->nr_devs ? r->nr_devs : 1) * sizeof(*from));
	to = malloc((r->nr_devs ? r->nr_devs : 1) * sizeof(*to));
	rc = order && from && to ? space_init(&sp, r->nr_data_blocks) : -ENOMEM;
	if (!rc)
		rc = meta_begin(m);
	if (rc)
		goto out;
	/* layers, parents first */
	for (uint32_t i = 0; i < r->nr_nodes; i++)
		order[i] = i;
	qsort_r(order, r->nr_nodes, sizeof(*order), cmp_depth, r);
	for (size_t i = 0; i < r->nr_nodes && !rc; i++) {
		struct tnode *t = &r->nodes[order[i]];
		rc = meta_layer_insert(m, t->parent == NO_NODE ? 0 : r->nodes[t->parent].layer_id,
				       &t->layer_id);
	}
	if (!rc)
		rc = write_rows(r, m, &sp);
	for (size_t i = 0; i < r->nr_nodes && !rc; i++) {
		struct tnode *t = &r->nodes[i];
		struct meta_layer_row lr = {
		    .id = t->layer_id,
		    .parent = t->parent == NO_NODE ? 0 : r->nodes[t->parent].layer_id,
		    .nr_rows = t->nr_rows,
		};
		rc = meta_layer_update(m, &lr);
	}
	for (size_t i = 0; i < r->nr_csets && !rc; i++) {
		struct meta_set_row sr = {.ctime = r->csets[i].ctime};
		snprintf(sr.name, sizeof(sr.name), "%s", r->csets[i].name);
		rc = meta_set_insert(m, &sr);
	}
	/* devices in id order; meta numbers them, renumbered below */
	for (size_t i = 0; i < r->nr_devs && !rc; i++) {
		struct rdev *d = &r->devs[i];
		struct meta_device_row dr = {0};
		snprintf(dr.set, sizeof(dr.set), "%s", d->set);
		snprintf(dr.name, sizeof(dr.name), "%s", d->name);
		dr.size = d->size;
		dr.layer = r->nodes[leaf_of(r, (uint32_t)i)].layer_id;
		dr.origin = d->origin;
		dr.creation_time = d->creation_time;
		dr.snap_time = d->snap_time;
		dr.ctime = d->ctime;
		dr.mtime = d->mtime;
		dr.read_only = d->read_only;
		dr.uid = d->uid;
		dr.gid = d->gid;
		dr.mode = d->mode;
		dr.mapped = d->nr_mapped;
		rc = meta_device_insert(m, &dr);
		if (!rc && dr.id != d->id) {
			from[nr_renum] = dr.id;
			to[nr_renum++] = d->id;
		}
	}
	/* the ids the dump gave, in the same transaction: a crash never leaves
	 * a pool with the wrong ones */
	if (!rc && nr_renum)
		rc = meta_device_renumber(m, from, to, nr_renum);
	if (!rc)
		rc = space_save(&sp, m);
	if (!rc)
		rc = meta_pool_get(m, &prow);
	if (!rc) {
		if (r->uuid[0])
			snprintf(prow.uuid, sizeof(prow.uuid), "%s", r->uuid);
		else
			snprintf(r->uuid, sizeof(r->uuid), "%s", prow.uuid);
		prow.transaction_id = r->transaction;
		prow.pool_time = r->time;
		/* unclean until finish_pool has punched an adopted image's free
		 * blocks: after a crash before that, the first open scrubs them */
		prow.clean = 0;
		rc = meta_pool_put(m, &prow);
	}
	if (!rc)
		rc = meta_commit(m);
	if (rc) {
		set_msg(r->msg, r->msglen, rc, "cannot write the metadata: %s", meta_errmsg(m));
		r->err = rc;
		meta_rollback(m);
	}
out:
	meta_close(m);
	space_destroy(&sp);
	free(order);
	free(from);
	free(to);
	if (rc && !r->err)
		fail(r, rc, "cannot write the metadata: %s", strerror(-rc));
	return rc;
}

/* The new pool must check clean; then an adopted image loses its free blocks. */
static int finish_pool(struct restore *r, struct made *mk)
{
	const char *data = mk->adopted ? mk->adopted : mk->data_path;
	char *report = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	/* as pool_format: where user xattrs are not supported, no label */
	setxattr(data, META_UUID_XATTR, r->uuid, strlen(r->uuid), 0);
	f = open_memstream(&report, &len);
	if (!f)
		return fail(r, -ENOMEM, "out of memory");
	rc = pool_check(mk->dir_path, false, f, r->msg, r->msglen);
	fclose(f);
	if (rc < 0) {
		r->err = rc;
	} else if (rc != CHECK_CLEAN || len) {
		report[strcspn(report, "\n")] = 0;
		rc = fail(r, -EUCLEAN, "the restored pool fails its check: %s", report);
	}
	free(report);
	if (rc || !mk->adopted)
		return rc;
	/* free blocks of an adopted image read zeros from now on */
	struct dio *d = NULL;
	struct pool *pool;
	rc = pool_open(mk->dir_path, POOL_OPEN_RDONLY, NULL, &pool, r->msg, r->msglen);
	if (rc)
		return r->err = rc;
	rc = dio_open(data, false, &d, r->msg, r->msglen);
	for (uint64_t b = 0; !rc && b < r->nr_data_blocks;) {
		if (space_is_used(&pool->space, b)) {
			b++;
			continue;
		}
		uint64_t e = b + 1;
		while (e < r->nr_data_blocks && !space_is_used(&pool->space, e))
			e++;
		rc = dio_punch(d, b * r->block_size, (e - b) * r->block_size);
		b = e;
	}
	if (d) {
		if (!rc)
			rc = dio_flush(d);
		dio_close(d);
	}
	pool_close(pool);
	if (rc)
		return fail(r, rc, "cannot punch the free blocks of %s: %s", data, strerror(-rc));
	return 0;
}

/* The last step: the pool is complete and its free blocks read zeros. */
static int seal_pool(struct restore *r, struct made *mk)
{
	struct meta *m = NULL;
	struct meta_pool_row prow;
	int rc = meta_open(mk->meta_path, false, &m, r->msg, r->msglen);

	if (!rc)
		rc = meta_begin(m);
	if (!rc)
		rc = meta_pool_get(m, &prow);
	if (!rc) {
		prow.clean = 1;
		rc = meta_pool_put(m, &prow);
	}
	if (!rc)
		rc = meta_commit(m);
	if (rc && m)
		meta_rollback(m);
	meta_close(m);
	if (rc)
		return fail(r, rc, "cannot finish the pool: %s", strerror(-rc));
	return 0;
}

static void restore_free(struct restore *r)
{
	for (size_t i = 0; i < r->nr_defs; i++)
		free(r->defs[i].name);
	free(r->defs);
	free(r->devs);
	free(r->runs);
	free(r->druns);
	free(r->cdevs);
	free(r->clayers);
	free(r->csets);
	free(r->members);
	free(r->set_off);
	free(r->set_len);
	free(r->set_hash);
	free(r->rr);
	free(r->nodes);
	free(r->set_node);
	free(r->tombs);
}

int pool_restore(const char *dir, FILE *in, const char *data_path, char *msg, size_t msglen)
{
	struct restore r = {.msg = msg, .msglen = msglen, .now = util_now()};
	struct made mk = {0};
	bool has_tree = false;
	int rc;

	rc = parse(&r, in);
	if (!rc)
		rc = prepare_devices(&r);
	if (!rc)
		rc = sweep_blocks(&r);
	for (size_t i = 0; i < r.nr_devs; i++)
		has_tree |= r.devs[i].has_parent_layer;
	if (!rc)
		rc = has_tree || r.nr_clayers ? tree_from_comments(&r) : tree_from_sets(&r);
	if (!rc)
		rc = finish_tree(&r);
	if (!rc)
		rc = place_sets(&r);
	if (!rc)
		rc = plan_hiding(&r);
	/* the input is sound: now make the pool */
	if (!rc)
		rc = make_pool(&r, dir, data_path, &mk);
	if (!rc && (rc = restore_marker(&mk, true)))
		fail(&r, rc, "cannot mark the restore in progress: %s", strerror(-rc));
	if (!rc)
		rc = write_meta(&r, &mk);
	if (!rc)
		rc = restore_point("restore/after_meta");
	/* the metadata is whole and durable (and unclean, so an open after a
	 * crash from here on scrubs free blocks, as finish_pool does) */
	if (!rc && (rc = restore_marker(&mk, false)))
		fail(&r, rc, "cannot clear the restore marker: %s", strerror(-rc));
	if (!rc)
		rc = restore_point("restore/before_finish");
	if (!rc)
		rc = finish_pool(&r, &mk);
	if (!rc)
		rc = seal_pool(&r, &mk);
	if (rc) {
		remove_made(&mk);
		if (!r.err)
			set_msg(msg, msglen, rc, "restore failed: %s", strerror(-rc));
	}
	free(mk.dir_path);
	free(mk.meta_path);
	free(mk.data_path);
	free(mk.lock_path);
	restore_free(&r);
	return rc;
}
