/* test_attach.c - handles of several processes stay consistent with each
   other: sizes, who recovers, shrink against other handles.

   Found by a review of the size protocol after the kill -9 torture's one
   failure (a grower killed between its header and its notice to the
   others; test_growth.c has that case): each test here failed before its
   fix, as noted. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "helpers.h"
#include "layout.h"
#include "testing.h"

#define KiB (1024ull)
#define MiB (1024ull * 1024ull)

static const unsigned backends[] = { 0, MSEG_SHM };
static const char *backend_name(unsigned b) { return b & MSEG_SHM ? "shm" : "file"; }

struct child_arg { const char *name; unsigned flags; };

static mseg *fresh(const char *name, unsigned flags)
{
    struct mseg_config cfg = { .size = 1 * MiB, .max_size = 16 * MiB };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL | flags, &cfg);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_not_null(mseg_construct(s, "keep", "stamp", 1, 100 * KiB, NULL), "%s", mseg_errmsg());
    return s;
}

static int sound(mseg *s)
{
    struct mseg_report r;
    return mseg_verify(s, &r) == 0 && r.problems == 0;
}

/* ---- two growers that disagree ---- */

static void grow_to_8mib_and_die_at_header(void *arg)
{
    struct child_arg *c = arg;
    th_grow_and_die_at_header(c->name, c->flags, 6 * MiB);
}

/* A grower dies after its header says 8 MiB, before it tells the others.
   P (mapping 1 MiB) then grows a little, Q (opened after, mapping 8 MiB)
   grows into its gap. Before the fix, P's growth wrote 2 MiB over the 8 MiB
   header copy (judged against P's mapping, it looked invalid), Q's heap
   reached 8 MiB, and the segment no longer opened: "heap does not fit a
   segment of 2097152 bytes". */
static void growers_that_disagree(unsigned backend)
{
    char name[256], why[200];
    th_name(name, backend);
    mseg *p = fresh(name, backend);
    struct child_arg c = { name, backend };
    int st = th_fork_run(grow_to_8mib_and_die_at_header, &c);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 42, "%s: the grower %s",
              backend_name(backend), th_status_str(st, why, sizeof why));
    cr_assert_not_null(mseg_alloc(p, 64), "%s", mseg_errmsg());   /* rolls the grower back */
    cr_assert(sound(p), "%s: P, mapping less than the header records: %s", backend_name(backend),
              mseg_errmsg());
    mseg *q = mseg_open(name, backend, NULL);
    cr_assert_not_null(q, "%s", mseg_errmsg());
    cr_assert_eq(mseg_size(q), 8 * MiB, "%s: Q maps the dead grower's header", backend_name(backend));
    cr_assert_not_null(mseg_alloc(p, 1536 * KiB), "%s: %s", backend_name(backend), mseg_errmsg());
    cr_assert_eq(mseg_size(p), 8 * MiB, "%s: P's growth took the 8 MiB the header records, got %zu",
                 backend_name(backend), mseg_size(p));
    cr_assert_not_null(mseg_alloc(q, 3 * MiB), "%s: %s", backend_name(backend), mseg_errmsg());
    cr_assert(sound(p) && sound(q), "%s: %s", backend_name(backend), mseg_errmsg());
    mseg_close(q);
    mseg_close(p);
    mseg *again = mseg_open(name, backend, NULL);
    cr_assert_not_null(again, "%s: reopen: %s", backend_name(backend), mseg_errmsg());
    cr_assert(sound(again), "%s: %s", backend_name(backend), mseg_errmsg());
    mseg_close(again);
    mseg_remove(name, backend);
}

Test(attach, a_growth_never_writes_a_header_size_below_another_processes, .timeout = 30, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++)
        growers_that_disagree(backends[b]);
}

/* ---- a durable shrink, then a power loss ---- */

