/*
 * heap.c - the allocator: boundary-tagged blocks in segregated free lists
 * (two-level, as in TLSF), so alloc and free take constant time.
 *
 * Block format: see layout.h ("Heap blocks"). Every read of allocator
 * metadata goes through op_get*, every write through op_set* (log.c), so an
 * operation is atomic: its changes reach the segment only when it commits.
 *
 * Invariants (check.c verifies each one):
 *   - blocks tile [heap_start + 16 - 4, heap_end - 4) exactly, then the end
 *     marker (used, size 0);
 *   - a block's PREV_USED bit equals the used bit of the block before it;
 *   - a free block's footer equals its size, and it is in exactly one list,
 *     the bin of its size; a bin's bitmap bit is set iff its list is
 *     non-empty;
 *   - no two free blocks are neighbours, unless together they would exceed
 *     the largest block (16 GiB - 16);
 *   - free_bytes is the sum of the free blocks' payloads (size - 4).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CTRL(field) ((uint64_t)MSEG_CONTROL_OFF + offsetof(struct mseg_control, field))

/* ---- block words, by payload offset p ---- */

static uint32_t head(mseg *s, uint64_t p)           { return op_get32(s, p - 4); }
static void set_head(mseg *s, uint64_t p, uint32_t h) { op_set32(s, p - 4, h); }
static uint64_t head_size(uint32_t h)               { return (uint64_t)(h >> 2) * MSEG_GRANULE; }
static bool head_used(uint32_t h)                   { return h & MSEG_BLOCK_USED; }
static bool head_prev_used(uint32_t h)              { return h & MSEG_BLOCK_PREV_USED; }

static uint32_t make_head(uint64_t size, bool prev_used, bool used)
{
    return (uint32_t)((size / MSEG_GRANULE) << 2) |
           (prev_used ? MSEG_BLOCK_PREV_USED : 0) | (used ? MSEG_BLOCK_USED : 0);
}

/* The free lists, their heads, the bitmap, footers and free_bytes are
   logged like the headers. (They are also a cache that heap_rebuild
   recomputes from the headers, which recovery relies on after an operation
   that never committed; storing them in place instead of logging them was
   tried and lost blocks under the kill -9 torture, so it is not done.) */
static uint64_t link_next(mseg *s, uint64_t p)          { return op_get64(s, p); }
static uint64_t link_prev(mseg *s, uint64_t p)          { return op_get64(s, p + 8); }
static void set_next(mseg *s, uint64_t p, uint64_t v)   { op_set64(s, p, v); }
static void set_prev(mseg *s, uint64_t p, uint64_t v)   { op_set64(s, p + 8, v); }
static void set_foot(mseg *s, uint64_t p, uint64_t size){ op_set32(s, p + size - 8, (uint32_t)(size / MSEG_GRANULE)); }
static uint64_t foot(mseg *s, uint64_t p)               { return (uint64_t)op_get32(s, p - 8) * MSEG_GRANULE; }

/* Sets or clears PREV_USED in the header of the block at p. */
static void mark_prev_used(mseg *s, uint64_t p, bool used)
{
    uint32_t h = head(s, p);
    uint32_t nh = used ? (h | MSEG_BLOCK_PREV_USED) : (h & ~MSEG_BLOCK_PREV_USED);
    if (nh != h)
        set_head(s, p, nh);
}

/* ---- bins ---- */

/* Bin of a block of g granules (g >= 2): exact below 16, then 16 bins per
   power of two. Part of the format: check.c verifies lists with it. */
unsigned heap_bin_of(uint64_t g)
{
    if (g < 16)
        return (unsigned)g;
    unsigned fl = 63u - (unsigned)__builtin_clzll(g);
    unsigned sl = (unsigned)(g >> (fl - 4)) & 15u;
    return 16u + (fl - 4u) * 16u + sl;
}

/* Smallest bin whose every block holds at least g granules. */
static unsigned bin_at_least(uint64_t g)
{
    if (g < 16)
        return (unsigned)g;
    unsigned fl = 63u - (unsigned)__builtin_clzll(g);
    uint64_t rounded = g + (1ull << (fl - 4)) - 1;
    if (rounded > MSEG_BLOCK_MAX_GRANULES)
        return MSEG_BINS;
    return heap_bin_of(rounded);
}

static uint64_t bin_head_off(unsigned b) { return CTRL(bin_head) + 8ull * b; }
static uint64_t bitmap_off(unsigned b)   { return CTRL(bin_bitmap) + 8ull * (b / 64); }

static void bitmap_set(mseg *s, unsigned b, bool on)
{
    uint64_t w = op_get64(s, bitmap_off(b));
    uint64_t nw = on ? (w | (1ull << (b % 64))) : (w & ~(1ull << (b % 64)));
    if (nw != w)
        op_set64(s, bitmap_off(b), nw);
}

