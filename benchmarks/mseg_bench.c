/*
 * mseg_bench.c - mseg-bench: the workloads of WORKLOADS.md on mseg.
 *
 *   mseg-bench --workload W --backend file|shm [--n N] [--procs P]
 *
 * Prints the workload's CSV rows (no header) and exits non-zero when a
 * result is wrong. Each workload runs on a fresh 1 GiB segment that is
 * removed afterwards; only the phases are timed.
 *
 * The vector and map workloads (and durable's map) are compiled only when
 * the library has them: bench.mk passes -DMSEG_BENCH_VEC / -DMSEG_BENCH_MAP
 * when engine/vector.c / engine/map.c exist. Without them, or when a call
 * fails with ENOSYS, the workload prints "skipped: not implemented" on
 * stderr, no row, and exits 0.
 */
#include <errno.h>

#include "common.h"
#include "mseg.h"
#include "scale.h"

#define IMPL "mseg"

/* ---- the segment ------------------------------------------------------------ */

struct seg {
    char name[256];
    unsigned flags;      /* 0 or MSEG_SHM (plus MSEG_DURABLE for durable) */
    mseg *s;
};

/* Creates a fresh 1 GiB segment for this workload. */
static void seg_create(struct seg *g, const struct args *a, unsigned extra_flags)
{
    struct mseg_config cfg = { .size = BENCH_SEGMENT_SIZE, .max_size = 0, .mode = 0600 };
    g->flags = (a->shm ? MSEG_SHM : 0) | extra_flags;
    if (a->shm)
        shm_name(g->name, sizeof g->name, IMPL);
    else
        seg_path(g->name, sizeof g->name, IMPL, 0);
    mseg_remove(g->name, g->flags & MSEG_SHM);
    g->s = mseg_open(g->name, g->flags | MSEG_CREATE | MSEG_EXCL, &cfg);
    CHECK(g->s, "mseg_open(%s): %s", g->name, mseg_errmsg());
}

static void seg_close(struct seg *g)
{
    CHECK(mseg_close(g->s) == 0, "mseg_close: %s", mseg_errmsg());
    g->s = NULL;
}

static void seg_reopen(struct seg *g)
{
    g->s = mseg_open(g->name, g->flags, NULL);
    CHECK(g->s, "mseg_open(%s) again: %s", g->name, mseg_errmsg());
}

static void seg_destroy(struct seg *g)
{
    if (g->s)
        seg_close(g);
    mseg_remove(g->name, g->flags & MSEG_SHM);
}

/* Bytes of the segment in use: its size minus what the allocator can hand out. */
static uint64_t seg_used(struct seg *g)
{
    return (uint64_t)mseg_size(g->s) - (uint64_t)mseg_free_memory(g->s);
}

/* ---- alloc: N raw allocations of 16..256 bytes, then free them shuffled ---- */

static int wl_alloc(const struct args *a)
{
    uint64_t n = workload_n(a), requested = 0, sum = 0;
    struct rng r = rng_seeded(42);
    size_t *sizes = xcalloc(n, sizeof *sizes);
    void **p = xcalloc(n, sizeof *p);
    struct seg g;
    char extra[128];

    for (uint64_t i = 0; i < n; i++)
        requested += sizes[i] = (size_t)rand_range(&r, 16, 256);
    seg_create(&g, a, 0);
    size_t free_before = mseg_free_memory(g.s);

    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++) {
        p[i] = mseg_alloc(g.s, sizes[i]);
        if (!p[i])
            die("mseg_alloc(%zu) #%llu: %s", sizes[i], (unsigned long long)i, mseg_errmsg());
        *(uint64_t *)p[i] = i;
    }
    double t1 = now_sec();

    uint64_t used = seg_used(&g);
    for (uint64_t i = 0; i < n; i++)
        sum += *(uint64_t *)p[i];
    CHECK(sum == n * (n - 1) / 2, "alloc: sum of first words %llu, expected %llu",
          (unsigned long long)sum, (unsigned long long)(n * (n - 1) / 2));
    shuffle_ptr(&r, p, n);

    double t2 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        if (mseg_free(g.s, p[i]) != 0)
            die("mseg_free #%llu: %s", (unsigned long long)i, mseg_errmsg());
    double t3 = now_sec();

    CHECK(mseg_free_memory(g.s) == free_before, "free: %zu bytes free after, %zu before",
          mseg_free_memory(g.s), free_before);
    snprintf(extra, sizeof extra, "used_bytes=%llu;requested_bytes=%llu",
             (unsigned long long)used, (unsigned long long)requested);
    emit(a, IMPL, "alloc", n, t1 - t0, extra);
    emit(a, IMPL, "free", n, t3 - t2, "");
    seg_destroy(&g);
    free(sizes);
    free(p);
    return 0;
}

