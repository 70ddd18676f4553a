# thinfs build.  `make` builds everything with -Werror; `make check` runs the
# whole test suite (unit tests without root, integration tests with root);
# `make demo` runs the main job on a pool in a temporary directory.
PREFIX ?= /usr/local
DESTDIR ?=
SBINDIR ?= /sbin
CC ?= gcc
PKGS := fuse3 liburing sqlite3 expat
BUILD ?= build

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE \
	  -D_FILE_OFFSET_BITS=64 -Iinclude $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS += $(PKG_LIBS) -lpthread

LIB_SRCS := src/util.c src/meta.c src/space.c src/dataio.c src/vmap.c src/layer.c \
	    src/pool.c src/pool_admin.c src/pool_io.c src/pool_list.c src/check.c \
	    src/interop_util.c src/meta_interop.c src/thin_dump.c src/thin_restore.c \
	    src/thin_delta.c src/send_receive.c
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libthinfs.a

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
# Negative controls: a test linked against a deliberately broken library must
# FAIL (the runner counts a passing control as a failure).  Test builds only.
CONTROL_BINS := $(BUILD)/tests/control_crash_noflush $(BUILD)/tests/control_ring_resubmit \
	$(BUILD)/tests/control_timer_race
# the crash-state enumeration against both commit-protocol bugs
CONTROL_BINS += $(BUILD)/tests/control_enum_noflush $(BUILD)/tests/control_enum_punch
ifneq ($(wildcard src/thinfs.c),)
CONTROL_BINS += $(BUILD)/bug-noflush/thinfs
endif
BUG_NOFLUSH_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/bug-noflush/%.o)
BUG_RING_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/bug-ring/%.o)
BUG_TIMER_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/bug-timer/%.o)
BUG_PUNCH_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/bug-punch/%.o)
TOOL_BINS :=
ifneq ($(wildcard tools/thinctl.c),)
TOOL_BINS += $(BUILD)/thinctl
endif
ifneq ($(wildcard src/thinfs.c),)
TOOL_BINS += $(BUILD)/thinfs
endif
ifneq ($(wildcard tests/tools/thinfs-fsx.c),)
TOOL_BINS += $(BUILD)/thinfs-fsx
endif
ifneq ($(wildcard tests/tools/interop_helper.c),)
TOOL_BINS += $(BUILD)/interop_helper
endif
ifneq ($(wildcard tests/tools/ackwriter.c),)
TOOL_BINS += $(BUILD)/ackwriter
endif
ifneq ($(wildcard tests/bench/bench_engine.c),)
TOOL_BINS += $(BUILD)/bench_engine
endif

.PHONY: all check unit integration demo bench install asan tidy format clean deps soak
all: $(LIB) $(TOOL_BINS) $(UNIT_BINS) $(CONTROL_BINS)

