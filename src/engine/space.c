/* SPDX-License-Identifier: MIT */
/*
 * space.c - the data-block allocator: used/busy bitmaps, deferred frees,
 * persistence in the metadata's space table.
 *
 * Clone counts (refs.c) are kept beside the bitmaps: space_free() of a block
 * another map row still names only drops a reference, so every path that
 * removes a row (overwrite, discard, delete, merge, sweep, repair) honours
 * them by calling the one function it always called.
 *
 * Invariants: used ⊆ busy; a block with a clone count is used; nr_used = popcount(used), nr_busy =
 * popcount(busy); a block on the freed list has busy set and used clear.  The pool serialises every
 * call.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "meta.h"
#include "space.h"

#define WORD_BITS 64
#define CHUNK_BYTES (META_SPACE_CHUNK_BITS / 8)

static inline bool bit_test(const uint64_t *map, uint64_t b)
{
	return map[b / WORD_BITS] >> (b % WORD_BITS) & 1;
}
static inline void bit_set(uint64_t *map, uint64_t b)
{
	map[b / WORD_BITS] |= 1ull << (b % WORD_BITS);
}
static inline void bit_clear(uint64_t *map, uint64_t b)
{
	map[b / WORD_BITS] &= ~(1ull << (b % WORD_BITS));
}

static uint64_t nr_words(uint64_t nr_blocks)
{
	/* whole chunks, so a chunk can be saved straight from the bitmap */
	uint64_t chunks = (nr_blocks + META_SPACE_CHUNK_BITS - 1) / META_SPACE_CHUNK_BITS;
	return chunks * (META_SPACE_CHUNK_BITS / WORD_BITS);
}

int space_init(struct space *sp, uint64_t nr_blocks)
{
	uint64_t words = nr_words(nr_blocks ? nr_blocks : 1);

	memset(sp, 0, sizeof(*sp));
	sp->nr_blocks = nr_blocks;
	sp->nr_chunks = words / (META_SPACE_CHUNK_BITS / WORD_BITS);
	sp->used = calloc(words, sizeof(uint64_t));
	sp->busy = calloc(words, sizeof(uint64_t));
	sp->dirty_chunks = calloc(sp->nr_chunks, 1);
	refs_init(&sp->refs);
	if (!sp->used || !sp->busy || !sp->dirty_chunks) {
		space_destroy(sp);
		return -ENOMEM;
	}
	return 0;
}

void space_destroy(struct space *sp)
{
	free(sp->used);
	free(sp->busy);
	free(sp->dirty_chunks);
	free(sp->freed);
	refs_destroy(&sp->refs);
	memset(sp, 0, sizeof(*sp));
}

int space_grow(struct space *sp, uint64_t nr_blocks)
{
	uint64_t old_words = nr_words(sp->nr_blocks ? sp->nr_blocks : 1);
	uint64_t words = nr_words(nr_blocks);
	uint64_t chunks = words / (META_SPACE_CHUNK_BITS / WORD_BITS);

	if (nr_blocks < sp->nr_blocks)
		return -EINVAL;
	if (words > old_words) {
		uint64_t *u = realloc(sp->used, words * sizeof(uint64_t));
		if (!u)
			return -ENOMEM;
		sp->used = u;
		uint64_t *b = realloc(sp->busy, words * sizeof(uint64_t));
		if (!b)
			return -ENOMEM;
		sp->busy = b;
		uint8_t *d = realloc(sp->dirty_chunks, chunks);
		if (!d)
			return -ENOMEM;
		sp->dirty_chunks = d;
		memset(sp->used + old_words, 0, (words - old_words) * sizeof(uint64_t));
		memset(sp->busy + old_words, 0, (words - old_words) * sizeof(uint64_t));
		memset(sp->dirty_chunks + sp->nr_chunks, 0, chunks - sp->nr_chunks);
		sp->nr_chunks = chunks;
	}
	sp->nr_blocks = nr_blocks;
	return 0;
}

struct load_ctx {
	struct space *sp;
	space_bad_chunk bad;
	void *arg;
};

static int load_chunk(void *arg, uint64_t chunk, const void *bits, size_t len)
{
	struct load_ctx *lc = arg;
	struct space *sp = lc->sp;
	uint64_t first = chunk * META_SPACE_CHUNK_BITS;

	if (chunk >= sp->nr_chunks || len != CHUNK_BYTES) {
		int rc = lc->bad ? lc->bad(lc->arg, chunk, len) : -EUCLEAN;
		if (!rc && chunk < sp->nr_chunks)
			sp->dirty_chunks[chunk] = 1;
		return rc;
	}
	memcpy(sp->used + first / WORD_BITS, bits, CHUNK_BYTES);
	memcpy(sp->busy + first / WORD_BITS, bits, CHUNK_BYTES);
	return 0;
}

