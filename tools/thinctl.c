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
 * pool read-only, so they work on a mounted pool.  Changing commands build
 * one request (control.h) and send it to the daemon serving the pool, if
 * one does, or run it here on the pool they open: the same library call
 * either way.  A holder that is going away (a daemon after its unmount) is
 * waited for briefly (not with THINCTL_NO_WAIT set); a daemon that does not
 * answer within THINCTL_TIMEOUT seconds (default 10) is an error, never a
 * hang.
 *
 * A reader that goes away (thinctl dump POOL | head -1) is no error: the
 * command finishes what it does to the pool (closes it), writes nothing to
 * stderr and dies of SIGPIPE, as a program that never ignored it would (exit
 * status 141 in a shell).  SIGPIPE is ignored until then, so a write fails
 * with EPIPE instead of killing thinctl with the pool open.
 */
#include <errno.h>
#include <getopt.h>
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "thinfs/control.h"
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

/* The word of the command line getopt refused.  A bad short option (-x, or
 * the 1 of -1G) may sit inside a word getopt has not stepped past, behind
 * operands it permuted: find the word that holds it. */
static const char *bad_word(int argc, char **argv, int c)
{
	if (c == '?' && optopt) {
		for (int i = 1; i < argc; i++) {
			const char *w = argv[i];
			if (!strcmp(w, "--"))
				break;
			if (w[0] == '-' && w[1] && w[1] != '-' && strchr(w + 1, optopt))
				return w;
		}
	}
	return optind > 1 && optind <= argc ? argv[optind - 1] : "?";
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
			const char *w = bad_word(argc, argv, c);
			if (c == '?' && w[0] == '-' && isdigit((unsigned char)w[1]))
				snprintf(why, sizeof(why),
					 "'%s' is negative: not a size, not an option", w);
			else
				snprintf(why, sizeof(why), "%s '%s'",
					 c == ':' ? "option needs a value:" : "bad option", w);
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

#define HOLDER_WAIT_MS 3000 /* a holder that is exiting (after an unmount) */

/* Where a changing command's report goes (check --repair --json: a buffer). */
static FILE *change_out;

static FILE *report_stream(void)
{
	return change_out ? change_out : stdout;
}

static int control_timeout_ms(void)
{
	const char *t = getenv("THINCTL_TIMEOUT");
	long v = t ? strtol(t, NULL, 10) : 0;

	return v > 0 && v < 86400 ? (int)v * 1000 : CONTROL_TIMEOUT_MS;
}

/* The daemon's answer: its report on stdout, its reason on failure. */
static int daemon_done(const struct cmd *cmd, struct admin_reply *rep, int err_status)
{
	int status = rep->status;

	if (rep->out)
		fputs(rep->out, report_stream());
	free(rep->out);
	if (status < 0) {
		fail(cmd, "%s", rep->msg[0] ? rep->msg : strerror(-status));
		return err_status;
	}
	return status;
}

/*
 * Run a changing request: through the daemon that serves the pool, or here.
 * local (may be NULL) replaces admin_exec for the local run (check --repair
 * works on the unopened pool).  Returns the exit status: the request's, or
 * err_status on a failure (said on stderr).
 */
static int run_change(const struct cmd *cmd, const char *dir, struct admin_req *req,
		      int (*local)(const char *dir, FILE *out, char *msg, size_t msglen),
		      int err_status)
{
	char msg[POOL_MSG_MAX] = "", holder[64];
	struct admin_reply rep;
	struct pool *pool;
	int rc, waited = 0;

	req->uid = (uint32_t)getuid();
	req->gid = (uint32_t)getgid();
	snprintf(holder, sizeof(holder), "thinctl %s (pid %d)", cmd->name, (int)getpid());
	for (;;) {
		msg[0] = 0;
		rc = control_call(dir, req, control_timeout_ms(), &rep, msg, sizeof(msg));
		if (!rc)
			return daemon_done(cmd, &rep, err_status);
		/* -EPIPE, -ECONNRESET: a daemon that stopped serving before it took the request
		 * (it finishes every request it takes): as if there were none */
		if (rc != -ENOENT && rc != -ECONNREFUSED && rc != -EPIPE && rc != -ECONNRESET)
			break;
		/* no daemon: here, once the pool's lock is ours */
		msg[0] = 0;
		if (local) {
			rc = local(dir, report_stream(), msg, sizeof(msg));
			if (rc != -EBUSY)
				break;
		} else {
			rc = pool_open(dir, 0, holder, &pool, msg, sizeof(msg));
			if (!rc) {
				rc = admin_exec(pool, req, report_stream(), msg, sizeof(msg));
				return change_done(cmd, pool, rc, msg);
			}
		}
		/* held: by a daemon still starting or already going, or another
		 * command; try both ways again for a while */
		if (rc != -EBUSY || waited >= (getenv("THINCTL_NO_WAIT") ? 0 : HOLDER_WAIT_MS))
			break;
		usleep(50 * 1000);
		waited += 50;
	}
	if (rc < 0) {
		fail(cmd, "%s", msg[0] ? msg : strerror(-rc));
		return err_status;
	}
	return rc;
}

/* stdout's reader went away: finish() ends quietly, of SIGPIPE. */
static bool out_closed;

/* Is stdout a pipe or socket nobody reads any more? */
static bool reader_gone(void)
{
	struct pollfd p = {.fd = STDOUT_FILENO, .events = POLLOUT};

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP));
}

