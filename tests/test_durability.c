/*
 * test_durability.c - what MSEG_DURABLE and mseg_sync promise, and what a
 * failed flush does to a handle.
 *
 * The power-loss simulator (test_powerloss.c) checks recovery from every
 * crash image; these tests pin the protocol's costs and its failure rules.
 */
#include <criterion/criterion.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "fsync_hook.h"
#include "helpers.h"
#include "inspect.h"  /* mseg_copy_locked */
#include "layout.h"   /* MSEG_RUNTIME_OFF, MSEG_PAGE: which pages a power loss kept */
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

/* A power loss between syncs kept the pages of a vector's new buffer and its
   root, but not the page with the header of the free block the buffer was
   carved from. Recovery's rebuild follows that old header, which covers the
   buffer as free space. Before the check compared containers' blocks with
   its own heap walk, this image verified sound and the next allocation
   overlapped the vector's elements (found by a review; a helper session). */
Test(durability, a_power_loss_image_whose_vector_points_into_free_space_is_refused, .fini = th_cleanup)
{
    static const uint8_t before_boot[16] = { 0xa1, 1 }, after_boot[16] = { 0xb2, 2 };
    char name[256], image[256];
    mseg_test_set_boot_id(before_boot);
    th_name(name, 0);
    struct mseg_config cfg = { .size = 1u << 20 };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &cfg);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    mseg_vec *v = mseg_vec_open(s, "v", 8, MSEG_CREATE);
    uint64_t e = 1;
    cr_assert_eq(mseg_vec_push(s, v, &e), 0);
    cr_assert_not_null(mseg_alloc(s, 40000));   /* the free block's header on a page of its own */
    cr_assert_eq(mseg_sync(s), 0, "%s", mseg_errmsg());
    size_t n;
    uint8_t *disk = th_read_file(name, &n);     /* what the disk holds after the sync */
    cr_assert_not_null(disk);
    uint8_t *base = (uint8_t *)v - mseg_off_of(s, v);
    void *x = mseg_alloc(s, 20000);             /* carved from the free block: its header moves */
    cr_assert_not_null(x);
    cr_assert_eq(mseg_vec_reserve(s, v, 100), 0, "%s", mseg_errmsg());   /* carved after x */
    for (e = 2; e <= 10; e++)
        cr_assert_eq(mseg_vec_push(s, v, &e), 0);
    uint64_t root = mseg_off_of(s, v), buf = mseg_off_of(s, mseg_vec_data(s, v));
    uint64_t bsize = (uint64_t)(*(uint32_t *)(base + buf - 4) >> 2) * 16;
    uint64_t kept[] = { MSEG_RUNTIME_OFF / MSEG_PAGE, root / MSEG_PAGE, (buf - 4) / MSEG_PAGE,
                        (buf + bsize - 4) / MSEG_PAGE };
    uint64_t lost = (mseg_off_of(s, x) - 4) / MSEG_PAGE;   /* the old free block's header */
    for (size_t i = 0; i < 4; i++) {
        cr_assert_neq(kept[i], lost, "layout: the test needs the old header on a page of its own");
        memcpy(disk + kept[i] * MSEG_PAGE, base + kept[i] * MSEG_PAGE, MSEG_PAGE);
    }
    th_name(image, 0);
    cr_assert_eq(th_write_file(image, disk, n), 0);
    free(disk);
    mseg_test_set_boot_id(after_boot);           /* the machine restarted */
    struct mseg_report r;
    errno = 0;
    cr_assert_eq(mseg_check(image, 0, &r), -1, "the image verified sound");
    cr_assert_eq(errno, EUCLEAN);
    cr_assert(strstr(mseg_errmsg(), "not a live block"), "%s", mseg_errmsg());
    errno = 0;
    cr_assert_null(mseg_open(image, 0, NULL), "the image was handed out");
    cr_assert_eq(errno, EUCLEAN, "%s", mseg_errmsg());
    mseg_test_set_boot_id(NULL);
    mseg_close(s);
}

/* The disk as a power loss leaves it: the file as it was at `disk` (taken
   when everything was flushed), plus every range a flush wrote since. */
static uint8_t *pl_disk;
static void pl_on_flush(const uint8_t *base, uint64_t size, uint64_t off, uint64_t len, void *arg)
{
    (void)size, (void)arg;
    memcpy(pl_disk + off, base + off, len);
}

/* pl_disk as a copy of the file name in memory shared with forked
   children (which flush into it through pl_on_flush too); its length. */
static size_t disk_shared_from(const char *name)
{
    size_t n;
    uint8_t *file = th_read_file(name, &n);
    cr_assert_not_null(file);
    pl_disk = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(pl_disk, MAP_FAILED);
    memcpy(pl_disk, file, n);
    free(file);
    return n;
}

/* A new 1 MiB segment opened with MSEG_DURABLE at name, the kernel's
   boot id faked to boot (mseg_test_set_boot_id: a later "reboot" is a
   different one). */
static mseg *segment_at_boot(char *name, const uint8_t *boot, unsigned flags)
{
    mseg_test_set_boot_id(boot);
    th_name(name, 0);
    struct mseg_config cfg = { .size = 1u << 20 };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL | flags, &cfg);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    return s;
}

static mseg *durable_at_boot(char *name, const uint8_t *boot)
{
    return segment_at_boot(name, boot, MSEG_DURABLE);
}

/* The power loss: pl_disk (n bytes) becomes the file, the machine restarts
   with after_boot as its boot id (NULL: as the test set it), and the
   segment is opened durable and verified. The caller closes it. */
static mseg *reopen_after_power_loss(size_t n, const uint8_t *after_boot)
{
    char image[256];
    th_name(image, 0);
    cr_assert_eq(th_write_file(image, pl_disk, n), 0);
    free(pl_disk);
    pl_disk = NULL;
    if (after_boot)
        mseg_test_set_boot_id(after_boot);
    mseg *r = mseg_open(image, MSEG_DURABLE, NULL);
    cr_assert_not_null(r, "%s", mseg_errmsg());
    struct mseg_report rep;
    cr_expect_eq(mseg_verify(r, &rep), 0, "%s", mseg_errmsg());
    return r;
}

/* A durable segment closed cleanly and opened again in the same boot (a
   restarted program), then a power loss. The runtime page on disk said
   "clean" from the close, and nothing flushed the "open" the reopen stored:
   recovery took the image for a process crash, replayed only an operation
   its log head showed in flight, and lost an acknowledged commit whose log
   head reached the disk with `active` clear (flushed by the rollback of a
   find that found, or written back by the kernel on its own after step 4).
   The segment then checked sound without the object. kernel_writeback: the
   log head page reaches the disk as memory holds it after the commit. */
static void reopened_durable_commit_survives(bool kernel_writeback, bool lazy_first_writer)
{
    static const uint8_t boot[16] = { 0xa1, 3 }, after_boot[16] = { 0xb2, 4 };
    char name[256];
    mseg *s = durable_at_boot(name, boot);
    cr_assert_not_null(MSEG_NEW(s, "before", long, 4));
    cr_assert_eq(mseg_close(s), 0);                /* clean close */
    size_t n;
    pl_disk = th_read_file(name, &n);              /* all flushed by the close */
    cr_assert_not_null(pl_disk);
    mseg_test_set_flush_hook(pl_on_flush, NULL);
    /* lazy_first_writer: a handle without MSEG_DURABLE attaches first and
       changes nothing, so it never flushes "open"; the durable one that
       attaches after it must */
    mseg *lazy = lazy_first_writer ? mseg_open(name, 0, NULL) : NULL;
    cr_assert(!lazy_first_writer || lazy, "%s", mseg_errmsg());
    s = mseg_open(name, MSEG_DURABLE, NULL);       /* same boot */
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_not_null(MSEG_NEW(s, "x", long, 4), "%s", mseg_errmsg());   /* acknowledged */
    if (kernel_writeback) {
        const uint8_t *base = (const uint8_t *)mseg_at(s, MSEG_PAGE) - MSEG_PAGE;
        memcpy(pl_disk + MSEG_LOG_OFF, base + MSEG_LOG_OFF, MSEG_PAGE);
    } else {
        cr_assert_not_null(mseg_find_or_construct(s, "x", "long", sizeof(long), 4, NULL));
    }
    mseg_test_set_flush_hook(NULL, NULL);
    mseg *r = reopen_after_power_loss(n, after_boot);
    cr_expect_not_null(MSEG_FIND(r, "before", long, NULL));
    cr_expect_not_null(MSEG_FIND(r, "x", long, NULL), "the acknowledged durable construct was lost");
    mseg_close(r);
    mseg_test_set_boot_id(NULL);
    mseg_close(s);
    if (lazy)
        mseg_close(lazy);
}

Test(durability, a_durable_commit_after_a_same_boot_reopen_survives_a_power_loss_after_a_found_find,
     .fini = th_cleanup)
{
    reopened_durable_commit_survives(false, false);
}

Test(durability, a_durable_second_writer_after_a_same_boot_reopen_survives_a_power_loss, .fini = th_cleanup)
{
    reopened_durable_commit_survives(false, true);
    reopened_durable_commit_survives(true, true);
}

Test(durability, a_durable_commit_after_a_same_boot_reopen_survives_a_power_loss_after_a_log_writeback,
     .fini = th_cleanup)
{
    reopened_durable_commit_survives(true, false);
}

