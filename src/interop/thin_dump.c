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
 *   <!-- thinfs set name="" ctime="" -->                 one per snapshot set
 *   <!-- thinfs layer id="" parent="" -->                the layer tree
 *   <!-- thinfs device dev_id="" set="" name="" size="" read_only="" origin=""
 *        ctime="" mtime="" uid="" gid="" mode="" parent_layer="" -->
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
	struct layer *l;
	uint64_t min_dev; /* smallest id of a dumped device below */
	uint64_t live;	  /* dumped devices below */
	struct knode *kparent;
	uint64_t canon; /* preorder number of a kept interior layer, else 0 */
	bool kept, leaf;
};

struct ktree {
	struct knode *n;
	size_t nr;
	struct knode **by_ptr; /* sorted by layer pointer */
};

static int cmp_by_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)(*(struct knode *const *)a)->l;
	uintptr_t y = (uintptr_t)(*(struct knode *const *)b)->l;

	return x < y ? -1 : x > y;
}

static struct knode *knode_of(struct ktree *t, struct layer *l)
{
	size_t lo = 0, hi = t->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if ((uintptr_t)t->by_ptr[mid]->l < (uintptr_t)l)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < t->nr && t->by_ptr[lo]->l == l ? t->by_ptr[lo] : NULL;
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
	free(t->by_ptr);
	memset(t, 0, sizeof(*t));
}

/* The pool's layer tree restricted to the live devices, numbered canonically. */
static int ktree_build(struct pool *pool, struct ktree *t)
{
	struct knode **kept = NULL, **stack = NULL;
	size_t nr_kept = 0, i = 0, sp = 0;
	uint64_t next = 1;
	int rc = -ENOMEM;

	memset(t, 0, sizeof(*t));
	for (struct layer *l = pool->layers; l; l = l->next)
		t->nr++;
	t->n = calloc(t->nr ? t->nr : 1, sizeof(*t->n));
	t->by_ptr = calloc(t->nr ? t->nr : 1, sizeof(*t->by_ptr));
	if (!t->n || !t->by_ptr)
		goto out;
	for (struct layer *l = pool->layers; l; l = l->next, i++) {
		t->n[i].l = l;
		t->n[i].min_dev = UINT64_MAX;
		t->by_ptr[i] = &t->n[i];
	}
	qsort(t->by_ptr, t->nr, sizeof(*t->by_ptr), cmp_by_ptr);
	for (struct device *d = pool->devices; d; d = d->next) {
		if (d->deleted)
			continue;
		for (struct layer *l = d->layer; l; l = l->parent) {
			struct knode *k = knode_of(t, l);
			if (!k) {
				rc = -EUCLEAN;
				goto out;
			}
			k->live++;
			if (d->row.id < k->min_dev)
				k->min_dev = d->row.id;
		}
		knode_of(t, d->layer)->leaf = true;
	}
	for (i = 0; i < t->nr; i++) {
		struct knode *k = &t->n[i];
		size_t branches = 0;
		for (size_t c = 0; c < k->l->nr_children; c++)
			branches += knode_of(t, k->l->children[c])->live > 0;
		k->kept = k->leaf || branches >= 2;
		nr_kept += k->kept;
	}
	kept = calloc(nr_kept ? nr_kept : 1, sizeof(*kept));
	stack = calloc(nr_kept ? nr_kept : 1, sizeof(*stack));
	if (!kept || !stack)
		goto out;
	nr_kept = 0;
	for (i = 0; i < t->nr; i++) {
		struct knode *k = &t->n[i];
		if (!k->kept)
			continue;
		for (struct layer *a = k->l->parent; a && !k->kparent; a = a->parent) {
			struct knode *ka = knode_of(t, a);
			if (ka->kept)
				k->kparent = ka;
		}
		kept[nr_kept++] = k;
	}
	qsort(kept, nr_kept, sizeof(*kept), cmp_siblings);
	/* preorder: push the roots (in reverse, so the smallest pops first) */
	for (i = nr_kept; i-- > 0;)
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
	return strcmp((*(struct set *const *)a)->row.name, (*(struct set *const *)b)->row.name);
}

