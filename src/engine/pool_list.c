/* SPDX-License-Identifier: MIT */
/*
 * pool_list.c - queries: status, device and set listings, and sharing counts
 * (mapped, exclusive, shared per device, like thin_ls).
 *
 * Sharing is computed from the devices' resolved views: a block seen by one
 * device is exclusive to it, by more it is shared.  Cost: one resolve per
 * device, twice; memory: one counter per data block.  Takes the pool lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"

int pool_status(struct pool *pool, struct pool_status *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&pool->lock);
	st->block_size = pool->block_size;
	st->nr_data_blocks = pool->prow.nr_data_blocks;
	st->used_blocks = pool->space.nr_busy;
	st->transaction_id = pool->user_txid;
	st->commit_id = pool->prow.transaction_id;
	st->pool_time = pool->prow.pool_time;
	for (struct device *d = pool->devices; d; d = d->next) {
		if (!d->deleted) {
			st->nr_devices++;
		} else {
			st->reclaim_devices++;
			st->reclaim_rows += d->layer->nr_rows;
		}
	}
	for (struct set *s = pool->sets; s; s = s->next)
		st->nr_sets++;
	st->read_only = !pool_mode_writable(pool);
	st->needs_check = pool->prow.needs_check || pool->mode >= POOL_MODE_READ_ONLY;
	st->out_of_space =
	    pool->mode == POOL_MODE_OUT_OF_SPACE || st->used_blocks >= st->nr_data_blocks;
	if (st->needs_check)
		snprintf(st->mode, sizeof(st->mode), "ro");
	else if (st->out_of_space)
		snprintf(st->mode, sizeof(st->mode), "out_of_data_space");
	else
		snprintf(st->mode, sizeof(st->mode), "rw");
	if (st->needs_check)
		snprintf(st->mode_reason, sizeof(st->mode_reason), "%s",
			 pool->ro_reason[0] ? pool->ro_reason : "needs_check is set");
	st->max_device_size = pool_size_limit(pool);
	snprintf(st->uuid, sizeof(st->uuid), "%s", pool->prow.uuid);
	snprintf(st->data_path, sizeof(st->data_path), "%s", pool->prow.data_path);
	st->commits = pool->nr_commits;
	st->fsyncs = pool->nr_fsyncs;
	st->punches = pool->nr_punches;
	st->cow_copies = pool->nr_cow;
	for (int k = 0; k < POOL_EVENT_NR; k++) {
		st->events[k].count = pool->sev.last[k].count;
		st->events[k].time = pool->sev.last[k].last.time;
		snprintf(st->events[k].detail, sizeof(st->events[k].detail), "%s",
			 pool->sev.last[k].last.detail);
	}
	st->queued_writes = pool->sev.nr_queued;
	st->low_water_crossed = pool_over_low_water(pool);
	st->low_water = pool->props.low_water;
	snprintf(st->when_full, sizeof(st->when_full), "%s",
		 pool->props.when_full == WHEN_FULL_QUEUE ? "queue" : "error");
	meta_settings(pool->meta, st->journal_mode, sizeof(st->journal_mode), &st->synchronous);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

static size_t json_str(char *out, size_t len, const char *s)
{
	size_t n = 0;

#define PUT(c)                                                                                     \
	do {                                                                                       \
		if (n + 1 < len)                                                                   \
			out[n] = (c);                                                              \
		n++;                                                                               \
	} while (0)
	PUT('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			PUT('\\');
			PUT((char)*p);
		} else if (*p < 0x20) {
			char esc[8];
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			for (char *e = esc; *e; e++)
				PUT(*e);
		} else {
			PUT((char)*p);
		}
	}
	PUT('"');
	if (len)
		out[n < len ? n : len - 1] = 0;
#undef PUT
	return n;
}

/* The space policy's part of status --json, written at buf + at (where the
 * document's closing brace was): its length in all, or -ENOSPC. */
