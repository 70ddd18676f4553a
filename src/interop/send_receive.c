/* SPDX-License-Identifier: MIT */
/*
 * send_receive.c - one device as a self-describing stream, full or as the
 * blocks that differ from a base, and its reception into another pool (or
 * the same one): replication that never guesses.
 *
 * Identity.  A device is known across pools by (pool uuid, device id,
 * creation time, ctime, generation) of the device it is a copy of.  The
 * generation (engine/meta.h) moves whenever the content can change: a writer
 * makes it odd before its first change and the last close makes it even
 * again; resize adds 2; set members are never written, so theirs never
 * moves.  A device made here is its own identity; one made by pool_receive
 * is the sender's, kept in its row's copy_of (written in the transaction
 * that makes it) and valid only while its own generation is still 0, the one
 * it was received with: once written, it is itself again (a new identity no
 * stream names).  So a chain A -> B -> C names the same content all along,
 * and a written copy is never taken for what it was.
 *
 * The rules:
 *  - send refuses a snapshot or base that is being written (odd generation),
 *    and fails if the snapshot's generation moved while it was read (checked
 *    on a second connection, past a read-only view);
 *  - an incremental stream may be made against ANY device of the pool: the
 *    delta compares the two mappings (same data block = same bytes), exact
 *    for unrelated devices too, as long as neither changes (the generations
 *    say so);
 *  - receive takes as base the local device whose identity is the stream's
 *    base identity, and refuses with the base's name when none is, when the
 *    copy here was written since it was received, or when the sender's base
 *    changed since the copy here was sent (a generation mismatch), and as a
 *    last guard when the base's mapped count and vblock hash differ.
 *
 * The stream (integers little-endian), version 2:
 *   header  "THINFSND" u32 version=2 u32 flags(1 = incremental)
 *           u64 block_size u64 size u64 mapped u64 vbhash u64 planned
 *           identity(snap) u16 len + name(snap)
 *           [identity(base) u64 base_mapped u64 base_vbhash u16 len + name(base)]
 *           u32 crc32c(header)
 *     identity = char uuid[40] u64 dev_id u64 creation_time i64 ctime u64 generation
 *     planned  = blocks the 'D' and 'Z' records will cover (for progress)
 *   records u8 type u64 vblock u64 count [data] u32 crc32c(record)
 *     'D' count blocks' bytes (at most RECORD_BYTES, or one block; the last
 *         block of the device only up to size)
 *     'Z' count blocks mapped and all zeros (no data)
 *     'U' count blocks unmapped (incremental only)
 *     'E' the end: count = records before it, then u64 data blocks, u64 zero
 *         blocks, u64 unmapped blocks, u32 chain; chain = crc32c, seeded with
 *         the header's, over the checksums of every record before, in order.
 *   Records come in increasing vblock order, never overlapping.
 * A full stream covers every mapped block with 'D' or 'Z'; an incremental
 * one every vblock (below the new size) the two devices map differently.
 * Every byte is under exactly one record checksum, and the chain fixes the
 * records' number and order, so the data is checksummed once, not twice.
 *
 * Receiving is all or nothing (engine/pool_stage.h): the device is staged
 * aside, each record is verified before it is staged (a corrupt stream fails
 * at its first bad record, named by its vblock), then the end record, the
 * counts and the result's mapping against the header; only then is it made,
 * with its identity, in one transaction.  A refused or failed receive leaves
 * meta.db byte for byte as it was (no transaction at all) and the data file
 * reading as before.
 *
 * Speed: the snapshot is read 16 MiB (CHUNK_BYTES) at a time, each run of
 * it with one I/O (pool_read), while a consumer thread (xfer_queue.c) turns
 * the chunk before into records, one fwrite each; the receiver reads and
 * verifies a record while its consumer stages the one before, a record's
 * blocks as one run with one write; CRC32C uses the SSE4.2 instruction
 * where there is one.
 *
 * Locking: the mappings are read inside interop_lock (one consistent view);
 * the data is read through an open volume, the staging takes its own locks;
 * the writer (send) and the stage (receive) belong to the consumer thread
 * until xq_finish, the counters and the progress to the caller's.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "interop_internal.h"
#include "engine/pool_stage.h"
#include "engine/util.h"

#define SEND_MAGIC "THINFSND"
#define SEND_VERSION 2u
#define F_INCREMENTAL 1u
#define NAME_BYTES (2 * POOL_NAME_MAX + 2)
#define REC_HDR 17			 /* type + vblock + count */
#define ID_BYTES 72			 /* an identity */
#define HDR_FIXED 56			 /* magic to planned */
#define RECORD_BYTES ((uint64_t)4 << 20) /* data a record carries (or one block) */
#define IO_ALIGN 4096

/* ---- little-endian fields ---- */

static void put_u16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get_u16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_u32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* ---- what both sides compute ---- */

struct summary {
	uint64_t mapped, vbhash;
};

static void summary_add(struct summary *s, uint64_t vblock)
{
	unsigned char b[8];

	put_u64(b, vblock);
	for (int k = 0; k < 8; k++) {
		s->vbhash ^= b[k];
		s->vbhash *= 1099511628211ull;
	}
	s->mapped++;
}

#define SUMMARY_INIT                                                                               \
	{                                                                                          \
		0, 1469598103934665603ull                                                          \
	}

