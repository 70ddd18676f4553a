/* SPDX-License-Identifier: MIT */
/*
 * bench_engine.c - engine micro-benchmarks (make bench), not timed tests.
 *
 * For volumes with N mapped blocks (10k, 100k, 1M by default): the time to
 * take a snapshot, to delete a snapshot and to delete the volume, metadata
 * bytes per mapped block, pool open time, and resident memory with the
 * volume's view loaded.  Mappings are made with pool_test_provision (metadata
 * only, no data written).  Each figure is the median of `reps` runs.
 * Baseline in the same run: the time SQLite takes to scan the N map rows
 * (the floor for anything O(N)), so "snapshot / scan" shows flatness.
 *
 * Usage: bench_engine [DIR] [N...]   (DIR defaults to /var/tmp)
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "thinfs/pool.h"
#include "thinfs/pool_test.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_engine: %s: %s\n", what, msg);
	exit(1);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static off_t file_size(const char *p)
{
	struct stat sb;

	return stat(p, &sb) == 0 ? sb.st_size : 0;
}

static void bench(const char *base, uint64_t n, int reps)
{
	char dir[512], meta[600], msg[POOL_MSG_MAX], cmd[700], name[32];
	struct pool_format_opts o = {.block_size = 4096, .data_size = (n + 64) * 4096 * 2};
	struct pool *p;
	struct volume *v;
	double snap[16], del_snap[16], t, open_ms, scan_ms, del_vol;
	long rss0, rss1;
	(void)rss0;

	snprintf(dir, sizeof(dir), "%s/thinfs-bench.%d", base, getpid());
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		die("rm", dir);
	if (pool_format(dir, &o, msg, sizeof(msg)) ||
	    pool_open(dir, 0, "bench", &p, msg, sizeof(msg)))
		die("format/open", msg);
	if (pool_create(p, "v", n * 4096, msg, sizeof(msg)))
		die("create", msg);
	if (pool_volume_open(p, "v", &v) || pool_test_provision(v, 0, n))
		die("provision", "failed");
	t = now_ms();
	if (pool_commit(p))
		die("commit", "failed");
	double commit_ms = now_ms() - t;
	pool_volume_close(v);
	for (int r = 0; r < reps; r++) {
		snprintf(name, sizeof(name), "s%d", r);
		t = now_ms();
		if (pool_snapshot(p, "v", name, msg, sizeof(msg)))
			die("snapshot", msg);
		snap[r] = now_ms() - t;
		/* make the snapshot differ a little, as a real one would */
		if (pool_volume_open(p, "v", &v) == 0) {
			pool_test_provision(v, 0, 0);
			pool_volume_close(v);
		}
	}
	for (int r = 0; r < reps; r++) {
		snprintf(name, sizeof(name), "s%d", r);
		t = now_ms();
		if (pool_delete(p, name, msg, sizeof(msg)))
			die("delete snapshot", msg);
		del_snap[r] = now_ms() - t;
	}
	pool_close(p);
	snprintf(meta, sizeof(meta), "%s/meta.db", dir);
	double bytes_per = (double)(file_size(meta)) / (double)n;
	/* baseline: SQLite scanning the rows */
	snprintf(cmd, sizeof(cmd),
		 "sqlite3 '%s' 'SELECT count(*), sum(dblock) FROM map' > /dev/null", meta);
	t = now_ms();
	if (system(cmd))
		die("sqlite3 scan", meta);
	scan_ms = now_ms() - t;
	/* open and view memory in a fresh process, so freed heap does not hide it */
	double res[3] = {0};
	int fds[2];
	if (pipe(fds))
		die("pipe", "failed");
	pid_t pid = fork();
	if (pid == 0) {
		rss0 = rss_kb();
		t = now_ms();
		if (pool_open(dir, 0, "bench", &p, msg, sizeof(msg)))
			die("reopen", msg);
		res[0] = now_ms() - t;
		t = now_ms();
		if (pool_volume_open(p, "v", &v))
			die("volume open", "failed");
		res[1] = now_ms() - t;
		rss1 = rss_kb();
		res[2] = (double)rss1;
		pool_volume_close(v);
		pool_close(p);
		if (write(fds[1], res, sizeof(res)) != sizeof(res))
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	if (read(fds[0], res, sizeof(res)) != sizeof(res))
		die("child", "no result");
	close(fds[0]);
	waitpid(pid, NULL, 0);
	open_ms = res[0];
	double vopen_ms = res[1];
	rss1 = (long)res[2];
	if (pool_open(dir, 0, "bench", &p, msg, sizeof(msg)))
		die("reopen", msg);
	t = now_ms();
	if (pool_delete(p, "v", msg, sizeof(msg)))
		die("delete", msg);
	del_vol = now_ms() - t;
	pool_close(p);
	if (system(cmd) < 0) /* keep the scan command's side effects symmetric */
		die("scan", "failed");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		die("rm", dir);
	double sm = median(snap, reps);
	printf(
	    "| %8llu | %8.2f | %8.2f | %8.1f | %6.1f | %8.1f | %8.1f | %7.1f | %8.1f | %6.3f |\n",
	    (unsigned long long)n, sm, median(del_snap, reps), del_vol, bytes_per, open_ms,
	    vopen_ms, rss1 / 1024.0, scan_ms, sm / scan_ms);
	fprintf(stderr, "  (N=%llu: first commit of N rows %.0f ms)\n", (unsigned long long)n,
		commit_ms);
	fflush(stdout);
}