/* Two handles on one segment: a non-durable one changes it (the segment is
   then marked unsynced on disk), then a durable one commits. A power loss
   then found the unsynced mark: recovery distrusted the log and discarded
   it, the durable handle's acknowledged commit with it (its pages were
   owed to the next commit), and the segment verified sound without it. */
Test(durability, a_durable_commit_after_another_handles_unsynced_change_survives_a_power_loss,
     .fini = th_cleanup)
{
    static const uint8_t boot[16] = { 0xa1, 5 }, after_boot[16] = { 0xb2, 6 };
    char name[256];
    mseg *d = durable_at_boot(name, boot);
    cr_assert_not_null(MSEG_NEW(d, "before", long, 4));
    cr_assert_eq(mseg_sync(d), 0, "%s", mseg_errmsg());
    size_t n;
    pl_disk = th_read_file(name, &n);              /* all flushed by the sync */
    cr_assert_not_null(pl_disk);
    mseg_test_set_flush_hook(pl_on_flush, NULL);
    mseg *lazy = mseg_open(name, 0, NULL);
    cr_assert_not_null(lazy, "%s", mseg_errmsg());
    cr_assert_not_null(mseg_alloc(lazy, 64));     /* unsynced */
    cr_assert_not_null(MSEG_NEW(d, "x", long, 4), "%s", mseg_errmsg());   /* acknowledged */
    mseg_test_set_flush_hook(NULL, NULL);
    mseg *r = reopen_after_power_loss(n, after_boot);
    cr_expect_not_null(MSEG_FIND(r, "before", long, NULL));
    cr_expect_not_null(MSEG_FIND(r, "x", long, NULL), "the acknowledged durable construct was lost");
    mseg_close(r);
    mseg_test_set_boot_id(NULL);
    mseg_close(lazy);
    mseg_close(d);
}

/* Where the kernel's boot id cannot be read, every first open counts as one
   after a possible reboot. A durable operation in flight (construct: its
   record and data written in place into a block carved from a free block,
   over that free block's links and footer) when the power went: the heap
   pages reached the disk, its log did not. Recovery replayed the committed
   slots, but rebuilt the free lists only when the boot id showed a reboot,
   which an unknown one never does: the segment reopened with a free block's
   links and footer overwritten ("bins: block ...'s back link is ...") and
   the next free failed with EUCLEAN. */
static mseg *pl_seg;
static void pl_heap_written_back(const char *point, unsigned long n, void *arg)
{
    (void)n, (void)arg;
    if (strcmp(point, "log.written") != 0)
        return;
    const uint8_t *base = (const uint8_t *)mseg_at(pl_seg, MSEG_PAGE) - MSEG_PAGE;
    size_t size = mseg_size(pl_seg);
    for (size_t off = MSEG_HEAP_OFF; off < size; off += MSEG_PAGE)
        memcpy(pl_disk + off, base + off, MSEG_PAGE);
    mseg_test_set_flush_hook(NULL, NULL);          /* the power is off from here */
    mseg_test_set_crash_hook(NULL, NULL);
}

Test(durability, without_a_boot_id_a_power_loss_mid_operation_reopens_sound, .fini = th_cleanup)
{
    static const uint8_t unknown[16];
    char name[256];
    mseg *s = durable_at_boot(name, unknown);
    uint64_t *first = MSEG_NEW(s, "first", uint64_t, 1);
    cr_assert_not_null(first);
    void *a = mseg_alloc(s, 64), *b = mseg_alloc(s, 1000), *c = mseg_alloc(s, 64);
    cr_assert(a && b && c);
    cr_assert_eq(mseg_free(s, b), 0);              /* a free block between a and c */
    *first = mseg_off_of(s, c);
    cr_assert_eq(mseg_sync(s), 0, "%s", mseg_errmsg());
    size_t n;
    pl_disk = th_read_file(name, &n);
    cr_assert_not_null(pl_disk);
    mseg_test_set_flush_hook(pl_on_flush, NULL);
    cr_assert_not_null(mseg_alloc(s, 16));         /* a durable commit: its slot stays */
    pl_seg = s;
    mseg_test_set_crash_hook(pl_heap_written_back, NULL);
    uint8_t init[936];
    memset(init, 0x5a, sizeof init);
    cr_assert_not_null(mseg_construct(s, "y", "u8", 1, sizeof init, init));   /* the whole free block */
    mseg *r = reopen_after_power_loss(n, NULL);   /* after the restart: boot id still unknown */
    struct mseg_report rep;
    uint64_t *f = MSEG_FIND(r, "first", uint64_t, NULL);
    cr_assert_not_null(f);
    cr_expect_eq(mseg_free(r, mseg_at(r, *f)), 0, "%s", mseg_errmsg());
    cr_expect_eq(mseg_verify(r, &rep), 0, "%s", mseg_errmsg());
    mseg_close(r);
    mseg_test_set_boot_id(NULL);
    mseg_close(s);
}

/* Without MSEG_DURABLE: mseg_sync inside a transaction cleared the unsynced
   mark, and the rest of the transaction changed the segment without
   setting it again (only lock_for_write, at the transaction's begin, sets
   it). A power loss after the commit kept the control page but not the
   directory's: the first opener, seeing no unsynced mark, skipped the
   verification, and handed out a segment whose directory disagreed with
   its control page. It must be refused (EUCLEAN) or sound. */
Test(durability, a_sync_inside_a_transaction_leaves_the_rest_of_it_verified_after_a_power_loss,
     .fini = th_cleanup)
{
    static const uint8_t boot[16] = { 0xa1, 7 }, after_boot[16] = { 0xb2, 8 };
    char name[256], image[256];
    mseg *s = segment_at_boot(name, boot, 0);
    for (int i = 0; i < 10; i++) {
        char n[16];
        snprintf(n, sizeof n, "o%d", i);
        cr_assert_not_null(MSEG_NEW(s, n, uint64_t, 4));
    }
    cr_assert_eq(mseg_sync(s), 0, "%s", mseg_errmsg());
    size_t n;
    pl_disk = th_read_file(name, &n);
    cr_assert_not_null(pl_disk);
    mseg_test_set_flush_hook(pl_on_flush, NULL);
    cr_assert_eq(mseg_tx_begin(s), 0);
    cr_assert_eq(mseg_sync(s), 0, "%s", mseg_errmsg());
    for (int i = 0; i < 6; i++) {
        char z[16];
        snprintf(z, sizeof z, "z%d", i);
        cr_assert_not_null(MSEG_NEW(s, z, uint64_t, 600));
    }
    cr_assert_eq(mseg_destroy(s, "o3"), 0);
    cr_assert_eq(mseg_tx_commit(s), 0, "%s", mseg_errmsg());
    mseg_test_set_flush_hook(NULL, NULL);
    /* the power goes: of the pages changed since, the control page is on disk */
    const uint8_t *base = (const uint8_t *)mseg_at(s, MSEG_PAGE) - MSEG_PAGE;
    memcpy(pl_disk + MSEG_CONTROL_OFF, base + MSEG_CONTROL_OFF, MSEG_PAGE);
    th_name(image, 0);
    cr_assert_eq(th_write_file(image, pl_disk, n), 0);
    free(pl_disk);
    mseg_test_set_boot_id(after_boot);
    errno = 0;
    mseg *r = mseg_open(image, 0, NULL);
    if (r) {
        struct mseg_report rep;
        cr_expect_eq(mseg_verify(r, &rep), 0, "handed out damaged: %s", mseg_errmsg());
        mseg_close(r);
    } else {
        cr_expect_eq(errno, EUCLEAN, "%s", mseg_errmsg());
    }
    mseg_test_set_boot_id(NULL);
    mseg_close(s);
}

/* A copy-on-write view's changes never reach the file, so MSEG_DURABLE's
   promise (on disk when it returns) cannot hold there: the open is refused
   rather than every operation acknowledged as durable and kept private. */
Test(durability, a_copy_on_write_open_refuses_MSEG_DURABLE, .fini = th_cleanup)
{
    char name[256];
    mseg *s = open_new(name, 0);
    cr_assert_eq(mseg_close(s), 0);
    errno = 0;
    cr_assert_null(mseg_open(name, MSEG_COW | MSEG_DURABLE, NULL), "a durable private view was opened");
    cr_expect_eq(errno, EINVAL);
    s = mseg_open(name, MSEG_COW, NULL);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    mseg_close(s);
}

/* Without MSEG_DURABLE, mseg_shrink flushed both header copies with the new
   size and cut the file, but the heap's trim (the control page's heap end,
   the new last block) stayed in the page cache. A power loss right after it
   left a header and a file that ended where the heap on disk still went on:
   the first open after the restart refused the segment (EUCLEAN), though
   the shrink had returned and nothing ran after it (found by a helper
   session's power-loss simulation). A shrink now makes everything before
   it durable, as mseg_sync, before it writes the new size. The disk is
   tried with the file cut and, as when the truncation's metadata did not
   reach the disk, at the old length. */
