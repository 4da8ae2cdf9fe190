/*
 * torture.c - the kill -9 torture run (issue 3, item 4; containers: issue 4,
 * point 5).
 *
 *   torture [--rounds N] [--backend file|shm|both] [--seed S] [--size BYTES]
 *           [--max-size BYTES] [--no-probe] [--quiet]
 *
 * A supervisor creates a segment (a file under $TMPDIR, or POSIX shm) and,
 * round after round, forks 3-4 workers that operate on it concurrently with
 * random operations, then kills them with SIGKILL at random moments (0-20 ms
 * apart): sometimes all at once, sometimes one while the others go on (the
 * victim is often restarted, and finds out itself what became of the
 * operation it was killed in). Half the workers also kill themselves at a
 * random crash point or flush of the engine (the test hooks of testing.h):
 * the windows between two stores of one step, which a kill from outside
 * only rarely hits (one such window, between a growth's header and its
 * notice to the other processes, once took 10,000 rounds to show up).
 * When every worker of the round is dead, the
 * supervisor checks the segment (mseg_check, then open: recovery, then
 * mseg_verify) and compares it with the oracle; the next round's workers
 * continue from the verified state.
 *
 * What a worker owns. Worker w owns NOBJ named objects "w<w>.o<k>" (arrays
 * of uint64_t whose words are a hash of (w, k, version)) and the slots of
 * its registry, the named array "w<w>.reg" of NREG entries (offset, size,
 * alignment, version) of raw blocks it allocated; a block is filled with a
 * stamp, a hash of (w, slot, version). A block is allocated and recorded in
 * one transaction, and freed and unrecorded in one, so no block exists
 * unrecorded and the oracle finds every one. It also owns three containers:
 *   - the vector "w<w>.vec" of at most VMAX uint64_t elements, element i a
 *     hash of (w, i, the element's version), or 0 where a resize zeroed it;
 *     destroyed and created again now and then, so that growth starts over;
 *   - the map "w<w>.map" (variable-length values; u64 keys for even w,
 *     byte-string keys, the same numbers as 8 big-endian bytes, for odd w):
 *     NKEY keys of its own (the key number in the low byte, hashed high
 *     bits, so key order is not number order), values of 0-24 KiB stamped
 *     with a hash of (w, key number, version), so values (and byte keys)
 *     live in out-of-line cells;
 *   - the owning map "w<w>.own" (MSEG_OWNED): NOWN keys whose values are
 *     anonymous vectors, element i a hash of (w, key number, version) + i;
 *     replacing or deleting a key frees its vector in the same operation.
 * Nobody else touches a worker's objects, slots or containers: the workers
 * contend only inside the engine (lock, log, heap, directory).
 *
 * Operations: construct or destroy an object (one engine operation each);
 * overwrite an object in a transaction (mseg_tx_add, then stores);
 * alloc + record and free + unrecord in a transaction; vector create and
 * destroy, push (one element, or several in a transaction; growth moves
 * the buffer), pop (each popped element checked), pop then push in a
 * transaction (pushes into slots the committed state still reaches), resize
 * up or down (zeroed elements; beyond the capacity it moves the buffer),
 * reserve (moves the buffer, changes nothing visible), overwrite of an
 * element range in place in a transaction (mseg_tx_add, then stores); map
 * put (insert or replace) and delete; nested put (a new anonymous vector,
 * sometimes reserved first, filled and put under the key, one transaction),
 * nested delete, push onto and pop from a nested vector; transactions of
 * 2-5 changes of all these kinds together, committed, or aborted on purpose.
 * Each worker checks an item's state before changing it and right after.
 *
 * The oracle lives outside the segment: a MAP_SHARED anonymous region made
 * before fork, one slot per worker. Protocol for operation number seq:
 *   1. write the intent (each change: item, state before, state after) and
 *      the next version, then store-release intent_seq = seq;
 *   2. run the operation;
 *   3. ack: store ack_applied (1 done, 0 failed/aborted: nothing changed),
 *      then store-release ack_seq = seq;
 *   4. copy the after-states into the acknowledged state table, then
 *      store-release applied_seq = seq.
 * A worker killed at any point leaves one of: applied_seq == intent_seq
 * (nothing in flight; the table is exact); ack_seq == intent_seq >
 * applied_seq (acknowledged; the reader re-copies the after-states, which is
 * idempotent); ack_seq < intent_seq (in flight: the segment must hold every
 * change's before-state or every change's after-state, never a mix). Whoever
 * settles an in-flight operation (a restarted worker, under the segment lock,
 * or the supervisor after recovery) acks it for the dead one by the same
 * steps 3-4, so a settler killed in turn leaves a state of the same kinds.
 *
 * The table is compact and fixed: per worker an item (live, size, align,
 * version) for each object, registry slot, map key and nested-vector key,
 * one for the vector (live, length), and the version of each vector
 * element. A vector change is not a whole state but a delta from the table:
 * length before, length after, and the range [lo, hi) of elements that get
 * one new version (push, pop+push, overwrite); other elements keep their
 * version below the old length and are zero above it (resize). Its after-
 * state is computed from the table and the change alone, so copying it
 * into the table twice (step 4 redone by a reader) does no harm. One
 * operation changes the vector at most once.
 *
 * Verification of a round: mseg_check sound; open (recovery) and
 * mseg_verify sound; every acknowledged state exact (objects and their
 * contents, destroyed objects absent, registry entries pointing at blocks
 * with their stamp intact and their alignment, every live map key with its
 * exact value and every other key absent, every nested vector exact, the
 * vector's length and every element); in-flight operations all or nothing;
 * each map walked with a cursor: ascending keys, none the oracle lacks, as
 * many as it has live, values exact; mseg_map_len right; seeks land on the
 * first live key at or above a random one; no named object beyond the
 * expected ones; no two blocks overlapping (objects, raw blocks, container
 * roots, vector buffers, map value cells); then, on a copy of the segment,
 * every recorded block freed (mseg_free must accept it: a live block), every
 * object and container destroyed (the owning map frees its nested vectors),
 * after which free memory must be exactly its value on the empty segment (a
 * leak check of the whole round).
 *
 * Liveness: in a third of the rounds that kill workers one by one, the
 * supervisor then kills all but one survivor, which must go on alone within
 * PROBE_SECONDS whatever state the dead left the segment lock in (a hang
 * prints the lock word and each worker's wait channel; TORTURE_GDB=1 adds
 * backtraces). --no-probe leaves this out.
 *
 * The segment starts at 1 MiB and grows on demand up to 32 MiB (--size,
 * --max-size; 0 never grows); after half the verifications the supervisor
 * shrinks it again (mseg_shrink), so that growth keeps happening under kills.
 *
 * Exit status: 0 all sound; 1 a violation (a message says which round,
 * worker, operation and item); 2 a usage or setup error.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "layout.h"   /* MSEG_RUNTIME_OFF: where the segment mutex is, for hang reports */
#include "mseg.h"
#include "testing.h"  /* crash and flush hooks: workers that kill themselves inside a step */

#define MAX_WORKERS 4
#define NOBJ        24          /* named objects per worker */
#define NREG        48          /* registry slots per worker */
#define NKEY        256         /* keys of a worker's map (values of 0-24 KiB) */
#define NOWN        32          /* keys of a worker's owning map (nested vectors) */
#define VMAX        4096        /* longest vector */
#define NEST_MAX    4096        /* longest nested vector */
#define MAXCH       5           /* changes in one operation */
#define SEG_SIZE    (1u << 20)   /* at creation */
#define SEG_MAX     (32u << 20)  /* grows up to this (--max-size) */
#define OBJ_TYPE    "torture_obj"
#define REG_TYPE    "torture_reg"
#define PROBE_SECONDS 10        /* a survivor making no progress this long hangs */
#define ROUND_SECONDS 120       /* a whole round (all phases) */

/* ---- shared state ----------------------------------------------------- */

enum op {
    OP_CONSTRUCT = 1, OP_DESTROY, OP_OVERWRITE,                 /* named objects */
    OP_ALLOC, OP_FREE,                                          /* raw blocks */
    OP_MPUT, OP_MDEL,                                           /* the map */
    OP_VCREATE, OP_VDESTROY, OP_VPUSH, OP_VPOP, OP_VPOPPUSH,    /* the vector */
    OP_VRESIZE, OP_VRESERVE, OP_VWRITE,
    OP_OPUT, OP_ODEL, OP_OPUSH, OP_OPOP,                        /* the owning map */
    OP_MAX = OP_OPOP
};
enum family { F_OBJ, F_REG, F_MAP, F_VEC, F_OWN };
enum kind { K_SINGLE = 1, K_TX, K_TX_ABORT };

static const char *op_name(uint32_t op)
{
    static const char *n[] = { "?", "construct", "destroy", "overwrite", "alloc", "free",
                               "map put", "map delete", "vector create", "vector destroy",
                               "vector push", "vector pop", "vector pop+push", "vector resize",
                               "vector reserve", "vector overwrite", "nested put", "nested delete",
                               "nested push", "nested pop" };
    return op <= OP_MAX ? n[op] : "?";
}

static enum family op_family(uint32_t op)
{
    return op <= OP_OVERWRITE ? F_OBJ : op <= OP_FREE ? F_REG : op <= OP_MDEL ? F_MAP
         : op <= OP_VWRITE ? F_VEC : F_OWN;
}

static const char *kind_name(uint32_t k)
{
    return k == K_SINGLE ? "single" : k == K_TX ? "transaction" : k == K_TX_ABORT ? "aborted transaction" : "?";
}

/* The state of one object (size: element count), registry slot (size:
   bytes, align: 0 for mseg_alloc), map key (size: value bytes), nested
   vector (size: elements) or the vector (size: length; its elements'
   versions are in the slot's ver[]). */
struct item {
    uint32_t live, size, align, pad;
    uint64_t version;
};

/* A vector change goes from before.size elements to after.size; elements
   [lo, hi) get version vv, the others keep theirs below before.size and are
   zero above it (resize). arg: the capacity a reserve asks for. */
struct change {
    uint32_t op, idx;           /* idx: object number, registry slot, map key number */
    struct item before, after;
    uint32_t lo, hi, arg, pad;
    uint64_t vv;
};

struct intent {
    uint64_t seq;
    uint32_t kind, n;
    struct change ch[MAXCH];
};

/* One worker's part of the oracle. Sequence words are accessed with
   __atomic builtins; the rest is ordered by them. */
struct slot {
    uint64_t intent_seq, ack_seq, applied_seq;
    uint32_t ack_applied, failed;
    struct intent in;
    struct item obj[NOBJ], reg[NREG], map[NKEY], own[NOWN], vec;
    uint64_t ver[VMAX];         /* version of each vector element, 0: zeroed */
    uint64_t next_version;
    /* statistics, bumped by workers (a kill may lose the last increment) */
    uint64_t acks, txs, aborts, enomem, settled_applied, settled_undone, durable_opens;
    uint64_t self_kills;                /* at a crash point or flush of the engine */
    uint32_t self_kill_armed;           /* 0: the supervisor needs this worker alive */
    int32_t self_killed_pid;            /* the last worker that killed itself */
    uint64_t op_acks[OP_MAX + 1];       /* changes of applied operations, by op */
    char err[1024];
};

struct oracle {
    struct slot w[MAX_WORKERS];
};

/* The persistent registry entry, in the segment. */
struct reg_entry {
    uint64_t off, size, align, version;
};

/* The oracle's entry for the item a (non-vector) change is about. */
static struct item *item_of(struct slot *o, const struct change *c)
{
    switch (op_family(c->op)) {
    case F_OBJ: return &o->obj[c->idx];
    case F_REG: return &o->reg[c->idx];
    case F_MAP: return &o->map[c->idx];
    case F_OWN: return &o->own[c->idx];
    default:    return &o->vec;
    }
}

/* ---- patterns ------------------------------------------------------------ */

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *st)
{
    return mix(*st += 0x632be59bd9b4e019ull);
}

static uint64_t below(uint64_t *st, uint64_t n)
{
    return rnd(st) % n;
}

