/*
 * log.c - the intent log: every change to engine metadata is a redo record.
 *
 * An engine operation never stores into metadata directly. It calls
 * op_set32/op_set64, which append (where, value) records to the log area;
 * op_get32/op_get64 read through those pending records, so the operation
 * sees its own changes while the segment's bytes still hold the state before
 * it. Bytes written into newly allocated blocks (which nothing committed can
 * reach yet) are stored in place and only noted with op_fresh().
 *
 * Two commit slots. The log head has two (commit, count, checksum) slots;
 * an operation's records go after those of the newest committed slot, and
 * it commits into the other one. A durable commit leaves its slot committed
 * after it returns: the pages it changed are flushed by the NEXT commit, in
 * the same msync as that commit's log, so a durable operation costs one
 * msync, not two (LMDB's count is two). Until then a power loss replays it.
 * Its records stay untouched meanwhile (the next operation writes after
 * them), and a full log first flushes what the slots owe (log_settle).
 *
 * The commit protocol (numbered steps; tests name the crash points):
 *
 *   0. op_begin: head.active := 1 + the slot it will commit into.
 *   1. durable mode: fresh bytes made safe first, logged as records when
 *      they are few and small, else flushed (a second msync) together with
 *      the pages the committed slots owe, and both slots emptied (the
 *      flushed bytes are in no record, so no older slot may be replayed
 *      over them; the emptying shares a sector with step 2's store). Then
 *      the slot's count (records and first index) and checksum (XXH3 of
 *      sequence number, count and records) stored.
 *                                                      crash point log.written
 *   2. runtime.op_seq becomes odd (lock-free readers hold off), then the
 *      slot's commit := sequence number, one more than either slot's (one
 *      aligned 8-byte store).
 *      PERSIST 1 (durable mode): ONE msync covering the log's records and
 *      head and the pages the previous commit changed (its slot's records
 *      say which).                                     crash point log.committed
 *   3. records applied in place, in order.             crash point log.applying (halfway)
 *      runtime.op_seq becomes even again.              crash point log.applied
 *   4. head.undo_size := 0 (a committed transaction is never rolled back),
 *      without MSEG_DURABLE the slot's commit := 0, then head.active := 0.
 *      Nothing flushed.                                crash point log.retired
 *
 * Recovery (log_recover) sorts the slots: valid (commit != 0 and the
 * checksum verifies) or not. A commit that does not verify is a slot torn by
 * a power loss before its PERSIST 1 completed: never committed.
 *   - after a process crash (the page cache kept every store), only the
 *     operation in flight matters: if its slot is valid and the newest, it
 *     committed: replay it (step 3 again; idempotent);
 *   - after a reboot (a power loss: any subset of unflushed pages may be on
 *     disk), every valid slot is replayed, the older first: the newest
 *     durable commit's pages were never flushed, the one before may have
 *     been flushed only partly when the power went;
 *   - an operation in flight that did not commit is rolled back: nothing of
 *     it was applied in place except fresh blocks and user bytes declared
 *     with mseg_tx_add; those bytes come back from the undo records, and
 *     the free lists are rebuilt from the block headers (fresh writes may
 *     have covered a free block's links);
 *   - last, log_settle flushes what the slots owe and empties them.
 * Non-durable operations, mseg_sync and close settle the slots first too,
 * so a slot is never replayed over changes made after it outside the log.
 *
 * Why this keeps the rule of DESIGN.md ("the log is flushed before the data
 * it protects can reach the disk, and the data before the log is retired"):
 * no in-place store of an operation exists before PERSIST 1 has put its
 * redo records on disk; its slot is emptied or overwritten only after the
 * next commit's PERSIST 1 (or log_settle) has flushed its pages; and a page
 * written early that holds a later operation's stores is covered by that
 * operation's log, itself on disk before those stores were made.
 *
 * In process-crash terms (no flushes): a process killed before step 2 leaves
 * its slot uncommitted and no in-place change; killed after, its records are
 * replayed by whoever takes the lock next (EOWNERDEAD) or opens the segment
 * first.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hash.h"
#include "internal.h"
#include "testing.h"

/* ---- crash points, for the tests ---- */

static mseg_crash_hook_fn crash_hook;
static void *crash_hook_arg;
static unsigned long crash_points_reached;

void mseg_test_set_crash_hook(mseg_crash_hook_fn fn, void *arg)
{
    crash_hook = fn;
    crash_hook_arg = arg;
    crash_points_reached = 0;
}

unsigned long mseg_test_crash_points(void)
{
    return crash_points_reached;
}

static __attribute__((noinline)) void crash_point_reached(const char *point)
{
    crash_points_reached++;
    crash_hook(point, crash_points_reached, crash_hook_arg);
}

void crash_point(const char *point)
{
    if (crash_hook)
        crash_point_reached(point);
}

/* ---- flushing ---- */

static mseg_flush_hook_fn flush_hook;
static void *flush_hook_arg;
static unsigned long flush_fail_countdown;

void mseg_test_set_flush_hook(mseg_flush_hook_fn fn, void *arg)
{
    flush_hook = fn;
    flush_hook_arg = arg;
}

void mseg_test_fail_flush(unsigned long n)
{
    flush_fail_countdown = n;
}

/* msync of [start, end), page-aligned and inside the mapping: flush_now's
   and sync_heal_failed_flush's. A failure is fatal for the handle, and
   noted in the runtime page for handles that open after it. */
int flush_pages(mseg *s, uint64_t start, uint64_t end)
{
    if (flush_hook)
        flush_hook(s->base, s->size, start, end - start, flush_hook_arg);
    int rc = msync(s->base + start, end - start, MS_SYNC);
    if (flush_fail_countdown && --flush_fail_countdown == 0) {
        rc = -1;
        errno = EIO;
    }
    if (rc != 0) {
        int e = errno;
        sync_flush_failed(s);
        return fail(EIO, "segment %s: msync failed (%s); the handle refuses further writes",
                    s->name, strerror(e));
    }
    s->flushes++;
    return 0;
}

/* msync of the pages covering [off, off+len), on read-write handles: the one
   place every flush of the mapping goes through. A failure is fatal for the
   handle: the kernel marks pages clean after a write-back error, so a retry
   could report success with the data lost. */
int flush_now(mseg *s, uint64_t off, uint64_t len)
{
    if (s->mode != MODE_RW || len == 0)
        return 0;
    /* never again through a handle whose flush failed: the kernel marked
       the pages it could not write clean, so this msync would "succeed"
       without them, and what the caller does next on that word (retiring
       the commit slots that still replay them) would lose them for good */
    if (s->failed) {
        errno = EIO;   /* the message stays the failure's own (msync or fsync, and why) */
        return -1;
    }
    /* nor through a handle opened after another one's flush failed, until
       the pages that failure left clean are written */
    if (sync_heal_failed_flush(s))
        return -1;
    uint64_t start = off & ~(uint64_t)(MSEG_PAGE - 1);
    uint64_t end = (off + len + MSEG_PAGE - 1) & ~(uint64_t)(MSEG_PAGE - 1);
    if (end > s->size)
        end = s->size;
    return flush_pages(s, start, end);
}

