/* test_segment.c - opening, creating, removing segments, on both backends. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include "fsync_hook.h"
#include "helpers.h"
#include "layout.h"

#define MiB (1024u * 1024u)

/* Each check runs once per backend: NAME_file and NAME_shm. */
#define BOTH_BACKENDS(fn, ...)                                                  \
    Test(segment, fn##__file, .fini = th_cleanup, ##__VA_ARGS__) { fn(0); }      \
    Test(segment, fn##__shm, .fini = th_cleanup, ##__VA_ARGS__) { fn(MSEG_SHM); }

static const struct mseg_config small = { .size = 1 * MiB };

static mseg *create_new(char *name, unsigned be)
{
    th_name(name, be);
    mseg *s = mseg_open(name, be | MSEG_CREATE | MSEG_EXCL, &small);
    cr_assert_not_null(s, "create %s: errno %d, %s", name, errno, mseg_errmsg());
    return s;
}

static void assert_sound(mseg *s)
{
    struct mseg_report r;
    memset(&r, 0xff, sizeof r);
    int rc = mseg_verify(s, &r);
    cr_assert_eq(rc, 0, "verify failed: %s", mseg_errmsg());
    cr_assert_eq(r.problems, 0, "verify: %llu problems, first: %s",
                 (unsigned long long)r.problems, r.first_problem);
}

static void assert_errmsg_set(void)
{
    const char *m = mseg_errmsg();
    cr_assert(m && *m && strcmp(m, "no error") != 0, "mseg_errmsg() not set: \"%s\"", m ? m : "(null)");
}

/* ---- create / open flags ---- */

static void create_excl_of_existing_segment_fails_with_eexist(unsigned be)
{
    char name[256];
    mseg *s = create_new(name, be);
    mseg_close(s);
    errno = 0;
    cr_assert_null(mseg_open(name, be | MSEG_CREATE | MSEG_EXCL, &small));
    cr_assert_eq(errno, EEXIST, "errno %d (%s)", errno, mseg_errmsg());
    assert_errmsg_set();
    /* and it did not clobber the existing segment */
    s = mseg_open(name, be, NULL);
    cr_assert_not_null(s, "reopen after refused create: %s", mseg_errmsg());
    mseg_close(s);
}
BOTH_BACKENDS(create_excl_of_existing_segment_fails_with_eexist)

static void open_only_of_missing_segment_fails_with_enoent(unsigned be)
{
    char name[256];
    th_name(name, be);
    errno = 0;
    cr_assert_null(mseg_open(name, be, NULL));
    cr_assert_eq(errno, ENOENT, "errno %d (%s)", errno, mseg_errmsg());
    assert_errmsg_set();
    char path[300];
    struct stat st;
    cr_assert_neq(stat(th_path(path, name, be), &st), 0, "open-only created %s", path);
}
BOTH_BACKENDS(open_only_of_missing_segment_fails_with_enoent)

static void open_or_create_creates_then_reopens_the_same_segment(unsigned be)
{
    char name[256];
    th_name(name, be);
    mseg *s = mseg_open(name, be | MSEG_CREATE, &small);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_eq(mseg_named_count(s), 0);
    int *x = MSEG_NEW(s, "marker", int, 1);
    cr_assert_not_null(x);
    *x = 4242;
    mseg_close(s);

    s = mseg_open(name, be | MSEG_CREATE, &small);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    size_t n = 0;
    int *y = MSEG_FIND(s, "marker", int, &n);
    cr_assert_not_null(y, "second open-or-create recreated the segment: %s", mseg_errmsg());
    cr_assert_eq(n, 1);
    cr_assert_eq(*y, 4242);
    mseg_close(s);
}
BOTH_BACKENDS(open_or_create_creates_then_reopens_the_same_segment)

static void data_persists_across_close_and_reopen(unsigned be)
{
    char name[256];
    mseg *s = create_new(name, be);
    unsigned char pat[5000];
    for (size_t i = 0; i < sizeof pat; i++)
        pat[i] = (unsigned char)(i * 7 + 3);
    unsigned char *p = MSEG_NEW_FROM(s, "blob", unsigned char, sizeof pat, pat);
    cr_assert_not_null(p, "%s", mseg_errmsg());
    char *raw = mseg_alloc(s, 100);
    cr_assert_not_null(raw);
    strcpy(raw, "raw block contents");
    mseg_off raw_off = mseg_off_of(s, raw);
    size_t free_before = mseg_free_memory(s);
    cr_assert_eq(mseg_close(s), 0);

    s = mseg_open(name, be, NULL);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    size_t n = 0;
    p = MSEG_FIND(s, "blob", unsigned char, &n);
    cr_assert_not_null(p, "%s", mseg_errmsg());
    cr_assert_eq(n, sizeof pat);
    cr_assert_arr_eq(p, pat, sizeof pat);
    raw = mseg_at(s, raw_off);
    cr_assert_not_null(raw);
    cr_assert_str_eq(raw, "raw block contents");
    cr_assert_eq(mseg_free_memory(s), free_before);
    cr_assert_eq(mseg_free(s, raw), 0, "the raw block is still live after reopen: %s", mseg_errmsg());
    assert_sound(s);
    mseg_close(s);
}
BOTH_BACKENDS(data_persists_across_close_and_reopen)

/* ---- read-only ---- */

static void rdonly_finds_work_writes_fail_with_erofs_and_bytes_stay_unchanged(unsigned be)
{
    char name[256], path[300];
    mseg *s = create_new(name, be);
    long v[3] = { 1, 2, 3 };
    cr_assert_not_null(MSEG_NEW_FROM(s, "v", long, 3, v));
    void *raw = mseg_alloc(s, 64);
    cr_assert_not_null(raw);
    mseg_off raw_off = mseg_off_of(s, raw);
    mseg_close(s);

    long long sz0, sz1;
    uint64_t h0 = th_hash_file(th_path(path, name, be), &sz0);
    cr_assert_gt(sz0, 0);

    s = mseg_open(name, be | MSEG_RDONLY, NULL);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    size_t n;
    long *f = MSEG_FIND(s, "v", long, &n);
    cr_assert_not_null(f, "%s", mseg_errmsg());
    cr_assert_eq(n, 3);
    cr_assert_eq(f[2], 3);
    cr_assert_eq(mseg_named_count(s), 1);
    size_t free0 = mseg_free_memory(s);

    errno = 0;
    cr_assert_null(mseg_alloc(s, 10));
    cr_assert_eq(errno, EROFS, "alloc: errno %d", errno);
    errno = 0;
    cr_assert_null(mseg_alloc_aligned(s, 10, 64));
    cr_assert_eq(errno, EROFS, "alloc_aligned: errno %d", errno);
    errno = 0;
    cr_assert_null(MSEG_NEW(s, "w", int, 1));
    cr_assert_eq(errno, EROFS, "construct: errno %d", errno);
    errno = 0;
    cr_assert_null(MSEG_FIND_OR_NEW(s, "w", int, 1));
    cr_assert_eq(errno, EROFS, "find_or_construct of a missing name: errno %d", errno);
    errno = 0;
    cr_assert_eq(mseg_free(s, mseg_at(s, raw_off)), -1);
    cr_assert_eq(errno, EROFS, "free: errno %d", errno);
    errno = 0;
    cr_assert_eq(mseg_destroy(s, "v"), -1);
    cr_assert_eq(errno, EROFS, "destroy: errno %d", errno);
    assert_errmsg_set();
    cr_assert_eq(mseg_free_memory(s), free0);
    cr_assert_not_null(MSEG_FIND(s, "v", long, NULL));
    assert_sound(s);
    mseg_close(s);

    uint64_t h1 = th_hash_file(path, &sz1);
    cr_assert_eq(sz1, sz0);
    cr_assert_eq(h1, h0, "a read-only open changed the segment's bytes");
}
BOTH_BACKENDS(rdonly_finds_work_writes_fail_with_erofs_and_bytes_stay_unchanged)

struct store_arg { const char *name; unsigned be; };

static void store_through_rdonly_pointer(void *arg)
{
    struct store_arg *a = arg;
    mseg *s = mseg_open(a->name, a->be | MSEG_RDONLY, NULL);
    CHILD_CHECK(s != NULL);
    volatile int *x = MSEG_FIND(s, "x", int, NULL);
    CHILD_CHECK(x != NULL);
    signal(SIGSEGV, SIG_DFL);   /* die by the signal, even under ASan */
    signal(SIGBUS, SIG_DFL);
    *x = 99;            /* must fault */
    _exit(0);
}

static void store_through_rdonly_pointer_raises_sigsegv(unsigned be)
{
    char name[256];
    mseg *s = create_new(name, be);
    int *x = MSEG_NEW(s, "x", int, 1);
    cr_assert_not_null(x);
    *x = 7;
    mseg_close(s);
    struct store_arg a = { name, be };
    char why[128];
    int st = th_fork_run(store_through_rdonly_pointer, &a);
    cr_assert(st != -1 && WIFSIGNALED(st) && (WTERMSIG(st) == SIGSEGV || WTERMSIG(st) == SIGBUS),
              "child %s, expected SIGSEGV", th_status_str(st, why, sizeof why));
    s = mseg_open(name, be, NULL);
    cr_assert_not_null(s);
    cr_assert_eq(*MSEG_FIND(s, "x", int, NULL), 7);
    mseg_close(s);
}
BOTH_BACKENDS(store_through_rdonly_pointer_raises_sigsegv, .timeout = 30)

/* ---- copy-on-write ---- */

static void cow_changes_are_visible_in_the_handle_only(unsigned be)
{
    char name[256];
    mseg *s = create_new(name, be);
    int *x = MSEG_NEW(s, "x", int, 4);
    cr_assert_not_null(x);
    x[0] = 1;
    mseg_close(s);

    s = mseg_open(name, be | MSEG_COW, NULL);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    size_t free0 = mseg_free_memory(s);
    x = MSEG_FIND(s, "x", int, NULL);
    cr_assert_not_null(x);
    x[0] = 555;
    double *d = MSEG_NEW(s, "private", double, 10);
    cr_assert_not_null(d, "construct through COW: %s", mseg_errmsg());
    d[3] = 2.5;
    char *raw = mseg_alloc(s, 1000);
    cr_assert_not_null(raw, "alloc through COW: %s", mseg_errmsg());
    memset(raw, 'c', 1000);
    cr_assert_lt(mseg_free_memory(s), free0);
    cr_assert_eq(MSEG_FIND(s, "x", int, NULL)[0], 555);
    cr_assert_eq(MSEG_FIND(s, "private", double, NULL)[3], 2.5);
    cr_assert_eq(mseg_named_count(s), 2);
    assert_sound(s);

    /* a normal open while the COW handle is still open sees none of it */
    mseg *t = mseg_open(name, be, NULL);
    cr_assert_not_null(t, "%s", mseg_errmsg());
    cr_assert_eq(MSEG_FIND(t, "x", int, NULL)[0], 1);
    errno = 0;
    cr_assert_null(MSEG_FIND(t, "private", double, NULL));
    cr_assert_eq(errno, ENOENT);
    cr_assert_eq(mseg_free_memory(t), free0);
    mseg_close(t);
    mseg_close(s);

    t = mseg_open(name, be, NULL);
    cr_assert_not_null(t);
    cr_assert_eq(MSEG_FIND(t, "x", int, NULL)[0], 1);
    cr_assert_null(MSEG_FIND(t, "private", double, NULL));
    cr_assert_eq(mseg_named_count(t), 1);
    cr_assert_eq(mseg_free_memory(t), free0);
    mseg_close(t);

}
BOTH_BACKENDS(cow_changes_are_visible_in_the_handle_only)

/* mseg_shrink on a copy-on-write handle alone: EROFS, as mseg_sync. It
   failed with EBUSY "other handles are attached" with none attached (the
   door's write lock cannot be taken on its read-only descriptor). */
static void shrink_of_a_cow_handle_is_erofs_not_ebusy(unsigned be)
{
    char name[256];
    mseg *s = create_new(name, be);
    mseg_close(s);
    s = mseg_open(name, be | MSEG_COW, NULL);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    errno = 0;
    cr_assert_eq(mseg_shrink(s), -1);
    cr_assert_eq(errno, EROFS, "errno %d (%s)", errno, mseg_errmsg());
    mseg_close(s);
}
BOTH_BACKENDS(shrink_of_a_cow_handle_is_erofs_not_ebusy)

static void cow_open_and_close_leave_the_file_bytes_unchanged(unsigned be)
{
    char name[256], path[300];
    mseg *s = create_new(name, be);
    cr_assert_not_null(MSEG_NEW(s, "x", int, 4));
    mseg_close(s);
    long long sz0, sz1;
    uint64_t h0 = th_hash_file(th_path(path, name, be), &sz0);

    s = mseg_open(name, be | MSEG_COW, NULL);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    MSEG_FIND(s, "x", int, NULL)[0] = 77;
    cr_assert_not_null(MSEG_NEW(s, "y", char, 100));
    void *p = mseg_alloc(s, 4000);
    cr_assert_not_null(p);
    memset(p, 0xab, 4000);
    cr_assert_eq(mseg_destroy(s, "x"), 0);
    mseg_close(s);

    uint64_t h1 = th_hash_file(path, &sz1);
    cr_assert_eq(sz1, sz0);
    cr_assert_eq(h1, h0, "a copy-on-write handle changed the segment's bytes");
}
BOTH_BACKENDS(cow_open_and_close_leave_the_file_bytes_unchanged)

/* ---- remove ---- */

static void remove_deletes_the_segment_and_fails_with_enoent_when_absent(unsigned be)
{
    char name[256], path[300];
    mseg *s = create_new(name, be);
    mseg_close(s);
    cr_assert_eq(mseg_remove(name, be), 0, "%s", mseg_errmsg());
    struct stat st;
    cr_assert_neq(stat(th_path(path, name, be), &st), 0);
    errno = 0;
    cr_assert_null(mseg_open(name, be, NULL));
    cr_assert_eq(errno, ENOENT);
    errno = 0;
    cr_assert_eq(mseg_remove(name, be), -1);
    cr_assert_eq(errno, ENOENT);
    assert_errmsg_set();
}
BOTH_BACKENDS(remove_deletes_the_segment_and_fails_with_enoent_when_absent)

static void remove_while_open_keeps_the_mapping_usable(unsigned be)
{
    char name[256];
    mseg *s = create_new(name, be);
    int *x = MSEG_NEW(s, "x", int, 1);
    cr_assert_not_null(x);
    cr_assert_eq(mseg_remove(name, be), 0);
    *x = 5;
    cr_assert_not_null(mseg_alloc(s, 100), "%s", mseg_errmsg());
    cr_assert_eq(*MSEG_FIND(s, "x", int, NULL), 5);
    assert_sound(s);
    cr_assert_eq(mseg_close(s), 0);
}
BOTH_BACKENDS(remove_while_open_keeps_the_mapping_usable)

/* ---- configuration ---- */

static void size_is_honoured_and_free_memory_is_below_it(unsigned be)
{
    size_t sizes[] = { MSEG_MIN_SIZE, 1 * MiB, 3 * MiB + 4096 * 3, 16 * MiB };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char name[256];
        th_name(name, be);
        struct mseg_config c = { .size = sizes[i] };
        mseg *s = mseg_open(name, be | MSEG_CREATE | MSEG_EXCL, &c);
        cr_assert_not_null(s, "size %zu: %s", sizes[i], mseg_errmsg());
        cr_assert_geq(mseg_size(s), sizes[i]);
        size_t f = mseg_free_memory(s);
        cr_assert_gt(f, 0);
        cr_assert_lt(f, sizes[i]);
        cr_assert_eq(mseg_named_count(s), 0);
        /* the advertised free memory can be allocated in one block */
        void *p = mseg_alloc(s, f);
        cr_assert_not_null(p, "size %zu: cannot allocate the %zu free bytes: %s", sizes[i], f, mseg_errmsg());
        cr_assert_eq(mseg_free_memory(s), 0);
        cr_assert_eq(mseg_free(s, p), 0);
        cr_assert_eq(mseg_free_memory(s), f);
        mseg_close(s);
        struct stat st;
        char path[300];
        cr_assert_eq(stat(th_path(path, name, be), &st), 0);
        cr_assert_geq((size_t)st.st_size, sizes[i]);
    }
}
BOTH_BACKENDS(size_is_honoured_and_free_memory_is_below_it)

static void default_size_is_64_mib(unsigned be)
{
    char name[256];
    th_name(name, be);
    mseg *s = mseg_open(name, be | MSEG_CREATE | MSEG_EXCL, NULL);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_eq(mseg_size(s), (size_t)MSEG_DEFAULT_SIZE);
    mseg_close(s);
}
BOTH_BACKENDS(default_size_is_64_mib)

static void too_small_a_size_fails_with_einval(unsigned be)
{
    char name[256], path[300];
    th_name(name, be);
    struct mseg_config c = { .size = 4096 };
    errno = 0;
    cr_assert_null(mseg_open(name, be | MSEG_CREATE, &c));
    cr_assert_eq(errno, EINVAL, "errno %d (%s)", errno, mseg_errmsg());
    struct stat st;
    cr_assert_neq(stat(th_path(path, name, be), &st), 0, "a refused create left %s behind", path);
}
BOTH_BACKENDS(too_small_a_size_fails_with_einval)

/* Sizes near SIZE_MAX: rounded up to a page they wrapped to 0, so the
   message named a size of 0 ("segment size 0 is outside ...", "max_size 0
   is below size ..."). The message names the size asked for. */
static void sizes_near_size_max_fail_with_einval_naming_the_size_asked_for(unsigned be)
{
    char name[256], want[64];
    th_name(name, be);
    /* and small ones: rounded up to a page, 1000 was named as 4096 and a
       max_size of 1000000 below a size of 1 MiB as 1003520 */
    struct mseg_config cs[] = { { .size = SIZE_MAX }, { .size = SIZE_MAX - 4000 },
                                { .size = 1 * MiB, .max_size = SIZE_MAX }, { .size = 1000 },
                                { .size = 147456 - 4097 }, { .size = 1 * MiB, .max_size = 1000000 } };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        errno = 0;
        cr_assert_null(mseg_open(name, be | MSEG_CREATE, &cs[i]));
        cr_assert_eq(errno, EINVAL, "errno %d (%s)", errno, mseg_errmsg());
        snprintf(want, sizeof want, "%zu", cs[i].max_size ? cs[i].max_size : cs[i].size);
        cr_assert(strstr(mseg_errmsg(), want), "case %zu: the message does not name %s: \"%s\"", i, want,
                  mseg_errmsg());
    }
}
BOTH_BACKENDS(sizes_near_size_max_fail_with_einval_naming_the_size_asked_for)

