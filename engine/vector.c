/*
 * vector.c - mseg_vec: a growable array in the segment.
 *
 * Format: see layout.h ("Vectors"). A root (magic, elem_size, len, cap,
 * buf) and one heap block holding cap elements.
 *
 * Every writing call is one engine operation (seg_write_begin/end), so it
 * happens completely or not at all. What each one logs:
 *   - push into spare capacity, without MSEG_DURABLE and outside a
 *     transaction: nothing (vec_push_in_place): under the lock the element
 *     is stored into the unreachable slot, then len with one aligned 8-byte
 *     store, which a process crash cannot tear;
 *   - push into spare capacity otherwise: the element is stored in place
 *     (the slot at index >= the committed length is unreachable in the
 *     committed state), and one record, len;
 *   - growth: outside a transaction, when the block after the buffer is
 *     free, the buffer grows in place (heap_expand; the free block's header,
 *     which a rollback's heap walk still needs, is written through the log,
 *     never in place) and cap is logged; inside one (see vec_grow_to), or
 *     otherwise, a new block is allocated, the elements copied into
 *     it in place (it is fresh), then buf, cap and len are logged and the old
 *     block freed; a crash leaves the old buffer or the new one, never half;
 *   - pop: one record, len.
 * "Unreachable" is judged against the committed state, i.e. the root as
 * stored in memory, not as the operation sees it: inside a transaction an
 * earlier pop (or shrinking resize) may have logged a smaller len while the
 * committed state still holds that element, which an abort or a crash must
 * find again. A store there (a push or a growing resize after the pop) can
 * neither go in place nor only into the log, or mseg_vec_at and
 * mseg_vec_data would show the committed element until the commit; so the
 * call first moves the elements, as the transaction sees them, to a fresh
 * block of the same capacity (vec_detach: the root's switch is logged, the
 * old block freed at the commit) and stores in place there. That costs one
 * copy of the vector per transaction (its later stores hit the fresh block),
 * and in a full segment, where no copy fits, the call fails with ENOMEM and
 * changes nothing. So a store in the committed buffer lies past the
 * committed elements and goes in place, even into the word that ends the
 * last committed element: no record covers that word (a record keeps the
 * word's other bytes as they were when it was made, so a later in-place
 * change of those bytes, a push's or one the program declared with
 * mseg_tx_add, would be put back at the commit). The one record left in
 * the buffer's stores is over the kept header word of a block an expansion
 * took over, which happens only outside a transaction, inside the one call
 * that expanded (committed_header_in finds it).
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "inspect.h"
#include "internal.h"

#define ROOT(field) offsetof(struct mseg_vec_root, field)
#define VEC_MIN_CAP      4u

/* The root as the current operation sees it. */
struct vec_view {
    uint64_t root, elem_size, len, cap, buf;
};

/* ---- validation ---- */

/* Offset of the root a handle points at, if it looks like a vector root. */
static uint64_t vec_root_of(mseg *s, const mseg_vec *v)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle"), 0;
    uintptr_t p = (uintptr_t)v, b = (uintptr_t)s->base;
    if (!v || p < b || p % 16 || !seg_range_ok(s, p - b, sizeof(struct mseg_vec_root)) ||
        p - b < MSEG_HEAP_OFF)
        return fail(EINVAL, "segment %s: %p is not a vector handle of this segment", s->name, (const void *)v), 0;
    uint64_t off = p - b;
    /* frees wait for the commit, so a vector this transaction deleted still
       has its magic; outside a transaction it has none. Asked before the
       magic: a named one's magic is cleared by its destroy's own records,
       and the caller is told why */
    if (deleted_in_this_tx(s, off, MSEG_VEC_MAGIC))
        return fail(EINVAL, "segment %s: the vector at %#llx was deleted earlier in this transaction", s->name,
                    (unsigned long long)off), 0;
    if (op_peek32(s, off + ROOT(magic)) != MSEG_VEC_MAGIC)
        return fail(EINVAL, "segment %s: %#llx is not a vector: it holds %s", s->name, (unsigned long long)off,
                    container_at(s, off + ROOT(magic))), 0;
    return off;
}