/* The mapped count and a hash (FNV-1a) of the mapped vblocks of a view. */
static struct summary summarize(const struct tview *v)
{
	struct summary s = SUMMARY_INIT;

	for (size_t i = 0; i < v->n; i++)
		summary_add(&s, v->m[i].vblock);
	return s;
}

static void summary_cb(void *arg, uint64_t vblock)
{
	summary_add(arg, vblock);
}

/* ---- identities ---- */

static bool same_identity(const struct ix_identity *a, const struct ix_identity *b)
{
	return !strcmp(a->uuid, b->uuid) && a->dev_id == b->dev_id &&
	       a->creation_time == b->creation_time && a->ctime == b->ctime &&
	       a->generation == b->generation;
}

/* The same device, whatever its generation. */
static bool same_device(const struct ix_identity *a, const struct ix_identity *b)
{
	struct ix_identity c = *b;

	c.generation = a->generation;
	return same_identity(a, &c);
}

static void encode_copy_of(const struct ix_identity *id, char *out, size_t len)
{
	snprintf(out, len, "%s %" PRIu64 " %" PRIu64 " %" PRId64 " %" PRIu64, id->uuid, id->dev_id,
		 id->creation_time, id->ctime, id->generation);
}

static bool decode_copy_of(const char *s, struct ix_identity *id)
{
	memset(id, 0, sizeof(*id));
	return sscanf(s, "%39s %" SCNu64 " %" SCNu64 " %" SCNd64 " %" SCNu64, id->uuid, &id->dev_id,
		      &id->creation_time, &id->ctime, &id->generation) == 5;
}

/* What the device is a copy of (*src), from its row or, for a device
 * received before format 2, meta_interop's table: false when it is nobody's
 * copy.  Its own generation must still be 0 for the copy to be exact. */
static bool copy_source(struct meta_ix *x, const struct idev *d, struct ix_identity *src)
{
	struct meta_ix_recv rr;

	if (d->row.copy_of[0])
		return decode_copy_of(d->row.copy_of, src);
	if (x && !meta_ix_recv_get(x, d->row.id, &rr) &&
	    rr.dev_creation_time == d->row.creation_time && rr.dev_ctime == d->row.ctime) {
		*src = rr.src;
		src->generation = 0;
		return true;
	}
	return false;
}

static void own_identity(struct pool *pool, const struct idev *d, struct ix_identity *id)
{
	struct meta_pool_row prow;

	memset(id, 0, sizeof(*id));
	pool_view_pool_row(pool, &prow);
	snprintf(id->uuid, sizeof(id->uuid), "%s", prow.uuid);
	id->dev_id = d->row.id;
	id->creation_time = d->row.creation_time;
	id->ctime = d->row.ctime;
	id->generation = d->row.generation;
}

/* The identity a device carries (pool lock held). */
static void identity_of(struct pool *pool, struct meta_ix *x, const struct idev *d,
			struct ix_identity *id)
{
	if (copy_source(x, d, id) && d->row.generation == 0)
		return;
	own_identity(pool, d, id);
}

static void full_name(const struct idev *d, char *out, size_t len)
{
	snprintf(out, len, "%s%s%s", d->row.set, d->row.set[0] ? "/" : "", d->row.name);
}

/* ---- the header ---- */

struct header {
	uint32_t flags, crc;
	uint64_t block_size, size, planned;
	struct summary snap_sum, base_sum;
	struct ix_identity snap, base;
	char snap_name[NAME_BYTES], base_name[NAME_BYTES];
};

static size_t put_identity(unsigned char *p, const struct ix_identity *id)
{
	memset(p, 0, 40);
	for (size_t i = 0; i < 39 && id->uuid[i]; i++)
		p[i] = (unsigned char)id->uuid[i];
	put_u64(p + 40, id->dev_id);
	put_u64(p + 48, id->creation_time);
	put_u64(p + 56, (uint64_t)id->ctime);
	put_u64(p + 64, id->generation);
	return ID_BYTES;
}

static size_t get_identity(const unsigned char *p, struct ix_identity *id)
{
	snprintf(id->uuid, sizeof(id->uuid), "%.*s", 39, (const char *)p);
	id->dev_id = get_u64(p + 40);
	id->creation_time = get_u64(p + 48);
	id->ctime = (int64_t)get_u64(p + 56);
	id->generation = get_u64(p + 64);
	return ID_BYTES;
}

static size_t put_name(unsigned char *p, const char *name)
{
	size_t n = strlen(name);

	put_u16(p, (uint16_t)n);
	memcpy(p + 2, name, n); // NOLINT(bugprone-not-null-terminated-result): counted bytes
	return 2 + n;
}

/* Encode h into buf (big enough: 2 KiB); returns the length with its CRC. */
static size_t encode_header(struct header *h, unsigned char *buf)
{
	size_t o;

	memcpy(buf, SEND_MAGIC, 8); // NOLINT(bugprone-not-null-terminated-result): 8 bytes
	put_u32(buf + 8, SEND_VERSION);
	put_u32(buf + 12, h->flags);
	put_u64(buf + 16, h->block_size);
	put_u64(buf + 24, h->size);
	put_u64(buf + 32, h->snap_sum.mapped);
	put_u64(buf + 40, h->snap_sum.vbhash);
	put_u64(buf + 48, h->planned);
	o = HDR_FIXED;
	o += put_identity(buf + o, &h->snap);
	o += put_name(buf + o, h->snap_name);
	if (h->flags & F_INCREMENTAL) {
		o += put_identity(buf + o, &h->base);
		put_u64(buf + o, h->base_sum.mapped);
		put_u64(buf + o + 8, h->base_sum.vbhash);
		o += 16;
		o += put_name(buf + o, h->base_name);
	}
	h->crc = crc32c(0, buf, o);
	put_u32(buf + o, h->crc);
	return o + 4;
}