/* First non-empty bin >= b, or MSEG_BINS. */
static unsigned bin_find(mseg *s, unsigned b)
{
    for (unsigned w = b / 64; w < MSEG_BIN_WORDS; w++) {
        uint64_t bits = op_get64(s, CTRL(bin_bitmap) + 8ull * w);
        if (w == b / 64)
            bits &= ~0ull << (b % 64);
        if (bits)
            return w * 64 + (unsigned)__builtin_ctzll(bits);
    }
    return MSEG_BINS;
}

static void add_free_bytes(mseg *s, int64_t delta)
{
    op_set64(s, CTRL(free_bytes), op_get64(s, CTRL(free_bytes)) + (uint64_t)delta);
}

/* Lists and unlists free blocks; free_bytes counts their payload bytes
   (size - 4), what mseg_free_memory reports. */
static void list_insert(mseg *s, uint64_t p, uint64_t size)
{
    add_free_bytes(s, (int64_t)size - 4);
    unsigned b = heap_bin_of(size / MSEG_GRANULE);
    uint64_t first = op_get64(s, bin_head_off(b));
    set_next(s, p, first);
    set_prev(s, p, 0);
    if (first)
        set_prev(s, first, p);
    op_set64(s, bin_head_off(b), p);
    bitmap_set(s, b, true);
}

/* Points the list neighbours prev and next of a block of bin b (prev 0:
   the bin head) at what follows and precedes them now. */
static void relink_neighbours(mseg *s, unsigned b, uint64_t prev, uint64_t next,
                              uint64_t prev_gets, uint64_t next_gets)
{
    if (prev)
        set_next(s, prev, prev_gets);
    else
        op_set64(s, bin_head_off(b), prev_gets);
    if (next)
        set_prev(s, next, next_gets);
}

static void list_remove(mseg *s, uint64_t p, uint64_t size)
{
    add_free_bytes(s, 4 - (int64_t)size);
    unsigned b = heap_bin_of(size / MSEG_GRANULE);
    uint64_t next = link_next(s, p), prev = link_prev(s, p);
    relink_neighbours(s, b, prev, next, next, prev);
    if (!prev && !next)
        bitmap_set(s, b, false);
}

/* Makes [p, p+size) a free block in its bin; its PREV_USED bit is given. */
static void make_free(mseg *s, uint64_t p, uint64_t size, bool prev_used)
{
    set_head(s, p, make_head(size, prev_used, false));
    set_foot(s, p, size);
    list_insert(s, p, size);
}


/* ---- formatting a new heap ---- */

/* Cuts [heap_start, heap_end) into free blocks of at most MSEG_BLOCK_MAX and
   the end marker, storing directly (op_apply_unlogged): creation is made
   atomic by segment.c, which writes the header last. */
/* Cuts [p, end) into free blocks of at most MSEG_BLOCK_MAX, the first one
   with the given PREV_USED bit, and puts the end marker at end - 4. With
   unlogged, stores directly in batches (creation); otherwise logs. */
static void carve_free(mseg *s, uint64_t p, uint64_t end, bool prev_used, bool unlogged)
{
    while (end - p >= MSEG_BLOCK_MIN) {
        uint64_t size = end - p;
        if (size > MSEG_BLOCK_MAX)
            size = MSEG_BLOCK_MAX;
        /* leave room for a whole last block, and no more: taking a whole
           MSEG_BLOCK_MIN from a largest block that left 16 bytes made it
           16 bytes too small for an allocation of 16 GiB - 32 that the
           growth had made room for */
        if (end - p - size != 0 && end - p - size < MSEG_BLOCK_MIN)
            size -= MSEG_BLOCK_MIN - (end - p - size);
        make_free(s, p, size, prev_used);
        if (unlogged)
            op_apply_unlogged(s);       /* keep the record count small */
        prev_used = false;
        p += size;
    }
    /* the end marker: used, size 0, never merged, never freed */
    set_head(s, end, make_head(0, prev_used, true));
    op_set64(s, CTRL(heap_end), end);
    if (unlogged)
        op_apply_unlogged(s);
}

/* Formats [heap_start, heap_end) as free blocks and the end marker, storing
   directly (op_apply_unlogged): creation is made atomic by segment.c, which
   writes the header last. */
void heap_format(mseg *s, uint64_t heap_start, uint64_t heap_end)
{
    op_set64(s, CTRL(heap_start), heap_start);
    op_set64(s, CTRL(free_bytes), 0);
    carve_free(s, heap_start + MSEG_GRANULE, heap_end, true, true);
}

