/* SPDX-License-Identifier: MIT */
/*
 * thinctl - the thinfs admin tool: a thin front end over the pool library.
 * It parses arguments, calls one pool function, prints the result.  No pool
 * logic here.
 *
 * Conventions: --help prints usage and exits 0; a bad option or a missing or
 * extra argument prints the usage line on stderr and exits 2; a failure prints
 * one line "thinctl: CMD: reason" and exits 1 (check: 0 clean, 1 damaged,
 * 2 fatal).  Success writes nothing to stderr.  Read-only commands open the
 * pool read-only, so they work on a mounted pool; changing commands need the
 * pool's lock, and say who holds it when they can't have it.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "thinfs/interop.h"
#include "thinfs/pool.h"

#define STATUS_XATTR "user.thinfs.status"

struct cmd {
	const char *name;
	const char *args;
	const char *help;
	int (*run)(const struct cmd *cmd, int argc, char **argv);
};

static const char *prog = "thinctl";

static int fail(const struct cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(const struct cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: %s: ", prog, cmd->name);
	va_start(ap, fmt);
	/* clang 14's valist checker misreads this (a false positive) */
	vfprintf(stderr, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static int usage_error(const struct cmd *cmd, const char *why)
{
	fprintf(stderr, "%s: %s: %s\nusage: %s %s %s\n", prog, cmd->name, why, prog, cmd->name,
		cmd->args);
	return 2;
}

static void print_help(const struct cmd *cmd)
{
	printf("usage: %s %s %s\n\n%s\n", prog, cmd->name, cmd->args, cmd->help);
}

/* Options common to every command: --help, plus the command's own.  Returns
 * -1 to go on, or an exit code. */
static int parse(const struct cmd *cmd, int argc, char **argv, const struct option *extra,
		 int (*on_opt)(int c, const char *arg, void *ctx), void *ctx, int nr_args)
{
	struct option opts[16] = {{"help", no_argument, 0, 'h'}};
	char shortopts[48] = ":h"; /* -X for each --long option whose code is X */
	size_t sl = 2;
	int n = 1, c;

	for (const struct option *o = extra; o && o->name && n < 15; o++) {
		opts[n++] = *o;
		if (sl + 3 < sizeof(shortopts)) {
			shortopts[sl++] = (char)o->val;
			if (o->has_arg == required_argument)
				shortopts[sl++] = ':';
			shortopts[sl] = 0;
		}
	}
	opts[n] = (struct option){0};
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
		if (c == 'h') {
			print_help(cmd);
			return 0;
		}
		if (c == '?' || c == ':' || !on_opt) {
			char why[300];
			snprintf(why, sizeof(why), "%s '%s'",
				 c == ':' ? "option needs a value:" : "bad option",
				 argv[optind - 1]);
			return usage_error(cmd, why);
		}
		int rc = on_opt(c, optarg, ctx);
		if (rc >= 0)
			return rc;
	}
	if (nr_args < 0) /* the command counts its own */
		return -1;
	if (argc - optind < nr_args)
		return usage_error(cmd, "missing argument");
	if (argc - optind > nr_args)
		return usage_error(cmd, "too many arguments");
	return -1;
}

static int parse_size(const struct cmd *cmd, const char *s, uint64_t *bytes)
{
	int rc = pool_parse_size(s, bytes);

	if (rc == -ERANGE)
		return fail(cmd, "size '%s' is too large", s);
	if (rc)
		return fail(
		    cmd, "'%s' is not a size (a number with an optional K, M, G or T suffix)", s);
	return 0;
}

static int open_pool(const struct cmd *cmd, const char *dir, bool rdonly, struct pool **pool)
{
	char msg[POOL_MSG_MAX] = "", holder[64];
	int rc;

	snprintf(holder, sizeof(holder), "thinctl %s (pid %d)", cmd->name, (int)getpid());
	rc = pool_open(dir, rdonly ? POOL_OPEN_RDONLY : 0, holder, pool, msg, sizeof(msg));
	if (rc)
		return fail(cmd, "%s", msg[0] ? msg : strerror(-rc));
	return 0;
}

static int close_pool(const struct cmd *cmd, struct pool *pool)
{
	int rc = pool_close(pool);

	if (rc)
		return fail(cmd, "closing the pool: %s", strerror(-rc));
	return 0;
}

