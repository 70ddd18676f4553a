/* SPDX-License-Identifier: MIT */
/*
 * thinfs-fsx - a model-based random exerciser for a thinfs volume (fsx is not
 * packaged).  It drives a volume file of a mounted pool with random reads,
 * writes of any size and alignment, punch-hole, zero-range, truncate (shrink
 * and grow back: the tail must read zeros), fsync, fdatasync, O_DSYNC writes
 * and snapshot sets (mkdir/rmdir MNT/.snapshots/S), and checks
 * every read against an in-memory model of the volume and of every set.
 *
 * Every 512-byte sector written is self-describing: magic, volume tag, sector
 * number, sequence number, CRC.  So after a crash a sector can be judged on
 * its own: it must hold its last acknowledged content, a later write of ours
 * to that very sector (intact), or zeros where allowed - never anything else.
 *
 * The op log (--log FILE) records each op before it runs and an "ack" line
 * when a flush completes; --verify-after-crash FILE replays it to rebuild the
 * acknowledged state, the writes in flight and the sets, then checks the
 * volume and every surviving set (invariants I1-I3).  --replay FILE reruns a
 * logged sequence exactly.  Exit: 0 pass, 1 verification failure, 2 error.
 *
 * --ext adds what xfstests' fsx does and this did not (issue 17): the size
 * moves (writes and zero-ranges past the end grow the volume, truncate
 * leaves it at a new size), mmap reads and writes (MAP_SHARED), O_DIRECT
 * reads and writes through io_uring and through Linux AIO (io_submit), and
 * copy_file_range from a second volume VOLUME-src into VOLUME.  After a
 * crash in --ext mode the size must lie between the least and the most it
 * was since the last acknowledgement; the sectors are judged as always.
 *
 * Usage: thinfs-fsx [--seed N] [--ops N] [--size BYTES] [--snapshots] [--ext]
 *                   [--log FILE] [--replay FILE] [--verify-after-crash FILE]
 *                   [--quiet] MNT VOLUME
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/aio_abi.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SECT 512u
#define MAGIC 0x7468696e66737821ull /* "thinfsx!" */
#define MAX_SETS 64
#define DIO_SECT 8u /* O_DIRECT ops move whole 4 KiB pages */

struct sector_hdr {
	uint64_t magic;
	uint64_t vtag;
	uint64_t sector;
	uint64_t seq;
	uint32_t crc;
	uint32_t pad;
};

struct set_img {
	bool live;
	bool maybe; /* taken or deleted by the op in flight at the crash */
	char name[32];
	uint64_t *seq; /* per sector, 0 = zero */
	uint64_t nr;   /* its size in sectors */
};

static struct {
	const char *mnt, *vol;
	char path[4096];
	uint64_t size, nr_sect, vtag;
	uint64_t *cur;	 /* model: seq per sector, 0 = zeros */
	uint64_t *acked; /* at the last acknowledged flush */
	uint8_t *dirty;	 /* written since the last ack (for the allowed sets) */
	struct set_img sets[MAX_SETS];
	FILE *log;
	bool quiet, snapshots;
	uint64_t seq;
	uint64_t trunc_inflight; /* replaying: 1 + sectors of a truncate not yet acked */
	int fd;
	uint64_t nr_ops, nr_reads, nr_writes, nr_punch, nr_zero, nr_sync, nr_sets, nr_checked;
	/* --ext */
	bool ext;
	uint64_t vsize;		     /* the volume's size in sectors (else nr_sect) */
	uint64_t lo_vsize, hi_vsize; /* least and most since the last ack */
	int dfd, sfd;		     /* O_DIRECT fd; the copy source VOLUME-src */
	char spath[4200];
	struct io_uring ring;
	aio_context_t aio;
	uint64_t nr_mmap, nr_direct, nr_aio, nr_copy, nr_extend;
} g;

static uint64_t rng;

static uint64_t rnd(uint64_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return n ? rng % n : 0;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "thinfs-fsx: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static uint32_t crc32c(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~0u;

	while (len--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
	}
	return ~c;
}

static void fill_sector(unsigned char *p, uint64_t sector, uint64_t seq)
{
	struct sector_hdr h = {MAGIC, g.vtag, sector, seq, 0, 0};
	uint64_t x = seq * 0x9e3779b97f4a7c15ull ^ sector;

	for (unsigned i = sizeof(h); i < SECT; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = (unsigned char)(x >> 56);
	}
	memcpy(p, &h, sizeof(h));
	h.crc = crc32c(p + sizeof(h), SECT - sizeof(h)) ^ (uint32_t)seq;
	memcpy(p, &h, sizeof(h));
}

/* The seq a sector holds: 0 for zeros, UINT64_MAX for garbage/torn. */
static uint64_t judge_sector(const unsigned char *p, uint64_t sector)
{
	struct sector_hdr h;
	static const unsigned char zero[SECT];

	if (!memcmp(p, zero, SECT))
		return 0;
	memcpy(&h, p, sizeof(h));
	if (h.magic != MAGIC || h.vtag != g.vtag || h.sector != sector)
		return UINT64_MAX;
	if ((crc32c(p + sizeof(h), SECT - sizeof(h)) ^ (uint32_t)h.seq) != h.crc)
		return UINT64_MAX;
	return h.seq;
}