Test(durability, a_shrink_without_MSEG_DURABLE_survives_a_power_loss_right_after_it, .fini = th_cleanup)
{
    static const uint8_t boot[16] = { 0xa1, 9 }, after_boot[16] = { 0xb2, 10 };
    char name[256];
    mseg *s = segment_at_boot(name, boot, 0);
    uint64_t *keep = MSEG_NEW(s, "keep", uint64_t, 4);
    cr_assert_not_null(keep);
    cr_assert_not_null(MSEG_NEW(s, "big", char, 600000), "%s", mseg_errmsg());
    cr_assert_eq(mseg_sync(s), 0, "%s", mseg_errmsg());
    size_t n;
    pl_disk = th_read_file(name, &n);
    cr_assert_not_null(pl_disk);
    mseg_test_set_flush_hook(pl_on_flush, NULL);
    keep[0] = 0x6b656570;                                   /* unsynced, before the shrink */
    cr_assert_eq(mseg_destroy(s, "big"), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_shrink(s), 0, "%s", mseg_errmsg());
    mseg_test_set_flush_hook(NULL, NULL);
    size_t cut = mseg_size(s);
    cr_assert_lt(cut, n, "the shrink cut nothing");
    size_t lengths[2] = { cut, n };
    mseg_test_set_boot_id(after_boot);                       /* the power went, the machine restarted */
    for (int i = 0; i < 2; i++) {
        char image[256];
        th_name(image, 0);
        cr_assert_eq(th_write_file(image, pl_disk, lengths[i]), 0);
        errno = 0;
        mseg *r = mseg_open(image, 0, NULL);
        cr_assert_not_null(r, "file of %zu bytes: %s", lengths[i], mseg_errmsg());
        struct mseg_report rep;
        cr_expect_eq(mseg_verify(r, &rep), 0, "%s", mseg_errmsg());
        cr_expect_eq(mseg_size(r), cut);
        uint64_t *k = MSEG_FIND(r, "keep", uint64_t, NULL);
        cr_assert_not_null(k, "%s", mseg_errmsg());
        cr_expect_eq(k[0], 0x6b656570, "a change made before the shrink was lost");
        cr_expect_null(MSEG_FIND(r, "big", char, NULL), "the destroy before the shrink was lost");
        mseg_close(r);
    }
    free(pl_disk);
    pl_disk = NULL;
    mseg_test_set_boot_id(NULL);
    mseg_close(s);
}

/* The verification after a power loss names what it found damaged once:
   its message used to embed the error buffer it was writing, so the cause
   came out as the message's own start repeated, and was lost (found by a
   helper session). The image: unsynced changes, then the first block's
   header zeroed, as a torn write could leave it. */
Test(durability, a_segment_damaged_by_a_power_loss_is_refused_with_its_cause, .fini = th_cleanup)
{
    static const uint8_t boot[16] = { 0xa1, 11 }, after_boot[16] = { 0xb2, 12 };
    char name[256], image[256];
    mseg_test_set_boot_id(boot);
    mseg *s = open_new(name, 0);
    cr_assert_not_null(MSEG_NEW(s, "a", long, 1));   /* unsynced: the mark is on disk */
    size_t n;
    uint8_t *disk = th_read_file(name, &n);
    cr_assert_not_null(disk);
    memset(disk + MSEG_HEAP_OFF + MSEG_GRANULE - 4, 0, 4);
    th_name(image, 0);
    cr_assert_eq(th_write_file(image, disk, n), 0);
    free(disk);
    mseg_test_set_boot_id(after_boot);
    errno = 0;
    cr_assert_null(mseg_open(image, 0, NULL), "the damaged image was handed out");
    cr_expect_eq(errno, EUCLEAN);
    const char *msg = mseg_errmsg();
    cr_expect(strstr(msg, "impossible size 0"), "the cause is missing: %s", msg);
    const char *first = strstr(msg, "when the system went down");
    cr_expect(first && !strstr(first + 1, "when the system went down"), "repeated: %s", msg);
    mseg_test_set_boot_id(NULL);
    mseg_close(s);
}

/* A disk whose write-back fails once: the pages the failing msync covered
   and had dirty are not written, and the kernel marks them clean, so a
   later msync writes such a page only if it is changed again (then whole,
   as memory holds it). lost_at[p]: the page's bytes when its write failed. */
static uint8_t *eio_lost[256];
static bool eio_fail_next;
static void eio_on_flush(const uint8_t *base, uint64_t size, uint64_t off, uint64_t len, void *arg)
{
    (void)size, (void)arg;
    for (uint64_t p = off / MSEG_PAGE; p < (off + len + MSEG_PAGE - 1) / MSEG_PAGE && p < 256; p++) {
        const uint8_t *now = base + p * MSEG_PAGE;
        if (eio_fail_next) {
            if (memcmp(pl_disk + p * MSEG_PAGE, now, MSEG_PAGE) != 0 && !eio_lost[p]) {
                eio_lost[p] = malloc(MSEG_PAGE);
                cr_assert_not_null(eio_lost[p]);
                memcpy(eio_lost[p], now, MSEG_PAGE);
            }
            continue;
        }
        if (eio_lost[p] && memcmp(eio_lost[p], now, MSEG_PAGE) == 0)
            continue;                              /* marked clean: not written again */
        memcpy(pl_disk + p * MSEG_PAGE, now, MSEG_PAGE);
    }
    eio_fail_next = false;
}

/* A page marked dirty again (sync.c, after a failed flush): written at the
   next flush whatever its bytes. */
static void eio_redirty(uint64_t off, uint64_t len, void *arg)
{
    (void)arg;
    for (uint64_t p = off / MSEG_PAGE; p < (off + len) / MSEG_PAGE && p < 256; p++)
        free(eio_lost[p]), eio_lost[p] = NULL;
}

/* s synced, and its file name copied to pl_disk (*n bytes) as the disk
   holds it; then flushes go through eio_on_flush. */
static void eio_arm(mseg *s, const char *name, size_t *n)
{
    cr_assert_eq(mseg_sync(s), 0, "%s", mseg_errmsg());
    pl_disk = th_read_file(name, n);
    cr_assert_not_null(pl_disk);
    cr_assert_leq(*n, 256u * MSEG_PAGE);
    mseg_test_set_flush_hook(eio_on_flush, NULL);
    mseg_test_set_redirty_hook(eio_redirty, NULL);
}

/* A construct through s whose msync fails (and drops the pages it covered). */
static void eio_construct_fails(mseg *s)
{
    eio_fail_next = true;
    mseg_test_fail_flush(1);
    errno = 0;
    cr_assert_null(MSEG_NEW(s, "b", long, 1), "the construct with a failing msync succeeded");
    cr_assert_eq(errno, EIO, "%s", mseg_errmsg());
    mseg_test_fail_flush(0);
}

/* A durable segment with a 128 KiB object "big" (its end far from the
   directory), synced and copied to pl_disk (its *n bytes), the flush hook
   eio_on_flush armed, then a durable transaction that stores 0x5a into 16
   bytes near big's end: acknowledged. */
static mseg *eio_durable_commit(char *name, const uint8_t boot[16], size_t *n)
{
    mseg *s = durable_at_boot(name, boot);
    uint8_t *big = MSEG_NEW(s, "big", uint8_t, 128 * 1024);
    cr_assert_not_null(big, "%s", mseg_errmsg());
    eio_arm(s, name, n);
    uint8_t *far = big + 120 * 1024;
    cr_assert_eq(mseg_tx_begin(s), 0);
    cr_assert_eq(mseg_tx_add(s, far, 16), 0, "%s", mseg_errmsg());
    memset(far, 0x5a, 16);
    cr_assert_eq(mseg_tx_commit(s), 0, "%s", mseg_errmsg());    /* acknowledged: durable */
    return s;
}

/* After the handle of eio_durable_commit closed: a power loss keeps what
   pl_disk holds, and the acknowledged transaction must be found. */
/* The failing disk's hooks off, and what it remembered dropped. */
static void eio_disarm(void)
{
    mseg_test_set_flush_hook(NULL, NULL);
    mseg_test_set_redirty_hook(NULL, NULL);
    for (int p = 0; p < 256; p++)
        free(eio_lost[p]), eio_lost[p] = NULL;
}

static void eio_expect_commit_kept(size_t n, const uint8_t after_boot[16])
{
    eio_disarm();
    mseg *r = reopen_after_power_loss(n, after_boot);
    uint8_t *b = MSEG_FIND(r, "big", uint8_t, NULL);
    cr_assert_not_null(b, "%s", mseg_errmsg());
    uint8_t want[16];
    memset(want, 0x5a, sizeof want);
    cr_expect(memcmp(b + 120 * 1024, want, sizeof want) == 0,
              "the acknowledged change (a durable commit, or an mseg_sync) was lost (byte %#x)", b[120 * 1024]);
    mseg_close(r);
    mseg_test_set_boot_id(NULL);
}

/* eio_durable_commit, then a construct whose msync fails; the handle is
   closed, and with reopen the segment is opened again in the same boot for
   one more durable construct. Then the power loss (boots: tag, tag + 1). */
static void failed_flush_then_close(bool reopen, uint8_t tag)
{
    const uint8_t boot[16] = { 0xa1, tag }, after_boot[16] = { 0xb2, (uint8_t)(tag + 1) };
    char name[256];
    size_t n;
    mseg *s = eio_durable_commit(name, boot, &n);
    eio_construct_fails(s);
    mseg_close(s);
    if (reopen) {
        mseg *t = mseg_open(name, MSEG_DURABLE, NULL);
        cr_assert_not_null(t, "%s", mseg_errmsg());
        cr_assert_not_null(MSEG_NEW(t, "c", long, 1), "%s", mseg_errmsg());
        mseg_close(t);
    }
    eio_expect_commit_kept(n, after_boot);
}

