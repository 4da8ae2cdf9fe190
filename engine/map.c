/*
 * map.c - mseg_map: an ordered map in the segment, a B+tree.
 *
 * Why a B+tree and not a binary tree (red-black, AVL, as Boost.Interprocess
 * uses): a lookup in a binary tree of a million keys touches ~20 nodes, each
 * a cache miss in a separate heap block; a B+tree node holds 64 keys in
 * contiguous memory, so the same lookup touches 4 nodes and does its
 * comparisons in cache lines it has already loaded. Iteration walks leaves
 * in order through sibling links, reading keys and values sequentially
 * instead of chasing parent pointers. Each entry costs 16 bytes in a node
 * (key word, value word) plus a byte of order, against a block header and
 * three pointers per entry in a binary tree. And the structure suits the
 * intent log: an insert changes one leaf (and, once in 32 inserts, a parent),
 * not a rebalancing path of rotations.
 *
 * Format: see layout.h ("Maps"). A root (kind, val_size, count, root node,
 * height); nodes of 64 slots with a key word and a value word each, and two
 * order arrays (perm). Keys: u64 and i64 in the key word; byte strings in a
 * cell (a heap block: length, bytes) whose offset is the key word. Values of
 * at most 8 bytes (fixed size) live in the value word; larger or variable
 * values in a cell. Compare: u64 unsigned, i64 signed, bytes memcmp then
 * length.
 *
 * How an operation changes a node (the point of the format): slots and
 * perm arrays are never logged. A change computes the node's new entry list
 * in key order; entries it keeps stay in their slots; new entries (an
 * insert, or a replaced value, which also takes a new slot) are written
 * in place into slots that neither the committed state (the node's state word
 * as stored in memory) nor the kept entries use; the new order is written in
 * place into the perm array the committed state does not use; then one
 * logged store of the state word (count, which perm is live) publishes it
 * all. So an insert into a leaf with room logs two records (the leaf's state
 * and the map's count) however large the node, and everything a committed
 * state reaches stays untouched until commit: a crash leaves the old map or
 * the new one. Inside a transaction the same rule holds across calls, as the
 * committed state is read from memory, not through the operation's view.
 *
 * When a node has no such room (full, or in a transaction whose earlier calls
 * used its spare slots), the change goes to fresh nodes: a split keeps one
 * half in place when it can and builds the other half in a new node; a node
 * that cannot take the change at all is copied into a new node. The parent
 * then gets one change (a replaced child pointer and/or a new separator),
 * which may cascade up to a new root. Leaves are linked both ways so cursors
 * walk them in order and a split or removal relinks its neighbours with
 * logged stores.
 *
 * Deletes remove the entry from its leaf; a leaf (or internal node) that
 * becomes empty is unlinked and freed, and a root with a single child is
 * replaced by it. Nodes are not merged or rebalanced when merely sparse:
 * this keeps every delete to a bounded, small number of log records, at the
 * price of lower fill after heavy deletion (a node is never empty, though).
 *
 * Reading: every node offset is range-checked and its magic and level
 * verified before use; every loop is bounded by the fan-out or the height;
 * cells are range-checked. A damaged map is an EUCLEAN error. Write paths
 * also check that the nodes they change are live heap blocks (the leaf in
 * descend, other nodes in node_apply).
 *
 * Fast paths (same format, same records): a put into a leaf with a free slot
 * changes the leaf directly (leaf_put_in_place) instead of rebuilding its
 * entry list; mseg_map_next steps within a leaf, or to the next one, under
 * one optimistic read of the sequence lock (cursor_step_fast), for integer
 * keys with inline values.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define NODE(field)  offsetof(struct mseg_map_node, field)
#define MROOT(field) offsetof(struct mseg_map_root, field)
#define FAN          MSEG_MAP_FANOUT
#define MAXH         MSEG_MAP_MAX_HEIGHT
#define NODE_BYTES   sizeof(struct mseg_map_node)
#define CELL_HEAD    MSEG_MAP_CELL_HEAD
#define KEY_MAX      (1u << 20)              /* longest byte key */
#define NEST_MAX     16u                     /* owned containers nest at most this deep */

static unsigned st_count(uint64_t st)              { return (unsigned)(st & 0xff); }
static unsigned st_live(uint64_t st)               { return (unsigned)((st >> 8) & 1); }
static uint64_t make_state(unsigned n, unsigned l) { return (uint64_t)n | ((uint64_t)l << 8); }

/* The map's root as the current operation sees it. */
struct map_view {
    uint64_t off;
    unsigned kind;               /* enum mseg_key */
    unsigned flags;              /* MSEG_MAP_* */
    uint64_t val_size, count, root, height;
    uint64_t changes;            /* see layout.h: what cursors check */
};

/* A key being looked for. */
struct mkey {
    uint64_t u;                  /* u64 and i64 keys */
    const uint8_t *p;            /* byte keys */
    size_t len;
};

/* One entry of a node, in key order; slot >= 0: unchanged in that slot. */
struct ent {
    uint64_t kw, vw;
    int slot;
};

/* The nodes from the root down to a leaf, and the order index followed in each. */
struct path {
    uint64_t node[MAXH];
    unsigned pos[MAXH];
};

static struct mseg_map_node *node_at(mseg *s, uint64_t n) { return (struct mseg_map_node *)(s->base + n); }
static uint64_t node_state(mseg *s, uint64_t n)           { return op_peek64(s, n + NODE(state)); }
static uint64_t node_prev(mseg *s, uint64_t n)            { return op_peek64(s, n + NODE(prev)); }
static uint64_t node_next(mseg *s, uint64_t n)            { return op_peek64(s, n + NODE(next)); }
static bool val_inline(const struct map_view *m)          { return m->val_size && m->val_size <= MSEG_MAP_INLINE_MAX; }

/* ---- cells: keys and values out of line ---- */

/* A new cell holding len bytes of p (fresh); 0 with ENOMEM. */
static uint64_t cell_new(mseg *s, const void *p, size_t len)
{
    uint64_t c = heap_alloc(s, CELL_HEAD + (uint64_t)len, MSEG_GRANULE);
    if (!c)
        return fail_no_room("segment %s: no room for a %zu-byte map key or value", s->name, len), 0;
    uint64_t head[2] = { len, 0 };
    memcpy(s->base + c, head, sizeof head);
    if (len)
        memcpy(s->base + c + CELL_HEAD, p, len);
    op_fresh(s, c, CELL_HEAD + len);
    return c;
}

/* The bytes and length of cell c, checked against its block (a used block
   inside the heap, its length within the block: a length that only stayed
   inside the segment read the next blocks' bytes as the key or value, and
   a cell offset naming a free block read its links as one); NULL if it is
   damaged. One header read: cheap enough for every key comparison. */
static const uint8_t *cell_get(mseg *s, uint64_t c, uint64_t *len)
{
    uint64_t room = heap_block_room(s, c);
    if (room < CELL_HEAD)
        return NULL;
    *len = *(const uint64_t *)(s->base + c);
    if (*len > room - CELL_HEAD)
        return NULL;
    return s->base + c + CELL_HEAD;
}

/* A copy of the key word kw for a separator: byte keys get their own cell. */
static int key_copy(mseg *s, const struct map_view *m, uint64_t kw, uint64_t *out)
{
    *out = kw;
    if (m->kind != MSEG_KEY_BYTES)
        return 0;
    uint64_t len;
    const uint8_t *p = cell_get(s, kw, &len);
    if (!p)
        return fail(EUCLEAN, "segment %s: map key cell %#llx is damaged", s->name, (unsigned long long)kw);
    *out = cell_new(s, p, len);
    return *out ? 0 : -1;
}

/* The key word for a new entry with key k: the integer, or a new cell. */
static int key_word(mseg *s, const struct map_view *m, const struct mkey *k, uint64_t *kw)
{
    *kw = k->u;
    if (m->kind != MSEG_KEY_BYTES)
        return 0;
    *kw = cell_new(s, k->p, k->len);
    return *kw ? 0 : -1;
}

/* ---- comparing ---- */

/* Compares the key word kw with k: <0, 0, >0; *bad set on a damaged cell. */
static int key_cmp(mseg *s, const struct map_view *m, uint64_t kw, const struct mkey *k, bool *bad)
{
    if (m->kind == MSEG_KEY_U64)
        return (kw > k->u) - (kw < k->u);
    if (m->kind == MSEG_KEY_I64)
        return ((int64_t)kw > (int64_t)k->u) - ((int64_t)kw < (int64_t)k->u);
    uint64_t len;
    const uint8_t *p = cell_get(s, kw, &len);
    if (!p) {
        *bad = true;
        return 0;
    }
    int c = memcmp(p, k->p, len < k->len ? len : k->len);
    if (c)
        return c;
    return (len > k->len) - (len < k->len);
}

/* A key word as an mkey (to compare two stored keys). */
static int key_of_word(mseg *s, const struct map_view *m, uint64_t kw, struct mkey *k)
{
    k->u = kw;
    if (m->kind != MSEG_KEY_BYTES)
        return 0;
    uint64_t len;
    k->p = cell_get(s, kw, &len);
    k->len = (size_t)len;
    return k->p ? 0 : -1;
}

/* Integer keys: the first order index in [lo, cnt) whose key is > k
   (upper) or >= k (lower), without branches on the keys (a binary search's
   branches on random keys mispredict half the time). The range narrows
   from [lo, cnt] to one candidate; `mix` flips the sign bit, so signed
   keys compare as unsigned. */
static unsigned int_bound(const struct mseg_map_node *nd, const uint8_t *perm, unsigned lo, unsigned cnt,
                          uint64_t k, uint64_t mix, bool upper)
{
    if (lo >= cnt)
        return lo;
    unsigned b = lo, len = cnt - lo;
    k ^= mix;
    while (len > 1) {
        unsigned half = len / 2;
        uint64_t kw = nd->keys[perm[b + half - 1] & (FAN - 1)] ^ mix;
        b = (upper ? kw <= k : kw < k) ? b + half : b;
        len -= half;
    }
    uint64_t kw = nd->keys[perm[b] & (FAN - 1)] ^ mix;
    return b + (upper ? kw <= k : kw < k);
}

static uint64_t kind_mix(unsigned kind)
{
    return kind == MSEG_KEY_I64 ? 1ull << 63 : 0;
}

static uint64_t int_mix(const struct map_view *m)
{
    return kind_mix(m->kind);
}

