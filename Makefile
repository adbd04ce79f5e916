# Front for the CMake build. Every target installs what it needs first
# (scripts/setup.sh: Debian/Ubuntu packages, as root, or it prints the
# `sudo apt-get install` line to run).
#
#   make [build]       configure (once) and build in build/
#   make run           build the example servers it starts, and start them
#                      (Ctrl-C stops them)
#   make test          build and run the test suite
#   make test-sanitize the suite under ASan+UBSan (build-asan/), then the
#                      threaded tests under TSan (build-tsan/)
#   make test-kqueue   the suite on the kqueue backend, run over a kevent
#                      emulation on Linux (build-kqueue/; tests/kqueue/)
#   make demo-scale    three http-server hosts behind HAProxy (PROXY v2, health
#                      checks), each a network namespace: spread, /ip, a rolling
#                      upgrade under wrk, a killed backend (root; tests/scale/)
#   make bench         Release build in build-bench/, then bench/run.sh (QUICK=1: short)
#   make fuzz          fuzz every target with libFuzzer (fuzz/run.sh; FUZZ_SECONDS=60 each)
#   make format        clang-format -i on all C sources (format-check: only check)
#   make windows       cross-build for 64-bit Windows with mingw-w64 into build-windows/:
#                      libevn.dll, libevn.a, the examples and tests as .exe
#   make test-windows  run that build's tests under Wine (WINEPREFIX defaults to
#                      build-windows/wine; its first start takes a few seconds)
#   make install       install from build/ under PREFIX (default /usr/local; DESTDIR works)
#   make clean         remove the build directories
#
# Variables: BUILD_TYPE, CMAKE_ARGS (extra -D options), JOBS, PREFIX, QUICK,
# SAN_CTEST_ARGS and WIN_CTEST_ARGS (more ctest arguments for those runs).

SHELL := /bin/bash
MAKEFLAGS += --no-print-directory
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := all

CMAKE      ?= cmake
CTEST      ?= ctest
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX     ?= /usr/local
BUILD_TYPE ?= RelWithDebInfo
CMAKE_ARGS ?=
QUICK      ?=
SETUP      := bash scripts/setup.sh

BUILD_DIR  := build
ASAN_DIR   := build-asan
TSAN_DIR   := build-tsan
BENCH_DIR  := build-bench
KQUEUE_DIR := build-kqueue
WIN_DIR    := build-windows

# Wine's state for make test-windows, made on first use; no window, no
# debug chatter.
WINEPREFIX ?= $(CURDIR)/$(WIN_DIR)/wine
WIN_ENV    := WINEPREFIX=$(WINEPREFIX) WINEDEBUG=-all WINEDLLOVERRIDES=winemenubuilder.exe=d
WINESERVER := $(firstword $(wildcard /usr/lib/wine/wineserver) wineserver)
WINE       := $(firstword $(wildcard /usr/lib/wine/wine64) wine64)

# The sanitizer builds leave out the benchmark helpers.
SAN_ARGS := -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEVN_BUILD_BENCH=OFF

# More ctest arguments for the sanitizer runs, e.g. SAN_CTEST_ARGS='-LE ^poll' (a
# regular expression: 'poll' alone would match epoll too).
SAN_CTEST_ARGS ?=

# More ctest arguments for make test-windows, e.g. WIN_CTEST_ARGS='-L iocp'.
WIN_CTEST_ARGS ?=

# die_after_fork=0: tests fork a child that runs a server (test-graceful's
# signals), whose io_uring ring is made on a thread of its own; TSan refuses
# threads after a fork of a threaded process unless told to go on.

SAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
           UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
           TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 die_after_fork=0" \
           EVN_TEST_QUICK=1

# gcc 12's TSan runtime cannot cope with more than 28 bits of mmap ASLR
# ("FATAL: ThreadSanitizer: unexpected memory mapping"), which newer kernels
# and distributions set; run the TSan tests without ASLR there.
TSAN_WRAP ?= $(shell bits=$$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0); \
	if [ "$$bits" -gt 28 ] && setarch $$(uname -m) -R true 2>/dev/null; then \
	echo setarch $$(uname -m) -R; fi)