static void logf_(const char *fmt, ...)
{
	va_list ap;

	if (!g.log)
		return;
	va_start(ap, fmt);
	vfprintf(g.log, fmt, ap);
	va_end(ap);
	fflush(g.log);
}

/* ---- ops ---- */

static void set_path(char *out, size_t len, const char *set)
{
	snprintf(out, len, "%s/.snapshots/%s", g.mnt, set);
}

static int verify_file(const char *path, const uint64_t *model, uint64_t nr, bool exact,
		       const char *what)
{
	int fd = open(path, O_RDONLY);
	unsigned char *buf = malloc(1 << 20);
	struct stat sb;
	int bad = 0;

	if (fd < 0 || !buf || fstat(fd, &sb) < 0)
		die("open %s: %s", path, strerror(errno));
	if (exact && (uint64_t)sb.st_size != nr * SECT) {
		fprintf(stderr, "%s: size %lld, expected %" PRIu64 "\n", what,
			(long long)sb.st_size, nr * SECT);
		bad++;
	}
	for (uint64_t s0 = 0; s0 < nr; s0 += (1 << 20) / SECT) {
		uint64_t n = nr - s0 < (1 << 20) / SECT ? nr - s0 : (1 << 20) / SECT;
		ssize_t r = pread(fd, buf, n * SECT, (off_t)(s0 * SECT));
		if (r != (ssize_t)(n * SECT))
			die("read %s: %s", path, r < 0 ? strerror(errno) : "short");
		for (uint64_t i = 0; i < n; i++) {
			uint64_t s = s0 + i, got = judge_sector(buf + i * SECT, s);
			bool ok = got == model[s];
			if (!ok && !exact)
				ok = got != UINT64_MAX && g.dirty[s] &&
				     (got == 0 ? g.dirty[s] & 2 : got > model[s]);
			if (!ok && bad++ < 8)
				fprintf(stderr,
					"%s: sector %" PRIu64 " holds %s%" PRIu64
					", expected %" PRIu64 "%s\n",
					what, s, got == UINT64_MAX ? "garbage " : "seq ",
					got == UINT64_MAX ? 0 : got, model[s],
					exact ? "" : " (or a later write of ours)");
			g.nr_checked++;
		}
	}
	free(buf);
	close(fd);
	return bad;
}

/* After a crash: a truncate in flight may have shrunk the volume without
 * growing it back (each step is durable on return).  Finish it, as the op
 * would have; any other size is wrong. */
static void finish_inflight_truncate(void)
{
	struct stat sb;
	int fd = open(g.path, O_RDWR);

	if (fd < 0 || fstat(fd, &sb) < 0)
		die("open %s: %s", g.path, strerror(errno));
	if (g.ext) {
		/* a grown size is durable with the next commit, a truncate on
		 * return: anything from the least to the most since the ack */
		uint64_t sz = (uint64_t)sb.st_size;
		if (sz < g.lo_vsize * SECT || sz > g.hi_vsize * SECT)
			die("%s: size %llu after the crash, expected %" PRIu64 "..%" PRIu64, g.path,
			    (unsigned long long)sz, g.lo_vsize * SECT, g.hi_vsize * SECT);
		/* judge every sector: what lies past the size reads zeros */
		if (ftruncate(fd, (off_t)g.size) < 0)
			die("truncate %s: %s", g.path, strerror(errno));
		close(fd);
		return;
	}
	if ((uint64_t)sb.st_size != g.size) {
		if (!g.trunc_inflight || (uint64_t)sb.st_size != (g.trunc_inflight - 1) * SECT)
			die("%s: size %lld after the crash, expected %" PRIu64 "%s", g.path,
			    (long long)sb.st_size, g.size,
			    g.trunc_inflight ? " or that of the truncate in flight" : "");
		if (ftruncate(fd, (off_t)g.size) < 0)
			die("truncate %s: %s", g.path, strerror(errno));
		if (!g.quiet)
			printf("thinfs-fsx: the truncate in flight had shrunk %s; grown back\n",
			       g.vol);
	}
	close(fd);
}

/* The model's size moves (--ext): sectors at and past it are zeros. */
static void set_vsize(uint64_t v)
{
	g.vsize = v;
	if (v > g.hi_vsize)
		g.hi_vsize = v;
	if (v < g.lo_vsize)
		g.lo_vsize = v;
}

static void grow_model(uint64_t end)
{
	if (end > g.vsize) {
		set_vsize(end);
		g.nr_extend++;
	}
}

/* Compare len bytes read at off with the model. */
static void check_read(const unsigned char *buf, uint64_t off, uint64_t len, const char *how)
{
	for (uint64_t pos = off; pos < off + len;) {
		uint64_t s = pos / SECT, so = pos % SECT;
		uint64_t n = SECT - so < off + len - pos ? SECT - so : off + len - pos;
		unsigned char want[SECT];
		if (g.cur[s])
			fill_sector(want, s, g.cur[s]);
		else
			memset(want, 0, SECT);
		if (memcmp(buf + (pos - off), want + so, n))
			die("verify: %s at %" PRIu64 " (sector %" PRIu64
			    ") differs from the model (seq %" PRIu64 ")",
			    how, pos, s, g.cur[s]);
		pos += n;
	}
}

