/* SPDX-License-Identifier: MIT */
/*
 * control_server.c - the daemon's end of the control socket: POOL/control,
 * one thread, one request at a time, each run by admin_exec() on the pool the
 * daemon serves (the same code path as thinctl's on a free pool).
 *
 * Who may: root, or the owner of the pool directory, by the socket's peer
 * credentials; anyone else gets -EPERM with the reason.  A created volume
 * belongs to the caller's uid and gid (from the socket, never the request).
 * A client that stalls is dropped after CLIENT_TIMEOUT_MS; the pool is never
 * locked while waiting for one.
 *
 * Lifetime: the socket exists only while the server runs.  Stop removes it
 * before the pool is closed, so a thinctl arriving after the unmount finds
 * no daemon and waits for the pool's lock instead (see thinctl).
 *
 * Locks: none of its own; the pool's calls take theirs.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/control_wire.h"

#define CLIENT_TIMEOUT_MS 5000

struct control_server {
	struct pool *pool;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	uid_t owner;
	int lfd, stop_fd;
	pthread_t thread;
	control_changed_fn changed;
	void *arg;
};

static void set_timeouts(int fd, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* One connection: read the request, check who asks, run it, answer. */
static void serve_one(struct control_server *s, int fd)
{
	struct admin_req req;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char msg[POOL_MSG_MAX] = "", *out = NULL;
	size_t out_len = 0;
	int rc;

	set_timeouts(fd, CLIENT_TIMEOUT_MS);
	if (wire_recv_req(fd, &req))
		return; /* a client that went away or spoke nonsense */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		wire_send_reply(fd, -EPERM, "cannot tell who is asking", NULL, 0);
		return;
	}
	if (cred.uid != 0 && cred.uid != s->owner) {
		snprintf(msg, sizeof(msg),
			 "permission denied: only root or the pool's owner (uid %u) may change it",
			 (unsigned)s->owner);
		wire_send_reply(fd, -EPERM, msg, NULL, 0);
		return;
	}
	req.uid = cred.uid;
	req.gid = cred.gid;
	FILE *mf = open_memstream(&out, &out_len);
	rc = admin_exec(s->pool, &req, mf, msg, sizeof(msg));
	if (mf)
		fclose(mf);
	if (rc >= 0 && s->changed)
		s->changed(s->arg, &req);
	wire_send_reply(fd, rc, msg, out, out ? out_len : 0);
	free(out);
}

static void *server_main(void *arg)
{
	struct control_server *s = arg;
	struct pollfd p[2] = {{.fd = s->lfd, .events = POLLIN},
			      {.fd = s->stop_fd, .events = POLLIN}};

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve_one(s, fd);
		close(fd);
	}
	return NULL;
}

static int listen_on(struct control_server *s, char *msg, size_t msglen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat sb;

	/* we hold the pool's lock: a socket left here belongs to a dead daemon */
	if (lstat(s->path, &sb) == 0 && S_ISSOCK(sb.st_mode))
		unlink(s->path);
	memcpy(sa.sun_path, s->path, sizeof(sa.sun_path));
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(s->path, 0666) < 0 || listen(s->lfd, 16) < 0) {
		int rc = -errno;
		snprintf(msg, msglen, "cannot listen on %s: %s", s->path, strerror(errno));
		return rc;
	}
	return 0;
}

int control_server_start(struct pool *pool, const char *dir, control_changed_fn changed, void *arg,
			 struct control_server **out, char *msg, size_t msglen)
{
	struct control_server *s = calloc(1, sizeof(*s));
	struct stat sb;
	int rc;

	if (!s)
		return -ENOMEM;
	s->pool = pool;
	s->changed = changed;
	s->arg = arg;
	s->lfd = s->stop_fd = -1;
	if (stat(dir, &sb) < 0) {
		rc = -errno;
		snprintf(msg, msglen, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	s->owner = sb.st_uid;
	if ((size_t)snprintf(s->path, sizeof(s->path), "%s/%s", dir, CONTROL_SOCKET) >=
	    sizeof(s->path)) {
		rc = -ENAMETOOLONG;
		snprintf(msg, msglen, "the pool path is too long for a control socket");
		goto fail;
	}
	rc = listen_on(s, msg, msglen);
	if (rc)
		goto fail;
	s->stop_fd = eventfd(0, EFD_CLOEXEC);
	rc = s->stop_fd < 0 ? -errno : -pthread_create(&s->thread, NULL, server_main, s);
	if (rc) {
		snprintf(msg, msglen, "cannot start the control thread: %s", strerror(-rc));
		unlink(s->path);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	free(s);
	return rc;
}

void control_server_stop(struct control_server *s)
{
	uint64_t one = 1;

	if (!s)
		return;
	unlink(s->path); /* first: no new client finds us */
	if (write(s->stop_fd, &one, sizeof(one)) < 0)
		perror("control_server_stop");
	pthread_join(s->thread, NULL);
	close(s->lfd);
	close(s->stop_fd);
	free(s);
}
