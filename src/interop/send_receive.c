/* SPDX-License-Identifier: MIT */
/*
 * send_receive.c - one device as a self-describing stream, full or as the
 * blocks that differ from a base, and its reception into another pool (or
 * the same one).
 *
 * Identity.  A device is known across pools by (pool uuid, device id,
 * creation time, ctime) of the device it is a copy of: its own for a device
 * made here, the sender's for one made by pool_receive (meta_interop.c's
 * table), so a chain A -> B -> C keeps naming the same content.  An
 * incremental stream carries its base's identity plus the base's mapped count
 * and a hash of its mapped vblocks; the receiver takes the local device with
 * that identity as base and refuses one whose mapping no longer matches.
 * Writes into an already mapped block of a base go unnoticed (the metadata
 * does not change): bases, like ZFS snapshots, must stay unmodified.
 *
 * The stream (integers little-endian):
 *   header  "THINFSND" u32 version=1 u32 flags(1 = incremental)
 *           u64 block_size u64 size u64 mapped u64 vbhash
 *           identity(snap) u16 len + name(snap)
 *           [identity(base) u64 base_mapped u64 base_vbhash u16 len + name(base)]
 *           u32 crc32c(header)
 *     identity = char uuid[40] u64 dev_id u64 creation_time i64 ctime
 *   records u8 type u64 vblock u64 count [data] u32 crc32c(record)
 *     'D' count 1: the block's bytes (the last block: only up to size)
 *     'Z' count blocks mapped and all zeros (no data)
 *     'U' count blocks unmapped (incremental only)
 *     'E' the end: count = records before it, then u64 data, u64 zero,
 *         u64 unmapped blocks, u32 crc32c of the stream before this record
 * A full stream has a 'D' or 'Z' for every mapped block; an incremental one
 * for every vblock (below the new size) the two devices map differently.
 *
 * Receiving is all or nothing: the device is built under a temporary name
 * ("NAME.partial"), every record's checksum is checked before it is applied,
 * the end record's counts and stream checksum, the result's mapping against
 * the header; then it is synced, its identity recorded and it is renamed.
 * Any error deletes it.  A crash mid-way leaves "NAME.partial", which has no
 * identity (it can never serve as a base) and can be deleted.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "interop_internal.h"
#include "engine/util.h"

#define SEND_MAGIC "THINFSND"
#define SEND_VERSION 1u
#define F_INCREMENTAL 1u
#define NAME_BYTES (2 * POOL_NAME_MAX + 2)
#define REC_HDR 17 /* type + vblock + count */

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

/* The mapped count and a hash (FNV-1a) of the mapped vblocks of a view. */
static struct summary summarize(const struct tview *v)
{
	struct summary s = {v->n, 1469598103934665603ull};

	for (size_t i = 0; i < v->n; i++) {
		unsigned char b[8];
		put_u64(b, v->m[i].vblock);
		for (int k = 0; k < 8; k++) {
			s.vbhash ^= b[k];
			s.vbhash *= 1099511628211ull;
		}
	}
	return s;
}

/* The identity a device carries (pool lock held). */
static void identity_of(struct pool *pool, struct meta_ix *x, struct idev *d,
			struct ix_identity *id)
{
	struct meta_ix_recv rr;

	if (x && !meta_ix_recv_get(x, d->row.id, &rr) &&
	    rr.dev_creation_time == d->row.creation_time && rr.dev_ctime == d->row.ctime) {
		*id = rr.src;
		return;
	}
	memset(id, 0, sizeof(*id));
	struct meta_pool_row prow;
	pool_view_pool_row(pool, &prow);
	snprintf(id->uuid, sizeof(id->uuid), "%s", prow.uuid);
	id->dev_id = d->row.id;
	id->creation_time = d->row.creation_time;
	id->ctime = d->row.ctime;
}

static bool same_identity(const struct ix_identity *a, const struct ix_identity *b)
{
	return !strcmp(a->uuid, b->uuid) && a->dev_id == b->dev_id &&
	       a->creation_time == b->creation_time && a->ctime == b->ctime;
}

static void full_name(const struct idev *d, char *out, size_t len)
{
	snprintf(out, len, "%s%s%s", d->row.set, d->row.set[0] ? "/" : "", d->row.name);
}