/* End a changing command: on failure close without a word and explain rc. */
static int change_done(const struct cmd *cmd, struct pool *pool, int rc, const char *msg)
{
	if (!rc)
		return close_pool(cmd, pool);
	pool_close(pool);
	return fail(cmd, "%s", msg[0] ? msg : strerror(-rc));
}

/* End a reading command; a reader that went away (| head) is no failure. */
static int read_done(const struct cmd *cmd, struct pool *pool, int rc, const char *msg)
{
	pool_close(pool);
	if (!rc || rc == -EPIPE)
		return 0;
	return fail(cmd, "%s", msg[0] ? msg : strerror(-rc));
}

/* ---- human-readable numbers ---- */

static const char *human(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "BKMGTPE";
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 6) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 "B", bytes);
	else
		snprintf(buf, len, "%.1f%c", v, units[u]);
	return buf;
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

/* ---- commands ---- */

struct format_ctx {
	struct pool_format_opts o;
	const struct cmd *cmd;
	int err;
};

static int format_opt(int c, const char *arg, void *vctx)
{
	struct format_ctx *ctx = vctx;

	switch (c) {
	case 'b':
		if (parse_size(ctx->cmd, arg, &ctx->o.block_size))
			return 1;
		if (!ctx->o.block_size)
			return fail(ctx->cmd, "block size 0 is not a power of two from 4K to 1G");
		return -1;
	case 's':
		if (parse_size(ctx->cmd, arg, &ctx->o.data_size))
			return 1;
		if (!ctx->o.data_size)
			return fail(ctx->cmd, "data size 0 is smaller than one block");
		return -1;
	case 'd':
		ctx->o.data_path = arg;
		return -1;
	case 'f':
		ctx->o.force = true;
		return -1;
	}
	return 2;
}

static int cmd_format(const struct cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"block-size", required_argument, 0, 'b'},
	    {"data-size", required_argument, 0, 's'},
	    {"data", required_argument, 0, 'd'},
	    {"force", no_argument, 0, 'f'},
	    {0},
	};
	struct format_ctx ctx = {.cmd = cmd};
	char msg[POOL_MSG_MAX] = "";
	int rc = parse(cmd, argc, argv, opts, format_opt, &ctx, 1);

	if (rc >= 0)
		return rc;
	rc = pool_format(argv[optind], &ctx.o, msg, sizeof(msg));
	if (rc)
		return fail(cmd, "%s", msg[0] ? msg : strerror(-rc));
	return 0;
}

static int cmd_create(const struct cmd *cmd, int argc, char **argv)
{
	char msg[POOL_MSG_MAX] = "";
	struct pool *pool;
	uint64_t size;
	int rc = parse(cmd, argc, argv, NULL, NULL, NULL, 3);

	if (rc >= 0)
		return rc;
	if (parse_size(cmd, argv[optind + 2], &size))
		return 1;
	if (pool_name_valid(argv[optind + 1], msg, sizeof(msg)))
		return fail(cmd, "%s", msg);
	if (open_pool(cmd, argv[optind], false, &pool))
		return 1;
	/* the caller's volume, as a file they create would be */
	rc = pool_create_owned(pool, argv[optind + 1], size, (uint32_t)getuid(), (uint32_t)getgid(),
			       0600, msg, sizeof(msg));
	return change_done(cmd, pool, rc, msg);
}

struct set_ctx {
	const char *set;
};

static int set_opt(int c, const char *arg, void *vctx)
{
	((struct set_ctx *)vctx)->set = arg;
	return -1;
}

static const struct option set_opts[] = {
    {"set", required_argument, 0, 'S'},
    {0},
};

static int cmd_snapshot(const struct cmd *cmd, int argc, char **argv)
{
	struct set_ctx ctx = {0};
	char msg[POOL_MSG_MAX] = "";
	struct pool *pool;
	int rc;

	/* two forms: POOL ORIGIN NAME, or POOL --set SET */
	rc = parse(cmd, argc, argv, set_opts, set_opt, &ctx, -1);
	if (rc >= 0)
		return rc;
	int nargs = argc - optind;
	if (ctx.set ? nargs != 1 : nargs != 3)
		return usage_error(cmd, nargs < (ctx.set ? 1 : 3) ? "missing argument"
								  : "too many arguments");
	const char *name = ctx.set ? ctx.set : argv[optind + 2];
	if (pool_name_valid(name, msg, sizeof(msg)))
		return fail(cmd, "%s", msg);
	if (open_pool(cmd, argv[optind], false, &pool))
		return 1;
	if (ctx.set)
		rc = pool_snapshot_set(pool, ctx.set, msg, sizeof(msg));
	else
		rc = pool_snapshot(pool, argv[optind + 1], argv[optind + 2], msg, sizeof(msg));
	return change_done(cmd, pool, rc, msg);
}