/* After a failure to write to stdout (rc, or a stream error): was it only
 * the reader going away?  Then nothing is worth a word. */
static bool output_closed(int rc)
{
	if (rc == -EPIPE || (rc && reader_gone()))
		out_closed = true;
	return out_closed;
}

/* End a reading command; a reader that went away (| head) is no failure. */
static int read_done(const struct cmd *cmd, struct pool *pool, int rc, const char *msg)
{
	pool_close(pool);
	if (!rc || output_closed(rc))
		return 0;
	return fail(cmd, "%s", msg[0] ? msg : strerror(-rc));
}

/* ---- human-readable numbers ---- */

static const char *human(uint64_t bytes, char *buf, size_t len)
{
	return pool_human_size(bytes, buf, len);
}

static const char *size_words(uint64_t bytes, uint64_t block_size, char *buf, size_t len)
{
	return pool_size_text(bytes, block_size, buf, len);
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

struct create_ctx {
	const char *origin;
};

static int create_opt(int c, const char *arg, void *vctx)
{
	((struct create_ctx *)vctx)->origin = arg;
	return -1;
}

/* --origin PATH: the path the daemon opens must be this one, whatever its
 * working directory: made absolute (canonical) here. */
static int origin_arg(const struct cmd *cmd, const char *path, struct admin_req *req)
{
	char real[PATH_MAX];

	if (!realpath(path, real))
		return fail(cmd, "origin %s: %s", path, strerror(errno));
	if (strlen(real) >= sizeof(req->b))
		return fail(cmd, "origin %s: its path is longer than %zu bytes", real,
			    sizeof(req->b) - 1);
	memcpy(req->b, real, strlen(real) + 1); /* (its length checked above) */
	req->op = ADMIN_CREATE_ORIGIN;
	return 0;
}

static int cmd_create(const struct cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"origin", required_argument, 0, 'o'},
	    {0},
	};
	struct create_ctx ctx = {0};
	struct admin_req req = {.op = ADMIN_CREATE};
	char msg[POOL_MSG_MAX] = "";
	int rc = parse(cmd, argc, argv, opts, create_opt, &ctx, 3);

	if (rc >= 0)
		return rc;
	if (ctx.origin && origin_arg(cmd, ctx.origin, &req))
		return 1;
	if (!ctx.origin || strcmp(argv[optind + 2], "-"))
		if (parse_size(cmd, argv[optind + 2], &req.size))
			return 1;
	if (pool_name_valid(argv[optind + 1], msg, sizeof(msg)))
		return fail(cmd, "%s", msg);
	snprintf(req.a, sizeof(req.a), "%s", argv[optind + 1]);
	return run_change(cmd, argv[optind], &req, NULL, 1);
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
	struct admin_req req = {0};
	char msg[POOL_MSG_MAX] = "";
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
	req.op = ctx.set ? ADMIN_SNAPSHOT_SET : ADMIN_SNAPSHOT;
	snprintf(req.a, sizeof(req.a), "%s", ctx.set ? ctx.set : argv[optind + 1]);
	if (!ctx.set)
		snprintf(req.b, sizeof(req.b), "%s", argv[optind + 2]);
	return run_change(cmd, argv[optind], &req, NULL, 1);
}

static int cmd_delete(const struct cmd *cmd, int argc, char **argv)
{
	struct set_ctx ctx = {0};
	struct admin_req req = {0};
	int rc = parse(cmd, argc, argv, set_opts, set_opt, &ctx, -1);

	if (rc >= 0)
		return rc;
	int nargs = argc - optind;
	if (ctx.set ? nargs != 1 : nargs != 2)
		return usage_error(cmd, nargs < (ctx.set ? 1 : 2) ? "missing argument"
								  : "too many arguments");
	req.op = ctx.set ? ADMIN_DELETE_SET : ADMIN_DELETE;
	snprintf(req.a, sizeof(req.a), "%s", ctx.set ? ctx.set : argv[optind + 1]);
	return run_change(cmd, argv[optind], &req, NULL, 1);
}

static int cmd_rename(const struct cmd *cmd, int argc, char **argv)
{
	struct admin_req req = {.op = ADMIN_RENAME};
	char msg[POOL_MSG_MAX] = "";
	int rc = parse(cmd, argc, argv, NULL, NULL, NULL, 3);

	if (rc >= 0)
		return rc;
	if (pool_name_valid(argv[optind + 2], msg, sizeof(msg)))
		return fail(cmd, "%s", msg);
	snprintf(req.a, sizeof(req.a), "%s", argv[optind + 1]);
	snprintf(req.b, sizeof(req.b), "%s", argv[optind + 2]);
	return run_change(cmd, argv[optind], &req, NULL, 1);
}

static int cmd_resize(const struct cmd *cmd, int argc, char **argv)
{
	struct admin_req req = {.op = ADMIN_RESIZE};
	int rc = parse(cmd, argc, argv, NULL, NULL, NULL, 3);

	if (rc >= 0)
		return rc;
	if (parse_size(cmd, argv[optind + 2], &req.size))
		return 1;
	snprintf(req.a, sizeof(req.a), "%s", argv[optind + 1]);
	return run_change(cmd, argv[optind], &req, NULL, 1);
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
	struct admin_req req = {.op = ADMIN_GROW};
	int rc = parse(cmd, argc, argv, opts, grow_opt, &ctx, 1);

	if (rc >= 0)
		return rc;
	if (!ctx.have)
		return usage_error(cmd, "--data-size is required");
	req.size = ctx.size;
	return run_change(cmd, argv[optind], &req, NULL, 1);
}

