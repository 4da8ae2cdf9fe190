# benchmarks/bench.mk - the benchmark harness (issue 6), included by the
# main Makefile.
#
#   make bench               every workload of WORKLOADS.md, mseg and every
#                            peer installed, REPS=3 interleaved repetitions;
#                            table of medians and ratios, results.csv, SVG
#   make bench QUICK=1       N/10, 1 repetition (unless REPS is given): a fast check
#   make bench-deps          install the peers' Debian packages
#   make bench-build         only build the runners
#
# Variables: REPS (3), QUICK (0), BACKENDS ("file"; "file shm" for both),
# SCALE (1: run the 1-vs-2-process scaling workload, on mseg and Boost),
# PIN (the CPU every other runner runs on: the last one; none: unpinned).
#
# Peer runners are built only when their headers are present. mseg-bench's
# vector and map workloads are compiled only when engine/vector.c and
# engine/map.c exist.

BENCH_DIR      := $(B)/bench
BENCH_CFLAGS   := -std=gnu11 -O2 -g -Wall -Wextra -Werror -pthread -Iinclude -Ibenchmarks $(SANFLAGS)
BENCH_CXXFLAGS := -std=c++17 -O2 -g -Wall -Wextra -pthread -Ibenchmarks $(SANFLAGS)
CXX            ?= c++

BENCH_HAVE_BOOST   := $(wildcard /usr/include/boost/interprocess)
BENCH_HAVE_PMEMOBJ := $(wildcard /usr/include/libpmemobj.h)
BENCH_HAVE_LMDB    := $(wildcard /usr/include/lmdb.h)

BENCH_FEATURES := $(if $(wildcard engine/vector.c),vec) $(if $(wildcard engine/map.c),map)
BENCH_DEFINES  := $(if $(filter vec,$(BENCH_FEATURES)),-DMSEG_BENCH_VEC) \
                  $(if $(filter map,$(BENCH_FEATURES)),-DMSEG_BENCH_MAP)
# A stamp named after the feature set: when vector.c or map.c appears, the
# stamp's name changes and mseg-bench is rebuilt with the new -D flags.
BENCH_EMPTY    :=
BENCH_STAMP    := $(BENCH_DIR)/.features$(subst $(BENCH_EMPTY) $(BENCH_EMPTY),,$(addprefix -,$(BENCH_FEATURES)))

BENCH_BINS := $(BENCH_DIR)/mseg-bench $(BENCH_DIR)/peer-malloc \
              $(if $(BENCH_HAVE_BOOST),$(BENCH_DIR)/peer-boost) \
              $(if $(BENCH_HAVE_PMEMOBJ),$(BENCH_DIR)/peer-pmemobj) \
              $(if $(BENCH_HAVE_LMDB),$(BENCH_DIR)/peer-lmdb)

BENCH_PACKAGES := libboost-dev libpmemobj-dev liblmdb-dev gnuplot-nox

.PHONY: bench bench-build bench-deps

bench: bench-build
	@BENCH_DIR=$(BENCH_DIR) REPS=$(or $(REPS),$(if $(filter 1,$(QUICK)),1,3)) QUICK=$(or $(QUICK),0) \
	    BACKENDS="$(or $(BACKENDS),file)" SCALE=$(or $(SCALE),1) PIN=$(PIN) \
	    bash benchmarks/run_bench.sh

bench-build: $(BENCH_BINS)

$(BENCH_STAMP):
	@mkdir -p $(@D)
	rm -f $(BENCH_DIR)/.features*
	touch $@

$(BENCH_DIR)/mseg-bench: benchmarks/mseg_bench.c benchmarks/common.h benchmarks/scale.h include/mseg.h $(STATIC_LIB) $(BENCH_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) $(BENCH_DEFINES) -o $@ $< $(STATIC_LIB) $(LDLIBS)

$(BENCH_DIR)/peer-malloc: benchmarks/peer_malloc.cc benchmarks/common.h
	@mkdir -p $(@D)
	$(CXX) $(BENCH_CXXFLAGS) -o $@ $<

$(BENCH_DIR)/peer-boost: benchmarks/peer_boost.cc benchmarks/common.h benchmarks/scale.h
	@mkdir -p $(@D)
	$(CXX) $(BENCH_CXXFLAGS) -o $@ $< -lrt

$(BENCH_DIR)/peer-pmemobj: benchmarks/peer_pmemobj.c benchmarks/common.h
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lpmemobj

$(BENCH_DIR)/peer-lmdb: benchmarks/peer_lmdb.c benchmarks/common.h
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -llmdb

# As root, install the peers; otherwise print the one line to run.
bench-deps:
	@if [ "$$(id -u)" -eq 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(BENCH_PACKAGES); \
	else \
	    echo "bench-deps: run as root:" >&2; \
	    echo "sudo apt-get install $(BENCH_PACKAGES)"; \
	fi
