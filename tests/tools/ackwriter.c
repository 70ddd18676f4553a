/* SPDX-License-Identifier: MIT */
/*
 * ackwriter - acknowledged writes with an oracle kept elsewhere, for the
 * power-cut tests (TESTING.md S2 and the campaign of 45_powercut_campaign).
 *
 * write: 4 KiB self-describing records (magic, tag, offset, seq, CRC over the
 * record) written one at a time with O_SYNC (with --direct also O_DIRECT) to
 * FILE, at random 4 KiB-aligned offsets or, with --stride, at START,
 * START+STRIDE, ... (each record into a fresh block).  After each write
 * returns, one line "ack SEQ OFFSET CRC TIME" is appended to ACKLOG with
 * write + fdatasync on the log's own file system, before the next write
 * starts: ACKLOG lists exactly what the application was promised, and TIME
 * (CLOCK_REALTIME, ns) when the write had returned.  Each run first appends
 * "run SEQ0 TSTART" (seqs continue across runs of the same log) and, if it
 * was not cut short, "end SEQ" at its end.  With --snap-dir DIR --snap-every
 * N it makes a snapshot set every N acks: "setbegin NAME SEQ", mkdir
 * DIR/NAME, "set NAME SEQ" (SEQ: the last acknowledged record before it).
 * The volume failing (the daemon is gone: ENOTCONN, ECONNABORTED, EIO), at
 * a write or already at the open, ends the run with exit 3; that is how a
 * run under a cut ends.
 *
 * cut: the power cut itself: the shutdown ioctl without a log flush
 * (XFS_IOC_GOINGDOWN, NOLOGFLUSH; ext4 answers the same ioctl) on DIR's file
 * system, and "cut T0" appended to ACKLOG, T0 taken just before the ioctl
 * (also printed).  A shutdown is not instantaneous: an fsync racing with it
 * can still return success (measured on XFS, 6.18: 2-5 in 100 cuts under a
 * writer returned an O_SYNC write after the ioctl had begun whose data the
 * log replay did not have), which no real power cut would give.  So an ack
 * of that run taken at T0 or later counts as in flight, not acknowledged.
 *
 * verify: read all of FILE in 4 KiB units and judge each one: it must hold
 * the last acknowledged record for that offset, or, for the one write in
 * flight when a run was cut (one per unfinished run), that later unacked
 * record intact; an offset never acknowledged may also read zeros.  Anything
 * else is a loss (zeros or an older record where an ack promised a newer
 * one) or garbage (bytes that are no record of ours at that offset, a torn
 * record, or a record that was neither acknowledged nor in flight).  With
 * --upto SEQ only acks up to SEQ count and only in-flight records before it:
 * what a snapshot set taken after ack SEQ must hold exactly.
 *
 * Usage: ackwriter write FILE ACKLOG [--direct] [--count N] [--size BYTES]
 *                  [--stride BYTES] [--start BYTES] [--seed N] [--tag N]
 *                  [--snap-dir DIR --snap-every N] [--quiet]
 *        ackwriter verify FILE ACKLOG [--upto SEQ] [--tag N] [--quiet]
 *        ackwriter cut DIR [ACKLOG]
 * Exit: 0 done / verified, 1 verification failed, 2 error, 3 a write failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REC 4096u
#define MAGIC 0x61636b7772697465ull /* "ackwrite" */
#define CHUNK (1u << 20)
/* XFS_IOC_GOINGDOWN (also EXT4_IOC_SHUTDOWN) and its no-log-flush flag */
#define GOINGDOWN_IOC _IOR('X', 125, uint32_t)
#define GOINGDOWN_NOLOGFLUSH 2u

struct rec_hdr {
	uint64_t magic;
	uint64_t tag;
	uint64_t offset;
	uint64_t seq;
	uint32_t crc; /* crc32c of the whole record with this field 0 */
	uint32_t len;
};

struct ack {
	uint64_t off, seq, t;
	uint32_t crc;
	size_t run;
};

