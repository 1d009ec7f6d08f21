# crush-supervisor: `make` builds build/crush-supervisor and build/crush-worker.
# `make run` starts the daemon on the default socket; `make test` runs every
# test (unit + integration) under ASan+UBSan. Both install deps first.

CC       ?= cc
BUILD    ?= build
OPT      ?= -O2 -g
SAN      ?=
CFLAGS   := $(OPT) $(SAN) -std=gnu11 -Wall -Wextra -Werror -fno-strict-aliasing $(EXTRA_CFLAGS)
CPPFLAGS := -I. -DH2O_USE_LIBUV=0 -D_GNU_SOURCE
LDFLAGS  := $(SAN) $(EXTRA_LDFLAGS)
JSON_LIBS := -ljansson
UUID_LIBS := -luuid

COMMON_SRC := $(wildcard common/*.c) $(wildcard proto/*.c)
SUP_SRC    := $(filter-out supervisor/main.c,$(wildcard supervisor/*.c))
WORKER_SRC := $(filter-out worker/main.c,$(wildcard worker/*.c))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)

COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
$(BUILD)/obj/common/version.o: CPPFLAGS += -DCRUSH_COMMIT='"$(COMMIT)"'

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

COMMON_OBJ := $(call obj,$(COMMON_SRC))
SUP_OBJ    := $(call obj,$(SUP_SRC))
WORKER_OBJ := $(call obj,$(WORKER_SRC))
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

SUP_LIBS    := -lh2o-evloop $(JSON_LIBS) $(UUID_LIBS) -lm
WORKER_LIBS := -lev -lsqlite3 $(JSON_LIBS) $(UUID_LIBS)

.PHONY: all deps run test test-browser unit-bins clean format bench fuzz soak install uninstall man-lint
# Keep the unit tests' objects between runs.
.SECONDARY:
all: $(BUILD)/crush-supervisor $(BUILD)/crush-worker

deps:
	@sh scripts/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/libcrush.a: $(COMMON_OBJ) $(SUP_OBJ) $(WORKER_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/crush-supervisor: $(call obj,supervisor/main.c) $(BUILD)/libcrush.a
	$(CC) $(LDFLAGS) -o $@ $^ $(SUP_LIBS)

$(BUILD)/crush-worker: $(call obj,worker/main.c) $(BUILD)/libcrush.a
	$(CC) $(LDFLAGS) -o $@ $^ $(WORKER_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/libcrush.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(SUP_LIBS) -lev -lsqlite3

# The sanitizer build lives beside the plain one; tests run against it.
ASAN_BUILD := build/asan
ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

run: deps all
	exec ./$(BUILD)/crush-supervisor $(ARGS)

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) OPT="-O1 -g" SAN="$(ASAN_FLAGS)" all unit-bins
	@sh tests/run.sh $(ASAN_BUILD)

# SPEC §7 in a real browser (not part of test: it installs Chromium):
# headless Chromium on an allowed and a foreign page origin. See
# tests/browser/run.py.
test-browser: deps
	@WITH_BROWSER=1 sh scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@/usr/bin/python3 tests/browser/run.py --build $(BUILD)

# Benchmarks (not part of test): the daemon beside this machine's own
# ceilings, one table. See bench/README.md.
bench: deps
	@WITH_BENCH=1 sh scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@sh bench/run.sh $(BUILD)

# libFuzzer harnesses (clang): FUZZ_SECONDS per target (default 60).
FUZZ_SECONDS ?= 60
fuzz: deps
	@sh fuzz/run.sh $(FUZZ_SECONDS)

# Random clients and worker kills against a real daemon: SOAK_MINUTES.
SOAK_MINUTES ?= 5
soak: deps
	@$(MAKE) --no-print-directory all
	@/usr/bin/python3 tests/soak/soak.py --build $(BUILD) --minutes $(SOAK_MINUTES)

unit-bins: $(UNIT_BIN)

clean:
	rm -rf build

# `make && make install` (PREFIX, DESTDIR as usual). Install does not build:
# run `make` first (as yourself), so that installing as root compiles
# nothing. crush-worker goes beside crush-supervisor, where it looks first.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
SYSTEMD_USER_DIR ?= $(PREFIX)/lib/systemd/user
INSTALL_BIN := crush-supervisor crush-worker
INSTALL_SCRIPTS := crushctl crush-ps
MAN1 := crushctl.1
MAN8 := crush-supervisor.8 crush-worker.8
UNITS := crush-supervisor.socket crush-supervisor.service

install:
	@for b in $(INSTALL_BIN); do test -x $(BUILD)/$$b || { echo "install: $(BUILD)/$$b missing: run make first" >&2; exit 1; }; done
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSTEMD_USER_DIR)
	install -m 755 $(addprefix $(BUILD)/,$(INSTALL_BIN)) $(addprefix scripts/,$(INSTALL_SCRIPTS)) $(DESTDIR)$(BINDIR)/
	install -m 644 $(addprefix man/,$(MAN1)) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(addprefix man/,$(MAN8)) $(DESTDIR)$(MANDIR)/man8/
	for u in $(UNITS); do sed 's|@BINDIR@|$(BINDIR)|g' systemd/$$u > $(DESTDIR)$(SYSTEMD_USER_DIR)/$$u && chmod 644 $(DESTDIR)$(SYSTEMD_USER_DIR)/$$u || exit 1; done

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(INSTALL_BIN) $(INSTALL_SCRIPTS))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(MAN1)) $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(MAN8))
	rm -f $(addprefix $(DESTDIR)$(SYSTEMD_USER_DIR)/,$(UNITS))

# The man pages, as mandoc's linter sees them (warnings and worse).
man-lint:
	mandoc -T lint -W warning man/*

format:
	clang-format -i $(wildcard */*.c */*.h tests/unit/*.c)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
