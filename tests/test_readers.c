/* test_readers.c - lock-free readers (read-only and copy-on-write handles, cursors)
   while other processes write: they see committed states only. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "inspect.h"
#include "layout.h"   /* MSEG_RUNTIME_OFF, struct mseg_runtime: the writers' op_seq */
#include "testing.h"

#define MiB (1024u * 1024u)
#define NEVEN 4000u          /* even keys 0, 2, ..., 2*(NEVEN-1) are always present, value == key */

static mseg *lf_create(char *name)
{
    th_name(name, 0);
    struct mseg_config c = { .size = 8 * MiB };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &c);
    cr_assert_not_null(s, "create %s: %s", name, mseg_errmsg());
    return s;
}

static void lf_fill_even(mseg *s, mseg_map *m)
{
    for (uint64_t k = 0; k < 2 * NEVEN; k += 2)
        cr_assert_eq(mseg_map_put(s, m, &k, 8, &k, 8), 0, "%s", mseg_errmsg());
}

/* A new segment whose map "m" holds the even keys, closed, then opened
   copy-on-write: the handle, and its view of the map in *cm. */
static mseg *lf_cow_of_even_map(char *name, mseg_map **cm)
{
    mseg *s = lf_create(name);
    mseg_map *m = mseg_map_open(s, "m", MSEG_KEY_U64, 8, MSEG_CREATE);
    cr_assert_not_null(m);
    lf_fill_even(s, m);
    mseg_close(s);
    mseg *c = mseg_open(name, MSEG_COW, NULL);
    cr_assert_not_null(c, "%s", mseg_errmsg());
    *cm = mseg_map_open(c, "m", MSEG_KEY_U64, 8, 0);
    cr_assert_not_null(*cm, "%s", mseg_errmsg());
    return c;
}

/* Gets random even keys (always present, value == key) through c for the
   given seconds or until one fails: the failures (0 or 1), *gets, and the
   first failure described in first. */
static unsigned long lf_get_even_keys(mseg *c, mseg_map *cm, double seconds, unsigned long *gets,
                                      char *first, size_t n)
{
    unsigned long bad = 0;
    *gets = 0;
    first[0] = 0;
    double t0 = th_now();
    for (uint64_t r = 7; th_now() - t0 < seconds && bad == 0; r = r * 6364136223846793005ull + 1) {
        uint64_t k = 2 * ((r >> 33) % NEVEN);
        size_t vlen = 0;
        uint64_t *v = mseg_map_get(c, cm, &k, 8, &vlen);
        ++*gets;
        if (!v || vlen != 8 || *v != k) {
            bad++;
            snprintf(first, n, "key %llu: errno %d: %s", (unsigned long long)k, errno,
                     v ? "wrong value" : mseg_errmsg());
        }
    }
    return bad;
}

/* ---- 1. copy-on-write handle while another process writes ---- */

Test(readers, a_cow_handle_reads_only_committed_states_while_another_process_writes, .timeout = 60,
     .fini = th_cleanup)
{
    char name[256];
    mseg_map *cm;
    mseg *c = lf_cow_of_even_map(name, &cm);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        th_churn_odd_keys(name, MSEG_KEY_U64, NEVEN);
    char first[300];
    unsigned long gets, bad = lf_get_even_keys(c, cm, 3, &gets, first, sizeof first);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    mseg_close(c);
    cr_assert_eq(bad, 0, "after %lu gets through the copy-on-write handle, one of a key always present "
                 "(value == key) failed: %s", gets, first);
}

/* ---- 2. mseg_check while another process writes ---- */

/* mseg_check reads a copy-on-write view without the lock. While a writer
   works it must never call the sound segment damaged: it checks between
   two reads of op_seq with no operation in progress, and when the writer
   never pauses long enough it says so (EAGAIN) instead. */
Test(readers, mseg_check_of_a_sound_segment_in_use_reports_no_damage, .timeout = 60, .fini = th_cleanup)
{
    char name[256];
    mseg *s = lf_create(name);
    mseg_map *m = mseg_map_open(s, "m", MSEG_KEY_U64, 8, MSEG_CREATE);
    cr_assert_not_null(m);
    lf_fill_even(s, m);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        th_churn_odd_keys(name, MSEG_KEY_U64, NEVEN);
    int checks = 0, sound = 0, busy = 0, failed = 0;
    char first[512] = "";
    double t0 = th_now();
    while (th_now() - t0 < 5 && !failed) {
        struct mseg_report r;
        if (mseg_check(name, 0, &r) == 0)
            sound++;
        else if (errno == EAGAIN)
            busy++;
        else {
            failed = 1;
            snprintf(first, sizeof first, "errno %d: %s", errno, r.first_problem);
        }
        checks++;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    struct mseg_report r, quiet;
    int after = mseg_verify(s, &r);   /* the segment itself is sound */
    cr_assert_eq(mseg_check(name, 0, &quiet), 0, "with the writer gone: %s", quiet.first_problem);
    mseg_close(s);
    cr_log_info("%d checks while writing: %d sound, %d busy", checks, sound, busy);
    cr_assert_eq(after, 0, "the segment is damaged: %s", r.first_problem);
    cr_assert_eq(failed, 0, "check %d of a sound segment in use reported damage: %s", checks, first);
}

/* ---- 3. a read-only handle after a writer died halfway through applying ---- */

static void die_halfway_applying(const char *point, unsigned long n, void *arg)
{
    (void)n; (void)arg;
    if (strcmp(point, "log.applying") == 0)
        _exit(42);
}

static void put_and_die_halfway(void *arg)
{
    const char *name = arg;
    mseg *w = mseg_open(name, 0, NULL);
    CHILD_CHECK(w != NULL);
    mseg_map *m = mseg_map_open(w, "m", MSEG_KEY_U64, 8, 0);
    CHILD_CHECK(m != NULL);
    mseg_test_set_crash_hook(die_halfway_applying, NULL);
    uint64_t k = 1001, v = 1001;
    mseg_map_put(w, m, &k, 8, &v, 8);   /* records: leaf state, count, changes */
    _exit(0);
}

Test(readers, a_read_only_handle_never_reads_a_half_applied_operation, .timeout = 30, .fini = th_cleanup)
{
    char name[256], why[200];
    mseg *s = lf_create(name);
    mseg_map *m = mseg_map_open(s, "m", MSEG_KEY_U64, 8, MSEG_CREATE);
    cr_assert_not_null(m);
    for (uint64_t k = 0; k < 10; k++)
        cr_assert_eq(mseg_map_put(s, m, &k, 8, &k, 8), 0);
    mseg_close(s);
    mseg *r = mseg_open(name, MSEG_RDONLY, NULL);
    cr_assert_not_null(r, "%s", mseg_errmsg());
    mseg_map *rm = mseg_map_open(r, "m", MSEG_KEY_U64, 8, 0);
    cr_assert_not_null(rm, "%s", mseg_errmsg());
    int st = th_fork_run(put_and_die_halfway, name);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 42, "the writer %s",
              th_status_str(st, why, sizeof why));
    /* committed states: 10 entries (count 10) or 11 (count 11); or EAGAIN
       (README: "give up with EAGAIN after 200 ms if a writer died
       mid-operation and no read-write process is attached") */
    errno = 0;
    size_t len = mseg_map_len(r, rm);
    int len_errno = errno;
    uint64_t k = 1001;
    errno = 0;
    void *v = mseg_map_get(r, rm, &k, 8, NULL);
    int get_errno = errno;
    size_t walked = 0;
    struct mseg_cursor cur;
    int rc = mseg_map_first(r, rm, &cur);
    while (rc == 0) {
        walked++;
        rc = mseg_map_next(r, &cur);
    }
    int walk_errno = errno;
    mseg_close(r);
    cr_log_info("len %zu (errno %d), get 1001 %s (errno %d), walk %zu entries (ended errno %d)", len, len_errno,
                v ? "found" : "absent", get_errno, walked, walk_errno);
    if (len_errno == EAGAIN || get_errno == EAGAIN)
        return;
    cr_assert(len == walked && (len == 11) == (v != NULL),
              "a state no commit made: mseg_map_len %zu, key 1001 %s, a walk finds %zu entries (ended with errno %d)",
              len, v ? "present" : "absent", walked, walk_errno);
}