static struct {
	const char *file, *log, *snap_dir;
	bool direct, quiet;
	uint64_t count, size, stride, start, seed, tag, snap_every, upto;
	bool have_stride;
	int logfd;
	/* parsed log */
	struct ack *acks;
	size_t nr_acks, cap_acks;
	uint64_t *inflight; /* seqs that may be on disk without an ack */
	size_t nr_inflight, cap_inflight;
	uint64_t *cut_t; /* per run: when a cut began (UINT64_MAX: none) */
	size_t nr_runs, cap_runs;
	uint64_t max_seq, nr_late;
} g = {.tag = 1, .seed = 1, .upto = UINT64_MAX};

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "ackwriter: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static uint32_t crc32c(const void *buf, size_t len)
{
	static uint32_t table[256];
	const uint8_t *p = buf;
	uint32_t c = ~0u;

	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t x = i;
			for (int k = 0; k < 8; k++)
				x = x & 1 ? (x >> 1) ^ 0x82f63b78u : x >> 1;
			table[i] = x;
		}
	while (len--)
		c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

/* The record for (offset, seq); returns its CRC. */
static uint32_t fill_rec(unsigned char *p, uint64_t off, uint64_t seq)
{
	struct rec_hdr h = {MAGIC, g.tag, off, seq, 0, REC};
	uint64_t x = seq * 0x9e3779b97f4a7c15ull ^ off ^ g.tag << 56;

	for (unsigned i = 0; i < REC; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
	memcpy(p, &h, sizeof(h));
	h.crc = crc32c(p, REC);
	memcpy(p, &h, sizeof(h));
	return h.crc;
}

enum verdict { V_ZERO, V_REC, V_GARBAGE };

static enum verdict judge(const unsigned char *p, uint64_t off, uint64_t *seq, uint32_t *crc)
{
	static const unsigned char zero[REC];
	struct rec_hdr h;

	if (!memcmp(p, zero, REC))
		return V_ZERO;
	memcpy(&h, p, sizeof(h));
	if (h.magic != MAGIC || h.tag != g.tag || h.offset != off || h.len != REC)
		return V_GARBAGE;
	uint32_t want = h.crc;
	unsigned char copy[REC];
	memcpy(copy, p, REC);
	h.crc = 0;
	memcpy(copy, &h, sizeof(h));
	if (crc32c(copy, REC) != want)
		return V_GARBAGE;
	*seq = h.seq;
	*crc = want;
	return V_REC;
}

/* ---- the ack log ---- */

static void log_line(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n <= 0 || (size_t)n >= sizeof(line))
		die("log line too long");
	for (int done = 0; done < n;) {
		ssize_t w = write(g.logfd, line + done, (size_t)(n - done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write %s: %s", g.log, strerror(errno));
		done += (int)w;
	}
	/* durable on the log's own file system before the next write starts */
	while (fdatasync(g.logfd) < 0)
		if (errno != EINTR)
			die("fdatasync %s: %s", g.log, strerror(errno));
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void push_ack(uint64_t off, uint64_t seq, uint32_t crc, uint64_t t)
{
	if (g.nr_acks == g.cap_acks) {
		g.cap_acks = g.cap_acks ? 2 * g.cap_acks : 1024;
		g.acks = realloc(g.acks, g.cap_acks * sizeof(*g.acks));
		if (!g.acks)
			die("out of memory");
	}
	g.acks[g.nr_acks++] = (struct ack){off, seq, t, crc, g.nr_runs - 1};
}

static void push_run(void)
{
	if (g.nr_runs == g.cap_runs) {
		g.cap_runs = g.cap_runs ? 2 * g.cap_runs : 64;
		g.cut_t = realloc(g.cut_t, g.cap_runs * sizeof(*g.cut_t));
		if (!g.cut_t)
			die("out of memory");
	}
	g.cut_t[g.nr_runs++] = UINT64_MAX;
}

static void push_inflight(uint64_t seq)
{
	if (g.nr_inflight == g.cap_inflight) {
		g.cap_inflight = g.cap_inflight ? 2 * g.cap_inflight : 64;
		g.inflight = realloc(g.inflight, g.cap_inflight * sizeof(*g.inflight));
		if (!g.inflight)
			die("out of memory");
	}
	g.inflight[g.nr_inflight++] = seq;
}

/* Read the log: acks, and per run that did not end the seq in flight at its
 * cut.  A last line without its newline is a line being written at the cut
 * (the writer had not been promised anything by it): ignored.  A "cut T0"
 * line belongs to the run before it (acks of that run may follow it in the
 * file); that run's acks taken at T0 or later are in flight, not acked. */
static void parse_log(bool must_exist)
{
	FILE *f = fopen(g.log, "r");
	char line[512];
	bool in_run = false;
	uint64_t run_next = 0; /* the seq this run would write next */

	if (!f) {
		if (must_exist || errno != ENOENT)
			die("open %s: %s", g.log, strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		uint64_t a, b, t;
		unsigned c;
		char name[256];
		int n;

		if (!strchr(line, '\n'))
			break;
		if (sscanf(line, "run %" SCNu64, &a) == 1) {
			if (in_run)
				push_inflight(run_next);
			in_run = true;
			run_next = a;
			push_run();
		} else if ((n = sscanf(line, "ack %" SCNu64 " %" SCNu64 " %x %" SCNu64, &a, &b, &c,
				       &t)) >= 3) {
			if (!in_run || a != run_next)
				die("%s: ack of seq %" PRIu64 " out of order", g.log, a);
			push_ack(b, a, c, n == 4 ? t : 0);
			run_next = a + 1;
		} else if (sscanf(line, "cut %" SCNu64, &a) == 1) {
			if (g.nr_runs && g.cut_t[g.nr_runs - 1] == UINT64_MAX)
				g.cut_t[g.nr_runs - 1] = a;
		} else if (sscanf(line, "end %" SCNu64, &a) == 1) {
			in_run = false;
		} else if (sscanf(line, "setbegin %255s %" SCNu64, name, &a) == 2 ||
			   sscanf(line, "set %255s %" SCNu64, name, &a) == 2) {
			/* sets are verified by the caller with --upto */
		} else {
			die("%s: cannot parse '%s'", g.log, line);
		}
		if (run_next > g.max_seq)
			g.max_seq = run_next;
	}
	if (in_run)
		push_inflight(run_next);
	fclose(f);
	/* acks taken once a cut had begun: in flight */
	size_t k = 0;
	for (size_t i = 0; i < g.nr_acks; i++) {
		if (g.acks[i].t >= g.cut_t[g.acks[i].run]) {
			push_inflight(g.acks[i].seq);
			g.nr_late++;
			continue;
		}
		g.acks[k++] = g.acks[i];
	}
	g.nr_acks = k;
}

/* ---- write ---- */

static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int do_write(void)
{
	uint64_t t_start = now_ns();
	int fd = open(g.file, O_RDWR | O_SYNC | O_CLOEXEC | (g.direct ? O_DIRECT : 0));
	unsigned char *buf;
	struct stat sb;
	uint64_t seq0, seq, n = 0, nr_slots;

	/* the volume failing before the first write is a run cut short too
	 * (a kill can land while the open or the stat is in flight) */
	if (fd < 0 || (!g.size && fstat(fd, &sb) < 0)) {
		if (!g.quiet)
			fprintf(stderr, "ackwriter: 0 acked; %s %s: %s\n", fd < 0 ? "open" : "stat",
				g.file, strerror(errno));
		return 3;
	}
	if (!g.size)
		g.size = (uint64_t)sb.st_size;
	nr_slots = g.size / REC;
	if (!nr_slots)
		die("%s: smaller than one record", g.file);
	if (posix_memalign((void **)&buf, REC, REC))
		die("out of memory");
	parse_log(false);
	g.logfd = open(g.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (g.logfd < 0)
		die("open %s: %s", g.log, strerror(errno));
	/* past every seq that may be on disk, acked or in flight */
	seq0 = g.max_seq + 2;
	rng = (g.seed * 0x9e3779b97f4a7c15ull ^ seq0) | 1;
	log_line("run %" PRIu64 " %" PRIu64 "\n", seq0, t_start);
	for (seq = seq0; !g.count || n < g.count; seq++, n++) {
		uint64_t off = g.have_stride ? g.start + n * g.stride : (rnd() % nr_slots) * REC;
		uint32_t crc;
		ssize_t w;

		if (off + REC > g.size)
			die("offset %" PRIu64 " beyond %" PRIu64, off, g.size);
		crc = fill_rec(buf, off, seq);
		do
			w = pwrite(fd, buf, REC, (off_t)off);
		while (w < 0 && errno == EINTR);
		if (w != (ssize_t)REC) {
			if (!g.quiet)
				fprintf(stderr,
					"ackwriter: %" PRIu64 " acked; seq %" PRIu64 " at %" PRIu64
					" failed: %s\n",
					n, seq, off, w < 0 ? strerror(errno) : "short write");
			free(buf);
			close(fd);
			return 3;
		}
		log_line("ack %" PRIu64 " %" PRIu64 " %08x %" PRIu64 "\n", seq, off, crc, now_ns());
		if (g.snap_dir && g.snap_every && (n + 1) % g.snap_every == 0) {
			char path[4096], name[64];

			snprintf(name, sizeof(name), "s%" PRIu64, seq);
			snprintf(path, sizeof(path), "%s/%s", g.snap_dir, name);
			log_line("setbegin %s %" PRIu64 "\n", name, seq);
			if (mkdir(path, 0755) < 0) {
				if (!g.quiet)
					fprintf(stderr,
						"ackwriter: %" PRIu64 " acked; set %s: %s\n", n + 1,
						name, strerror(errno));
				free(buf);
				close(fd);
				return 3;
			}
			log_line("set %s %" PRIu64 "\n", name, seq);
		}
	}
	log_line("end %" PRIu64 "\n", seq - 1);
	if (!g.quiet)
		printf("ackwriter: %" PRIu64 " records acked (seq %" PRIu64 "..%" PRIu64 ")\n", n,
		       seq0, seq - 1);
	free(buf);
	close(fd);
	return 0;
}

/* ---- verify ---- */

static int cmp_ack(const void *a, const void *b)
{
	const struct ack *x = a, *y = b;

	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static bool is_inflight(uint64_t seq)
{
	for (size_t i = 0; i < g.nr_inflight; i++)
		if (g.inflight[i] == seq && seq <= g.upto)
			return true;
	return false;
}

static int do_verify(void)
{
	int fd = open(g.file, O_RDONLY | O_CLOEXEC);
	unsigned char *buf;
	struct stat sb;
	size_t na = 0, ai = 0, nr_records;
	uint64_t size, lost = 0, garbage = 0, unexpected = 0, inflight_seen = 0, ok_acked = 0;
	int shown = 0;

	if (fd < 0)
		die("open %s: %s", g.file, strerror(errno));
	if (fstat(fd, &sb) < 0)
		die("stat %s: %s", g.file, strerror(errno));
	size = g.size ? g.size : (uint64_t)sb.st_size;
	parse_log(true);
	nr_records = g.nr_acks;
	/* keep the acks up to --upto, then the last one per offset */
	for (size_t i = 0; i < g.nr_acks; i++)
		if (g.acks[i].seq <= g.upto)
			g.acks[na++] = g.acks[i];
	qsort(g.acks, na, sizeof(*g.acks), cmp_ack);
	size_t k = 0;
	for (size_t i = 0; i < na; i++) {
		if (k && g.acks[k - 1].off == g.acks[i].off)
			k--;
		g.acks[k++] = g.acks[i];
	}
	na = k;
	if (na && g.acks[na - 1].off + REC > size) {
		fprintf(stderr, "%s: acked offset %" PRIu64 " beyond the size %" PRIu64 "\n",
			g.file, g.acks[na - 1].off, size);
		lost++;
	}
	if (posix_memalign((void **)&buf, REC, CHUNK))
		die("out of memory");
	for (uint64_t base = 0; base < size; base += CHUNK) {
		size_t len = size - base < CHUNK ? (size_t)(size - base) : CHUNK;
		ssize_t r = pread(fd, buf, len, (off_t)base);

		if (r != (ssize_t)len)
			die("read %s at %" PRIu64 ": %s", g.file, base,
			    r < 0 ? strerror(errno) : "short");
		for (size_t o = 0; o + REC <= len; o += REC) {
			uint64_t off = base + o, seq = 0, want = 0;
			uint32_t crc = 0, want_crc = 0;
			enum verdict v = judge(buf + o, off, &seq, &crc);
			const char *what = NULL;

			while (ai < na && g.acks[ai].off < off)
				ai++;
			if (ai < na && g.acks[ai].off == off) {
				want = g.acks[ai].seq;
				want_crc = g.acks[ai].crc;
			}
			if (v == V_GARBAGE) {
				what = "garbage";
				garbage++;
			} else if (v == V_ZERO) {
				if (want) {
					what = "zeros (lost)";
					lost++;
				}
			} else if (seq == want) {
				if (crc != want_crc) {
					what = "a record whose CRC is not the acknowledged one";
					garbage++;
				} else {
					ok_acked++;
				}
			} else if (seq > want && is_inflight(seq)) {
				inflight_seen++;
			} else if (seq < want) {
				what = "an older record (lost)";
				lost++;
			} else {
				what = "a record never acknowledged nor in flight";
				unexpected++;
			}
			if (what && shown++ < 10)
				fprintf(stderr,
					"%s: offset %" PRIu64 " holds %s (seq %" PRIu64
					"), acked seq %" PRIu64 "\n",
					g.file, off, what, v == V_REC ? seq : 0, want);
		}
	}
	free(buf);
	close(fd);
	bool pass = !lost && !garbage && !unexpected;
	if (!g.quiet || !pass)
		printf("ackwriter verify %s: %zu acked offsets (%zu acks%s; %" PRIu64
		       " taken after a cut began, in flight), %" PRIu64 " intact, %" PRIu64
		       " in-flight records, %" PRIu64 " lost, %" PRIu64 " garbage, %" PRIu64
		       " unexpected: %s\n",
		       g.file, na, nr_records,
		       g.upto != UINT64_MAX ? " in the log, up to the set" : "", g.nr_late,
		       ok_acked, inflight_seen, lost, garbage, unexpected, pass ? "PASS" : "FAIL");
	return pass ? 0 : 1;
}

static uint64_t num(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		die("not a number: %s", s);
	return v;
}

/* The cut: T0, then the shutdown without a log flush; "cut T0" to the log. */
static int do_cut(const char *dir, const char *log)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	uint32_t flags = GOINGDOWN_NOLOGFLUSH;
	uint64_t t0;

	if (fd < 0)
		die("open %s: %s", dir, strerror(errno));
	t0 = now_ns();
	if (ioctl(fd, GOINGDOWN_IOC, &flags) < 0)
		die("shutdown of %s: %s", dir, strerror(errno));
	close(fd);
	if (log) {
		g.log = log;
		g.logfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (g.logfd < 0)
			die("open %s: %s", log, strerror(errno));
		log_line("cut %" PRIu64 "\n", t0);
		close(g.logfd);
	}
	printf("%" PRIu64 "\n", t0);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"direct", no_argument, NULL, 'd'},
					     {"count", required_argument, NULL, 'n'},
					     {"size", required_argument, NULL, 'S'},
					     {"stride", required_argument, NULL, 'r'},
					     {"start", required_argument, NULL, 'o'},
					     {"seed", required_argument, NULL, 's'},
					     {"tag", required_argument, NULL, 't'},
					     {"snap-dir", required_argument, NULL, 'D'},
					     {"snap-every", required_argument, NULL, 'e'},
					     {"upto", required_argument, NULL, 'u'},
					     {"quiet", no_argument, NULL, 'q'},
					     {NULL, 0, NULL, 0}};
	const char *mode;
	int c;

	if (argc >= 3 && argc <= 4 && !strcmp(argv[1], "cut"))
		return do_cut(argv[2], argc == 4 ? argv[3] : NULL);
	if (argc < 4 || (strcmp(argv[1], "write") && strcmp(argv[1], "verify"))) {
		fprintf(stderr, "usage: ackwriter write|verify FILE ACKLOG [options]\n"
				"       ackwriter cut DIR [ACKLOG]\n");
		return 2;
	}
	mode = argv[1];
	g.file = argv[2];
	g.log = argv[3];
	optind = 4;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			g.direct = true;
			break;
		case 'n':
			g.count = num(optarg);
			break;
		case 'S':
			g.size = num(optarg);
			break;
		case 'r':
			g.stride = num(optarg);
			g.have_stride = true;
			break;
		case 'o':
			g.start = num(optarg);
			break;
		case 's':
			g.seed = num(optarg);
			break;
		case 't':
			g.tag = num(optarg);
			break;
		case 'D':
			g.snap_dir = optarg;
			break;
		case 'e':
			g.snap_every = num(optarg);
			break;
		case 'u':
			g.upto = num(optarg);
			break;
		case 'q':
			g.quiet = true;
			break;
		default:
			return 2;
		}
	}
	if (optind != argc)
		die("unexpected argument %s", argv[optind]);
	if (g.have_stride && (g.stride % REC || g.start % REC || !g.stride))
		die("--stride and --start must be multiples of %u", REC);
	return strcmp(mode, "write") ? do_verify() : do_write();
}
