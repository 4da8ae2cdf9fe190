/*
 * mutex.c - mseg_mutex and mseg_cond: POSIX process-shared, robust mutexes
 * and condition variables that live in the segment.
 *
 * The bytes after `epoch` are a pthread_mutex_t / pthread_cond_t. They
 * cannot be trusted across attaches: after every process has closed the
 * segment (or the machine restarted) a mutex may still say "locked by a
 * thread that no longer exists". So each object carries the attach epoch it
 * was initialized in (runtime.epoch, incremented by the first process to
 * attach); an object from another epoch is stale and is re-initialized on
 * first use. No process of the current epoch can be using a stale object,
 * so the only race is between processes re-initializing it at once, and a
 * lock of the runtime page settles it (make_current).
 *
 * A condition variable is not glibc's: its pthread_cond_t counts the
 * waiters of each group, and a signal or broadcast that moves to the next
 * group waits, with no timeout, for the last one to leave the old group. A
 * waiter killed asleep in a wait never leaves, so every later signal and
 * broadcast blocked forever (glibc 2.36; the test
 * a_waiter_killed_in_cond_wait_never_blocks_a_later_signal_or_broadcast).
 * Here it is a futex word, seq, that every signal and broadcast moves and a
 * waiter sleeps on (the value it read before it released the mutex), and a
 * count of waiters that only spares a signal the system call when nobody
 * waits: a dead waiter leaves it one too high, which costs each signal a
 * system call, never a wakeup.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "testing.h"

_Static_assert(sizeof(mseg_mutex) == 64 && sizeof(mseg_cond) == 64, "64-byte objects");
_Static_assert(sizeof(pthread_mutex_t) <= sizeof(((mseg_mutex *)0)->opaque), "pthread_mutex_t fits");

/* The condition variable's words, in its opaque bytes (zeroed: no waiter). */
struct cond_words {
    uint32_t seq;       /* moved by every signal and broadcast: the futex word */
    uint32_t waiters;   /* inside a wait, or killed there */
};
_Static_assert(sizeof(struct cond_words) <= sizeof(((mseg_cond *)0)->opaque), "cond_words fits");

/* The object at p (64 bytes, 8-aligned) lies in the segment and may be written. */
static int check_object(mseg *s, const void *p, const char *what)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle");
    if (s->mode == MODE_RDONLY)
        return fail(EROFS, "segment %s is open read-only: a %s in it cannot be used", s->name, what);
    const uint8_t *b = p;
    if (!p || (uintptr_t)p % 8 || b < s->base + MSEG_HEAP_OFF)
        return fail(EINVAL, "segment %s: %p is not a %s inside its heap", s->name, p, what);
    /* past the mapped end: maybe in space another process grew since this
       handle's last call, which every call on a handle maps */
    if (b + 64 > s->base + s->size && b + 64 <= s->base + s->reserved && seg_follow_growth(s))
        return -1;
    if (b + 64 > s->base + s->size)
        return fail(EINVAL, "segment %s: %p is not a %s inside its heap", s->name, p, what);
    return 0;
}

static void init_mutex(void *opaque)
{
    robust_mutex_init(opaque);
}

static void init_cond(void *opaque)
{
    memset(opaque, 0, sizeof(struct cond_words));
}

/*
 * Makes sure the object is of the current epoch, initializing it if not.
 * Re-initializing runs under the runtime page's objects_lock, and the
 * epoch is checked again there: a process that stalls in the middle
 * (descheduled, stopped) only delays the others, and one that dies there
 * hands the lock on (EOWNERDEAD; the object's epoch is still old, so the
 * next one initializes it again). So nobody ever initializes bytes that
 * another process has already re-initialized and locked. (A claim bit in
 * the epoch word, with a takeover after 100 ms, did allow that: a claimer
 * stalled for longer wiped a mutex that its successor held, and both owned
 * it.) objects_lock is a leaf: held for a pthread_*_init, never while
 * waiting for anything else, so it adds no lock order. 0, or -1 with errno.
 */
