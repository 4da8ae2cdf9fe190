/* test_named.c - the named-object directory. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include "helpers.h"
#include "layout.h"

#define MiB (1024u * 1024u)

struct point { int x, y; };

/* A new segment of size bytes, its name in name (256 bytes). */
static mseg *new_named_seg(char *name, size_t size)
{
    th_name(name, 0);
    struct mseg_config c = { .size = size };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &c);
    cr_assert_not_null(s, "create %s: %s", name, mseg_errmsg());
    return s;
}

static mseg *new_seg(size_t size)
{
    char name[256];
    return new_named_seg(name, size);
}

static void assert_sound(mseg *s)
{
    struct mseg_report r;
    memset(&r, 0xff, sizeof r);
    cr_assert_eq(mseg_verify(s, &r), 0, "verify: %s", mseg_errmsg());
    cr_assert_eq(r.problems, 0, "%llu problems: %s", (unsigned long long)r.problems, r.first_problem);
    cr_assert_eq(r.named, mseg_named_count(s));
}

Test(named, new_gives_zeroed_memory_that_find_returns, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    struct point *p = MSEG_NEW(s, "points", struct point, 100);
    cr_assert_not_null(p, "%s", mseg_errmsg());
    cr_assert(((uintptr_t)p & 15) == 0, "object data is 16-aligned");
    for (int i = 0; i < 100; i++)
        cr_assert(p[i].x == 0 && p[i].y == 0);
    p[99].y = 7;
    size_t n = 0;
    struct point *q = MSEG_FIND(s, "points", struct point, &n);
    cr_assert_eq(q, p);
    cr_assert_eq(n, 100);
    cr_assert_eq(q[99].y, 7);
    cr_assert_not_null(MSEG_FIND(s, "points", struct point, NULL), "count may be NULL");
    cr_assert_eq(mseg_named_count(s), 1);
    assert_sound(s);
    mseg_close(s);
}

Test(named, new_from_copies_the_initial_elements, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    double init[1000];
    for (int i = 0; i < 1000; i++)
        init[i] = i * 0.5;
    double *d = MSEG_NEW_FROM(s, "d", double, 1000, init);
    cr_assert_not_null(d);
    cr_assert_arr_eq(d, init, sizeof init);
    size_t n;
    cr_assert_eq(MSEG_FIND(s, "d", double, &n), d);
    cr_assert_eq(n, 1000);
    mseg_close(s);
}

Test(named, construct_of_a_taken_name_fails_with_eexist_and_keeps_the_original, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    int *a = MSEG_NEW(s, "x", int, 3);
    cr_assert_not_null(a);
    a[2] = 11;
    size_t f = mseg_free_memory(s);
    int other[5] = { 1, 2, 3, 4, 5 };
    errno = 0;
    cr_assert_null(MSEG_NEW_FROM(s, "x", int, 5, other));
    cr_assert_eq(errno, EEXIST);
    errno = 0;
    cr_assert_null(MSEG_NEW(s, "x", double, 1));
    cr_assert_eq(errno, EEXIST, "another type, same name: errno %d", errno);
    cr_assert_eq(mseg_free_memory(s), f, "a refused construct changed free memory");
    size_t n;
    cr_assert_eq(MSEG_FIND(s, "x", int, &n), a);
    cr_assert_eq(n, 3);
    cr_assert_eq(a[2], 11);
    cr_assert_eq(mseg_named_count(s), 1);
    assert_sound(s);
    mseg_close(s);
}

