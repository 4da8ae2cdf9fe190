/* test_mutex.c - mseg_mutex and mseg_cond between real processes.

   Issue 7, item 3: process-shared, robust mutexes and condition variables
   that live in the segment. A dead owner is reported to the next locker
   (EOWNERDEAD); stale bytes left by an earlier attach never block anyone;
   zeroed memory is an unlocked mutex. Both backends where the memory
   behaves differently (a file's page cache, /dev/shm). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>

#include "helpers.h"
#include "layout.h"
#include "testing.h"

static const unsigned backends[] = { 0, MSEG_SHM };
static const char *backend_name(unsigned b) { return b & MSEG_SHM ? "shm" : "file"; }

static struct timespec in_ms(long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    } else if (t.tv_nsec < 0) {       /* a deadline in the past */
        t.tv_sec--;
        t.tv_nsec += 1000000000L;
    }
    return t;
}

static double ts_sec(const struct timespec *t)
{
    return (double)t->tv_sec + (double)t->tv_nsec / 1e9;
}

static int wait_child(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return st;
}

static mseg *create(char *name, unsigned backend)
{
    th_name(name, backend);
    struct mseg_config cfg = { .size = 1024 * 1024 };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL | backend, &cfg);
    cr_assert_not_null(s, "%s: %s", backend_name(backend), mseg_errmsg());
    return s;
}

/* A new segment with a mutex named "m" in it. */
static mseg *create_with_mutex(char *name, unsigned backend, mseg_mutex **m)
{
    mseg *s = create(name, backend);
    *m = MSEG_NEW(s, "m", mseg_mutex, 1);
    cr_assert_not_null(*m, "%s", mseg_errmsg());
    return s;
}

/* ---- producer and consumer ---- */

#define QCAP 64
#define ITEMS 10000

struct queue {
    mseg_mutex m;
    mseg_cond not_empty, not_full;
    uint64_t head, tail;          /* items taken, items put */
    uint64_t item[QCAP];
};

struct role { const char *name; unsigned backend; int producer; };

static void queue_role(void *arg)
{
    struct role *r = arg;
    mseg *s = mseg_open(r->name, r->backend, NULL);
    CHILD_CHECK(s != NULL);
    struct queue *q = MSEG_FIND(s, "queue", struct queue, NULL);
    CHILD_CHECK(q != NULL);
    for (uint64_t i = 1; i <= ITEMS; i++) {
        CHILD_CHECK(mseg_mutex_lock(s, &q->m) == 0);
        if (r->producer) {
            while (q->tail - q->head == QCAP)
                CHILD_CHECK(mseg_cond_wait(s, &q->not_full, &q->m) == 0);
            q->item[q->tail % QCAP] = i * 2654435761u;
            q->tail++;
            CHILD_CHECK(mseg_cond_signal(s, &q->not_empty) == 0);
        } else {
            while (q->tail == q->head)
                CHILD_CHECK(mseg_cond_wait(s, &q->not_empty, &q->m) == 0);
            uint64_t got = q->item[q->head % QCAP];
            if (got != i * 2654435761u) {
                fprintf(stderr, "consumer: item %llu is %llu, expected %llu\n", (unsigned long long)i,
                        (unsigned long long)got, (unsigned long long)(i * 2654435761u));
                _exit(97);
            }
            q->head++;
            CHILD_CHECK(mseg_cond_signal(s, &q->not_full) == 0);
        }
        CHILD_CHECK(mseg_mutex_unlock(s, &q->m) == 0);
    }
    mseg_close(s);
}

static pid_t spawn(void (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* a failed test leaves no holder behind */
        fn(arg);
        _exit(0);
    }
    return pid;
}

Test(mutex, a_queue_between_two_processes_delivers_every_item_once_in_order, .timeout = 60,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256], why[128];
        mseg *s = create(name, backends[b]);
        struct queue *q = MSEG_NEW(s, "queue", struct queue, 1);   /* zeroed: ready to use */
        cr_assert_not_null(q);
        struct role cons = { name, backends[b], 0 }, prod = { name, backends[b], 1 };
        pid_t c = spawn(queue_role, &cons), p = spawn(queue_role, &prod);
        cr_assert(c > 0 && p > 0);
        int sc = wait_child(c), sp = wait_child(p);
        cr_assert(TH_EXITED_OK(sp), "%s: producer %s", backend_name(backends[b]), th_status_str(sp, why, sizeof why));
        cr_assert(TH_EXITED_OK(sc), "%s: consumer %s", backend_name(backends[b]), th_status_str(sc, why, sizeof why));
        cr_assert_eq(q->head, ITEMS);
        cr_assert_eq(q->tail, ITEMS);
        mseg_close(s);
    }
}

/* What a forked child is told: the segment, and a pipe end (or -1). */
struct child_arg { const char *name; unsigned backend; int fd; };

/* In a child: opens the segment and finds its mutex "m" (the child exits
   if either fails). */
static mseg_mutex *child_find_mutex(const char *name, unsigned backend, mseg **s)
{
    *s = mseg_open(name, backend, NULL);
    CHILD_CHECK(*s != NULL);
    mseg_mutex *m = MSEG_FIND(*s, "m", mseg_mutex, NULL);
    CHILD_CHECK(m != NULL);
    return m;
}

/* ---- a dead owner ---- */

struct holder { const char *name; unsigned backend; int ready_fd; int then; };
enum { HOLD_FOREVER, HOLD_BRIEFLY };

/* Locks the named mutex "m", says so on ready_fd, then waits to be killed
   (HOLD_FOREVER) or unlocks after 300 ms (HOLD_BRIEFLY). */
static void lock_and_hold(void *arg)
{
    struct holder *h = arg;
    mseg *s;
    mseg_mutex *m = child_find_mutex(h->name, h->backend, &s);
    CHILD_CHECK(mseg_mutex_lock(s, m) == 0);
    CHILD_CHECK(write(h->ready_fd, "x", 1) == 1);
    if (h->then == HOLD_FOREVER)
        for (;;)
            pause();
    usleep(300 * 1000);
    CHILD_CHECK(mseg_mutex_unlock(s, m) == 0);
    mseg_close(s);
}

/* Starts a child holding "m"; returns its pid once it holds it. */
static pid_t start_holder(const char *name, unsigned backend, int then)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    struct holder h = { name, backend, fds[1], then };
    pid_t pid = spawn(lock_and_hold, &h);
    cr_assert_gt(pid, 0);
    close(fds[1]);
    char c;
    cr_assert_eq(read(fds[0], &c, 1), 1, "the holder died before locking: %s", mseg_errmsg());
    close(fds[0]);
    return pid;
}