/* Reads and validates the root at off in the operation's view. */
static int vec_load(mseg *s, uint64_t off, struct vec_view *w)
{
    w->root = off;
    w->elem_size = op_peek64(s, off + ROOT(elem_size));
    w->len = op_peek64(s, off + ROOT(len));
    w->cap = op_peek64(s, off + ROOT(cap));
    w->buf = op_peek64(s, off + ROOT(buf));
    if (w->elem_size == 0 || w->elem_size > MSEG_BLOCK_MAX || w->len > w->cap ||
        (w->cap && w->cap > MSEG_BLOCK_MAX / w->elem_size))
        return fail(EUCLEAN, "segment %s: vector at %#llx is damaged (elem_size %llu, len %llu, cap %llu)",
                    s->name, (unsigned long long)off, (unsigned long long)w->elem_size,
                    (unsigned long long)w->len, (unsigned long long)w->cap);
    if (w->cap == 0 && w->buf == 0)
        return 0;
    if (!heap_block_is_live(s, w->buf) || heap_block_size(s, w->buf) - 4 < w->cap * w->elem_size)
        return fail(EUCLEAN, "segment %s: vector at %#llx has a buffer %#llx that is not a live block of %llu bytes",
                    s->name, (unsigned long long)off, (unsigned long long)w->buf,
                    (unsigned long long)(w->cap * w->elem_size));
    return 0;
}

bool vec_root_sound(mseg *s, uint64_t off)
{
    struct vec_view w;
    int e = errno;
    bool sound = vec_load(s, off, &w) == 0;
    errno = e;
    return sound;
}

/* Validates the handle and loads its root. */
static int vec_open_view(mseg *s, const mseg_vec *v, struct vec_view *w)
{
    uint64_t off = vec_root_of(s, v);
    return off ? vec_load(s, off, w) : -1;
}

/* ---- storing elements ---- */

/* Copies n bytes at src_off, as the operation sees them, to dst. Outside a
   transaction the pending records are this call's own allocator records,
   which never fall inside a live block's usable bytes: a plain copy. */
static void view_copy(mseg *s, uint8_t *dst, uint64_t src_off, uint64_t n)
{
    if (!s->op.count || !tx_owns(s)) {
        memcpy(dst, s->base + src_off, n);
        return;
    }
    /* read aligned 4-byte words, the bytes before the first one too: an
       element of a size that is not a multiple of 4 may start inside a
       word the operation logged (a kept header word of a block an
       expansion in place took over), which memory still shows stale */
    uint64_t i = 0;
    for (; i < n && (src_off + i) % 4; i++) {
        uint64_t at = src_off + i;
        dst[i] = (uint8_t)(op_get32(s, at & ~(uint64_t)3) >> (8 * (at % 4)));
    }
    for (; i + 4 <= n; i += 4) {
        uint32_t w = op_get32(s, src_off + i);
        memcpy(dst + i, &w, 4);
    }
    if (i < n) {
        uint32_t w = op_get32(s, src_off + i);
        memcpy(dst + i, &w, n - i);
    }
}

/* Whether the buffer is one this operation (or transaction) allocated:
   the root as stored in memory, the committed state, has another. */
static bool buffer_is_fresh(mseg *s, const struct vec_view *w)
{
    return ((const struct mseg_vec_root *)(s->base + w->root))->buf != w->buf;
}

/* Bytes of the buffer the committed state reaches, i.e. its elements (the
   root as stored in memory): 0 for a buffer of this operation (fresh),
   UINT64_MAX when it cannot tell. */
static uint64_t committed_bytes(mseg *s, const struct vec_view *w)
{
    const struct mseg_vec_root *mem = (const void *)(s->base + w->root);
    if (buffer_is_fresh(s, w))
        return 0;
    if (mem->len > w->cap)
        return UINT64_MAX;
    return mem->len * w->elem_size;
}

/* Whether the bytes [at, at+n) of the buffer hold committed elements: a
   transaction's popped ones, which an abort or a crash must find again. */
static bool hits_committed_elements(mseg *s, const struct vec_view *w, uint64_t at, uint64_t n)
{
    return n && at < committed_bytes(s, w);
}

/* Of the bytes [at, at+n) of the buffer, how many (a prefix) must be logged
   rather than only stored in place: those in the committed elements' words. */