/* ---- churn: 100,000 live objects, N free+alloc steps of mixed sizes ---- */

#define CHURN_LIVE 100000

static int wl_churn(const struct args *a)
{
    uint64_t n = workload_n(a), live = 0;
    struct rng r = rng_seeded(42);
    void **p = xcalloc(CHURN_LIVE, sizeof *p);
    size_t *sz = xcalloc(CHURN_LIVE, sizeof *sz);
    uint64_t *tag = xcalloc(CHURN_LIVE, sizeof *tag);
    struct seg g;
    char extra[128];

    seg_create(&g, a, 0);
    for (uint64_t i = 0; i < CHURN_LIVE; i++) {
        sz[i] = churn_size(&r);
        p[i] = mseg_alloc(g.s, sz[i]);
        CHECK(p[i], "churn: initial mseg_alloc(%zu): %s", sz[i], mseg_errmsg());
        *(uint64_t *)p[i] = tag[i] = i;
    }

    double t0 = now_sec();
    for (uint64_t step = 0; step < n; step++) {
        size_t k = (size_t)rand_range(&r, 0, CHURN_LIVE - 1);
        if (mseg_free(g.s, p[k]) != 0)
            die("churn: mseg_free: %s", mseg_errmsg());
        sz[k] = churn_size(&r);
        p[k] = mseg_alloc(g.s, sz[k]);
        if (!p[k])
            die("churn: mseg_alloc(%zu) step %llu: %s", sz[k], (unsigned long long)step, mseg_errmsg());
        *(uint64_t *)p[k] = tag[k] = CHURN_LIVE + step;
    }
    double t1 = now_sec();

    for (uint64_t i = 0; i < CHURN_LIVE; i++) {
        CHECK(*(uint64_t *)p[i] == tag[i], "churn: object %llu overwritten", (unsigned long long)i);
        live += sz[i];
    }
    snprintf(extra, sizeof extra, "used_bytes=%llu;live_bytes=%llu",
             (unsigned long long)seg_used(&g),
             (unsigned long long)live);
    emit(a, IMPL, "churn", n, t1 - t0, extra);
    seg_destroy(&g);
    free(p);
    free(sz);
    free(tag);
    return 0;
}

/* ---- named: construct N objects "obj-<i>", find them shuffled, destroy ---- */

static int wl_named(const struct args *a)
{
    uint64_t n = workload_n(a);
    struct rng r = rng_seeded(42);
    char *names = make_names(n);
    uint64_t *order = make_iota(n);
    struct seg g;

    seg_create(&g, a, 0);
    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        if (!mseg_construct(g.s, names + i * NAME_LEN, "uint64_t", 8, 1, &i))
            die("mseg_construct(%s): %s", names + i * NAME_LEN, mseg_errmsg());
    double t1 = now_sec();

    shuffle_u64(&r, order, n);
    char *probe = names_in_order(names, order, n);
    double t2 = now_sec();
    for (uint64_t i = 0; i < n; i++) {
        const char *nm = probe + i * NAME_LEN;
        size_t count = 0;
        uint64_t *v = mseg_find(g.s, nm, "uint64_t", 8, &count);
        if (!v || count != 1 || *v != order[i])
            die("mseg_find(%s): %s", nm, v ? "wrong value" : mseg_errmsg());
    }
    double t3 = now_sec();

    shuffle_u64(&r, order, n);
    free(probe);
    probe = names_in_order(names, order, n);
    double t4 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        if (mseg_destroy(g.s, probe + i * NAME_LEN) != 0)
            die("mseg_destroy(%s): %s", probe + i * NAME_LEN, mseg_errmsg());
    double t5 = now_sec();
    free(probe);

    CHECK(mseg_named_count(g.s) == 0, "named: %zu objects left", mseg_named_count(g.s));
    emit(a, IMPL, "construct", n, t1 - t0, "");
    emit(a, IMPL, "find", n, t3 - t2, "");
    emit(a, IMPL, "destroy", n, t5 - t4, "");
    seg_destroy(&g);
    free(names);
    free(order);
    return 0;
}