/* ---- writing ---- */

struct writer {
	FILE *out;
	uint32_t chain; /* over the record checksums, seeded with the header's */
	uint64_t nr_records, nr_data, nr_zero, nr_unmap;
	int err;
};

static void w_put(struct writer *w, const void *buf, size_t len)
{
	if (!w->err && len && fwrite(buf, 1, len, w->out) != len)
		w->err = -EIO;
}

static void w_record(struct writer *w, char type, uint64_t vb, uint64_t count, const void *data,
		     size_t len)
{
	unsigned char hdr[REC_HDR], tail[4];
	uint32_t crc;

	hdr[0] = (unsigned char)type;
	put_u64(hdr + 1, vb);
	put_u64(hdr + 9, count);
	crc = crc32c(0, hdr, REC_HDR);
	if (len)
		crc = crc32c(crc, data, len);
	put_u32(tail, crc);
	w_put(w, hdr, REC_HDR);
	w_put(w, data, len);
	w_put(w, tail, 4);
	w->chain = crc32c(w->chain, tail, 4);
	w->nr_records++;
}

/* One step of the plan: send blocks [begin, begin+len) or unmap them. */
struct step {
	uint64_t begin, len;
	bool unmap;
};

struct plan {
	struct step *s;
	size_t n, cap;
	uint64_t limit;	 /* vblocks of the snapshot */
	uint64_t blocks; /* to send as 'D' or 'Z' */
	int err;
};

static void plan_add(struct plan *p, uint64_t begin, uint64_t len, bool unmap)
{
	if (p->err || begin >= p->limit)
		return;
	if (len > p->limit - begin)
		len = p->limit - begin;
	if (!unmap)
		p->blocks += len;
	if (p->n && p->s[p->n - 1].unmap == unmap &&
	    p->s[p->n - 1].begin + p->s[p->n - 1].len == begin) {
		p->s[p->n - 1].len += len; /* one step for a run */
		return;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 256;
		struct step *n = realloc(p->s, cap * sizeof(*n));
		if (!n) {
			p->err = -ENOMEM;
			return;
		}
		p->s = n;
		p->cap = cap;
	}
	p->s[p->n++] = (struct step){begin, len, unmap};
}

static void plan_delta(void *arg, enum delta_kind kind, uint64_t begin, uint64_t len)
{
	if (kind != D_SAME)
		plan_add(arg, begin, len, kind == D_LEFT_ONLY);
}

static bool all_zero(const unsigned char *p, size_t len)
{
	/* the first byte zero and every byte equal to the next: memcmp's speed */
	return !len || (!p[0] && !memcmp(p, p + 1, len - 1));
}

struct sender {
	struct pool *pool;
	struct volume *vol;
	struct writer w; /* the consumer thread's, until xq_finish */
	struct xq q;
	const struct pool_progress *pg;
	uint64_t bs, size, chunk, rec_blocks, done, total;
};

/* Bytes of block vb (the device's last block may be short). */
static size_t block_len(const struct sender *c, uint64_t vb)
{
	uint64_t left = c->size - vb * c->bs;

	return (size_t)(left < c->bs ? left : c->bs);
}

#define CHUNK_BYTES ((uint64_t)16 << 20) /* read at once: deep enough to keep the disk busy */
#define CHUNK_MAX_BLOCKS (CHUNK_BYTES / POOL_MIN_BLOCK_SIZE)

/* The records of the n blocks from vb read into buf: each run of data
 * blocks one 'D', each run of zero blocks one 'Z'. */
static void send_chunk(struct sender *c, const unsigned char *buf, uint64_t vb, uint64_t n)
{
	bool zero[CHUNK_MAX_BLOCKS];

	for (uint64_t i = 0; i < n; i++)
		zero[i] = all_zero(buf + i * c->bs, block_len(c, vb + i));
	for (uint64_t i = 0, j; i < n && !c->w.err; i = j) {
		size_t len = block_len(c, vb + i);
		for (j = i + 1; j < n && zero[j] == zero[i] && (zero[i] || j - i < c->rec_blocks);
		     j++)
			len += block_len(c, vb + j);
		if (zero[i]) {
			w_record(&c->w, 'Z', vb + i, j - i, NULL, 0);
			c->w.nr_zero += j - i;
		} else {
			w_record(&c->w, 'D', vb + i, j - i, buf + i * c->bs, len);
			c->w.nr_data += j - i;
		}
	}
}

static void progress(const struct pool_progress *pg, uint64_t done, uint64_t total)
{
	if (pg && pg->fn)
		pg->fn(pg->arg, done, total);
}

/* The consumer thread: a chunk read, or an unmapped run, into records. */
static int send_consume(void *arg, struct xq_item *it)
{
	struct sender *c = arg;

	if (it->type == 'U') {
		w_record(&c->w, 'U', it->vblock, it->count, NULL, 0);
		c->w.nr_unmap += it->count;
	} else {
		send_chunk(c, it->buf, it->vblock, it->count);
	}
	return c->w.err;
}