static uint64_t committed_overlap(mseg *s, const struct vec_view *w, uint64_t at, uint64_t n)
{
    uint64_t reach = committed_bytes(s, w);
    if (reach == UINT64_MAX)
        return n;                       /* cannot tell: log it all */
    /* Not rounded up to the word: stores below the committed length move
       the elements first (vec_detach), so the word that ends the last
       committed element gets no record here, and the bytes past the
       elements go in place. Rounded (c3557dd, from before vec_detach), the
       push's bytes in that word went into a record that also held the
       word's other bytes as they were at the push: a change the program
       then made there with mseg_tx_add (to the pushed element, or to a
       1-byte committed neighbour) was put back at the commit. */
    if (at >= reach)
        return 0;
    return reach - at < n ? reach - at : n;
}

/* The next header word the committed state keeps inside the buffer at or
   after byte `from`, as a byte index of the buffer; UINT64_MAX if none. An
   expansion in place (heap_expand) makes the buffer cover the free block
   after it, whose header stays in memory until commit: a rollback (and the
   rebuild after a crash) walks the committed headers, so that word must be
   logged, never stored over in place. Walks the committed headers (as
   memory holds them, or an undo record where mseg_tx_add let the program
   store over one), from the buffer's own, bounded by the buffer. */
static uint64_t committed_header_in(mseg *s, const struct vec_view *w, uint64_t from)
{
    /* a buffer this operation allocated holds no committed header: what
       memory shows in front of it and inside it is a free block's stale
       bytes, whose walk found "headers" and logged elements' bytes there
       (reads inside the transaction saw the stale words, and the program's
       own stores to them were put back at the commit) */
    if (buffer_is_fresh(s, w))
        return UINT64_MAX;
    uint64_t usable = w->cap * w->elem_size, end = 0;
    for (unsigned guard = 0; guard < 64; guard++) {
        if (!seg_range_ok(s, w->buf + end - 4, 4))
            return UINT64_MAX;
        uint32_t h;   /* through the undo records: mseg_tx_add may have stored over it */
        op_committed_bytes(s, w->buf + end - 4, &h, 4);
        uint64_t size = (uint64_t)(h >> 2) * MSEG_GRANULE;
        if (size < MSEG_BLOCK_MIN)
            return UINT64_MAX;
        end += size;
        if (end - 4 >= usable)
            return UINT64_MAX;
        if (end - 4 + 4 > from)
            return end - 4;
    }
    return UINT64_MAX;
}

/* Logs n bytes (src, or zeros when src is NULL) at off. */
static void vec_log_bytes(mseg *s, uint64_t off, const void *src, uint64_t n)
{
    static const uint8_t zero[64];
    if (src) {
        op_write_bytes(s, off, src, n);
        return;
    }
    for (uint64_t k; n; off += k, n -= k) {
        k = n < sizeof zero ? n : sizeof zero;
        op_write_bytes(s, off, zero, k);
    }
}

/* Stores n bytes (src, or zeros when src is NULL) at byte at of the buffer:
   in place where the committed state cannot reach, logged where it can
   (the words of elements below the committed length, and header words of
   blocks an expansion took over). Bytes past the committed elements are
   stored in place even in a logged word, so that reads see them before the
   commit (the record holds the same bytes); the caller has moved the
   elements to a fresh block before a store over committed ones. */
static void vec_store(mseg *s, const struct vec_view *w, uint64_t at, const void *src, uint64_t n)
{
    uint64_t logged = committed_overlap(s, w, at, n), reach = committed_bytes(s, w);
    uint64_t logged_end = at + logged, stop = at + n;
    if (logged)
        vec_log_bytes(s, w->buf + at, src, logged);
    uint64_t pos = reach < at ? at : reach < logged_end ? reach : logged_end;
    while (pos < stop) {
        uint64_t hole = committed_header_in(s, w, pos);
        uint64_t upto = hole < stop ? (hole > pos ? hole : pos) : stop;
        uint8_t *dst = s->base + w->buf + pos;
        if (src)
            memcpy(dst, (const uint8_t *)src + (pos - at), upto - pos);
        else
            memset(dst, 0, upto - pos);
        uint64_t fresh = pos > logged_end ? pos : logged_end;   /* a logged word's bytes are in a record */
        if (upto > fresh)
            op_fresh(s, w->buf + fresh, upto - fresh);
        pos = upto;
        if (pos < stop) {               /* the header word: through the log, once */
            uint64_t k = stop - pos < 4 - (pos - hole) ? stop - pos : 4 - (pos - hole);
            if (pos >= logged_end)
                vec_log_bytes(s, w->buf + pos, src ? (const uint8_t *)src + (pos - at) : NULL, k);
            pos += k;
        }
    }
}

