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
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

_Static_assert(sizeof(pthread_mutex_t) <= sizeof(((struct mseg_runtime *)0)->lock),
               "pthread_mutex_t fits the runtime page's lock field");

static pthread_mutex_t *seg_mutex(mseg *s)
{
    return (pthread_mutex_t *)seg_runtime(s)->lock;
}

static int lock_take(mseg *s);

int robust_mutex_init(void *m)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    memset(m, 0, sizeof(pthread_mutex_t));
    int r = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return r;
}

/*
 * pthread_mutex_trylock, but one that leaves an unrecoverable mutex as it
 * found it. glibc's (2.36) takes the free lock word of a mutex made
 * unrecoverable (unlocked after EOWNERDEAD without being made consistent:
 * mseg_mutex_unlock without mseg_mutex_consistent) and returns
 * ENOTRECOVERABLE without giving the word back (its pthread_mutex_lock
 * does give it back), and no robust list records it: from then on every
 * trylock was EBUSY and every lock waited forever, in every process, even
 * after this one's death (the tests
 * a_trylock_of_an_unrecoverable_mutex_leaves_it_unrecoverable_not_locked and,
 * for the segment lock that a failed recovery leaves so on purpose,
 * a_segment_lock_left_unrecoverable_fails_every_later_call_with_euclean).
 * Nobody can own an unrecoverable mutex, so a lock word that names this
 * thread then is that leftover: clear it, and wake whoever began to wait
 * on it meanwhile (they find it unrecoverable).
 */
_Static_assert(offsetof(pthread_mutex_t, __data.__lock) == 0, "glibc's lock word comes first");

int robust_trylock(pthread_mutex_t *pm)
{
    int r = pthread_mutex_trylock(pm);
    if (r == ENOTRECOVERABLE) {
        int *word = (int *)pm;
        int v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if ((v & FUTEX_TID_MASK) == gettid() &&
            (__atomic_exchange_n(word, 0, __ATOMIC_RELEASE) & FUTEX_WAITERS))
            syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    }
    return r;
}

/* The segment mutex and the runtime page's other lock (mutex.c). */
int lock_init(mseg *s)
{
    _Static_assert(sizeof(pthread_mutex_t) <= sizeof(((struct mseg_runtime *)0)->objects_lock),
                   "pthread_mutex_t fits the runtime page's objects_lock field");
    int r = robust_mutex_init(seg_mutex(s));
    if (!r)
        r = robust_mutex_init(seg_runtime(s)->objects_lock);
    if (r)
        return fail(r, "segment %s: cannot initialize its locks: %s", s->name, strerror(r));
    return 0;
}