static int space_json(const struct pool_status *st, char *buf, size_t len, size_t at)
{
	int n = snprintf(buf + at, len - at,
			 ",\"low_water\":%u,\"low_water_crossed\":%s,\"when_full\":\"%s\","
			 "\"queued_writes\":%llu,\"events\":{",
			 st->low_water, st->low_water_crossed ? "true" : "false", st->when_full,
			 (unsigned long long)st->queued_writes);

	for (int k = 0; k < POOL_EVENT_NR && n >= 0 && at + (size_t)n < len; k++) {
		char detail[600];
		json_str(detail, sizeof(detail), st->events[k].detail);
		int m =
		    snprintf(buf + at + n, len - at - (size_t)n,
			     "%s\"%s\":{\"count\":%llu,\"time\":%lld,\"detail\":%s}", k ? "," : "",
			     pool_event_name(k), (unsigned long long)st->events[k].count,
			     (long long)st->events[k].time, detail);
		n = m < 0 ? m : n + m;
	}
	if (n >= 0 && at + (size_t)n < len)
		n += snprintf(buf + at + n, len - at - (size_t)n, "}}");
	if (n < 0 || at + (size_t)n >= len)
		return -ENOSPC;
	return (int)(at + (size_t)n);
}

/* status --json: the counts in blocks (the names tests and scripts know)
 * and in bytes beside them. */
int pool_status_json(const struct pool_status *st, char *buf, size_t len)
{
	char uuid[128], path[8300], jm[64], why[600];
	uint64_t bs = st->block_size, data_bytes, used_bytes, free_bytes;
	uint64_t free_blocks =
	    st->nr_data_blocks > st->used_blocks ? st->nr_data_blocks - st->used_blocks : 0;
	int n;

	json_str(uuid, sizeof(uuid), st->uuid);
	json_str(path, sizeof(path), st->data_path);
	json_str(jm, sizeof(jm), st->journal_mode);
	json_str(why, sizeof(why), st->mode_reason);
	data_bytes = st->nr_data_blocks * bs;
	used_bytes = st->used_blocks * bs;
	free_bytes = free_blocks * bs;
	n = snprintf(buf, len,
		     "{\"block_size\":%llu,\"nr_data_blocks\":%llu,\"used_blocks\":%llu,"
		     "\"free_blocks\":%llu,\"data_bytes\":%llu,\"used_bytes\":%llu,"
		     "\"free_bytes\":%llu,\"max_device_size\":%llu,"
		     "\"transaction_id\":%llu,\"commit_id\":%llu,\"pool_time\":%llu,"
		     "\"mode\":\"%s\",\"mode_reason\":%s,\"needs_check\":%s,\"read_only\":%s,"
		     "\"out_of_data_space\":%s,"
		     "\"nr_devices\":%llu,\"nr_sets\":%llu,\"reclaim_devices\":%llu,"
		     "\"reclaim_rows\":%llu,\"uuid\":%s,\"data_path\":%s,"
		     "\"commits\":%llu,\"fsyncs\":%llu,\"punches\":%llu,\"cow_copies\":%llu,"
		     "\"journal_mode\":%s,\"synchronous\":%d}",
		     (unsigned long long)bs, (unsigned long long)st->nr_data_blocks,
		     (unsigned long long)st->used_blocks, (unsigned long long)free_blocks,
		     (unsigned long long)data_bytes, (unsigned long long)used_bytes,
		     (unsigned long long)free_bytes, (unsigned long long)st->max_device_size,
		     (unsigned long long)st->transaction_id, (unsigned long long)st->commit_id,
		     (unsigned long long)st->pool_time, st->mode, why,
		     st->needs_check ? "true" : "false", st->read_only ? "true" : "false",
		     st->out_of_space ? "true" : "false", (unsigned long long)st->nr_devices,
		     (unsigned long long)st->nr_sets, (unsigned long long)st->reclaim_devices,
		     (unsigned long long)st->reclaim_rows, uuid, path,
		     (unsigned long long)st->commits, (unsigned long long)st->fsyncs,
		     (unsigned long long)st->punches, (unsigned long long)st->cow_copies, jm,
		     st->synchronous);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	return space_json(st, buf, len, (size_t)n - 1); /* over the closing brace */
}

int pool_device_info(struct pool *pool, const char *dev, struct pool_device_info *info)
{
	struct device *d;

	pthread_mutex_lock(&pool->lock);
	d = pool_find_device(pool, dev);
	if (d)
		pool_device_fill_info(d, info);
	pthread_mutex_unlock(&pool->lock);
	return d ? 0 : -ENOENT;
}