/* Moves the elements to a fresh block of cap elements (cap >= len) and logs
   the switch; the old block is freed. */
static int vec_relocate(mseg *s, struct vec_view *w, uint64_t cap)
{
    if (cap > (MSEG_BLOCK_MAX - 4) / w->elem_size)
        return fail(ENOMEM, "segment %s: vector at %#llx: %llu elements of %llu bytes are larger than the largest "
                    "block", s->name, (unsigned long long)w->root, (unsigned long long)cap,
                    (unsigned long long)w->elem_size);
    uint64_t bytes = cap * w->elem_size;
    uint64_t nbuf = heap_alloc(s, bytes, MSEG_GRANULE);
    if (!nbuf)
        return fail_no_room("segment %s: vector at %#llx: no room to grow to %llu elements (%llu bytes)", s->name,
                            (unsigned long long)w->root, (unsigned long long)cap, (unsigned long long)bytes);
    uint64_t used = w->len * w->elem_size;
    if (used)
        view_copy(s, s->base + nbuf, w->buf, used);
    op_fresh(s, nbuf, used);
    if (w->buf && heap_free(s, w->buf))
        return -1;
    op_set64(s, w->root + ROOT(buf), nbuf);
    op_set64(s, w->root + ROOT(cap), cap);
    w->buf = nbuf;
    w->cap = cap;
    return 0;
}

/* Moves the elements to a fresh block of cap elements before a store over
   elements the committed state still holds (a transaction's popped ones):
   stored in place there, they would be lost to an abort or a crash; logged,
   reads would show the committed ones until the commit. Later stores of the
   transaction go in place into the fresh block. `what` names the call for
   the error in a full segment. */
static int vec_detach(mseg *s, struct vec_view *w, uint64_t cap, const char *what)
{
    int rc = vec_relocate(s, w, cap);
    if (!rc || cap > (MSEG_BLOCK_MAX - 4) / w->elem_size)   /* done, or too large for any block */
        return rc;
    return fail_no_room("segment %s: vector at %#llx: a %s the transaction popped needs room for a copy of the "
                        "vector's buffer (%llu bytes), and there is none", s->name, (unsigned long long)w->root, what,
                        (unsigned long long)(cap * w->elem_size));
}

/* Gives the buffer room for exactly cap elements (cap > w->cap): in place
   when the block after the buffer is free (no copy, and no second set of
   pages touched: the elements stay where they are), else in a new block. */
static int vec_grow_to(mseg *s, struct vec_view *w, uint64_t cap)
{
    /* Not in place inside a transaction: the free block taken over keeps its
       header in memory until the commit (an abort's heap walk needs it), at
       a word the program may write before then, through mseg_vec_data or
       mseg_vec_at, as it may any element the transaction made. Overwritten,
       an abort or a crash found a broken heap (the segment would not open
       again). A fresh block has no such word, and the old one is freed at
       the commit. */
    if (w->buf && !tx_owns(s) && cap <= (MSEG_BLOCK_MAX - 4) / w->elem_size &&
        heap_expand(s, w->buf, cap * w->elem_size)) {
        op_set64(s, w->root + ROOT(cap), cap);
        w->cap = cap;
        return 0;
    }
    return vec_relocate(s, w, cap);
}

/* Makes room for `want` elements, growing geometrically; when the doubled
   capacity does not fit (a full segment), for exactly `want`: a push must
   not fail with ENOMEM while the free block after the buffer, or another
   one, can hold the element. A failed attempt changes nothing. */
static int vec_grow_for(mseg *s, struct vec_view *w, uint64_t want)
{
    if (want <= w->cap)
        return 0;
    uint64_t cap = w->cap < VEC_MIN_CAP ? VEC_MIN_CAP : w->cap;
    while (cap < want && cap <= UINT64_MAX / 2)
        cap *= 2;
    if (cap < want)
        cap = want;
    int rc = vec_grow_to(s, w, cap);
    if (rc && room_ran_out(errno) && cap > want)
        rc = vec_grow_to(s, w, want);
    return rc;
}

static void vec_set_len(mseg *s, struct vec_view *w, uint64_t len)
{
    op_set64(s, w->root + ROOT(len), len);
    w->len = len;
}