static uint64_t obj_seed(int w, uint32_t k, uint64_t version)
{
    return mix(((uint64_t)w << 48) ^ ((uint64_t)k << 32) ^ 0x6f626a00u) ^ mix(version * 0x100000001b3ull);
}

static uint64_t blk_seed(int w, uint32_t i, uint64_t version)
{
    return mix(((uint64_t)w << 48) ^ ((uint64_t)i << 32) ^ 0x726567u) ^ mix(version * 0xff51afd7ed558ccdull);
}

static uint64_t map_seed(int w, uint32_t k, uint64_t version)
{
    return mix(((uint64_t)w << 48) ^ ((uint64_t)k << 32) ^ 0x6d6170u) ^ mix(version * 0xc4ceb9fe1a85ec53ull);
}

static uint64_t own_seed(int w, uint32_t k, uint64_t version)
{
    return mix(((uint64_t)w << 48) ^ ((uint64_t)k << 32) ^ 0x6f776eu) ^ mix(version * 0x9e3779b97f4a7c15ull);
}

/* Element i of the vector at element version v (0: zeroed by a resize). */
static uint64_t vec_elem(int w, uint32_t i, uint64_t v)
{
    return v ? mix(((uint64_t)w << 56) ^ ((uint64_t)i << 32) ^ 0x766563u) ^ mix(v * 0xd6e8feb86659fd93ull) : 0;
}

/* Keys: the key number in the low byte, so that they are distinct, and
   pseudo-random high bits, so that key order is not number order. */
static uint64_t map_key(int w, uint32_t k)
{
    return (mix(((uint64_t)w << 40) ^ 0x6d61706b6579ull ^ k) & ~0xffull) | k;
}

static uint64_t own_key(int w, uint32_t k)
{
    return (mix(((uint64_t)w << 40) ^ 0x6f776e6b6579ull ^ k) & ~0xffull) | k;
}

static void obj_fill(uint64_t *p, size_t count, uint64_t seed)
{
    for (size_t i = 0; i < count; i++)
        p[i] = mix(seed + i);
}

/* Index of the first wrong word, or count when all are right. */
static size_t obj_first_bad(const uint64_t *p, size_t count, uint64_t seed)
{
    for (size_t i = 0; i < count; i++)
        if (p[i] != mix(seed + i))
            return i;
    return count;
}

static void blk_fill(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = mix(seed + i / 8);
        size_t m = n - i < 8 ? n - i : 8;
        memcpy(p + i, &v, m);
    }
}

static size_t blk_first_bad(const uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = mix(seed + i / 8);
        size_t m = n - i < 8 ? n - i : 8;
        if (memcmp(p + i, &v, m) != 0)
            for (size_t j = 0; j < m; j++)
                if (p[i + j] != ((const uint8_t *)&v)[j])
                    return i + j;
    }
    return n;
}

static void obj_name(char *buf, size_t n, int w, uint32_t k) { snprintf(buf, n, "w%d.o%u", w, k); }
static void reg_name(char *buf, size_t n, int w) { snprintf(buf, n, "w%d.reg", w); }
static void vec_name(char *buf, size_t n, int w) { snprintf(buf, n, "w%d.vec", w); }
static void map_name(char *buf, size_t n, int w, bool own) { snprintf(buf, n, own ? "w%d.own" : "w%d.map", w); }

/* Odd workers' maps have byte-string keys (key cells, memcmp order): the
   8 bytes of the key big-endian, so that their order is the numbers'. */
static enum mseg_key map_kind(int w, bool own)
{
    return !own && (w & 1) ? MSEG_KEY_BYTES : MSEG_KEY_U64;
}

/* The 8 bytes the map API takes for key number `key`, and back. */
static uint64_t key_wire(int w, bool own, uint64_t key)
{
    return map_kind(w, own) == MSEG_KEY_BYTES ? htobe64(key) : key;
}

static uint64_t key_unwire(int w, bool own, const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return map_kind(w, own) == MSEG_KEY_BYTES ? be64toh(v) : v;
}

/* Worker w's map (variable-length values) or owning map (nested vectors). */
static mseg_map *map_handle(mseg *s, int w, bool own)
{
    char name[64];
    map_name(name, sizeof name, w, own);
    return own ? mseg_map_open(s, name, map_kind(w, own), sizeof(mseg_off), MSEG_OWNED)
               : mseg_map_open(s, name, map_kind(w, own), 0, 0);
}

/* ---- matching the segment against a state ------------------------------------ */

