/* SPDX-License-Identifier: MIT */
/*
 * restore_parse.c - step 1 of restore: expat, streaming, into devices and runs; every
 * element, attribute and number checked; the thinfs comments (names, sets,
 * sizes, the layer tree) read back.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "engine/util.h"
#include "restore.h"
#include "thinfs/pool_test.h"

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
			return rs_fail(r, -EINVAL, "unknown attribute '%s' of <%s>", atts[a], elem);
		values[i] = atts[a + 1];
	}
	for (size_t i = 0; i < nr_required; i++)
		if (!values[i])
			return rs_fail(r, -EINVAL, "<%s> lacks attribute '%s'", elem, names[i]);
	return 0;
}

/* Parse values[0..nr) (NULL: leave 0) as unsigned numbers. */
static int get_numbers(struct restore *r, const char *elem, const char *const *names,
		       const char **values, uint64_t *nums, size_t nr)
{
	for (size_t i = 0; i < nr; i++) {
		nums[i] = 0;
		if (values[i] && parse_u64(values[i], &nums[i]))
			return rs_fail(r, -EINVAL, "<%s %s=\"%s\">: not a number (or too large)",
				       elem, names[i], values[i]);
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
		rs_fail(r, -EINVAL, "superblock uuid \"%s\" is not a uuid thinfs can keep", v[0]);
		return;
	}
	snprintf(r->uuid, sizeof(r->uuid), "%s", v[0]);
	r->time = n[1];
	r->transaction = n[2];
	if (v[6] && n[6] != 1 && n[6] != 2) {
		rs_fail(r, -EPROTONOSUPPORT, "superblock version %llu (this reads 1 and 2)",
			(unsigned long long)n[6]);
		return;
	}
	if (n[3] > POOL_MAX_BLOCK_SIZE / 512 || !is_pow2(n[3] * 512) ||
	    n[3] * 512 < POOL_MIN_BLOCK_SIZE) {
		rs_fail(r, -EINVAL,
			"data_block_size %llu sectors is not a power of two from 4K to 1G (thinfs "
			"block sizes)",
			(unsigned long long)n[3]);
		return;
	}
	r->block_size = n[3] * 512;
	if (!n[4] || n[4] > POOL_MAX_DATA_BLOCKS) {
		rs_fail(r, -EINVAL, "nr_data_blocks %llu is out of range",
			(unsigned long long)n[4]);
		return;
	}
	r->nr_data_blocks = n[4];
	r->sb_open = true;
	r->where = IN_SB;
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
		rs_fail(r, -ENOMEM, "out of memory");
		return;
	}
	for (size_t i = 0; i < r->nr_devs; i++) {
		if (r->devs[i].id == n[0]) {
			rs_fail(r, -EINVAL, "device %llu appears twice", (unsigned long long)n[0]);
			return;
		}
	}
	if (n[0] > (uint64_t)INT64_MAX) {
		rs_fail(r, -EINVAL, "dev_id %llu is too large", (unsigned long long)n[0]);
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
		rs_fail(r, -EINVAL, "a mapping of length 0");
		return;
	}
	if (vb > MAX_VBLOCK || len > MAX_VBLOCK - vb) {
		rs_fail(r, -EINVAL, "vblock %llu + %llu is beyond what a device can hold",
			(unsigned long long)vb, (unsigned long long)len);
		return;
	}
	if (db >= r->nr_data_blocks || len > r->nr_data_blocks - db) {
		rs_fail(r, -EINVAL, "data block %llu is beyond nr_data_blocks %llu",
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
	if (rs_grow((void **)arr, cap, *nr + 1, sizeof(**arr))) {
		rs_fail(r, -ENOMEM, "out of memory");
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
		rs_fail(r, -EINVAL, "<def name=\"%s\"> appears twice", v[0]);
		return;
	}
	if (GROW(r->defs, r->nr_defs, r->cap_defs)) {
		rs_fail(r, -ENOMEM, "out of memory");
		return;
	}
	r->defs[r->nr_defs].name = strdup(v[0]);
	r->defs[r->nr_defs].first = r->nr_druns;
	r->defs[r->nr_defs].n = 0;
	if (!r->defs[r->nr_defs].name) {
		rs_fail(r, -ENOMEM, "out of memory");
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
		rs_fail(r, -EINVAL, "<ref name=\"%s\"> names no <def> before it", v[0]);
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
			rs_fail(r, -EINVAL, "<%s> where <superblock> was expected", name);
		else
			start_superblock(r, atts);
		return;
	case IN_SB:
		if (!strcmp(name, "device"))
			start_device(r, atts);
		else if (!strcmp(name, "def"))
			start_def(r, atts);
		else
			rs_fail(r, -EINVAL, "unknown element <%s> in <superblock>", name);
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
			rs_fail(r, -EINVAL, "unknown element <%s> in <%s>", name,
				r->where == IN_DEV ? "device" : "def");
		}
		return;
	default:
		rs_fail(r, -EINVAL, "<%s> inside a mapping element", name);
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
			rs_fail(r, -EINVAL, "unexpected text in the XML");
}

static void XMLCALL on_doctype(void *arg, const XML_Char *name, const XML_Char *sysid,
			       const XML_Char *pubid, int has_internal)
{
	rs_fail(arg, -EINVAL, "a DOCTYPE is not part of thin_dump's format");
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
		else if (key_is(key, klen, "copy_of"))
			rc = unescape(val, vlen, d.copy_of, sizeof(d.copy_of));
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
			else if (key_is(key, klen, "generation"))
				d.generation = u;
			else if (key_is(key, klen, "parent_layer")) {
				d.parent_layer = u;
				d.has_parent_layer = true;
			} else
				rc = -EINVAL;
		}
		if (rc)
			return rs_fail(r, -EINVAL, "bad thinfs device comment at '%.*s'", (int)klen,
				       key);
	}
	if (rc || !have_id || !have_name)
		return rs_fail(r, -EINVAL, "thinfs device comment without dev_id and name");
	if (!d.mode)
		d.mode = 0600;
	if (GROW(r->cdevs, r->nr_cdevs, r->cap_cdevs))
		return rs_fail(r, -ENOMEM, "out of memory");
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
			return rs_fail(r, -EINVAL, "bad thinfs layer comment at '%.*s'", (int)klen,
				       key);
	}
	if (rc || !have_id || !have_parent || !l.id)
		return rs_fail(r, -EINVAL, "thinfs layer comment without a valid id and parent");
	if (GROW(r->clayers, r->nr_clayers, r->cap_clayers))
		return rs_fail(r, -ENOMEM, "out of memory");
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
			return rs_fail(r, -EINVAL, "bad thinfs set comment at '%.*s'", (int)klen,
				       key);
	}
	if (rc || !have_name)
		return rs_fail(r, -EINVAL, "thinfs set comment without a name");
	if (pool_name_valid(s.name, NULL, 0))
		return rs_fail(r, -EINVAL, "thinfs set comment: invalid set name '%s'", s.name);
	for (size_t i = 0; i < r->nr_csets; i++)
		if (!strcmp(r->csets[i].name, s.name))
			return rs_fail(r, -EINVAL, "set '%s' appears twice", s.name);
	if (GROW(r->csets, r->nr_csets, r->cap_csets))
		return rs_fail(r, -ENOMEM, "out of memory");
	r->csets[r->nr_csets++] = s;
	return 0;
}

