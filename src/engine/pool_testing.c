/* SPDX-License-Identifier: MIT */
/*
 * pool_testing.c - the test facilities of the pool (pool_test.h): named
 * crash points, injected failures, and counts.  Nothing here runs unless a
 * test installed a hook or armed a failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "pool_internal.h"
#include "thinfs/pool_test.h"
#include "util.h"

/* ---- crash points (tests) ---- */

int pool_crash_point(struct pool *pool, const char *point)
{
	if (pool->crash_hook)
		return pool->crash_hook(pool->crash_arg, point);
	return 0;
}

void pool_test_set_crash_hook(struct pool *pool, pool_crash_hook hook, void *arg)
{
	pool->crash_hook = hook;
	pool->crash_arg = arg;
}

void pool_test_fail(struct pool *pool, enum pool_test_failure what, int nth)
{
	if (what == POOL_TEST_FAIL_ALLOC)
		pool->fail_alloc = nth;
	else
		pool->fail_punch = nth;
}

/* nth > 0: the nth call from now fails, once; nth < 0: every call fails. */
static bool countdown_hit(int *nth)
{
	if (*nth < 0)
		return true;
	return *nth > 0 && --*nth == 0;
}

bool pool_test_alloc_fails(struct pool *pool)
{
	return countdown_hit(&pool->fail_alloc);
}

bool pool_test_punch_fails(struct pool *pool)
{
	return countdown_hit(&pool->fail_punch);
}

struct dio *pool_test_dio(struct pool *pool)
{
	return pool->dio;
}

int pool_test_counts(struct pool *pool, uint64_t *nr_layers, uint64_t *nr_rows)
{
	*nr_layers = *nr_rows = 0;
	pthread_mutex_lock(&pool->lock);
	for (struct layer *l = pool->layers; l; l = l->next) {
		(*nr_layers)++;
		*nr_rows += l->nr_rows;
	}
	pthread_mutex_unlock(&pool->lock);
	return 0;
}