static void describe(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void describe(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
}

/* 1 when object k of worker w is in state st in the segment; else 0 with
   the difference in why. */
static int obj_matches(mseg *s, int w, uint32_t k, const struct item *st, char *why, size_t n)
{
    char name[64];
    obj_name(name, sizeof name, w, k);
    size_t count = 0;
    errno = 0;
    uint64_t *p = mseg_find(s, name, OBJ_TYPE, sizeof(uint64_t), &count);
    if (!st->live) {
        if (!p && errno == ENOENT)
            return 1;
        if (p)
            describe(why, n, "object %s exists (%zu words) but should be absent", name, count);
        else
            describe(why, n, "object %s: find failed with errno %d (%s), expected ENOENT",
                     name, errno, mseg_errmsg());
        return 0;
    }
    if (!p) {
        describe(why, n, "object %s (version %" PRIu64 ", %u words) is missing: errno %d (%s)",
                 name, st->version, st->size, errno, mseg_errmsg());
        return 0;
    }
    if (count != st->size) {
        describe(why, n, "object %s has %zu words, expected %u (version %" PRIu64 ")",
                 name, count, st->size, st->version);
        return 0;
    }
    size_t bad = obj_first_bad(p, count, obj_seed(w, k, st->version));
    if (bad < count) {
        describe(why, n, "object %s: word %zu of %zu is %#" PRIx64 ", expected %#" PRIx64
                 " (version %" PRIu64 ")", name, bad, count, p[bad],
                 mix(obj_seed(w, k, st->version) + bad), st->version);
        return 0;
    }
    return 1;
}

/* 1 when registry slot i of worker w is in state st; else 0 with why. */
static int reg_matches(mseg *s, const struct reg_entry *reg, int w, uint32_t i,
                       const struct item *st, char *why, size_t n)
{
    struct reg_entry e = reg[i];
    if (!st->live) {
        if (!e.off && !e.size && !e.align && !e.version)
            return 1;
        describe(why, n, "registry w%d[%u] holds {off %#" PRIx64 ", size %" PRIu64 ", version %" PRIu64
                 "} but should be empty", w, i, e.off, e.size, e.version);
        return 0;
    }
    if (e.version != st->version || e.size != st->size || e.align != st->align || !e.off) {
        describe(why, n, "registry w%d[%u] holds {off %#" PRIx64 ", size %" PRIu64 ", align %" PRIu64
                 ", version %" PRIu64 "}, expected {size %u, align %u, version %" PRIu64 "}",
                 w, i, e.off, e.size, e.align, e.version, st->size, st->align, st->version);
        return 0;
    }
    uint8_t *p = mseg_at(s, e.off);
    if (!p || e.off + e.size > mseg_size(s) || (e.align && e.off % e.align)) {
        describe(why, n, "registry w%d[%u]: block at %#" PRIx64 " (%" PRIu64 " bytes, align %" PRIu64
                 ") is outside the segment or misaligned", w, i, e.off, e.size, e.align);
        return 0;
    }
    size_t bad = blk_first_bad(p, e.size, blk_seed(w, i, e.version));
    if (bad < e.size) {
        describe(why, n, "registry w%d[%u]: block at %#" PRIx64 " (%" PRIu64 " bytes, version %" PRIu64
                 "): stamp damaged at byte %zu", w, i, e.off, e.size, e.version, bad);
        return 0;
    }
    return 1;
}

/* 1 when key k of worker w's map is in state st (size: value bytes); else
   0 with why. */
static int map_matches(mseg *s, int w, uint32_t k, const struct item *st, char *why, size_t n)
{
    mseg_map *m = map_handle(s, w, false);
    if (!m) {
        describe(why, n, "map w%d.map: open failed with errno %d (%s)", w, errno, mseg_errmsg());
        return 0;
    }
    uint64_t key = map_key(w, k), wire = key_wire(w, false, key);
    size_t vlen = 0;
    errno = 0;
    const uint8_t *p = mseg_map_get(s, m, &wire, sizeof wire, &vlen);
    if (!st->live) {
        if (!p && errno == ENOENT)
            return 1;
        if (p)
            describe(why, n, "map w%d.map: key #%u (%#" PRIx64 ") is present (%zu-byte value) but should "
                     "be absent", w, k, key, vlen);
        else
            describe(why, n, "map w%d.map: get of key #%u failed with errno %d (%s), expected ENOENT",
                     w, k, errno, mseg_errmsg());
        return 0;
    }
    if (!p) {
        describe(why, n, "map w%d.map: key #%u (%#" PRIx64 ", version %" PRIu64 ", %u-byte value) is "
                 "missing: errno %d (%s)", w, k, key, st->version, st->size, errno, mseg_errmsg());
        return 0;
    }
    if (vlen != st->size) {
        describe(why, n, "map w%d.map: key #%u has a %zu-byte value, expected %u bytes (version %" PRIu64 ")",
                 w, k, vlen, st->size, st->version);
        return 0;
    }
    size_t bad = blk_first_bad(p, vlen, map_seed(w, k, st->version));
    if (bad < vlen) {
        describe(why, n, "map w%d.map: key #%u: value (%zu bytes, version %" PRIu64 ") damaged at byte %zu",
                 w, k, vlen, st->version, bad);
        return 0;
    }
    return 1;
}

/* 1 when off is a vector holding nested vector k of worker w in state st;
   else 0 with why. */
static int nested_matches(mseg *s, int w, uint32_t k, mseg_off off, const struct item *st,
                          char *why, size_t n)
{
    mseg_vec *v = mseg_at(s, off);
    errno = 0;
    size_t len = v ? mseg_vec_len(s, v) : 0;
    if (!v || (len == 0 && errno)) {
        describe(why, n, "map w%d.own: key #%u holds %#" PRIx64 ", not a vector: errno %d (%s)",
                 w, k, off, errno, mseg_errmsg());
        return 0;
    }
    if (len != st->size) {
        describe(why, n, "map w%d.own: key #%u: the vector at %#" PRIx64 " has %zu elements, expected %u "
                 "(version %" PRIu64 ")", w, k, off, len, st->size, st->version);
        return 0;
    }
    const uint64_t *d = len ? mseg_vec_data(s, v) : NULL;
    if (len && !d) {
        describe(why, n, "map w%d.own: key #%u: the vector at %#" PRIx64 " has no data: errno %d (%s)",
                 w, k, off, errno, mseg_errmsg());
        return 0;
    }
    size_t bad = obj_first_bad(d, len, own_seed(w, k, st->version));
    if (bad < len) {
        describe(why, n, "map w%d.own: key #%u: the vector at %#" PRIx64 ": element %zu of %zu is %#" PRIx64
                 ", expected %#" PRIx64 " (version %" PRIu64 ")", w, k, off, bad, len, d[bad],
                 mix(own_seed(w, k, st->version) + bad), st->version);
        return 0;
    }
    return 1;
}

/* 1 when key k of worker w's owning map is in state st (size: elements of
   the nested vector it holds); else 0 with why. */
static int own_matches(mseg *s, int w, uint32_t k, const struct item *st, char *why, size_t n)
{
    mseg_map *m = map_handle(s, w, true);
    if (!m) {
        describe(why, n, "map w%d.own: open failed with errno %d (%s)", w, errno, mseg_errmsg());
        return 0;
    }
    uint64_t key = own_key(w, k);
    size_t vlen = 0;
    errno = 0;
    const void *p = mseg_map_get(s, m, &key, sizeof key, &vlen);
    if (!st->live) {
        if (!p && errno == ENOENT)
            return 1;
        if (p)
            describe(why, n, "map w%d.own: key #%u is present but should be absent", w, k);
        else
            describe(why, n, "map w%d.own: get of key #%u failed with errno %d (%s), expected ENOENT",
                     w, k, errno, mseg_errmsg());
        return 0;
    }
    if (!p || vlen != sizeof(mseg_off)) {
        describe(why, n, "map w%d.own: key #%u (version %" PRIu64 ", %u elements) is missing or has a "
                 "%zu-byte value: errno %d (%s)", w, k, st->version, st->size, vlen, errno, mseg_errmsg());
        return 0;
    }
    mseg_off off;
    memcpy(&off, p, sizeof off);
    return nested_matches(s, w, k, off, st, why, n);
}

/* Version of vector element i in the table (c NULL, or !after), or after
   change c. */
static uint64_t vec_version(const struct slot *o, const struct change *c, bool after, uint32_t i)
{
    if (!c || !after)
        return o->ver[i];
    if (i >= c->lo && i < c->hi)
        return c->vv;
    return c->before.live && i < c->before.size ? o->ver[i] : 0;
}

/* 1 when worker w's vector is in the table's state (c NULL) or change c's
   before- or after-state; else 0 with why. */
static int vec_matches(mseg *s, int w, const struct slot *o, const struct change *c, bool after,
                       char *why, size_t n)
{
    const struct item *st = !c ? &o->vec : after ? &c->after : &c->before;
    char name[64];
    vec_name(name, sizeof name, w);
    errno = 0;
    mseg_vec *v = mseg_vec_open(s, name, sizeof(uint64_t), 0);
    if (!st->live) {
        if (!v && errno == ENOENT)
            return 1;
        if (v)
            describe(why, n, "vector %s exists (%zu elements) but should be absent", name, mseg_vec_len(s, v));
        else
            describe(why, n, "vector %s: open failed with errno %d (%s), expected ENOENT",
                     name, errno, mseg_errmsg());
        return 0;
    }
    if (!v) {
        describe(why, n, "vector %s (%u elements) is missing: errno %d (%s)", name, st->size, errno,
                 mseg_errmsg());
        return 0;
    }
    size_t len = mseg_vec_len(s, v);
    if (len != st->size) {
        describe(why, n, "vector %s has %zu elements, expected %u", name, len, st->size);
        return 0;
    }
    const uint64_t *d = len ? mseg_vec_data(s, v) : NULL;
    if (len && !d) {
        describe(why, n, "vector %s: no data: errno %d (%s)", name, errno, mseg_errmsg());
        return 0;
    }
    for (uint32_t i = 0; i < len; i++) {
        uint64_t ver = vec_version(o, c, after, i);
        if (d[i] != vec_elem(w, i, ver)) {
            describe(why, n, "vector %s: element %u of %zu is %#" PRIx64 ", expected %#" PRIx64
                     " (element version %" PRIu64 ")", name, i, len, d[i], vec_elem(w, i, ver), ver);
            return 0;
        }
    }
    return 1;
}

/* 1 when change c's item is in its after-state (after) or before-state. */
static int change_matches(mseg *s, const struct reg_entry *reg, int w, const struct slot *o,
                          const struct change *c, bool after, char *why, size_t n)
{
    const struct item *st = after ? &c->after : &c->before;
    switch (op_family(c->op)) {
    case F_OBJ: return obj_matches(s, w, c->idx, st, why, n);
    case F_REG: return reg_matches(s, reg, w, c->idx, st, why, n);
    case F_MAP: return map_matches(s, w, c->idx, st, why, n);
    case F_OWN: return own_matches(s, w, c->idx, st, why, n);
    default:    return vec_matches(s, w, o, c, after, why, n);
    }
}

/* Decides slot o's in-flight operation: 1 every change happened, 0 none
   did, -1 a mix or a state that is neither (why says which). */
static int classify(mseg *s, const struct reg_entry *reg, int w, const struct slot *o,
                    char *why, size_t n)
{
    const struct intent *in = &o->in;
    int before = 0, after = 0;
    char wb[400], wa[400];
    int first_before = -1, first_after = -1;
    for (uint32_t j = 0; j < in->n; j++) {
        const struct change *c = &in->ch[j];
        int b = change_matches(s, reg, w, o, c, false, wb, sizeof wb);
        int a = change_matches(s, reg, w, o, c, true, wa, sizeof wa);
        if (!a && !b) {
            describe(why, n, "operation %" PRIu64 " (%s), change %u (%s #%u) is in neither its "
                     "before- nor its after-state: as before: %s; as after: %s",
                     in->seq, kind_name(in->kind), j, op_name(c->op), c->idx, wb, wa);
            return -1;
        }
        if (b && first_before < 0)
            first_before = (int)j;
        if (a && first_after < 0)
            first_after = (int)j;
        before += b;
        after += a;
    }
    if (after == (int)in->n)
        return 1;
    if (before == (int)in->n)
        return 0;
    describe(why, n, "operation %" PRIu64 " (%s of %u changes) half happened: change %d (%s #%u) "
             "is in its before-state, change %d (%s #%u) in its after-state",
             in->seq, kind_name(in->kind), in->n, first_before, op_name(in->ch[first_before].op),
             in->ch[first_before].idx, first_after, op_name(in->ch[first_after].op),
             in->ch[first_after].idx);
    return -1;
}

/* ---- the oracle protocol ------------------------------------------------------- */

static uint64_t load(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void store(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/* A vector change into the table. It reads only the change, never the
   table's length, so that applying it twice (a reader finishing step 4 for
   a killed worker) does no harm. */
static void vec_apply(struct slot *o, const struct change *c)
{
    uint32_t from = c->before.live ? c->before.size : 0, to = c->after.live ? c->after.size : 0;
    for (uint32_t i = from; i < to; i++)
        o->ver[i] = 0;
    for (uint32_t i = c->lo; i < c->hi; i++)
        o->ver[i] = c->vv;
    o->vec = c->after;
}

/* Step 4: the acknowledged operation's after-states into the table. */
static void table_apply(struct slot *o)
{
    uint64_t seq = load(&o->ack_seq);
    if (__atomic_load_n(&o->ack_applied, __ATOMIC_ACQUIRE))
        for (uint32_t j = 0; j < o->in.n; j++) {
            const struct change *c = &o->in.ch[j];
            if (op_family(c->op) == F_VEC)
                vec_apply(o, c);
            else
                *item_of(o, c) = c->after;
        }
    store(&o->applied_seq, seq);
}

/* Step 3 and 4. */
static void ack(struct slot *o, uint64_t seq, bool applied)
{
    __atomic_store_n(&o->ack_applied, applied, __ATOMIC_RELAXED);
    store(&o->ack_seq, seq);
    table_apply(o);
}

/* Settles what a dead process left in slot o; returns -1 (why set) if the
   in-flight operation is neither all nor nothing, else 0, with *inflight
   -1 when none was in flight, else 1 applied / 0 not. The caller holds the
   segment lock or is alone on the segment. */
static int settle(mseg *s, const struct reg_entry *reg, int w, struct slot *o,
                  int *inflight, char *why, size_t n)
{
    *inflight = -1;
    uint64_t i = load(&o->intent_seq), a = load(&o->ack_seq), p = load(&o->applied_seq);
    if (a == i) {
        if (p != i)
            table_apply(o);
        return 0;
    }
    for (uint32_t j = 0; j < o->in.n; j++) {    /* the intent must start from the table */
        const struct change *c = &o->in.ch[j];
        const struct item *t = item_of(o, c);
        if (memcmp(t, &c->before, sizeof *t)) {
            describe(why, n, "oracle: intent %" PRIu64 " change %u does not start from the "
                     "acknowledged state (a bug of the torture program)", o->in.seq, j);
            return -1;
        }
    }
    int r = classify(s, reg, w, o, why, n);
    if (r < 0)
        return -1;
    *inflight = r;
    __atomic_fetch_add(r ? &o->settled_applied : &o->settled_undone, 1, __ATOMIC_RELAXED);
    ack(o, i, r == 1);
    return 0;
}

/* ---- workers ------------------------------------------------------------------- */

struct worker {
    mseg *s;
    int w;
    struct slot *o;
    struct reg_entry *reg;
    mseg_map *map, *own;        /* its map and owning map (never destroyed) */
    uint64_t rng;
    uint64_t buf[8192];
};

static void worker_fail(struct worker *k, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void worker_fail(struct worker *k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int m = snprintf(k->o->err, sizeof k->o->err, "worker %d (pid %d), operation %" PRIu64 ": ",
                     k->w, (int)getpid(), k->o->in.seq);
    vsnprintf(k->o->err + m, sizeof k->o->err - (size_t)m, fmt, ap);
    va_end(ap);
    __atomic_store_n(&k->o->failed, 1, __ATOMIC_RELEASE);
    _exit(3);
}

static uint32_t obj_count(uint64_t *rng)
{
    uint64_t r = below(rng, 100);
    return r < 5 ? 1024 + (uint32_t)below(rng, 3072) : 1 + (uint32_t)below(rng, 512);
}

static uint32_t blk_size(uint64_t *rng)
{
    uint64_t r = below(rng, 100);
    return r < 5 ? 4096 + (uint32_t)below(rng, 28672) : 1 + (uint32_t)below(rng, 4096);
}

static uint32_t blk_align(uint64_t *rng)
{
    return below(rng, 4) ? 0 : 32u << below(rng, 8);    /* 32 .. 4096 */
}

/* Result of running one change: 0 done, 1 failed cleanly (ENOMEM: the
   segment or, in a transaction, its log is full). */
static int run_construct(struct worker *k, const struct change *c)
{
    char name[64];
    obj_name(name, sizeof name, k->w, c->idx);
    obj_fill(k->buf, c->after.size, obj_seed(k->w, c->idx, c->after.version));
    void *p = mseg_construct(k->s, name, OBJ_TYPE, sizeof(uint64_t), c->after.size, k->buf);
    if (p)
        return 0;
    if (errno == ENOMEM)
        return 1;
    worker_fail(k, "construct %s (%u words): errno %d: %s", name, c->after.size, errno, mseg_errmsg());
}

/* The object's data after checking it holds st. */
static uint64_t *find_checked(struct worker *k, uint32_t idx, const struct item *st)
{
    char why[400];
    if (!obj_matches(k->s, k->w, idx, st, why, sizeof why))
        worker_fail(k, "before changing it: %s", why);
    char name[64];
    obj_name(name, sizeof name, k->w, idx);
    return mseg_find(k->s, name, OBJ_TYPE, sizeof(uint64_t), NULL);
}

static int run_destroy(struct worker *k, const struct change *c)
{
    find_checked(k, c->idx, &c->before);
    char name[64];
    obj_name(name, sizeof name, k->w, c->idx);
    if (mseg_destroy(k->s, name) == 0)
        return 0;
    worker_fail(k, "destroy %s: errno %d: %s", name, errno, mseg_errmsg());
}

/* mseg_tx_add: 0 done, 1 the transaction's log is full (ENOMEM; the
   engine has rolled the transaction back). */
static int declare(struct worker *k, void *p, size_t n, const char *what, uint32_t idx)
{
    if (mseg_tx_add(k->s, p, n) == 0)
        return 0;
    if (errno == ENOMEM)
        return 1;
    worker_fail(k, "tx_add %s #%u (%zu bytes): errno %d: %s", what, idx, n, errno, mseg_errmsg());
}

/* In a transaction: declared, then rewritten word by word (a kill in the
   middle leaves a torn object that recovery must undo). */
static int run_overwrite(struct worker *k, const struct change *c)
{
    uint64_t *p = find_checked(k, c->idx, &c->before);
    size_t n = c->before.size, half = below(&k->rng, 2) ? n / 2 : 0;
    uint64_t seed = obj_seed(k->w, c->idx, c->after.version);
    if (half && declare(k, p, half * sizeof *p, "object", c->idx))
        return 1;
    for (size_t i = 0; i < half; i++)
        p[i] = mix(seed + i);
    if (declare(k, p + half, (n - half) * sizeof *p, "object", c->idx))
        return 1;
    for (size_t i = half; i < n; i++)
        p[i] = mix(seed + i);
    return 0;
}

static int reg_record(struct worker *k, uint32_t i, const struct reg_entry *e)
{
    if (declare(k, &k->reg[i], sizeof k->reg[i], "registry slot", i))
        return 1;
    k->reg[i] = *e;
    return 0;
}

static int run_alloc(struct worker *k, const struct change *c)
{
    const struct item *a = &c->after;
    uint8_t *p = a->align ? mseg_alloc_aligned(k->s, a->size, a->align) : mseg_alloc(k->s, a->size);
    if (!p) {
        if (errno == ENOMEM)
            return 1;
        worker_fail(k, "alloc %u bytes (align %u): errno %d: %s", a->size, a->align, errno, mseg_errmsg());
    }
    struct reg_entry e = { mseg_off_of(k->s, p), a->size, a->align, a->version };
    bool record_first = below(&k->rng, 2);
    if (record_first && reg_record(k, c->idx, &e))
        return 1;
    blk_fill(p, a->size, blk_seed(k->w, c->idx, a->version));
    if (!record_first && reg_record(k, c->idx, &e))
        return 1;
    return 0;
}

static int run_free(struct worker *k, const struct change *c)
{
    char why[400];
    if (!reg_matches(k->s, k->reg, k->w, c->idx, &c->before, why, sizeof why))
        worker_fail(k, "before freeing it: %s", why);
    struct reg_entry e = k->reg[c->idx], zero = { 0, 0, 0, 0 };
    bool unrecord_first = below(&k->rng, 2);
    if (unrecord_first && reg_record(k, c->idx, &zero))
        return 1;
    if (mseg_free(k->s, mseg_at(k->s, e.off)))
        worker_fail(k, "free of the block at %#" PRIx64 " (slot %u): errno %d: %s",
                    e.off, c->idx, errno, mseg_errmsg());
    if (!unrecord_first && reg_record(k, c->idx, &zero))
        return 1;
    return 0;
}

/* A container call's failure: 1 for ENOMEM (the segment or, in a
   transaction, its log is full: the call changed nothing, or the engine
   rolled the transaction back), else the worker fails. */
static int container_failed(struct worker *k, const struct change *c, const char *call)
{
    if (errno == ENOMEM)
        return 1;
    worker_fail(k, "%s #%u: %s: errno %d: %s", op_name(c->op), c->idx, call, errno, mseg_errmsg());
}

static void check_before(struct worker *k, const struct change *c)
{
    char why[400];
    if (!change_matches(k->s, k->reg, k->w, k->o, c, false, why, sizeof why))
        worker_fail(k, "before the %s: %s", op_name(c->op), why);
}

static int run_map(struct worker *k, const struct change *c)
{
    check_before(k, c);
    uint64_t key = key_wire(k->w, false, map_key(k->w, c->idx));
    if (c->op == OP_MDEL)
        return mseg_map_del(k->s, k->map, &key, sizeof key) ? container_failed(k, c, "mseg_map_del") : 0;
    blk_fill((uint8_t *)k->buf, c->after.size, map_seed(k->w, c->idx, c->after.version));
    if (mseg_map_put(k->s, k->map, &key, sizeof key, k->buf, c->after.size))
        return container_failed(k, c, "mseg_map_put");
    return 0;
}

/* The worker's vector, which the table says exists. */
static mseg_vec *vec_checked(struct worker *k, const struct change *c)
{
    char name[64];
    vec_name(name, sizeof name, k->w);
    mseg_vec *v = mseg_vec_open(k->s, name, sizeof(uint64_t), 0);
    if (!v)
        worker_fail(k, "%s: open %s: errno %d: %s", op_name(c->op), name, errno, mseg_errmsg());
    return v;
}

/* Pops down to length `to`, checking each popped element against the table. */
static int vec_pop_to(struct worker *k, const struct change *c, mseg_vec *v, uint32_t to)
{
    for (uint32_t i = c->before.size; i-- > to; ) {
        uint64_t e = ~0ull;
        if (mseg_vec_pop(k->s, v, &e))
            return container_failed(k, c, "mseg_vec_pop");
        if (e != vec_elem(k->w, i, k->o->ver[i]))
            worker_fail(k, "%s: popped element %u is %#" PRIx64 ", expected %#" PRIx64, op_name(c->op),
                        i, e, vec_elem(k->w, i, k->o->ver[i]));
    }
    return 0;
}

static int vec_push_range(struct worker *k, const struct change *c, mseg_vec *v)
{
    for (uint32_t i = c->lo; i < c->hi; i++) {
        uint64_t e = vec_elem(k->w, i, c->vv);
        if (mseg_vec_push(k->s, v, &e))
            return container_failed(k, c, "mseg_vec_push");
    }
    return 0;
}

/* Elements [lo, hi) rewritten in place, declared with mseg_tx_add (in one
   or two ranges), then stored word by word: a kill in the middle leaves a
   torn range that recovery must undo. */
static int vec_overwrite(struct worker *k, const struct change *c, mseg_vec *v)
{
    uint64_t *p = mseg_vec_at(k->s, v, c->lo);
    if (!p)
        worker_fail(k, "vector overwrite: element %u: errno %d: %s", c->lo, errno, mseg_errmsg());
    size_t n = c->hi - c->lo, half = below(&k->rng, 2) ? n / 2 : 0;
    if (half && declare(k, p, half * sizeof *p, "vector element", c->lo))
        return 1;
    for (size_t i = 0; i < half; i++)
        p[i] = vec_elem(k->w, c->lo + (uint32_t)i, c->vv);
    if (declare(k, p + half, (n - half) * sizeof *p, "vector element", c->lo + (uint32_t)half))
        return 1;
    for (size_t i = half; i < n; i++)
        p[i] = vec_elem(k->w, c->lo + (uint32_t)i, c->vv);
    return 0;
}

static int run_vec(struct worker *k, const struct change *c)
{
    char name[64];
    vec_name(name, sizeof name, k->w);
    check_before(k, c);
    if (c->op == OP_VCREATE)
        return mseg_vec_open(k->s, name, sizeof(uint64_t), MSEG_CREATE) ? 0 : container_failed(k, c, "mseg_vec_open");
    if (c->op == OP_VDESTROY)
        return mseg_destroy(k->s, name) ? container_failed(k, c, "mseg_destroy") : 0;
    mseg_vec *v = vec_checked(k, c);
    switch (c->op) {
    case OP_VPUSH:
        return vec_push_range(k, c, v);
    case OP_VPOP:
        return vec_pop_to(k, c, v, c->after.size);
    case OP_VPOPPUSH:
        return vec_pop_to(k, c, v, c->lo) || vec_push_range(k, c, v);
    case OP_VRESIZE:
        return mseg_vec_resize(k->s, v, c->after.size) ? container_failed(k, c, "mseg_vec_resize") : 0;
    case OP_VRESERVE:
        return mseg_vec_reserve(k->s, v, c->arg) ? container_failed(k, c, "mseg_vec_reserve") : 0;
    default:
        return vec_overwrite(k, c, v);
    }
}

/* The nested vector at key k of the owning map (which the table says exists). */
static mseg_vec *nested_checked(struct worker *k, const struct change *c)
{
    uint64_t key = own_key(k->w, c->idx);
    const void *p = mseg_map_get(k->s, k->own, &key, sizeof key, NULL);
    mseg_off off = 0;
    if (p)
        memcpy(&off, p, sizeof off);
    mseg_vec *v = p ? mseg_at(k->s, off) : NULL;
    if (!v)
        worker_fail(k, "%s #%u: the nested vector: errno %d: %s", op_name(c->op), c->idx, errno, mseg_errmsg());
    return v;
}

/* put: a new anonymous vector, filled, then put under the key (replacing,
   and so freeing, the one there): one transaction, or the vector could
   be left unowned. */
static int run_own_put(struct worker *k, const struct change *c)
{
    mseg_vec *v = mseg_vec_new(k->s, sizeof(uint64_t));
    if (!v)
        return container_failed(k, c, "mseg_vec_new");
    if (below(&k->rng, 2) && mseg_vec_reserve(k->s, v, c->after.size))
        return container_failed(k, c, "mseg_vec_reserve");
    uint64_t seed = own_seed(k->w, c->idx, c->after.version);
    for (uint32_t i = 0; i < c->after.size; i++) {
        uint64_t e = mix(seed + i);
        if (mseg_vec_push(k->s, v, &e))
            return container_failed(k, c, "mseg_vec_push");
    }
    uint64_t key = own_key(k->w, c->idx);
    mseg_off off = mseg_off_of(k->s, v);
    if (mseg_map_put(k->s, k->own, &key, sizeof key, &off, sizeof off))
        return container_failed(k, c, "mseg_map_put");
    return 0;
}

static int run_own(struct worker *k, const struct change *c)
{
    check_before(k, c);
    uint64_t key = own_key(k->w, c->idx);
    if (c->op == OP_OPUT)
        return run_own_put(k, c);
    if (c->op == OP_ODEL)
        return mseg_map_del(k->s, k->own, &key, sizeof key) ? container_failed(k, c, "mseg_map_del") : 0;
    mseg_vec *v = nested_checked(k, c);
    uint64_t seed = own_seed(k->w, c->idx, c->before.version);
    if (c->op == OP_OPUSH) {
        uint64_t e = mix(seed + c->before.size);
        return mseg_vec_push(k->s, v, &e) ? container_failed(k, c, "mseg_vec_push") : 0;
    }
    uint64_t e = ~0ull;
    if (mseg_vec_pop(k->s, v, &e))
        return container_failed(k, c, "mseg_vec_pop");
    if (e != mix(seed + c->after.size))
        worker_fail(k, "nested pop #%u: popped %#" PRIx64 ", expected %#" PRIx64, c->idx, e,
                    mix(seed + c->after.size));
    return 0;
}

static int run_change(struct worker *k, const struct change *c)
{
    switch (c->op) {
    case OP_CONSTRUCT: return run_construct(k, c);
    case OP_DESTROY:   return run_destroy(k, c);
    case OP_OVERWRITE: return run_overwrite(k, c);
    case OP_ALLOC:     return run_alloc(k, c);
    case OP_FREE:      return run_free(k, c);
    default:
        switch (op_family(c->op)) {
        case F_MAP: return run_map(k, c);
        case F_VEC: return run_vec(k, c);
        default:    return run_own(k, c);
        }
    }
}

static uint32_t map_vlen(uint64_t *rng)
{
    uint64_t r = below(rng, 100);
    return r < 8 ? (uint32_t)below(rng, 8) : r < 88 ? 8 + (uint32_t)below(rng, 249)
         : r < 98 ? 257 + (uint32_t)below(rng, 1792) : 4096 + (uint32_t)below(rng, 20481);
}

static uint32_t vec_push_count(uint64_t *rng)
{
    uint64_t r = below(rng, 100);
    return r < 60 ? 1 : r < 95 ? 2 + (uint32_t)below(rng, 15) : 32 + (uint32_t)below(rng, 129);
}

static uint32_t min32(uint32_t a, uint32_t b) { return a < b ? a : b; }

/* A change of the vector (which no other change of the intent touches). */
static void plan_vec(struct worker *k, struct change *c)
{
    struct slot *o = k->o;
    uint32_t len = o->vec.size;
    c->idx = 0;
    c->after = o->vec;
    if (!o->vec.live) {
        c->op = OP_VCREATE;
        c->after = (struct item){ 1, 0, 0, 0, 0 };
        return;
    }
    uint64_t r = below(&k->rng, 100);
    if ((r >= 35 && r < 65 && len == 0) || (r >= 82 && len == 0))
        r = 10;                         /* pop or overwrite of nothing: push */
    else if (r >= 2 && r < 35 && len == VMAX)
        r = 40;                         /* push onto a full one: pop */
    if (r < 2) {
        c->op = OP_VDESTROY;
        c->after = (struct item){ 0, 0, 0, 0, 0 };
    } else if (r < 35) {
        c->op = OP_VPUSH;
        c->lo = len;
        c->hi = len + min32(vec_push_count(&k->rng), VMAX - len);
        c->vv = o->next_version++;
        c->after.size = c->hi;
    } else if (r < 55) {
        c->op = OP_VPOP;
        c->after.size = len - (below(&k->rng, 100) < 60 ? 1 : 1 + (uint32_t)below(&k->rng, min32(len, 32)));
    } else if (r < 65) {
        c->op = OP_VPOPPUSH;
        c->lo = len - 1 - (uint32_t)below(&k->rng, min32(len, 16));
        c->hi = c->lo + min32(1 + (uint32_t)below(&k->rng, 32), VMAX - c->lo);
        c->vv = o->next_version++;
        c->after.size = c->hi;
    } else if (r < 75) {
        uint64_t r2 = below(&k->rng, 10);
        uint32_t to = r2 < 5 ? len + 1 + (uint32_t)below(&k->rng, VMAX / 8)
                    : r2 < 8 ? (uint32_t)below(&k->rng, len + 1) : (uint32_t)below(&k->rng, VMAX + 1);
        c->op = OP_VRESIZE;
        c->after.size = min32(to, VMAX);
    } else if (r < 82) {
        c->op = OP_VRESERVE;
        c->arg = len + 1 + (uint32_t)below(&k->rng, VMAX);
    } else {
        c->op = OP_VWRITE;
        c->lo = (uint32_t)below(&k->rng, len);
        c->hi = c->lo + 1 + (uint32_t)below(&k->rng, min32(len - c->lo, 256));
        c->vv = o->next_version++;
    }
}

static void plan_map(struct worker *k, struct change *c)
{
    struct slot *o = k->o;
    if (!c->before.live || below(&k->rng, 100) < 60) {
        c->op = OP_MPUT;
        c->after = (struct item){ 1, map_vlen(&k->rng), 0, 0, o->next_version++ };
    } else {
        c->op = OP_MDEL;
    }
}

static void plan_own(struct worker *k, struct change *c)
{
    struct slot *o = k->o;
    uint64_t r = below(&k->rng, 100);
    if (!c->before.live || r < 30) {
        c->op = OP_OPUT;
        uint32_t n = below(&k->rng, 10) ? (uint32_t)below(&k->rng, 33) : 64 + (uint32_t)below(&k->rng, 129);
        c->after = (struct item){ 1, n, 0, 0, o->next_version++ };
    } else if (r < 55) {
        c->op = OP_ODEL;
    } else if ((r < 85 || c->before.size == 0) && c->before.size < NEST_MAX) {
        c->op = OP_OPUSH;
        c->after = c->before;
        c->after.size++;
    } else {
        c->op = OP_OPOP;
        c->after = c->before;
        c->after.size--;
    }
}

/* A change of family f to a random item not yet in the intent; false when
   f is the vector and the intent already changes it. */
static bool plan_change(struct worker *k, struct intent *in, enum family f)
{
    static const uint32_t items[] = { [F_OBJ] = NOBJ, [F_REG] = NREG, [F_MAP] = NKEY, [F_VEC] = 1, [F_OWN] = NOWN };
    struct change *c = &in->ch[in->n];
    memset(c, 0, sizeof *c);
    for (;;) {
        c->idx = (uint32_t)below(&k->rng, items[f]);
        bool taken = false;
        for (uint32_t j = 0; j < in->n; j++)
            taken |= op_family(in->ch[j].op) == f && in->ch[j].idx == c->idx;
        if (!taken)
            break;
        if (f == F_VEC)
            return false;
    }
    struct slot *o = k->o;
    bool obj = f == F_OBJ;
    c->op = f == F_OBJ ? OP_CONSTRUCT : f == F_REG ? OP_ALLOC : f == F_MAP ? OP_MPUT : f == F_VEC ? OP_VCREATE : OP_OPUT;
    c->before = *item_of(o, c);
    if (f == F_MAP)
        plan_map(k, c);
    else if (f == F_VEC)
        plan_vec(k, c);
    else if (f == F_OWN)
        plan_own(k, c);
    else if (obj && !c->before.live) {
        c->op = OP_CONSTRUCT;
        c->after = (struct item){ 1, obj_count(&k->rng), 0, 0, o->next_version++ };
    } else if (obj) {
        c->op = below(&k->rng, 100) < 35 ? OP_DESTROY : OP_OVERWRITE;
        if (c->op == OP_OVERWRITE)
            c->after = (struct item){ 1, c->before.size, 0, 0, o->next_version++ };
    } else if (!c->before.live) {
        c->op = OP_ALLOC;
        c->after = (struct item){ 1, blk_size(&k->rng), blk_align(&k->rng), 0, o->next_version++ };
    } else {
        c->op = OP_FREE;
    }
    in->n++;
    return true;
}

/* A family for the next change: weights per cent for single operations and
   for the changes of transactions. */
static enum family pick_family(struct worker *k, bool tx)
{
    static const uint32_t single[] = { 18, 22, 30, 18, 12 }, multi[] = { 20, 20, 25, 15, 20 };
    const uint32_t *wt = tx ? multi : single;
    uint64_t r = below(&k->rng, 100);
    uint32_t f = 0;
    for (uint32_t acc = wt[0]; r >= acc; acc += wt[++f])
        ;
    return (enum family)f;
}

/* Writes the next intent into the oracle (step 1). */
static void plan(struct worker *k, uint64_t seq)
{
    struct intent *in = &k->o->in;
    uint64_t r = below(&k->rng, 100);
    in->seq = seq;
    in->n = 0;
    if (r < 80) {
        in->kind = K_SINGLE;
        plan_change(k, in, pick_family(k, false));
    } else {
        in->kind = r < 94 ? K_TX : K_TX_ABORT;
        uint32_t n = 2 + (uint32_t)below(&k->rng, MAXCH - 1);
        while (in->n < n)
            plan_change(k, in, pick_family(k, true));
    }
    store(&k->o->intent_seq, seq);
}

/* A single change that is more than one engine call (or user stores)
   needs a transaction to be atomic. */
static bool needs_tx(const struct intent *in)
{
    if (in->kind != K_SINGLE)
        return true;
    const struct change *c = &in->ch[0];
    switch (c->op) {
    case OP_OVERWRITE: case OP_ALLOC: case OP_FREE: case OP_OPUT: case OP_VPOPPUSH: case OP_VWRITE:
        return true;
    case OP_VPUSH:
        return c->hi - c->lo > 1;
    case OP_VPOP:
        return c->before.size - c->after.size > 1;
    default:
        return false;
    }
}

/* Runs the planned operation; true when it happened. */
static bool execute(struct worker *k)
{
    const struct intent *in = &k->o->in;
    if (!needs_tx(in)) {
        int r = run_change(k, &in->ch[0]);
        if (r)
            __atomic_fetch_add(&k->o->enomem, 1, __ATOMIC_RELAXED);
        return r == 0;
    }
    if (mseg_tx_begin(k->s))
        worker_fail(k, "tx_begin: errno %d: %s", errno, mseg_errmsg());
    for (uint32_t j = 0; j < in->n; j++) {
        if (run_change(k, &in->ch[j]) == 0)
            continue;
        __atomic_fetch_add(&k->o->enomem, 1, __ATOMIC_RELAXED);
        if (mseg_tx_abort(k->s))
            worker_fail(k, "tx_abort after ENOMEM: errno %d: %s", errno, mseg_errmsg());
        return false;
    }
    if (in->kind == K_TX_ABORT) {
        if (mseg_tx_abort(k->s))
            worker_fail(k, "tx_abort: errno %d: %s", errno, mseg_errmsg());
        __atomic_fetch_add(&k->o->aborts, 1, __ATOMIC_RELAXED);
        return false;
    }
    if (mseg_tx_commit(k->s))
        worker_fail(k, "tx_commit: errno %d: %s", errno, mseg_errmsg());
    __atomic_fetch_add(&k->o->txs, 1, __ATOMIC_RELAXED);
    return true;
}

/* The worker's own view right after the operation (its items are its own). */
static void check_outcome(struct worker *k, bool applied)
{
    const struct intent *in = &k->o->in;
    char why[400];
    for (uint32_t j = 0; j < in->n; j++) {
        const struct change *c = &in->ch[j];
        if (!change_matches(k->s, k->reg, k->w, k->o, c, applied, why, sizeof why))
            worker_fail(k, "right after the %s %s: %s", kind_name(in->kind),
                        applied ? "returned" : "failed or was aborted", why);
    }
}

/* Settles the previous incarnation's operation under the segment lock. */
static void worker_settle(struct worker *k)
{
    char why[600];
    int inflight;
    if (mseg_tx_begin(k->s))
        worker_fail(k, "tx_begin to settle: errno %d: %s", errno, mseg_errmsg());
    if (settle(k->s, k->reg, k->w, k->o, &inflight, why, sizeof why))
        worker_fail(k, "settling the operation its predecessor was killed in: %s", why);
    if (mseg_tx_commit(k->s))
        worker_fail(k, "empty tx_commit: errno %d: %s", errno, mseg_errmsg());
}

/* Self-kill: the worker dies of SIGKILL at the n-th crash point or flush
   the engine reaches in it, unless the supervisor has disarmed it. */
#define SELF_KILL_SPAN 1500     /* n is uniform in 1..SELF_KILL_SPAN */
static unsigned long self_kill_at, self_kill_events;
static struct slot *self_kill_slot;
static uint64_t self_kill_rng;

static void self_kill_now(void)
{
    if (!__atomic_load_n(&self_kill_slot->self_kill_armed, __ATOMIC_ACQUIRE))
        return;
    __atomic_fetch_add(&self_kill_slot->self_kills, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&self_kill_slot->self_killed_pid, (int32_t)getpid(), __ATOMIC_RELEASE);
    raise(SIGKILL);
}

static void self_kill_event(void)
{
    if (++self_kill_events == self_kill_at)
        self_kill_now();
}

static void on_crash_point(const char *point, unsigned long n, void *arg)
{
    (void)point; (void)n; (void)arg;
    self_kill_event();
}

static void on_flush(const uint8_t *base, uint64_t size, uint64_t off, uint64_t len, void *arg)
{
    (void)base; (void)size; (void)len; (void)arg;
    /* a header rewrite (growth, shrink) is a rare step with several stores
       to the segment and to the runtime page: die there far more often */
    if (off < MSEG_RUNTIME_OFF && below(&self_kill_rng, 4) == 0)
        self_kill_now();
    self_kill_event();
}

/* Half the workers (the others keep the engine's fast paths, which a crash
   hook turns off) kill themselves at a random event. */
static void maybe_arm_self_kill(struct worker *k)
{
    if (below(&k->rng, 2))
        return;
    self_kill_slot = k->o;
    self_kill_at = 1 + below(&k->rng, SELF_KILL_SPAN);
    self_kill_rng = rnd(&k->rng);
    mseg_test_set_crash_hook(on_crash_point, NULL);
    mseg_test_set_flush_hook(on_flush, NULL);
}

static void worker_main(const char *name, unsigned flags, int w, struct slot *o, uint64_t seed,
                        pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(4);
    static struct worker k;
    k.w = w;
    k.o = o;
    k.rng = seed;
    if (!(flags & MSEG_SHM) && below(&k.rng, 8) == 0) {
        flags |= MSEG_DURABLE;
        __atomic_fetch_add(&o->durable_opens, 1, __ATOMIC_RELAXED);
    }
    maybe_arm_self_kill(&k);
    k.s = mseg_open(name, flags, NULL);
    if (!k.s)
        worker_fail(&k, "open %s: errno %d: %s", name, errno, mseg_errmsg());
    char rn[64];
    size_t n = 0;
    reg_name(rn, sizeof rn, w);
    k.reg = mseg_find(k.s, rn, REG_TYPE, sizeof(struct reg_entry), &n);
    if (!k.reg || n != NREG)
        worker_fail(&k, "registry %s: errno %d: %s", rn, errno, mseg_errmsg());
    k.map = map_handle(k.s, w, false);
    k.own = map_handle(k.s, w, true);
    if (!k.map || !k.own)
        worker_fail(&k, "maps of worker %d: errno %d: %s", w, errno, mseg_errmsg());
    worker_settle(&k);
    for (;;) {
        uint64_t seq = load(&o->intent_seq) + 1;
        plan(&k, seq);
        bool applied = execute(&k);
        check_outcome(&k, applied);
        ack(o, seq, applied);
        __atomic_fetch_add(&o->acks, 1, __ATOMIC_RELAXED);
        for (uint32_t j = 0; applied && j < o->in.n; j++)
            __atomic_fetch_add(&o->op_acks[o->in.ch[j].op], 1, __ATOMIC_RELAXED);
    }
}

/* ---- the supervisor -------------------------------------------------------------- */

struct stats {
    uint64_t rounds, kills, restarts, acks, txs, aborts, enomem, durable_opens, self_kills;
    uint64_t inflight_applied, inflight_undone, recoveries, replayed, consistent, lost;
    uint64_t leak_checks, probes, grown, shrunk, max_bytes;
    uint64_t op_acks[OP_MAX + 1];
};

struct run {
    const char *backend;
    unsigned flags;
    char name[300], path[300], clone[300];
    size_t empty_free;          /* free memory of the empty segment, shrunk */
    size_t empty_size;          /* its size */
    size_t size_before;         /* size when the round started */
    size_t size, max_size;      /* creation parameters */
    struct oracle *orc;
    uint64_t rng, seed;
    pid_t pid[MAX_WORKERS];
    int nworkers;
    unsigned round;
    struct stats st;
    char phase[160];
    bool quiet;
};

static bool probes = true;      /* --no-probe turns the liveness probe off */
static struct run *current;     /* for the alarm handler */

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "torture: VIOLATION: the round did not finish in time, phase: ";
    if (current) {
        if (write(2, msg, sizeof msg - 1) < 0 || write(2, current->phase, strlen(current->phase)) < 0 ||
            write(2, "\n", 1) < 0) {
        }
        for (int w = 0; w < MAX_WORKERS; w++)
            if (current->pid[w] > 0)
                kill(current->pid[w], SIGKILL);
    }
    _exit(1);
}

static void phase(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void phase(struct run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->phase, sizeof r->phase, fmt, ap);
    va_end(ap);
}

static void sleep_us(uint64_t us)
{
    struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void dump_intent(const struct slot *o)
{
    const struct intent *in = &o->in;
    fprintf(stderr, "  oracle: intent_seq %" PRIu64 ", ack_seq %" PRIu64 " (applied %u), applied_seq %"
            PRIu64 "; intent %" PRIu64 ": %s of %u\n", o->intent_seq, o->ack_seq, o->ack_applied,
            o->applied_seq, in->seq, kind_name(in->kind), in->n);
    for (uint32_t j = 0; j < in->n && j < MAXCH; j++) {
        const struct change *c = &in->ch[j];
        fprintf(stderr, "    change %u: %s #%u: {live %u, size %u, align %u, version %" PRIu64
                "} -> {live %u, size %u, align %u, version %" PRIu64 "}", j, op_name(c->op), c->idx,
                c->before.live, c->before.size, c->before.align, c->before.version,
                c->after.live, c->after.size, c->after.align, c->after.version);
        if (op_family(c->op) == F_VEC)
            fprintf(stderr, ", elements [%u, %u) to version %" PRIu64 ", reserve %u", c->lo, c->hi, c->vv, c->arg);
        fprintf(stderr, "\n");
    }
}

/* What the oracle believes of every worker: its last intent and the
   registry blocks it counts as live. A violation of the whole round (the
   leak check, w < 0) prints this, so that a block left over can be matched
   with the operation that was in flight at a kill. */
static void dump_oracle(const struct oracle *orc)
{
    for (int w = 0; w < MAX_WORKERS; w++) {
        const struct slot *o = &orc->w[w];
        if (o->intent_seq == 0 && o->ack_seq == 0)
            continue;
        fprintf(stderr, "  worker %d:\n", w);
        dump_intent(o);
        fprintf(stderr, "  oracle: live registry blocks (slot:size):");
        for (uint32_t i = 0; i < NREG; i++)
            if (o->reg[i].live)
                fprintf(stderr, " %u:%u", i, o->reg[i].size);
        fprintf(stderr, "\n");
    }
}

/* Keeps the segment for inspection and exits 1. */
static void violation(struct run *r, int w, const char *fmt, ...) __attribute__((format(printf, 3, 4), noreturn));
static void violation(struct run *r, int w, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "torture: VIOLATION (%s backend, round %u, seed %#" PRIx64 "): ",
            r->backend, r->round, r->seed);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    if (w >= 0)
        dump_intent(&r->orc->w[w]);
    else
        dump_oracle(r->orc);
    for (int i = 0; i < MAX_WORKERS; i++)
        if (r->pid[i] > 0)
            kill(r->pid[i], SIGKILL);
    char keep[400];
    snprintf(keep, sizeof keep, "%s.failed", r->clone);
    int in = open(r->path, O_RDONLY), out = open(keep, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in >= 0 && out >= 0) {
        char buf[1 << 16];
        ssize_t n;
        while ((n = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)n) != n)
                break;
        fprintf(stderr, "torture: the segment is kept in %s\n", keep);
    }
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    mseg_remove(r->name, r->flags);
    exit(1);
}

/* Starts worker w; armed: it may kill itself (self_kill_event). */
static pid_t spawn(struct run *r, int w, uint32_t armed)
{
    uint64_t seed = mix(r->seed ^ ((uint64_t)r->round << 20) ^ ((uint64_t)w << 8) ^ rnd(&r->rng));
    pid_t parent = getpid();
    __atomic_store_n(&r->orc->w[w].self_kill_armed, armed, __ATOMIC_RELEASE);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        violation(r, -1, "fork: %s", strerror(errno));
    if (pid == 0)
        worker_main(r->name, r->flags, w, &r->orc->w[w], seed, parent);
    r->pid[w] = pid;
    return pid;
}

/* Kills worker w and checks that it died of that kill, not before. */
static void kill_worker(struct run *r, int w)
{
    int status;
    kill(r->pid[w], SIGKILL);
    while (waitpid(r->pid[w], &status, 0) < 0)
        if (errno != EINTR)
            violation(r, w, "waitpid: %s", strerror(errno));
    r->pid[w] = 0;
    r->st.kills++;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        return;
    const struct slot *o = &r->orc->w[w];
    if (__atomic_load_n(&o->failed, __ATOMIC_ACQUIRE))
        violation(r, w, "%s", o->err);
    if (WIFSIGNALED(status))
        violation(r, w, "worker %d died of signal %d (%s) before it was killed", w,
                  WTERMSIG(status), strsignal(WTERMSIG(status)));
    violation(r, w, "worker %d exited with status %d before it was killed (see its stderr)",
              w, WEXITSTATUS(status));
}

/* Where the live workers are (for a hang): their kernel wait channel, and
   with TORTURE_GDB=1 a backtrace from gdb. */
static void show_stacks(struct run *r)
{
    int fd = open(r->path, O_RDONLY);
    int32_t word[5];
    if (fd >= 0 && pread(fd, word, sizeof word, MSEG_RUNTIME_OFF) == (ssize_t)sizeof word)
        fprintf(stderr, "torture: segment mutex: lock word %#x (owner tid %u%s%s), count %d, owner %d, "
                "users %d, kind %#x\n", (unsigned)word[0], (unsigned)word[0] & 0x3fffffffu,
                word[0] & (int32_t)0x80000000u ? ", FUTEX_WAITERS" : ", no FUTEX_WAITERS bit",
                word[0] & 0x40000000 ? ", FUTEX_OWNER_DIED" : "", word[1], word[2], word[3],
                (unsigned)word[4]);
    if (fd >= 0)
        close(fd);
    for (int w = 0; w < MAX_WORKERS; w++) {
        if (r->pid[w] <= 0)
            continue;
        char path[64], wchan[128] = "?";
        snprintf(path, sizeof path, "/proc/%d/wchan", (int)r->pid[w]);
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(wchan, sizeof wchan, f))
                snprintf(wchan, sizeof wchan, "?");
            fclose(f);
        }
        const struct slot *o = &r->orc->w[w];
        fprintf(stderr, "torture: worker %d (pid %d): wchan %s, intent %" PRIu64 ", ack %" PRIu64 ", acks %" PRIu64 "\n",
                w, (int)r->pid[w], wchan, o->intent_seq, o->ack_seq, o->acks);
        if (getenv("TORTURE_GDB")) {
            char cmd[128];
            snprintf(cmd, sizeof cmd, "gdb -p %d -batch -ex bt 2>/dev/null | grep '^#' >&2", (int)r->pid[w]);
            if (system(cmd) < 0)
                perror("system");
        }
    }
}

