// peer_boost.cc - peer-boost: the workloads of WORKLOADS.md on
// Boost.Interprocess. Backend file = managed_mapped_file, shm =
// managed_shared_memory; containers are boost::interprocess::vector and
// map with the segment's allocator.
//
// durable: Boost has no commit of its own; the natural way to make an
// insert durable is to flush the mapping after it. managed_mapped_file's
// flush() uses MS_ASYNC (not durable), so the runner calls what its
// mapped_region::flush(0, 0, false) would: msync(MS_SYNC) of the whole
// mapping (file backend only). Not crash-atomic: a torn map is possible.
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/map.hpp>
#include <boost/interprocess/containers/vector.hpp>
#include <boost/interprocess/managed_mapped_file.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>

#include <sys/mman.h>

#include <functional>
#include <string>
#include <vector>

#include "common.h"
#include "scale.h"

namespace bip = boost::interprocess;

static const char *const IMPL = "boost";

template <class Seg> using alloc_of = bip::allocator<uint64_t, typename Seg::segment_manager>;
template <class Seg> using vec_of = bip::vector<uint64_t, alloc_of<Seg>>;
template <class Seg>
using map_of = bip::map<uint64_t, uint64_t, std::less<uint64_t>,
                        bip::allocator<std::pair<const uint64_t, uint64_t>, typename Seg::segment_manager>>;

// Where a segment lives, and how each backend creates, opens and removes it.
struct where {
    std::string name;   // file path, or shm object name (no slash)
};

static where fresh_file()
{
    char buf[256];
    seg_path(buf, sizeof buf, IMPL, 0);
    return where{buf};
}

static where fresh_shm()
{
    char buf[256];
    shm_name(buf, sizeof buf, IMPL);
    return where{buf + 1};
}

static void remove_seg(bip::managed_mapped_file *, const where &w) { bip::file_mapping::remove(w.name.c_str()); }
static void remove_seg(bip::managed_shared_memory *, const where &w) { bip::shared_memory_object::remove(w.name.c_str()); }

template <class Seg> static Seg *create_seg(const where &w)
{
    remove_seg((Seg *)nullptr, w);
    return new Seg(bip::create_only, w.name.c_str(), BENCH_SEGMENT_SIZE);
}

template <class Seg> static Seg *open_seg(const where &w) { return new Seg(bip::open_only, w.name.c_str()); }

template <class Seg> static uint64_t used_of(Seg *s) { return (uint64_t)(s->get_size() - s->get_free_memory()); }

// ---- alloc: N allocations of 16..256 bytes, free shuffled --------------------

template <class Seg> static int wl_alloc(const args &a, const where &w)
{
    uint64_t n = workload_n(&a), requested = 0, sum = 0;
    rng r = rng_seeded(42);
    std::vector<size_t> sizes(n);
    std::vector<void *> p(n);
    for (uint64_t i = 0; i < n; i++)
        requested += sizes[i] = (size_t)rand_range(&r, 16, 256);
    Seg *s = create_seg<Seg>(w);
    size_t free_before = s->get_free_memory();

    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++) {
        p[i] = s->allocate(sizes[i], std::nothrow);
        if (!p[i])
            die("boost allocate(%zu) #%llu failed", sizes[i], (unsigned long long)i);
        *(uint64_t *)p[i] = i;
    }
    double t1 = now_sec();

    uint64_t used = used_of(s);
    for (uint64_t i = 0; i < n; i++)
        sum += *(uint64_t *)p[i];
    CHECK(sum == n * (n - 1) / 2, "alloc: wrong sum of first words");
    shuffle_ptr(&r, p.data(), n);

    double t2 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        s->deallocate(p[i]);
    double t3 = now_sec();
    CHECK(s->get_free_memory() == free_before, "free: memory not all returned");

    char extra[128];
    snprintf(extra, sizeof extra, "used_bytes=%llu;requested_bytes=%llu",
             (unsigned long long)used, (unsigned long long)requested);
    emit(&a, IMPL, "alloc", n, t1 - t0, extra);
    emit(&a, IMPL, "free", n, t3 - t2, "");
    delete s;
    remove_seg((Seg *)nullptr, w);
    return 0;
}

