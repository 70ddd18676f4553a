/* SPDX-License-Identifier: MIT */
/*
 * origin.c - external origins (see origin.h): probing a file or block device
 * when a volume is made over it, checking its identity at each first open,
 * and reading from it.  The only file that touches an origin; it never
 * writes one (O_RDONLY, pread only).
 *
 * Identity of a regular file: st_dev, st_ino, st_size and st_mtim; of a
 * block device: st_dev and st_ino of its node, its size (BLKGETSIZE64) and
 * the node's mtime.  A block device written behind the pool's back keeps its
 * identity: that is the admin's promise, as with dm-thin's external origin.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "origin.h"
#include "util.h"

/* Describe an open origin: size and identity. */
static int describe(int fd, struct meta_origin_row *row)
{
	struct stat sb;
	uint64_t size;

	if (fstat(fd, &sb) < 0)
		return -errno;
	if (S_ISBLK(sb.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0)
			return -errno;
	} else if (S_ISREG(sb.st_mode)) {
		size = (uint64_t)sb.st_size;
	} else {
		return -EINVAL;
	}
	row->size = size;
	row->st_dev = (uint64_t)sb.st_dev;
	row->st_ino = (uint64_t)sb.st_ino;
	row->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
	return 0;
}

int origin_probe(const char *path, struct meta_origin_row *row, char *msg, size_t msglen)
{
	char real[PATH_MAX];
	int fd, rc;

	memset(row, 0, sizeof(*row));
	if (!realpath(path, real))
		return set_msg(msg, msglen, -errno, "origin %s: %s", path, strerror(errno));
	if (strlen(real) >= sizeof(row->path))
		return set_msg(msg, msglen, -ENAMETOOLONG,
			       "origin %s: its path is longer than %zu bytes", real,
			       sizeof(row->path) - 1);
	fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return set_msg(msg, msglen, -errno, "origin %s: %s", real, strerror(errno));
	rc = describe(fd, row);
	close(fd);
	if (rc == -EINVAL)
		return set_msg(msg, msglen, rc, "origin %s is not a regular file or block device",
			       real);
	if (rc)
		return set_msg(msg, msglen, rc, "origin %s: %s", real, strerror(-rc));
	memcpy(row->path, real, strlen(real) + 1); /* (its length checked above) */
	return 0;
}

struct origin *origin_new(const struct meta_origin_row *row)
{
	struct origin *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->row = *row;
	o->fd = -1;
	return o;
}

void origin_free(struct origin *o)
{
	if (!o)
		return;
	origin_close(o);
	free(o);
}

/* What differs between the recorded identity and now, as "size A -> B". */
static int compare(const struct origin *o, const struct meta_origin_row *now, const char *volume,
		   char *msg, size_t msglen)
{
	const struct meta_origin_row *r = &o->row;
	const char *what;
	uint64_t was, is;

	if (r->st_dev != now->st_dev || r->st_ino != now->st_ino) {
		what = r->st_dev != now->st_dev ? "device" : "inode";
		was = r->st_dev != now->st_dev ? r->st_dev : r->st_ino;
		is = r->st_dev != now->st_dev ? now->st_dev : now->st_ino;
	} else if (r->size != now->size) {
		what = "size";
		was = r->size;
		is = now->size;
	} else if (r->mtime_ns != now->mtime_ns) {
		what = "mtime_ns";
		was = (uint64_t)r->mtime_ns;
		is = (uint64_t)now->mtime_ns;
	} else {
		return 0;
	}
	return set_msg(msg, msglen, -ESTALE,
		       "origin %s of volume '%s' changed since it was recorded (%s %" PRIu64
		       " -> %" PRIu64 "): refusing to serve it",
		       r->path, volume, what, was, is);
}

/* Open the recorded path and compare; *fd the descriptor on success. */
static int open_checked(const struct origin *o, const char *volume, int *fd, char *msg,
			size_t msglen)
{
	struct meta_origin_row now = {0};
	int rc;

	*fd = open(o->row.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (*fd < 0)
		return set_msg(msg, msglen, -ESTALE,
			       "origin %s of volume '%s' is gone (%s): refusing to serve it",
			       o->row.path, volume, strerror(errno));
	rc = describe(*fd, &now);
	if (rc)
		rc = set_msg(msg, msglen, -ESTALE,
			     "origin %s of volume '%s' cannot be read (%s): refusing to serve it",
			     o->row.path, volume, strerror(-rc));
	else
		rc = compare(o, &now, volume, msg, msglen);
	if (rc) {
		close(*fd);
		*fd = -1;
	}
	return rc;
}

int origin_open(struct origin *o, const char *volume, char *msg, size_t msglen)
{
	if (o->fd >= 0)
		return 0;
	return open_checked(o, volume, &o->fd, msg, msglen);
}

void origin_close(struct origin *o)
{
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
}

int origin_verify(const struct origin *o, const char *volume, char *msg, size_t msglen)
{
	int fd, rc = open_checked(o, volume, &fd, msg, msglen);

	if (!rc)
		close(fd);
	return rc;
}

int origin_read(const struct origin *o, void *buf, size_t len, uint64_t offset)
{
	char *p = buf;
	size_t avail = 0;

	if (offset < o->row.size)
		avail = o->row.size - offset < len ? (size_t)(o->row.size - offset) : len;
	while (avail) {
		ssize_t n = pread(o->fd, p, avail, (off_t)offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* shorter than recorded: it changed under us */
		p += n;
		offset += (uint64_t)n;
		avail -= (size_t)n;
		len -= (size_t)n;
	}
	memset(p, 0, len);
	return 0;
}