static void kill_holder(pid_t pid)
{
    kill(pid, SIGKILL);
    int st = wait_child(pid);
    cr_assert(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

Test(mutex, an_owner_killed_holding_the_mutex_hands_it_on_with_eownerdead, .timeout = 30,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg_mutex *m;
        mseg *s = create_with_mutex(name, backends[b], &m);
        kill_holder(start_holder(name, backends[b], HOLD_FOREVER));
        errno = 0;
        cr_assert_eq(mseg_mutex_lock(s, m), -1, "%s: the lock of a dead owner was given without "
                     "saying so", backend_name(backends[b]));
        cr_assert_eq(errno, EOWNERDEAD, "%s: errno %d", backend_name(backends[b]), errno);
        cr_assert_eq(mseg_mutex_consistent(s, m), 0, "%s", mseg_errmsg());
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        /* it works as before, here and in another process */
        cr_assert_eq(mseg_mutex_lock(s, m), 0);
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        pid_t p = start_holder(name, backends[b], HOLD_BRIEFLY);
        errno = 0;
        cr_assert_eq(mseg_mutex_trylock(s, m), -1);
        cr_assert_eq(errno, EBUSY);
        cr_assert_eq(mseg_mutex_lock(s, m), 0, "%s: errno %d", backend_name(backends[b]), errno);
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        char why[128];
        int st = wait_child(p);
        cr_assert(TH_EXITED_OK(st), "%s", th_status_str(st, why, sizeof why));
        mseg_close(s);
    }
}

Test(mutex, an_unlock_without_consistent_makes_the_mutex_unrecoverable, .timeout = 30,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg_mutex *m;
        mseg *s = create_with_mutex(name, backends[b], &m);
        kill_holder(start_holder(name, backends[b], HOLD_FOREVER));
        errno = 0;
        cr_assert_eq(mseg_mutex_lock(s, m), -1);
        cr_assert_eq(errno, EOWNERDEAD);
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        errno = 0;
        cr_assert_eq(mseg_mutex_lock(s, m), -1);
        cr_assert_eq(errno, ENOTRECOVERABLE, "%s: errno %d", backend_name(backends[b]), errno);
        errno = 0;
        cr_assert_eq(mseg_mutex_trylock(s, m), -1);
        cr_assert_eq(errno, ENOTRECOVERABLE);
        /* mseg_mutex_init makes it usable again */
        cr_assert_eq(mseg_mutex_init(s, m), 0);
        cr_assert_eq(mseg_mutex_lock(s, m), 0);
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        mseg_close(s);
    }
}

/* In a child: trylock and a timed lock of the inherited mutex are
   ENOTRECOVERABLE. */
struct unrecoverable_arg { mseg *s; mseg_mutex *m; };

static void expect_unrecoverable(void *arg)
{
    struct unrecoverable_arg *a = arg;
    alarm(10);
    errno = 0;
    CHILD_CHECK(mseg_mutex_trylock(a->s, a->m) == -1 && errno == ENOTRECOVERABLE);
    struct timespec deadline = in_ms(500);
    errno = 0;
    CHILD_CHECK(mseg_mutex_timedlock(a->s, a->m, &deadline) == -1 && errno == ENOTRECOVERABLE);
}

Test(mutex, a_trylock_of_an_unrecoverable_mutex_leaves_it_unrecoverable_not_locked, .timeout = 30,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256], why[128];
        const char *be = backend_name(backends[b]);
        mseg *s = create(name, backends[b]);
        mseg_mutex *m = MSEG_NEW(s, "m", mseg_mutex, 1);
        cr_assert_not_null(m);
        kill_holder(start_holder(name, backends[b], HOLD_FOREVER));
        errno = 0;
        cr_assert(mseg_mutex_lock(s, m) == -1 && errno == EOWNERDEAD);
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);   /* without consistent: unrecoverable */
        for (int i = 0; i < 2; i++) {
            errno = 0;
            cr_assert_eq(mseg_mutex_trylock(s, m), -1);
            cr_assert_eq(errno, ENOTRECOVERABLE, "%s: trylock %d: errno %d (%s)", be, i + 1, errno,
                         strerror(errno));
        }
        struct timespec deadline = in_ms(500);
        errno = 0;
        cr_assert_eq(mseg_mutex_timedlock(s, m, &deadline), -1);
        cr_assert_eq(errno, ENOTRECOVERABLE, "%s: timedlock after trylocks: errno %d (%s)", be, errno,
                     strerror(errno));
        struct unrecoverable_arg a = { s, m };
        int st = th_fork_run(expect_unrecoverable, &a);
        cr_assert(TH_EXITED_OK(st), "%s: another process: %s", be, th_status_str(st, why, sizeof why));
        errno = 0;
        cr_assert(mseg_mutex_lock(s, m) == -1 && errno == ENOTRECOVERABLE, "%s: errno %d", be, errno);
        mseg_close(s);
    }
}

/* ---- trylock, timed lock, timed wait ---- */

Test(mutex, trylock_is_ebusy_and_timedlock_is_etimedout_while_another_process_holds_it,
     .timeout = 30, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg *s = create(name, backends[b]);
        mseg_mutex *m = MSEG_NEW(s, "m", mseg_mutex, 1);
        cr_assert_not_null(m);
        pid_t p = start_holder(name, backends[b], HOLD_FOREVER);
        errno = 0;
        cr_assert_eq(mseg_mutex_trylock(s, m), -1);
        cr_assert_eq(errno, EBUSY, "%s: errno %d", backend_name(backends[b]), errno);
        struct timespec deadline = in_ms(150), after;
        errno = 0;
        cr_assert_eq(mseg_mutex_timedlock(s, m, &deadline), -1);
        cr_assert_eq(errno, ETIMEDOUT, "%s: errno %d", backend_name(backends[b]), errno);
        clock_gettime(CLOCK_MONOTONIC, &after);
        cr_assert_geq(ts_sec(&after), ts_sec(&deadline), "timedlock returned before its deadline");
        cr_assert_lt(ts_sec(&after), ts_sec(&deadline) + 2.0, "timedlock returned long after its deadline");
        /* a deadline already past: at once */
        deadline = in_ms(-50);
        errno = 0;
        cr_assert_eq(mseg_mutex_timedlock(s, m, &deadline), -1);
        cr_assert_eq(errno, ETIMEDOUT);
        kill_holder(p);
        deadline = in_ms(1000);
        errno = 0;
        cr_assert_eq(mseg_mutex_timedlock(s, m, &deadline), -1);
        cr_assert_eq(errno, EOWNERDEAD, "timedlock of a dead owner's mutex: errno %d", errno);
        cr_assert_eq(mseg_mutex_consistent(s, m), 0);
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        deadline = in_ms(1000);
        cr_assert_eq(mseg_mutex_timedlock(s, m, &deadline), 0);
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        mseg_close(s);
    }
}

Test(mutex, timedwait_is_etimedout_after_its_monotonic_deadline_and_holds_the_mutex, .timeout = 30,
     .fini = th_cleanup)
{
    char name[256];
    mseg *s = create(name, 0);
    struct queue *q = MSEG_NEW(s, "queue", struct queue, 1);
    cr_assert_not_null(q);
    cr_assert_eq(mseg_mutex_lock(s, &q->m), 0);
    struct timespec deadline = in_ms(150), after;
    errno = 0;
    int rc;
    while ((rc = mseg_cond_timedwait(s, &q->not_empty, &q->m, &deadline)) == 0)
        ;   /* a spurious wakeup is allowed; the deadline still holds */
    cr_assert_eq(errno, ETIMEDOUT, "errno %d", errno);
    clock_gettime(CLOCK_MONOTONIC, &after);
    cr_assert_geq(ts_sec(&after), ts_sec(&deadline), "timedwait returned before its deadline");
    cr_assert_lt(ts_sec(&after), ts_sec(&deadline) + 2.0);
    /* it returned holding the mutex */
    errno = 0;
    cr_assert_eq(mseg_mutex_trylock(s, &q->m), -1);
    cr_assert(errno == EBUSY || errno == EDEADLK, "errno %d", errno);
    cr_assert_eq(mseg_mutex_unlock(s, &q->m), 0);
    cr_assert_eq(mseg_mutex_trylock(s, &q->m), 0);
    cr_assert_eq(mseg_mutex_unlock(s, &q->m), 0);
    errno = 0;
    cr_assert_eq(mseg_cond_timedwait(s, &q->not_empty, &q->m, NULL), -1);
    cr_assert_eq(errno, EINVAL);
    mseg_close(s);
}

