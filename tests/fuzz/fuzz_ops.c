/*
 * fuzz_ops.c - libFuzzer target: a segment image plus a script of
 * operations run on it read-write (the open runs recovery).
 *
 * Input: byte 0 = L, bytes 1..L = the script, the rest = the image. Each
 * script step is an opcode byte and two argument bytes. Whatever the image
 * holds, every operation must fail cleanly or succeed, and a block handed
 * out must be writable in full (writing it must stay inside the mapping).
 * Opcodes (mod 18): raw alloc/free, named objects, foreach, verify, reopen,
 * a u64 map (put, delete, seek and walk), a u32 vector (push, pop), and a
 * transaction of an allocation and a construct, committed or aborted.
 */
#include "fuzz_common.h"

#define FZ_SLOTS 16

struct fz_ops_ctx {
    char path[64];
    mseg *s;
    void *live[FZ_SLOTS];
};

static const char *fz_ops_name(unsigned i)
{
    static const char *names[] = { "one", "two", "three", "a", "b", "objet", "x/y", "zz" };
    return names[i % 8];
}

static int fz_ops_visit(const struct mseg_named *n, void *arg)
{
    (void)n;
    return *(int *)arg && n->count > 1000000 ? 1 : 0;
}

static void fz_ops_reopen(struct fz_ops_ctx *c)
{
    mseg_close(c->s);
    memset(c->live, 0, sizeof c->live);
    c->s = mseg_open(c->path, 0, NULL);
}

static void fz_ops_alloc(struct fz_ops_ctx *c, unsigned a, unsigned b, bool aligned)
{
    size_t n = ((size_t)a << 8 | b) % 20000;
    size_t align = (size_t)1 << (a % 13);
    void *p = aligned ? mseg_alloc_aligned(c->s, n, align) : mseg_alloc(c->s, n);
    if (!p)
        return;
    memset(p, 0xa5, n);
    unsigned slot = b % FZ_SLOTS;
    if (c->live[slot])
        mseg_free(c->s, c->live[slot]);
    c->live[slot] = p;
}

static void fz_ops_construct(struct fz_ops_ctx *c, unsigned a, unsigned b, bool or_find)
{
    size_t count = (size_t)b * 3;
    uint32_t *p = or_find ? mseg_find_or_construct(c->s, fz_ops_name(a), "u32", 4, count, NULL)
                          : mseg_construct(c->s, fz_ops_name(a), "u32", 4, count, NULL);
    size_t have = 0;
    if (p && mseg_find(c->s, fz_ops_name(a), "u32", 4, &have) == p)
        memset(p, 0x5a, have * 4);
}

/* Containers: a u64 -> u64 map and a u32 vector, found or made by name. */
static void fz_ops_map(struct fz_ops_ctx *c, unsigned what, unsigned a, unsigned b)
{
    mseg_map *m = mseg_map_open(c->s, "fzmap", MSEG_KEY_U64, 8, MSEG_CREATE);
    if (!m)
        return;
    uint64_t k = a, v = b;
    struct mseg_cursor cur;
    if (what == 0)
        mseg_map_put(c->s, m, &k, 8, &v, 8);
    else if (what == 1)
        mseg_map_del(c->s, m, &k, 8);
    else if (mseg_map_seek(c->s, m, &cur, &k, 8) == 0)
        for (int i = 0; i < 300 && mseg_map_next(c->s, &cur) == 0; i++)
            ;
}

static void fz_ops_vec(struct fz_ops_ctx *c, unsigned what, unsigned b)
{
    mseg_vec *v = mseg_vec_open(c->s, "fzvec", 4, MSEG_CREATE);
    uint32_t x = b;
    if (!v)
        return;
    if (what == 0)
        mseg_vec_push(c->s, v, &x);
    else
        mseg_vec_pop(c->s, v, NULL);
}