/* First order index in [lo, cnt) whose key is >= k. */
static unsigned lower_bound(mseg *s, const struct map_view *m, uint64_t n, unsigned lo, unsigned cnt,
                            const struct mkey *k, bool *bad)
{
    const struct mseg_map_node *nd = node_at(s, n);
    const uint8_t *perm = nd->perm[st_live(node_state(s, n))];
    unsigned hi = cnt;
    if (m->kind != MSEG_KEY_BYTES)
        return int_bound(nd, perm, lo, cnt, k->u, int_mix(m), false);
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (key_cmp(s, m, nd->keys[perm[mid] & (FAN - 1)], k, bad) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- validation ---- */

/* Checks that n is a node at `level` that fits in the mapping; its count. */
static int node_check_cheap(mseg *s, uint64_t n, unsigned level, unsigned *cnt)
{
    if (n % MSEG_GRANULE || n < MSEG_HEAP_OFF || !seg_range_ok(s, n, NODE_BYTES))
        return fail(EUCLEAN, "segment %s: map node offset %#llx is outside the heap", s->name,
                    (unsigned long long)n);
    const struct mseg_map_node *nd = node_at(s, n);
    uint64_t st = node_state(s, n);
    if (nd->magic != MSEG_MAP_NODE_MAGIC || nd->level != level || st_count(st) > FAN)
        return fail(EUCLEAN, "segment %s: map node at %#llx is damaged (magic %#x, level %u, want %u, %u entries)",
                    s->name, (unsigned long long)n, nd->magic, nd->level, level, st_count(st));
    *cnt = st_count(st);
    return 0;
}

/* As node_check_cheap, and the node is a live heap block (write paths). */
static int node_check(mseg *s, uint64_t n, unsigned level, unsigned *cnt)
{
    if (node_check_cheap(s, n, level, cnt))
        return -1;
    if (!heap_block_is_live(s, n) || heap_block_size(s, n) - 4 < NODE_BYTES)
        return fail(EUCLEAN, "segment %s: map node at %#llx is not a live block", s->name, (unsigned long long)n);
    return 0;
}

/* Offset of the root a handle points at, if it looks like a map root. */
static uint64_t map_root_of(mseg *s, const mseg_map *mp)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle"), 0;
    uintptr_t p = (uintptr_t)mp, b = (uintptr_t)s->base;
    if (!mp || p < b || p % 16 || p - b < MSEG_HEAP_OFF || !seg_range_ok(s, p - b, sizeof(struct mseg_map_root)))
        return fail(EINVAL, "segment %s: %p is not a map handle of this segment", s->name, (const void *)mp), 0;
    if (deleted_in_this_tx(s, p - b, MSEG_MAP_MAGIC))   /* see vec_root_of: before the magic */
        return fail(EINVAL, "segment %s: the map at %#llx was deleted earlier in this transaction", s->name,
                    (unsigned long long)(p - b)), 0;
    if (op_peek32(s, p - b + MROOT(magic)) != MSEG_MAP_MAGIC)
        return fail(EINVAL, "segment %s: %#llx is not a map: it holds %s", s->name, (unsigned long long)(p - b),
                    container_at(s, p - b + MROOT(magic))), 0;
    return p - b;
}

/* Reads and sanity-checks the root at off in the operation's view. */
static int map_load(mseg *s, uint64_t off, struct map_view *m)
{
    const struct mseg_map_root *r = (const void *)(s->base + off);
    m->off = off;
    m->kind = r->key_kind;
    m->flags = r->flags;
    m->val_size = r->val_size;
    m->count = op_peek64(s, off + MROOT(count));
    m->root = op_peek64(s, off + MROOT(root));
    m->height = op_peek64(s, off + MROOT(height));
    m->changes = op_peek64(s, off + MROOT(changes));
    /* nodes hold at most FAN entries, so a tree of height h at most FAN^h
       (2^(6h)): a count past that, which mseg_map_len returned as it was,
       is damage; one a little too large is not seen without a walk */
    bool count_fits = m->height >= 10 || m->count <= 1ull << (6 * m->height);
    if (m->kind > MSEG_KEY_BYTES || m->height > MAXH || (m->root == 0) != (m->height == 0) ||
        (m->root == 0 && m->count != 0) || m->val_size > MSEG_BLOCK_MAX || !count_fits)
        return fail(EUCLEAN, "segment %s: map at %#llx is damaged (kind %u, height %llu, root %#llx, %llu entries)",
                    s->name, (unsigned long long)off, m->kind, (unsigned long long)m->height,
                    (unsigned long long)m->root, (unsigned long long)m->count);
    /* an owning map's values are mseg_off handles (map_open refuses any
       other size): read with another size, they are not its containers */
    if ((m->flags & MSEG_MAP_OWNED) && m->val_size != sizeof(mseg_off))
        return fail(EUCLEAN, "segment %s: map at %#llx is damaged (owning, but values of %llu bytes, not %zu)",
                    s->name, (unsigned long long)off, (unsigned long long)m->val_size, sizeof(mseg_off));
    return 0;
}

bool map_root_sound(mseg *s, uint64_t off)
{
    struct map_view m;
    unsigned cnt;
    int e = errno;
    bool sound = map_load(s, off, &m) == 0 &&
                 (m.root == 0 || node_check(s, m.root, (unsigned)m.height - 1, &cnt) == 0);
    errno = e;
    return sound;
}

static int map_open_view(mseg *s, const mseg_map *mp, struct map_view *m)
{
    uint64_t off = map_root_of(s, mp);
    return off ? map_load(s, off, m) : -1;
}

/* A key kind as the caller names it (messages). */
static const char *key_kind_name(unsigned kind)
{
    switch (kind) {
    case MSEG_KEY_U64:
        return "MSEG_KEY_U64";
    case MSEG_KEY_I64:
        return "MSEG_KEY_I64";
    case MSEG_KEY_BYTES:
        return "MSEG_KEY_BYTES";
    default:
        return "unknown-kind";
    }
}

/* Checks a caller's key against the map's kind; fills k. */
static int key_make(mseg *s, const struct map_view *m, const void *key, size_t klen, struct mkey *k)
{
    unsigned long long at = m->off;
    if (!key && klen)
        return fail(EINVAL, "segment %s: map at %#llx: NULL key", s->name, at);
    if (m->kind != MSEG_KEY_BYTES) {
        if (klen != 8 || !key)
            return fail(EINVAL, "segment %s: map at %#llx: integer keys are 8 bytes, not %zu", s->name, at, klen);
        memcpy(&k->u, key, 8);
        return 0;
    }
    if (klen > KEY_MAX)
        return fail(EINVAL, "segment %s: map at %#llx: a %zu-byte key is longer than %u bytes", s->name, at, klen,
                    KEY_MAX);
    k->p = key ? key : (const void *)"";
    k->len = klen;
    return 0;
}

/* ---- descending ---- */

/* The child followed for k in internal node n (cnt entries): the last entry
   whose key is <= k, or entry 0. */
static unsigned child_index(mseg *s, const struct map_view *m, uint64_t n, unsigned cnt,
                            const struct mkey *k, bool *bad)
{
    if (m->kind != MSEG_KEY_BYTES) {
        const struct mseg_map_node *nd = node_at(s, n);
        return int_bound(nd, nd->perm[st_live(node_state(s, n))], 1, cnt, k->u, int_mix(m), true) - 1;
    }
    unsigned lb = lower_bound(s, m, n, 1, cnt, k, bad);
    if (lb < cnt) {
        const struct mseg_map_node *nd = node_at(s, n);
        uint64_t kw = nd->keys[nd->perm[st_live(node_state(s, n))][lb] & (FAN - 1)];
        if (key_cmp(s, m, kw, k, bad) == 0)
            return lb;
    }
    return lb - 1;
}

/* The entry at order index i of node n: its slot. */
static unsigned slot_at(mseg *s, uint64_t n, unsigned i)
{
    return node_at(s, n)->perm[st_live(node_state(s, n))][i] & (FAN - 1);
}

/* Asks the CPU to load a node's header, order arrays and keys in parallel:
   a binary search through perm touches key lines in random order, and
   without this each one is a separate cache miss. */
static void node_prefetch(mseg *s, uint64_t n)
{
    const char *p = (const char *)(s->base + n);
#pragma GCC unroll 19
    for (unsigned i = 0; i < NODE_BYTES; i += 64)
        __builtin_prefetch(p + i);
}

/* Walks from the root to the leaf where k is or would be. With k NULL, the
   leftmost leaf. Fills p (when not NULL); returns the leaf, its entry count
   and the lower-bound position of k in it. write: full node checks. */
static uint64_t descend(mseg *s, const struct map_view *m, const struct mkey *k, struct path *p,
                        unsigned *cnt, unsigned *pos, bool write)
{
    uint64_t n = m->root;
    bool bad = false;
    for (unsigned d = 0; d < m->height; d++) {
        unsigned level = (unsigned)(m->height - 1 - d);
        if (seg_range_ok(s, n, NODE_BYTES))
            node_prefetch(s, n);
        if ((write && level == 0 ? node_check : node_check_cheap)(s, n, level, cnt))
            return 0;
        if (*cnt == 0 && (level > 0 || d > 0))
            return fail(EUCLEAN, "segment %s: map node at %#llx is empty", s->name, (unsigned long long)n), 0;
        unsigned i = level == 0 ? (k ? lower_bound(s, m, n, 0, *cnt, k, &bad) : 0)
                                : (k ? child_index(s, m, n, *cnt, k, &bad) : 0);
        if (bad)
            return fail(EUCLEAN, "segment %s: map node at %#llx has a damaged key cell", s->name,
                        (unsigned long long)n), 0;
        if (p) {
            p->node[d] = n;
            p->pos[d] = i;
        }
        if (level == 0) {
            *pos = i;
            return n;
        }
        n = node_at(s, n)->vals[slot_at(s, n, i)];
    }
    return fail(EUCLEAN, "segment %s: map at %#llx has no leaf", s->name, (unsigned long long)m->off), 0;
}

/* True when order index pos of leaf n holds exactly k. */
static bool leaf_has(mseg *s, const struct map_view *m, uint64_t n, unsigned cnt, unsigned pos,
                     const struct mkey *k)
{
    bool bad = false;
    return pos < cnt && key_cmp(s, m, node_at(s, n)->keys[slot_at(s, n, pos)], k, &bad) == 0 && !bad;
}

/* k is not in leaf n (cnt entries; pos its lower bound there): checks the
   leaf's neighbours agree that it would be here. Keys ascend along the
   leaf chain, so past n's last key the next leaf starts above k, and
   before its first the previous leaf ends below it. A damaged child link
   or separator sends a lookup to the wrong leaf, which then answered
   ENOENT for a key the map holds (and a put inserted it a second time).
   Misses at a leaf's edge only: one neighbour read. */
static int miss_checked(mseg *s, const struct map_view *m, uint64_t n, unsigned cnt, unsigned pos,
                        const struct mkey *k)
{
    bool bad = false;
    unsigned ncnt;
    uint64_t nb = pos == cnt ? node_next(s, n) : 0;
    if (nb && (node_check_cheap(s, nb, 0, &ncnt) || ncnt == 0 ||
               key_cmp(s, m, node_at(s, nb)->keys[slot_at(s, nb, 0)], k, &bad) <= 0 || bad))
        goto damaged;
    nb = pos == 0 ? node_prev(s, n) : 0;
    if (nb && (node_check_cheap(s, nb, 0, &ncnt) || ncnt == 0 ||
               key_cmp(s, m, node_at(s, nb)->keys[slot_at(s, nb, ncnt - 1)], k, &bad) >= 0 || bad))
        goto damaged;
    return 0;
damaged:
    return fail(EUCLEAN, "segment %s: map at %#llx: a lookup reached leaf %#llx, but its neighbour %#llx holds "
                "keys on the other side of the key looked for (a damaged child link or separator)",
                s->name, (unsigned long long)m->off, (unsigned long long)n, (unsigned long long)nb);
}

/* ---- changing nodes ---- */

/* Node n's entries in key order (the operation's view). */
static unsigned node_read(mseg *s, uint64_t n, struct ent *e)
{
    const struct mseg_map_node *nd = node_at(s, n);
    uint64_t st = node_state(s, n);
    unsigned cnt = st_count(st);
    const uint8_t *perm = nd->perm[st_live(st)];
    for (unsigned i = 0; i < cnt && i < FAN; i++) {
        unsigned slot = perm[i] & (FAN - 1);
        e[i] = (struct ent){ nd->keys[slot], nd->vals[slot], (int)slot };
    }
    return cnt;
}

/* Slots of node n that the committed state (memory, not the op's view) uses. */
static uint64_t committed_slots(mseg *s, uint64_t n)
{
    const struct mseg_map_node *nd = node_at(s, n);
    uint64_t st = nd->state, used = 0;
    unsigned cnt = st_count(st) > FAN ? FAN : st_count(st);
    for (unsigned i = 0; i < cnt; i++)
        used |= 1ull << (nd->perm[st_live(st)][i] & (FAN - 1));
    return used;
}

/* Stores the entry list e[0..len) into node n in place, if its free slots
   allow (see the top comment); false when they do not. */
static bool node_store(mseg *s, uint64_t n, const struct ent *e, unsigned len)
{
    if (len > FAN)
        return false;
    struct mseg_map_node *nd = node_at(s, n);
    uint64_t used = committed_slots(s, n);
    unsigned need = 0;
    for (unsigned i = 0; i < len; i++) {
        if (e[i].slot >= 0)
            used |= 1ull << e[i].slot;
        else
            need++;
    }
    if ((unsigned)__builtin_popcountll(~used) < need)
        return false;
    unsigned spare = 1 - st_live(nd->state);
    for (unsigned i = 0; i < len; i++) {
        unsigned slot = (unsigned)e[i].slot;
        if (e[i].slot < 0) {
            slot = (unsigned)__builtin_ctzll(~used);
            used |= 1ull << slot;
            nd->keys[slot] = e[i].kw;
            nd->vals[slot] = e[i].vw;
            op_fresh(s, n + NODE(keys) + 8 * slot, 8);
            op_fresh(s, n + NODE(vals) + 8 * slot, 8);
        }
        nd->perm[spare][i] = (uint8_t)slot;
    }
    op_fresh(s, n + NODE(perm) + FAN * spare, FAN);
    op_set64(s, n + NODE(state), make_state(len, spare));
    return true;
}

/* A new node (fresh) at level holding e[0..len); 0 with ENOMEM. */
static uint64_t node_new(mseg *s, unsigned level, const struct ent *e, unsigned len)
{
    uint64_t n = heap_alloc(s, NODE_BYTES, MSEG_GRANULE);
    if (!n)
        return fail_no_room("segment %s: no room for a map node", s->name), 0;
    struct mseg_map_node *nd = node_at(s, n);
    memset(nd, 0, NODE(keys));
    nd->magic = MSEG_MAP_NODE_MAGIC;
    nd->level = (uint16_t)level;
    nd->state = make_state(len, 0);
    for (unsigned i = 0; i < len; i++) {
        nd->perm[0][i] = (uint8_t)i;
        nd->keys[i] = e[i].kw;
        nd->vals[i] = e[i].vw;
    }
    op_fresh(s, n, NODE_BYTES);
    return n;
}

/* Sets a leaf link: in place on a node fresh in this op, else logged. */
static void set_link(mseg *s, uint64_t n, size_t field, uint64_t v, bool fresh)
{
    if (fresh)
        *(uint64_t *)(s->base + n + field) = v;
    else
        op_set64(s, n + field, v);
}

/* Links leaves a..b (a, b fresh; b may equal a) in place of leaf old. */
static void leaf_relink(mseg *s, uint64_t old, uint64_t a, uint64_t b)
{
    uint64_t prev = a == old ? 0 : node_prev(s, old), next = b == old ? 0 : node_next(s, old);
    if (a != old) {
        set_link(s, a, NODE(prev), prev, true);
        if (prev)
            op_set64(s, prev + NODE(next), a);
    }
    if (b != old) {
        set_link(s, b, NODE(next), next, true);
        if (next)
            op_set64(s, next + NODE(prev), b);
    }
    if (a != b) {
        set_link(s, a, NODE(next), b, a != old);
        set_link(s, b, NODE(prev), a, b != old);
    }
}

/* Unlinks leaf n from its neighbours. */
static void leaf_unlink(mseg *s, uint64_t n)
{
    uint64_t prev = node_prev(s, n), next = node_next(s, n);
    if (prev)
        op_set64(s, prev + NODE(next), next);
    if (next)
        op_set64(s, next + NODE(prev), prev);
}

/* Frees block b the map owns (a node or a cell). heap_free's EINVAL is for
   a caller's bad pointer; here the pointer came from the map, so a block
   that is not live, or one the operation already freed (two words naming
   it), is damage. */
static int map_block_free(mseg *s, const struct map_view *m, uint64_t b, const char *what)
{
    if (heap_free(s, b) == 0)
        return 0;
    return fail(EUCLEAN, "segment %s: map at %#llx: its %s %#llx is not a live block (or is named twice)",
                s->name, (unsigned long long)m->off, what, (unsigned long long)b);
}

/* Frees a key word's cell (byte keys). */
static int key_free(mseg *s, const struct map_view *m, uint64_t kw)
{
    return (m->kind == MSEG_KEY_BYTES && kw) ? map_block_free(s, m, kw, "key cell") : 0;
}

/* The outcome of applying an entry list to a node: what replaces it. */
struct repl {
    uint64_t left, right;        /* left replaces the node (may be the node); right is new, or 0 */
    uint64_t sep;                /* key word of right's separator */
};

/* Puts e[0..len) into node n (level), in place or in new nodes. */
static int node_apply(mseg *s, const struct map_view *m, uint64_t n, unsigned level,
                      const struct ent *e, unsigned len, struct repl *r)
{
    r->left = n;
    r->right = r->sep = 0;
    unsigned cnt;
    if (level > 0 && node_check(s, n, level, &cnt))   /* descend checked the leaf only */
        return -1;
    if (len <= FAN && node_store(s, n, e, len))
        return 0;
    if (len <= FAN) {                                   /* copy it whole */
        if (!(r->left = node_new(s, level, e, len)))
            return -1;
    } else {
        unsigned h = len / 2;
        if (node_store(s, n, e, h)) {
            r->right = node_new(s, level, e + h, len - h);
        } else if (node_store(s, n, e + h, len - h)) {
            r->right = n;
            r->left = node_new(s, level, e, h);
        } else {
            r->left = node_new(s, level, e, h);
            r->right = r->left ? node_new(s, level, e + h, len - h) : 0;
        }
        if (!r->left || !r->right || key_copy(s, m, e[h].kw, &r->sep))
            return -1;
    }
    if (level == 0)
        leaf_relink(s, n, r->left, r->right ? r->right : r->left);
    if (r->left != n && r->right != n)
        return heap_free(s, n);
    return 0;
}

static void set_root(mseg *s, struct map_view *m, uint64_t root, uint64_t height)
{
    op_set64(s, m->off + MROOT(root), root);
    op_set64(s, m->off + MROOT(height), height);
    m->root = root;
    m->height = height;
}

/* While the root is an internal node with one child, the child becomes the root. */
static int root_collapse(mseg *s, struct map_view *m)
{
    for (unsigned guard = 0; guard < MAXH && m->height > 1; guard++) {
        struct ent e[FAN];
        if (node_read(s, m->root, e) != 1)
            return 0;
        uint64_t old = m->root;
        set_root(s, m, e[0].vw, m->height - 1);
        if (key_free(s, m, e[0].kw) || heap_free(s, old))
            return -1;
    }
    return 0;
}

/* Applies the entry list e[0..len) to the node at depth d of path p, then
   the resulting change to each ancestor in turn. */
static int tree_apply(mseg *s, struct map_view *m, struct path *p, unsigned d, struct ent *e, unsigned len)
{
    struct ent pe[FAN + 2];
    for (;;) {
        uint64_t n = p->node[d];
        unsigned level = (unsigned)(m->height - 1 - d);
        if (len == 0) {                                 /* the node goes away */
            if (level == 0)
                leaf_unlink(s, n);
            if (heap_free(s, n))
                return -1;
            if (d == 0) {
                set_root(s, m, 0, 0);
                return 0;
            }
            d--;
            len = node_read(s, p->node[d], pe);
            unsigned i = p->pos[d];
            if (key_free(s, m, pe[i].kw))
                return -1;
            memmove(pe + i, pe + i + 1, (len - i - 1) * sizeof *pe);
            len--;
            e = pe;
            continue;
        }
        struct repl r;
        if (node_apply(s, m, n, level, e, len, &r))
            return -1;
        if (r.left == n && !r.right)
            return root_collapse(s, m);
        if (d == 0) {
            if (!r.right) {
                set_root(s, m, r.left, m->height);
                return 0;
            }
            if (m->height >= MAXH)
                return fail(ENOMEM, "segment %s: map at %#llx: more than %u levels", s->name,
                            (unsigned long long)m->off, MAXH);
            struct ent top[2] = { { 0, r.left, -1 }, { r.sep, r.right, -1 } };
            uint64_t root = node_new(s, level + 1, top, 2);
            if (!root)
                return -1;
            set_root(s, m, root, m->height + 1);
            return 0;
        }
        d--;
        len = node_read(s, p->node[d], pe);
        unsigned i = p->pos[d];
        if (r.left != n)
            pe[i] = (struct ent){ pe[i].kw, r.left, -1 };
        if (r.right) {
            memmove(pe + i + 2, pe + i + 1, (len - i - 1) * sizeof *pe);
            pe[i + 1] = (struct ent){ r.sep, r.right, -1 };
            len++;
        }
        e = pe;
    }
}

/* ---- values ---- */

/* The value word for (val, vlen): inline bytes or a new cell. */
static int val_make(mseg *s, const struct map_view *m, const void *val, size_t vlen, uint64_t *vw)
{
    if (val_inline(m)) {
        *vw = 0;
        memcpy(vw, val, m->val_size);
        return 0;
    }
    *vw = cell_new(s, val, vlen);
    return *vw ? 0 : -1;
}

/* Frees what a leaf entry's value owns: its cell, or an owned container. */
static int val_free(mseg *s, const struct map_view *m, uint64_t vw, unsigned depth)
{
    if (m->flags & MSEG_MAP_OWNED)
        return container_free_anon(s, vw, depth + 1);
    return val_inline(m) ? 0 : map_block_free(s, m, vw, "value cell");
}

/* Address and length of the value of leaf entry `slot` of node n; NULL if damaged. */
static const void *val_get(mseg *s, const struct map_view *m, uint64_t n, unsigned slot, size_t *vlen)
{
    const struct mseg_map_node *nd = node_at(s, n);
    if (val_inline(m)) {
        *vlen = (size_t)m->val_size;
        return &nd->vals[slot];
    }
    uint64_t len;
    const uint8_t *p = cell_get(s, nd->vals[slot], &len);
    if (!p || (m->val_size && len != m->val_size))
        return fail_null(EUCLEAN, "segment %s: map value cell %#llx is damaged", s->name,
                         (unsigned long long)nd->vals[slot]);
    *vlen = (size_t)len;
    return p;
}

/* Address and length of the key of entry `slot` of node n; NULL if damaged. */
static const void *key_get(mseg *s, const struct map_view *m, uint64_t n, unsigned slot, size_t *klen)
{
    const struct mseg_map_node *nd = node_at(s, n);
    if (m->kind != MSEG_KEY_BYTES) {
        *klen = 8;
        return &nd->keys[slot];
    }
    uint64_t len;
    const uint8_t *p = cell_get(s, nd->keys[slot], &len);
    if (!p)
        return fail_null(EUCLEAN, "segment %s: map key cell %#llx is damaged", s->name,
                         (unsigned long long)nd->keys[slot]);
    *klen = (size_t)len;
    return p;
}

/* ---- operations inside an engine operation ---- */

static void set_count(mseg *s, struct map_view *m, uint64_t count)
{
    op_set64(s, m->off + MROOT(count), count);
    m->count = count;
}

/* The common put, without building the leaf's entry list: the new entry
   (or the replaced value, which takes a new slot too) goes into a slot the
   committed state does not use, the new order into the spare perm array,
   both in place, and the state word is logged, exactly as node_store does.
   Only when the leaf's state is as committed (no earlier call of this
   transaction changed it) and it has a free slot; false otherwise, with
   nothing changed. */
static bool leaf_put_in_place(mseg *s, uint64_t n, unsigned pos, uint64_t kw, uint64_t vw, bool replace)
{
    struct mseg_map_node *nd = node_at(s, n);
    uint64_t st = nd->state;
    unsigned cnt = st_count(st), live = st_live(st);
    if (node_state(s, n) != st || cnt > FAN || pos > cnt || (replace && pos >= cnt))
        return false;
    const uint8_t *perm = nd->perm[live];
    uint64_t used = 0;
    for (unsigned i = 0; i < cnt; i++)
        used |= 1ull << (perm[i] & (FAN - 1));
    if (used == ~0ull)
        return false;
    unsigned slot = (unsigned)__builtin_ctzll(~used);
    nd->keys[slot] = kw;
    nd->vals[slot] = vw;
    op_fresh(s, n + NODE(keys) + 8 * slot, 8);
    op_fresh(s, n + NODE(vals) + 8 * slot, 8);
    uint8_t *spare = nd->perm[1 - live];
    unsigned rest = replace ? cnt - pos - 1 : cnt - pos, len = replace ? cnt : cnt + 1;
    memmove(spare, perm, pos);
    spare[pos] = (uint8_t)slot;
    memmove(spare + pos + 1, perm + (replace ? pos + 1 : pos), rest);
    op_fresh(s, n + NODE(perm) + FAN * (1 - live), len);
    op_set64(s, n + NODE(state), make_state(len, 1 - live));
    return true;
}

/* Inserts or replaces (k, val). */
static int map_put_op(mseg *s, struct map_view *m, const struct mkey *k, const void *val, size_t vlen)
{
    uint64_t vw;
    if (val_make(s, m, val, vlen, &vw))
        return -1;
    if (m->root == 0) {
        struct ent e = { 0, vw, -1 };
        if (key_word(s, m, k, &e.kw))
            return -1;
        uint64_t leaf = node_new(s, 0, &e, 1);
        if (!leaf)
            return -1;
        set_root(s, m, leaf, 1);
        set_count(s, m, 1);
        return 0;
    }
    struct path p;
    struct ent e[FAN + 1];
    unsigned cnt, pos;
    uint64_t leaf = descend(s, m, k, &p, &cnt, &pos, true);
    if (!leaf)
        return -1;
    bool has = leaf_has(s, m, leaf, cnt, pos, k);
    uint64_t kw = 0;
    if (!has && (miss_checked(s, m, leaf, cnt, pos, k) || key_word(s, m, k, &kw)))
        return -1;
    if (has) {
        uint64_t old = node_at(s, leaf)->vals[slot_at(s, leaf, pos)];
        if (leaf_put_in_place(s, leaf, pos, node_at(s, leaf)->keys[slot_at(s, leaf, pos)], vw, true))
            return old != vw ? val_free(s, m, old, 0) : 0;
    } else if (leaf_put_in_place(s, leaf, pos, kw, vw, false)) {
        set_count(s, m, m->count + 1);
        return 0;
    }
    unsigned len = node_read(s, leaf, e);
    if (has) {
        uint64_t old = e[pos].vw;
        e[pos] = (struct ent){ e[pos].kw, vw, -1 };
        if (old != vw && val_free(s, m, old, 0))
            return -1;
    } else {
        memmove(e + pos + 1, e + pos, (len - pos) * sizeof *e);
        e[pos] = (struct ent){ kw, vw, -1 };
        len++;
        set_count(s, m, m->count + 1);
    }
    return tree_apply(s, m, &p, (unsigned)m->height - 1, e, len);
}

/* A lookup found nothing: ENOENT, without printf (fail_in_at), as programs
   meet misses in their normal flow. */
static int no_such_key(mseg *s, const struct map_view *m)
{
    return fail_in_at(ENOENT, s->name, "map at ", m->off, ": no such key");
}

/* Deletes k; ENOENT if absent. */
static int map_del_op(mseg *s, struct map_view *m, const struct mkey *k)
{
    if (m->root == 0)
        return no_such_key(s, m);
    struct path p;
    struct ent e[FAN];
    unsigned cnt, pos;
    uint64_t leaf = descend(s, m, k, &p, &cnt, &pos, true);
    if (!leaf)
        return -1;
    if (!leaf_has(s, m, leaf, cnt, pos, k))
        return miss_checked(s, m, leaf, cnt, pos, k) ? -1 : no_such_key(s, m);
    unsigned len = node_read(s, leaf, e);
    if (key_free(s, m, e[pos].kw) || val_free(s, m, e[pos].vw, 0))
        return -1;
    memmove(e + pos, e + pos + 1, (len - pos - 1) * sizeof *e);
    set_count(s, m, m->count - 1);
    return tree_apply(s, m, &p, (unsigned)m->height - 1, e, len - 1);
}

/* Frees node n (at level) and everything below it; depth bounds owned nesting. */
static int subtree_free(mseg *s, const struct map_view *m, uint64_t n, unsigned level, unsigned depth)
{
    unsigned cnt;
    struct ent e[FAN];
    if (node_check(s, n, level, &cnt))
        return -1;
    node_read(s, n, e);
    for (unsigned i = 0; i < cnt; i++) {
        if (key_free(s, m, e[i].kw))
            return -1;
        if (level > 0 ? subtree_free(s, m, e[i].vw, level - 1, depth) : val_free(s, m, e[i].vw, depth))
            return -1;
    }
    return map_block_free(s, m, n, "node");
}

static int map_release_depth(mseg *s, uint64_t root, unsigned depth)
{
    struct map_view m;
    if (map_load(s, root, &m))
        return -1;
    if (m.root && subtree_free(s, &m, m.root, (unsigned)m.height - 1, depth))
        return -1;
    return 0;
}

int map_release(mseg *s, uint64_t root)
{
    return map_release_depth(s, root, 0);
}

/* ---- containers of containers ---- */

/* The kind of anonymous container at off: MSEG_KIND_VEC/MAP, or -1. */
int container_root_kind(mseg *s, uint64_t off)
{
    if (!heap_block_is_live(s, off) || heap_block_size(s, off) - 4 < 64)
        return -1;
    uint32_t magic = op_peek32(s, off), flags = op_peek32(s, off + 4);
    if (magic == MSEG_VEC_MAGIC && (flags & MSEG_VEC_ANON))
        return MSEG_KIND_VEC;
    if (magic == MSEG_MAP_MAGIC && (((const struct mseg_map_root *)(s->base + off))->flags & MSEG_MAP_ANON))
        return MSEG_KIND_MAP;
    return -1;
}

int container_check_anon(mseg *s, uint64_t off)
{
    /* a container this operation (a transaction) already deleted is none:
       frees are deferred to commit, so its root still looks live, and an
       entry that took it named a freed block once the transaction committed */
    if (off == 0 || (container_root_kind(s, off) >= 0 && !(s->op.ndeferred && deferred_has(s, off))))
        return 0;
    return fail(EINVAL, "segment %s: %#llx is not an anonymous vector or map", s->name, (unsigned long long)off);
}

int container_free_anon(mseg *s, uint64_t off, unsigned depth)
{
    if (off == 0)
        return 0;
    if (depth > NEST_MAX)
        return fail(ELOOP, "segment %s: containers nested more than %u deep (a cycle?)", s->name, NEST_MAX);
    int kind = container_root_kind(s, off);
    if (kind < 0)
        return fail(EUCLEAN, "segment %s: owned value %#llx is not an anonymous container", s->name,
                    (unsigned long long)off);
    int rc = kind == MSEG_KIND_VEC ? vec_release(s, off) : map_release_depth(s, off, depth);
    if (rc || heap_free(s, off))
        return -1;
    /* the root's magic goes with it, as mseg_destroy clears a named one's:
       the free links overwrite it only when the block stays a free block
       of its own, and merged into a free block before it the root kept
       its bytes, so calls on the old handle took it for a live container */
    op_set32(s, off, 0);
    return 0;
}

/*
 * Who owns an anonymous container. Its root records the owning map's root
 * (MSEG_CONTAINER_OWNER_OFF; 0: no map owns it), stored with a logged
 * store in the operation of the put that makes the entry, so a crash
 * leaves entry and record agreeing; the replace or delete that ends the
 * entry frees the container in the same operation. A put into an owning
 * map refuses, before it changes anything:
 *   - a container some entry already owns (EBUSY): two entries would free
 *     it twice, the second time as whatever the heap gave its block to;
 *   - the map itself or a map that owns it, directly or not (ELOOP): a
 *     cycle no delete could ever free;
 *   - nesting deeper than NEST_MAX (ELOOP), which no delete could free
 *     either (container_free_anon stops there).
 * Segments written before the record existed hold 0 there: their entries
 * count as unowned, as they were.
 */
#define OWNER_OFF MSEG_CONTAINER_OWNER_OFF

static uint64_t owner_of(mseg *s, uint64_t off) { return op_peek64(s, off + OWNER_OFF); }

/* The root at off is an owning map's (a sane value for an owner word). */
static bool is_owning_map(mseg *s, uint64_t off)
{
    if (off % MSEG_GRANULE || off < MSEG_HEAP_OFF || !seg_range_ok(s, off, sizeof(struct mseg_map_root)))
        return false;
    const struct mseg_map_root *r = (const void *)(s->base + off);
    return op_peek32(s, off + MROOT(magic)) == MSEG_MAP_MAGIC && (r->flags & MSEG_MAP_OWNED);
}

/* Container off's owner word names something that is no owning map: damage
   (EUCLEAN), not a container some entry owns (EBUSY), which would send the
   program looking for an entry that does not exist. */
static bool owner_damaged(mseg *s, uint64_t off, uint64_t owner)
{
    if (!owner || is_owning_map(s, owner))
        return false;
    fail(EUCLEAN, "segment %s: container %#llx records owner %#llx, which is not an owning map",
         s->name, (unsigned long long)off, (unsigned long long)owner);
    return true;
}

/* How many maps own map m, one inside the other (0: no map owns it), into
   *depth; ELOOP when container o is m or one of them (putting o into m
   would close a cycle); EUCLEAN when there are more than NEST_MAX. */
static int owners_above(mseg *s, uint64_t m, uint64_t o, unsigned *depth)
{
    uint64_t at = m;
    for (unsigned d = 0; d <= NEST_MAX; d++) {
        if (at == o)
            return fail(ELOOP, "segment %s: map put: %#llx is the map at %#llx or owns it: "
                        "a map cannot own itself, directly or through others", s->name,
                        (unsigned long long)o, (unsigned long long)m);
        uint64_t up = owner_of(s, at);
        if (!up) {
            *depth = d;
            return 0;
        }
        if (owner_damaged(s, at, up))
            return -1;
        at = up;
    }
    /* puts never nest a map deeper than NEST_MAX: a longer chain of owner
       records (one that loops back on itself) is damage */
    return fail(EUCLEAN, "segment %s: the owner records above the map at %#llx go on for more than %u maps "
                "(a cycle?)", s->name, (unsigned long long)m, NEST_MAX);
}

static int nest_below(mseg *s, uint64_t off, unsigned room, uint64_t *left, unsigned *below);

/* nest_below for the entries under node n (at level) of owning map m. */
static int subtree_nest(mseg *s, const struct map_view *m, uint64_t n, unsigned level, unsigned room,
                        uint64_t *left, unsigned *below)
{
    unsigned cnt;
    if (node_check_cheap(s, n, level, &cnt))
        return -1;
    for (unsigned i = 0; i < cnt; i++) {
        uint64_t v = node_at(s, n)->vals[slot_at(s, n, i)];
        unsigned sub;
        if (level > 0) {
            if (subtree_nest(s, m, v, level - 1, room, left, below))
                return -1;
            continue;
        }
        if (!v)
            continue;
        if (room == 0)
            return fail(ELOOP, "segment %s: map put: owned containers would nest more than %u deep",
                        s->name, NEST_MAX);
        if (nest_below(s, v, room - 1, left, &sub))
            return -1;
        if (sub + 1 > *below)
            *below = sub + 1;
    }
    return 0;
}

/* Most containers the heap's used blocks can hold: each is a live block of
   at least 4 + 64 bytes. */
static uint64_t containers_at_most(mseg *s)
{
    uint64_t start = op_peek64(s, MSEG_CONTROL_OFF + offsetof(struct mseg_control, heap_start));
    uint64_t end = op_peek64(s, MSEG_CONTROL_OFF + offsetof(struct mseg_control, heap_end));
    uint64_t free = op_peek64(s, MSEG_CONTROL_OFF + offsetof(struct mseg_control, free_bytes));
    return end > start && end - start > free ? (end - start - free) / (4 + sizeof(struct mseg_map_root)) + 1 : 1;
}

/* How many levels of owned containers hang below container off (0: it owns
   none; a vector owns none), looking at most `room` levels down: ELOOP if
   they go deeper. Reads every entry of every owning map below off.
   *left counts down the containers the walk may still meet: more than the
   heap can hold means it met one twice, held by two entries (a segment
   written before owners were recorded, or damage). Walked once per path
   to it, such a container made a put take exponential time (8 entries
   per map, 10 maps deep: 4 s; 16 deep: years), all under the lock. */
static int nest_below(mseg *s, uint64_t off, unsigned room, uint64_t *left, unsigned *below)
{
    *below = 0;
    if (*left == 0)
        return fail(EUCLEAN, "segment %s: map put: the owned containers below the put's reach more "
                    "containers than the heap holds (near %#llx): one is held by two entries",
                    s->name, (unsigned long long)off);
    --*left;
    int kind = container_root_kind(s, off);
    if (kind < 0)
        return fail(EUCLEAN, "segment %s: owned value %#llx is not an anonymous container", s->name,
                    (unsigned long long)off);
    if (kind == MSEG_KIND_VEC)
        return 0;
    struct map_view m;
    if (map_load(s, off, &m))
        return -1;
    if (!(m.flags & MSEG_MAP_OWNED) || !m.root)
        return 0;
    return subtree_nest(s, &m, m.root, (unsigned)m.height - 1, room, left, below);
}

/* Entry k of map m holds value word vw now. */
static bool entry_holds(mseg *s, const struct map_view *m, const struct mkey *k, uint64_t vw)
{
    unsigned cnt, pos;
    uint64_t leaf = m->root ? descend(s, m, k, NULL, &cnt, &pos, false) : 0;
    return leaf && leaf_has(s, m, leaf, cnt, pos, k) && node_at(s, leaf)->vals[slot_at(s, leaf, pos)] == vw;
}

/* May owning map m take container o (0: nothing) under key k? See above. */
static int owned_put_check(mseg *s, const struct map_view *m, const struct mkey *k, uint64_t o)
{
    if (o == 0)
        return 0;
    if (container_check_anon(s, o))
        return -1;
    uint64_t owner = owner_of(s, o);
    if (owner_damaged(s, o, owner))
        return -1;
    if (owner && !(owner == m->off && entry_holds(s, m, k, o)))
        return fail(EBUSY, "segment %s: map put: container %#llx is already owned by an entry of the map "
                    "at %#llx; an owning map's entries each need a container of their own",
                    s->name, (unsigned long long)o, (unsigned long long)owner);
    unsigned depth = 0, below;
    uint64_t left = containers_at_most(s);
    if (owners_above(s, m->off, o, &depth))
        return -1;
    if (depth + 1 > NEST_MAX)
        return fail(ELOOP, "segment %s: map put: the map at %#llx is nested %u deep; a container in it "
                    "would be deeper than %u", s->name, (unsigned long long)m->off, depth, NEST_MAX);
    return nest_below(s, o, NEST_MAX - depth - 1, &left, &below);
}

int container_delete_anon(mseg *s, uint64_t off)
{
    uint64_t owner = owner_of(s, off);
    if (owner_damaged(s, off, owner))
        return -1;
    if (owner)
        return fail(EBUSY, "segment %s: the container at %#llx is owned by an entry of the map at %#llx; "
                    "delete or replace that entry instead", s->name, (unsigned long long)off,
                    (unsigned long long)owner);
    return container_free_anon(s, off, 0);
}

/* ---- public API ---- */

/* Ends a writing call: commits on rc == 0, keeps the first error's errno. */
static int map_end(mseg *s, int rc)
{
    int e = errno;
    if (seg_write_end(s, rc == 0))
        return -1;
    errno = e;
    return rc;
}

/* Checks the handle and the creation parameters of a map (name: NULL for
   an anonymous one). */
static int map_params_ok(mseg *s, const char *name, enum mseg_key kind, size_t val_size, unsigned flags)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle");
    const char *what = name ? name : "(new)";
    if ((unsigned)kind > MSEG_KEY_BYTES)
        return fail(EINVAL, "segment %s: map %s: unknown key kind %d", s->name, what, (int)kind);
    if (val_size > MSEG_BLOCK_MAX - CELL_HEAD - 4)
        return fail(EINVAL, "segment %s: map %s: value size %zu is too large", s->name, what, val_size);
    if ((flags & MSEG_OWNED) && val_size != sizeof(mseg_off))
        return fail(EINVAL, "segment %s: map %s: with MSEG_OWNED, values are mseg_off handles (%zu bytes), not %zu",
                    s->name, what, sizeof(mseg_off), val_size);
    return 0;
}