/* Whether the operation follows the durable protocol: the handle's
   MSEG_DURABLE, or a drain of garbage another process left (heap.c). */
static bool op_durable(const mseg *s)
{
    return (s->flags & MSEG_DURABLE) || s->op.durable_drain;
}

/* flush_now when flush, else nothing. */
static int flush_if(mseg *s, bool flush, uint64_t off, uint64_t len)
{
    return flush ? flush_now(s, off, len) : 0;
}

/* flush_now in durable mode; nothing otherwise. */
static int flush_range(mseg *s, uint64_t off, uint64_t len)
{
    return flush_if(s, op_durable(s), off, len);
}

int persist(mseg *s, const char *point, uint64_t off, uint64_t len)
{
    crash_point(point);
    return flush_range(s, off, len);
}

/* ---- the log area ---- */

static struct mseg_log_head *log_head(mseg *s)
{
    return (struct mseg_log_head *)(s->base + MSEG_LOG_OFF);
}

bool log_op_in_progress(mseg *s)
{
    return __atomic_load_n(&log_head(s)->active, __ATOMIC_ACQUIRE) != 0;
}

static struct mseg_log_entry *log_entries(mseg *s)
{
    return (struct mseg_log_entry *)(s->base + MSEG_LOG_OFF + sizeof(struct mseg_log_head));
}

/* Bytes of the log area in use: the head, a committed slot's records the
   operation's start after, its own records, and the undo records. */
static uint64_t log_bytes_used(mseg *s)
{
    return sizeof(struct mseg_log_head) +
           ((uint64_t)s->op.base + s->op.count) * sizeof(struct mseg_log_entry) +
           log_head(s)->undo_size;
}

/* True when `bytes` more fit between the redo records and the undo records. */
static bool log_has_room(mseg *s, uint64_t bytes)
{
    uint64_t used = log_bytes_used(s);
    return used <= MSEG_LOG_SIZE && bytes <= MSEG_LOG_SIZE - used;
}


static unsigned entry_width(const struct mseg_log_entry *e)
{
    return (e->where & MSEG_LOG_WIDTH32) ? 4 : 8;
}

static uint64_t entry_off(const struct mseg_log_entry *e)
{
    return e->where & ~MSEG_LOG_WIDTH32;
}

/* A 256-bit bloom filter of the 4-byte words the operation has records
   for, at a hashed position (offsets are too regular for their low bits): a
   read whose bits are clear has no pending record and goes straight to
   memory, so only true hits scan the records. */
static unsigned bloom_pos(uint64_t word)
{
    return (unsigned)((word * 0x9e3779b97f4a7c15ull) >> 56);
}

static inline __attribute__((always_inline)) bool bloom_test(const mseg *s, uint64_t off, unsigned width)
{
    uint64_t w = off >> 2;
    unsigned a = bloom_pos(w);
    if (s->op.bloom[a >> 6] & (1ull << (a & 63)))
        return true;
    if (width != 8)
        return false;
    unsigned b = bloom_pos(w + 1);
    return s->op.bloom[b >> 6] & (1ull << (b & 63));
}

static void bloom_add(mseg *s, uint64_t off, unsigned width)
{
    uint64_t w = off >> 2;
    unsigned a = bloom_pos(w);
    s->op.bloom[a >> 6] |= 1ull << (a & 63);
    if (width == 8) {
        unsigned b = bloom_pos(w + 1);
        s->op.bloom[b >> 6] |= 1ull << (b & 63);
    }
}

static void bloom_clear(mseg *s)
{
    memset(s->op.bloom, 0, sizeof s->op.bloom);
}

static bool overlaps(uint64_t a, unsigned aw, uint64_t b, unsigned bw)
{
    return a < b + bw && b < a + aw;
}

/* Hostile input: op_meta_ok (internal.h) checks every metadata address an
   operation follows; one outside the control page and the heap sets this
   thread's bad_access flag, and the operation fails with EUCLEAN
   (heap_alloc, heap_free, op_commit and the readers check it). */
static MSEG_TLS bool bad_access;
/* The handle whose operation this thread is running, if any. */
static MSEG_TLS mseg *op_thread;

#define meta_ok op_meta_ok

/* The records of the current operation: from its base in the log area. */
static struct mseg_log_entry *op_entries(mseg *s)
{
    return log_entries(s) + s->op.base;
}

/* ---- commit slots ---- */

struct slot {
    uint64_t *commit;
    uint32_t *count;       /* bits 0-15 records, 16-31 index of the first */
    uint64_t *checksum;
};

static struct slot slot_at(mseg *s, unsigned i)
{
    struct mseg_log_head *h = log_head(s);
    if (i == 0)
        return (struct slot){ &h->commit, &h->count, &h->checksum };
    return (struct slot){ &h->commit_b, &h->count_b, &h->checksum_b };
}

static uint32_t packed_count(uint32_t packed) { return packed & 0xffffu; }
static uint32_t packed_start(uint32_t packed) { return packed >> 16; }

/* The checksum of a slot covers its sequence number, its packed count and
   its records. */
static uint64_t log_checksum(uint64_t commit, uint32_t packed, const struct mseg_log_entry *e)
{
    uint64_t seed = commit * 0x9e3779b97f4a7c15ull + packed;
    return (uint64_t)XXH3_64bits_withSeed(e, (size_t)packed_count(packed) * sizeof *e, seed);
}

/* A slot holds a committed, intact record set: a sane range and checksum. */
static bool slot_valid(mseg *s, unsigned i)
{
    struct slot sl = slot_at(s, i);
    uint64_t commit = __atomic_load_n(sl.commit, __ATOMIC_ACQUIRE);
    uint32_t packed = *sl.count;
    uint64_t n = packed_count(packed), start = packed_start(packed);
    if (commit == 0 || n == 0 || start + n > MSEG_LOG_CAPACITY)
        return false;
    return log_checksum(commit, packed, log_entries(s) + start) == *sl.checksum;
}

/* The slot of the newest commit in memory (both are written only under the
   lock, so this needs no checksum), or -1 when both are empty. */
static int newest_slot(mseg *s)
{
    uint64_t a = log_head(s)->commit, b = log_head(s)->commit_b;
    if (!a && !b)
        return -1;
    return a >= b ? 0 : 1;
}

/* Empties both slots (in memory; the caller flushes when it matters). */
static void slots_retire(mseg *s)
{
    __atomic_store_n(&log_head(s)->commit, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&log_head(s)->commit_b, 0, __ATOMIC_RELEASE);
}