/* A durable transaction commits (its slot stays committed, its page owed
   to the next commit), then the next commit's msync fails: its EIO makes
   the handle refuse writes. Its close then settled the slots and wrote
   "clean" through the failed handle: the retried msync "succeeded" without
   writing the page the failure had dropped, the emptied log head and the
   "clean" state reached the disk, and after a power loss the acknowledged
   transaction was gone, with nothing to replay it from. */
Test(durability, closing_a_handle_whose_flush_failed_keeps_the_last_durable_commit_recoverable,
     .fini = th_cleanup)
{
    failed_flush_then_close(false, 13);
}

/* The same, with the failure inside a transaction too large for the room
   the log has left after the last commit's records: the log then settles
   (flushing what that commit owes) to make room. Its msync failed, and the
   next record's try settled again: through the failed handle the msync
   "succeeded", the commit slots were retired on disk, and the transaction's
   records moved over them, so a power loss lost the acknowledged commit. */
Test(durability, a_failed_flush_making_room_in_the_log_keeps_the_last_durable_commit_recoverable,
     .fini = th_cleanup)
{
    static const uint8_t boot[16] = { 0xa1, 15 }, after_boot[16] = { 0xb2, 16 };
    char name[256];
    size_t n;
    mseg *s = eio_durable_commit(name, boot, &n);
    /* a transaction of small allocations: no flush until the log is full */
    cr_assert_eq(mseg_tx_begin(s), 0);
    eio_fail_next = true;
    mseg_test_fail_flush(1);
    int i = 0;
    while (i < 100000 && mseg_alloc(s, 16))
        i++;
    cr_assert_lt(i, 100000, "the log never filled");
    cr_assert(!eio_fail_next, "no flush failed: the log never settled");
    mseg_test_fail_flush(0);
    mseg_tx_abort(s);
    mseg_close(s);
    eio_expect_commit_kept(n, after_boot);
}

/* The handle whose flush failed is closed, and the program opens the
   segment again in the same boot: the new handle was told of no failure
   (the kernel reports one to the file descriptions open when it happened),
   so its flushes "succeeded" without the page the failure had left clean,
   and its durable commit and close retired the commit slot that still
   replayed that page: a power loss lost the acknowledged transaction. */
Test(durability, a_handle_opened_after_another_ones_flush_failed_keeps_its_last_durable_commit_recoverable,
     .fini = th_cleanup)
{
    failed_flush_then_close(true, 17);
}

/* The same without MSEG_DURABLE: a program's stores, then an mseg_sync that
   fails; a second handle opened after it syncs and is told everything is on
   disk, and a power loss then found the stores gone from a segment that
   checked sound (the unsynced mark cleared over them). */
Test(durability, an_mseg_sync_after_another_handles_failed_one_writes_what_that_one_could_not,
     .fini = th_cleanup)
{
    static const uint8_t boot[16] = { 0xa1, 19 }, after_boot[16] = { 0xb2, 20 };
    char name[256];
    mseg *s = segment_at_boot(name, boot, 0);
    uint8_t *big = MSEG_NEW(s, "big", uint8_t, 128 * 1024);
    cr_assert_not_null(big, "%s", mseg_errmsg());
    size_t n;
    eio_arm(s, name, &n);
    memset(big + 120 * 1024, 0x5a, 16);
    eio_fail_next = true;
    mseg_test_fail_flush(1);
    errno = 0;
    cr_assert_neq(mseg_sync(s), 0, "the mseg_sync with a failing msync succeeded");
    cr_assert_eq(errno, EIO, "%s", mseg_errmsg());
    mseg_test_fail_flush(0);
    mseg *t = mseg_open(name, 0, NULL);
    cr_assert_not_null(t, "%s", mseg_errmsg());
    cr_assert_eq(mseg_sync(t), 0, "%s", mseg_errmsg());
    mseg_close(t);
    mseg_close(s);
    eio_expect_commit_kept(n, after_boot);
}

/* Pages marked dirty again by the rewrite after a failed flush. */
static unsigned long redirtied;
static void count_redirty(uint64_t off, uint64_t len, void *arg)
{
    (void)off, (void)arg;
    redirtied += len / MSEG_PAGE;
}

/* The rewrite after another handle's failed flush is paid once, by the
   first flush in that boot, and not at all after a restart (the page
   cache the failure left clean is gone). */
Test(durability, the_rewrite_after_a_failed_flush_runs_once_and_not_after_a_restart, .fini = th_cleanup)
{
    static const uint8_t boot[16] = { 0xa1, 21 }, later_boot[16] = { 0xb2, 22 };
    char name[256];
    mseg *s = durable_at_boot(name, boot);
    cr_assert_not_null(MSEG_NEW(s, "warm", long, 1), "%s", mseg_errmsg());
    mseg_test_set_redirty_hook(count_redirty, NULL);
    mseg_test_fail_flush(1);
    cr_assert_null(MSEG_NEW(s, "lost", long, 1), "the construct with a failing msync succeeded");
    mseg_test_fail_flush(0);
    cr_assert_eq(redirtied, 0, "the failed handle rewrote pages");
    mseg *t = mseg_open(name, MSEG_DURABLE, NULL);          /* its attach flushes: the rewrite */
    cr_assert_not_null(t, "%s", mseg_errmsg());
    cr_expect_gt(redirtied, 0, "a handle opened after the failure did not rewrite the pages");
    cr_expect_eq(flushes_of(t, do_construct, "x"), 1, "the rewrite ran again");
    mseg_test_fail_flush(1);
    cr_assert_null(MSEG_NEW(t, "y", long, 1), "the construct with a failing msync succeeded");
    mseg_test_fail_flush(0);
    mseg_close(t);
    mseg_close(s);
    redirtied = 0;
    mseg_test_set_boot_id(later_boot);
    mseg *r = mseg_open(name, MSEG_DURABLE, NULL);
    cr_assert_not_null(r, "%s", mseg_errmsg());
    cr_assert_not_null(MSEG_NEW(r, "z", long, 1), "%s", mseg_errmsg());
    cr_expect_eq(redirtied, 0, "a failure of an earlier boot was rewritten after the restart");
    mseg_close(r);
    mseg_test_set_redirty_hook(NULL, NULL);
    mseg_test_set_boot_id(NULL);
}

/* The power goes in the middle of the rewrite after a failed flush: the
   pages before the heap (headers, runtime, control page, log) reached the
   disk, as write-back goes in ascending order, and nothing after them. */
static bool power_lost;
static void power_loss_in_rewrite(const uint8_t *base, uint64_t size, uint64_t off, uint64_t len, void *arg)
{
    if (power_lost)
        return;
    if (off == 0 && len == size) {
        memcpy(pl_disk, base, MSEG_HEAP_OFF);
        power_lost = true;
        return;
    }
    eio_on_flush(base, size, off, len, arg);
}

/* A durable commit, then the next commit's msync fails, leaving the first
   one's page clean and off the disk, its slot the only thing that still
   replays it. A second handle (attached before the failure) commits: it
   wrote its slot over that one in memory, and only then did its flush
   rewrite the page, in the same msync as the log (or after the kernel had
   written the log page back on its own). A power loss between the two
   lost the acknowledged commit. */
Test(durability, a_power_loss_in_the_rewrite_after_a_failed_flush_keeps_the_commit_it_rewrites,
     .fini = th_cleanup)
{
    char name[256];
    size_t n;
    static const uint8_t boot[16] = { 0xa1, 23 };
    mseg *s = eio_durable_commit(name, boot, &n);
    mseg *t = mseg_open(name, MSEG_DURABLE, NULL);   /* before the failure */
    cr_assert_not_null(t, "%s", mseg_errmsg());
    eio_construct_fails(s);
    power_lost = false;
    mseg_test_set_flush_hook(power_loss_in_rewrite, NULL);
    MSEG_NEW(t, "c", long, 1);     /* the power goes during it: its result does not matter */
    cr_assert(power_lost, "the second handle did not rewrite the segment");
    mseg_close(t);
    mseg_close(s);
    static const uint8_t after_boot[16] = { 0xb2, 24 };
    eio_expect_commit_kept(n, after_boot);
}

/* A handle without MSEG_DURABLE makes its first change after an mseg_sync,
   and the flush of the unsynced mark fails: memory has the mark, the disk
   does not. A handle opened after it in the same boot found the mark in
   memory and flushed nothing before its own changes, which the kernel may
   write back at any time: a power loss then left them under a disk that
   said "synced", and recovery trusted them without verifying the heap. */