/* ---- 4. a cursor positioned inside a transaction that aborted ---- */

Test(readers, a_cursor_from_an_aborted_transaction_is_stale_after_later_changes, .timeout = 30,
     .fini = th_cleanup)
{
    char name[256];
    mseg *s = lf_create(name);
    mseg_map *m = mseg_map_open(s, "m", MSEG_KEY_U64, 8, MSEG_CREATE);
    cr_assert_not_null(m);
    for (uint64_t k = 0; k < 20; k += 2)
        cr_assert_eq(mseg_map_put(s, m, &k, 8, &k, 8), 0);
    cr_assert_eq(mseg_tx_begin(s), 0, "%s", mseg_errmsg());
    uint64_t k0 = 0, k2 = 2, k4 = 4;
    cr_assert_eq(mseg_map_del(s, m, &k0, 8), 0);
    cr_assert_eq(mseg_map_del(s, m, &k2, 8), 0);
    struct mseg_cursor c;
    cr_assert_eq(mseg_map_seek(s, m, &c, &k4, 8), 0, "%s", mseg_errmsg());
    uint64_t at;
    memcpy(&at, c.key, 8);
    cr_assert_eq(at, 4);
    cr_assert_eq(mseg_tx_abort(s), 0, "%s", mseg_errmsg());
    /* two committed changes: the map's `changes` word reaches the value the
       aborted transaction had given it */
    uint64_t k1 = 1, k3 = 3;
    cr_assert_eq(mseg_map_put(s, m, &k1, 8, &k1, 8), 0);
    cr_assert_eq(mseg_map_put(s, m, &k3, 8, &k3, 8), 0);
    errno = 0;
    int rc = mseg_map_next(s, &c);
    uint64_t next = 0;
    if (rc == 0)
        memcpy(&next, c.key, 8);
    mseg_close(s);
    cr_assert(rc == -1 && errno == ESTALE,
              "the map changed (an abort, two puts) since the cursor was positioned at key 4, "
              "yet next returned %d (errno %d) with key %llu", rc, errno, (unsigned long long)next);
}


/* ---- 5. named finds while another process rebuilds the directory ---- */

#define NKEEP 2000u          /* "keep-<i>" always exists, holding i */

static void keep_name(char *nm, size_t n, uint64_t i) { snprintf(nm, n, "keep-%llu", (unsigned long long)i); }

/* Constructs and destroys 3,000 other names, again and again, until killed:
   the directory's table fills with tombstones and is rebuilt, and freed
   tables are reused for new records. */
static void churn_names(const char *name)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    mseg *w = mseg_open(name, 0, NULL);
    CHILD_CHECK(w != NULL);
    char nm[32];
    for (;;) {
        for (uint64_t i = 0; i < 3000; i++) {
            uint64_t v = ~i;
            snprintf(nm, sizeof nm, "tmp-%llu", (unsigned long long)i);
            CHILD_CHECK(mseg_construct(w, nm, "uint64_t", 8, 1, &v) != NULL);
        }
        for (uint64_t i = 0; i < 3000; i++) {
            snprintf(nm, sizeof nm, "tmp-%llu", (unsigned long long)i);
            CHILD_CHECK(mseg_destroy(w, nm) == 0);
        }
    }
}

Test(readers, a_find_while_another_process_rebuilds_the_directory_finds_every_stable_object, .timeout = 60,
     .fini = th_cleanup)
{
    char name[256], nm[32];
    mseg *s = lf_create(name);
    for (uint64_t i = 0; i < NKEEP; i++) {
        keep_name(nm, sizeof nm, i);
        cr_assert_not_null(mseg_construct(s, nm, "uint64_t", 8, 1, &i), "%s", mseg_errmsg());
    }
    mseg *ro = mseg_open(name, MSEG_RDONLY, NULL);
    cr_assert_not_null(ro, "%s", mseg_errmsg());
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        churn_names(name);
    unsigned long finds = 0, bad = 0;
    char first[300] = "";
    double t0 = th_now();
    for (uint64_t r = 7; th_now() - t0 < 3 && bad == 0; r = r * 6364136223846793005ull + 1) {
        uint64_t i = (r >> 33) % NKEEP;
        mseg *h = (r >> 20) & 1 ? s : ro;   /* the read-write and the read-only handle */
        keep_name(nm, sizeof nm, i);
        size_t n = 0;
        uint64_t *v = mseg_find(h, nm, "uint64_t", 8, &n);
        finds++;
        if (!v || n != 1 || *v != i) {
            bad++;
            snprintf(first, sizeof first, "%s through the %s handle: %s", nm, h == s ? "read-write" : "read-only",
                     !v ? mseg_errmsg() : n != 1 ? "count not 1" : "wrong value");
        }
    }
    int st = 0;
    pid_t dead = waitpid(pid, &st, WNOHANG);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    mseg_close(ro);
    mseg_close(s);
    cr_assert_eq(dead, 0, "the churning writer stopped early (status %#x)", st);
    cr_assert_eq(bad, 0, "after %lu finds, one failed: %s", finds, first);
}

/* ---- 6. a copy-on-write handle's own private writes, read by its other threads ---- */

struct private_writer {
    mseg *c;
    mseg_map *m;
    volatile int stop;
    unsigned long ops, failed;
};

/* Puts and deletes odd keys through the copy-on-write handle: private
   writes, which other processes never see, until told to stop. */
static void *write_privately(void *arg)
{
    struct private_writer *w = arg;
    for (uint64_t r = 1; !w->stop; r = r * 6364136223846793005ull + 1442695040888963407ull) {
        uint64_t k = 2 * ((r >> 33) % NEVEN) + 1;
        int rc = (r >> 20) & 1 ? mseg_map_put(w->c, w->m, &k, 8, &k, 8) : mseg_map_del(w->c, w->m, &k, 8);
        w->ops++;
        if (rc && errno != ENOENT)
            w->failed++;
    }
    return NULL;
}

Test(readers, threads_of_a_cow_handle_read_only_committed_states_of_its_private_writes, .timeout = 60,
     .fini = th_cleanup)
{
    char name[256];
    mseg_map *cm;
    mseg *c = lf_cow_of_even_map(name, &cm);
    struct private_writer w = { .c = c, .m = cm };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, write_privately, &w), 0);
    char first[300];
    unsigned long gets, bad = lf_get_even_keys(c, cm, 3, &gets, first, sizeof first);
    w.stop = 1;
    pthread_join(t, NULL);
    mseg_close(c);
    cr_assert_gt(w.ops, 0);
    cr_assert_eq(w.failed, 0, "%lu of %lu private writes failed", w.failed, w.ops);
    cr_assert_eq(bad, 0, "after %lu gets beside %lu private writes, one failed: %s", gets, w.ops, first);
}

/* ---- 7. a copy-on-write view's verification while a writer works ---- */

/* The engine's own (mseg_check) verification of a copy-on-write view. */
int check_named(const char *name, unsigned flags, struct mseg_report *r,
                void (*before)(mseg *, void *), void *arg);

static void die_at_log_written(const char *point, unsigned long n, void *arg)
{
    (void)n; (void)arg;
    if (strcmp(point, "log.written") == 0)
        _exit(42);
}

/* A segment holding the map "m" filled by lf_fill_even, closed. */
static void lf_create_closed_even_map(char *name)
{
    mseg *s = lf_create(name);
    mseg_map *m = mseg_map_open(s, "m", MSEG_KEY_U64, 8, MSEG_CREATE);
    cr_assert_not_null(m);
    lf_fill_even(s, m);
    mseg_close(s);
}

