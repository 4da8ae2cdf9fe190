/* test_lock.c - the robust lock: a process that dies holding it, or dies
   while attached, never wedges or corrupts the segment. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>

#include "helpers.h"
#include "testing.h"

#define MiB (1024u * 1024u)

static const struct mseg_config cfg = { .size = 2 * MiB };

static int victim_init[100];

static void init_victim(void)
{
    for (int i = 0; i < 100; i++)
        victim_init[i] = i * 3 + 1;
}

struct child_arg {
    const char *name;
    unsigned be;
    const char *point;      /* crash point to die at; NULL: die after the op */
    int notify_fd;          /* >= 0: write a byte and pause instead of dying */
};

static const struct child_arg *hook_arg;

static void die_at(const char *point, unsigned long n, void *arg)
{
    (void)n;
    (void)arg;
    if (strcmp(point, hook_arg->point) != 0)
        return;
    if (hook_arg->notify_fd >= 0) {
        char c = 'x';
        if (write(hook_arg->notify_fd, &c, 1) != 1)
            _exit(97);
        for (;;)
            pause();
    }
    raise(SIGKILL);
}

/* Child: open, then construct "victim" and die inside it (or after it). */
static void construct_and_die(void *p)
{
    const struct child_arg *a = p;
    init_victim();
    mseg *s = mseg_open(a->name, a->be, NULL);
    CHILD_CHECK(s != NULL);
    if (a->point) {
        hook_arg = a;
        mseg_test_set_crash_hook(die_at, NULL);
    }
    int *v = MSEG_NEW_FROM(s, "victim", int, 100, victim_init);
    CHILD_CHECK(v != NULL);
    void *raw = mseg_alloc(s, 300);
    CHILD_CHECK(raw != NULL);
    memset(raw, 0xcc, 300);
    if (a->point)
        _exit(3);           /* the crash point was never reached */
    raise(SIGKILL);         /* dies attached, outside any operation */
    _exit(4);
}

/* Child: attach, see the victim, add an object, detach. */
static void attach_and_work(void *p)
{
    const struct child_arg *a = p;
    mseg *s = mseg_open(a->name, a->be, NULL);
    CHILD_CHECK(s != NULL);
    CHILD_CHECK(MSEG_FIND(s, "victim", int, NULL) != NULL);
    CHILD_CHECK(MSEG_NEW(s, "second", int, 1) != NULL);
    void *raw = mseg_alloc(s, 100);
    CHILD_CHECK(raw != NULL && mseg_free(s, raw) == 0);
    CHILD_CHECK(mseg_close(s) == 0);
}

static void assert_sound(mseg *s)
{
    struct mseg_report r;
    memset(&r, 0xff, sizeof r);
    cr_assert_eq(mseg_verify(s, &r), 0, "verify: %s", mseg_errmsg());
    cr_assert_eq(r.problems, 0, "%llu problems: %s", (unsigned long long)r.problems, r.first_problem);
}

static void assert_check_sound(const char *name, unsigned be)
{
    struct mseg_report r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(mseg_check(name, be, &r), 0, "mseg_check: %s", mseg_errmsg());
    cr_assert_eq(r.problems, 0, "%s", r.first_problem);
}

/* The construct of "victim" happened completely or not at all.
   Returns 1 if it happened. */
static int victim_all_or_nothing(mseg *s, size_t free_before)
{
    init_victim();
    size_t n = 0;
    errno = 0;
    int *v = MSEG_FIND(s, "victim", int, &n);
    if (v) {
        cr_assert_eq(n, 100);
        cr_assert_arr_eq(v, victim_init, sizeof victim_init, "victim exists with the wrong contents");
        cr_assert_lt(mseg_free_memory(s), free_before);
        return 1;
    }
    cr_assert_eq(errno, ENOENT, "find victim: errno %d (%s)", errno, mseg_errmsg());
    cr_assert_eq(mseg_free_memory(s), free_before, "victim absent but free memory changed");
    return 0;
}

static mseg *setup(char *name, unsigned be, size_t *free_before)
{
    th_name(name, be);
    mseg *s = mseg_open(name, be | MSEG_CREATE | MSEG_EXCL, &cfg);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    /* make the directory exist, so the child's construct is one operation */
    cr_assert_not_null(MSEG_NEW(s, "warm", int, 1));
    *free_before = mseg_free_memory(s);
    return s;
}