# configure DIR, extra cmake args: only when DIR has no cache yet.
define configure
	@if [ ! -f $(1)/CMakeCache.txt ]; then \
		echo "== configure $(1)"; \
		$(CMAKE) -S . -B $(1) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(2) $(CMAKE_ARGS); \
	fi
endef

.PHONY: all build setup run test test-sanitize test-asan test-tsan test-kqueue bench fuzz \
        format format-check install clean help demo-scale windows test-windows test-windows-run

all: build

help:
	@sed -n '1,/^$$/{/^#/s/^# \{0,1\}//p}' Makefile

setup:
	@$(SETUP) core

build: setup
	$(call configure,$(BUILD_DIR),-DCMAKE_BUILD_TYPE=$(BUILD_TYPE))
	@$(CMAKE) --build $(BUILD_DIR) -j $(JOBS)

# The servers scripts/run-examples.sh starts.
RUN_TARGETS := echo-server http-server redis-server

run: setup
	$(call configure,$(BUILD_DIR),-DCMAKE_BUILD_TYPE=$(BUILD_TYPE))
	@$(CMAKE) --build $(BUILD_DIR) -j $(JOBS) --target $(RUN_TARGETS)
	@# The clients named in the banner (nc, curl, redis-cli): only as root, they are optional.
	@if [ "$$(id -u)" = 0 ]; then $(SETUP) examples; fi
	@bash scripts/run-examples.sh $(BUILD_DIR)/examples

# Configured again after the set-up, which may have just installed what the
# build looks for (OpenSSL for TLS, python3 for the integration tests).
test:
	@$(SETUP) test
	@$(CMAKE) -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_ARGS) >/dev/null
	@$(CMAKE) --build $(BUILD_DIR) -j $(JOBS)
	cd $(BUILD_DIR) && $(CTEST) --output-on-failure --no-tests=error -j $(JOBS)

# The scale-out test, run for a person to read: what each part shows, with
# its numbers. It makes network namespaces, so it needs root.
demo-scale:
	@$(SETUP) test
	$(call configure,$(BUILD_DIR),-DCMAKE_BUILD_TYPE=$(BUILD_TYPE))
	@$(CMAKE) --build $(BUILD_DIR) -j $(JOBS) --target http-server
	@PYTHONDONTWRITEBYTECODE=1 python3 tests/scale/test_scale_haproxy.py --server $(BUILD_DIR)/examples/http-server

# Both runs, even when the first fails, so that one go shows everything.
test-sanitize:
	@rc=0; $(MAKE) test-asan || rc=1; $(MAKE) test-tsan || rc=1; exit $$rc

test-asan:
	@$(SETUP) core test
	@$(CMAKE) -S . -B $(ASAN_DIR) -DEVN_SANITIZE=address$(,)undefined $(SAN_ARGS) $(CMAKE_ARGS) >/dev/null
	@$(CMAKE) --build $(ASAN_DIR) -j $(JOBS)
	cd $(ASAN_DIR) && $(SAN_ENV) $(CTEST) --output-on-failure --no-tests=error -j $(JOBS) $(SAN_CTEST_ARGS)

test-tsan:
	@$(SETUP) core test
	@$(CMAKE) -S . -B $(TSAN_DIR) -DEVN_SANITIZE=thread $(SAN_ARGS) $(CMAKE_ARGS) >/dev/null
	@$(CMAKE) --build $(TSAN_DIR) -j $(JOBS)
	cd $(TSAN_DIR) && $(SAN_ENV) $(TSAN_WRAP) $(CTEST) --output-on-failure --no-tests=error -j $(JOBS) -L threaded $(SAN_CTEST_ARGS)

# Every test labelled kqueue: the C tests and the examples' integration tests
# on the kqueue backend, and the emulation's own conformance test.
test-kqueue:
	@$(SETUP) core test
	$(call configure,$(KQUEUE_DIR),-DEVN_KQUEUE_EMULATION=ON -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DEVN_BUILD_BENCH=OFF)
	@$(CMAKE) --build $(KQUEUE_DIR) -j $(JOBS)
	cd $(KQUEUE_DIR) && $(CTEST) --output-on-failure --no-tests=error -j $(JOBS) -L kqueue