// ---- churn: 100,000 live blocks, N free+allocate steps of mixed sizes ----

template <class Seg> static int wl_churn(const args &a, const where &w)
{
    const size_t live_n = 100000;
    uint64_t n = workload_n(&a), live = 0;
    rng r = rng_seeded(42);
    std::vector<void *> p(live_n);
    std::vector<size_t> sz(live_n);
    std::vector<uint64_t> tag(live_n);
    Seg *s = create_seg<Seg>(w);
    for (size_t i = 0; i < live_n; i++) {
        sz[i] = churn_size(&r);
        p[i] = s->allocate(sz[i], std::nothrow);
        CHECK(p[i], "churn: initial allocate failed");
        *(uint64_t *)p[i] = tag[i] = i;
    }

    double t0 = now_sec();
    for (uint64_t step = 0; step < n; step++) {
        size_t k = (size_t)rand_range(&r, 0, live_n - 1);
        s->deallocate(p[k]);
        sz[k] = churn_size(&r);
        p[k] = s->allocate(sz[k], std::nothrow);
        if (!p[k])
            die("churn: allocate(%zu) failed", sz[k]);
        *(uint64_t *)p[k] = tag[k] = live_n + step;
    }
    double t1 = now_sec();

    for (size_t i = 0; i < live_n; i++) {
        CHECK(*(uint64_t *)p[i] == tag[i], "churn: block %zu overwritten", i);
        live += sz[i];
    }
    char extra[128];
    snprintf(extra, sizeof extra, "used_bytes=%llu;live_bytes=%llu",
             (unsigned long long)used_of(s), (unsigned long long)live);
    emit(&a, IMPL, "churn", n, t1 - t0, extra);
    delete s;
    remove_seg((Seg *)nullptr, w);
    return 0;
}

// ---- named: construct N "obj-<i>", find shuffled, destroy shuffled ----

template <class Seg> static int wl_named(const args &a, const where &w)
{
    uint64_t n = workload_n(&a);
    rng r = rng_seeded(42);
    char *names = make_names(n);
    uint64_t *order = make_iota(n);
    Seg *s = create_seg<Seg>(w);

    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        s->template construct<uint64_t>(names + i * NAME_LEN)(i);
    double t1 = now_sec();

    shuffle_u64(&r, order, n);
    char *probe = names_in_order(names, order, n);
    double t2 = now_sec();
    for (uint64_t i = 0; i < n; i++) {
        const char *nm = probe + i * NAME_LEN;
        auto f = s->template find<uint64_t>(nm);
        if (!f.first || f.second != 1 || *f.first != order[i])
            die("find(%s) failed", nm);
    }
    double t3 = now_sec();

    shuffle_u64(&r, order, n);
    free(probe);
    probe = names_in_order(names, order, n);
    double t4 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        if (!s->template destroy<uint64_t>(probe + i * NAME_LEN))
            die("destroy(%s) failed", probe + i * NAME_LEN);
    double t5 = now_sec();
    free(probe);
    CHECK(s->get_num_named_objects() == 0, "named: objects left");

    emit(&a, IMPL, "construct", n, t1 - t0, "");
    emit(&a, IMPL, "find", n, t3 - t2, "");
    emit(&a, IMPL, "destroy", n, t5 - t4, "");
    delete s;
    remove_seg((Seg *)nullptr, w);
    free(names);
    free(order);
    return 0;
}

// ---- vector: push N, scan, reopen + find + scan ----

template <class V> static uint64_t sum_of(const V &v)
{
    uint64_t sum = 0;
    for (uint64_t x : v)
        sum += x;
    return sum;
}

