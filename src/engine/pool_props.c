/* SPDX-License-Identifier: MIT */
/*
 * pool_props.c - the pool's properties, kept in meta.db's props table
 * (meta.c): the user-visible transaction id (dm-thin's set_transaction_id,
 * which commits never move, unlike the pool row's commit counter) and the
 * space policy (include/thinfs/pool.h lists the keys); the counts of the
 * space events beside them are pool_space_events.c's.
 *
 * One table of keys says how each is parsed, checked and printed; a key
 * with no row has its default.  Loaded at open (pool_props_load) into
 * pool->props; changed by pool_prop_set: every pair is checked before
 * anything changes, then one transaction writes them all under the admin
 * lock, and pool->props changes only once that transaction is durable.
 * Locks: pool->props [L] (discard is also read unlocked, atomically).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool_internal.h"
#include "util.h"

enum prop_type { PT_PERCENT, PT_SIZE, PT_SECONDS, PT_CHOICE, PT_COMMAND };

struct prop_def {
	const char *key;
	const char *def;	    /* the default, as text */
	const char *const *choices; /* PT_CHOICE: the words, index = the value */
	enum prop_type type;
	unsigned max; /* PT_PERCENT, PT_SECONDS: the largest value */
};

static const char *const when_full_words[] = {"queue", "error", NULL};
static const char *const discard_words[] = {"passdown", "nopassdown", "ignore", NULL};

enum {
	P_LOW_WATER,
	P_AUTOEXTEND_PERCENT,
	P_AUTOEXTEND_MAX,
	P_WHEN_FULL,
	P_QUEUE_TIMEOUT,
	P_DISCARD,
	P_EVENT_COMMAND,
	P_NR
};

static const struct prop_def defs[P_NR] = {
    [P_LOW_WATER] = {"low_water", "80", NULL, PT_PERCENT, 100},
    [P_AUTOEXTEND_PERCENT] = {"autoextend_percent", "0", NULL, PT_PERCENT, 1000},
    [P_AUTOEXTEND_MAX] = {"autoextend_max", "0", NULL, PT_SIZE, 0},
    [P_WHEN_FULL] = {"when_full", "queue", when_full_words, PT_CHOICE, 0},
    [P_QUEUE_TIMEOUT] = {"queue_timeout", "60", NULL, PT_SECONDS, 86400 * 365},
    [P_DISCARD] = {"discard", "passdown", discard_words, PT_CHOICE, 0},
    [P_EVENT_COMMAND] = {"event_command", "", NULL, PT_COMMAND, 0},
};

size_t pool_prop_count(void)
{
	return P_NR;
}

int pool_prop_index(const char *key)
{
	for (int i = 0; i < P_NR; i++)
		if (!strcmp(defs[i].key, key))
			return i;
	return -ENOENT;
}

static int parse_number(const char *v, unsigned max, uint64_t *out)
{
	char *end;
	unsigned long long n;

	if (!*v || *v == '-' || *v == '+')
		return -EINVAL;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || *end || n > max)
		return -EINVAL;
	*out = n;
	return 0;
}

/* Parse `v` for property i into *num (or, for a command, check it); 0 or
 * -EINVAL with the reason in msg. */
static int parse_value(int i, const char *v, uint64_t *num, char *msg, size_t msglen)
{
	const struct prop_def *p = &defs[i];

	switch (p->type) {
	case PT_PERCENT:
	case PT_SECONDS:
		if (parse_number(v, p->max, num))
			return set_msg(
			    msg, msglen, -EINVAL, "%s: '%s' is not %s 0-%u", p->key, v,
			    p->type == PT_PERCENT ? "a percentage" : "a number of seconds", p->max);
		return 0;
	case PT_SIZE:
		if (pool_parse_size(v, num))
			return set_msg(msg, msglen, -EINVAL,
				       "%s: '%s' is not a size (bytes, or with K, M, G, T)", p->key,
				       v);
		return 0;
	case PT_CHOICE:
		for (uint64_t c = 0; p->choices[c]; c++)
			if (!strcmp(p->choices[c], v)) {
				*num = c;
				return 0;
			}
		return set_msg(msg, msglen, -EINVAL, "%s: '%s' is not one of %s|%s%s%s", p->key, v,
			       p->choices[0], p->choices[1], p->choices[2] ? "|" : "",
			       p->choices[2] ? p->choices[2] : "");
	case PT_COMMAND:
		*num = 0;
		if (!*v)
			return 0;
		if (v[0] != '/')
			return set_msg(msg, msglen, -EINVAL, "%s: '%s' is not an absolute path",
				       p->key, v);
		if (strlen(v) >= POOL_PROP_VALUE_MAX)
			return set_msg(msg, msglen, -ENAMETOOLONG, "%s: the path is too long",
				       p->key);
		if (access(v, X_OK))
			return set_msg(msg, msglen, -EINVAL, "%s: '%s' is not an executable: %s",
				       p->key, v, strerror(errno));
		return 0;
	}
	return -EINVAL;
}