/* A new map's first `changes` value: the segment's count of maps created
   so far, high, so that a cursor on a map that was deleted does not match
   a map built at the same address (and the segment stays a function of
   its operations: no randomness). */
static uint64_t first_changes(mseg *s)
{
    uint64_t at = MSEG_CONTROL_OFF + offsetof(struct mseg_control, map_serial);
    uint64_t serial = op_get64(s, at) + 1;
    op_set64(s, at, serial);
    return serial << 32;
}

static void map_init_root(mseg *s, uint64_t off, enum mseg_key kind, size_t val_size, unsigned flags)
{
    struct mseg_map_root r = { .magic = MSEG_MAP_MAGIC, .key_kind = (uint8_t)kind,
                               .flags = (uint8_t)flags, .val_size = val_size,
                               .changes = first_changes(s) };
    memcpy(s->base + off, &r, sizeof r);
    op_fresh(s, off, sizeof r);
}

static mseg_map *map_new(mseg *s, enum mseg_key kind, size_t val_size, unsigned flags)
{
    if (map_params_ok(s, NULL, kind, val_size, flags) || seg_write_begin(s))
        return NULL;
    uint64_t off = heap_alloc(s, sizeof(struct mseg_map_root), MSEG_GRANULE);
    if (!off) {
        fail_no_room("segment %s: no room for a map", s->name);
        map_end(s, -1);
        return NULL;
    }
    map_init_root(s, off, kind, val_size, MSEG_MAP_ANON | ((flags & MSEG_OWNED) ? MSEG_MAP_OWNED : 0));
    if (map_end(s, 0))
        return NULL;
    return (mseg_map *)(s->base + off);
}

