/*
 * test_durability.c - what MSEG_DURABLE and mseg_sync promise, and what a
 * failed flush does to a handle.
 *
 * The power-loss simulator (test_powerloss.c) checks recovery from every
 * crash image; these tests pin the protocol's costs and its failure rules.
 */
#include <criterion/criterion.h>

#include "helpers.h"
#include "testing.h"

static mseg *open_new(char *name, unsigned flags)
{
    th_name(name, flags & MSEG_SHM);
    struct mseg_config cfg = { .size = 4u << 20 };
    mseg *s = mseg_open(name, flags | MSEG_CREATE | MSEG_EXCL, &cfg);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    return s;
}

/* msync calls made by one call of fn on a durable handle */
static unsigned long flushes_of(mseg *s, void (*fn)(mseg *, void *), void *arg)
{
    unsigned long before = mseg_test_flushes(s);
    fn(s, arg);
    return mseg_test_flushes(s) - before;
}

static void do_alloc(mseg *s, void *out) { *(void **)out = mseg_alloc(s, 100); }
static void do_free(mseg *s, void *p) { cr_assert_eq(mseg_free(s, *(void **)p), 0); }
static void do_construct(mseg *s, void *name) { cr_assert_not_null(MSEG_NEW(s, (const char *)name, long, 4)); }
static void do_destroy(mseg *s, void *name) { cr_assert_eq(mseg_destroy(s, (const char *)name), 0); }

static void do_construct_big(mseg *s, void *name) { cr_assert_not_null(MSEG_NEW(s, (const char *)name, char, 8192)); }

/* One msync per operation: its log, together with the pages the previous
   operation changed (log.c). An operation that writes more fresh bytes than
   it can log flushes them first: two. */
Test(durability, a_durable_operation_costs_one_msync, .fini = th_cleanup)
{
    char name[256];
    mseg *s = open_new(name, MSEG_DURABLE);
    cr_assert_not_null(MSEG_NEW(s, "warm", long, 1));   /* the directory exists */
    void *p = NULL;
    cr_expect_eq(flushes_of(s, do_alloc, &p), 1);
    cr_assert_not_null(p);
    cr_expect_eq(flushes_of(s, do_free, &p), 1);
    cr_expect_eq(flushes_of(s, do_construct, "x"), 1);
    cr_expect_eq(flushes_of(s, do_destroy, "x"), 1);
    cr_expect_eq(flushes_of(s, do_construct_big, "big"), 2);
    cr_expect_eq(flushes_of(s, do_destroy, "big"), 1);
    cr_assert_eq(mseg_close(s), 0);
}

Test(durability, a_non_durable_handle_flushes_once_per_sync_period, .fini = th_cleanup)
{
    char name[256];
    mseg *s = open_new(name, 0);
    unsigned long before = mseg_test_flushes(s);
    for (int i = 0; i < 100; i++)
        cr_assert_not_null(mseg_alloc(s, 64));
    cr_expect_eq(mseg_test_flushes(s) - before, 1, "the unsynced mark, once");
    cr_assert_eq(mseg_sync(s), 0);
    before = mseg_test_flushes(s);
    for (int i = 0; i < 100; i++)
        cr_assert_not_null(mseg_alloc(s, 64));
    cr_expect_eq(mseg_test_flushes(s) - before, 1, "and once again after a sync");
    cr_assert_eq(mseg_close(s), 0);
}

static void failed_flush_is_fatal(unsigned flags)
{
    char name[256];
    mseg *s = open_new(name, flags);
    cr_assert_not_null(MSEG_NEW(s, "before", long, 1));
    mseg_test_fail_flush(1);
    if (flags & MSEG_DURABLE) {
        errno = 0;
        void *p = MSEG_NEW(s, "during", long, 1);
        int e = errno;
        cr_assert(p == NULL && e == EIO, "durable construct with a failing msync: %p, errno %d", p, e);
    } else {
        errno = 0;
        cr_assert_eq(mseg_sync(s), -1, "mseg_sync with a failing msync succeeded");
        cr_assert_eq(errno, EIO);
    }
    mseg_test_fail_flush(0);
    /* the handle refuses every later write: a retry could lie */
    errno = 0;
    cr_assert_null(mseg_alloc(s, 10));
    cr_assert_eq(errno, EIO);
    cr_assert_eq(mseg_sync(s), -1);
    cr_assert_eq(errno, EIO);
    cr_assert_not_null(MSEG_FIND(s, "before", long, NULL), "reads still work: %s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0);
    /* a new handle starts afresh, on a sound segment */
    struct mseg_report r;
    cr_assert_eq(mseg_check(name, flags & MSEG_SHM, &r), 0, "%s", mseg_errmsg());
    s = mseg_open(name, flags & ~MSEG_DURABLE, NULL);
    cr_assert_not_null(s);
    cr_assert_not_null(mseg_alloc(s, 10), "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0);
}

Test(durability, a_failed_msync_of_a_durable_commit_is_fatal_for_the_handle, .fini = th_cleanup)
{
    failed_flush_is_fatal(MSEG_DURABLE);
}

Test(durability, a_failed_msync_in_mseg_sync_is_fatal_for_the_handle, .fini = th_cleanup)
{
    failed_flush_is_fatal(0);
}

/* After a restart (another boot id), a segment with unsynced changes is
   verified before use; one synced before the restart is trusted as is. */
Test(durability, a_restart_with_unsynced_changes_triggers_verification, .fini = th_cleanup)
{
    char name[256];
    mseg *s = open_new(name, 0);
    cr_assert_not_null(MSEG_NEW(s, "a", long, 1));
    cr_assert_eq(mseg_sync(s), 0);
    cr_assert_eq(mseg_close(s), 0);

    static const uint8_t other_boot[16] = { 0xb0, 0x07 };
    mseg_test_set_boot_id(other_boot);
    struct mseg_report r;
    cr_assert_eq(mseg_check(name, 0, &r), 0, "%s", mseg_errmsg());
    cr_expect_eq(r.recovered, 0, "synced before the restart: nothing to verify");

    mseg_test_set_boot_id(NULL);
    s = mseg_open(name, 0, NULL);
    cr_assert_not_null(MSEG_NEW(s, "b", long, 1));   /* unsynced from here */
    cr_assert_eq(mseg_close(s), 0);
    mseg_test_set_boot_id(other_boot);
    cr_assert_eq(mseg_check(name, 0, &r), 0, "%s", mseg_errmsg());
    cr_expect_eq(r.recovered, 1, "unsynced changes before the restart: verified");
    s = mseg_open(name, 0, NULL);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_not_null(MSEG_FIND(s, "b", long, NULL));
    cr_assert_eq(mseg_close(s), 0);
    mseg_test_set_boot_id(NULL);
}
