# mseg - GNU make build. `make` is the whole build: no generated build systems.
#
#   make                 build/libmseg.a, build/libmseg.so.*, build/mseg
#   make SANITIZE=1      the same under build/san/ with ASan + UBSan
#   make test            deps check, tests, then the tests again with SANITIZE=1
#   make demo            deps check, build, run the quick-guide programs
#   make install         PREFIX (default /usr/local), DESTDIR
#   make uninstall / clean
#
# Sources are found by wildcard: every engine/*.c is part of the library,
# every tests/test_*.c part of the one Criterion binary, every
# tests/helpers/*.c a helper program, every tests/quickguide/*.c a
# quick-guide program, and tools/mseg.c (when present) the `mseg` command.

# ---- version (single source: include/mseg.h) -------------------------
version_part = $(shell sed -n 's/^\#define MSEG_VERSION_$(1)  *\([0-9][0-9]*\).*/\1/p' include/mseg.h)
VERSION_MAJOR := $(call version_part,MAJOR)
VERSION       := $(VERSION_MAJOR).$(call version_part,MINOR).$(call version_part,PATCH)

# ---- build directory and flags ------------------------------------------
SANITIZE ?= 0
ifeq ($(SANITIZE),1)
B        := build/san
OPT      := -O1
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
else
B        := build
OPT      := -O2
SANFLAGS :=
endif

# CC and AR are make's own (cc, ar); override them on the command line.
CFLAGS   := -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -fPIC -pthread -Iinclude -Iengine $(SANFLAGS) $(EXTRA_CFLAGS)
DEPFLAGS := -MMD -MP
LDFLAGS  := $(SANFLAGS) $(EXTRA_LDFLAGS)
LDLIBS   := -lxxhash -pthread

# Tests, helpers and quick-guide programs learn where the build lives.
TEST_CPPFLAGS := -Itests -DMSEG_BUILD_DIR='"$(abspath $(B))"'
TEST_LDLIBS   := -lcriterion $(LDLIBS)