/* Extends the heap to new_end inside the current operation: the old end
   marker becomes the header of new free space, merged with a free block
   before it. The caller has grown and mapped the segment first. Merged
   even when the two together exceed the largest block: carve_free cuts
   them into a largest block and the rest. Left apart, the new space alone
   was what seg_grow asked for less the free block's bytes, too small for
   the allocation it grew for (a block of 16 GiB - 16 after a free block
   of 10 GiB: "no free block", at every try, far below max_size). */
void heap_grow(mseg *s, uint64_t new_end)
{
    uint64_t end = op_get64(s, CTRL(heap_end));
    if (new_end <= end || new_end - end < MSEG_BLOCK_MIN)
        return;
    uint64_t p = end;
    bool prev_used = head_prev_used(head(s, end));
    if (!prev_used) {
        uint64_t psize = foot(s, end);
        if (psize >= MSEG_BLOCK_MIN && psize <= MSEG_BLOCK_MAX) {
            p = end - psize;
            prev_used = head_prev_used(head(s, p));
            list_remove(s, p, psize);
        }
    }
    carve_free(s, p, new_end, prev_used, false);
}

/* Bytes of the free block that ends the heap (0 if the last block is used):
   growth merges new space into it. */
uint64_t heap_tail_free(mseg *s)
{
    uint64_t end = op_get64(s, CTRL(heap_end));
    if (head_prev_used(head(s, end)))
        return 0;
    uint64_t psize = foot(s, end);
    return psize <= end ? psize : 0;
}

/* Gives back the free space at the end of the heap, but never below
   `floor` (a 16-aligned heap end): returns the new heap end. */
uint64_t heap_trim(mseg *s, uint64_t floor)
{
    uint64_t end = op_get64(s, CTRL(heap_end));
    if (head_prev_used(head(s, end)) || end <= floor)
        return end;
    uint64_t psize = foot(s, end);
    uint64_t p = end - psize;
    if (psize < MSEG_BLOCK_MIN || psize > end || head_size(head(s, p)) != psize)
        return end;
    uint64_t new_end = p < floor ? floor : p;
    if (new_end != p && new_end - p < MSEG_BLOCK_MIN)
        new_end = p + MSEG_BLOCK_MIN;
    /* worth it only if the file can lose a page. Not `end - new_end <
       MSEG_PAGE`: after an earlier shrink the heap may end up to a page
       short of the segment's end (the size is the heap end rounded up to a
       page), and then a cut of less than a page can still free the last
       one; refused, it left that page in the segment for good (the torture
       leak check saw it as 160 bytes "leaked" by an emptied segment) */
    uint64_t page_mask = MSEG_PAGE - 1;
    if (((new_end + page_mask) & ~page_mask) >= ((end + page_mask) & ~page_mask))
        return end;
    bool prev_used = head_prev_used(head(s, p));
    list_remove(s, p, psize);
    if (new_end > p)
        make_free(s, p, new_end - p, prev_used);
    set_head(s, new_end, make_head(0, new_end > p ? false : prev_used, true));
    op_set64(s, CTRL(heap_end), new_end);
    return new_end;
}

/* ---- the control page ---- */

/* The control page's roots are within the segment and fit together: checked
   when a segment is attached, so later operations start from sane roots
   (and op_get/op_set catch whatever a damaged list leads to). */
int heap_control_sane(mseg *s)
{
    const struct mseg_control *c = seg_control(s);
    uint64_t heap = c->heap_end - c->heap_start;
    if (c->heap_start != MSEG_HEAP_OFF || c->heap_end % MSEG_GRANULE || c->heap_end > s->size ||
        c->heap_end < c->heap_start + 2 * MSEG_BLOCK_MIN)
        return fail(EUCLEAN, "segment %s: control page: heap [%#llx, %#llx) does not fit "
                    "a segment of %llu bytes", s->name, (unsigned long long)c->heap_start,
                    (unsigned long long)c->heap_end, (unsigned long long)s->size);
    if (c->free_bytes > heap)
        return fail(EUCLEAN, "segment %s: control page: %llu free bytes in a heap of %llu",
                    s->name, (unsigned long long)c->free_bytes, (unsigned long long)heap);
    bool no_table = c->dir_table == 0 && c->dir_capacity == 0 && c->dir_used == 0 && c->dir_count == 0;
    bool table_ok = c->dir_capacity && !(c->dir_capacity & (c->dir_capacity - 1)) &&
                    c->dir_capacity <= heap / 16 && c->dir_table >= c->heap_start &&
                    c->dir_table <= c->heap_end - 16 * c->dir_capacity &&
                    c->dir_count <= c->dir_used && c->dir_used <= c->dir_capacity;
    if (!no_table && !table_ok)
        return fail(EUCLEAN, "segment %s: control page: directory table %#llx with %llu slots, "
                    "%llu used, %llu live is impossible", s->name, (unsigned long long)c->dir_table,
                    (unsigned long long)c->dir_capacity, (unsigned long long)c->dir_used,
                    (unsigned long long)c->dir_count);
    return 0;
}

