/* SPDX-License-Identifier: MIT */
/*
 * thinfs-handles - operations through an open handle act on the device that
 * handle opened (issue 17; DESIGN.md 1.3), run against a mounted pool:
 *
 *   thinfs-handles MNT          every operation x every way the name moves on
 *   thinfs-handles MNT --user UID
 *                               the same as user UID (allow_other mount): the
 *                               user's old handle must not reach root's new
 *                               volume of the same name
 *
 * For each way the name "a" can stop leading to the device a handle opened
 * (unlink; unlink and a new "a"; a rename of "b" onto "a") and each
 * operation (ftruncate, fchmod, fchown, posix_fallocate, fsync, pwrite past
 * the end, copy_file_range out of and into it), the operation must change
 * the old device (fstat of the handle) and leave whatever "a" is now as it
 * was.  Exit 0 pass, 1 a case failed, 2 an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define OLD_SIZE 65536
#define NEW_SIZE 4096

enum move { MOVE_UNLINK, MOVE_RECREATE, MOVE_RENAME_ONTO, NR_MOVES };
enum op {
	OP_FTRUNCATE,
	OP_FCHMOD,
	OP_FCHOWN,
	OP_FALLOCATE,
	OP_FSYNC,
	OP_PWRITE_PAST_END,
	OP_COPY_OUT,
	OP_COPY_IN,
	NR_OPS
};

static const char *const move_names[] = {"unlink", "unlink + new a", "rename b onto a"};
static const char *const op_names[] = {"ftruncate",
				       "fchmod",
				       "fchown",
				       "posix_fallocate",
				       "fsync",
				       "pwrite past the end",
				       "copy_file_range out",
				       "copy_file_range in"};

static const char *mnt;
static int failures;

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "thinfs-handles: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, ": %s\n", strerror(errno));
	va_end(ap);
	exit(2);
}

static void bad(const char *move, const char *op, const char *what)
{
	printf("FAIL %s, then %s: %s\n", move, op, what);
	failures++;
}

static char *path(const char *name)
{
	static char buf[2][4096];
	static int i;

	i ^= 1;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", mnt, name);
	return buf[i];
}

/* A volume `name` of `size` bytes of byte c, mode 0600, owned by uid (the
 * root directory is root's: a user cannot create in it); an open fd. */