/* ---- zeroed memory ---- */

struct zero_arg { const char *name; unsigned backend; mseg_off off; };

static void lock_zeroed_in_child(void *arg)
{
    struct zero_arg *z = arg;
    mseg *s = mseg_open(z->name, z->backend, NULL);
    CHILD_CHECK(s != NULL);
    mseg_mutex *m = mseg_at(s, z->off);
    CHILD_CHECK(m != NULL);
    errno = 0;
    CHILD_CHECK(mseg_mutex_trylock(s, m) == -1 && errno == EBUSY);   /* the parent holds it */
    mseg_close(s);
}

Test(mutex, zeroed_memory_is_an_unlocked_mutex_and_condition_variable, .timeout = 30, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256], why[128];
        mseg *s = create(name, backends[b]);
        /* raw memory, dirtied, then zeroed by the program */
        unsigned char *raw = mseg_alloc(s, 2 * sizeof(mseg_mutex));
        cr_assert_not_null(raw);
        memset(raw, 0xa5, 2 * sizeof(mseg_mutex));
        memset(raw, 0, 2 * sizeof(mseg_mutex));
        mseg_mutex *m = (mseg_mutex *)raw;
        mseg_cond *c = (mseg_cond *)(raw + sizeof(mseg_mutex));
        cr_assert_eq(mseg_mutex_trylock(s, m), 0, "%s: %s", backend_name(backends[b]), mseg_errmsg());
        struct zero_arg z = { name, backends[b], mseg_off_of(s, m) };
        int st = th_fork_run(lock_zeroed_in_child, &z);
        cr_assert(TH_EXITED_OK(st), "%s: child %s", backend_name(backends[b]), th_status_str(st, why, sizeof why));
        struct timespec deadline = in_ms(20);
        errno = 0;
        while (mseg_cond_timedwait(s, c, m, &deadline) == 0)
            ;
        cr_assert_eq(errno, ETIMEDOUT);
        cr_assert_eq(mseg_cond_signal(s, c), 0);
        cr_assert_eq(mseg_cond_broadcast(s, c), 0);
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        cr_assert_eq(mseg_mutex_lock(s, m), 0);
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        mseg_close(s);
    }
}

Test(mutex, mutexes_outside_the_heap_or_misaligned_are_einval, .fini = th_cleanup)
{
    char name[256];
    mseg *s = create(name, 0);
    mseg_mutex local;
    memset(&local, 0, sizeof local);
    errno = 0;
    cr_assert_eq(mseg_mutex_lock(s, &local), -1);
    cr_assert_eq(errno, EINVAL);
    unsigned char *raw = mseg_alloc(s, 256);
    cr_assert_not_null(raw);
    errno = 0;
    cr_assert_eq(mseg_mutex_lock(s, (mseg_mutex *)(raw + 4)), -1);
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_eq(mseg_cond_signal(s, NULL), -1);
    cr_assert_eq(errno, EINVAL);
    mseg_close(s);
}

/* ---- stale lock state from an earlier attach ---- */

/* Locks "m", sends the bytes of the locked mutex to the parent, and
   unlocks: the copy says "locked by a thread" without the owner-died mark
   the kernel's robust-list cleanup would add if this process died holding
   it. Once this process is gone, the copy is a lock no one will release. */
static void send_locked_bytes(void *arg)
{
    struct child_arg *a = arg;
    mseg *s;
    mseg_mutex *m = child_find_mutex(a->name, a->backend, &s);
    CHILD_CHECK(mseg_mutex_lock(s, m) == 0);
    mseg_mutex copy;
    memcpy(&copy, m, sizeof copy);
    CHILD_CHECK(write(a->fd, &copy, sizeof copy) == (ssize_t)sizeof copy);
    CHILD_CHECK(mseg_mutex_unlock(s, m) == 0);
    mseg_close(s);
}

Test(mutex, a_stale_locked_mutex_from_an_earlier_attach_never_blocks, .timeout = 30, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        unsigned backend = backends[b];
        char name[256], path[300], why[128];
        mseg *s = create(name, backend);
        mseg_mutex *m = MSEG_NEW(s, "m", mseg_mutex, 1);
        mseg_cond *c = MSEG_NEW(s, "c", mseg_cond, 1);
        cr_assert(m && c);
        cr_assert_eq(mseg_mutex_lock(s, m), 0);   /* used in this attach */
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        mseg_off off = mseg_off_of(s, m), coff = mseg_off_of(s, c);
        mseg_close(s);

        /* the bytes of a mutex held by a process that is gone by now, and
           that no robust-list cleanup will ever mark as dead */
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        struct child_arg a = { name, backend, fds[1] };
        int st = th_fork_run(send_locked_bytes, &a);
        cr_assert(TH_EXITED_OK(st), "%s: child %s", backend_name(backend), th_status_str(st, why, sizeof why));
        mseg_mutex locked;
        cr_assert_eq(read(fds[0], &locked, sizeof locked), (ssize_t)sizeof locked);
        close(fds[0]);
        close(fds[1]);
        cr_assert(memcmp(locked.opaque, (uint64_t[7]){ 0 }, sizeof locked.opaque) != 0,
                  "a locked mutex's bytes are all zero: the test cannot simulate staleness");

        /* no process attached: write them into the segment, as a crash or
           a reboot would have left them */
        int fd = open(th_path(path, name, backend), O_RDWR);
        cr_assert_geq(fd, 0);
        cr_assert_eq(pwrite(fd, &locked, sizeof locked, (off_t)off), (ssize_t)sizeof locked);
        unsigned char junk[sizeof(mseg_cond)];
        memset(junk, 0x5a, sizeof junk);
        memcpy(junk, &locked.epoch, sizeof locked.epoch);   /* a condition variable of that epoch */
        cr_assert_eq(pwrite(fd, junk, sizeof junk, (off_t)coff), (ssize_t)sizeof junk);
        close(fd);

        s = mseg_open(name, backend, NULL);   /* the first attach: a new epoch */
        cr_assert_not_null(s, "%s", mseg_errmsg());
        m = MSEG_FIND(s, "m", mseg_mutex, NULL);
        c = MSEG_FIND(s, "c", mseg_cond, NULL);
        cr_assert(m && c);
        cr_assert_eq(memcmp(m, &locked, sizeof locked), 0);   /* the stale bytes are there */
        cr_assert_eq(mseg_mutex_trylock(s, m), 0, "%s: a stale mutex is still locked: errno %d",
                     backend_name(backend), errno);
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        struct timespec deadline = in_ms(2000);
        cr_assert_eq(mseg_mutex_timedlock(s, m, &deadline), 0, "%s: errno %d", backend_name(backend), errno);
        deadline = in_ms(20);
        errno = 0;
        while (mseg_cond_timedwait(s, c, m, &deadline) == 0)
            ;
        cr_assert_eq(errno, ETIMEDOUT, "%s: a stale condition variable: errno %d", backend_name(backend), errno);
        cr_assert_eq(mseg_cond_broadcast(s, c), 0);
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        mseg_close(s);
    }
}