Test(durability, a_handle_opened_after_a_failed_unsynced_mark_puts_the_mark_on_disk_before_its_changes,
     .fini = th_cleanup)
{
    static const uint8_t boot[16] = { 0xa1, 25 };
    char name[256];
    mseg *s = segment_at_boot(name, boot, 0);
    size_t n;
    eio_arm(s, name, &n);
    eio_fail_next = true;
    mseg_test_fail_flush(1);
    errno = 0;
    cr_assert_null(mseg_alloc(s, 100), "the change with a failing msync succeeded");
    cr_assert_eq(errno, EIO, "%s", mseg_errmsg());
    mseg_test_fail_flush(0);
    mseg *t = mseg_open(name, 0, NULL);
    cr_assert_not_null(t, "%s", mseg_errmsg());
    cr_assert_not_null(mseg_alloc(t, 100), "%s", mseg_errmsg());
    const struct mseg_runtime *on_disk = (const struct mseg_runtime *)(pl_disk + MSEG_RUNTIME_OFF);
    cr_expect_eq(on_disk->unsynced, 1, "a change was made while the disk said the segment was synced");
    eio_disarm();
    free(pl_disk);
    pl_disk = NULL;
    mseg_close(t);
    mseg_close(s);
    mseg_test_set_boot_id(NULL);
}

/* mseg copy after another handle's flush failed: where the file system
   clones (reflink: XFS, btrfs), the copy takes the source's blocks on disk,
   which lack the pages that failure left clean, and the copying handle had
   flushed nothing to write them first. The copy then missed acknowledged
   commits, with nothing to tell (the failure's note is not on disk either).
   It rewrites them, under the lock, before it copies. */
Test(durability, a_copy_after_another_handles_failed_flush_rewrites_the_source_first, .fini = th_cleanup)
{
    static const uint8_t boot[16] = { 0xa1, 27 };
    char name[256], copy[256];
    mseg *s = durable_at_boot(name, boot);
    cr_assert_not_null(MSEG_NEW(s, "warm", long, 1), "%s", mseg_errmsg());
    mseg_test_fail_flush(1);
    cr_assert_null(MSEG_NEW(s, "lost", long, 1), "the construct with a failing msync succeeded");
    mseg_test_fail_flush(0);
    redirtied = 0;
    mseg_test_set_redirty_hook(count_redirty, NULL);
    th_name(copy, 0);
    int rc = mseg_copy_locked(name, 0, copy, NULL);
    mseg_test_set_redirty_hook(NULL, NULL);
    cr_assert_eq(rc, 0, "%s", mseg_errmsg());
    cr_expect_gt(redirtied, 0, "the copy was taken without rewriting what the failed flush left clean");
    mseg_close(s);
    mseg_test_set_boot_id(NULL);
}

/* A process dies inside a transaction, holding the segment lock; the next
   to take it is a handle whose flush had failed, which recovers the dead
   one's transaction in memory (rolled back) for every process. Its flushes
   fail (the handle flushes nothing more), but that must leave the shared
   memory repaired, the lock consistent and the other handles working. */
static const char *dies_in_tx_name;
static void dies_in_tx(void *arg)
{
    (void)arg;
    mseg *c = mseg_open(dies_in_tx_name, MSEG_DURABLE, NULL);
    CHILD_CHECK(c != NULL);
    uint64_t *x = MSEG_FIND(c, "x", uint64_t, NULL);
    CHILD_CHECK(x != NULL && mseg_tx_begin(c) == 0 && mseg_tx_add(c, x, 8) == 0);
    *x = 666;
    CHILD_CHECK(mseg_alloc(c, 100) != NULL);
    _exit(0);                                        /* dies holding the lock */
}

Test(durability, a_failed_handle_recovering_a_dead_lock_owner_leaves_the_segment_usable, .fini = th_cleanup)
{
    char name[256];
    mseg *s = open_new(name, MSEG_DURABLE);
    uint64_t *x = MSEG_NEW(s, "x", uint64_t, 1);
    cr_assert_not_null(x);
    *x = 1;
    cr_assert_eq(mseg_sync(s), 0);
    mseg_test_fail_flush(1);
    errno = 0;
    cr_assert_null(mseg_alloc(s, 10), "the allocation with a failing msync succeeded");
    cr_assert_eq(errno, EIO, "%s", mseg_errmsg());
    mseg_test_fail_flush(0);
    mseg *other = mseg_open(name, MSEG_DURABLE, NULL);     /* a healthy handle */
    cr_assert_not_null(other, "%s", mseg_errmsg());
    dies_in_tx_name = name;
    int st = th_fork_run(dies_in_tx, NULL);
    cr_assert(TH_EXITED_OK(st));
    (void)mseg_free_memory(s);                       /* takes the lock: recovers the dead owner */
    cr_expect_eq(*x, 1, "the dead process's uncommitted store stayed");
    cr_expect_not_null(mseg_alloc(other, 10), "the healthy handle: %s", mseg_errmsg());
    struct mseg_report r;
    cr_expect_eq(mseg_verify(other, &r), 0, "%s", mseg_errmsg());
    mseg_close(other);
    mseg_close(s);
}

/* A durable segment's power loss left an uncommitted operation's fresh
   bytes on disk over a free block's links (the kernel wrote that page back
   early), so its first open after the restart rebuilds the free lists. An
   opener without MSEG_DURABLE that changes nothing (mseg recover, mseg
   copy) did that rebuild in memory only, and its clean close said "clean"
   without flushing it: once the kernel wrote the runtime page back before
   the heap's, a second power loss left "clean" over the damaged links, and
   the next open handed them out ("damaged free lists" at the first
   allocation). The repair is now on disk before the open returns. */
Test(durability, a_repair_after_a_power_loss_by_a_non_durable_opener_reaches_the_disk_before_its_clean_close,
     .fini = th_cleanup)
{
    static const uint8_t boot[16] = { 0xa1, 17 }, after_boot[16] = { 0xb2, 18 }, third_boot[16] = { 0xc3, 19 };
    char name[256], image[256];
    mseg *s = durable_at_boot(name, boot);
    void *a = mseg_alloc(s, 64), *f = mseg_alloc(s, 40000), *b = mseg_alloc(s, 64);
    cr_assert(a && f && b);
    cr_assert_eq(mseg_free(s, f), 0);              /* a free block between a and b */
    cr_assert_eq(mseg_sync(s), 0, "%s", mseg_errmsg());
    size_t n;
    pl_disk = th_read_file(name, &n);
    cr_assert_not_null(pl_disk);
    cr_assert_eq(mseg_tx_begin(s), 0);
    uint8_t *p = mseg_alloc(s, 40000);             /* carved from the free block, uncommitted */
    cr_assert_not_null(p);
    memset(p, 0xff, 40000);                        /* over its links and footer */
    const uint8_t *base = (const uint8_t *)mseg_at(s, MSEG_PAGE) - MSEG_PAGE;
    uint64_t o = mseg_off_of(s, p);
    for (uint64_t pg = o / MSEG_PAGE; pg <= (o + 40000) / MSEG_PAGE; pg++)
        memcpy(pl_disk + pg * MSEG_PAGE, base + pg * MSEG_PAGE, MSEG_PAGE);   /* written back early */
    th_name(image, 0);
    cr_assert_eq(th_write_file(image, pl_disk, n), 0);   /* the power goes */
    mseg_test_set_boot_id(after_boot);
    mseg_test_set_flush_hook(pl_on_flush, NULL);
    mseg *r = mseg_open(image, 0, NULL);           /* recovers, changes nothing */
    cr_assert_not_null(r, "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(r), 0);
    mseg_test_set_flush_hook(NULL, NULL);
    size_t m;
    uint8_t *now = th_read_file(image, &m);        /* the page cache after the close */
    cr_assert(now && m == n);
    memcpy(pl_disk + MSEG_RUNTIME_OFF, now + MSEG_RUNTIME_OFF, MSEG_PAGE);   /* written back: "clean" */
    free(now);
    mseg_test_set_boot_id(third_boot);             /* the power goes again */
    r = reopen_after_power_loss(n, NULL);
    cr_expect_not_null(mseg_alloc(r, 30000), "%s", mseg_errmsg());
    mseg_close(r);
    mseg_test_set_boot_id(NULL);
    mseg_tx_abort(s);
    mseg_close(s);
}

/* A flush that fails inside a call (the log settling to make room in a
   large transaction) fails that call, and the transaction, with EIO, as
   mseg.h says: "EIO a failed flush made the handle unusable". It failed
   with ENOMEM ("the transaction needs more than 4092 log records"), which
   tells the caller to split the transaction and retry, or with EUCLEAN
   (reads of a log that had stopped taking records looked like damage). */
Test(durability, a_flush_failing_inside_a_transaction_fails_it_with_eio, .fini = th_cleanup)
{
    char name[256];
    mseg *s = open_new(name, MSEG_DURABLE);
    cr_assert_not_null(MSEG_NEW(s, "before", long, 1));   /* the next records start after its */
    cr_assert_eq(mseg_tx_begin(s), 0);
    mseg_test_fail_flush(1);
    int i = 0;
    errno = 0;
    while (i < 100000 && mseg_alloc(s, 16))
        i++;
    int e = errno;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mseg_errmsg());
    mseg_test_fail_flush(0);
    cr_assert_lt(i, 100000, "the log never filled");
    cr_expect_eq(e, EIO, "the allocation failed with %s: %s", strerror(e), msg);
    cr_expect(strstr(msg, "flush") || strstr(msg, "msync"), "%s", msg);
    errno = 0;
    cr_expect_eq(mseg_tx_commit(s), -1);
    cr_expect_eq(errno, ECANCELED, "%s", mseg_errmsg());
    errno = 0;
    cr_expect_null(mseg_alloc(s, 16));
    cr_expect_eq(errno, EIO, "%s", mseg_errmsg());
    mseg_close(s);
}