/* One step: its blocks read a chunk at a time (each run of it one I/O),
 * handed to the consumer while the next chunk is read. */
static int send_step(struct sender *c, const struct step *s)
{
	for (uint64_t vb = s->begin; vb < s->begin + s->len;) {
		uint64_t n = s->begin + s->len - vb < c->chunk ? s->begin + s->len - vb : c->chunk;
		size_t len = (size_t)((n - 1) * c->bs) + block_len(c, vb + n - 1);
		struct xq_item *it = xq_get(&c->q);
		ssize_t got;

		if (!it)
			return 0; /* the consumer failed: xq_finish says why */
		*it = (struct xq_item){.buf = it->buf,
				       .type = s->unmap ? 'U' : 'D',
				       .vblock = vb,
				       .count = s->unmap ? s->len : n};
		if (s->unmap) {
			xq_push(&c->q);
			return 0;
		}
		got = pool_read(c->vol, it->buf, len, vb * c->bs);
		if (got != (ssize_t)len)
			return got < 0 ? (int)got : -EIO;
		xq_push(&c->q);
		vb += n;
		c->done += n * c->bs;
		progress(c->pg, c->done, c->total);
	}
	return 0;
}

/* Read the planned blocks of the snapshot and write their records. */
static int send_blocks(struct sender *c, const char *snap, const struct plan *p)
{
	int rc, wrc;

	c->rec_blocks = c->bs >= RECORD_BYTES ? 1 : RECORD_BYTES / c->bs;
	c->chunk = c->bs >= CHUNK_BYTES ? 1 : CHUNK_BYTES / c->bs;
	rc = pool_volume_open(c->pool, snap, &c->vol);
	if (rc)
		return rc;
	rc = xq_start(&c->q, (size_t)(c->chunk * c->bs), send_consume, c);
	for (size_t i = 0; i < p->n && !rc; i++)
		rc = send_step(c, &p->s[i]);
	wrc = xq_finish(&c->q, NULL);
	if (wrc && !c->w.err)
		c->w.err = wrc;
	pool_volume_close(c->vol);
	return rc;
}

/* Neither device may be in the middle of being written. */
static int check_stable(const struct idev *d, const char *what, char *msg, size_t msglen)
{
	char name[NAME_BYTES];

	if (!(d->row.generation & 1))
		return 0;
	full_name(d, name, sizeof(name));
	return set_msg(msg, msglen, -EBUSY,
		       "%s '%s' is being written (generation %llu): send a snapshot of it", what,
		       name, (unsigned long long)d->row.generation);
}

struct send_devs {
	struct idev snap, base;
};

/* Find the devices and their views (inside interop_lock). */
static int find_send_devices(struct pool *pool, const char *snap, const char *from,
			     struct send_devs *sd, struct tview *vs, struct tview *vbase, char *msg,
			     size_t msglen)
{
	int rc;

	if (interop_find_device(pool, snap, &sd->snap))
		return set_msg(msg, msglen, -ENOENT, "volume '%s' does not exist", snap);
	if (from && interop_find_device(pool, from, &sd->base))
		return set_msg(msg, msglen, -ENOENT, "base volume '%s' does not exist", from);
	rc = check_stable(&sd->snap, "volume", msg, msglen);
	if (!rc && from)
		rc = check_stable(&sd->base, "base", msg, msglen);
	if (rc)
		return rc;
	rc = interop_view(pool, &sd->snap, vs);
	if (!rc && from)
		rc = interop_view(pool, &sd->base, vbase);
	if (rc)
		set_msg(msg, msglen, rc, "cannot read the mappings: %s", strerror(-rc));
	return rc;
}

/* A full stream of a volume over an external origin (pool_create_origin)
 * carries the origin's bytes too, as the volume reads them: every block the
 * origin covers, then the mapped ones past it.  The receiver maps them all,
 * so the header's summary is the plan's.  An incremental stream against or
 * of such a volume is refused: its delta of mappings does not see the
 * origin. */
static int plan_origin(struct plan *p, const struct tview *vs, uint64_t origin_size, uint64_t bs,
		       struct summary *sum)
{
	uint64_t covered = div_round_up(origin_size, bs);

	plan_add(p, 0, covered, false);
	for (size_t i = 0; i < vs->n; i++)
		if (vs->m[i].vblock >= covered)
			plan_add(p, vs->m[i].vblock, 1, false);
	*sum = (struct summary)SUMMARY_INIT;
	for (size_t i = 0; i < p->n; i++)
		for (uint64_t vb = p->s[i].begin; vb < p->s[i].begin + p->s[i].len; vb++)
			summary_add(sum, vb);
	return p->err;
}

/* The external origins of the snapshot and the base (pool.h): outside
 * interop_lock, which pool_device_info would wait for. */
static int send_origins(struct pool *pool, const char *snap, const char *from,
			struct pool_device_info *si, char *msg, size_t msglen)
{
	struct pool_device_info bi;

	memset(si, 0, sizeof(*si));
	if (pool_device_info(pool, snap, si))
		return 0; /* the plan says it does not exist */
	if (!from || pool_device_info(pool, from, &bi))
		return 0;
	if (si->origin_path[0] || bi.origin_path[0])
		return set_msg(msg, msglen, -EOPNOTSUPP,
			       "'%s' is a volume over an external origin: an incremental "
			       "stream would not carry the origin's data; send it in full",
			       si->origin_path[0] ? snap : from);
	return 0;
}