/* ---- the data path, in-process (no FUSE): engine overhead over raw I/O ---- */

static double run_io(struct volume *v, int fd, bool write, size_t bs, uint64_t span, double secs,
		     bool random)
{
	char *buf = aligned_alloc(4096, bs);
	uint64_t ops = 0, pos = 0, s = 88172645463325252ull;
	double t0 = now_ms(), t;

	memset(buf, 0x5a, bs);
	do {
		for (int i = 0; i < 64; i++) {
			if (random) {
				s ^= s << 13;
				s ^= s >> 7;
				s ^= s << 17;
				pos = s % (span / bs) * bs;
			} else {
				pos = (pos + bs) % span;
			}
			ssize_t n =
			    v ? (write ? pool_write(v, buf, bs, pos) : pool_read(v, buf, bs, pos))
			      : (write ? pwrite(fd, buf, bs, (off_t)pos)
				       : pread(fd, buf, bs, (off_t)pos));
			if (n != (ssize_t)bs)
				die("io", "short");
			ops++;
		}
		t = now_ms();
	} while (t - t0 < secs * 1000);
	free(buf);
	return (double)ops * bs / ((t - t0) / 1000) / (1 << 20);
}

static void bench_io(const char *base)
{
	char dir[400], raw[420], msg[POOL_MSG_MAX], cmd[900];
	const uint64_t span = 256ull << 20;
	struct pool_format_opts o = {.data_size = 512ull << 20};
	struct pool *p;
	struct volume *v;
	int fd;
	static const struct {
		const char *name;
		bool write, random;
		size_t bs;
	} jobs[] = {
	    {"1 MiB seq write", true, false, 1 << 20},
	    {"1 MiB seq read", false, false, 1 << 20},
	    {"4 KiB rand write", true, true, 4096},
	    {"4 KiB rand read", false, true, 4096},
	};

	snprintf(dir, sizeof(dir), "%s/thinfs-bench-io.%d", base, getpid());
	snprintf(raw, sizeof(raw), "%s.raw", dir);
	if (pool_format(dir, &o, msg, sizeof(msg)) ||
	    pool_open(dir, 0, "bench", &p, msg, sizeof(msg)))
		die("format/open", msg);
	if (pool_create(p, "v", span, msg, sizeof(msg)) || pool_volume_open(p, "v", &v))
		die("create", msg);
	/* the baseline: a raw file on the same file system, with the same kind of
	 * I/O the engine does to its data file (direct unless refused) */
	fd = open(raw, O_RDWR | O_CREAT | O_TRUNC | (getenv("THINFS_DATA_BUFFERED") ? 0 : O_DIRECT),
		  0600);
	if (fd < 0 || ftruncate(fd, (off_t)span))
		die("raw", raw);
	/* fill both, so the jobs below run on mapped blocks (steady state) */
	run_io(v, -1, true, 1 << 20, span, 0.001, false);
	for (uint64_t off = 0; off < span; off += 1 << 20) {
		static char z[1 << 20] __attribute__((aligned(4096)));
		if (pool_write(v, z, sizeof(z), off) != (ssize_t)sizeof(z) ||
		    pwrite(fd, z, sizeof(z), (off_t)off) != (ssize_t)sizeof(z))
			die("fill", "short");
	}
	pool_sync(p);
	fsync(fd);
	printf("\n| in-process job, qd1, %s | raw file MiB/s | thinfs engine MiB/s | ratio "
	       "|\n|---|---:|---:|---:|\n",
	       getenv("THINFS_DATA_BUFFERED") ? "buffered" : "O_DIRECT");
	for (size_t j = 0; j < sizeof(jobs) / sizeof(jobs[0]); j++) {
		double r[3], e[3];
		for (int k = 0; k < 3; k++) {
			r[k] =
			    run_io(NULL, fd, jobs[j].write, jobs[j].bs, span, 1.0, jobs[j].random);
			e[k] = run_io(v, -1, jobs[j].write, jobs[j].bs, span, 1.0, jobs[j].random);
		}
		double rm = median(r, 3), em = median(e, 3);
		printf("| %s | %.0f | %.0f | %.2f |\n", jobs[j].name, rm, em, em / rm);
		fflush(stdout);
	}
	pool_volume_close(v);
	pool_close(p);
	close(fd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", dir, raw);
	if (system(cmd))
		die("rm", dir);
}

int main(int argc, char **argv)
{
	const char *base = argc > 1 ? argv[1] : "/var/tmp";
	uint64_t sizes[8] = {10000, 100000, 1000000};
	int nr = 3;

	if (argc > 2) {
		nr = 0;
		for (int i = 2; i < argc && nr < 8; i++)
			sizes[nr++] = strtoull(argv[i], NULL, 10);
	}
	printf("| mapped N | snap ms | del snap ms | del vol ms | meta B/map | open ms | vol open "
	       "ms | RSS MiB (view loaded) | sqlite scan ms | snap/scan |\n");
	printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	for (int i = 0; i < nr; i++)
		bench(base, sizes[i], 5);
	if (!getenv("BENCH_NO_IO"))
		bench_io(base);
	return 0;
}
