/* SPDX-License-Identifier: MIT */
/*
 * fuse_loop.c - the daemon's request loop: a fixed set of worker threads
 * reading requests from /dev/fuse, and the main thread waiting for the
 * unmount or a stop signal.
 *
 * libfuse's own loop reads each request into a malloc'ed buffer, so a
 * WRITE's payload (after the 40-byte fuse_in_header and the 40-byte
 * fuse_write_in) starts 80 bytes into it and an O_DIRECT data file needs a
 * bounce copy: 13% of all CPU under 1 MiB writes.  Here each worker reads
 * into a buffer placed so that the payload lands on a page boundary and goes
 * to the data file as it is.  libfuse still decodes and dispatches every
 * request (fuse_session_process_buf).
 *
 * Signals: the stop signals are blocked in every thread and read from a
 * signalfd by the main thread, so no worker is ever interrupted mid-request.
 *
 * Growth: a worker that waits inside a request (a write queued for space,
 * when_full=queue) says so (fuse_loop_waiting); while fewer than
 * SPARE_WORKERS are left free, another worker starts, up to GROWTH_MAX more
 * than asked for, so reads, stats and the status are still answered while
 * writers wait.  Workers never end before the loop does.  One loop per
 * process; loop_lock guards the table's length and the waiting count.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "fuse_loop.h"

/* What precedes a WRITE's data in a request: fuse_in_header, fuse_write_in
 * (<linux/fuse.h>, protocol 7.9 and later). */
#define WRITE_PAYLOAD_OFFSET (40 + 40)
#define PAGE 4096u
/* At least libfuse's se->bufsize: 256 pages plus a 4 KiB header in 3.14 and
 * 3.15.  Later versions size it from fs.fuse.max_pages_limit, so there the
 * buffers are left to libfuse (correct, with the bounce copy). */
#define RECV_BUFSIZE (((size_t)256 + 1) * PAGE)
#define SPARE_WORKERS 4
#define GROWTH_MAX 128

struct worker {
	pthread_t thread;
	struct fuse_session *se;
	void *base; /* owned here; NULL when libfuse allocates */
	struct fuse_buf fbuf;
	int done_fd;
	int error; /* negative errno that ended this worker */
	bool started;
};

static struct {
	pthread_mutex_t lock;
	struct worker *w; /* cap entries, the first nr started */
	unsigned nr, cap, waiting;
	bool stopping;
} loop = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int start_worker(struct worker *w);

void fuse_loop_waiting(void *arg, int delta)
{
	(void)arg;
	pthread_mutex_lock(&loop.lock);
	loop.waiting = (unsigned)((int)loop.waiting + delta);
	if (delta > 0 && !loop.stopping && loop.nr < loop.cap &&
	    loop.nr - loop.waiting < SPARE_WORKERS) {
		struct worker *w = &loop.w[loop.nr];
		w->se = loop.w[0].se;
		w->done_fd = loop.w[0].done_fd;
		if (!start_worker(w)) /* (the new thread inherits the blocked signals) */
			loop.nr++;
	}
	pthread_mutex_unlock(&loop.lock);
}

static bool own_buffers(void)
{
	return fuse_version() < FUSE_MAKE_VERSION(3, 16);
}

int fuse_loop_block_signals(sigset_t *stop)
{
	static const int sigs[] = {SIGTERM, SIGHUP, SIGINT};
	struct sigaction sa;

	sigemptyset(stop);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		/* a shell's background job starts with SIGINT ignored: keep it so */
		if (sigaction(sigs[i], NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
			continue;
		sigaddset(stop, sigs[i]);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) < 0)
		return -errno;
	return -pthread_sigmask(SIG_BLOCK, stop, NULL);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t one = 1;
	int rc;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	while (!fuse_session_exited(w->se)) {
		/* cancellable only while waiting for a request, never within one */
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		rc = fuse_session_receive_buf(w->se, &w->fbuf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (rc == -EINTR || rc == -EAGAIN)
			continue;
		if (rc <= 0) { /* 0: unmounted (ENODEV) or the session ended */
			w->error = rc;
			break;
		}
		fuse_session_process_buf(w->se, &w->fbuf);
	}
	if (write(w->done_fd, &one, sizeof(one)) != sizeof(one))
		w->error = w->error ? w->error : -errno;
	return NULL;
}

static int start_worker(struct worker *w)
{
	if (own_buffers()) {
		if (posix_memalign(&w->base, PAGE, RECV_BUFSIZE + PAGE))
			return -ENOMEM;
		w->fbuf.mem = (char *)w->base + PAGE - WRITE_PAYLOAD_OFFSET;
		w->fbuf.size = RECV_BUFSIZE;
	}
	int rc = pthread_create(&w->thread, NULL, worker_main, w);
	if (rc)
		return -rc;
	w->started = true;
	return 0;
}

static void stop_worker(struct worker *w)
{
	if (w->started) {
		pthread_cancel(w->thread);
		pthread_join(w->thread, NULL);
	}
	if (!w->base)
		free(w->fbuf.mem); /* libfuse's */
	free(w->base);
}

int fuse_loop_run(struct fuse_session *se, unsigned nr_workers, const sigset_t *stop, int *signo,
		  void (*stopping)(void *arg), void *arg)
{
	struct worker *w = calloc(nr_workers + GROWTH_MAX, sizeof(*w));
	int sfd = -1, efd = -1, rc = 0;

	*signo = 0;
	if (!w)
		return -ENOMEM;
	sfd = signalfd(-1, stop, SFD_CLOEXEC);
	efd = eventfd(0, EFD_CLOEXEC);
	if (sfd < 0 || efd < 0) {
		rc = -errno;
		goto out;
	}
	pthread_mutex_lock(&loop.lock);
	loop.w = w;
	loop.cap = nr_workers + GROWTH_MAX;
	loop.stopping = false;
	for (unsigned i = 0; i < nr_workers && !rc; i++) {
		w[i].se = se;
		w[i].done_fd = efd;
		rc = start_worker(&w[i]);
		loop.nr += !rc;
	}
	pthread_mutex_unlock(&loop.lock);
	while (!rc) {
		struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = efd, .events = POLLIN}};
		struct signalfd_siginfo si;

		if (poll(p, 2, -1) < 0) {
			if (errno != EINTR)
				rc = -errno;
			continue;
		}
		if ((p[0].revents & POLLIN) && read(sfd, &si, sizeof(si)) == sizeof(si)) {
			*signo = (int)si.ssi_signo;
			break;
		}
		if (p[1].revents & POLLIN)
			break; /* a worker saw the unmount, or failed */
	}
	fuse_session_exit(se);
	if (stopping)
		stopping(arg); /* a request still waiting (for space) ends now */
out:
	pthread_mutex_lock(&loop.lock);
	loop.stopping = true; /* no more growth: the table is final */
	pthread_mutex_unlock(&loop.lock);
	for (unsigned i = 0; i < nr_workers + GROWTH_MAX; i++) {
		stop_worker(&w[i]);
		if (!rc && w[i].error < 0)
			rc = w[i].error;
	}
	if (sfd >= 0)
		close(sfd);
	if (efd >= 0)
		close(efd);
	pthread_mutex_lock(&loop.lock);
	loop.w = NULL;
	loop.nr = loop.cap = loop.waiting = 0;
	pthread_mutex_unlock(&loop.lock);
	free(w);
	return rc;
}