/* Takes the mutex, then maps whatever another process grew meanwhile. */
int lock_acquire(mseg *s)
{
    if (s->fork_lost_lock)
        return fail(EDEADLK, "segment %s: this copy-on-write handle was forked inside a "
                    "transaction, whose private lock stayed with the parent's thread: close it "
                    "and open the segment again in this process", s->name);
    int r = lock_take(s);
    if (r == 0 && seg_follow_growth(s)) {
        lock_release(s);
        return -1;
    }
    return r;
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/*
 * How a waiter spins before it sleeps on the futex. Engine operations hold
 * the lock for well under a microsecond, while a sleep and a wakeup cost
 * several, so a waiter first spins, for at most SPIN_NS.
 *
 * Between two looks at the lock word it pauses 1, 2, 4, ... up to
 * SPIN_MAX_PAUSES times. Each look pulls the owner's cache line to the
 * waiter's core, and the owner's next lock or unlock has to pull it back:
 * a waiter that looks all the time makes every operation of the owner pay
 * two transfers between cores. On the project's machine one transfer takes
 * about 270 ns (a ping-pong of one line between 2 threads: 540 ns a round
 * trip) and a whole allocation about 65 ns. Two processes allocating and
 * freeing at once on one segment ran at 2.2M-3.0M operations a second
 * with a look after every pause, and at 6.0M-6.7M with this backoff (6
 * runs of mseg-bench --workload scale; one process alone: 15M-16.5M); 3
 * and 4 processes, more than the machine's 2 cores, finished 1.7x sooner. This is the test-and-test-and-set lock with
 * exponential backoff of the spin-lock literature (T. E. Anderson, "The
 * performance of spin lock alternatives for shared-memory multiprocessors",
 * IEEE TPDS, 1990).
 *
 * The limit is a time, not a count of pauses, because a pause lasts 3 to
 * 140 cycles depending on the processor (19.5 ns here).
 */
#define SPIN_NS         50000u
#define SPIN_MAX_PAUSES 256u

/* Spins until trylock gives anything but EBUSY (0; EOWNERDEAD or
   ENOTRECOVERABLE: see lock_take), or SPIN_NS have passed (EBUSY; the
   deadline is checked after each look, so the spin may overrun it by one
   backoff step, 256 pauses). Waiters follow the same schedule, with no
   random jitter, so several may look at the same moments; 3 and 4
   processes on 2 cores still ran faster than with the old spin. */
static int spin_for(pthread_mutex_t *m)
{
    uint64_t deadline = mono_now_ns() + SPIN_NS;
    for (unsigned pauses = 1;; pauses = pauses < SPIN_MAX_PAUSES ? 2 * pauses : pauses) {
        for (unsigned i = 0; i < pauses; i++)
            cpu_relax();
        /* read before trying: a failed trylock is a write that takes the
           cache line from the owner. glibc's lock word comes first in
           pthread_mutex_t (0 = free); where it does not, the read is never
           0, the spin only waits, and the timed lock below does the work */
        if (__atomic_load_n((const int *)m, __ATOMIC_RELAXED) == 0) {
            int r = robust_trylock(m);
            if (r != EBUSY)
                return r;
        }
        if (mono_now_ns() > deadline)
            return EBUSY;
    }
}

/*
 * pthread_mutex_clocklock until abstime (on CLOCK_MONOTONIC; NULL: no
 * end), but never asleep for more than 50 ms at a time. A robust mutex can
 * lose a wakeup for good: an unlock clears the "waiters" bit and wakes one
 * waiter; if that waiter is killed before it takes the lock (and another
 * process took and released it meanwhile, so the kernel, which does so
 * only while the word is 0, wakes nobody in its place), nobody re-arms the
 * bit for the others, and they sleep on while the mutex is free (the kill -9
 * torture found this for the segment lock; the test
 * a_waiter_killed_between_its_wakeup_and_the_lock_leaves_no_other_waiter_asleep
 * for the program's mutexes). Each retry re-arms it, so a lost wakeup
 * costs at most one period.
 */
#define LOCK_PERIOD_NS (50 * 1000 * 1000)

int mutex_lock_until(pthread_mutex_t *m, const struct timespec *abstime)
{
    for (;;) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (abstime && (t.tv_sec > abstime->tv_sec ||
                        (t.tv_sec == abstime->tv_sec && t.tv_nsec >= abstime->tv_nsec)))
            return ETIMEDOUT;
        t.tv_nsec += LOCK_PERIOD_NS;
        if (t.tv_nsec >= 1000000000) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000;
        }
        if (abstime && (abstime->tv_sec < t.tv_sec ||
                        (abstime->tv_sec == t.tv_sec && abstime->tv_nsec < t.tv_nsec)))
            t = *abstime;
        int r = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &t);
        if (r != ETIMEDOUT)
            return r;
    }
}

/* The segment lock: a trylock, a spin (spin_for), then mutex_lock_until
   with no end. */
int mutex_lock_patient(pthread_mutex_t *m)
{
    int r = robust_trylock(m);
    if (r == EBUSY)
        r = spin_for(m);
    return r == EBUSY ? mutex_lock_until(m, NULL) : r;
}