static mode_t created_mode(unsigned be, mode_t umask_value, unsigned ask)
{
    char name[256], path[300];
    th_name(name, be);
    struct mseg_config c = { .size = 1 * MiB, .mode = ask };
    mode_t old = umask(umask_value);
    mseg *s = mseg_open(name, be | MSEG_CREATE | MSEG_EXCL, &c);
    umask(old);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    mseg_close(s);
    struct stat st;
    cr_assert_eq(stat(th_path(path, name, be), &st), 0);
    return st.st_mode & 0777;
}

static void mode_asked_for_is_the_mode_created_whatever_the_umask(unsigned be)
{
    cr_assert_eq(created_mode(be, 077, 0644), 0644);
    cr_assert_eq(created_mode(be, 0, 0600), 0600);
    cr_assert_eq(created_mode(be, 022, 0640), 0640);
}
BOTH_BACKENDS(mode_asked_for_is_the_mode_created_whatever_the_umask)

static void default_mode_is_0600(unsigned be)
{
    cr_assert_eq(created_mode(be, 0, 0), 0600);
    cr_assert_eq(created_mode(be, 022, 0), 0600);
}
BOTH_BACKENDS(default_mode_is_0600)

static void bad_flags_and_names_fail_with_einval(unsigned be)
{
    char name[256];
    th_name(name, be);
    errno = 0;
    cr_assert_null(mseg_open(NULL, be | MSEG_CREATE, &small));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(mseg_open("", be | MSEG_CREATE, &small));
    cr_assert(errno == EINVAL || errno == ENOENT, "errno %d", errno);
    errno = 0;
    cr_assert_null(mseg_open(name, be | MSEG_CREATE | MSEG_RDONLY | MSEG_COW, &small));
    cr_assert_eq(errno, EINVAL, "RDONLY|COW: errno %d", errno);
    errno = 0;
    cr_assert_null(mseg_open(name, be | MSEG_CREATE | 0x4000u, &small));
    cr_assert_eq(errno, EINVAL, "unknown flag: errno %d", errno);
}
BOTH_BACKENDS(bad_flags_and_names_fail_with_einval)