/* Liveness: kills every live worker but one, which must then go on (make
   5 more operations): whatever state the dead left the segment lock in, the
   survivor must get it. (With several survivors a starved one proves
   nothing, since the mutex is not fair; a lone one has no excuse.) */
static void probe(struct run *r)
{
    int live[MAX_WORKERS], nl = 0;
    for (int w = 0; w < r->nworkers; w++)
        if (r->pid[w] > 0)
            live[nl++] = w;
    if (nl < 2)
        return;
    int keep = live[below(&r->rng, (uint64_t)nl)];
    /* the survivor must not kill itself: disarm it. One already past the
       check may still die of its own kill (it leaves its pid): that death
       is allowed, and it starts again unarmed */
    const struct slot *o = &r->orc->w[keep];
    __atomic_store_n(&r->orc->w[keep].self_kill_armed, 0, __ATOMIC_RELEASE);
    for (int i = 0; i < nl; i++)
        if (live[i] != keep)
            kill_worker(r, live[i]);
    phase(r, "round %u: progress probe of worker %d alone", r->round, keep);
    uint64_t base = __atomic_load_n(&o->acks, __ATOMIC_ACQUIRE);
    double t0 = now();
    while (__atomic_load_n(&o->acks, __ATOMIC_ACQUIRE) < base + 5) {
        int status;
        if (waitpid(r->pid[keep], &status, WNOHANG) == r->pid[keep]) {
            bool raced = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL &&
                         __atomic_load_n(&o->self_killed_pid, __ATOMIC_ACQUIRE) == (int32_t)r->pid[keep];
            r->pid[keep] = 0;
            r->st.kills++;
            if (!raced)
                violation(r, keep, "worker %d ended during a progress probe (%s %d): %s", keep,
                          WIFSIGNALED(status) ? "signal" : "exit status",
                          WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                          o->failed ? o->err : "(no message; see its stderr)");
            spawn(r, keep, 0);
            r->st.restarts++;
            base = __atomic_load_n(&o->acks, __ATOMIC_ACQUIRE);
            t0 = now();
        }
        if (now() - t0 > PROBE_SECONDS) {
            show_stacks(r);
            violation(r, keep, "worker %d, left alone after the others were killed, made no progress "
                      "in %d s (a lock state left by a killed process was not recovered)",
                      keep, PROBE_SECONDS);
        }
        sleep_us(200);
    }
    r->st.probes++;
}