static void durable_free_then_shrink(void *arg)
{
    struct child_arg *c = arg;
    mseg *s = mseg_open(c->name, c->flags, NULL);
    CHILD_CHECK(s != NULL);
    void *big = mseg_alloc(s, 3 * MiB);   /* grows to 4 MiB */
    CHILD_CHECK(big != NULL);
    CHILD_CHECK(mseg_free(s, big) == 0);   /* its commit slot: records near the old end */
    CHILD_CHECK(mseg_shrink(s) == 0);
    CHILD_CHECK(mseg_size(s) < 2 * MiB);
    _exit(0);   /* no close: the power goes */
}

/* Before the fix, the shrink left the free's committed slot in place; the
   replay after a reboot then wrote past the shrunk file: "log record 4
   writes outside the heap". */
Test(attach, a_durable_shrink_then_a_reboot_reopens_sound, .timeout = 30, .fini = th_cleanup)
{
    char name[256], why[200];
    th_name(name, 0);
    mseg *p = fresh(name, MSEG_DURABLE);
    mseg_close(p);
    struct child_arg c = { name, MSEG_DURABLE };
    int st = th_fork_run(durable_free_then_shrink, &c);
    cr_assert(TH_EXITED_OK(st), "child %s", th_status_str(st, why, sizeof why));
    static const uint8_t other_boot[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
    mseg_test_set_boot_id(other_boot);
    mseg *s = mseg_open(name, MSEG_DURABLE, NULL);
    mseg_test_set_boot_id(NULL);
    cr_assert_not_null(s, "reopen after a reboot: %s", mseg_errmsg());
    cr_assert(sound(s), "%s", mseg_errmsg());
    cr_assert_lt(mseg_size(s), 2 * MiB);
    cr_assert_not_null(mseg_find(s, "keep", "stamp", 1, NULL), "%s", mseg_errmsg());
    mseg_close(s);
    mseg_remove(name, 0);
}

/* ---- growth by another handle, seen through a copy-on-write handle ---- */

/* A copy-on-write view follows the file's unwritten pages, heap_end among
   them; before the fix it never mapped the growth that another handle
   published, so an object placed there was "not a live block" (EUCLEAN). */
static void cow_after_growth(unsigned backend)
{
    char name[256];
    th_name(name, backend);
    mseg *w = fresh(name, backend);
    mseg *c = mseg_open(name, backend | MSEG_COW, NULL);
    cr_assert_not_null(c, "%s", mseg_errmsg());
    size_t before = mseg_size(c);
    unsigned char *big = mseg_construct(w, "big", "stamp", 1, 3 * MiB, NULL);   /* grows */
    cr_assert_not_null(big, "%s", mseg_errmsg());
    memset(big, 0x5a, 3 * MiB);
    cr_assert_gt(mseg_size(w), before);
    /* mseg_at first, before any read maps the growth */
    const unsigned char *last = mseg_at(c, mseg_off_of(w, big + 3 * MiB - 1));
    cr_assert_not_null(last, "%s: mseg_at through the copy-on-write handle after growth: %s",
                       backend_name(backend), mseg_errmsg());
    cr_assert_eq(*last, 0x5a);
    size_t n = 0;
    const unsigned char *seen = mseg_find(c, "big", "stamp", 1, &n);
    cr_assert_not_null(seen, "%s: find through the copy-on-write handle after growth: %s",
                       backend_name(backend), mseg_errmsg());
    cr_assert_eq(n, 3 * MiB);
    cr_assert(seen[0] == 0x5a && seen[3 * MiB - 1] == 0x5a, "%s: the grown object's bytes",
              backend_name(backend));
    cr_assert_eq(mseg_size(c), mseg_size(w));
    cr_assert_not_null(mseg_find(c, "keep", "stamp", 1, NULL), "%s", mseg_errmsg());
    mseg_close(c);
    mseg_close(w);
    mseg_remove(name, backend);
}

Test(attach, a_copy_on_write_handle_follows_growth_by_another_handle, .timeout = 30, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++)
        cow_after_growth(backends[b]);
}

/* ---- a stale runtime page after a shrink and a power loss ---- */

/* The power-loss model of test_powerloss.c: the disk holds each page as it
   was last flushed. This keeps the runtime page's last flushed bytes. */
static uint8_t runtime_on_disk[MSEG_PAGE];