mseg_map *mseg_map_new(mseg *s, enum mseg_key kind, size_t val_size)
{
    return map_new(s, kind, val_size, 0);
}

mseg_map *mseg_map_new_owned(mseg *s, enum mseg_key kind)
{
    return map_new(s, kind, sizeof(mseg_off), MSEG_OWNED);
}

/* An existing named map's root matches what the caller asked for. */
static int map_matches(mseg *s, const char *name, uint64_t off, enum mseg_key kind, size_t val_size,
                       unsigned flags)
{
    const struct mseg_map_root *r = (const void *)(s->base + off);
    if (r->magic != MSEG_MAP_MAGIC)
        return fail(EUCLEAN, "segment %s: map %s: root at %#llx is damaged", s->name, name, (unsigned long long)off);
    bool owned = (r->flags & MSEG_MAP_OWNED) != 0;
    if (r->key_kind != (uint8_t)kind || r->val_size != val_size || owned != ((flags & MSEG_OWNED) != 0))
        return fail(EINVAL, "segment %s: map %s has %s keys, %llu-byte values%s; asked for %s keys, %zu-byte values%s",
                    s->name, name, key_kind_name(r->key_kind), (unsigned long long)r->val_size, owned ? ", owned" : "",
                    key_kind_name(kind), val_size, (flags & MSEG_OWNED) ? ", owned" : "");
    return 0;
}

