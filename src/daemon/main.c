/* SPDX-License-Identifier: MIT */
/*
 * thinfs.c - the daemon: thinfs POOL MOUNTPOINT [-f] [-o OPTIONS]
 *
 * It parses the command line, checks the mountpoint, opens the pool for
 * writing (its lock names "thinfs pid N on MOUNTPOINT"), mounts, serves FUSE
 * requests on several threads (src/fuse_ops.c) and commits every second, the
 * way dm-thin does.  On unmount, SIGTERM, SIGINT or SIGHUP it stops serving,
 * closes the pool (a clean close) and exits 0.
 *
 * Daemonizing.  Without -f the process forks first and the child does all the
 * work, while the parent waits for one status byte on a pipe: 0 once the
 * filesystem is mounted, 1 on failure.  So `thinfs` and `mount -t thinfs`
 * return only when the mount is usable, and with the reason and a non-zero
 * status when it is not.  fuse_daemonize() cannot do this: it forks after the
 * pool would already be open, and neither SQLite's connection nor its fcntl
 * locks survive a fork, nor would the pid in the pool's lock be right.
 * Messages go to stderr until the daemon detaches, to syslog after (with -f,
 * always stderr): libfuse's, the daemon's, the pool library's (every
 * administrative change, mode change and failure, pool_set_logger) and the
 * refused requests (once per device and reason, fuse_refusals.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "daemon_admin.h"
#include "fuse_loop.h"
#include "fuse_ops.h"
#include "thinfs/pool.h"

#ifndef THINFS_VERSION
#define THINFS_VERSION "0.1"
#endif

#define COMMIT_INTERVAL_SEC 1

static const char usage[] =
    "usage: thinfs POOL MOUNTPOINT [-f] [-o OPTIONS]\n"
    "\n"
    "Serve the thin pool in directory POOL as a filesystem at MOUNTPOINT: each\n"
    "volume a sparse file, snapshot sets under MOUNTPOINT/.snapshots.\n"
    "\n"
    "  -f, --foreground   stay in the foreground and log to stderr\n"
    "  -d, -o debug       log every FUSE request (implies -f)\n"
    "  -o OPTIONS         comma-separated mount options:\n"
    "       allow_other          let other users in (adds default_permissions)\n"
    "       max_threads=N        worker threads answering requests (default 16)\n"
    "       ro, noexec, ...      kernel mount flags; nosuid,nodev are the default\n"
    "       defaults, auto, noauto, user, nofail, _netdev, x-*, comment=*\n"
    "                            fstab options, ignored\n"
    "  -h, --help         this help\n"
    "  -V, --version      the version\n"
    "\n"
    "Unmount with `umount MOUNTPOINT` (or fusermount3 -u); the pool is closed cleanly.\n";

struct opts {
	char *pool;
	char *mountpoint;
	bool foreground, debug, allow_other, help, version;
	bool bad;
	int max_threads; /* worker threads answering requests */
};

enum { KEY_HELP, KEY_VERSION, KEY_FOREGROUND, KEY_DEBUG, KEY_ALLOW_OTHER };