/* ---- broadcast ---- */

#define WAITERS 4

struct gate {
    mseg_mutex m;
    mseg_cond c;
    uint32_t waiting, go, woken;
};

struct waiter_arg { const char *name; unsigned backend; };

static void wait_at_gate(void *arg)
{
    struct waiter_arg *w = arg;
    mseg *s = mseg_open(w->name, w->backend, NULL);
    CHILD_CHECK(s != NULL);
    struct gate *g = MSEG_FIND(s, "gate", struct gate, NULL);
    CHILD_CHECK(g != NULL);
    CHILD_CHECK(mseg_mutex_lock(s, &g->m) == 0);
    g->waiting++;
    struct timespec deadline = in_ms(10000);
    while (!g->go)
        CHILD_CHECK(mseg_cond_timedwait(s, &g->c, &g->m, &deadline) == 0);
    g->woken++;
    CHILD_CHECK(mseg_mutex_unlock(s, &g->m) == 0);
    mseg_close(s);
}

Test(mutex, broadcast_wakes_every_waiting_process, .timeout = 30, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256], why[128];
        mseg *s = create(name, backends[b]);
        struct gate *g = MSEG_NEW(s, "gate", struct gate, 1);
        cr_assert_not_null(g);
        struct waiter_arg w = { name, backends[b] };
        pid_t pid[WAITERS];
        for (int i = 0; i < WAITERS; i++)
            cr_assert_gt(pid[i] = spawn(wait_at_gate, &w), 0);
        for (int tries = 0;; tries++) {
            cr_assert_eq(mseg_mutex_lock(s, &g->m), 0);
            uint32_t n = g->waiting;
            if (n == WAITERS)
                break;   /* all are waiting (they released the mutex in wait) */
            cr_assert_eq(mseg_mutex_unlock(s, &g->m), 0);
            cr_assert_lt(tries, 5000, "only %u waiters arrived", n);
            usleep(1000);
        }
        g->go = 1;
        cr_assert_eq(mseg_cond_broadcast(s, &g->c), 0);   /* one call wakes them all */
        cr_assert_eq(mseg_mutex_unlock(s, &g->m), 0);
        for (int i = 0; i < WAITERS; i++) {
            int st = wait_child(pid[i]);
            cr_assert(TH_EXITED_OK(st), "%s: waiter %d %s", backend_name(backends[b]), i,
                      th_status_str(st, why, sizeof why));
        }
        cr_assert_eq(g->woken, WAITERS);
        mseg_close(s);
    }
}

/* ---- re-initialization of a stale mutex, with a slow re-initializer ---- */

/* The parent re-initializes the stale mutex and stalls there (its test
   hook sleeps), as a process descheduled on a loaded machine would. */
#define STALL_MS 600
#define CHILD_HOLDS_MS 1500

static void stall_at_reinit(const char *point, unsigned long n, void *arg)
{
    (void)n, (void)arg;
    if (strcmp(point, "mutex.reinit") == 0)
        usleep(STALL_MS * 1000);
}

/* Locks the mutex while the parent stalls, reports "L", holds it, reports
   "U" just before it unlocks. */
static void lock_during_the_stall(void *arg)
{
    struct child_arg *a = arg;
    mseg *s;
    mseg_mutex *m = child_find_mutex(a->name, a->backend, &s);
    usleep(100 * 1000);   /* the parent is in its stall by now */
    CHILD_CHECK(mseg_mutex_lock(s, m) == 0);
    CHILD_CHECK(write(a->fd, "L", 1) == 1);
    usleep(CHILD_HOLDS_MS * 1000);
    CHILD_CHECK(write(a->fd, "U", 1) == 1);
    CHILD_CHECK(mseg_mutex_unlock(s, m) == 0);
    mseg_close(s);
}

Test(mutex, a_slow_reinitializer_never_gives_the_mutex_two_owners, .timeout = 60, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        unsigned backend = backends[b];
        char name[256], why[128];
        mseg *s = create(name, backend);
        mseg_mutex *m = MSEG_NEW(s, "m", mseg_mutex, 1);
        cr_assert_not_null(m);
        m->epoch = 0x7fffffffffffull;   /* stale: initialized in another attach */

        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        struct child_arg a = { name, backend, fds[1] };
        pid_t pid = spawn(lock_during_the_stall, &a);
        cr_assert_gt(pid, 0);
        mseg_test_set_crash_hook(stall_at_reinit, NULL);
        int rc = mseg_mutex_lock(s, m);
        mseg_test_set_crash_hook(NULL, NULL);
        cr_assert_eq(rc, 0, "%s: errno %d", backend_name(backend), errno);

        /* the parent owns the mutex now: the child must not, so it has
           either not locked yet or already unlocked */
        char got[4] = { 0 };
        int fl = fcntl(fds[0], F_GETFL);
        cr_assert_eq(fcntl(fds[0], F_SETFL, fl | O_NONBLOCK), 0);
        ssize_t k = read(fds[0], got, sizeof got - 1);
        cr_assert(k <= 0 || strcmp(got, "LU") == 0,
                  "%s: the parent locked the mutex while the child held it (child said \"%s\")",
                  backend_name(backend), got);
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        int st = wait_child(pid);
        cr_assert(TH_EXITED_OK(st), "%s: child %s", backend_name(backend), th_status_str(st, why, sizeof why));
        close(fds[0]);
        close(fds[1]);
        mseg_close(s);
    }
}

/* A transaction holds the segment lock; re-initializing a stale mutex must
   not wait for it, or a thread that holds one of your mutexes and waits
   on a stale condition variable would deadlock with a transaction that
   wants that mutex. */
struct tx_arg { mseg *s; int in_tx[2], done[2]; bool waited_out; };

static void *hold_a_transaction(void *p)
{
    struct tx_arg *a = p;
    char c = 0;
    if (mseg_tx_begin(a->s) != 0)
        return NULL;
    (void)!write(a->in_tx[1], "T", 1);
    struct pollfd pfd = { .fd = a->done[0], .events = POLLIN };
    a->waited_out = poll(&pfd, 1, 5000) == 0;   /* the main thread never got through */
    if (!a->waited_out)
        (void)!read(a->done[0], &c, 1);
    mseg_tx_commit(a->s);
    return NULL;
}