/* A durable process dies inside a transaction, after mseg_tx_add and its
   store in place (the kernel may write that page back at once: the undo
   record, flushed first, covers it). A process without MSEG_DURABLE is the
   next to take the lock and rolls it back. Its rollback restored the bytes
   and emptied the log in memory, without flushing either, so once the
   kernel wrote the log head (undo records gone) and, at that process's
   clean close, the runtime page ("clean") back before the restored page,
   a power loss kept the uncommitted store for good: the next open found
   nothing to recover. A recovery flushes what it repairs, whoever runs it. */
static const char *mixed_name;
static void durable_dies_in_tx(void *arg)
{
    (void)arg;
    mseg *d = mseg_open(mixed_name, MSEG_DURABLE, NULL);
    CHILD_CHECK(d != NULL);
    uint64_t *x = MSEG_FIND(d, "x", uint64_t, NULL);
    CHILD_CHECK(x != NULL);
    mseg_test_set_flush_hook(pl_on_flush, NULL);     /* pl_disk is shared */
    CHILD_CHECK(mseg_tx_begin(d) == 0 && mseg_tx_add(d, x, 8) == 0);
    *x = 666;                                         /* uncommitted */
    const uint8_t *base = (const uint8_t *)mseg_at(d, MSEG_PAGE) - MSEG_PAGE;
    uint64_t pg = mseg_off_of(d, x) / MSEG_PAGE * MSEG_PAGE;
    memcpy(pl_disk + pg, base + pg, MSEG_PAGE);       /* written back early by the kernel */
    _exit(0);                                         /* dies holding the lock */
}

Test(durability, a_durable_transaction_rolled_back_by_a_non_durable_process_stays_rolled_back_after_a_power_loss,
     .fini = th_cleanup)
{
    static const uint8_t boot[16] = { 0xa1, 21 }, after_boot[16] = { 0xb2, 22 };
    char name[256];
    mseg *d = durable_at_boot(name, boot);
    cr_assert_not_null(MSEG_NEW(d, "pad", char, 3 * MSEG_PAGE));   /* x on a page of its own */
    uint64_t *x0 = MSEG_NEW(d, "x", uint64_t, 1);
    cr_assert_not_null(x0);
    *x0 = 1;
    cr_assert_eq(mseg_close(d), 0);
    size_t n = disk_shared_from(name);             /* all flushed by the close */
    mseg *l = mseg_open(name, 0, NULL);              /* without MSEG_DURABLE */
    cr_assert_not_null(l, "%s", mseg_errmsg());
    mixed_name = name;
    int st = th_fork_run(durable_dies_in_tx, NULL);
    cr_assert(TH_EXITED_OK(st));
    mseg_test_set_flush_hook(pl_on_flush, NULL);
    (void)mseg_free_memory(l);                       /* takes the lock: rolls the transaction back */
    uint64_t *x = MSEG_FIND(l, "x", uint64_t, NULL);
    cr_assert_not_null(x);
    cr_assert_eq(*x, 1, "not rolled back in memory");
    cr_assert_eq(mseg_close(l), 0);                   /* the last one: "clean" */
    mseg_test_set_flush_hook(NULL, NULL);
    uint8_t *now = th_read_file(name, &n);
    cr_assert_not_null(now);
    /* the kernel wrote the runtime page and the log head back, not x's page */
    memcpy(pl_disk + MSEG_RUNTIME_OFF, now + MSEG_RUNTIME_OFF, MSEG_PAGE);
    memcpy(pl_disk + MSEG_LOG_OFF, now + MSEG_LOG_OFF, MSEG_PAGE);
    free(now);
    uint8_t *img = malloc(n);
    cr_assert_not_null(img);
    memcpy(img, pl_disk, n);
    munmap(pl_disk, n);
    pl_disk = img;                                   /* reopen_after_power_loss frees it */
    mseg *r = reopen_after_power_loss(n, after_boot);
    x = MSEG_FIND(r, "x", uint64_t, NULL);
    cr_assert_not_null(x, "%s", mseg_errmsg());
    cr_expect_eq(*x, 1, "the uncommitted store of the dead durable transaction survived the power loss");
    mseg_close(r);
    mseg_test_set_boot_id(NULL);
}

/* The flush above is for a disk that recovery trusts as it is. In a
   segment with unsynced changes (non-durable writers), a process killed in
   the middle of an allocation is rolled back in memory only, as before:
   recovery after a power loss distrusts that log and verifies the heap
   anyway, and writing back the whole segment (every dirty page in it) on
   each process crash would cost non-durable users for nothing. */
static void die_at_a_direct_store(const char *point, unsigned long n, void *arg)
{
    (void)n; (void)arg;
    if (strcmp(point, "direct.store") == 0)
        _exit(42);
}

static void alloc_and_die(void *arg)
{
    mseg *w = mseg_open(arg, 0, NULL);
    CHILD_CHECK(w != NULL);
    mseg_test_set_crash_hook(die_at_a_direct_store, NULL);
    mseg_alloc(w, 100);
    _exit(0);
}

Test(durability, a_process_crash_in_a_segment_with_unsynced_changes_is_rolled_back_without_a_flush,
     .fini = th_cleanup)
{
    char name[256], why[128];
    mseg *l = open_new(name, 0);
    cr_assert_not_null(mseg_alloc(l, 64));         /* unsynced changes */
    int st = th_fork_run(alloc_and_die, name);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 42, "the writer %s", th_status_str(st, why, sizeof why));
    unsigned long before = mseg_test_flushes(l);
    size_t free_now = mseg_free_memory(l);          /* takes the lock: rolls the allocation back */
    cr_expect_eq(mseg_test_flushes(l) - before, 0, "the rollback of a process crash flushed %lu times",
                 mseg_test_flushes(l) - before);
    cr_assert_neq(free_now, 0, "%s", mseg_errmsg());
    struct mseg_report r;
    cr_assert_eq(mseg_verify(l, &r), 0, "%s", r.first_problem);
    cr_assert_eq(mseg_close(l), 0);
}

/* A durable process dies while it frees a large container's blocks in
   garbage batches (each batch an operation of its own), so the segment
   still owes some. The first opener after it, without MSEG_DURABLE,
   frees them before its open returns, and changes nothing else; its
   clean close says "clean". Those batches are its changes like any other,
   but nothing told a power loss so (no unsynced mark, no flush): once the
   kernel wrote the runtime page ("clean") and the control page back
   before the heap's pages, the next open trusted the disk as it was. */
static const char *drain_name;
static unsigned drain_retired;
static void die_after_first_batch(const char *point, unsigned long n, void *arg)
{
    (void)n, (void)arg;
    if (strcmp(point, "log.retired") == 0 && ++drain_retired == 2)
        _exit(0);                         /* the destroy, then one batch, returned */
}

static void durable_dies_draining(void *arg)
{
    (void)arg;
    mseg *d = mseg_open(drain_name, MSEG_DURABLE, NULL);
    CHILD_CHECK(d != NULL);
    mseg_test_set_flush_hook(pl_on_flush, NULL);      /* pl_disk is shared */
    mseg_test_set_crash_hook(die_after_first_batch, NULL);
    mseg_destroy(d, "mv");
    _exit(1);                                         /* never drained in batches */
}

/* kept: which pages besides the runtime page the kernel wrote back before
   the power went (0: the control page; 1: all but it; 2-4: mixes). */