/* A writer that dies with its construct logged, not committed: the
   segment then needs recovery, and nobody is attached. */
static void construct_and_die(void *arg)
{
    mseg *w = mseg_open(arg, 0, NULL);
    CHILD_CHECK(w != NULL);
    mseg_test_set_crash_hook(die_at_log_written, NULL);
    mseg_construct(w, "big", "u64", 8, 20000, NULL);
    _exit(0);
}

/* A writer that attaches (the first one: it recovers the file) and holds a
   transaction with 1.6 MB of fresh data written in place over what the
   committed free lists still show as a free block, for a second, then
   commits. */
static void hold_a_large_construct(void *arg)
{
    const char *name = ((const char **)arg)[0];
    int fd = (int)(intptr_t)((const char **)arg)[1];
    mseg *w = mseg_open(name, 0, NULL);
    CHILD_CHECK(w != NULL);
    size_t n = 200000;
    uint64_t *init = malloc(n * 8);
    CHILD_CHECK(init != NULL);
    for (size_t i = 0; i < n; i++)
        init[i] = 0xdeadbeefcafef00dull + i;
    CHILD_CHECK(mseg_tx_begin(w) == 0);
    CHILD_CHECK(mseg_construct(w, "big", "u64", 8, n, init) != NULL);
    CHILD_CHECK(write(fd, "x", 1) == 1);
    sleep(1);
    CHILD_CHECK(mseg_tx_commit(w) == 0);
    mseg_close(w);
    _exit(0);
}

/* A copy-on-write handle opened on an idle segment recovered "privately"
   at its open, with nothing to recover, and still stored 0 over the log
   head's "active" flag: that store made the log head page private for the
   handle's life. mseg_verify through it waits for a moment with no
   operation in progress by reading that flag, so it never saw a later
   writer's operation and read its fresh blocks, written in place before
   the commit over a free block's links, as damage: "bins: block 0x...'s
   back link is 0x40, expected 0", on a sound segment. (mseg_check reads
   through such a view.) */
Test(readers, a_cow_view_of_an_idle_segment_sees_a_later_writers_operation_in_progress, .timeout = 60,
     .fini = th_cleanup)
{
    char name[256], why[200];
    lf_create_closed_even_map(name);
    mseg *c = mseg_open(name, MSEG_COW, NULL);   /* nobody attached: the private "recovery" runs */
    cr_assert_not_null(c, "%s", mseg_errmsg());
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    const char *arg[2] = { name, (const char *)(intptr_t)pfd[1] };
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        hold_a_large_construct(arg);
    char ch;
    cr_assert_eq(read(pfd[0], &ch, 1), 1, "the writer did not start its transaction");
    struct mseg_report r;
    memset(&r, 0, sizeof r);
    errno = 0;
    int rc = mseg_verify(c, &r), e = errno;
    int st;
    waitpid(pid, &st, 0);
    mseg_close(c);
    close(pfd[0]);
    close(pfd[1]);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the writer %s", th_status_str(st, why, sizeof why));
    cr_assert(rc == 0 || e == EAGAIN, "mseg_verify through a copy-on-write view of a sound segment, while "
              "a writer's transaction was in progress: errno %d: %s", e, r.first_problem);
}

static int mix_calls;

/* check_named's hook, between its open (a private recovery: nobody was
   attached) and its verification: a writer attaches, recovers the file
   and changes the map a lot, then leaves. */
static void a_writer_attaches_and_works(mseg *view, void *arg)
{
    (void)view;
    if (mix_calls++)
        return;   /* only before the first look */
    const char *name = arg;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        mseg *w = mseg_open(name, 0, NULL);
        CHILD_CHECK(w != NULL);
        mseg_map *m = mseg_map_open(w, "m", MSEG_KEY_U64, 8, 0);
        CHILD_CHECK(m != NULL);
        for (uint64_t k = 0; k < 2000; k++) {
            uint64_t put = 2 * NEVEN + 1 + 2 * k, del = 2 * k;
            CHILD_CHECK(mseg_map_put(w, m, &put, 8, &put, 8) == 0);
            if (k % 3 == 0)
                CHILD_CHECK(mseg_map_del(w, m, &del, 8) == 0);
        }
        mseg_close(w);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
}

/* mseg_check opens a copy-on-write view and, when no writer is attached,
   applies the recovery a dead writer left due to that private view: the
   pages it writes (free lists rebuilt, log head) stop following the file.
   A writer that attached after that open changed the rest of the file
   under them, and the check read the mix as damage ("map node at 0x... is
   not a live block") on a sound segment. The kill -9 harness met it in
   about 1 check in 80 with one writer dying and restarting (README: the
   check "never reports damage that is not there"). */
Test(readers, mseg_check_is_not_fooled_by_a_writer_that_attaches_after_its_private_recovery, .timeout = 60,
     .fini = th_cleanup)
{
    char name[256], why[200];
    lf_create_closed_even_map(name);
    int st = th_fork_run(construct_and_die, name);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 42, "the writer %s",
              th_status_str(st, why, sizeof why));
    struct mseg_report r;
    memset(&r, 0, sizeof r);
    errno = 0;
    int rc = check_named(name, 0, &r, a_writer_attaches_and_works, name), e = errno;
    cr_assert_eq(mix_calls >= 1, 1);
    struct mseg_report quiet;
    cr_assert_eq(mseg_check(name, 0, &quiet), 0, "the segment is damaged: %s", quiet.first_problem);
    cr_assert(rc == 0 || e == EAGAIN, "mseg_check of a sound segment, a writer having attached after its "
              "private recovery: errno %d: %s", e, r.first_problem);
}

/* ---- a heap walk beside a writer's busy stretch ---- */

#define BUSY_MS   150   /* the writer's stretches of back-to-back operations */
#define PAUSE_MS  30    /* and the pauses between them */

/* Alternates stretches of back-to-back allocations and frees with pauses,
   writing one byte to fd as each stretch starts, until killed. */
static void busy_writer(void *name, int fd)
{
    mseg *w = mseg_open(name, 0, NULL);
    if (!w)
        _exit(2);
    for (;;) {
        if (write(fd, "B", 1) != 1)
            _exit(3);
        double end = th_now() + BUSY_MS / 1000.0;
        while (th_now() < end) {
            void *p = mseg_alloc(w, 48);
            if (!p || mseg_free(w, p))
                _exit(4);
        }
        usleep(PAUSE_MS * 1000);
    }
}

/* inspect_heap_stats (mseg stats and mseg info) gave up after 64 walks
   that a writer raced, which took under a millisecond of a busy stretch:
   beside a busy writer, stats and info exited 3 in about half their runs
   while mseg check, which waits up to 5 s for a quiet moment, did not.
   Each walk here starts as a busy stretch does, and must succeed once the
   stretch is over. Before the fix: EAGAIN, "writers kept changing the heap
   during 64 walks". */
