/* SPDX-License-Identifier: MIT */
/*
 * interop_helper.c - the library's interop calls from the shell, for
 * tests/integration/30_thin_tools_interop.sh (until thinctl has them):
 *
 *   interop_helper build POOL          a pool with volumes, snapshots of
 *                                      snapshots, discards and a set
 *   interop_helper dump POOL           pool_dump to stdout
 *   interop_helper restore POOL FILE [DATA]
 *   interop_helper list POOL           "ID MAPPED EXCLUSIVE SHARED" per device
 *   interop_helper delta POOL ID1 ID2 [ranges]
 *   interop_helper check POOL          pool_check; exits with its result
 * Exits 0 on success, 1 with a message otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thinfs/interop.h"

static char msg[POOL_MSG_MAX];

static void die(const char *what)
{
	fprintf(stderr, "interop_helper: %s: %s\n", what, msg[0] ? msg : "failed");
	exit(1);
}

static struct pool *open_pool(const char *dir, unsigned flags)
{
	struct pool *p;

	if (pool_open(dir, flags, "interop_helper", &p, msg, sizeof(msg)))
		die("open");
	return p;
}

static void fill(struct pool *p, const char *name, uint64_t block, int c)
{
	struct pool_device_info info;
	struct volume *v;
	char *buf;
	uint64_t bs = 65536;

	if (pool_device_info(p, name, &info) || pool_volume_open(p, name, &v))
		die(name);
	buf = malloc(bs);
	memset(buf, c, bs);
	if (pool_write(v, buf, bs, block * bs) != (ssize_t)bs)
		die("write");
	pool_volume_close(v);
	free(buf);
}

static void discard(struct pool *p, const char *name, uint64_t block)
{
	struct volume *v;

	if (pool_volume_open(p, name, &v) || pool_discard(v, block * 65536, 65536))
		die("discard");
	pool_volume_close(v);
}

static int build(const char *dir)
{
	struct pool_format_opts o = {.block_size = 65536, .data_size = 4096ull * 65536};
	struct pool *p;

	if (pool_format(dir, &o, msg, sizeof(msg)))
		die("format");
	p = open_pool(dir, 0);
	if (pool_create(p, "vol1", 256 * 65536, msg, sizeof(msg)) ||
	    pool_create(p, "vol2", 64 * 65536, msg, sizeof(msg)) ||
	    pool_create(p, "tmp", 64 * 65536, msg, sizeof(msg)))
		die("create");
	for (int i = 0; i < 40; i++)
		fill(p, "vol1", (uint64_t)i, 'a' + i % 26);
	for (int i = 100; i < 110; i++)
		fill(p, "vol1", (uint64_t)i, 'x');
	fill(p, "vol2", 3, 'v');
	fill(p, "tmp", 0, 't');
	if (pool_delete(p, "tmp", msg, sizeof(msg)) ||
	    pool_snapshot(p, "vol1", "s1", msg, sizeof(msg)))
		die("snapshot");
	fill(p, "vol1", 5, 'A');
	fill(p, "vol1", 200, 'A');
	if (pool_snapshot(p, "vol1", "s2", msg, sizeof(msg)))
		die("snapshot");
	fill(p, "s2", 1, 'B');
	discard(p, "s1", 7);
	if (pool_snapshot(p, "s2", "s3", msg, sizeof(msg)) ||
	    pool_snapshot_set(p, "monday", msg, sizeof(msg)))
		die("snapshot");
	fill(p, "vol1", 6, 'C');
	fill(p, "s3", 30, 'D');
	discard(p, "vol1", 101);
	if (pool_close(p))
		die("close");
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 2 ? argv[1] : "";
	struct pool *p;
	int rc = 0;

	if (!strcmp(cmd, "build"))
		return build(argv[2]);
	if (!strcmp(cmd, "restore") && argc >= 4) {
		FILE *in = fopen(argv[3], "r");
		if (!in || pool_restore(argv[2], in, argc > 4 ? argv[4] : NULL, msg, sizeof(msg)))
			die("restore");
		fclose(in);
		return 0;
	}
	if (!strcmp(cmd, "check")) {
		rc = pool_check(argv[2], false, stdout, msg, sizeof(msg));
		if (rc < 0)
			die("check");
		return rc;
	}
	p = open_pool(argv[2], POOL_OPEN_RDONLY);
	if (!strcmp(cmd, "dump")) {
		if (pool_dump(p, stdout, msg, sizeof(msg)))
			die("dump");
	} else if (!strcmp(cmd, "list") || (!strcmp(cmd, "delta") && argc >= 5)) {
		struct pool_device_info *d;
		char a[600] = "", b[600] = "";
		size_t n;
		if (pool_list(p, true, &d, &n))
			die("list");
		for (size_t i = 0; i < n; i++) {
			char name[600];
			snprintf(name, sizeof(name), "%s%s%s", d[i].set, d[i].set[0] ? "/" : "",
				 d[i].name);
			if (!strcmp(cmd, "list"))
				printf("%llu %llu %llu %llu\n", (unsigned long long)d[i].id,
				       (unsigned long long)d[i].mapped_blocks,
				       (unsigned long long)d[i].exclusive_blocks,
				       (unsigned long long)d[i].shared_blocks);
			else if (d[i].id == strtoull(argv[3], NULL, 10))
				snprintf(a, sizeof(a), "%s", name);
			else if (d[i].id == strtoull(argv[4], NULL, 10))
				snprintf(b, sizeof(b), "%s", name);
		}
		free(d);
		if (!strcmp(cmd, "delta") &&
		    pool_delta(p, a, b, argc > 5 ? POOL_DELTA_RANGES : POOL_DELTA_XML, stdout, msg,
			       sizeof(msg)))
			die("delta");
	} else {
		fprintf(stderr,
			"usage: interop_helper build|dump|restore|list|delta|check POOL ...\n");
		rc = 1;
	}
	pool_close(p);
	return rc;
}
