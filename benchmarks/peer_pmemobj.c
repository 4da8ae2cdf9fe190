/*
 * peer_pmemobj.c - peer-pmemobj: the workloads of WORKLOADS.md that
 * libpmemobj (PMDK) does naturally, on a 1 GiB pool in a regular file
 * ($TMPDIR; the shm backend puts the file in /dev/shm).
 *
 *   alloc, churn  pmemobj_alloc / pmemobj_free (each atomic on its own);
 *                 used_bytes is the pool's stats.heap.curr_allocated
 *   named         a fixed-size chained hash hanging off the root object;
 *                 construct and destroy are one transaction each, find
 *                 walks the chain (no transaction)
 *   durable       one transaction per commit inserting key -> i into a
 *                 hash of the same kind
 *   skipped       vector, map, reopen: the C API has no vector or ordered
 *                 map (libpmemobj-cpp has them, but is not packaged here)
 *
 * On a regular file, PMDK persists with msync, thousands of times slower
 * than mseg's non-durable mode, which only stores. For every workload but
 * durable the runner re-executes itself with PMEM_IS_PMEM_FORCE=1, so PMDK
 * persists with cache-line flushes: crash-atomic for a process crash, like
 * mseg without MSEG_DURABLE (extra: pmem_force=1). durable runs without it:
 * real msync-backed transactions.
 */
#include <libpmemobj.h>

#include "common.h"

#define IMPL "pmemobj"

/* ---- the pool ---------------------------------------------------------------- */

struct pool {
    char path[256];
    PMEMobjpool *pop;
};

static void pool_create(struct pool *p, const struct args *a)
{
    seg_path(p->path, sizeof p->path, IMPL, a->shm);
    unlink(p->path);
    p->pop = pmemobj_create(p->path, "mseg-bench", BENCH_SEGMENT_SIZE, 0600);
    CHECK(p->pop, "pmemobj_create(%s): %s", p->path, pmemobj_errormsg());
    int enabled = POBJ_STATS_ENABLED_BOTH; /* curr_allocated is a persistent stat */
    CHECK(pmemobj_ctl_set(p->pop, "stats.enabled", &enabled) == 0, "stats.enabled: %s", pmemobj_errormsg());
}

static void pool_destroy(struct pool *p)
{
    pmemobj_close(p->pop);
    unlink(p->path);
}

static uint64_t pool_allocated(struct pool *p)
{
    uint64_t v = 0;
    CHECK(pmemobj_ctl_get(p->pop, "stats.heap.curr_allocated", &v) == 0,
          "stats.heap.curr_allocated: %s", pmemobj_errormsg());
    return v;
}

static PMEMoid alloc_oid(struct pool *p, size_t size)
{
    PMEMoid oid;
    if (pmemobj_alloc(p->pop, &oid, size, 0, NULL, NULL) != 0)
        die("pmemobj_alloc(%zu): %s", size, pmemobj_errormsg());
    return oid;
}

/* ---- alloc: N allocations of 16..256 bytes, free shuffled ---- */

static int wl_alloc(const struct args *a)
{
    uint64_t n = workload_n(a), requested = 0, sum = 0;
    struct rng r = rng_seeded(42);
    size_t *sizes = xcalloc(n, sizeof *sizes);
    PMEMoid *oid = xcalloc(n, sizeof *oid);
    struct pool p;
    char extra[160];

    for (uint64_t i = 0; i < n; i++)
        requested += sizes[i] = (size_t)rand_range(&r, 16, 256);
    pool_create(&p, a);
    uint64_t before = pool_allocated(&p);

    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++) {
        oid[i] = alloc_oid(&p, sizes[i]);
        *(uint64_t *)pmemobj_direct(oid[i]) = i;
    }
    double t1 = now_sec();

    uint64_t used = pool_allocated(&p) - before;
    for (uint64_t i = 0; i < n; i++)
        sum += *(uint64_t *)pmemobj_direct(oid[i]);
    CHECK(sum == n * (n - 1) / 2, "alloc: wrong sum of first words");
    /* Shuffle the handles exactly as the others shuffle pointers. */
    for (uint64_t i = n; i-- > 1;) {
        uint64_t j = rng_next(&r) % (i + 1);
        PMEMoid t = oid[i]; oid[i] = oid[j]; oid[j] = t;
    }

    double t2 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        pmemobj_free(&oid[i]);
    double t3 = now_sec();
    CHECK(pool_allocated(&p) == before, "free: %llu bytes still allocated",
          (unsigned long long)(pool_allocated(&p) - before));

    snprintf(extra, sizeof extra, "used_bytes=%llu;requested_bytes=%llu;pmem_force=1",
             (unsigned long long)used, (unsigned long long)requested);
    emit(a, IMPL, "alloc", n, t1 - t0, extra);
    emit(a, IMPL, "free", n, t3 - t2, "pmem_force=1");
    pool_destroy(&p);
    free(sizes);
    free(oid);
    return 0;
}