Test(readers, a_heap_walk_outlasts_a_writers_busy_stretch, .timeout = 60, .fini = th_cleanup)
{
    char name[256];
    th_name(name, 0);
    struct mseg_config cfg = { .size = 4 << 20 };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &cfg);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    for (int i = 0; i < 200; i++)
        cr_assert_not_null(mseg_alloc(s, 64 + (size_t)i), "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0);
    int from_writer;
    pid_t pid = th_fork_piped(busy_writer, name, &from_writer);
    cr_assert_geq(pid, 0, "pipe or fork: %s", strerror(errno));
    mseg *r = mseg_open(name, MSEG_RDONLY, NULL);
    int failures = 0;
    char why[300] = "";
    for (int round = 0; r && round < 3; round++) {
        char b;
        if (read(from_writer, &b, 1) != 1)
            break;
        struct inspect_stats st;
        if (inspect_heap_stats(r, &st, NULL, NULL) != 0) {
            failures++;
            snprintf(why, sizeof why, "%s", mseg_errmsg());
        } else if (st.blocks_used < 200) {
            failures++;
            snprintf(why, sizeof why, "the walk counted %llu used blocks, expected at least 200",
                     (unsigned long long)st.blocks_used);
        }
    }
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    close(from_writer);
    cr_assert_not_null(r, "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(r), 0);
    cr_assert(WIFSIGNALED(status), "the writer stopped early: status %d", status);
    cr_assert_eq(failures, 0, "%d of 3 walks failed beside a busy writer: %s", failures, why);
}

/* ---- a first writer's recovery under an earlier copy-on-write view ----

   The tool's readers (info, ls, dump, stats) read a copy-on-write view and
   then ask whether a writer attached meanwhile (inspect_view_moved: the
   writers' epoch moved). A first writer recovered the file first and moved
   the epoch after: a read that overlapped the recovery and asked before
   the move took a half-recovered state for a whole one. Now the epoch
   moves before recovery stores anything: at every recovery point the
   earlier view already says it moved. */
static mseg *rec_view;
static int rec_points, rec_unnoticed;

static void note_view_at_recovery(const char *point, unsigned long n, void *arg)
{
    (void)n; (void)arg;
    if (strncmp(point, "recover.", 8) != 0)
        return;
    rec_points++;
    if (!inspect_view_moved(rec_view))
        rec_unnoticed++;
}

Test(readers, a_first_writers_recovery_moves_the_epoch_before_it_stores, .timeout = 30, .fini = th_cleanup)
{
    char name[256], why[200];
    lf_create_closed_even_map(name);
    int st = th_fork_run(construct_and_die, name);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 42, "the writer %s",
              th_status_str(st, why, sizeof why));
    rec_view = mseg_open(name, MSEG_COW, NULL);   /* nobody attached: a private recovery */
    cr_assert_not_null(rec_view, "%s", mseg_errmsg());
    cr_assert(!inspect_view_moved(rec_view));
    mseg_test_set_crash_hook(note_view_at_recovery, NULL);
    mseg *w = mseg_open(name, 0, NULL);            /* the first writer: it recovers the file */
    mseg_test_set_crash_hook(NULL, NULL);
    cr_assert_not_null(w, "%s", mseg_errmsg());
    cr_assert_gt(rec_points, 0, "the writer's open reached no recovery point");
    cr_assert_eq(rec_unnoticed, 0, "at %d of %d recovery points, a copy-on-write view opened before could not "
                 "tell that a writer had attached", rec_unnoticed, rec_points);
    cr_assert(inspect_view_moved(rec_view));
    mseg_close(w);
    mseg_close(rec_view);
}

/* ---- a cursor on a deleted map, and a map made later at its address ---- */

/* Each new map's `changes` word starts at the count of maps made so far,
   shifted left 32 (layout.h: "a cursor on a deleted map never matches a
   map built at its address"). The cursor kept only the word's low 40
   bits, so 8 bits of that count: the 256th map made after it, built at
   the deleted map's address with as many changes, passed its check, and
   a step went on in the new map's leaf. */
Test(readers, a_cursor_on_a_deleted_map_never_steps_into_a_later_map_at_its_address, .timeout = 30,
     .fini = th_cleanup)
{
    char name[256];
    mseg *s = lf_create(name);
    mseg_map *old = mseg_map_new(s, MSEG_KEY_U64, 8);
    cr_assert_not_null(old, "%s", mseg_errmsg());
    for (uint64_t k = 1; k <= 2; k++)
        cr_assert_eq(mseg_map_put(s, old, &k, 8, &k, 8), 0, "%s", mseg_errmsg());
    struct mseg_cursor c;
    cr_assert_eq(mseg_map_first(s, old, &c), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_map_delete(s, old), 0, "%s", mseg_errmsg());
    for (int i = 0; i < 255; i++)
        cr_assert_eq(mseg_map_delete(s, mseg_map_new(s, MSEG_KEY_U64, 8)), 0, "%s", mseg_errmsg());
    mseg_map *later = mseg_map_new(s, MSEG_KEY_U64, 8);
    cr_assert_eq(later, old, "the allocator no longer gives the 256th map the deleted map's address: "
                 "this test needs another way to put a map there");
    for (uint64_t k = 5; k <= 6; k++)
        cr_assert_eq(mseg_map_put(s, later, &k, 8, &k, 8), 0, "%s", mseg_errmsg());
    errno = 0;
    int rc = mseg_map_next(s, &c);
    uint64_t key = 0;
    if (rc == 0)
        memcpy(&key, c.key, 8);
    int e = errno;
    mseg_close(s);
    cr_assert(rc == -1 && e == ESTALE, "a cursor on a deleted map, 256 maps later, stepped to key %llu of the map "
              "made at its address (rc %d, errno %d)", (unsigned long long)key, rc, e);
}

/* ---- readers against an oracle, while a writer churns (and is killed) ----

   The writer stores only values derivable from their key (rs_val, rs_bval:
   a key hash and a version), so a reader can verify every value it gets;
   the keys 4i (i < RS_STABLE) are always present, keys from RS_NEVER on are
   only ever put by transactions that abort, the map "b" never changes
   after its fill, the vector's element i is always rs_val(i, 1), and the
   named objects "n-<even>" are never destroyed. A value the reader copies
   after the call returned may legitimately change under it (README: the
   pointers stay valid until the map is next modified), so values are
   judged only when the writer's guard word, odd while it runs a call, read
   the same even value before the call and after the copy. Whether a key is
   found, and a cursor's order, are judged always. Seconds per test:
   MSEG_READERS_SECONDS (default 2). */

#define RS_STABLE 1500u
#define RS_KEYS   (4 * RS_STABLE)
#define RS_NEVER  1000000000ull
#define RS_B      1000u           /* map "b": keys 3i, values rs_mix(key) */
#define RS_NAMES  200u
#define RS_ABORTED 0xffffffu      /* the version of values only aborted transactions store */

static uint64_t rs_mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    return k ^ (k >> 33);
}

#define RS_LOW40 ((1ull << 40) - 1)
static uint64_t rs_val(uint64_t k, uint64_t ver) { return ver << 40 | (rs_mix(k) & RS_LOW40); }
static bool rs_val_ok(uint64_t k, uint64_t v)
{
    return (v & RS_LOW40) == (rs_mix(k) & RS_LOW40) && v >> 40 != RS_ABORTED;
}

/* A variable-length value of 16 to 315 bytes: key, version, then bytes
   derived from both. */
#define RS_BVAL_MAX 320
static size_t rs_bval(uint64_t k, uint64_t ver, uint8_t *out)
{
    size_t len = 16 + (size_t)(rs_mix(k ^ ver << 20) % 300);
    memcpy(out, &k, 8);
    memcpy(out + 8, &ver, 8);
    for (size_t i = 16; i < len; i++)
        out[i] = (uint8_t)(rs_mix(k * 31 + ver + i) >> 7);
    return len;
}

static bool rs_bval_ok(uint64_t k, const uint8_t *v, size_t len)
{
    uint8_t want[RS_BVAL_MAX];
    uint64_t kk, ver;
    if (len < 16 || len > RS_BVAL_MAX)
        return false;
    memcpy(&kk, v, 8);
    memcpy(&ver, v + 8, 8);
    return kk == k && ver != RS_ABORTED && rs_bval(k, ver, want) == len && memcmp(want, v, len) == 0;
}

static size_t rs_bkey(uint64_t k, char *out) { return (size_t)sprintf(out, "key-%010llu", (unsigned long long)k); }
static void rs_name(uint64_t i, char *out) { sprintf(out, "n-%llu", (unsigned long long)i); }

