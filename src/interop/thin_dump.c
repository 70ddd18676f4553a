/* SPDX-License-Identifier: MIT */
/*
 * thin_dump.c - the pool's metadata as thin_dump XML (thin-provisioning-tools'
 * format, version 2), so thin_restore, thin_check, thin_ls and thin_delta can
 * read what thinfs holds:
 *
 *   <superblock uuid="" time="" transaction="" flags="0" version="2"
 *               data_block_size="SECTORS" nr_data_blocks="">
 *     <device dev_id="" mapped_blocks="" transaction="" creation_time="" snap_time="">
 *       <range_mapping origin_begin="" data_begin="" length="" time=""/>
 *       <single_mapping origin_block="" data_block="" time=""/>
 *     </device>
 *   </superblock>
 *
 * Only these elements and attributes appear (the tools reject others), laid
 * out as thin_dump does.  A range is a run of consecutive vblocks mapped to
 * consecutive data blocks with one time.  Devices come sorted by id, mappings
 * by vblock; a device's transaction is the pool's (thinfs has none per device).
 *
 * What dm-thin has no field for goes in comments that the tools skip and
 * restore_parse.c reads:
 *   <!-- thinfs dump version="1" -->
 *   <!-- thinfs property key="" value="" -->             one per pool property set
 *   <!-- thinfs set name="" ctime="" -->                 one per snapshot set
 *   <!-- thinfs layer id="" parent="" -->                the layer tree
 *   <!-- thinfs device dev_id="" set="" name="" size="" read_only="" origin=""
 *        ctime="" mtime="" uid="" gid="" mode="" parent_layer="" generation=""
 *        copy_of="" -->  (generation, copy_of: send/receive identity, meta.h)
 * The layer tree is the pool's, restricted to the devices dumped: a layer is
 * kept when it is a device's leaf or has two or more children leading to one;
 * kept interior layers are numbered in preorder, roots and children ordered by
 * the smallest device id below them, so the numbering depends on the tree's
 * shape only and a restored pool (which rebuilds this tree) dumps the same
 * bytes.  A device's leaf hangs under parent_layer (0: it is a root).
 *
 * Takes the pool lock for the whole dump (after committing a read-write pool):
 * one consistent view.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "interop_internal.h"
#include "engine/util.h"

struct knode {
	uint64_t id, parent; /* the layer and its parent layer (0: a root) */
	uint64_t min_dev;    /* smallest id of a dumped device below */
	uint64_t live;	     /* dumped devices below */
	uint64_t branches;   /* children with dumped devices below */
	struct knode *kparent;
	uint64_t canon; /* preorder number of a kept interior layer, else 0 */
	bool kept, leaf;
};

struct ktree {
	struct knode *n; /* sorted by layer id */
	size_t nr;
};

