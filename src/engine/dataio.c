/* SPDX-License-Identifier: MIT */
/*
 * dataio.c - the data file over io_uring.
 *
 * Each thread gets its own ring (created lazily, torn down at thread exit), so
 * FUSE worker threads never contend on a ring.  Short transfers are continued.
 *
 * Data moves with O_DIRECT where the file system supports it: io_uring then
 * runs reads and writes natively, whereas buffered writes to ext4 are punted
 * to io-wq worker threads (measured: 0.07x the throughput of pwrite in
 * process), and the data is not cached twice (the FUSE mount caches the
 * volume's pages already).  Where O_DIRECT is refused (tmpfs, some FUSE file
 * systems) the same calls run buffered.  The durability point is dio_flush()
 * (fdatasync) either way, which the pool calls before every metadata commit.
 *
 * O_DIRECT needs DIO_ALIGN-aligned offsets, lengths and buffers.  Misaligned
 * reads go through a bounce buffer.  A misaligned write is a read-modify-write
 * of its edge sectors, which must not race with any other write touching those
 * sectors (it would put back old bytes the other one wrote): every direct
 * write takes the rwlock stripes of the 64 KiB chunks it touches, shared when
 * aligned and exclusive for a read-modify-write, always in ascending order.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "dataio.h"
#include "util.h"

#define RING_ENTRIES 64
#define COPY_CHUNK (1u << 20)
#define DIO_ALIGN 4096u
#define NR_STRIPES 1024u
#define STRIPE_SHIFT 16

struct preimage {
	uint64_t offset;
	size_t len;
	void *data;
};

struct dio {
	int fd;	 /* buffered: fallocate, fdatasync, lseek, test pre-images */
	int dfd; /* O_DIRECT, or fd when direct I/O is unavailable */
	bool direct;
	bool blockdev;
	bool rdonly;
	struct stat sb;
	pthread_rwlock_t stripes[NR_STRIPES];
	struct dio_stats stats; /* atomic */
	/* test facilities */
	int fail_countdown, fail_err; /* atomic */
	bool track;
	pthread_mutex_t track_lock;
	struct preimage *pre;
	size_t nr_pre, cap_pre;
	dio_observer obs; /* sees every completed change and flush */
	void *obs_arg;
};

/*
 * The per-thread ring.  Its invariant, which every path below keeps: when a
 * dio call returns, the calling thread's ring holds no SQE and no CQE and the
 * kernel owns none of the caller's buffers.  A signal (SIGSTOP/SIGCONT of the
 * daemon, a debugger, a freezer) makes io_uring_enter return -EINTR while
 * I/O is still in flight: the wait is retried, never the I/O.  Every SQE
 * carries a tag (the batch's generation and its index), and a completion
 * whose tag is not one the current batch is waiting for means the ring is out
 * of step: it is torn down and made anew (reset on any doubt).  A completion
 * that reports -EINTR, -EAGAIN or -ECANCELED (seen from io-wq workers of
 * buffered writes when the daemon is stopped and continued), or fewer bytes
 * than asked, is continued from where it stopped; after a few such rounds
 * without progress, or with no ring, with pread/pwrite.
 */
struct thread_ring {
	struct io_uring ring;
	bool ok;
	uint64_t gen; /* tag of the batch in flight: user_data = gen << 8 | index */
};

static pthread_key_t ring_key;
static pthread_once_t ring_once = PTHREAD_ONCE_INIT;

/* test facility: fake EINTR from submit and wait, EAGAIN and short results */
static unsigned fault_permille; /* atomic */
static __thread uint64_t fault_state;
static uint64_t fault_counts[4]; /* atomic: submit EINTR, wait EINTR, EAGAIN, short */

static bool fault_hit(int kind)
{
	unsigned p = __atomic_load_n(&fault_permille, __ATOMIC_RELAXED);

	if (!p)
		return false;
	if (!fault_state)
		fault_state = (uint64_t)(uintptr_t)&fault_state | 1;
	fault_state ^= fault_state << 13;
	fault_state ^= fault_state >> 7;
	fault_state ^= fault_state << 17;
	if (fault_state % 1000 >= p)
		return false;
	__atomic_add_fetch(&fault_counts[kind], 1, __ATOMIC_RELAXED);
	return true;
}