/* mseg_remove and mseg_check took any flags and looked only at MSEG_SHM:
   a stray bit removed (or checked) the segment anyway. Now an unknown bit
   is EINVAL and the segment is left as it was; the open flags a caller may
   pass along are still accepted. */
static void remove_and_check_refuse_unknown_flags(unsigned be)
{
    char name[256];
    th_name(name, be);
    mseg *s = mseg_open(name, be | MSEG_CREATE | MSEG_EXCL, &small);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0, "%s", mseg_errmsg());

    errno = 0;
    cr_assert_eq(mseg_remove(name, be | 0x4000u), -1, "a remove with an unknown flag ran");
    cr_assert_eq(errno, EINVAL, "errno %d", errno);
    cr_assert(strstr(mseg_errmsg(), "unknown flags 0x4000"), "%s", mseg_errmsg());

    struct mseg_report r;
    memset(&r, 0, sizeof r);   /* problems 0: what a caller would read as "sound" */
    errno = 0;
    cr_assert_eq(mseg_check(name, be | 0x4000u, &r), -1, "a check with an unknown flag ran");
    cr_assert_eq(errno, EINVAL, "errno %d", errno);
    cr_assert_eq(r.problems, 1, "the report of a check that did not run says %llu problems",
                 (unsigned long long)r.problems);
    cr_assert(strstr(r.first_problem, "unknown flags 0x4000"), "first_problem: %s", r.first_problem);

    cr_assert_eq(mseg_check(name, be | MSEG_DURABLE, &r), 0, "open flags are accepted: %s", mseg_errmsg());
    s = mseg_open(name, be, NULL);
    cr_assert_not_null(s, "the refused remove removed the segment: %s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_remove(name, be | MSEG_CREATE | MSEG_DURABLE), 0, "open flags are accepted: %s",
                 mseg_errmsg());
    errno = 0;
    cr_assert_null(mseg_open(name, be, NULL), "the segment is still there after its remove");
    cr_assert_eq(errno, ENOENT, "errno %d", errno);
}
BOTH_BACKENDS(remove_and_check_refuse_unknown_flags)