$(BUILD)/%.o: src/%.c $(wildcard include/thinfs/*.h) | $(BUILD)
	$(CC) $(CFLAGS) -c -o $@ $<
$(BUILD):
	mkdir -p $(BUILD)/tests
$(LIB): $(LIB_OBJS)
	$(AR) rcs $@ $^

$(BUILD)/thinctl: tools/thinctl.c $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
DAEMON_SRCS := src/thinfs.c src/fuse_ops.c src/fuse_loop.c
$(BUILD)/thinfs: $(DAEMON_SRCS) $(wildcard include/thinfs/fuse_*.h) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(DAEMON_SRCS) $(LIB) $(LDLIBS)
$(BUILD)/thinfs-fsx: tests/tools/thinfs-fsx.c
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)
$(BUILD)/ackwriter: tests/tools/ackwriter.c
	$(CC) $(CFLAGS) -o $@ $<
$(BUILD)/interop_helper: tests/tools/interop_helper.c $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
$(BUILD)/bench_engine: tests/bench/bench_engine.c $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
$(BUILD)/bug-noflush/%.o: src/%.c $(wildcard include/thinfs/*.h)
	@mkdir -p $(BUILD)/bug-noflush
	$(CC) $(CFLAGS) -DTHINFS_TEST_BUG_SKIP_DATA_FLUSH -c -o $@ $<
$(BUILD)/bug-noflush/thinfs: $(DAEMON_SRCS) $(BUG_NOFLUSH_OBJS)
	$(CC) $(CFLAGS) -DTHINFS_TEST_BUG_SKIP_DATA_FLUSH -o $@ $(DAEMON_SRCS) \
		$(BUG_NOFLUSH_OBJS) $(LDLIBS)
$(BUILD)/tests/control_crash_noflush: tests/unit/test_crash.c $(BUG_NOFLUSH_OBJS) | $(BUILD)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(BUG_NOFLUSH_OBJS) $(LDLIBS) $(CMOCKA_LIBS)
$(BUILD)/bug-ring/%.o: src/%.c $(wildcard include/thinfs/*.h)
	@mkdir -p $(BUILD)/bug-ring
	$(CC) $(CFLAGS) -DTHINFS_TEST_BUG_RING_RESUBMIT -c -o $@ $<
$(BUILD)/tests/control_ring_resubmit: tests/unit/test_ring.c $(BUG_RING_OBJS) | $(BUILD)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(BUG_RING_OBJS) $(LDLIBS) $(CMOCKA_LIBS)
$(BUILD)/bug-timer/%.o: src/%.c $(wildcard include/thinfs/*.h)
	@mkdir -p $(BUILD)/bug-timer
	$(CC) $(CFLAGS) -DTHINFS_TEST_BUG_TIMER_SYNCED -c -o $@ $<
$(BUILD)/tests/control_timer_race: tests/unit/test_durability.c $(BUG_TIMER_OBJS) | $(BUILD)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(BUG_TIMER_OBJS) $(LDLIBS) $(CMOCKA_LIBS)
$(BUILD)/tests/control_enum_noflush: tests/unit/test_enumerate.c $(BUG_NOFLUSH_OBJS) | $(BUILD)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(BUG_NOFLUSH_OBJS) $(LDLIBS) $(CMOCKA_LIBS)
$(BUILD)/bug-punch/%.o: src/%.c $(wildcard include/thinfs/*.h)
	@mkdir -p $(BUILD)/bug-punch
	$(CC) $(CFLAGS) -DTHINFS_TEST_BUG_PUNCH_BEFORE_COMMIT -c -o $@ $<
$(BUILD)/tests/control_enum_punch: tests/unit/test_enumerate.c $(BUG_PUNCH_OBJS) | $(BUILD)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(BUG_PUNCH_OBJS) $(LDLIBS) $(CMOCKA_LIBS)
$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit_helpers.h $(LIB) | $(BUILD)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(LIB) $(LDLIBS) $(CMOCKA_LIBS)

# Installs missing build and test packages when run as root on Debian.
deps:
	@sh tests/install-deps.sh

check: deps
	$(MAKE) all
	sh tests/run-tests.sh $(BUILD)
unit: all
	sh tests/run-tests.sh $(BUILD) unit
integration: all
	sh tests/run-tests.sh $(BUILD) integration
demo: deps
	$(MAKE) all
	sh tests/demo.sh $(BUILD)
# Longer crash runs: SOAK_MINUTES (default 30) split between kill -9 loops
# and power cuts.
soak: all
	sh tests/soak.sh $(BUILD) $${SOAK_MINUTES:-30}
bench: deps
	$(MAKE) all
	sh tests/bench/run-bench.sh $(BUILD)

asan:
	$(MAKE) BUILD=build-asan EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -O1" \
		LDLIBS="$(PKG_LIBS) -lpthread -fsanitize=address,undefined" all
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		sh tests/run-tests.sh build-asan

tidy:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
		--inline-suppr -Iinclude src tools
	clang-tidy --quiet $(LIB_SRCS) $(wildcard tools/thinctl.c src/fuse_ops.c src/fuse_loop.c src/thinfs.c) -- $(CFLAGS)

format:
	clang-format -i $(wildcard src/*.c include/thinfs/*.h tools/*.c tests/unit/*.c tests/unit/*.h tests/tools/*.c tests/bench/*.c)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(SBINDIR)
	install -m 0755 $(BUILD)/thinctl $(DESTDIR)$(PREFIX)/sbin/thinctl
	install -m 0755 $(BUILD)/thinfs $(DESTDIR)$(PREFIX)/sbin/thinfs
	install -m 0755 tools/mount.thinfs $(DESTDIR)$(SBINDIR)/mount.thinfs
	install -d $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 0644 contrib/man/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 0644 contrib/bash_completion/thinctl \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/thinctl
	install -m 0644 contrib/thinfs@.service $(DESTDIR)$(PREFIX)/lib/systemd/system/

clean:
	rm -rf build build-asan
