// peer_malloc.cc - peer-malloc: the non-persistent limit. glibc malloc/free
// for alloc and churn, std::vector and std::map for vector and map, on the
// process heap. The backend argument is only a label (so the driver can
// set its rows beside the other implementations'); nothing is persistent,
// so reopen_scan, reopen, named and durable are skipped.
#include <malloc.h>

#include <map>
#include <string>
#include <vector>

#include "common.h"

static const char *const IMPL = "malloc";

// Bytes malloc holds for the program (chunk overheads included).
static uint64_t heap_in_use() { return (uint64_t)mallinfo2().uordblks; }

// alloc: N malloc of 16..256 bytes (first 8 bytes written), free shuffled.
static int wl_alloc(const args &a)
{
    uint64_t n = workload_n(&a), requested = 0, sum = 0;
    rng r = rng_seeded(42);
    std::vector<size_t> sizes(n);
    std::vector<void *> p(n);
    for (uint64_t i = 0; i < n; i++)
        requested += sizes[i] = (size_t)rand_range(&r, 16, 256);
    uint64_t before = heap_in_use();

    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++) {
        p[i] = malloc(sizes[i]);
        if (!p[i])
            die("malloc(%zu) failed", sizes[i]);
        *(uint64_t *)p[i] = i;
    }
    double t1 = now_sec();

    uint64_t used = heap_in_use() - before;
    for (uint64_t i = 0; i < n; i++)
        sum += *(uint64_t *)p[i];
    CHECK(sum == n * (n - 1) / 2, "alloc: wrong sum of first words");
    shuffle_ptr(&r, p.data(), n);

    double t2 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        free(p[i]);
    double t3 = now_sec();

    char extra[128];
    snprintf(extra, sizeof extra, "used_bytes=%llu;requested_bytes=%llu",
             (unsigned long long)used, (unsigned long long)requested);
    emit(&a, IMPL, "alloc", n, t1 - t0, extra);
    emit(&a, IMPL, "free", n, t3 - t2, "");
    return 0;
}

// churn: 100,000 live blocks, N free+malloc steps of mixed sizes.
static int wl_churn(const args &a)
{
    const size_t live_n = 100000;
    uint64_t n = workload_n(&a), live = 0;
    rng r = rng_seeded(42);
    std::vector<void *> p(live_n);
    std::vector<size_t> sz(live_n);
    std::vector<uint64_t> tag(live_n);
    uint64_t before = heap_in_use();
    for (size_t i = 0; i < live_n; i++) {
        sz[i] = churn_size(&r);
        p[i] = malloc(sz[i]);
        CHECK(p[i], "churn: malloc failed");
        *(uint64_t *)p[i] = tag[i] = i;
    }

    double t0 = now_sec();
    for (uint64_t step = 0; step < n; step++) {
        size_t k = (size_t)rand_range(&r, 0, live_n - 1);
        free(p[k]);
        sz[k] = churn_size(&r);
        p[k] = malloc(sz[k]);
        if (!p[k])
            die("churn: malloc(%zu) failed", sz[k]);
        *(uint64_t *)p[k] = tag[k] = live_n + step;
    }
    double t1 = now_sec();

    for (size_t i = 0; i < live_n; i++) {
        CHECK(*(uint64_t *)p[i] == tag[i], "churn: block %zu overwritten", i);
        live += sz[i];
    }
    char extra[128];
    snprintf(extra, sizeof extra, "used_bytes=%llu;live_bytes=%llu",
             (unsigned long long)(heap_in_use() - before), (unsigned long long)live);
    emit(&a, IMPL, "churn", n, t1 - t0, extra);
    for (void *q : p)
        free(q);
    return 0;
}

// vector: push N uint64 into a std::vector, then scan and sum.
static int wl_vector(const args &a)
{
    uint64_t n = workload_n(&a), sum = 0;
    std::vector<uint64_t> v;
    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        v.push_back(i);
    double t1 = now_sec();
    for (uint64_t x : v)
        sum += x;
    double t2 = now_sec();
    CHECK(sum == n * (n - 1) / 2 && v.size() == n, "vector: wrong sum");
    emit(&a, IMPL, "push", n, t1 - t0, "");
    emit(&a, IMPL, "scan", n, t2 - t1, "");
    fprintf(stderr, "%s: vector: reopen_scan skipped: not persistent\n", IMPL);
    return 0;
}

// map: N random keys -> i into a std::map; lookup shuffled; iterate in order.
static int wl_map(const args &a)
{
    uint64_t n = workload_n(&a);
    rng r = rng_seeded(42);
    std::vector<uint64_t> keys(n);
    for (auto &k : keys)
        k = rng_next(&r);
    uint64_t *order = make_iota(n);
    std::map<uint64_t, uint64_t> m;

    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        m[keys[i]] = i;
    double t1 = now_sec();
    CHECK(m.size() == n, "map: %zu entries", m.size());

    shuffle_u64(&r, order, n);
    uint64_t *probe = keys_in_order(keys.data(), order, n);
    double t2 = now_sec();
    for (uint64_t i = 0; i < n; i++) {
        auto it = m.find(probe[i]);
        if (it == m.end() || it->second != order[i])
            die("map: lookup of key #%llu failed", (unsigned long long)order[i]);
    }
    double t3 = now_sec();
    uint64_t count = 0, prev = 0;
    for (const auto &kv : m) {
        CHECK(count == 0 || kv.first > prev, "map: keys do not ascend");
        prev = kv.first;
        count++;
    }
    double t4 = now_sec();
    CHECK(count == n, "map: iterated %llu", (unsigned long long)count);

    emit(&a, IMPL, "insert", n, t1 - t0, "");
    emit(&a, IMPL, "lookup", n, t3 - t2, "");
    emit(&a, IMPL, "iterate", n, t4 - t3, "");
    free(probe);
    free(order);
    return 0;
}

int main(int argc, char **argv)
{
    args a = parse_args(argc, argv);
    std::string w = a.workload;
    if (w == "alloc")
        return wl_alloc(a);
    if (w == "churn")
        return wl_churn(a);
    if (w == "vector")
        return wl_vector(a);
    if (w == "map")
        return wl_map(a);
    return skip(IMPL, a.workload, "not applicable to a non-persistent heap");
}
