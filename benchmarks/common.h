/*
 * common.h - what every benchmark runner shares: the random numbers of
 * WORKLOADS.md (splitmix64, rand_range, Fisher-Yates), the timer, the
 * command line, segment names, the CSV row and the failure exit.
 *
 * Header-only (static functions), so each runner is one translation unit;
 * the C++ runners include it too.
 */
#ifndef MSEG_BENCH_COMMON_H
#define MSEG_BENCH_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BENCH_GIB (1024ull * 1024 * 1024)
#define BENCH_SEGMENT_SIZE BENCH_GIB

/* ---- random numbers (WORKLOADS.md: splitmix64, seed 42) ---------------- */

struct rng { uint64_t state; };

static inline struct rng rng_seeded(uint64_t seed) { struct rng r = { seed }; return r; }

static inline uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* lo + next() % (hi - lo + 1), exactly as WORKLOADS.md draws it. */
static inline uint64_t rand_range(struct rng *r, uint64_t lo, uint64_t hi)
{
    return lo + rng_next(r) % (hi - lo + 1);
}

/* Fisher-Yates from the last index down, j = next() % (i + 1). */
static inline void shuffle_u64(struct rng *r, uint64_t *a, size_t n)
{
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)(rng_next(r) % (i + 1));
        uint64_t t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

static inline void shuffle_ptr(struct rng *r, void **a, size_t n)
{
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)(rng_next(r) % (i + 1));
        void *t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

/* The churn workload's size distribution: 90% small, 9% medium, 1% large. */
static inline size_t churn_size(struct rng *r)
{
    uint64_t p = rand_range(r, 1, 100);
    if (p <= 90)
        return (size_t)rand_range(r, 16, 256);
    if (p <= 99)
        return (size_t)rand_range(r, 257, 4096);
    return (size_t)rand_range(r, 4097, 65536);
}

/* ---- timing ---------------------------------------------------------------- */

static inline double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- failure ---------------------------------------------------------------- */

static inline void remove_own_segments(void);

/* A wrong result is not a figure: report, remove this process's segment
   (a runner started by hand has no driver to clean up after it), and exit
   non-zero. */
static inline void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    remove_own_segments();
    exit(1);
}

#define CHECK(cond, ...) do { if (!(cond)) die(__VA_ARGS__); } while (0)

/* Allocates n bytes of the runner's own bookkeeping (never timed). */
static inline void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    CHECK(p != NULL, "out of memory for %zu x %zu bytes", n, size);
    return p;
}

/* A workload this runner cannot do naturally: no row, exit 0. */
static inline int skip(const char *impl, const char *workload, const char *why)
{
    fprintf(stderr, "%s: %s: skipped: %s\n", impl, workload, why);
    return 0;
}

/* ---- command line ------------------------------------------------------------- */

struct args {
    const char *workload;
    const char *backend;   /* "file" or "shm" */
    int shm;               /* backend is shm */
    uint64_t n;            /* 0: the workload's default N */
    unsigned procs;        /* scale workload: processes */
};

static inline void usage(const char *prog)
{
    fprintf(stderr, "usage: %s --workload W --backend file|shm [--n N] [--procs P]\n", prog);
    exit(2);
}

static inline struct args parse_args(int argc, char **argv)
{
    struct args a = { NULL, "file", 0, 0, 1 };
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage(argv[0]);
        if (!strcmp(argv[i], "--workload"))
            a.workload = argv[++i];
        else if (!strcmp(argv[i], "--backend"))
            a.backend = argv[++i];
        else if (!strcmp(argv[i], "--n"))
            a.n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--procs"))
            a.procs = (unsigned)strtoul(argv[++i], NULL, 10);
        else
            usage(argv[0]);
    }
    if (!a.workload || (strcmp(a.backend, "file") && strcmp(a.backend, "shm")) || a.procs < 1)
        usage(argv[0]);
    a.shm = !strcmp(a.backend, "shm");
    return a;
}

/* The N of WORKLOADS.md for a workload, or --n. */
static inline uint64_t workload_n(const struct args *a)
{
    static const struct { const char *name; uint64_t n; } dflt[] = {
        { "alloc", 1000000 }, { "churn", 1000000 }, { "named", 100000 },
        { "vector", 10000000 }, { "map", 1000000 }, { "reopen", 1000000 },
        { "durable", 2000 }, { "scale", 1000000 },
    };
    if (a->n)
        return a->n;
    for (size_t i = 0; i < sizeof dflt / sizeof dflt[0]; i++)
        if (!strcmp(dflt[i].name, a->workload))
            return dflt[i].n;
    return 0;
}