static int parse_u64(const struct cmd *cmd, const char *s, uint64_t *v)
{
	char *end;

	errno = 0;
	*v = strtoull(s, &end, 10);
	if (!*s || *end || errno || *s == '-')
		return fail(cmd, "'%s' is not a transaction id (a number from 0)", s);
	return 0;
}

static int cmd_set_txid(const struct cmd *cmd, int argc, char **argv)
{
	struct admin_req req = {.op = ADMIN_SET_TXID};
	int rc = parse(cmd, argc, argv, NULL, NULL, NULL, 3);

	if (rc >= 0)
		return rc;
	if (parse_u64(cmd, argv[optind + 1], &req.old_id) ||
	    parse_u64(cmd, argv[optind + 2], &req.new_id))
		return 1;
	return run_change(cmd, argv[optind], &req, NULL, 1);
}

static int cmd_rollback(const struct cmd *cmd, int argc, char **argv)
{
	struct admin_req req = {.op = ADMIN_ROLLBACK};
	int rc = parse(cmd, argc, argv, NULL, NULL, NULL, 3);

	if (rc >= 0)
		return rc;
	snprintf(req.a, sizeof(req.a), "%s", argv[optind + 1]);
	snprintf(req.b, sizeof(req.b), "%s", argv[optind + 2]);
	return run_change(cmd, argv[optind], &req, NULL, 1);
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

/* set POOL KEY=VALUE...: one request, all or none */
static int cmd_set(const struct cmd *cmd, int argc, char **argv)
{
	struct admin_req req = {.op = ADMIN_SET_PROPS};
	int rc = parse(cmd, argc, argv, NULL, NULL, NULL, -1);
	size_t at = 0;

	if (rc >= 0)
		return rc;
	if (argc - optind < 2)
		return usage_error(cmd, "missing argument: KEY=VALUE");
	for (int i = optind + 1; i < argc; i++) {
		size_t n = strlen(argv[i]);
		if (!strchr(argv[i], '='))
			return fail(cmd, "'%s' is not KEY=VALUE", argv[i]);
		if (strchr(argv[i], '\n'))
			return fail(cmd, "'%s': a value has no newline", argv[i]);
		if (at + n + 2 > sizeof(req.text))
			return fail(cmd, "too much to set at once");
		memcpy(req.text + at, argv[i], n);
		at += n;
		req.text[at++] = '\n';
	}
	return run_change(cmd, argv[optind], &req, NULL, 1);
}

/* get POOL [KEY...] [--json]: like zfs get, KEY VALUE SOURCE */
static int cmd_get(const struct cmd *cmd, int argc, char **argv)
{
	struct json_ctx ctx = {0};
	struct pool *pool;
	int rc = parse(cmd, argc, argv, json_opts, json_opt, &ctx, -1), first = 1;

	if (rc >= 0)
		return rc;
	if (argc - optind < 1)
		return usage_error(cmd, "missing argument: POOL");
	for (int i = optind + 1; i < argc; i++)
		if (pool_prop_index(argv[i]) < 0)
			return fail(cmd, "unknown property '%s' (thinctl get POOL lists them)",
				    argv[i]);
	if (open_pool(cmd, argv[optind], true, &pool))
		return 1;
	if (ctx.json)
		printf("{");
	else
		printf("%-20s %-24s %s\n", "PROPERTY", "VALUE", "SOURCE");
	for (size_t i = 0; i < pool_prop_count(); i++) {
		struct pool_prop p;
		bool wanted = argc - optind == 1;
		for (int a = optind + 1; a < argc; a++)
			wanted |= pool_prop_index(argv[a]) == (int)i;
		if (!wanted || pool_prop_get(pool, i, &p))
			continue;
		if (ctx.json) {
			printf("%s", first ? "" : ",");
			json_string(stdout, p.key);
			printf(":{\"value\":");
			json_string(stdout, p.value);
			printf(",\"source\":\"%s\"}", p.is_default ? "default" : "local");
		} else {
			printf("%-20s %-24s %s\n", p.key, p.value[0] ? p.value : "-",
			       p.is_default ? "default" : "local");
		}
		first = 0;
	}
	if (ctx.json)
		printf("}\n");
	return read_done(cmd, pool, 0, "");
}

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

static void full_name(const struct pool_device_info *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s", d->set, d->set[0] ? "/" : "", d->name);
}

/* One device as a JSON object: what list --json always gave, then sizes in
 * bytes beside the block counts, owner and times. */
static void json_device(const struct pool_device_info *devs, size_t nr, size_t i,
			uint64_t block_size)
{
	const struct pool_device_info *d = &devs[i];
	char o[600];

	printf("{\"id\":%" PRIu64 ",\"name\":", d->id);
	json_string(stdout, d->name);
	printf(",\"set\":");
	json_string(stdout, d->set);
	printf(",\"size\":%" PRIu64 ",\"mapped_blocks\":%" PRIu64 ",\"exclusive_blocks\":%" PRIu64
	       ",\"shared_blocks\":%" PRIu64 ",\"read_only\":%s,\"origin\":",
	       d->size, d->mapped_blocks, d->exclusive_blocks, d->shared_blocks,
	       d->read_only ? "true" : "false");
	json_string(stdout, origin_name(devs, nr, d->origin_id, o, sizeof(o)));
	printf(",\"external_origin\":");
	json_string(stdout, d->origin_path);
	printf(",\"external_origin_size\":%" PRIu64, d->origin_size);
	printf(",\"creation_time\":%" PRIu64 ",\"snap_time\":%" PRIu64, d->creation_time,
	       d->snap_time);
	printf(",\"size_blocks\":%" PRIu64 ",\"mapped_bytes\":%" PRIu64
	       ",\"exclusive_bytes\":%" PRIu64 ",\"shared_bytes\":%" PRIu64
	       ",\"origin_id\":%" PRIu64 ",\"uid\":%u,\"gid\":%u"
	       ",\"mode\":\"%04o\",\"ctime\":%" PRId64 ",\"mtime\":%" PRId64 "}",
	       d->size / block_size + (d->size % block_size != 0), d->mapped_blocks * block_size,
	       d->exclusive_blocks * block_size, d->shared_blocks * block_size, d->origin_id,
	       d->uid, d->gid, d->mode, d->ctime_sec, d->mtime_sec);
}

/* A block count as "64.0M (1024)": bytes for people, blocks for dm-thin. */
static const char *count_cell(uint64_t blocks, uint64_t block_size, char *buf, size_t len)
{
	char h[32];

	snprintf(buf, len, "%s (%" PRIu64 ")", human(blocks * block_size, h, sizeof(h)), blocks);
	return buf;
}

/* The ORIGIN column: the snapshot's origin device, and an external origin's
 * path in brackets. */
static const char *list_origin(const struct pool_device_info *devs, size_t nr, size_t i, char *buf,
			       size_t len)
{
	char dev[600];
	const char *path = devs[i].origin_path;

	origin_name(devs, nr, devs[i].origin_id, dev, sizeof(dev));
	snprintf(buf, len, "%s%s%s%s%s", dev, dev[0] && path[0] ? " " : "", path[0] ? "[" : "",
		 path, path[0] ? "]" : "");
	return buf;
}

static void list_table(const struct pool_device_info *devs, size_t nr, uint64_t bs)
{
	char a[32], b[600], o[1200], m[64], e[64], sh[64];

	printf("%-24s %9s %16s %16s %16s %3s  %s\n", "NAME", "SIZE", "MAPPED", "EXCLUSIVE",
	       "SHARED", "RO", "ORIGIN");
	for (size_t i = 0; i < nr; i++) {
		full_name(&devs[i], b, sizeof(b));
		printf("%-24s %9s %16s %16s %16s %3s  %s\n", b, human(devs[i].size, a, sizeof(a)),
		       count_cell(devs[i].mapped_blocks, bs, m, sizeof(m)),
		       count_cell(devs[i].exclusive_blocks, bs, e, sizeof(e)),
		       count_cell(devs[i].shared_blocks, bs, sh, sizeof(sh)),
		       devs[i].read_only ? "ro" : "rw", list_origin(devs, nr, i, o, sizeof(o)));
	}
	printf("(counts in bytes, and in parentheses in blocks of %s; exact bytes: --json)\n",
	       human(bs, a, sizeof(a)));
}

/* The pool's devices with sharing counts, read-only; closes the pool on failure. */
static int read_devices(const struct cmd *cmd, const char *dir, struct pool **pool,
			struct pool_status *st, struct pool_device_info **devs, size_t *nr)
{
	int rc;

	if (open_pool(cmd, dir, true, pool))
		return 1;
	pool_status(*pool, st);
	rc = pool_list(*pool, true, devs, nr);
	if (rc) {
		pool_close(*pool);
		return fail(cmd, "%s", strerror(-rc));
	}
	return 0;
}

static int cmd_list(const struct cmd *cmd, int argc, char **argv)
{
	struct json_ctx ctx = {0};
	struct pool_device_info *devs;
	struct pool_status st;
	struct pool *pool;
	size_t nr;
	int rc = parse(cmd, argc, argv, json_opts, json_opt, &ctx, 1);

	if (rc >= 0)
		return rc;
	if (read_devices(cmd, argv[optind], &pool, &st, &devs, &nr))
		return 1;
	if (ctx.json) {
		printf("{\"block_size\":%" PRIu64 ",\"devices\":[", st.block_size);
		for (size_t i = 0; i < nr; i++) {
			printf("%s", i ? "," : "");
			json_device(devs, nr, i, st.block_size);
		}
		printf("]}\n");
	} else {
		list_table(devs, nr, st.block_size);
	}
	free(devs);
	return close_pool(cmd, pool);
}

static const char *when(int64_t sec, char *buf, size_t len)
{
	time_t t = (time_t)sec;
	struct tm tm;

	if (!localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S %z", &tm))
		snprintf(buf, len, "%" PRId64, sec);
	return buf;
}

static void info_text(const struct pool_device_info *devs, size_t nr, size_t i, uint64_t bs)
{
	const struct pool_device_info *d = &devs[i];
	char b[600], w[128];

	full_name(d, b, sizeof(b));
	printf("device:          %s\n", b);
	printf("id:              %" PRIu64 "\n", d->id);
	printf("size:            %s\n", size_words(d->size, bs, w, sizeof(w)));
	printf("mapped:          %s\n", size_words(d->mapped_blocks * bs, bs, w, sizeof(w)));
	printf("exclusive:       %s\n", size_words(d->exclusive_blocks * bs, bs, w, sizeof(w)));
	printf("shared:          %s\n", size_words(d->shared_blocks * bs, bs, w, sizeof(w)));
	if (d->set[0])
		printf("read-only:       yes (a member of snapshot set '%s')\n", d->set);
	else
		printf("read-only:       %s\n", d->read_only ? "yes" : "no");
	origin_name(devs, nr, d->origin_id, b, sizeof(b));
	printf("origin:          %s\n", b[0] ? b : "-");
	if (d->origin_path[0])
		printf("external origin: %s (%s)\n", d->origin_path,
		       size_words(d->origin_size, bs, w, sizeof(w)));
	printf("created:         %s (pool time %" PRIu64 ")\n", when(d->ctime_sec, w, sizeof(w)),
	       d->creation_time);
	printf("changed:         %s\n", when(d->mtime_sec, w, sizeof(w)));
	if (d->snap_time)
		printf("last snapshot:   pool time %" PRIu64 "\n", d->snap_time);
	else
		printf("last snapshot:   never\n");
	printf("owner:           uid %u, gid %u, mode %04o\n", d->uid, d->gid, d->mode);
}

static int cmd_info(const struct cmd *cmd, int argc, char **argv)
{
	struct json_ctx ctx = {0};
	struct pool_device_info *devs;
	struct pool_status st;
	struct pool *pool;
	size_t nr, i;
	char b[600];
	int rc = parse(cmd, argc, argv, json_opts, json_opt, &ctx, 2);

	if (rc >= 0)
		return rc;
	if (read_devices(cmd, argv[optind], &pool, &st, &devs, &nr))
		return 1;
	for (i = 0; i < nr; i++) {
		full_name(&devs[i], b, sizeof(b));
		if (!strcmp(b, argv[optind + 1]))
			break;
	}
	if (i == nr) {
		free(devs);
		pool_close(pool);
		return fail(cmd, "device '%s' does not exist", argv[optind + 1]);
	}
	/* an external origin: is it still as recorded? */
	char why[POOL_MSG_MAX] = "";
	bool origin_ok = !devs[i].origin_path[0] ||
			 !pool_origin_verify(pool, argv[optind + 1], why, sizeof(why));
	if (ctx.json) {
		printf("{\"block_size\":%" PRIu64 ",\"device\":", st.block_size);
		json_device(devs, nr, i, st.block_size);
		printf(",\"external_origin_ok\":%s,\"external_origin_problem\":",
		       origin_ok ? "true" : "false");
		json_string(stdout, why);
		printf("}\n");
	} else {
		info_text(devs, nr, i, st.block_size);
		if (devs[i].origin_path[0])
			printf("origin state:    %s\n", origin_ok ? "as recorded" : why);
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

static void status_text_sizes(const struct pool_status *st)
{
	uint64_t bs = st->block_size;
	uint64_t free_blocks =
	    st->nr_data_blocks > st->used_blocks ? st->nr_data_blocks - st->used_blocks : 0;
	char w[128];

	printf("block size:      %s (%" PRIu64 " B)\n", human(bs, w, sizeof(w)), bs);
	printf("data size:       %s\n", size_words(st->nr_data_blocks * bs, bs, w, sizeof(w)));
	printf("data used:       %s, %.1f%%\n", size_words(st->used_blocks * bs, bs, w, sizeof(w)),
	       st->nr_data_blocks ? 100.0 * (double)st->used_blocks / (double)st->nr_data_blocks
				  : 0.0);
	printf("data free:       %s\n", size_words(free_blocks * bs, bs, w, sizeof(w)));
	printf("largest device:  %s\n", size_words(st->max_device_size, bs, w, sizeof(w)));
}

/* status: the space policy in force and the last of each space event */
static void status_text_space(const struct pool_status *st)
{
	char low[32] = "off";

	if (st->low_water)
		snprintf(low, sizeof(low), "%u%%%s", st->low_water,
			 st->low_water_crossed ? " (reached)" : "");
	printf("space policy:    low_water %s, when_full %s (thinctl get for all)\n", low,
	       st->when_full);
	for (int k = 0; k < POOL_EVENT_NR; k++) {
		char when[64];
		time_t t = (time_t)st->events[k].time;
		struct tm tm;
		if (!st->events[k].count)
			continue;
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
		printf("event:           %s x%" PRIu64 ", last %s: %s\n", pool_event_name(k),
		       st->events[k].count, when, st->events[k].detail);
	}
}

static int cmd_status(const struct cmd *cmd, int argc, char **argv)
{
	struct json_ctx ctx = {0};
	struct pool_status st;
	struct pool *pool;
	char json[16384], mnt[4096];
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
		status_text_sizes(&st);
		printf("transaction id:  %" PRIu64 " (commits: %" PRIu64 ")\n", st.transaction_id,
		       st.commit_id);
		if (st.needs_check)
			printf("mode:            %s (needs_check: %s)\n", st.mode, st.mode_reason);
		else
			printf("mode:            %s\n", st.mode);
		printf("devices:         %" PRIu64 " in %" PRIu64
		       " snapshot set(s) and at the top\n",
		       st.nr_devices, st.nr_sets);
		if (st.reclaim_devices)
			printf("being freed:     %" PRIu64 " deleted device(s), %" PRIu64
			       " rows left\n",
			       st.reclaim_devices, st.reclaim_rows);
		status_text_space(&st);
		printf("data:            %s\n", st.data_path);
		printf("uuid:            %s\n", st.uuid);
		if (n > 0)
			printf("mounted on:      %s (live status: thinctl status --json)\n", mnt);
	}
	return close_pool(cmd, pool);
}

struct check_ctx {
	bool repair, json;
};

static int check_opt(int c, const char *arg, void *vctx)
{
	struct check_ctx *ctx = vctx;

	if (c == 'j')
		ctx->json = true;
	else
		ctx->repair = true;
	return -1;
}

static int repair_here(const char *dir, FILE *out, char *msg, size_t msglen)
{
	return pool_check(dir, true, out, msg, msglen);
}

/* check --json: pool_check's report lines ("LEVEL: text", one finding each)
 * as one document; a line of another shape is kept whole, as level "info". */
static void check_json(const char *report, int rc, bool repair)
{
	static const char *const result[] = {"clean", "damaged", "fatal"};
	const char *p = report;
	size_t n = 0;

	printf("{\"result\":\"%s\",\"exit\":%d,\"repair\":%s,\"findings\":[", result[rc], rc,
	       repair ? "true" : "false");
	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char line[2048], *colon;
		snprintf(line, sizeof(line), "%.*s", (int)len, p);
		p = nl ? nl + 1 : p + len;
		if (!line[0])
			continue;
		colon = strstr(line, ": ");
		bool tagged =
		    colon && strspn(line, "abcdefghijklmnopqrstuvwxyz") == (size_t)(colon - line);
		if (tagged)
			*colon = 0;
		printf("%s{\"level\":", n++ ? "," : "");
		json_string(stdout, tagged ? line : "info");
		printf(",\"text\":");
		json_string(stdout, tagged ? colon + 2 : line);
		printf("}");
	}
	printf("],\"nr_findings\":%zu}\n", n);
}

static int cmd_check(const struct cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"repair", no_argument, 0, 'r'},
	    {"json", no_argument, 0, 'j'},
	    {0},
	};
	struct check_ctx ctx = {0};
	char msg[POOL_MSG_MAX] = "", *report = NULL;
	size_t report_len = 0;
	FILE *out = stdout;
	int rc = parse(cmd, argc, argv, opts, check_opt, &ctx, 1);

	if (rc >= 0)
		return rc;
	if (ctx.json && !(out = open_memstream(&report, &report_len)))
		return fail(cmd, "%s", strerror(errno));
	if (ctx.repair) {
		/* mounted: the daemon fixes what it can; else the whole repair here */
		struct admin_req req = {.op = ADMIN_REPAIR};
		change_out = out;
		rc = run_change(cmd, argv[optind], &req, repair_here, 2);
		change_out = NULL;
		if (ctx.json)
			fclose(out);
		if (ctx.json && rc <= CHECK_FATAL)
			check_json(report, rc, true);
		free(report);
		return rc;
	}
	rc = pool_check(argv[optind], false, out, msg, sizeof(msg));
	if (ctx.json)
		fclose(out);
	if (rc < 0) {
		free(report);
		fail(cmd, "%s", msg[0] ? msg : strerror(-rc));
		return 2;
	}
	if (ctx.json)
		check_json(report, rc > CHECK_FATAL ? CHECK_FATAL : rc, ctx.repair);
	free(report);
	if (rc > 0)
		fail(cmd,
		     "the pool is damaged: it opens read-only until 'thinctl check --repair %s'",
		     argv[optind]);
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

/* Progress of a send or receive, from the library's callback: on a terminal
 * one line (bytes, percent, rate) redrawn at most 4 times a second, or with
 * --json one JSON object a line on stderr (at most 4 a second, and a last one
 * with "done": true); nothing otherwise. */
struct xfer_progress {
	const char *what;
	bool json, tty, shown;
	struct timespec start, last;
	uint64_t done, total;
};

static double seconds_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void xfer_print(struct xfer_progress *x, bool final)
{
	double t = seconds_since(&x->start), mib = (double)x->done / 1048576.0;
	double rate = t > 0 ? mib / t : 0,
	       pct = x->total ? 100.0 * (double)x->done / (double)x->total : 100.0;

	if (x->json) {
		fprintf(
		    stderr,
		    "{\"op\": \"%s\", \"done_bytes\": %" PRIu64 ", \"total_bytes\": %" PRIu64
		    ", \"percent\": %.1f, \"mib_per_s\": %.1f, \"seconds\": %.2f, \"done\": %s}\n",
		    x->what, x->done, x->total, pct, rate, t, final ? "true" : "false");
	} else {
		fprintf(stderr, "\r%s: %.1f of %.1f MiB (%.0f%%), %.0f MiB/s  ", x->what, mib,
			(double)x->total / 1048576.0, pct, rate);
		x->shown = true;
	}
	fflush(stderr);
}

static void xfer_cb(void *arg, uint64_t done, uint64_t total)
{
	struct xfer_progress *x = arg;

	x->done = done;
	x->total = total;
	if (seconds_since(&x->last) < 0.25)
		return;
	clock_gettime(CLOCK_MONOTONIC, &x->last);
	xfer_print(x, false);
}

/* NULL when nothing is to be shown. */
static struct pool_progress *xfer_start(struct xfer_progress *x, struct pool_progress *pg,
					const char *what, bool json)
{
	memset(x, 0, sizeof(*x));
	x->what = what;
	x->json = json;
	x->tty = isatty(STDERR_FILENO);
	if (!x->json && !x->tty)
		return NULL;
	clock_gettime(CLOCK_MONOTONIC, &x->start);
	x->last = x->start;
	pg->fn = xfer_cb;
	pg->arg = x;
	return pg;
}

static void xfer_end(struct xfer_progress *x, int rc)
{
	if (x->json && !rc)
		xfer_print(x, true);
	else if (x->shown)
		fprintf(stderr, "\r%*s\r", 70, "");
}

/* ---- dm-thin interchange and incremental replication ---- */

struct io_ctx {
	const char *in, *out, *data, *from;
	bool ranges, json;
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
	case 'j':
		ctx->json = true;
		break;
	}
	return -1;
}