/* One round of workers and kills. */
static void run_workers(struct run *r)
{
    r->nworkers = 3 + (int)below(&r->rng, MAX_WORKERS - 2);
    phase(r, "round %u: running %d workers", r->round, r->nworkers);
    for (int w = 0; w < r->nworkers; w++)
        spawn(r, w, 1);
    if (below(&r->rng, 100) < 40) {
        sleep_us(below(&r->rng, 20001));
    } else {
        int events = 1 + (int)below(&r->rng, 3);
        for (int e = 0; e < events; e++) {
            sleep_us(below(&r->rng, 20001));
            int live[MAX_WORKERS], nl = 0;
            for (int w = 0; w < r->nworkers; w++)
                if (r->pid[w] > 0)
                    live[nl++] = w;
            if (!nl)
                break;
            int v = live[below(&r->rng, (uint64_t)nl)];
            kill_worker(r, v);
            if (below(&r->rng, 100) < 70) {
                spawn(r, v, 1);
                r->st.restarts++;
            }
        }
        sleep_us(below(&r->rng, 20001));
        if (below(&r->rng, 3) == 0 && probes)
            probe(r);
    }
    for (int w = 0; w < r->nworkers; w++)
        if (r->pid[w] > 0)
            kill(r->pid[w], SIGKILL);
    for (int w = 0; w < r->nworkers; w++)
        if (r->pid[w] > 0)
            kill_worker(r, w);
}