/* ---- interrupted creation ---- */

enum leftover { LEFT_EMPTY, LEFT_ZEROS, LEFT_INIT_MAGIC };

static void make_leftover(const char *name, unsigned be, enum leftover kind)
{
    int fd;
    if (be & MSEG_SHM)
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    else
        fd = open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0, "cannot create leftover %s: %s", name, strerror(errno));
    if (kind != LEFT_EMPTY)
        cr_assert_eq(ftruncate(fd, (off_t)small.size), 0);
    if (kind == LEFT_INIT_MAGIC)
        cr_assert_eq(pwrite(fd, MSEG_MAGIC_INIT, 8, 0), 8);
    close(fd);
}

static void interrupted_creation(unsigned be, enum leftover kind)
{
    char name[256];
    th_name(name, be);
    make_leftover(name, be, kind);

    errno = 0;
    cr_assert_null(mseg_open(name, be, NULL));
    cr_assert_eq(errno, ENOENT, "open-only: errno %d (%s)", errno, mseg_errmsg());
    assert_errmsg_set();
    const char *m = mseg_errmsg();
    cr_assert(strcasestr(m, "creat") || strcasestr(m, "interrupt"),
              "message does not mention the interrupted creation: \"%s\"", m);

    errno = 0;
    cr_assert_null(mseg_open(name, be | MSEG_RDONLY, NULL));
    cr_assert_eq(errno, ENOENT, "read-only open: errno %d", errno);

    errno = 0;
    cr_assert_null(mseg_open(name, be | MSEG_CREATE | MSEG_EXCL, &small));
    cr_assert_eq(errno, EEXIST, "create-only: errno %d (%s)", errno, mseg_errmsg());

    mseg *s = mseg_open(name, be | MSEG_CREATE, &small);
    cr_assert_not_null(s, "open-or-create over a leftover: %s", mseg_errmsg());
    cr_assert_geq(mseg_size(s), small.size);
    cr_assert_eq(mseg_named_count(s), 0);
    cr_assert_gt(mseg_free_memory(s), 0);
    int *x = MSEG_NEW(s, "x", int, 10);
    cr_assert_not_null(x, "%s", mseg_errmsg());
    void *p = mseg_alloc(s, 1000);
    cr_assert_not_null(p);
    assert_sound(s);
    mseg_close(s);

    s = mseg_open(name, be, NULL);
    cr_assert_not_null(s, "open-only after the re-creation: %s", mseg_errmsg());
    cr_assert_not_null(MSEG_FIND(s, "x", int, NULL));
    mseg_close(s);
}

