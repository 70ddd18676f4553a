/* SPDX-License-Identifier: MIT */
/*
 * restore_tree.c - steps 2-4 of restore: devices prepared (names, sizes, overlaps),
 * the sweep of runs by data block into sharing sets, the layer tree (from a
 * thinfs dump's comments, or derived from the sets), rows placed in the
 * lowest common ancestor, and the tombstones that hide them.
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

static int cmp_dev_id(const void *a, const void *b)
{
	const struct rdev *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
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

/* Devices in id order, the runs' device indices following them. */
static int sort_devices(struct restore *r)
{
	uint32_t *perm = malloc((r->nr_devs ? r->nr_devs : 1) * sizeof(*perm));

	if (!perm)
		return rs_fail(r, -ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nr_devs; i++)
		r->devs[i].run0 = i; /* old index, for the permutation */
	rs_sort_n(r->devs, r->nr_devs, sizeof(*r->devs), cmp_dev_id);
	for (size_t i = 0; i < r->nr_devs; i++)
		perm[r->devs[i].run0] = (uint32_t)i;
	for (size_t i = 0; i < r->nr_runs; i++)
		r->runs[i].dev = perm[r->runs[i].dev];
	free(perm);
	return 0;
}

/* The thinfs comments' details onto their devices (one comment each). */
static int apply_comments(struct restore *r)
{
	for (size_t i = 0; i < r->nr_cdevs; i++) {
		struct rdev key = {.id = r->cdevs[i].id}, *d;
		d = rs_search_n(&key, r->devs, r->nr_devs, sizeof(*d), cmp_dev_id);
		if (!d)
			return rs_fail(r, -EINVAL,
				       "thinfs comment for device %llu, which has no <device>",
				       (unsigned long long)key.id);
		if (d->has_comment)
			return rs_fail(r, -EINVAL, "two thinfs comments for device %llu",
				       (unsigned long long)key.id);
		struct rdev c = r->cdevs[i];
		c.mapped_attr = d->mapped_attr;
		c.creation_time = d->creation_time;
		c.snap_time = d->snap_time;
		*d = c;
	}
	return 0;
}

/* Device i's runs (from *k on, sorted): no vblock twice, mapped_blocks
 * true, within its size; a name, a size and a known set. */
static int check_device(struct restore *r, size_t i, size_t *k)
{
	struct rdev *d = &r->devs[i];
	uint64_t end = 0;

	d->run0 = *k;
	for (; *k < r->nr_runs && r->runs[*k].dev == i; (*k)++) {
		struct rrun *x = &r->runs[*k];
		if (*k > d->run0 && x->vb < end)
			return rs_fail(r, -EINVAL, "device %llu maps vblock %llu twice",
				       (unsigned long long)d->id, (unsigned long long)x->vb);
		end = x->vb + x->len;
		d->nr_mapped += x->len;
	}
	d->nr_runs = *k - d->run0;
	if (d->nr_mapped != d->mapped_attr)
		return rs_fail(r, -EINVAL,
			       "device %llu: mapped_blocks says %llu but its mappings cover %llu",
			       (unsigned long long)d->id, (unsigned long long)d->mapped_attr,
			       (unsigned long long)d->nr_mapped);
	if (end > MAX_DEVICE_SIZE / r->block_size)
		return rs_fail(r, -EFBIG, "device %llu maps past the largest device size",
			       (unsigned long long)d->id);
	if (!d->has_comment) {
		snprintf(d->name, sizeof(d->name), "dev%llu", (unsigned long long)d->id);
		d->mode = 0600;
		d->ctime = d->mtime = r->now;
	}
	if (!d->has_size)
		d->size = end * r->block_size;
	else if (d->size > MAX_DEVICE_SIZE / r->block_size * r->block_size)
		return rs_fail(r, -EFBIG, "device %llu: size %llu is too large",
			       (unsigned long long)d->id, (unsigned long long)d->size);
	else if (div_round_up(d->size, r->block_size) < end)
		return rs_fail(r, -EINVAL, "device %llu maps vblock %llu beyond its size %llu",
			       (unsigned long long)d->id, (unsigned long long)(end - 1),
			       (unsigned long long)d->size);
	if (pool_name_valid(d->name, NULL, 0))
		return rs_fail(r, -EINVAL, "device %llu: invalid name '%s'",
			       (unsigned long long)d->id, d->name);
	if (d->set[0] && (pool_name_valid(d->set, NULL, 0) || !strcmp(d->set, DELETED_SET)))
		return rs_fail(r, -EINVAL, "device %llu: invalid set name '%s'",
			       (unsigned long long)d->id, d->set);
	if (d->set[0] && !find_cset(r, d->set)) {
		if (GROW(r->csets, r->nr_csets, r->cap_csets))
			return rs_fail(r, -ENOMEM, "out of memory");
		snprintf(r->csets[r->nr_csets].name, sizeof(r->csets[0].name), "%s", d->set);
		r->csets[r->nr_csets++].ctime = r->now;
	}
	return 0;
}

