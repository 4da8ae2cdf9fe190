/*
 * blockset.c - the check's record of which structure owns each heap block.
 *
 * A heap block that two structures own is damage: deleting one frees it and
 * the other then reads or frees it again. The check (check.c, vector.c,
 * map.c) adds every block the engine's structures own (a delete would free
 * it) to one set for the whole check, with the structure that owns it; the
 * second owner of a block is reported with the first. Links that own
 * nothing (a leaf's prev and next) are not added.
 *
 * Two forms of one set:
 *   - a table of (block, owner) pairs, open addressing with linear probing,
 *     at most half full (0 is never a block); sized once from the number of
 *     used blocks when that is known, so a sound segment never rehashes.
 *     16 bytes a slot, one cache miss per block: on a map of 2M byte keys
 *     it made the check 6 times slower (75 ms -> 470 ms);
 *   - dense, for a whole-segment check: one bit per granule of the heap
 *     (1/128 of it, as the walk's marks), so no owner is known. A second
 *     owner is then reported as such (blockset_dups counts them) and
 *     check_segment runs again with the table to name the first owner:
 *     the cost of names is paid only by a damaged segment.
 * Offsets outside the dense range (damage) go to the table in both forms.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

static size_t slot_of(uint64_t block, size_t cap)
{
    return (size_t)((block * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

/* Moves the table to cap slots (a power of two); -1 if there is no memory. */
static int blockset_resize(struct blockset *t, size_t cap)
{
    uint64_t *v = calloc(cap, 2 * sizeof *v);
    if (!v)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->v[2 * i])
            continue;
        size_t j = slot_of(t->v[2 * i], cap);
        while (v[2 * j])
            j = (j + 1) & (cap - 1);
        v[2 * j] = t->v[2 * i];
        v[2 * j + 1] = t->v[2 * i + 1];
    }
    free(t->v);
    t->v = v;
    t->cap = cap;
    return 0;
}

void blockset_init(struct blockset *t, uint64_t expect)
{
    *t = (struct blockset){ .v = NULL };
    size_t cap = 64;
    while (cap / 2 < expect && cap < SIZE_MAX / 64)
        cap *= 2;
    if (expect && blockset_resize(t, cap))
        t->off = true;
}

bool blockset_init_dense(struct blockset *t, uint64_t lo, uint64_t hi)
{
    *t = (struct blockset){ .lo = lo, .hi = hi };
    t->bits = calloc((hi - lo) / MSEG_GRANULE / 64 + 1, sizeof *t->bits);
    return t->bits != NULL;
}

int blockset_add(struct blockset *t, uint64_t block, uint64_t owner, uint64_t *first)
{
    if (t->bits && block >= t->lo && block < t->hi && block % MSEG_GRANULE == 0) {
        uint64_t g = (block - t->lo) / MSEG_GRANULE, bit = 1ull << (g % 64);
        if (!(t->bits[g / 64] & bit)) {
            t->bits[g / 64] |= bit;
            return 0;
        }
        t->dups++;
        *first = 0;             /* not known: see above */
        return 1;
    }
    if (t->off)
        return -1;
    if (2 * (t->n + 1) > t->cap && blockset_resize(t, t->cap ? 2 * t->cap : 64)) {
        /* no memory: every later answer would be a guess */
        blockset_free(t);
        t->off = true;
        return -1;
    }
    size_t j = slot_of(block, t->cap);
    for (; t->v[2 * j]; j = (j + 1) & (t->cap - 1)) {
        if (t->v[2 * j] == block) {
            *first = t->v[2 * j + 1];
            return 1;
        }
    }
    t->v[2 * j] = block;
    t->v[2 * j + 1] = owner;
    t->n++;
    return 0;
}

void blockset_free(struct blockset *t)
{
    free(t->v);
    free(t->bits);
    t->v = t->bits = NULL;
    t->n = t->cap = 0;
}

static void owner_name(char *buf, size_t len, uint64_t owner)
{
    uint64_t at = owner & ~(uint64_t)BLOCK_OWNER_KIND;
    switch (owner & BLOCK_OWNER_KIND) {
    case 0:
        snprintf(buf, len, "another structure");
        break;
    case BLOCK_BY_VECTOR:
        snprintf(buf, len, "vector at %#llx", (unsigned long long)at);
        break;
    case BLOCK_BY_MAP:
        snprintf(buf, len, "map at %#llx", (unsigned long long)at);
        break;
    case BLOCK_BY_DIRECTORY:
        snprintf(buf, len, at ? "directory slot at %#llx" : "the directory", (unsigned long long)at);
        break;
    case BLOCK_BY_GARBAGE:
        snprintf(buf, len, at ? "garbage array at %#llx" : "the garbage list", (unsigned long long)at);
        break;
    default:
        snprintf(buf, len, "a structure at %#llx", (unsigned long long)at);
        break;
    }
}

void blockset_describe(char *why, size_t whylen, uint64_t block, uint64_t first, uint64_t second)
{
    char a[64], b[64];
    owner_name(a, sizeof a, first);
    owner_name(b, sizeof b, second);
    snprintf(why, whylen, "block %#llx is referenced twice: by %s and by %s", (unsigned long long)block, a, b);
}

int blockset_own(struct blockset *t, uint64_t block, uint64_t owner, char *why, size_t whylen)
{
    uint64_t first;
    if (!t || blockset_add(t, block, owner, &first) != 1)
        return 0;
    blockset_describe(why, whylen, block, first, owner);
    errno = EUCLEAN;
    return -1;
}