/* A transaction of an allocation and a construct, aborted when b is odd. */
static void fz_ops_tx(struct fz_ops_ctx *c, unsigned a, unsigned b)
{
    if (mseg_tx_begin(c->s))
        return;
    void *p = mseg_alloc(c->s, (size_t)a * 8);
    if (p)
        memset(p, 0x3c, (size_t)a * 8);
    mseg_construct(c->s, fz_ops_name(a), "u32", 4, b, NULL);
    if (b & 1)
        mseg_tx_abort(c->s);
    else
        mseg_tx_commit(c->s);
}

static void fz_ops_step(struct fz_ops_ctx *c, unsigned op, unsigned a, unsigned b)
{
    int stop = 0;
    switch (op % 18) {
    case 0: fz_ops_alloc(c, a, b, false); break;
    case 1: if (c->live[a % FZ_SLOTS]) mseg_free(c->s, c->live[a % FZ_SLOTS]);
            c->live[a % FZ_SLOTS] = NULL; break;
    case 2: fz_ops_construct(c, a, b, false); break;
    case 3: mseg_find(c->s, fz_ops_name(a), "u32", 4, NULL); break;
    case 4: mseg_destroy(c->s, fz_ops_name(a)); break;
    case 5: mseg_named_foreach(c->s, fz_ops_visit, &stop); mseg_named_count(c->s); break;
    case 6: mseg_verify(c->s, NULL); mseg_free_memory(c->s); break;
    case 7: fz_ops_reopen(c); break;
    case 8: fz_ops_alloc(c, a, b, true); break;
    case 9: mseg_free(c->s, mseg_at(c->s, MSEG_HEAP_OFF + ((uint64_t)a << 8 | b) * 16)); break;
    case 10: fz_ops_construct(c, a, b, true); break;
    case 11: mseg_destroy(c->s, fz_ops_name(a)); fz_ops_construct(c, a + 1, b, false); break;
    case 12: fz_ops_map(c, 0, a, b); break;
    case 13: fz_ops_map(c, 1, a, b); break;
    case 14: fz_ops_map(c, 2, a, b); break;
    case 15: fz_ops_vec(c, 0, b); break;
    case 16: fz_ops_vec(c, 1, b); break;
    default: fz_ops_tx(c, a, b); break;
    }
}

int fuzz_ops_input(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t L = data[0];
    if (L + 1 > size)
        L = size - 1;
    const uint8_t *script = data + 1, *img = data + 1 + L;
    struct fz_ops_ctx c;
    memset(&c, 0, sizeof c);
    int fd = fz_image_file(img, size - 1 - L, c.path);
    if (fd < 0)
        return 0;
    c.s = mseg_open(c.path, 0, NULL);
    for (size_t i = 0; c.s && i + 2 < L; i += 3)
        fz_ops_step(&c, script[i], script[i + 1], script[i + 2]);
    if (c.s)
        mseg_verify(c.s, NULL);
    mseg_close(c.s);
    close(fd);
    return 0;
}

#ifndef FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_ops_input(data, size);
}

/* Mutates the script or the image (whose checksums it then restores). */
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    uint64_t rs = seed;
    if (size < 1)
        return LLVMFuzzerMutate(data, size, max_size);
    size_t L = data[0];
    if (L + 1 > size)
        L = size - 1;
    if (fz_rand(&rs) % 3 == 0) {
        uint8_t script[256];
        memcpy(script, data + 1, L);
        size_t nl = LLVMFuzzerMutate(script, L, sizeof script - 1);
        size_t img = size - 1 - L;
        if (1 + nl + img > max_size)
            return size;
        memmove(data + 1 + nl, data + 1 + L, img);
        memcpy(data + 1, script, nl);
        data[0] = (uint8_t)nl;
        return 1 + nl + img;
    }
    return 1 + L + fz_mutate_image(data + 1 + L, size - 1 - L, max_size - 1 - L, &rs);
}
#endif
