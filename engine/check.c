/*
 * check.c - the full consistency check (mseg_check, mseg_verify).
 *
 * It verifies, without trusting any of it:
 *   1. both header copies (each on its own);
 *   2. the heap walk: blocks tile the heap exactly, each size sane, each
 *      PREV_USED bit true, each free block's footer right, no free
 *      neighbours that should have merged, the end marker in place;
 *   3. the free lists against the walk: every listed block is a free block of
 *      the list's bin, back links agree, no list is longer than the number of
 *      free blocks (a cycle), every free block is listed exactly once, the
 *      bitmap matches the lists, free_bytes matches the sum;
 *   4. the directory: its table is a live block, counts match, every entry is
 *      a sound record whose name hashes to the slot and is found by a lookup;
 *   5. no block has two owners: every block the engine's structures own
 *      (the directory's table and records, each container's buffer, nodes,
 *      cells and owned containers, the garbage array and the blocks it
 *      still owes) is recorded in one set (blockset.c), and a block met a
 *      second time is reported with both owners. Links that own nothing (a
 *      leaf's prev and next) are not counted.
 * Every problem is counted; the first is described with its offset.
 */
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "hash.h"
#include "internal.h"

struct checker {
    mseg *s;
    struct mseg_report *r;
    uint64_t heap_start, heap_end;
    uint64_t header_size;       /* the newest valid header copy's; 0 if none */
    uint64_t *marks;            /* used blocks the walk found (heap_set_walk_marks); may be NULL */
    uint64_t free_blocks, free_sum;
    struct blockset owned;      /* blocks owned so far, and by whom (5.) */
};


__attribute__((format(printf, 2, 3)))
static void problem(struct checker *c, const char *fmt, ...)
{
    if (c->r->problems++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->r->first_problem, sizeof c->r->first_problem, fmt, ap);
        va_end(ap);
    }
}

/* Records that `owner` owns block b; a second owner is a problem. */
static void own(struct checker *c, uint64_t b, uint64_t owner)
{
    char why[200];
    if (blockset_own(&c->owned, b, owner, why, sizeof why))
        problem(c, "%s", why);
}

static uint32_t rd32(mseg *s, uint64_t off) { return *(const uint32_t *)(s->base + off); }
static uint64_t rd64(mseg *s, uint64_t off) { return *(const uint64_t *)(s->base + off); }
static uint64_t hsize(uint32_t h) { return (uint64_t)(h >> 2) * MSEG_GRANULE; }

static void check_headers(struct checker *c)
{
    char why[200];
    int err;
    uint64_t limit = seg_header_limit(c->s);
    c->r->header_a_ok = header_validate(seg_header(c->s, 0), limit, why, sizeof why, &err) == 0;
    if (!c->r->header_a_ok)
        problem(c, "header A (offset 0): %s", why);
    c->r->header_b_ok = header_validate(seg_header(c->s, 1), limit, why, sizeof why, &err) == 0;
    if (!c->r->header_b_ok)
        problem(c, "header B (offset %#x): %s", MSEG_HEADER_B_OFF, why);
    const struct mseg_header *a = seg_header(c->s, 0), *b = seg_header(c->s, 1);
    const struct mseg_header *h = !c->r->header_a_ok ||
                                  (c->r->header_b_ok && b->generation > a->generation) ? b : a;
    if (c->r->header_a_ok || c->r->header_b_ok)
        c->header_size = h->size;
    c->r->format_version = h->format_version;
    c->r->generation = h->generation;
    c->r->size = c->s->size;
}