template <class Seg> static int wl_vector(const args &a, const where &w)
{
    uint64_t n = workload_n(&a), want = n * (n - 1) / 2;
    Seg *s = create_seg<Seg>(w);
    vec_of<Seg> *v = s->template construct<vec_of<Seg>>("vec")(s->get_segment_manager());

    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        v->push_back(i);
    double t1 = now_sec();
    uint64_t sum = sum_of(*v);
    double t2 = now_sec();
    CHECK(sum == want && v->size() == n, "vector: wrong sum");

    delete s;
    double t3 = now_sec();
    s = open_seg<Seg>(w);
    v = s->template find<vec_of<Seg>>("vec").first;
    CHECK(v, "vector: not found after reopen");
    sum = sum_of(*v);
    double t4 = now_sec();
    CHECK(sum == want, "vector after reopen: wrong sum");

    emit(&a, IMPL, "push", n, t1 - t0, "");
    emit(&a, IMPL, "scan", n, t2 - t1, "");
    emit(&a, IMPL, "reopen_scan", n, t4 - t3, "");
    delete s;
    remove_seg((Seg *)nullptr, w);
    return 0;
}

// ---- map: N random keys -> i; lookup shuffled; iterate in order ----

static std::vector<uint64_t> make_keys(rng *r, uint64_t n)
{
    std::vector<uint64_t> keys(n);
    for (auto &k : keys)
        k = rng_next(r);
    return keys;
}

template <class Seg> static map_of<Seg> *new_map(Seg *s)
{
    return s->template construct<map_of<Seg>>("map")(std::less<uint64_t>(), s->get_segment_manager());
}

// Checks that key maps to i.
template <class M> static void check_get(const M &m, uint64_t key, uint64_t i)
{
    auto it = m.find(key);
    if (it == m.end() || it->second != i)
        die("map: lookup of key #%llu failed", (unsigned long long)i);
}

template <class Seg> static int wl_map(const args &a, const where &w)
{
    uint64_t n = workload_n(&a);
    rng r = rng_seeded(42);
    std::vector<uint64_t> keys = make_keys(&r, n);
    uint64_t *order = make_iota(n);
    Seg *s = create_seg<Seg>(w);
    map_of<Seg> *m = new_map(s);

    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        m->insert_or_assign(keys[i], i);
    double t1 = now_sec();
    CHECK(m->size() == n, "map: %zu entries", m->size());

    shuffle_u64(&r, order, n);
    uint64_t *probe = keys_in_order(keys.data(), order, n);
    double t2 = now_sec();
    for (uint64_t i = 0; i < n; i++)
        check_get(*m, probe[i], order[i]);
    double t3 = now_sec();
    uint64_t count = 0, prev = 0;
    for (const auto &kv : *m) {
        CHECK(count == 0 || kv.first > prev, "map: keys do not ascend");
        prev = kv.first;
        count++;
    }
    double t4 = now_sec();
    CHECK(count == n, "map: iterated %llu", (unsigned long long)count);

    emit(&a, IMPL, "insert", n, t1 - t0, "");
    emit(&a, IMPL, "lookup", n, t3 - t2, "");
    emit(&a, IMPL, "iterate", n, t4 - t3, "");
    delete s;
    remove_seg((Seg *)nullptr, w);
    free(probe);
    free(order);
    return 0;
}

// ---- reopen: build the N-entry map, close, time open + find + one lookup ----

template <class Seg> static int wl_reopen(const args &a, const where &w)
{
    uint64_t n = workload_n(&a);
    rng r = rng_seeded(42);
    std::vector<uint64_t> keys = make_keys(&r, n);
    Seg *s = create_seg<Seg>(w);
    map_of<Seg> *m = new_map(s);
    for (uint64_t i = 0; i < n; i++)
        m->insert_or_assign(keys[i], i);
    delete s;

    double t0 = now_sec();
    s = open_seg<Seg>(w);
    m = s->template find<map_of<Seg>>("map").first;
    CHECK(m, "reopen: map not found");
    check_get(*m, keys[0], 0);
    double t1 = now_sec();

    char extra[96];
    snprintf(extra, sizeof extra, "us=%.1f;entries=%llu", (t1 - t0) * 1e6, (unsigned long long)n);
    emit(&a, IMPL, "reopen", 1, t1 - t0, extra);
    delete s;
    remove_seg((Seg *)nullptr, w);
    return 0;
}

