/*
 * peer_lmdb.c - peer-lmdb: the map, reopen and durable workloads of
 * WORKLOADS.md on LMDB (one environment file, MDB_NOSUBDIR, 1 GiB map,
 * keys MDB_INTEGERKEY so that the B-tree order is numeric order).
 *
 *   map      insert: one write transaction for all N puts (commit timed);
 *            lookup and iterate: one read transaction each
 *   reopen   mdb_env_open + open the DBI + one mdb_get in a read txn
 *   durable  one synchronous mdb_txn_commit per insert
 *
 * map and reopen open the environment with MDB_NOSYNC: their commits are
 * crash-atomic for a process crash but not flushed, like mseg without
 * MSEG_DURABLE. durable uses the default (synchronous) commit.
 * The backend shm puts the file in /dev/shm (tmpfs). alloc, churn, named
 * and vector are skipped: LMDB has no raw allocator, names or arrays.
 */
#include <lmdb.h>

#include "common.h"

#define IMPL "lmdb"

#define MDB_CHECK(call) do { int rc_ = (call); \
    if (rc_ != 0) die("%s: %s", #call, mdb_strerror(rc_)); } while (0)

struct db {
    char path[256];
    MDB_env *env;
    MDB_dbi dbi;
};

static void db_open(struct db *d, unsigned flags)
{
    MDB_txn *txn;
    MDB_CHECK(mdb_env_create(&d->env));
    MDB_CHECK(mdb_env_set_mapsize(d->env, BENCH_SEGMENT_SIZE));
    MDB_CHECK(mdb_env_open(d->env, d->path, MDB_NOSUBDIR | flags, 0600));
    MDB_CHECK(mdb_txn_begin(d->env, NULL, 0, &txn));
    MDB_CHECK(mdb_dbi_open(txn, NULL, MDB_INTEGERKEY, &d->dbi));
    MDB_CHECK(mdb_txn_commit(txn));
}

static void db_close(struct db *d)
{
    mdb_env_close(d->env);
    d->env = NULL;
}

static void db_remove(struct db *d)
{
    char lock[300];
    if (d->env)
        db_close(d);
    snprintf(lock, sizeof lock, "%s-lock", d->path);
    unlink(d->path);
    unlink(lock);
}

static void db_create(struct db *d, const struct args *a, unsigned flags)
{
    seg_path(d->path, sizeof d->path, IMPL, a->shm);
    d->env = NULL;
    db_remove(d);
    db_open(d, flags);
}

static uint64_t *make_keys(struct rng *r, uint64_t n)
{
    uint64_t *keys = xcalloc(n, sizeof *keys);
    for (uint64_t i = 0; i < n; i++)
        keys[i] = rng_next(r);
    return keys;
}

static void put(MDB_txn *txn, MDB_dbi dbi, uint64_t key, uint64_t val)
{
    MDB_val k = { sizeof key, &key }, v = { sizeof val, &val };
    MDB_CHECK(mdb_put(txn, dbi, &k, &v, 0));
}

/* Checks that key maps to i, inside txn. */
static void check_get(MDB_txn *txn, MDB_dbi dbi, uint64_t key, uint64_t i)
{
    MDB_val k = { 8, &key }, v;
    uint64_t got;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc != 0)
        die("mdb_get(key #%llu): %s", (unsigned long long)i, mdb_strerror(rc));
    memcpy(&got, v.mv_data, 8);
    CHECK(v.mv_size == 8 && got == i, "lookup of key #%llu: wrong value", (unsigned long long)i);
}

/* All N puts in one write transaction, committed. */
static void fill(struct db *d, const uint64_t *keys, uint64_t n)
{
    MDB_txn *txn;
    MDB_CHECK(mdb_txn_begin(d->env, NULL, 0, &txn));
    for (uint64_t i = 0; i < n; i++)
        put(txn, d->dbi, keys[i], i);
    MDB_CHECK(mdb_txn_commit(txn));
}

/* Iterates in key order in one read transaction; returns the count. */
static uint64_t walk(struct db *d)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    uint64_t count = 0, prev = 0, key;
    MDB_CHECK(mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn));
    MDB_CHECK(mdb_cursor_open(txn, d->dbi, &cur));
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        memcpy(&key, k.mv_data, 8);
        CHECK(count == 0 || key > prev, "map: keys do not ascend");
        prev = key;
        count++;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return count;
}

