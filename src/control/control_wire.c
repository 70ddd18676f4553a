/* SPDX-License-Identifier: MIT */
/*
 * control_wire.c - encoding and moving the control socket's messages (see
 * control_wire.h).  No state, no locks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/control_wire.h"

int wire_write(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int wire_read(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static size_t put_le(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * i));
	return (size_t)bytes;
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
	uint64_t v = 0;

	for (int i = bytes - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static size_t put_str(unsigned char *p, const char *s, size_t max)
{
	size_t n = strnlen(s, max - 1);

	put_le(p, n, 2);
	memcpy(p + 2, s, n);
	return 2 + n;
}

#define REQ_FIXED (8 + 4 * 3 + 8 * 3)

int wire_send_req(int fd, const struct admin_req *req)
{
	unsigned char buf[REQ_FIXED + 2 * (2 + sizeof(req->a)) + 2 + sizeof(req->text)];
	size_t o = 8;

	memcpy(buf, WIRE_REQ_MAGIC, 8); // NOLINT(bugprone-not-null-terminated-result): 8 bytes
	o += put_le(buf + o, req->op, 4);
	o += put_le(buf + o, req->uid, 4);
	o += put_le(buf + o, req->gid, 4);
	o += put_le(buf + o, req->size, 8);
	o += put_le(buf + o, req->old_id, 8);
	o += put_le(buf + o, req->new_id, 8);
	o += put_str(buf + o, req->a, sizeof(req->a));
	o += put_str(buf + o, req->b, sizeof(req->b));
	o += put_str(buf + o, req->text, sizeof(req->text));
	return wire_write(fd, buf, o);
}

static int get_str(int fd, char *out, size_t max)
{
	unsigned char l[2];
	size_t n;
	int rc = wire_read(fd, l, 2);

	if (rc)
		return rc;
	n = (size_t)get_le(l, 2);
	if (n >= max)
		return -EBADMSG;
	rc = wire_read(fd, out, n);
	out[n] = 0;
	return rc;
}

int wire_recv_req(int fd, struct admin_req *req)
{
	unsigned char buf[REQ_FIXED];
	int rc = wire_read(fd, buf, sizeof(buf));

	memset(req, 0, sizeof(*req));
	if (rc)
		return rc;
	if (memcmp(buf, WIRE_REQ_MAGIC, 8))
		return -EBADMSG;
	req->op = (uint32_t)get_le(buf + 8, 4);
	req->uid = (uint32_t)get_le(buf + 12, 4);
	req->gid = (uint32_t)get_le(buf + 16, 4);
	req->size = get_le(buf + 20, 8);
	req->old_id = get_le(buf + 28, 8);
	req->new_id = get_le(buf + 36, 8);
	rc = get_str(fd, req->a, sizeof(req->a));
	if (!rc)
		rc = get_str(fd, req->b, sizeof(req->b));
	if (!rc)
		rc = get_str(fd, req->text, sizeof(req->text));
	return rc;
}

int wire_send_reply(int fd, int status, const char *msg, const char *out, size_t out_len)
{
	unsigned char hdr[8 + 4 + 2 + POOL_MSG_MAX + 4];
	size_t o = 8;
	int rc;

	if (out_len > WIRE_OUT_MAX)
		out_len = WIRE_OUT_MAX;
	memcpy(hdr, WIRE_REP_MAGIC, 8); // NOLINT(bugprone-not-null-terminated-result): 8 bytes
	o += put_le(hdr + o, (uint32_t)status, 4);
	o += put_str(hdr + o, msg ? msg : "", POOL_MSG_MAX);
	o += put_le(hdr + o, out_len, 4);
	rc = wire_write(fd, hdr, o);
	if (!rc && out_len)
		rc = wire_write(fd, out, out_len);
	return rc;
}

int wire_recv_reply(int fd, struct admin_reply *reply)
{
	unsigned char hdr[12], l[4];
	size_t n;
	int rc = wire_read(fd, hdr, sizeof(hdr));

	memset(reply, 0, sizeof(*reply));
	if (rc)
		return rc;
	if (memcmp(hdr, WIRE_REP_MAGIC, 8))
		return -EBADMSG;
	reply->status = (int32_t)(uint32_t)get_le(hdr + 8, 4);
	rc = get_str(fd, reply->msg, sizeof(reply->msg));
	if (!rc)
		rc = wire_read(fd, l, 4);
	if (rc)
		return rc;
	n = (size_t)get_le(l, 4);
	if (n > WIRE_OUT_MAX)
		return -EBADMSG;
	reply->out = malloc(n + 1);
	if (!reply->out)
		return -ENOMEM;
	rc = wire_read(fd, reply->out, n);
	reply->out[n] = 0;
	return rc;
}