static void do_read(uint64_t off, uint64_t len)
{
	unsigned char *buf = malloc(len ? len : 1);
	ssize_t r = pread(g.fd, buf, len, (off_t)off);

	if (r != (ssize_t)len)
		die("pread %" PRIu64 "+%" PRIu64 ": %s", off, len,
		    r < 0 ? strerror(errno) : "short");
	/* compare whole sectors covered; partial edges by re-deriving */
	for (uint64_t pos = off; pos < off + len;) {
		uint64_t s = pos / SECT, so = pos % SECT;
		uint64_t n = SECT - so < off + len - pos ? SECT - so : off + len - pos;
		unsigned char want[SECT];
		if (g.cur[s])
			fill_sector(want, s, g.cur[s]);
		else
			memset(want, 0, SECT);
		if (memcmp(buf + (pos - off), want + so, n))
			die("verify: read at %" PRIu64 " (sector %" PRIu64
			    ") differs from the model (seq %" PRIu64 ")",
			    pos, s, g.cur[s]);
		pos += n;
	}
	free(buf);
	g.nr_reads++;
}

static void do_write(uint64_t s, uint64_t n, bool dsync)
{
	unsigned char *buf = malloc(n * SECT);
	int fd = g.fd;

	for (uint64_t i = 0; i < n; i++) {
		g.seq++;
		fill_sector(buf + i * SECT, s + i, g.seq);
		g.cur[s + i] = g.seq;
		g.dirty[s + i] |= 1;
	}
	if (dsync) {
		fd = open(g.path, O_WRONLY | O_DSYNC);
		if (fd < 0)
			die("open O_DSYNC: %s", strerror(errno));
	}
	ssize_t w = pwrite(fd, buf, n * SECT, (off_t)(s * SECT));
	if (w != (ssize_t)(n * SECT))
		die("pwrite %" PRIu64 "+%" PRIu64 ": %s", s * SECT, n * SECT,
		    w < 0 ? strerror(errno) : "short");
	grow_model(s + n);
	if (dsync) {
		close(fd);
		/* an O_DSYNC write is acknowledged on return */
		for (uint64_t i = 0; i < n; i++)
			g.acked[s + i] = g.cur[s + i];
		logf_("dsync-ack %" PRIu64 " %" PRIu64 "\n", s, n);
	}
	free(buf);
	g.nr_writes++;
}

static void do_zero(uint64_t s, uint64_t n, bool punch)
{
	int mode = punch ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE;

	if (fallocate(g.fd, mode, (off_t)(s * SECT), (off_t)(n * SECT)) < 0)
		die("fallocate(%s) %" PRIu64 "+%" PRIu64 ": %s", punch ? "punch" : "zero", s * SECT,
		    n * SECT, strerror(errno));
	for (uint64_t i = 0; i < n; i++) {
		g.cur[s + i] = 0;
		g.dirty[s + i] |= 2;
	}
	if (!punch) /* without KEEP_SIZE: grows as a write does */
		grow_model(s + n);
	punch ? g.nr_punch++ : g.nr_zero++;
}

static void ack(void);

/* Shrink to s sectors and grow back: a resize is an administrative change,
 * durable (and so an acknowledgement of everything before it) on return. */
static void do_truncate(uint64_t s, uint64_t t)
{
	if (ftruncate(g.fd, (off_t)(s * SECT)) < 0 || ftruncate(g.fd, (off_t)(t * SECT)) < 0)
		die("truncate to %" PRIu64 ": %s", s * SECT, strerror(errno));
	for (uint64_t i = s; i < g.nr_sect; i++) {
		g.cur[i] = 0;
		g.dirty[i] |= 2;
	}
	set_vsize(s);
	set_vsize(t);
	g.nr_zero++;
}

static void ack(void)
{
	memcpy(g.acked, g.cur, g.nr_sect * sizeof(uint64_t));
	memset(g.dirty, 0, g.nr_sect);
	g.lo_vsize = g.hi_vsize = g.vsize;
}

/* ---- --ext: mmap, O_DIRECT through io_uring and AIO, copy_file_range ---- */

static void *map_range(uint64_t off, uint64_t len, uint64_t *moff, uint64_t *mlen)
{
	void *p;

	*moff = off & ~4095ull;
	*mlen = off + len - *moff;
	p = mmap(NULL, *mlen, PROT_READ | PROT_WRITE, MAP_SHARED, g.fd, (off_t)*moff);
	if (p == MAP_FAILED)
		die("mmap %" PRIu64 "+%" PRIu64 ": %s", *moff, *mlen, strerror(errno));
	return p;
}

static void do_mread(uint64_t off, uint64_t len)
{
	uint64_t moff, mlen;
	unsigned char *p = map_range(off, len, &moff, &mlen);

	check_read(p + (off - moff), off, len, "mmap read");
	munmap(p, mlen);
	g.nr_mmap++;
}