/* Put property i's value into props (parse_value succeeded). */
static void apply_value(struct pool_props *pr, int i, uint64_t num, const char *v)
{
	switch (i) {
	case P_LOW_WATER:
		pr->low_water = (unsigned)num;
		break;
	case P_AUTOEXTEND_PERCENT:
		pr->autoextend_percent = (unsigned)num;
		break;
	case P_AUTOEXTEND_MAX:
		pr->autoextend_max = num;
		break;
	case P_WHEN_FULL:
		pr->when_full = (int)num;
		break;
	case P_QUEUE_TIMEOUT:
		pr->queue_timeout = (unsigned)num;
		break;
	case P_DISCARD:
		pr->discard = (int)num;
		break;
	case P_EVENT_COMMAND:
		snprintf(pr->event_command, sizeof(pr->event_command), "%s", v);
		break;
	}
}

/* Property i of props as canonical text. */
static void format_value(const struct pool_props *pr, int i, char *buf, size_t len)
{
	switch (i) {
	case P_LOW_WATER:
		snprintf(buf, len, "%u", pr->low_water);
		break;
	case P_AUTOEXTEND_PERCENT:
		snprintf(buf, len, "%u", pr->autoextend_percent);
		break;
	case P_AUTOEXTEND_MAX:
		snprintf(buf, len, "%" PRIu64, pr->autoextend_max);
		break;
	case P_WHEN_FULL:
		snprintf(buf, len, "%s", when_full_words[pr->when_full]);
		break;
	case P_QUEUE_TIMEOUT:
		snprintf(buf, len, "%u", pr->queue_timeout);
		break;
	case P_DISCARD:
		snprintf(buf, len, "%s", discard_words[pr->discard]);
		break;
	case P_EVENT_COMMAND:
		snprintf(buf, len, "%s", pr->event_command);
		break;
	}
}

static void defaults(struct pool_props *pr)
{
	memset(pr, 0, sizeof(*pr));
	for (int i = 0; i < P_NR; i++) {
		uint64_t num = 0;
		/* (the defaults parse; a command default is "", never checked) */
		if (defs[i].type != PT_COMMAND)
			parse_value(i, defs[i].def, &num, NULL, 0);
		apply_value(pr, i, num, defs[i].def);
	}
}

void pool_props_load(struct pool *pool)
{
	char v[POOL_PROP_VALUE_MAX];

	pool->user_txid = 0;
	if (!meta_prop_get(pool->meta, META_PROP_TRANSACTION_ID, v, sizeof(v)))
		pool->user_txid = strtoull(v, NULL, 10);
	defaults(&pool->props);
	for (int i = 0; i < P_NR; i++) {
		uint64_t num = 0;
		/* a value this thinfs cannot read keeps the default (logged) */
		if (meta_prop_get(pool->meta, defs[i].key, v, sizeof(v)))
			continue;
		if ((defs[i].type == PT_COMMAND && v[0] && v[0] != '/') ||
		    (defs[i].type != PT_COMMAND && parse_value(i, v, &num, NULL, 0))) {
			pool_log(pool, POOL_LOG_WARNING, "property %s: cannot read '%s', using %s",
				 defs[i].key, v, defs[i].def[0] ? defs[i].def : "none");
			continue;
		}
		apply_value(&pool->props, i, num, v);
		pool->props.set_mask |= 1u << i;
	}
	pool_space_events_load(pool);
}

int pool_view_prop(struct pool *pool, size_t i, struct pool_prop *out)
{
	if (i >= P_NR)
		return -ENOENT;
	out->key = defs[i].key;
	format_value(&pool->props, (int)i, out->value, sizeof(out->value));
	out->is_default = !(pool->props.set_mask & (1u << i));
	return 0;
}

int pool_prop_get(struct pool *pool, size_t i, struct pool_prop *out)
{
	int rc;

	pthread_mutex_lock(&pool->lock);
	rc = pool_view_prop(pool, i, out);
	pthread_mutex_unlock(&pool->lock);
	return rc;
}

struct prop_change {
	struct pool_props next;
	char (*text)[POOL_PROP_VALUE_MAX]; /* canonical text of each key set */
	uint32_t mask;			   /* the keys set */
};