void dio_test_ring_faults(unsigned permille)
{
	__atomic_store_n(&fault_permille, permille, __ATOMIC_RELAXED);
}

void dio_test_ring_fault_counts(uint64_t counts[4])
{
	for (int i = 0; i < 4; i++)
		counts[i] = __atomic_load_n(&fault_counts[i], __ATOMIC_RELAXED);
}

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

static struct thread_ring *thread_ring(void)
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
	return tr->ok ? tr : NULL;
}

/* Tear the ring down and make a new one: whatever it held is dropped.  The
 * kernel finishes or cancels what was in flight when the ring goes. */
static void ring_reset(struct thread_ring *tr)
{
	io_uring_queue_exit(&tr->ring);
	tr->ok = io_uring_queue_init(RING_ENTRIES, &tr->ring, 0) == 0;
}

int dio_test_ring_idle(void)
{
	struct thread_ring *tr;
	struct io_uring_cqe *cqe;

	pthread_once(&ring_once, ring_key_init);
	tr = pthread_getspecific(ring_key);
	if (!tr || !tr->ok)
		return 0;
	if (io_uring_sq_ready(&tr->ring))
		return -EBUSY;
	/* anything still in flight would complete within this */
	usleep(300);
	if (io_uring_peek_cqe(&tr->ring, &cqe) == 0)
		return -EBUSY;
	return 0;
}

static ssize_t plain_rw(int fd, bool write, void *buf, size_t len, uint64_t offset)
{
	ssize_t res;

	do
		res = write ? pwrite(fd, buf, len, (off_t)offset)
			    : pread(fd, buf, len, (off_t)offset);
	while (res < 0 && (errno == EINTR || errno == EAGAIN));
	return res < 0 ? -errno : res;
}

/* Submit every queued SQE: a submission interrupted before it took any is
 * tried again.  Returns how many the kernel took. */
static size_t ring_submit_all(struct io_uring *ring, size_t queued)
{
	size_t submitted = 0;

	while (submitted < queued) {
		int r = fault_hit(0) ? -EINTR : io_uring_submit(ring);
		if (r == -EINTR || r == -EAGAIN || r == -EBUSY) {
			if (r != -EINTR)
				sched_yield();
			continue;
		}
		if (r <= 0)
			break;
		submitted += (size_t)r;
	}
	return submitted;
}

/*
 * One batch of up to DIO_BATCH_MAX transfers through the ring, all reaped
 * before it returns.  res[i] gets each one's result, or 0 (nothing done) for
 * one the ring did not run.  Returns false if the ring could not be used.
 */
