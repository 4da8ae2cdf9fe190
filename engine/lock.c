/*
 * lock.c - the segment mutex: robust and process-shared, in the runtime page.
 *
 * One mutex serializes every engine operation of every process and thread.
 * When its owner dies (killed in the middle of an operation), the next
 * locker gets EOWNERDEAD, replays or discards the dead owner's log
 * (log_recover), marks the mutex consistent and goes on. The mutex's bytes
 * belong to the C library and may be stale after a reboot or a crash with
 * no survivor, so the first process to attach re-initializes them
 * (segment.c decides who is first with open file description locks).
 */
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "internal.h"

_Static_assert(sizeof(pthread_mutex_t) <= sizeof(((struct mseg_runtime *)0)->lock),
               "pthread_mutex_t fits the runtime page's lock field");

static pthread_mutex_t *seg_mutex(mseg *s)
{
    return (pthread_mutex_t *)seg_runtime(s)->lock;
}

static int lock_take(mseg *s);

int lock_init(mseg *s)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    memset(seg_mutex(s), 0, sizeof(pthread_mutex_t));
    int r = pthread_mutex_init(seg_mutex(s), &a);
    pthread_mutexattr_destroy(&a);
    if (r)
        return fail(r, "segment %s: cannot initialize its lock: %s", s->name, strerror(r));
    return 0;
}

/* Takes the mutex, then maps whatever another process grew meanwhile. */
int lock_acquire(mseg *s)
{
    int r = lock_take(s);
    if (r == 0 && seg_follow_growth(s)) {
        lock_release(s);
        return -1;
    }
    return r;
}

static int lock_take(mseg *s)
{
    int r = pthread_mutex_lock(seg_mutex(s));
    if (r == 0)
        return 0;
    if (r == EOWNERDEAD) {
        /* The owner died mid-operation: its log says what to redo. */
        int rec = log_recover(s);
        if (rec >= 0 && heap_drain_garbage(s))
            rec = -1;
        if (rec < 0) {
            int e = errno;
            /* left inconsistent on purpose: every later locker fails too */
            pthread_mutex_unlock(seg_mutex(s));
            errno = e;
            return -1;
        }
        if (rec > 0)
            s->recovered = true;
        pthread_mutex_consistent(seg_mutex(s));
        return 0;
    }
    if (r == ENOTRECOVERABLE)
        return fail(EUCLEAN, "segment %s: its lock was left unrecoverable by a failed "
                    "recovery; run mseg check, then reopen with no process attached", s->name);
    return fail(r, "segment %s: locking failed: %s", s->name, strerror(r));
}

void lock_release(mseg *s)
{
    pthread_mutex_unlock(seg_mutex(s));
}

int seg_write_begin(mseg *s)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle");
    if (s->mode == MODE_RDONLY)
        return fail(EROFS, "segment %s is open read-only", s->name);
    if (s->failed)
        return fail(EIO, "segment %s: an earlier flush failed; this handle refuses writes", s->name);
    if (tx_cancelled(s))
        return fail(ECANCELED, "segment %s: this thread's transaction was aborted", s->name);
    if (tx_owns(s)) {
        /* inside this thread's transaction: the lock and the log are open */
        s->op.save = s->op.count;
        s->op.save_allocated = s->op.allocated;
        s->op.save_deferred = s->op.ndeferred;
        return 0;
    }
    if (lock_acquire(s))
        return -1;
    if (sync_mark_unsynced(s)) {
        lock_release(s);
        return -1;
    }
    op_begin(s);
    return 0;
}

int seg_write_end(mseg *s, bool commit)
{
    int e = errno;
    if (tx_owns(s)) {
        if (!commit && (s->op.count != s->op.save || s->op.allocated != s->op.save_allocated))
            tx_fail(s);   /* it changed something before failing */
        else if (!commit)
            s->op.ndeferred = s->op.save_deferred;   /* frees it only planned */
        errno = e;
        return 0;
    }
    int rc = commit ? op_commit(s) : op_rollback(s);
    lock_release(s);
    if (!commit)
        errno = e;
    return rc;
}

/*
 * Readers. Read-write and copy-on-write handles read under the lock.
 * Read-only handles cannot write the lock word, so they read optimistically
 * (a sequence lock): runtime.op_seq is odd while an operation stores into
 * the segment (log.c, step 3); a reader waits for it to be even, reads, and
 * retries if it changed meanwhile. Between those stores the segment holds a
 * committed state, because an operation changes nothing reachable before it
 * commits. Every read path is bounds-checked, so a torn read is retried,
 * never followed.
 */
#define READ_WAIT_NS   (200 * 1000 * 1000)   /* a writer died mid-apply: give up */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int seg_read_begin(mseg *s, uint64_t *seq)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle");
    if (tx_owns(s))
        return 0;   /* reads see the transaction's own changes (op_get) */
    if (s->mode != MODE_RDONLY)
        return lock_acquire(s);
    if (seg_follow_growth(s))
        return -1;
    const uint64_t *word = &seg_runtime(s)->op_seq;
    uint64_t start = 0;
    for (;;) {
        *seq = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if (!(*seq & 1))
            return 0;
        if (!start)
            start = now_ns();
        else if (now_ns() - start > READ_WAIT_NS)
            return fail(EAGAIN, "segment %s: a writer has been in the middle of an operation "
                        "for too long (it may have died); retry, or open read-write to recover",
                        s->name);
        sched_yield();
    }
}

bool seg_read_end(mseg *s, uint64_t seq)
{
    if (tx_owns(s))
        return true;
    if (s->mode != MODE_RDONLY) {
        lock_release(s);
        return true;
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(&seg_runtime(s)->op_seq, __ATOMIC_RELAXED) == seq;
}