// ---- durable: N inserts, each followed by msync(MS_SYNC) of the mapping ----

static int wl_durable(const args &a, const where &w)
{
    typedef bip::managed_mapped_file Seg;
    uint64_t n = workload_n(&a);
    rng r = rng_seeded(42);
    Seg *s = create_seg<Seg>(w);
    map_of<Seg> *m = new_map(s);

    double t0 = now_sec();
    for (uint64_t i = 0; i < n; i++) {
        m->insert_or_assign(rng_next(&r), i);
        if (msync(s->get_address(), s->get_size(), MS_SYNC) != 0)
            die("durable: msync: %s", strerror(errno));
    }
    double t1 = now_sec();
    CHECK(m->size() == n, "durable: %zu entries", m->size());

    emit(&a, IMPL, "commit", n, t1 - t0, "op=map_insert+msync");
    delete s;
    remove_seg((Seg *)nullptr, w);
    return 0;
}

// ---- scale: P processes allocating and freeing at once (scale.h) ----
//
// Every process opens the segment itself (offset pointers: any address
// works); its segment manager serializes allocate and deallocate with its
// own process-shared mutex.

template <class Seg> static void *scale_open(void *ctx)
{
    return open_seg<Seg>(*static_cast<const where *>(ctx));
}

template <class Seg> static void *scale_alloc(void *s, size_t bytes)
{
    void *p = static_cast<Seg *>(s)->allocate(bytes, std::nothrow);
    CHECK(p, "scale: boost allocate(%zu) failed", bytes);
    return p;
}

template <class Seg> static void scale_release(void *s, void *p) { static_cast<Seg *>(s)->deallocate(p); }

template <class Seg> static void scale_close(void *s) { delete static_cast<Seg *>(s); }

template <class Seg> static int wl_scale(const args &a, const where &w)
{
    uint64_t n = workload_n(&a);
    delete create_seg<Seg>(w); // the children open it themselves
    scale_ops ops = { scale_open<Seg>, scale_alloc<Seg>, scale_release<Seg>, scale_close<Seg>,
                      const_cast<where *>(&w) };
    double secs = scale_run(&ops, a.procs, n);
    scale_emit(&a, IMPL, n, secs);
    remove_seg((Seg *)nullptr, w);
    return 0;
}

// ---- main ----

template <class Seg> static int run(const args &a, const where &w)
{
    std::string wl = a.workload;
    if (wl == "alloc")
        return wl_alloc<Seg>(a, w);
    if (wl == "churn")
        return wl_churn<Seg>(a, w);
    if (wl == "named")
        return wl_named<Seg>(a, w);
    if (wl == "vector")
        return wl_vector<Seg>(a, w);
    if (wl == "map")
        return wl_map<Seg>(a, w);
    if (wl == "reopen")
        return wl_reopen<Seg>(a, w);
    if (wl == "scale")
        return wl_scale<Seg>(a, w);
    return skip(IMPL, a.workload, "not a workload of this runner");
}

int main(int argc, char **argv)
{
    args a = parse_args(argc, argv);
    std::string wl = a.workload;
    try {
        if (wl == "durable")
            return a.shm ? skip(IMPL, "durable", "durability on the shm backend means nothing")
                         : wl_durable(a, fresh_file());
        if (a.shm)
            return run<bip::managed_shared_memory>(a, fresh_shm());
        return run<bip::managed_mapped_file>(a, fresh_file());
    } catch (const std::exception &e) {
        die("%s: %s", a.workload, e.what());
    }
    return 1;
}