Test(named, find_with_wrong_type_or_elem_size_fails_with_einval, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    cr_assert_not_null(mseg_construct(s, "obj", "thing", 24, 5, NULL));
    errno = 0;
    cr_assert_null(mseg_find(s, "obj", "other", 24, NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(mseg_find(s, "obj", "thin", 24, NULL));
    cr_assert_eq(errno, EINVAL, "a prefix of the type name matched");
    errno = 0;
    cr_assert_null(mseg_find(s, "obj", "thing!", 24, NULL));
    cr_assert_eq(errno, EINVAL, "a longer type name matched");
    errno = 0;
    cr_assert_null(mseg_find(s, "obj", "thing", 16, NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(mseg_find(s, "obj", "thing", 48, NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(mseg_find_or_construct(s, "obj", "other", 24, 5, NULL));
    cr_assert_eq(errno, EINVAL, "find_or_construct with another type");
    cr_assert_not_null(mseg_find(s, "obj", "thing", 24, NULL));
    cr_assert_eq(mseg_named_count(s), 1);
    mseg_close(s);
}

Test(named, find_and_destroy_of_missing_name_fail_with_enoent, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    errno = 0;
    cr_assert_null(MSEG_FIND(s, "nope", int, NULL));
    cr_assert_eq(errno, ENOENT);
    errno = 0;
    cr_assert_eq(mseg_destroy(s, "nope"), -1);
    cr_assert_eq(errno, ENOENT);
    cr_assert_not_null(MSEG_NEW(s, "nope2", int, 1));
    errno = 0;
    cr_assert_null(MSEG_FIND(s, "nope", int, NULL));
    cr_assert_eq(errno, ENOENT);
    errno = 0;
    cr_assert_null(MSEG_FIND(s, "nope22", int, NULL));
    cr_assert_eq(errno, ENOENT);
    cr_assert_eq(mseg_destroy(s, "nope2"), 0);
    errno = 0;
    cr_assert_eq(mseg_destroy(s, "nope2"), -1, "destroyed twice");
    cr_assert_eq(errno, ENOENT);
    errno = 0;
    cr_assert_null(MSEG_FIND(s, "nope2", int, NULL));
    cr_assert_eq(errno, ENOENT);
    mseg_close(s);
}

Test(named, find_or_construct_constructs_once_then_returns_the_existing_object, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    long init[4] = { 9, 8, 7, 6 };
    long *a = mseg_find_or_construct(s, "c", "long", sizeof(long), 4, init);
    cr_assert_not_null(a);
    cr_assert_arr_eq(a, init, sizeof init);
    a[0] = 100;
    size_t f = mseg_free_memory(s);
    long *b = mseg_find_or_construct(s, "c", "long", sizeof(long), 50, NULL);
    cr_assert_eq(b, a, "find_or_construct of an existing name made a new object");
    cr_assert_eq(b[0], 100, "the existing object was re-initialized");
    size_t n;
    cr_assert_eq(MSEG_FIND(s, "c", long, &n), a);
    cr_assert_eq(n, 4, "an existing object keeps its count");
    cr_assert_eq(mseg_free_memory(s), f);
    cr_assert_eq(mseg_named_count(s), 1);
    long *z = MSEG_FIND_OR_NEW(s, "z", long, 3);
    cr_assert_not_null(z);
    cr_assert(z[0] == 0 && z[2] == 0);
    cr_assert_eq(mseg_named_count(s), 2);
    mseg_close(s);
}

/* On a read-only handle, the find-or-create calls find what exists and
   fail with EROFS only when they would have to create. They refused with
   EROFS at once, even for an existing object, vector or map, though
   finding writes nothing (mseg.h: EROFS is a write through a read-only
   handle): a program that opens its objects with MSEG_FIND_OR_NEW or
   MSEG_CREATE could not run as a reader. Found by an adversarial API
   review (helper session). */
Test(named, find_or_construct_and_open_with_create_on_a_read_only_handle_find_what_exists, .fini = th_cleanup)
{
    char name[256];
    mseg *s = new_named_seg(name, 1 * MiB);
    long init[3] = { 1, 2, 3 };
    cr_assert_not_null(mseg_construct(s, "obj", "long", sizeof(long), 3, init));
    cr_assert_not_null(mseg_vec_open(s, "vec", 8, MSEG_CREATE));
    cr_assert_not_null(mseg_map_open(s, "map", MSEG_KEY_U64, 8, MSEG_CREATE));
    mseg *r = mseg_open(name, MSEG_RDONLY, NULL);
    cr_assert_not_null(r, "%s", mseg_errmsg());
    long *o = mseg_find_or_construct(r, "obj", "long", sizeof(long), 3, NULL);
    cr_assert_not_null(o, "find_or_construct of an existing object: %s", mseg_errmsg());
    cr_assert_eq(o[2], 3);
    cr_assert_not_null(mseg_vec_open(r, "vec", 8, MSEG_CREATE), "an existing vector: %s", mseg_errmsg());
    cr_assert_not_null(mseg_map_open(r, "map", MSEG_KEY_U64, 8, MSEG_CREATE), "an existing map: %s", mseg_errmsg());
    /* what must fail still does, each with its own errno */
    errno = 0;
    cr_assert_null(mseg_find_or_construct(r, "obj", "int", sizeof(int), 3, NULL));
    cr_assert_eq(errno, EINVAL, "another type");
    errno = 0;
    cr_assert_null(mseg_vec_open(r, "vec", 4, MSEG_CREATE));
    cr_assert_eq(errno, EINVAL, "another element size");
    errno = 0;
    cr_assert_null(mseg_map_open(r, "map", MSEG_KEY_I64, 8, MSEG_CREATE));
    cr_assert_eq(errno, EINVAL, "another key kind");
    errno = 0;
    cr_assert_null(mseg_find_or_construct(r, "new", "long", sizeof(long), 3, NULL));
    cr_assert_eq(errno, EROFS, "a missing object");
    errno = 0;
    cr_assert_null(mseg_vec_open(r, "newvec", 8, MSEG_CREATE));
    cr_assert_eq(errno, EROFS, "a missing vector");
    errno = 0;
    cr_assert_null(mseg_map_open(r, "newmap", MSEG_KEY_U64, 8, MSEG_CREATE));
    cr_assert_eq(errno, EROFS, "a missing map");
    cr_assert_eq(mseg_named_count(s), 3);
    mseg_close(r);
    mseg_close(s);
}

Test(named, destroy_frees_the_object_and_the_name_can_be_reused, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    cr_assert_not_null(MSEG_NEW(s, "warm", int, 1));
    cr_assert_eq(mseg_destroy(s, "warm"), 0);
    size_t f0 = mseg_free_memory(s);
    char *big = MSEG_NEW(s, "big", char, 100000);
    cr_assert_not_null(big);
    cr_assert_lt(mseg_free_memory(s), f0 - 100000);
    cr_assert_eq(mseg_named_count(s), 1);
    cr_assert_eq(mseg_destroy(s, "big"), 0);
    cr_assert_eq(mseg_free_memory(s), f0);
    cr_assert_eq(mseg_named_count(s), 0);
    int *again = MSEG_NEW(s, "big", int, 2);
    cr_assert_not_null(again, "the name of a destroyed object can be reused");
    cr_assert(again[0] == 0 && again[1] == 0, "a reused name gives zeroed memory");
    assert_sound(s);
    mseg_close(s);
}

/* ---- names and sizes ---- */

Test(named, names_of_length_1_and_name_max_work, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    static char longname[MSEG_NAME_MAX + 1];
    memset(longname, 'n', MSEG_NAME_MAX);
    longname[MSEG_NAME_MAX] = 0;
    int *a = MSEG_NEW(s, "a", int, 1);
    cr_assert_not_null(a, "%s", mseg_errmsg());
    int *b = MSEG_NEW(s, longname, int, 1);
    cr_assert_not_null(b, "name of MSEG_NAME_MAX bytes: %s", mseg_errmsg());
    *a = 1;
    *b = 2;
    cr_assert_eq(*MSEG_FIND(s, "a", int, NULL), 1);
    cr_assert_eq(*MSEG_FIND(s, longname, int, NULL), 2);
    longname[MSEG_NAME_MAX - 1] = 'm';   /* differs in the last byte only */
    errno = 0;
    cr_assert_null(MSEG_FIND(s, longname, int, NULL));
    cr_assert_eq(errno, ENOENT);
    static char longtype[MSEG_TYPE_MAX + 1];
    memset(longtype, 't', MSEG_TYPE_MAX);
    cr_assert_not_null(mseg_construct(s, "lt", longtype, 4, 1, NULL), "type of MSEG_TYPE_MAX bytes: %s", mseg_errmsg());
    cr_assert_not_null(mseg_find(s, "lt", longtype, 4, NULL));
    /* names are bytes: anything but NUL */
    cr_assert_not_null(MSEG_NEW(s, "with space/and\x01\xff bytes", int, 1));
    cr_assert_not_null(MSEG_FIND(s, "with space/and\x01\xff bytes", int, NULL));
    assert_sound(s);
    mseg_close(s);
}

Test(named, bad_names_types_and_sizes_fail_with_einval, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    size_t f = mseg_free_memory(s);
    static char toolong[MSEG_NAME_MAX + 2];
    memset(toolong, 'n', MSEG_NAME_MAX + 1);
    static char longtype[MSEG_TYPE_MAX + 2];
    memset(longtype, 't', MSEG_TYPE_MAX + 1);
    struct { const char *name, *type; size_t es, n; const char *what; } bad[] = {
        { "", "int", 4, 1, "empty name" },
        { toolong, "int", 4, 1, "name of MSEG_NAME_MAX+1 bytes" },
        { "ok", "", 4, 1, "empty type" },
        { "ok", longtype, 4, 1, "type of MSEG_TYPE_MAX+1 bytes" },
        { "ok", "int", 0, 1, "elem_size 0" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        cr_assert_null(mseg_construct(s, bad[i].name, bad[i].type, bad[i].es, bad[i].n, NULL), "%s accepted", bad[i].what);
        cr_assert_eq(errno, EINVAL, "construct with %s: errno %d", bad[i].what, errno);
        errno = 0;
        cr_assert_null(mseg_find_or_construct(s, bad[i].name, bad[i].type, bad[i].es, bad[i].n, NULL), "%s accepted", bad[i].what);
        cr_assert_eq(errno, EINVAL, "find_or_construct with %s: errno %d", bad[i].what, errno);
        if (bad[i].es) {
            errno = 0;
            cr_assert_null(mseg_find(s, bad[i].name, bad[i].type, bad[i].es, NULL));
            cr_assert(errno == EINVAL || errno == ENOENT, "find with %s: errno %d", bad[i].what, errno);
        }
    }
    errno = 0;
    cr_assert_eq(mseg_destroy(s, ""), -1);
    cr_assert(errno == EINVAL || errno == ENOENT);
    errno = 0;
    cr_assert_eq(mseg_destroy(s, NULL), -1);
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_eq(mseg_destroy(s, toolong), -1);
    cr_assert(errno == EINVAL || errno == ENOENT);
    cr_assert_eq(mseg_free_memory(s), f);
    cr_assert_eq(mseg_named_count(s), 0);
    assert_sound(s);
    mseg_close(s);
}

Test(named, null_name_or_type_fails_with_einval, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    const char *names[] = { NULL, "ok", NULL };
    const char *types[] = { "int", NULL, NULL };
    for (int i = 0; i < 3; i++) {
        errno = 0;
        cr_assert_null(mseg_construct(s, names[i], types[i], 4, 1, NULL));
        cr_assert_eq(errno, EINVAL, "construct(%s, %s): errno %d", names[i] ? names[i] : "NULL",
                     types[i] ? types[i] : "NULL", errno);
        errno = 0;
        cr_assert_null(mseg_find_or_construct(s, names[i], types[i], 4, 1, NULL));
        cr_assert_eq(errno, EINVAL);
        errno = 0;
        cr_assert_null(mseg_find(s, names[i], types[i], 4, NULL));
        cr_assert_eq(errno, EINVAL);
    }
    cr_assert_eq(mseg_named_count(s), 0);
    mseg_close(s);
}

Test(named, overflowing_or_huge_sizes_fail_cleanly, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    size_t f = mseg_free_memory(s);
    struct { size_t es, n; } bad[] = {
        { 2, SIZE_MAX / 2 + 1 }, { SIZE_MAX, 2 }, { 1u << 20, (size_t)1 << 45 },
        { SIZE_MAX, 1 }, { 1, SIZE_MAX }, { 1, 2 * MiB }, { 16, f / 16 + 1 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        cr_assert_null(mseg_construct(s, "huge", "x", bad[i].es, bad[i].n, NULL),
                       "%zu x %zu accepted", bad[i].es, bad[i].n);
        cr_assert(errno == EINVAL || errno == ENOMEM, "%zu x %zu: errno %d", bad[i].es, bad[i].n, errno);
    }
    cr_assert_eq(mseg_free_memory(s), f);
    cr_assert_eq(mseg_named_count(s), 0);
    errno = 0;
    cr_assert_null(mseg_find(s, "huge", "x", 1, NULL));
    cr_assert_eq(errno, ENOENT);
    assert_sound(s);
    mseg_close(s);
}

/* mseg.h: construct fails with EINVAL for "an overflowing size"; a size
   that is representable but larger than any block is ENOMEM. Before, an
   element size times count that wrapped around size_t was ENOMEM too. */
Test(named, a_size_that_overflows_is_einval_a_huge_one_enomem, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    size_t f = mseg_free_memory(s);
    struct { size_t es, n; } wrap[] = {
        { SIZE_MAX, 2 }, { 2, SIZE_MAX / 2 + 1 }, { (size_t)1 << 32, (size_t)1 << 32 }, { 3, SIZE_MAX / 2 },
    };
    for (size_t i = 0; i < sizeof wrap / sizeof wrap[0]; i++) {
        errno = 0;
        cr_assert_null(mseg_construct(s, "huge", "x", wrap[i].es, wrap[i].n, NULL));
        cr_assert_eq(errno, EINVAL, "%zu x %zu: errno %d (%s)", wrap[i].es, wrap[i].n, errno, mseg_errmsg());
        cr_assert(strstr(mseg_errmsg(), "huge"), "%s", mseg_errmsg());
        errno = 0;
        cr_assert_null(mseg_find_or_construct(s, "huge", "x", wrap[i].es, wrap[i].n, NULL));
        cr_assert_eq(errno, EINVAL, "find_or_construct %zu x %zu: errno %d", wrap[i].es, wrap[i].n, errno);
    }
    struct { size_t es, n; } big[] = { { 1, SIZE_MAX }, { SIZE_MAX, 1 }, { 1u << 20, (size_t)1 << 25 }, { 1, 2 * MiB } };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        errno = 0;
        cr_assert_null(mseg_construct(s, "huge", "x", big[i].es, big[i].n, NULL));
        cr_assert_eq(errno, ENOMEM, "%zu x %zu: errno %d (%s)", big[i].es, big[i].n, errno, mseg_errmsg());
    }
    cr_assert_eq(mseg_free_memory(s), f);
    cr_assert_eq(mseg_named_count(s), 0);
    assert_sound(s);
    mseg_close(s);
}

Test(named, construct_with_count_0_succeeds_with_count_0_or_fails_with_einval, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    errno = 0;
    int *p = MSEG_NEW(s, "empty", int, 0);
    if (p) {
        size_t n = 99;
        cr_assert_eq(MSEG_FIND(s, "empty", int, &n), p);
        cr_assert_eq(n, 0);
        cr_assert_eq(mseg_named_count(s), 1);
        cr_assert_eq(mseg_destroy(s, "empty"), 0);
        cr_log_info("count 0: allowed");
    } else {
        cr_assert_eq(errno, EINVAL, "count 0: errno %d", errno);
        cr_assert_eq(mseg_named_count(s), 0);
        cr_log_info("count 0: refused with EINVAL");
    }
    assert_sound(s);
    mseg_close(s);
}

/* ---- persistence ---- */

Test(named, objects_and_their_types_survive_a_reopen, .fini = th_cleanup)
{
    char name[256];
    th_name(name, 0);
    struct mseg_config c = { .size = 2 * MiB };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &c);
    cr_assert_not_null(s);
    char nm[32];
    for (int i = 0; i < 200; i++) {
        snprintf(nm, sizeof nm, "obj%d", i);
        int *x = mseg_construct(s, nm, i % 2 ? "odd" : "even", sizeof(int), (size_t)i + 1, NULL);
        cr_assert_not_null(x);
        x[i] = i;
    }
    mseg_close(s);
    s = mseg_open(name, 0, NULL);
    cr_assert_not_null(s);
    cr_assert_eq(mseg_named_count(s), 200);
    for (int i = 0; i < 200; i++) {
        snprintf(nm, sizeof nm, "obj%d", i);
        size_t n;
        int *x = mseg_find(s, nm, i % 2 ? "odd" : "even", sizeof(int), &n);
        cr_assert_not_null(x, "%s: %s", nm, mseg_errmsg());
        cr_assert_eq(n, (size_t)i + 1);
        cr_assert_eq(x[i], i);
        errno = 0;
        cr_assert_null(mseg_find(s, nm, i % 2 ? "even" : "odd", sizeof(int), NULL));
        cr_assert_eq(errno, EINVAL);
    }
    assert_sound(s);
    mseg_close(s);
}

/* ---- foreach ---- */

#define NOBJ 150

struct seen {
    mseg *s;
    int visits[NOBJ];
    int calls;
    int stop_after;
    int destroy;
    int bad;
};

static int obj_index(const char *name)
{
    int i;
    if (sscanf(name, "fe-%d", &i) != 1 || i < 0 || i >= NOBJ)
        return -1;
    return i;
}

static int visit(const struct mseg_named *o, void *arg)
{
    struct seen *sn = arg;
    sn->calls++;
    int i = obj_index(o->name);
    if (i < 0) {
        sn->bad++;
        return 0;
    }
    sn->visits[i]++;
    char type[16];
    snprintf(type, sizeof type, "type%d", i % 5);
    if (strcmp(o->type, type) != 0 || o->elem_size != (size_t)(i % 7 + 1) || o->count != (size_t)i)
        sn->bad++;
    void *p = mseg_find(sn->s, o->name, o->type, o->elem_size, NULL);
    if (!p || mseg_at(sn->s, o->off) != p || mseg_off_of(sn->s, p) != o->off)
        sn->bad++;
    if (sn->destroy && mseg_destroy(sn->s, o->name) != 0)
        sn->bad++;
    if (sn->stop_after && sn->calls == sn->stop_after)
        return 7;
    return 0;
}

static void make_objects(mseg *s)
{
    char nm[32], type[16];
    for (int i = 0; i < NOBJ; i++) {
        snprintf(nm, sizeof nm, "fe-%d", i);
        snprintf(type, sizeof type, "type%d", i % 5);
        void *p = mseg_construct(s, nm, type, (size_t)(i % 7 + 1), (size_t)i, NULL);
        cr_assert(p || (i == 0 && errno == EINVAL), "construct %s: %s", nm, mseg_errmsg());
    }
}

static int expected_objects(mseg *s)
{
    return (int)mseg_named_count(s);
}

Test(named, foreach_visits_every_object_once_with_its_properties, .fini = th_cleanup)
{
    mseg *s = new_seg(4 * MiB);
    make_objects(s);
    int n = expected_objects(s);
    cr_assert_geq(n, NOBJ - 1);
    struct seen sn = { .s = s };
    cr_assert_eq(mseg_named_foreach(s, visit, &sn), 0);
    cr_assert_eq(sn.calls, n);
    cr_assert_eq(sn.bad, 0, "%d visits with wrong properties", sn.bad);
    for (int i = 0; i < NOBJ; i++)
        if (i > 0 || n == NOBJ)
            cr_assert_eq(sn.visits[i], 1, "fe-%d visited %d times", i, sn.visits[i]);
    mseg_close(s);
}

Test(named, foreach_of_an_empty_directory_calls_nothing, .fini = th_cleanup)
{
    mseg *s = new_seg(1 * MiB);
    struct seen sn = { .s = s };
    cr_assert_eq(mseg_named_foreach(s, visit, &sn), 0);
    cr_assert_eq(sn.calls, 0);
    mseg_close(s);
}

Test(named, foreach_stops_at_the_first_non_zero_return_and_returns_it, .fini = th_cleanup)
{
    mseg *s = new_seg(4 * MiB);
    make_objects(s);
    struct seen sn = { .s = s, .stop_after = 3 };
    cr_assert_eq(mseg_named_foreach(s, visit, &sn), 7);
    cr_assert_eq(sn.calls, 3);
    cr_assert_eq(sn.bad, 0);
    mseg_close(s);
}

Test(named, foreach_allows_destroy_inside_the_callback, .fini = th_cleanup)
{
    mseg *s = new_seg(4 * MiB);
    cr_assert_not_null(MSEG_NEW(s, "warm", int, 1));
    cr_assert_eq(mseg_destroy(s, "warm"), 0);
    size_t f0 = mseg_free_memory(s);
    make_objects(s);
    int n = expected_objects(s);
    struct seen sn = { .s = s, .destroy = 1 };
    cr_assert_eq(mseg_named_foreach(s, visit, &sn), 0);
    cr_assert_eq(sn.calls, n, "visited %d of %d while destroying", sn.calls, n);
    cr_assert_eq(sn.bad, 0);
    cr_assert_eq(mseg_named_count(s), 0);
    struct seen again = { .s = s };
    cr_assert_eq(mseg_named_foreach(s, visit, &again), 0);
    cr_assert_eq(again.calls, 0);
    assert_sound(s);
    cr_assert_eq(mseg_free_memory(s), f0, "free memory %zu after destroying everything, %zu before",
                 mseg_free_memory(s), f0);
    mseg_close(s);
}

Test(named, free_memory_returns_to_its_initial_value_after_destroying_everything, .fini = th_cleanup)
{
    mseg *s = new_seg(4 * MiB);
    /* the directory's own table may be created by the first construct */
    cr_assert_not_null(MSEG_NEW(s, "warm", int, 1));
    cr_assert_eq(mseg_destroy(s, "warm"), 0);
    size_t f0 = mseg_free_memory(s);
    char nm[32];
    for (int i = 0; i < 40; i++) {
        snprintf(nm, sizeof nm, "obj-%d", i);
        cr_assert_not_null(mseg_construct(s, nm, "bytes", 1, (size_t)(i * 97 + 1), NULL));
    }
    for (int i = 0; i < 40; i += 2) {
        snprintf(nm, sizeof nm, "obj-%d", i);
        cr_assert_eq(mseg_destroy(s, nm), 0);
    }
    for (int i = 39; i > 0; i -= 2) {
        snprintf(nm, sizeof nm, "obj-%d", i);
        cr_assert_eq(mseg_destroy(s, nm), 0);
    }
    cr_assert_eq(mseg_named_count(s), 0);
    cr_assert_eq(mseg_free_memory(s), f0);
    assert_sound(s);
    mseg_close(s);
}

Test(named, construct_destroy_churn_does_not_grow_memory_use, .timeout = 60, .fini = th_cleanup)
{
    mseg *s = new_seg(8 * MiB);
    char nm[32];
    for (int i = 0; i < 10; i++) {
        snprintf(nm, sizeof nm, "keep-%d", i);
        cr_assert_not_null(MSEG_NEW(s, nm, int, 1));
    }
    cr_assert_not_null(MSEG_NEW(s, "warm", int, 1));
    cr_assert_eq(mseg_destroy(s, "warm"), 0);
    size_t f0 = mseg_free_memory(s);
    for (int i = 0; i < 20000; i++) {
        snprintf(nm, sizeof nm, "churn-%d", i);
        cr_assert_not_null(MSEG_NEW(s, nm, int, 1), "construct %d: %s", i, mseg_errmsg());
        cr_assert_eq(mseg_destroy(s, nm), 0);
    }
    /* a table rebuilt for deleted slots needs no more room than live ones */
    size_t f1 = mseg_free_memory(s);
    cr_assert_geq(f1 + 4096, f0, "20000 construct/destroy pairs with 10 live objects cost %zu bytes",
                  f0 - f1);
    cr_assert_eq(mseg_named_count(s), 10);
    assert_sound(s);
    mseg_close(s);
}

Test(named, many_objects_force_the_directory_to_grow_and_stay_findable, .timeout = 60, .fini = th_cleanup)
{
    mseg *s = new_seg(16 * MiB);
    char nm[32];
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        snprintf(nm, sizeof nm, "g%d", i);
        int *x = MSEG_NEW(s, nm, int, 1);
        cr_assert_not_null(x, "construct %d: %s", i, mseg_errmsg());
        *x = i;
    }
    cr_assert_eq(mseg_named_count(s), N);
    for (int i = 0; i < N; i++) {
        snprintf(nm, sizeof nm, "g%d", i);
        int *x = MSEG_FIND(s, nm, int, NULL);
        cr_assert_not_null(x, "find %s: %s", nm, mseg_errmsg());
        cr_assert_eq(*x, i);
    }
    assert_sound(s);
    for (int i = 0; i < N; i += 2) {
        snprintf(nm, sizeof nm, "g%d", i);
        cr_assert_eq(mseg_destroy(s, nm), 0);
    }
    for (int i = 0; i < N; i++) {
        snprintf(nm, sizeof nm, "g%d", i);
        int *x = MSEG_FIND(s, nm, int, NULL);
        if (i % 2)
            cr_assert(x && *x == i, "g%d lost after destroying its neighbours", i);
        else
            cr_assert_null(x);
    }
    cr_assert_eq(mseg_named_count(s), N / 2);
    assert_sound(s);
    mseg_close(s);
}

/* ---- scale: lookup is O(1) ---- */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static void obj_name(char *buf, size_t len, long i)
{
    snprintf(buf, len, "object-%07u", (unsigned)(i % 10000000));
}

static double dmin(double a, double b)
{
    return a < b ? a : b;
}

/* Seconds per find for `finds` lookups of the prepared names. */
static double time_finds(mseg *s, char (*names)[24], long finds)
{
    long sum = 0;
    double t0 = th_now();
    for (long i = 0; i < finds; i++) {
        long *x = mseg_find(s, names[i], "long", sizeof(long), NULL);
        if (!x)
            cr_assert_fail("find %s: %s", names[i], mseg_errmsg());
        sum += *x;
    }
    double t = (th_now() - t0) / (double)finds;
    cr_assert_gt(sum, -1);
    return t;
}

static void random_names(char (*names)[24], long finds, const long *pool, long npool, uint64_t *rng)
{
    for (long i = 0; i < finds; i++)
        obj_name(names[i], 24, pool ? pool[th_rand(rng) % (uint64_t)npool] : (long)(th_rand(rng) % (uint64_t)npool));
}

static mseg *segment_with_objects(long n, size_t size, double *secs)
{
    char name[256], nm[24];
    th_name(name, 0);
    struct mseg_config c = { .size = size };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &c);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    double t0 = th_now();
    for (long i = 0; i < n; i++) {
        obj_name(nm, sizeof nm, i);
        long *x = MSEG_NEW(s, nm, long, 1);
        if (!x)
            cr_assert_fail("construct %ld: %s", i, mseg_errmsg());
        *x = i;
    }
    *secs = th_now() - t0;
    cr_assert_eq(mseg_named_count(s), (size_t)n);
    return s;
}

/* The lookup is O(1): the work of a find must not grow with the number of
   objects. What is asserted is that work, counted: the directory slots a
   find reads (mseg_test_dir_probes), on average and at most, with 1,000
   objects and with a million. The times of finds are logged, not asserted
   (speed is measured by `make bench`): finds of 1,000 distinct names,
   random among the million, against finds in a directory of 1,000, and
   finds of any of the million, which also pay the memory hierarchy (each
   touches a random table slot and a random record in ~110 MB). An earlier
   version asserted the first ratio at most 3x, and a full `make test` on a
   loaded 2-core machine failed it (4.5x, 95 ns against 21 ns, on
   2026-11-29) while the same test alone passed. */
Test(named, a_million_objects_are_found_in_constant_time, .timeout = 300, .fini = th_cleanup)
{
    long big = SANITIZED ? 100000 : 1000000;
    enum { FINDS = 100000, ROUNDS = 15 };
    double t_small_build, t_big_build;
    mseg *small = segment_with_objects(1000, 4 * MiB, &t_small_build);
    mseg *s = segment_with_objects(big, 512 * MiB, &t_big_build);

    uint64_t rng = 99;
    char (*small_names)[24] = malloc(sizeof *small_names * FINDS);
    char (*hot_names)[24] = malloc(sizeof *hot_names * FINDS);
    char (*cold_names)[24] = malloc(sizeof *cold_names * FINDS);
    long pool[1000];
    cr_assert(small_names && hot_names && cold_names);
    for (long j = 0; j < 1000; j++)
        pool[j] = (long)(th_rand(&rng) % (uint64_t)big);
    random_names(small_names, FINDS, NULL, 1000, &rng);
    random_names(hot_names, FINDS, pool, 1000, &rng);
    random_names(cold_names, FINDS, NULL, big, &rng);

    double t_small = 1e9, t_hot = 1e9, t_cold = 1e9;
    for (int r = 0; r < ROUNDS; r++) {
        t_small = dmin(t_small, time_finds(small, small_names, FINDS));
        t_hot = dmin(t_hot, time_finds(s, hot_names, FINDS));
        t_cold = dmin(t_cold, time_finds(s, cold_names, FINDS));
    }
    cr_log_info("named: %ld constructs in %.2f s; find: %.0f ns with 1000 objects, %.0f ns for 1000 names "
                "among %ld (ratio %.2f), %.0f ns for any of the %ld (ratio %.2f, memory-bound)",
                big, t_big_build, t_small * 1e9, t_hot * 1e9, big, t_hot / t_small, t_cold * 1e9, big,
                t_cold / t_small);

    /* every object is there with its own value */
    char nm[24];
    for (long j = 0; j < big; j += 997) {
        obj_name(nm, sizeof nm, j);
        long *x = MSEG_FIND(s, nm, long, NULL);
        cr_assert(x && *x == j, "%s", nm);
    }
    errno = 0;
    cr_assert_null(MSEG_FIND(s, "object-missing", long, NULL));
    cr_assert_eq(errno, ENOENT);
    unsigned long longest_small, longest_big;
    double mean_small = mseg_test_dir_probes(small, &longest_small);
    double mean_big = mseg_test_dir_probes(s, &longest_big);
    cr_log_info("named: a find reads %.2f directory slots on average (at most %lu) with 1000 objects, "
                "%.2f (at most %lu) with %ld", mean_small, longest_small, mean_big, longest_big, big);
    cr_assert_leq(mean_big, 2.0, "a find among %ld objects reads %.2f directory slots on average", big, mean_big);
    cr_assert_leq(longest_big, 4 * longest_small + 64, "a find among %ld objects reads up to %lu directory slots, "
                  "against %lu among 1000", big, longest_big, longest_small);
    free(small_names);
    free(hot_names);
    free(cold_names);
    mseg_close(small);
    mseg_close(s);
}

/* The containers' type names are reserved: a raw object typed "mseg_vec"
   or "mseg_map" was accepted, listed as a container, and mseg_vec_open of
   it failed with "object x is a mseg_vec, not a mseg_vec". */
Test(named, construct_refuses_the_type_names_of_containers, .fini = th_cleanup)
{
    mseg *s = new_seg(1 << 20);
    const char *types[] = { "mseg_vec", "mseg_map" };
    for (int i = 0; i < 2; i++) {
        errno = 0;
        cr_assert_null(mseg_construct(s, "raw", types[i], 64, 1, NULL), "%s accepted", types[i]);
        cr_assert_eq(errno, EINVAL, "%s: errno %d (%s)", types[i], errno, mseg_errmsg());
        errno = 0;
        cr_assert_null(mseg_find_or_construct(s, "raw", types[i], 64, 1, NULL), "%s accepted", types[i]);
        cr_assert_eq(errno, EINVAL);
    }
    cr_assert_eq(mseg_named_count(s), 0);
    /* the containers themselves are still found by their type name */
    cr_assert_not_null(mseg_vec_open(s, "v", 4, MSEG_CREATE), "%s", mseg_errmsg());
    cr_assert_not_null(mseg_find(s, "v", "mseg_vec", 64, NULL), "%s", mseg_errmsg());
    cr_assert_not_null(mseg_construct(s, "other", "mseg_vector", 4, 1, NULL), "%s", mseg_errmsg());
    mseg_close(s);
}

/* Two directory slots naming one record: destroying either name would free
   the record while the other still leads to it. The check records the
   directory's records as blocks it owns, so it must report the second. */
Test(named, check_reports_two_directory_slots_naming_one_record, .fini = th_cleanup)
{
    mseg *s = new_seg(4 * MiB);
    uint64_t *a = mseg_construct(s, "a", "u64", 8, 1, NULL), *b = mseg_construct(s, "b", "u64", 8, 1, NULL);
    cr_assert(a && b, "%s", mseg_errmsg());
    assert_sound(s);
    const char *base = (const char *)a - mseg_off_of(s, a);
    const struct mseg_control *ctl = (const void *)(base + MSEG_CONTROL_OFF);
    uint64_t *slots = (uint64_t *)(base + ctl->dir_table), ia = UINT64_MAX, ib = UINT64_MAX;
    for (uint64_t i = 0; i < ctl->dir_capacity; i++) {
        uint64_t rec = slots[2 * i + 1];
        if (rec <= 1)
            continue;                                               /* empty or deleted */
        const struct mseg_dir_record *r = (const void *)(base + rec);
        if (rec + r->data_off == mseg_off_of(s, a))
            ia = i;
        else if (rec + r->data_off == mseg_off_of(s, b))
            ib = i;
    }
    cr_assert(ia != UINT64_MAX && ib != UINT64_MAX, "found both slots");
    uint64_t saved[2] = { slots[2 * ib], slots[2 * ib + 1] };
    slots[2 * ib] = slots[2 * ia];                                  /* damage: b's slot is a's */
    slots[2 * ib + 1] = slots[2 * ia + 1];
    struct mseg_report r;
    cr_assert_eq(mseg_verify(s, &r), -1, "two slots name the record at %#llx", (unsigned long long)slots[2 * ia + 1]);
    cr_assert_eq(errno, EUCLEAN);
    char want[64];
    snprintf(want, sizeof want, "block %#llx is referenced twice", (unsigned long long)slots[2 * ia + 1]);
    cr_assert(strstr(r.first_problem, want), "the report names the record: %s", r.first_problem);
    slots[2 * ib] = saved[0];
    slots[2 * ib + 1] = saved[1];
    assert_sound(s);
    mseg_close(s);
}

/* A directory table offset that points below the heap (into the runtime
   page) read as empty slots there: every find said ENOENT ("no object
   named x"), a silent wrong answer about a damaged segment, where the
   fast path and mseg_check both call it damaged. Found by an adversarial
   concurrency review (helper session). */
Test(named, a_directory_table_outside_the_heap_is_euclean_not_enoent, .fini = th_cleanup)
{
    char name[256];
    mseg *s = new_named_seg(name, 1 << 20);
    cr_assert_not_null(MSEG_NEW(s, "x", int, 1));
    uint64_t *table = mseg_at(s, MSEG_CONTROL_OFF + offsetof(struct mseg_control, dir_table));
    uint64_t sound = *table;
    const uint64_t bad[] = { MSEG_RUNTIME_OFF + 8, sound + 8 };
    for (size_t i = 0; i < 2; i++) {
        *table = bad[i];
        errno = 0;
        cr_assert_null(MSEG_FIND(s, "x", int, NULL));
        cr_assert_eq(errno, EUCLEAN, "table at %#llx: find said errno %d (%s)", (unsigned long long)bad[i], errno,
                     mseg_errmsg());
        errno = 0;
        cr_assert_null(MSEG_NEW(s, "y", int, 1), "created through a damaged directory");
        cr_assert_eq(errno, EUCLEAN, "table at %#llx: construct said errno %d (%s)", (unsigned long long)bad[i],
                     errno, mseg_errmsg());
    }
    *table = sound;
    cr_assert_not_null(MSEG_FIND(s, "x", int, NULL), "%s", mseg_errmsg());
    mseg_close(s);
}

/* Every failure's message names the segment and, when there is one, the
   object (mseg.h, conventions). The checks of names, types and sizes said
   only "object name must be 1..1024 bytes", "object o3: element size 0" or
   "object x is a int of 4-byte elements, not ...": which segment, the
   program could not tell. */
Test(named, every_failed_call_names_the_segment_and_the_object, .fini = th_cleanup)
{
    char name[256], too_long[MSEG_NAME_MAX + 2], long_type[MSEG_TYPE_MAX + 2];
    mseg *s = new_named_seg(name, 1 * MiB);
    memset(too_long, 'n', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = 0;
    memset(long_type, 't', sizeof long_type - 1);
    long_type[sizeof long_type - 1] = 0;
    cr_assert_not_null(mseg_construct(s, "x", "int", 4, 1, NULL), "%s", mseg_errmsg());
    th_expect_failure(!mseg_construct(s, NULL, "int", 4, 1, NULL), EINVAL, name, NULL, "a NULL name");
    th_expect_failure(!mseg_construct(s, "", "int", 4, 1, NULL), EINVAL, name, NULL, "an empty name");
    th_expect_failure(!mseg_construct(s, too_long, "int", 4, 1, NULL), EINVAL, name, NULL, "a name past the limit");
    th_expect_failure(!mseg_find(s, too_long, "int", 4, NULL), EINVAL, name, NULL, "a find of a name past the limit");
    th_expect_failure(mseg_destroy(s, too_long) == -1, EINVAL, name, NULL, "a destroy of a name past the limit");
    th_expect_failure(!mseg_construct(s, "o", NULL, 4, 1, NULL), EINVAL, name, "o", "a NULL type");
    th_expect_failure(!mseg_construct(s, "o", "", 4, 1, NULL), EINVAL, name, "o", "an empty type");
    th_expect_failure(!mseg_construct(s, "o", long_type, 4, 1, NULL), EINVAL, name, "o", "a type past the limit");
    th_expect_failure(!mseg_construct(s, "o", "int", 0, 1, NULL), EINVAL, name, "o", "element size 0");
    th_expect_failure(!mseg_construct(s, "o", "int", 16, SIZE_MAX, NULL), EINVAL, name, "o", "an overflowing size");
    th_expect_failure(!mseg_construct(s, "o", "int", SIZE_MAX, 1, NULL), ENOMEM, name, "o", "a size past any block");
    th_expect_failure(!mseg_construct(s, "o", "mseg_map", 64, 1, NULL), EINVAL, name, "o", "a container's type");
    th_expect_failure(!mseg_construct(s, "x", "int", 4, 1, NULL), EEXIST, name, "x", "a taken name");
    th_expect_failure(!mseg_find(s, "x", "long", 8, NULL), EINVAL, name, "x", "a find of another type");
    th_expect_failure(!mseg_find_or_construct(s, "x", "long", 8, 1, NULL), EINVAL, name, "x",
                   "a find_or_construct of another type");
    th_expect_failure(!mseg_vec_open(s, "x", 4, 0), EINVAL, name, "x", "a vector open of a raw object");
    th_expect_failure(!mseg_map_open(s, "x", MSEG_KEY_U64, 8, 0), EINVAL, name, "x", "a map open of a raw object");
    th_expect_failure(mseg_named_foreach(s, NULL, NULL) == -1, EINVAL, name, NULL, "a NULL callback");
    cr_assert_eq(mseg_named_count(s), 1, "the failures changed the directory");
    assert_sound(s);
    mseg_close(s);
}

/* mseg.h: mseg_named_count gives 0 with errno set for a damaged directory.
   It returned the stored count whatever it said: a count past the table's
   capacity came back as the number of objects, errno untouched. */
Test(named, a_count_the_directory_cannot_hold_is_euclean_not_a_number, .fini = th_cleanup)
{
    char name[256];
    mseg *s = new_named_seg(name, 1 * MiB);
    cr_assert_not_null(MSEG_NEW(s, "a", int, 1), "%s", mseg_errmsg());
    uint64_t *count = mseg_at(s, MSEG_CONTROL_OFF + offsetof(struct mseg_control, dir_count));
    uint64_t *used = mseg_at(s, MSEG_CONTROL_OFF + offsetof(struct mseg_control, dir_used));
    uint64_t *cap = mseg_at(s, MSEG_CONTROL_OFF + offsetof(struct mseg_control, dir_capacity));
    cr_assert_eq(*count, 1);
    uint64_t saved = *count;
    uint64_t bad[] = { *cap + 1, *used + 1, UINT64_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        *count = bad[i];
        errno = 0;
        size_t n = mseg_named_count(s);
        cr_assert_eq(n, 0, "a count of %llu (capacity %llu) came back as %zu", (unsigned long long)bad[i],
                     (unsigned long long)*cap, n);
        cr_assert_eq(errno, EUCLEAN, "errno %d", errno);
        cr_assert(strstr(mseg_errmsg(), name), "%s", mseg_errmsg());
    }
    *count = saved;
    errno = 0;
    cr_assert_eq(mseg_named_count(s), 1);
    cr_assert_eq(errno, 0);
    mseg_close(s);
}