/* ---- churn: 100,000 live objects, N free+alloc steps of mixed sizes ---- */

#define CHURN_LIVE 100000

static int wl_churn(const struct args *a)
{
    uint64_t n = workload_n(a), live = 0;
    struct rng r = rng_seeded(42);
    PMEMoid *oid = xcalloc(CHURN_LIVE, sizeof *oid);
    size_t *sz = xcalloc(CHURN_LIVE, sizeof *sz);
    uint64_t *tag = xcalloc(CHURN_LIVE, sizeof *tag);
    struct pool p;
    char extra[160];

    pool_create(&p, a);
    for (uint64_t i = 0; i < CHURN_LIVE; i++) {
        sz[i] = churn_size(&r);
        oid[i] = alloc_oid(&p, sz[i]);
        *(uint64_t *)pmemobj_direct(oid[i]) = tag[i] = i;
    }

    double t0 = now_sec();
    for (uint64_t step = 0; step < n; step++) {
        size_t k = (size_t)rand_range(&r, 0, CHURN_LIVE - 1);
        pmemobj_free(&oid[k]);
        sz[k] = churn_size(&r);
        oid[k] = alloc_oid(&p, sz[k]);
        *(uint64_t *)pmemobj_direct(oid[k]) = tag[k] = CHURN_LIVE + step;
    }
    double t1 = now_sec();

    for (uint64_t i = 0; i < CHURN_LIVE; i++) {
        CHECK(*(uint64_t *)pmemobj_direct(oid[i]) == tag[i], "churn: object %llu overwritten",
              (unsigned long long)i);
        live += sz[i];
    }
    snprintf(extra, sizeof extra, "used_bytes=%llu;live_bytes=%llu;pmem_force=1",
             (unsigned long long)pool_allocated(&p), (unsigned long long)live);
    emit(a, IMPL, "churn", n, t1 - t0, extra);
    pool_destroy(&p);
    free(oid);
    free(sz);
    free(tag);
    return 0;
}

/* ---- a simple persistent hash: root -> bucket array -> chains ---- */

struct entry {
    PMEMoid next;
    uint64_t key;            /* u64 key, or the name's hash */
    uint64_t value;
    char name[NAME_LEN];     /* "" for u64 keys */
};

struct root {
    uint64_t nbuckets;       /* a power of two */
    PMEMoid buckets;         /* nbuckets PMEMoid chain heads */
};

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;  /* FNV-1a */
    while (*s)
        h = (h ^ (uint8_t)*s++) * 0x100000001b3ull;
    return h;
}

/* Makes the root's bucket array of at least n buckets (not timed). */
static struct root *hash_create(struct pool *p, uint64_t n)
{
    PMEMoid roid = pmemobj_root(p->pop, sizeof(struct root));
    struct root *rt = pmemobj_direct(roid);
    uint64_t nb = 1;
    while (nb < n)
        nb <<= 1;
    TX_BEGIN(p->pop) {
        pmemobj_tx_add_range(roid, 0, sizeof *rt);
        rt->buckets = pmemobj_tx_zalloc(nb * sizeof(PMEMoid), 0);
        rt->nbuckets = nb;
    } TX_ONABORT {
        die("hash_create: %s", pmemobj_errormsg());
    } TX_END
    return rt;
}

static PMEMoid *bucket(struct root *rt, uint64_t key)
{
    PMEMoid *b = pmemobj_direct(rt->buckets);
    return &b[(key * 0x9e3779b97f4a7c15ull) >> 32 & (rt->nbuckets - 1)];
}

/* Inserts a new entry at the head of its chain, in one transaction. */
static void hash_insert(struct pool *p, struct root *rt, uint64_t key, const char *name, uint64_t value)
{
    PMEMoid *head = bucket(rt, key);
    TX_BEGIN(p->pop) {
        PMEMoid eoid = pmemobj_tx_alloc(sizeof(struct entry), 1);
        struct entry *e = pmemobj_direct(eoid);
        e->next = *head;
        e->key = key;
        e->value = value;
        snprintf(e->name, NAME_LEN, "%s", name);
        pmemobj_tx_add_range_direct(head, sizeof *head);
        *head = eoid;
    } TX_ONABORT {
        die("hash_insert(%s): %s", name, pmemobj_errormsg());
    } TX_END
}

static int entry_is(const struct entry *e, uint64_t key, const char *name)
{
    return e->key == key && !strcmp(e->name, name);
}

static struct entry *hash_find(struct root *rt, uint64_t key, const char *name)
{
    for (PMEMoid o = *bucket(rt, key); !OID_IS_NULL(o);) {
        struct entry *e = pmemobj_direct(o);
        if (entry_is(e, key, name))
            return e;
        o = e->next;
    }
    return NULL;
}

