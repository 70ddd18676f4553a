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

# Sources are found by folder: src/engine (the pool library), src/interop
# (dump, restore, delta, send/receive over the engine), src/control (the
# one code path of changing commands and the control socket), src/daemon (the FUSE
# daemon).  Public headers are in include/thinfs; private ones sit beside
# their sources and are included as "engine/x.h" from other folders.
ENGINE_SRCS := $(sort $(wildcard src/engine/*.c))
INTEROP_SRCS := $(sort $(wildcard src/interop/*.c))
CONTROL_SRCS := $(sort $(wildcard src/control/*.c))
DAEMON_SRCS := $(sort $(wildcard src/daemon/*.c))
HDRS := $(wildcard include/thinfs/*.h src/*/*.h)
LIB_SRCS := $(ENGINE_SRCS) $(INTEROP_SRCS) $(CONTROL_SRCS)
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libthinfs.a
CFLAGS += -Isrc

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_BINS := $(BUILD)/thinctl $(BUILD)/thinfs $(BUILD)/thinfs-fsx $(BUILD)/interop_helper \
	     $(BUILD)/ackwriter $(BUILD)/bench_engine $(BUILD)/thinfs-handles

# Negative controls: a test linked against a deliberately broken library must
# FAIL (the runner counts a passing control as a failure).  Test builds only.
# Each bug build is the library compiled with -DTHINFS_TEST_BUG_<DEFINE>;
# each control is CONTROL_NAME:TEST:BUG.
BUGS := noflush:SKIP_DATA_FLUSH ring:RING_RESUBMIT timer:TIMER_SYNCED \
	punch:PUNCH_BEFORE_COMMIT
CONTROLS := crash_noflush:test_crash:noflush ring_resubmit:test_ring:ring \
	    timer_race:test_durability:timer enum_noflush:test_enumerate:noflush \
	    enum_punch:test_enumerate:punch
ctl_field = $(word $(2),$(subst :, ,$(1)))
CONTROLS := $(foreach c,$(CONTROLS),$(if $(wildcard tests/unit/$(call ctl_field,$(c),2).c),$(c)))
CONTROL_BINS := $(foreach c,$(CONTROLS),$(BUILD)/tests/control_$(call ctl_field,$(c),1)) \
		$(BUILD)/bug-noflush/thinfs

.PHONY: all check unit integration demo bench install asan tsan tidy format format-check \
	clean deps soak
all: $(LIB) $(TOOL_BINS) $(UNIT_BINS) $(CONTROL_BINS)

$(BUILD)/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<
$(LIB): $(LIB_OBJS)
	$(AR) rcs $@ $^

define bug_build
BUG_$(1)_OBJS := $$(LIB_SRCS:src/%.c=$$(BUILD)/bug-$(1)/%.o)
$$(BUILD)/bug-$(1)/%.o: src/%.c $$(HDRS)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS) -DTHINFS_TEST_BUG_$(2) -c -o $$@ $$<
endef
$(foreach b,$(BUGS),$(eval $(call bug_build,$(call ctl_field,$(b),1),$(call ctl_field,$(b),2))))

define control
$$(BUILD)/tests/control_$(1): tests/unit/$(2).c tests/unit/unit_helpers.h $$(BUG_$(3)_OBJS)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS) -Itests/unit -o $$@ $$< $$(BUG_$(3)_OBJS) $$(LDLIBS) $$(CMOCKA_LIBS)
endef
$(foreach c,$(CONTROLS),$(eval $(call control,$(call ctl_field,$(c),1),$(call ctl_field,$(c),2),$(call ctl_field,$(c),3))))

$(BUILD)/thinctl: tools/thinctl.c $(HDRS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
$(BUILD)/thinfs: $(DAEMON_SRCS) $(HDRS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(DAEMON_SRCS) $(LIB) $(LDLIBS)
$(BUILD)/bug-noflush/thinfs: $(DAEMON_SRCS) $(HDRS) $(BUG_noflush_OBJS)
	$(CC) $(CFLAGS) -DTHINFS_TEST_BUG_SKIP_DATA_FLUSH -o $@ $(DAEMON_SRCS) \
		$(BUG_noflush_OBJS) $(LDLIBS)
$(BUILD)/thinfs-fsx: tests/tools/thinfs-fsx.c
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)
$(BUILD)/ackwriter: tests/tools/ackwriter.c
	$(CC) $(CFLAGS) -o $@ $<
$(BUILD)/thinfs-handles: tests/tools/thinfs-handles.c
	$(CC) $(CFLAGS) -o $@ $<
$(BUILD)/interop_helper: tests/tools/interop_helper.c $(HDRS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
$(BUILD)/bench_engine: tests/bench/bench_engine.c $(HDRS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit_helpers.h $(HDRS) $(LIB)
	@mkdir -p $(@D)
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
		--inline-suppr -Iinclude -Isrc src tools
	clang-tidy --quiet $(LIB_SRCS) $(DAEMON_SRCS) tools/thinctl.c -- $(CFLAGS)

# ThreadSanitizer over the concurrency, ring and space-policy tests (no root).
tsan:
	$(MAKE) BUILD=build-tsan EXTRA_CFLAGS="-fsanitize=thread -O1 -g" \
		LDLIBS="$(PKG_LIBS) -lpthread -fsanitize=thread" \
		build-tsan/tests/test_concurrency build-tsan/tests/test_ring build-tsan/tests/test_space
	TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/test_concurrency
	TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/test_ring
	TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/test_space

FORMAT_SRCS := $(wildcard src/*/*.c src/*/*.h include/thinfs/*.h tools/*.c tests/unit/*.c \
		 tests/unit/*.h tests/tools/*.c tests/bench/*.c)
format:
	clang-format -i $(FORMAT_SRCS)
format-check:
	clang-format --dry-run -Werror $(FORMAT_SRCS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(SBINDIR)
	install -m 0755 $(BUILD)/thinctl $(DESTDIR)$(PREFIX)/sbin/thinctl
	install -m 0755 $(BUILD)/thinfs $(DESTDIR)$(PREFIX)/sbin/thinfs
	sed 's|@SBIN@|$(PREFIX)/sbin|g' tools/mount.thinfs > $(DESTDIR)$(SBINDIR)/mount.thinfs
	chmod 0755 $(DESTDIR)$(SBINDIR)/mount.thinfs
	install -m 0755 tools/umount.fuse.thinfs $(DESTDIR)$(SBINDIR)/umount.fuse.thinfs
	install -d $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 0644 contrib/man/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 0644 contrib/bash_completion/thinctl \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/thinctl
	sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' contrib/thinfs@.service \
		> $(DESTDIR)$(PREFIX)/lib/systemd/system/thinfs@.service
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/thinfs@.service

clean:
	rm -rf build build-asan