static int cmd_delete(const struct cmd *cmd, int argc, char **argv)
{
	struct set_ctx ctx = {0};
	char msg[POOL_MSG_MAX] = "";
	struct pool *pool;
	int rc = parse(cmd, argc, argv, set_opts, set_opt, &ctx, -1);

	if (rc >= 0)
		return rc;
	int nargs = argc - optind;
	if (ctx.set ? nargs != 1 : nargs != 2)
		return usage_error(cmd, nargs < (ctx.set ? 1 : 2) ? "missing argument"
								  : "too many arguments");
	if (open_pool(cmd, argv[optind], false, &pool))
		return 1;
	if (ctx.set)
		rc = pool_delete_set(pool, ctx.set, msg, sizeof(msg));
	else
		rc = pool_delete(pool, argv[optind + 1], msg, sizeof(msg));
	return change_done(cmd, pool, rc, msg);
}

static int cmd_rename(const struct cmd *cmd, int argc, char **argv)
{
	char msg[POOL_MSG_MAX] = "";
	struct pool *pool;
	int rc = parse(cmd, argc, argv, NULL, NULL, NULL, 3);

	if (rc >= 0)
		return rc;
	if (pool_name_valid(argv[optind + 2], msg, sizeof(msg)))
		return fail(cmd, "%s", msg);
	if (open_pool(cmd, argv[optind], false, &pool))
		return 1;
	rc = pool_rename(pool, argv[optind + 1], argv[optind + 2], msg, sizeof(msg));
	return change_done(cmd, pool, rc, msg);
}

static int cmd_resize(const struct cmd *cmd, int argc, char **argv)
{
	char msg[POOL_MSG_MAX] = "";
	struct pool *pool;
	uint64_t size;
	int rc = parse(cmd, argc, argv, NULL, NULL, NULL, 3);

	if (rc >= 0)
		return rc;
	if (parse_size(cmd, argv[optind + 2], &size))
		return 1;
	if (open_pool(cmd, argv[optind], false, &pool))
		return 1;
	rc = pool_resize(pool, argv[optind + 1], size, msg, sizeof(msg));
	return change_done(cmd, pool, rc, msg);
}

struct grow_ctx {
	const struct cmd *cmd;
	uint64_t size;
	bool have;
};

static int grow_opt(int c, const char *arg, void *vctx)
{
	struct grow_ctx *ctx = vctx;

	if (parse_size(ctx->cmd, arg, &ctx->size))
		return 1;
	ctx->have = true;
	return -1;
}

static int cmd_grow(const struct cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"data-size", required_argument, 0, 's'},
	    {0},
	};
	struct grow_ctx ctx = {.cmd = cmd};
	char msg[POOL_MSG_MAX] = "";
	struct pool *pool;
	int rc = parse(cmd, argc, argv, opts, grow_opt, &ctx, 1);

	if (rc >= 0)
		return rc;
	if (!ctx.have)
		return usage_error(cmd, "--data-size is required");
	if (open_pool(cmd, argv[optind], false, &pool))
		return 1;
	rc = pool_grow(pool, ctx.size, msg, sizeof(msg));
	return change_done(cmd, pool, rc, msg);
}

struct json_ctx {
	bool json;
};

static int json_opt(int c, const char *arg, void *vctx)
{
	((struct json_ctx *)vctx)->json = true;
	return -1;
}

static const struct option json_opts[] = {
    {"json", no_argument, 0, 'j'},
    {0},
};

static const char *origin_name(const struct pool_device_info *devs, size_t nr, uint64_t id,
			       char *buf, size_t len)
{
	buf[0] = 0;
	for (size_t i = 0; id && i < nr; i++)
		if (devs[i].id == id)
			snprintf(buf, len, "%s%s%s", devs[i].set, devs[i].set[0] ? "/" : "",
				 devs[i].name);
	return buf;
}

