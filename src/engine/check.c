/* SPDX-License-Identifier: MIT */
/*
 * check.c - thinctl check: the driver.  Opens the pool leniently (so damage
 * that a normal open refuses can be seen and repaired), runs the scan of
 * check_scan.c, and reports one line per finding:
 *     LEVEL: WHAT                          (check)
 *     LEVEL: WHAT: repaired (HOW)          (check --repair)
 *     LEVEL: WHAT: not repaired (WHY)
 * LEVEL is warning (exit 0: leaks), damaged (exit 1: repairable) or fatal
 * (exit 2: not repairable in place), as thin_check's exit codes.
 *
 * Never lies:
 *  - check and --repair run the same scan, so check finds all repair does;
 *  - after a repair the pool is scanned again: what is still found is
 *    reported ("still there after the repair") and sets the exit code, so a
 *    repair that returns 0 left a clean pool; fixes that uncover more (a
 *    tombstone that leaves an ancestor's row unseen) get up to three rounds;
 *  - with fatal damage, --repair changes nothing;
 *  - damage (damaged or fatal) that is left is recorded in the pool's
 *    needs_check marker file, so every later open is read-only (the daemon
 *    serves the pool read-only) until a repair succeeds.
 * External origins (pool_origin.c) are verified too: one that changed or
 * vanished is a warning (exit 0, nothing to repair: the metadata is sound,
 * the volume is refused until its origin is back as it was).
 * check alone opens read-only (a consistent view, also while mounted); only
 * the marker file is written.  --repair takes the pool's lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/check.h"
#include "engine/util.h"

#define REPAIR_ROUNDS 3

static const char *const level_tag[] = {"warning", "damaged", "fatal"};

static int scan_pool(const char *dir, bool rw, struct pool **pp, struct checker *c, char *msg,
		     size_t msglen)
{
	unsigned flags = POOL_OPEN_LENIENT | (rw ? 0 : POOL_OPEN_RDONLY);
	int rc = pool_open(dir, flags, "thinctl check --repair", pp, msg, msglen);

	memset(c, 0, sizeof(*c));
	if (rc)
		return rc;
	c->pool = *pp;
	admin_lock(*pp);
	rc = check_scan(c);
	if (rc) {
		/* a database that cannot even be read is fatal damage: remembered */
		if (rc == -EUCLEAN || rc == -EIO)
			pool_write_needs_check_marker(
			    *pp, "thinctl check: fatal: the metadata cannot be read (corrupt)\n");
		admin_unlock(*pp);
		check_free(c);
		pool_close(*pp);
		*pp = NULL;
		set_msg(msg, msglen, rc, "check failed: %s", strerror(-rc));
	}
	return rc;
}

static void end_scan(struct pool *pool, struct checker *c)
{
	admin_unlock(pool);
	check_free(c);
	pool_close(pool);
}

/* Damage that stays: every later open is read-only until a repair. */
static void keep_damage(struct checker *c)
{
	char why[600];

	for (size_t i = 0; i < c->nr; i++) {
		const struct check_finding *f = &c->f[i];
		if (f->level < CHECK_DAMAGED || f->fix == FIX_NEEDS_CHECK)
			continue;
		snprintf(why, sizeof(why), "thinctl check: %s: %s\n", level_tag[f->level], f->text);
		pool_write_needs_check_marker(c->pool, why);
		return;
	}
}

/* Warnings for the external origins that changed or vanished. */
static void report_origins(struct pool *pool, FILE *out)
{
	char name[2 * POOL_NAME_MAX + 2], why[POOL_MSG_MAX];

	for (struct device *d = pool->devices; out && d; d = d->next) {
		if (!d->origin || d->deleted)
			continue;
		snprintf(name, sizeof(name), "%s%s%s", d->row.set, d->row.set[0] ? "/" : "",
			 d->row.name);
		if (origin_verify(d->origin, name, why, sizeof(why)))
			fprintf(out, "warning: %s\n", why);
	}
}

static int check_only(const char *dir, FILE *out, char *msg, size_t msglen)
{
	struct checker c;
	struct pool *pool;
	int rc = scan_pool(dir, false, &pool, &c, msg, msglen);

	if (rc)
		return rc;
	for (size_t i = 0; out && i < c.nr; i++)
		fprintf(out, "%s: %s\n", level_tag[c.f[i].level], c.f[i].text);
	report_origins(pool, out);
	keep_damage(&c);
	rc = c.worst;
	end_scan(pool, &c);
	return rc;
}

static bool has_fatal(const struct checker *c)
{
	for (size_t i = 0; i < c->nr; i++)
		if (c->f[i].level == CHECK_FATAL && c->f[i].fix == FIX_NONE)
			return true;
	return false;
}

static void report_repair(const struct checker *c, FILE *out)
{
	for (size_t i = 0; out && i < c->nr; i++) {
		const struct check_finding *f = &c->f[i];
		fprintf(out, "%s: %s: %s (%s)\n", level_tag[f->level], f->text,
			f->result ? "not repaired" : "repaired", f->how);
	}
}