/* ---- rebuilding the free lists ---- */

/*
 * The block headers' sizes and used bits are the truth; PREV_USED bits,
 * footers, links, bins, bitmap and free_bytes follow from them. An operation that never committed may have
 * written its new blocks in place over the links and footer of the free
 * block it carved them from, so recovery (and the discard of such an
 * operation) rebuilds all of those from a walk of the headers. Direct
 * stores: this runs under the lock with no operation open, and running it
 * twice gives the same result, so a crash in the middle is harmless.
 */
int heap_rebuild(mseg *s)
{
    struct mseg_control *c = seg_control(s);
    uint64_t start = c->heap_start, end = c->heap_end;
    if (start != MSEG_HEAP_OFF || end % MSEG_GRANULE || end > s->size || end - start < 2 * MSEG_BLOCK_MIN)
        return fail(EUCLEAN, "segment %s: control page holds an impossible heap [%#llx, %#llx)",
                    s->name, (unsigned long long)start, (unsigned long long)end);
    uint64_t tail[MSEG_BINS] = {0}, free_bytes = 0, p = start + MSEG_GRANULE;
    bool last_used = true;
    memset(c->bin_head, 0, sizeof c->bin_head);
    memset(c->bin_bitmap, 0, sizeof c->bin_bitmap);
    while (p < end) {
        uint32_t h = *(uint32_t *)(s->base + p - 4);
        uint64_t size = head_size(h);
        if (size < MSEG_BLOCK_MIN || size > end - p)
            return fail(EUCLEAN, "segment %s: block at %#llx has impossible size %llu",
                        s->name, (unsigned long long)p, (unsigned long long)size);
        if (head_prev_used(h) != last_used) {   /* a direct operation died before fixing it */
            h ^= MSEG_BLOCK_PREV_USED;
            *(uint32_t *)(s->base + p - 4) = h;
        }
        if (!head_used(h)) {
            unsigned b = heap_bin_of(size / MSEG_GRANULE);
            *(uint32_t *)(s->base + p + size - 8) = (uint32_t)(size / MSEG_GRANULE);
            *(uint64_t *)(s->base + p) = 0;
            *(uint64_t *)(s->base + p + 8) = tail[b];
            if (tail[b])
                *(uint64_t *)(s->base + tail[b]) = p;
            else
                c->bin_head[b] = p;
            c->bin_bitmap[b / 64] |= 1ull << (b % 64);
            tail[b] = p;
            free_bytes += size - 4;
        }
        last_used = head_used(h);
        p += size;
    }
    if (p != end)
        return fail(EUCLEAN, "segment %s: blocks overrun the heap end", s->name);
    /* the end marker too: an uncommitted growth may have carved a block
       across it and written that block's contents over it */
    *(uint32_t *)(s->base + end - 4) = make_head(0, last_used, true);
    c->free_bytes = free_bytes;
    return 0;
}

/* ---- allocation ---- */

/* Block size for an n-byte request: header plus payload, in granules. */
static uint64_t block_size_for(uint64_t n)
{
    if (n > MSEG_BLOCK_MAX - 4)
        return 0;
    uint64_t size = (n + 4 + MSEG_GRANULE - 1) & ~(uint64_t)(MSEG_GRANULE - 1);
    return size < MSEG_BLOCK_MIN ? MSEG_BLOCK_MIN : size;
}

/* A free block of at least `size` bytes, still in its list; 0 if none. */
static uint64_t find_block(mseg *s, uint64_t size)
{
    uint64_t g = size / MSEG_GRANULE;
    unsigned exact = heap_bin_of(g);
    uint64_t p = op_get64(s, bin_head_off(exact));
    if (p && head_size(head(s, p)) >= size)         /* good fit, cheap to try */
        return p;
    unsigned b = bin_find(s, bin_at_least(g));
    if (b >= MSEG_BINS)
        return 0;
    return op_get64(s, bin_head_off(b));
}

/* The free block p (size bytes, in bin b) gives its first `need` bytes to
   an allocation and keeps the rest, which falls in the same bin: the rest
   takes p's place in its list, so no bitmap bit and no other list changes
   (carving from a large block, the common case, costs a few stores instead
   of an unlink and a link). Stores derived state (links, footer,
   free_bytes) and a header inside p's payload, which no walk of the
   headers reaches: heap_alloc's store of p's header still decides. */
static void split_in_place(mseg *s, uint64_t p, uint64_t size, uint64_t need, unsigned b)
{
    uint64_t rest = p + need, rest_size = size - need;
    uint64_t next = link_next(s, p), prev = link_prev(s, p);
    set_head(s, rest, make_head(rest_size, true, false));
    set_foot(s, rest, rest_size);
    set_next(s, rest, next);
    set_prev(s, rest, prev);
    relink_neighbours(s, b, prev, next, rest, rest);
    add_free_bytes(s, -(int64_t)need);
}