static int cmd_list(const struct cmd *cmd, int argc, char **argv)
{
	struct json_ctx ctx = {0};
	struct pool_device_info *devs;
	struct pool_status st;
	struct pool *pool;
	size_t nr;
	char a[32], b[600], o[600];
	int rc = parse(cmd, argc, argv, json_opts, json_opt, &ctx, 1);

	if (rc >= 0)
		return rc;
	if (open_pool(cmd, argv[optind], true, &pool))
		return 1;
	pool_status(pool, &st);
	rc = pool_list(pool, true, &devs, &nr);
	if (rc) {
		pool_close(pool);
		return fail(cmd, "%s", strerror(-rc));
	}
	if (ctx.json) {
		printf("{\"block_size\":%" PRIu64 ",\"devices\":[", st.block_size);
		for (size_t i = 0; i < nr; i++) {
			printf("%s{\"id\":%" PRIu64 ",\"name\":", i ? "," : "", devs[i].id);
			json_string(stdout, devs[i].name);
			printf(",\"set\":");
			json_string(stdout, devs[i].set);
			printf(",\"size\":%" PRIu64 ",\"mapped_blocks\":%" PRIu64
			       ",\"exclusive_blocks\":%" PRIu64 ",\"shared_blocks\":%" PRIu64
			       ",\"read_only\":%s,\"origin\":",
			       devs[i].size, devs[i].mapped_blocks, devs[i].exclusive_blocks,
			       devs[i].shared_blocks, devs[i].read_only ? "true" : "false");
			json_string(stdout, origin_name(devs, nr, devs[i].origin_id, o, sizeof(o)));
			printf(",\"creation_time\":%" PRIu64 ",\"snap_time\":%" PRIu64 "}",
			       devs[i].creation_time, devs[i].snap_time);
		}
		printf("]}\n");
	} else {
		printf("%-24s %9s %10s %10s %10s %3s  %s\n", "NAME", "SIZE", "MAPPED", "EXCLUSIVE",
		       "SHARED", "RO", "ORIGIN");
		for (size_t i = 0; i < nr; i++) {
			snprintf(b, sizeof(b), "%s%s%s", devs[i].set, devs[i].set[0] ? "/" : "",
				 devs[i].name);
			printf("%-24s %9s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %3s  %s\n", b,
			       human(devs[i].size, a, sizeof(a)), devs[i].mapped_blocks,
			       devs[i].exclusive_blocks, devs[i].shared_blocks,
			       devs[i].read_only ? "ro" : "rw",
			       origin_name(devs, nr, devs[i].origin_id, o, sizeof(o)));
		}
		printf("(counts in blocks of %s)\n", human(st.block_size, a, sizeof(a)));
	}
	free(devs);
	return close_pool(cmd, pool);
}

/* The mountpoint of the daemon holding the pool, from its lock entry. */
static bool daemon_mountpoint(const char *dir, char *mnt, size_t len)
{
	char path[4200], line[4400];
	FILE *f;
	bool found = false;

	snprintf(path, sizeof(path), "%s/lock", dir);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (fgets(line, sizeof(line), f)) {
		char *on = strstr(line, " on ");
		if (!strncmp(line, "thinfs pid ", 11) && on) {
			line[strcspn(line, "\n")] = 0;
			snprintf(mnt, len, "%s", on + 4);
			found = true;
		}
	}
	fclose(f);
	return found;
}

