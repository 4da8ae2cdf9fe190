/*
 * sync.c - what survives a power loss, with and without MSEG_DURABLE.
 *
 * With MSEG_DURABLE every operation is on disk when it returns (log.c).
 * Without it, operations reach the page cache only, and mseg_sync() makes
 * everything so far durable. A process crash loses nothing either way: the
 * page cache keeps every store. A system crash (power loss, kernel panic) can
 * leave any subset of the pages written since the last sync on disk, torn at
 * sector boundaries, so the log and the free lists on disk may disagree with
 * the heap. To tell the two apart:
 *
 *   - before the first change after a sync, an operation stores the kernel's
 *     boot id and unsynced = 1 in the runtime page and flushes that page
 *     (one msync per sync period, not per operation);
 *   - mseg_sync flushes the whole mapping, then clears unsynced and flushes
 *     the runtime page again;
 *   - the first process to attach finds unsynced = 1 with another boot id
 *     only if the machine restarted while changes were unsynced. It then
 *     trusts nothing but the block headers and the directory: it discards the
 *     log, rebuilds the free lists from the headers, verifies the whole
 *     segment (check.c), and refuses it with EUCLEAN if it is not sound.
 *     What it cannot verify is the content of user data written since the
 *     last sync: some of it may be older than the rest.
 *
 * Durable segments need one repair after a system crash as well: an
 * operation writes its new blocks in place before it commits (log.c), over
 * the links of the free block they come from, and only the log head's
 * "active" flag (not flushed before those writes) tells recovery to rebuild
 * the free lists. So the first writer to attach records the boot id,
 * flushed when it is new; a durable handle also flushes the "open" state
 * when it attaches (a clean close earlier in the same boot left "clean" on
 * disk; a non-durable writer's first change flushes it with the unsynced
 * mark); and the first one
 * after a restart that did not follow a clean close replays every valid
 * commit slot (log.c) and rebuilds the free lists from the block headers
 * (a heap walk; a clean close or a process crash costs nothing).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "testing.h"

static uint8_t real_boot_id[16];
static bool real_boot_id_read;
static uint8_t fake_boot_id[16];
static bool fake_boot_id_set;

void mseg_test_set_boot_id(const uint8_t *id)
{
    fake_boot_id_set = id != NULL;
    if (id)
        memcpy(fake_boot_id, id, sizeof fake_boot_id);
}

unsigned long mseg_test_flushes(mseg *s)
{
    return s ? s->flushes : 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The kernel's boot id (a UUID, new at every boot), as 16 bytes. If it
   cannot be read, all zeros: every system crash then looks like a process
   crash, so README tells such systems to use MSEG_DURABLE. */
static const uint8_t *boot_id(void)
{
    if (fake_boot_id_set)
        return fake_boot_id;
    if (!__atomic_load_n(&real_boot_id_read, __ATOMIC_ACQUIRE)) {
        char text[64] = "";
        int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (read(fd, text, sizeof text - 1) < 0)
                text[0] = '\0';
            close(fd);
        }
        uint8_t id[16] = {0};
        for (int i = 0, n = 0; text[i] && n < 32; i++) {
            int v = hexval(text[i]);
            if (v < 0)
                continue;
            id[n / 2] |= (uint8_t)(v << (n % 2 ? 0 : 4));
            n++;
        }
        memcpy(real_boot_id, id, sizeof id);
        __atomic_store_n(&real_boot_id_read, true, __ATOMIC_RELEASE);
    }
    return real_boot_id;
}

int sync_mark_unsynced(mseg *s)
{
    if ((s->flags & MSEG_DURABLE) || s->mode != MODE_RW)
        return 0;
    struct mseg_runtime *rt = seg_runtime(s);
    if (rt->unsynced && memcmp(rt->boot_id, boot_id(), sizeof rt->boot_id) == 0)
        return 0;
    memcpy(rt->boot_id, boot_id(), sizeof rt->boot_id);
    rt->unsynced = 1;
    return flush_now(s, MSEG_RUNTIME_OFF, MSEG_PAGE);
}

/* Whether a power loss now would leave a disk that recovery trusts as it
   is: no change since the last mseg_sync is waiting for one (unsynced is
   0, marked and flushed before a non-durable change). Then a repair made
   in memory (a rollback in recovery) must reach the disk before the log
   that covers it is emptied; with unsynced changes, recovery after a
   power loss distrusts the log and verifies the heap anyway. */
bool sync_disk_trusted(mseg *s)
{
    return __atomic_load_n(&seg_runtime(s)->unsynced, __ATOMIC_ACQUIRE) == 0;
}

