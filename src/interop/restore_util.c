/* SPDX-License-Identifier: MIT */
/*
 * restore_util.c - what the steps of restore share: array helpers and
 * the first-error record.
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

/* qsort and bsearch, which may not be handed a NULL array, even empty */
void rs_sort_n(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(base, n, size, cmp);
}

void *rs_search_n(const void *key, const void *base, size_t n, size_t size,
		  int (*cmp)(const void *, const void *))
{
	return n ? bsearch(key, base, n, size, cmp) : NULL;
}

int rs_grow(void **p, size_t *cap, size_t need, size_t size)
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

/* Record the first error (with the XML line while parsing) and stop the parser. */
int rs_fail(struct restore *r, int err, const char *fmt, ...)
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