/* ---- the header ---- */

struct header {
	uint32_t flags;
	uint64_t block_size, size;
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
	return 64;
}

static size_t get_identity(const unsigned char *p, struct ix_identity *id)
{
	snprintf(id->uuid, sizeof(id->uuid), "%.*s", 39, (const char *)p);
	id->dev_id = get_u64(p + 40);
	id->creation_time = get_u64(p + 48);
	id->ctime = (int64_t)get_u64(p + 56);
	return 64;
}

static size_t put_name(unsigned char *p, const char *name)
{
	size_t n = strlen(name);

	put_u16(p, (uint16_t)n);
	memcpy(p + 2, name, n); // NOLINT(bugprone-not-null-terminated-result): counted bytes
	return 2 + n;
}

/* Encode h into buf (big enough: 2 KiB); returns the length with its CRC. */
static size_t encode_header(const struct header *h, unsigned char *buf)
{
	size_t o = 0;

	memcpy(buf, SEND_MAGIC, 8); // NOLINT(bugprone-not-null-terminated-result): 8 bytes
	o = 8;
	put_u32(buf + o, SEND_VERSION);
	put_u32(buf + o + 4, h->flags);
	put_u64(buf + o + 8, h->block_size);
	put_u64(buf + o + 16, h->size);
	put_u64(buf + o + 24, h->snap_sum.mapped);
	put_u64(buf + o + 32, h->snap_sum.vbhash);
	o += 40;
	o += put_identity(buf + o, &h->snap);
	o += put_name(buf + o, h->snap_name);
	if (h->flags & F_INCREMENTAL) {
		o += put_identity(buf + o, &h->base);
		put_u64(buf + o, h->base_sum.mapped);
		put_u64(buf + o + 8, h->base_sum.vbhash);
		o += 16;
		o += put_name(buf + o, h->base_name);
	}
	put_u32(buf + o, crc32c(0, buf, o));
	return o + 4;
}

/* ---- writing ---- */

struct writer {
	FILE *out;
	uint32_t crc; /* of every byte so far */
	uint64_t nr_records, nr_data, nr_zero, nr_unmap;
	int err;
};

static void w_put(struct writer *w, const void *buf, size_t len)
{
	if (w->err)
		return;
	if (fwrite(buf, 1, len, w->out) != len) {
		w->err = -EIO;
		return;
	}
	w->crc = crc32c(w->crc, buf, len);
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
	if (len)
		w_put(w, data, len);
	w_put(w, tail, 4);
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
	uint64_t limit; /* vblocks of the snapshot */
	int err;
};