/* ---- running an operation ---- */

/* Ends a writing call: commits on rc == 0, keeps the first error's errno. */
static int vec_end(mseg *s, int rc)
{
    int e = errno;
    if (seg_write_end(s, rc == 0))
        return -1;
    errno = e;
    return rc;
}

/* ---- public API: creating and deleting ---- */

/* Writes a new root at off (fresh memory). */
static void vec_init_root(mseg *s, uint64_t off, size_t elem_size, uint32_t flags)
{
    struct mseg_vec_root r = { .magic = MSEG_VEC_MAGIC, .flags = flags, .elem_size = elem_size };
    memcpy(s->base + off, &r, sizeof r);
    op_fresh(s, off, sizeof r);
}

mseg_vec *mseg_vec_new(mseg *s, size_t elem_size)
{
    if (!s)
        return fail_null(EINVAL, "NULL segment handle");
    if (elem_size == 0 || elem_size > MSEG_BLOCK_MAX)
        return fail_null(EINVAL, "segment %s: new vector: element size %zu is 0 or larger than the largest block",
                         s->name, elem_size);
    if (seg_write_begin(s))
        return NULL;
    uint64_t off = heap_alloc(s, sizeof(struct mseg_vec_root), MSEG_GRANULE);
    if (!off) {
        fail_no_room("segment %s: no room for a vector", s->name);
        vec_end(s, -1);
        return NULL;
    }
    vec_init_root(s, off, elem_size, MSEG_VEC_ANON);
    if (vec_end(s, 0))
        return NULL;
    return (mseg_vec *)(s->base + off);
}

/* The named vector's root at off matches elem_size (EINVAL if not). */
static int vec_matches(mseg *s, const char *name, uint64_t off, size_t elem_size)
{
    if (op_peek32(s, off + ROOT(magic)) != MSEG_VEC_MAGIC)
        return fail(EUCLEAN, "segment %s: vector %s: root at %#llx is damaged", s->name, name,
                    (unsigned long long)off);
    if (op_peek64(s, off + ROOT(elem_size)) != elem_size)
        return fail(EINVAL, "segment %s: vector %s holds %llu-byte elements, not %zu-byte ones", s->name, name,
                    (unsigned long long)op_peek64(s, off + ROOT(elem_size)), elem_size);
    return 0;
}

/* Finds a named vector without creating it: a read, so it works on
   read-only handles too. */
static mseg_vec *vec_find(mseg *s, const char *name, size_t elem_size)
{
    uint64_t seq, off;
    int rc, e;
    do {
        if (seg_read_begin(s, &seq))
            return NULL;
        bool created;
        off = dir_open_kind(s, name, MSEG_KIND_VEC, "mseg_vec", sizeof(struct mseg_vec_root), false, &created);
        rc = off ? vec_matches(s, name, off, elem_size) : -1;
        e = errno;
    } while (!seg_read_end(s, seq));
    errno = e;
    return rc ? NULL : (mseg_vec *)(s->base + off);
}

mseg_vec *mseg_vec_open(mseg *s, const char *name, size_t elem_size, unsigned flags)
{
    if (!s)
        return fail_null(EINVAL, "NULL segment handle");
    if (elem_size == 0 || elem_size > MSEG_BLOCK_MAX)
        return fail_null(EINVAL, "segment %s: vector %s: element size %zu is 0 or larger than the largest block",
                         s->name, name ? name : "(null)", elem_size);
    if (flags & ~(unsigned)MSEG_CREATE)
        return fail_null(EINVAL, "segment %s: vector %s: unknown flags %#x (MSEG_CREATE is known)", s->name,
                         name ? name : "(null)", flags & ~(unsigned)MSEG_CREATE);
    if (!(flags & MSEG_CREATE))
        return vec_find(s, name, elem_size);
    if (s->mode == MODE_RDONLY)
        return seg_found_read_only(s, vec_find(s, name, elem_size), "create vector", name);
    if (seg_write_begin(s))
        return NULL;
    bool created;
    uint64_t off = dir_open_kind(s, name, MSEG_KIND_VEC, "mseg_vec", sizeof(struct mseg_vec_root),
                                 true, &created);
    int rc = off ? 0 : -1;
    if (off && created)
        vec_init_root(s, off, elem_size, 0);
    else if (off)
        rc = vec_matches(s, name, off, elem_size);
    if (vec_end(s, rc))
        return NULL;
    return (mseg_vec *)(s->base + off);
}