/* Splits the free block p (not in any list) so its payload is aligned;
   returns the aligned block, whose new size is stored in *size. */
static uint64_t split_front(mseg *s, uint64_t p, uint64_t *size, uint64_t align, bool *prev_used)
{
    if (p % align == 0)
        return p;
    uint64_t q = (p + MSEG_BLOCK_MIN + align - 1) & ~(align - 1);
    uint64_t front = q - p;
    make_free(s, p, front, *prev_used);
    *prev_used = false;
    *size -= front;
    return q;
}

/* grow_error: errno of the growth heap_alloc tried, 0 if none */
static uint64_t no_room(mseg *s, uint64_t n, int grow_error)
{
    if (grow_error && grow_error != ENOMEM && !op_bad_access()) {
        errno = grow_error;   /* growth failed for want of disk (ENOSPC), a file size */
        return 0;             /* limit (EFBIG), a failed fsync (EIO): seg_grow said so */
    }
    if (op_bad_access())
        return fail(EUCLEAN, "segment %s: damaged free lists (an offset outside the heap)",
                    s->name), 0;
    if (grow_error) {   /* ENOMEM: seg_grow's message says why it could not grow */
        char why[256];
        snprintf(why, sizeof why, "%s", mseg_errmsg());
        return fail(ENOMEM, "segment %s: no free block for %llu bytes, and %s", s->name,
                    (unsigned long long)n, why), 0;
    }
    return fail(ENOMEM, "segment %s: no free block for %llu bytes", s->name,
                (unsigned long long)n), 0;
}

/* Called before the lock: starts loading the block an allocation of n
   bytes most likely takes (find_block's first try, the head of the exact
   bin), so that cache miss overlaps with taking the lock. A racy read of
   shared memory, hence atomic; the value is only prefetched (which never
   faults), never followed, and find_block reads it again under the lock.
   A damaged or torn head may hold anything: the address is formed only
   when it lies inside the mapping (pointer arithmetic past it is undefined;
   the fuzzer found it). */
void heap_alloc_prefetch(mseg *s, uint64_t n)
{
    uint64_t need = block_size_for(n);
    if (need == 0 || need > MSEG_BLOCK_MAX)
        return;
    const uint64_t *first = (const uint64_t *)(s->base + bin_head_off(heap_bin_of(need / MSEG_GRANULE)));
    uint64_t p = __atomic_load_n(first, __ATOMIC_RELAXED);
    if (p >= MSEG_HEAP_OFF && p < s->size)
        __builtin_prefetch(s->base + p - 4, 0);
}

/*
 * Allocates a block of n bytes. The order of the stores matters to a direct
 * operation (log.c: stores in place, no log): every store before the last
 * one is either derived state (lists, footers, PREV_USED) or a header inside
 * the free block's payload, which no walk of the headers reaches; the last,
 * the block's own header, decides (a walk sees the free block, or the used
 * block and the remainder). Alignment above a granule splits in front of
 * the block first, so it is never direct (segment.c).
 */
uint64_t heap_alloc(mseg *s, uint64_t n, uint64_t align)
{
    uint64_t need = block_size_for(n);
    uint64_t search = align > MSEG_GRANULE ? need + align + MSEG_BLOCK_MIN : need;
    if (need == 0 || search > MSEG_BLOCK_MAX)
        return fail(ENOMEM, "segment %s: no block holds %llu bytes%s: the largest allocation is %llu bytes",
                    s->name, (unsigned long long)n, align > MSEG_GRANULE ? " at that alignment" : "",
                    (unsigned long long)(MSEG_BLOCK_MAX - 4)), 0;
    uint64_t p = find_block(s, search);
    if (!p && s->op.direct)
        op_direct_off(s);   /* growth is logged; nothing was stored yet */
    int grow_error = 0;
    if (!p && !op_bad_access()) {
        if (seg_grow(s, search) == 0)
            p = find_block(s, search);
        else
            grow_error = errno;
    }
    if (!p || op_bad_access())
        return no_room(s, n, grow_error);
    s->op.allocated++;
    uint32_t h = head(s, p);
    uint64_t size = head_size(h);
    bool prev_used = head_prev_used(h);
    /* (The block's contents get written in place over its links and
       footer, which the committed state still holds: a rollback rebuilds
       the free lists.) */
    unsigned bin = heap_bin_of(size / MSEG_GRANULE);   /* its list's, as list_remove finds it */
    if (align <= MSEG_GRANULE && size - need >= MSEG_BLOCK_MIN &&
        heap_bin_of((size - need) / MSEG_GRANULE) == bin) {
        split_in_place(s, p, size, need, bin);
        size = need;
    } else {
        list_remove(s, p, size);
        if (align > MSEG_GRANULE)
            p = split_front(s, p, &size, align, &prev_used);
        if (size - need >= MSEG_BLOCK_MIN) {
            make_free(s, p + need, size - need, true);
            size = need;
        } else {
            mark_prev_used(s, p + size, true);
        }
    }
    set_head(s, p, make_head(size, prev_used, true));
    if (op_bad_access() || p + size > s->size)
        return no_room(s, n, 0);
    op_claim(s, p, size - 4);
    /* A logged operation can hand out a block whose first bytes no free
       block's links ever overwrote: an aligned block starts inside the free
       block (split_front), and a block carved where this operation's own
       split left a remainder has just lost those links' records (op_claim).
       Such bytes may be an old container's root, kept when its block merged
       into the free block before it: magic, ANON flag and owner word, which
       the check then took for a live container whose owning map lost its
       flag (a false report), and an old handle for a live vector. Clear the
       magic in place, as the caller's fresh contents are written (a rollback
       rebuilds the lists). A direct operation's block starts where links
       were stored in place. */
    if (!s->op.direct)
        *(uint32_t *)(s->base + p) = 0;
    return p;
}