/* The writer's guard word (the named object "guard"). */
static volatile uint64_t *rs_guard;

struct rs_writer {
    mseg *w;
    mseg_map *a, *bytes;
    mseg_vec *v;
    void *big[4];
};

static void rs_write_u64(struct rs_writer *x, uint64_t r, uint64_t k, uint64_t ver)
{
    uint64_t v = rs_val(k, ver);
    if (k % 4 == 0 || (r & 1))
        CHILD_CHECK(mseg_map_put(x->w, x->a, &k, 8, &v, 8) == 0);
    else
        CHILD_CHECK(mseg_map_del(x->w, x->a, &k, 8) == 0 || errno == ENOENT);
}

static void rs_write_bytes(struct rs_writer *x, uint64_t r, uint64_t k, uint64_t ver)
{
    char kb[32];
    uint8_t v[RS_BVAL_MAX];
    size_t kl = rs_bkey(k, kb), vl = rs_bval(k, ver, v);
    if (k % 4 == 0 || (r & 1))
        CHILD_CHECK(mseg_map_put(x->w, x->bytes, kb, kl, v, vl) == 0);
    else
        CHILD_CHECK(mseg_map_del(x->w, x->bytes, kb, kl) == 0 || errno == ENOENT);
}

/* Pushes rs_val(i, 1) at index i (the buffer moves as it grows), or pops. */
static void rs_write_vec(struct rs_writer *x, uint64_t r)
{
    size_t n = mseg_vec_len(x->w, x->v);
    uint64_t e = rs_val(n, 1);
    if (r % 3 == 0 && n > 16)
        CHILD_CHECK(mseg_vec_pop(x->w, x->v, NULL) == 0);
    else
        CHILD_CHECK(mseg_vec_push(x->w, x->v, &e) == 0);
}

/* Constructs or destroys an odd-numbered name: 4 copies of rs_val(i, ver). */
static void rs_write_named(struct rs_writer *x, uint64_t r, uint64_t ver)
{
    uint64_t i = 2 * (r % (RS_NAMES / 2)) + 1, init[4];
    char nm[32];
    rs_name(i, nm);
    for (int j = 0; j < 4; j++)
        init[j] = rs_val(i, ver);
    if (r & 1)
        CHILD_CHECK(mseg_construct(x->w, nm, "u64", 8, 4, init) != NULL || errno == EEXIST);
    else
        CHILD_CHECK(mseg_destroy(x->w, nm) == 0 || errno == ENOENT);
}

/* A transaction that puts never-committed keys and aborted versions of
   stable ones, deletes stable keys, pushes, destroys a stable name: then
   aborts. */
static void rs_write_aborted(struct rs_writer *x, uint64_t r)
{
    CHILD_CHECK(mseg_tx_begin(x->w) == 0);
    for (unsigned j = 0; j < 4; j++) {
        uint64_t never = RS_NEVER + (r >> 7) % 1000 + j, bad = rs_val(never, RS_ABORTED);
        uint64_t k = 4 * ((r >> (3 + j)) % RS_STABLE), kbad = rs_val(k, RS_ABORTED);
        uint64_t gone = 4 * ((r >> (9 + j)) % RS_STABLE);
        char kb[32];
        CHILD_CHECK(mseg_map_put(x->w, x->a, &never, 8, &bad, 8) == 0);
        CHILD_CHECK(mseg_map_put(x->w, x->a, &k, 8, &kbad, 8) == 0);
        CHILD_CHECK(mseg_map_del(x->w, x->a, &gone, 8) == 0 || errno == ENOENT);
        size_t kl = rs_bkey(gone, kb);
        CHILD_CHECK(mseg_map_del(x->w, x->bytes, kb, kl) == 0 || errno == ENOENT);
        kl = rs_bkey(never, kb);
        CHILD_CHECK(mseg_map_put(x->w, x->bytes, kb, kl, kb, 3) == 0);
    }
    uint64_t e = rs_val(0, RS_ABORTED);
    CHILD_CHECK(mseg_vec_push(x->w, x->v, &e) == 0);
    CHILD_CHECK(mseg_destroy(x->w, "n-0") == 0);
    CHILD_CHECK(mseg_tx_abort(x->w) == 0);
}

/* Allocates or frees a 1 MiB block: the segment grows. */
static void rs_write_grow(struct rs_writer *x, uint64_t r)
{
    void **b = &x->big[r % 4];
    if (*b) {
        CHILD_CHECK(mseg_free(x->w, *b) == 0);
        *b = NULL;
    } else
        *b = mseg_alloc(x->w, 1u << 20);
}

static void rs_write_one(struct rs_writer *x, uint64_t r, uint64_t ver)
{
    unsigned op = (unsigned)(r >> 58);   /* 0..63 */
    uint64_t k = (r >> 20) % RS_KEYS;
    __atomic_add_fetch(rs_guard, 1, __ATOMIC_SEQ_CST);
    if (op < 28)
        rs_write_u64(x, op, k, ver);
    else if (op < 44)
        rs_write_bytes(x, op, k, ver);
    else if (op < 50)
        rs_write_vec(x, r >> 8);
    else if (op < 54)
        rs_write_named(x, r >> 8, ver);
    else if (op < 60)
        rs_write_aborted(x, r);
    else
        rs_write_grow(x, r >> 8);
    __atomic_add_fetch(rs_guard, 1, __ATOMIC_SEQ_CST);
}

static void rs_writer_run(const char *name, uint64_t seed)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct rs_writer x = { .w = mseg_open(name, 0, NULL) };
    CHILD_CHECK(x.w != NULL);
    x.a = mseg_map_open(x.w, "a", MSEG_KEY_U64, 8, 0);
    x.bytes = mseg_map_open(x.w, "bytes", MSEG_KEY_BYTES, 0, 0);
    x.v = mseg_vec_open(x.w, "v", 8, 0);
    rs_guard = mseg_find(x.w, "guard", "u64", 8, NULL);
    CHILD_CHECK(x.a && x.bytes && x.v && rs_guard);
    if (*rs_guard & 1)
        ++*rs_guard;   /* the writer before was killed inside a call */
    uint64_t state = seed;
    for (uint64_t ver = 1;; ver = ver % 0xfffff + 1)
        rs_write_one(&x, th_rand(&state), ver);
}

/* ---- the reading side ---- */

struct rs_handle {
    mseg *h;
    const char *what;
    mseg_map *a, *bytes, *b;
    mseg_vec *v;
};

struct rs_tally {
    unsigned long reads, eagain, walks, stale, bad;
    char first[400];
};

#define RS_BAD(t, ...)                                                        \
    do {                                                                      \
        if (!(t)->bad++)                                                      \
            snprintf((t)->first, sizeof (t)->first, __VA_ARGS__);             \
    } while (0)

static uint64_t rs_guard_read(void)
{
    uint64_t g = *rs_guard;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return g;
}

/* No writer call ran between rs_guard_read() == g and now. */
static bool rs_quiet_since(uint64_t g)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return !(g & 1) && *rs_guard == g;
}

/* A failed read: EAGAIN (a writer killed mid-call) is allowed, nothing else. */
static void rs_failed(struct rs_tally *t, const struct rs_handle *h, const char *call)
{
    if (errno == EAGAIN)
        t->eagain++;
    else
        RS_BAD(t, "%s through the %s handle: errno %d: %s", call, h->what, errno, mseg_errmsg());
}