Test(mutex, a_stale_mutex_is_reinitialized_while_another_thread_holds_a_transaction, .timeout = 30,
     .fini = th_cleanup)
{
    char name[256];
    mseg *s = create(name, 0);
    mseg_mutex *m = MSEG_NEW(s, "m", mseg_mutex, 1);
    mseg_cond *c = MSEG_NEW(s, "c", mseg_cond, 1);
    cr_assert(m && c);
    m->epoch = c->epoch = 0x7fffffffffffull;   /* stale */
    struct tx_arg a = { .s = s };
    cr_assert_eq(pipe(a.in_tx), 0);
    cr_assert_eq(pipe(a.done), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, hold_a_transaction, &a), 0);
    char ch;
    cr_assert_eq(read(a.in_tx[0], &ch, 1), 1);
    int rc = mseg_mutex_trylock(s, m);
    int e = errno;
    struct timespec soon = in_ms(10);
    int wrc = rc == 0 ? mseg_cond_timedwait(s, c, m, &soon) : 0;
    int we = errno;
    cr_assert_eq(write(a.done[1], "D", 1), 1);
    pthread_join(t, NULL);
    cr_assert_not(a.waited_out, "the trylock and the wait waited for the other thread's transaction");
    cr_assert_eq(rc, 0, "trylock: errno %d", e);
    cr_assert(wrc == -1 && we == ETIMEDOUT, "timedwait: %d, errno %d", wrc, we);
    cr_assert_eq(mseg_mutex_unlock(s, m), 0);
    for (int i = 0; i < 2; i++)
        close(a.in_tx[i]), close(a.done[i]);
    mseg_close(s);
}

/* A process killed in the middle of re-initializing leaves the lock that
   guards it to the next one, which initializes the mutex again. */
static void die_at_reinit(const char *point, unsigned long n, void *arg)
{
    (void)n, (void)arg;
    if (strcmp(point, "mutex.reinit") == 0)
        raise(SIGKILL);
}

static void reinit_and_die(void *arg)
{
    struct child_arg *a = arg;
    mseg *s;
    mseg_mutex *m = child_find_mutex(a->name, a->backend, &s);
    mseg_test_set_crash_hook(die_at_reinit, NULL);
    mseg_mutex_lock(s, m);
    _exit(0);   /* not reached: killed at the re-initialization */
}

Test(mutex, a_process_killed_while_reinitializing_a_mutex_blocks_nobody, .timeout = 30,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        unsigned backend = backends[b];
        char name[256], why[128];
        mseg *s = create(name, backend);
        mseg_mutex *m = MSEG_NEW(s, "m", mseg_mutex, 1);
        cr_assert_not_null(m);
        m->epoch = 0x7fffffffffffull;   /* stale */
        struct child_arg a = { name, backend, -1 };
        int st = wait_child(spawn(reinit_and_die, &a));
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "%s: child %s", backend_name(backend),
                  th_status_str(st, why, sizeof why));
        struct timespec deadline = in_ms(5000);
        cr_assert_eq(mseg_mutex_timedlock(s, m, &deadline), 0, "%s: errno %d", backend_name(backend), errno);
        cr_assert_eq(mseg_mutex_trylock(s, m), -1);
        cr_assert_eq(errno, EBUSY, "%s: a second lock: errno %d", backend_name(backend), errno);
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        mseg_close(s);
    }
}

/* ---- a waiter killed inside a wait ---- */

struct dead_waiter_arg { mseg *s; struct gate *g; uint32_t round; int signal_only; };

/* Waits at the gate (inherited handle) until g->go reaches its round;
   the first one never gets there: it is killed waiting. */
static void wait_for_round(void *arg)
{
    struct dead_waiter_arg *a = arg;
    alarm(10);
    CHILD_CHECK(mseg_mutex_lock(a->s, &a->g->m) == 0);
    a->g->waiting++;
    while (a->g->go < a->round)
        CHILD_CHECK(mseg_cond_wait(a->s, &a->g->c, &a->g->m) == 0);
    a->g->woken++;
    CHILD_CHECK(mseg_mutex_unlock(a->s, &a->g->m) == 0);
}

/* Opens the gate for the next round; alarm: a signal or broadcast that
   never returns kills it. */
static void open_gate(void *arg)
{
    struct dead_waiter_arg *a = arg;
    alarm(3);
    CHILD_CHECK(mseg_mutex_lock(a->s, &a->g->m) == 0);
    a->g->go++;
    CHILD_CHECK((a->signal_only ? mseg_cond_signal(a->s, &a->g->c) : mseg_cond_broadcast(a->s, &a->g->c)) == 0);
    CHILD_CHECK(mseg_mutex_unlock(a->s, &a->g->m) == 0);
}

/* Until g->waiting reaches n, polling under the mutex. */
static void await_waiting(mseg *s, struct gate *g, uint32_t n)
{
    for (int tries = 0;; tries++) {
        cr_assert_eq(mseg_mutex_lock(s, &g->m), 0);
        uint32_t got = g->waiting;
        cr_assert_eq(mseg_mutex_unlock(s, &g->m), 0);
        if (got >= n)
            break;
        cr_assert_lt(tries, 5000, "only %u waiters arrived", got);
        usleep(1000);
    }
    usleep(50 * 1000);   /* asleep in the wait, not about to enter it */
}

Test(mutex, a_waiter_killed_in_cond_wait_never_blocks_a_later_signal_or_broadcast, .timeout = 60,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256], why[128];
        mseg *s = create(name, backends[b]);
        struct gate *g = MSEG_NEW(s, "gate", struct gate, 1);
        cr_assert_not_null(g);
        struct dead_waiter_arg dead = { s, g, UINT32_MAX, 0 };
        pid_t victim = spawn(wait_for_round, &dead);
        cr_assert_gt(victim, 0);
        await_waiting(s, g, 1);
        kill_holder(victim);   /* killed asleep in mseg_cond_wait */
        for (uint32_t round = 1; round <= 4; round++) {
            struct dead_waiter_arg w = { s, g, round, round % 2 == 0 };
            pid_t waiter = spawn(wait_for_round, &w);
            cr_assert_gt(waiter, 0);
            await_waiting(s, g, round + 1);
            int st = th_fork_run(open_gate, &w);
            cr_assert(TH_EXITED_OK(st), "%s: round %u: the %s %s", backend_name(backends[b]), round,
                      w.signal_only ? "signal" : "broadcast", th_status_str(st, why, sizeof why));
            st = wait_child(waiter);
            cr_assert(TH_EXITED_OK(st), "%s: round %u: the waiter %s", backend_name(backends[b]), round,
                      th_status_str(st, why, sizeof why));
        }
        cr_assert_eq(g->woken, 4);
        mseg_close(s);
    }
}

/* ---- a copy-on-write handle's private view ---- */

Test(mutex, a_copy_on_write_handle_never_takes_a_writers_mutex_of_a_later_attach, .timeout = 30,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg *s = create(name, backends[b]);
        cr_assert_not_null(MSEG_NEW(s, "m", mseg_mutex, 1));
        mseg *c = mseg_open(name, backends[b] | MSEG_COW, NULL);
        cr_assert_not_null(c, "%s", mseg_errmsg());
        mseg_close(s);   /* the next writer is a first one: a new epoch */
        pid_t holder = start_holder(name, backends[b], HOLD_FOREVER);
        mseg_mutex *m = MSEG_FIND(c, "m", mseg_mutex, NULL);
        cr_assert_not_null(m, "%s", mseg_errmsg());
        /* the private view's mutexes start afresh: the writer's lock, in
           the file's page, is not this view's (a lock would wait forever
           on a private copy of the page that says "locked") */
        int r = mseg_mutex_trylock(c, m);
        int e = errno;
        kill_holder(holder);
        cr_assert_eq(r, 0, "%s: the private view's mutex is held by a writer: errno %d (%s)",
                     backend_name(backends[b]), e, strerror(e));
        struct timespec deadline = in_ms(1000);
        cr_assert_eq(mseg_mutex_unlock(c, m), 0, "%s", mseg_errmsg());
        cr_assert_eq(mseg_mutex_timedlock(c, m, &deadline), 0, "%s", mseg_errmsg());
        cr_assert_eq(mseg_mutex_unlock(c, m), 0, "%s", mseg_errmsg());
        mseg_close(c);
    }
}

