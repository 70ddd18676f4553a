/* SPDX-License-Identifier: MIT */
/*
 * dataio.h - data file I/O: the only layer that touches the data file.
 *
 * Reads and writes go through io_uring (one ring per thread, made on first
 * use).  Offsets are bytes.  Every call returns 0 or a negative errno; short
 * transfers are retried until complete.
 *
 * Test facility: with track_unflushed on, the layer keeps the pre-image of
 * every range written since the last flush, and dio_test_lose_unflushed()
 * puts them back: a power cut of a disk with a volatile write cache.
 */
#ifndef THINFS_DATAIO_H
#define THINFS_DATAIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dio;

/* Create a new sparse data file of `size` bytes (O_EXCL|O_NOFOLLOW). */
int dio_create(const char *path, uint64_t size, char *msg, size_t msglen);
int dio_open(const char *path, bool rdonly, struct dio **out, char *msg, size_t msglen);
void dio_close(struct dio *d);

int dio_read(struct dio *d, void *buf, size_t len, uint64_t offset);
int dio_write(struct dio *d, const void *buf, size_t len, uint64_t offset);
/*
 * Several reads (or writes) at once: all submitted together and waited for
 * together, so a request whose blocks lie apart in the data file costs about
 * one I/O's latency, not one per piece.  Segments must not overlap.  Returns
 * 0 or the first error (other segments may have been transferred).
 */
struct dio_seg {
	void *buf;
	size_t len;
	uint64_t offset;
};
#define DIO_BATCH_MAX 64
int dio_read_batch(struct dio *d, const struct dio_seg *segs, size_t n);
int dio_write_batch(struct dio *d, const struct dio_seg *segs, size_t n);
/* Copy len bytes from src to dst (copy-on-write of a block). */
int dio_copy(struct dio *d, uint64_t src, uint64_t dst, size_t len);
/* Make a range read as zeros and release its space: punch a hole, or write
 * zeros where punching is not supported. */
int dio_punch(struct dio *d, uint64_t offset, uint64_t len);
/* fdatasync. */
int dio_flush(struct dio *d);
/* Current size in bytes (file size or block device size). */
int dio_size(struct dio *d, uint64_t *size);
/* Grow a regular file (sparse); a block device must already be big enough. */
int dio_grow(struct dio *d, uint64_t size);
bool dio_is_blockdev(const struct dio *d);
/* Bytes the host file system holding a data file has free for it
 * (-EOPNOTSUPP for a block device). */
int dio_host_free(struct dio *d, uint64_t *bytes);
/* Data moves with O_DIRECT (else buffered: the file system refused it). */
bool dio_is_direct(const struct dio *d);
/* A buffer aligned for direct I/O (free with free()); NULL on ENOMEM. */
void *dio_buffer(size_t len);
/* The next data extent at or after offset (SEEK_DATA/SEEK_HOLE on the file):
 * -ENXIO when there is none. */
int dio_next_data(struct dio *d, uint64_t offset, uint64_t *start, uint64_t *end);
/* Transfers to and from the data file since it was opened (one that had to
 * be finished after a short count is still one): what an operation costs in
 * I/O, e.g. one read and one write of the block for a copy-on-write. */
struct dio_stats {
	uint64_t reads, writes;
	uint64_t read_bytes, write_bytes;
};
void dio_stats(const struct dio *d, struct dio_stats *st);
/* (st_dev, st_ino) of the data file. */
void dio_identity(const struct dio *d, uint64_t *dev, uint64_t *ino);

void dio_test_track_unflushed(struct dio *d, bool on);
/* Make the nth data write from now fail with err (0: never). */
void dio_test_fail_write(struct dio *d, int nth, int err);
/* Undo writes (and punches) not covered by a flush; returns how many ranges. */
int dio_test_lose_unflushed(struct dio *d);

/*
 * Test facility: an observer sees every change to the data file once it has
 * completed, in order: DIO_EV_WRITE (len bytes of buf now at offset),
 * DIO_EV_PUNCH (the range now reads zeros), DIO_EV_SIZE (the file is now
 * `offset` bytes long), DIO_EV_FLUSH (all of the above before it is durable).
 * While one is set, batched writes go one by one.  fn NULL: none.
 */
enum dio_event { DIO_EV_WRITE, DIO_EV_PUNCH, DIO_EV_SIZE, DIO_EV_FLUSH };
typedef void (*dio_observer)(void *arg, enum dio_event ev, uint64_t offset, uint64_t len,
			     const void *buf);
void dio_test_set_observer(struct dio *d, dio_observer fn, void *arg);
/*
 * Test facility: fake what a signal and the kernel may do to the ring, each
 * at `permille` of its chances: EINTR from submit (nothing taken) and from the
 * wait (I/O still in flight), EAGAIN results and short results (0: off).
 * counts[] gets how often each was faked, in that order.
 */
void dio_test_ring_faults(unsigned permille);
void dio_test_ring_fault_counts(uint64_t counts[4]);
/* 0 if the calling thread's ring holds no SQE and no CQE (nothing left
 * behind by the last call), else -EBUSY. */
int dio_test_ring_idle(void);

#endif
