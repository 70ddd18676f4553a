/* SPDX-License-Identifier: MIT */
/*
 * control_wire.h - the control socket's messages, shared by the server and
 * the client (private to src/control).  Little-endian, one request and one
 * reply per connection:
 *   request  "THCTLRQ1" u32 op u32 uid u32 gid u64 size u64 old u64 new
 *            u16 len + a, u16 len + b
 *   reply    "THCTLRP1" i32 status u16 len + msg u32 len + out
 * The server takes the caller's uid and gid from the socket (SO_PEERCRED),
 * never from the request.
 */
#ifndef THINFS_CONTROL_WIRE_H
#define THINFS_CONTROL_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "thinfs/control.h"

#define WIRE_REQ_MAGIC "THCTLRQ1"
#define WIRE_REP_MAGIC "THCTLRP1"
#define WIRE_OUT_MAX (16u << 20) /* a report larger than this is cut */

/* Whole transfers: 0, -ETIMEDOUT (the socket's timeout), -EPIPE (the peer
 * went away) or another -errno. */
int wire_write(int fd, const void *buf, size_t len);
int wire_read(int fd, void *buf, size_t len);

int wire_send_req(int fd, const struct admin_req *req);
int wire_recv_req(int fd, struct admin_req *req);
int wire_send_reply(int fd, int status, const char *msg, const char *out, size_t out_len);
int wire_recv_reply(int fd, struct admin_reply *reply);

#endif