/* Stores through a shared mapping: dirty pages the kernel writes back by
 * itself, or at the next fsync (so they are acknowledged only then). */
static void do_mwrite(uint64_t s, uint64_t n)
{
	uint64_t moff, mlen;
	unsigned char *p = map_range(s * SECT, n * SECT, &moff, &mlen);

	for (uint64_t i = 0; i < n; i++) {
		g.seq++;
		fill_sector(p + (s + i) * SECT - moff, s + i, g.seq);
		g.cur[s + i] = g.seq;
		g.dirty[s + i] |= 1;
	}
	munmap(p, mlen);
	g.nr_mmap++;
}

static unsigned char *dio_buf(uint64_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len ? len : 4096))
		die("out of memory");
	return p;
}

/* One O_DIRECT transfer through io_uring (uring) or Linux AIO; whole. */
static void direct_io(bool uring, bool write, unsigned char *buf, uint64_t len, uint64_t off)
{
	ssize_t res;

	if (uring) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&g.ring);
		struct io_uring_cqe *cqe;
		if (write)
			io_uring_prep_write(sqe, g.dfd, buf, (unsigned)len, off);
		else
			io_uring_prep_read(sqe, g.dfd, buf, (unsigned)len, off);
		if (io_uring_submit(&g.ring) != 1 || io_uring_wait_cqe(&g.ring, &cqe))
			die("io_uring: %s", strerror(errno));
		res = cqe->res;
		io_uring_cqe_seen(&g.ring, cqe);
	} else {
		struct iocb cb = {.aio_fildes = (uint32_t)g.dfd,
				  .aio_lio_opcode = write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD,
				  .aio_buf = (uint64_t)(uintptr_t)buf,
				  .aio_nbytes = len,
				  .aio_offset = (int64_t)off};
		struct iocb *cbs[1] = {&cb};
		struct io_event ev;
		if (syscall(SYS_io_submit, g.aio, 1, cbs) != 1 ||
		    syscall(SYS_io_getevents, g.aio, 1, 1, &ev, NULL) != 1)
			die("aio: %s", strerror(errno));
		res = (ssize_t)ev.res;
	}
	if (res != (ssize_t)len)
		die("%s O_DIRECT %s %" PRIu64 "+%" PRIu64 ": %s", uring ? "io_uring" : "aio",
		    write ? "write" : "read", off, len, res < 0 ? strerror((int)-res) : "short");
	uring ? g.nr_direct++ : g.nr_aio++;
}

static void do_dread(bool uring, uint64_t s, uint64_t n)
{
	unsigned char *buf = dio_buf(n * SECT);

	direct_io(uring, false, buf, n * SECT, s * SECT);
	check_read(buf, s * SECT, n * SECT, uring ? "io_uring read" : "aio read");
	free(buf);
}

static void do_dwrite(bool uring, uint64_t s, uint64_t n)
{
	unsigned char *buf = dio_buf(n * SECT);

	for (uint64_t i = 0; i < n; i++) {
		g.seq++;
		fill_sector(buf + i * SECT, s + i, g.seq);
		g.cur[s + i] = g.seq;
		g.dirty[s + i] |= 1;
	}
	direct_io(uring, true, buf, n * SECT, s * SECT);
	grow_model(s + n);
	free(buf);
}

/* Fresh sectors base.. into VOLUME-src at [s, s+n), then copy_file_range
 * them into the volume at the same place (a sector names its position). */
static void do_copy(uint64_t s, uint64_t n, uint64_t base)
{
	unsigned char *buf = malloc(n * SECT);
	loff_t in = (loff_t)(s * SECT), out = in;
	uint64_t left = n * SECT;

	for (uint64_t i = 0; i < n; i++)
		fill_sector(buf + i * SECT, s + i, base + i);
	if (pwrite(g.sfd, buf, n * SECT, (off_t)(s * SECT)) != (ssize_t)(n * SECT))
		die("write %s: %s", g.spath, strerror(errno));
	while (left) {
		ssize_t c = copy_file_range(g.sfd, &in, g.fd, &out, left, 0);
		if (c <= 0)
			die("copy_file_range %" PRIu64 "+%" PRIu64 ": %s", s * SECT, n * SECT,
			    c < 0 ? strerror(errno) : "no progress");
		left -= (uint64_t)c;
	}
	free(buf);
	g.nr_copy++;
}

static void ext_open(void)
{
	snprintf(g.spath, sizeof(g.spath), "%s-src", g.path);
	g.sfd = open(g.spath, O_RDWR | O_CREAT, 0600);
	g.dfd = open(g.path, O_RDWR | O_DIRECT);
	if (g.sfd < 0 || g.dfd < 0)
		die("open %s: %s", g.sfd < 0 ? g.spath : g.path, strerror(errno));
	if (io_uring_queue_init(4, &g.ring, 0))
		die("io_uring_queue_init");
	if (syscall(SYS_io_setup, 4, &g.aio))
		die("io_setup: %s", strerror(errno));
}