int vec_release(mseg *s, uint64_t root)
{
    struct vec_view w;
    if (vec_load(s, root, &w))
        return -1;
    if (w.buf && heap_free(s, w.buf))
        return -1;
    return 0;
}

int mseg_vec_delete(mseg *s, mseg_vec *v)
{
    if (seg_write_begin(s))
        return -1;
    uint64_t off = vec_root_of(s, v);
    int rc = -1;
    if (off && !(op_peek32(s, off + ROOT(flags)) & MSEG_VEC_ANON))
        fail(EINVAL, "segment %s: the vector at %#llx is named; destroy it with mseg_destroy",
             s->name, (unsigned long long)off);
    else if (off)
        rc = container_delete_anon(s, off);
    return vec_end(s, rc);
}

/* ---- public API: changing ---- */

/* Pushes ask the kernel to map the pages ahead of them a chunk at a time
   (MADV_POPULATE_WRITE, Linux 5.14): one call per VEC_PREFAULT bytes instead
   of a page fault per 4 KiB page as pushes reach them, which on the file
   backend costs more than the pushes themselves (scratch test, 10M pushes:
   80 MB populated in 0.06 s; pushes into populated pages 14.7M/s against
   11M/s). Only what the next pushes will fill, never the whole spare
   capacity (a doubled buffer is half empty). A hint only: no byte changes,
   errors are ignored, and it runs after the lock is released; the range may
   have been reused meanwhile, which is harmless while it is mapped. */
#define VEC_PREFAULT (2u << 20)
/* Populates the buffer's bytes [at, the next VEC_PREFAULT boundary), within
   its first `bytes` bytes. */
static void vec_prefault(mseg *s, uint64_t buf, uint64_t at, uint64_t bytes)
{
#ifdef MADV_POPULATE_WRITE
    uint64_t next = (at / VEC_PREFAULT + 1) * VEC_PREFAULT;
    uint64_t lo = buf + at, hi = buf + (next < bytes ? next : bytes);
    lo = (lo + MSEG_PAGE - 1) & ~(uint64_t)(MSEG_PAGE - 1);
    hi &= ~(uint64_t)(MSEG_PAGE - 1);
    if (s->mode != MODE_RW || hi <= lo || !seg_range_ok(s, lo, hi - lo))
        return;
    int e = errno;
    (void)madvise(s->base + lo, hi - lo, MADV_POPULATE_WRITE);
    errno = e;
#else
    (void)s, (void)buf, (void)at, (void)bytes;
#endif
}

/* The buffer of a root read from memory is a used block of the heap big
   enough for cap elements: the cheap half of vec_load's check, enough to
   keep a store inside a block whatever the root says. */
static bool vec_buf_sound(mseg *s, const struct mseg_vec_root *r)
{
    const struct mseg_control *c = seg_control(s);
    uint64_t buf = r->buf, ctrl_end = c->heap_end;
    if (buf % MSEG_GRANULE || buf < c->heap_start + MSEG_GRANULE || buf >= ctrl_end || ctrl_end > s->size)
        return false;
    uint32_t h = *(const uint32_t *)(s->base + buf - 4);
    uint64_t size = (uint64_t)(h >> 2) * MSEG_GRANULE;
    uint64_t bytes;
    return (h & MSEG_BLOCK_USED) && size >= MSEG_BLOCK_MIN && size <= ctrl_end - buf &&
           !__builtin_mul_overflow(r->cap, r->elem_size, &bytes) && bytes <= size - 4;
}

/*
 * The common push, done without the log: without MSEG_DURABLE, outside a
 * transaction, into spare capacity. Under the segment lock (so no operation
 * is running and memory holds the committed state), the slot at index len is
 * unreachable, so the element is stored there in place; then one aligned
 * 8-byte store of len (release: after the element) publishes it. A process
 * killed before that store leaves the old vector and a log with nothing to
 * do, after it the new vector; lock-free readers see one length or the
 * other. A power loss without MSEG_DURABLE promises what the log path does
 * (sync.c: sound structure; data since the last sync may be older): len <=
 * cap holds whatever pages reach the disk. Durable segments and
 * transactions take the logged path, which orders the flushes and can roll
 * back; so does anything unusual (growth, a damaged root: its error).
 * 1 done, 0 take the logged path, -1 failed (errno).
 */