static void leftover_empty_file_reads_as_interrupted_creation(unsigned be)
{ interrupted_creation(be, LEFT_EMPTY); }
BOTH_BACKENDS(leftover_empty_file_reads_as_interrupted_creation)

static void leftover_zero_filled_file_reads_as_interrupted_creation(unsigned be)
{ interrupted_creation(be, LEFT_ZEROS); }
BOTH_BACKENDS(leftover_zero_filled_file_reads_as_interrupted_creation)

static void leftover_init_magic_reads_as_interrupted_creation(unsigned be)
{ interrupted_creation(be, LEFT_INIT_MAGIC); }
BOTH_BACKENDS(leftover_init_magic_reads_as_interrupted_creation)

/* ---- a creation that fails while another MSEG_CREATE waits ---- */

/* Whether /proc/locks shows some open blocked on a lock of the inode
   (a "->" line naming ...:<ino>). */
static bool someone_waits_on(ino_t ino)
{
    FILE *f = fopen("/proc/locks", "r");
    cr_assert_not_null(f, "/proc/locks: %s", strerror(errno));
    char line[256], want[64];
    snprintf(want, sizeof want, ":%llu ", (unsigned long long)ino);
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, "->") && strstr(line, want);
    fclose(f);
    return found;
}

struct waiting_open {
    const char *name;
    unsigned be;
    mseg *s;
    int err;
};

static void *open_or_create_in_thread(void *arg)
{
    struct waiting_open *w = arg;
    w->s = mseg_open(w->name, w->be | MSEG_CREATE, &small);
    w->err = errno;
    return NULL;
}

/* A creator holds the door of the file it just made (as mseg_open does
   between open(O_CREAT) and formatting) while another MSEG_CREATE of the
   same name waits there; then the creator's formatting fails and it
   removes the name. The waiter must not format the removed file: it would
   return a segment that no name leads to, and lose its data at close. It
   must create the segment anew under the name. */