/* (set, name) pairs are unique. */
static int check_unique_names(struct restore *r)
{
	struct rdev **byname = malloc((r->nr_devs ? r->nr_devs : 1) * sizeof(*byname));

	if (!byname)
		return rs_fail(r, -ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nr_devs; i++)
		byname[i] = &r->devs[i];
	rs_sort_n(byname, r->nr_devs, sizeof(*byname), cmp_name);
	for (size_t i = 1; i < r->nr_devs; i++) {
		if (!cmp_name(&byname[i - 1], &byname[i])) {
			rs_fail(r, -EINVAL, "devices %llu and %llu are both named '%s%s%s'",
				(unsigned long long)byname[i - 1]->id,
				(unsigned long long)byname[i]->id, byname[i]->set,
				byname[i]->set[0] ? "/" : "", byname[i]->name);
			break;
		}
	}
	free(byname);
	return r->err;
}

int rs_prepare_devices(struct restore *r)
{
	size_t k = 0;
	int rc = sort_devices(r);

	if (!rc)
		rc = apply_comments(r);
	if (rc)
		return rc;
	rs_sort_n(r->runs, r->nr_runs, sizeof(*r->runs), cmp_run_dev_vb);
	for (size_t i = 0; i < r->nr_devs && !rc; i++)
		rc = check_device(r, i, &k);
	return rc ? rc : check_unique_names(r);
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
	    rs_grow((void **)&r->members, &r->cap_members, r->nr_members + n, sizeof(*m)) ||
	    rs_grow((void **)&r->set_off, &r->cap_sets, r->nr_sets + 1, sizeof(size_t)))
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

/* The runs mapping data block p, ordered by (vblock at p, time, device):
 * each group of equal (vblock, time) is one row its devices share through
 * the tree; several groups are clones of the block (copy_file_range), each
 * its own row, counted in the clone counts. */
struct piece_ctx {
	uint64_t p;
};

static uint64_t vb_at(const struct rrun *x, uint64_t p)
{
	return x->vb + (p - x->db);
}

static int cmp_act(const void *a, const void *b, void *arg)
{
	const struct rrun *x = *(struct rrun *const *)a, *y = *(struct rrun *const *)b;
	uint64_t p = ((const struct piece_ctx *)arg)->p, xv = vb_at(x, p), yv = vb_at(y, p);

	if (xv != yv)
		return xv < yv ? -1 : 1;
	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	return x->dev < y->dev ? -1 : x->dev > y->dev;
}

/* Emit the row runs of the piece [p, next) that act[0..na) map. */
static int emit_piece(struct restore *r, struct rrun **act, size_t na, uint64_t p, uint64_t next,
		      uint32_t *devs)
{
	struct piece_ctx pc = {p};

	qsort_r(act, na, sizeof(*act), cmp_act, &pc);
	for (size_t g = 0; g < na;) {
		size_t e = g, n = 0;
		uint32_t set;
		while (e < na && vb_at(act[e], p) == vb_at(act[g], p) &&
		       act[e]->time == act[g]->time)
			devs[n++] = act[e++]->dev; /* distinct: a device maps a vblock once */
		if (intern_set(r, devs, n, &set) || GROW(r->rr, r->nr_rr, r->cap_rr))
			return rs_fail(r, -ENOMEM, "out of memory");
		r->rr[r->nr_rr++] =
		    (struct rowrun){set, vb_at(act[g], p), p, next - p, act[g]->time};
		g = e;
	}
	return 0;
}