/* ---- a waiter woken by an unlock and killed before it took the mutex ---- */

struct woken_arg { mseg *s; mseg_mutex *m; uint32_t *got; int cpu; int starved; };

/* Pins the calling process to cpu (if it has one). */
static void pin_to(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    sched_setaffinity(0, sizeof one, &one);
}

/* Locks m (inherited handle) and says so in *got; a starved one runs
   only when the CPU it shares with a spinner is otherwise idle, so once
   woken it stays asleep until killed. */
static void lock_and_tell(void *arg)
{
    struct woken_arg *a = arg;
    alarm(10);
    if (a->starved) {
        pin_to(a->cpu);
        struct sched_param p = { 0 };
        sched_setscheduler(0, SCHED_IDLE, &p);
    }
    int r = mseg_mutex_lock(a->s, a->m);
    CHILD_CHECK(r == 0 || errno == EOWNERDEAD);
    __atomic_store_n(a->got, 1, __ATOMIC_RELEASE);
    CHILD_CHECK(r == 0 || mseg_mutex_consistent(a->s, a->m) == 0);
    CHILD_CHECK(mseg_mutex_unlock(a->s, a->m) == 0);
}

static void spin_on_cpu(void *arg)
{
    struct woken_arg *a = arg;
    alarm(10);
    pin_to(a->cpu);
    for (;;)
        __asm__ __volatile__("" ::: "memory");
}

static void reap(pid_t pid)
{
    kill(pid, SIGKILL);
    wait_child(pid);
}

Test(mutex, a_waiter_killed_between_its_wakeup_and_the_lock_leaves_no_other_waiter_asleep,
     .timeout = 60, .fini = th_cleanup)
{
    /* two CPUs if there are: the spinner and the starved waiter on one,
       this process on another */
    cpu_set_t mine, all;
    cr_assert_eq(sched_getaffinity(0, sizeof all, &all), 0);
    mine = all;
    int cpu = -1, other = -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &all))
            other = cpu, cpu = i;
    pin_to(other);
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg *s = create(name, backends[b]);
        mseg_mutex *m = MSEG_NEW(s, "m", mseg_mutex, 1);
        uint32_t *got = MSEG_NEW(s, "got", uint32_t, 1);
        cr_assert(m && got);
        for (int attempt = 0; attempt < 5; attempt++) {
            __atomic_store_n(got, 0, __ATOMIC_RELEASE);
            cr_assert_eq(mseg_mutex_lock(s, m), 0);
            struct woken_arg starved = { s, m, got, cpu, 1 }, patient = { s, m, got, cpu, 0 };
            pid_t first = spawn(lock_and_tell, &starved);   /* first in the futex's queue */
            usleep(30 * 1000);
            pid_t spinner = spawn(spin_on_cpu, &starved);
            pid_t second = spawn(lock_and_tell, &patient);
            usleep(30 * 1000);
            cr_assert(first > 0 && spinner > 0 && second > 0);
            cr_assert_eq(mseg_mutex_unlock(s, m), 0);           /* wakes the first waiter */
            bool barged = mseg_mutex_trylock(s, m) == 0;        /* before it runs */
            reap(first);                                        /* woken, killed before it locked */
            reap(spinner);
            if (barged)
                cr_assert_eq(mseg_mutex_unlock(s, m), 0);
            for (int i = 0; i < 200 && !__atomic_load_n(got, __ATOMIC_ACQUIRE); i++)
                usleep(10 * 1000);
            bool ok = __atomic_load_n(got, __ATOMIC_ACQUIRE);
            reap(second);
            int r = mseg_mutex_lock(s, m);   /* a first waiter killed holding it: EOWNERDEAD */
            cr_assert(r == 0 || (errno == EOWNERDEAD && mseg_mutex_consistent(s, m) == 0));
            cr_assert_eq(mseg_mutex_unlock(s, m), 0);
            cr_assert(ok, "%s: attempt %d: the second waiter never got the free mutex in 2 s (%s)",
                      backend_name(backends[b]), attempt,
                      barged ? "this process took it and let it go while the first waiter, woken, "
                               "was killed before it ran" : "the first waiter ran");
        }
        mseg_close(s);
    }
    sched_setaffinity(0, sizeof mine, &mine);
}

/* ---- the segment lock, left unrecoverable by a failed recovery ---- */

struct seg_lock_arg { mseg *s; int calls; };

static void die_in_a_transaction(void *arg)
{
    struct seg_lock_arg *a = arg;
    CHILD_CHECK(mseg_tx_begin(a->s) == 0);   /* holds the segment lock */
    raise(SIGKILL);
}

/* Each call that needs the segment lock fails with EUCLEAN; alarm: one
   that never returns kills it. */
static void expect_euclean(void *arg)
{
    struct seg_lock_arg *a = arg;
    alarm(3);
    for (int i = 0; i < a->calls; i++) {
        errno = 0;
        CHILD_CHECK(mseg_alloc(a->s, 16) == NULL && errno == EUCLEAN);
    }
}

Test(mutex, a_segment_lock_left_unrecoverable_fails_every_later_call_with_euclean, .timeout = 30,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256], why[128];
        mseg *s = create(name, backends[b]);
        uint8_t *p = mseg_alloc(s, 16);
        cr_assert_not_null(p);
        pthread_mutex_t *lock = (pthread_mutex_t *)(p - mseg_off_of(s, p) + MSEG_RUNTIME_OFF);
        struct seg_lock_arg one = { s, 1 }, two = { s, 2 };
        int st = th_fork_run(die_in_a_transaction, &one);
        cr_assert(st != -1 && WIFSIGNALED(st));
        /* what lock_take leaves when the dead owner's recovery fails:
           unlocked without pthread_mutex_consistent */
        cr_assert_eq(pthread_mutex_lock(lock), EOWNERDEAD);
        cr_assert_eq(pthread_mutex_unlock(lock), 0);
        st = th_fork_run(expect_euclean, &one);
        cr_assert(TH_EXITED_OK(st), "%s: a first process: %s", backend_name(backends[b]),
                  th_status_str(st, why, sizeof why));
        st = th_fork_run(expect_euclean, &two);
        cr_assert(TH_EXITED_OK(st), "%s: a second process, two calls: %s", backend_name(backends[b]),
                  th_status_str(st, why, sizeof why));
        st = th_fork_run(expect_euclean, &two);
        cr_assert(TH_EXITED_OK(st), "%s: a third process, two calls: %s", backend_name(backends[b]),
                  th_status_str(st, why, sizeof why));
        mseg_close(s);
    }
}

/* ---- a mutex in space another process grew ---- */

struct grown_arg { const char *name; unsigned backend; int ready_fd, go_fd; };

/* Opens the segment before it grows, then, told it grew, locks the mutex
   whose offset "where" holds, placed by the other process in the new
   space: the mutex call is the first on this handle since the growth. */
