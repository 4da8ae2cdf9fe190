/*
 * deferred.c - the blocks an operation has freed, to be released at commit.
 *
 * heap_free appends to s->op.deferred and asks, for every block it frees,
 * whether the operation already freed it (a double free inside one
 * operation, e.g. a damaged container reaching a block twice). With a scan
 * of the list that question made a large free quadratic, all under the
 * segment lock: destroying a map of 200,000 entries took 13 s. Past
 * INDEX_FROM entries the list gets an index, an open-addressing hash set in
 * process memory.
 *
 * The list shrinks without telling the index: a failed call inside a
 * transaction cuts it back to its savepoint (lock.c), and every operation
 * ends by emptying it (log.c). So the index holds (block, position) pairs
 * and trusts one only if that position still holds that block; and it
 * records how many leading entries it has seen (`indexed`), lowered to the
 * list's length before each append and whenever the list is found shorter. At most one slot per block: re-freeing a block at
 * a new position overwrites the old pair.
 */
#include <stdlib.h>

#include "internal.h"

#define INDEX_FROM 32u     /* a scan of fewer entries is as quick as a hash */

struct deferred_index {
    uint64_t *block;       /* 0 = empty slot (no block starts at offset 0) */
    uint32_t *pos;
    uint32_t cap;          /* a power of two */
    uint32_t used;         /* slots taken, stale ones included */
    uint32_t indexed;      /* deferred[0, indexed) are in the index */
};

static uint32_t slot_of(uint64_t p, uint32_t cap)
{
    return (uint32_t)((p * 0x9e3779b97f4a7c15ull) >> 32) & (cap - 1);
}

/* The slot holding p, or the empty slot where it would go. */
static uint32_t probe(const struct deferred_index *x, uint64_t p)
{
    uint32_t i = slot_of(p, x->cap);
    while (x->block[i] && x->block[i] != p)
        i = (i + 1) & (x->cap - 1);
    return i;
}

static void put(struct deferred_index *x, uint64_t p, uint32_t at)
{
    uint32_t i = probe(x, p);
    if (!x->block[i])
        x->used++;
    x->block[i] = p;
    x->pos[i] = at;
}

/* A fresh index of deferred[0, n), big enough to stay under half full;
   stale pairs are dropped. -1 when out of memory (the caller scans). */
static int rebuild(mseg *s, struct deferred_index *x, uint32_t n)
{
    uint32_t cap = 64;
    while (cap < 4ull * n)
        cap *= 2;
    uint64_t *block = calloc(cap, sizeof *block);
    uint32_t *pos = malloc(cap * sizeof *pos);
    if (!block || !pos) {
        free(block);
        free(pos);
        return -1;
    }
    free(x->block);
    free(x->pos);
    *x = (struct deferred_index){ .block = block, .pos = pos, .cap = cap };
    for (uint32_t i = 0; i < n; i++)
        put(x, s->op.deferred[i], i);
    x->indexed = n;
    return 0;
}

/* Brings the index up to the list's current length. */
static int catch_up(mseg *s, struct deferred_index *x)
{
    uint32_t n = s->op.ndeferred;
    if (x->indexed > n)
        x->indexed = n;                 /* the list was cut back */
    if (!x->block || 2ull * (x->used + (n - x->indexed)) > x->cap)
        return rebuild(s, x, n);
    for (; x->indexed < n; x->indexed++)
        put(x, s->op.deferred[x->indexed], x->indexed);
    return 0;
}

static bool scan(const mseg *s, uint64_t p)
{
    for (uint32_t i = 0; i < s->op.ndeferred; i++)
        if (s->op.deferred[i] == p)
            return true;
    return false;
}

bool deferred_has(mseg *s, uint64_t p)
{
    if (s->op.ndeferred < INDEX_FROM)
        return scan(s, p);
    if (!s->op.deferred_index && !(s->op.deferred_index = calloc(1, sizeof *s->op.deferred_index)))
        return scan(s, p);
    struct deferred_index *x = s->op.deferred_index;
    if (catch_up(s, x))
        return scan(s, p);
    uint32_t i = probe(x, p);
    return x->block[i] == p && x->pos[i] < s->op.ndeferred && s->op.deferred[x->pos[i]] == p;
}

bool deleted_in_this_tx(mseg *s, uint64_t root, uint32_t magic)
{
    /* tx_owns first: only this thread's transaction may be looked at (a
       lock-free reader must not read another thread's list). Holding the
       lock, memory is the committed state: a named root whose magic is
       there but not in the transaction's view was cleared by a destroy
       in it (its block is its record's, on the list under that offset);
       an anonymous root's own block is on the deferred-free list. */
    if (!tx_owns(s))
        return false;
    if (op_peek32(s, root) == 0 && *(const uint32_t *)(s->base + root) == magic)
        return true;
    return s->op.ndeferred && deferred_has(s, root);
}

int deferred_add(mseg *s, uint64_t p)
{
    /* the entry at ndeferred is about to change: the index must not count
       it, or any after it, as seen (the list may have been cut back) */
    struct deferred_index *x = s->op.deferred_index;
    if (x && x->indexed > s->op.ndeferred)
        x->indexed = s->op.ndeferred;
    if (s->op.ndeferred == s->op.cap_deferred) {
        uint32_t cap = s->op.cap_deferred ? 2 * s->op.cap_deferred : 16;
        uint64_t *d = realloc(s->op.deferred, cap * sizeof *d);
        if (!d)
            return fail(ENOMEM, "segment %s: out of process memory for the blocks an operation frees", s->name);
        s->op.deferred = d;
        s->op.cap_deferred = cap;
    }
    s->op.deferred[s->op.ndeferred++] = p;
    return 0;
}

void deferred_release_memory(mseg *s)
{
    struct deferred_index *x = s->op.deferred_index;
    if (x) {
        free(x->block);
        free(x->pos);
        free(x);
    }
    free(s->op.deferred);
    s->op.deferred_index = NULL;
    s->op.deferred = NULL;
}
