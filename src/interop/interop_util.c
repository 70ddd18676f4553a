/* SPDX-License-Identifier: MIT */
/*
 * interop_util.c - what dump, restore, delta and send/receive share: a
 * device's view with mapping times, the consistent read lock, the escaping of
 * names inside XML comments, and CRC32C.
 *
 * The views come from the engine's committed read (engine/pool_view.h):
 * interop sees rows, never struct pool.
 *
 * Locking: interop_view() and interop_find_device() run inside
 * interop_lock(), which commits a read-write pool and then holds its lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "interop_internal.h"

int interop_view(struct pool *pool, const struct idev *d, struct tview *v)
{
	memset(v, 0, sizeof(*v));
	return pool_view_mappings(pool, d->row.layer, &v->m, &v->n);
}

int interop_stream_done(FILE *out)
{
	/* a stream that failed keeps its data: the flush tries it again */
	if (fflush(out))
		return errno ? -errno : -EIO;
	return ferror(out) ? -EIO : 0;
}

void tview_free(struct tview *v)
{
	free(v->m);
	memset(v, 0, sizeof(*v));
}

const struct tmap *tview_find(const struct tview *v, uint64_t vblock)
{
	size_t lo = 0, hi = v->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v->m[mid].vblock < vblock)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < v->n && v->m[lo].vblock == vblock ? &v->m[lo] : NULL;
}

void interop_lock(struct pool *pool)
{
	pool_view_begin(pool);
}

void interop_unlock(struct pool *pool)
{
	pool_view_end(pool);
}

int interop_find_device(struct pool *pool, const char *name, struct idev *out)
{
	return pool_view_device(pool, name, &out->row);
}

/* Length of the valid UTF-8 sequence at s (a character XML allows), or 0. */
static size_t utf8_len(const unsigned char *s)
{
	uint32_t c;
	size_t n;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		c = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		c = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if ((n == 2 && c < 0x80) || (n == 3 && c < 0x800) || (n == 4 && c < 0x10000) ||
	    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff) || c == 0xfffe || c == 0xffff)
		return 0;
	return n;
}

/*
 * Inside a comment nothing is an entity, and "--" may not appear: so names
 * get an escaping of our own, undone by restore_parse.c: & < > " as the usual
 * entities, a '-' after a '-' as &#45;, and every byte that is not part of a
 * character XML allows (controls, invalid UTF-8) as &#xHH; (one byte each).
 */
void interop_put_escaped(FILE *out, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		size_t n = utf8_len(s);

		if (*s == '&')
			fputs("&amp;", out);
		else if (*s == '<')
			fputs("&lt;", out);
		else if (*s == '>')
			fputs("&gt;", out);
		else if (*s == '"')
			fputs("&quot;", out);
		else if (*s == '-' && s > (const unsigned char *)str && s[-1] == '-')
			fputs("&#45;", out);
		else if (!n || (*s < 0x20) || *s == 0x7f)
			fprintf(out, "&#x%02X;", *s);
		else {
			fwrite(s, 1, n, out);
			s += n;
			continue;
		}
		s++;
	}
}

/* ---- CRC32C (Castagnoli, reflected 0x82F63B78): slicing by 8, or SSE4.2 ---- */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] =
			    (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (len && ((uintptr_t)p & 7)) {
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
		len--;
	}
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		w ^= crc;
		crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		      crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
		      crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
		      crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

/* The crc32 instruction (SSE4.2): 8 bytes a step, about 6x the tables. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *buf,
							    size_t len)
{
	const unsigned char *p = buf;
	uint64_t c = ~crc & 0xffffffffu;

	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		len--;
	}
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = _mm_crc32_u64(c, w);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return ~(uint32_t)c;
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	static int hw = -1; /* every thread that races here finds the same */
	int h = __atomic_load_n(&hw, __ATOMIC_RELAXED);

	if (h < 0) {
		h = __builtin_cpu_supports("sse4.2") ? 1 : 0;
		__atomic_store_n(&hw, h, __ATOMIC_RELAXED);
	}
	return h ? crc32c_hw(crc, buf, len) : crc32c_sw(crc, buf, len);
}
#else
uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	return crc32c_sw(crc, buf, len);
}
#endif