static int cmd_status(const struct cmd *cmd, int argc, char **argv)
{
	struct json_ctx ctx = {0};
	struct pool_status st;
	struct pool *pool;
	char json[16384], mnt[4096], a[32], b[32];
	int rc = parse(cmd, argc, argv, json_opts, json_opt, &ctx, 1);
	ssize_t n = -1;

	if (rc >= 0)
		return rc;
	if (open_pool(cmd, argv[optind], true, &pool))
		return 1;
	pool_status(pool, &st);
	/* on a mounted pool the daemon knows more (live counters, its mode) */
	if (daemon_mountpoint(argv[optind], mnt, sizeof(mnt)))
		n = getxattr(mnt, STATUS_XATTR, json, sizeof(json) - 1);
	if (n > 0) {
		json[n] = 0;
	} else {
		/* a read-only open here is not the pool's own mode */
		st.read_only = st.needs_check;
		rc = pool_status_json(&st, json, sizeof(json));
		if (rc < 0) {
			pool_close(pool);
			return fail(cmd, "%s", strerror(-rc));
		}
	}
	if (ctx.json) {
		printf("%s\n", json);
	} else {
		printf("block size:      %s\n", human(st.block_size, a, sizeof(a)));
		printf("data blocks:     %" PRIu64 " used of %" PRIu64 " (%s of %s)\n",
		       st.used_blocks, st.nr_data_blocks,
		       human(st.used_blocks * st.block_size, a, sizeof(a)),
		       human(st.nr_data_blocks * st.block_size, b, sizeof(b)));
		printf("transaction id:  %" PRIu64 "\n", st.transaction_id);
		printf("mode:            %s%s\n", st.mode, st.needs_check ? " (needs_check)" : "");
		printf("devices:         %" PRIu64 " in %" PRIu64
		       " snapshot set(s) and at the top\n",
		       st.nr_devices, st.nr_sets);
		printf("data:            %s\n", st.data_path);
		printf("uuid:            %s\n", st.uuid);
		if (n > 0)
			printf("mounted on:      %s (live status: thinctl status --json)\n", mnt);
	}
	return close_pool(cmd, pool);
}

struct check_ctx {
	bool repair;
};

static int check_opt(int c, const char *arg, void *vctx)
{
	((struct check_ctx *)vctx)->repair = true;
	return -1;
}

static int cmd_check(const struct cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"repair", no_argument, 0, 'r'},
	    {0},
	};
	struct check_ctx ctx = {0};
	char msg[POOL_MSG_MAX] = "";
	int rc = parse(cmd, argc, argv, opts, check_opt, &ctx, 1);

	if (rc >= 0)
		return rc;
	rc = pool_check(argv[optind], ctx.repair, stdout, msg, sizeof(msg));
	if (rc < 0) {
		fail(cmd, "%s", msg[0] ? msg : strerror(-rc));
		return 2;
	}
	return rc;
}

/* ---- progress on a terminal ---- */

/* While a long dump, restore or send runs, show how far the stream got on
 * stderr, if stderr is a terminal (quiet when piped or redirected). */
struct progress {
	pthread_t thread;
	FILE *stream;
	const char *what;
	uint64_t total; /* bytes, 0 = unknown */
	int stop;	/* atomic */
	bool running;
};

static void *progress_loop(void *arg)
{
	struct progress *p = arg;
	struct timespec ts = {0, 250000000L};
	bool shown = false;

	for (int tick = 0; !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE); tick++) {
		nanosleep(&ts, NULL);
		if (tick < 4)
			continue; /* short runs print nothing */
		long pos = ftell(p->stream);
		if (pos < 0)
			continue;
		if (p->total)
			fprintf(stderr, "\r%s: %.1f of %.1f MiB (%.0f%%)  ", p->what,
				pos / 1048576.0, p->total / 1048576.0,
				100.0 * (double)pos / (double)p->total);
		else
			fprintf(stderr, "\r%s: %.1f MiB  ", p->what, pos / 1048576.0);
		shown = true;
	}
	if (shown)
		fprintf(stderr, "\r%*s\r", 60, "");
	return NULL;
}

static void progress_start(struct progress *p, FILE *stream, const char *what)
{
	struct stat sb;

	memset(p, 0, sizeof(*p));
	if (!isatty(STDERR_FILENO))
		return;
	p->stream = stream;
	p->what = what;
	if (fstat(fileno(stream), &sb) == 0 && S_ISREG(sb.st_mode) && stream != stdout)
		p->total = (uint64_t)sb.st_size;
	p->running = pthread_create(&p->thread, NULL, progress_loop, p) == 0;
}

static void progress_stop(struct progress *p)
{
	if (!p->running)
		return;
	__atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
	pthread_join(p->thread, NULL);
}

/* ---- dm-thin interchange and incremental replication ---- */

struct io_ctx {
	const char *in, *out, *data, *from;
	bool ranges;
};

static int io_opt(int c, const char *arg, void *vctx)
{
	struct io_ctx *ctx = vctx;

	switch (c) {
	case 'o':
		ctx->out = arg;
		break;
	case 'i':
		ctx->in = arg;
		break;
	case 'd':
		ctx->data = arg;
		break;
	case 'f':
		ctx->from = arg;
		break;
	case 'r':
		ctx->ranges = true;
		break;
	}
	return -1;
}