/* The header and the plan of blocks to send, from one consistent view of
 * the snapshot (and of the base, for an incremental stream). */
static int send_plan(struct pool *pool, struct meta_ix *x, const char *snap, const char *from,
		     struct header *h, struct plan *p, struct idev *snap_dev, char *msg,
		     size_t msglen)
{
	struct tview vs = {0}, vbase = {0};
	struct pool_device_info oi;
	struct send_devs sd;
	int rc = send_origins(pool, snap, from, &oi, msg, msglen);

	if (rc)
		return rc;
	interop_lock(pool);
	rc = find_send_devices(pool, snap, from, &sd, &vs, &vbase, msg, msglen);
	if (!rc && oi.origin_path[0] && oi.id != sd.snap.row.id)
		rc = set_msg(msg, msglen, -EAGAIN, "'%s' was replaced while planning", snap);
	if (rc)
		goto out;
	*snap_dev = sd.snap;
	h->size = sd.snap.row.size;
	h->snap_sum = summarize(&vs);
	identity_of(pool, x, &sd.snap, &h->snap);
	full_name(&sd.snap, h->snap_name, sizeof(h->snap_name));
	p->limit = div_round_up(h->size, pool_view_block_size(pool));
	if (from) {
		h->flags |= F_INCREMENTAL;
		h->base_sum = summarize(&vbase);
		identity_of(pool, x, &sd.base, &h->base);
		full_name(&sd.base, h->base_name, sizeof(h->base_name));
		delta_walk(&vbase, &vs, plan_delta, p);
	} else if (oi.origin_path[0]) {
		plan_origin(p, &vs, oi.origin_size, pool_view_block_size(pool), &h->snap_sum);
	} else {
		for (size_t i = 0; i < vs.n; i++)
			plan_add(p, vs.m[i].vblock, 1, false);
	}
	h->planned = p->blocks;
	if (p->err)
		rc = set_msg(msg, msglen, p->err, "cannot plan the stream: %s", strerror(-p->err));
out:
	interop_unlock(pool);
	tview_free(&vs);
	tview_free(&vbase);
	return rc;
}

/* The end record: the counts and the chain, under a checksum of its own. */
static void send_end(struct writer *w)
{
	unsigned char end[28], hdr[REC_HDR], tail[4];

	put_u64(end, w->nr_data);
	put_u64(end + 8, w->nr_zero);
	put_u64(end + 16, w->nr_unmap);
	put_u32(end + 24, w->chain);
	hdr[0] = 'E';
	put_u64(hdr + 1, 0);
	put_u64(hdr + 9, w->nr_records);
	put_u32(tail, crc32c(crc32c(0, hdr, REC_HDR), end, 28));
	w_put(w, hdr, REC_HDR);
	w_put(w, end, 28);
	w_put(w, tail, 4);
}

/* The snapshot's generation in meta.db now must be the one it had when it
 * was planned: nobody wrote it while it was read (a read-only pool's view
 * would not show it). */
static int check_unchanged(struct meta_ix *x, const struct idev *d, char *msg, size_t msglen)
{
	char name[NAME_BYTES];
	uint64_t gen;

	if (!x || meta_ix_device_generation(x, d->row.id, &gen))
		return 0; /* no second connection, or a format-1 pool */
	if (gen == d->row.generation)
		return 0;
	full_name(d, name, sizeof(name));
	return set_msg(msg, msglen, -ESTALE,
		       "'%s' was written while it was sent (generation %llu -> %llu)", name,
		       (unsigned long long)d->row.generation, (unsigned long long)gen);
}

int pool_send_progress(struct pool *pool, const char *snap, const char *from, FILE *out,
		       const struct pool_progress *pg, char *msg, size_t msglen)
{
	struct header h = {.block_size = pool_view_block_size(pool)};
	struct sender c = {.pool = pool, .w = {.out = out}, .pg = pg, .bs = h.block_size};
	struct plan p = {0};
	struct meta_ix *x = NULL;
	unsigned char hbuf[2048];
	struct idev snap_dev;
	int rc;

	/* the pool's own connection is idle or reading: a second one may read */
	if (meta_ix_open(pool_view_meta_path(pool), true, &x))
		x = NULL;
	rc = send_plan(pool, x, snap, from, &h, &p, &snap_dev, msg, msglen);
	if (rc)
		goto out;
	w_put(&c.w, hbuf, encode_header(&h, hbuf));
	c.w.chain = h.crc;
	c.size = h.size;
	c.total = p.blocks * c.bs;
	rc = send_blocks(&c, snap, &p);
	if (rc) {
		set_msg(msg, msglen, rc, "cannot read '%s': %s", snap, strerror(-rc));
		goto out;
	}
	send_end(&c.w);
	if (!c.w.err && fflush(out))
		c.w.err = -EIO;
	if (c.w.err) {
		rc = set_msg(msg, msglen, c.w.err, "cannot write the stream: %s",
			     strerror(-c.w.err));
		goto out;
	}
	rc = check_unchanged(x, &snap_dev, msg, msglen);
	progress(pg, c.done, c.total);
out:
	meta_ix_close(x);
	free(p.s);
	return rc;
}

int pool_send(struct pool *pool, const char *snap, const char *from, FILE *out, char *msg,
	      size_t msglen)
{
	return pool_send_progress(pool, snap, from, out, NULL, msg, msglen);
}

