/*
 * tx.c - user transactions: many engine calls, one atomic commit.
 *
 * A transaction is one long operation of the intent log (log.c): begin takes
 * the segment lock and opens the log; every engine call the thread makes on
 * that segment adds its redo records to it instead of committing; user bytes
 * declared with mseg_tx_add get undo records first; commit runs the commit
 * protocol once for all of it. So everything becomes visible to recovery
 * together, or (abort, crash) not at all.
 *
 * Failures inside a transaction: a call that fails before changing anything
 * (a bad argument, a name that exists, a full segment found before carving)
 * just returns its error and the transaction goes on. A call that fails
 * after changing something cannot be undone on its own, so it aborts the
 * whole transaction, as libpmemobj does; until the outermost commit or abort,
 * every later call in it fails with ECANCELED.
 *
 * The state is per thread: one transaction at a time per thread. The lock is
 * held throughout, so other threads and processes wait; keep transactions
 * short. Using a second handle on the same segment from inside a transaction
 * would wait for the lock this thread holds: don't.
 */
#include "internal.h"

static MSEG_TLS struct {
    mseg *s;          /* segment of this thread's transaction, or NULL */
    int   depth;      /* nesting of begin/commit pairs */
    bool  aborted;    /* rolled back; later calls fail with ECANCELED */
    uint64_t serial;  /* which transaction (tx_serial) */
} tx;

static uint64_t tx_serial_next;   /* transactions begun in this process */

uint64_t tx_serial(const mseg *s)
{
    return tx_owns(s) ? tx.serial : 0;
}

bool tx_owns(const mseg *s)
{
    return s && tx.s == s && !tx.aborted;
}

bool tx_cancelled(const mseg *s)
{
    return s && tx.s == s && tx.aborted;
}

void tx_forget_after_fork(void)
{
    if (tx.s)
        tx.aborted = true;   /* later calls: ECANCELED; commit or abort just pops */
}

/* Whether a transaction on s holds s's lock, for fork.c: any thread's. */
static void set_holds_lock(mseg *s, bool held)
{
    __atomic_store_n(&s->tx_holds_lock, held, __ATOMIC_RELAXED);
}

/* Rolls the whole transaction back and releases the lock. */
static void tx_roll_back(mseg *s)
{
    op_rollback(s);
    set_holds_lock(s, false);
    lock_release(s);
    tx.aborted = true;
}

void tx_fail(mseg *s)
{
    if (tx_owns(s))
        tx_roll_back(s);
}

/* A handle closed inside this thread's transaction on it: the transaction
   is aborted (as a crash would leave it: rolled back) and the thread is out
   of it. Before, the thread kept pointing at the freed handle: its next
   mseg_tx_begin on any segment read it (a use after free, a crash). */
void tx_end_on_close(mseg *s)
{
    if (tx.s != s)
        return;
    if (!tx.aborted) {
        sync_mark_unsynced(s);   /* the rollback stores in place (a failure: s->failed) */
        tx_roll_back(s);
    }
    tx.s = NULL;
    tx.depth = 0;
    tx.aborted = false;
}

/* Common checks: the thread's transaction is on s and still alive. */
static int tx_check(mseg *s, const char *what)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle");
    if (tx.s != s)
        return fail(EINVAL, "segment %s: %s outside a transaction", s->name, what);
    if (tx.aborted)
        return fail(ECANCELED, "segment %s: the transaction was aborted", s->name);
    return 0;
}

/* Ends one nesting level; the outermost clears the thread's state. */
static void tx_pop(void)
{
    if (--tx.depth == 0) {
        tx.s = NULL;
        tx.aborted = false;
    }
}

int mseg_tx_begin(mseg *s)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle");
    if (tx.s == s) {
        /* a failed begin is not a level: its caller pairs it with nothing */
        if (tx.aborted)
            return fail(ECANCELED, "segment %s: the transaction was aborted", s->name);
        tx.depth++;
        return 0;
    }
    if (tx.s)
        return fail(EBUSY, "this thread is already in a transaction on segment %s", tx.s->name);
    if (seg_write_begin(s))
        return -1;
    set_holds_lock(s, true);
    tx.s = s;
    tx.depth = 1;
    tx.aborted = false;
    tx.serial = __atomic_add_fetch(&tx_serial_next, 1, __ATOMIC_RELAXED);
    return 0;
}

int mseg_tx_add(mseg *s, void *p, size_t n)
{
    if (tx_check(s, "mseg_tx_add"))
        return -1;
    /* offsets, not pointers: heap_start and heap_end come from the segment
       and may be damaged, and a pointer formed past the mapping is undefined */
    const struct mseg_control *c = seg_control(s);
    uintptr_t at = (uintptr_t)p, base = (uintptr_t)s->base;
    /* the end through the log: a growth earlier in this transaction has
       moved it only in its records */
    uint64_t start = c->heap_start, off = at - base,
             end = op_get64(s, MSEG_CONTROL_OFF + offsetof(struct mseg_control, heap_end));
    if (!p || n == 0 || at < base || end > s->size || off < start || off >= end || n > end - off)
        return fail(EINVAL, "segment %s: mseg_tx_add range %p+%zu is not inside the heap",
                    s->name, p, n);
    /* the user's stores follow: marked unsynced first, as at the
       transaction's begin, in case an mseg_sync inside it cleared that */
    if (sync_mark_unsynced(s) || op_undo_in_place(s, off, n)) {
        int e = errno;
        tx_roll_back(s);
        errno = e;
        fail_note("; the transaction was aborted (later calls in it fail with ECANCELED)");
        return -1;
    }
    return 0;
}

int mseg_tx_commit(mseg *s)
{
    if (!s || tx.s != s)
        return fail(EINVAL, "segment %s: mseg_tx_commit outside a transaction", s ? s->name : "(null)");
    bool aborted = tx.aborted;
    if (tx.depth > 1 || aborted) {
        tx_pop();
        return aborted ? fail(ECANCELED, "segment %s: the transaction was aborted", s->name) : 0;
    }
    /* user bytes alone still need a commit record, or recovery would take
       their undo records for an unfinished transaction */
    if (s->op.count == 0 && s->op.fresh_hi) {
        uint64_t w = MSEG_CONTROL_OFF + offsetof(struct mseg_control, reserved);
        op_set64(s, w, op_get64(s, w));
    }
    /* the commit stores its records in place: marked unsynced first, in
       case an mseg_sync inside the transaction cleared that (sync.c) */
    if (sync_mark_unsynced(s)) {
        int e = errno;
        tx_roll_back(s);
        tx_pop();
        errno = e;
        return -1;
    }
    tx_pop();
    int rc = op_commit(s);
    set_holds_lock(s, false);
    lock_release(s);
    return rc;
}

int mseg_tx_abort(mseg *s)
{
    if (!s || tx.s != s)
        return fail(EINVAL, "segment %s: mseg_tx_abort outside a transaction", s ? s->name : "(null)");
    if (!tx.aborted) {
        sync_mark_unsynced(s);   /* the rollback stores in place (a failure: s->failed) */
        tx_roll_back(s);
    }
    tx_pop();
    return 0;
}