/* Sweep the runs in dblock order: the row runs, each with its set. */
int rs_sweep_blocks(struct restore *r)
{
	struct rrun **idx = malloc((r->nr_runs ? r->nr_runs : 1) * sizeof(*idx));
	struct rrun **act = malloc((r->nr_runs ? r->nr_runs : 1) * sizeof(*act));
	uint32_t *devs = malloc((r->nr_runs ? r->nr_runs : 1) * sizeof(*devs));
	size_t i = 0, na = 0;
	uint64_t p = 0;
	int rc = 0;

	if (!idx || !act || !devs) {
		rc = rs_fail(r, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < r->nr_runs; k++)
		idx[k] = &r->runs[k];
	rs_sort_n(idx, r->nr_runs, sizeof(*idx), cmp_run_db);
	while (i < r->nr_runs || na) {
		uint64_t next = UINT64_MAX;
		if (!na && i < r->nr_runs)
			p = idx[i]->db; // NOLINT(clang-analyzer-core.NullDereference)
		/* idx[0..nr_runs) is filled above: the analyzer loses track */
		while (i < r->nr_runs &&
		       idx[i]->db == p) // NOLINT(clang-analyzer-core.NullDereference)
			act[na++] = idx[i++];
		if (!na)
			break; /* cannot happen: a run starts at p */
		if (i < r->nr_runs)
			next = idx[i]->db;
		for (size_t a = 0; a < na; a++)
			if (act[a]->db + act[a]->len < next)
				next = act[a]->db + act[a]->len;
		/* [p, next): every active run maps it */
		rc = emit_piece(r, act, na, p, next, devs);
		if (rc)
			goto out;
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

static int alloc_nodes(struct restore *r, size_t nr_interior)
{
	r->nr_interior = nr_interior;
	r->nr_nodes = nr_interior + r->nr_devs;
	r->nodes = calloc(r->nr_nodes ? r->nr_nodes : 1, sizeof(*r->nodes));
	if (!r->nodes)
		return rs_fail(r, -ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nr_nodes; i++) {
		r->nodes[i].parent = NO_NODE;
		r->nodes[i].dev = i >= nr_interior ? (int32_t)(i - nr_interior) : -1;
	}
	return 0;
}

int32_t rs_leaf_of(struct restore *r, uint32_t dev)
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

	l = rs_search_n(&key, r->clayers, r->nr_clayers, sizeof(key), cmp_rlayer);
	return l ? (int32_t)(l - r->clayers) : NO_NODE;
}

/* The tree given by a thinfs dump's comments. */
int rs_tree_from_comments(struct restore *r)
{
	rs_sort_n(r->clayers, r->nr_clayers, sizeof(*r->clayers), cmp_rlayer);
	for (size_t i = 1; i < r->nr_clayers; i++)
		if (r->clayers[i].id == r->clayers[i - 1].id)
			return rs_fail(r, -EINVAL, "thinfs layer %llu appears twice",
				       (unsigned long long)r->clayers[i].id);
	if (r->nr_clayers > (size_t)INT32_MAX - r->nr_devs || alloc_nodes(r, r->nr_clayers))
		return rs_fail(r, -ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nr_clayers; i++) {
		if (!r->clayers[i].parent)
			continue;
		r->nodes[i].parent = clayer_node(r, r->clayers[i].parent);
		if (r->nodes[i].parent == NO_NODE)
			return rs_fail(r, -EINVAL, "thinfs layer %llu has unknown parent %llu",
				       (unsigned long long)r->clayers[i].id,
				       (unsigned long long)r->clayers[i].parent);
	}
	for (size_t i = 0; i < r->nr_devs; i++) {
		struct rdev *d = &r->devs[i];
		if (!d->has_parent_layer)
			return rs_fail(r, -EINVAL, "device %llu has no parent_layer in its comment",
				       (unsigned long long)d->id);
		if (!d->parent_layer)
			continue;
		r->nodes[rs_leaf_of(r, (uint32_t)i)].parent = clayer_node(r, d->parent_layer);
		if (r->nodes[rs_leaf_of(r, (uint32_t)i)].parent == NO_NODE)
			return rs_fail(r, -EINVAL, "device %llu: unknown parent_layer %llu",
				       (unsigned long long)d->id,
				       (unsigned long long)d->parent_layer);
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
	rs_sort_n(v, n, sizeof(*v), cmp_rr_vb);
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
/* u |= v: a sorted merge of two sorted member lists (u has room for all
 * devices). */
static int cluster_union(struct cluster *u, const struct cluster *v)
{
	uint32_t *tmp = malloc((u->n + v->n) * sizeof(*tmp));
	size_t a = 0, b = 0, o = 0;

	if (!tmp)
		return -ENOMEM;
	while (a < u->n || b < v->n) {
		if (b >= v->n || (a < u->n && u->m[a] < v->m[b]))
			tmp[o++] = u->m[a++];
		else if (a >= u->n || v->m[b] < u->m[a])
			tmp[o++] = v->m[b++];
		else {
			tmp[o++] = u->m[a++];
			b++;
		}
	}
	memcpy(u->m, tmp, o * sizeof(*tmp));
	u->n = o;
	free(tmp);
	return 0;
}

/* Hang each device's leaf under the chain of clusters holding it, sorted
 * by size: each cluster's parent is the next larger one holding any of its
 * devices. */
static int link_clusters(struct restore *r, struct cluster *h, size_t nh)
{
	rs_sort_n(h, nh, sizeof(*h), cmp_cluster_size);
	if (nh > (size_t)INT32_MAX - r->nr_devs || alloc_nodes(r, nh))
		return -ENOMEM;
	for (uint32_t d = 0; d < r->nr_devs; d++) {
		int32_t below = rs_leaf_of(r, d);
		for (size_t k = 0; k < nh; k++) {
			if (!rs_search_n(&d, h[k].m, h[k].n, sizeof(d), cmp_u32))
				continue;
			/* sorted by size, so chain grows upwards */
			r->nodes[below].parent = (int32_t)k;
			below = (int32_t)k;
		}
	}
	return 0;
}

int rs_tree_from_sets(struct restore *r)
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
	rs_sort_n(c, nc, sizeof(*c), cmp_cand);
	/* choose the sets that overlap no chosen one */
	for (size_t i = 0; i < nc; i++) {
		struct cluster s = {SET_M(r, c[i].set), r->set_len[c[i].set]};
		bool ok = true;
		for (size_t k = 0; k < nh && ok; k++)
			ok = !overlap(&s, &h[k]);
		if (!ok)
			continue;
		if (rs_grow((void **)&h, &cap_h, nh + 1, sizeof(*h)))
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
				if (cluster_union(&u, &h[k])) {
					free(u.m);
					goto out;
				}
				changed = true;
			}
		}
		if (rs_grow((void **)&h, &cap_h, nh + 1, sizeof(*h))) {
			free(u.m);
			goto out;
		}
		h[nh++] = u;
	}
	/* the tree: clusters by size, each device's chain through them */
	if (link_clusters(r, h, nh))
		goto out;
	rc = 0;
out:
	for (size_t k = 0; k < nh; k++)
		free(h[k].m);
	free(h);
	free(c);
	free(cand_of);
	if (rc)
		return rs_fail(r, rc, "out of memory");
	return 0;
}

/* Depths, child counts, preorder times; refuse cycles and thin layers. */
int rs_finish_tree(struct restore *r)
{
	int32_t *first = NULL, *next = NULL, *stack = NULL;
	size_t n = r->nr_nodes, sp = 0;
	uint32_t clock = 0;
	int rc = 0;

	first = malloc((n ? n : 1) * sizeof(*first));
	next = malloc((n ? n : 1) * sizeof(*next));
	stack = malloc((n ? 2 * n : 1) * sizeof(*stack)); /* nodes + path markers */
	if (!first || !next || !stack) {
		rc = rs_fail(r, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		first[i] = NO_NODE;
	for (size_t i = n; i-- > 0;) {
		int32_t p = r->nodes[i].parent;
		if (p == NO_NODE)
			continue;
		if (r->nodes[p].dev >= 0) {
			rc = rs_fail(r, -EINVAL, "a device's leaf layer has children");
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
		rc = rs_fail(r, -EINVAL, "the thinfs layer comments make a cycle");
		goto out;
	}
	for (size_t i = 0; i < r->nr_interior; i++) {
		if (r->nodes[i].nr_children < 2) {
			rc = rs_fail(r, -EINVAL, "thinfs layer %zu has fewer than two children",
				     i + 1);
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

static int32_t set_lca(struct restore *r, size_t s)
{
	const uint32_t *m = SET_M(r, s);
	int32_t x = rs_leaf_of(r, m[0]);

	for (size_t i = 1; i < r->set_len[s] && x != NO_NODE; i++)
		x = lca(r, x, rs_leaf_of(r, m[i]));
	return x;
}

/* Row runs whose devices have no common layer (a block cloned between
 * separate trees at one vblock and time): one row run per device, each in
 * its leaf, so each is a clone of the block.  Order kept (by dblock). */
static int split_unplaceable(struct restore *r)
{
	size_t n = 0;

	for (size_t i = 0; i < r->nr_rr; i++)
		n += set_lca(r, r->rr[i].set) == NO_NODE ? r->set_len[r->rr[i].set] : 1;
	if (n == r->nr_rr)
		return 0;
	struct rowrun *out = malloc(n * sizeof(*out));
	size_t k = 0;
	if (!out)
		return rs_fail(r, -ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nr_rr; i++) {
		struct rowrun x = r->rr[i];
		size_t len = r->set_len[x.set];
		if (set_lca(r, x.set) != NO_NODE) {
			out[k++] = x;
			continue;
		}
		for (size_t j = 0; j < len; j++) {
			uint32_t dev = SET_M(r, r->rr[i].set)[j];
			if (intern_set(r, &dev, 1, &x.set)) {
				free(out);
				return rs_fail(r, -ENOMEM, "out of memory");
			}
			out[k++] = x;
		}
	}
	free(r->rr);
	r->rr = out;
	r->nr_rr = r->cap_rr = n;
	return 0;
}

int rs_place_sets(struct restore *r)
{
	int rc = split_unplaceable(r);

	if (rc)
		return rc;
	r->set_node = malloc((r->nr_sets ? r->nr_sets : 1) * sizeof(*r->set_node));
	if (!r->set_node)
		return rs_fail(r, -ENOMEM, "out of memory");
	for (size_t s = 0; s < r->nr_sets; s++)
		r->set_node[s] = set_lca(r, s); /* a set in use always has one now */
	return 0;
}

static bool set_has(struct restore *r, uint32_t set, uint32_t dev)
{
	const uint32_t *m = SET_M(r, set);
	size_t lo = 0, hi = r->set_len[set];

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m[mid] < dev)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < r->set_len[set] && m[lo] == dev;
}

/* The row run holding data block db for device dev (rr is in dblock order;
 * the clones of a block are row runs of equal range side by side). */
static const struct rowrun *rr_of_db(struct restore *r, uint64_t db, uint32_t dev)
{
	size_t lo = 0, hi = r->nr_rr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r->rr[mid].db + r->rr[mid].len <= db)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < r->nr_rr && r->rr[lo].db <= db; lo++)
		if (set_has(r, r->rr[lo].set, dev))
			return &r->rr[lo];
	return NULL;
}

static int add_tombs(struct restore *r, uint32_t dev, uint64_t vb, uint64_t n)
{
	if (rs_grow((void **)&r->tombs, &r->cap_tombs, r->nr_tombs + n, sizeof(*r->tombs)))
		return rs_fail(r, -ENOMEM, "out of memory");
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
				const struct rowrun *o = rr_of_db(r, db, e);
				if (!o ||
				    r->nodes[r->set_node[o->set]].depth <= r->nodes[layer].depth) {
					uint64_t at = runs[lo].vb + (db - runs[lo].db);
					uint64_t other = x->db + (at - x->vb);
					return rs_fail(
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
	uint32_t x = r->nodes[rs_leaf_of(r, *(const uint32_t *)a)].tin;
	uint32_t y = r->nodes[rs_leaf_of(r, *(const uint32_t *)b)].tin;

	return x < y ? -1 : x > y;
}

/* Every device below a row's layer and outside its set gets it hidden. */
int rs_plan_hiding(struct restore *r)
{
	uint32_t *by_tin = malloc((r->nr_devs ? r->nr_devs : 1) * sizeof(*by_tin));
	uint8_t *in_set = calloc(r->nr_devs ? r->nr_devs : 1, 1);
	int rc = 0;

	if (!by_tin || !in_set) {
		rc = rs_fail(r, -ENOMEM, "out of memory");
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
			if (r->nodes[rs_leaf_of(r, by_tin[mid])].tin < t->tin)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (size_t k = 0; k < r->set_len[x->set]; k++)
			in_set[m[k]] = 1;
		for (; lo < r->nr_devs && r->nodes[rs_leaf_of(r, by_tin[lo])].tin < t->tout && !rc;
		     lo++)
			if (!in_set[by_tin[lo]])
				rc = hide_from(r, by_tin[lo], x, layer);
		for (size_t k = 0; k < r->set_len[x->set]; k++)
			in_set[m[k]] = 0;
	}
	if (!rc && r->nr_tombs) {
		size_t o = 1;
		rs_sort_n(r->tombs, r->nr_tombs, sizeof(*r->tombs), cmp_tomb);
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