static void rs_check_get(struct rs_handle *h, struct rs_tally *t, uint64_t r)
{
    uint64_t k = 4 * (r % RS_STABLE), never = RS_NEVER + (r >> 32) % 1010;
    uint64_t g = rs_guard_read();
    size_t vlen = 0;
    errno = 0;
    const uint64_t *p = mseg_map_get(h->h, h->a, &k, 8, &vlen);
    if (!p)
        return rs_failed(t, h, "a get of a key always present");
    uint64_t v = *(volatile const uint64_t *)p;
    if (vlen != 8 || (rs_quiet_since(g) && !rs_val_ok(k, v)))
        RS_BAD(t, "%s handle: key %llu: value %#llx (%zu bytes), which no put stored", h->what,
               (unsigned long long)k, (unsigned long long)v, vlen);
    errno = 0;
    if (mseg_map_get(h->h, h->a, &never, 8, NULL))
        RS_BAD(t, "%s handle: key %llu, put only by aborted transactions, was found", h->what,
               (unsigned long long)never);
    else if (errno != ENOENT)
        rs_failed(t, h, "a get of an absent key");
}

static void rs_check_bytes_get(struct rs_handle *h, struct rs_tally *t, uint64_t r)
{
    char kb[32];
    uint64_t k = 4 * (r % RS_STABLE), g = rs_guard_read();
    size_t kl = rs_bkey(k, kb), vlen = 0;
    errno = 0;
    const uint8_t *p = mseg_map_get(h->h, h->bytes, kb, kl, &vlen);
    if (!p)
        return rs_failed(t, h, "a get of a byte key always present");
    uint8_t copy[RS_BVAL_MAX];
    memcpy(copy, p, vlen < sizeof copy ? vlen : sizeof copy);
    if (rs_quiet_since(g) && !rs_bval_ok(k, copy, vlen))
        RS_BAD(t, "%s handle: byte key %s: a %zu-byte value no put stored", h->what, kb, vlen);
}

/* A cursor's entry, copied out: trusted once the next step succeeds or
   ends with ENOENT (README). */
struct rs_entry {
    uint64_t key;
    uint8_t val[RS_BVAL_MAX];
    size_t vlen;
};

static void rs_copy_entry(const struct mseg_cursor *c, bool bytes, struct rs_entry *e)
{
    char kb[32] = "";
    e->key = UINT64_MAX;
    if (!bytes)
        memcpy(&e->key, c->key, 8);
    else if (c->klen < sizeof kb) {
        memcpy(kb, c->key, c->klen);
        unsigned long long n;
        if (sscanf(kb, "key-%llu", &n) == 1)
            e->key = n;
    }
    e->vlen = c->vlen;
    memcpy(e->val, c->val, c->vlen < sizeof e->val ? c->vlen : sizeof e->val);
}

/* Judges one trusted entry of a walk that expects the stable key *next
   next: keys ascend, values verify, never-committed keys never show, and
   no stable key is skipped or repeated. False stops the walk. */
static bool rs_judge_entry(struct rs_handle *h, struct rs_tally *t, bool bytes, const struct rs_entry *e,
                           uint64_t *prev, uint64_t *next)
{
    uint64_t v;
    memcpy(&v, e->val, 8);
    bool ok = bytes ? rs_bval_ok(e->key, e->val, e->vlen) : e->vlen == 8 && rs_val_ok(e->key, v);
    if (e->key >= RS_NEVER || (*prev != UINT64_MAX && e->key <= *prev) || !ok) {
        RS_BAD(t, "%s handle, %s map walk: key %llu after %llu, value %s", h->what, bytes ? "byte-key" : "u64",
               (unsigned long long)e->key, (unsigned long long)*prev, ok ? "sound" : "that no put stored");
        return false;
    }
    if (e->key % 4 == 0) {
        if (e->key != *next) {
            RS_BAD(t, "%s handle, %s map walk: stable key %llu came where %llu was due", h->what,
                   bytes ? "byte-key" : "u64", (unsigned long long)e->key, (unsigned long long)*next);
            return false;
        }
        *next += 4;
    }
    *prev = e->key;
    return true;
}

/* Walks map a or "bytes" from the start or from a stable key. ESTALE (the
   writer changed the map) ends it early; a walk that reaches the end
   saw every stable key from where it began. */
static void rs_check_walk(struct rs_handle *h, struct rs_tally *t, uint64_t r, bool bytes)
{
    mseg_map *m = bytes ? h->bytes : h->a;
    uint64_t from = (r & 1) ? 4 * ((r >> 8) % RS_STABLE) : 0, prev = UINT64_MAX, next = from;
    char kb[32];
    size_t kl = rs_bkey(from, kb);
    struct mseg_cursor c;
    struct rs_entry e;
    errno = 0;
    int rc = !(r & 1) ? mseg_map_first(h->h, m, &c) : bytes ? mseg_map_seek(h->h, m, &c, kb, kl)
                                                            : mseg_map_seek(h->h, m, &c, &from, 8);
    while (rc == 0) {
        rs_copy_entry(&c, bytes, &e);
        errno = 0;
        rc = mseg_map_next(h->h, &c);
        if ((rc == 0 || errno == ENOENT) && !rs_judge_entry(h, t, bytes, &e, &prev, &next))
            return;
    }
    if (errno == ESTALE)
        t->stale++;
    else if (errno != ENOENT)
        rs_failed(t, h, "a walk");
    else if (next != RS_KEYS)
        RS_BAD(t, "%s handle, %s map walk from %llu: ended with stable keys up to %llu", h->what,
               bytes ? "byte-key" : "u64", (unsigned long long)from, (unsigned long long)next);
    else
        t->walks++;
}

/* Map "b" never changes: a walk gives all of it, in order, never ESTALE. */
static void rs_check_unchanged_walk(struct rs_handle *h, struct rs_tally *t)
{
    struct mseg_cursor c;
    uint64_t i = 0;
    errno = 0;
    int rc = mseg_map_first(h->h, h->b, &c);
    for (; rc == 0; i++) {
        uint64_t k, v;
        memcpy(&k, c.key, 8);
        memcpy(&v, c.val, 8);
        if (k != 3 * i || v != rs_mix(k)) {
            RS_BAD(t, "%s handle: entry %llu of the unchanged map: key %llu, value %#llx", h->what,
                   (unsigned long long)i, (unsigned long long)k, (unsigned long long)v);
            return;
        }
        errno = 0;
        rc = mseg_map_next(h->h, &c);
    }
    if (errno == ENOENT && i == RS_B)
        t->walks++;
    else if (errno == ENOENT || errno == ESTALE)
        RS_BAD(t, "%s handle: a walk of the unchanged map ended after %llu of %u entries: %s", h->what,
               (unsigned long long)i, RS_B, mseg_errmsg());
    else
        rs_failed(t, h, "a walk of the unchanged map");
}

static void rs_check_vec(struct rs_handle *h, struct rs_tally *t, uint64_t r)
{
    uint64_t g = rs_guard_read();
    size_t i = (size_t)(r % 16);   /* the writer never pops below 16 */
    errno = 0;
    const uint64_t *p = mseg_vec_at(h->h, h->v, i);
    if (!p)
        return rs_failed(t, h, "an element of the vector");
    uint64_t e = *(volatile const uint64_t *)p;
    if (rs_quiet_since(g) && e != rs_val(i, 1))
        RS_BAD(t, "%s handle: vector element %zu is %#llx", h->what, i, (unsigned long long)e);
}

static void rs_check_named(struct rs_handle *h, struct rs_tally *t, uint64_t r)
{
    uint64_t i = r % RS_NAMES, g = rs_guard_read(), x[4];
    char nm[32];
    size_t n = 0;
    rs_name(i, nm);
    errno = 0;
    const uint64_t *p = mseg_find(h->h, nm, "u64", 8, &n);
    if (!p) {
        if (i % 2 == 0 || errno != ENOENT)
            rs_failed(t, h, i % 2 ? "a find" : "a find of a name never destroyed");
        return;
    }
    memcpy(x, p, sizeof x);
    if (n != 4 || (rs_quiet_since(g) && (!rs_val_ok(i, x[0]) || x[1] != x[0] || x[2] != x[0] || x[3] != x[0])))
        RS_BAD(t, "%s handle: %s has %zu elements, first %#llx, contents no construct wrote", h->what, nm, n,
               (unsigned long long)x[0]);
}