static bool ring_run(int fd, bool write, const struct dio_seg *s, size_t n, ssize_t *res)
{
	struct thread_ring *tr = thread_ring();
	struct io_uring *ring;
	bool seen[DIO_BATCH_MAX] = {false}, doubt = false;
	size_t queued = 0, submitted, reaped = 0;

	if (!tr)
		return false;
	ring = &tr->ring;
	if (io_uring_sq_ready(ring) || io_uring_cq_ready(ring))
		ring_reset(tr); /* left in doubt by someone: start clean */
	if (!tr->ok)
		return false;
	tr->gen++;
	for (; queued < n; queued++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		if (!sqe)
			break;
		if (write)
			io_uring_prep_write(sqe, fd, s[queued].buf, (unsigned)s[queued].len,
					    s[queued].offset);
		else
			io_uring_prep_read(sqe, fd, s[queued].buf, (unsigned)s[queued].len,
					   s[queued].offset);
		io_uring_sqe_set_data64(sqe, tr->gen << 8 | queued);
	}
	for (size_t i = 0; i < n; i++)
		res[i] = 0;
	submitted = ring_submit_all(ring, queued);
	if (submitted < queued)
		doubt = true; /* the rest are dropped with the ring below */
	while (reaped < submitted) {
		struct io_uring_cqe *cqe;
		int w = fault_hit(1) ? -EINTR : io_uring_wait_cqe(ring, &cqe);
#ifdef THINFS_TEST_BUG_RING_RESUBMIT
		if (w == -EINTR) {
			/* the old bug, for the negative control: give up the wait and
			 * let the caller submit the I/O again, leaving its CQE behind */
			for (size_t i = 0; i < n; i++)
				res[i] = seen[i] ? res[i] : -EINTR;
			return true;
		}
#endif
		if (w == -EINTR || w == -EAGAIN || w == -ETIME)
			continue; /* the I/O is still in flight: wait again, never resubmit */
		if (w < 0) {
			/* cannot reap: only dropping the ring gives the buffers back */
			doubt = true;
			break;
		}
		uint64_t tag = io_uring_cqe_get_data64(cqe);
		size_t i = (size_t)(tag & 0xff);
		if (tag >> 8 != (tr->gen & (UINT64_MAX >> 8)) || i >= queued || seen[i]) {
			doubt = true; /* not ours: the ring is out of step */
			io_uring_cqe_seen(ring, cqe);
			continue;
		}
		seen[i] = true;
		res[i] = cqe->res;
		if (res[i] >= 1024 && fault_hit(3))
			res[i] = (res[i] / 2) & ~(ssize_t)511; /* as if short: continued */
		else if (res[i] >= 0 && fault_hit(2))
			res[i] = (tag & 1) ? -EAGAIN : -ECANCELED; /* as if not done: done again */
		io_uring_cqe_seen(ring, cqe);
		reaped++;
	}
	if (doubt) {
		ring_reset(tr);
		for (size_t i = 0; i < n; i++)
			if (!seen[i])
				res[i] = 0;
	}
	return true;
}

/* The transfer was not done, and doing it again is right. */
static bool not_done(ssize_t res)
{
	return res == -EINTR || res == -EAGAIN || res == -ECANCELED;
}

#define RING_RETRIES 3

/* Transfer all of [buf, len) at offset: continued after short counts and
 * retried after not-done results.  A read past the end of the file reads
 * zeros; a write that makes no progress is -EIO. */
