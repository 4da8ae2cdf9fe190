/* test_vector.c - mseg_vec: growth, access, named vectors, persistence. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "helpers.h"
#include "layout.h"

int vec_check(mseg *s, uint64_t root, char *why, size_t whylen);
int map_check(mseg *s, uint64_t root, char *why, size_t whylen);

#define MiB (1024u * 1024u)

static mseg *vt_open(char *name, unsigned backend, size_t size)
{
    th_name(name, backend);
    struct mseg_config c = { .size = size };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL | backend, &c);
    cr_assert_not_null(s, "create %s: %s", name, mseg_errmsg());
    return s;
}

/* Runs vec_check / map_check on every named container. */
static int vt_check_named(const struct mseg_named *o, void *arg)
{
    mseg *s = arg;
    char why[256] = "";
    if (strcmp(o->type, "mseg_vec") == 0)
        cr_assert_eq(vec_check(s, o->off, why, sizeof why), 0, "vector %s: %s", o->name, why);
    if (strcmp(o->type, "mseg_map") == 0)
        cr_assert_eq(map_check(s, o->off, why, sizeof why), 0, "map %s: %s", o->name, why);
    return 0;
}

static void vt_assert_sound(mseg *s)
{
    struct mseg_report r;
    cr_assert_eq(mseg_verify(s, &r), 0, "verify: %s", mseg_errmsg());
    cr_assert_eq(r.problems, 0, "%s", r.first_problem);
    cr_assert_eq(mseg_named_foreach(s, vt_check_named, s), 0);
}

static void vt_check_anon(mseg *s, mseg_vec *v)
{
    char why[256] = "";
    cr_assert_eq(vec_check(s, mseg_off_of(s, v), why, sizeof why), 0, "%s", why);
}

Test(vector, new_vector_is_empty_and_pop_says_erange, .fini = th_cleanup)
{
    char name[256];
    mseg *s = vt_open(name, 0, 4 * MiB);
    mseg_vec *v = mseg_vec_new(s, sizeof(int));
    cr_assert_not_null(v, "%s", mseg_errmsg());
    cr_assert_eq(mseg_vec_len(s, v), 0);
    cr_assert_null(mseg_vec_at(s, v, 0));
    cr_assert_eq(errno, ERANGE);
    cr_assert_eq(mseg_vec_pop(s, v, NULL), -1);
    cr_assert_eq(errno, ERANGE);
    cr_assert_null(mseg_vec_data(s, v), "no buffer yet");
    vt_check_anon(s, v);
    cr_assert_eq(mseg_vec_delete(s, v), 0, "%s", mseg_errmsg());
    vt_assert_sound(s);
    mseg_close(s);
}

Test(vector, one_element_pushes_and_pops_back, .fini = th_cleanup)
{
    char name[256];
    mseg *s = vt_open(name, 0, 4 * MiB);
    mseg_vec *v = mseg_vec_new(s, sizeof(double));
    double d = 2.5, out = 0;
    cr_assert_eq(mseg_vec_push(s, v, &d), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_vec_len(s, v), 1);
    cr_assert_eq(*(double *)mseg_vec_at(s, v, 0), 2.5);
    cr_assert_eq(mseg_vec_pop(s, v, &out), 0);
    cr_assert_eq(out, 2.5);
    cr_assert_eq(mseg_vec_len(s, v), 0);
    vt_check_anon(s, v);
    mseg_close(s);
}

Test(vector, pushes_a_million_ints_in_amortized_constant_time, .fini = th_cleanup, .timeout = 60)
{
    char name[256];
    mseg *s = vt_open(name, 0, 64 * MiB);
    mseg_vec *v = mseg_vec_new(s, sizeof(uint32_t));
    const uint32_t n = 1000000;
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(mseg_vec_push(s, v, &i), 0, "push %u: %s", i, mseg_errmsg());
    cr_assert_eq(mseg_vec_len(s, v), n);
    const uint32_t *d = mseg_vec_data(s, v);
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(d[i], i);
    vt_check_anon(s, v);
    vt_assert_sound(s);
    mseg_close(s);
}

