/* SPDX-License-Identifier: MIT */
/*
 * thin_delta.c - which blocks two devices map differently, from the metadata
 * alone (no data is read), in two forms:
 *
 *  - thin_delta's XML (as thin-provisioning-tools 0.9 prints it without
 *    --verbose):
 *      <superblock uuid="" time="" transaction="" data_block_size="" nr_data_blocks="">
 *        <diff left="ID" right="ID">
 *          <same|different|left_only|right_only begin="VBLOCK" length="BLOCKS"/>
 *        </diff>
 *      </superblock>
 *    A vblock is "same" when both map it to one data block, "different" when
 *    to two, left_only/right_only when one maps it; vblocks neither maps are
 *    left out; neighbouring vblocks of one kind make one element.
 *  - ranges: "OFFSET LENGTH" in bytes, one line per maximal run of vblocks
 *    that are not "same" (and mapped by either), clipped at the larger size;
 *    or the same ranges as one JSON document:
 *      {"left":ID,"right":ID,"block_size":B,"ranges":[{"offset":O,"length":L},...],
 *       "nr_ranges":N,"bytes":TOTAL}
 *
 * delta_walk() is also how send finds the blocks to send.
 */
#include <errno.h>
#include <string.h>

#include "interop_internal.h"
#include "engine/util.h"

static const char *const kind_name[] = {"same", "different", "left_only", "right_only"};

void delta_walk(const struct tview *a, const struct tview *b, delta_cb cb, void *arg)
{
	size_t i = 0, j = 0;
	uint64_t begin = 0, len = 0;
	enum delta_kind cur = D_SAME;

	while (i < a->n || j < b->n) {
		enum delta_kind k;
		uint64_t vb;

		if (j >= b->n || (i < a->n && a->m[i].vblock < b->m[j].vblock)) {
			k = D_LEFT_ONLY;
			vb = a->m[i++].vblock;
		} else if (i >= a->n || b->m[j].vblock < a->m[i].vblock) {
			k = D_RIGHT_ONLY;
			vb = b->m[j++].vblock;
		} else {
			k = a->m[i].dblock == b->m[j].dblock ? D_SAME : D_DIFFERENT;
			vb = a->m[i].vblock;
			i++;
			j++;
		}
		if (len && k == cur && vb == begin + len) {
			len++;
			continue;
		}
		if (len)
			cb(arg, cur, begin, len);
		cur = k;
		begin = vb;
		len = 1;
	}
	if (len)
		cb(arg, cur, begin, len);
}

struct xml_ctx {
	FILE *out;
};

static void put_xml(void *arg, enum delta_kind kind, uint64_t begin, uint64_t len)
{
	struct xml_ctx *c = arg;

	fprintf(c->out, "    <%s begin=\"%llu\" length=\"%llu\"/>\n", kind_name[kind],
		(unsigned long long)begin, (unsigned long long)len);
}

struct ranges_ctx {
	FILE *out;
	bool json;
	uint64_t block_size, limit; /* bytes */
	uint64_t begin, len;	    /* the pending run, in blocks */
	uint64_t nr, bytes;	    /* ranges written, and their bytes */
};

static void flush_range(struct ranges_ctx *c)
{
	uint64_t off = c->begin * c->block_size, end = (c->begin + c->len) * c->block_size;

	if (end > c->limit)
		end = c->limit;
	if (c->len && off < end) {
		if (c->json)
			fprintf(c->out, "%s{\"offset\":%llu,\"length\":%llu}", c->nr ? "," : "",
				(unsigned long long)off, (unsigned long long)(end - off));
		else
			fprintf(c->out, "%llu %llu\n", (unsigned long long)off,
				(unsigned long long)(end - off));
		c->nr++;
		c->bytes += end - off;
	}
	c->len = 0;
}

static void put_range(void *arg, enum delta_kind kind, uint64_t begin, uint64_t len)
{
	struct ranges_ctx *c = arg;

	if (kind == D_SAME)
		return;
	if (c->len && begin == c->begin + c->len) {
		c->len += len; /* different, then left_only: one range */
		return;
	}
	flush_range(c);
	c->begin = begin;
	c->len = len;
}

int pool_delta(struct pool *pool, const char *a, const char *b, int format, FILE *out, char *msg,
	       size_t msglen)
{
	struct tview va = {0}, vb = {0};
	struct idev dav, dbv, *da = &dav, *db = &dbv;
	struct meta_pool_row prow;
	int rc;

	if (format != POOL_DELTA_XML && format != POOL_DELTA_RANGES &&
	    format != POOL_DELTA_RANGES_JSON)
		return set_msg(msg, msglen, -EINVAL, "unknown delta format %d", format);
	interop_lock(pool);
	if (interop_find_device(pool, a, da))
		da = NULL;
	if (interop_find_device(pool, b, db))
		db = NULL;
	pool_view_pool_row(pool, &prow);
	if (!da || !db) {
		rc = set_msg(msg, msglen, -ENOENT, "volume '%s' does not exist", da ? b : a);
		goto out;
	}
	rc = interop_view(pool, da, &va);
	if (!rc)
		rc = interop_view(pool, db, &vb);
	if (rc) {
		set_msg(msg, msglen, rc, "cannot read the mappings: %s", strerror(-rc));
		goto out;
	}
	if (format == POOL_DELTA_XML) {
		struct xml_ctx c = {out};
		fprintf(out,
			"<superblock uuid=\"%s\" time=\"%llu\" transaction=\"%llu\" "
			"data_block_size=\"%llu\" nr_data_blocks=\"%llu\">\n",
			prow.uuid, (unsigned long long)prow.pool_time,
			(unsigned long long)prow.transaction_id,
			(unsigned long long)(prow.block_size / 512),
			(unsigned long long)prow.nr_data_blocks);
		fprintf(out, "  <diff left=\"%llu\" right=\"%llu\">\n",
			(unsigned long long)da->row.id, (unsigned long long)db->row.id);
		delta_walk(&va, &vb, put_xml, &c);
		fputs("  </diff>\n</superblock>\n", out);
	} else {
		struct ranges_ctx c = {.out = out, .block_size = prow.block_size};
		c.json = format == POOL_DELTA_RANGES_JSON;
		c.limit = da->row.size > db->row.size ? da->row.size : db->row.size;
		if (c.json)
			fprintf(out,
				"{\"left\":%llu,\"right\":%llu,\"block_size\":%llu,\"ranges\":[",
				(unsigned long long)da->row.id, (unsigned long long)db->row.id,
				(unsigned long long)prow.block_size);
		delta_walk(&va, &vb, put_range, &c);
		flush_range(&c);
		if (c.json)
			fprintf(out, "],\"nr_ranges\":%llu,\"bytes\":%llu}\n",
				(unsigned long long)c.nr, (unsigned long long)c.bytes);
	}
	rc = interop_stream_done(out);
	if (rc)
		set_msg(msg, msglen, rc, "cannot write the delta: %s", strerror(-rc));
out:
	interop_unlock(pool);
	tview_free(&va);
	tview_free(&vb);
	return rc;
}
