/* SPDX-License-Identifier: MIT */
/*
 * pool_mode.c - the pool's mode (the state machine in pool_internal.h):
 * the only code that changes pool->mode, and the needs_check marker file
 * that keeps a failure meta.db would not record.  Pool lock held by callers.
 *
 * Every change of mode is logged once (pool_log), with its reason.  Out of
 * data space is one episode however often the mode flips on the way (a
 * write takes the one block a discard freed, the next finds none): logged
 * when it begins, and its end when at least 1% of the blocks (one, in a
 * small pool) are free again, so a pool running full gives two lines, not
 * two per write.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
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

/* The marker that keeps needs_check when meta.db would not take it. */
static char *needs_check_marker(const struct pool *pool)
{
	return util_path_join(pool->dir, POOL_NEEDS_CHECK_MARKER);
}

bool needs_check_marked(struct pool *pool)
{
	char *path = needs_check_marker(pool);
	struct stat sb;
	bool marked = path && lstat(path, &sb) == 0;

	free(path);
	return marked;
}

int pool_clear_needs_check_marker(struct pool *pool)
{
	char *path = needs_check_marker(pool);
	int rc = 0;

	if (!path)
		return -ENOMEM;
	if (unlink(path) == 0)
		rc = util_fsync_dir(pool->dir);
	else if (errno != ENOENT)
		rc = -errno;
	free(path);
	return rc;
}

void pool_write_needs_check_marker(struct pool *pool, const char *why)
{
	char *path = needs_check_marker(pool);
	int fd =
	    path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600) : -1;

	if (fd >= 0) {
		/* best effort: the database already refused the flag */
		ssize_t n = write(fd, why, strlen(why));
		(void)n;
		fsync(fd);
		close(fd);
		util_fsync_dir(pool->dir);
	}
	free(path);
}

/*
 * WRITE or OUT_OF_SPACE -> FAILED (enum pool_mode in pool_internal.h).
 * needs_check is persisted on top of the last durable pool row (never the
 * in-memory one, which may hold a failed change such as a grow's
 * nr_data_blocks); where meta.db will not take it, a marker file in the pool
 * directory keeps it, so that a remount never forgets the failure.
 */
void pool_fail(struct pool *pool, int err, const char *why)
{
	struct meta_pool_row durable;
	bool saved = false;

	if (!pool_mode_writable(pool))
		return;
	pool->mode = POOL_MODE_FAILED;
	pool->fail_err = err;
	snprintf(pool->ro_reason, sizeof(pool->ro_reason), "%s", why);
	pool_log(pool, POOL_LOG_ERR,
		 "read-only: %s (%s); what was written since the last commit is lost, every "
		 "later sync fails; unmount and run thinctl check --repair",
		 why, strerror(-err));
	meta_rollback(pool->meta);
	pool->prow.needs_check = 1;
	/* (the crash point lets a test make the database refuse it) */
	if (!pool_crash_point(pool, "readonly/persist") && !meta_pool_get(pool->meta, &durable) &&
	    !meta_begin(pool->meta)) {
		durable.needs_check = 1;
		saved = !meta_pool_put(pool->meta, &durable) && !meta_commit(pool->meta);
		if (!saved)
			meta_rollback(pool->meta);
	}
	if (!saved)
		pool_write_needs_check_marker(pool, why);
}

void pool_space_short(struct pool *pool, bool short_of_space, const char *dev)
{
	uint64_t nr = pool->prow.nr_data_blocks, busy = pool->space.nr_busy;

	if (short_of_space && pool->mode == POOL_MODE_WRITE) {
		pool->mode = POOL_MODE_OUT_OF_SPACE;
		if (!pool->sev.full) {
			char wait[64] = "get ENOSPC";
			if (pool->props.when_full == WHEN_FULL_QUEUE && pool->props.queue_timeout)
				snprintf(wait, sizeof(wait),
					 "wait up to %u s for space, then ENOSPC",
					 pool->props.queue_timeout);
			else if (pool->props.when_full == WHEN_FULL_QUEUE)
				snprintf(wait, sizeof(wait), "wait for space");
			pool->sev.full = true;
			pool_event(pool, POOL_EVENT_FULL, POOL_LOG_WARNING,
				   "out of data space (%llu of %llu blocks in use): writes that "
				   "need a new block %s (first: a write to '%s')",
				   (unsigned long long)busy, (unsigned long long)nr, wait,
				   dev ? dev : "?");
		}
	} else if (!short_of_space) {
		if (pool->mode == POOL_MODE_OUT_OF_SPACE)
			pool->mode = POOL_MODE_WRITE;
		if (pool->sev.full && pool->mode == POOL_MODE_WRITE && busy < nr &&
		    nr - busy >= (nr / 100 ? nr / 100 : 1)) {
			pool->sev.full = false;
			pool_event(pool, POOL_EVENT_SPACE_BACK, POOL_LOG_NOTICE,
				   "data space is back: %llu of %llu blocks free",
				   (unsigned long long)(nr - busy), (unsigned long long)nr);
		}
		pool_space_level(pool);
	}
}

void pool_mode_repair(struct pool *pool)
{
	if (pool->mode == POOL_MODE_READ_ONLY) {
		pool->mode = POOL_MODE_WRITE;
		pool_log(pool, POOL_LOG_NOTICE, "repaired: read-write again");
	}
}

void pool_mode_opened(struct pool *pool)
{
	if (pool->mode != POOL_MODE_WRITE || !pool->prow.needs_check)
		return;
	pool->mode = POOL_MODE_READ_ONLY;
	pool_log(pool, POOL_LOG_WARNING, "opened read-only: %s",
		 pool->ro_reason[0] ? pool->ro_reason
				    : "needs_check is set: run thinctl check --repair");
}