/* Walks every block; returns false if the walk cannot go on. */
static bool check_walk(struct checker *c)
{
    mseg *s = c->s;
    bool prev_used = true, prev_free_merge = false;
    uint64_t prev_size = 0, p = c->heap_start + MSEG_GRANULE;
    while (p < c->heap_end) {
        uint32_t h = rd32(s, p - 4);
        uint64_t size = hsize(h);
        bool used = h & MSEG_BLOCK_USED;
        if (size < MSEG_BLOCK_MIN || size > c->heap_end - p) {
            problem(c, "heap: block at %#llx has impossible size %llu",
                    (unsigned long long)p, (unsigned long long)size);
            return false;
        }
        if (((h & MSEG_BLOCK_PREV_USED) != 0) != prev_used)
            problem(c, "heap: block at %#llx says the previous block is %s, it is %s",
                    (unsigned long long)p, prev_used ? "free" : "used", prev_used ? "used" : "free");
        if (used) {
            if (c->marks) {
                uint64_t g = (p - c->heap_start) / MSEG_GRANULE;
                c->marks[g / 64] |= 1ull << (g % 64);
            }
            c->r->blocks_used++;
            c->r->bytes_used += size;
        } else {
            if (rd32(s, p + size - 8) != size / MSEG_GRANULE)
                problem(c, "heap: free block at %#llx has footer %u, size %llu granules",
                        (unsigned long long)p, rd32(s, p + size - 8),
                        (unsigned long long)(size / MSEG_GRANULE));
            if (prev_free_merge && prev_size + size <= MSEG_BLOCK_MAX)
                problem(c, "heap: free blocks at %#llx and before it were not merged",
                        (unsigned long long)p);
            c->r->blocks_free++;
            c->r->bytes_free += size;
            if (size - 4 > c->r->largest_free)
                c->r->largest_free = size - 4;
            c->free_blocks++;
            c->free_sum += size - 4;
        }
        prev_used = used;
        prev_free_merge = !used;
        prev_size = size;
        p += size;
    }
    if (p != c->heap_end) {
        problem(c, "heap: blocks overrun the heap end %#llx", (unsigned long long)c->heap_end);
        return false;
    }
    uint32_t end = rd32(s, c->heap_end - 4);
    if (hsize(end) != 0 || !(end & MSEG_BLOCK_USED) || ((end & MSEG_BLOCK_PREV_USED) != 0) != prev_used)
        problem(c, "heap: end marker at %#llx is damaged", (unsigned long long)(c->heap_end - 4));
    return true;
}

/* Is p the payload of a free block (as the walk would see it)? */
static bool is_free_block(struct checker *c, uint64_t p, uint64_t *size)
{
    if (p % MSEG_GRANULE || p < c->heap_start + MSEG_GRANULE || p >= c->heap_end)
        return false;
    uint32_t h = rd32(c->s, p - 4);
    *size = hsize(h);
    return !(h & MSEG_BLOCK_USED) && *size >= MSEG_BLOCK_MIN && *size <= c->heap_end - p &&
           rd32(c->s, p + *size - 8) == *size / MSEG_GRANULE;
}

/* The garbage array and the blocks it still owes (heap_drain_garbage frees
   those of its entries that are live: the others are not followed). */
static void check_garbage_owned(struct checker *c, const struct mseg_control *ctl)
{
    own(c, ctl->garbage, BLOCK_BY_GARBAGE);
    for (uint64_t i = ctl->garbage_done; i < ctl->garbage_count; i++) {
        uint64_t p = rd64(c->s, ctl->garbage + 8 * i);
        if (heap_block_is_live(c->s, p))
            own(c, p, ctl->garbage | BLOCK_BY_GARBAGE);
    }
}

static void check_lists(struct checker *c)
{
    const struct mseg_control *ctl = seg_control(c->s);
    uint64_t listed = 0;
    for (unsigned b = 0; b < MSEG_BINS; b++) {
        uint64_t p = ctl->bin_head[b], prev = 0, steps = 0;
        bool bit = (ctl->bin_bitmap[b / 64] >> (b % 64)) & 1;
        if (bit != (p != 0))
            problem(c, "bins: bitmap bit %u is %d but the list is %s", b, bit, p ? "non-empty" : "empty");
        for (; p; prev = p, p = rd64(c->s, p)) {
            uint64_t size;
            if (++steps > c->free_blocks) {
                problem(c, "bins: list %u is longer than the %llu free blocks (a cycle)",
                        b, (unsigned long long)c->free_blocks);
                break;
            }
            if (!is_free_block(c, p, &size)) {
                problem(c, "bins: list %u holds %#llx, which is not a free block", b,
                        (unsigned long long)p);
                break;
            }
            if (heap_bin_of(size / MSEG_GRANULE) != b)
                problem(c, "bins: block %#llx of %llu bytes is in bin %u, belongs in %u",
                        (unsigned long long)p, (unsigned long long)size, b, heap_bin_of(size / MSEG_GRANULE));
            if (rd64(c->s, p + 8) != prev)
                problem(c, "bins: block %#llx's back link is %#llx, expected %#llx",
                        (unsigned long long)p, (unsigned long long)rd64(c->s, p + 8),
                        (unsigned long long)prev);
            listed++;
        }
    }
    if (listed != c->free_blocks)
        problem(c, "bins: %llu blocks listed, the heap walk found %llu free blocks",
                (unsigned long long)listed, (unsigned long long)c->free_blocks);
    if (ctl->garbage && (!heap_block_is_live(c->s, ctl->garbage) ||
                         ctl->garbage_done > ctl->garbage_count ||
                         ctl->garbage_count > (heap_block_size(c->s, ctl->garbage) - 4) / 8))
        problem(c, "garbage: array at %#llx (%llu of %llu done) is not a live block of that size",
                (unsigned long long)ctl->garbage, (unsigned long long)ctl->garbage_done,
                (unsigned long long)ctl->garbage_count);
    else if (ctl->garbage)
        check_garbage_owned(c, ctl);
    if (ctl->free_bytes != c->free_sum)
        problem(c, "accounting: free_bytes is %llu, free payloads add up to %llu",
                (unsigned long long)ctl->free_bytes, (unsigned long long)c->free_sum);
}