static void keep_runtime_page(const uint8_t *base, uint64_t size, uint64_t off, uint64_t len, void *arg)
{
    (void)size;
    (void)arg;
    if (off <= MSEG_RUNTIME_OFF && off + len >= MSEG_RUNTIME_OFF + MSEG_PAGE)
        memcpy(runtime_on_disk, base + MSEG_RUNTIME_OFF, MSEG_PAGE);
}

/* Grows to 16 MiB, syncs, frees (which flushes the runtime page as it marks
   the segment unsynced), shrinks (headers flushed, file cut; the runtime
   page's new size is not flushed); then the power goes. */
static void grow_sync_free_shrink(void *arg)
{
    const struct child_arg *a = arg;
    const char *name = a->name;
    mseg *s = mseg_open(name, a->flags, NULL);
    CHILD_CHECK(s != NULL);
    mseg_test_set_flush_hook(keep_runtime_page, NULL);
    void *big = mseg_alloc(s, 10 * MiB);
    CHILD_CHECK(big != NULL && mseg_size(s) == 16 * MiB);
    CHILD_CHECK(mseg_sync(s) == 0);
    CHILD_CHECK(mseg_free(s, big) == 0);
    CHILD_CHECK(mseg_shrink(s) == 0);
    CHILD_CHECK(mseg_size(s) < 2 * MiB);
    mseg_test_set_flush_hook(NULL, NULL);
    uint64_t on_disk;
    memcpy(&on_disk, runtime_on_disk + offsetof(struct mseg_runtime, size), 8);
    CHILD_CHECK(on_disk == 16 * MiB);   /* the stale size this case is about */
    int fd = open(name, O_RDWR);   /* the disk after the power loss */
    CHILD_CHECK(fd >= 0 && pwrite(fd, runtime_on_disk, MSEG_PAGE, MSEG_RUNTIME_OFF) == MSEG_PAGE);
    _exit(0);
}

static const uint8_t other_boot[16] = { 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6 };

/* A segment (flags: 0 or MSEG_DURABLE; max_size 16 MiB) holding "keep",
   after grow_sync_free_shrink and a reboot: its runtime page on disk says
   16 MiB, its file and headers less than 2 MiB. The caller ends the
   pretended boot with mseg_test_set_boot_id(NULL). */
static void stale_runtime_after_reboot(char *name, unsigned flags)
{
    char why[200];
    th_name(name, 0);
    struct mseg_config cfg = { .size = 1 * MiB, .max_size = 16 * MiB };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL | flags, &cfg);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_not_null(mseg_construct(s, "keep", "stamp", 1, 100 * KiB, NULL), "%s", mseg_errmsg());
    cr_assert_eq(mseg_sync(s), 0);
    mseg_close(s);
    struct child_arg ca = { name, flags };
    int st = th_fork_run(grow_sync_free_shrink, &ca);
    cr_assert(TH_EXITED_OK(st), "the growing child: %s", th_status_str(st, why, sizeof why));
    mseg_test_set_boot_id(other_boot);
}

/* The writer w grows the segment to exactly the stale 16 MiB (max_size:
   growth to fit 14 MiB ends there) with a 14 MiB object; true if the reader
   handle r then finds it whole, else false with the reason in msg. */
static bool reader_follows_growth_to_16_mib(mseg *w, mseg *r, char *msg, size_t n)
{
    unsigned char *grown = mseg_construct(w, "grown", "stamp", 1, 14 * MiB, NULL);
    cr_assert_not_null(grown, "%s", mseg_errmsg());
    cr_assert_eq(mseg_size(w), 16 * MiB, "the writer grew to %zu bytes", mseg_size(w));
    memset(grown, 0x3c, 14 * MiB);
    const unsigned char *seen = mseg_find(r, "grown", "stamp", 1, NULL);
    snprintf(msg, n, "the reader maps %zu bytes; find: %s", mseg_size(r),
             !seen ? mseg_errmsg() : seen[14 * MiB - 1] != 0x3c ? "wrong bytes" : "found");
    return seen && seen[14 * MiB - 1] == 0x3c;
}