/* Finds a named map without creating it: a read, so it works on read-only
   handles too. */
static mseg_map *map_find(mseg *s, const char *name, enum mseg_key kind, size_t val_size, unsigned flags)
{
    uint64_t seq, off;
    int rc, e;
    do {
        if (seg_read_begin(s, &seq))
            return NULL;
        bool created;
        off = dir_open_kind(s, name, MSEG_KIND_MAP, "mseg_map", sizeof(struct mseg_map_root), false, &created);
        rc = off ? map_matches(s, name, off, kind, val_size, flags) : -1;
        e = errno;
    } while (!seg_read_end(s, seq));
    errno = e;
    return rc ? NULL : (mseg_map *)(s->base + off);
}

mseg_map *mseg_map_open(mseg *s, const char *name, enum mseg_key kind, size_t val_size, unsigned flags)
{
    if (!s)
        return fail_null(EINVAL, "NULL segment handle");
    if (flags & ~(unsigned)(MSEG_CREATE | MSEG_OWNED))
        return fail_null(EINVAL, "segment %s: map %s: unknown flags %#x (MSEG_CREATE and MSEG_OWNED are known)",
                         s->name, name ? name : "(null)", flags & ~(unsigned)(MSEG_CREATE | MSEG_OWNED));
    if (map_params_ok(s, name ? name : "(null)", kind, val_size, flags))
        return NULL;
    if (!(flags & MSEG_CREATE))
        return map_find(s, name, kind, val_size, flags);
    if (s->mode == MODE_RDONLY)
        return seg_found_read_only(s, map_find(s, name, kind, val_size, flags), "create map", name);
    if (seg_write_begin(s))
        return NULL;
    bool created;
    uint64_t off = dir_open_kind(s, name, MSEG_KIND_MAP, "mseg_map", sizeof(struct mseg_map_root),
                                 true, &created);
    int rc = off ? 0 : -1;
    if (off && created)
        map_init_root(s, off, kind, val_size, (flags & MSEG_OWNED) ? MSEG_MAP_OWNED : 0);
    else if (off)
        rc = map_matches(s, name, off, kind, val_size, flags);
    if (map_end(s, rc))
        return NULL;
    return (mseg_map *)(s->base + off);
}

int mseg_map_delete(mseg *s, mseg_map *mp)
{
    if (seg_write_begin(s))
        return -1;
    uint64_t off = map_root_of(s, mp);
    int rc = -1;
    if (off && !(((const struct mseg_map_root *)(s->base + off))->flags & MSEG_MAP_ANON))
        fail(EINVAL, "segment %s: the map at %#llx is named; destroy it with mseg_destroy",
             s->name, (unsigned long long)off);
    else if (off)
        rc = container_delete_anon(s, off);
    return map_end(s, rc);
}

/* Appends the map to the message of a failed allocation, which the
   allocator and the cell and node helpers word for the segment alone. */
static void note_the_map(const struct map_view *m)
{
    char note[48];
    snprintf(note, sizeof note, " (map at %#llx)", (unsigned long long)m->off);
    fail_note(note);
}

/* Every put and delete: cursors positioned before it are stale (their
   leaf and slots may be gone or reused), and a lock-free step must be able
   to tell, so the root's word changes with the operation's commit. */
static void map_changed(mseg *s, const struct map_view *m)
{
    op_set64(s, m->off + MROOT(changes), m->changes + 1);
}

int mseg_map_put(mseg *s, mseg_map *mp, const void *key, size_t klen, const void *val, size_t vlen)
{
    if (seg_write_begin(s))
        return -1;
    struct map_view m;
    struct mkey k;
    int rc = map_open_view(s, mp, &m);
    if (!rc)
        rc = key_make(s, &m, key, klen, &k);
    if (!rc && !val && vlen)
        rc = fail(EINVAL, "segment %s: map at %#llx: put of a NULL value", s->name, (unsigned long long)m.off);
    if (!rc && m.val_size && vlen != m.val_size)
        rc = fail(EINVAL, "segment %s: map at %#llx: put of a %zu-byte value, the map holds %llu-byte values",
                  s->name, (unsigned long long)m.off, vlen, (unsigned long long)m.val_size);
    if (!rc && vlen > MSEG_BLOCK_MAX - CELL_HEAD - 4)
        rc = fail(ENOMEM, "segment %s: map at %#llx: a %zu-byte value is larger than the largest block", s->name,
                  (unsigned long long)m.off, vlen);
    mseg_off o = 0;
    if (!rc && (m.flags & MSEG_MAP_OWNED)) {
        memcpy(&o, val, sizeof o);
        rc = owned_put_check(s, &m, &k, o);
    }
    if (!rc && (rc = map_put_op(s, &m, &k, val, vlen)) && room_ran_out(errno))
        note_the_map(&m);
    if (!rc && o)
        op_set64(s, o + OWNER_OFF, m.off);    /* in the put's operation: both or neither */
    if (!rc)
        map_changed(s, &m);
    return map_end(s, rc);
}