/* Widens [*lo, *hi) to the words slot i's records change. */
static void slot_range(mseg *s, unsigned i, uint64_t *lo, uint64_t *hi)
{
    uint32_t packed = *slot_at(s, i).count;
    if ((uint64_t)packed_start(packed) + packed_count(packed) > MSEG_LOG_CAPACITY)
        return;     /* damaged: recovery refuses the slot anyway */
    const struct mseg_log_entry *e = log_entries(s) + packed_start(packed);
    for (uint32_t k = 0; k < packed_count(packed); k++) {
        uint64_t off = entry_off(&e[k]);
        if (!meta_ok(s, off, entry_width(&e[k])))
            continue;   /* a torn record: recovery refuses the slot anyway */
        if (off < *lo)
            *lo = off;
        if (off + entry_width(&e[k]) > *hi)
            *hi = off + entry_width(&e[k]);
    }
}

/* The pages a committed slot changed, which a durable commit leaves for
   the next commit to flush: [*lo, *hi), or lo = UINT64_MAX for none. */
static void owed_range(mseg *s, uint64_t *lo, uint64_t *hi)
{
    *lo = UINT64_MAX, *hi = 0;
    for (unsigned i = 0; i < 2; i++)
        if (*slot_at(s, i).commit)
            slot_range(s, i, lo, hi);
}

bool op_bad_access(void)
{
    return bad_access;
}

void op_clear_bad_access(void)
{
    bad_access = false;
}

static uint64_t load(const mseg *s, uint64_t off, unsigned width)
{
    if (width == 8)
        return *(const uint64_t *)(s->base + off);
    return *(const uint32_t *)(s->base + off);
}

/* The value as the operation sees it when records overlap partially: memory,
   then every overlapping record's bytes in log order. Rare (a transaction
   reusing bytes at another width); correctness over speed. */
static uint64_t read_merged(mseg *s, uint64_t off, unsigned width)
{
    uint8_t buf[8] = {0};
    memcpy(buf, s->base + off, width);
    const struct mseg_log_entry *e = op_entries(s);
    for (uint32_t i = 0; i < s->op.count; i++) {
        uint64_t eo = entry_off(&e[i]);
        unsigned ew = entry_width(&e[i]);
        if (!overlaps(off, width, eo, ew))
            continue;
        uint64_t lo = off > eo ? off : eo;
        uint64_t hi = (off + width < eo + ew) ? off + width : eo + ew;
        memcpy(buf + (lo - off), (const uint8_t *)&e[i].value + (lo - eo), hi - lo);
    }
    uint64_t v = 0;
    memcpy(&v, buf, width);
    return v;
}

/*
 * An index of a large operation's records, in process memory. The bloom
 * filter above fills up after a few hundred records, and from then on every
 * read scanned them all: freeing the blocks of a destroyed map of 1M
 * entries (garbage batches of ~4,000 records each) took minutes under the
 * lock. Past INDEX_FROM records, reads look the records up by their 8-byte
 * word instead (records are aligned to their width, so each lies in one
 * word): a hash table from word to its newest record, and for each record
 * the previous one in the same word.
 *
 * The index has seen records [0, indexed). Records are only appended while
 * it is in use; anything else (an operation's end, a transaction's failed
 * call cut back to its savepoint, op_claim dropping records) makes it
 * stale, and the next lookup rebuilds it.
 */
#define INDEX_FROM 128u

struct record_index {
    uint64_t *word;        /* word + 1; 0 = empty slot */
    uint32_t *newest;      /* the word's newest record */
    uint32_t cap, used;    /* slots (a power of two), taken */
    uint32_t *taken;       /* the slots taken, to empty them without a pass over all */
    uint32_t *prev;        /* per record: the word's previous record, or UINT32_MAX */
    uint32_t indexed;      /* records [0, indexed) are in the index */
    bool stale;            /* must be rebuilt before use */
};

static uint32_t index_slot(const struct record_index *x, uint64_t word)
{
    uint32_t i = (uint32_t)((word * 0x9e3779b97f4a7c15ull) >> 32) & (x->cap - 1);
    while (x->word[i] && x->word[i] != word + 1)
        i = (i + 1) & (x->cap - 1);
    return i;
}

static void index_add(struct record_index *x, const struct mseg_log_entry *e, uint32_t pos)
{
    uint64_t word = entry_off(e) >> 3;
    uint32_t i = index_slot(x, word);
    if (x->word[i]) {
        x->prev[pos] = x->newest[i];
    } else {
        x->word[i] = word + 1;
        x->prev[pos] = UINT32_MAX;
        x->taken[x->used++] = i;
    }
    x->newest[i] = pos;
}

/* Empties the index: a table of twice as many slots as the log holds
   records, so it is never more than half full. */
static int index_reset(struct record_index *x)
{
    if (!x->word) {
        x->cap = 1;
        while (x->cap < 2 * MSEG_LOG_CAPACITY)
            x->cap *= 2;
        x->word = calloc(x->cap, sizeof *x->word);
        x->newest = malloc(x->cap * sizeof *x->newest);
        x->prev = malloc(MSEG_LOG_CAPACITY * sizeof *x->prev);
        x->taken = malloc(MSEG_LOG_CAPACITY * sizeof *x->taken);
        if (!x->word || !x->newest || !x->prev || !x->taken) {
            free(x->word), free(x->newest), free(x->prev), free(x->taken);
            x->word = NULL, x->newest = x->prev = x->taken = NULL;
            return -1;
        }
    }
    for (uint32_t k = 0; k < x->used; k++)
        x->word[x->taken[k]] = 0;
    x->used = x->indexed = 0;
    x->stale = false;
    return 0;
}

/* The index, up to date with the records; NULL when it cannot be had
   (out of process memory: the caller scans). */
static struct record_index *index_current(mseg *s)
{
    struct record_index *x = s->op.record_index;
    if (!x && !(x = s->op.record_index = calloc(1, sizeof *x)))
        return NULL;
    if ((x->stale || x->indexed > s->op.count || !x->word) && index_reset(x))
        return NULL;
    const struct mseg_log_entry *e = op_entries(s);
    for (; x->indexed < s->op.count; x->indexed++)
        index_add(x, &e[x->indexed], x->indexed);
    return x;
}

/* An append to the records. Appends are taken in by the next lookup
   (index_current); only an append after the records were cut back below
   what the index has seen (an operation's end, a savepoint) leaves it
   stale, since positions it knows are then reused. */
static void index_note_append(mseg *s)
{
    struct record_index *x = s->op.record_index;
    if (x && x->indexed > s->op.count)
        x->stale = true;    /* the records were cut back: rebuilt when next needed */
}

void op_index_release(mseg *s)
{
    struct record_index *x = s->op.record_index;
    if (x) {
        free(x->word);
        free(x->newest);
        free(x->prev);
        free(x->taken);
        free(x);
    }
    s->op.record_index = NULL;
}

/* Index of the newest record overlapping [off, off+width), or -1. */
static int64_t newest_overlap(mseg *s, uint64_t off, unsigned width)
{
    const struct mseg_log_entry *e = op_entries(s);
    struct record_index *x = s->op.count >= INDEX_FROM ? index_current(s) : NULL;
    if (!x) {
        for (uint32_t i = s->op.count; i-- > 0;)
            if (overlaps(off, width, entry_off(&e[i]), entry_width(&e[i])))
                return i;
        return -1;
    }
    uint32_t slot = index_slot(x, off >> 3);
    if (!x->word[slot])
        return -1;
    for (uint32_t i = x->newest[slot]; i != UINT32_MAX; i = x->prev[i])
        if (overlaps(off, width, entry_off(&e[i]), entry_width(&e[i])))
            return i;
    return -1;
}