static void plan_add(struct plan *p, uint64_t begin, uint64_t len, bool unmap)
{
	if (p->err || begin >= p->limit)
		return;
	if (len > p->limit - begin)
		len = p->limit - begin;
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
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* Read the planned blocks of the snapshot and write their records. */
static int send_blocks(struct pool *pool, struct writer *w, const char *snap, const struct plan *p,
		       uint64_t size)
{
	uint64_t bs = pool_view_block_size(pool);
	unsigned char *buf = malloc(bs);
	struct volume *vol;
	int rc;

	if (!buf)
		return -ENOMEM;
	rc = pool_volume_open(pool, snap, &vol);
	if (rc) {
		free(buf);
		return rc;
	}
	for (size_t i = 0; i < p->n && !rc && !w->err; i++) {
		const struct step *s = &p->s[i];
		uint64_t zrun = 0, zstart = 0;
		if (s->unmap) {
			w_record(w, 'U', s->begin, s->len, NULL, 0);
			w->nr_unmap += s->len;
			continue;
		}
		for (uint64_t vb = s->begin; vb < s->begin + s->len && !rc; vb++) {
			size_t len = (size_t)(size - vb * bs < bs ? size - vb * bs : bs);
			ssize_t got = pool_read(vol, buf, len, vb * bs);
			if (got != (ssize_t)len) {
				rc = got < 0 ? (int)got : -EIO;
				break;
			}
			if (all_zero(buf, len)) {
				if (!zrun)
					zstart = vb;
				zrun++;
				continue;
			}
			if (zrun) {
				w_record(w, 'Z', zstart, zrun, NULL, 0);
				w->nr_zero += zrun;
				zrun = 0;
			}
			w_record(w, 'D', vb, 1, buf, len);
			w->nr_data++;
		}
		if (zrun && !rc) {
			w_record(w, 'Z', zstart, zrun, NULL, 0);
			w->nr_zero += zrun;
		}
	}
	pool_volume_close(vol);
	free(buf);
	return rc;
}

/* The header and the plan of blocks to send, from one consistent view of
 * the snapshot (and of the base, for an incremental stream). */
static int send_plan(struct pool *pool, const char *snap, const char *from, struct header *h,
		     struct plan *p, char *msg, size_t msglen)
{
	struct tview vs = {0}, vbase = {0};
	struct meta_ix *x = NULL;
	struct idev ds, db;
	int rc;

	/* the pool's own connection is idle or reading: a second one may read */
	if (meta_ix_open(pool_view_meta_path(pool), true, &x))
		x = NULL;
	interop_lock(pool);
	rc = interop_find_device(pool, snap, &ds);
	if (rc) {
		rc = set_msg(msg, msglen, -ENOENT, "volume '%s' does not exist", snap);
		goto out;
	}
	if (from && interop_find_device(pool, from, &db)) {
		rc = set_msg(msg, msglen, -ENOENT, "base volume '%s' does not exist", from);
		goto out;
	}
	rc = interop_view(pool, &ds, &vs);
	if (!rc && from)
		rc = interop_view(pool, &db, &vbase);
	if (rc) {
		set_msg(msg, msglen, rc, "cannot read the mappings: %s", strerror(-rc));
		goto out;
	}
	h->size = ds.row.size;
	h->snap_sum = summarize(&vs);
	identity_of(pool, x, &ds, &h->snap);
	full_name(&ds, h->snap_name, sizeof(h->snap_name));
	p->limit = div_round_up(h->size, pool_view_block_size(pool));
	if (from) {
		h->flags |= F_INCREMENTAL;
		h->base_sum = summarize(&vbase);
		identity_of(pool, x, &db, &h->base);
		full_name(&db, h->base_name, sizeof(h->base_name));
		delta_walk(&vbase, &vs, plan_delta, p);
	} else {
		for (size_t i = 0; i < vs.n; i++)
			plan_add(p, vs.m[i].vblock, 1, false);
	}
	if (p->err)
		rc = set_msg(msg, msglen, p->err, "cannot plan the stream: %s", strerror(-p->err));
out:
	interop_unlock(pool);
	meta_ix_close(x);
	tview_free(&vs);
	tview_free(&vbase);
	return rc;
}

/* The end record: the counts and the stream checksum, under a checksum of
 * its own that covers the stream checksum too. */
static void send_end(struct writer *w)
{
	unsigned char end[36], hdr[REC_HDR], tail[4];

	put_u64(end, w->nr_data);
	put_u64(end + 8, w->nr_zero);
	put_u64(end + 16, w->nr_unmap);
	put_u32(end + 24, w->crc);
	hdr[0] = 'E';
	put_u64(hdr + 1, 0);
	put_u64(hdr + 9, w->nr_records);
	put_u32(tail, crc32c(crc32c(0, hdr, REC_HDR), end, 28));
	w_put(w, hdr, REC_HDR);
	w_put(w, end, 28);
	w_put(w, tail, 4);
}

int pool_send(struct pool *pool, const char *snap, const char *from, FILE *out, char *msg,
	      size_t msglen)
{
	struct header h = {.block_size = pool_view_block_size(pool)};
	struct plan p = {0};
	struct writer w = {.out = out};
	unsigned char hbuf[2048];
	int rc = send_plan(pool, snap, from, &h, &p, msg, msglen);

	if (rc)
		goto out;
	w_put(&w, hbuf, encode_header(&h, hbuf));
	rc = send_blocks(pool, &w, snap, &p, h.size);
	if (rc) {
		set_msg(msg, msglen, rc, "cannot read '%s': %s", snap, strerror(-rc));
		goto out;
	}
	send_end(&w);
	if (!w.err && fflush(out))
		w.err = -EIO;
	if (w.err)
		rc = set_msg(msg, msglen, w.err, "cannot write the stream: %s", strerror(-w.err));
out:
	free(p.s);
	return rc;
}

/* ---- receiving ---- */

struct reader {
	FILE *in;
	uint32_t crc;
};

static int r_get(struct reader *r, void *buf, size_t len)
{
	if (len && fread(buf, 1, len, r->in) != len)
		return ferror(r->in) ? -EIO : -EPIPE;
	r->crc = crc32c(r->crc, buf, len);
	return 0;
}

static int read_header(struct reader *r, struct header *h, char *msg, size_t msglen)
{
	unsigned char b[2048];
	size_t o = 48, n;
	int rc = r_get(r, b, 48 + 64 + 2);

	if (rc)
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
	o += get_identity(b + o, &h->snap);
	n = get_u16(b + o);
	o += 2;
	if (n >= NAME_BYTES || h->flags & ~F_INCREMENTAL)
		return set_msg(msg, msglen, -EINVAL, "corrupt stream header");
	rc = r_get(r, b + o, n + ((h->flags & F_INCREMENTAL) ? 64 + 16 + 2 : 0));
	if (rc)
		return set_msg(msg, msglen, -EINVAL, "the stream ends in its header");
	memcpy(h->snap_name, b + o, n);
	h->snap_name[n] = 0;
	o += n;
	if (h->flags & F_INCREMENTAL) {
		o += get_identity(b + o, &h->base);
		h->base_sum.mapped = get_u64(b + o);
		h->base_sum.vbhash = get_u64(b + o + 8);
		n = get_u16(b + o + 16);
		o += 18;
		if (n >= NAME_BYTES || r_get(r, b + o, n))
			return set_msg(msg, msglen, -EINVAL, "corrupt stream header");
		memcpy(h->base_name, b + o, n);
		h->base_name[n] = 0;
		o += n;
	}
	uint32_t want = crc32c(0, b, o);
	if (r_get(r, b + o, 4) || get_u32(b + o) != want)
		return set_msg(msg, msglen, -EBADMSG, "stream header checksum mismatch");
	return 0;
}

/* The local device with the stream's base identity (inside interop_lock):
 * 0 with *out, -ENOENT, or -ENOMEM. */
static int find_base(struct pool *pool, struct meta_ix *x, const struct header *h, struct idev *out)
{
	struct meta_device_row *rows;
	size_t n;
	bool found = false;
	int rc = pool_view_devices(pool, &rows, &n);

	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct idev d = {rows[i]};
		struct ix_identity id;
		char name[NAME_BYTES];
		identity_of(pool, x, &d, &id);
		if (!same_identity(&id, &h->base))
			continue;
		full_name(&d, name, sizeof(name));
		if (!found || !strcmp(name, h->base_name)) {
			*out = d;
			found = true;
		}
	}
	free(rows);
	return found ? 0 : -ENOENT;
}