static const struct option io_opts[] = {
    {"output", required_argument, 0, 'o'}, {"input", required_argument, 0, 'i'},
    {"data", required_argument, 0, 'd'},   {"from", required_argument, 0, 'f'},
    {"ranges", no_argument, 0, 'r'},	   {0},
};

static const struct option xfer_opts[] = {
    {"from", required_argument, 0, 'f'},
    {"json", no_argument, 0, 'j'},
    {0},
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
	if (rc && !(out == stdout && output_closed(rc)))
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
	static const struct option opts[] = {
	    {"ranges", no_argument, 0, 'r'},
	    {"json", no_argument, 0, 'j'},
	    {0},
	};
	int rc = parse(cmd, argc, argv, opts, io_opt, &ctx, 3), format = POOL_DELTA_XML;

	if (rc >= 0)
		return rc;
	if (ctx.json)
		format = POOL_DELTA_RANGES_JSON; /* the ranges: XML has no JSON form */
	else if (ctx.ranges)
		format = POOL_DELTA_RANGES;
	if (open_pool(cmd, argv[optind], true, &pool))
		return 1;
	rc = pool_delta(pool, argv[optind + 1], argv[optind + 2], format, stdout, msg, sizeof(msg));
	return read_done(cmd, pool, rc, msg);
}