static bool record_is(const struct mseg_log_entry *e, uint64_t off, unsigned width)
{
    return entry_off(e) == off && entry_width(e) == width;
}

/* The records' view of [off, off+width): the newest exact record, or a
   merge when records overlap it partially, or memory. */
static __attribute__((noinline)) uint64_t read_pending(mseg *s, uint64_t off, unsigned width)
{
    int64_t i = newest_overlap(s, off, width);
    if (i < 0)
        return load(s, off, width);
    const struct mseg_log_entry *e = &op_entries(s)[i];
    if (record_is(e, off, width))
        return width == 8 ? e->value : (uint32_t)e->value;
    return read_merged(s, off, width);
}

static inline __attribute__((always_inline)) uint64_t op_read(mseg *s, uint64_t off, unsigned width)
{
    if (!meta_ok(s, off, width)) {
        /* the note is the operation's: a read of another handle (lock-free,
           or inside this thread's transaction on another segment) is not
           part of it, and marking it failed that transaction with EUCLEAN */
        if (op_thread == s)
            bad_access = true;
        return 0;
    }
    /* only the thread running the operation sees its pending records; a
       lock-free reader on the same handle sees the committed state */
    if (s->op.count == 0 || op_thread != s || !bloom_test(s, off, width))
        return load(s, off, width);
    return read_pending(s, off, width);
}

/* Updates the newest record of exactly [off, off+width) in place, if it
   belongs to the current call (after the savepoint); false otherwise. */
static __attribute__((noinline)) bool update_pending(mseg *s, uint64_t off, unsigned width, uint64_t v)
{
    int64_t i = newest_overlap(s, off, width);
    struct mseg_log_entry *e = &op_entries(s)[i < 0 ? 0 : i];
    /* a partial overlap, or a record older than the savepoint: append */
    if (i < 0 || (uint32_t)i < s->op.save || !record_is(e, off, width))
        return false;
    e->value = v;
    return true;
}

/* The log is full but the operation's records start after a committed
   slot's (a durable commit whose pages are not flushed yet): flush those
   pages, empty the slots, and move the records to the start of the log. */
static bool make_room(mseg *s)
{
    if (s->op.base == 0 || log_settle(s))
        return false;
    memmove(log_entries(s), op_entries(s), (size_t)s->op.count * sizeof(struct mseg_log_entry));
    s->op.base = 0;
    return true;
}

uint64_t op_records_left(mseg *s)
{
    uint64_t used = log_bytes_used(s);
    return used >= MSEG_LOG_SIZE ? 0 : (MSEG_LOG_SIZE - used) / sizeof(struct mseg_log_entry);
}

static __attribute__((noinline)) void append_record(mseg *s, uint64_t off, unsigned width, uint64_t v)
{
    if (!log_has_room(s, sizeof(struct mseg_log_entry)) && !make_room(s)) {
        s->op.overflow = true;
        return;
    }
    index_note_append(s);
    struct mseg_log_entry *e = op_entries(s);
    e[s->op.count].where = off | (width == 4 ? MSEG_LOG_WIDTH32 : 0);
    e[s->op.count].value = v;
    s->op.count++;
    bloom_add(s, off, width);
}

/* A store of a direct operation (op_direct) with a crash hook armed: a
   crash point before each store. (Without a hook, op_set stores inline.)
   The order the allocator relies on (the one header store that decides
   comes after everything it exposes) is kept by op_store_ordered; the CPU
   keeps it too as far as a killed process is concerned, since every store
   it executed reaches the shared page. */
static void direct_store(mseg *s, uint64_t off, unsigned width, uint64_t v)
{
    if (crash_hook)
        crash_point_reached("direct.store");
    op_store_ordered(s, off, width, v);
}

static inline __attribute__((always_inline)) void op_write(mseg *s, uint64_t off, unsigned width, uint64_t v)
{
    if (!meta_ok(s, off, width)) {
        bad_access = true;
        return;
    }
    if (s->op.direct) {
        direct_store(s, off, width, v);
        return;
    }
    if (bloom_test(s, off, width) && update_pending(s, off, width, v))
        return;
    append_record(s, off, width, v);
}

/* ---- who runs the operation ---- */

bool op_owned(const mseg *s)
{
    return op_thread == s;
}

void op_forget_after_fork(void)
{
    op_thread = NULL;
}

/* Stores in place outside the commit protocol (recovery, rollback) are
   bracketed like step 3, so lock-free readers retry across them. */
static void readers_hold(mseg *s)
{
    uint64_t *seq = &seg_runtime(s)->op_seq;
    if (!(__atomic_load_n(seq, __ATOMIC_RELAXED) & 1))
        __atomic_add_fetch(seq, 1, __ATOMIC_RELEASE);
}

static void readers_release(mseg *s)
{
    uint64_t *seq = &seg_runtime(s)->op_seq;
    if (__atomic_load_n(seq, __ATOMIC_RELAXED) & 1)
        __atomic_add_fetch(seq, 1, __ATOMIC_RELEASE);
}

/* ---- the operation API ---- */

/* The operation on s is over: the thread goes back to what it ran when the
   operation began (op_begin), with that one's bad_access note. Clearing
   op_thread instead left a transaction on another segment, which called
   this one, reading memory where its own records hold newer values: two
   allocations of the transaction then returned the same block. */
static void op_end_thread(mseg *s)
{
    op_thread = s->op.outer;
    bad_access = s->op.outer_bad_access;
    s->op.outer = NULL;
    s->op.outer_bad_access = false;
}