struct recv {
	struct pool *pool;
	struct volume *vol;
	struct reader rd;
	const struct header *h;
	unsigned char *buf, *zeros;
	uint64_t nr_records, nr_data, nr_zero, nr_unmap;
};

static int apply_records(struct recv *c, char *msg, size_t msglen)
{
	uint64_t bs = pool_view_block_size(c->pool), nblocks = div_round_up(c->h->size, bs);
	unsigned char hdr[REC_HDR], tail[4];

	for (;;) {
		uint32_t before = c->rd.crc, crc;
		int rc = r_get(&c->rd, hdr, REC_HDR);
		char type = (char)hdr[0];
		uint64_t vb = get_u64(hdr + 1), count = get_u64(hdr + 9);
		size_t len = 0;

		if (rc)
			return set_msg(msg, msglen, -EPIPE,
				       "the stream ends early (no end record)");
		if (type == 'E') {
			if (r_get(&c->rd, c->buf, 28) || r_get(&c->rd, tail, 4))
				return set_msg(msg, msglen, -EPIPE,
					       "the stream ends in its end record");
			crc = crc32c(crc32c(0, hdr, REC_HDR), c->buf, 28);
			if (get_u32(tail) != crc || get_u32(c->buf + 24) != before)
				return set_msg(msg, msglen, -EBADMSG, "stream checksum mismatch");
			if (count != c->nr_records || get_u64(c->buf) != c->nr_data ||
			    get_u64(c->buf + 8) != c->nr_zero ||
			    get_u64(c->buf + 16) != c->nr_unmap)
				return set_msg(msg, msglen, -EBADMSG,
					       "the stream's counts do not match its records");
			return 0;
		}
		if ((type != 'D' && type != 'Z' && type != 'U') || !count || vb >= nblocks ||
		    count > nblocks - vb || (type == 'D' && count != 1) ||
		    (type == 'U' && !(c->h->flags & F_INCREMENTAL)))
			return set_msg(msg, msglen, -EBADMSG, "corrupt record in the stream");
		if (type == 'D') {
			len = (size_t)(c->h->size - vb * bs < bs ? c->h->size - vb * bs : bs);
			if (r_get(&c->rd, c->buf, len))
				return set_msg(msg, msglen, -EPIPE, "the stream ends in a record");
		}
		if (r_get(&c->rd, tail, 4))
			return set_msg(msg, msglen, -EPIPE, "the stream ends in a record");
		crc = crc32c(crc32c(0, hdr, REC_HDR), c->buf, len);
		if (get_u32(tail) != crc)
			return set_msg(msg, msglen, -EBADMSG,
				       "checksum mismatch in the record of vblock %llu",
				       (unsigned long long)vb);
		/* verified: apply */
		c->nr_records++;
		if (type == 'U') {
			rc = pool_discard(c->vol, vb * bs, count * bs);
			c->nr_unmap += count;
		} else if (type == 'D') {
			ssize_t n = pool_write(c->vol, c->buf, len, vb * bs);
			rc = n == (ssize_t)len ? 0 : n < 0 ? (int)n : -EIO;
			c->nr_data++;
		} else {
			for (uint64_t i = 0; i < count && !rc; i++) {
				uint64_t off = (vb + i) * bs;
				size_t zl = (size_t)(c->h->size - off < bs ? c->h->size - off : bs);
				ssize_t n = pool_write(c->vol, c->zeros, zl, off);
				rc = n == (ssize_t)zl ? 0 : n < 0 ? (int)n : -EIO;
			}
			c->nr_zero += count;
		}
		if (rc)
			return set_msg(msg, msglen, rc, "cannot write vblock %llu: %s",
				       (unsigned long long)vb, strerror(-rc));
	}
}