/* ---- receiving ---- */

static int r_get(FILE *in, void *buf, size_t len)
{
	if (len && fread(buf, 1, len, in) != len)
		return ferror(in) ? -EIO : -EPIPE;
	return 0;
}

/* The fixed part and the snapshot's identity and name (into b, o bytes). */
static int read_header_snap(FILE *in, unsigned char *b, size_t *o, struct header *h, char *msg,
			    size_t msglen)
{
	size_t n;

	if (r_get(in, b, HDR_FIXED + ID_BYTES + 2))
		return set_msg(msg, msglen, -EINVAL, "not a thinfs stream (too short)");
	if (memcmp(b, SEND_MAGIC, 8))
		return set_msg(msg, msglen, -EINVAL, "not a thinfs stream (bad magic)");
	if (get_u32(b + 8) != SEND_VERSION)
		return set_msg(msg, msglen, -EPROTONOSUPPORT, "stream version %u (this reads %u)",
			       get_u32(b + 8), SEND_VERSION);
	h->flags = get_u32(b + 12);
	h->block_size = get_u64(b + 16);
	h->size = get_u64(b + 24);
	h->snap_sum.mapped = get_u64(b + 32);
	h->snap_sum.vbhash = get_u64(b + 40);
	h->planned = get_u64(b + 48);
	*o = HDR_FIXED + get_identity(b + HDR_FIXED, &h->snap);
	n = get_u16(b + *o);
	*o += 2;
	if (n >= NAME_BYTES || h->flags & ~F_INCREMENTAL)
		return set_msg(msg, msglen, -EINVAL, "corrupt stream header");
	if (r_get(in, b + *o, n + ((h->flags & F_INCREMENTAL) ? ID_BYTES + 16 + 2 : 0)))
		return set_msg(msg, msglen, -EINVAL, "the stream ends in its header");
	memcpy(h->snap_name, b + *o, n);
	h->snap_name[n] = 0;
	*o += n;
	return 0;
}

static int read_header(FILE *in, struct header *h, char *msg, size_t msglen)
{
	unsigned char b[2048];
	size_t o = 0, n;
	int rc = read_header_snap(in, b, &o, h, msg, msglen);

	if (rc)
		return rc;
	if (h->flags & F_INCREMENTAL) {
		o += get_identity(b + o, &h->base);
		h->base_sum.mapped = get_u64(b + o);
		h->base_sum.vbhash = get_u64(b + o + 8);
		n = get_u16(b + o + 16);
		o += 18;
		if (n >= NAME_BYTES || r_get(in, b + o, n))
			return set_msg(msg, msglen, -EINVAL, "corrupt stream header");
		memcpy(h->base_name, b + o, n);
		h->base_name[n] = 0;
		o += n;
	}
	h->crc = crc32c(0, b, o);
	if (r_get(in, b + o, 4) || get_u32(b + o) != h->crc)
		return set_msg(msg, msglen, -EBADMSG, "stream header checksum mismatch");
	if (h->block_size < POOL_MIN_BLOCK_SIZE || h->block_size > POOL_MAX_BLOCK_SIZE)
		return set_msg(msg, msglen, -EINVAL, "corrupt stream header (block size)");
	return 0;
}

/* Why a device that is (a copy of) the stream's base device is not the base
 * it needs: 0 if it is, else -ESTALE with the reason. */
static int base_mismatch(struct pool *pool, struct meta_ix *x, const struct header *h,
			 const struct idev *d, char *msg, size_t msglen)
{
	struct ix_identity src, own;
	char name[NAME_BYTES];

	full_name(d, name, sizeof(name));
	own_identity(pool, d, &own);
	if (copy_source(x, d, &src) && same_device(&src, &h->base)) {
		if (d->row.generation != 0)
			return set_msg(msg, msglen, -ESTALE,
				       "base '%s' was written since it was received (generation "
				       "0 -> %llu); it is not the stream's base any more",
				       name, (unsigned long long)d->row.generation);
		if (src.generation != h->base.generation)
			return set_msg(msg, msglen, -ESTALE,
				       "base '%s' is a copy of generation %llu of '%s', the stream "
				       "was made from generation %llu: the sender's base changed",
				       name, (unsigned long long)src.generation, h->base_name,
				       (unsigned long long)h->base.generation);
		return 0;
	}
	if (same_device(&own, &h->base) && own.generation != h->base.generation)
		return set_msg(msg, msglen, -ESTALE,
			       "base '%s' changed since the stream was made (generation %llu, the "
			       "stream's %llu)",
			       name, (unsigned long long)own.generation,
			       (unsigned long long)h->base.generation);
	return same_device(&own, &h->base) ? 0 : -ENOENT;
}

/* The local device that is the stream's base (inside interop_lock): 0 with
 * *out, or -ENOENT / -ESTALE with the reason. */