static void lock_in_grown_space(void *arg)
{
    struct grown_arg *a = arg;
    alarm(10);
    mseg *s = mseg_open(a->name, a->backend, NULL);
    CHILD_CHECK(s != NULL);
    uint64_t *where = MSEG_FIND(s, "where", uint64_t, NULL);
    CHILD_CHECK(where != NULL);
    uint8_t *base = (uint8_t *)where - mseg_off_of(s, where);
    CHILD_CHECK(write(a->ready_fd, "r", 1) == 1);
    char c;
    CHILD_CHECK(read(a->go_fd, &c, 1) == 1);
    mseg_mutex *m = (mseg_mutex *)(base + __atomic_load_n(where, __ATOMIC_ACQUIRE));
    CHILD_CHECK(mseg_mutex_lock(s, m) == 0);
    CHILD_CHECK(mseg_mutex_unlock(s, m) == 0);
    mseg_close(s);
}

Test(mutex, a_mutex_in_space_another_process_grew_is_usable_at_once, .timeout = 30, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256], why[128];
        th_name(name, backends[b]);
        struct mseg_config cfg = { .size = 1024 * 1024, .max_size = 64 * 1024 * 1024 };
        mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL | backends[b], &cfg);
        cr_assert_not_null(s, "%s", mseg_errmsg());
        uint64_t *where = MSEG_NEW(s, "where", uint64_t, 1);
        cr_assert_not_null(where);
        int ready[2], go[2];
        cr_assert(pipe(ready) == 0 && pipe(go) == 0);
        struct grown_arg a = { name, backends[b], ready[1], go[0] };
        pid_t pid = spawn(lock_in_grown_space, &a);
        cr_assert_gt(pid, 0);
        char c;
        cr_assert_eq(read(ready[0], &c, 1), 1);
        size_t before = mseg_size(s);
        uint8_t *big = mseg_alloc(s, 4 * 1024 * 1024);   /* grows the segment */
        cr_assert_not_null(big, "%s", mseg_errmsg());
        cr_assert_gt(mseg_size(s), before);
        mseg_mutex *m = (mseg_mutex *)(big + 4 * 1024 * 1024 - 4096);   /* past the old end */
        memset(m, 0, sizeof *m);
        cr_assert_gt(mseg_off_of(s, m), before);
        __atomic_store_n(where, mseg_off_of(s, m), __ATOMIC_RELEASE);
        cr_assert_eq(write(go[1], "g", 1), 1);
        int st = wait_child(pid);
        cr_assert(TH_EXITED_OK(st), "%s: the other process %s", backend_name(backends[b]),
                  th_status_str(st, why, sizeof why));
        close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
        mseg_close(s);
    }
}

/* ---- a power loss: the disk's runtime page older than a mutex's page ---- */

Test(mutex, a_mutex_locked_before_a_power_loss_never_blocks_after_the_reboot, .timeout = 30,
     .fini = th_cleanup)
{
    char name[256];
    mseg *s = create(name, 0);
    mseg_mutex *m = MSEG_NEW(s, "m", mseg_mutex, 1);
    cr_assert_not_null(m);
    off_t moff = (off_t)mseg_off_of(s, m);
    mseg_close(s);
    int fd = open(name, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t old_runtime[MSEG_PAGE], locked[sizeof(mseg_mutex)];
    /* the runtime page as the disk last got it: the kernel wrote it back
       before the next attach moved the epoch, and never again */
    cr_assert_eq(pread(fd, old_runtime, sizeof old_runtime, MSEG_RUNTIME_OFF), (ssize_t)sizeof old_runtime);
    pid_t holder = start_holder(name, 0, HOLD_FOREVER);   /* a first attach: the next epoch */
    /* the mutex's page, written back while it was held; then the power
       goes, and no kernel marks its owner dead */
    cr_assert_eq(pread(fd, locked, sizeof locked, moff), (ssize_t)sizeof locked);
    kill_holder(holder);
    cr_assert_eq(pwrite(fd, old_runtime, sizeof old_runtime, MSEG_RUNTIME_OFF), (ssize_t)sizeof old_runtime);
    cr_assert_eq(pwrite(fd, locked, sizeof locked, moff), (ssize_t)sizeof locked);
    close(fd);
    static const uint8_t other_boot[16] = { 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6 };
    mseg_test_set_boot_id(other_boot);
    s = mseg_open(name, 0, NULL);
    mseg_test_set_boot_id(NULL);
    cr_assert_not_null(s, "reopen after the reboot: %s", mseg_errmsg());
    m = MSEG_FIND(s, "m", mseg_mutex, NULL);
    cr_assert_not_null(m);
    cr_assert_eq(memcmp(m, locked, sizeof locked), 0);   /* the stale lock is there */
    errno = 0;
    cr_assert_eq(mseg_mutex_trylock(s, m), 0, "a mutex held by a process of the last boot is still "
                 "held: errno %d (%s)", errno, strerror(errno));
    cr_assert_eq(mseg_mutex_unlock(s, m), 0);
    mseg_close(s);
}

/* ---- closing a segment while one of its mutexes is held ---- */

struct holder_thread { mseg *s; mseg_mutex *m; int locked, release, exit_holding; };

/* Locks a->m, says so, and unlocks it when told (or exits holding it). */
static void *hold_in_thread(void *arg)
{
    struct holder_thread *a = arg;
    int r = mseg_mutex_lock(a->s, a->m);
    __atomic_store_n(&a->locked, r == 0 ? 1 : -1, __ATOMIC_RELEASE);
    if (r || a->exit_holding)
        return NULL;
    while (!__atomic_load_n(&a->release, __ATOMIC_ACQUIRE))
        sched_yield();
    mseg_mutex_unlock(a->s, a->m);
    return NULL;
}

static void start_thread_holder(pthread_t *t, struct holder_thread *a)
{
    cr_assert_eq(pthread_create(t, NULL, hold_in_thread, a), 0);
    while (!__atomic_load_n(&a->locked, __ATOMIC_ACQUIRE))
        sched_yield();
    cr_assert_eq(a->locked, 1, "the thread could not lock the mutex");
}

/* The close is refused, says why, and leaves the handle working. */
static void assert_close_refused(mseg *s, const char *who)
{
    errno = 0;
    cr_assert_eq(mseg_close(s), -1, "%s: mseg_close succeeded while a mutex of the segment was held", who);
    cr_assert_eq(errno, EBUSY, "%s: errno %d (%s)", who, errno, strerror(errno));
    cr_assert(strstr(mseg_errmsg(), "unlock them before mseg_close"), "%s: %s", who, mseg_errmsg());
    void *p = mseg_alloc(s, 64);
    cr_assert_not_null(p, "%s: the handle no longer works after the refused close: %s", who, mseg_errmsg());
    cr_assert_eq(mseg_free(s, p), 0);
}

Test(mutex, mseg_close_is_ebusy_while_a_thread_of_this_process_holds_one_of_its_mutexes, .timeout = 30,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg_mutex *m;
        mseg *s = create_with_mutex(name, backends[b], &m);

        /* held by the calling thread */
        cr_assert_eq(mseg_mutex_lock(s, m), 0, "%s", mseg_errmsg());
        assert_close_refused(s, "held by the closing thread");
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        cr_assert_eq(mseg_mutex_trylock(s, m), 0, "%s", mseg_errmsg());
        assert_close_refused(s, "taken by trylock");
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);

        /* held by another thread of this process */
        struct holder_thread a = { .s = s, .m = m };
        pthread_t t;
        start_thread_holder(&t, &a);
        assert_close_refused(s, "held by another thread");
        __atomic_store_n(&a.release, 1, __ATOMIC_RELEASE);
        cr_assert_eq(pthread_join(t, NULL), 0);

        /* locked through one handle, unlocked through another */
        mseg *other = mseg_open(name, backends[b], NULL);
        cr_assert_not_null(other, "%s", mseg_errmsg());
        mseg_mutex *mo = MSEG_FIND(other, "m", mseg_mutex, NULL);
        cr_assert_not_null(mo);
        cr_assert_eq(mseg_mutex_lock(other, mo), 0);
        assert_close_refused(other, "held through this handle");
        cr_assert_eq(mseg_mutex_unlock(s, m), 0, "%s", mseg_errmsg());
        cr_assert_eq(mseg_close(other), 0, "unlocked through another handle: %s", mseg_errmsg());

        /* a thread that exits holding it: the kernel hands it on (a second
           handle keeps the attach, or the next open would start afresh) */
        mseg *keep = mseg_open(name, backends[b], NULL);
        cr_assert_not_null(keep, "%s", mseg_errmsg());
        struct holder_thread dead = { .s = s, .m = m, .exit_holding = 1 };
        start_thread_holder(&t, &dead);
        cr_assert_eq(pthread_join(t, NULL), 0);
        cr_assert_eq(mseg_close(s), 0, "its holder exited: %s", mseg_errmsg());
        s = keep;
        m = MSEG_FIND(s, "m", mseg_mutex, NULL);
        cr_assert_eq(mseg_mutex_lock(s, m), -1);
        cr_assert_eq(errno, EOWNERDEAD);
        cr_assert_eq(mseg_mutex_consistent(s, m), 0);

        /* a child of fork() holds none of its parent's mutexes */
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0)
            _exit(mseg_close(s) == 0 ? 0 : 1);
        cr_assert_eq(wait_child(pid), 0, "the forked child's close was refused");
        cr_assert_eq(mseg_mutex_unlock(s, m), 0);
        cr_assert_eq(mseg_close(s), 0, "%s", mseg_errmsg());
    }
}