/* After the reboot the runtime page says 16 MiB for a 1 MiB file. It is
   never trusted from disk, and the first writer resets it; before that,
   mseg check (a copy-on-write view) and a copy-on-write handle followed it
   as growth and called the sound segment damaged (found by a helper's
   review of the copy-on-write growth fix, which introduced it). */
Test(attach, a_stale_runtime_size_after_a_shrink_and_a_power_loss_is_not_damage, .timeout = 30,
     .fini = th_cleanup)
{
    char name[256];
    stale_runtime_after_reboot(name, 0);
    struct mseg_report r;
    memset(&r, 0, sizeof r);
    int rc = mseg_check(name, 0, &r);
    char check_msg[300];
    snprintf(check_msg, sizeof check_msg, "%s", rc ? mseg_errmsg() : "");
    mseg *c = mseg_open(name, MSEG_COW, NULL);
    cr_assert_not_null(c, "%s", mseg_errmsg());
    const void *keep = mseg_find(c, "keep", "stamp", 1, NULL);
    char cow_msg[300];
    snprintf(cow_msg, sizeof cow_msg, "%s", keep ? "" : mseg_errmsg());
    mseg_close(c);
    mseg *w = mseg_open(name, 0, NULL);   /* the reference: a writer resets the page */
    cr_assert_not_null(w, "%s", mseg_errmsg());
    struct mseg_report rw;
    cr_assert_eq(mseg_verify(w, &rw), 0, "%s", mseg_errmsg());
    cr_assert_not_null(mseg_find(w, "keep", "stamp", 1, NULL), "%s", mseg_errmsg());
    mseg_close(w);
    mseg_test_set_boot_id(NULL);
    cr_assert(rc == 0 && r.problems == 0, "mseg check of the sound segment: rc %d, %llu problems: %s",
              rc, (unsigned long long)r.problems, check_msg);
    cr_assert_not_null(keep, "find through a copy-on-write handle: %s", cow_msg);
}

/* ---- shrink against a copy-on-write handle ---- */

static volatile unsigned char *cow_view;

static void read_cow_view(void *arg)
{
    (void)arg;
    unsigned sum = 0;
    for (size_t i = 0; i < 2 * MiB; i += 4096)
        sum += cow_view[i];
    _exit(sum == 0x5a * (2 * MiB / 4096) ? 0 : 1);
}

/* Before the fix, shrink did not see copy-on-write handles and truncated
   the file under them: reading their view of the old tail was SIGBUS. */
static void cow_against_shrink(unsigned backend)
{
    char name[256], why[200];
    th_name(name, backend);
    mseg *w = fresh(name, backend);
    unsigned char *big = mseg_construct(w, "big", "stamp", 1, 2 * MiB, NULL);   /* grows */
    cr_assert_not_null(big, "%s", mseg_errmsg());
    memset(big, 0x5a, 2 * MiB);
    mseg *c = mseg_open(name, backend | MSEG_COW, NULL);
    cr_assert_not_null(c, "%s", mseg_errmsg());
    cow_view = mseg_find(c, "big", "stamp", 1, NULL);
    cr_assert_not_null(cow_view, "%s", mseg_errmsg());
    cr_assert_eq(mseg_destroy(w, "big"), 0, "%s", mseg_errmsg());
    errno = 0;
    cr_assert_eq(mseg_shrink(w), -1, "%s: shrink with a copy-on-write handle attached", backend_name(backend));
    cr_assert_eq(errno, EBUSY);
    int st = th_fork_run(read_cow_view, NULL);
    cr_assert(TH_EXITED_OK(st), "%s: the copy-on-write view: %s", backend_name(backend),
              th_status_str(st, why, sizeof why));
    mseg_close(c);
    cr_assert_eq(mseg_shrink(w), 0, "%s: alone again: %s", backend_name(backend), mseg_errmsg());
    cr_assert_lt(mseg_size(w), 2 * MiB);
    cr_assert(sound(w), "%s", mseg_errmsg());
    mseg_close(w);
    mseg_remove(name, backend);
}

Test(attach, shrink_is_ebusy_while_a_copy_on_write_handle_is_attached, .timeout = 30, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++)
        cow_against_shrink(backends[b]);
}