static void use_after_crash(mseg *s)
{
    void *p = mseg_alloc(s, 1000);
    cr_assert_not_null(p, "alloc after the crash: %s", mseg_errmsg());
    int *o = MSEG_NEW(s, "after", int, 10);
    cr_assert_not_null(o, "construct after the crash: %s", mseg_errmsg());
    cr_assert_eq(mseg_free(s, p), 0);
    cr_assert_eq(mseg_destroy(s, "after"), 0);
}

static void killed_holding_the_lock(unsigned be, const char *point, int must_exist)
{
    char name[256], why[128];
    size_t f0;
    mseg *s = setup(name, be, &f0);
    struct child_arg a = { name, be, point, -1 };
    int st = th_fork_run(construct_and_die, &a);
    cr_assert(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
              "child %s; expected death by SIGKILL at %s", th_status_str(st, why, sizeof why), point);

    /* the parent's handle was open all along: its next operation finds the
       lock's owner dead and recovers */
    int happened = victim_all_or_nothing(s, f0);
    if (must_exist >= 0)
        cr_assert_eq(happened, must_exist, "killed at %s: victim %s", point,
                     happened ? "exists (an uncommitted operation took effect)"
                              : "is missing (a committed operation was lost)");
    use_after_crash(s);
    assert_sound(s);
    cr_assert_eq(mseg_close(s), 0);
    assert_check_sound(name, be);
}

Test(lock, owner_killed_while_applying_a_construct_is_recovered_file, .timeout = 30, .fini = th_cleanup)
{ killed_holding_the_lock(0, "log.applying", -1); }
Test(lock, owner_killed_while_applying_a_construct_is_recovered_shm, .timeout = 30, .fini = th_cleanup)
{ killed_holding_the_lock(MSEG_SHM, "log.applying", -1); }

Test(lock, owner_killed_before_commit_rolls_the_construct_back_file, .timeout = 30, .fini = th_cleanup)
{ killed_holding_the_lock(0, "log.written", 0); }
Test(lock, owner_killed_before_commit_rolls_the_construct_back_shm, .timeout = 30, .fini = th_cleanup)
{ killed_holding_the_lock(MSEG_SHM, "log.written", 0); }

Test(lock, owner_killed_after_commit_completes_the_construct, .timeout = 30, .fini = th_cleanup)
{
    /* log.c: once the commit word is stored the operation is replayed */
    killed_holding_the_lock(0, "log.committed", 1);
}