# Windows (cmake/mingw-w64-x86_64.cmake): ctest runs each .exe through Wine.
WIN_CMAKE = -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	-DEVN_BUILD_BENCH=OFF
windows:
	@$(SETUP) windows-build
	$(call configure,$(WIN_DIR),$(WIN_CMAKE))
	@$(CMAKE) --build $(WIN_DIR) -j $(JOBS)

# One Wine server and its services for the whole run, started here with no
# terminal or pipe of ctest's (a service a test process started would keep
# ctest's output pipe open), so that each test's start costs a fraction of a
# second rather than a Wine start-up of three; stopped at the end.
#
# The set-up comes first and the build is configured again after it, as for
# make test: a build configured before Wine was installed (make windows) has
# no emulator for ctest. The run itself is a make of its own, which looks for
# the Wine just installed.
test-windows:
	@$(SETUP) windows
	@$(CMAKE) -S . -B $(WIN_DIR) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(WIN_CMAKE) $(CMAKE_ARGS) >/dev/null
	@$(CMAKE) --build $(WIN_DIR) -j $(JOBS)
	@$(MAKE) test-windows-run

test-windows-run:
	@mkdir -p $(WINEPREFIX)
	@# (A session already up for this prefix is used as it is.)
	@$(WIN_ENV) $(WINESERVER) -p </dev/null >/dev/null 2>&1 || true
	@$(WIN_ENV) $(WINE) wineboot </dev/null >/dev/null 2>&1
	@# Wine start failures that the runners tried again (tests/wine-run.sh,
	@# tests/evnserver.py), listed after the run.
	@rm -f $(WIN_DIR)/wine-retries.log
	@rc=0; cd $(WIN_DIR) && $(WIN_ENV) EVN_WINE_RETRY_LOG=$(CURDIR)/$(WIN_DIR)/wine-retries.log \
		$(CTEST) --output-on-failure --no-tests=error -j $(JOBS) $(WIN_CTEST_ARGS) || rc=$$?; \
	$(WIN_ENV) $(WINESERVER) -k || true; \
	if [ -s wine-retries.log ]; then echo "Wine start failures, tried again:"; cat wine-retries.log; fi; \
	exit $$rc

bench:
	@$(SETUP) bench
	$(call configure,$(BENCH_DIR),-DCMAKE_BUILD_TYPE=Release -DEVN_BUILD_TESTS=OFF)
	@$(CMAKE) --build $(BENCH_DIR) -j $(JOBS)
	@if [ -f bench/run.sh ]; then \
		EVN_BUILD_DIR=$(CURDIR)/$(BENCH_DIR) QUICK=$(QUICK) bash bench/run.sh; \
	else \
		echo "bench: no bench/run.sh yet; the helpers are built in $(BENCH_DIR)/"; \
	fi

fuzz:
	@if [ -f fuzz/run.sh ]; then \
		$(SETUP) fuzz; \
		QUICK=$(QUICK) bash fuzz/run.sh; \
	else \
		echo "fuzz: no fuzzers yet (fuzz/run.sh)"; \
	fi

FORMAT_FILES = $(shell find src include tests examples bench fuzz -name '*.[ch]' 2>/dev/null | sort)

format:
	@$(SETUP) format
	@files="$(FORMAT_FILES)"; [ -z "$$files" ] || clang-format -i $$files

format-check:
	@$(SETUP) format
	@files="$(FORMAT_FILES)"; [ -z "$$files" ] || clang-format --dry-run -Werror $$files

# PREFIX is baked into evn.pc when configuring, so reconfigure with it.
install: setup
	$(CMAKE) -S . -B $(BUILD_DIR) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_ARGS) >/dev/null
	@$(CMAKE) --build $(BUILD_DIR) -j $(JOBS)
	$(CMAKE) --install $(BUILD_DIR)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR) $(BENCH_DIR) $(KQUEUE_DIR) $(WIN_DIR)

, := ,