/* ---- a read-only open when recovery is due ---- */

static void die_at_log_written(const char *point, unsigned long n, void *arg)
{
    (void)n; (void)arg;
    if (strcmp(point, "log.written") == 0)
        _exit(42);
}

static void construct_and_die(void *arg)
{
    struct child_arg *c = arg;
    mseg *s = mseg_open(c->name, c->flags, NULL);
    CHILD_CHECK(s != NULL);
    mseg_test_set_crash_hook(die_at_log_written, NULL);
    mseg_construct(s, "lost", "stamp", 1, 1000, NULL);
    _exit(0);
}

/* Before the fix, the reader recovered into a private view, which kept its
   repaired pages while the others followed the file: after a writer
   attached and grew the segment, the reader saw neither the growth nor the
   writer's objects (EUCLEAN). Now the open is EAGAIN until a writer has
   recovered, and then the reader follows the writer. */
static void read_only_when_recovery_is_due(unsigned backend)
{
    char name[256], why[200];
    th_name(name, backend);
    mseg *p = fresh(name, backend);
    mseg_close(p);
    struct child_arg c = { name, backend };
    int st = th_fork_run(construct_and_die, &c);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 42, "%s: the writer %s",
              backend_name(backend), th_status_str(st, why, sizeof why));
    errno = 0;
    cr_assert_null(mseg_open(name, backend | MSEG_RDONLY, NULL), "%s: read-only open with recovery due",
                   backend_name(backend));
    cr_assert_eq(errno, EAGAIN, "%s: %s", backend_name(backend), mseg_errmsg());
    mseg *w = mseg_open(name, backend, NULL);   /* the first writer recovers */
    cr_assert_not_null(w, "%s", mseg_errmsg());
    mseg *r = mseg_open(name, backend | MSEG_RDONLY, NULL);
    cr_assert_not_null(r, "%s: %s", backend_name(backend), mseg_errmsg());
    cr_assert_null(mseg_find(r, "lost", "stamp", 1, NULL), "%s: the dead writer's construct is gone",
                   backend_name(backend));
    unsigned char *b = mseg_construct(w, "b", "stamp", 1, 3 * MiB, NULL);   /* grows */
    cr_assert_not_null(b, "%s", mseg_errmsg());
    memset(b, 0x5a, 3 * MiB);
    size_t n = 0;
    unsigned char *rb = mseg_find(r, "b", "stamp", 1, &n);
    cr_assert_not_null(rb, "%s: the reader finds the writer's object: %s", backend_name(backend), mseg_errmsg());
    cr_assert_eq(n, 3 * MiB);
    cr_assert_eq(rb[3 * MiB - 1], 0x5a);
    cr_assert_eq(mseg_size(r), mseg_size(w), "%s: the reader follows growth", backend_name(backend));
    mseg_close(r);
    mseg_close(w);
    mseg_remove(name, backend);
}

Test(attach, a_read_only_open_is_eagain_until_a_writer_has_recovered, .timeout = 30, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++)
        read_only_when_recovery_is_due(backends[b]);
}

/* The durable variant, read through a read-only handle: nothing is left to
   recover, so the read-only handle opens, reads the stale size, and must
   keep its mapping; and when a writer then grows the segment to that very
   size (max_size 16 MiB: growth to fit 14 MiB ends there), it must follow:
   the runtime page's epoch tells the two 16 MiB apart. */
Test(attach, a_read_only_handle_ignores_a_stale_runtime_size_then_follows_real_growth, .timeout = 30,
     .fini = th_cleanup)
{
    char name[256], msg[300];
    stale_runtime_after_reboot(name, MSEG_DURABLE);
    mseg *r = mseg_open(name, MSEG_RDONLY, NULL);
    cr_assert_not_null(r, "read-only open after the power loss: %s", mseg_errmsg());
    const void *keep = mseg_find(r, "keep", "stamp", 1, NULL);
    char keep_msg[300];
    snprintf(keep_msg, sizeof keep_msg, "%s", keep ? "" : mseg_errmsg());
    mseg *w = mseg_open(name, MSEG_DURABLE, NULL);
    cr_assert_not_null(w, "%s", mseg_errmsg());
    bool followed = reader_follows_growth_to_16_mib(w, r, msg, sizeof msg);
    mseg_close(r);
    mseg_close(w);
    mseg_test_set_boot_id(NULL);
    cr_assert_not_null(keep, "find through the read-only handle: %s", keep_msg);
    cr_assert(followed, "after a writer grew the segment to the stale 16 MiB: %s", msg);
}