static void rs_check_one(struct rs_handle *h, struct rs_tally *t, uint64_t r)
{
    unsigned what = (unsigned)(r >> 60);   /* 0..15 */
    r &= (1ull << 60) - 1;
    if (what < 5)
        rs_check_get(h, t, r);
    else if (what < 8)
        rs_check_bytes_get(h, t, r);
    else if (what < 10)
        rs_check_walk(h, t, r, false);
    else if (what < 11)
        rs_check_walk(h, t, r, true);
    else if (what < 12)
        rs_check_unchanged_walk(h, t);
    else if (what < 14)
        rs_check_vec(h, t, r);
    else
        rs_check_named(h, t, r);
    t->reads++;
}

/* The segment the writer works on: maps a, bytes (the stable keys), b
   (unchanged), vector v (32 elements), the even names, the guard. */
static void rs_fill(mseg *s)
{
    mseg_map *a = mseg_map_open(s, "a", MSEG_KEY_U64, 8, MSEG_CREATE);
    mseg_map *bytes = mseg_map_open(s, "bytes", MSEG_KEY_BYTES, 0, MSEG_CREATE);
    mseg_map *b = mseg_map_open(s, "b", MSEG_KEY_U64, 8, MSEG_CREATE);
    mseg_vec *v = mseg_vec_open(s, "v", 8, MSEG_CREATE);
    cr_assert(a && bytes && b && v, "%s", mseg_errmsg());
    cr_assert_not_null(rs_guard = mseg_construct(s, "guard", "u64", 8, 1, NULL), "%s", mseg_errmsg());
    for (uint64_t i = 0; i < RS_STABLE; i++) {
        uint64_t k = 4 * i, val = rs_val(k, 1);
        char kb[32];
        uint8_t bv[RS_BVAL_MAX];
        size_t kl = rs_bkey(k, kb), vl = rs_bval(k, 1, bv);
        cr_assert_eq(mseg_map_put(s, a, &k, 8, &val, 8), 0, "%s", mseg_errmsg());
        cr_assert_eq(mseg_map_put(s, bytes, kb, kl, bv, vl), 0, "%s", mseg_errmsg());
    }
    for (uint64_t i = 0; i < RS_B; i++) {
        uint64_t k = 3 * i, val = rs_mix(k);
        cr_assert_eq(mseg_map_put(s, b, &k, 8, &val, 8), 0, "%s", mseg_errmsg());
    }
    for (uint64_t i = 0; i < 32; i++) {
        uint64_t e = rs_val(i, 1);
        cr_assert_eq(mseg_vec_push(s, v, &e), 0, "%s", mseg_errmsg());
    }
    for (uint64_t i = 0; i < RS_NAMES; i += 2) {
        uint64_t init[4] = { rs_val(i, 1), rs_val(i, 1), rs_val(i, 1), rs_val(i, 1) };
        char nm[32];
        rs_name(i, nm);
        cr_assert_not_null(mseg_construct(s, nm, "u64", 8, 4, init), "%s", mseg_errmsg());
    }
}

static void rs_open_handle(struct rs_handle *h, mseg *s, const char *what)
{
    h->h = s;
    h->what = what;
    cr_assert_not_null(s, "open the %s handle: %s", what, mseg_errmsg());
    h->a = mseg_map_open(s, "a", MSEG_KEY_U64, 8, 0);
    h->bytes = mseg_map_open(s, "bytes", MSEG_KEY_BYTES, 0, 0);
    h->b = mseg_map_open(s, "b", MSEG_KEY_U64, 8, 0);
    h->v = mseg_vec_open(s, "v", 8, 0);
    cr_assert(h->a && h->bytes && h->b && h->v, "%s handle: %s", what, mseg_errmsg());
}

static double rs_seconds(void)
{
    const char *e = getenv("MSEG_READERS_SECONDS");
    return e && atof(e) > 0 ? atof(e) : 2;
}

static pid_t rs_start_writer(const char *name, uint64_t seed)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        rs_writer_run(name, seed);
    return pid;
}

/* Reads through a read-only, a copy-on-write and the read-write handle
   while the writer works; with kill_every_ms, kills it with SIGKILL about
   that often and starts another. Failing reads go to t; the writer's
   deaths other than the test's kills to *writer_status. */
static void rs_run(struct rs_tally *t, unsigned kill_every_ms, int *writer_status)
{
    char name[256];
    th_name(name, 0);
    struct mseg_config cfg = { .size = 8 * MiB, .max_size = 64 * MiB };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &cfg);
    cr_assert_not_null(s, "create %s: %s", name, mseg_errmsg());
    rs_fill(s);
    struct rs_handle hs[3];
    rs_open_handle(&hs[0], mseg_open(name, MSEG_RDONLY, NULL), "read-only");
    rs_open_handle(&hs[1], mseg_open(name, MSEG_COW, NULL), "copy-on-write");
    rs_open_handle(&hs[2], s, "read-write");
    uint64_t seed = 1, state = 42;
    pid_t pid = rs_start_writer(name, seed);
    double t0 = th_now(), next_kill = t0 + kill_every_ms / 1000.0;
    *writer_status = 0;
    while (th_now() - t0 < rs_seconds() && t->bad == 0 && *writer_status == 0) {
        for (int i = 0; i < 30; i++)
            rs_check_one(&hs[i % 3], t, th_rand(&state));
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
                *writer_status = st ? st : -1;
            pid = rs_start_writer(name, ++seed);
        }
        if (kill_every_ms && th_now() >= next_kill) {
            kill(pid, SIGKILL);
            next_kill = th_now() + (double)(th_rand(&state) % (2 * kill_every_ms + 1)) / 1000.0;
        }
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    struct mseg_report rep;
    if (mseg_verify(s, &rep))
        RS_BAD(t, "the segment is damaged after the run: %s", rep.first_problem);
    mseg_close(hs[0].h);
    mseg_close(hs[1].h);
    mseg_close(s);
    cr_log_info("%lu reads, %lu whole walks, %lu stale walks, %lu EAGAIN", t->reads, t->walks, t->stale, t->eagain);
}

/* rs_run, then: no wrong answer, no writer death but the test's kills,
   and some walk reached the end. */
static void rs_expect_committed_states(unsigned kill_every_ms)
{
    struct rs_tally t = { 0 };
    int writer;
    char why[200];
    rs_run(&t, kill_every_ms, &writer);
    cr_assert_eq(writer, 0, "the writer %s", th_status_str(writer, why, sizeof why));
    cr_assert_eq(t.bad, 0, "after %lu reads, %lu wrong; the first: %s", t.reads, t.bad, t.first);
    cr_assert_gt(t.walks, 0, "no walk reached the end");
}

Test(readers, every_read_answers_from_a_committed_state_while_a_writer_churns, .timeout = 120,
     .fini = th_cleanup)
{
    rs_expect_committed_states(0);
}

Test(readers, every_read_answers_from_a_committed_state_while_writers_are_killed, .timeout = 120,
     .fini = th_cleanup)
{
    rs_expect_committed_states(5);
}

/* ---- a snapshot of the directory beside writers that never pause ---- */

static uint64_t *busy_seq;

/* What a writer's operation does to the sequence word, as often as the
   timer fires: whatever the scheduler does, every attempt at a read that
   lasts longer than a period races with one. */
static void one_more_operation(int sig)
{
    (void)sig;
    __atomic_add_fetch(busy_seq, 2, __ATOMIC_RELEASE);
}

/* Writers that never pause, as far as the lock-free readers of s can tell
   (one_more_operation every 100 us), until busy_writers_stop. */
