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
 * Usage: thinfs-fsx [--seed N] [--ops N] [--size BYTES] [--snapshots]
 *                   [--log FILE] [--replay FILE] [--verify-after-crash FILE]
 *                   [--quiet] MNT VOLUME
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECT 512u
#define MAGIC 0x7468696e66737821ull /* "thinfsx!" */
#define MAX_SETS 64

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

static int verify_file(const char *path, const uint64_t *model, bool exact, const char *what)
{
	int fd = open(path, O_RDONLY);
	unsigned char *buf = malloc(1 << 20);
	int bad = 0;

	if (fd < 0 || !buf)
		die("open %s: %s", path, strerror(errno));
	for (uint64_t s0 = 0; s0 < g.nr_sect; s0 += (1 << 20) / SECT) {
		uint64_t n = g.nr_sect - s0 < (1 << 20) / SECT ? g.nr_sect - s0 : (1 << 20) / SECT;
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
	punch ? g.nr_punch++ : g.nr_zero++;
}

static void ack(void);

/* Shrink to s sectors and grow back: a resize is an administrative change,
 * durable (and so an acknowledgement of everything before it) on return. */
static void do_truncate(uint64_t s)
{
	if (ftruncate(g.fd, (off_t)(s * SECT)) < 0 || ftruncate(g.fd, (off_t)g.size) < 0)
		die("truncate to %" PRIu64 ": %s", s * SECT, strerror(errno));
	for (uint64_t i = s; i < g.nr_sect; i++) {
		g.cur[i] = 0;
		g.dirty[i] |= 2;
	}
	g.nr_zero++;
}

static void ack(void)
{
	memcpy(g.acked, g.cur, g.nr_sect * sizeof(uint64_t));
	memset(g.dirty, 0, g.nr_sect);
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
static void apply(const char *line, bool execute)
{
	uint64_t a = 0, b = 0;
	char op[32];

	if (sscanf(line, "%31s %" SCNu64 " %" SCNu64, op, &a, &b) < 1)
		return;
	if (!strcmp(op, "read")) {
		if (execute)
			do_read(a, b);
	} else if (!strcmp(op, "write") || !strcmp(op, "dwrite")) {
		if (execute) {
			do_write(a, b, op[0] == 'd');
		} else {
			for (uint64_t i = 0; i < b; i++) {
				g.cur[a + i] = ++g.seq;
				g.dirty[a + i] |= 1;
			}
		}
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
		}
	} else if (!strcmp(op, "truncate")) {
		if (execute) {
			do_truncate(a);
			ack();
			logf_("ack\n");
		} else {
			for (uint64_t i = a; i < g.nr_sect; i++) {
				g.cur[i] = 0;
				g.dirty[i] |= 2;
			}
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

static void gen_op(char *line, size_t len)
{
	uint64_t r = rnd(100), s = rnd(g.nr_sect), n;

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
	else if (g.snapshots) {
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
			*bad += verify_file(vp, g.sets[i].seq, true, what);
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"seed", 1, 0, 's'},      {"ops", 1, 0, 'n'},
	    {"size", 1, 0, 'S'},      {"log", 1, 0, 'l'},
	    {"replay", 1, 0, 'r'},    {"verify-after-crash", 1, 0, 'v'},
	    {"snapshots", 0, 0, 'x'}, {"quiet", 0, 0, 'q'},
	    {"help", 0, 0, 'h'},      {0, 0, 0, 0},
	};
	uint64_t seed = 1, ops = 10000;
	const char *logpath = NULL, *replay = NULL, *verify = NULL;
	char line[256];
	int c, bad = 0;

	g.size = 64ull << 20;
	while ((c = getopt_long(argc, argv, "s:n:S:l:r:v:xqh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			ops = strtoull(optarg, NULL, 0);
			break;
		case 'S':
			g.size = strtoull(optarg, NULL, 0);
			break;
		case 'l':
			logpath = optarg;
			break;
		case 'r':
			replay = optarg;
			break;
		case 'v':
			verify = optarg;
			break;
		case 'x':
			g.snapshots = true;
			break;
		case 'q':
			g.quiet = true;
			break;
		case 'h':
			printf(
			    "usage: thinfs-fsx [--seed N] [--ops N] [--size BYTES] [--snapshots] "
			    "[--log FILE] [--replay FILE] [--verify-after-crash FILE] [--quiet] "
			    "MNT VOLUME\n");
			return 0;
		default:
			return 2;
		}
	}
	if (argc - optind != 2)
		die("usage: thinfs-fsx [options] MNT VOLUME (see --help)");
	if (verify || replay) {
		/* the size the log was made with */
		FILE *f = fopen(verify ? verify : replay, "r");
		uint64_t sz;
		if (f && fgets(line, sizeof(line), f) &&
		    sscanf(line, "# thinfs-fsx seed %*u size %" SCNu64, &sz) == 1)
			g.size = sz;
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

	if (verify) {
		/* rebuild the model from the log, then judge what survived */
		FILE *f = fopen(verify, "r");
		if (!f)
			die("%s: %s", verify, strerror(errno));
		while (fgets(line, sizeof(line), f))
			apply(line, false);
		fclose(f);
		finish_inflight_truncate();
		bad += verify_file(g.path, g.acked, false, g.vol);
		verify_sets(true, &bad);
		printf("thinfs-fsx: verify-after-crash: %" PRIu64 " sectors checked, %d bad\n",
		       g.nr_checked, bad);
		return bad ? 1 : 0;
	}
	g.fd = open(g.path, O_RDWR | O_CREAT, 0600);
	if (g.fd < 0)
		die("open %s: %s", g.path, strerror(errno));
	if (ftruncate(g.fd, (off_t)g.size) < 0)
		die("truncate %s: %s", g.path, strerror(errno));
	/* start from zeros: punch what an earlier run left */
	if (fallocate(g.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)g.size) < 0)
		die("punch %s: %s", g.path, strerror(errno));
	if (fsync(g.fd) < 0)
		die("fsync: %s", strerror(errno));
	if (logpath) {
		g.log = fopen(logpath, "w");
		if (!g.log)
			die("%s: %s", logpath, strerror(errno));
		logf_("# thinfs-fsx seed %" PRIu64 " size %" PRIu64 " vol %s\n", seed, g.size,
		      g.vol);
	}
	if (!g.quiet)
		printf("thinfs-fsx: seed %" PRIu64 ", %" PRIu64 " ops on %s (%" PRIu64 " bytes)\n",
		       seed, ops, g.path, g.size);
	rng = seed * 2654435761u + 88172645463325252ull;
	FILE *rf = replay ? fopen(replay, "r") : NULL;
	if (replay && !rf)
		die("%s: %s", replay, strerror(errno));
	for (uint64_t i = 0; rf || i < ops; i++) {
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
	bad += verify_file(g.path, g.cur, true, g.vol);
	verify_sets(false, &bad);
	if (!g.quiet || bad)
		printf("thinfs-fsx: %" PRIu64 " ops (%" PRIu64 " reads, %" PRIu64
		       " writes, %" PRIu64 " punches, %" PRIu64 " zero-ranges, %" PRIu64
		       " syncs, %" PRIu64 " sets), final verify: %d bad\n",
		       g.nr_ops, g.nr_reads, g.nr_writes, g.nr_punch, g.nr_zero, g.nr_sync,
		       g.nr_sets, bad);
	close(g.fd);
	if (g.log)
		fclose(g.log);
	return bad ? 1 : 0;
}