/* A named vector or map: its own invariants (vector.c, map.c). */
static void check_container(struct checker *c, const char *name, uint8_t kind, uint64_t data)
{
    char why[200] = "";
    int rc = 0;
    struct blockset *owned = c->owned.off ? NULL : &c->owned;
    if (kind == MSEG_KIND_VEC)
        rc = vec_check_in(c->s, data, owned, why, sizeof why);
    else if (kind == MSEG_KIND_MAP)
        rc = map_check_in(c->s, data, owned, why, sizeof why);
    else if (kind != MSEG_KIND_RAW)
        snprintf(why, sizeof why, "unknown kind %u", kind), rc = -1;
    if (rc)
        problem(c, "container %s at %#llx: %s", name, (unsigned long long)data, why);
}

static void check_directory(struct checker *c)
{
    mseg *s = c->s;
    const struct mseg_control *ctl = seg_control(s);
    uint64_t table = ctl->dir_table, cap = ctl->dir_capacity, live = 0, used = 0;
    c->r->named = ctl->dir_count;
    if (table == 0) {
        if (cap || ctl->dir_count || ctl->dir_used)
            problem(c, "directory: no table, but %llu slots and %llu objects recorded",
                    (unsigned long long)cap, (unsigned long long)ctl->dir_count);
        return;
    }
    if (!cap || (cap & (cap - 1)) || cap > s->size / 16 || !heap_block_is_live(s, table) ||
        heap_block_size(s, table) - 4 < cap * 16) {
        problem(c, "directory: table at %#llx with %llu slots is not a live block of that size",
                (unsigned long long)table, (unsigned long long)cap);
        return;
    }
    own(c, table, BLOCK_BY_DIRECTORY);
    for (uint64_t i = 0; i < cap; i++) {
        const struct mseg_dir_slot *slot = (const void *)(s->base + table + 16 * i);
        if (slot->rec == MSEG_DIR_EMPTY)
            continue;
        used++;
        if (slot->rec == MSEG_DIR_DELETED)
            continue;
        live++;
        char name[MSEG_NAME_MAX + 1];
        if (dir_record_name(s, slot->rec, name) != 0) {
            problem(c, "directory: slot %llu points at %#llx: %s", (unsigned long long)i,
                    (unsigned long long)slot->rec, mseg_errmsg());
            continue;
        }
        const struct mseg_dir_record *r = (const void *)(s->base + slot->rec);
        own(c, slot->rec, (table + 16 * i) | BLOCK_BY_DIRECTORY);
        if (mseg_hash(name, strlen(name)) != slot->hash || r->hash != slot->hash)
            problem(c, "directory: slot %llu (%s) has the wrong hash", (unsigned long long)i, name);
        else if (dir_record_lookup(s, name) != slot->rec)
            problem(c, "directory: object %s is not found by a lookup (probe chain broken)", name);
        else if (dir_record_kind_lost(s, slot->rec, r))
            problem(c, "directory: record of %s at %#llx is damaged: a container's type, but kind %u", name,
                    (unsigned long long)slot->rec, r->kind);
        check_container(c, name, r->kind, slot->rec + r->data_off);
    }
    if (live != ctl->dir_count || used != ctl->dir_used)
        problem(c, "directory: %llu live and %llu used slots, control says %llu and %llu",
                (unsigned long long)live, (unsigned long long)used,
                (unsigned long long)ctl->dir_count, (unsigned long long)ctl->dir_used);
}

/* One pass of the whole check into r; dense: record owned blocks in the
   dense form of the set (blockset.c), else in the table. *dups: second
   owners whose first owner the pass could not name. false if the set
   could not be had (no memory): then no block's owners were counted. */