/* Grows the used block p in place to hold n bytes by taking the front of
   the free block right after it, inside the current operation; false, with
   nothing changed, when that block is used or too small. The bytes gained
   were a free block's (links, footer): only free-list records reach them,
   so they count as carved (a rollback rebuilds the lists) and this
   operation's pending records inside them are dropped, as heap_alloc does. */
bool heap_expand(mseg *s, uint64_t p, uint64_t n)
{
    if (s->op.direct)
        return false;   /* logged operations only: its stores are not ordered for direct ones */
    uint64_t need = block_size_for(n);
    uint32_t h = head(s, p);
    uint64_t size = head_size(h);
    if (need == 0 || !head_used(h) || (s->op.ndeferred && deferred_has(s, p)))
        return false;
    if (need <= size)
        return true;
    uint64_t q = p + size;
    uint32_t qh = head(s, q);
    uint64_t qsize = head_size(qh);
    if (head_used(qh) || qsize < MSEG_BLOCK_MIN || qsize < need - size || op_bad_access())
        return false;
    list_remove(s, q, qsize);
    s->op.allocated++;
    uint64_t total = size + qsize;
    if (total - need >= MSEG_BLOCK_MIN) {
        make_free(s, p + need, total - need, true);
        total = need;
    } else {
        mark_prev_used(s, p + total, true);
    }
    set_head(s, p, make_head(total, head_prev_used(h), true));
    op_claim(s, q - 4, total - size);
    return true;
}

/* ---- freeing ---- */

static MSEG_TLS const uint64_t *walk_marks;
static MSEG_TLS uint64_t walk_start, walk_end;

void heap_set_walk_marks(const uint64_t *marks, uint64_t heap_start, uint64_t heap_end)
{
    walk_marks = marks;
    walk_start = heap_start;
    walk_end = heap_end;
}

/* p (16-aligned, inside the heap) is a block the checker's walk found used,
   or no check is running. */
static bool walk_found(uint64_t p)
{
    if (__builtin_expect(walk_marks == NULL, 1))
        return true;
    if (p < walk_start || p >= walk_end)
        return false;
    uint64_t g = (p - walk_start) / MSEG_GRANULE;
    return walk_marks[g / 64] >> (g % 64) & 1;
}

/* True when p is the payload of a used block, as far as O(1) checks can
   tell: aligned, inside the heap, a used header whose size stays inside the
   heap, a next block that records this one as used, and (if the previous
   block is free) a footer leading back to a matching free header. */
bool heap_block_is_live(mseg *s, uint64_t p)
{
    uint64_t start = op_get64(s, CTRL(heap_start));
    uint64_t end = op_get64(s, CTRL(heap_end));
    /* end past this process's mapping: a growth it was never told of */
    if (p % MSEG_GRANULE || p < start + MSEG_GRANULE || p >= end || end > s->size)
        return false;
    uint32_t h = head(s, p);
    uint64_t size = head_size(h);
    if (!head_used(h) || size < MSEG_BLOCK_MIN || size > end - p || !walk_found(p))
        return false;
    if (!head_prev_used(head(s, p + size)))
        return false;
    if (head_prev_used(h))
        return true;
    if (!op_owned(s))
        return true;   /* a lock-free reader: footers may be changing under it */
    uint64_t fsize = foot(s, p);
    if (fsize < MSEG_BLOCK_MIN || fsize > p - start - MSEG_GRANULE)
        return false;
    uint32_t ph = head(s, p - fsize);
    return !head_used(ph) && head_size(ph) == fsize;
}

/* The cheap half of heap_block_is_live, for lookups that only need to know
   p's block lies inside the heap (aligned, a used header, a sane size):
   the block's payload bytes if so, else 0. */