static uint64_t entries(struct db *d)
{
    MDB_txn *txn;
    MDB_stat st;
    MDB_CHECK(mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn));
    MDB_CHECK(mdb_stat(txn, d->dbi, &st));
    mdb_txn_abort(txn);
    return st.ms_entries;
}

/* map: N random keys -> i; lookup shuffled; iterate in order. */
static int wl_map(const struct args *a)
{
    uint64_t n = workload_n(a);
    struct rng r = rng_seeded(42);
    uint64_t *keys = make_keys(&r, n), *order = make_iota(n);
    struct db d;
    MDB_txn *txn;

    db_create(&d, a, MDB_NOSYNC);
    double t0 = now_sec();
    fill(&d, keys, n);
    double t1 = now_sec();
    CHECK(entries(&d) == n, "map: %llu entries", (unsigned long long)entries(&d));

    shuffle_u64(&r, order, n);
    uint64_t *probe = keys_in_order(keys, order, n);
    double t2 = now_sec();
    MDB_CHECK(mdb_txn_begin(d.env, NULL, MDB_RDONLY, &txn));
    for (uint64_t i = 0; i < n; i++)
        check_get(txn, d.dbi, probe[i], order[i]);
    mdb_txn_abort(txn);
    double t3 = now_sec();
    uint64_t count = walk(&d);
    double t4 = now_sec();
    CHECK(count == n, "map: iterated %llu", (unsigned long long)count);

    emit(a, IMPL, "insert", n, t1 - t0, "sync=0");
    emit(a, IMPL, "lookup", n, t3 - t2, "");
    emit(a, IMPL, "iterate", n, t4 - t3, "");
    db_remove(&d);
    free(keys);
    free(probe);
    free(order);
    return 0;
}

/* reopen: build the N-entry map, close, time open + DBI + one lookup. */
static int wl_reopen(const struct args *a)
{
    uint64_t n = workload_n(a);
    struct rng r = rng_seeded(42);
    uint64_t *keys = make_keys(&r, n);
    struct db d;
    MDB_txn *txn;
    char extra[96];

    db_create(&d, a, MDB_NOSYNC);
    fill(&d, keys, n);
    db_close(&d);

    double t0 = now_sec();
    db_open(&d, MDB_NOSYNC);
    MDB_CHECK(mdb_txn_begin(d.env, NULL, MDB_RDONLY, &txn));
    check_get(txn, d.dbi, keys[0], 0);
    mdb_txn_abort(txn);
    double t1 = now_sec();

    snprintf(extra, sizeof extra, "us=%.1f;entries=%llu", (t1 - t0) * 1e6, (unsigned long long)n);
    emit(a, IMPL, "reopen", 1, t1 - t0, extra);
    db_remove(&d);
    free(keys);
    return 0;
}

/* durable: N write transactions of one put each, synchronous commits. */
static int wl_durable(const struct args *a)
{
    uint64_t n = workload_n(a);
    struct rng r = rng_seeded(42);
    struct db d;

    if (a->shm)
        return skip(IMPL, "durable", "durability on the shm backend means nothing");
    db_create(&d, a, 0);
    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++) {
        MDB_txn *txn;
        MDB_CHECK(mdb_txn_begin(d.env, NULL, 0, &txn));
        put(txn, d.dbi, rng_next(&r), i);
        MDB_CHECK(mdb_txn_commit(txn));
    }
    double t1 = now_sec();
    db_close(&d);
    db_open(&d, 0);
    CHECK(entries(&d) == n, "durable: %llu entries after reopen", (unsigned long long)entries(&d));
    emit(a, IMPL, "commit", n, t1 - t0, "op=txn_put_commit;sync=1");
    db_remove(&d);
    return 0;
}

int main(int argc, char **argv)
{
    struct args a = parse_args(argc, argv);
    if (!strcmp(a.workload, "map"))
        return wl_map(&a);
    if (!strcmp(a.workload, "reopen"))
        return wl_reopen(&a);
    if (!strcmp(a.workload, "durable"))
        return wl_durable(&a);
    return skip(IMPL, a.workload, "LMDB is a key-value store: no raw allocator, names or arrays");
}