static int vec_push_in_place(mseg *s, mseg_vec *v, const void *elem)
{
    if (!s || !elem || (s->flags & MSEG_DURABLE) || s->mode != MODE_RW || s->failed || tx_owns(s) ||
        tx_cancelled(s))
        return 0;
    uintptr_t p = (uintptr_t)v, b = (uintptr_t)s->base;
    if (!v || p < b || p % 16 || p - b < MSEG_HEAP_OFF)
        return 0;
    if (lock_for_write(s))
        return -1;
    if (!seg_range_ok(s, p - b, sizeof(struct mseg_vec_root))) {
        lock_release(s);
        return 0;
    }
    struct mseg_vec_root *r = (struct mseg_vec_root *)v;
    uint64_t len = r->len, es = r->elem_size;
    if (r->magic != MSEG_VEC_MAGIC || es == 0 || es > MSEG_BLOCK_MAX || len >= r->cap || !vec_buf_sound(s, r)) {
        lock_release(s);
        return 0;
    }
    uint8_t *slot = s->base + r->buf + len * es;
    if (es == 8)
        memcpy(slot, elem, 8);
    else
        memcpy(slot, elem, es);
    crash_point("vec.stored");
    __atomic_store_n(&r->len, len + 1, __ATOMIC_RELEASE);
    crash_point("vec.pushed");
    uint64_t at = (len + 1) * es, buf = r->buf, bytes = r->cap * es;
    lock_release(s);
    if (at / VEC_PREFAULT != (at - es) / VEC_PREFAULT)   /* entered a new chunk: map it whole */
        vec_prefault(s, buf, at / VEC_PREFAULT * VEC_PREFAULT, bytes);
    return 1;
}

int mseg_vec_push(mseg *s, mseg_vec *v, const void *elem)
{
    int fast = vec_push_in_place(s, v, elem);
    if (fast)
        return fast > 0 ? 0 : -1;
    if (seg_write_begin(s))
        return -1;
    struct vec_view w;
    int rc = vec_open_view(s, v, &w);
    if (!rc && !elem)
        rc = fail(EINVAL, "segment %s: vector at %#llx: push of a NULL element", s->name,
                  (unsigned long long)w.root);
    if (!rc && w.len == UINT64_MAX)
        rc = fail(ENOMEM, "segment %s: vector at %#llx is full", s->name, (unsigned long long)w.root);
    uint64_t old_cap = rc ? 0 : w.cap;
    if (!rc)
        rc = vec_grow_for(s, &w, w.len + 1);
    if (!rc && hits_committed_elements(s, &w, w.len * w.elem_size, w.elem_size))
        rc = vec_detach(s, &w, w.cap, "push into an element");
    if (!rc) {
        vec_store(s, &w, w.len * w.elem_size, elem, w.elem_size);
        vec_set_len(s, &w, w.len + 1);
    }
    bool grew = !rc && w.cap > old_cap;
    rc = vec_end(s, rc);
    if (!rc && grew)
        vec_prefault(s, w.buf, w.len * w.elem_size, w.cap * w.elem_size);
    return rc;
}

int mseg_vec_pop(mseg *s, mseg_vec *v, void *out)
{
    if (seg_write_begin(s))
        return -1;
    struct vec_view w;
    int rc = vec_open_view(s, v, &w);
    if (!rc && w.len == 0)
        rc = fail(ERANGE, "segment %s: vector at %#llx: pop of an empty vector", s->name, (unsigned long long)w.root);
    if (!rc) {
        if (out)
            view_copy(s, out, w.buf + (w.len - 1) * w.elem_size, w.elem_size);
        vec_set_len(s, &w, w.len - 1);
    }
    return vec_end(s, rc);
}

int mseg_vec_reserve(mseg *s, mseg_vec *v, size_t cap)
{
    if (seg_write_begin(s))
        return -1;
    struct vec_view w;
    int rc = vec_open_view(s, v, &w);
    if (!rc && cap > w.cap)
        rc = vec_grow_to(s, &w, cap);
    return vec_end(s, rc);
}