/* One round: scan, repair what has a fix.  *found: findings this round. */
static int repair_round(const char *dir, FILE *out, size_t *found, char *msg, size_t msglen)
{
	struct checker c;
	struct pool *pool;
	int rc = scan_pool(dir, true, &pool, &c, msg, msglen);

	if (rc)
		return rc;
	*found = c.nr;
	if (has_fatal(&c)) {
		/* the database cannot be trusted: change nothing */
		for (size_t i = 0; i < c.nr; i++) {
			c.f[i].result = -EUCLEAN;
			snprintf(
			    c.f[i].how, sizeof(c.f[i].how), "%s",
			    c.f[i].fix == FIX_NONE
				? "cannot be repaired in place: dump what can be read (thinctl "
				  "dump) and restore it into a new pool"
				: "nothing was changed: the pool has fatal damage");
		}
		report_repair(&c, out);
		keep_damage(&c);
		end_scan(pool, &c);
		return CHECK_FATAL;
	}
	if (c.nr) {
		rc = check_repair(&c, true);
		report_repair(&c, out);
		if (rc)
			set_msg(msg, msglen, rc, "repair failed: %s", strerror(-rc));
		else
			pool->lenient = false; /* repaired and scrubbed: close marks it clean */
	}
	end_scan(pool, &c);
	return rc;
}

/* A fresh scan after a round.  *left: findings another round would fix.
 * The final one reports what is still found (which sets the exit code)
 * and keeps the damage in the marker. */
static int rescan(const char *dir, bool final, FILE *out, bool *left, char *msg, size_t msglen)
{
	struct checker c;
	struct pool *pool;
	int rc = scan_pool(dir, false, &pool, &c, msg, msglen);

	*left = false;
	if (rc)
		return rc;
	for (size_t i = 0; i < c.nr; i++) {
		*left |= c.f[i].fix != FIX_NONE;
		if (final && out)
			fprintf(out, "%s: %s: still there after the repair\n",
				level_tag[c.f[i].level], c.f[i].text);
	}
	*left &= !has_fatal(&c);
	if (final) {
		report_origins(pool, out);
		keep_damage(&c);
	}
	rc = c.nr ? (c.worst > CHECK_DAMAGED ? c.worst : CHECK_DAMAGED) : CHECK_CLEAN;
	end_scan(pool, &c);
	return rc;
}

static int repair(const char *dir, FILE *out, char *msg, size_t msglen)
{
	size_t total = 0, found = 0;
	bool left = true;
	int rc = 0;

	for (int round = 0; round < REPAIR_ROUNDS && left; round++) {
		rc = repair_round(dir, out, &found, msg, msglen);
		total += found;
		if (rc)
			return rc;
		if (!found)
			break;
		rc = rescan(dir, false, NULL, &left, msg, msglen);
		if (rc < 0)
			return rc;
	}
	rc = rescan(dir, true, out, &left, msg, msglen);
	if (rc >= 0 && out) {
		if (rc == CHECK_CLEAN)
			fprintf(out, "repaired: %zu finding(s); the pool is clean\n", total);
		else
			fprintf(out, "not repaired: findings remain (above); the pool opens "
				     "read-only until they are fixed\n");
	}
	return rc;
}

/*
 * check --repair of a pool in use (the daemon's): what can be fixed without
 * unmounting is fixed (leaks: one commit, under the admin lock, like any
 * change); damage is reported as needing the pool unmounted, and then
 * nothing is changed, so no report line ever claims a side effect.
 */
int pool_check_live(struct pool *pool, FILE *out, char *msg, size_t msglen)
{
	struct checker c = {.pool = pool};
	struct pool *view;
	bool clean;
	int rc;

	/* first a scan of the last commit on a connection of its own, which
	 * stalls nobody; only findings make it worth the admin lock */
	pool_sync(pool);
	rc = scan_pool(pool->dir, false, &view, &c, msg, msglen);
	if (rc)
		return rc;
	clean = c.nr == 0;
	end_scan(view, &c);
	memset(&c, 0, sizeof(c));
	c.pool = pool;
	if (clean) {
		if (out)
			fprintf(out, "repaired: 0 finding(s) while mounted\n");
		return CHECK_CLEAN;
	}
	admin_lock(pool);
	rc = pool_mode_writable(pool) ? pool_commit_locked(pool) : -EROFS;
	if (rc == -EROFS)
		set_msg(msg, msglen, rc,
			"the pool is read-only (%s): unmount it, then thinctl "
			"check --repair",
			pool->ro_reason[0] ? pool->ro_reason : "needs_check");
	if (!rc && (rc = check_scan(&c)))
		set_msg(msg, msglen, rc, "check failed: %s", strerror(-rc));
	if (rc)
		goto out;
	if (c.worst > CHECK_CLEAN) {
		for (size_t i = 0; i < c.nr; i++) {
			c.f[i].result = -EBUSY;
			snprintf(
			    c.f[i].how, sizeof(c.f[i].how), "%s",
			    c.f[i].level > CHECK_CLEAN
				? "needs the pool unmounted: umount it, then thinctl check --repair"
				: "repaired with the damage, offline");
		}
		report_repair(&c, out);
		rc = c.worst;
		goto out;
	}
	if (c.nr && !(rc = check_repair(&c, false)))
		rc = pool_reload_vmaps(pool); /* a merge moves rows between layers */
	report_repair(&c, out);
	if (rc < 0)
		set_msg(msg, msglen, rc, "repair failed: %s", strerror(-rc));
	else if (out)
		fprintf(out, "repaired: %zu finding(s) while mounted\n", c.nr);
out:
	check_free(&c);
	admin_unlock(pool);
	return rc;
}

int pool_check(const char *dir, bool do_repair, FILE *out, char *msg, size_t msglen)
{
	return do_repair ? repair(dir, out, msg, msglen) : check_only(dir, out, msg, msglen);
}