static int find_base(struct pool *pool, struct meta_ix *x, const struct header *h, struct idev *out,
		     char *msg, size_t msglen)
{
	struct meta_device_row *rows;
	size_t n;
	int rc = pool_view_devices(pool, &rows, &n), found = -ENOENT;

	if (rc)
		return set_msg(msg, msglen, rc, "cannot list the devices: %s", strerror(-rc));
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		struct idev d = {rows[i]};
		char name[NAME_BYTES];
		rc = base_mismatch(pool, x, h, &d, msg, msglen);
		if (rc == -ENOENT)
			continue;
		full_name(&d, name, sizeof(name));
		if (found || !strcmp(name, h->base_name)) {
			found = rc; /* the one named as the stream names it wins */
			*out = d;
		}
	}
	free(rows);
	if (found == -ENOENT)
		return set_msg(msg, msglen, -ENOENT,
			       "no device here is the stream's base '%s' (pool %s, device %llu, "
			       "generation %llu); receive that one first",
			       h->base_name, h->base.uuid, (unsigned long long)h->base.dev_id,
			       (unsigned long long)h->base.generation);
	if (found)
		base_mismatch(pool, x, h, out, msg, msglen); /* its reason, not another's */
	return found;
}

/* An incremental stream's base is here, unchanged: *base names it. */
static int receive_check(struct pool *pool, struct meta_ix *x, const struct header *h,
			 const char *name, char *base, char *msg, size_t msglen)
{
	struct idev exists, bv = {0};
	struct tview v;
	int rc = 0;

	interop_lock(pool);
	if (!interop_find_device(pool, name, &exists))
		rc = set_msg(msg, msglen, -EEXIST, "volume '%s' already exists", name);
	if (rc || !(h->flags & F_INCREMENTAL))
		goto out;
	rc = find_base(pool, x, h, &bv, msg, msglen);
	if (!rc && !(rc = interop_view(pool, &bv, &v))) {
		struct summary sum = summarize(&v);
		tview_free(&v);
		full_name(&bv, base, NAME_BYTES);
		if (sum.mapped != h->base_sum.mapped || sum.vbhash != h->base_sum.vbhash)
			rc = set_msg(msg, msglen, -ESTALE,
				     "base '%s' no longer matches the stream's base (it changed)",
				     base);
	}
out:
	interop_unlock(pool);
	return rc;
}

struct recv {
	struct pool_stage *st; /* the consumer thread's, until xq_finish */
	FILE *in;
	const struct header *h;
	const struct pool_progress *pg;
	struct xq q;
	uint64_t bs, nblocks, max_count, next_vb;
	uint32_t chain;
	uint64_t nr_records, nr_data, nr_zero, nr_unmap, done;
};

/* The end record: its checksum, the chain and the counts. */
static int receive_end(struct recv *c, const unsigned char *hdr, char *msg, size_t msglen)
{
	unsigned char end[28], tail[4];

	if (r_get(c->in, end, 28) || r_get(c->in, tail, 4))
		return set_msg(msg, msglen, -EPIPE, "the stream ends in its end record");
	if (get_u32(tail) != crc32c(crc32c(0, hdr, REC_HDR), end, 28) ||
	    get_u32(end + 24) != c->chain)
		return set_msg(msg, msglen, -EBADMSG, "stream checksum mismatch (end record)");
	if (get_u64(hdr + 9) != c->nr_records || get_u64(end) != c->nr_data ||
	    get_u64(end + 8) != c->nr_zero || get_u64(end + 16) != c->nr_unmap)
		return set_msg(msg, msglen, -EBADMSG,
			       "the stream's counts do not match its records");
	return 0;
}

/* A record's header makes sense: its type, its range, in order. */
static bool record_valid(const struct recv *c, char type, uint64_t vb, uint64_t count)
{
	if (type != 'D' && type != 'Z' && type != 'U')
		return false;
	if (!count || vb < c->next_vb || vb >= c->nblocks || count > c->nblocks - vb)
		return false;
	if (type == 'D' && count > c->max_count)
		return false;
	return type != 'U' || (c->h->flags & F_INCREMENTAL);
}

/* The consumer thread: stage one verified record. */
static int stage_record(void *arg, struct xq_item *it)
{
	struct recv *c = arg;

	if (it->type == 'U')
		return pool_stage_unmap(c->st, it->vblock, it->count);
	if (it->type == 'Z')
		return pool_stage_zero(c->st, it->vblock, it->count);
	memset(it->buf + it->len, 0, (size_t)(it->count * c->bs) - it->len); /* past the end */
	return pool_stage_write(c->st, it->vblock, it->count, it->buf);
}

/* The counts the end record must repeat, and the progress. */
static void count_record(struct recv *c, char type, uint64_t count)
{
	c->nr_records++;
	if (type == 'U') {
		c->nr_unmap += count;
		return;
	}
	if (type == 'Z')
		c->nr_zero += count;
	else
		c->nr_data += count;
	c->done += count * c->bs;
	progress(c->pg, c->done, c->h->planned * c->bs);
}

/* The rest of record hdr (its data into it->buf, its checksum), verified. */
static int read_record(struct recv *c, const unsigned char *hdr, struct xq_item *it, char *msg,
		       size_t msglen)
{
	unsigned char tail[4];

	it->type = (char)hdr[0];
	it->vblock = get_u64(hdr + 1);
	it->count = get_u64(hdr + 9);
	it->len = 0;
	if (!record_valid(c, it->type, it->vblock, it->count))
		return set_msg(msg, msglen, -EBADMSG,
			       "corrupt record at vblock %llu (type 0x%02x, %llu blocks)",
			       (unsigned long long)it->vblock, (unsigned)hdr[0],
			       (unsigned long long)it->count);
	if (it->type == 'D') {
		uint64_t end = (it->vblock + it->count) * c->bs;
		it->len = (size_t)((end > c->h->size ? c->h->size : end) - it->vblock * c->bs);
	}
	if (r_get(c->in, it->buf, it->len) || r_get(c->in, tail, 4))
		return set_msg(msg, msglen, -EPIPE, "the stream ends in the record of vblock %llu",
			       (unsigned long long)it->vblock);
	if (get_u32(tail) != crc32c(crc32c(0, hdr, REC_HDR), it->buf, it->len))
		return set_msg(msg, msglen, -EBADMSG,
			       "checksum mismatch in the record of vblock %llu",
			       (unsigned long long)it->vblock);
	c->chain = crc32c(c->chain, tail, 4);
	c->next_vb = it->vblock + it->count;
	return 0;
}