static int op_set_props(struct pool *pool, void *arg)
{
	struct prop_change *c = arg;
	int rc = 0;

	for (int i = 0; i < P_NR && !rc; i++)
		if (c->mask & (1u << i))
			rc = meta_prop_put(pool->meta, defs[i].key, c->text[i]);
	return rc;
}

/* Check KEY=VALUE pairs into c (nothing changes); 0 or -EINVAL + msg. */
static int parse_pairs(char *const *pairs, size_t nr, struct prop_change *c, char *msg,
		       size_t msglen)
{
	for (size_t n = 0; n < nr; n++) {
		const char *eq = strchr(pairs[n], '=');
		char key[64];
		uint64_t num = 0;
		int i, rc;

		if (!eq || eq == pairs[n])
			return set_msg(msg, msglen, -EINVAL, "'%s' is not KEY=VALUE", pairs[n]);
		snprintf(key, sizeof(key), "%.*s", (int)(eq - pairs[n]), pairs[n]);
		i = pool_prop_index(key);
		if (i < 0)
			return set_msg(msg, msglen, -EINVAL,
				       "unknown property '%s' (thinctl get POOL lists them)", key);
		rc = parse_value(i, eq + 1, &num, msg, msglen);
		if (rc)
			return rc;
		apply_value(&c->next, i, num, eq + 1);
		c->mask |= 1u << i;
	}
	for (int i = 0; i < P_NR; i++)
		if (c->mask & (1u << i))
			format_value(&c->next, i, c->text[i], sizeof(c->text[i]));
	return 0;
}

/* The change is durable: it is in force from now on (admin lock held). */
static void props_changed(struct pool *pool, struct prop_change *c)
{
	int discard = c->next.discard;

	c->next.set_mask |= c->mask;
	pool->props = c->next;
	__atomic_store_n(&pool->props.discard, discard, __ATOMIC_RELAXED);
	pool->sev.at_max_reported = false;
	pool_space_changed(pool); /* a new low water may be crossed already */
	for (int i = 0; i < P_NR; i++)
		if (c->mask & (1u << i))
			pool_log(pool, POOL_LOG_INFO, "property %s=%s", defs[i].key, c->text[i]);
}

int pool_prop_set(struct pool *pool, char *const *pairs, size_t nr, char *msg, size_t msglen)
{
	char text[P_NR][POOL_PROP_VALUE_MAX];
	struct prop_change c = {.text = text};
	int rc;

	if (!nr)
		return set_msg(msg, msglen, -EINVAL, "nothing to set: give KEY=VALUE");
	admin_lock(pool);
	c.next = pool->props;
	rc = pool_check_writable(pool, msg, msglen);
	if (!rc)
		rc = parse_pairs(pairs, nr, &c, msg, msglen);
	/* freed blocks kept their extents: they must read zeros again before
	 * a policy that trusts free blocks to (invariant: scrub first) */
	if (!rc && pool->props.discard == DISCARD_NOPASSDOWN &&
	    c.next.discard != DISCARD_NOPASSDOWN) {
		rc = pool_scrub_free_blocks(pool);
		if (rc)
			set_msg(msg, msglen, rc, "cannot punch the free blocks: %s", strerror(-rc));
	}
	if (!rc) {
		rc = pool_txn(pool, op_set_props, &c);
		if (rc)
			set_msg(msg, msglen, rc, "cannot set the properties: %s", strerror(-rc));
	}
	if (!rc)
		props_changed(pool, &c);
	admin_unlock(pool);
	return rc;
}

static int op_set_txid(struct pool *pool, void *arg)
{
	char v[32];

	snprintf(v, sizeof(v), "%" PRIu64, *(uint64_t *)arg);
	return meta_prop_put(pool->meta, META_PROP_TRANSACTION_ID, v);
}

int pool_set_transaction_id(struct pool *pool, uint64_t old_id, uint64_t new_id, char *msg,
			    size_t msglen)
{
	int rc;

	admin_lock(pool);
	rc = pool_check_writable(pool, msg, msglen);
	if (!rc && pool->user_txid != old_id)
		rc = set_msg(msg, msglen, -ESTALE,
			     "the transaction id is %" PRIu64 ", not %" PRIu64 ": nothing changed",
			     pool->user_txid, old_id);
	if (!rc) {
		rc = pool_txn(pool, op_set_txid, &new_id);
		if (rc)
			set_msg(msg, msglen, rc, "cannot set the transaction id: %s",
				strerror(-rc));
		else
			pool->user_txid = new_id;
	}
	if (!rc)
		pool_log(pool, POOL_LOG_INFO, "transaction id %" PRIu64 " -> %" PRIu64, old_id,
			 new_id);
	admin_unlock(pool);
	return rc;
}