/* The received device's mapping must be the sender's (pool lock taken). */
static int check_result(struct pool *pool, const char *tmp, const struct header *h,
			struct meta_ix_recv *rec)
{
	struct tview v;
	struct idev dv, *d = &dv;
	struct summary s;
	int rc;

	interop_lock(pool);
	rc = interop_find_device(pool, tmp, d);
	if (!rc)
		rc = interop_view(pool, d, &v);
	if (!rc) {
		s = summarize(&v);
		tview_free(&v);
		if (s.mapped != h->snap_sum.mapped || s.vbhash != h->snap_sum.vbhash)
			rc = -EBADMSG;
		rec->dev_id = d->row.id;
		rec->dev_creation_time = d->row.creation_time;
		rec->dev_ctime = d->row.ctime;
	}
	interop_unlock(pool);
	return rc;
}

/* Neither the name nor its temporary twin exists, and an incremental
 * stream's base is here, unchanged: then *base names it. */
static int receive_check(struct pool *pool, struct meta_ix *x, const struct header *h,
			 const char *name, const char *tmp, char *base, char *msg, size_t msglen)
{
	struct idev exists, bv;
	struct tview v;
	int rc = 0;

	interop_lock(pool);
	if (!interop_find_device(pool, name, &exists))
		rc = set_msg(msg, msglen, -EEXIST, "volume '%s' already exists", name);
	else if (!interop_find_device(pool, tmp, &exists))
		rc = set_msg(msg, msglen, -EEXIST,
			     "'%s' exists (an interrupted receive?); delete it first", tmp);
	if (rc || !(h->flags & F_INCREMENTAL))
		goto out;
	if (find_base(pool, x, h, &bv)) {
		rc = set_msg(msg, msglen, -ENOENT,
			     "no device here is the stream's base '%s' (pool %s, device "
			     "%llu); receive that one first",
			     h->base_name, h->base.uuid, (unsigned long long)h->base.dev_id);
	} else if (!(rc = interop_view(pool, &bv, &v))) {
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

/* The new device under its temporary name: a snapshot of the base, or a
 * new volume; *created once it exists. */
static int receive_make(struct pool *pool, const struct header *h, const char *base,
			const char *tmp, bool *created, char *msg, size_t msglen)
{
	struct pool_device_info info;
	int rc;

	if (!(h->flags & F_INCREMENTAL)) {
		rc = pool_create(pool, tmp, h->size, msg, msglen);
		*created = !rc;
		return rc;
	}
	rc = pool_snapshot(pool, base, tmp, msg, msglen);
	*created = !rc;
	if (!rc)
		rc = pool_device_info(pool, tmp, &info);
	if (!rc && info.size != h->size)
		rc = pool_resize(pool, tmp, h->size, msg, msglen);
	return rc;
}

/* Every record into the temporary device, made durable. */
static int receive_data(struct pool *pool, struct recv *c, const char *tmp, char *msg,
			size_t msglen)
{
	uint64_t bs = pool_view_block_size(pool);
	int rc;

	c->buf = malloc(bs > 28 ? bs : 28);
	c->zeros = calloc(1, bs);
	rc = c->buf && c->zeros ? pool_volume_open(pool, tmp, &c->vol) : -ENOMEM;
	if (rc)
		return set_msg(msg, msglen, rc, "cannot open '%s': %s", tmp, strerror(-rc));
	rc = apply_records(c, msg, msglen);
	pool_volume_close(c->vol);
	if (!rc && (rc = pool_sync(pool)))
		set_msg(msg, msglen, rc, "cannot sync: %s", strerror(-rc));
	return rc;
}

int pool_receive(struct pool *pool, const char *name, FILE *in, char *msg, size_t msglen)
{
	struct header h = {0};
	struct recv c = {.pool = pool, .h = &h, .rd = {.in = in}};
	struct meta_ix_recv rec = {0};
	struct meta_ix *x = NULL;
	char tmp[POOL_NAME_MAX + 1], base[NAME_BYTES] = "";
	bool created = false, recorded = false;
	int rc;

	rc = pool_name_valid(name, msg, msglen);
	if (rc)
		return rc;
	if (!pool_view_writable(pool))
		return set_msg(msg, msglen, -EROFS, "pool is open read-only");
	rc = read_header(&c.rd, &h, msg, msglen);
	if (rc)
		return rc;
	if (h.block_size != pool_view_block_size(pool))
		return set_msg(msg, msglen, -EINVAL,
			       "the stream's block size %llu is not the pool's %llu",
			       (unsigned long long)h.block_size,
			       (unsigned long long)pool_view_block_size(pool));
	snprintf(tmp, sizeof(tmp), "%.*s.partial", POOL_NAME_MAX - 8, name);
	rc = meta_ix_open(pool_view_meta_path(pool), false, &x);
	if (rc)
		return set_msg(msg, msglen, rc, "cannot open the metadata: %s", strerror(-rc));
	rc = receive_check(pool, x, &h, name, tmp, base, msg, msglen);
	if (!rc)
		rc = receive_make(pool, &h, base, tmp, &created, msg, msglen);
	if (!rc)
		rc = receive_data(pool, &c, tmp, msg, msglen);
	if (!rc && (rc = check_result(pool, tmp, &h, &rec)))
		set_msg(msg, msglen, rc, "the received device does not match the stream's");
	if (!rc) {
		/* whose copy it is, then its real name */
		rec.src = h.snap;
		rec.received = util_now();
		rc = meta_ix_recv_put(x, &rec);
		recorded = !rc;
		if (rc)
			set_msg(msg, msglen, rc, "cannot record the identity: %s", strerror(-rc));
	}
	if (!rc)
		rc = pool_rename(pool, tmp, name, msg, msglen);
	if (rc && created) {
		pool_delete(pool, tmp, NULL, 0);
		if (recorded)
			meta_ix_recv_del(x, rec.dev_id);
	}
	meta_ix_close(x);
	free(c.buf);
	free(c.zeros);
	return rc;
}