static int cmp_info(const void *a, const void *b)
{
	const struct pool_device_info *x = a, *y = b;
	int c = strcmp(x->set, y->set);

	return c ? c : strcmp(x->name, y->name);
}

struct share_ctx {
	uint32_t *refs;
	uint64_t nr_blocks;
	uint64_t exclusive;
	bool count;
};

static void share_entry(void *arg, uint64_t vblock, uint64_t *entry)
{
	struct share_ctx *c = arg;
	uint64_t d;

	if (!vm_mapped(*entry))
		return;
	d = vm_dblock(*entry);
	if (d >= c->nr_blocks)
		return;
	if (c->count) {
		if (c->refs[d] < UINT32_MAX)
			c->refs[d]++;
	} else if (c->refs[d] == 1) {
		c->exclusive++;
	}
}

/* Walk the resolved view of d (its loaded one, or a temporary one). */
static int walk_view(struct pool *pool, struct device *d, struct share_ctx *c)
{
	struct vmap tmp;
	int rc = 0;

	if (d->vm_loaded) {
		vmap_foreach(&d->vm, 0, share_entry, c);
		return 0;
	}
	vmap_init(&tmp);
	rc = layer_resolve(pool, d->layer, &tmp);
	if (!rc)
		vmap_foreach(&tmp, 0, share_entry, c);
	vmap_destroy(&tmp);
	return rc;
}

int pool_list(struct pool *pool, bool with_sharing, struct pool_device_info **devs, size_t *nr)
{
	struct share_ctx c = {0};
	struct pool_device_info *list = NULL;
	size_t n = 0, i;
	int rc = 0;

	pthread_mutex_lock(&pool->lock);
	for (struct device *d = pool->devices; d; d = d->next)
		n += !d->deleted;
	list = calloc(n ? n : 1, sizeof(*list));
	if (!list) {
		rc = -ENOMEM;
		goto out;
	}
	i = 0;
	for (struct device *d = pool->devices; d; d = d->next)
		if (!d->deleted)
			pool_device_fill_info(d, &list[i++]);
	if (with_sharing) {
		c.nr_blocks = pool->prow.nr_data_blocks;
		c.refs = calloc(c.nr_blocks ? c.nr_blocks : 1, sizeof(uint32_t));
		if (!c.refs) {
			rc = -ENOMEM;
			goto out;
		}
		c.count = true;
		for (struct device *d = pool->devices; d && !rc; d = d->next)
			if (!d->deleted)
				rc = walk_view(pool, d, &c);
		c.count = false;
		i = 0;
		for (struct device *d = pool->devices; d && !rc; d = d->next) {
			if (d->deleted)
				continue;
			c.exclusive = 0;
			rc = walk_view(pool, d, &c);
			list[i].exclusive_blocks = c.exclusive;
			list[i].shared_blocks = list[i].mapped_blocks - c.exclusive;
			i++;
		}
	}
out:
	pthread_mutex_unlock(&pool->lock);
	free(c.refs);
	if (rc) {
		free(list);
		return rc;
	}
	qsort(list, n, sizeof(*list), cmp_info);
	*devs = list;
	*nr = n;
	return 0;
}

int pool_list_sets(struct pool *pool, struct pool_set_info **sets, size_t *nr)
{
	struct pool_set_info *list;
	size_t n = 0, i = 0;

	pthread_mutex_lock(&pool->lock);
	for (struct set *s = pool->sets; s; s = s->next)
		n++;
	list = calloc(n ? n : 1, sizeof(*list));
	if (!list) {
		pthread_mutex_unlock(&pool->lock);
		return -ENOMEM;
	}
	for (struct set *s = pool->sets; s; s = s->next, i++) {
		snprintf(list[i].name, sizeof(list[i].name), "%s", s->row.name);
		list[i].ctime_sec = s->row.ctime;
		for (struct device *d = pool->devices; d; d = d->next)
			list[i].nr_devices += !d->deleted && !strcmp(d->row.set, s->row.name);
	}
	pthread_mutex_unlock(&pool->lock);
	*sets = list;
	*nr = n;
	return 0;
}