static void drained_by_non_durable_opener(int kept)
{
    static const uint8_t boot[16] = { 0xa1, 23 }, after_boot[16] = { 0xb2, 24 };
    drain_retired = 0;
    char name[256];
    mseg_test_set_boot_id(boot);
    th_name(name, 0);
    struct mseg_config cfg = { .size = 4u << 20 };
    mseg *d = mseg_open(name, MSEG_CREATE | MSEG_EXCL | MSEG_DURABLE, &cfg);
    cr_assert_not_null(d, "%s", mseg_errmsg());
    mseg_map *m = mseg_map_open(d, "mv", MSEG_KEY_BYTES, 0, MSEG_CREATE);
    cr_assert_not_null(m);
    for (int t = 0; t < 4; t++) {                     /* 1,200 out-of-line values */
        cr_assert_eq(mseg_tx_begin(d), 0);
        for (int k = t * 300; k < t * 300 + 300; k++) {
            char key[24], val[24];
            int kl = snprintf(key, sizeof key, "key-%06d", k);
            memset(val, 'a' + k % 26, sizeof val);
            cr_assert_eq(mseg_map_put(d, m, key, (size_t)kl, val, sizeof val), 0, "%s", mseg_errmsg());
        }
        cr_assert_eq(mseg_tx_commit(d), 0, "%s", mseg_errmsg());
    }
    cr_assert_eq(mseg_close(d), 0);
    size_t n = disk_shared_from(name);             /* all flushed by the close */
    drain_name = name;
    int st = th_fork_run(durable_dies_draining, NULL);
    cr_assert(TH_EXITED_OK(st), "the destroy did not stop after its first batch");
    mseg_test_set_flush_hook(pl_on_flush, NULL);
    mseg *l = mseg_open(name, 0, NULL);               /* frees the rest */
    cr_assert_not_null(l, "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(l), 0);                   /* the last one: "clean" */
    mseg_test_set_flush_hook(NULL, NULL);
    uint8_t *now = th_read_file(name, &n);
    cr_assert_not_null(now);
    /* the kernel wrote the runtime page ("clean") back, and some others */
    memcpy(pl_disk + MSEG_RUNTIME_OFF, now + MSEG_RUNTIME_OFF, MSEG_PAGE);
    if (kept == 0 || kept >= 3)
        memcpy(pl_disk + MSEG_CONTROL_OFF, now + MSEG_CONTROL_OFF, MSEG_PAGE);
    for (size_t pg = MSEG_LOG_OFF / MSEG_PAGE; kept && pg < n / MSEG_PAGE; pg++)
        if (kept == 1 || (kept == 2 && pg % 2) || (kept == 3 && pg % 3 == 0) || (kept == 4 && pg * 7919 % 5 < 2))
            memcpy(pl_disk + pg * MSEG_PAGE, now + pg * MSEG_PAGE, MSEG_PAGE);
    free(now);
    uint8_t *img = malloc(n);
    cr_assert_not_null(img);
    memcpy(img, pl_disk, n);
    munmap(pl_disk, n);
    pl_disk = img;                                    /* reopen_after_power_loss frees it */
    mseg *r = reopen_after_power_loss(n, after_boot);
    cr_expect_null(mseg_map_open(r, "mv", MSEG_KEY_BYTES, 0, 0), "the acknowledged destroy was lost");
    cr_expect_not_null(mseg_alloc(r, 100000), "pages kept %d: %s", kept, mseg_errmsg());
    mseg_close(r);
    mseg_test_set_boot_id(NULL);
    mseg_remove(name, 0);
}

Test(durability, garbage_freed_by_a_non_durable_opener_survives_a_power_loss_after_its_clean_close,
     .fini = th_cleanup)
{
    for (int kept = 0; kept <= 4; kept++)
        drained_by_non_durable_opener(kept);
}

/* ------------------------------------------------------------------ */
/* A failed flush at every persist point of a durable script           */
/* ------------------------------------------------------------------ */

/* The script runs once without failures (the oracle: a digest of the
   state after each step), then once per persist point k (every msync and
   fsync, counted from the first step), with the k-th failing (EIO): the
   failing msync writes nothing and the kernel marks its pages clean, so a
   later msync writes such a page only if it changed again (sweep_flush).
   The failing step must fail with EIO, and no later step may succeed (the
   handle refuses writes); then the handle is closed and the power goes:
   the disk is what the model holds. Reopened after a restart, the
   segment must check sound and equal the state after the last step that
   returned, or after the failing one. The steps: constructs, transactions
   of user bytes spanning pages (logged, and flushed before the commit),
   growth, a vector's pushes and move, transactions of map puts that fill
   the log (it settles to make room: a flush inside a call), a destroy of
   1,200 blocks (garbage batches), an mseg_sync. */
#define SW_MAX   (4u << 20)
#define SW_PAGES (SW_MAX / MSEG_PAGE)
#define SW_STEPS 64

static struct {
    uint8_t *disk;                 /* SW_MAX bytes */
    uint8_t *lost[SW_PAGES];       /* a page's bytes when its write failed */
    uint64_t size;                 /* the file's durable size */
    long events, target;
} sw;

struct sweep_shared {
    uint64_t oracle[SW_STEPS + 1];
    int nsteps;
    int failed_at, acked, matched;   /* the child's verdict; matched -1: no state */
    int late_ok;                     /* a step after the failure succeeded (-1: none) */
    int fsync_failed;                /* the failing persist was an fsync */
    int fail_errno;                  /* of the failing step */
    char fail_msg[300];              /* ...and its message */
    char why[300];                   /* what recovery found wrong */
};
static struct sweep_shared *swsh;

static void sweep_flush(const uint8_t *base, uint64_t size, uint64_t off, uint64_t len, void *arg)
{
    (void)size, (void)arg;
    bool failing = ++sw.events == sw.target;
    if (failing)
        mseg_test_fail_flush(1);
    for (uint64_t p = off / MSEG_PAGE; p < (off + len + MSEG_PAGE - 1) / MSEG_PAGE && p < SW_PAGES; p++) {
        const uint8_t *now = base + p * MSEG_PAGE;
        if (failing) {
            if (!sw.lost[p] && memcmp(sw.disk + p * MSEG_PAGE, now, MSEG_PAGE) != 0) {
                sw.lost[p] = malloc(MSEG_PAGE);
                CHILD_CHECK(sw.lost[p] != NULL);
                memcpy(sw.lost[p], now, MSEG_PAGE);
            }
        } else if (!sw.lost[p] || memcmp(sw.lost[p], now, MSEG_PAGE) != 0) {
            memcpy(sw.disk + p * MSEG_PAGE, now, MSEG_PAGE);
        }
    }
}

/* The engine's fsyncs (fsync_hook.h): counted with the msyncs; a growth's
   makes the file's new size durable. */
static void sweep_fsync(int fd)
{
    if (++sw.events == sw.target) {
        th_fsync_fail = EIO;
        swsh->fsync_failed = 1;
        return;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > sw.size &&
        (uint64_t)st.st_size <= SW_MAX)
        sw.size = (uint64_t)st.st_size;
}

static uint64_t sweep_mix(uint64_t h, const void *p, size_t n)
{
    return XXH3_64bits_withSeed(p, n, h);
}

static int sweep_collect(const struct mseg_named *o, void *arg)
{
    uint64_t *h = arg;
    *h += XXH3_64bits(o->name, strlen(o->name)) ^ (o->count * 0x9e3779b97f4a7c15ull);   /* any order */
    return 0;
}

/* The state: heap figures, the named objects, the bytes of "big" and "a",
   the vector and the maps. 0 with why when it cannot be read. */
static uint64_t sweep_digest(mseg *s, char *why, size_t whylen)
{
    struct mseg_report r;
    if (mseg_verify(s, &r) != 0) {
        snprintf(why, whylen, "mseg_verify: %s", mseg_errmsg());
        return 0;
    }
    uint64_t h = r.blocks_used * 31 + r.bytes_used, names = 0;
    mseg_named_foreach(s, sweep_collect, &names);
    h = sweep_mix(h, &names, 8);
    size_t n;
    uint8_t *big = mseg_find(s, "big", "u8", 1, &n);
    if (big)
        h = sweep_mix(h, big, n);
    uint64_t *a = mseg_find(s, "a", "u64", 8, &n);
    if (a)
        h = sweep_mix(h, a, n * 8);
    mseg_vec *v = mseg_vec_open(s, "v", 8, 0);
    if (v && (n = mseg_vec_len(s, v)) > 0)
        h = sweep_mix(h, mseg_vec_data(s, v), n * 8);
    const char *maps[2] = { "m", "mv" };
    for (int i = 0; i < 2; i++) {
        mseg_map *m = mseg_map_open(s, maps[i], i ? MSEG_KEY_BYTES : MSEG_KEY_U64, i ? 0 : 8, 0);
        struct mseg_cursor c;
        for (int rc = m ? mseg_map_first(s, m, &c) : -1; rc == 0; rc = mseg_map_next(s, &c)) {
            h = sweep_mix(h, c.key, c.klen);
            h = sweep_mix(h, c.val, c.vlen);
        }
    }
    return h | 1;
}

static uint8_t sweep_pattern(size_t i) { return (uint8_t)(i * 7 + 1); }

/* Step i of the script: 0 done, -1 failed, 1 past the end. */
static int sweep_step(mseg *s, int i)
{
    int k = 0;
#define SW_STEP if (i == k++)
    SW_STEP {
        uint64_t a[16];
        for (int j = 0; j < 16; j++)
            a[j] = (uint64_t)j * 3;
        return mseg_construct(s, "a", "u64", 8, 16, a) ? 0 : -1;
    }
    SW_STEP {
        uint8_t *b = mseg_construct(s, "big", "u8", 1, 60000, NULL);
        return b ? 0 : -1;
    }
    SW_STEP {   /* user bytes across a page boundary, logged */
        uint8_t *b = mseg_find(s, "big", "u8", 1, NULL);
        if (!b || mseg_tx_begin(s) || mseg_tx_add(s, b + 4000, 200) || mseg_tx_add(s, b + 8150, 100))
            return -1;
        memset(b + 4000, 0x11, 200);
        memset(b + 8150, 0x22, 100);
        return mseg_tx_commit(s);
    }
    SW_STEP {   /* over many pages: flushed before the commit */
        uint8_t *b = mseg_find(s, "big", "u8", 1, NULL);
        if (!b || mseg_tx_begin(s) || mseg_tx_add(s, b + 10000, 30000))
            return -1;
        for (size_t j = 0; j < 30000; j++)
            b[10000 + j] = sweep_pattern(j);
        return mseg_tx_commit(s);
    }
    SW_STEP { return mseg_vec_open(s, "v", 8, MSEG_CREATE) ? 0 : -1; }
    for (int j = 0; j < 6; j++)
        SW_STEP {
            uint64_t e = 1000 + (uint64_t)j;
            return mseg_vec_push(s, mseg_vec_open(s, "v", 8, 0), &e);
        }
    SW_STEP { return mseg_vec_reserve(s, mseg_vec_open(s, "v", 8, 0), 30000); }   /* grows */
    SW_STEP { return mseg_sync(s); }
    for (int t = 0; t < 6; t++)
        SW_STEP {   /* 200 puts: the log fills and settles to make room */
            if (mseg_tx_begin(s))
                return -1;                              /* one commit: the map's creation in it */
            mseg_map *m = mseg_map_open(s, "m", MSEG_KEY_U64, 8, MSEG_CREATE);
            if (!m)
                return -1;
            for (uint64_t j = 0; j < 200; j++) {
                uint64_t key = ((uint64_t)t * 200 + j) * 2654435761u % 100000, val = key ^ 0x55;
                if (mseg_map_put(s, m, &key, 8, &val, 8))
                    return -1;
            }
            return mseg_tx_commit(s);
        }
    for (int t = 0; t < 4; t++)
        SW_STEP {
            if (mseg_tx_begin(s))
                return -1;
            mseg_map *m = mseg_map_open(s, "mv", MSEG_KEY_BYTES, 0, MSEG_CREATE);
            if (!m)
                return -1;
            for (int j = 0; j < 300; j++) {
                char key[24], val[24];
                int kl = snprintf(key, sizeof key, "key-%05d", t * 300 + j);
                memset(val, 'a' + j % 26, sizeof val);
                if (mseg_map_put(s, m, key, (size_t)kl, val, sizeof val))
                    return -1;
            }
            return mseg_tx_commit(s);
        }
    SW_STEP { return mseg_destroy(s, "mv"); }   /* the garbage path */
    SW_STEP {
        uint64_t e = 7;
        return mseg_vec_push(s, mseg_vec_open(s, "v", 8, 0), &e);
    }
    SW_STEP { return mseg_destroy(s, "m"); }
    SW_STEP {
        uint64_t *a = mseg_find(s, "a", "u64", 8, NULL);
        if (!a || mseg_tx_begin(s) || mseg_tx_add(s, a, 128))
            return -1;
        a[3] = 99;
        return mseg_tx_commit(s);
    }
#undef SW_STEP
    swsh->nsteps = k;
    return 1;
}

static const uint8_t SW_BOOT[16] = { 0xa1, 31 }, SW_AFTER[16] = { 0xb2, 32 };
static char sw_path[256], sw_img[256];

static mseg *sweep_create(void)
{
    unlink(sw_path);
    struct mseg_config cfg = { .size = MSEG_MIN_SIZE, .max_size = SW_MAX };
    return mseg_open(sw_path, MSEG_CREATE | MSEG_EXCL | MSEG_DURABLE, &cfg);
}

static void sweep_reference(void *arg)
{
    (void)arg;
    alarm(60);
    mseg_test_set_boot_id(SW_BOOT);
    mseg *s = sweep_create();
    CHILD_CHECK(s != NULL);
    char why[300];
    swsh->oracle[0] = sweep_digest(s, why, sizeof why);
    for (int i = 0;; i++) {
        int rc = sweep_step(s, i);
        if (rc == 1)
            break;
        CHILD_CHECK(rc == 0 && i < SW_STEPS);
        swsh->oracle[i + 1] = sweep_digest(s, why, sizeof why);
        CHILD_CHECK(swsh->oracle[i + 1] != 0);
    }
    mseg_close(s);
    unlink(sw_path);
}

/* Child: the script with the k-th persist failing; the verdict in swsh. */
static void sweep_failing(void *arg)
{
    long k = *(const long *)arg;
    alarm(60);
    mseg_test_set_boot_id(SW_BOOT);
    mseg *s = sweep_create();
    CHILD_CHECK(s != NULL && mseg_sync(s) == 0);
    size_t len;
    uint8_t *file = th_read_file(sw_path, &len);
    CHILD_CHECK(file != NULL && len <= SW_MAX);
    sw.disk = calloc(1, SW_MAX);
    CHILD_CHECK(sw.disk != NULL);
    memcpy(sw.disk, file, len);
    free(file);
    sw.size = len;
    sw.events = 0;
    sw.target = k;
    swsh->failed_at = -1;
    swsh->late_ok = -1;
    swsh->fsync_failed = 0;
    swsh->acked = 0;
    swsh->matched = -1;
    swsh->why[0] = '\0';
    mseg_test_set_flush_hook(sweep_flush, NULL);
    th_fsync_hook = sweep_fsync;
    for (int i = 0;; i++) {
        errno = 0;
        int rc = sweep_step(s, i);
        if (rc == 1)
            break;
        if (swsh->failed_at < 0 && rc == 0) {
            swsh->acked = i + 1;
            continue;
        }
        if (swsh->failed_at < 0) {
            swsh->failed_at = i;
            swsh->fail_errno = errno;
            snprintf(swsh->fail_msg, sizeof swsh->fail_msg, "%s", mseg_errmsg());
        } else if (rc == 0 && swsh->late_ok < 0) {
            swsh->late_ok = i;                       /* (later steps find nothing: ENOENT is fine) */
        }
        mseg_tx_abort(s);
    }
    mseg_close(s);
    mseg_test_set_flush_hook(NULL, NULL);
    th_fsync_hook = NULL;
    if (swsh->failed_at < 0)
        return;                                      /* k is past the script's persists */
    CHILD_CHECK(th_write_file(sw_img, sw.disk, sw.size) == 0);
    mseg_test_set_boot_id(SW_AFTER);                 /* the power went */
    struct mseg_report r;
    if (mseg_check(sw_img, 0, &r) != 0) {
        snprintf(swsh->why, sizeof swsh->why, "mseg_check: %s", mseg_errmsg());
        return;
    }
    mseg *t = mseg_open(sw_img, MSEG_DURABLE, NULL);
    if (!t) {
        snprintf(swsh->why, sizeof swsh->why, "mseg_open: %s", mseg_errmsg());
        return;
    }
    uint64_t d = sweep_digest(t, swsh->why, sizeof swsh->why);
    mseg_close(t);
    /* two steps may leave equal states: the two allowed ones first */
    int allowed[2] = { swsh->acked, swsh->failed_at + 1 };
    for (int j = 0; j < 2 && swsh->matched < 0; j++)
        if (d && swsh->oracle[allowed[j]] == d)
            swsh->matched = allowed[j];
    for (int j = swsh->nsteps; j >= 0 && swsh->matched < 0; j--)
        if (d && swsh->oracle[j] == d)
            swsh->matched = j;
}

Test(durability, a_failed_flush_at_any_persist_point_refuses_later_writes_and_keeps_every_acknowledged_step,
     .timeout = 300, .fini = th_cleanup)
{
    swsh = mmap(NULL, sizeof *swsh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(swsh, MAP_FAILED);
    /* tmpfs when there is one: thousands of msyncs cost nothing there */
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : th_tmpdir();
    snprintf(sw_path, sizeof sw_path, "%s/mseg-t-%d-%d-sweep.seg", dir, th_run_id(), (int)getpid());
    snprintf(sw_img, sizeof sw_img, "%s/mseg-t-%d-%d-sweep.img", dir, th_run_id(), (int)getpid());
    th_track(sw_path, 0);
    th_track(sw_img, 0);
    cr_assert(TH_EXITED_OK(th_fork_run(sweep_reference, NULL)), "the reference run failed");
    unsigned points = 0, fsyncs = 0, acked_state = 0, failing_state = 0, failures = 0;
    for (long k = 1; k < 100000; k++) {
        int st = th_fork_run(sweep_failing, &k);
        char buf[100];
        cr_assert(TH_EXITED_OK(st), "persist %ld: child %s", k, th_status_str(st, buf, sizeof buf));
        if (swsh->failed_at < 0)
            break;
        points++;
        fsyncs += (unsigned)swsh->fsync_failed;
        const struct sweep_shared *v = swsh;
        bool ok = true;
        if (v->fail_errno != EIO) {
            cr_log_error("persist %ld: step %d failed with %s: %s", k, v->failed_at, strerror(v->fail_errno),
                         v->fail_msg);
            ok = false;
        }
        if (strstr(v->fail_msg, "earlier")) {       /* its own flush failed: say that one, and why */
            cr_log_error("persist %ld: step %d says: %s", k, v->failed_at, v->fail_msg);
            ok = false;
        }
        if (v->late_ok >= 0) {
            cr_log_error("persist %ld: step %d succeeded after the failure in step %d", k, v->late_ok, v->failed_at);
            ok = false;
        }
        if (v->matched == v->acked)
            acked_state++;
        else if (v->matched == v->failed_at + 1)
            failing_state++;
        else {
            cr_log_error("persist %ld (failing step %d, %d acknowledged): the recovered state is that after "
                         "step %d %s", k, v->failed_at, v->acked, v->matched, v->why);
            ok = false;
        }
        failures += !ok;
    }
    cr_log_info("durability: %u persist points failed in turn (%u of them fsyncs): %u recovered to the last "
                "acknowledged step, %u to the failing one, %u failures", points, fsyncs, acked_state,
                failing_state, failures);
    cr_expect_eq(failures, 0u);
    cr_expect_gt(points, 60u);
    cr_expect_geq(fsyncs, 2u, "a growth's fsync and mseg_sync's");
    munmap(swsh, sizeof *swsh);
}