static int load_ref(void *arg, uint64_t dblock, uint64_t count)
{
	struct space *sp = arg;

	/* what a count means is check's to judge: keep it as it is */
	return refs_set(&sp->refs, dblock, count > UINT32_MAX ? UINT32_MAX : (uint32_t)count, 0);
}

int space_load(struct space *sp, struct meta *m, space_bad_chunk bad, void *arg)
{
	struct load_ctx lc = {sp, bad, arg};
	int rc = meta_space_foreach(m, load_chunk, &lc);
	uint64_t words = sp->nr_chunks * (META_SPACE_CHUNK_BITS / WORD_BITS);

	if (!rc)
		rc = meta_refs_foreach(m, load_ref, sp);
	if (rc)
		return rc;
	sp->nr_used = 0;
	for (uint64_t w = 0; w < words; w++)
		sp->nr_used += (uint64_t)__builtin_popcountll(sp->used[w]);
	sp->nr_busy = sp->nr_used;
	/* bits past nr_blocks are never set by us; a damaged map is check's job */
	return 0;
}

void space_mark_all_dirty(struct space *sp)
{
	memset(sp->dirty_chunks, 1, sp->nr_chunks);
}

uint64_t space_nr_beyond(const struct space *sp)
{
	uint64_t n = 0, end = sp->nr_chunks * META_SPACE_CHUNK_BITS;

	for (uint64_t b = sp->nr_blocks; b < end; b++)
		n += (sp->used[b / WORD_BITS] >> (b % WORD_BITS)) & 1;
	return n;
}

void space_clear_beyond(struct space *sp)
{
	uint64_t end = sp->nr_chunks * META_SPACE_CHUNK_BITS;

	for (uint64_t b = sp->nr_blocks; b < end; b++) {
		uint64_t bit = 1ull << (b % WORD_BITS);
		if (sp->used[b / WORD_BITS] & bit) {
			sp->used[b / WORD_BITS] &= ~bit;
			sp->busy[b / WORD_BITS] &= ~bit;
			sp->nr_used--;
			sp->nr_busy--;
			sp->dirty_chunks[b / META_SPACE_CHUNK_BITS] = 1;
		}
	}
}

int space_save(struct space *sp, struct meta *m)
{
	for (uint64_t c = 0; c < sp->nr_chunks; c++) {
		if (!sp->dirty_chunks[c])
			continue;
		int rc = meta_space_put(m, c, sp->used + c * (META_SPACE_CHUNK_BITS / WORD_BITS),
					CHUNK_BYTES);
		if (rc)
			return rc;
		sp->dirty_chunks[c] = 0;
	}
	for (size_t i = 0; i < sp->refs.nr_dirty; i++) {
		uint64_t b = sp->refs.dirty[i];
		uint32_t n = refs_get(&sp->refs, b);
		int rc = n >= 2 ? meta_refs_put(m, b, n) : meta_refs_del(m, b);
		if (rc)
			return rc;
	}
	sp->refs.nr_dirty = 0;
	return 0;
}

static void mark_dirty(struct space *sp, uint64_t b)
{
	sp->dirty_chunks[b / META_SPACE_CHUNK_BITS] = 1;
}

/* The first block at or after pos (wrapping around) that is neither used nor busy. */
static int free_from(const struct space *sp, uint64_t pos, uint64_t *dblock)
{
	uint64_t words = (sp->nr_blocks + WORD_BITS - 1) / WORD_BITS;
	uint64_t w, mask;

	if (sp->nr_busy >= sp->nr_blocks)
		return -ENOSPC;
	if (pos >= sp->nr_blocks)
		pos = 0;
	w = pos / WORD_BITS;
	mask = ~0ull << (pos % WORD_BITS); /* the first word: only bits from pos */
	for (uint64_t i = 0; i <= words; i++, w++, mask = ~0ull) {
		if (w >= words)
			w = 0;
		uint64_t freebits = ~sp->busy[w] & mask;
		if (!freebits)
			continue;
		uint64_t b = w * WORD_BITS + (uint64_t)__builtin_ctzll(freebits);
		if (b >= sp->nr_blocks)
			continue;
		*dblock = b;
		return 0;
	}
	return -ENOSPC;
}

/* How many blocks from b on are free, up to max. */
static uint64_t free_run(const struct space *sp, uint64_t b, uint64_t max)
{
	uint64_t n = 0;

	while (n < max && b + n < sp->nr_blocks && !bit_test(sp->busy, b + n))
		n++;
	return n;
}

/* Candidate free runs looked at before settling for the longest seen, so an
 * allocation in a fragmented pool stays cheap (it runs under the pool lock). */
#define RUN_CANDIDATES 64