static void do_sync(bool data)
{
	if ((data ? fdatasync(g.fd) : fsync(g.fd)) < 0)
		die("%s: %s", data ? "fdatasync" : "fsync", strerror(errno));
	ack();
	logf_("ack\n");
	g.nr_sync++;
}

static void take_set(int i)
{
	char p[4200];

	snprintf(g.sets[i].name, sizeof(g.sets[i].name), "fsx%d", i);
	set_path(p, sizeof(p), g.sets[i].name);
	if (mkdir(p, 0700) < 0)
		die("mkdir %s: %s", p, strerror(errno));
	if (!g.sets[i].seq)
		g.sets[i].seq = malloc(g.nr_sect * sizeof(uint64_t));
	memcpy(g.sets[i].seq, g.cur, g.nr_sect * sizeof(uint64_t));
	g.sets[i].nr = g.vsize;
	g.sets[i].live = true;
	/* a snapshot commits everything before it */
	ack();
	logf_("ack\n");
	g.nr_sets++;
}

static void drop_set(int i)
{
	char p[4200];

	set_path(p, sizeof(p), g.sets[i].name);
	if (rmdir(p) < 0)
		die("rmdir %s: %s", p, strerror(errno));
	g.sets[i].live = false;
}

/* Apply one op line (from the generator or a log). */
/* The model of a write of n sectors at s (replaying a log). */
static void model_write(uint64_t s, uint64_t n, bool grows)
{
	for (uint64_t i = 0; i < n; i++) {
		g.cur[s + i] = ++g.seq;
		g.dirty[s + i] |= 1;
	}
	if (grows)
		grow_model(s + n);
}

/* The --ext ops; false if op is none of them. */
static bool apply_ext(const char *op, uint64_t a, uint64_t b, uint64_t c, bool execute)
{
	if (!strcmp(op, "mread") || !strcmp(op, "uread") || !strcmp(op, "aread")) {
		if (execute && op[0] == 'm')
			do_mread(a, b);
		else if (execute)
			do_dread(op[0] == 'u', a, b);
	} else if (!strcmp(op, "mwrite")) {
		execute ? do_mwrite(a, b) : model_write(a, b, false);
	} else if (!strcmp(op, "uwrite") || !strcmp(op, "awrite")) {
		execute ? do_dwrite(op[0] == 'u', a, b) : model_write(a, b, true);
	} else if (!strcmp(op, "copy")) {
		if (execute)
			do_copy(a, b, c);
		for (uint64_t i = 0; i < b; i++) {
			g.cur[a + i] = c + i;
			g.dirty[a + i] |= 1;
		}
		g.seq = c + b - 1;
		grow_model(a + b);
	} else {
		return false;
	}
	return true;
}

static void apply(const char *line, bool execute)
{
	uint64_t a = 0, b = 0, c = 0;
	char op[32];
	int nf = sscanf(line, "%31s %" SCNu64 " %" SCNu64 " %" SCNu64, op, &a, &b, &c);

	if (nf < 1)
		return;
	if (apply_ext(op, a, b, c, execute)) {
		g.nr_ops++;
		return;
	}
	if (!strcmp(op, "read")) {
		if (execute)
			do_read(a, b);
	} else if (!strcmp(op, "write") || !strcmp(op, "dwrite")) {
		if (execute)
			do_write(a, b, op[0] == 'd');
		else
			model_write(a, b, true);
	} else if (!strcmp(op, "dsync-ack")) {
		if (!execute)
			for (uint64_t i = 0; i < b; i++)
				g.acked[a + i] = g.cur[a + i];
	} else if (!strcmp(op, "punch") || !strcmp(op, "zero")) {
		if (execute) {
			do_zero(a, b, op[0] == 'p');
		} else {
			for (uint64_t i = 0; i < b; i++) {
				g.cur[a + i] = 0;
				g.dirty[a + i] |= 2;
			}
			if (op[0] == 'z')
				grow_model(a + b);
		}
	} else if (!strcmp(op, "truncate")) {
		if (nf < 3)
			b = g.nr_sect; /* shrink and grow back */
		if (execute) {
			do_truncate(a, b);
			ack();
			logf_("ack\n");
		} else {
			for (uint64_t i = a; i < g.nr_sect; i++) {
				g.cur[i] = 0;
				g.dirty[i] |= 2;
			}
			set_vsize(a);
			set_vsize(b);
			g.trunc_inflight = a + 1;
		}
	} else if (!strcmp(op, "fsync") || !strcmp(op, "fdatasync")) {
		if (execute)
			do_sync(op[1] == 'd');
	} else if (!strcmp(op, "ack")) {
		if (!execute) {
			ack();
			g.trunc_inflight = 0;
		}
	} else if (!strcmp(op, "mkset")) {
		if (execute) {
			take_set((int)a);
		} else {
			if (!g.sets[a].seq)
				g.sets[a].seq = malloc(g.nr_sect * sizeof(uint64_t));
			memcpy(g.sets[a].seq, g.cur, g.nr_sect * sizeof(uint64_t));
			g.sets[a].nr = g.vsize;
			snprintf(g.sets[a].name, sizeof(g.sets[a].name), "fsx%d", (int)a);
			g.sets[a].live = true;
			g.sets[a].maybe = true; /* until its ack line */
		}
	} else if (!strcmp(op, "rmset")) {
		if (execute)
			drop_set((int)a);
		else {
			g.sets[a].live = false;
			g.sets[a].maybe = true;
		}
	} else if (!strcmp(op, "set-done")) {
		if (!execute)
			g.sets[a].maybe = false;
	}
	g.nr_ops++;
}

