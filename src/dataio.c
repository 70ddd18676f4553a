/* SPDX-License-Identifier: MIT */
/*
 * dataio.c - the data file over io_uring.
 *
 * Each thread gets its own ring (created lazily, torn down at thread exit), so
 * FUSE worker threads never contend on a ring.  Buffered I/O: the data file's
 * durability point is dio_flush() (fdatasync), which the pool calls before
 * every metadata commit.  Short reads and writes are continued.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "thinfs/dataio.h"
#include "thinfs/util.h"

#define RING_ENTRIES 64
#define COPY_CHUNK (1u << 20)

struct preimage {
	uint64_t offset;
	size_t len;
	void *data;
};

struct dio {
	int fd;
	bool blockdev;
	bool rdonly;
	struct stat sb;
	/* test facility */
	bool track;
	pthread_mutex_t track_lock;
	struct preimage *pre;
	size_t nr_pre, cap_pre;
};

struct thread_ring {
	struct io_uring ring;
	bool ok;
};

static pthread_key_t ring_key;
static pthread_once_t ring_once = PTHREAD_ONCE_INIT;

static void ring_destroy(void *p)
{
	struct thread_ring *tr = p;

	if (tr->ok)
		io_uring_queue_exit(&tr->ring);
	free(tr);
}

static void ring_key_init(void)
{
	pthread_key_create(&ring_key, ring_destroy);
}

static struct io_uring *thread_ring(void)
{
	struct thread_ring *tr;

	pthread_once(&ring_once, ring_key_init);
	tr = pthread_getspecific(ring_key);
	if (!tr) {
		tr = calloc(1, sizeof(*tr));
		if (!tr)
			return NULL;
		tr->ok = io_uring_queue_init(RING_ENTRIES, &tr->ring, 0) == 0;
		pthread_setspecific(ring_key, tr);
	}
	return tr->ok ? &tr->ring : NULL;
}

/* One read or write through the thread's ring; falls back to pread/pwrite if
 * io_uring is unavailable (e.g. blocked by a seccomp profile). */
static ssize_t ring_rw(int fd, bool write, void *buf, size_t len, uint64_t offset)
{
	struct io_uring *ring = thread_ring();
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	ssize_t res;
	int rc;

	if (!ring)
		goto fallback;
	sqe = io_uring_get_sqe(ring);
	if (!sqe)
		goto fallback;
	if (write)
		io_uring_prep_write(sqe, fd, buf, (unsigned)len, offset);
	else
		io_uring_prep_read(sqe, fd, buf, (unsigned)len, offset);
	rc = io_uring_submit_and_wait(ring, 1);
	if (rc < 0)
		return rc;
	rc = io_uring_wait_cqe(ring, &cqe);
	if (rc < 0)
		return rc;
	res = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return res;
fallback:
	res = write ? pwrite(fd, buf, len, (off_t)offset) : pread(fd, buf, len, (off_t)offset);
	return res < 0 ? -errno : res;
}

