/* SPDX-License-Identifier: MIT */
/*
 * origin.h - a volume's external origin: a read-only file or block device
 * whose bytes an unmapped block of the volume reads (zeros past its end).
 * It is never written: opened O_RDONLY, and only pread from.
 *
 * Identity: (st_dev, st_ino, size, mtime_ns), recorded in the origins row
 * when the volume is made.  Each first open of the volume (open_count 0 ->
 * 1) opens the origin again and compares; any difference, or an origin that
 * is gone, refuses the open with one line naming the origin and what
 * changed.  The descriptor lives from that first open to the last close.
 *
 * Locking: the owner (struct device) is changed under the pool lock with the
 * io lock held for writing (open and close); origin_read needs only the io
 * lock for reading (the descriptor cannot close under it).
 */
#ifndef THINFS_ORIGIN_H
#define THINFS_ORIGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meta.h"

struct origin {
	struct meta_origin_row row; /* what was recorded */
	int fd;			    /* -1 unless the device is open */
};

/* Open path read-only and describe it (canonical absolute path, size,
 * identity) into *row (device left 0).  0, or a negative errno with a reason
 * naming the path. */
int origin_probe(const char *path, struct meta_origin_row *row, char *msg, size_t msglen);
/* A new origin for row (closed); NULL when out of memory. */
struct origin *origin_new(const struct meta_origin_row *row);
void origin_free(struct origin *o);
/* Open o and compare it with what was recorded: 0, or -ESTALE (changed or
 * gone) with "origin PATH of volume 'NAME' ...: refusing to serve it". */
int origin_open(struct origin *o, const char *volume, char *msg, size_t msglen);
void origin_close(struct origin *o);
/* Verify without keeping it open (check, info): as origin_open. */
int origin_verify(const struct origin *o, const char *volume, char *msg, size_t msglen);
/* Read len bytes at offset of an open origin, zeros past its recorded end. */
int origin_read(const struct origin *o, void *buf, size_t len, uint64_t offset);
/* Does o (may be NULL) hold bytes at offset? */
static inline bool origin_covers(const struct origin *o, uint64_t offset)
{
	return o && offset < o->row.size;
}

#endif