static void create_waiting_on_a_creator_that_fails_makes_the_segment_under_the_name(unsigned be)
{
    char name[256], path[300];
    th_name(name, be);
    th_path(path, name, be);
    int fd = (be & MSEG_SHM) ? shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600)
                             : open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0, "create %s: %s", path, strerror(errno));
    struct flock door = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
    cr_assert_eq(fcntl(fd, F_OFD_SETLK, &door), 0, "take the door: %s", strerror(errno));
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);

    struct waiting_open w = { name, be, NULL, 0 };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, open_or_create_in_thread, &w), 0);
    int waited_ms = 0;
    while (!someone_waits_on(st.st_ino) && waited_ms < 10000) {
        nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
        waited_ms++;
    }
    bool waiting = someone_waits_on(st.st_ino);

    /* the creator's formatting fails: it removes the name and lets go */
    cr_assert_eq(unlink(path), 0, "unlink %s: %s", path, strerror(errno));
    door.l_type = F_UNLCK;
    fcntl(fd, F_OFD_SETLK, &door);
    close(fd);
    pthread_join(t, NULL);
    cr_assert(waiting, "the second open never waited at the door (10 s)");

    cr_assert_not_null(w.s, "the waiting MSEG_CREATE failed: errno %d", w.err);
    cr_assert_not_null(MSEG_NEW(w.s, "made", int, 1), "%s", mseg_errmsg());
    mseg_close(w.s);
    cr_assert_eq(stat(path, &st), 0, "after the waiting MSEG_CREATE returned a segment, %s does not exist: "
                 "it formatted the removed file", path);
    mseg *s = mseg_open(name, be, NULL);
    cr_assert_not_null(s, "open-only of the name: %s", mseg_errmsg());
    cr_assert_not_null(MSEG_FIND(s, "made", int, NULL), "the object made through the handle is not in the "
                       "segment under the name: %s", mseg_errmsg());
    mseg_close(s);
}
BOTH_BACKENDS(create_waiting_on_a_creator_that_fails_makes_the_segment_under_the_name)

/* A creator whose formatting fails removes what it made, but only that:
   while it formats, mseg_remove may remove its file and another
   MSEG_CREATE make a segment under the name. At the failing creator's
   first fsync (MSEGINIT written) this test plays both, then lowers
   RLIMIT_FSIZE so that the creator's next step, sizing the file, fails.
   The other creator's segment must keep its name and its data. */
static const char *fc_name;
static unsigned fc_be;
static mseg *fc_other;
static int fc_phase;

static void fc_remove_and_create_meanwhile(int fd)
{
    (void)fd;
    if (fc_phase != 1)
        return;
    fc_phase = 2;
    cr_assert_eq(mseg_remove(fc_name, fc_be), 0, "%s", mseg_errmsg());
    fc_other = mseg_open(fc_name, fc_be | MSEG_CREATE, &small);
    cr_assert_not_null(fc_other, "the other MSEG_CREATE: %s", mseg_errmsg());
    cr_assert_not_null(MSEG_NEW(fc_other, "made", int, 1), "%s", mseg_errmsg());
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = 64 * 1024;
    setrlimit(RLIMIT_FSIZE, &rl);
}

static void failed_creation_leaves_a_segment_made_meanwhile_under_the_name(unsigned be)
{
    char name[256], path[300];
    th_name(name, be);
    th_path(path, name, be);
    fc_name = name;
    fc_be = be;
    fc_phase = 1;
    th_fsync_hook = fc_remove_and_create_meanwhile;
    mseg *s = mseg_open(name, be | MSEG_CREATE, &small);
    int e = errno;
    th_fsync_hook = NULL;
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_FSIZE, &rl);
    cr_assert_eq(fc_phase, 2, "the creator never reached its first fsync");
    cr_assert_null(s, "the creation was to fail at its size");
    cr_assert_eq(e, EFBIG, "%s", mseg_errmsg());
    mseg_close(fc_other);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "the failing creator removed %s, the segment another MSEG_CREATE "
                 "made there meanwhile", path);
    s = mseg_open(name, be, NULL);
    cr_assert_not_null(s, "open-only of the name: %s", mseg_errmsg());
    cr_assert_not_null(MSEG_FIND(s, "made", int, NULL), "%s", mseg_errmsg());
    mseg_close(s);
}
BOTH_BACKENDS(failed_creation_leaves_a_segment_made_meanwhile_under_the_name)

/* Bytes this process has read so far (rchar of /proc/self/io). */
static long long bytes_read_so_far(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    cr_assert_not_null(f, "/proc/self/io: %s", strerror(errno));
    long long n = -1;
    char line[128];
    while (n < 0 && fgets(line, sizeof line, f))
        sscanf(line, "rchar: %lld", &n);
    fclose(f);
    cr_assert_geq(n, 0, "no rchar in /proc/self/io");
    return n;
}

/* Deciding that a file is all zeros reads all of it; an open-only opener
   used to look again up to 20 times, 2 ms apart, for a creator that
   cannot be running (it would have marked the file): 21 reads of the
   whole file (24 s for 1 GiB). It reads it once and fails. */
static void open_only_reads_a_file_of_zeros_once(unsigned be)
{
    char name[256];
    th_name(name, be);
    int fd = (be & MSEG_SHM) ? shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600)
                             : open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0, "cannot create %s: %s", name, strerror(errno));
    static uint8_t zeros[64 * 1024];
    for (off_t at = 0; at < 8 * MiB; at += (off_t)sizeof zeros)   /* written: no holes to skip */
        cr_assert_eq(pwrite(fd, zeros, sizeof zeros, at), (ssize_t)sizeof zeros);
    close(fd);

    long long before = bytes_read_so_far();
    errno = 0;
    cr_assert_null(mseg_open(name, be, NULL));
    cr_assert_eq(errno, ENOENT, "open-only: errno %d (%s)", errno, mseg_errmsg());
    long long got = bytes_read_so_far() - before;
    cr_assert_lt(got, 2 * 8 * MiB, "open-only read %lld bytes of an 8 MiB file of zeros", got);
}
BOTH_BACKENDS(open_only_reads_a_file_of_zeros_once)

/* A file that is not a segment but whose two header areas are zeros (an
   ISO image has 32 KiB of them; a sparse file may have a hole there) is
   not a leftover: MSEG_CREATE must refuse it and leave every byte. */
enum foreign { FOREIGN_DENSE, FOREIGN_SPARSE };