static bool check_pass(mseg *s, struct mseg_report *r, bool dense, uint64_t *dups)
{
    struct checker c = { .s = s, .r = r };
    bool counted = false;
    memset(r, 0, sizeof *r);
    *dups = 0;
    r->recovered = s->recovered;
    check_headers(&c);
    const struct mseg_control *ctl = seg_control(s);
    c.heap_start = ctl->heap_start;
    c.heap_end = ctl->heap_end;
    r->heap_bytes = c.heap_end - c.heap_start;
    if (c.heap_start != MSEG_HEAP_OFF || c.heap_end % MSEG_GRANULE || c.heap_end > s->size ||
        c.heap_end < c.heap_start + 2 * MSEG_BLOCK_MIN) {
        problem(&c, "control: heap [%#llx, %#llx) does not fit the segment of %llu bytes",
                (unsigned long long)c.heap_start, (unsigned long long)c.heap_end,
                (unsigned long long)s->size);
    } else if (c.header_size && c.heap_end > c.header_size) {
        /* the next open maps the header's size: this heap would not fit */
        problem(&c, "control: heap ends at %#llx, past the %llu bytes the header records",
                (unsigned long long)c.heap_end, (unsigned long long)c.header_size);
    } else {
        /* one bit per granule: 1/128 of the heap; without it (no memory),
           references are checked by their neighbouring words only */
        uint64_t granules = (c.heap_end - c.heap_start) / MSEG_GRANULE;
        c.marks = calloc(granules / 64 + 1, sizeof *c.marks);
        if (check_walk(&c)) {
            if (c.marks)
                heap_set_walk_marks(c.marks, c.heap_start, c.heap_end);
            /* the table has room for every used block once: a sound
               segment never rehashes it */
            if (!dense || !blockset_init_dense(&c.owned, c.heap_start, c.heap_end))
                blockset_init(&c.owned, r->blocks_used);
            check_lists(&c);
            check_directory(&c);
            heap_set_walk_marks(NULL, 0, 0);
            counted = !c.owned.off;
            *dups = c.owned.dups;
            blockset_free(&c.owned);
        }
        free(c.marks);
    }
    return counted;
}

/*
 * After a system crash with unsynced changes (sync.c), on a segment the
 * check found sound. A garbage batch's heap pages may have reached the
 * disk without the control page that counts it done: the array still owes
 * blocks that the batch freed, merged into the free blocks before them.
 * Their old headers, inside those free blocks, still say "used" (and the
 * walk never reads them), and heap_block_is_live's constant-time tests
 * can pass them: the drain would free them again, over the free block
 * around them. So the owed entries that the heap walk does not find as
 * used blocks are cleared (the drain skips a 0). In place; the caller
 * flushes the segment. -1 (ENOMEM) when there is no memory for the walk.
 */
int check_prune_garbage(mseg *s)
{
    const struct mseg_control *ctl = seg_control(s);
    if (!ctl->garbage)
        return 0;
    struct mseg_report r;
    memset(&r, 0, sizeof r);
    struct checker c = { .s = s, .r = &r, .heap_start = ctl->heap_start, .heap_end = ctl->heap_end };
    c.marks = calloc((c.heap_end - c.heap_start) / MSEG_GRANULE / 64 + 1, sizeof *c.marks);
    if (!c.marks)
        return fail(ENOMEM, "segment %s: no memory to walk the heap", s->name);
    if (check_walk(&c)) {   /* the check before found the walk sound */
        heap_set_walk_marks(c.marks, c.heap_start, c.heap_end);
        for (uint64_t i = ctl->garbage_done; i < ctl->garbage_count; i++) {
            uint64_t *e = (uint64_t *)(s->base + ctl->garbage + 8 * i);
            if (*e && !heap_block_is_live(s, *e))
                *e = 0;
        }
        heap_set_walk_marks(NULL, 0, 0);
    }
    free(c.marks);
    return 0;
}

int check_segment(mseg *s, struct mseg_report *r)
{
    uint64_t dups;
    check_pass(s, r, true, &dups);
    if (dups) {
        /* a block with two owners, the first unnamed: again, naming them */
        struct mseg_report *named = malloc(sizeof *named);
        if (named && check_pass(s, named, false, &dups) && named->problems)
            *r = *named;
        free(named);
    }
    if (r->problems)
        return fail(EUCLEAN, "segment %s: %s (%llu problems)", s->name, r->first_problem,
                    (unsigned long long)r->problems);
    return 0;
}

#define QUIET_WAIT_NS (5000 * 1000 * 1000ull)