static void take(struct space *sp, uint64_t b, bool use)
{
	bit_set(sp->busy, b);
	sp->nr_busy++;
	if (!use)
		return;
	bit_set(sp->used, b);
	sp->nr_used++;
	mark_dirty(sp, b);
}

/* A run as space_alloc_run() finds it; `use`: allocated (used and busy), else
 * only reserved (busy). */
static int find_run(struct space *sp, uint64_t goal, uint64_t want, uint64_t *first, bool use)
{
	uint64_t b, n, best, best_n = 0;

	if (!want)
		return -EINVAL;
	if (goal < sp->nr_blocks && !bit_test(sp->busy, goal)) {
		best = goal;
		best_n = free_run(sp, goal, want);
	} else {
		/* next fit: the first free run of `want` from the cursor on, or
		 * the longest of the first RUN_CANDIDATES runs */
		if (free_from(sp, sp->cursor, &b))
			return -ENOSPC;
		best = b;
		for (int i = 0; i < RUN_CANDIDATES && best_n < want; i++) {
			n = free_run(sp, b, want);
			if (n > best_n) {
				best = b;
				best_n = n;
			}
			if (free_from(sp, b + n, &b))
				break;
		}
	}
	for (n = 0; n < best_n; n++)
		take(sp, best + n, use);
	sp->cursor = best + best_n;
	*first = best;
	return (int)(best_n > INT32_MAX ? INT32_MAX : best_n);
}

int space_alloc_run(struct space *sp, uint64_t goal, uint64_t want, uint64_t *first)
{
	return find_run(sp, goal, want, first, true);
}

int space_reserve_run(struct space *sp, uint64_t goal, uint64_t want, uint64_t *first)
{
	return find_run(sp, goal, want, first, false);
}

int space_alloc(struct space *sp, uint64_t *dblock)
{
	int n = space_alloc_run(sp, SPACE_NO_GOAL, 1, dblock);

	return n < 0 ? n : 0;
}

int space_ref(struct space *sp, uint64_t dblock)
{
	if (dblock >= sp->nr_blocks || !bit_test(sp->used, dblock))
		return -EINVAL; /* only a mapped block can be shared */
	return refs_inc(&sp->refs, dblock);
}

int space_set_refs(struct space *sp, uint64_t dblock, uint32_t count)
{
	return refs_set(&sp->refs, dblock, count, 1);
}

void space_free(struct space *sp, uint64_t dblock)
{
	if (dblock >= sp->nr_blocks || !bit_test(sp->used, dblock))
		return;
	if (sp->refs.nr && refs_dec(&sp->refs, dblock))
		return; /* another map row still names it (a clone) */
	if (sp->nr_freed == sp->cap_freed) {
		size_t cap = sp->cap_freed ? sp->cap_freed * 2 : 256;
		uint64_t *n = realloc(sp->freed, cap * sizeof(uint64_t));
		if (!n)
			return; /* keep it used: a leak that check --repair fixes, never a loss */
		sp->freed = n;
		sp->cap_freed = cap;
	}
	sp->freed[sp->nr_freed++] = dblock;
	bit_clear(sp->used, dblock);
	sp->nr_used--;
	mark_dirty(sp, dblock);
}

bool space_is_used(const struct space *sp, uint64_t dblock)
{
	return dblock < sp->nr_blocks && bit_test(sp->used, dblock);
}

void space_set_used(struct space *sp, uint64_t dblock)
{
	if (dblock >= sp->nr_blocks || bit_test(sp->used, dblock))
		return;
	bit_set(sp->used, dblock);
	sp->nr_used++;
	if (!bit_test(sp->busy, dblock)) {
		bit_set(sp->busy, dblock);
		sp->nr_busy++;
	}
	mark_dirty(sp, dblock);
}

size_t space_take_freed(struct space *sp, uint64_t **list)
{
	size_t n = sp->nr_freed;

	*list = sp->freed;
	sp->freed = NULL;
	sp->nr_freed = sp->cap_freed = 0;
	return n;
}

void space_release(struct space *sp, const uint64_t *list, size_t nr)
{
	for (size_t i = 0; i < nr; i++) {
		uint64_t b = list[i];
		/* a block re-marked used (repair) since it was freed stays busy */
		if (b < sp->nr_blocks && bit_test(sp->busy, b) && !bit_test(sp->used, b)) {
			bit_clear(sp->busy, b);
			sp->nr_busy--;
		}
	}
}

void space_unfree(struct space *sp)
{
	for (size_t i = 0; i < sp->nr_freed; i++) {
		uint64_t b = sp->freed[i];
		if (!bit_test(sp->used, b)) {
			bit_set(sp->used, b);
			sp->nr_used++;
			mark_dirty(sp, b);
		}
	}
	sp->nr_freed = 0;
}