static void make_foreign(const char *name, unsigned be, enum foreign kind)
{
    int fd = (be & MSEG_SHM) ? shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600)
                             : open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0, "cannot create %s: %s", name, strerror(errno));
    static const char data[] = "user data, not a segment";
    if (kind == FOREIGN_DENSE) {    /* zeros written out, then data at 64 KiB */
        static uint8_t zeros[64 * 1024];
        cr_assert_eq(pwrite(fd, zeros, sizeof zeros, 0), (ssize_t)sizeof zeros);
        cr_assert_eq(pwrite(fd, data, sizeof data, sizeof zeros), (ssize_t)sizeof data);
    } else {                        /* holes, and one data block at 5 MiB of 8 */
        cr_assert_eq(ftruncate(fd, 8 * MiB), 0);
        cr_assert_eq(pwrite(fd, data, sizeof data, 5 * MiB), (ssize_t)sizeof data);
    }
    close(fd);
}

static void create_over_a_foreign_file_with_zero_header_areas(unsigned be, enum foreign kind)
{
    char name[256], path[300];
    th_name(name, be);
    th_path(path, name, be);
    make_foreign(name, be, kind);
    long long size0, size1;
    uint64_t hash0 = th_hash_file(path, &size0);

    errno = 0;
    cr_assert_null(mseg_open(name, be | MSEG_CREATE, &small), "MSEG_CREATE formatted a foreign file");
    cr_assert_eq(errno, EUCLEAN, "errno %d (%s)", errno, mseg_errmsg());
    cr_assert(strstr(mseg_errmsg(), "not an mseg segment"), "message: \"%s\"", mseg_errmsg());
    errno = 0;
    cr_assert_null(mseg_open(name, be, NULL));
    cr_assert_eq(errno, EUCLEAN, "open-only: errno %d (%s)", errno, mseg_errmsg());

    uint64_t hash1 = th_hash_file(path, &size1);
    cr_assert_eq(size1, size0, "size changed: %lld -> %lld", size0, size1);
    cr_assert_eq(hash1, hash0, "the file's bytes changed");
}

static void create_refuses_a_foreign_file_whose_header_areas_are_zeros(unsigned be)
{ create_over_a_foreign_file_with_zero_header_areas(be, FOREIGN_DENSE); }
BOTH_BACKENDS(create_refuses_a_foreign_file_whose_header_areas_are_zeros)

static void create_refuses_a_sparse_foreign_file_whose_only_data_is_far_in(unsigned be)
{ create_over_a_foreign_file_with_zero_header_areas(be, FOREIGN_SPARSE); }
BOTH_BACKENDS(create_refuses_a_sparse_foreign_file_whose_only_data_is_far_in)

/* ---- full disk ---- */

#define SKIP_CODE 77

static void create_on_full_tmpfs(void *arg)
{
    const char *dir = arg;
    if (unshare(CLONE_NEWNS) != 0)
        _exit(SKIP_CODE);
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        _exit(SKIP_CODE);
    if (mount("tmpfs", dir, "tmpfs", 0, "size=1m") != 0)
        _exit(SKIP_CODE);
    char name[300];
    snprintf(name, sizeof name, "%s/seg", dir);
    struct mseg_config c = { .size = 4 * MiB };
    errno = 0;
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &c);
    CHILD_CHECK(s == NULL);
    CHILD_CHECK(errno == ENOSPC);
    const char *m = mseg_errmsg();
    CHILD_CHECK(m && *m && strcmp(m, "no error") != 0);
    struct stat st;
    CHILD_CHECK(stat(name, &st) != 0 && errno == ENOENT);
    /* and a segment that fits is fine */
    c.size = 512 * 1024;
    s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &c);
    CHILD_CHECK(s != NULL);
    CHILD_CHECK(mseg_alloc(s, 1000) != NULL);
    mseg_close(s);
    mseg_remove(name, 0);
    umount(dir);
    _exit(0);
}

Test(segment, create_on_a_full_disk_fails_with_enospc_and_leaves_no_file, .timeout = 30, .fini = th_cleanup)
{
    char dir[256];
    th_name(dir, 0);
    cr_assert_eq(mkdir(dir, 0700), 0);
    th_track(dir, TH_DIR);
    char why[128];
    int st = th_fork_run(create_on_full_tmpfs, dir);
    if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == SKIP_CODE)
        cr_skip_test("cannot mount a tmpfs here (unshare/mount not permitted)");
    cr_assert(TH_EXITED_OK(st), "child %s", th_status_str(st, why, sizeof why));
}

/* ---- threads ---- */

struct thread_arg { mseg *s; int id; int failures; };

static void *thread_work(void *p)
{
    struct thread_arg *a = p;
    uint64_t rng = (uint64_t)a->id * 7919 + 1;
    void *live[64] = { 0 };
    char name[64];
    for (int i = 0; i < 3000; i++) {
        uint64_t r = th_rand(&rng);
        int slot = (int)(r % 64);
        switch ((r >> 8) % 4) {
        case 0:
        case 1:
            if (live[slot]) {
                if (((unsigned char *)live[slot])[0] != (unsigned char)a->id)
                    a->failures++;
                if (mseg_free(a->s, live[slot]) != 0)
                    a->failures++;
                live[slot] = NULL;
            } else {
                size_t n = 1 + (size_t)((r >> 16) % 700);
                live[slot] = mseg_alloc(a->s, n);
                if (!live[slot])
                    a->failures++;
                else
                    memset(live[slot], a->id, n);
            }
            break;
        case 2:
            snprintf(name, sizeof name, "t%d-%d", a->id, slot);
            if (mseg_find(a->s, name, "int", sizeof(int), NULL)) {
                if (mseg_destroy(a->s, name) != 0)
                    a->failures++;
            } else if (errno != ENOENT) {
                a->failures++;
            } else {
                int *x = MSEG_NEW(a->s, name, int, 4);
                if (!x)
                    a->failures++;
                else
                    x[0] = a->id;
            }
            break;
        case 3: {
            snprintf(name, sizeof name, "t%d-%d", a->id, slot);
            int *x = MSEG_FIND_OR_NEW(a->s, name, int, 4);
            if (!x)
                a->failures++;
            else
                x[0] = a->id;
            break;
        }
        }
    }
    for (int i = 0; i < 64; i++)
        if (live[i] && mseg_free(a->s, live[i]) != 0)
            a->failures++;
    return NULL;
}