int mseg_map_del(mseg *s, mseg_map *mp, const void *key, size_t klen)
{
    if (seg_write_begin(s))
        return -1;
    struct map_view m;
    struct mkey k;
    int rc = map_open_view(s, mp, &m);
    if (!rc)
        rc = key_make(s, &m, key, klen, &k);
    if (!rc && (rc = map_del_op(s, &m, &k)) && room_ran_out(errno))
        note_the_map(&m);
    if (!rc)
        map_changed(s, &m);
    return map_end(s, rc);
}

/* ---- reading ---- */

/* Runs the statements on a validated map view (SEG_READ); rc is the result. */
#define MAP_READ(s, mp, m, rc, ...) SEG_READ(s, rc, map_open_view((s), (mp), &(m)), __VA_ARGS__)

/* mseg_map_get of a map with integer keys and inline values, where
   seg_fast_read_begin applies: the root read and checked in place (as
   map_load does), the same descend, in one optimistic read, as
   cursor_step_fast.
   1 found (*out, *vlen), 0 absent (ENOENT), -1 not this case or raced: the
   general path runs (and reports any damage). */
static int map_get_fast(mseg *s, const mseg_map *mp, const void *key, size_t klen, const void **out,
                        size_t *vlen)
{
    uintptr_t p = (uintptr_t)mp, b = (uintptr_t)s->base;
    if (!key || klen != 8 || !mp || p < b || p % 16 || p - b < MSEG_HEAP_OFF ||
        !seg_range_ok(s, p - b, sizeof(struct mseg_map_root)))
        return -1;
    uint64_t seq;
    if (!seg_fast_read_begin(s, &seq))
        return -1;
    const struct mseg_map_root *r = (const void *)mp;
    struct map_view m = { .off = p - b, .kind = r->key_kind, .flags = r->flags, .val_size = r->val_size,
                          .count = r->count, .root = r->root, .height = r->height };
    if (r->magic != MSEG_MAP_MAGIC || m.kind == MSEG_KEY_BYTES || !val_inline(&m) ||
        m.height > MAXH || m.root == 0 || m.height == 0)
        return -1;
    struct mkey k;
    memcpy(&k.u, key, 8);
    unsigned cnt, pos;
    uint64_t leaf = descend(s, &m, &k, NULL, &cnt, &pos, false);
    if (!leaf)
        return -1;
    bool found = leaf_has(s, &m, leaf, cnt, pos, &k);
    const void *v = found ? &node_at(s, leaf)->vals[slot_at(s, leaf, pos)] : NULL;
    if (!found && miss_checked(s, &m, leaf, cnt, pos, &k))
        return -1;      /* the general path reports it */
    if (!seg_fast_read_end(s, seq))
        return -1;
    if (!found)
        return no_such_key(s, &m), 0;
    *out = v;
    *vlen = (size_t)m.val_size;
    return 1;
}

void *mseg_map_get(mseg *s, mseg_map *mp, const void *key, size_t klen, size_t *vlen)
{
    struct map_view m;
    struct mkey k;
    int rc;
    const void *v = NULL;
    size_t len = 0;
    int fast = s ? map_get_fast(s, mp, key, klen, &v, &len) : -1;
    if (fast == 0)
        return NULL;
    if (fast > 0) {
        if (vlen)
            *vlen = len;
        return (void *)v;
    }
    MAP_READ(s, mp, m, rc, {
        v = NULL;
        rc = key_make(s, &m, key, klen, &k);
        unsigned cnt, pos;
        uint64_t leaf = (!rc && m.root) ? descend(s, &m, &k, NULL, &cnt, &pos, false) : 0;
        if (!rc && m.root && !leaf)
            rc = -1;
        else if (!rc && (!leaf || !leaf_has(s, &m, leaf, cnt, pos, &k)))
            rc = leaf && miss_checked(s, &m, leaf, cnt, pos, &k) ? -1 : no_such_key(s, &m);
        else if (!rc)
            rc = (v = val_get(s, &m, leaf, slot_at(s, leaf, pos), &len)) ? 0 : -1;
    });
    if (rc)
        return NULL;
    if (vlen)
        *vlen = len;
    return (void *)v;
}

size_t mseg_map_len(mseg *s, mseg_map *mp)
{
    struct map_view m;
    int rc;
    size_t n = 0;
    MAP_READ(s, mp, m, rc, { n = (size_t)m.count; });
    return rc ? 0 : n;
}

/* ---- cursors ---- */

/* priv[0] leaf, priv[1] order index and stamp (below), priv[2] map root,
   priv[3] check word */
#define CURSOR_TAG 0x6d7365672d637572ull
/* priv[1]: the position in the leaf (8 bits) and a stamp (56 bits): the
   map's changes word (folded into 40 bits) and the transaction the cursor was
   positioned in (16 bits, 0 outside one). A step needs the stamp it would
   take now: an abort puts the changes word back, so later commits can
   bring it to the value a cursor positioned inside the aborted
   transaction holds; the transaction part makes that cursor stale. */
#define CURSOR_POS(c)     ((unsigned)((c)->priv[1] & 0xff))
#define CURSOR_STAMP(c)   ((c)->priv[1] >> 8)
static uint64_t cursor_word(unsigned pos, uint64_t stamp) { return (uint64_t)pos | stamp << 8; }
/* The changes word folded into 40 bits: its low 32 bits (the map's own
   changes) plus its high ones (the serial of the map's creation) times an
   odd number, which mod 2^40 takes 2^40 maps to repeat. The low 40 bits
   alone kept 8 bits of the serial: a cursor on a deleted map passed for
   one on the 256th map made after it at the same address, with as many
   changes, and stepped into that map's leaf. */
static uint64_t cursor_stamp_outside_tx(uint64_t changes)
{
    return (changes + (changes >> 32) * 0x9e3779b97f4a7c15ull) & ((1ull << 40) - 1);
}
/* priv[3]: the leaf and the map root, and the segment: offsets alone mean
   something in every segment, and a cursor stepped with another segment's
   handle went on through whatever map lay there at the same offsets. */
static uint64_t cursor_check_word(const mseg *s, uint64_t leaf, uint64_t root)
{
    return CURSOR_TAG ^ leaf ^ root ^ s->id;
}
/* Only a transaction that changed the map marks the stamp: a map it left
   alone reads its committed changes word in place (the transaction's
   words are redo records until the commit), and a cursor positioned on it
   is valid on either side of the commit or abort. Marking every stamp
   taken inside a transaction made a cursor stale across any begin or
   commit, though its map had not changed. */
static uint64_t cursor_stamp(mseg *s, const struct map_view *m)
{
    uint64_t t = tx_serial(s);
    if (t && m->changes == *(const uint64_t *)(s->base + m->off + MROOT(changes)))
        t = 0;
    return (t ? t % 0xffff + 1 : 0) << 40 | cursor_stamp_outside_tx(m->changes);
}

/* Fills the public fields of c from entry pos of leaf n. */
static int cursor_fill(mseg *s, const struct map_view *m, struct mseg_cursor *c, uint64_t n, unsigned pos)
{
    unsigned slot = slot_at(s, n, pos);
    const void *k = key_get(s, m, n, slot, &c->klen);
    const void *v = k ? val_get(s, m, n, slot, &c->vlen) : NULL;
    if (!v)
        return -1;
    c->key = k;
    c->val = v;
    c->priv[0] = n;
    c->priv[1] = cursor_word(pos, cursor_stamp(s, m));
    c->priv[2] = m->off;
    c->priv[3] = cursor_check_word(s, n, m->off);
    return 0;
}

/* A leaf with no next link is the tree's last leaf: a next link damaged
   to 0 would end a walk early, as if the map ended there. O(height), once
   per walk. */
static int leaf_is_last(mseg *s, const struct map_view *m, uint64_t n)
{
    uint64_t x = m->root;
    unsigned cnt;
    for (uint64_t level = m->height; level-- > 0;) {
        if (node_check_cheap(s, x, (unsigned)level, &cnt))
            return -1;
        if (level == 0)
            break;
        if (cnt == 0)
            return fail(EUCLEAN, "segment %s: map node at %#llx is empty", s->name, (unsigned long long)x);
        x = node_at(s, x)->vals[slot_at(s, x, cnt - 1)];
    }
    if (x != n)
        return fail(EUCLEAN, "segment %s: map leaf at %#llx has no next leaf, but the map's last leaf is %#llx",
                    s->name, (unsigned long long)n, (unsigned long long)x);
    return 0;
}

/* The key at order index pb of leaf b is above the one at pa of leaf a
   (the entry before it: in the same leaf, or the last of the leaf before).
   A damaged order array (a slot listed twice), swapped keys, a count one
   too large (a stale slot at the end) or a key changed past the next
   leaf's made a cursor give an entry twice, or step back, without an
   error. One comparison per step. */
static int keys_ascend(mseg *s, const struct map_view *m, uint64_t a, unsigned pa, uint64_t b, unsigned pb)
{
    struct mkey k;
    bool bad = false;
    if (key_of_word(s, m, node_at(s, b)->keys[slot_at(s, b, pb)], &k) == 0 &&
        key_cmp(s, m, node_at(s, a)->keys[slot_at(s, a, pa)], &k, &bad) < 0 && !bad)
        return 0;
    return fail(EUCLEAN, "segment %s: map leaf at %#llx: entry %u is not above the one before it (entry %u of "
                "leaf %#llx), or a key cell is damaged", s->name, (unsigned long long)b, pb, pa,
                (unsigned long long)a);
}

/* Whether a cursor on this map steps through cursor_step_inline: integer
   keys and inline values. */
static bool steps_inline(const struct map_view *m)
{
    return m->kind != MSEG_KEY_BYTES && val_inline(m);
}

/* Integer keys (mix: int_mix) of leaf nd at order indexes [from, cnt)
   ascend, each above floor when floor_set. A leaf is checked whole when a
   cursor enters it, not one pair per step: the inline step within a leaf
   then compares nothing (a comparison per step cost it 16% more
   instructions in a 200,000-key walk, callgrind). */
static bool int_keys_ascend(const struct mseg_map_node *nd, const uint8_t *perm, unsigned from, unsigned cnt,
                            uint64_t mix, bool floor_set, uint64_t floor)
{
    if (from >= cnt)
        return true;
    uint64_t prev = nd->keys[perm[from] & (FAN - 1)] ^ mix;
    if (floor_set && prev <= (floor ^ mix))
        return false;
    for (unsigned i = from + 1; i < cnt; i++) {
        uint64_t k = nd->keys[perm[i] & (FAN - 1)] ^ mix;
        if (k <= prev)
            return false;
        prev = k;
    }
    return true;
}

/* A cursor of an inline-stepping map enters leaf n at order index pos
   (after the last key of leaf `before` when before != 0): the keys from
   there to the leaf's end ascend, so that the inline steps through them
   need no comparison. */