static int make_current(mseg *s, uint64_t *epoch, void *opaque, void (*init)(void *))
{
    uint64_t cur = __atomic_load_n(&seg_runtime(s)->epoch, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(epoch, __ATOMIC_ACQUIRE) == cur)
        return 0;
    pthread_mutex_t *lock = (pthread_mutex_t *)seg_runtime(s)->objects_lock;
    int r = mutex_lock_patient(lock);
    if (r == EOWNERDEAD)
        r = pthread_mutex_consistent(lock);
    if (r)
        return fail(r, "segment %s: cannot take the lock that guards mutex initialization: %s",
                    s->name, strerror(r));
    if (__atomic_load_n(epoch, __ATOMIC_ACQUIRE) != cur) {
        crash_point("mutex.reinit");
        init(opaque);
        __atomic_store_n(epoch, cur, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(lock);
    return 0;
}

static pthread_mutex_t *current_mutex(mseg *s, mseg_mutex *m)
{
    return make_current(s, &m->epoch, m->opaque, init_mutex) ? NULL : (pthread_mutex_t *)m->opaque;
}

static struct cond_words *current_cond(mseg *s, mseg_cond *c)
{
    return make_current(s, &c->epoch, c->opaque, init_cond) ? NULL : (struct cond_words *)c->opaque;
}

/*
 * Which program mutexes of this mapping the threads of this process hold.
 * glibc links the robust mutexes a thread holds into a list that runs
 * through their own bytes; unmapping one that is held leaves the list
 * pointing at whatever is mapped there next, and the thread's next lock or
 * unlock of any robust mutex writes into it. So every lock that succeeds
 * notes (offset, thread), every unlock forgets it, and mseg_close asks
 * held_mutex_in_use first. The notes only say where to look: a mutex is
 * held when its lock word still names the thread (the kernel clears the
 * name when the thread dies, another thread of the process may have
 * unlocked it through another handle, a forked child holds none of its
 * parent's), so a stale note costs nothing but a look. Room is reserved
 * before the lock is taken, so a lock that succeeded is never undone for
 * want of memory (undoing an EOWNERDEAD lock would lose its repair).
 */
struct held_mutex {
    uint64_t off;
    pid_t    pid, tid;   /* who took it */
};

void held_init(mseg *s)
{
    pthread_mutex_init(&s->held_guard, NULL);
}

void held_release(mseg *s)
{
    free(s->held);
    pthread_mutex_destroy(&s->held_guard);
}

/* Makes room for one more note; 0, or -1 with ENOMEM. Each success is
   followed by held_note or held_unreserve. */
static int held_reserve(mseg *s)
{
    pthread_mutex_lock(&s->held_guard);
    uint32_t want = s->nheld + s->held_pending + 1;
    if (want > s->held_cap) {
        struct held_mutex *h = realloc(s->held, 2ull * want * sizeof *h);
        if (!h) {
            pthread_mutex_unlock(&s->held_guard);
            return fail(ENOMEM, "segment %s: no memory to note a mutex this process holds", s->name);
        }
        s->held = h;
        s->held_cap = 2 * want;
    }
    s->held_pending++;
    pthread_mutex_unlock(&s->held_guard);
    return 0;
}

static void held_unreserve(mseg *s)
{
    pthread_mutex_lock(&s->held_guard);
    s->held_pending--;
    pthread_mutex_unlock(&s->held_guard);
}

static uint64_t off_of(const mseg *s, const void *object)
{
    return (uint64_t)((const uint8_t *)object - s->base);
}

/* A note of the same mutex is stale once this thread holds it (its
   holder died, EOWNERDEAD, or unlocked it through another handle): it is
   replaced, not kept beside the new one. Kept, each owner death added a
   note that only mseg_close dropped, and every unlock scanned them all. */
static void held_note(mseg *s, const mseg_mutex *m)
{
    struct held_mutex note = { off_of(s, m), getpid(), gettid() };
    pthread_mutex_lock(&s->held_guard);
    s->held_pending--;
    uint32_t i = 0;
    while (i < s->nheld && s->held[i].off != note.off)
        i++;
    s->held[i] = note;
    if (i == s->nheld)
        s->nheld++;
    pthread_mutex_unlock(&s->held_guard);
}

unsigned mseg_test_held_notes(mseg *s)
{
    pthread_mutex_lock(&s->held_guard);
    unsigned n = s->nheld;
    pthread_mutex_unlock(&s->held_guard);
    return n;
}

static void held_drop(mseg *s, uint32_t i)
{
    s->held[i] = s->held[--s->nheld];
}

static void held_forget(mseg *s, const mseg_mutex *m)
{
    uint64_t off = off_of(s, m);
    pid_t tid = gettid();
    pthread_mutex_lock(&s->held_guard);
    for (uint32_t i = 0; i < s->nheld; i++)
        if (s->held[i].off == off && s->held[i].tid == tid) {
            held_drop(s, i);
            break;
        }
    pthread_mutex_unlock(&s->held_guard);
}

/* The noted mutex i is still held by the thread that took it. */
static bool held_still(const mseg *s, const struct held_mutex *h)
{
    if (h->pid != getpid() || h->off + 64 > s->size)
        return false;
    const int *word = (const int *)(s->base + h->off + offsetof(mseg_mutex, opaque));
    return (__atomic_load_n(word, __ATOMIC_ACQUIRE) & FUTEX_TID_MASK) == h->tid;
}

uint64_t held_mutex_in_use(mseg *s, uint32_t *count)
{
    uint64_t first = 0;
    *count = 0;
    pthread_mutex_lock(&s->held_guard);
    for (uint32_t i = 0; i < s->nheld;) {
        if (!held_still(s, &s->held[i])) {
            held_drop(s, i);
            continue;
        }
        if (!first)
            first = s->held[i].off;
        ++*count;
        i++;
    }
    pthread_mutex_unlock(&s->held_guard);
    return first;
}

/* A lock (r from pthread) noted when it succeeded, the reservation given
   back when not. */
static int held_after_lock(mseg *s, const mseg_mutex *m, int r)
{
    if (r == 0 || r == EOWNERDEAD)
        held_note(s, m);
    else
        held_unreserve(s);
    return r;
}

/* pthread's return code r for mutex m as -1 with errno r and a message
   naming the segment and the mutex (0 stays 0): errno alone left the
   message of whatever failed before. */
static int result(mseg *s, const mseg_mutex *m, int r)
{
    unsigned long long at = off_of(s, m);
    switch (r) {
    case 0:
        return 0;
    case EBUSY:   /* a trylock's normal answer: no printf (fail_in_at) */
        return fail_in_at(r, s->name, "mutex at ", at, " is held");
    case ETIMEDOUT:
        return fail(r, "segment %s: mutex at %#llx: still held when the timeout passed", s->name, at);
    case EOWNERDEAD:
        return fail(r, "segment %s: mutex at %#llx: its owner died holding it; this thread holds it now: "
                    "repair what it protects, then call mseg_mutex_consistent", s->name, at);
    case ENOTRECOVERABLE:
        return fail(r, "segment %s: mutex at %#llx is unusable: it was unlocked after its owner died, "
                    "without mseg_mutex_consistent", s->name, at);
    case EPERM:
        return fail(r, "segment %s: mutex at %#llx is not locked by this thread", s->name, at);
    default:
        return fail(r, "segment %s: mutex at %#llx: %s", s->name, at, strerror(r));
    }
}

int mseg_mutex_init(mseg *s, mseg_mutex *m)
{
    if (check_object(s, m, "mutex"))
        return -1;
    init_mutex(m->opaque);
    __atomic_store_n(&m->epoch, __atomic_load_n(&seg_runtime(s)->epoch, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
    return 0;
}

/* The pthread object behind m or c, checked and of the current epoch;
   NULL with errno if not. */
static pthread_mutex_t *usable_mutex(mseg *s, mseg_mutex *m)
{
    return check_object(s, m, "mutex") ? NULL : current_mutex(s, m);
}

static struct cond_words *usable_cond(mseg *s, mseg_cond *c)
{
    return check_object(s, c, "condition variable") ? NULL : current_cond(s, c);
}

int mseg_mutex_trylock(mseg *s, mseg_mutex *m)
{
    pthread_mutex_t *pm = usable_mutex(s, m);
    if (!pm || held_reserve(s))
        return -1;
    return result(s, m, held_after_lock(s, m, robust_trylock(pm)));
}

/* A trylock, then mutex_lock_until (lock.c: never asleep for more than 50
   ms at a time, so a wakeup lost to a killed waiter costs one period). */
static int lock_until(pthread_mutex_t *pm, const struct timespec *abstime)
{
    int r = robust_trylock(pm);
    if (r != EBUSY)
        return r;
    if (abstime && (abstime->tv_nsec < 0 || abstime->tv_nsec >= 1000000000))
        return EINVAL;
    return mutex_lock_until(pm, abstime);
}

int mseg_mutex_lock(mseg *s, mseg_mutex *m)
{
    pthread_mutex_t *pm = usable_mutex(s, m);
    if (!pm || held_reserve(s))
        return -1;
    return result(s, m, held_after_lock(s, m, lock_until(pm, NULL)));
}

int mseg_mutex_timedlock(mseg *s, mseg_mutex *m, const struct timespec *abstime)
{
    if (check_object(s, m, "mutex"))
        return -1;
    if (!abstime)
        return fail(EINVAL, "segment %s: mutex at %#llx: NULL timeout", s->name,
                    (unsigned long long)off_of(s, m));
    pthread_mutex_t *pm = current_mutex(s, m);
    if (!pm || held_reserve(s))
        return -1;
    return result(s, m, held_after_lock(s, m, lock_until(pm, abstime)));
}

int mseg_mutex_unlock(mseg *s, mseg_mutex *m)
{
    pthread_mutex_t *pm = usable_mutex(s, m);
    if (!pm)
        return -1;
    int r = pthread_mutex_unlock(pm);
    if (r == 0)
        held_forget(s, m);
    return result(s, m, r);
}

int mseg_mutex_consistent(mseg *s, mseg_mutex *m)
{
    pthread_mutex_t *pm = usable_mutex(s, m);
    if (!pm)
        return -1;
    int r = pthread_mutex_consistent(pm);
    if (r == EINVAL)
        return fail(r, "segment %s: mutex at %#llx: nothing to make consistent (no owner of it died, or "
                    "this thread does not hold it)", s->name, (unsigned long long)off_of(s, m));
    return result(s, m, r);
}

int mseg_cond_init(mseg *s, mseg_cond *c)
{
    if (check_object(s, c, "condition variable"))
        return -1;
    init_cond(c->opaque);
    __atomic_store_n(&c->epoch, __atomic_load_n(&seg_runtime(s)->epoch, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
    return 0;
}

/* A wait's timeout passed, and the thread holds m again. */
static int cond_timed_out(mseg *s, const mseg_cond *c, const mseg_mutex *m)
{
    return fail(ETIMEDOUT, "segment %s: condition variable at %#llx: no signal before the timeout passed "
                "(the mutex at %#llx is held again)", s->name, (unsigned long long)off_of(s, c),
                (unsigned long long)off_of(s, m));
}

/* Releases pm, sleeps until a signal or broadcast moves seq after that
   (or abstime, on CLOCK_MONOTONIC, passes: ETIMEDOUT; or a spurious
   wakeup), and takes pm again, as pthread_cond_timedwait does: EOWNERDEAD
   when its owner died meanwhile. A futex without FUTEX_PRIVATE_FLAG: other
   processes wake it; FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC
   time. */
static int cond_sleep(mseg *s, const mseg_cond *c, const mseg_mutex *m, struct cond_words *pc, pthread_mutex_t *pm,
                      const struct timespec *abstime)
{
    /* the count before seq is read, a signal's seq before it reads the
       count (both sequentially consistent): a signal that finds no waiter
       moved seq before this wait read it, so it was not this wait's */
    __atomic_add_fetch(&pc->waiters, 1, __ATOMIC_SEQ_CST);
    uint32_t seen = __atomic_load_n(&pc->seq, __ATOMIC_SEQ_CST);
    int r = pthread_mutex_unlock(pm);
    if (r) {
        __atomic_sub_fetch(&pc->waiters, 1, __ATOMIC_RELAXED);
        return result(s, m, r);
    }
    /* EAGAIN: seq already moved; EINTR: a spurious wakeup */
    long w = syscall(SYS_futex, &pc->seq, FUTEX_WAIT_BITSET, seen, abstime, NULL, FUTEX_BITSET_MATCH_ANY);
    bool timed_out = w == -1 && errno == ETIMEDOUT;
    __atomic_sub_fetch(&pc->waiters, 1, __ATOMIC_RELAXED);
    r = lock_until(pm, NULL);
    return r || !timed_out ? result(s, m, r) : cond_timed_out(s, c, m);
}

static int cond_wake(struct cond_words *pc, int n)
{
    __atomic_add_fetch(&pc->seq, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&pc->waiters, __ATOMIC_SEQ_CST))
        syscall(SYS_futex, &pc->seq, FUTEX_WAKE, n, NULL, NULL, 0);
    return 0;
}

int mseg_cond_wait(mseg *s, mseg_cond *c, mseg_mutex *m)
{
    struct cond_words *pc = usable_cond(s, c);
    pthread_mutex_t *pm = pc ? usable_mutex(s, m) : NULL;
    return pm ? cond_sleep(s, c, m, pc, pm, NULL) : -1;
}

int mseg_cond_timedwait(mseg *s, mseg_cond *c, mseg_mutex *m, const struct timespec *abstime)
{
    if (check_object(s, c, "condition variable") || check_object(s, m, "mutex"))
        return -1;
    if (!abstime)
        return fail(EINVAL, "segment %s: condition variable at %#llx: NULL timeout", s->name,
                    (unsigned long long)off_of(s, c));
    if (abstime->tv_nsec < 0 || abstime->tv_nsec >= 1000000000)
        return fail(EINVAL, "segment %s: condition variable at %#llx: a timeout whose tv_nsec is not in "
                    "[0, 1e9): %ld", s->name, (unsigned long long)off_of(s, c),
                    (long)abstime->tv_nsec);
    struct cond_words *pc = current_cond(s, c);
    pthread_mutex_t *pm = pc ? current_mutex(s, m) : NULL;
    if (pm && abstime->tv_sec < 0)
        return cond_timed_out(s, c, m);   /* long past, and the futex would call it EINVAL */
    return pm ? cond_sleep(s, c, m, pc, pm, abstime) : -1;
}

int mseg_cond_signal(mseg *s, mseg_cond *c)
{
    struct cond_words *pc = usable_cond(s, c);
    return pc ? cond_wake(pc, 1) : -1;
}

int mseg_cond_broadcast(mseg *s, mseg_cond *c)
{
    struct cond_words *pc = usable_cond(s, c);
    return pc ? cond_wake(pc, INT_MAX) : -1;
}
