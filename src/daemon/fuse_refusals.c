/* SPDX-License-Identifier: MIT */
/*
 * fuse_refusals.c - the requests the daemon refused, in the log once per
 * device and reason: a read-only pool answers every write with EROFS, a full
 * one with ENOSPC, and a storage admin needs to read that it happened, to
 * which device and why, not one line per request.
 *
 * Owns fs->refusals: a set of (device, errno) pairs already logged, at most
 * REFUSALS_MAX (then one line says that later ones go unlogged).  A
 * device's name is the one it had when refused (a renamed device may be
 * logged again under its new name).  Locking: fs->lock, never held across
 * a pool call (logging does not call into the pool).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuse_nodes.h"

#define REFUSALS_MAX 4096

/* Not worth a line: the caller asked for something that is not there or
 * already is, or was interrupted. */
static bool ordinary(int err)
{
	switch (err) {
	case 0:
	case EEXIST:
	case ENOENT:
	case EINVAL:
	case ENAMETOOLONG:
	case ENOTEMPTY:
	case ENOTDIR:
	case EISDIR:
	case EPERM:
	case EACCES:
	case EBUSY:
	case EINTR:
		return true;
	}
	return false;
}

/* Is (dev, err) new?  Then remember it.  fs->lock held. */
static bool first_time(struct fsops *fs, const char *dev, int err, bool *full)
{
	struct fsops_refusal *r;

	for (size_t i = 0; i < fs->nr_refusals; i++)
		if (fs->refusals[i].err == err && !strcmp(fs->refusals[i].dev, dev))
			return false;
	*full = fs->nr_refusals >= REFUSALS_MAX;
	if (*full)
		return !fs->refusals_full && (fs->refusals_full = true);
	if (fs->nr_refusals == fs->cap_refusals) {
		size_t cap = fs->cap_refusals ? fs->cap_refusals * 2 : 16;
		r = realloc(fs->refusals, cap * sizeof(*r));
		if (!r)
			return true; /* logged, just not remembered */
		fs->refusals = r;
		fs->cap_refusals = cap;
	}
	r = &fs->refusals[fs->nr_refusals++];
	snprintf(r->dev, sizeof(r->dev), "%s", dev);
	r->err = err;
	return true;
}

void fsops_refused(struct fsops *fs, const char *what, const char *dev, int err, const char *msg)
{
	bool log, full = false;

	if (err < 0)
		err = -err;
	if (ordinary(err))
		return;
	pthread_mutex_lock(&fs->lock);
	log = first_time(fs, dev, err, &full);
	pthread_mutex_unlock(&fs->lock);
	if (!log)
		return;
	if (full)
		fuse_log(FUSE_LOG_WARNING,
			 "thinfs: %d kinds of refused requests logged; later ones are not\n",
			 REFUSALS_MAX);
	else
		fuse_log(err == EIO || err == ENOMEM ? FUSE_LOG_ERR : FUSE_LOG_WARNING,
			 "thinfs: '%s': refused %s: %s (logged once per device and reason)\n", dev,
			 what, msg && msg[0] ? msg : strerror(err));
}

void fsops_refusals_free(struct fsops *fs)
{
	free(fs->refusals);
	fs->refusals = NULL;
	fs->nr_refusals = fs->cap_refusals = 0;
}
