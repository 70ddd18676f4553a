/* SPDX-License-Identifier: MIT */
/*
 * pool_stage.h - a new device built aside and made to exist in one commit:
 * what an all-or-nothing receive needs (src/interop/send_receive.c), and
 * nothing of struct pool.
 *
 * Between pool_stage_begin() and pool_stage_commit() the pool's metadata is
 * not touched: the data goes into data blocks that are only reserved (busy
 * in memory, free in meta.db), the mappings stay in memory.  The commit makes
 * the device (a snapshot of the base, or a new volume) with all its mappings
 * in ONE transaction, after the data flush every commit begins with.
 * pool_stage_abort() punches what was written and hands the blocks back, so
 * free blocks read zeros again and meta.db is byte for byte what it was.  A
 * crash in between leaves the pool as it was too: the blocks are free in the
 * metadata and the next (unclean) open scrubs them.
 *
 * One thread uses a stage at a time; it takes the pool's locks itself.
 */
#ifndef THINFS_POOL_STAGE_H
#define THINFS_POOL_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "thinfs/pool.h"

struct pool_stage;

/*
 * Begin staging device `name` (top level, must not exist) of `size` bytes:
 * a copy of device `base` (its view as committed now; the base must not be
 * open for writing) or, base NULL, an empty volume.  0 or -errno with msg.
 */
int pool_stage_begin(struct pool *pool, const char *name, const char *base, uint64_t size,
		     struct pool_stage **out, char *msg, size_t msglen);

/* Write nr whole blocks from vblock on (data: nr * block_size bytes, best
 * aligned to 4 KiB; the caller zero-fills past the device's end) into fresh
 * data blocks.  Vblocks must come in increasing order, each at most once,
 * across write, zero and unmap; below the staged size. */
int pool_stage_write(struct pool_stage *st, uint64_t vblock, uint64_t nr, const void *data);
/* Map nr blocks from vblock on that read zeros. */
int pool_stage_zero(struct pool_stage *st, uint64_t vblock, uint64_t nr);
/* Unmap nr blocks from vblock on (the base's mappings hidden). */
int pool_stage_unmap(struct pool_stage *st, uint64_t vblock, uint64_t nr);
/* The staged device's mapped vblocks, in increasing order. */
int pool_stage_foreach_mapped(struct pool_stage *st, void (*cb)(void *arg, uint64_t vblock),
			      void *arg);

/* Make the device, with copy_of (meta.h) and generation 0, in one durable
 * transaction; refused (nothing changed) if the name was taken or the base
 * changed meanwhile.  Frees st either way: on failure, as abort does. */
int pool_stage_commit(struct pool_stage *st, const char *copy_of, char *msg, size_t msglen);
/* Forget everything staged: punch the written blocks, release them. */
void pool_stage_abort(struct pool_stage *st);

#endif