/* ---- segment names --------------------------------------------------------------- */

static inline const char *tmp_dir(void)
{
    const char *d = getenv("TMPDIR");
    return (d && *d) ? d : "/tmp";
}

/* A file path unique to this process: $TMPDIR/mseg-bench-<impl>-<pid>, or
   for peers that need a path even on the shm backend, /dev/shm/... */
static inline void seg_path(char *buf, size_t len, const char *impl, int in_dev_shm)
{
    snprintf(buf, len, "%s/mseg-bench-%s-%ld", in_dev_shm ? "/dev/shm" : tmp_dir(),
             impl, (long)getpid());
}

/* A POSIX shm name unique to this process: "/mseg-bench-<impl>-<pid>". */
static inline void shm_name(char *buf, size_t len, const char *impl)
{
    snprintf(buf, len, "/mseg-bench-%s-%ld", impl, (long)getpid());
}

/* Removes every file and shm object that seg_path and shm_name name for this
   process, whichever runner it is (the names run_bench.sh removes after a
   failed run). Absent names are not an error. */
static inline void remove_own_segments(void)
{
    static const char *const impls[] = { "mseg", "boost", "pmemobj", "lmdb" };
    char path[480], lock[500];
    for (size_t i = 0; i < sizeof impls / sizeof *impls; i++) {
        for (int in_dev_shm = 0; in_dev_shm <= 1; in_dev_shm++) {
            seg_path(path, sizeof path, impls[i], in_dev_shm);
            snprintf(lock, sizeof lock, "%s-lock", path);
            unlink(path);
            unlink(lock);
        }
        shm_name(path, sizeof path, impls[i]);
        shm_unlink(path);
    }
}

/* ---- names of the named workload ---------------------------------------------------- */

#define NAME_LEN 24

/* "obj-<i>" for i < n, in one array of NAME_LEN-byte strings, made before
   the timed phases so every runner times the engine, not snprintf. */
static inline char *make_names(uint64_t n)
{
    char *names = (char *)xcalloc(n, NAME_LEN);
    for (uint64_t i = 0; i < n; i++)
        snprintf(names + i * NAME_LEN, NAME_LEN, "obj-%llu", (unsigned long long)i);
    return names;
}

/*
 * The names or keys of order[0], order[1], ..., copied in that order, made
 * before a timed phase that visits them in shuffled order: the phase then
 * reads them sequentially, so the harness adds no cache miss of its own to
 * each operation. Reading names[order[i]] instead cost a miss a call in the
 * named phases (2.4 MB of names) and keys[order[i]] one in map lookups (8
 * MB of keys), the same for every implementation, which pulled every ratio
 * towards 1 (perf: a quarter of mseg's lookup phase was that one load).
 */
static inline char *names_in_order(const char *names, const uint64_t *order, uint64_t n)
{
    char *out = (char *)xcalloc(n, NAME_LEN);
    for (uint64_t i = 0; i < n; i++)
        memcpy(out + i * NAME_LEN, names + order[i] * NAME_LEN, NAME_LEN);
    return out;
}

static inline uint64_t *keys_in_order(const uint64_t *keys, const uint64_t *order, uint64_t n)
{
    uint64_t *out = (uint64_t *)xcalloc(n, sizeof *out);
    for (uint64_t i = 0; i < n; i++)
        out[i] = keys[order[i]];
    return out;
}

/* 0, 1, ..., n-1 */
static inline uint64_t *make_iota(uint64_t n)
{
    uint64_t *a = (uint64_t *)xcalloc(n, sizeof *a);
    for (uint64_t i = 0; i < n; i++)
        a[i] = i;
    return a;
}

/* ---- output ---------------------------------------------------------------------------- */

/* One CSV row: workload,impl,backend,phase,n,seconds,ops_per_sec,extra */
static inline void emit(const struct args *a, const char *impl, const char *phase,
                        uint64_t n, double seconds, const char *extra)
{
    double ops = seconds > 0 ? (double)n / seconds : 0;
    printf("%s,%s,%s,%s,%llu,%.6f,%.1f,%s\n", a->workload, impl, a->backend, phase,
           (unsigned long long)n, seconds, ops, extra ? extra : "");
    fflush(stdout);
}

#endif /* MSEG_BENCH_COMMON_H */
