/* SPDX-License-Identifier: MIT */
/*
 * control_client.c - thinctl's end of the control socket: one request to
 * the daemon serving a pool, and its reply, within a timeout, so a daemon
 * that is stopped (SIGSTOP) or hung gives a clear error, never a hang.
 * No state, no locks.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/control_wire.h"

int control_call(const char *dir, const struct admin_req *req, int timeout_ms,
		 struct admin_reply *reply, char *msg, size_t msglen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = timeout_ms / 1000,
			     .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
	int fd, rc;

	memset(reply, 0, sizeof(*reply));
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, CONTROL_SOCKET) >=
	    sizeof(sa.sun_path))
		return -ENOENT; /* no daemon could listen there either */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		if (rc == -EACCES || rc == -EPERM)
			snprintf(msg, msglen,
				 "cannot reach the daemon serving %s: permission denied (only root "
				 "or the pool's owner may change it)",
				 dir);
		close(fd);
		return rc;
	}
	rc = wire_send_req(fd, req);
	if (!rc)
		rc = wire_recv_reply(fd, reply);
	close(fd);
	if (rc == -ETIMEDOUT)
		snprintf(msg, msglen,
			 "the daemon serving %s did not answer within %d s (stopped or hung?); "
			 "the change may still happen when it resumes",
			 dir, (timeout_ms + 999) / 1000);
	else if (rc == -EPIPE)
		snprintf(msg, msglen, "the daemon serving %s went away before answering", dir);
	else if (rc)
		snprintf(msg, msglen, "talking to the daemon serving %s: %s", dir, strerror(-rc));
	return rc;
}