static const struct option io_opts[] = {
    {"output", required_argument, 0, 'o'}, {"input", required_argument, 0, 'i'},
    {"data", required_argument, 0, 'd'},   {"from", required_argument, 0, 'f'},
    {"ranges", no_argument, 0, 'r'},	   {0},
};

static int cmd_dump(const struct cmd *cmd, int argc, char **argv)
{
	struct io_ctx ctx = {0};
	char msg[POOL_MSG_MAX] = "";
	struct pool *pool;
	FILE *out = stdout;
	int rc = parse(cmd, argc, argv, io_opts, io_opt, &ctx, 1);

	if (rc >= 0)
		return rc;
	if (ctx.out && !(out = fopen(ctx.out, "we")))
		return fail(cmd, "cannot write %s: %s", ctx.out, strerror(errno));
	if (open_pool(cmd, argv[optind], true, &pool)) {
		if (ctx.out) {
			fclose(out);
			unlink(ctx.out);
		}
		return 1;
	}
	struct progress pg;
	progress_start(&pg, out, "dump");
	rc = pool_dump(pool, out, msg, sizeof(msg));
	progress_stop(&pg);
	pool_close(pool);
	if (ctx.out && fclose(out) && !rc)
		rc = -errno;
	if (rc && rc != -EPIPE)
		return fail(cmd, "%s", msg[0] ? msg : strerror(-rc));
	return 0;
}

static int cmd_restore(const struct cmd *cmd, int argc, char **argv)
{
	struct io_ctx ctx = {0};
	char msg[POOL_MSG_MAX] = "";
	FILE *in;
	int rc = parse(cmd, argc, argv, io_opts, io_opt, &ctx, 1);

	if (rc >= 0)
		return rc;
	if (!ctx.in)
		return usage_error(cmd, "-i FILE is required");
	in = strcmp(ctx.in, "-") ? fopen(ctx.in, "re") : stdin;
	if (!in)
		return fail(cmd, "cannot read %s: %s", ctx.in, strerror(errno));
	struct progress pg;
	progress_start(&pg, in, "restore");
	rc = pool_restore(argv[optind], in, ctx.data, msg, sizeof(msg));
	progress_stop(&pg);
	if (in != stdin)
		fclose(in);
	if (rc)
		return fail(cmd, "%s", msg[0] ? msg : strerror(-rc));
	return 0;
}

static int cmd_delta(const struct cmd *cmd, int argc, char **argv)
{
	struct io_ctx ctx = {0};
	char msg[POOL_MSG_MAX] = "";
	struct pool *pool;
	int rc = parse(cmd, argc, argv, io_opts, io_opt, &ctx, 3);

	if (rc >= 0)
		return rc;
	if (open_pool(cmd, argv[optind], true, &pool))
		return 1;
	rc = pool_delta(pool, argv[optind + 1], argv[optind + 2],
			ctx.ranges ? POOL_DELTA_RANGES : POOL_DELTA_XML, stdout, msg, sizeof(msg));
	return read_done(cmd, pool, rc, msg);
}

static int cmd_send(const struct cmd *cmd, int argc, char **argv)
{
	struct io_ctx ctx = {0};
	char msg[POOL_MSG_MAX] = "";
	struct pool *pool;
	int rc = parse(cmd, argc, argv, io_opts, io_opt, &ctx, 2);

	if (rc >= 0)
		return rc;
	if (isatty(STDOUT_FILENO))
		return fail(cmd, "refusing to write a binary stream to a terminal (redirect it)");
	if (open_pool(cmd, argv[optind], true, &pool))
		return 1;
	struct progress pg;
	progress_start(&pg, stdout, "send");
	rc = pool_send(pool, argv[optind + 1], ctx.from, stdout, msg, sizeof(msg));
	progress_stop(&pg);
	pool_close(pool);
	if (rc)
		return fail(cmd, "%s", msg[0] ? msg : strerror(-rc));
	return 0;
}

static int cmd_receive(const struct cmd *cmd, int argc, char **argv)
{
	char msg[POOL_MSG_MAX] = "";
	struct pool *pool;
	int rc = parse(cmd, argc, argv, NULL, NULL, NULL, 2);

	if (rc >= 0)
		return rc;
	if (pool_name_valid(argv[optind + 1], msg, sizeof(msg)))
		return fail(cmd, "%s", msg);
	if (open_pool(cmd, argv[optind], false, &pool))
		return 1;
	rc = pool_receive(pool, argv[optind + 1], stdin, msg, sizeof(msg));
	return change_done(cmd, pool, rc, msg);
}