Test(lock, process_killed_outside_an_operation_leaves_the_others_working, .timeout = 30, .fini = th_cleanup)
{
    char name[256], why[128];
    size_t f0;
    mseg *s = setup(name, 0, &f0);
    struct child_arg a = { name, 0, NULL, -1 };
    int st = th_fork_run(construct_and_die, &a);
    cr_assert(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child %s", th_status_str(st, why, sizeof why));
    cr_assert_eq(victim_all_or_nothing(s, f0), 1, "the dead child's completed construct is missing");
    use_after_crash(s);
    assert_sound(s);

    /* another process can still attach and work */
    st = th_fork_run(attach_and_work, &a);
    cr_assert(TH_EXITED_OK(st), "second child %s", th_status_str(st, why, sizeof why));
    cr_assert_not_null(MSEG_FIND(s, "victim", int, NULL));
    cr_assert_not_null(MSEG_FIND(s, "second", int, NULL));
    assert_sound(s);
    cr_assert_eq(mseg_close(s), 0);
    assert_check_sound(name, 0);
}

static void crash_with_nobody_left(unsigned be)
{
    char name[256], path[300], why[128];
    size_t f0;
    mseg *s = setup(name, be, &f0);
    cr_assert_eq(mseg_close(s), 0);
    struct child_arg a = { name, be, "log.applying", -1 };
    int st = th_fork_run(construct_and_die, &a);
    cr_assert(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child %s", th_status_str(st, why, sizeof why));

    /* check first: it recovers privately and leaves the bytes alone */
    long long sz0, sz1;
    uint64_t h0 = th_hash_file(th_path(path, name, be), &sz0);
    struct mseg_report r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(mseg_check(name, be, &r), 0, "check of the crashed segment: %s", mseg_errmsg());
    cr_assert_eq(r.problems, 0);
    cr_assert_neq(r.recovered, 0, "a segment left mid-operation needs recovery");
    uint64_t h1 = th_hash_file(path, &sz1);
    cr_assert(h0 == h1 && sz0 == sz1, "mseg_check wrote to the segment");

    /* a read-only open recovers nothing on disk either, but sees the
       recovered state */
    mseg *ro = mseg_open(name, be | MSEG_RDONLY, NULL);
    if (ro) {
        size_t n = 0;
        int *v = MSEG_FIND(ro, "victim", int, &n);
        cr_assert(v == NULL || n == 100);
        mseg_close(ro);
        cr_assert_eq(th_hash_file(path, &sz1), h0, "a read-only open wrote to the segment");
    }

    s = mseg_open(name, be, NULL);
    cr_assert_not_null(s, "first opener after the crash: %s", mseg_errmsg());
    int happened = victim_all_or_nothing(s, f0);
    cr_log_info("crash at log.applying with no process left: construct %s after recovery",
                happened ? "completed" : "rolled back");
    use_after_crash(s);
    assert_sound(s);
    cr_assert_eq(mseg_close(s), 0);
    assert_check_sound(name, be);
    memset(&r, 0, sizeof r);
    cr_assert_eq(mseg_check(name, be, &r), 0);
    cr_assert_eq(r.recovered, 0, "recovery still needed after a clean close");
}

Test(lock, crash_with_no_process_left_is_recovered_by_the_first_opener_file, .timeout = 30, .fini = th_cleanup)
{ crash_with_nobody_left(0); }
Test(lock, crash_with_no_process_left_is_recovered_by_the_first_opener_shm, .timeout = 30, .fini = th_cleanup)
{ crash_with_nobody_left(MSEG_SHM); }

/* ---- a waiter blocked on the lock when its owner dies ---- */

struct killer { pid_t pid; };

static void *kill_later(void *p)
{
    struct killer *k = p;
    struct timespec ts = { 0, 200 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    kill(k->pid, SIGKILL);
    return NULL;
}

Test(lock, a_waiter_blocked_on_a_dead_owners_lock_proceeds, .timeout = 30, .fini = th_cleanup)
{
    char name[256];
    size_t f0;
    mseg *s = setup(name, 0, &f0);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    struct child_arg a = { name, 0, "log.applying", fds[1] };
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        construct_and_die(&a);
        _exit(5);
    }
    close(fds[1]);
    char c;
    cr_assert_eq(read(fds[0], &c, 1), 1, "the child never reached log.applying");
    close(fds[0]);
    /* the child now holds the lock, mid-operation; it dies in 200 ms while
       this thread waits for the lock */
    struct killer k = { pid };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, kill_later, &k), 0);
    double t0 = th_now();
    void *p = mseg_alloc(s, 64);
    double waited = th_now() - t0;
    pthread_join(t, NULL);
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    cr_assert_not_null(p, "alloc after the owner died: %s", mseg_errmsg());
    cr_assert_geq(waited, 0.1, "alloc did not wait for the lock holder (%.3f s)", waited);
    cr_assert_eq(mseg_free(s, p), 0);
    victim_all_or_nothing(s, f0);
    use_after_crash(s);
    assert_sound(s);
    cr_assert_eq(mseg_close(s), 0);
    assert_check_sound(name, 0);
}

Test(lock, repeated_owner_deaths_never_wedge_the_segment, .timeout = 60, .fini = th_cleanup)
{
    static const char *points[] = { "log.written", "log.committed", "log.applying", "log.applied", "log.retired" };
    char name[256], why[128];
    size_t f0;
    mseg *s = setup(name, 0, &f0);
    for (int round = 0; round < 10; round++) {
        struct child_arg a = { name, 0, points[round % 5], -1 };
        int st = th_fork_run(construct_and_die, &a);
        cr_assert(st != -1 && WIFSIGNALED(st), "round %d: child %s", round, th_status_str(st, why, sizeof why));
        size_t f = mseg_free_memory(s);
        if (MSEG_FIND(s, "victim", int, NULL)) {
            cr_assert_eq(mseg_destroy(s, "victim"), 0);
            cr_assert_gt(mseg_free_memory(s), f);
        }
        cr_assert_eq(mseg_free_memory(s), f0, "round %d (%s): free memory %zu, expected %zu",
                     round, points[round % 5], mseg_free_memory(s), f0);
        assert_sound(s);
    }
    cr_assert_eq(mseg_close(s), 0);
    assert_check_sound(name, 0);
}