static int lock_take(mseg *s)
{
    int r = mutex_lock_patient(seg_mutex(s));
    if (r == 0)
        return 0;
    if (r == EOWNERDEAD) {
        /* a transaction of the dead owner no longer holds it (fork.c) */
        __atomic_store_n(&s->tx_holds_lock, false, __ATOMIC_RELAXED);
        /* The owner died mid-operation: its log says what to redo, and it
           may have grown the segment first, so map the growth before. */
        int rec = seg_follow_growth(s) ? -1 : log_recover(s, false);   /* others live: no reboot */
        /* a handle whose flush failed commits nothing: the garbage waits
           for a healthy handle's next operation */
        if (rec >= 0 && !s->failed && heap_drain_garbage_durably(s))
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

int lock_for_write(mseg *s)
{
    if (lock_acquire(s))
        return -1;
    /* pages another handle's failed flush left clean are written before
       this operation changes anything: its commit would write its slot
       over the one that still replays them, and a non-durable change
       would trust an unsynced mark that memory holds and the disk may
       not; either reaching the disk before those pages lost them (sync.c) */
    if (sync_heal_failed_flush(s)) {
        lock_release(s);
        return -1;
    }
    /* a durable handle's last commit may still owe its pages; a
       non-durable writer settles that first (log.c), then marks the
       segment unsynced (sync.c); a durable writer syncs what non-durable
       ones left unsynced, which a power loss would make recovery distrust
       along with the log (sync.c) */
    if ((!(s->flags & MSEG_DURABLE) && log_settle(s)) || sync_mark_unsynced(s) || sync_before_durable(s)) {
        lock_release(s);
        return -1;
    }
    return 0;
}

void *seg_found_read_only(mseg *s, void *found, const char *what, const char *name)
{
    if (!found && errno == ENOENT)
        return fail_null(EROFS, "segment %s is open read-only: cannot %s %s", s->name, what, name);
    return found;
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
        /* inside this thread's transaction: the lock and the log are open.
           An mseg_sync earlier in it cleared the unsynced mark: set again
           before this call changes anything (sync.c) */
        if (sync_mark_unsynced(s))
            return -1;
        s->op.save = s->op.count;
        s->op.save_allocated = s->op.allocated;
        s->op.save_deferred = s->op.ndeferred;
        return 0;
    }
    if (lock_for_write(s))
        return -1;
    op_begin(s);
    return 0;
}

int seg_write_end(mseg *s, bool commit)
{
    int e = errno;
    if (s->failed) {
        /* a flush failed in this call (seg_write_begin refuses a failed
           handle), when the log settled to make room: the records it
           could not take make whatever the call read or returns wrong.
           The call fails (-1 even when !commit, so callers keep this
           errno), and says why, not the ENOMEM or EUCLEAN that the
           missing records look like */
        bool in_tx = tx_owns(s);
        if (in_tx)
            tx_fail(s);
        else {
            op_rollback(s);
            lock_release(s);
        }
        if (e == EIO) {   /* the call failed on it, and said which flush (a growth's fsync) */
            errno = EIO;
            return -1;
        }
        return fail(EIO, "segment %s: a flush failed (msync); %s, and this handle refuses further "
                    "writes", s->name, in_tx ? "the transaction was aborted" : "nothing was changed");
    }
    if (tx_owns(s)) {
        /* a call that ran out of log records, or followed a damaged offset,
           dropped some of its stores: what it returns would be wrong (an
           allocation handing out the same block again, a push that does not
           grow the vector). It fails, and so does the transaction, as op_commit
           would have failed it outside one */
        if (commit && (s->op.overflow || op_bad_access())) {
            bool full = s->op.overflow;
            tx_fail(s);
            return full ? fail(ENOMEM, "segment %s: the transaction needs more than %zu log records; "
                               "it was aborted", s->name, (size_t)MSEG_LOG_CAPACITY)
                        : fail(EUCLEAN, "segment %s: damaged metadata: an operation followed an offset "
                               "outside the heap; the transaction was aborted", s->name);
        }
        if (!commit && (s->op.count != s->op.save || s->op.allocated != s->op.save_allocated)) {
            /* it changed something before failing: say that the whole
               transaction went with it, or the caller, seeing ENOMEM,
               would make room and retry into an ECANCELED */
            tx_fail(s);
            errno = e;
            fail_note("; it had changed the segment, so the transaction was aborted "
                      "(later calls in it fail with ECANCELED)");
        } else if (!commit)
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
 * Readers take no lock: they read optimistically (a sequence lock).
 * runtime.op_seq is odd while an operation, a recovery or a rebuild stores
 * into the segment in place (log.c); a reader starts at an even value, reads,
 * and retries if it changed meanwhile. Between those stores the segment holds
 * a committed state, because an operation changes nothing reachable before
 * it commits. Every read path is bounds-checked and bounded, so a torn read
 * is retried, never followed. Read-only handles must work this way (they
 * cannot write the lock word); read-write handles do it for speed (no shared
 * cache line bounced between readers), and fall back to the lock when a
 * writer is mid-apply (it may have died: the lock recovers) or after two
 * races in a row.
 */
#define READ_WAIT_NS      (200 * 1000 * 1000)        /* a writer died mid-apply: give up */
#define READ_WAIT_LIVE_NS (5000 * 1000 * 1000ull)    /* a live one that long: stopped, say */

uint64_t mono_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Marks a read done under the lock (op_seq itself is never all ones). */
#define READ_LOCKED UINT64_MAX
/* After this many raced attempts in a row, a read-write handle reads under
   the lock, so a stream of writers cannot starve it. */
#define RACES_BEFORE_LOCKING 2

static MSEG_TLS unsigned read_races;

/* A copy-on-write handle's own writes are private: they move the op_seq of
   its private runtime page, not the shared word that other processes move
   (seg_seq_word). Its reads check both; this is the private word at the
   start of this thread's current read. */
static MSEG_TLS uint64_t private_seq;

/* This handle's private op_seq once even: odd, another thread of this
   process is applying a private write, which takes microseconds (it cannot
   have died without this thread). */
static uint64_t private_seq_even(mseg *s)
{
    const uint64_t *word = &seg_runtime(s)->op_seq;
    uint64_t v;
    while ((v = __atomic_load_n(word, __ATOMIC_ACQUIRE)) & 1)
        sched_yield();
    return v;
}

/* The segment lock's owner is a live thread: the word names one, and the
   kernel has not marked it dead (at a robust mutex owner's death it clears
   the thread id and sets FUTEX_OWNER_DIED). A live writer may stay in the
   middle of an operation for long: descheduled, or blocked in a page fault
   of its apply (dirty-page throttling); giving up on it after 200 ms said
   it might have died. A copy-on-write handle's own lock is private: the
   writers' is in the shared page it reads op_seq from. */
static bool lock_owner_alive(mseg *s)
{
    const struct mseg_runtime *rt = s->seq_page ? s->seq_page : seg_runtime(s);
    int word = __atomic_load_n((const int *)rt->lock, __ATOMIC_ACQUIRE);
    return (word & FUTEX_TID_MASK) && !(word & FUTEX_OWNER_DIED);
}

/* Read-only and copy-on-write handles: wait for an even op_seq (a writer
   between two operations); give up if one seems to have died mid-apply,
   or a live one stays there for READ_WAIT_LIVE_NS.
   Never read while it is odd: the operation may be half applied, and only
   a read-write process can recover it (a copy-on-write handle that
   recovered it privately at open goes on while it stays that value). */
static int read_optimistic(mseg *s, uint64_t *seq)
{
    const uint64_t *word = seg_seq_word(s);
    uint64_t start = 0;
    for (;;) {
        *seq = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if (!(*seq & 1) || *seq == s->seq_stale)
            return 0;
        uint64_t now = mono_now_ns();
        if (!start)
            start = now;
        /* op_seq read again after the lock word: a writer that ended its
           operation between the two reads (op_seq even, then the unlock)
           looked dead, and the read failed beside a live writer */
        else if (now - start > READ_WAIT_NS && !lock_owner_alive(s) &&
                 __atomic_load_n(word, __ATOMIC_ACQUIRE) == *seq)
            return fail(EAGAIN, "segment %s: a writer has been in the middle of an operation "
                        "for too long (it may have died); retry, or open read-write to recover%s",
                        s->name, seg_writers_attached(s) ? "" : " (no read-write process is attached)");
        else if (now - start > READ_WAIT_LIVE_NS)
            return fail(EAGAIN, "segment %s: a live writer has been in the middle of an operation for "
                        "%llu ms (stopped?); retry", s->name, (unsigned long long)(READ_WAIT_LIVE_NS / 1000000));
        sched_yield();
    }
}

int seg_read_begin(mseg *s, uint64_t *seq)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle");
    if (tx_owns(s))
        return 0;   /* reads see the transaction's own changes (op_get) */
    if (s->mode != MODE_RW) {
        if (s->mode == MODE_COW)
            private_seq = private_seq_even(s);
        if (read_optimistic(s, seq))
            return -1;
    } else {
        /* read-write: optimistic too, unless a writer is applying right
           now (it may be dead: the lock runs recovery) or reads keep racing */
        *seq = __atomic_load_n(&seg_runtime(s)->op_seq, __ATOMIC_ACQUIRE);
        if ((*seq & 1) || read_races >= RACES_BEFORE_LOCKING) {
            *seq = READ_LOCKED;
            return lock_acquire(s);   /* follows growth under the lock */
        }
    }
    /* growth after the sequence: a growth that commits later changes it
       (the read retries); one that committed before published its size
       before its commit, so this sees it */
    return seg_follow_growth(s);
}

#define READ_RACE_NS (5000 * 1000 * 1000ull)   /* as long as mseg_check waits for a quiet moment */

bool seg_read_retry(mseg *s, uint64_t *since)
{
    uint64_t now = mono_now_ns();
    if (!*since)
        *since = now;
    if (now - *since <= READ_RACE_NS)
        return true;
    fail(EAGAIN, "segment %s: writers changed it during every attempt of a read for %llu ms; "
         "retry when they are less busy", s->name, (unsigned long long)(READ_RACE_NS / 1000000));
    return false;
}

bool seg_read_end(mseg *s, uint64_t seq)
{
    if (tx_owns(s))
        return true;
    if (seq == READ_LOCKED) {
        lock_release(s);
        read_races = 0;
        return true;
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(seg_seq_word(s), __ATOMIC_RELAXED) == seq &&
        (s->mode != MODE_COW || __atomic_load_n(&seg_runtime(s)->op_seq, __ATOMIC_RELAXED) == private_seq)) {
        read_races = 0;
        return true;
    }
    read_races++;
    return false;
}
