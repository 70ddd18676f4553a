/* SPDX-License-Identifier: MIT */
/*
 * interop.h - the pool's exchange formats: thin_dump XML (dump and restore),
 * thin_delta (which blocks two devices map differently), and send/receive (a
 * self-describing binary stream of one device, full or incremental).
 *
 * Every function returns 0 or a negative errno and fills msg (may be NULL)
 * with a one-line reason on failure.  The read-only ones (dump, delta, send)
 * work on a pool opened read-only (one consistent view) and on a pool opened
 * read-write (they commit first and describe the committed state).  Devices
 * are named as everywhere: "NAME" or "SET/NAME".
 */
#ifndef THINFS_INTEROP_H
#define THINFS_INTEROP_H

#include <stddef.h>
#include <stdio.h>

#include "thinfs/pool.h"

/*
 * Write the pool's metadata as thin_dump XML (version 2): a <superblock>
 * holding one <device> per device, sorted by id, with <range_mapping> and
 * <single_mapping> elements (data_block_size in 512-byte sectors, the rest in
 * blocks).  What dm-thin has no field for (names, sets, sizes in bytes, the
 * read-only flag, owners, the layer tree) goes in <!-- thinfs ... --> comments,
 * which thin_restore ignores and pool_restore reads back.
 */
int pool_dump(struct pool *pool, FILE *out, char *msg, size_t msglen);

/*
 * Make a NEW pool in `dir` from thin_dump XML (also <def>/<ref> shared runs).
 * data_path NULL: a new sparse POOL/data of nr_data_blocks blocks (mapped
 * blocks read zeros); else an existing data image (a dm-thin data device
 * copied to a file, or the device itself) whose mapped blocks keep their
 * content and whose unmapped blocks are punched.  On any error nothing that
 * this call created is left behind.  The pool is closed on return.
 */
int pool_restore(const char *dir, FILE *in, const char *data_path, char *msg, size_t msglen);

enum pool_delta_format {
	POOL_DELTA_XML = 0,    /* thin_delta's XML: <diff> of same/different/left_only/right_only */
	POOL_DELTA_RANGES = 1, /* "OFFSET LENGTH" in bytes, one line per differing range */
	POOL_DELTA_RANGES_JSON = 2, /* the same ranges as one JSON document */
};

/* The blocks where devices a and b differ, from the metadata alone (two
 * blocks differ when they are different data blocks, whatever they hold). */
int pool_delta(struct pool *pool, const char *a, const char *b, int format, FILE *out, char *msg,
	       size_t msglen);

/* How far a send or receive got: fn is called after every chunk (about
 * 1 MiB) and once at the end, with the bytes of blocks done and the bytes
 * there are to do (the virtual bytes of the blocks planned). */
struct pool_progress {
	void (*fn)(void *arg, uint64_t done_bytes, uint64_t total_bytes);
	void *arg;
};

/*
 * Send device `snap` as a stream: in full (from NULL), or as the blocks that
 * differ from device `from` of the same pool (incremental; any device of the
 * pool will do, related or not: the delta is exact).  The stream names both
 * by identity (pool uuid, device id, creation times, generation: see
 * send_receive.c for the format).  A device being written (odd generation)
 * is refused, and so is a send during which the snapshot was written.
 */
int pool_send(struct pool *pool, const char *snap, const char *from, FILE *out, char *msg,
	      size_t msglen);
int pool_send_progress(struct pool *pool, const char *snap, const char *from, FILE *out,
		       const struct pool_progress *pg, char *msg, size_t msglen);

/*
 * Receive a stream as new device `name`: a new volume (full stream) or a
 * writable snapshot of the local device whose identity is the stream's base
 * (incremental), refused unless that device is unchanged since it was
 * received (or made).  All or nothing: the device is built aside and made to
 * exist in one transaction once every record, the end record and the
 * result's mapping verified; a refused or failed receive leaves meta.db as
 * it was, byte for byte.  Durable on return.
 */
int pool_receive(struct pool *pool, const char *name, FILE *in, char *msg, size_t msglen);
int pool_receive_progress(struct pool *pool, const char *name, FILE *in,
			  const struct pool_progress *pg, char *msg, size_t msglen);

#endif