static const struct fuse_opt opt_spec[] = {
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    FUSE_OPT_KEY("-f", KEY_FOREGROUND),
    FUSE_OPT_KEY("--foreground", KEY_FOREGROUND),
    FUSE_OPT_KEY("-d", KEY_DEBUG),
    FUSE_OPT_KEY("debug", KEY_DEBUG),
    FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
    {"max_threads=%d", offsetof(struct opts, max_threads), 0},
    /* mount(8) and fstab options that mean nothing to FUSE */
    FUSE_OPT_KEY("defaults", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("auto", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("noauto", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("user", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("nouser", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("users", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("nofail", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("_netdev", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_END};

/* The loop is ending: writes queued for space fail now (when_full=queue). */
static void stop_waiting(void *pool)
{
	pool_space_worker_stop(pool);
}

/* ---- logging: stderr until detached, then syslog ---- */

static bool log_to_syslog;

static void emit(enum fuse_log_level level, const char *msg)
{
	if (log_to_syslog)
		syslog((int)level, "%s", msg);
	else
		fputs(msg, stderr);
}

/* libfuse's messages (and with -d, every request) */
static void log_func(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	emit(level, msg);
}

static void __attribute__((format(printf, 2, 3)))
say(enum fuse_log_level level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	/* clang 14's valist checker misreads this (a false positive) */
	vsnprintf(msg, sizeof(msg), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	emit(level, msg);
}

/* the pool library's log: admin changes, mode changes, failures */
static void pool_logger(void *arg, int level, const char *line)
{
	say((enum fuse_log_level)level, "thinfs: %s\n", line);
}

/* ---- arguments ---- */

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct opts *o = data;

	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (!o->pool)
			o->pool = strdup(arg);
		else if (!o->mountpoint)
			o->mountpoint = strdup(arg);
		else {
			fprintf(stderr, "thinfs: unexpected argument '%s'\n", arg);
			o->bad = true;
		}
		return 0;
	case KEY_HELP:
		o->help = true;
		return 0;
	case KEY_VERSION:
		o->version = true;
		return 0;
	case KEY_FOREGROUND:
		o->foreground = true;
		return 0;
	case KEY_DEBUG:
		o->debug = o->foreground = true;
		return 0;
	case KEY_ALLOW_OTHER:
		o->allow_other = true;
		return 1;
	case FUSE_OPT_KEY_OPT:
		if (!strncmp(arg, "x-", 2) || !strncmp(arg, "comment=", 8))
			return 0; /* fstab/systemd annotations */
		return 1;	  /* FUSE decides; it refuses what it does not know */
	}
	return 1;
}

/* The options every mount gets, before the user's so those can override. */
static int add_default_opts(struct fuse_args *args, const struct opts *o)
{
	char *opts = NULL, *fsname = NULL;
	int rc = -1;

	if (asprintf(&fsname, "fsname=%s", o->pool) < 0) {
		fsname = NULL;
		goto out;
	}
	if (fuse_opt_add_opt(&opts, "nosuid,nodev,subtype=thinfs") ||
	    fuse_opt_add_opt_escaped(&opts, fsname))
		goto out;
	/* An unprivileged user mounts through the setuid fusermount3, which
	 * opens /dev/fuse itself (often 0600) and does the mount(2) the kernel
	 * refuses the user.  libfuse goes that way only after its own open of
	 * /dev/fuse and mount(2) fail with EPERM ("failed to open /dev/fuse:
	 * Permission denied" ends it first), or at once with auto_unmount:
	 * fusermount3 then also unmounts when the daemon exits, however it
	 * exits, so a user's killed daemon leaves no dead mount behind. */
	if (geteuid() != 0 && fuse_opt_add_opt(&opts, "auto_unmount"))
		goto out;
	/* other users only under the kernel's permission checks: this daemon
	 * makes none of its own */
	if (o->allow_other && fuse_opt_add_opt(&opts, "default_permissions"))
		goto out;
	if (fuse_opt_insert_arg(args, 1, "-o") || fuse_opt_insert_arg(args, 2, opts))
		goto out;
	if (o->debug && fuse_opt_add_arg(args, "-d"))
		goto out;
	rc = 0;
out:
	free(opts);
	free(fsname);
	return rc;
}

/* An existing, empty directory, as an absolute path in *abs. */
static int check_mountpoint(const char *path, char **abs)
{
	struct dirent *de;
	struct stat sb;
	DIR *dir;

	if (stat(path, &sb) < 0) {
		fprintf(stderr, "thinfs: mountpoint %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "thinfs: mountpoint %s is not a directory\n", path);
		return -1;
	}
	dir = opendir(path);
	if (!dir) {
		fprintf(stderr, "thinfs: mountpoint %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((de = readdir(dir))) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			closedir(dir);
			fprintf(stderr, "thinfs: mountpoint %s is not empty\n", path);
			return -1;
		}
	}
	closedir(dir);
	*abs = realpath(path, NULL);
	if (!*abs) {
		fprintf(stderr, "thinfs: mountpoint %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- the commit timer ---- */

struct committer {
	struct pool *pool;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
};

static void *commit_loop(void *arg)
{
	struct committer *c = arg;
	struct timespec t;

	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		t.tv_sec += COMMIT_INTERVAL_SEC;
		while (!c->stop && pthread_cond_timedwait(&c->cond, &c->lock, &t) != ETIMEDOUT)
			;
		if (c->stop)
			break;
		pthread_mutex_unlock(&c->lock);
		/* a failed commit is logged by the pool, once (pool_fail) */
		pool_commit(c->pool);
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static int committer_start(struct committer *c, struct pool *pool)
{
	pthread_condattr_t ca;
	sigset_t block, old;
	int rc;

	c->pool = pool;
	c->stop = false;
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	/* the exit signals must reach a FUSE thread, which ends the loop */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = pthread_create(&c->thread, NULL, commit_loop, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -rc;
}

static void committer_stop(struct committer *c)
{
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
}

/* ---- daemonizing ---- */

/* Fork; the parent waits for the child's status byte and exits with it. */
static int daemon_fork(int *status_fd)
{
	int fds[2];
	pid_t pid;
	char st = 1;

	if (pipe(fds) < 0) {
		fprintf(stderr, "thinfs: pipe: %s\n", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "thinfs: fork: %s\n", strerror(errno));
		return -1;
	}
	if (pid > 0) {
		close(fds[1]);
		if (read(fds[0], &st, 1) != 1) {
			int ws = 0;
			waitpid(pid, &ws, 0); /* died before reporting */
			st = 1;
		}
		_exit(st);
	}
	close(fds[0]);
	setsid();
	*status_fd = fds[1];
	return 0;
}

/* Tell the waiting parent how it went; on success, let go of the terminal. */
static void daemon_ready(int *status_fd, bool ok)
{
	char st = ok ? 0 : 1;
	int fd;

	if (*status_fd < 0)
		return;
	if (ok) {
		if (chdir("/") < 0)
			say(FUSE_LOG_WARNING, "thinfs: chdir /: %s\n", strerror(errno));
		fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
		log_to_syslog = true;
	}
	if (write(*status_fd, &st, 1) != 1)
		say(FUSE_LOG_WARNING, "thinfs: cannot report to the parent: %s\n", strerror(errno));
	close(*status_fd);
	*status_fd = -1;
}

/* ---- main ---- */

static int serve(struct opts *o, struct fuse_args *args, int *status_fd)
{
	const struct fsops_config cfg = {.entry_timeout = 1.0, .dir_attr_timeout = 1.0};
	sigset_t stop;
	int signo = 0;
	char holder[PATH_MAX + 64], msg[POOL_MSG_MAX] = "";
	struct fuse_session *se = NULL;
	struct pool *pool = NULL;
	struct fsops *fs = NULL;
	struct committer com;
	struct daemon_admin *admin = NULL;
	bool mounted = false, committing = false;
	int rc, ret = 1;

	/* before any thread exists, so that every thread blocks them */
	rc = fuse_loop_block_signals(&stop);
	if (rc) {
		say(FUSE_LOG_ERR, "thinfs: cannot set up signals: %s\n", strerror(-rc));
		goto out;
	}
	snprintf(holder, sizeof(holder), "thinfs pid %d on %s", (int)getpid(), o->mountpoint);
	rc = pool_open(o->pool, 0, holder, &pool, msg, sizeof(msg));
	if (rc) {
		say(FUSE_LOG_ERR, "thinfs: %s\n", msg[0] ? msg : strerror(-rc));
		goto out;
	}
	fs = fsops_new(pool, &cfg);
	if (!fs) {
		say(FUSE_LOG_ERR, "thinfs: out of memory\n");
		goto out_close;
	}
	se = fuse_session_new(args, &fsops_ll_ops, sizeof(fsops_ll_ops), fs);
	if (!se)
		goto out_close; /* libfuse said why (an unknown option) */
	if (fuse_session_mount(se, o->mountpoint)) {
		say(FUSE_LOG_ERR, "thinfs: cannot mount %s on %s\n", o->pool, o->mountpoint);
		if (geteuid() != 0 && access("/dev/fuse", R_OK | W_OK))
			say(FUSE_LOG_ERR,
			    "thinfs: /dev/fuse is not open to uid %u: unprivileged FUSE mounts "
			    "need "
			    "it mode 0666 (udev's default) or a fusermount3 that opens it as "
			    "root\n",
			    (unsigned)geteuid());
		goto out_destroy;
	}
	mounted = true;
	rc = committer_start(&com, pool);
	if (rc) {
		say(FUSE_LOG_ERR, "thinfs: cannot start the commit thread: %s\n", strerror(-rc));
		goto out_unmount;
	}
	committing = true;
	/* thinctl's changes through the control socket, and deletes' space
	 * freed in the background */
	rc = daemon_admin_start(pool, o->pool, fs, se, &admin, msg, sizeof(msg));
	if (rc) {
		say(FUSE_LOG_ERR, "thinfs: %s\n", msg);
		goto out_unmount;
	}
	daemon_ready(status_fd, true);
	say(FUSE_LOG_INFO, "thinfs: serving %s on %s\n", o->pool, o->mountpoint);
	/* until the unmount or SIGTERM/SIGINT/SIGHUP (an ignored SIGINT stays
	 * ignored: a shell's background job does not stop on it) */
	/* a write waiting for space takes its worker: start more meanwhile */
	pool_set_space_wait_hook(pool, fuse_loop_waiting, NULL);
	rc = fuse_loop_run(se, (unsigned)o->max_threads, &stop, &signo, stop_waiting, pool);
	if (signo)
		say(FUSE_LOG_INFO, "thinfs: stopping on signal %d (%s)\n", signo, strsignal(signo));
	if (rc < 0)
		say(FUSE_LOG_ERR, "thinfs: session loop: %s\n", strerror(-rc));
	ret = rc < 0 ? 1 : 0;
out_unmount:
	daemon_admin_stop(admin); /* the socket goes before the pool's lock */
	if (committing)
		committer_stop(&com);
	if (mounted)
		fuse_session_unmount(se);
out_destroy:
	fuse_session_destroy(se);
out_close:
	fsops_free(fs); /* closes what is still open, before the pool */
	rc = pool_close(pool);
	if (rc) {
		say(FUSE_LOG_ERR, "thinfs: closing the pool: %s\n", strerror(-rc));
		ret = 1;
	} else if (ret == 0) {
		say(FUSE_LOG_INFO, "thinfs: %s closed cleanly\n", o->pool);
	}
out:
	return ret;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct opts o = {.max_threads = 16};
	char *mnt_abs = NULL, *pool_abs = NULL;
	int status_fd = -1, ret = 1;

	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) < 0 || o.bad) {
		fprintf(stderr, "%s", usage);
		goto out;
	}
	if (o.help) {
		printf("%s", usage);
		ret = 0;
		goto out;
	}
	if (o.version) {
		printf("thinfs %s (libfuse %s)\n", THINFS_VERSION, fuse_pkgversion());
		ret = 0;
		goto out;
	}
	if (o.max_threads < 1 || o.max_threads > 1024) {
		fprintf(stderr, "thinfs: max_threads must be 1..1024\n");
		goto out;
	}
	if (!o.pool || !o.mountpoint) {
		fprintf(stderr, "thinfs: need a pool and a mountpoint\n%s", usage);
		goto out;
	}
	if (check_mountpoint(o.mountpoint, &mnt_abs))
		goto out;
	pool_abs = realpath(o.pool, NULL);
	if (!pool_abs) {
		fprintf(stderr, "thinfs: pool %s: %s\n", o.pool, strerror(errno));
		goto out;
	}
	free(o.pool);
	free(o.mountpoint);
	o.pool = pool_abs;
	o.mountpoint = mnt_abs;
	if (add_default_opts(&args, &o)) {
		fprintf(stderr, "thinfs: out of memory\n");
		goto out;
	}
	fuse_set_log_func(log_func);
	pool_set_logger(pool_logger, NULL);
	if (!o.foreground) {
		openlog("thinfs", LOG_PID, LOG_DAEMON);
		if (daemon_fork(&status_fd))
			goto out;
	}
	ret = serve(&o, &args, &status_fd);
	daemon_ready(&status_fd, false); /* still here: it failed */
out:
	fuse_opt_free_args(&args);
	free(o.pool);
	free(o.mountpoint);
	return ret;
}
