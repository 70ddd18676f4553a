/* SPDX-License-Identifier: MIT */
/*
 * pool_test.h - test facilities of the pool (used by the unit tests only).
 *
 * Crash points are named "commit/before_flush", "commit/after_flush",
 * "commit/before_commit", "commit/after_commit", "commit/after_punch".  A hook
 * may simulate a power cut by calling dio_test_lose_unflushed() on the data
 * file and then _exit() in a forked child.
 */
#ifndef THINFS_POOL_TEST_H
#define THINFS_POOL_TEST_H

#include <stddef.h>

struct dio;
#include "thinfs/pool.h"

typedef int (*pool_crash_hook)(void *arg, const char *point);
void pool_test_set_crash_hook(struct pool *pool, pool_crash_hook hook, void *arg);
struct dio *pool_test_dio(struct pool *pool);
/* Number of layers and map rows the pool holds (for O(1) snapshot tests). */
int pool_test_counts(struct pool *pool, uint64_t *nr_layers, uint64_t *nr_rows);

/* The data block vblock maps to in an open device's view: 0, or -ENOENT. */
int pool_test_dblock(struct volume *vol, uint64_t vblock, uint64_t *dblock);

/* Map n fresh blocks at vblocks [first, first+n) of an open device without
 * writing data (they read zeros): fills metadata fast for benchmarks. */
int pool_test_provision(struct volume *vol, uint64_t first, uint64_t n);
/* Make the nth allocation of change tracking (or data-file punch) from now
 * fail, once; nth < 0: all of them; 0: none. */
/* Crash points of pool_restore: "restore/after_meta" (metadata written, the
 * restore marker still there), "restore/before_finish" (marker gone, an
 * adopted image's free blocks not punched yet).  Process-wide. */
void pool_test_set_restore_hook(pool_crash_hook hook, void *arg);
enum pool_test_failure { POOL_TEST_FAIL_ALLOC, POOL_TEST_FAIL_PUNCH };
void pool_test_fail(struct pool *pool, enum pool_test_failure what, int nth);

#endif