bool sync_system_crashed(mseg *s)
{
    const struct mseg_runtime *rt = seg_runtime(s);
    return rt->unsynced && memcmp(rt->boot_id, boot_id(), sizeof rt->boot_id) != 0;
}

static bool boot_id_unknown(void)
{
    static const uint8_t unknown[16];
    return memcmp(boot_id(), unknown, sizeof unknown) == 0;
}

/* Left open (not closed cleanly) by a boot before this one, or by any boot
   if the boot id cannot be read: a power loss may then have put an
   uncommitted operation's fresh blocks on disk, and the free lists are
   rebuilt (segment.c). */
bool sync_rebooted_while_open(mseg *s)
{
    const struct mseg_runtime *rt = seg_runtime(s);
    return rt->state != MSEG_STATE_CLEAN &&
           (boot_id_unknown() || memcmp(rt->boot_id, boot_id(), sizeof rt->boot_id) != 0);
}

bool sync_after_reboot(mseg *s)
{
    return sync_rebooted_while_open(s) || boot_id_unknown();
}

/* The first writer's boot id and its "open" state, flushed when either is
   new: sync_rebooted_while_open reads both from the disk after a power
   loss, and a "clean" found there (a clean close earlier in the same boot,
   the open not flushed) would make recovery treat the power loss as a
   process crash and skip the durable commits whose pages were not flushed. */
int sync_record_boot(mseg *s, bool state_changed)
{
    struct mseg_runtime *rt = seg_runtime(s);
    bool new_boot = memcmp(rt->boot_id, boot_id(), sizeof rt->boot_id) != 0;
    if (s->mode != MODE_RW || (!state_changed && !new_boot))
        return 0;
    /* The first attach of a boot: the epoch that the disk kept may be older
       than ones the last boot stamped on mutexes whose pages did reach the
       disk (only this flush orders the epoch's page; the kernel writes the
       others back whenever), and such a mutex, locked when the power went,
       would pass for current and be held for good. Every epoch of the last
       boot lies below the next multiple of 2^32 (mutex.c). */
    if (new_boot)
        __atomic_store_n(&rt->epoch, (rt->epoch | UINT64_C(0xffffffff)) + 1, __ATOMIC_RELEASE);
    memcpy(rt->boot_id, boot_id(), sizeof rt->boot_id);
    return flush_now(s, MSEG_RUNTIME_OFF, MSEG_PAGE);
}

int sync_verify_after_crash(mseg *s)
{
    struct mseg_log_head *h = (struct mseg_log_head *)(s->base + MSEG_LOG_OFF);
    h->commit = h->commit_b = 0;   /* the log is not trusted: discarded */
    h->undo_size = 0;
    h->active = 0;
    s->recovered = true;
    if (heap_rebuild(s)) {
        /* the cause is in the error buffer that fail() writes: copied out first */
        char cause[512];
        snprintf(cause, sizeof cause, "%s", mseg_errmsg());
        return fail(EUCLEAN, "segment %s was changed without mseg_sync when the system went "
                    "down, and is damaged: %s", s->name, cause);
    }
    struct mseg_report r;
    if (check_segment(s, &r))
        return fail(EUCLEAN, "segment %s was changed without mseg_sync when the system went "
                    "down, and is damaged: %s", s->name, r.first_problem);
    if (s->mode != MODE_RW)
        return 0;
    struct mseg_runtime *rt = seg_runtime(s);
    if (check_prune_garbage(s) || flush_now(s, 0, s->size))
        return -1;
    rt->unsynced = 0;
    return flush_now(s, MSEG_RUNTIME_OFF, MSEG_PAGE);
}

/* The runtime page, with its "open" state, onto the disk: a durable handle
   attaching after a non-durable first writer, which may not have flushed it. */
int sync_flush_state(mseg *s)
{
    return s->mode == MODE_RW ? flush_now(s, MSEG_RUNTIME_OFF, MSEG_PAGE) : 0;
}

/* ---- after a failed flush ----
 *
 * When write-back fails, the kernel marks the pages it could not write clean:
 * memory keeps their bytes, the disk does not have them, and no later msync
 * writes them unless they change again. The handle whose msync or fsync
 * failed learns it and flushes nothing more (flush_now). So do the other
 * handles open at that moment: the kernel reports the error once to every
 * open file description. A handle opened after it is told nothing, and its
 * flushes would "succeed": a durable commit or close would then retire the
 * commit slots that still replay the lost pages, and mseg_sync would clear
 * the unsynced mark over them, so a power loss lost acknowledged changes.
 * The failing handle therefore notes the failure and the boot in the
 * runtime page, and the next flush of any sound handle in that boot first
 * marks every page the page cache holds dirty again and writes the whole
 * mapping. So does its next operation, before it changes anything
 * (lock_for_write): the heal writes memory as it is, in one msync, in no
 * set order, so memory must not by then have lost the commit slot that
 * replays those pages (a commit writes its slot over the older one), nor
 * show an unsynced mark that the failure kept off the disk (the mark is
 * flushed only when memory lacks it). A reboot ends the note: the page
 * cache it was about is gone. */