static void gen_set_op(char *line, size_t len, uint64_t r);

/* A sector range [*s, *s + *n) of up to max sectors from below `from`,
 * within nr sectors (align: whole O_DIRECT pages); false if none fits. */
static bool pick(uint64_t from, uint64_t max, uint64_t nr, uint64_t align, uint64_t *s, uint64_t *n)
{
	nr = nr / align * align;
	if (nr < align)
		return false;
	*s = rnd(from < nr ? from + 1 : nr) / align * align;
	if (*s >= nr)
		*s = nr - align;
	*n = (1 + rnd(max / align)) * align;
	if (*s + *n > nr)
		*n = nr - *s;
	return true;
}

/* A range for an op that may grow the volume: a third of them start near
 * its end (from 8 sectors before to 64 past), the rest anywhere before that. */
static bool pick_grow(uint64_t max, uint64_t align, uint64_t *s, uint64_t *n)
{
	uint64_t v = g.vsize, nr = g.nr_sect / align * align;

	if (rnd(3) || nr < align)
		return pick(v + 64 < g.nr_sect ? v + 64 : g.nr_sect, max, g.nr_sect, align, s, n);
	*s = (v - (v < 8 ? v : rnd(8)) + rnd(64)) / align * align;
	if (*s >= nr)
		*s = nr - align;
	*n = (1 + rnd(max / align)) * align;
	if (*s + *n > nr)
		*n = nr - *s;
	return true;
}

/* --ext: every op, and sizes that move: writes, O_DIRECT writes, copies and
 * zero-ranges may start up to 64 sectors past the end, growing it. */
static void gen_ext_op(char *line, size_t len)
{
	uint64_t r = rnd(100), v = g.vsize, nr = g.nr_sect, s = 0, n = 0;
	uint64_t max = r % 3 ? 16 : 300;
	static const char *const dio[] = {"uread", "uwrite", "aread", "awrite"};

	if (r < 20 && pick(v, 4 * max, v, 1, &s, &n))
		snprintf(line, len, "read %" PRIu64 " %" PRIu64, s * SECT + r % 7,
			 n * SECT - r % 7 - r % 5);
	else if (r < 34 && pick_grow(max, 1, &s, &n))
		snprintf(line, len, "write %" PRIu64 " %" PRIu64, s, n);
	else if (r < 37 && pick_grow(max, 1, &s, &n))
		snprintf(line, len, "dwrite %" PRIu64 " %" PRIu64, s, n);
	else if (r < 42 && pick(v, max, v, 1, &s, &n))
		snprintf(line, len, "punch %" PRIu64 " %" PRIu64, s, n);
	else if (r < 46 && pick_grow(max, 1, &s, &n))
		snprintf(line, len, "zero %" PRIu64 " %" PRIu64, s, n);
	else if (r < 51)
		snprintf(line, len, r < 49 ? "fsync" : "fdatasync");
	else if (r < 54 && (s = rnd(nr)) <= nr) /* to a new size: mostly shorter */
		snprintf(line, len, "truncate %" PRIu64 " %" PRIu64, s,
			 s + rnd((nr - s < 256 ? nr - s : 256) + 1));
	else if (r < 60 && pick(v, max, v, 1, &s, &n))
		snprintf(line, len, "mread %" PRIu64 " %" PRIu64, s * SECT + r % 7,
			 n * SECT - r % 7);
	else if (r < 66 && pick(v, max, v, 1, &s, &n))
		snprintf(line, len, "mwrite %" PRIu64 " %" PRIu64, s, n);
	else if (r < 86 &&
		 (r % 2 ? pick_grow(max, DIO_SECT, &s, &n) : pick(v, max, v, DIO_SECT, &s, &n)))
		snprintf(line, len, "%s %" PRIu64 " %" PRIu64, dio[(r - 66) / 10 * 2 + r % 2], s,
			 n);
	else if (r < 93 && pick_grow(max, 1, &s, &n))
		snprintf(line, len, "copy %" PRIu64 " %" PRIu64 " %" PRIu64, s, n, g.seq + 1);
	else
		gen_set_op(line, len, r);
}