/* ---- vector: push N uint64, scan, reopen and scan again ---- */

#ifdef MSEG_BENCH_VEC
static uint64_t vec_sum(struct seg *g, mseg_vec *v)
{
    const uint64_t *d = mseg_vec_data(g->s, v);
    size_t len = mseg_vec_len(g->s, v);
    uint64_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += d[i];
    return sum;
}

static int wl_vector(const struct args *a)
{
    uint64_t n = workload_n(a), want = n * (n - 1) / 2;
    struct seg g;

    seg_create(&g, a, 0);
    mseg_vec *v = mseg_vec_open(g.s, "vec", 8, MSEG_CREATE);
    if (!v && errno == ENOSYS) {
        seg_destroy(&g);
        return skip(IMPL, "vector", "not implemented (mseg_vec_open: ENOSYS)");
    }
    CHECK(v, "mseg_vec_open: %s", mseg_errmsg());

    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        if (mseg_vec_push(g.s, v, &i) != 0)
            die("mseg_vec_push #%llu: %s", (unsigned long long)i, mseg_errmsg());
    double t1 = now_sec();
    uint64_t sum = vec_sum(&g, v);
    double t2 = now_sec();
    CHECK(sum == want && mseg_vec_len(g.s, v) == n, "vector: sum %llu, expected %llu",
          (unsigned long long)sum, (unsigned long long)want);

    seg_close(&g);
    double t3 = now_sec();
    seg_reopen(&g);
    v = mseg_vec_open(g.s, "vec", 8, 0);
    CHECK(v, "mseg_vec_open after reopen: %s", mseg_errmsg());
    sum = vec_sum(&g, v);
    double t4 = now_sec();
    CHECK(sum == want, "vector after reopen: sum %llu, expected %llu",
          (unsigned long long)sum, (unsigned long long)want);

    emit(a, IMPL, "push", n, t1 - t0, "");
    emit(a, IMPL, "scan", n, t2 - t1, "");
    emit(a, IMPL, "reopen_scan", n, t4 - t3, "");
    seg_destroy(&g);
    return 0;
}
#else
static int wl_vector(const struct args *a)
{
    (void)a;
    return skip(IMPL, "vector", "not implemented (no engine/vector.c when built)");
}
#endif

/* ---- map: N random u64 keys -> i; lookup shuffled; iterate in order ---- */

#ifdef MSEG_BENCH_MAP
static uint64_t *make_keys(struct rng *r, uint64_t n)
{
    uint64_t *keys = xcalloc(n, sizeof *keys);
    for (uint64_t i = 0; i < n; i++)
        keys[i] = rng_next(r);
    return keys;
}

/* Opens (creates) "map"; NULL when the library says ENOSYS. */
static mseg_map *map_open(struct seg *g, unsigned flags)
{
    mseg_map *m = mseg_map_open(g->s, "map", MSEG_KEY_U64, 8, flags);
    if (!m && errno == ENOSYS)
        return NULL;
    CHECK(m, "mseg_map_open: %s", mseg_errmsg());
    return m;
}

static void map_fill(struct seg *g, mseg_map *m, const uint64_t *keys, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (mseg_map_put(g->s, m, &keys[i], 8, &i, 8) != 0)
            die("mseg_map_put #%llu: %s", (unsigned long long)i, mseg_errmsg());
}