uint64_t heap_block_room(mseg *s, uint64_t p)
{
    uint64_t start = op_get64(s, CTRL(heap_start));
    uint64_t end = op_get64(s, CTRL(heap_end));
    if (p % MSEG_GRANULE || p < start + MSEG_GRANULE || p >= end || end > s->size)
        return 0;
    uint32_t h = head(s, p);
    uint64_t size = head_size(h);
    bool sound = head_used(h) && size >= MSEG_BLOCK_MIN && size <= end - p && walk_found(p);
    return sound ? size - 4 : 0;
}

uint64_t heap_block_size(mseg *s, uint64_t p)
{
    return head_size(head(s, p));
}

/* Frees p now: merges it with free neighbours and lists it. For a direct
   operation, one header store decides: p's (freed, or merged with the next
   block) or the previous free block's (grown over p); the rest is derived. */
static void release_span(mseg *s, uint64_t p, uint64_t size);

static void heap_release(mseg *s, uint64_t p)
{
    release_span(s, p, head_size(head(s, p)));
}

/* Frees [p, p + size): the used block p and the used blocks that follow it
   up to there, as one free block (their headers are left inside it). */
static void release_span(mseg *s, uint64_t p, uint64_t size)
{
    uint32_t h = head(s, p);
    bool prev_used = head_prev_used(h);

    uint64_t next = p + size;
    uint32_t nh = head(s, next);
    if (!head_used(nh) && size + head_size(nh) <= MSEG_BLOCK_MAX) {
        list_remove(s, next, head_size(nh));
        size += head_size(nh);
    }
    if (!prev_used) {
        uint64_t psize = foot(s, p);
        if (size + psize <= MSEG_BLOCK_MAX) {
            uint64_t prev = p - psize;
            prev_used = head_prev_used(head(s, prev));
            list_remove(s, prev, psize);
            p = prev;
            size += psize;
        }
    }
    make_free(s, p, size, prev_used);
    mark_prev_used(s, p + size, false);
}

/*
 * Frees p when the operation commits, as libpmemobj defers frees to the end
 * of a transaction: until then p's bytes may still be reachable from the
 * committed state (a directory table being replaced, an object being
 * destroyed), and an allocation later in the same operation must not hand
 * them out and overwrite them in place.
 */
int heap_free(mseg *s, uint64_t p)
{
    if (!heap_block_is_live(s, p) || (s->op.ndeferred && deferred_has(s, p)))
        return fail(EINVAL, "segment %s: %#llx is not the start of a live block",
                    s->name, (unsigned long long)p);
    if (s->op.direct) {   /* mseg_free on its own: nothing else can reach p */
        heap_release(s, p);
        return 0;
    }
    return deferred_add(s, p);
}

/* Log records one release can need (list moves, headers, footer, counter). */
#define RECORDS_PER_FREE 14u
#define GARBAGE_BATCH ((MSEG_LOG_CAPACITY - 64) / RECORDS_PER_FREE)

/*
 * Releases the blocks this operation freed, at commit. When they are too
 * many for one log (destroying a large container), they are not released
 * here: their offsets go into a fresh array block recorded as the segment's
 * garbage, committed with the operation (so the destroy is atomic: the
 * container is gone, its blocks are owed), and heap_drain_garbage frees them
 * in batches, each batch an operation of its own. 0, or -1 with ENOMEM.
 */