int mseg_vec_resize(mseg *s, mseg_vec *v, size_t len)
{
    if (seg_write_begin(s))
        return -1;
    struct vec_view w;
    int rc = vec_open_view(s, v, &w);
    if (!rc && len > w.len) {
        uint64_t at = w.len * w.elem_size, n = (len - w.len) * w.elem_size;
        /* one step that changes nothing when it fails: the copy is made at
           the size wanted, rather than growing in place and then copying */
        if (hits_committed_elements(s, &w, at, n))
            rc = vec_detach(s, &w, len > w.cap ? len : w.cap, "resize over elements");
        else if (len > w.cap)
            rc = vec_grow_to(s, &w, len);
        if (!rc)
            vec_store(s, &w, at, NULL, n);
    }
    if (!rc && len != w.len)
        vec_set_len(s, &w, len);
    return vec_end(s, rc);
}

/* ---- public API: reading ---- */

/* Runs the statements on a validated vector view (SEG_READ). */
#define VEC_READ(s, v, w, rc, ...) SEG_READ(s, rc, vec_open_view((s), (v), &(w)), __VA_ARGS__)

size_t mseg_vec_len(mseg *s, mseg_vec *v)
{
    struct vec_view w;
    int rc;
    size_t len = 0;
    VEC_READ(s, v, w, rc, { len = (size_t)w.len; });
    return rc ? 0 : len;
}

/* Element i of the vector w views, or NULL with ERANGE past its end. */
static void *vec_element(mseg *s, const struct vec_view *w, size_t i)
{
    if (i >= w->len)
        return fail_null(ERANGE, "segment %s: vector at %#llx: index %zu past the end (length %llu)", s->name,
                         (unsigned long long)w->root, i, (unsigned long long)w->len);
    return s->base + w->buf + i * w->elem_size;
}

void *mseg_vec_at(mseg *s, mseg_vec *v, size_t i)
{
    struct vec_view w;
    int rc;
    void *p = NULL;
    VEC_READ(s, v, w, rc, {
        if (!(p = vec_element(s, &w, i)))
            rc = -1;
    });
    return rc ? NULL : p;
}

/* inspect.h. The copy is part of the read: a writer's change meanwhile (a
   pop, then a push that stores the new element in the same place) makes
   it retry, where a copy through mseg_vec_at's pointer, after its read,
   could come out half old, half new. */
int inspect_vec_copy(mseg *s, mseg_vec *v, size_t i, void *out, size_t n)
{
    struct vec_view w;
    int rc;
    VEC_READ(s, v, w, rc, {
        const void *p;
        if (w.elem_size != n)
            rc = fail(EINVAL, "segment %s: vector at %#llx: elements of %llu bytes, not %zu", s->name,
                      (unsigned long long)w.root, (unsigned long long)w.elem_size, n);
        else if (!(p = vec_element(s, &w, i)))
            rc = -1;
        else
            memcpy(out, p, n);
    });
    return rc;
}

void *mseg_vec_data(mseg *s, mseg_vec *v)
{
    struct vec_view w;
    int rc;
    void *p = NULL;
    VEC_READ(s, v, w, rc, { p = w.buf ? s->base + w.buf : NULL; });
    if (!rc && !p)
        errno = 0;        /* no buffer yet: NULL is not an error */
    return rc ? NULL : p;
}

/* ---- check ---- */

int vec_check_in(mseg *s, uint64_t root, struct blockset *owned, char *why, size_t whylen)
{
    struct vec_view w;
    if (op_peek32(s, root + ROOT(magic)) != MSEG_VEC_MAGIC || vec_load(s, root, &w)) {
        if (op_peek32(s, root + ROOT(magic)) != MSEG_VEC_MAGIC)
            fail(EUCLEAN, "vector at %#llx: bad magic", (unsigned long long)root);
        snprintf(why, whylen, "%s", mseg_errmsg());
        errno = EUCLEAN;
        return -1;
    }
    if (w.cap == 0 && w.len == 0)
        return w.buf ? blockset_own(owned, w.buf, root | BLOCK_BY_VECTOR, why, whylen) : 0;
    if (!w.buf) {
        snprintf(why, whylen, "vector at %#llx: capacity %llu but no buffer",
                 (unsigned long long)root, (unsigned long long)w.cap);
        errno = EUCLEAN;
        return -1;
    }
    return blockset_own(owned, w.buf, root | BLOCK_BY_VECTOR, why, whylen);
}

int vec_check(mseg *s, uint64_t root, char *why, size_t whylen)
{
    return vec_check_in(s, root, NULL, why, whylen);
}