static void threads_sharing_one_handle_keep_the_segment_sound(unsigned be)
{
    char name[256];
    th_name(name, be);
    struct mseg_config c = { .size = 16 * MiB };
    mseg *s = mseg_open(name, be | MSEG_CREATE | MSEG_EXCL, &c);
    cr_assert_not_null(s);
    pthread_t t[4];
    struct thread_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thread_arg){ s, i + 1, 0 };
        cr_assert_eq(pthread_create(&t[i], NULL, thread_work, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(a[i].failures, 0, "thread %d: %d failed operations", i + 1, a[i].failures);
    assert_sound(s);
    /* every surviving object belongs to the thread that named it */
    char nm[64];
    for (int id = 1; id <= 4; id++)
        for (int slot = 0; slot < 64; slot++) {
            snprintf(nm, sizeof nm, "t%d-%d", id, slot);
            int *x = MSEG_FIND(s, nm, int, NULL);
            if (x)
                cr_assert_eq(x[0], id);
        }
    mseg_close(s);
    cr_assert_eq(mseg_check(name, be, NULL), 0, "%s", mseg_errmsg());
}
BOTH_BACKENDS(threads_sharing_one_handle_keep_the_segment_sound, .timeout = 60)

/* cfg is "only used when the segment is created" (mseg.h): an open of an
   existing segment without MSEG_CREATE failed with EINVAL when cfg held a
   size no segment may have, though nothing was to be created (found by an
   adversarial review). And mseg_size(NULL), like the other calls given no
   handle, says EINVAL. */
Test(segment, an_open_without_create_ignores_cfg_and_mseg_size_of_null_is_einval, .fini = th_cleanup)
{
    char name[256];
    th_name(name, 0);
    struct mseg_config small = { .size = 1u << 20 };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &small);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0);
    struct mseg_config bad = { .size = 1, .max_size = 2 };
    s = mseg_open(name, 0, &bad);
    cr_assert_not_null(s, "open without MSEG_CREATE judged cfg: %s", mseg_errmsg());
    cr_expect_eq(mseg_size(s), 1u << 20);
    cr_assert_eq(mseg_close(s), 0);
    errno = 0;
    cr_assert_null(mseg_open(name, MSEG_CREATE, &bad), "a bad cfg with MSEG_CREATE was accepted");
    cr_expect_eq(errno, EINVAL);
    errno = 0;
    cr_expect_eq(mseg_size(NULL), 0);
    cr_expect_eq(errno, EINVAL);
}

/* A refused open, remove, check or aligned allocation names the segment
   (mseg.h, conventions): "unknown flags 0x4000", "MSEG_EXCL needs
   MSEG_CREATE", "segment size 100 is outside [...]" or "alignment 3 is not
   a power of two up to 4096" did not say which segment the call was for. */
Test(segment, refused_arguments_are_einval_naming_the_segment, .fini = th_cleanup)
{
    char name[256], fresh[256];
    mseg *s = create_new(name, 0);
    th_name(fresh, 0);
    struct mseg_config tiny = { .size = 100 }, below = { .size = 2 * MiB, .max_size = 1 * MiB };
    th_expect_failure(!mseg_open(name, 0x4000, NULL), EINVAL, name, NULL, "an open with unknown flags");
    th_expect_failure(!mseg_open(name, MSEG_EXCL, NULL), EINVAL, name, NULL, "MSEG_EXCL without MSEG_CREATE");
    th_expect_failure(!mseg_open(name, MSEG_RDONLY | MSEG_COW, NULL), EINVAL, name, NULL, "MSEG_RDONLY with MSEG_COW");
    th_expect_failure(!mseg_open(name, MSEG_CREATE | MSEG_RDONLY, NULL), EINVAL, name, NULL,
                      "MSEG_CREATE with MSEG_RDONLY");
    th_expect_failure(!mseg_open(name, MSEG_COW | MSEG_DURABLE, NULL), EINVAL, name, NULL,
                      "MSEG_COW with MSEG_DURABLE");
    th_expect_failure(!mseg_open(fresh, MSEG_CREATE, &tiny), EINVAL, fresh, NULL, "a size below the smallest segment");
    th_expect_failure(!mseg_open(fresh, MSEG_CREATE, &below), EINVAL, fresh, NULL, "a max_size below the size");
    char *too_long = malloc(PATH_MAX + 1);
    cr_assert_not_null(too_long);
    memset(too_long, 'p', PATH_MAX);
    too_long[PATH_MAX] = 0;
    memcpy(too_long, name, strlen(name));     /* begins as the segment's name does */
    th_expect_failure(!mseg_open(too_long, MSEG_CREATE, NULL), EINVAL, name, NULL, "a path past PATH_MAX");
    free(too_long);
    th_expect_failure(mseg_remove(name, 0x4000) == -1, EINVAL, name, NULL, "a remove with unknown flags");
    th_expect_failure(mseg_check(name, 0x4000, NULL) == -1, EINVAL, name, NULL, "a check with unknown flags");
    th_expect_failure(!mseg_alloc_aligned(s, 16, 3), EINVAL, name, NULL, "an alignment of 3");
    th_expect_failure(!mseg_alloc_aligned(s, 16, 8192), EINVAL, name, NULL, "an alignment of 8192");
    cr_assert_eq(access(fresh, F_OK), -1, "a refused create made %s", fresh);
    assert_sound(s);
    mseg_close(s);
}
