/* SPDX-License-Identifier: MIT */
/*
 * pool_log.c - a line of the pool's log (pool_set_logger's sink, through
 * util_log), prefixed with the pool's directory.  No state, no locks.
 */
#include <stdarg.h>
#include <stdio.h>

#include "pool_internal.h"
#include "util.h"

void pool_log(struct pool *pool, int level, const char *fmt, ...)
{
	char line[900];
	va_list ap;

	va_start(ap, fmt);
	/* clang 14's valist checker misreads this (a false positive) */
	vsnprintf(line, sizeof(line), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	util_log(level, "%s: %s", pool->dir, line);
}