static int full_rw(int fd, bool write, void *buf, size_t len, uint64_t offset)
{
	char *p = buf;
	int retries = 0;

	while (len) {
		size_t chunk = len > (1u << 30) ? (1u << 30) : len;
		struct dio_seg seg = {p, chunk, offset};
		ssize_t n;

		if (retries >= RING_RETRIES || !ring_run(fd, write, &seg, 1, &n))
			n = plain_rw(fd, write, p, chunk, offset);
		if (not_done(n)) {
			retries++;
			continue;
		}
		retries = 0;
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

/* Open the O_DIRECT twin of fd, and keep it only if a direct read works. */
static void open_direct(struct dio *d, const char *path, bool rdonly)
{
	void *probe = NULL;
	int lbs = 512;

	d->dfd = d->fd;
	d->direct = false;
	if (getenv("THINFS_DATA_BUFFERED"))
		return;
	if (d->blockdev && (ioctl(d->fd, BLKSSZGET, &lbs) < 0 || lbs > (int)DIO_ALIGN))
		return;
	int fd = open(path, (rdonly ? O_RDONLY : O_RDWR) | O_DIRECT | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	probe = dio_buffer(DIO_ALIGN);
	if (!probe || pread(fd, probe, DIO_ALIGN, 0) < 0) {
		close(fd);
		free(probe);
		return;
	}
	free(probe);
	d->dfd = fd;
	d->direct = true;
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
	for (unsigned i = 0; i < NR_STRIPES; i++)
		pthread_rwlock_init(&d->stripes[i], NULL);
	open_direct(d, path, rdonly);
	*out = d;
	return 0;
}

void *dio_buffer(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, DIO_ALIGN, len ? len : DIO_ALIGN))
		return NULL;
	return p;
}

bool dio_is_direct(const struct dio *d)
{
	return d->direct;
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
	if (d->dfd != d->fd)
		close(d->dfd);
	close(d->fd);
	for (unsigned i = 0; i < NR_STRIPES; i++)
		pthread_rwlock_destroy(&d->stripes[i]);
	drop_preimages(d);
	free(d->pre);
	pthread_mutex_destroy(&d->track_lock);
	free(d);
}

/* test facility: remember what a range held before an unflushed change */
static void save_preimage(struct dio *d, uint64_t offset, size_t len)
{
	struct preimage p = {.offset = offset, .len = len, .data = malloc(len)};

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

static bool aligned(uint64_t x)
{
	return !(x & (DIO_ALIGN - 1));
}

static uint64_t align_down(uint64_t x)
{
	return x & ~(uint64_t)(DIO_ALIGN - 1);
}

static uint64_t align_up(uint64_t x)
{
	return align_down(x + DIO_ALIGN - 1);
}

static void count_io(struct dio *d, bool write, uint64_t n, uint64_t bytes)
{
	__atomic_add_fetch(write ? &d->stats.writes : &d->stats.reads, n, __ATOMIC_RELAXED);
	__atomic_add_fetch(write ? &d->stats.write_bytes : &d->stats.read_bytes, bytes,
			   __ATOMIC_RELAXED);
}

/* One transfer to or from the data file, counted. */
static int xfer(struct dio *d, int fd, bool write, void *buf, size_t len, uint64_t offset)
{
	int rc;

	count_io(d, write, 1, len);
	rc = full_rw(fd, write, buf, len, offset);
	if (!rc && write && d->obs)
		d->obs(d->obs_arg, DIO_EV_WRITE, offset, len, buf);
	return rc;
}

static void observe(struct dio *d, enum dio_event ev, uint64_t offset, uint64_t len)
{
	if (d->obs)
		d->obs(d->obs_arg, ev, offset, len, NULL);
}

void dio_test_set_observer(struct dio *d, dio_observer fn, void *arg)
{
	d->obs_arg = arg;
	d->obs = fn;
}

void dio_stats(const struct dio *d, struct dio_stats *st)
{
	st->reads = __atomic_load_n(&d->stats.reads, __ATOMIC_RELAXED);
	st->writes = __atomic_load_n(&d->stats.writes, __ATOMIC_RELAXED);
	st->read_bytes = __atomic_load_n(&d->stats.read_bytes, __ATOMIC_RELAXED);
	st->write_bytes = __atomic_load_n(&d->stats.write_bytes, __ATOMIC_RELAXED);
}

int dio_read(struct dio *d, void *buf, size_t len, uint64_t offset)
{
	uint64_t a, e;
	char *bounce;
	int rc;

	if (!d->direct)
		return xfer(d, d->fd, false, buf, len, offset);
	if (aligned(offset) && aligned(len) && aligned((uintptr_t)buf))
		return xfer(d, d->dfd, false, buf, len, offset);
	a = align_down(offset);
	e = align_up(offset + len);
	bounce = dio_buffer(e - a);
	if (!bounce)
		return -ENOMEM;
	rc = xfer(d, d->dfd, false, bounce, e - a, a);
	if (!rc)
		memcpy(buf, bounce + (offset - a), len);
	free(bounce);
	return rc;
}

static void stripe_op(struct dio *d, unsigned s, bool exclusive, bool lock)
{
	if (!lock)
		pthread_rwlock_unlock(&d->stripes[s]);
	else if (exclusive)
		pthread_rwlock_wrlock(&d->stripes[s]);
	else
		pthread_rwlock_rdlock(&d->stripes[s]);
}

/* Take (or drop) the stripes of the chunks in [a, e), ascending, once each.
 * Only the stripes in range are visited: a walk over all of them cost 4% of
 * the daemon's CPU under 4 KiB random writes. */
static void stripes(struct dio *d, uint64_t a, uint64_t e, bool exclusive, bool lock)
{
	uint64_t first = a >> STRIPE_SHIFT, last = (e - 1) >> STRIPE_SHIFT;
	unsigned lo, hi;

	if (last - first + 1 >= NR_STRIPES) {
		for (unsigned s = 0; s < NR_STRIPES; s++)
			stripe_op(d, s, exclusive, lock);
		return;
	}
	/* the chunks map to stripes lo..hi (mod NR_STRIPES); when that wraps,
	 * ascending order takes the wrapped part 0..hi first */
	lo = (unsigned)(first % NR_STRIPES);
	hi = (unsigned)(last % NR_STRIPES);
	if (hi < lo)
		for (unsigned s = 0; s <= hi; s++)
			stripe_op(d, s, exclusive, lock);
	for (unsigned s = lo; s <= (hi < lo ? NR_STRIPES - 1 : hi); s++)
		stripe_op(d, s, exclusive, lock);
}

static int direct_write(struct dio *d, const void *buf, size_t len, uint64_t offset)
{
	uint64_t a = align_down(offset), e = align_up(offset + len);
	bool rmw = !aligned(offset) || !aligned(len);
	char *bounce = NULL;
	int rc = 0;

	if (!rmw && aligned((uintptr_t)buf)) {
		stripes(d, a, e, false, true);
		rc = xfer(d, d->dfd, true, (void *)buf, len, offset);
		stripes(d, a, e, false, false);
		return rc;
	}
	bounce = dio_buffer(e - a);
	if (!bounce)
		return -ENOMEM;
	stripes(d, a, e, rmw, true);
	if (rmw && a != offset)
		rc = xfer(d, d->dfd, false, bounce, DIO_ALIGN, a);
	if (!rc && rmw && e != offset + len && (e - DIO_ALIGN != a || a == offset))
		rc = xfer(d, d->dfd, false, bounce + (e - a - DIO_ALIGN), DIO_ALIGN, e - DIO_ALIGN);
	if (!rc) {
		memcpy(bounce + (offset - a), buf, len);
		rc = xfer(d, d->dfd, true, bounce, e - a, a);
	}
	stripes(d, a, e, rmw, false);
	free(bounce);
	return rc;
}

void dio_test_fail_write(struct dio *d, int nth, int err)
{
	__atomic_store_n(&d->fail_err, err, __ATOMIC_RELAXED);
	__atomic_store_n(&d->fail_countdown, nth, __ATOMIC_RELEASE);
}

int dio_write(struct dio *d, const void *buf, size_t len, uint64_t offset)
{
	if (__atomic_load_n(&d->fail_countdown, __ATOMIC_ACQUIRE) > 0 &&
	    __atomic_sub_fetch(&d->fail_countdown, 1, __ATOMIC_ACQ_REL) == 0)
		return __atomic_load_n(&d->fail_err, __ATOMIC_RELAXED);
	if (d->track)
		save_preimage(d, offset, len);
	if (!d->direct)
		return xfer(d, d->fd, true, (void *)buf, len, offset);
	return direct_write(d, buf, len, offset);
}

/*
 * Up to DIO_BATCH_MAX aligned transfers submitted together and all reaped;
 * one the ring did not finish (short, EINTR/EAGAIN, or dropped with a ring in
 * doubt) is finished with full_rw.  0 or the first error.
 */
static int ring_batch(int fd, bool write, const struct dio_seg *s, size_t n)
{
	ssize_t res[DIO_BATCH_MAX];
	int rc = 0;

	if (!ring_run(fd, write, s, n, res))
		for (size_t i = 0; i < n; i++)
			res[i] = 0;
	for (size_t i = 0; i < n; i++) {
		ssize_t r = res[i];

		if (r < 0 && !not_done(r)) {
			if (!rc)
				rc = (int)r;
			continue;
		}
		if (r < 0)
			r = 0;
		if ((size_t)r < s[i].len) {
			int e = full_rw(fd, write, (char *)s[i].buf + r, s[i].len - (size_t)r,
					s[i].offset + (uint64_t)r);
			if (e && !rc)
				rc = e;
		}
	}
	return rc;
}

static uint64_t seg_bytes(const struct dio_seg *s, size_t n)
{
	uint64_t b = 0;

	for (size_t i = 0; i < n; i++)
		b += s[i].len;
	return b;
}

static bool seg_aligned(const struct dio_seg *s)
{
	return aligned(s->offset) && aligned(s->len) && aligned((uintptr_t)s->buf) &&
	       s->len <= (1u << 30);
}

int dio_read_batch(struct dio *d, const struct dio_seg *segs, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n && !rc; i += DIO_BATCH_MAX) {
		size_t k = n - i < DIO_BATCH_MAX ? n - i : DIO_BATCH_MAX;
		bool all = d->direct;

		for (size_t j = 0; j < k && all; j++)
			all = seg_aligned(&segs[i + j]);
		if (all) {
			count_io(d, false, k, seg_bytes(segs + i, k));
			rc = ring_batch(d->dfd, false, segs + i, k);
			continue;
		}
		for (size_t j = 0; j < k && !rc; j++)
			rc = dio_read(d, segs[i + j].buf, segs[i + j].len, segs[i + j].offset);
	}
	return rc;
}

/* The stripes of every segment, each taken once, in ascending order. */
static void batch_stripes(struct dio *d, const struct dio_seg *s, size_t n, bool lock)
{
	uint64_t set[NR_STRIPES / 64] = {0};

	for (size_t i = 0; i < n; i++) {
		uint64_t first = s[i].offset >> STRIPE_SHIFT;
		uint64_t last = (s[i].offset + s[i].len - 1) >> STRIPE_SHIFT;
		if (last - first + 1 >= NR_STRIPES)
			last = first + NR_STRIPES - 1;
		for (uint64_t c = first; c <= last; c++)
			set[(c % NR_STRIPES) / 64] |= 1ull << (c % 64);
	}
	for (unsigned w = 0; w < NR_STRIPES / 64; w++)
		for (uint64_t bits = set[w]; bits; bits &= bits - 1)
			stripe_op(d, w * 64 + (unsigned)__builtin_ctzll(bits), false, lock);
}

int dio_write_batch(struct dio *d, const struct dio_seg *segs, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n && !rc; i += DIO_BATCH_MAX) {
		size_t k = n - i < DIO_BATCH_MAX ? n - i : DIO_BATCH_MAX;
		bool all = d->direct && !d->track && !d->obs &&
			   !__atomic_load_n(&d->fail_countdown, __ATOMIC_ACQUIRE);

		for (size_t j = 0; j < k && all; j++)
			all = seg_aligned(&segs[i + j]);
		if (all) {
			/* aligned writes only share their stripes with each other */
			batch_stripes(d, segs + i, k, true);
			count_io(d, true, k, seg_bytes(segs + i, k));
			rc = ring_batch(d->dfd, true, segs + i, k);
			batch_stripes(d, segs + i, k, false);
			continue;
		}
		/* test facilities and misaligned pieces: one by one */
		for (size_t j = 0; j < k && !rc; j++)
			rc = dio_write(d, segs[i + j].buf, segs[i + j].len, segs[i + j].offset);
	}
	return rc;
}

int dio_copy(struct dio *d, uint64_t src, uint64_t dst, size_t len)
{
	size_t chunk = len < COPY_CHUNK ? len : COPY_CHUNK;
	void *buf = dio_buffer(chunk);
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
	void *z = dio_buffer(chunk);
	int rc = 0;

	if (!z)
		return -ENOMEM;
	memset(z, 0, chunk);
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
		uint64_t range[2] = {offset, len};
		if (ioctl(d->fd, BLKZEROOUT, range) == 0) {
			observe(d, DIO_EV_PUNCH, offset, len);
			return 0;
		}
	} else if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
			     (off_t)len) == 0) {
		observe(d, DIO_EV_PUNCH, offset, len);
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
	observe(d, DIO_EV_FLUSH, 0, 0);
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
	observe(d, DIO_EV_SIZE, size, 0);
	if (fsync(d->fd) < 0)
		return -errno;
	observe(d, DIO_EV_FLUSH, 0, 0);
	return 0;
}

int dio_host_free(struct dio *d, uint64_t *bytes)
{
	struct statvfs sv;

	if (d->blockdev)
		return -EOPNOTSUPP;
	if (fstatvfs(d->fd, &sv) < 0)
		return -errno;
	*bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
	return 0;
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