void op_begin(mseg *s)
{
    s->op.active = true;
    s->op.overflow = false;
    s->op.direct = s->op.direct_inline = false;
    s->op.count = 0;
    s->op.save = 0;
    s->op.allocated = s->op.save_allocated = 0;
    s->op.ndeferred = s->op.save_deferred = 0;
    bloom_clear(s);
    s->op.fresh_lo = s->op.fresh_hi = 0;
    s->op.nfresh = 0;
    s->op.fresh_bytes = 0;
    /* a call on s inside this thread's transaction on another segment:
       that transaction is the thread's again when this operation ends */
    s->op.outer = op_thread != s ? op_thread : NULL;
    s->op.outer_bad_access = bad_access;
    bad_access = false;
    op_thread = s;
    /* durable: after the newest commit's records, into the other slot */
    int newest = newest_slot(s);
    s->op.base = 0;
    s->op.slot = 0;
    if (newest >= 0) {
        uint32_t packed = *slot_at(s, (unsigned)newest).count;
        s->op.base = packed_start(packed) + packed_count(packed);
        s->op.slot = 1u - (unsigned)newest;
    }
    log_head(s)->active = 1 + s->op.slot;
    /* before any store in place: a lock-free check that saw active 0 at
       its start sees it set at its end (log_op_in_progress, check.c) */
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

/*
 * Direct operations: the allocator's own calls (mseg_alloc, mseg_free
 * outside a transaction, without MSEG_DURABLE) store in place instead of
 * logging, because their only durable effect is one 4-byte block header
 * store, which is atomic: everything else they touch (free-list links,
 * footers, bins, bitmap, free_bytes, PREV_USED bits) heap_rebuild derives
 * from the headers. The log head's `active` flag, set by op_begin, stays
 * set until the last store, so a process that dies in between leaves it
 * set, and recovery (log_recover: active without a commit) rebuilds those
 * from a walk of the headers, which show the state before or after the
 * deciding store. op_seq is odd meanwhile, as during an apply, so lock-free
 * readers retry. heap.c orders the stores (see heap_alloc, heap_release).
 */
void op_direct(mseg *s)
{
    readers_hold(s);
    s->op.direct = true;
    s->op.direct_inline = crash_hook == NULL;   /* else each store is a crash point */
}

/* Back to logging, before the direct operation stored anything (an
   allocation that must grow the segment). */
void op_direct_off(mseg *s)
{
    s->op.direct = s->op.direct_inline = false;
    readers_release(s);
}

static int direct_commit(mseg *s)
{
    if (bad_access)
        return op_rollback(s), fail(EUCLEAN, "segment %s: damaged metadata: an operation "
                                    "followed an offset outside the heap", s->name);
    s->op.direct = s->op.direct_inline = false;
    readers_release(s);
    s->op.active = false;
    __atomic_store_n(&log_head(s)->active, 0, __ATOMIC_RELEASE);
    op_end_thread(s);
    return 0;
}

/* The out-of-line halves of op_get64/op_set64 and friends (internal.h). */
uint64_t op_get_slow(mseg *s, uint64_t off, unsigned width) { return op_read(s, off, width); }
void op_set_slow(mseg *s, uint64_t off, unsigned width, uint64_t v) { op_write(s, off, width, v); }

void op_fresh(mseg *s, uint64_t off, uint64_t len)
{
    if (len == 0)
        return;
    if (s->op.fresh_hi == 0 || off < s->op.fresh_lo)
        s->op.fresh_lo = off;
    if (off + len > s->op.fresh_hi)
        s->op.fresh_hi = off + len;
    if (s->op.fresh_bytes == UINT64_MAX)
        return;                           /* already too scattered to list */
    s->op.fresh_bytes += len;
    for (unsigned i = 0; i < s->op.nfresh; i++)
        if (off <= s->op.fresh[i].hi && s->op.fresh[i].lo <= off + len) {
            s->op.fresh[i].lo = off < s->op.fresh[i].lo ? off : s->op.fresh[i].lo;
            s->op.fresh[i].hi = off + len > s->op.fresh[i].hi ? off + len : s->op.fresh[i].hi;
            return;
        }
    if (s->op.nfresh < MSEG_FRESH_RANGES)
        s->op.fresh[s->op.nfresh++] = (struct fresh_range){ off, off + len };
    else
        s->op.fresh_bytes = UINT64_MAX;   /* too scattered to log: flush them */
}

/* Logs the words covering [lo, hi) with their values as this operation
   sees them (pending records included, so a record the operation made into
   its fresh block is not overwritten by the block's older bytes). */
static void log_as_records(mseg *s, uint64_t lo, uint64_t hi)
{
    uint64_t w = lo & ~3ull;
    while (w < hi) {
        if (w % 8 == 0 && w + 8 <= ((hi + 3) & ~3ull)) {
            op_write(s, w, 8, op_read(s, w, 8));
            w += 8;
        } else {
            op_write(s, w, 4, op_read(s, w, 4));
            w += 4;
        }
    }
}

/* Durable mode, before the commit word: fresh bytes must be on disk before
   a commit that publishes them can be (the kernel may write the log page
   back early). A few small ranges (a map insert's slot and order, a pushed
   element, user bytes of a transaction) are simply logged as records, which
   costs no flush; many or large ones are flushed here (a third msync). */
static int secure_fresh(mseg *s)
{
    if (!s->op.fresh_hi || !op_durable(s) || s->mode != MODE_RW)
        return 0;
    if (s->op.fresh_bytes <= MSEG_FRESH_LOGGED) {
        for (unsigned i = 0; i < s->op.nfresh; i++)
            log_as_records(s, s->op.fresh[i].lo, s->op.fresh[i].hi);
        return 0;
    }
    /* Flushed, they are in no record: a replay of an older slot could write
       stale words over them. So the pages the committed slots owe go in the
       same flush, and the slots are emptied before this commit's (the same
       sector of the log head: on disk, this commit never appears beside
       them). */
    uint64_t lo, hi;
    owed_range(s, &lo, &hi);
    lo = lo < s->op.fresh_lo ? lo : s->op.fresh_lo;
    hi = hi > s->op.fresh_hi ? hi : s->op.fresh_hi;
    if (persist(s, "log.fresh", lo, hi - lo))
        return -1;
    slots_retire(s);
    return 0;
}

void op_write_bytes(mseg *s, uint64_t off, const void *src, uint64_t len)
{
    const uint8_t *b = src;
    while (len > 0) {
        if (off % 8 == 0 && len >= 8) {
            uint64_t v;
            memcpy(&v, b, 8);
            op_write(s, off, 8, v);
            off += 8, b += 8, len -= 8;
            continue;
        }
        /* a 4-byte word, merging bytes outside [off, off+len) from the
           operation's current view */
        uint64_t word = off & ~3ull, n = 4 - (off - word);
        if (n > len)
            n = len;
        uint32_t v = (uint32_t)op_read(s, word, 4);
        memcpy((uint8_t *)&v + (off - word), b, n);
        op_write(s, word, 4, v);
        off += n, b += n, len -= n;
    }
}

/* Drops pending records that target [off, off+len): the payload of a block
   this operation just allocated. They were free-block links and footers of
   the same operation; left in the log they would land on top of whatever the
   caller writes into its fresh block before commit. */
void op_claim(mseg *s, uint64_t off, uint64_t len)
{
    struct mseg_log_entry *e = op_entries(s);
    uint32_t kept = 0;
    bool trimmed = false;
    for (uint32_t i = 0; i < s->op.count; i++) {
        uint64_t eo = entry_off(&e[i]);
        unsigned w = entry_width(&e[i]);
        if (eo >= off && eo + w <= off + len)
            continue;
        /* An 8-byte record half inside the claimed bytes keeps only its
           other half. The claim starts and ends 4 bytes off a granule (a
           block's usable bytes), so a free block's 8-byte link next to its
           end straddles it: kept whole, it was applied at commit over the
           caller's first bytes there. A vector of 1-byte elements grown
           in place twice in one transaction (the second growth, by one
           granule, took the block the first split off) lost 8 of them. */
        if (w == 8 && eo < off + len && eo + 8 > off) {
            struct mseg_log_entry half;
            if (eo + 4 == off)          /* the low half lies before the claim */
                half = (struct mseg_log_entry){ eo | MSEG_LOG_WIDTH32, (uint32_t)e[i].value };
            else                        /* eo + 4 == off + len: the high half after it */
                half = (struct mseg_log_entry){ (eo + 4) | MSEG_LOG_WIDTH32, e[i].value >> 32 };
            e[kept++] = half;
            trimmed = true;
            continue;
        }
        e[kept++] = e[i];
    }
    if ((kept != s->op.count || trimmed) && s->op.record_index)
        s->op.record_index->stale = true;   /* records moved or changed */
    s->op.count = kept;
}

/* Forgets the redo records; the caller knows nothing was carved. */
void op_discard(mseg *s)
{
    op_end_thread(s);
    s->op.ndeferred = 0;
    s->op.active = false;
    s->op.count = 0;
    bloom_clear(s);
    log_head(s)->active = 0;
}

/* Applies records [from, to) in place; widens [*lo, *hi) to what changed. */
static void apply(mseg *s, const struct mseg_log_entry *e, uint32_t from, uint32_t to,
                  uint64_t *lo, uint64_t *hi)
{
    for (uint32_t i = from; i < to; i++) {
        uint64_t off = entry_off(&e[i]);
        unsigned w = entry_width(&e[i]);
        op_store_ordered(s, off, w, e[i].value);
        if (off < *lo)
            *lo = off;
        if (off + w > *hi)
            *hi = off + w;
    }
}

int op_commit(mseg *s)
{
    if (s->op.direct)
        return direct_commit(s);
    struct mseg_log_head *h = log_head(s);
    /* one more than either slot's, taken before secure_fresh may empty them */
    uint64_t commit = (h->commit > h->commit_b ? h->commit : h->commit_b) + 1;
    if (heap_free_deferred(s)) {
        int e = errno;
        op_rollback(s);
        errno = e;
        return -1;
    }
    if (secure_fresh(s)) {
        int e = errno;
        op_rollback(s);
        errno = e;
        return -1;
    }
    uint32_t n = s->op.count;
    if (s->failed) {        /* a flush failed in the operation (make_room): its records are short */
        op_rollback(s);
        return fail(EIO, "segment %s: a flush failed (msync); nothing was changed and this handle "
                    "refuses further writes", s->name);
    }
    if (s->op.overflow) {   /* before bad_access: a full log makes reads stale */
        op_rollback(s);
        return fail(ENOMEM, "segment %s: operation needs more than %zu log records",
                    s->name, (size_t)MSEG_LOG_CAPACITY);
    }
    if (bad_access) {
        op_rollback(s);
        return fail(EUCLEAN, "segment %s: damaged metadata: an operation followed an offset "
                    "outside the heap; nothing was changed", s->name);
    }
    s->op.active = false;
    if (n == 0) {
        h->active = 0;
        op_end_thread(s);
        return 0;
    }
    bool durable = op_durable(s);
    struct slot sl = slot_at(s, s->op.slot);
    int rc = 0;

    /* step 1 */
    uint32_t packed = s->op.base << 16 | n;
    *sl.count = packed;
    *sl.checksum = log_checksum(commit, packed, op_entries(s));
    crash_point("log.written");
    /* what the previous durable commit left for this one to flush */
    uint64_t lo = MSEG_LOG_OFF, hi = 0;
    if (durable && *slot_at(s, 1u - s->op.slot).commit)
        slot_range(s, 1u - s->op.slot, &lo, &hi);
    /* step 2: readers hold off from here (op_seq odd), so none reads the
       state before a committed operation that a dead writer left unapplied */
    struct mseg_runtime *rt = seg_runtime(s);
    __atomic_add_fetch(&rt->op_seq, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(sl.commit, commit, __ATOMIC_RELEASE);
    /* PERSIST 1: the log, and the pages the previous commit changed (fresh
       bytes were secured before) */
    uint64_t log_hi = MSEG_LOG_OFF + sizeof *h + ((uint64_t)s->op.base + n) * sizeof(struct mseg_log_entry);
    hi = hi > log_hi ? hi : log_hi;
    if (persist(s, "log.committed", lo, hi - lo))
        rc = -1;
    /* step 3: apply even if a flush failed, so memory matches the committed
       log that other processes would replay; the caller still gets EIO. */
    lo = UINT64_MAX, hi = 0;
    apply(s, op_entries(s), 0, n / 2, &lo, &hi);
    crash_point("log.applying");
    apply(s, op_entries(s), n / 2, n, &lo, &hi);
    __atomic_add_fetch(&rt->op_seq, 1, __ATOMIC_RELEASE);
    /* durable: these pages are flushed by the next commit (or log_settle);
       until then this slot stays committed, so a power loss replays it */
    crash_point("log.applied");
    /* step 4: undo records first, so a committed transaction is never rolled back */
    __atomic_store_n(&h->undo_size, 0, __ATOMIC_RELEASE);
    if (!durable)
        __atomic_store_n(sl.commit, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&h->active, 0, __ATOMIC_RELEASE);
    crash_point("log.retired");
    s->op.count = 0;
    bloom_clear(s);
    op_end_thread(s);
    if (rc == 0 && heap_has_garbage(s) && !s->op.draining) {
        s->op.draining = true;
        rc = heap_drain_garbage(s);
        s->op.draining = false;
    }
    return rc;
}

/* ---- recovery ---- */

/* A record may only touch the control page and the heap. */
static bool entry_in_bounds(const mseg *s, const struct mseg_log_entry *e)
{
    return meta_ok(s, entry_off(e), entry_width(e));
}

/* ---- undo records (user bytes declared with mseg_tx_add) ---- */

static uint64_t pad8(uint64_t n) { return (n + 7) & ~7ull; }

static uint64_t undo_checksum(mseg *s, const struct mseg_undo_trailer *t, const void *bytes)
{
    uint64_t seed = (t->off * 0x9e3779b97f4a7c15ull + t->len) ^ log_head(s)->undo_seq;
    return (uint64_t)XXH3_64bits_withSeed(bytes, t->len, seed);
}

int op_undo(mseg *s, uint64_t off, uint64_t len)
{
    struct mseg_log_head *h = log_head(s);
    uint64_t rec = pad8(len) + sizeof(struct mseg_undo_trailer);
    if (len > MSEG_LOG_SIZE || !log_has_room(s, rec))
        return fail(ENOMEM, "segment %s: the transaction's log is full (%llu undo bytes)",
                    s->name, (unsigned long long)h->undo_size);
    if (h->undo_size == 0)   /* this transaction's first: a new identity */
        __atomic_store_n(&h->undo_seq, ++s->op.seq, __ATOMIC_RELEASE);
    uint64_t top = (uint64_t)MSEG_LOG_OFF + MSEG_LOG_SIZE - h->undo_size;
    uint8_t *bytes = s->base + top - rec;
    struct mseg_undo_trailer tr = { .off = off, .len = len };
    memcpy(bytes, s->base + off, len);
    memset(bytes + len, 0, pad8(len) - len);
    tr.checksum = undo_checksum(s, &tr, bytes);
    memcpy(bytes + pad8(len), &tr, sizeof tr);
    __atomic_store_n(&h->undo_size, h->undo_size + rec, __ATOMIC_RELEASE);
    op_fresh(s, off, len);   /* the user's new bytes are flushed at commit */
    /* durable: the undo record is on disk before the user's first store */
    return flush_range(s, MSEG_LOG_OFF, MSEG_LOG_SIZE);
}

/* True when a pending redo record of this thread's operation targets a
   byte of [off, off+len). */
static bool records_in(mseg *s, uint64_t off, uint64_t len)
{
    if (s->op.count == 0 || op_thread != s)
        return false;
    const struct mseg_log_entry *e = op_entries(s);
    for (uint32_t i = 0; i < s->op.count; i++) {
        uint64_t eo = entry_off(&e[i]);
        if (eo < off + len && eo + entry_width(&e[i]) > off)
            return true;
    }
    return false;
}

/* mseg_tx_add: the undo record, after which the program stores into
   [off, off+len) in place. A redo record of the transaction there (a
   vector element pushed over the kept header word of a block an expansion
   in place took over) would be applied over those stores at the commit,
   and the program's change lost. Such records give way: the aligned words
   they cover are saved in the undo record as memory holds them (the
   committed state, for a rollback), the transaction's view of them is
   stored in place, and the records are dropped. Readers of the committed
   state that must not see those stores read through op_committed_bytes. */
int op_undo_in_place(mseg *s, uint64_t off, uint64_t len)
{
    if (!records_in(s, off, len))
        return op_undo(s, off, len);
    uint64_t lo = off & ~7ull, hi = (off + len + 7) & ~7ull;   /* records are aligned to their width */
    if (op_undo(s, lo, hi - lo))
        return -1;
    for (uint64_t w = lo; w < hi; w += 4) {
        uint32_t v = (uint32_t)op_read(s, w, 4);
        memcpy(s->base + w, &v, 4);
    }
    op_claim(s, lo, hi - lo);
    return 0;
}

/* A walk over the undo records from the oldest (the log's end) down. */
struct undo_cursor {
    uint64_t size, used, pos;
};

static struct undo_cursor undo_start(mseg *s)
{
    uint64_t size = __atomic_load_n(&log_head(s)->undo_size, __ATOMIC_ACQUIRE);
    if (size > MSEG_LOG_SIZE - sizeof(struct mseg_log_head))
        size = 0;                        /* impossible: nothing to walk */
    return (struct undo_cursor){ size, 0, (uint64_t)MSEG_LOG_OFF + MSEG_LOG_SIZE };
}

/* The next record's trailer and bytes; false at the end or at a record
   that does not fit in what is left. Checksums are the caller's. */
static bool undo_next(mseg *s, struct undo_cursor *u, struct mseg_undo_trailer *tr, const uint8_t **bytes)
{
    uint64_t left = u->size - u->used;
    if (left < sizeof *tr)
        return false;
    memcpy(tr, s->base + u->pos - sizeof *tr, sizeof *tr);
    if (tr->len > left - sizeof *tr || pad8(tr->len) > left - sizeof *tr)
        return false;
    uint64_t rec = pad8(tr->len) + sizeof *tr;
    *bytes = s->base + u->pos - rec;
    u->used += rec;
    u->pos -= rec;
    return true;
}

/* Walks the sound undo records from the oldest; returns how many there are
   and, for index `want`, its trailer and bytes. */
static uint64_t undo_walk(mseg *s, uint64_t want, struct mseg_undo_trailer *out, const uint8_t **bytes)
{
    struct undo_cursor u = undo_start(s);
    struct mseg_undo_trailer tr;
    const uint8_t *b;
    uint64_t n = 0;
    while (undo_next(s, &u, &tr, &b)) {
        if (undo_checksum(s, &tr, b) != tr.checksum || tr.off < MSEG_HEAP_OFF || !seg_range_ok(s, tr.off, tr.len))
            break;                       /* torn: the newest, never acted on */
        if (n == want) {
            *out = tr;
            *bytes = b;
        }
        n++;
    }
    return n;
}

/* The committed state's bytes at [off, off+len), len <= 8, inside a
   transaction: the oldest undo record covering a byte holds its committed
   value (op_undo_in_place may have stored the transaction's view over it),
   memory the others. The records are this handle's own: not verified. */
void op_committed_bytes(mseg *s, uint64_t off, void *dst, unsigned len)
{
    uint8_t *d = dst;
    memcpy(d, s->base + off, len);
    bool got[8] = { false };
    struct undo_cursor u = undo_start(s);
    struct mseg_undo_trailer tr;
    const uint8_t *b;
    while (len <= 8 && undo_next(s, &u, &tr, &b))
        for (unsigned i = 0; i < len; i++)
            if (!got[i] && off + i >= tr.off && off + i - tr.off < tr.len) {
                d[i] = b[off + i - tr.off];
                got[i] = true;
            }
}

/* Restores user bytes, newest record first, so the oldest saved value wins. */
static void undo_apply(mseg *s, bool flush)
{
    struct mseg_undo_trailer tr;
    const uint8_t *b = NULL;
    uint64_t n = undo_walk(s, UINT64_MAX, &tr, &b);
    for (uint64_t i = n; i-- > 0;) {
        undo_walk(s, i, &tr, &b);
        memcpy(s->base + tr.off, b, tr.len);
        flush_if(s, flush, tr.off, tr.len);
    }
}

/* Ends an uncommitted operation or transaction in memory: user bytes back,
   free lists rebuilt if it carved blocks, log empty. flush: the repairs
   reach the disk before the log that covered them is emptied. */
static int roll_back(mseg *s, bool carved, bool flush)
{
    struct mseg_log_head *h = log_head(s);
    readers_hold(s);
    if (h->undo_size)
        undo_apply(s, flush);
    int rebuilt = carved ? heap_rebuild(s) : 0;
    readers_release(s);
    if (rebuilt)
        return -1;
    int rc = carved ? flush_if(s, flush, MSEG_CONTROL_OFF, s->size - MSEG_CONTROL_OFF) : 0;
    /* the commit slots stay: a committed durable operation before this one
       may still owe its pages. The log is emptied in memory even when the
       flush failed (the handle flushes nothing more, flush_now): every
       process shares this memory, and undo records left in it would be
       applied again, over later changes, by the next recovery */
    __atomic_store_n(&h->undo_size, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&h->active, 0, __ATOMIC_RELEASE);
    return rc ? rc : flush_if(s, flush, MSEG_LOG_OFF, sizeof *h);
}

int op_rollback(mseg *s)
{
    op_end_thread(s);
    s->op.active = false;
    s->op.count = 0;
    bloom_clear(s);
    s->op.ndeferred = 0;
    /* blocks it carved may have had their contents written over free-list
       links the committed state still holds: rebuild those */
    bool carved = s->op.allocated > 0 || s->op.direct;   /* direct: stored in place */
    s->op.allocated = 0;
    s->op.direct = s->op.direct_inline = false;   /* op_seq stays odd until roll_back's rebuild is done */
    return roll_back(s, carved, s->flags & MSEG_DURABLE);
}

/* Replays slot i's records in place; widens [*lo, *hi). -1 with EUCLEAN if
   a record would write outside the control page and the heap. */
static int replay_slot(mseg *s, unsigned i, uint64_t *lo, uint64_t *hi)
{
    uint32_t packed = *slot_at(s, i).count, n = packed_count(packed);
    const struct mseg_log_entry *e = log_entries(s) + packed_start(packed);
    for (uint32_t k = 0; k < n; k++)
        if (!entry_in_bounds(s, &e[k]))
            return fail(EUCLEAN, "segment %s: log record %u writes outside the heap "
                        "(offset %#llx, %u bytes)", s->name, k,
                        (unsigned long long)entry_off(&e[k]), entry_width(&e[k]));
    apply(s, e, 0, n, lo, hi);   /* log_recover holds readers off */
    return 0;
}

/* What recovery finds in the log head. */
struct log_findings {
    bool valid[2];          /* committed, intact slots */
    int  newest;            /* the valid one with the larger sequence, or -1 */
    bool torn;              /* a slot with a commit that does not verify */
    bool inflight;          /* an operation was in progress (active) */
    bool inflight_committed;/* ...and its commit is the newest valid slot */
    unsigned target;        /* the slot it was committing into */
};

static struct log_findings log_find(mseg *s)
{
    struct mseg_log_head *h = log_head(s);
    struct log_findings f = { .newest = -1 };
    for (unsigned i = 0; i < 2; i++) {
        f.valid[i] = slot_valid(s, i);
        f.torn |= !f.valid[i] && *slot_at(s, i).commit != 0;
    }
    if (f.valid[0] && f.valid[1])
        f.newest = h->commit >= h->commit_b ? 0 : 1;
    else if (f.valid[0] || f.valid[1])
        f.newest = f.valid[0] ? 0 : 1;
    uint32_t active = __atomic_load_n(&h->active, __ATOMIC_ACQUIRE);
    f.inflight = active != 0;
    f.target = active == 2 ? 1 : 0;
    /* its slot was not the newest when it began, so if it is now, the
       operation committed it */
    f.inflight_committed = f.inflight && f.newest == (int)f.target;
    return f;
}

int log_needs_recovery(mseg *s, bool after_reboot)
{
    struct log_findings f = log_find(s);
    if (f.inflight || log_head(s)->undo_size)
        return 1;
    return after_reboot && (f.valid[0] || f.valid[1] || f.torn);
}

/*
 * Recovery. A process crash keeps every store in the page cache, so only
 * the operation that was in flight matters: replayed if it committed, else
 * rolled back. After a reboot (after_reboot: a power loss may have kept any
 * subset of unflushed pages), every valid slot is replayed, oldest first:
 * a durable commit's pages are flushed only by the next commit. Then the
 * slots are emptied, their pages flushed first. 1 if something was
 * replayed or rolled back, 0 if nothing was needed, -1 on error.
 */
int log_recover(mseg *s, bool after_reboot)
{
    struct mseg_log_head *h = log_head(s);
    struct log_findings f = log_find(s);
    /* odd from here to the end (a writer that died mid-apply or mid-direct
       operation may have left it odd already): lock-free readers must not
       validate a read of the half-done state before it is repaired */
    readers_hold(s);
    int done = 0;
    uint64_t lo = UINT64_MAX, hi = 0;
    if (after_reboot && f.valid[0] && f.valid[1]) {
        if (replay_slot(s, 1u - (unsigned)f.newest, &lo, &hi))
            return readers_release(s), -1;
        done = 1;
    }
    if ((after_reboot && f.newest >= 0) || f.inflight_committed) {
        if (replay_slot(s, (unsigned)f.newest, &lo, &hi))
            return readers_release(s), -1;
        done = 1;
    }
    /* A handle whose flush failed (now or before) flushes nothing more, but
       it still repairs the memory every attached process shares, or the
       lock it took from a dead owner would be left unrecoverable for all
       of them. It leaves the disk as it is: the commit slots stay for a
       healthy handle, or the recovery after a power loss, to settle. */
    if (done && persist(s, "recover.replayed", lo, hi - lo) && !s->failed) {
        readers_release(s);
        return -1;
    }
    if ((f.inflight && !f.inflight_committed) || (h->undo_size && !f.inflight_committed)) {
        /* never committed: nothing of it was applied but fresh blocks and
           user bytes declared with mseg_tx_add */
        crash_point("recover.rollback");
        /* flushed whoever recovers, while the disk is trusted as it is
           (no unsynced change): the operation may be a durable handle's,
           whose undo records on disk are all that keeps its stores
           (written back early) from surviving a power loss; a handle
           without MSEG_DURABLE would otherwise empty that log in memory
           only, where the kernel may write it back first. With unsynced
           changes (a non-durable writer's operation marks them before its
           first store) recovery after a power loss distrusts the log and
           verifies the heap, and a process crash costs no flush of the
           whole segment, as it never did */
        bool flush = (s->flags & MSEG_DURABLE) || after_reboot || sync_disk_trusted(s);
        if (roll_back(s, f.inflight, flush) && !s->failed)   /* releases the readers */
            return -1;
        done = 1;
    }
    readers_release(s);
    /* only when set: a store of 0 over 0 still writes the page, and a
       copy-on-write handle's private recovery at open would then keep a
       private copy of the log head for good, blind to the "active" flag of
       every later writer's operation (mseg_verify through it took their
       fresh blocks for damage) */
    if (__atomic_load_n(&h->undo_size, __ATOMIC_RELAXED))
        __atomic_store_n(&h->undo_size, 0, __ATOMIC_RELEASE);
    if (__atomic_load_n(&h->active, __ATOMIC_RELAXED))
        __atomic_store_n(&h->active, 0, __ATOMIC_RELEASE);
    if (after_reboot && f.torn)
        done = 1;
    if (!s->failed && log_settle(s))
        return -1;
    return done;
}

/*
 * Empties the commit slots for good: flushes the pages they owe (a process
 * that crashed left them in the page cache, or a durable commit left them
 * to the next commit), then their emptiness. No-op when they are empty.
 */
int log_settle(mseg *s)
{
    struct mseg_log_head *h = log_head(s);
    if (!h->commit && !h->commit_b)
        return 0;
    uint64_t lo, hi;
    owed_range(s, &lo, &hi);
    if (lo < hi && flush_now(s, lo, hi - lo))
        return -1;
    slots_retire(s);
    return flush_now(s, MSEG_LOG_OFF, sizeof *h);
}

/* Applies the pending records in place without the commit protocol: only
   for building a new segment, whose header is written last (segment.c). */
void op_apply_unlogged(mseg *s)
{
    uint64_t lo = UINT64_MAX, hi = 0;
    apply(s, op_entries(s), 0, s->op.count, &lo, &hi);
    s->op.count = 0;
    bloom_clear(s);
}