struct range { uint64_t lo, hi; char what[96]; };

static int range_cmp(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

#define MAX_RANGES (MAX_WORKERS * (NOBJ + NREG + NKEY + 2 * NOWN + 8))

static struct range *add_range(struct range *ranges, size_t *nr, uint64_t lo, uint64_t len,
                               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static struct range *add_range(struct range *ranges, size_t *nr, uint64_t lo, uint64_t len,
                               const char *fmt, ...)
{
    struct range *g = &ranges[(*nr)++];
    g->lo = lo;
    g->hi = lo + len;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->what, sizeof g->what, fmt, ap);
    va_end(ap);
    return g;
}

/* The smallest live key >= x of a map, per the table; false when none. */
static bool table_seek(const struct item *tab, uint32_t nk, uint64_t (*keyf)(int, uint32_t), int w,
                       uint64_t x, uint64_t *found)
{
    bool any = false;
    for (uint32_t k = 0; k < nk; k++) {
        uint64_t key = keyf(w, k);
        if (tab[k].live && key >= x && (!any || key < *found)) {
            *found = key;
            any = true;
        }
    }
    return any;
}

/* Walks worker w's map (own: the owning map) with a cursor: ascending keys,
   each in the oracle with its exact value, as many as the oracle has live;
   then seeks to random keys. Records the values' ranges. */
static void walk_map(struct run *r, mseg *s, int w, bool own, struct range *ranges, size_t *nr)
{
    const struct slot *o = &r->orc->w[w];
    const struct item *tab = own ? o->own : o->map;
    uint32_t nk = own ? NOWN : NKEY;
    uint64_t (*keyf)(int, uint32_t) = own ? own_key : map_key;
    char name[64], why[800];
    map_name(name, sizeof name, w, own);
    phase(r, "round %u: walking map %s", r->round, name);
    mseg_map *m = map_handle(s, w, own);
    if (!m)
        violation(r, w, "map %s: open: errno %d: %s", name, errno, mseg_errmsg());
    add_range(ranges, nr, mseg_off_of(s, m), sizeof(struct mseg_map_root), "root of map %s", name);
    size_t live = 0;
    for (uint32_t k = 0; k < nk; k++)
        live += tab[k].live;
    size_t len = mseg_map_len(s, m);
    if (len != live)
        violation(r, w, "map %s: mseg_map_len says %zu entries, the oracle expects %zu", name, len, live);
    struct mseg_cursor c;
    size_t n = 0;
    uint64_t prev = 0;
    int rc;
    for (rc = mseg_map_first(s, m, &c); rc == 0; rc = mseg_map_next(s, &c), n++) {
        uint64_t key;
        if (n > nk || c.klen != sizeof key)
            violation(r, w, "map %s: the cursor walk gives a key of %zu bytes, or more than %u keys",
                      name, c.klen, nk);
        key = key_unwire(w, own, c.key);
        uint32_t k = (uint32_t)(key & 0xff);
        if (n && key <= prev)
            violation(r, w, "map %s: the cursor walk gives key %#" PRIx64 " after %#" PRIx64 " (not ascending)",
                      name, key, prev);
        if (k >= nk || key != keyf(w, k) || !tab[k].live)
            violation(r, w, "map %s: the cursor walk gives key %#" PRIx64 ", which the oracle does not have",
                      name, key);
        prev = key;
        if (own) {
            mseg_off off;
            if (c.vlen != sizeof off)
                violation(r, w, "map %s: key #%u has a %zu-byte value in the walk", name, k, c.vlen);
            memcpy(&off, c.val, sizeof off);
            if (!nested_matches(s, w, k, off, &tab[k], why, sizeof why))
                violation(r, w, "in the cursor walk: %s", why);
            add_range(ranges, nr, off, sizeof(struct mseg_vec_root), "root of %s[#%u]", name, k);
            if (tab[k].size)
                add_range(ranges, nr, mseg_off_of(s, mseg_vec_data(s, mseg_at(s, off))),
                          tab[k].size * sizeof(uint64_t), "elements of %s[#%u]", name, k);
            continue;
        }
        if (c.vlen != tab[k].size || blk_first_bad(c.val, c.vlen, map_seed(w, k, tab[k].version)) < c.vlen)
            violation(r, w, "map %s: in the cursor walk key #%u has a %zu-byte value, expected %u bytes "
                      "of version %" PRIu64 " (or it is damaged)", name, k, c.vlen, tab[k].size, tab[k].version);
        if (c.vlen)
            add_range(ranges, nr, mseg_off_of(s, c.val), c.vlen, "value of %s[#%u]", name, k);
    }
    if (errno != ENOENT)
        violation(r, w, "map %s: the cursor walk ended after %zu keys with errno %d: %s", name, n, errno,
                  mseg_errmsg());
    if (n != live)
        violation(r, w, "map %s: the cursor walk gives %zu keys, the oracle expects %zu", name, n, live);
    for (int i = 0; i < 4; i++) {
        uint64_t x = rnd(&r->rng), want = 0;
        if (i == 0)
            x = 0;
        bool any = table_seek(tab, nk, keyf, w, x, &want);
        uint64_t wire = key_wire(w, own, x), got = 0;
        rc = mseg_map_seek(s, m, &c, &wire, sizeof wire);
        if (rc == 0)
            got = key_unwire(w, own, c.key);
        if (any ? rc != 0 || got != want : rc == 0 || errno != ENOENT)
            violation(r, w, "map %s: seek to %#" PRIx64 " gives %s%#" PRIx64 ", expected %s%#" PRIx64,
                      name, x, rc ? "nothing, " : "", got, any ? "" : "nothing, ", want);
    }
}

/* Compares the recovered segment with the oracle. */
static void verify_state(struct run *r, mseg *s)
{
    static struct range ranges[MAX_RANGES];
    size_t nr = 0, expected_named = 0;
    char why[800];
    for (int w = 0; w < MAX_WORKERS; w++) {
        struct slot *o = &r->orc->w[w];
        char rn[64];
        size_t n = 0;
        reg_name(rn, sizeof rn, w);
        phase(r, "round %u: verifying worker %d", r->round, w);
        struct reg_entry *reg = mseg_find(s, rn, REG_TYPE, sizeof *reg, &n);
        if (!reg || n != NREG)
            violation(r, w, "registry %s: errno %d: %s", rn, errno, mseg_errmsg());
        int inflight;   /* counted in the slot's settled_* */
        if (settle(s, reg, w, o, &inflight, why, sizeof why))
            violation(r, w, "worker %d: %s", w, why);
        for (uint32_t k = 0; k < NOBJ; k++) {
            if (!obj_matches(s, w, k, &o->obj[k], why, sizeof why)) {
                r->st.lost++;
                violation(r, w, "worker %d: acknowledged state lost: %s", w, why);
            }
            if (!o->obj[k].live)
                continue;
            char name[64];
            obj_name(name, sizeof name, w, k);
            struct range *g = &ranges[nr++];
            g->lo = mseg_off_of(s, mseg_find(s, name, OBJ_TYPE, 8, NULL));
            g->hi = g->lo + (uint64_t)o->obj[k].size * 8;
            snprintf(g->what, sizeof g->what, "object %s", name);
            expected_named++;
        }
        for (uint32_t i = 0; i < NREG; i++) {
            if (!reg_matches(s, reg, w, i, &o->reg[i], why, sizeof why)) {
                r->st.lost++;
                violation(r, w, "worker %d: acknowledged state lost: %s", w, why);
            }
            if (!o->reg[i].live)
                continue;
            struct range *g = &ranges[nr++];
            g->lo = reg[i].off;
            g->hi = reg[i].off + reg[i].size;
            snprintf(g->what, sizeof g->what, "block w%d[%u]", w, i);
        }
        struct range *g = &ranges[nr++];
        g->lo = mseg_off_of(s, reg);
        g->hi = g->lo + sizeof *reg * NREG;
        snprintf(g->what, sizeof g->what, "registry %s", rn);
        expected_named++;
        for (uint32_t k = 0; k < NKEY; k++)
            if (!map_matches(s, w, k, &o->map[k], why, sizeof why)) {
                r->st.lost++;
                violation(r, w, "worker %d: acknowledged state lost: %s", w, why);
            }
        for (uint32_t k = 0; k < NOWN; k++)
            if (!own_matches(s, w, k, &o->own[k], why, sizeof why)) {
                r->st.lost++;
                violation(r, w, "worker %d: acknowledged state lost: %s", w, why);
            }
        walk_map(r, s, w, false, ranges, &nr);
        walk_map(r, s, w, true, ranges, &nr);
        expected_named += 2;
        if (!vec_matches(s, w, o, NULL, false, why, sizeof why)) {
            r->st.lost++;
            violation(r, w, "worker %d: acknowledged state lost: %s", w, why);
        }
        if (o->vec.live) {
            char vn[64];
            vec_name(vn, sizeof vn, w);
            mseg_vec *v = mseg_vec_open(s, vn, sizeof(uint64_t), 0);
            add_range(ranges, &nr, mseg_off_of(s, v), sizeof(struct mseg_vec_root), "root of vector %s", vn);
            if (o->vec.size)
                add_range(ranges, &nr, mseg_off_of(s, mseg_vec_data(s, v)), o->vec.size * sizeof(uint64_t),
                          "elements of vector %s", vn);
            expected_named++;
        }
    }
    size_t named = mseg_named_count(s);
    if (named != expected_named)
        violation(r, -1, "%zu named objects in the segment, the oracle expects %zu", named, expected_named);
    qsort(ranges, nr, sizeof ranges[0], range_cmp);
    for (size_t i = 1; i < nr; i++)
        if (ranges[i].lo < ranges[i - 1].hi)
            violation(r, -1, "%s [%#" PRIx64 ", %#" PRIx64 ") overlaps %s [%#" PRIx64 ", %#" PRIx64 ")",
                      ranges[i].what, ranges[i].lo, ranges[i].hi, ranges[i - 1].what,
                      ranges[i - 1].lo, ranges[i - 1].hi);
}

static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int rc = in >= 0 && out >= 0 ? 0 : -1;
    char buf[1 << 16];
    ssize_t n;
    while (rc == 0 && (n = read(in, buf, sizeof buf)) != 0)
        if (n < 0 || write(out, buf, (size_t)n) != n)
            rc = -1;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out))
        rc = -1;
    return rc;
}