/* ---- a reader paused between its two loads of the runtime page ---- */

#if defined(__x86_64__)
/* seg_follow_growth loads runtime.epoch and runtime.size; the first writer
   resets the size and moves the epoch in between. Loaded size first, a
   reader could pair the stale size with the new epoch and skip the writer's
   real growth to that size for the whole epoch (found by a helper, with
   this test). The pause is forced: the reader's runtime page is made
   PROT_NONE, the SIGSEGV at its first load restores it and single-steps
   (the trap flag) over that one load, and the SIGTRAP that follows lets a
   real writer attach, in another thread, before the reader's next load. */
static uint8_t *rt_page;            /* the reader's mapping of the runtime page */
static volatile int armed, stepping, faults, traps;
static volatile int go, done;
static const char *seg_name;
static mseg *writer;

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    ucontext_t *uc = ctx;
    if (!armed || (uint8_t *)si->si_addr < rt_page || (uint8_t *)si->si_addr >= rt_page + MSEG_PAGE) {
        signal(sig, SIG_DFL);
        return;
    }
    armed = 0;
    faults++;
    mprotect(rt_page, MSEG_PAGE, PROT_READ);
    uc->uc_mcontext.gregs[REG_EFL] |= 0x100;   /* TF: trap after the load */
    stepping = 1;
}

static void on_trap(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = ctx;
    if (!stepping)
        return;
    stepping = 0;
    traps++;
    uc->uc_mcontext.gregs[REG_EFL] &= ~0x100;
    /* the reader has loaded one word of the runtime page: now the first writer attaches */
    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE))
        nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
}

static void *writer_thread(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
        nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
    writer = mseg_open(seg_name, MSEG_DURABLE, NULL);
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    return NULL;
}

Test(attach, a_reader_paused_while_the_first_writer_attaches_still_follows_its_growth, .timeout = 30,
     .fini = th_cleanup)
{
    char name[256], msg[300];
    stale_runtime_after_reboot(name, MSEG_DURABLE);
    seg_name = name;
    mseg *r = mseg_open(name, MSEG_RDONLY, NULL);
    cr_assert_not_null(r, "read-only open after the power loss: %s", mseg_errmsg());
    cr_assert_not_null(mseg_find(r, "keep", "stamp", 1, NULL), "%s", mseg_errmsg());

    rt_page = mseg_at(r, MSEG_RUNTIME_OFF);
    cr_assert_not_null(rt_page);
    struct sigaction sa = { .sa_flags = SA_SIGINFO };
    sigemptyset(&sa.sa_mask);
    sa.sa_sigaction = on_segv;
    sigaction(SIGSEGV, &sa, NULL);
    sa.sa_sigaction = on_trap;
    sigaction(SIGTRAP, &sa, NULL);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, writer_thread, NULL), 0);

    armed = 1;
    cr_assert_eq(mprotect(rt_page, MSEG_PAGE, PROT_NONE), 0);
    size_t rsize = mseg_size(r);   /* seg_follow_growth, paused after its first load of the page */
    armed = 0;
    pthread_join(t, NULL);
    cr_assert_eq(faults, 1);
    cr_assert_eq(traps, 1);
    cr_assert_not_null(writer, "%s", mseg_errmsg());
    cr_assert(rsize < 2 * MiB, "reader maps %zu bytes", rsize);

    bool followed = reader_follows_growth_to_16_mib(writer, r, msg, sizeof msg);
    mseg_close(r);
    mseg_close(writer);
    mseg_test_set_boot_id(NULL);
    cr_assert(followed, "after the writer grew the segment to 16 MiB: %s", msg);
}
#endif