/* A check that could not run (a bad argument, a segment that does not open,
   a lock not taken, EBUSY, EAGAIN) still fills the report, so a caller that
   reads r->problems without looking at the return value is not told "sound"
   by a report left as it was: one problem, described by mseg_errmsg(). */
static int check_did_not_run(struct mseg_report *r)
{
    int e = errno;
    memset(r, 0, sizeof *r);
    r->problems = 1;
    snprintf(r->first_problem, sizeof r->first_problem, "%s", mseg_errmsg());
    errno = e;
    return -1;
}

static int verify_handle(mseg *s, struct mseg_report *r, bool *ran);

int mseg_verify(mseg *s, struct mseg_report *r)
{
    struct mseg_report local;
    if (!r)
        r = &local;
    bool ran = false;
    int rc = verify_handle(s, r, &ran);
    return rc && !ran ? check_did_not_run(r) : rc;
}

/* *ran: check_segment filled r (its verdict is the return value) */
static int verify_handle(mseg *s, struct mseg_report *r, bool *ran)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle");
    /* read-write handles verify under the lock: it also recovers from a
       writer that died before committing (its fresh blocks may cover free
       lists that only recovery rebuilds) */
    /* inside this thread's transaction the lock is ours and the operation
       in progress is its own: the lock-free path below would wait 5 s for
       it to end and then blame "writers" (EAGAIN). Its changes are not in
       place until the commit, so there is nothing to verify yet */
    if (tx_owns(s))
        return fail(EBUSY, "segment %s: mseg_verify inside a transaction; verify after its commit",
                    s->name);
    if (s->mode == MODE_RW) {
        if (lock_acquire(s))
            return -1;
        int rc = check_segment(s, r), e = errno;
        *ran = true;
        lock_release(s);
        errno = e;
        return rc;
    }
    /* Without the lock (read-only and copy-on-write handles): between two
       reads of op_seq, and with no operation in progress at either end. An
       operation writes its fresh blocks in place before it commits, over
       what the committed free lists still show as a free block's links and
       footer: harmless to every other reader, false damage to this one. */
    uint64_t seq, start = 0;
    for (;;) {
        if (seg_read_begin(s, &seq))
            return -1;
        bool quiet = !log_op_in_progress(s);
        int rc = quiet ? check_segment(s, r) : 0, e = errno;
        if (quiet && !log_op_in_progress(s) && seg_read_end(s, seq)) {
            *ran = true;
            errno = e;
            return rc;
        }
        uint64_t now = mono_now_ns();
        if (!start)
            start = now;
        else if (now - start > QUIET_WAIT_NS)
            return fail(EAGAIN, "segment %s: writers kept it busy for %llu ms; a check without the "
                        "lock needs a moment with no operation in progress; retry, or verify from a "
                        "read-write handle (mseg_verify)", s->name,
                        (unsigned long long)(QUIET_WAIT_NS / 1000000));
        sched_yield();
    }
}

int check_named(const char *name, unsigned flags, struct mseg_report *r,
                void (*before)(mseg *, void *), void *arg)
{
    struct mseg_report local;
    if (!r)
        r = &local;
    memset(r, 0, sizeof *r);
    if (flags & ~MSEG_OPEN_FLAGS) {
        fail(EINVAL, "segment %s: mseg_check: unknown flags %#x", name ? name : "(null)", flags & ~MSEG_OPEN_FLAGS);
        return check_did_not_run(r);
    }
    for (int tries = 0;; tries++) {
        mseg *s = mseg_open(name, MSEG_COW | (flags & MSEG_SHM), NULL);
        if (!s)
            return check_did_not_run(r);
        if (before)
            before(s, arg);
        int rc = mseg_verify(s, r);   /* between two reads of the writers' op_seq */
        int e = errno;
        /* With no writer attached at the open, the view recovered privately,
           and the pages that recovery wrote no longer follow the file. A
           writer that attached since (a first writer: it moved the epoch)
           changes the rest of the file under them: the view mixes two
           states and can look damaged when the segment is not. Look again
           from a fresh view, which follows that writer's operations. */
        bool moved = __atomic_load_n(seg_epoch_word(s), __ATOMIC_ACQUIRE) != s->open_epoch;
        mseg_close(s);
        if (rc && e == EUCLEAN && moved && tries < 5)
            continue;
        errno = e;
        return rc;
    }
}

int mseg_check(const char *name, unsigned flags, struct mseg_report *r)
{
    return check_named(name, flags, r, NULL, NULL);
}