/* <!-- thinfs property key="" value="" -->: kept as it is, for write_pool_row */
static int comment_property(struct restore *r, const char *p)
{
	const char *key, *val;
	size_t klen, vlen;
	struct rprop pr = {0};
	bool have_key = false, have_value = false;
	int rc;

	while ((rc = next_pair(&p, &key, &klen, &val, &vlen)) > 0) {
		if (key_is(key, klen, "key") && !unescape(val, vlen, pr.key, sizeof(pr.key)))
			have_key = true;
		else if (key_is(key, klen, "value") &&
			 !unescape(val, vlen, pr.value, sizeof(pr.value)))
			have_value = true;
		else
			return rs_fail(r, -EINVAL, "bad thinfs property comment at '%.*s'",
				       (int)klen, key);
	}
	if (rc || !have_key || !have_value)
		return rs_fail(r, -EINVAL, "thinfs property comment without a key and a value");
	if (pool_prop_index(pr.key) < 0)
		return rs_fail(r, -EINVAL, "unknown pool property '%s' in the dump", pr.key);
	if (GROW(r->cprops, r->nr_cprops, r->cap_cprops))
		return rs_fail(r, -ENOMEM, "out of memory");
	r->cprops[r->nr_cprops++] = pr;
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
	else if (!strncmp(p, "property ", 9))
		comment_property(r, p + 9);
	else if (strncmp(p, "dump ", 5))
		rs_fail(r, -EINVAL, "unknown thinfs comment '%.20s'", p);
}

int rs_parse(struct restore *r, FILE *in)
{
	char buf[65536];
	size_t n;
	bool done = false;

	r->xp = XML_ParserCreate("UTF-8");
	if (!r->xp)
		return rs_fail(r, -ENOMEM, "out of memory");
	XML_SetUserData(r->xp, r);
	XML_SetElementHandler(r->xp, on_start, on_end);
	XML_SetCharacterDataHandler(r->xp, on_text);
	XML_SetCommentHandler(r->xp, on_comment);
	XML_SetStartDoctypeDeclHandler(r->xp, on_doctype);
	r->cur_dev = r->cur_def = -1;
	while (!done && !r->err) {
		n = fread(buf, 1, sizeof(buf), in);
		if (ferror(in))
			return rs_fail(r, -EIO, "cannot read the XML: %s", strerror(errno));
		done = n < sizeof(buf) && feof(in);
		if (XML_Parse(r->xp, buf, (int)n, done) == XML_STATUS_ERROR && !r->err)
			rs_fail(r, -EINVAL, "malformed XML: %s",
				XML_ErrorString(XML_GetErrorCode(r->xp)));
	}
	XML_ParserFree(r->xp);
	r->xp = NULL;
	if (!r->err && !r->sb_done)
		return rs_fail(r, -EINVAL, "no complete <superblock> in the XML");
	return r->err;
}