static const struct cmd cmds[] = {
    {"format", "POOL [--block-size SIZE] [--data-size SIZE] [--data PATH] [--force]",
     "Make a pool in directory POOL (created if missing).\n"
     "  --block-size SIZE  a power of two from 4K to 1G (default 64K)\n"
     "  --data-size SIZE   data capacity (default 1G, or the size of an existing --data)\n"
     "  --data PATH        keep the data in PATH (a file or block device) instead of POOL/data\n"
     "  --force            overwrite an existing pool\n"
     "Sizes take K, M, G, T suffixes (powers of 1024).",
     cmd_format},
    {"create", "POOL NAME SIZE", "Create an empty thin volume NAME of SIZE bytes.", cmd_create},
    {"snapshot", "POOL ORIGIN NAME | POOL --set SET",
     "Take a writable snapshot NAME of ORIGIN (NAME or SET/NAME), or with --set an atomic\n"
     "read-only snapshot set SET of every top-level volume.",
     cmd_snapshot},
    {"delete", "POOL NAME | POOL --set SET",
     "Delete a volume (its unshared blocks return to the pool), or a whole snapshot set.",
     cmd_delete},
    {"rename", "POOL OLD NEW", "Rename a volume.", cmd_rename},
    {"resize", "POOL NAME SIZE", "Grow or shrink a volume; shrinking unmaps the tail.", cmd_resize},
    {"grow", "POOL --data-size SIZE", "Grow the pool's data capacity.", cmd_grow},
    {"list", "POOL [--json]",
     "List devices: size, mapped, exclusive and shared blocks, read-only, origin (like thin_ls).",
     cmd_list},
    {"status", "POOL [--json]",
     "Pool status: block size, data blocks used/total, transaction id, mode.", cmd_status},
    {"check", "POOL [--repair]",
     "Check the metadata (like thin_check). Exit 0 clean (leaks are warnings), 1 damaged,\n"
     "2 fatal. --repair fixes leaks and repairable damage.",
     cmd_check},
    {"dump", "POOL [-o FILE]",
     "Write the metadata as thin_dump XML (thin_restore reads it; thinfs names, sizes\n"
     "and layers travel in XML comments).",
     cmd_dump},
    {"restore", "POOL -i FILE [--data PATH]",
     "Make a new pool from thin_dump XML (thinfs's or dm-thin's). --data adopts an\n"
     "existing data image, e.g. a dm-thin data device copied to a file.",
     cmd_restore},
    {"delta", "POOL A B [--ranges]",
     "The blocks where devices A and B differ, from the metadata alone: thin_delta's XML,\n"
     "or with --ranges one 'OFFSET LENGTH' (bytes) line per differing range.",
     cmd_delta},
    {"send", "POOL SNAP [--from BASE] > STREAM",
     "Write SNAP as a stream of blocks with checksums; with --from only the blocks that\n"
     "differ from BASE (an incremental stream).",
     cmd_send},
    {"receive", "POOL NAME < STREAM",
     "Make device NAME from a stream; an incremental stream needs its base here (as\n"
     "received before) and is refused otherwise. All or nothing.",
     cmd_receive},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: %s COMMAND POOL [ARGS...]   (%s COMMAND --help for more)\n\ncommands:\n",
		prog, prog);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-9s %s\n", cmds[i].name, cmds[i].args);
}

/* stdout closed early (thinctl list | head -1) is not an error worth a word */
static int finish(int rc)
{
	if (fflush(stdout) == EOF || ferror(stdout)) {
		if (errno == EPIPE)
			return rc;
		fprintf(stderr, "%s: writing output: %s\n", prog, strerror(errno));
		return rc ? rc : 1;
	}
	return rc;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return finish(0);
	}
	if (!strcmp(argv[1], "--version")) {
		printf("thinctl (thinfs) 0.1\n");
		return finish(0);
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return finish(cmds[i].run(&cmds[i], argc - 1, argv + 1));
	fprintf(stderr, "%s: unknown command '%s'\n", prog, argv[1]);
	usage(stderr);
	return 2;
}