static void busy_writers_start(mseg *s)
{
    busy_seq = &((struct mseg_runtime *)mseg_at(s, MSEG_RUNTIME_OFF))->op_seq;
    signal(SIGALRM, one_more_operation);
    struct itimerval every_100us = { { 0, 100 }, { 0, 100 } };
    cr_assert_eq(setitimer(ITIMER_REAL, &every_100us, NULL), 0);
}

static void busy_writers_stop(void)
{
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_DFL);
}

static int count_named(const struct mseg_named *n, void *arg)
{
    (void)n;
    ++*(size_t *)arg;
    return 0;
}

/* mseg_named_foreach copies the whole directory in one optimistic read.
   Through a read-only or copy-on-write handle, which cannot take the lock,
   it retried for as long as writers raced it, with no end: a directory
   large enough that no copy fits between two operations made it spin for
   ever (here, the test's timeout). It gives up with EAGAIN, as mseg_check
   and the heap walks do (seg_read_retry). */
Test(readers, a_directory_snapshot_beside_writers_that_never_pause_ends, .timeout = 60, .fini = th_cleanup)
{
    char name[256], nm[32];
    mseg *s = lf_create(name);
    for (uint64_t i = 0; i < 20000; i++) {
        keep_name(nm, sizeof nm, i);
        cr_assert_not_null(mseg_construct(s, nm, "uint64_t", 8, 1, &i), "%s", mseg_errmsg());
    }
    mseg *ro = mseg_open(name, MSEG_RDONLY, NULL);
    cr_assert_not_null(ro, "%s", mseg_errmsg());
    size_t quiet = 0;
    cr_assert_eq(mseg_named_foreach(ro, count_named, &quiet), 0, "%s", mseg_errmsg());
    cr_assert_eq(quiet, 20000);
    busy_writers_start(s);
    size_t n = 0;
    errno = 0;
    int rc = mseg_named_foreach(ro, count_named, &n), e = errno;
    busy_writers_stop();
    mseg_close(ro);
    mseg_close(s);
    cr_assert(rc == -1 && e == EAGAIN && n == 0, "a snapshot that every writer raced: rc %d, errno %d, %zu names",
              rc, e, n);
}

/* Every lock-free read of a read-only or copy-on-write handle retried for
   as long as writers raced it. A lookup among long byte keys (1 MiB,
   differing only in their last byte: each comparison reads a megabyte)
   takes longer than the writers' pauses here, and mseg_map_get spun for
   ever (the test's timeout). After 5 s of races a read gives up with
   EAGAIN, as the directory snapshot does. */
Test(readers, a_long_lookup_beside_writers_that_never_pause_ends, .timeout = 60, .fini = th_cleanup)
{
    char name[256];
    mseg *s = lf_create(name);
    mseg_map *m = mseg_map_open(s, "m", MSEG_KEY_BYTES, 8, MSEG_CREATE);
    cr_assert_not_null(m, "%s", mseg_errmsg());
    size_t klen = MiB;
    uint8_t *key = calloc(1, klen);
    cr_assert_not_null(key);
    for (uint64_t i = 0; i < 6; i++) {
        key[klen - 1] = (uint8_t)i;
        cr_assert_eq(mseg_map_put(s, m, key, klen, &i, 8), 0, "%s", mseg_errmsg());
    }
    mseg *ro = mseg_open(name, MSEG_RDONLY, NULL);
    cr_assert_not_null(ro, "%s", mseg_errmsg());
    mseg_map *rm = mseg_map_open(ro, "m", MSEG_KEY_BYTES, 8, 0);
    cr_assert_not_null(rm, "%s", mseg_errmsg());
    key[klen - 1] = 5;
    const uint64_t *v = mseg_map_get(ro, rm, key, klen, NULL);
    cr_assert(v && *v == 5, "%s", mseg_errmsg());
    busy_writers_start(s);
    errno = 0;
    size_t n = mseg_map_len(ro, rm);   /* a short read fits between two operations */
    int len_errno = errno;
    errno = 0;
    v = mseg_map_get(ro, rm, key, klen, NULL);
    int e = errno;
    busy_writers_stop();
    free(key);
    mseg_close(ro);
    mseg_close(s);
    cr_assert_eq(n, 6, "mseg_map_len beside the busy writers: errno %d", len_errno);
    cr_assert(!v && e == EAGAIN, "a lookup that every writer raced: %s, errno %d", v ? "found" : "not found", e);
}

/* ---- a read-only handle beside a live writer that is slow to apply ---- */

static int slow_apply_fd;

static void pause_halfway_applying(const char *point, unsigned long n, void *arg)
{
    (void)n; (void)arg;
    if (strcmp(point, "log.applying") == 0) {
        CHILD_CHECK(write(slow_apply_fd, "a", 1) == 1);
        sleep(1);
    }
}

/* Puts key 1001 and stays a second halfway through applying it: alive,
   holding the lock, op_seq odd. */
static void put_slowly(void *arg, int fd)
{
    mseg *w = mseg_open(arg, 0, NULL);
    CHILD_CHECK(w != NULL);
    mseg_map *m = mseg_map_open(w, "m", MSEG_KEY_U64, 8, 0);
    CHILD_CHECK(m != NULL);
    slow_apply_fd = fd;
    mseg_test_set_crash_hook(pause_halfway_applying, NULL);
    uint64_t k = 1001;
    CHILD_CHECK(mseg_map_put(w, m, &k, 8, &k, 8) == 0);
    mseg_close(w);
}

/* A read-only handle gave up with EAGAIN ("a writer has been in the middle
   of an operation for too long (it may have died)") after 200 ms of an odd
   op_seq, though the writer was alive and only slow: descheduled, or
   blocked in a page fault of its apply (dirty-page throttling); beside
   two live writers on this loaded machine, 4 reads in 69,000 failed so.
   The segment lock's word tells a live owner from a dead one (the kernel
   marks a robust mutex's word when its owner dies), so the reader waits
   for a live one, up to 5 s. */
/* A get through a handle opened with flags, while another process is a
   second into applying a put of key 1001: it waits, and finds the key. */
static void expect_a_wait_for_a_slow_writer(unsigned flags)
{
    char name[256], why[200];
    lf_create_closed_even_map(name);
    mseg *r = mseg_open(name, flags, NULL);
    cr_assert_not_null(r, "%s", mseg_errmsg());
    mseg_map *rm = mseg_map_open(r, "m", MSEG_KEY_U64, 8, 0);
    cr_assert_not_null(rm, "%s", mseg_errmsg());
    int from_writer;
    pid_t pid = th_fork_piped(put_slowly, name, &from_writer);
    cr_assert_geq(pid, 0, "pipe or fork: %s", strerror(errno));
    char b;
    cr_assert_eq(read(from_writer, &b, 1), 1, "the writer did not reach the middle of its apply");
    uint64_t k = 1001;
    errno = 0;
    const uint64_t *v = mseg_map_get(r, rm, &k, 8, NULL);
    int e = errno;
    uint64_t got = v ? *v : 0;
    int st;
    waitpid(pid, &st, 0);
    close(from_writer);
    mseg_close(r);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the writer %s", th_status_str(st, why, sizeof why));
    cr_assert(v && got == 1001, "a get through a %s handle beside a live writer halfway through its put: %s "
              "(errno %d: %s)", flags == MSEG_COW ? "copy-on-write" : "read-only", v ? "a wrong value" : "failed",
              e, mseg_errmsg());
}

Test(readers, a_read_only_handle_waits_for_a_live_writer_that_is_slow_to_apply, .timeout = 30,
     .fini = th_cleanup)
{
    expect_a_wait_for_a_slow_writer(MSEG_RDONLY);
}

Test(readers, a_copy_on_write_handle_waits_for_a_live_writer_that_is_slow_to_apply, .timeout = 30,
     .fini = th_cleanup)
{
    expect_a_wait_for_a_slow_writer(MSEG_COW);
}