# ---- sources and products -------------------------------------------------
LIB_SRCS    := $(wildcard engine/*.c)
TEST_SRCS   := $(wildcard tests/test_*.c)
HELPER_SRCS := $(wildcard tests/helpers/*.c)
QG_SRCS     := $(wildcard tests/quickguide/*.c)
TOOL_SRCS   := $(wildcard tools/*.c)

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))
LIB_OBJS    := $(call obj,$(LIB_SRCS))
TEST_OBJS   := $(call obj,$(TEST_SRCS))
HELPER_OBJS := $(call obj,$(HELPER_SRCS))
QG_OBJS     := $(call obj,$(QG_SRCS))
TOOL_OBJS   := $(call obj,$(TOOL_SRCS))
ALL_OBJS    := $(LIB_OBJS) $(TEST_OBJS) $(HELPER_OBJS) $(QG_OBJS) $(TOOL_OBJS)

STATIC_LIB  := $(B)/libmseg.a
SONAME      := libmseg.so.$(VERSION_MAJOR)
SHARED_REAL := $(B)/libmseg.so.$(VERSION)
SHARED_LINKS:= $(B)/$(SONAME) $(B)/libmseg.so
SYMBOL_MAP  := $(B)/libmseg.map
TOOL        := $(if $(TOOL_SRCS),$(B)/mseg)
TEST_BIN    := $(B)/tests/mseg-tests
HELPER_BINS := $(patsubst tests/helpers/%.c,$(B)/tests/bin/%,$(HELPER_SRCS))
QG_BINS     := $(patsubst tests/quickguide/%.c,$(B)/quickguide/%,$(QG_SRCS))
QG_NAMES    := $(patsubst tests/quickguide/%.c,%,$(QG_SRCS))
# The order of Boost's quick guide first, then any others.
QG_ORDER    := quickguide_alloc quickguide_named quickguide_list quickguide_vector quickguide_map persist_demo
QG_NAMES    := $(filter $(QG_NAMES),$(QG_ORDER)) $(filter-out $(QG_ORDER),$(QG_NAMES))

# ---- test run settings ----------------------------------------------------
# Criterion runs every test in its own process; 2 workers by default.
TEST_JOBS      ?= 2
CRITERION_ARGS ?= --jobs $(TEST_JOBS)

# LeakSanitizer works in this sandbox (checked: a deliberate leak is
# reported, also inside Criterion's worker processes), so it stays on. Where
# ptrace is forbidden LSan dies with "LeakSanitizer has encountered a fatal
# error"; run `make test SAN_LEAKS=0` there.
# Criterion's runner process itself sometimes leaks 48 bytes allocated under
# criterion_run_all_tests (seen with Criterion 2.4.1, --jobs 2); the runner
# never runs test code, so $(LSAN_SUPP) suppresses exactly that function.
# Matching it needs the full malloc stack: fast_unwind_on_malloc=0.
SAN_LEAKS ?= 1
LSAN_SUPP := $(B)/lsan.supp
SAN_ENV   := ASAN_OPTIONS=detect_leaks=$(SAN_LEAKS):abort_on_error=0:fast_unwind_on_malloc=0 \
             LSAN_OPTIONS=suppressions=$(abspath $(LSAN_SUPP)):print_suppressions=0 \
             UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Segments of the file backend go here (the programs read TMPDIR too).
TMPDIR ?= /tmp
export TMPDIR

# ---- install locations ------------------------------------------------------
PREFIX     ?= /usr/local
DESTDIR    ?=
INCLUDEDIR := $(PREFIX)/include
LIBDIR     := $(PREFIX)/lib
BINDIR     := $(PREFIX)/bin
PCDIR      := $(LIBDIR)/pkgconfig
MANDIR     := $(PREFIX)/share/man
MAN1       := $(wildcard tools/mseg.1)
MAN3       := $(wildcard tools/mseg.3)

# ---- dependency check -------------------------------------------------------
DEP_HEADERS ?= /usr/include/xxhash.h /usr/include/criterion/criterion.h
DEP_PACKAGES := libxxhash-dev libcriterion-dev

.PHONY: all lib tests deps test test-run demo demo-run demo-quickguide \
        clean install uninstall torture bench bench-deps fuzz fuzz-seeds fuzz-replay

all: lib $(TOOL)

lib: $(STATIC_LIB) $(SHARED_REAL) $(SHARED_LINKS)

tests: all $(TEST_BIN) $(HELPER_BINS) $(QG_BINS) $(if $(SANFLAGS),$(LSAN_SUPP))

# ---- compiling -------------------------------------------------------------
$(B)/obj/engine/%.o: engine/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(B)/obj/tools/%.o: tools/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(B)/obj/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(TEST_CPPFLAGS) $(DEPFLAGS) -c -o $@ $<

-include $(ALL_OBJS:.o=.d)

# Objects reached through the pattern rules below are intermediate files to
# make; keep them, so that a second `make` has nothing to do.
.SECONDARY: $(ALL_OBJS)

# ---- the library -------------------------------------------------------------
# rm first so that an object whose source was deleted leaves the archive.
$(STATIC_LIB): $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

# The shared library exports the public API (mseg_*) only, so the engine's
# internal helpers (fail, persist, ...) neither clash with nor are
# interposed by a program's own symbols of the same name.
$(SYMBOL_MAP):
	@mkdir -p $(@D)
	printf '{\n  global: mseg_*;\n  local: *;\n};\n' > $@

$(LSAN_SUPP):
	@mkdir -p $(@D)
	printf 'leak:criterion_run_all_tests\n' > $@

$(SHARED_REAL): $(LIB_OBJS) $(SYMBOL_MAP)
	@mkdir -p $(@D)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=$(SYMBOL_MAP) \
	    $(LDFLAGS) -o $@ $(LIB_OBJS) $(LDLIBS)

$(SHARED_LINKS): $(SHARED_REAL)
	ln -sf $(notdir $(SHARED_REAL)) $@

# ---- programs (all linked statically against libmseg.a) ------------------------
$(B)/mseg: $(TOOL_OBJS) $(STATIC_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(TEST_BIN): $(TEST_OBJS) $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LDLIBS)

$(B)/tests/bin/%: $(B)/obj/tests/helpers/%.o $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/quickguide/%: $(B)/obj/tests/quickguide/%.o $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- dependency check ------------------------------------------------------------
# Missing headers: as root, install the Debian packages; otherwise print the
# command to run and fail.
deps:
	@missing=; \
	for h in $(DEP_HEADERS); do [ -e "$$h" ] || missing="$$missing $$h"; done; \
	command -v pkg-config >/dev/null 2>&1 || missing="$$missing pkg-config"; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" -eq 0 ]; then \
	    pkgs="$(DEP_PACKAGES)"; \
	    { command -v $(firstword $(CC)) && command -v make; } >/dev/null 2>&1 || pkgs="$$pkgs build-essential"; \
	    command -v pkg-config >/dev/null 2>&1 || pkgs="$$pkgs pkg-config"; \
	    echo "deps: missing$$missing; installing: $$pkgs"; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$pkgs; \
	else \
	    echo "deps: missing$$missing. Install the build dependencies as root, then run make again:" >&2; \
	    echo "sudo apt-get install $(DEP_PACKAGES) pkg-config" >&2; \
	    exit 1; \
	fi

# ---- tests -------------------------------------------------------------------------
# Recursive makes keep the order (deps, plain run, sanitizer run) under
# make -j. The sanitizer run happens even when the plain one failed, so that
# one `make test` shows both summaries; either failing fails `make test`.
test: deps
	@rc=0; \
	$(MAKE) --no-print-directory SANITIZE=0 test-run || rc=1; \
	$(MAKE) --no-print-directory SANITIZE=1 test-run || rc=1; \
	if [ $$rc -eq 0 ]; then echo "test: OK (build and build/san)"; \
	else echo "test: FAILED (see the summaries above)" >&2; fi; \
	exit $$rc

# Criterion counts a test that passed and then leaked as passing (LSan
# reports at the worker's exit, after the result is sent), so the run's
# output is kept in $(RUN_LOG) and a leak report fails the run.
RUN_LOG := $(B)/tests/last-run.log

test-run: tests
	@echo "== tests: $(TEST_BIN) $(CRITERION_ARGS) =="
	@rm -f $(RUN_LOG) $(RUN_LOG).rc; \
	{ $(if $(SANFLAGS),$(SAN_ENV)) $(TEST_BIN) $(CRITERION_ARGS); echo $$? > $(RUN_LOG).rc; } 2>&1 | tee $(RUN_LOG); \
	rc=$$(cat $(RUN_LOG).rc 2>/dev/null || echo 1); \
	if grep -q "ERROR: LeakSanitizer" $(RUN_LOG); then \
	    echo "test: LeakSanitizer reported leaks (above); failing the run" >&2; rc=1; \
	fi; \
	[ "$$rc" -eq 0 ] || echo "test: FAILED ($(B), exit status $$rc)" >&2; \
	exit $$rc

# ---- demo ------------------------------------------------------------------------
demo: deps
	$(MAKE) --no-print-directory demo-run

# Each step is a target of its own; demo-run lists them in order. The
# quick-guide programs include persist_demo: a map and a vector written by
# one process, reopened and verified entry by entry by another.
DEMO_STEPS := demo-quickguide

demo-run: all $(QG_BINS) $(if $(SANFLAGS),$(LSAN_SUPP))
	@for step in $(DEMO_STEPS); do \
	    $(MAKE) --no-print-directory $$step || exit 1; \
	done
	@echo "demo: OK - every quick-guide program and the persistence demo passed with the file ($${TMPDIR:-/tmp}) and shm backends."

demo-quickguide: $(QG_BINS)
	@for p in $(QG_NAMES); do \
	    for backend in file shm; do \
	        echo; echo "== $$p ($$backend) =="; \
	        $(if $(SANFLAGS),$(SAN_ENV)) $(B)/quickguide/$$p $$backend || { echo "demo: $$p ($$backend) FAILED" >&2; exit 1; }; \
	    done; \
	done

# ---- kill -9 torture (issue 3) ------------------------------------------------------
# make torture ROUNDS=N: the torture program (tests/helpers/torture.c) on a
# file segment under $(TMPDIR) and on a POSIX shm segment, N rounds each of
# 3-4 workers killed with SIGKILL at random moments, then recovery, check,
# oracle comparison and leak check. It prints the figures per backend and
# exits non-zero on the first violation. TORTURE_ARGS adds options (--seed S).
# make test runs a bounded version (tests/test_torture.c).
ROUNDS       ?= 200
TORTURE_ARGS ?=

torture: $(B)/tests/bin/torture $(if $(SANFLAGS),$(LSAN_SUPP))
	$(if $(SANFLAGS),$(SAN_ENV)) $(B)/tests/bin/torture --rounds $(ROUNDS) --backend both $(TORTURE_ARGS)

# ---- fuzzing (issue 5) -------------------------------------------------------
# make fuzz FUZZ_SECONDS=N runs both libFuzzer targets side by side for N
# seconds each, from the committed seeds plus what earlier runs found
# (build/fuzz/corpus_*). Crashers land in build/fuzz/crash-*; copy them to
# tests/fuzz/regressions/ as open-* or ops-*, which `make test` replays
# (test_corruption.c) and `make fuzz-replay` replays with the fuzz builds.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FZ           := build/fuzz
FUZZ_FLAGS   := -std=gnu11 -O1 -g -Wall -Wextra -Werror -pthread -Iinclude -Iengine -Itests \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_ARGS    := -max_len=262144 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1

$(FZ)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h $(LIB_SRCS) $(wildcard engine/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(LIB_SRCS) $(LDLIBS)

$(FZ)/make_seeds: tests/fuzz/make_seeds.c $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(STATIC_LIB) $(LDLIBS)

fuzz: $(FZ)/fuzz_open $(FZ)/fuzz_ops
	@mkdir -p $(FZ)/corpus_open $(FZ)/corpus_ops
	@rc=0; \
	$(FZ)/fuzz_open $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(FZ)/crash-open- \
	    $(FZ)/corpus_open tests/fuzz/corpus_open > $(FZ)/fuzz_open.log 2>&1 & p1=$$!; \
	$(FZ)/fuzz_ops $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(FZ)/crash-ops- \
	    $(FZ)/corpus_ops tests/fuzz/corpus_ops > $(FZ)/fuzz_ops.log 2>&1 & p2=$$!; \
	wait $$p1 || rc=1; wait $$p2 || rc=1; \
	for t in open ops; do echo "== fuzz_$$t =="; grep -E "^(stat::|SUMMARY|==[0-9]+==ERROR)" $(FZ)/fuzz_$$t.log; done; \
	[ $$rc -eq 0 ] && echo "fuzz: OK, no crash" || { echo "fuzz: CRASH, see $(FZ)/fuzz_*.log and $(FZ)/crash-*" >&2; exit 1; }

# Regenerates the committed seed corpora (small images of real segments).
fuzz-seeds: $(FZ)/make_seeds
	$(FZ)/make_seeds tests/fuzz/corpus_open tests/fuzz/corpus_ops

fuzz-replay: $(FZ)/fuzz_open $(FZ)/fuzz_ops
	@set -e; for t in open ops; do \
	    files=$$(ls tests/fuzz/regressions/$$t-* 2>/dev/null || true); \
	    [ -z "$$files" ] || $(FZ)/fuzz_$$t $$files; \
	done; echo "fuzz-replay: OK"
include benchmarks/bench.mk

# ---- install -------------------------------------------------------------------------
# mseg.pc is generated from mseg.pc.in with this PREFIX and VERSION.
install: all
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PCDIR)
	install -m 644 include/mseg.h $(DESTDIR)$(INCLUDEDIR)/mseg.h
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/libmseg.a
	install -m 755 $(SHARED_REAL) $(DESTDIR)$(LIBDIR)/$(notdir $(SHARED_REAL))
	ln -sf $(notdir $(SHARED_REAL)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libmseg.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' mseg.pc.in > $(DESTDIR)$(PCDIR)/mseg.pc
	chmod 644 $(DESTDIR)$(PCDIR)/mseg.pc
	$(if $(TOOL),install -d $(DESTDIR)$(BINDIR))
	$(if $(TOOL),install -m 755 $(TOOL) $(DESTDIR)$(BINDIR)/mseg)
	$(if $(MAN1),install -d $(DESTDIR)$(MANDIR)/man1)
	$(if $(MAN1),install -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/mseg.1)
	$(if $(MAN3),install -d $(DESTDIR)$(MANDIR)/man3)
	$(if $(MAN3),install -m 644 $(MAN3) $(DESTDIR)$(MANDIR)/man3/mseg.3)

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/mseg.h \
	      $(DESTDIR)$(LIBDIR)/libmseg.a \
	      $(DESTDIR)$(LIBDIR)/$(notdir $(SHARED_REAL)) \
	      $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libmseg.so \
	      $(DESTDIR)$(PCDIR)/mseg.pc \
	      $(DESTDIR)$(BINDIR)/mseg \
	      $(DESTDIR)$(MANDIR)/man1/mseg.1 \
	      $(DESTDIR)$(MANDIR)/man3/mseg.3

clean:
	rm -rf build