static int make_volume(const char *name, size_t size, int c, uid_t uid)
{
	char buf[OLD_SIZE];
	int fd = open(path(name), O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		die("create %s", path(name));
	memset(buf, c, size);
	if (pwrite(fd, buf, size, 0) != (ssize_t)size)
		die("write %s", name);
	if (fchmod(fd, 0600))
		die("fchmod %s", name);
	if (uid && fchown(fd, uid, uid))
		die("fchown %s", name);
	return fd;
}

static void move_name(enum move m)
{
	int fd;

	if (m == MOVE_RENAME_ONTO) {
		fd = make_volume("b", NEW_SIZE, 'B', 0);
		close(fd);
		if (rename(path("b"), path("a")))
			die("rename b a");
		return;
	}
	if (unlink(path("a")))
		die("unlink a");
	if (m == MOVE_RECREATE) {
		fd = make_volume("a", NEW_SIZE, 'B', 0);
		close(fd);
	}
}

/* Run op on the old handle; returns 0, or the errno. */
static int run_op(enum op op, int fd, uid_t uid)
{
	char buf[NEW_SIZE];
	loff_t in = 0, out = 0;
	int other, rc = 0;

	memset(buf, 'C', sizeof(buf));
	switch (op) {
	case OP_FTRUNCATE:
		rc = ftruncate(fd, 3 * OLD_SIZE) ? errno : 0;
		break;
	case OP_FCHMOD:
		rc = fchmod(fd, 0604) ? errno : 0;
		break;
	case OP_FCHOWN:
		rc = fchown(fd, uid ? uid : 12, uid ? (gid_t)-1 : 34) ? errno : 0;
		break;
	case OP_FALLOCATE:
		rc = posix_fallocate(fd, 0, 2 * OLD_SIZE);
		break;
	case OP_FSYNC:
		rc = pwrite(fd, buf, 1, 0) == 1 && !fsync(fd) ? 0 : errno;
		break;
	case OP_PWRITE_PAST_END:
		rc = pwrite(fd, buf, sizeof(buf), 2 * OLD_SIZE) == (ssize_t)sizeof(buf) ? 0 : errno;
		break;
	case OP_COPY_OUT:
	case OP_COPY_IN:
		other = open(path("c"), O_RDWR | O_TRUNC);
		if (other < 0)
			return errno;
		if (op == OP_COPY_IN && pwrite(other, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
			rc = errno;
		if (!rc && copy_file_range(op == OP_COPY_OUT ? fd : other, &in,
					   op == OP_COPY_OUT ? other : fd, &out,
					   op == OP_COPY_OUT ? OLD_SIZE : NEW_SIZE, 0) < 0)
			rc = errno;
		close(other);
		break;
	case NR_OPS:
		break;
	}
	return rc;
}

/* What the old device must look like after op (fstat of the handle). */
static void check_old(enum move m, enum op op, int fd, uid_t uid)
{
	const char *mv = move_names[m], *on = op_names[op];
	char buf[NEW_SIZE];
	struct stat st;

	if (fstat(fd, &st))
		die("fstat");
	if (op == OP_FTRUNCATE && st.st_size != 3 * OLD_SIZE)
		bad(mv, on, "the old device did not get the new size");
	if (op == OP_FALLOCATE && st.st_size != 2 * OLD_SIZE)
		bad(mv, on, "the old device did not grow");
	if (op == OP_PWRITE_PAST_END && st.st_size != 2 * OLD_SIZE + NEW_SIZE)
		bad(mv, on, "the old device did not grow");
	if (op == OP_FCHMOD && (st.st_mode & 07777) != 0604)
		bad(mv, on, "the old device kept its mode");
	if (op == OP_FCHOWN && st.st_uid != (uid ? uid : 12))
		bad(mv, on, "the old device kept its owner");
	if (op == OP_COPY_IN &&
	    (pread(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) || buf[0] != 'C'))
		bad(mv, on, "the data did not reach the old device");
	if (op == OP_COPY_OUT) {
		int c = open(path("c"), O_RDONLY);
		if (c < 0 || pread(c, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) || buf[0] != 'A')
			bad(mv, on, "the copy did not come from the old device");
		if (c >= 0)
			close(c);
	}
}

/* What "a" is now must be untouched: NEW_SIZE bytes of 'B', mode 0600, ours. */
static void check_new(enum move m, enum op op)
{
	const char *mv = move_names[m], *on = op_names[op];
	char buf[NEW_SIZE];
	struct stat st;
	int fd;

	if (m == MOVE_UNLINK) {
		if (stat(path("a"), &st) == 0 || errno != ENOENT)
			bad(mv, on, "the unlinked name came back");
		return;
	}
	if (stat(path("a"), &st))
		die("stat a");
	if (st.st_size != NEW_SIZE)
		bad(mv, on, "the new a changed size");
	if ((st.st_mode & 07777) != 0600)
		bad(mv, on, "the new a changed mode");
	if (st.st_uid != geteuid())
		bad(mv, on, "the new a changed owner");
	fd = open(path("a"), O_RDONLY);
	if (fd < 0 || pread(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) || buf[0] != 'B' ||
	    buf[1] != 'B')
		bad(mv, on, "the new a changed content");
	if (fd >= 0)
		close(fd);
}

static void wait_byte(int fd)
{
	char c;

	if (read(fd, &c, 1) != 1)
		die("pipe");
}

static void send_byte(int fd)
{
	if (write(fd, "x", 1) != 1)
		die("pipe");
}

/*
 * One case.  As root (uid 0) it runs in this process.  For --user, a child
 * switches to uid, creates and opens "a" (its own volume), then the parent
 * (root) moves the name, and the child runs op on its old handle; the new
 * "a" then is root's, and must be untouched.
 */
static void run_case(enum move m, enum op op, uid_t uid)
{
	int to_child[2], to_parent[2], fd, st = 0, rc;
	pid_t pid;

	unlink(path("a"));
	unlink(path("b"));
	unlink(path("c"));
	close(make_volume("c", 0, 0, uid));
	if (!uid) {
		fd = make_volume("a", OLD_SIZE, 'A', 0);
		move_name(m);
		rc = run_op(op, fd, 0);
		if (rc)
			bad(move_names[m], op_names[op], strerror(rc));
		else
			check_old(m, op, fd, 0);
		close(fd);
		check_new(m, op);
		return;
	}
	close(make_volume("a", OLD_SIZE, 'A', uid));
	if (pipe(to_child) || pipe(to_parent))
		die("pipe");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(to_parent[0]);
		close(to_child[1]);
		if (setresgid(uid, uid, uid) || setresuid(uid, uid, uid))
			die("setresuid %u", (unsigned)uid);
		fd = open(path("a"), O_RDWR);
		if (fd < 0)
			die("open %s as uid %u", path("a"), (unsigned)uid);
		send_byte(to_parent[1]);
		wait_byte(to_child[0]);
		rc = run_op(op, fd, uid);
		if (rc)
			bad(move_names[m], op_names[op], strerror(rc));
		else
			check_old(m, op, fd, uid);
		_exit(failures ? 1 : 0);
	}
	close(to_parent[1]);
	close(to_child[0]);
	wait_byte(to_parent[0]); /* EOF if the child died: die, never hang */
	move_name(m);
	send_byte(to_child[1]);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		failures++;
	check_new(m, op);
	close(to_child[1]);
	close(to_parent[0]);
}

int main(int argc, char **argv)
{
	uid_t uid = 0;
	int cases = 0;

	if (argc == 4 && !strcmp(argv[2], "--user"))
		uid = (uid_t)strtoul(argv[3], NULL, 10);
	else if (argc != 2) {
		fprintf(stderr, "usage: thinfs-handles MNT [--user UID]\n");
		return 2;
	}
	mnt = argv[1];
	umask(022);
	for (int m = 0; m < NR_MOVES; m++) {
		for (int op = 0; op < NR_OPS; op++) {
			/* a user may not give a volume away */
			if (uid && op == OP_FCHOWN)
				continue;
			run_case((enum move)m, (enum op)op, uid);
			cases++;
		}
	}
	unlink(path("a"));
	unlink(path("c"));
	printf("%d cases, %d failed\n", cases, failures);
	return failures ? 1 : 0;
}