/* On a copy: free every recorded block, destroy every object; free memory
   must be back to the empty segment's. */
static void leak_check(struct run *r)
{
    phase(r, "round %u: leak check on a copy", r->round);
    if (copy_file(r->path, r->clone))
        violation(r, -1, "copying %s to %s: %s", r->path, r->clone, strerror(errno));
    mseg *s = mseg_open(r->clone, 0, NULL);
    if (!s)
        violation(r, -1, "opening the copy %s: errno %d: %s", r->clone, errno, mseg_errmsg());
    for (int w = 0; w < MAX_WORKERS; w++) {
        const struct slot *o = &r->orc->w[w];
        char rn[64], name[64];
        reg_name(rn, sizeof rn, w);
        struct reg_entry *reg = mseg_find(s, rn, REG_TYPE, sizeof *reg, NULL);
        for (uint32_t i = 0; reg && i < NREG; i++)
            if (o->reg[i].live && mseg_free(s, mseg_at(s, reg[i].off)))
                violation(r, w, "leak check: registry w%d[%u] -> %#" PRIx64 " is not a live block: %s",
                          w, i, reg[i].off, mseg_errmsg());
        if (mseg_destroy(s, rn))
            violation(r, w, "leak check: destroy %s: %s", rn, mseg_errmsg());
        for (uint32_t k = 0; k < NOBJ; k++) {
            obj_name(name, sizeof name, w, k);
            if (o->obj[k].live && mseg_destroy(s, name))
                violation(r, w, "leak check: destroy %s: %s", name, mseg_errmsg());
        }
        /* containers: destroy frees their buffers, nodes, value cells and
           the nested vectors the owning map holds */
        for (int own = 0; own < 2; own++) {
            map_name(name, sizeof name, w, own);
            if (mseg_destroy(s, name))
                violation(r, w, "leak check: destroy %s: %s", name, mseg_errmsg());
        }
        vec_name(name, sizeof name, w);
        if (o->vec.live && mseg_destroy(s, name))
            violation(r, w, "leak check: destroy %s: %s", name, mseg_errmsg());
    }
    if (r->max_size && mseg_shrink(s))
        violation(r, -1, "leak check: mseg_shrink of the emptied copy: %s", mseg_errmsg());
    size_t named = mseg_named_count(s), fm = mseg_free_memory(s), size = mseg_size(s);
    struct mseg_report rep;
    if (mseg_verify(s, &rep))
        violation(r, -1, "leak check: after freeing everything the copy is unsound: %s", rep.first_problem);
    mseg_close(s);
    bool bytes_differ = fm != r->empty_free || size != r->empty_size, leaked = named || bytes_differ;
    /* on a failure, the emptied copy shows what is left: mseg ls, mseg stats */
    char emptied[420];
    snprintf(emptied, sizeof emptied, "%s.emptied", r->clone);
    if (!leaked || rename(r->clone, emptied))
        unlink(r->clone);
    else
        fprintf(stderr, "torture: the copy after the leak check's frees is kept in %s\n", emptied);
    if (named)
        violation(r, -1, "leak check: %zu named objects remain after destroying every known one", named);
    /* blocks still used tell a leaked block from a segment that did not
       shrink back to the empty one's size (once a heap ending short of the
       segment, which mseg_shrink failed to cut: 0 blocks used) */
    if (bytes_differ)
        violation(r, -1, "leak check: free memory is %zu (segment %zu bytes) after freeing everything%s, "
                  "%zu (%zu bytes) on the empty segment: %zd bytes leaked (%zd used beyond the empty "
                  "segment's); the emptied heap: %" PRIu64 " bytes, %" PRIu64 " blocks used (%" PRIu64
                  " bytes), %" PRIu64 " free", fm, size, r->max_size ? " and shrinking" : "", r->empty_free,
                  r->empty_size, (ssize_t)(r->empty_free - fm),
                  (ssize_t)((size - fm) - (r->empty_size - r->empty_free)), rep.heap_bytes,
                  rep.blocks_used, rep.bytes_used, rep.blocks_free);
    r->st.leak_checks++;
}

