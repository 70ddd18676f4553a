/* SPDX-License-Identifier: MIT */
/*
 * util.h - small helpers shared by every layer: message buffers, names, sizes,
 * clocks.  Nothing here knows about pools.
 */
#ifndef THINFS_UTIL_H
#define THINFS_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Format a one-line reason into msg (if non-NULL) and return err (a negative
 * errno), so callers can write `return set_msg(msg, len, -EINVAL, "...")`. */
int set_msg(char *msg, size_t msglen, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Wall clock seconds. */
int64_t util_now(void);
/* Monotonic nanoseconds. */
uint64_t util_mono_ns(void);
/* A random RFC 4122 v4 UUID string (37 bytes with NUL). */
void util_uuid(char out[37]);
/* fsync a directory by path. */
int util_fsync_dir(const char *dir);

static inline int is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}
static inline uint64_t div_round_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

#endif