static int cmp_off(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The run of adjacent blocks d[i..end) of the sorted list d, within the
   largest block size: returns end, *size their bytes. */
static uint32_t span_end(mseg *s, const uint64_t *d, uint32_t n, uint32_t i, uint64_t *size)
{
    uint32_t j = i + 1;
    *size = heap_block_size(s, d[i]);
    for (; j < n && d[j - 1] + heap_block_size(s, d[j - 1]) == d[j] &&
           *size + heap_block_size(s, d[j]) <= MSEG_BLOCK_MAX; j++)
        *size += heap_block_size(s, d[j]);
    return j;
}

/*
 * No block for the garbage array: the segment is full, which is when a
 * program deletes something to make room, and a destroy of a large
 * container failed with ENOMEM for ever (it could free nothing without
 * first allocating). The blocks of a container mostly lie next to each
 * other, so the n blocks on the list, sorted, are released as runs of
 * adjacent blocks, one release each, when the log holds that many.
 * 0, or -1 with errno from the failed allocation (ENOMEM, ENOSPC...).
 */
static int release_in_spans(mseg *s, uint32_t n)
{
    /* a growable segment whose file system (or quota, or file size limit)
       is full is as full as one at its max_size: a destroy that freed room
       there failed with ENOSPC every time */
    if (!room_ran_out(errno) || op_bad_access())
        return -1;
    uint64_t *d = s->op.deferred;
    qsort(d, n, sizeof *d, cmp_off);
    uint64_t spans = 0, size;
    for (uint32_t i = 0; i < n; i = span_end(s, d, n, i, &size))
        spans++;
    if (spans * RECORDS_PER_FREE + 64 > op_records_left(s))   /* the message named only the list */
        return fail(errno, "segment %s: the operation (or transaction) frees too many blocks (%u, in %llu separate runs) "
                    "for one log, and there is no room (%s) for the %llu-byte list that would free them "
                    "later; nothing was changed: free other memory first, or delete in smaller parts",
                    s->name, n, (unsigned long long)spans, strerror(errno), 8ull * n);
    for (uint32_t i = 0, j; i < n; i = j) {
        j = span_end(s, d, n, i, &size);
        release_span(s, d[i], size);
    }
    return 0;
}

int heap_free_deferred(mseg *s)
{
    uint32_t n = s->op.ndeferred;
    if (n == 0)
        return 0;
    /* the room that is really left: a transaction's undo records (mseg_tx_add)
       and a durable commit's slot share the log (without them, a transaction
       with 48 KiB of undo and 250 frees overflowed it: ENOMEM, rolled back) */
    if ((uint64_t)n * RECORDS_PER_FREE + 64 <= op_records_left(s) || op_get64(s, CTRL(garbage)) != 0) {
        for (uint32_t i = 0; i < n; i++)
            heap_release(s, s->op.deferred[i]);
        s->op.ndeferred = 0;
        return 0;
    }
    s->op.ndeferred = 0;                 /* no deferral of the array itself */
    uint64_t g = heap_alloc(s, 8ull * n, MSEG_GRANULE);
    if (!g)
        return release_in_spans(s, n);
    memcpy(s->base + g, s->op.deferred, 8ull * n);
    op_fresh(s, g, 8ull * n);
    op_set64(s, CTRL(garbage), g);
    op_set64(s, CTRL(garbage_count), n);
    op_set64(s, CTRL(garbage_done), 0);
    return 0;
}

bool heap_has_garbage(mseg *s)
{
    return seg_control(s)->garbage != 0;
}

/* One batch of garbage, inside the current operation. */
static void drain_batch(mseg *s)
{
    uint64_t g = op_get64(s, CTRL(garbage));
    uint64_t n = op_get64(s, CTRL(garbage_count)), done = op_get64(s, CTRL(garbage_done));
    /* the array's block was allocated for exactly n entries (heap_free_deferred),
       so it holds a few more at most: a damaged garbage offset naming some
       larger live block (a vector's buffer) would have it freed at the end
       of the drain, under its owner. Such a list is dropped, as other
       insane ones are (its owed blocks, if any, leak) */
    uint64_t room = heap_block_is_live(s, g) ? (heap_block_size(s, g) - 4) / 8 : 0;
    bool sane = room && n <= room && room - n <= (MSEG_BLOCK_MIN + 2 * MSEG_GRANULE) / 8 && done <= n;
    uint64_t end = sane ? (done + GARBAGE_BATCH < n ? done + GARBAGE_BATCH : n) : n;
    for (uint64_t i = done; sane && i < end; i++) {
        uint64_t p = *(const uint64_t *)(s->base + g + 8 * i);
        if (heap_block_is_live(s, p))   /* a damaged entry is skipped, not followed */
            heap_release(s, p);
    }
    if (sane && end < n) {
        op_set64(s, CTRL(garbage_done), end);
        return;
    }
    if (sane)
        heap_release(s, g);
    op_set64(s, CTRL(garbage), 0);
    op_set64(s, CTRL(garbage_count), 0);
    op_set64(s, CTRL(garbage_done), 0);
}

int heap_drain_garbage(mseg *s)
{
    for (unsigned rounds = 0; heap_has_garbage(s); rounds++) {
        if (rounds > (1u << 26))
            return fail(EUCLEAN, "segment %s: the garbage list does not shrink", s->name);
        op_begin(s);
        drain_batch(s);
        if (op_commit(s))
            return -1;
    }
    return 0;
}

/* The garbage another process left (it died between two batches, or a
   power loss stopped it), freed by the first opener or by the next to take
   the lock from it. Nothing else marks these batches as this handle's
   changes, and the segment may be a durable one whose writers count on its
   disk: so they commit as durable operations whatever the handle, and the
   slots are settled after the last. Without, a handle without MSEG_DURABLE
   left them in the page cache, and a power loss after its clean close
   could find "clean" over half-written batches. */
int heap_drain_garbage_durably(mseg *s)
{
    if (!heap_has_garbage(s))
        return 0;
    s->op.durable_drain = true;
    int rc = heap_drain_garbage(s);
    s->op.durable_drain = false;
    return rc ? rc : log_settle(s);
}