Test(vector, resize_zeroes_new_elements_and_shrinks, .fini = th_cleanup)
{
    char name[256];
    mseg *s = vt_open(name, 0, 4 * MiB);
    mseg_vec *v = mseg_vec_new(s, 24);
    uint8_t e[24];
    memset(e, 0xab, sizeof e);
    for (int i = 0; i < 10; i++)
        mseg_vec_push(s, v, e);
    cr_assert_eq(mseg_vec_resize(s, v, 3), 0);
    cr_assert_eq(mseg_vec_len(s, v), 3);
    cr_assert_eq(mseg_vec_resize(s, v, 1000), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_vec_len(s, v), 1000);
    uint8_t *d = mseg_vec_data(s, v);
    for (size_t i = 0; i < 3 * 24; i++)
        cr_assert_eq(d[i], 0xab);
    for (size_t i = 3 * 24; i < 1000 * 24; i++)
        cr_assert_eq(d[i], 0, "byte %zu of the grown part is not zero", i);
    vt_check_anon(s, v);
    vt_assert_sound(s);
    mseg_close(s);
}

Test(vector, reserve_keeps_the_data_pointer_stable_across_pushes, .fini = th_cleanup)
{
    char name[256];
    mseg *s = vt_open(name, 0, 4 * MiB);
    mseg_vec *v = mseg_vec_new(s, sizeof(int));
    cr_assert_eq(mseg_vec_reserve(s, v, 500), 0);
    int zero = 0;
    mseg_vec_push(s, v, &zero);
    void *p = mseg_vec_data(s, v);
    for (int i = 1; i < 500; i++)
        mseg_vec_push(s, v, &i);
    cr_assert_eq(mseg_vec_data(s, v), p);
    cr_assert_eq(mseg_vec_reserve(s, v, 10), 0, "a smaller reserve is a no-op");
    cr_assert_eq(mseg_vec_data(s, v), p);
    mseg_close(s);
}

Test(vector, named_vector_is_type_checked_by_element_size, .fini = th_cleanup)
{
    char name[256];
    mseg *s = vt_open(name, 0, 4 * MiB);
    cr_assert_null(mseg_vec_open(s, "v", 4, 0));
    cr_assert_eq(errno, ENOENT);
    mseg_vec *v = mseg_vec_open(s, "v", 4, MSEG_CREATE);
    cr_assert_not_null(v, "%s", mseg_errmsg());
    cr_assert_eq(mseg_vec_open(s, "v", 4, 0), v);
    cr_assert_null(mseg_vec_open(s, "v", 8, 0));
    cr_assert_eq(errno, EINVAL);
    cr_assert_null(mseg_map_open(s, "v", MSEG_KEY_U64, 8, 0), "a vector is not a map");
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(mseg_vec_delete(s, v), -1, "named vectors go with mseg_destroy");
    cr_assert_eq(errno, EINVAL);
    vt_assert_sound(s);
    mseg_close(s);
}

Test(vector, bad_handles_are_einval, .fini = th_cleanup)
{
    char name[256];
    mseg *s = vt_open(name, 0, 4 * MiB);
    int local = 0;
    cr_assert_eq(mseg_vec_push(s, (mseg_vec *)&local, &local), -1);
    cr_assert_eq(errno, EINVAL);
    void *raw = mseg_alloc(s, 64);
    memset(raw, 0, 64);
    cr_assert_eq(mseg_vec_push(s, raw, &local), -1);
    cr_assert_eq(errno, EINVAL);
    mseg_map *m = mseg_map_new(s, MSEG_KEY_U64, 8);
    cr_assert_eq(mseg_vec_len(s, (mseg_vec *)m), 0);
    cr_assert_eq(errno, EINVAL, "a map is not a vector");
    mseg_close(s);
}

Test(vector, destroy_and_delete_give_all_memory_back, .fini = th_cleanup)
{
    char name[256];
    mseg *s = vt_open(name, 0, 16 * MiB);
    size_t before = mseg_free_memory(s);
    mseg_vec *v = mseg_vec_open(s, "big", 8, MSEG_CREATE);
    mseg_vec *a = mseg_vec_new(s, 8);
    for (uint64_t i = 0; i < 100000; i++) {
        mseg_vec_push(s, v, &i);
        mseg_vec_push(s, a, &i);
    }
    cr_assert_lt(mseg_free_memory(s), before);
    cr_assert_eq(mseg_destroy(s, "big"), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_vec_delete(s, a), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_free_memory(s), before);
    vt_assert_sound(s);
    mseg_close(s);
}

