/* SPDX-License-Identifier: MIT */
/*
 * util.h - small helpers shared by every layer: message buffers, names, sizes,
 * clocks.  Nothing here knows about pools.
 */
#ifndef THINFS_UTIL_H
#define THINFS_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Format a one-line reason into msg (if non-NULL) and return err (a negative
 * errno), so callers can write `return set_msg(msg, len, -EINVAL, "...")`.
 * Inline, so static analysis sees that it returns err. */
static inline int set_msg(char *msg, size_t msglen, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline int set_msg(char *msg, size_t msglen, int err, const char *fmt, ...)
{
	va_list ap;

	if (msg && msglen) {
		va_start(ap, fmt);
		vsnprintf(msg, msglen, fmt, ap);
		va_end(ap);
	}
	return err;
}

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

/* A line for the log set by pool_set_logger (dropped when none is set). */
void util_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* dir + "/" + name, malloc()ed; NULL when out of memory. */
char *util_path_join(const char *dir, const char *name);

#endif