static void gen_op(char *line, size_t len)
{
	uint64_t r = rnd(100), s = rnd(g.nr_sect), n;

	if (g.ext)
		return gen_ext_op(line, len);

	if (r < 30) {
		uint64_t off = rnd(g.size), l = 1 + rnd(r < 15 ? 4096 : 256 * 1024);
		if (off + l > g.size)
			l = g.size - off;
		snprintf(line, len, "read %" PRIu64 " %" PRIu64, off, l);
		return;
	}
	n = 1 + rnd(r < 50 ? 8 : 300);
	if (s + n > g.nr_sect)
		n = g.nr_sect - s;
	if (r < 65)
		snprintf(line, len, "write %" PRIu64 " %" PRIu64, s, n);
	else if (r < 70)
		snprintf(line, len, "dwrite %" PRIu64 " %" PRIu64, s, n);
	else if (r < 78)
		snprintf(line, len, "punch %" PRIu64 " %" PRIu64, s, n);
	else if (r < 83)
		snprintf(line, len, "zero %" PRIu64 " %" PRIu64, s, n);
	else if (r < 86)
		snprintf(line, len, "fsync");
	else if (r < 88)
		snprintf(line, len, "truncate %" PRIu64, g.nr_sect / 2 + rnd(g.nr_sect / 2));
	else if (r < 92)
		snprintf(line, len, "fdatasync");
	else
		gen_set_op(line, len, r);
}

static void gen_set_op(char *line, size_t len, uint64_t r)
{
	if (g.snapshots) {
		int live = -1, free_slot = -1;
		for (int i = 0; i < MAX_SETS; i++) {
			if (g.sets[i].live && live < 0)
				live = i;
			if (!g.sets[i].live && !g.sets[i].seq && free_slot < 0)
				free_slot = i;
		}
		if ((r < 96 || live < 0) && free_slot >= 0)
			snprintf(line, len, "mkset %d", free_slot);
		else if (live >= 0)
			snprintf(line, len, "rmset %d", live);
		else
			snprintf(line, len, "fsync");
	} else {
		snprintf(line, len, "fsync");
	}
}

static void verify_sets(bool after_crash, int *bad)
{
	char p[4200], what[64];
	struct stat sb;

	for (int i = 0; i < MAX_SETS; i++) {
		if (!g.sets[i].seq)
			continue;
		set_path(p, sizeof(p), g.sets[i].name);
		char vp[8400];
		snprintf(vp, sizeof(vp), "%s/%s", p, g.vol);
		bool exists = stat(vp, &sb) == 0;
		if (exists != g.sets[i].live && !(after_crash && g.sets[i].maybe)) {
			fprintf(stderr, "set %s: %s\n", g.sets[i].name,
				exists ? "exists but was deleted" : "is missing");
			(*bad)++;
		}
		if (exists && (g.sets[i].live || g.sets[i].maybe)) {
			snprintf(what, sizeof(what), "set %s", g.sets[i].name);
			*bad += verify_file(vp, g.sets[i].seq, g.sets[i].nr, true, what);
		}
	}
}

struct args {
	uint64_t seed, ops;
	const char *logpath, *replay, *verify;
};

/* Options into a and g; returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
	    {"seed", 1, 0, 's'},      {"ops", 1, 0, 'n'},    {"size", 1, 0, 'S'},
	    {"log", 1, 0, 'l'},	      {"replay", 1, 0, 'r'}, {"verify-after-crash", 1, 0, 'v'},
	    {"snapshots", 0, 0, 'x'}, {"quiet", 0, 0, 'q'},  {"ext", 0, 0, 'e'},
	    {"help", 0, 0, 'h'},      {0, 0, 0, 0},
	};
	int c;

	g.size = 64ull << 20;
	while ((c = getopt_long(argc, argv, "s:n:S:l:r:v:xeqh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			a->seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			a->ops = strtoull(optarg, NULL, 0);
			break;
		case 'S':
			g.size = strtoull(optarg, NULL, 0);
			break;
		case 'l':
			a->logpath = optarg;
			break;
		case 'r':
			a->replay = optarg;
			break;
		case 'v':
			a->verify = optarg;
			break;
		case 'x':
			g.snapshots = true;
			break;
		case 'q':
			g.quiet = true;
			break;
		case 'e':
			g.ext = true;
			break;
		case 'h':
			printf("usage: thinfs-fsx [--seed N] [--ops N] [--size BYTES] "
			       "[--snapshots] [--ext] "
			       "[--log FILE] [--replay FILE] [--verify-after-crash FILE] [--quiet] "
			       "MNT VOLUME\n");
			return 0;
		default:
			return 2;
		}
	}
	return -1;
}

/* The model, sized by --size or by the log being replayed or verified. */
static void setup_model(int argc, char **argv, const struct args *a)
{
	char line[256];

	if (argc - optind != 2)
		die("usage: thinfs-fsx [options] MNT VOLUME (see --help)");
	if (a->verify || a->replay) {
		/* the size the log was made with */
		FILE *f = fopen(a->verify ? a->verify : a->replay, "r");
		uint64_t sz;
		if (f && fgets(line, sizeof(line), f) &&
		    sscanf(line, "# thinfs-fsx seed %*u size %" SCNu64, &sz) == 1) {
			g.size = sz;
			g.ext = strstr(line, " ext") != NULL;
		}
		if (f)
			fclose(f);
	}
	g.mnt = argv[optind];
	g.vol = argv[optind + 1];
	snprintf(g.path, sizeof(g.path), "%s/%s", g.mnt, g.vol);
	g.size = g.size / SECT * SECT;
	g.nr_sect = g.size / SECT;
	g.vtag = 0x5a5a000000000000ull ^ (uint64_t)strlen(g.vol) * 131 ^ (uint64_t)g.vol[0] << 8;
	g.cur = calloc(g.nr_sect, sizeof(uint64_t));
	g.acked = calloc(g.nr_sect, sizeof(uint64_t));
	g.dirty = calloc(g.nr_sect, 1);
	if (!g.cur || !g.acked || !g.dirty)
		die("out of memory");
	/* --ext starts half full, so that writes can grow it */
	g.vsize = g.lo_vsize = g.hi_vsize = g.ext ? g.nr_sect / 2 : g.nr_sect;
}