/* Every record, each verified before the consumer stages it, up to the end
 * record; 1 when the consumer failed (xq_finish says why). */
static int receive_records(struct recv *c, char *msg, size_t msglen)
{
	unsigned char hdr[REC_HDR];

	for (;;) {
		struct xq_item *it;
		int rc;

		if (r_get(c->in, hdr, REC_HDR))
			return set_msg(msg, msglen, -EPIPE,
				       "the stream ends early (no end record)");
		if (hdr[0] == 'E')
			return receive_end(c, hdr, msg, msglen);
		it = xq_get(&c->q);
		if (!it)
			return 1;
		rc = read_record(c, hdr, it, msg, msglen);
		if (rc)
			return rc;
		count_record(c, it->type, it->count);
		xq_push(&c->q);
	}
}

/* The staged device's mapping must be the sender's. */
static int check_result(struct recv *c, char *msg, size_t msglen)
{
	struct summary s = SUMMARY_INIT;

	pool_stage_foreach_mapped(c->st, summary_cb, &s);
	if (s.mapped != c->h->snap_sum.mapped || s.vbhash != c->h->snap_sum.vbhash)
		return set_msg(msg, msglen, -EBADMSG,
			       "the received device does not match the stream's (%llu blocks "
			       "mapped, the sender's %llu)",
			       (unsigned long long)s.mapped,
			       (unsigned long long)c->h->snap_sum.mapped);
	return 0;
}

/* Wait for the consumer; its error, if the stream had none (rc 1: the
 * consumer stopped the reading). */
static int finish_staging(struct recv *c, int rc, char *msg, size_t msglen)
{
	uint64_t vb = 0;
	int wrc = xq_finish(&c->q, &vb);

	if (wrc && (rc == 0 || rc == 1))
		return set_msg(msg, msglen, wrc, "cannot write vblock %llu: %s",
			       (unsigned long long)vb, strerror(-wrc));
	return rc == 1 ? -EIO : rc;
}

/* Stage the stream, verify it, and make the device with its identity. */
static int receive_stream(struct pool *pool, struct recv *c, const char *name, const char *base,
			  char *msg, size_t msglen)
{
	char copy_of[sizeof(((struct meta_device_row *)0)->copy_of)];
	int rc;

	c->bs = pool_view_block_size(pool);
	c->nblocks = div_round_up(c->h->size, c->bs);
	c->max_count = c->bs >= RECORD_BYTES ? 1 : RECORD_BYTES / c->bs;
	c->chain = c->h->crc;
	rc = pool_stage_begin(pool, name, base[0] ? base : NULL, c->h->size, &c->st, msg, msglen);
	if (rc)
		return rc;
	rc = xq_start(&c->q, (size_t)(c->max_count * c->bs), stage_record, c);
	if (rc)
		set_msg(msg, msglen, rc, "out of memory");
	else
		rc = receive_records(c, msg, msglen);
	rc = finish_staging(c, rc, msg, msglen);
	if (!rc)
		rc = check_result(c, msg, msglen);
	if (rc) {
		pool_stage_abort(c->st);
		return rc;
	}
	encode_copy_of(&c->h->snap, copy_of, sizeof(copy_of));
	rc = pool_stage_commit(c->st, copy_of, msg, msglen);
	if (!rc)
		progress(c->pg, c->done, c->h->planned * c->bs);
	return rc;
}

int pool_receive_progress(struct pool *pool, const char *name, FILE *in,
			  const struct pool_progress *pg, char *msg, size_t msglen)
{
	struct header h = {0};
	struct recv c = {.h = &h, .in = in, .pg = pg};
	struct meta_ix *x = NULL;
	char base[NAME_BYTES] = "";
	int rc = pool_name_valid(name, msg, msglen);

	if (rc)
		return rc;
	if (!pool_view_writable(pool))
		return set_msg(msg, msglen, -EROFS, "pool is open read-only");
	rc = read_header(in, &h, msg, msglen);
	if (rc)
		return rc;
	if (h.block_size != pool_view_block_size(pool))
		return set_msg(msg, msglen, -EINVAL,
			       "the stream's block size %llu is not the pool's %llu",
			       (unsigned long long)h.block_size,
			       (unsigned long long)pool_view_block_size(pool));
	/* read-only: it only looks up identities of receives before format 2 */
	if (meta_ix_open(pool_view_meta_path(pool), true, &x))
		x = NULL;
	rc = receive_check(pool, x, &h, name, base, msg, msglen);
	meta_ix_close(x);
	if (!rc)
		rc = receive_stream(pool, &c, name, base, msg, msglen);
	return rc;
}

int pool_receive(struct pool *pool, const char *name, FILE *in, char *msg, size_t msglen)
{
	return pool_receive_progress(pool, name, in, NULL, msg, msglen);
}