static int leaf_enter_checked(mseg *s, const struct map_view *m, uint64_t before, uint64_t n, unsigned pos,
                              unsigned cnt)
{
    const struct mseg_map_node *nd = node_at(s, n);
    uint64_t floor = 0;
    if (before) {
        unsigned bcnt = st_count(node_state(s, before));
        if (bcnt == 0 || bcnt > FAN)
            return fail(EUCLEAN, "segment %s: map leaf at %#llx is damaged", s->name, (unsigned long long)before);
        floor = node_at(s, before)->keys[slot_at(s, before, bcnt - 1)];
    }
    unsigned from = pos > 0 ? pos - 1 : 0;
    if (int_keys_ascend(nd, nd->perm[st_live(node_state(s, n))], from, cnt, int_mix(m), before != 0, floor))
        return 0;
    return fail(EUCLEAN, "segment %s: map leaf at %#llx: its entries from %u on do not ascend (or do not start "
                "above the leaf before it, %#llx)", s->name, (unsigned long long)n, from, (unsigned long long)before);
}

/* Positions c at order index pos of leaf n, or the first entry after it.
   step: a step of mseg_map_next within the leaf the cursor is in, which
   checked its order when it entered (or, inside a transaction, where
   every step comes here, pair by pair): one comparison, not the rest of
   the leaf at every step. */
static int cursor_settle(mseg *s, const struct map_view *m, struct mseg_cursor *c, uint64_t n, unsigned pos,
                         bool step)
{
    unsigned cnt;
    if (node_check_cheap(s, n, 0, &cnt))
        return -1;
    if (pos < cnt && steps_inline(m) && !step)
        return leaf_enter_checked(s, m, 0, n, pos, cnt) ? -1 : cursor_fill(s, m, c, n, pos);
    if (pos < cnt)
        return pos > 0 && keys_ascend(s, m, n, pos - 1, n, pos) ? -1 : cursor_fill(s, m, c, n, pos);
    unsigned last = cnt;     /* n's entries: cnt is the next leaf's from here */
    uint64_t next = node_next(s, n);
    if (!next)
        return leaf_is_last(s, m, n) ? -1
               : fail_in_at(ENOENT, s->name, "map at ", m->off, ": no entry after the cursor's");
    if (node_check_cheap(s, next, 0, &cnt))
        return -1;
    /* the leaf after n links back to it: a damaged next link (to n itself,
       an earlier leaf or one further on) would make the walk go round for
       ever or leave leaves out, without an error */
    if (node_prev(s, next) != n)
        return fail(EUCLEAN, "segment %s: map leaf at %#llx links to %#llx as the next leaf, which does not "
                    "link back to it", s->name, (unsigned long long)n, (unsigned long long)next);
    if (cnt == 0)
        return fail(EUCLEAN, "segment %s: map leaf at %#llx is empty", s->name, (unsigned long long)next);
    if (steps_inline(m) ? leaf_enter_checked(s, m, last > 0 ? n : 0, next, 0, cnt)
                        : last > 0 && keys_ascend(s, m, n, last - 1, next, 0))
        return -1;
    return cursor_fill(s, m, c, next, 0);
}

static int null_cursor(mseg *s, const struct map_view *m)
{
    return fail(EINVAL, "segment %s: map at %#llx: NULL cursor", s->name, (unsigned long long)m->off);
}

static int map_is_empty(mseg *s, const struct map_view *m)
{
    return fail_in_at(ENOENT, s->name, "map at ", m->off, " is empty");
}

int mseg_map_first(mseg *s, mseg_map *mp, struct mseg_cursor *c)
{
    struct map_view m;
    struct mseg_cursor out;
    int rc;
    MAP_READ(s, mp, m, rc, {
        unsigned cnt, pos;
        uint64_t leaf = c && m.root ? descend(s, &m, NULL, NULL, &cnt, &pos, false) : 0;
        if (!c)
            rc = null_cursor(s, &m);
        else if (!m.root)
            rc = map_is_empty(s, &m);
        else
            rc = leaf ? cursor_settle(s, &m, &out, leaf, 0, false) : -1;
    });
    if (rc == 0)
        *c = out;
    return rc;
}

int mseg_map_seek(mseg *s, mseg_map *mp, struct mseg_cursor *c, const void *key, size_t klen)
{
    struct map_view m;
    struct mkey k;
    struct mseg_cursor out;
    int rc;
    MAP_READ(s, mp, m, rc, {
        unsigned cnt, pos;
        rc = c ? key_make(s, &m, key, klen, &k) : null_cursor(s, &m);
        uint64_t leaf = (!rc && m.root) ? descend(s, &m, &k, NULL, &cnt, &pos, false) : 0;
        if (!rc && !m.root)
            rc = map_is_empty(s, &m);
        else if (!rc && leaf && !leaf_has(s, &m, leaf, cnt, pos, &k) && miss_checked(s, &m, leaf, cnt, pos, &k))
            rc = -1;
        else if (!rc)
            rc = leaf ? cursor_settle(s, &m, &out, leaf, pos, false) : -1;
    });
    if (rc == 0)
        *c = out;
    return rc;
}

/* A cursor step computed before the read it came from is validated. */
struct step {
    const void *key, *val;
    size_t vlen;
    unsigned pos;
    uint64_t leaf;
};

/* The step of mseg_map_next within one leaf of a map with integer keys and
   inline values: no root validation, no entry copies, the leaf re-checked as
   cheaply as descend checks it. The root's kind and value size are read
   again, since the cursor may outlive the map. Reads only; true when it
   applies (the general path handles everything else). */
static bool cursor_step_inline(mseg *s, const struct mseg_cursor *c, struct step *out)
{
    uint64_t r = c->priv[2], n = c->priv[0], from = 0, last = 0;
    unsigned pos = CURSOR_POS(c) + 1, cnt;
    if (r < MSEG_HEAP_OFF || !seg_range_ok(s, r, sizeof(struct mseg_map_root)) || CURSOR_POS(c) >= FAN)
        return false;
    const struct mseg_map_root *root = (const void *)(s->base + r);
    if (root->magic != MSEG_MAP_MAGIC || root->key_kind == MSEG_KEY_BYTES || root->val_size == 0 ||
        root->val_size > MSEG_MAP_INLINE_MAX || cursor_stamp_outside_tx(root->changes) != CURSOR_STAMP(c))
        return false;   /* stale (outside a transaction, as cursor_step_fast runs), among others */
    for (unsigned hop = 0; hop < 2; hop++) {    /* this leaf, then the next one */
        if (n % MSEG_GRANULE || n < MSEG_HEAP_OFF || !seg_range_ok(s, n, NODE_BYTES))
            return false;
        const struct mseg_map_node *nd = node_at(s, n);
        uint64_t st = __atomic_load_n(&nd->state, __ATOMIC_RELAXED);
        cnt = st_count(st);
        if (nd->magic != MSEG_MAP_NODE_MAGIC || nd->level != 0 || cnt > FAN)
            return false;
        if (hop && __atomic_load_n(&nd->prev, __ATOMIC_RELAXED) != from)
            return false;                       /* a damaged link: the general path says EUCLEAN */
        if (pos < cnt) {
            uint64_t after = hop ? __atomic_load_n(&nd->next, __ATOMIC_RELAXED) : 0;
            if (after && seg_range_ok(s, after, NODE_BYTES))
                node_prefetch(s, after);        /* a leaf ahead: its lines arrive while this one is walked */
            const uint8_t *perm = nd->perm[st_live(st)];
            unsigned slot = perm[pos] & (FAN - 1);
            /* a leaf entered here is checked whole (the one the cursor is in
               was, when it entered): out of order, the general path says
               EUCLEAN */
            if (hop && !int_keys_ascend(nd, perm, 0, cnt, kind_mix(root->key_kind), true, last))
                return false;
            *out = (struct step){ &nd->keys[slot], &nd->vals[slot], (size_t)root->val_size, pos, n };
            return true;
        }
        if (cnt == 0)
            return false;
        last = nd->keys[nd->perm[st_live(st)][cnt - 1] & (FAN - 1)];
        from = n;
        n = __atomic_load_n(&nd->next, __ATOMIC_RELAXED);
        if (!n)
            return false;                       /* the end: the general path says ENOENT */
        pos = 0;
    }
    return false;
}

/* cursor_step_inline in one optimistic read (seg_fast_read_begin). False
   when it does not apply or raced: the general path then runs with
   seg_read_begin. */
static bool cursor_step_fast(mseg *s, struct mseg_cursor *c)
{
    uint64_t seq;
    struct step st;
    if (!seg_fast_read_begin(s, &seq) || !cursor_step_inline(s, c, &st) || !seg_fast_read_end(s, seq))
        return false;
    c->key = st.key;
    c->val = st.val;
    c->klen = 8;
    c->vlen = st.vlen;
    c->priv[0] = st.leaf;
    c->priv[1] = cursor_word(st.pos, CURSOR_STAMP(c));
    c->priv[3] = cursor_check_word(s, st.leaf, c->priv[2]);
    return true;
}

/* mseg_map_first, _seek and _next read optimistically and retry when a
   writer raced them (MAP_READ), so each attempt fills a copy of the
   cursor, and c takes the copy only once a read validated: an attempt
   that raced must neither reach the caller nor be the next attempt's
   starting point (one that stepped from a cursor an earlier raced attempt
   had already moved skipped an entry). */
int mseg_map_next(mseg *s, struct mseg_cursor *c)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle");
    if (!c || c->priv[3] != cursor_check_word(s, c->priv[0], c->priv[2]))
        return fail(EINVAL, "segment %s: map next: the cursor was not set by mseg_map_first or mseg_map_seek "
                    "on this segment", s->name);
    if (cursor_step_fast(s, c))
        return 0;
    struct map_view m;
    struct mseg_cursor out;
    int rc;
    const mseg_map *mp = (const mseg_map *)(s->base + c->priv[2]);
    MAP_READ(s, mp, m, rc, {
        out = *c;
        if (cursor_stamp(s, &m) != CURSOR_STAMP(c))
            rc = fail(ESTALE, "segment %s: map at %#llx changed since the cursor was positioned (here or in "
                      "another process); seek again", s->name, (unsigned long long)m.off);
        else
            rc = cursor_settle(s, &m, &out, c->priv[0], CURSOR_POS(c) + 1, true);
    });
    if (rc == 0)
        *c = out;
    return rc;
}

/* ---- check ---- */

struct chk {
    mseg *s;
    const struct map_view *m;
    char *why;
    size_t whylen;
    uint64_t entries, leaves, last_leaf;
    uint64_t *owned;             /* owning maps: the containers met so far (NULL: no memory for them) */
    uint64_t owned_n, owned_cap;
    unsigned depth;              /* 0 for a named map, 1 for the containers it owns, ... */
    struct blockset *blocks;     /* every block owned so far, in this map and elsewhere (blockset.c) */
};

static int chk_fail(struct chk *c, const char *msg, uint64_t n)
{
    snprintf(c->why, c->whylen, "map at %#llx: node %#llx: %s", (unsigned long long)c->m->off,
             (unsigned long long)n, msg);
    errno = EUCLEAN;
    return -1;
}

/* Records block b as this map's (a node, a cell); -1 if another structure owns it. */
static int chk_own(struct chk *c, uint64_t b)
{
    return blockset_own(c->blocks, b, c->m->off | BLOCK_BY_MAP, c->why, c->whylen);
}

/* Key words of e[0..cnt) (from `from`) strictly ascending and within [lo, hi). */
static int chk_keys(struct chk *c, uint64_t n, const struct ent *e, unsigned cnt, unsigned from,
                    const uint64_t *lo, const uint64_t *hi)
{
    bool bad = false;
    struct mkey k;
    for (unsigned i = from; i < cnt; i++) {
        if (key_of_word(c->s, c->m, e[i].kw, &k))
            return chk_fail(c, "a key cell is damaged", n);
        if (i > from && key_cmp(c->s, c->m, e[i - 1].kw, &k, &bad) >= 0)
            return chk_fail(c, "keys out of order", n);
        if (lo && key_cmp(c->s, c->m, *lo, &k, &bad) > 0)
            return chk_fail(c, "a key below its separator", n);
        if (hi && key_cmp(c->s, c->m, *hi, &k, &bad) <= 0)
            return chk_fail(c, "a key at or above the next separator", n);
        if (bad)
            return chk_fail(c, "a key cell is damaged", n);
    }
    return 0;
}