static int put_sets(FILE *out, struct pool *pool)
{
	struct set **list;
	size_t n = 0, i = 0;

	for (struct set *s = pool->sets; s; s = s->next)
		n++;
	list = calloc(n ? n : 1, sizeof(*list));
	if (!list)
		return -ENOMEM;
	for (struct set *s = pool->sets; s; s = s->next)
		list[i++] = s;
	qsort(list, n, sizeof(*list), cmp_set_name);
	for (i = 0; i < n; i++) {
		fputs("  <!-- thinfs set name=\"", out);
		interop_put_escaped(out, list[i]->row.name);
		fprintf(out, "\" ctime=\"%lld\" -->\n", (long long)list[i]->row.ctime);
	}
	free(list);
	return 0;
}

static int cmp_dev_id(const void *a, const void *b)
{
	uint64_t x = (*(struct device *const *)a)->row.id, y = (*(struct device *const *)b)->row.id;

	return x < y ? -1 : x > y;
}

static void put_device(FILE *out, struct pool *pool, struct device *d, const struct tview *v,
		       uint64_t parent_layer)
{
	const struct meta_device_row *r = &d->row;

	fprintf(out, "  <!-- thinfs device dev_id=\"%llu\" set=\"", (unsigned long long)r->id);
	interop_put_escaped(out, r->set);
	fputs("\" name=\"", out);
	interop_put_escaped(out, r->name);
	fprintf(out,
		"\" size=\"%llu\" read_only=\"%d\" origin=\"%llu\" ctime=\"%lld\" mtime=\"%lld\" "
		"uid=\"%u\" gid=\"%u\" mode=\"%u\" parent_layer=\"%llu\" -->\n",
		(unsigned long long)r->size, r->read_only ? 1 : 0, (unsigned long long)r->origin,
		(long long)r->ctime, (long long)r->mtime, r->uid, r->gid, r->mode,
		(unsigned long long)parent_layer);
	fprintf(out,
		"  <device dev_id=\"%llu\" mapped_blocks=\"%zu\" transaction=\"%llu\" "
		"creation_time=\"%llu\" snap_time=\"%llu\">\n",
		(unsigned long long)r->id, v->n, (unsigned long long)pool->prow.transaction_id,
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
	struct device **devs = NULL;
	struct ktree t = {0};
	size_t n = 0, i = 0;
	int rc;

	interop_lock(pool);
	rc = ktree_build(pool, &t);
	if (rc)
		goto out;
	for (struct device *d = pool->devices; d; d = d->next)
		n += !d->deleted;
	devs = calloc(n ? n : 1, sizeof(*devs));
	if (!devs) {
		rc = -ENOMEM;
		goto out;
	}
	for (struct device *d = pool->devices; d; d = d->next)
		if (!d->deleted)
			devs[i++] = d;
	qsort(devs, n, sizeof(*devs), cmp_dev_id);
	fprintf(out,
		"<superblock uuid=\"%s\" time=\"%llu\" transaction=\"%llu\" flags=\"0\" "
		"version=\"2\" data_block_size=\"%llu\" nr_data_blocks=\"%llu\">\n",
		pool->prow.uuid, (unsigned long long)pool->prow.pool_time,
		(unsigned long long)pool->prow.transaction_id,
		(unsigned long long)(pool->block_size / 512),
		(unsigned long long)pool->prow.nr_data_blocks);
	fputs("  <!-- thinfs dump version=\"1\" -->\n", out);
	rc = put_sets(out, pool);
	if (rc)
		goto out;
	put_layers(out, &t);
	for (i = 0; i < n && !rc; i++) {
		struct tview v;
		struct knode *leaf = knode_of(&t, devs[i]->layer);
		rc = interop_view(pool, devs[i], &v);
		if (rc)
			break;
		put_device(out, pool, devs[i], &v, leaf->kparent ? leaf->kparent->canon : 0);
		tview_free(&v);
	}
	if (!rc)
		fputs("</superblock>\n", out);
out:
	interop_unlock(pool);
	ktree_free(&t);
	free(devs);
	if (!rc && (fflush(out) || ferror(out)))
		rc = -EIO;
	if (rc)
		set_msg(msg, msglen, rc, "dump failed: %s", strerror(-rc));
	return rc;
}