/* Unlinks and frees the entry, in one transaction; 0, or -1 if absent. */
static int hash_remove(struct pool *p, struct root *rt, uint64_t key, const char *name)
{
    PMEMoid *link = bucket(rt, key);
    while (!OID_IS_NULL(*link) && !entry_is(pmemobj_direct(*link), key, name))
        link = &((struct entry *)pmemobj_direct(*link))->next;
    if (OID_IS_NULL(*link))
        return -1;
    TX_BEGIN(p->pop) {
        PMEMoid victim = *link;
        pmemobj_tx_add_range_direct(link, sizeof *link);
        *link = ((struct entry *)pmemobj_direct(victim))->next;
        pmemobj_tx_free(victim);
    } TX_ONABORT {
        die("hash_remove(%s): %s", name, pmemobj_errormsg());
    } TX_END
    return 0;
}

static uint64_t hash_count(struct root *rt)
{
    uint64_t count = 0;
    PMEMoid *b = pmemobj_direct(rt->buckets);
    for (uint64_t i = 0; i < rt->nbuckets; i++)
        for (PMEMoid o = b[i]; !OID_IS_NULL(o); o = ((struct entry *)pmemobj_direct(o))->next)
            count++;
    return count;
}

/* ---- named: construct N "obj-<i>", find shuffled, destroy shuffled ---- */

static int wl_named(const struct args *a)
{
    uint64_t n = workload_n(a);
    struct rng r = rng_seeded(42);
    char *names = make_names(n);
    uint64_t *order = make_iota(n);
    struct pool p;

    pool_create(&p, a);
    struct root *rt = hash_create(&p, n);
    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++) {
        const char *nm = names + i * NAME_LEN;
        CHECK(!hash_find(rt, name_hash(nm), nm), "construct: %s exists", nm);
        hash_insert(&p, rt, name_hash(nm), nm, i);
    }
    double t1 = now_sec();

    shuffle_u64(&r, order, n);
    char *probe = names_in_order(names, order, n);
    double t2 = now_sec();
    for (uint64_t i = 0; i < n; i++) {
        const char *nm = probe + i * NAME_LEN;
        struct entry *e = hash_find(rt, name_hash(nm), nm);
        if (!e || e->value != order[i])
            die("find(%s) failed", nm);
    }
    double t3 = now_sec();

    shuffle_u64(&r, order, n);
    free(probe);
    probe = names_in_order(names, order, n);
    double t4 = now_sec();
    for (uint64_t i = 0; i < n; i++) {
        const char *nm = probe + i * NAME_LEN;
        if (hash_remove(&p, rt, name_hash(nm), nm) != 0)
            die("destroy(%s): absent", nm);
    }
    double t5 = now_sec();
    free(probe);
    CHECK(hash_count(rt) == 0, "named: %llu objects left", (unsigned long long)hash_count(rt));

    emit(a, IMPL, "construct", n, t1 - t0, "pmem_force=1;tx_per_op=1");
    emit(a, IMPL, "find", n, t3 - t2, "pmem_force=1");
    emit(a, IMPL, "destroy", n, t5 - t4, "pmem_force=1;tx_per_op=1");
    pool_destroy(&p);
    free(names);
    free(order);
    return 0;
}

/* ---- durable: N transactions, each inserting key -> i (msync-backed) ---- */

static int wl_durable(const struct args *a)
{
    uint64_t n = workload_n(a);
    struct rng r = rng_seeded(42);
    struct pool p;

    if (a->shm)
        return skip(IMPL, "durable", "durability on the shm backend means nothing");
    pool_create(&p, a);
    struct root *rt = hash_create(&p, n);
    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        hash_insert(&p, rt, rng_next(&r), "", i);
    double t1 = now_sec();
    CHECK(hash_count(rt) == n, "durable: %llu entries", (unsigned long long)hash_count(rt));
    emit(a, IMPL, "commit", n, t1 - t0, "op=tx_hash_insert;pmem_force=0");
    pool_destroy(&p);
    return 0;
}

/* Re-executes with PMEM_IS_PMEM_FORCE=1 (see the top of the file). */
static void force_pmem(char **argv)
{
    if (getenv("PMEM_IS_PMEM_FORCE"))
        return;
    setenv("PMEM_IS_PMEM_FORCE", "1", 1);
    execv("/proc/self/exe", argv);
    die("execv: %s", strerror(errno));
}

int main(int argc, char **argv)
{
    struct args a = parse_args(argc, argv);
    if (!strcmp(a.workload, "durable")) {
        CHECK(!getenv("PMEM_IS_PMEM_FORCE"), "durable: unset PMEM_IS_PMEM_FORCE");
        return wl_durable(&a);
    }
    if (strcmp(a.workload, "alloc") && strcmp(a.workload, "churn") && strcmp(a.workload, "named"))
        return skip(IMPL, a.workload, "no vector or ordered map in libpmemobj's C API");
    force_pmem(argv);
    if (!strcmp(a.workload, "alloc"))
        return wl_alloc(&a);
    if (!strcmp(a.workload, "churn"))
        return wl_churn(&a);
    return wl_named(&a);
}