static mseg_redirty_hook_fn redirty_hook;
static void *redirty_hook_arg;

void mseg_test_set_redirty_hook(mseg_redirty_hook_fn fn, void *arg)
{
    redirty_hook = fn;
    redirty_hook_arg = arg;
}

void sync_flush_failed(mseg *s)
{
    s->failed = true;
    struct mseg_runtime *rt = seg_runtime(s);
    memcpy(rt->failed_boot_id, boot_id(), sizeof rt->failed_boot_id);
    __atomic_add_fetch(&rt->flush_failures, 1, __ATOMIC_RELEASE);
}

/* Dirties every page of the mapping that the page cache holds (mincore; all
   of them if it cannot tell): an atomic add of 0 to its first word, which
   changes no byte even beside a store of another thread or process, since
   the program's data shares these pages. A page not held has nothing to
   write: its bytes are the disk's. */
static void redirty_resident_pages(mseg *s)
{
    size_t pages = (size_t)(s->size / MSEG_PAGE);
    unsigned char *held = malloc(pages);
    if (held && mincore(s->base, (size_t)s->size, held)) {
        free(held);
        held = NULL;
    }
    for (size_t p = 0; p < pages; p++) {
        if (held && !(held[p] & 1))
            continue;
        __atomic_fetch_add((uint64_t *)(s->base + (uint64_t)p * MSEG_PAGE), 0, __ATOMIC_RELAXED);
        if (redirty_hook)
            redirty_hook((uint64_t)p * MSEG_PAGE, MSEG_PAGE, redirty_hook_arg);
    }
    free(held);
}

int sync_heal_failed_flush_noted(mseg *s)
{
    if (s->mode != MODE_RW || s->failed)
        return 0;   /* nothing to flush, or nothing more may be flushed (flush_now) */
    struct mseg_runtime *rt = seg_runtime(s);
    uint64_t seen = __atomic_load_n(&rt->flush_failures, __ATOMIC_ACQUIRE);
    if (seen == 0 || memcmp(rt->failed_boot_id, boot_id(), sizeof rt->failed_boot_id) != 0)
        return 0;
    redirty_resident_pages(s);
    if (flush_pages(s, 0, s->size))
        return -1;
    /* a failure noted since `seen` may have left pages this flush wrote
       before it: its note stays, and the next flush heals again */
    __atomic_compare_exchange_n(&rt->flush_failures, &seen, 0, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    return 0;
}

/* Everything so far onto the disk, under the lock: the mapping, the file,
   then the commit slots emptied and the unsynced mark cleared. */
int sync_locked(mseg *s)
{
    int rc = flush_now(s, 0, s->size);
    if (rc == 0 && fsync(s->fd)) {
        sync_flush_failed(s);
        rc = fail(EIO, "segment %s: fsync failed (%s); the handle refuses further writes",
                  s->name, strerror(errno));
    }
    if (rc == 0)
        rc = log_settle(s);   /* all flushed: no commit slot need be replayed */
    if (rc == 0) {
        seg_runtime(s)->unsynced = 0;
        rc = flush_now(s, MSEG_RUNTIME_OFF, MSEG_PAGE);
    }
    return rc;
}

/* A durable handle's operation, when changes of a non-durable handle
   (another process's, or this one's) are unsynced: they are synced first.
   Otherwise a power loss finds the unsynced mark, recovery discards the
   log as untrusted (sync_verify_after_crash), and with it the durable
   commits made since, whose pages are owed to the next commit. */
int sync_before_durable(mseg *s)
{
    if (!(s->flags & MSEG_DURABLE) || s->mode != MODE_RW || !seg_runtime(s)->unsynced)
        return 0;
    return sync_locked(s);
}

int mseg_sync(mseg *s)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle");
    if (s->mode != MODE_RW)
        return fail(EROFS, "segment %s is not open read-write", s->name);
    if (s->failed)
        return fail(EIO, "segment %s: an earlier flush failed", s->name);
    bool locked = !tx_owns(s);
    if (locked && lock_acquire(s))
        return -1;
    int rc = sync_locked(s);
    if (locked)
        lock_release(s);
    return rc;
}