/* The node's perm lists distinct slots. */
static int chk_perm(struct chk *c, uint64_t n, unsigned cnt)
{
    const struct mseg_map_node *nd = node_at(c->s, n);
    const uint8_t *perm = nd->perm[st_live(node_state(c->s, n))];
    uint64_t seen = 0;
    for (unsigned i = 0; i < cnt; i++) {
        if (perm[i] >= FAN || (seen & (1ull << perm[i])))
            return chk_fail(c, "its order array repeats or overruns a slot", n);
        seen |= 1ull << perm[i];
    }
    return 0;
}

/* An owning map's value v (0: none) is an anonymous container whose owner
   record names this map, or names none (written before the record existed).
   A container held by entries of two maps cannot name both, so when both
   maps are checked, one of them reports it; two entries of one map:
   chk_owned_once. */
static int chk_owned(struct chk *c, uint64_t n, uint64_t v)
{
    if (!v)
        return 0;
    if (container_root_kind(c->s, v) < 0)
        return chk_fail(c, "an owned value is not an anonymous container", n);
    uint64_t owner = owner_of(c->s, v);
    if (owner && owner != c->m->off) {
        snprintf(c->why, c->whylen, "map at %#llx: node %#llx: owned container %#llx records the map at %#llx "
                 "as its owner", (unsigned long long)c->m->off, (unsigned long long)n, (unsigned long long)v,
                 (unsigned long long)owner);
        errno = EUCLEAN;
        return -1;
    }
    if (c->owned && c->owned_n < c->owned_cap)
        c->owned[c->owned_n++] = v;
    return 0;
}

/* A map that does not own containers, with 8-byte values: value v must not
   be a container whose owner record names this map. Only a put into an
   owning map writes an owner record, and only the entry's delete clears
   it, so such a container means the map lost its MSEG_OWNED flag: its
   entries would no longer free what they own, and a delete of the map
   would leak them all. (A program's own offsets of containers, stored as
   plain values, name no owner or another map.) */
static int chk_not_an_owner(struct chk *c, uint64_t n, uint64_t v)
{
    if (v % MSEG_GRANULE || v < MSEG_HEAP_OFF || !seg_range_ok(c->s, v, 8))
        return 0;
    uint32_t magic = op_peek32(c->s, v);   /* most values name no container: one read tells */
    if ((magic != MSEG_VEC_MAGIC && magic != MSEG_MAP_MAGIC) || container_root_kind(c->s, v) < 0 ||
        owner_of(c->s, v) != c->m->off)
        return 0;
    snprintf(c->why, c->whylen, "map at %#llx: node %#llx: container %#llx records this map as its owner, but "
             "the map is not an owning one (its MSEG_OWNED flag is lost)", (unsigned long long)c->m->off,
             (unsigned long long)n, (unsigned long long)v);
    errno = EUCLEAN;
    return -1;
}

static int off_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* No container is held by two entries of the map: each would free it. */
static int chk_owned_once(struct chk *c)
{
    if (!c->owned)
        return 0;
    qsort(c->owned, c->owned_n, sizeof *c->owned, off_cmp);
    for (uint64_t i = 1; i < c->owned_n; i++) {
        if (c->owned[i] != c->owned[i - 1])
            continue;
        snprintf(c->why, c->whylen, "map at %#llx: owned container %#llx is held by two entries",
                 (unsigned long long)c->m->off, (unsigned long long)c->owned[i]);
        errno = EUCLEAN;
        return -1;
    }
    return 0;
}

/* Checks a leaf's values and its place in the leaf chain. */
static int chk_leaf(struct chk *c, uint64_t n, const struct ent *e, unsigned cnt)
{
    bool may_hold_offsets = !(c->m->flags & MSEG_MAP_OWNED) && c->m->val_size == sizeof(mseg_off);
    /* chk_not_an_owner reads the first word of the block each value may
       name: a miss each, which a leaf's values take in parallel this way.
       mseg_verify of a map of 1M offsets of live blocks: 31-33 ms without
       the test, 157 ms with it read value by value through container_root_kind,
       35-37 ms prefetched and filtered on the magic (best of 5, 3 runs) */
    for (unsigned i = 0; may_hold_offsets && i < cnt; i++)
        if (e[i].vw % MSEG_GRANULE == 0 && e[i].vw >= MSEG_HEAP_OFF && seg_range_ok(c->s, e[i].vw, 8))
            __builtin_prefetch(c->s->base + e[i].vw);
    for (unsigned i = 0; i < cnt; i++) {
        size_t vlen;
        if ((c->m->flags & MSEG_MAP_OWNED) && chk_owned(c, n, e[i].vw))
            return -1;
        if (may_hold_offsets && chk_not_an_owner(c, n, e[i].vw))
            return -1;
        if (!val_inline(c->m) && !(c->m->flags & MSEG_MAP_OWNED)) {
            if (!heap_block_is_live(c->s, e[i].vw) || !val_get(c->s, c->m, n, (unsigned)e[i].slot, &vlen))
                return chk_fail(c, "a value cell is damaged", n);
            if (chk_own(c, e[i].vw))
                return -1;
        }
        if (c->m->kind == MSEG_KEY_BYTES && !heap_block_is_live(c->s, e[i].kw))
            return chk_fail(c, "a key cell is not a live block", n);
        if (c->m->kind == MSEG_KEY_BYTES && chk_own(c, e[i].kw))
            return -1;
    }
    if (node_prev(c->s, n) != c->last_leaf)
        return chk_fail(c, "its prev link does not lead to the leaf before it", n);
    if (c->last_leaf && node_next(c->s, c->last_leaf) != n)
        return chk_fail(c, "the leaf before it does not link to it", n);
    c->last_leaf = n;
    c->leaves++;
    c->entries += cnt;
    return 0;
}

static int chk_node(struct chk *c, uint64_t n, unsigned level, const uint64_t *lo, const uint64_t *hi)
{
    unsigned cnt;
    struct ent e[FAN];
    if (node_check(c->s, n, level, &cnt)) {
        snprintf(c->why, c->whylen, "%s", mseg_errmsg());
        return -1;
    }
    if (cnt == 0)
        return chk_fail(c, "empty", n);
    if (chk_perm(c, n, cnt) || chk_own(c, n))
        return -1;
    node_read(c->s, n, e);
    if (chk_keys(c, n, e, cnt, level ? 1 : 0, lo, hi))
        return -1;
    /* byte keys: every key word of every level is a cell the map frees
       (subtree_free), an internal node's placeholder entry 0 too when set;
       chk_leaf records a leaf's once it has found them live */
    for (unsigned i = 0; level > 0 && c->m->kind == MSEG_KEY_BYTES && i < cnt; i++)
        if (e[i].kw && chk_own(c, e[i].kw))
            return -1;
    if (level == 0)
        return chk_leaf(c, n, e, cnt);
    for (unsigned i = 0; i < cnt; i++) {
        const uint64_t *clo = i ? &e[i].kw : lo, *chi = i + 1 < cnt ? &e[i + 1].kw : hi;
        if (chk_node(c, e[i].vw, level - 1, clo, chi))
            return -1;
    }
    return 0;
}

static int map_check_at(mseg *s, uint64_t root, unsigned depth, struct blockset *blocks, char *why,
                        size_t whylen);

/* Checks each container the map owns as a named one is checked, once
   chk_owned_once has found each held only once: with every container
   owned by one entry of one map (chk_owned), the walk visits a tree, each
   container once. Owner records of 0 (segments from before the record)
   can make it a graph: a container met a second time, through entries of
   two maps or a loop, is reported rather than checked again, or the walk
   would take time exponential in the depth (F entries per map over 16
   levels visit F^16 containers). Deeper than NEST_MAX levels is reported
   too: a delete stops there. */
static int chk_descend(struct chk *c)
{
    for (uint64_t i = 0; i < c->owned_n; i++) {
        uint64_t v = c->owned[i];
        char inner[200];
        int rc;
        uint64_t first;
        int again = blockset_add(c->blocks, v, c->m->off | BLOCK_BY_MAP, &first);
        if (again < 0)
            return 0;   /* no memory to tell a graph from a tree: check no deeper (as c->owned) */
        if (again) {
            /* held by entries of two maps, or in a cycle, or by another structure */
            blockset_describe(inner, sizeof inner, v, first, c->m->off | BLOCK_BY_MAP);
            rc = -1;
        } else if (c->depth + 1 > NEST_MAX) {
            snprintf(inner, sizeof inner, "containers nested more than %u deep (a cycle?)", NEST_MAX);
            rc = -1;
        } else if (container_root_kind(c->s, v) == MSEG_KIND_VEC) {
            rc = vec_check_in(c->s, v, c->blocks, inner, sizeof inner);
        } else {
            rc = map_check_at(c->s, v, c->depth + 1, c->blocks, inner, sizeof inner);
        }
        if (rc) {
            /* the named map's level names the chain's top; the levels below
               pass the innermost problem up as it is, so it fits */
            if (c->depth == 0)
                snprintf(c->why, c->whylen, "map at %#llx: in owned container %#llx or below: %s",
                         (unsigned long long)c->m->off, (unsigned long long)v, inner);
            else
                snprintf(c->why, c->whylen, "%s", inner);
            errno = EUCLEAN;
            return -1;
        }
    }
    return 0;
}

/* map_check's walk of the tree, its counts and its owned containers. */
static int map_check_walk(struct chk *c)
{
    const struct map_view *m = c->m;
    if (m->root && chk_node(c, m->root, (unsigned)m->height - 1, NULL, NULL))
        return -1;
    if (c->last_leaf && node_next(c->s, c->last_leaf) != 0)
        return chk_fail(c, "the last leaf links past the end", c->last_leaf);
    if (c->entries != m->count) {
        snprintf(c->why, c->whylen, "map at %#llx: counts %llu entries, its leaves hold %llu",
                 (unsigned long long)m->off, (unsigned long long)m->count, (unsigned long long)c->entries);
        errno = EUCLEAN;
        return -1;
    }
    return chk_owned_once(c) ? -1 : chk_descend(c);
}

int map_check(mseg *s, uint64_t root, char *why, size_t whylen)
{
    struct blockset blocks;
    blockset_init(&blocks, 0);
    int rc = map_check_at(s, root, 0, &blocks, why, whylen);
    int e = errno;
    blockset_free(&blocks);
    errno = e;
    return rc;
}

int map_check_in(mseg *s, uint64_t root, struct blockset *blocks, char *why, size_t whylen)
{
    if (!blocks)
        return map_check(s, root, why, whylen);
    return map_check_at(s, root, 0, blocks, why, whylen);
}

static int map_check_at(mseg *s, uint64_t root, unsigned depth, struct blockset *blocks, char *why,
                        size_t whylen)
{
    struct map_view m;
    if (!seg_range_ok(s, root, sizeof(struct mseg_map_root)) ||
        op_peek32(s, root + MROOT(magic)) != MSEG_MAP_MAGIC || map_load(s, root, &m)) {
        snprintf(why, whylen, "map at %#llx: bad root", (unsigned long long)root);
        errno = EUCLEAN;
        return -1;
    }
    struct chk c = { s, &m, why, whylen, 0, 0, 0, NULL, 0, 0, depth, blocks };
    /* every entry takes 16 bytes of a node: a larger count is damage, which
       the walk reports */
    if ((m.flags & MSEG_MAP_OWNED) && m.count && m.count <= s->size / 16) {
        c.owned = malloc(m.count * sizeof *c.owned);
        c.owned_cap = c.owned ? m.count : 0;
    }
    int rc = map_check_walk(&c);
    free(c.owned);
    return rc;
}
