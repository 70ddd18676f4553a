/* SPDX-License-Identifier: MIT */
/*
 * daemon_events.c - the daemon's space worker (daemon_events.h): a thread
 * that runs pool_space_worker (which grows the data file when autoextend
 * asks) and, for every space event it hands out, the pool's event_command
 * (like dmeventd's thin plugin and LVM's thin_command):
 *
 *   PATH EVENT   with THINFS_EVENT, THINFS_POOL, THINFS_DETAIL, THINFS_TIME,
 *                THINFS_USED_BLOCKS, THINFS_DATA_BLOCKS, THINFS_BLOCK_SIZE
 *                and THINFS_USED_PERCENT in the environment, stdin from
 *                /dev/null, in a session of its own.
 *
 * Commands run without being waited for (a slow one never holds up
 * autoextend or the next event); their exits are reaped on the worker's
 * next round, and a failure is logged.  The events themselves are logged by
 * the engine when they happen.
 *
 * Locks: none of its own; one thread owns the child table.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon_events.h"

#define EVENT_POLL_MS 500
#define MAX_CHILDREN 64

struct daemon_events {
	struct pool *pool;
	char *dir;
	pthread_t thread;
	pid_t children[MAX_CHILDREN];
	unsigned nr_children;
};

static void setenv_u64(const char *name, uint64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	setenv(name, buf, 1);
}

/* In the child: the environment, then the command (never returns). */
static void exec_command(const char *cmd, const char *dir, const struct pool_event *ev)
{
	sigset_t none;
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL); /* the daemon blocks its stop signals */
	signal(SIGPIPE, SIG_DFL);
	if (fd >= 0)
		dup2(fd, STDIN_FILENO);
	setsid();
	setenv("THINFS_EVENT", pool_event_name(ev->kind), 1);
	setenv("THINFS_POOL", dir, 1);
	setenv("THINFS_DETAIL", ev->detail, 1);
	setenv_u64("THINFS_TIME", (uint64_t)ev->time);
	setenv_u64("THINFS_USED_BLOCKS", ev->used_blocks);
	setenv_u64("THINFS_DATA_BLOCKS", ev->nr_data_blocks);
	setenv_u64("THINFS_BLOCK_SIZE", ev->block_size);
	setenv_u64("THINFS_USED_PERCENT",
		   ev->nr_data_blocks ? ev->used_blocks * 100 / ev->nr_data_blocks : 0);
	execl(cmd, cmd, pool_event_name(ev->kind), (char *)NULL);
	_exit(127);
}

static void reap(struct daemon_events *de)
{
	for (unsigned i = 0; i < de->nr_children;) {
		int status;
		pid_t r = waitpid(de->children[i], &status, WNOHANG);
		if (r == 0) {
			i++;
			continue;
		}
		if (r > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
			fprintf(stderr, "thinfs: %s: the event command (pid %d) %s %d\n", de->dir,
				(int)r, WIFEXITED(status) ? "exited with" : "died of signal",
				WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		de->children[i] = de->children[--de->nr_children];
	}
}

static void run_command(struct daemon_events *de, const struct pool_event *ev)
{
	char cmd[POOL_PROP_VALUE_MAX];
	pid_t pid;

	pool_event_command(de->pool, cmd, sizeof(cmd));
	if (!cmd[0])
		return;
	reap(de);
	if (de->nr_children == MAX_CHILDREN) {
		fprintf(stderr,
			"thinfs: %s: %u event commands still running: not running %s for %s\n",
			de->dir, de->nr_children, cmd, pool_event_name(ev->kind));
		return;
	}
	pid = fork();
	if (pid == 0)
		exec_command(cmd, de->dir, ev);
	if (pid < 0) {
		fprintf(stderr, "thinfs: %s: cannot run the event command %s: %s\n", de->dir, cmd,
			strerror(errno));
		return;
	}
	de->children[de->nr_children++] = pid;
}

static void *events_loop(void *arg)
{
	struct daemon_events *de = arg;
	struct pool_event ev;
	int rc;

	while ((rc = pool_space_worker(de->pool, &ev, EVENT_POLL_MS)) != -ESHUTDOWN) {
		if (rc == 1)
			run_command(de, &ev);
		reap(de);
	}
	return NULL;
}

int daemon_events_start(struct pool *pool, const char *pool_dir, struct daemon_events **out)
{
	struct daemon_events *de = calloc(1, sizeof(*de));
	int rc;

	if (!de || !(de->dir = strdup(pool_dir))) {
		free(de);
		return -ENOMEM;
	}
	de->pool = pool;
	rc = -pthread_create(&de->thread, NULL, events_loop, de);
	if (rc) {
		free(de->dir);
		free(de);
		return rc;
	}
	*out = de;
	return 0;
}

void daemon_events_stop(struct daemon_events *de)
{
	if (!de)
		return;
	pool_space_worker_stop(de->pool);
	pthread_join(de->thread, NULL);
	reap(de); /* commands still running are left to finish on their own */
	free(de->dir);
	free(de);
}