static void verify_round(struct run *r)
{
    struct mseg_report rep;
    phase(r, "round %u: mseg_check", r->round);
    if (mseg_check(r->name, r->flags, &rep))
        violation(r, -1, "mseg_check after the kills: errno %d: %s", errno,
                  rep.first_problem[0] ? rep.first_problem : mseg_errmsg());
    r->st.recoveries++;
    r->st.replayed += rep.recovered != 0;
    phase(r, "round %u: open (recovery)", r->round);
    mseg *s = mseg_open(r->name, r->flags, NULL);
    if (!s)
        violation(r, -1, "open after the kills: errno %d: %s", errno, mseg_errmsg());
    if (mseg_verify(s, &rep))
        violation(r, -1, "mseg_verify after recovery: %s", rep.first_problem);
    verify_state(r, s);
    size_t size = mseg_size(s);
    r->st.grown += size > r->size_before;
    if (size > r->st.max_bytes)
        r->st.max_bytes = size;
    if (r->max_size && below(&r->rng, 2)) {
        phase(r, "round %u: shrink", r->round);
        if (mseg_shrink(s))
            violation(r, -1, "mseg_shrink with no other handle attached: errno %d: %s", errno, mseg_errmsg());
        r->st.shrunk += mseg_size(s) < size;
        if (mseg_verify(s, &rep))
            violation(r, -1, "mseg_verify after mseg_shrink: %s", rep.first_problem);
        verify_state(r, s);
    }
    r->size_before = mseg_size(s);
    if (mseg_close(s))
        violation(r, -1, "close: %s", mseg_errmsg());
    r->st.consistent++;
    leak_check(r);
}

static void collect(struct run *r)
{
    for (int w = 0; w < MAX_WORKERS; w++) {
        const struct slot *o = &r->orc->w[w];
        r->st.acks += o->acks;
        r->st.txs += o->txs;
        r->st.aborts += o->aborts;
        r->st.enomem += o->enomem;
        r->st.durable_opens += o->durable_opens;
        r->st.self_kills += o->self_kills;
        r->st.inflight_applied += o->settled_applied;
        r->st.inflight_undone += o->settled_undone;
        for (int op = 1; op <= OP_MAX; op++)
            r->st.op_acks[op] += o->op_acks[op];
    }
}

static void print_stats(const char *what, const struct stats *s)
{
    printf("torture %s: rounds %" PRIu64 ", kills %" PRIu64 " (restarted %" PRIu64 "; %" PRIu64
           " self-kills at a crash point or flush), operations acknowledged %"
           PRIu64 " (%" PRIu64 " transactions committed, %" PRIu64 " aborted on purpose, %" PRIu64 " ENOMEM), "
           "in flight at a kill %" PRIu64 " (%" PRIu64 " applied, %" PRIu64 " rolled back), recoveries consistent %"
           PRIu64 "/%" PRIu64 " (%" PRIu64 " replayed a log), acknowledged operations lost %" PRIu64
           ", leak checks passed %" PRIu64 ", progress probes %" PRIu64 ", durable worker opens %" PRIu64
           ", rounds that grew the segment %" PRIu64 " (largest %" PRIu64 " KiB), shrinks %" PRIu64 "\n",
           what, s->rounds, s->kills, s->restarts, s->self_kills, s->acks, s->txs, s->aborts, s->enomem,
           s->inflight_applied + s->inflight_undone, s->inflight_applied, s->inflight_undone,
           s->consistent, s->recoveries, s->replayed, s->lost, s->leak_checks, s->probes, s->durable_opens,
           s->grown, s->max_bytes / 1024, s->shrunk);
    printf("torture %s: changes of acknowledged applied operations by kind:", what);
    for (int op = 1; op <= OP_MAX; op++)
        printf("%s %s %" PRIu64, op > 1 ? "," : "", op_name((uint32_t)op), s->op_acks[op]);
    printf("\n");
}

static void run_backend(struct run *r, unsigned rounds)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    int pid = (int)getpid();
    if (r->flags & MSEG_SHM) {
        snprintf(r->name, sizeof r->name, "/mseg-torture-%d", pid);
        snprintf(r->path, sizeof r->path, "/dev/shm/mseg-torture-%d", pid);
    } else {
        snprintf(r->name, sizeof r->name, "%s/mseg-torture-%d.seg", tmp, pid);
        memcpy(r->path, r->name, sizeof r->path);
    }
    snprintf(r->clone, sizeof r->clone, "%s/mseg-torture-%d-%s.copy", tmp, pid, r->backend);
    struct mseg_config cfg = { .size = r->size, .max_size = r->max_size };
    mseg *s = mseg_open(r->name, r->flags | MSEG_CREATE | MSEG_EXCL, &cfg);
    if (!s) {
        fprintf(stderr, "torture: creating %s: %s\n", r->name, mseg_errmsg());
        exit(2);
    }
    if (r->max_size && mseg_shrink(s)) {
        fprintf(stderr, "torture: shrinking the new segment %s: %s\n", r->name, mseg_errmsg());
        exit(2);
    }
    r->empty_free = mseg_free_memory(s);
    r->empty_size = mseg_size(s);
    for (int w = 0; w < MAX_WORKERS; w++) {
        char rn[64];
        reg_name(rn, sizeof rn, w);
        char mn[64], on[64], vn[64];
        map_name(mn, sizeof mn, w, false);
        map_name(on, sizeof on, w, true);
        vec_name(vn, sizeof vn, w);
        if (!mseg_construct(s, rn, REG_TYPE, sizeof(struct reg_entry), NREG, NULL) ||
            !mseg_map_open(s, mn, map_kind(w, false), 0, MSEG_CREATE) ||
            !mseg_map_open(s, on, MSEG_KEY_U64, sizeof(mseg_off), MSEG_CREATE | MSEG_OWNED) ||
            !mseg_vec_open(s, vn, sizeof(uint64_t), MSEG_CREATE)) {
            fprintf(stderr, "torture: creating worker %d's registry and containers: %s\n", w, mseg_errmsg());
            exit(2);
        }
    }
    r->size_before = mseg_size(s);
    mseg_close(s);
    memset(r->orc, 0, sizeof *r->orc);
    for (int w = 0; w < MAX_WORKERS; w++) {
        r->orc->w[w].next_version = 1;
        r->orc->w[w].vec.live = 1;
    }
    current = r;
    double t0 = now();
    for (r->round = 1; r->round <= rounds; r->round++) {
        alarm(ROUND_SECONDS);
        run_workers(r);
        verify_round(r);
        r->st.rounds++;
        if (!r->quiet && (r->round % 50 == 0 || r->round == rounds))
            fprintf(stderr, "torture %s: %u/%u rounds, %.1f s\n", r->backend, r->round, rounds, now() - t0);
    }
    alarm(0);
    collect(r);
    mseg_remove(r->name, r->flags);
}

static void add_stats(struct stats *t, const struct stats *s)
{
    uint64_t max = t->max_bytes > s->max_bytes ? t->max_bytes : s->max_bytes;
    const uint64_t *a = (const uint64_t *)s;
    uint64_t *b = (uint64_t *)t;
    for (size_t i = 0; i < sizeof *s / sizeof(uint64_t); i++)
        b[i] += a[i];
    t->max_bytes = max;
}

static void usage(void)
{
    fprintf(stderr, "usage: torture [--rounds N] [--backend file|shm|both] [--seed S]\n"
            "               [--size BYTES] [--max-size BYTES (0: never grow)] [--no-probe] [--quiet]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    unsigned rounds = 200;
    const char *backend = "both";
    uint64_t seed = mix((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    bool quiet = false;
    size_t size = SEG_SIZE, max_size = SEG_MAX;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = (unsigned)strtoul(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            backend = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--max-size") && i + 1 < argc)
            max_size = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--no-probe"))
            probes = false;
        else if (!strcmp(argv[i], "--quiet"))
            quiet = true;
        else
            usage();
    }
    bool file = !strcmp(backend, "file") || !strcmp(backend, "both");
    bool shm = !strcmp(backend, "shm") || !strcmp(backend, "both");
    if ((!file && !shm) || rounds == 0)
        usage();
    signal(SIGALRM, on_alarm);
    struct oracle *orc = mmap(NULL, sizeof *orc, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (orc == MAP_FAILED) {
        perror("torture: mmap");
        return 2;
    }
    printf("torture: %u rounds per backend, %d-%d workers, segment %zu KiB growing up to %zu KiB, seed %#" PRIx64 "\n",
           rounds, 3, MAX_WORKERS, size / 1024, max_size / 1024, seed);
    fflush(stdout);
    static struct run runs[2];
    struct stats total = { 0 };
    int nrun = 0;
    if (file)
        runs[nrun++] = (struct run){ .backend = "file", .flags = 0 };
    if (shm)
        runs[nrun++] = (struct run){ .backend = "shm", .flags = MSEG_SHM };
    for (int i = 0; i < nrun; i++) {
        struct run *r = &runs[i];
        r->orc = orc;
        r->seed = seed;
        r->rng = mix(seed + (uint64_t)i);
        r->quiet = quiet;
        r->size = size;
        r->max_size = max_size;
        double t0 = now();
        run_backend(r, rounds);
        char what[64];
        snprintf(what, sizeof what, "%s (%.1f s)", r->backend, now() - t0);
        print_stats(what, &r->st);
        fflush(stdout);
        add_stats(&total, &r->st);
    }
    if (nrun > 1)
        print_stats("total", &total);
    printf("torture: OK\n");
    munmap(orc, sizeof *orc);
    return 0;
}