/* mseg_close finds held mutexes from notes each lock makes (99f6cfb). A
   thread that exits holding one leaves its note; the next locker
   (EOWNERDEAD) notes the mutex again. The stale note was kept beside the
   new one until mseg_close, so a process whose threads died holding a
   mutex grew the list for good, and every unlock scanned all of it. */
Test(mutex, a_mutex_noted_again_after_its_holder_died_keeps_one_note, .timeout = 60, .fini = th_cleanup)
{
    char name[256];
    mseg_mutex *m;
    mseg *s = create_with_mutex(name, 0, &m);
    for (int i = 0; i < 200; i++) {
        struct holder_thread dead = { .s = s, .m = m, .exit_holding = 1 };
        pthread_t t;
        start_thread_holder(&t, &dead);
        cr_assert_eq(pthread_join(t, NULL), 0);
        int r = mseg_mutex_lock(s, m);
        cr_assert(r == 0 || errno == EOWNERDEAD, "%s", mseg_errmsg());
        if (r)
            cr_assert_eq(mseg_mutex_consistent(s, m), 0, "%s", mseg_errmsg());
        cr_assert_eq(mseg_mutex_unlock(s, m), 0, "%s", mseg_errmsg());
    }
    cr_assert_leq(mseg_test_held_notes(s), 1, "one mutex, nobody holds it, and %u notes are kept",
                  mseg_test_held_notes(s));
    cr_assert_eq(mseg_close(s), 0, "%s", mseg_errmsg());
}


static void *lock_and_exit(void *arg)
{
    void **a = arg;
    mseg_mutex_lock(a[0], a[1]);
    return NULL;
}

/* A mutex call that failed with the C library's error (EPERM, EBUSY,
   ETIMEDOUT, EOWNERDEAD, ENOTRECOVERABLE, EINVAL) set errno alone: the
   message still told of whatever failed before, in this test a find of
   another segment. Each such failure now says what happened, naming the
   segment and the mutex. */
static void expect_mutex_failure(int rc, int err, const char *name, uint64_t off, const char *what)
{
    char at[64];
    snprintf(at, sizeof at, "mutex at %#llx", (unsigned long long)off);
    cr_assert_eq(rc, -1, "%s succeeded", what);
    cr_assert_eq(errno, err, "%s: errno %d, not %d", what, errno, err);
    cr_assert(strstr(mseg_errmsg(), name) && strstr(mseg_errmsg(), at), "%s: the message is \"%s\"", what,
              mseg_errmsg());
}

static void stale_message(mseg *s)
{
    cr_assert_null(mseg_find(s, "no such object", "int", 4, NULL));
}

Test(mutex, every_failed_mutex_call_says_why_naming_the_segment_and_the_mutex, .timeout = 30, .fini = th_cleanup)
{
    char name[256], other[256];
    mseg *s = create(name, 0), *t = create(other, 0);
    mseg_mutex *m = MSEG_NEW(s, "m", mseg_mutex, 1);
    mseg_cond *c = MSEG_NEW(s, "c", mseg_cond, 1);
    cr_assert(m && c, "%s", mseg_errmsg());
    uint64_t off = mseg_off_of(s, m);
    stale_message(t);
    expect_mutex_failure(mseg_mutex_unlock(s, m), EPERM, name, off, "an unlock of an unlocked mutex");
    stale_message(t);
    expect_mutex_failure(mseg_mutex_consistent(s, m), EINVAL, name, off, "consistent of a sound mutex");
    cr_assert_eq(mseg_mutex_lock(s, m), 0, "%s", mseg_errmsg());
    stale_message(t);
    expect_mutex_failure(mseg_mutex_trylock(s, m), EBUSY, name, off, "a trylock of a held mutex");
    struct timespec past = in_ms(-10);
    stale_message(t);
    expect_mutex_failure(mseg_mutex_timedlock(s, m, &past), ETIMEDOUT, name, off, "a timedlock past its time");
    stale_message(t);
    expect_mutex_failure(mseg_cond_timedwait(s, c, m, &past), ETIMEDOUT, name, off, "a timedwait past its time");
    cr_assert_eq(mseg_mutex_unlock(s, m), 0, "%s", mseg_errmsg());
    pthread_t th;
    void *args[2] = { s, m };
    cr_assert_eq(pthread_create(&th, NULL, lock_and_exit, args), 0);
    pthread_join(th, NULL);
    stale_message(t);
    expect_mutex_failure(mseg_mutex_lock(s, m), EOWNERDEAD, name, off, "a lock after the owner died");
    cr_assert_eq(mseg_mutex_unlock(s, m), 0, "%s", mseg_errmsg());
    stale_message(t);
    expect_mutex_failure(mseg_mutex_lock(s, m), ENOTRECOVERABLE, name, off, "a lock of an unrecoverable mutex");
    mseg_close(s);
    mseg_close(t);
}