static int full_rw(struct dio *d, bool write, void *buf, size_t len, uint64_t offset)
{
	char *p = buf;

	while (len) {
		size_t chunk = len > (1u << 30) ? (1u << 30) : len;
		ssize_t n = ring_rw(d->fd, write, p, chunk, offset);
		if (n == -EINTR || n == -EAGAIN)
			continue;
		if (n < 0)
			return (int)n;
		if (n == 0) {
			if (write)
				return -EIO;
			memset(p, 0, len); /* past the end of the file reads zeros */
			return 0;
		}
		p += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

int dio_create(const char *path, uint64_t size, char *msg, size_t msglen)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	int rc = 0;

	if (fd < 0)
		return set_msg(msg, msglen, -errno, "cannot create %s: %s", path, strerror(errno));
	if (ftruncate(fd, (off_t)size) < 0)
		rc = set_msg(msg, msglen, -errno, "cannot size %s: %s", path, strerror(errno));
	else if (fsync(fd) < 0)
		rc = set_msg(msg, msglen, -errno, "cannot sync %s: %s", path, strerror(errno));
	close(fd);
	if (rc)
		unlink(path);
	return rc;
}

int dio_open(const char *path, bool rdonly, struct dio **out, char *msg, size_t msglen)
{
	struct dio *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->rdonly = rdonly;
	d->fd = open(path, (rdonly ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_CLOEXEC);
	if (d->fd < 0) {
		int err = errno;
		free(d);
		if (err == ELOOP)
			return set_msg(msg, msglen, -ELOOP, "data file %s is a symlink", path);
		return set_msg(msg, msglen, -err, "cannot open data file %s: %s", path,
			       strerror(err));
	}
	if (fstat(d->fd, &d->sb) < 0 || !(S_ISREG(d->sb.st_mode) || S_ISBLK(d->sb.st_mode))) {
		close(d->fd);
		free(d);
		return set_msg(msg, msglen, -EINVAL,
			       "data file %s is not a regular file or block device", path);
	}
	d->blockdev = S_ISBLK(d->sb.st_mode);
	pthread_mutex_init(&d->track_lock, NULL);
	*out = d;
	return 0;
}

static void drop_preimages(struct dio *d)
{
	for (size_t i = 0; i < d->nr_pre; i++)
		free(d->pre[i].data);
	d->nr_pre = 0;
}

void dio_close(struct dio *d)
{
	if (!d)
		return;
	close(d->fd);
	drop_preimages(d);
	free(d->pre);
	pthread_mutex_destroy(&d->track_lock);
	free(d);
}

/* test facility: remember what a range held before an unflushed change */
static void save_preimage(struct dio *d, uint64_t offset, size_t len)
{
	struct preimage p = { .offset = offset, .len = len, .data = malloc(len) };

	if (!p.data)
		return;
	if (pread(d->fd, p.data, len, (off_t)offset) < 0)
		memset(p.data, 0, len);
	pthread_mutex_lock(&d->track_lock);
	if (d->nr_pre == d->cap_pre) {
		size_t cap = d->cap_pre ? d->cap_pre * 2 : 64;
		struct preimage *n = realloc(d->pre, cap * sizeof(*n));
		if (n) {
			d->pre = n;
			d->cap_pre = cap;
		}
	}
	if (d->nr_pre < d->cap_pre)
		d->pre[d->nr_pre++] = p;
	else
		free(p.data);
	pthread_mutex_unlock(&d->track_lock);
}

int dio_read(struct dio *d, void *buf, size_t len, uint64_t offset)
{
	return full_rw(d, false, buf, len, offset);
}

int dio_write(struct dio *d, const void *buf, size_t len, uint64_t offset)
{
	if (d->track)
		save_preimage(d, offset, len);
	return full_rw(d, true, (void *)buf, len, offset);
}

int dio_copy(struct dio *d, uint64_t src, uint64_t dst, size_t len)
{
	size_t chunk = len < COPY_CHUNK ? len : COPY_CHUNK;
	void *buf = malloc(chunk);
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	while (len && !rc) {
		size_t n = len < chunk ? len : chunk;
		rc = dio_read(d, buf, n, src);
		if (!rc)
			rc = dio_write(d, buf, n, dst);
		src += n;
		dst += n;
		len -= n;
	}
	free(buf);
	return rc;
}

static int write_zeros(struct dio *d, uint64_t offset, uint64_t len)
{
	size_t chunk = len < COPY_CHUNK ? (size_t)len : COPY_CHUNK;
	void *z = calloc(1, chunk);
	int rc = 0;

	if (!z)
		return -ENOMEM;
	while (len && !rc) {
		size_t n = len < chunk ? (size_t)len : chunk;
		rc = dio_write(d, z, n, offset);
		offset += n;
		len -= n;
	}
	free(z);
	return rc;
}

int dio_punch(struct dio *d, uint64_t offset, uint64_t len)
{
	if (d->track)
		save_preimage(d, offset, (size_t)len);
	if (d->blockdev) {
		uint64_t range[2] = { offset, len };
		if (ioctl(d->fd, BLKZEROOUT, range) == 0)
			return 0;
	} else if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
			     (off_t)len) == 0) {
		return 0;
	} else if (errno != EOPNOTSUPP && errno != ENOSYS) {
		return -errno;
	}
	/* no punching here: zeros keep "a free block reads zero" true */
	bool track = d->track;
	d->track = false;
	int rc = write_zeros(d, offset, len);
	d->track = track;
	return rc;
}

int dio_flush(struct dio *d)
{
	if (fdatasync(d->fd) < 0)
		return -errno;
	if (d->track) {
		pthread_mutex_lock(&d->track_lock);
		drop_preimages(d);
		pthread_mutex_unlock(&d->track_lock);
	}
	return 0;
}

int dio_size(struct dio *d, uint64_t *size)
{
	struct stat sb;

	if (d->blockdev) {
		uint64_t bytes;
		if (ioctl(d->fd, BLKGETSIZE64, &bytes) < 0)
			return -errno;
		*size = bytes;
		return 0;
	}
	if (fstat(d->fd, &sb) < 0)
		return -errno;
	*size = (uint64_t)sb.st_size;
	return 0;
}

int dio_grow(struct dio *d, uint64_t size)
{
	uint64_t cur = 0;
	int rc = dio_size(d, &cur);

	if (rc)
		return rc;
	if (cur >= size)
		return 0;
	if (d->blockdev)
		return -ENOSPC;
	if (ftruncate(d->fd, (off_t)size) < 0)
		return -errno;
	return fsync(d->fd) < 0 ? -errno : 0;
}

bool dio_is_blockdev(const struct dio *d)
{
	return d->blockdev;
}

int dio_next_data(struct dio *d, uint64_t offset, uint64_t *start, uint64_t *end)
{
	off_t s, e;

	if (d->blockdev)
		return -EOPNOTSUPP;
	s = lseek(d->fd, (off_t)offset, SEEK_DATA);
	if (s < 0)
		return -errno;
	e = lseek(d->fd, s, SEEK_HOLE);
	if (e < 0)
		return -errno;
	*start = (uint64_t)s;
	*end = (uint64_t)e;
	return 0;
}

void dio_identity(const struct dio *d, uint64_t *dev, uint64_t *ino)
{
	*dev = (uint64_t)d->sb.st_dev;
	*ino = (uint64_t)d->sb.st_ino;
}

void dio_test_track_unflushed(struct dio *d, bool on)
{
	d->track = on;
}

int dio_test_lose_unflushed(struct dio *d)
{
	int n;

	pthread_mutex_lock(&d->track_lock);
	n = (int)d->nr_pre;
	/* newest first, so the oldest pre-image of a range wins */
	for (size_t i = d->nr_pre; i-- > 0;) {
		struct preimage *p = &d->pre[i];
		if (pwrite(d->fd, p->data, p->len, (off_t)p->offset) < 0)
			n = -errno;
	}
	drop_preimages(d);
	pthread_mutex_unlock(&d->track_lock);
	return n;
}