/* --verify-after-crash: rebuild the model from the log, then judge what survived. */
static int verify_after_crash(const char *verify)
{
	char line[256];
	int bad = 0;

	FILE *f = fopen(verify, "r");
	if (!f)
		die("%s: %s", verify, strerror(errno));
	while (fgets(line, sizeof(line), f))
		apply(line, false);
	fclose(f);
	finish_inflight_truncate();
	bad += verify_file(g.path, g.acked, g.nr_sect, false, g.vol);
	verify_sets(true, &bad);
	printf("thinfs-fsx: verify-after-crash: %" PRIu64 " sectors checked, %d bad\n",
	       g.nr_checked, bad);
	return bad ? 1 : 0;
}

/* Run the ops (generated, or replayed from a log); the final verify's count. */
static int run(const struct args *a)
{
	char line[256];
	int bad = 0;

	g.fd = open(g.path, O_RDWR | O_CREAT, 0600);
	if (g.fd < 0)
		die("open %s: %s", g.path, strerror(errno));
	/* start from zeros: what an earlier run left goes */
	if (ftruncate(g.fd, 0) < 0 || ftruncate(g.fd, (off_t)(g.vsize * SECT)) < 0)
		die("truncate %s: %s", g.path, strerror(errno));
	if (g.ext)
		ext_open();
	if (fsync(g.fd) < 0)
		die("fsync: %s", strerror(errno));
	if (a->logpath) {
		g.log = fopen(a->logpath, "w");
		if (!g.log)
			die("%s: %s", a->logpath, strerror(errno));
		logf_("# thinfs-fsx seed %" PRIu64 " size %" PRIu64 " vol %s%s\n", a->seed, g.size,
		      g.vol, g.ext ? " ext" : "");
	}
	if (!g.quiet)
		printf("thinfs-fsx: seed %" PRIu64 ", %" PRIu64 " ops on %s (%" PRIu64 " bytes)\n",
		       a->seed, a->ops, g.path, g.size);
	rng = a->seed * 2654435761u + 88172645463325252ull;
	FILE *rf = a->replay ? fopen(a->replay, "r") : NULL;
	if (a->replay && !rf)
		die("%s: %s", a->replay, strerror(errno));
	for (uint64_t i = 0; rf || i < a->ops; i++) {
		if (rf) {
			if (!fgets(line, sizeof(line), rf))
				break;
			if (line[0] == '#' || !strncmp(line, "ack", 3) ||
			    !strncmp(line, "dsync-ack", 9) || !strncmp(line, "set-done", 8))
				continue;
			line[strcspn(line, "\n")] = 0;
		} else {
			gen_op(line, sizeof(line));
		}
		logf_("%s\n", line);
		apply(line, true);
		if (!strncmp(line, "mkset", 5) || !strncmp(line, "rmset", 5)) {
			int si = atoi(line + 6);
			logf_("set-done %d\n", si);
			if (line[0] == 'r') {
				free(g.sets[si].seq);
				g.sets[si].seq = NULL;
			}
		}
	}
	if (rf)
		fclose(rf);
	bad += verify_file(g.path, g.cur, g.vsize, true, g.vol);
	verify_sets(false, &bad);
	if (!g.quiet || bad)
		printf("thinfs-fsx: %" PRIu64 " ops (%" PRIu64 " reads, %" PRIu64
		       " writes, %" PRIu64 " punches, %" PRIu64 " zero-ranges, %" PRIu64
		       " syncs, %" PRIu64 " sets), final verify: %d bad\n",
		       g.nr_ops, g.nr_reads, g.nr_writes, g.nr_punch, g.nr_zero, g.nr_sync,
		       g.nr_sets, bad);
	if (g.ext && (!g.quiet || bad))
		printf("thinfs-fsx: --ext: %" PRIu64 " mmap, %" PRIu64 " io_uring, %" PRIu64
		       " aio, %" PRIu64 " copy_file_range, %" PRIu64 " ops grew the volume\n",
		       g.nr_mmap, g.nr_direct, g.nr_aio, g.nr_copy, g.nr_extend);
	close(g.fd);
	if (g.log)
		fclose(g.log);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct args a = {.seed = 1, .ops = 10000};
	int rc = parse_args(argc, argv, &a);

	if (rc >= 0)
		return rc;
	setup_model(argc, argv, &a);
	if (a.verify)
		return verify_after_crash(a.verify);
	return run(&a);
}
