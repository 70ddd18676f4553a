/* SPDX-License-Identifier: MIT */
/*
 * util.c - message buffers, name and size validation, clocks, UUIDs, and
 * the library's log.  Stateless helpers, except the logger (fn and arg),
 * which log_lock guards; thread-safe.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "thinfs/pool.h"
#include "util.h"

int64_t util_now(void)
{
	return (int64_t)time(NULL);
}

uint64_t util_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void util_uuid(char out[37])
{
	unsigned char b[16];

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		uint64_t t = util_mono_ns() ^ (uint64_t)getpid();
		for (int i = 0; i < 16; i++)
			b[i] = (unsigned char)(t >> ((i % 8) * 8)) ^ (unsigned char)(i * 37);
	}
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

int util_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int pool_name_valid(const char *name, char *msg, size_t msglen)
{
	size_t len;

	if (!name || !*name)
		return set_msg(msg, msglen, -EINVAL, "empty name");
	len = strlen(name);
	if (len > POOL_NAME_MAX)
		return set_msg(msg, msglen, -EINVAL, "name longer than %d bytes", POOL_NAME_MAX);
	if (strchr(name, '/'))
		return set_msg(msg, msglen, -EINVAL, "name '%s' contains '/'", name);
	if (name[0] == '.')
		return set_msg(msg, msglen, -EINVAL, "name '%s' starts with '.'", name);
	return 0;
}

int pool_parse_size(const char *s, uint64_t *bytes)
{
	uint64_t v = 0, mult = 1;
	const char *p = s;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	switch (*p) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mult = 1ull << 10;
		p++;
		break;
	case 'm':
	case 'M':
		mult = 1ull << 20;
		p++;
		break;
	case 'g':
	case 'G':
		mult = 1ull << 30;
		p++;
		break;
	case 't':
	case 'T':
		mult = 1ull << 40;
		p++;
		break;
	default:
		return -EINVAL;
	}
	/* accept an optional "iB"/"B" after the suffix, as in 64KiB or 64KB */
	if (mult > 1 && (!strcmp(p, "iB") || !strcmp(p, "B")))
		p += strlen(p);
	if (*p)
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*bytes = v * mult;
	return 0;
}

char *util_path_join(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

const char *pool_human_size(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "BKMGTPE";
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 6) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 "B", bytes);
	else
		snprintf(buf, len, "%.1f%c", v, units[u]);
	return buf;
}

const char *pool_size_text(uint64_t bytes, uint64_t block_size, char *buf, size_t len)
{
	uint64_t blocks = bytes / block_size + (bytes % block_size != 0);
	char h[32];

	snprintf(buf, len, "%s (%" PRIu64 " B, %" PRIu64 " block%s)",
		 pool_human_size(bytes, h, sizeof(h)), bytes, blocks, blocks == 1 ? "" : "s");
	return buf;
}

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pool_log_fn log_fn; /* [log_lock] */
static void *log_arg;	   /* [log_lock] */

void pool_set_logger(pool_log_fn fn, void *arg)
{
	pthread_mutex_lock(&log_lock);
	log_fn = fn;
	log_arg = arg;
	pthread_mutex_unlock(&log_lock);
}

void util_log(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	/* clang 14's valist checker misreads this (a false positive) */
	vsnprintf(line, sizeof(line), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	if (log_fn)
		log_fn(log_arg, level, line);
	pthread_mutex_unlock(&log_lock);
}