/* Checks that key maps to i. */
static void map_check_get(struct seg *g, mseg_map *m, uint64_t key, uint64_t i)
{
    size_t vlen = 0;
    const uint64_t *v = mseg_map_get(g->s, m, &key, 8, &vlen);
    if (!v || vlen != 8 || *v != i)
        die("mseg_map_get(key #%llu): %s", (unsigned long long)i, v ? "wrong value" : mseg_errmsg());
}

/* Walks the map in key order; returns the count, dies if keys do not ascend. */
static uint64_t map_walk(struct seg *g, mseg_map *m)
{
    struct mseg_cursor c;
    uint64_t count = 0, prev = 0;
    for (int rc = mseg_map_first(g->s, m, &c); rc == 0; rc = mseg_map_next(g->s, &c)) {
        uint64_t k;
        memcpy(&k, c.key, 8);
        CHECK(count == 0 || k > prev, "map: keys do not ascend at #%llu", (unsigned long long)count);
        prev = k;
        count++;
    }
    return count;
}

static int wl_map(const struct args *a)
{
    uint64_t n = workload_n(a);
    struct rng r = rng_seeded(42);
    uint64_t *keys = make_keys(&r, n), *order = make_iota(n);
    struct seg g;

    seg_create(&g, a, 0);
    mseg_map *m = map_open(&g, MSEG_CREATE);
    if (!m) {
        seg_destroy(&g);
        return skip(IMPL, "map", "not implemented (mseg_map_open: ENOSYS)");
    }
    double t0 = now_sec();
    map_fill(&g, m, keys, n);
    double t1 = now_sec();
    CHECK(mseg_map_len(g.s, m) == n, "map: %zu entries, expected %llu",
          mseg_map_len(g.s, m), (unsigned long long)n);

    shuffle_u64(&r, order, n);
    uint64_t *probe = keys_in_order(keys, order, n);
    double t2 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        map_check_get(&g, m, probe[i], order[i]);
    double t3 = now_sec();
    uint64_t count = map_walk(&g, m);
    double t4 = now_sec();
    CHECK(count == n, "map: iterated %llu entries, expected %llu",
          (unsigned long long)count, (unsigned long long)n);

    emit(a, IMPL, "insert", n, t1 - t0, "");
    emit(a, IMPL, "lookup", n, t3 - t2, "");
    emit(a, IMPL, "iterate", n, t4 - t3, "");
    seg_destroy(&g);
    free(keys);
    free(probe);
    free(order);
    return 0;
}

/* ---- reopen: after building the N-entry map, time open + find + one get ---- */

static int wl_reopen(const struct args *a)
{
    uint64_t n = workload_n(a);
    struct rng r = rng_seeded(42);
    uint64_t *keys = make_keys(&r, n);
    struct seg g;
    char extra[96];

    seg_create(&g, a, 0);
    mseg_map *m = map_open(&g, MSEG_CREATE);
    if (!m) {
        seg_destroy(&g);
        return skip(IMPL, "reopen", "not implemented (mseg_map_open: ENOSYS)");
    }
    map_fill(&g, m, keys, n);
    seg_close(&g);

    double t0 = now_sec();
    seg_reopen(&g);
    m = map_open(&g, 0);
    map_check_get(&g, m, keys[0], 0);
    double t1 = now_sec();

    snprintf(extra, sizeof extra, "us=%.1f;entries=%llu", (t1 - t0) * 1e6, (unsigned long long)n);
    emit(a, IMPL, "reopen", 1, t1 - t0, extra);
    seg_destroy(&g);
    free(keys);
    return 0;
}
#else
static int wl_map(const struct args *a)
{
    (void)a;
    return skip(IMPL, "map", "not implemented (no engine/map.c when built)");
}

static int wl_reopen(const struct args *a)
{
    (void)a;
    return skip(IMPL, "reopen", "not implemented (no engine/map.c when built)");
}
#endif

/* ---- durable: N commits, each on disk before it returns (MSEG_DURABLE) ---- */

/* One durable commit: a map put, or (without the map) the construction of
   a small named object "d-<i>". */
#ifdef MSEG_BENCH_MAP
#define DURABLE_OP "op=map_put"
static void *durable_target(struct seg *g) { return map_open(g, MSEG_CREATE); }