static int cmp_knode_id(const void *a, const void *b)
{
	const struct knode *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static struct knode *knode_of(struct ktree *t, uint64_t id)
{
	size_t lo = 0, hi = t->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->n[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < t->nr && t->n[lo].id == id ? &t->n[lo] : NULL;
}

/* kept nodes ordered by (kept parent, smallest device below): siblings adjacent */
static int cmp_siblings(const void *a, const void *b)
{
	const struct knode *x = *(struct knode *const *)a, *y = *(struct knode *const *)b;
	uintptr_t px = (uintptr_t)x->kparent, py = (uintptr_t)y->kparent;

	if (px != py)
		return px < py ? -1 : 1;
	return x->min_dev < y->min_dev ? -1 : x->min_dev > y->min_dev;
}

static void ktree_free(struct ktree *t)
{
	free(t->n);
	memset(t, 0, sizeof(*t));
}

/* The layers, and how many dumped devices lie below each. */
static int ktree_load(struct pool *pool, const struct meta_device_row *devs, size_t nr_devs,
		      struct ktree *t)
{
	struct pool_view_layer *layers;
	int rc = pool_view_layers(pool, &layers, &t->nr);

	if (rc)
		return rc;
	t->n = calloc(t->nr ? t->nr : 1, sizeof(*t->n));
	if (!t->n) {
		free(layers);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->nr; i++)
		t->n[i] = (struct knode){
		    .id = layers[i].id, .parent = layers[i].parent, .min_dev = UINT64_MAX};
	free(layers);
	qsort(t->n, t->nr, sizeof(*t->n), cmp_knode_id);
	for (size_t d = 0; d < nr_devs; d++) {
		struct knode *k = knode_of(t, devs[d].layer);
		if (!k)
			return -EUCLEAN;
		k->leaf = true;
		for (size_t depth = 0; k; k = k->parent ? knode_of(t, k->parent) : NULL) {
			if (++depth > t->nr)
				return -EUCLEAN; /* a cycle */
			k->live++;
			if (devs[d].id < k->min_dev)
				k->min_dev = devs[d].id;
		}
	}
	for (size_t i = 0; i < t->nr; i++) {
		struct knode *p = t->n[i].parent ? knode_of(t, t->n[i].parent) : NULL;
		if (p && t->n[i].live > 0)
			p->branches++;
	}
	return 0;
}

/* Number the kept interior layers in preorder, children by smallest device. */
static int ktree_number(struct ktree *t)
{
	struct knode **kept = NULL, **stack = NULL;
	size_t nr_kept = 0, sp = 0;
	uint64_t next = 1;
	int rc = -ENOMEM;

	for (size_t i = 0; i < t->nr; i++) {
		struct knode *k = &t->n[i];
		k->kept = k->leaf || k->branches >= 2;
		nr_kept += k->kept;
	}
	kept = calloc(nr_kept ? nr_kept : 1, sizeof(*kept));
	stack = calloc(nr_kept ? nr_kept : 1, sizeof(*stack));
	if (!kept || !stack)
		goto out;
	nr_kept = 0;
	for (size_t i = 0; i < t->nr; i++) {
		struct knode *k = &t->n[i];
		if (!k->kept)
			continue;
		for (struct knode *a = k->parent ? knode_of(t, k->parent) : NULL; a && !k->kparent;
		     a = a->parent ? knode_of(t, a->parent) : NULL)
			if (a->kept)
				k->kparent = a;
		kept[nr_kept++] = k;
	}
	qsort(kept, nr_kept, sizeof(*kept), cmp_siblings);
	/* preorder: push the roots (in reverse, so the smallest pops first) */
	for (size_t i = nr_kept; i-- > 0;)
		if (!kept[i]->kparent)
			stack[sp++] = kept[i];
	while (sp) {
		struct knode *k = stack[--sp];
		if (k->leaf)
			continue;
		k->canon = next++;
		/* children are adjacent in `kept`; find them by binary search */
		size_t lo = 0, hi = nr_kept;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if ((uintptr_t)kept[mid]->kparent < (uintptr_t)k)
				lo = mid + 1;
			else
				hi = mid;
		}
		size_t end = lo;
		while (end < nr_kept && kept[end]->kparent == k)
			end++;
		for (size_t c = end; c-- > lo;)
			stack[sp++] = kept[c];
	}
	rc = 0;
out:
	free(kept);
	free(stack);
	return rc;
}

/* The pool's layer tree restricted to the dumped devices, numbered canonically. */
static int ktree_build(struct pool *pool, const struct meta_device_row *devs, size_t n,
		       struct ktree *t)
{
	int rc;

	memset(t, 0, sizeof(*t));
	rc = ktree_load(pool, devs, n, t);
	if (!rc)
		rc = ktree_number(t);
	if (rc)
		ktree_free(t);
	return rc;
}

static void put_layers(FILE *out, struct ktree *t)
{
	struct knode **order = calloc(t->nr ? t->nr : 1, sizeof(*order));
	size_t n = 0;

	if (!order)
		return;
	for (size_t i = 0; i < t->nr; i++)
		if (t->n[i].canon) {
			order[t->n[i].canon - 1] = &t->n[i];
			n++;
		}
	for (size_t i = 0; i < n; i++)
		fprintf(out, "  <!-- thinfs layer id=\"%llu\" parent=\"%llu\" -->\n",
			(unsigned long long)order[i]->canon,
			(unsigned long long)(order[i]->kparent ? order[i]->kparent->canon : 0));
	free(order);
}

static int cmp_set_name(const void *a, const void *b)
{
	return strcmp(((const struct meta_set_row *)a)->name,
		      ((const struct meta_set_row *)b)->name);
}

static int put_sets(FILE *out, struct pool *pool)
{
	struct meta_set_row *list;
	size_t n;
	int rc = pool_view_sets(pool, &list, &n);

	if (rc)
		return rc;
	qsort(list, n, sizeof(*list), cmp_set_name);
	for (size_t i = 0; i < n; i++) {
		fputs("  <!-- thinfs set name=\"", out);
		interop_put_escaped(out, list[i].name);
		fprintf(out, "\" ctime=\"%lld\" -->\n", (long long)list[i].ctime);
	}
	free(list);
	return 0;
}

/* The pool's properties that were set (a default is not carried: a newer
 * thinfs's default applies). */
static void put_props(FILE *out, struct pool *pool)
{
	for (size_t i = 0; i < pool_prop_count(); i++) {
		struct pool_prop p;
		if (pool_view_prop(pool, i, &p) || p.is_default)
			continue;
		fputs("  <!-- thinfs property key=\"", out);
		interop_put_escaped(out, p.key);
		fputs("\" value=\"", out);
		interop_put_escaped(out, p.value);
		fputs("\" -->\n", out);
	}
}

static int cmp_dev_id(const void *a, const void *b)
{
	uint64_t x = ((const struct meta_device_row *)a)->id;
	uint64_t y = ((const struct meta_device_row *)b)->id;

	return x < y ? -1 : x > y;
}

static void put_device(FILE *out, uint64_t transaction_id, const struct meta_device_row *r,
		       const struct tview *v, uint64_t parent_layer)
{
	fprintf(out, "  <!-- thinfs device dev_id=\"%llu\" set=\"", (unsigned long long)r->id);
	interop_put_escaped(out, r->set);
	fputs("\" name=\"", out);
	interop_put_escaped(out, r->name);
	fprintf(out,
		"\" size=\"%llu\" read_only=\"%d\" origin=\"%llu\" ctime=\"%lld\" mtime=\"%lld\" "
		"uid=\"%u\" gid=\"%u\" mode=\"%u\" parent_layer=\"%llu\" generation=\"%llu\" "
		"copy_of=\"",
		(unsigned long long)r->size, r->read_only ? 1 : 0, (unsigned long long)r->origin,
		(long long)r->ctime, (long long)r->mtime, r->uid, r->gid, r->mode,
		(unsigned long long)parent_layer, (unsigned long long)r->generation);
	interop_put_escaped(out, r->copy_of);
	fputs("\" -->\n", out);
	fprintf(out,
		"  <device dev_id=\"%llu\" mapped_blocks=\"%zu\" transaction=\"%llu\" "
		"creation_time=\"%llu\" snap_time=\"%llu\">\n",
		(unsigned long long)r->id, v->n, (unsigned long long)transaction_id,
		(unsigned long long)r->creation_time, (unsigned long long)r->snap_time);
	for (size_t i = 0; i < v->n;) {
		size_t j = i + 1;
		while (j < v->n && v->m[j].vblock == v->m[i].vblock + (j - i) &&
		       v->m[j].dblock == v->m[i].dblock + (j - i) && v->m[j].time == v->m[i].time)
			j++;
		if (j - i == 1)
			fprintf(out,
				"    <single_mapping origin_block=\"%llu\" data_block=\"%llu\" "
				"time=\"%llu\"/>\n",
				(unsigned long long)v->m[i].vblock,
				(unsigned long long)v->m[i].dblock,
				(unsigned long long)v->m[i].time);
		else
			fprintf(out,
				"    <range_mapping origin_begin=\"%llu\" data_begin=\"%llu\" "
				"length=\"%zu\" time=\"%llu\"/>\n",
				(unsigned long long)v->m[i].vblock,
				(unsigned long long)v->m[i].dblock, j - i,
				(unsigned long long)v->m[i].time);
		i = j;
	}
	fputs("  </device>\n", out);
}

int pool_dump(struct pool *pool, FILE *out, char *msg, size_t msglen)
{
	struct meta_device_row *devs = NULL;
	struct meta_pool_row prow;
	struct ktree t = {0};
	size_t n = 0;
	int rc;

	interop_lock(pool);
	pool_view_pool_row(pool, &prow);
	rc = pool_view_devices(pool, &devs, &n);
	if (!rc)
		rc = ktree_build(pool, devs, n, &t);
	if (rc)
		goto out;
	qsort(devs, n, sizeof(*devs), cmp_dev_id);
	fprintf(
	    out,
	    "<superblock uuid=\"%s\" time=\"%llu\" transaction=\"%llu\" flags=\"0\" "
	    "version=\"2\" data_block_size=\"%llu\" nr_data_blocks=\"%llu\">\n",
	    prow.uuid, (unsigned long long)prow.pool_time, (unsigned long long)prow.transaction_id,
	    (unsigned long long)(prow.block_size / 512), (unsigned long long)prow.nr_data_blocks);
	fputs("  <!-- thinfs dump version=\"1\" -->\n", out);
	put_props(out, pool);
	rc = put_sets(out, pool);
	if (rc)
		goto out;
	put_layers(out, &t);
	for (size_t i = 0; i < n && !rc; i++) {
		struct idev d = {devs[i]};
		struct tview v;
		struct knode *leaf = knode_of(&t, devs[i].layer);
		rc = interop_view(pool, &d, &v);
		if (rc)
			break;
		put_device(out, prow.transaction_id, &devs[i], &v,
			   leaf->kparent ? leaf->kparent->canon : 0);
		tview_free(&v);
	}
	if (!rc)
		fputs("</superblock>\n", out);
out:
	interop_unlock(pool);
	ktree_free(&t);
	free(devs);
	if (!rc)
		rc = interop_stream_done(out);
	if (rc)
		set_msg(msg, msglen, rc, "dump failed: %s", strerror(-rc));
	return rc;
}