static int cmd_send(const struct cmd *cmd, int argc, char **argv)
{
	struct io_ctx ctx = {0};
	char msg[POOL_MSG_MAX] = "";
	struct xfer_progress x;
	struct pool_progress pg;
	struct pool *pool;
	int rc = parse(cmd, argc, argv, xfer_opts, io_opt, &ctx, 2);

	if (rc >= 0)
		return rc;
	if (isatty(STDOUT_FILENO))
		return fail(cmd, "refusing to write a binary stream to a terminal (redirect it)");
	if (open_pool(cmd, argv[optind], true, &pool))
		return 1;
	rc = pool_send_progress(pool, argv[optind + 1], ctx.from, stdout,
				xfer_start(&x, &pg, "send", ctx.json), msg, sizeof(msg));
	xfer_end(&x, rc);
	pool_close(pool);
	if (rc && !output_closed(rc))
		return fail(cmd, "%s", msg[0] ? msg : strerror(-rc));
	return 0;
}

static int cmd_receive(const struct cmd *cmd, int argc, char **argv)
{
	struct io_ctx ctx = {0};
	char msg[POOL_MSG_MAX] = "";
	struct xfer_progress x;
	struct pool_progress pg;
	struct pool *pool;
	int rc = parse(cmd, argc, argv, xfer_opts + 1, io_opt, &ctx, 2);

	if (rc >= 0)
		return rc;
	if (pool_name_valid(argv[optind + 1], msg, sizeof(msg)))
		return fail(cmd, "%s", msg);
	if (open_pool(cmd, argv[optind], false, &pool))
		return 1;
	rc = pool_receive_progress(pool, argv[optind + 1], stdin,
				   xfer_start(&x, &pg, "receive", ctx.json), msg, sizeof(msg));
	xfer_end(&x, rc);
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
    {"create", "POOL NAME SIZE [--origin PATH]",
     "Create an empty thin volume NAME of SIZE bytes. With --origin, a volume over an\n"
     "external read-only origin PATH (a file or block device, never written): its unmapped\n"
     "blocks read PATH (zeros past its end); SIZE '-' is PATH's size. The origin's identity\n"
     "is recorded: a volume whose origin changed or vanished is refused.",
     cmd_create},
    {"snapshot", "POOL ORIGIN NAME | POOL --set SET",
     "Take a writable snapshot NAME of ORIGIN (NAME or SET/NAME), or with --set an atomic\n"
     "read-only snapshot set SET of every top-level volume.",
     cmd_snapshot},
    {"delete", "POOL NAME | POOL --set SET",
     "Delete a volume (its unshared blocks return to the pool), or a whole snapshot set.",
     cmd_delete},
    {"rename", "POOL OLD NEW", "Rename a volume, or a snapshot set.", cmd_rename},
    {"resize", "POOL NAME SIZE", "Grow or shrink a volume; shrinking unmaps the tail.", cmd_resize},
    {"grow", "POOL --data-size SIZE", "Grow the pool's data capacity.", cmd_grow},
    {"rollback", "POOL VOLUME SNAPSHOT",
     "Make VOLUME read exactly as SNAPSHOT again (a set member or a writable snapshot):\n"
     "metadata only, at once; refused while VOLUME is open. Later snapshots stay.",
     cmd_rollback},
    {"set-transaction-id", "POOL OLD NEW",
     "Set the pool's transaction id to NEW if it is OLD (dm-thin's set_transaction_id);\n"
     "refused, changing nothing, if it is not. Commits never move it; dumps carry it.",
     cmd_set_txid},
    {"set", "POOL KEY=VALUE...",
     "Set pool properties (all or none; durable on return; while mounted too):\n"
     "  low_water=PCT          used blocks at which the low_water event runs (0 = off)\n"
     "  autoextend_percent=PCT grow the data file by PCT of its size at low water or\n"
     "  autoextend_max=SIZE    when full, up to SIZE (either 0 = off)\n"
     "  when_full=queue|error  a write needing a block in a full pool waits for space\n"
     "  queue_timeout=SECONDS  that long (0 = for ever), then ENOSPC; or fails at once\n"
     "  discard=passdown|nopassdown|ignore  punch freed blocks in the data file, keep\n"
     "                         their extents, or refuse discards (EOPNOTSUPP)\n"
     "  event_command=PATH     run as PATH EVENT on low_water, full, autoextend,\n"
     "                         autoextend_failed, space_back (THINFS_* in the environment)",
     cmd_set},
    {"get", "POOL [KEY...] [--json]",
     "Show pool properties: value, and source (default or local), like zfs get.", cmd_get},
    {"list", "POOL [--json]",
     "List devices: size, mapped, exclusive and shared space (in bytes and blocks),\n"
     "read-only, origin (like thin_ls).",
     cmd_list},
    {"info", "POOL DEVICE [--json]",
     "One device (NAME or SET/NAME): size, mapped, exclusive and shared space in bytes\n"
     "and blocks, origin, times, owner.",
     cmd_info},
    {"status", "POOL [--json]",
     "Pool status: block size, data used/free/total in bytes and blocks, the largest\n"
     "device size, transaction id, mode and why.",
     cmd_status},
    {"check", "POOL [--repair] [--json]",
     "Check the metadata and the data file (like thin_check): one line per finding.\n"
     "Exit 0 clean (leaks are warnings), 1 damaged (repairable), 2 fatal. Damage found\n"
     "keeps the pool read-only until repaired. --repair fixes what it can (while mounted:\n"
     "leaks), says for each finding what it did or why not, checks again, exits 0 only if\n"
     "clean. --json: the findings as one document.",
     cmd_check},
    {"dump", "POOL [-o FILE]",
     "Write the metadata as thin_dump XML (thin_restore reads it; thinfs names, sizes\n"
     "and layers travel in XML comments).",
     cmd_dump},
    {"restore", "POOL -i FILE [--data PATH]",
     "Make a new pool from thin_dump XML (thinfs's or dm-thin's). --data adopts an\n"
     "existing data image, e.g. a dm-thin data device copied to a file.",
     cmd_restore},
    {"delta", "POOL A B [--ranges] [--json]",
     "The blocks where devices A and B differ, from the metadata alone: thin_delta's XML,\n"
     "or with --ranges one 'OFFSET LENGTH' (bytes) line per differing range, or with\n"
     "--json those ranges as one JSON document.",
     cmd_delta},
    {"send", "POOL SNAP [--from BASE] [--json] > STREAM",
     "Write SNAP as a stream of blocks with checksums; with --from only the blocks that\n"
     "differ from BASE (an incremental stream; any device of the pool). A device being\n"
     "written is refused: send a snapshot. Progress on a terminal; --json: progress as\n"
     "JSON lines on stderr.",
     cmd_send},
    {"receive", "POOL NAME [--json] < STREAM",
     "Make device NAME from a stream; an incremental stream needs its base here, as\n"
     "received (and not written since) or made here, and is refused otherwise. All or\n"
     "nothing: a refused or failed receive leaves the pool as it was. Progress as send.",
     cmd_receive},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: %s COMMAND POOL [ARGS...]   (%s COMMAND --help for more)\n\ncommands:\n",
		prog, prog);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-9s %s\n", cmds[i].name, cmds[i].args);
}

/* Every command ends here: flush stdout, and if its reader went away, die of
 * SIGPIPE quietly (the pool is closed by now). */
static int finish(int rc)
{
	int err = 0;

	if (!out_closed && fflush(stdout) == EOF)
		err = errno ? errno : EIO;
	else if (!out_closed && ferror(stdout))
		err = EIO;
	if (err && output_closed(-err))
		err = 0;
	if (out_closed) {
		signal(SIGPIPE, SIG_DFL);
		raise(SIGPIPE);
		return 128 + SIGPIPE; /* not reached */
	}
	if (err) {
		fprintf(stderr, "%s: writing output: %s\n", prog, strerror(err));
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