Test(vector, full_segment_push_fails_with_enomem_and_changes_nothing, .fini = th_cleanup)
{
    char name[256];
    mseg *s = vt_open(name, 0, 1 * MiB);
    mseg_vec *v = mseg_vec_new(s, 1024);
    uint8_t e[1024];
    size_t n = 0;
    for (;; n++) {
        memset(e, (int)(n & 0xff), sizeof e);
        if (mseg_vec_push(s, v, e))
            break;
    }
    cr_assert_eq(errno, ENOMEM);
    cr_assert_eq(mseg_vec_len(s, v), n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(((uint8_t *)mseg_vec_at(s, v, i))[1023], (uint8_t)(i & 0xff));
    vt_check_anon(s, v);
    vt_assert_sound(s);
    mseg_close(s);
}

/* A push into a full buffer asks for twice the capacity; when that does not
   fit, it must still take the room there is (here the free block right
   after the buffer). Before, the push failed with ENOMEM with 46% of the
   segment free behind the buffer, and so did reserve and resize one element
   past the capacity (they always moved the buffer to a new block). */
Test(vector, push_near_a_full_segment_uses_the_room_left, .fini = th_cleanup)
{
    char name[256];
    mseg *s = vt_open(name, 0, 1 * MiB);
    mseg_vec *v = mseg_vec_new(s, sizeof(uint64_t));
    uint64_t n = 0;
    while (mseg_vec_push(s, v, &n) == 0)
        n++;
    cr_assert_eq(errno, ENOMEM, "%s", mseg_errmsg());
    struct mseg_report r;
    cr_assert_eq(mseg_verify(s, &r), 0, "%s", mseg_errmsg());
    cr_assert_lt(r.largest_free, 4 + sizeof(uint64_t), "push %llu failed with %llu bytes free in one block: %s",
                 (unsigned long long)n, (unsigned long long)r.largest_free, mseg_errmsg());
    cr_assert_eq(mseg_vec_len(s, v), n);
    for (uint64_t i = 0; i < n; i++)
        cr_assert_eq(*(uint64_t *)mseg_vec_at(s, v, i), i);
    vt_check_anon(s, v);
    vt_assert_sound(s);
    cr_assert_eq(mseg_vec_delete(s, v), 0);
    vt_assert_sound(s);
    mseg_close(s);
}

static void vt_grow_by_one_behind_a_large_buffer(int how)
{
    char name[256];
    mseg *s = vt_open(name, 0, 1 * MiB);
    mseg_vec *v = mseg_vec_new(s, sizeof(uint64_t));
    /* 65536 elements: a 512 KiB buffer, about 440 KiB free after it, too
       little for a second copy of the buffer */
    for (uint64_t i = 0; i < 65536; i++)
        cr_assert_eq(mseg_vec_push(s, v, &i), 0, "%s", mseg_errmsg());
    int rc = how ? mseg_vec_resize(s, v, 65537) : mseg_vec_reserve(s, v, 65537);
    cr_assert_eq(rc, 0, "%s: %s", how ? "resize" : "reserve", mseg_errmsg());
    cr_assert_eq(mseg_vec_len(s, v), how ? 65537 : 65536);
    cr_assert_eq(mseg_vec_push(s, v, (uint64_t[]){ 7 }), 0, "%s", mseg_errmsg());
    for (uint64_t i = 0; i < 65536; i++)
        cr_assert_eq(*(uint64_t *)mseg_vec_at(s, v, i), i);
    if (how)
        cr_assert_eq(*(uint64_t *)mseg_vec_at(s, v, 65536), 0);
    cr_assert_eq(*(uint64_t *)mseg_vec_at(s, v, how ? 65537 : 65536), 7);
    vt_check_anon(s, v);
    vt_assert_sound(s);
    cr_assert_eq(mseg_vec_delete(s, v), 0);
    vt_assert_sound(s);
    mseg_close(s);
}

Test(vector, reserve_by_one_grows_in_place_when_a_copy_does_not_fit, .fini = th_cleanup)
{
    vt_grow_by_one_behind_a_large_buffer(0);
}

Test(vector, resize_by_one_grows_in_place_when_a_copy_does_not_fit, .fini = th_cleanup)
{
    vt_grow_by_one_behind_a_large_buffer(1);
}

static void vt_reopen_keeps_contents(unsigned backend)
{
    char name[256];
    mseg *s = vt_open(name, backend, 4 * MiB);
    mseg_vec *v = mseg_vec_open(s, "persist", sizeof(uint64_t), MSEG_CREATE);
    for (uint64_t i = 0; i < 5000; i++)
        mseg_vec_push(s, v, (uint64_t[]){ i * i });
    mseg_close(s);
    s = mseg_open(name, backend, NULL);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    v = mseg_vec_open(s, "persist", sizeof(uint64_t), 0);
    cr_assert_not_null(v, "%s", mseg_errmsg());
    cr_assert_eq(mseg_vec_len(s, v), 5000);
    for (uint64_t i = 0; i < 5000; i++)
        cr_assert_eq(*(uint64_t *)mseg_vec_at(s, v, i), i * i);
    vt_assert_sound(s);
    mseg_close(s);
    /* a read-only handle reads the same */
    s = mseg_open(name, backend | MSEG_RDONLY, NULL);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    mseg_vec *root = mseg_vec_open(s, "persist", sizeof(uint64_t), 0);
    cr_assert_not_null(root, "%s", mseg_errmsg());
    cr_assert_eq(mseg_vec_len(s, root), 5000);
    cr_assert_eq(*(uint64_t *)mseg_vec_at(s, root, 4999), 4999ull * 4999);
    cr_assert_eq(mseg_vec_push(s, root, (uint64_t[]){ 1 }), -1);
    cr_assert_eq(errno, EROFS);
    mseg_close(s);
}

Test(vector, reopen_keeps_contents_file, .fini = th_cleanup) { vt_reopen_keeps_contents(0); }
Test(vector, reopen_keeps_contents_shm, .fini = th_cleanup) { vt_reopen_keeps_contents(MSEG_SHM); }

/* Pushes inside a transaction take the logged path: an abort takes back
   every one of them, including growth of the buffer in place (heap_expand)
   over the free block that followed it, and leaves the heap sound. */
Test(vector, aborted_transaction_takes_back_pushes_and_in_place_growth, .fini = th_cleanup)
{
    char name[256];
    mseg *s = vt_open(name, 0, 4 * MiB);
    mseg_vec *v = mseg_vec_open(s, "v", sizeof(uint64_t), MSEG_CREATE);
    cr_assert_not_null(v, "%s", mseg_errmsg());
    for (uint64_t i = 0; i < 100; i++)
        cr_assert_eq(mseg_vec_push(s, v, &i), 0, "%s", mseg_errmsg());
    const void *data = mseg_vec_data(s, v);
    size_t free_before = mseg_free_memory(s);
    cr_assert_eq(mseg_tx_begin(s), 0, "%s", mseg_errmsg());
    for (uint64_t i = 100; i < 1500; i++)
        cr_assert_eq(mseg_vec_push(s, v, &i), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_tx_abort(s), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_vec_len(s, v), 100);
    for (uint64_t i = 0; i < 100; i++)
        cr_assert_eq(*(uint64_t *)mseg_vec_at(s, v, i), i);
    cr_assert_eq(mseg_free_memory(s), free_before);
    vt_assert_sound(s);
    /* committed this time: the buffer grew where it was, nothing copied */
    cr_assert_eq(mseg_tx_begin(s), 0, "%s", mseg_errmsg());
    for (uint64_t i = 100; i < 1500; i++)
        cr_assert_eq(mseg_vec_push(s, v, &i), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_tx_commit(s), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_vec_data(s, v), data, "grown in place");
    cr_assert_eq(mseg_vec_len(s, v), 1500);
    for (uint64_t i = 0; i < 1500; i++)
        cr_assert_eq(*(uint64_t *)mseg_vec_at(s, v, i), i);
    vt_assert_sound(s);
    mseg_close(s);
}

/* A resize that grows the buffer in place zeroes the new elements, the
   ones over the old free block's header included, in a transaction too. */
Test(vector, resize_growing_in_place_zeroes_over_the_old_block_end, .fini = th_cleanup)
{
    char name[256];
    mseg *s = vt_open(name, 0, 4 * MiB);
    mseg_vec *v = mseg_vec_open(s, "v", 4, MSEG_CREATE);
    cr_assert_not_null(v, "%s", mseg_errmsg());
    uint32_t x = 0xdeadbeef;
    for (int i = 0; i < 7; i++)
        cr_assert_eq(mseg_vec_push(s, v, &x), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_tx_begin(s), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_vec_resize(s, v, 1000), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_tx_commit(s), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_vec_resize(s, v, 3000), 0, "%s", mseg_errmsg());
    const uint32_t *d = mseg_vec_data(s, v);
    for (int i = 0; i < 3000; i++)
        cr_assert_eq(d[i], i < 7 ? x : 0, "element %d", i);
    vt_assert_sound(s);
    mseg_close(s);
}

/* Two vectors whose roots name one buffer: deleting one frees it under
   the other. The check sees each vector sound on its own, so it must
   count the buffer's owners across the segment. */
Test(vector, check_reports_two_named_vectors_sharing_one_buffer, .fini = th_cleanup)
{
    char name[256];
    mseg *s = vt_open(name, 0, 4 * MiB);
    mseg_vec *a = mseg_vec_open(s, "a", 8, MSEG_CREATE);
    mseg_vec *b = mseg_vec_open(s, "b", 8, MSEG_CREATE);
    cr_assert(a && b, "%s", mseg_errmsg());
    for (uint64_t i = 0; i < 10; i++) {
        cr_assert_eq(mseg_vec_push(s, a, &i), 0, "%s", mseg_errmsg());
        cr_assert_eq(mseg_vec_push(s, b, &i), 0, "%s", mseg_errmsg());
    }
    vt_assert_sound(s);
    struct mseg_vec_root *ra = (struct mseg_vec_root *)a, *rb = (struct mseg_vec_root *)b;
    struct mseg_vec_root saved = *rb;
    rb->buf = ra->buf;                                               /* damage */
    rb->cap = ra->cap;
    rb->len = ra->len;
    struct mseg_report r;
    cr_assert_eq(mseg_verify(s, &r), -1, "two named vectors share a buffer");
    cr_assert_eq(errno, EUCLEAN);
    char want[128];
    snprintf(want, sizeof want, "block %#llx is referenced twice", (unsigned long long)ra->buf);
    cr_assert(strstr(r.first_problem, want) && strstr(r.first_problem, "by vector at"), "%s", r.first_problem);
    *rb = saved;
    vt_assert_sound(s);
    mseg_close(s);
}

/* Pushes of small elements inside one transaction, checked after commit
   against what was pushed. Two ways to lose elements, both at commit, both
   with the segment sound:
   - a push growing the buffer in place by one granule took the free block
     an earlier growth of the same transaction had split off; that block's
     8-byte list link half inside the buffer was applied over the elements
     (64 pushes of 1-byte elements: elements 40..47 came back 0);
   - a push at an index the committed vector reaches is logged as whole
     4-byte words, its neighbours taken from the view at that moment, so an
     element stored in place later in the same word was put back at commit
     (1 element committed; pop, push bb, push cc: [bb, 00]). */
static void vt_tx_pushes(size_t es, size_t committed, size_t pops, size_t pushes)
{
    char name[256];
    mseg *s = vt_open(name, 0, 1 * MiB);
    mseg_vec *v = mseg_vec_new(s, es);
    cr_assert_not_null(v);
    uint8_t model[4096], e[16];
    size_t len = 0;
    for (size_t i = 0; i < committed; i++, len++) {
        memset(e, (int)(0x40 | (len & 0x3f)), sizeof e);
        cr_assert_eq(mseg_vec_push(s, v, e), 0);
        model[len] = e[0];
    }
    cr_assert_eq(mseg_tx_begin(s), 0);
    for (size_t i = 0; i < pops && len; i++, len--)
        cr_assert_eq(mseg_vec_pop(s, v, NULL), 0);
    for (size_t i = 0; i < pushes; i++, len++) {
        memset(e, (int)(0x80 | ((len * 7 + i) & 0x7f)), sizeof e);
        cr_assert_eq(mseg_vec_push(s, v, e), 0, "%s", mseg_errmsg());
        model[len] = e[0];
    }
    cr_assert_eq(mseg_tx_commit(s), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_vec_len(s, v), len);
    for (size_t i = 0; i < len; i++)
        for (size_t j = 0; j < es; j++)
            cr_assert_eq(((uint8_t *)mseg_vec_at(s, v, i))[j], model[i],
                         "es %zu, %zu committed, %zu pops, %zu pushes: element %zu byte %zu is %#x, not %#x", es,
                         committed, pops, pushes, i, j, ((uint8_t *)mseg_vec_at(s, v, i))[j], model[i]);
    vt_check_anon(s, v);
    cr_assert_eq(mseg_vec_delete(s, v), 0);
    vt_assert_sound(s);
    mseg_close(s);
}

Test(vector, pushes_that_grow_in_place_twice_in_a_transaction_keep_their_elements, .fini = th_cleanup)
{
    vt_tx_pushes(1, 0, 0, 64);
    vt_tx_pushes(2, 0, 0, 40);
    vt_tx_pushes(4, 0, 0, 20);
}

Test(vector, a_push_in_place_next_to_a_logged_one_survives_the_commit, .fini = th_cleanup)
{
    vt_tx_pushes(1, 1, 1, 2);
    for (size_t es = 1; es <= 8; es++)
        for (size_t committed = 1; committed < 12; committed++)
            vt_tx_pushes(es, committed, 3, 9);
}