static void durable_commit(struct seg *g, void *m, uint64_t key, uint64_t i)
{
    if (mseg_map_put(g->s, m, &key, 8, &i, 8) != 0)
        die("durable: mseg_map_put #%llu: %s", (unsigned long long)i, mseg_errmsg());
}

static uint64_t durable_count(struct seg *g)
{
    mseg_map *m = map_open(g, 0);
    return m ? mseg_map_len(g->s, m) : 0;
}
#else
#define DURABLE_OP "op=construct_named_u64"
static void *durable_target(struct seg *g) { return g; }

static void durable_commit(struct seg *g, void *m, uint64_t key, uint64_t i)
{
    char name[32];
    (void)m;
    (void)key;
    snprintf(name, sizeof name, "d-%llu", (unsigned long long)i);
    if (!mseg_construct(g->s, name, "uint64_t", 8, 1, &i))
        die("durable: mseg_construct(%s): %s", name, mseg_errmsg());
}

static uint64_t durable_count(struct seg *g) { return mseg_named_count(g->s); }
#endif

static int wl_durable(const struct args *a)
{
    uint64_t n = workload_n(a);
    struct rng r = rng_seeded(42);
    struct seg g;

    if (a->shm)
        return skip(IMPL, "durable", "durability on the shm backend means nothing");
    seg_create(&g, a, MSEG_DURABLE);
    void *target = durable_target(&g);
    if (!target) {
        seg_destroy(&g);
        return skip(IMPL, "durable", "not implemented (mseg_map_open: ENOSYS)");
    }
    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        durable_commit(&g, target, rng_next(&r), i);
    double t1 = now_sec();

    seg_close(&g);
    seg_reopen(&g);
    CHECK(durable_count(&g) == n, "durable: %llu entries after reopen, expected %llu",
          (unsigned long long)durable_count(&g), (unsigned long long)n);
    emit(a, IMPL, "commit", n, t1 - t0, DURABLE_OP);
    seg_destroy(&g);
    return 0;
}

/* ---- scale: P processes at once on one shm segment (scale.h) ---- */

struct scale_seg { const char *name; unsigned flags; };

static void *scale_open(void *ctx)
{
    const struct scale_seg *g = ctx;
    mseg *s = mseg_open(g->name, g->flags, NULL);
    CHECK(s, "scale: mseg_open: %s", mseg_errmsg());
    return s;
}

static void *scale_alloc(void *s, size_t bytes)
{
    void *p = mseg_alloc(s, bytes);
    CHECK(p, "scale: mseg_alloc(%zu): %s", bytes, mseg_errmsg());
    return p;
}

static void scale_release(void *s, void *p)
{
    CHECK(mseg_free(s, p) == 0, "scale: mseg_free: %s", mseg_errmsg());
}

static void scale_close(void *s)
{
    CHECK(mseg_close(s) == 0, "scale: mseg_close: %s", mseg_errmsg());
}

static int wl_scale(const struct args *a)
{
    uint64_t n = workload_n(a);
    struct seg g;

    seg_create(&g, a, 0);
    seg_close(&g); /* the children open it themselves */
    struct scale_seg where = { g.name, g.flags };
    struct scale_ops ops = { scale_open, scale_alloc, scale_release, scale_close, &where };
    double secs = scale_run(&ops, a->procs, n);
    scale_emit(a, IMPL, n, secs);
    seg_destroy(&g);
    return 0;
}

/* ---- main ---------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct { const char *name; int (*fn)(const struct args *); } wl[] = {
        { "alloc", wl_alloc }, { "churn", wl_churn }, { "named", wl_named },
        { "vector", wl_vector }, { "map", wl_map }, { "reopen", wl_reopen },
        { "durable", wl_durable }, { "scale", wl_scale },
    };
    struct args a = parse_args(argc, argv);
    for (size_t i = 0; i < sizeof wl / sizeof wl[0]; i++)
        if (!strcmp(wl[i].name, a.workload))
            return wl[i].fn(&a);
    fprintf(stderr, "mseg-bench: unknown workload %s\n", a.workload);
    return 2;
}
