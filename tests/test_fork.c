/* test_fork.c - a handle inherited through fork() acts for the child alone.

   A handle registers its process with locks that belong to its open file
   description, which fork() shares between parent and child (fork.c).
   Before fork.c, a child closing its inherited handle took the parent's
   registration with it: the segment was marked clean under a live writer,
   and every later open waited until the parent closed (the first test hung
   in the third process's open); a child's shrink cut the file under its
   parent (the second test's shrink succeeded).

   A review of the first fix found the rest, each now a test below that
   failed with that fix: a parent that closed first left its locks alive in
   the child's copies of its mappings, so the child's close hung; a parent
   that closed right after fork() marked the segment clean and the child's
   fork() hung registering; with the fallback, the parent could shrink
   under its child; and a child forked inside a transaction wrote without
   the lock.

   A second review found more, also each a test below: a child's inherited
   mappings kept the parent's locks alive after the parent exited without
   closing; the shared registration's close and the child's reads inside
   the parent's transaction were untested; a copy-on-write handle forked
   inside its transaction hung the child's next write. A third review found
   that one again when the transaction was another thread's, and a fourth
   a false EDEADLK after a thread died inside its transaction. The child's
   reseed of its undo identities had no test until the last of the
   transaction tests. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "helpers.h"
#include "layout.h"

#define KiB (1024ull)
#define MiB (1024ull * 1024ull)

static const unsigned backends[] = { 0, MSEG_SHM };
static const char *backend_name(unsigned b) { return b & MSEG_SHM ? "shm" : "file"; }

/* The process whose wait status is st exited with 0; who names it. */
#define ASSERT_EXITED_OK(st, backend, who)                                             \
    do {                                                                               \
        char why_[200];                                                                \
        cr_assert(TH_EXITED_OK(st), "%s: %s: %s", backend_name(backend), who,         \
                  th_status_str(st, why_, sizeof why_));                                \
    } while (0)

struct child_arg { const char *name; unsigned flags; mseg *s; };

/* A new segment under a fresh name (written to name, 256 bytes), holding
   one object. */
static mseg *fresh(char *name, unsigned flags)
{
    th_name(name, flags);
    struct mseg_config cfg = { .size = 1 * MiB, .max_size = 16 * MiB };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL | flags, &cfg);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    uint64_t one = 1;
    cr_assert_not_null(mseg_construct(s, "keep", "u64", 8, 1, &one), "%s", mseg_errmsg());
    return s;
}

static uint64_t runtime_state(mseg *s)
{
    const struct mseg_runtime *rt = mseg_at(s, MSEG_RUNTIME_OFF);
    cr_assert_not_null(rt, "%s", mseg_errmsg());
    return __atomic_load_n(&rt->state, __ATOMIC_ACQUIRE);
}

/* Child: writes through the inherited handle, then closes it. */
static void write_then_close_inherited(void *arg)
{
    struct child_arg *c = arg;
    uint64_t seven = 7;
    CHILD_CHECK(mseg_construct(c->s, "from-child", "u64", 8, 1, &seven) != NULL);
    CHILD_CHECK(mseg_close(c->s) == 0);
}

/* Child: opens the segment by name, as an unrelated process would, within
   10 s (an open that waits on a lock nobody will release dies of SIGALRM),
   and finds what the first child wrote. */
static void open_by_name_in_time(void *arg)
{
    struct child_arg *c = arg;
    alarm(10);
    mseg *t = mseg_open(c->name, c->flags, NULL);
    CHILD_CHECK(t != NULL);
    size_t n = 0;
    uint64_t *v = mseg_find(t, "from-child", "u64", 8, &n);
    CHILD_CHECK(v && n == 1 && *v == 7);
    CHILD_CHECK(mseg_close(t) == 0);
}

/* The parent is still attached after its child closed the inherited handle:
   the segment is not marked clean, others can open it, and the parent goes
   on reading and writing. */
static void parent_survives_child_close(mseg *s, const char *name, unsigned backend)
{
    struct child_arg c = { name, backend, s };
    int st = th_fork_run(write_then_close_inherited, &c);
    ASSERT_EXITED_OK(st, backend, "writing child");
    cr_assert_eq(runtime_state(s), MSEG_STATE_OPEN,
                 "%s: a child's close marked the segment clean while its parent writes",
                 backend_name(backend));
    st = th_fork_run(open_by_name_in_time, &c);
    ASSERT_EXITED_OK(st, backend, "another process's open after the child closed");
    size_t n = 0;
    uint64_t *v = mseg_find(s, "from-child", "u64", 8, &n);
    cr_assert(v && n == 1 && *v == 7, "%s: %s", backend_name(backend), mseg_errmsg());
    cr_assert_not_null(mseg_alloc(s, 64 * KiB), "%s: %s", backend_name(backend), mseg_errmsg());
}

Test(fork, a_child_that_closes_an_inherited_handle_leaves_its_parent_attached, .timeout = 60, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg *s = fresh(name, backends[b]);
        parent_survives_child_close(s, name, backends[b]);
        cr_assert_eq(mseg_close(s), 0);
        /* the parent was the last writer: its close says so */
        mseg *r = mseg_open(name, backends[b] | MSEG_RDONLY, NULL);
        cr_assert_not_null(r, "%s", mseg_errmsg());
        cr_assert_eq(runtime_state(r), MSEG_STATE_CLEAN, "%s", backend_name(backends[b]));
        mseg_close(r);
        mseg_remove(name, backends[b]);
    }
}

/* Child: the parent maps the segment, so a shrink must be refused. */
static void shrink_must_be_refused(void *arg)
{
    struct child_arg *c = arg;
    errno = 0;
    CHILD_CHECK(mseg_shrink(c->s) == -1 && errno == EBUSY);
}

/* Grows the segment past 4 MiB and frees the growth, so a shrink has a
   tail to cut. */
static size_t grow_and_free(mseg *s)
{
    void *big = mseg_alloc(s, 4 * MiB);
    cr_assert_not_null(big, "%s", mseg_errmsg());
    cr_assert_eq(mseg_free(s, big), 0, "%s", mseg_errmsg());
    size_t size = mseg_size(s);
    cr_assert_gt(size, 4 * MiB);
    return size;
}

Test(fork, a_child_cannot_shrink_a_segment_its_parent_maps, .timeout = 60, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg *s = fresh(name, backends[b]);
        size_t size = grow_and_free(s);
        struct child_arg c = { name, backends[b], s };
        int st = th_fork_run(shrink_must_be_refused, &c);
        ASSERT_EXITED_OK(st, backends[b], "child");
        cr_assert_eq(mseg_size(s), size, "%s", backend_name(backends[b]));
        cr_assert_not_null(mseg_alloc(s, 3 * MiB), "%s: %s", backend_name(backends[b]), mseg_errmsg());
        /* alone again, the parent may shrink */
        cr_assert_eq(mseg_close(s), 0);
        s = mseg_open(name, backends[b], NULL);
        cr_assert_not_null(s, "%s", mseg_errmsg());
        cr_assert_eq(mseg_shrink(s), 0, "%s", mseg_errmsg());
        mseg_close(s);
        mseg_remove(name, backends[b]);
    }
}

/* Uses every free descriptor number below a lowered limit, so that the
   child's handler cannot open the segment again; undo_fill gives them back. */
struct fd_fill { struct rlimit old; int fds[1024]; int n; };

static void fill_descriptors(struct fd_fill *f)
{
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &f->old), 0);
    int highest = 0;
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (atoi(e->d_name) > highest)
            highest = atoi(e->d_name);
    closedir(d);
    struct rlimit low = { (rlim_t)highest + 1, f->old.rlim_max };
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    f->n = 0;
    for (int fd; f->n < 1024 && (fd = open("/dev/null", O_RDONLY)) >= 0;)
        f->fds[f->n++] = fd;
    cr_assert_eq(errno, EMFILE);
}

static void undo_fill(struct fd_fill *f)
{
    while (f->n)
        close(f->fds[--f->n]);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &f->old), 0);
}

/* Child without a descriptor to spare: its handle still works, its shrink
   is refused, and its close leaves the parent's registration alone. */
static void shares_registration_safely(void *arg)
{
    struct child_arg *c = arg;
    errno = 0;
    CHILD_CHECK(mseg_shrink(c->s) == -1 && errno == EBUSY);
    CHILD_CHECK(strstr(mseg_errmsg(), "fork") != NULL);
    write_then_close_inherited(arg);
}

Test(fork, a_child_that_cannot_reopen_the_segment_shares_its_parents_registration_safely, .timeout = 60, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg *s = fresh(name, backends[b]);
        grow_and_free(s);
        struct child_arg c = { name, backends[b], s };
        struct fd_fill f;
        fill_descriptors(&f);
        int st = th_fork_run(shares_registration_safely, &c);
        undo_fill(&f);
        ASSERT_EXITED_OK(st, backends[b], "child");
        cr_assert_eq(runtime_state(s), MSEG_STATE_OPEN, "%s", backend_name(backends[b]));
        st = th_fork_run(open_by_name_in_time, &c);
        ASSERT_EXITED_OK(st, backends[b], "another process's open");
        cr_assert_eq(mseg_close(s), 0);
        mseg_remove(name, backends[b]);
    }
}

/* ---- the parent acts while its child still holds the handle ---- */

/* A child forked with a pipe: it runs fn(arg) once the parent writes a
   byte (or closes the pipe). */
struct held_child { pid_t pid; int go; };

static struct held_child fork_held_on(int p[2], void (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[1]);
        char c;
        alarm(20);   /* a hang in the child ends as SIGALRM, not a stuck suite */
        CHILD_CHECK(read(p[0], &c, 1) >= 0);
        fn(arg);
        _exit(0);
    }
    close(p[0]);
    return (struct held_child){ pid, p[1] };
}

static struct held_child fork_held(void (*fn)(void *), void *arg)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    return fork_held_on(p, fn, arg);
}

static int release_held(struct held_child h)
{
    close(h.go);
    int st;
    while (waitpid(h.pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return st;
}

/* Child: goes on writing after its parent closed, then closes: the last
   writer, it marks the segment clean. */
static void write_after_parent_closed(void *arg)
{
    struct child_arg *c = arg;
    CHILD_CHECK(mseg_alloc(c->s, 4 * KiB) != NULL);
    write_then_close_inherited(arg);
}

static void parent_closes_first(unsigned backend, bool at_once)
{
    char name[256];
    mseg *s = fresh(name, backend);
    struct child_arg c = { name, backend, s };
    struct held_child h = fork_held(write_after_parent_closed, &c);
    if (!at_once)
        usleep(100 * 1000);
    cr_assert_eq(mseg_close(s), 0);
    /* the child is still attached: the parent was not the last writer */
    mseg *r = mseg_open(name, backend | MSEG_RDONLY, NULL);
    cr_assert_not_null(r, "%s: %s", backend_name(backend), mseg_errmsg());
    cr_assert_eq(runtime_state(r), MSEG_STATE_OPEN,
                 "%s: the parent's close marked the segment clean under its child", backend_name(backend));
    int st = release_held(h);
    ASSERT_EXITED_OK(st, backend, "child");
    cr_assert_eq(runtime_state(r), MSEG_STATE_CLEAN, "%s: the child closed last", backend_name(backend));
    mseg_close(r);
    st = th_fork_run(open_by_name_in_time, &c);
    ASSERT_EXITED_OK(st, backend, "another process's open");
    mseg_remove(name, backend);
}

Test(fork, a_child_goes_on_after_its_parent_closes, .timeout = 60, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        parent_closes_first(backends[b], false);
        parent_closes_first(backends[b], true);   /* before the child's fork() has returned */
    }
}

/* Child sharing its parent's registration: it reads the end of the
   segment, which its parent must not have cut, then closes. */
static void read_tail_then_close(void *arg)
{
    struct child_arg *c = arg;
    size_t size = mseg_size(c->s);
    volatile const uint8_t *tail = mseg_at(c->s, size - 1);
    CHILD_CHECK(tail != NULL);
    (void)*tail;
    write_then_close_inherited(arg);
}

Test(fork, with_a_shared_registration_the_parent_cannot_shrink_under_its_child, .timeout = 60,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg *s = fresh(name, backends[b]);
        size_t size = grow_and_free(s);
        struct child_arg c = { name, backends[b], s };
        int p[2];
        cr_assert_eq(pipe(p), 0);   /* before every descriptor is taken */
        struct fd_fill f;
        fill_descriptors(&f);
        struct held_child h = fork_held_on(p, read_tail_then_close, &c);
        undo_fill(&f);
        errno = 0;
        cr_assert_eq(mseg_shrink(s), -1, "%s: the parent shrank under its child", backend_name(backends[b]));
        cr_assert_eq(errno, EBUSY);
        cr_assert_eq(mseg_size(s), size);
        cr_assert_eq(mseg_close(s), 0);
        int st = release_held(h);
        ASSERT_EXITED_OK(st, backends[b], "child");
        /* neither side could tell it was the last: the segment is not
           marked clean, which only costs the next open a check */
        mseg *r = mseg_open(name, backends[b], NULL);
        cr_assert_not_null(r, "%s", mseg_errmsg());
        size_t n = 0;
        uint64_t *v = mseg_find(r, "from-child", "u64", 8, &n);
        cr_assert(v && n == 1 && *v == 7, "%s: %s", backend_name(backends[b]), mseg_errmsg());
        mseg_close(r);
        mseg_remove(name, backends[b]);
    }
}

/* Child of a thread inside a transaction: the transaction is its parent's;
   the child's calls in it fail with ECANCELED and change nothing. */
static void calls_in_parents_transaction_are_cancelled(void *arg)
{
    struct child_arg *c = arg;
    errno = 0;
    CHILD_CHECK(mseg_alloc(c->s, 64) == NULL && errno == ECANCELED);
    CHILD_CHECK(mseg_tx_commit(c->s) == -1 && errno == ECANCELED);
}

Test(fork, a_child_forked_inside_a_transaction_does_not_write_in_it, .timeout = 60, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg *s = fresh(name, backends[b]);
        cr_assert_eq(mseg_tx_begin(s), 0, "%s", mseg_errmsg());
        for (int i = 0; i < 50; i++)
            cr_assert_not_null(mseg_alloc(s, 48), "%s", mseg_errmsg());
        struct child_arg c = { name, backends[b], s };
        int st = th_fork_run(calls_in_parents_transaction_are_cancelled, &c);
        ASSERT_EXITED_OK(st, backends[b], "child");
        for (int i = 0; i < 50; i++)
            cr_assert_not_null(mseg_alloc(s, 48), "%s", mseg_errmsg());
        cr_assert_eq(mseg_tx_commit(s), 0, "%s", mseg_errmsg());
        struct mseg_report r;
        cr_assert_eq(mseg_verify(s, &r), 0, "%s: %s", backend_name(backends[b]), mseg_errmsg());
        cr_assert_eq(r.problems, 0, "%s", backend_name(backends[b]));
        mseg_close(s);
        mseg_remove(name, backends[b]);
    }
}

/* The identity the last transaction with undo records gave them (log.c:
   their checksums are seeded with it, so that a stale record left in the
   log by an earlier transaction is never taken for one of the current). */
static uint64_t undo_identity_of_a_transaction(mseg *s)
{
    uint64_t *keep = mseg_find(s, "keep", "u64", 8, NULL);
    const struct mseg_log_head *h = mseg_at(s, MSEG_LOG_OFF);
    if (!keep || !h || mseg_tx_begin(s) || mseg_tx_add(s, keep, 8))
        return 0;
    (*keep)++;
    uint64_t id = __atomic_load_n(&h->undo_seq, __ATOMIC_ACQUIRE);
    return mseg_tx_commit(s) ? 0 : id;
}

/* Child: its first transaction's undo identity, as a named object. */
static void record_undo_identity(void *arg)
{
    struct child_arg *c = arg;
    uint64_t id = undo_identity_of_a_transaction(c->s);
    CHILD_CHECK(id != 0);
    CHILD_CHECK(mseg_construct(c->s, "child-undo-id", "u64", 8, 1, &id) != NULL);
}

/* Parent and child count undo identities on from the same value: without
   the child's reseed (fork.c) their next transactions would share one, and
   a power loss could then make recovery take the parent's stale undo
   records for the child's. */
Test(fork, a_childs_transactions_do_not_reuse_its_parents_undo_identities, .timeout = 60,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg *s = fresh(name, backends[b]);
        struct child_arg c = { name, backends[b], s };
        int st = th_fork_run(record_undo_identity, &c);
        ASSERT_EXITED_OK(st, backends[b], "child");
        uint64_t *child_id = mseg_find(s, "child-undo-id", "u64", 8, NULL);
        cr_assert_not_null(child_id, "%s: %s", backend_name(backends[b]), mseg_errmsg());
        uint64_t parent_id = undo_identity_of_a_transaction(s);
        cr_assert_neq(parent_id, 0, "%s: %s", backend_name(backends[b]), mseg_errmsg());
        cr_assert_neq(parent_id, *child_id, "%s: parent and child both gave their next "
                      "transaction the undo identity %#llx", backend_name(backends[b]),
                      (unsigned long long)parent_id);
        mseg_close(s);
        mseg_remove(name, backends[b]);
    }
}

/* ---- found by the second review ---- */

/* With a shared registration, the parent closes first, then an unrelated
   process opens and closes: the child is still attached, so nobody may mark
   the segment clean. (If the parent's close unlocked the shared
   description, the unrelated process would take itself for the last.) */
static void wait_then_close(void *arg)
{
    struct child_arg *c = arg;
    CHILD_CHECK(mseg_alloc(c->s, 64) != NULL);
    CHILD_CHECK(mseg_close(c->s) == 0);
}

static void open_then_close(void *arg)
{
    struct child_arg *c = arg;
    alarm(10);
    mseg *t = mseg_open(c->name, c->flags, NULL);
    CHILD_CHECK(t != NULL);
    CHILD_CHECK(mseg_close(t) == 0);
}

Test(fork, with_a_shared_registration_a_strangers_close_is_not_the_last, .timeout = 60, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg *s = fresh(name, backends[b]);
        struct child_arg c = { name, backends[b], s };
        int p[2];
        cr_assert_eq(pipe(p), 0);
        struct fd_fill f;
        fill_descriptors(&f);
        struct held_child h = fork_held_on(p, wait_then_close, &c);
        undo_fill(&f);
        cr_assert_eq(mseg_close(s), 0);
        int st = th_fork_run(open_then_close, &c);
        ASSERT_EXITED_OK(st, backends[b], "stranger");
        mseg *r = mseg_open(name, backends[b] | MSEG_RDONLY, NULL);
        cr_assert_not_null(r, "%s", mseg_errmsg());
        cr_assert_eq(runtime_state(r), MSEG_STATE_OPEN,
                     "%s: marked clean while the child is attached", backend_name(backends[b]));
        mseg_close(r);
        st = release_held(h);
        ASSERT_EXITED_OK(st, backends[b], "child");
        mseg_remove(name, backends[b]);
    }
}

/* The child of a thread inside a transaction reads the committed state,
   not the parent's uncommitted changes. */
static void reads_committed_state(void *arg)
{
    struct child_arg *c = arg;
    size_t n = 0;
    CHILD_CHECK(mseg_find(c->s, "keep", "u64", 8, &n) != NULL && n == 1);
    CHILD_CHECK(mseg_find(c->s, "pending", "u64", 8, &n) == NULL);
}

Test(fork, a_child_forked_inside_a_transaction_reads_only_committed_objects, .timeout = 60, .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg *s = fresh(name, backends[b]);
        uint64_t two = 2;
        cr_assert_eq(mseg_tx_begin(s), 0, "%s", mseg_errmsg());
        cr_assert_not_null(mseg_construct(s, "pending", "u64", 8, 1, &two), "%s", mseg_errmsg());
        struct child_arg c = { name, backends[b], s };
        int st = th_fork_run(reads_committed_state, &c);
        ASSERT_EXITED_OK(st, backends[b], "child");
        cr_assert_eq(mseg_tx_commit(s), 0, "%s", mseg_errmsg());
        mseg_close(s);
        mseg_remove(name, backends[b]);
    }
}

/* A parent that exits without closing leaves its child alone: the child
   may shrink, and its close is the last writer's. (The child's inherited
   mappings kept the parent's locks alive before seg_remap_after_fork.) */
static void parent_then_orphan(void *arg)
{
    struct child_arg *c = arg;
    struct mseg_config cfg = { .size = 1 * MiB, .max_size = 16 * MiB };
    mseg *s = mseg_open(c->name, MSEG_CREATE | MSEG_EXCL | c->flags, &cfg);
    CHILD_CHECK(s != NULL);
    void *big = mseg_alloc(s, 4 * MiB);
    CHILD_CHECK(big && mseg_free(s, big) == 0);
    int p[2];
    CHILD_CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHILD_CHECK(pid >= 0);
    if (pid == 0) {
        char ch;
        close(p[1]);
        alarm(20);
        CHILD_CHECK(read(p[0], &ch, 1) == 0);   /* end of file: the parent is exiting */
        /* the kernel drops an exiting process's locks a moment after its
           pipe's end, not before: allow it 5 s (the sanitized build saw it) */
        int rc;
        for (int i = 0; (rc = mseg_shrink(s)) != 0 && errno == EBUSY && i < 500; i++)
            usleep(10 * 1000);
        CHILD_CHECK(rc == 0);
        CHILD_CHECK(mseg_close(s) == 0);
        _exit(0);
    }
    _exit(0);   /* without mseg_close, as a killed process would */
}

Test(fork, a_parent_that_exits_without_closing_leaves_its_child_alone, .timeout = 60, .fini = th_cleanup)
{
    cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);   /* the orphan comes back to us */
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        th_name(name, backends[b]);
        struct child_arg c = { name, backends[b], NULL };
        int st = th_fork_run(parent_then_orphan, &c);
        ASSERT_EXITED_OK(st, backends[b], "parent");
        while (waitpid(-1, &st, 0) < 0)
            cr_assert_eq(errno, EINTR);
        ASSERT_EXITED_OK(st, backends[b], "orphaned child");
        mseg *r = mseg_open(name, backends[b] | MSEG_RDONLY, NULL);
        cr_assert_not_null(r, "%s", mseg_errmsg());
        cr_assert_eq(runtime_state(r), MSEG_STATE_CLEAN, "%s", backend_name(backends[b]));
        cr_assert_lt(mseg_size(r), 4 * MiB, "%s", backend_name(backends[b]));
        mseg_close(r);
        mseg_remove(name, backends[b]);
    }
}

/* A copy-on-write handle forked inside its transaction: the child's next
   call that needs the handle's private lock fails at once. */
static void cow_alloc_fails_fast(void *arg)
{
    struct child_arg *c = arg;
    alarm(10);
    errno = 0;
    CHILD_CHECK(mseg_alloc(c->s, 64) == NULL && errno == EDEADLK);
    CHILD_CHECK(mseg_close(c->s) == 0);
}

static void cow_write_fails_fast(void *arg)
{
    struct child_arg *c = arg;
    CHILD_CHECK(mseg_tx_abort(c->s) == 0);
    cow_alloc_fails_fast(arg);
}

/* A copy-on-write handle on a fresh segment (its name written to name). */
static mseg *fresh_cow(char *name, unsigned backend)
{
    cr_assert_eq(mseg_close(fresh(name, backend)), 0);
    mseg *w = mseg_open(name, backend | MSEG_COW, NULL);
    cr_assert_not_null(w, "%s", mseg_errmsg());
    return w;
}

Test(fork, a_copy_on_write_handle_forked_in_its_transaction_fails_fast_in_the_child, .timeout = 60,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg *w = fresh_cow(name, backends[b]);
        cr_assert_eq(mseg_tx_begin(w), 0, "%s", mseg_errmsg());
        cr_assert_not_null(mseg_alloc(w, 64), "%s", mseg_errmsg());
        struct child_arg c = { name, backends[b], w };
        int st = th_fork_run(cow_write_fails_fast, &c);
        ASSERT_EXITED_OK(st, backends[b], "child");
        cr_assert_eq(mseg_tx_commit(w), 0, "%s", mseg_errmsg());
        cr_assert_not_null(mseg_alloc(w, 64), "%s", mseg_errmsg());
        mseg_close(w);
        mseg_remove(name, backends[b]);
    }
}

/* ---- found by the third review ---- */

/* Another thread's transaction holds a copy-on-write handle's private lock
   at the fork: the child's calls that need it fail at once, as when the
   forking thread's own transaction held it. */
struct tx_thread { mseg *w; int began[2]; int finish[2]; };

static void *transaction_in_a_thread(void *arg)
{
    struct tx_thread *t = arg;
    char c = 0;
    int ok = mseg_tx_begin(t->w) == 0 && mseg_alloc(t->w, 64) != NULL;
    if (write(t->began[1], &c, 1) != 1 || read(t->finish[0], &c, 1) != 1)
        ok = 0;
    ok = ok && mseg_tx_commit(t->w) == 0;
    return ok ? t : NULL;
}


Test(fork, a_copy_on_write_handle_forked_in_another_threads_transaction_fails_fast, .timeout = 60,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        struct tx_thread t;
        t.w = fresh_cow(name, backends[b]);
        cr_assert(pipe(t.began) == 0 && pipe(t.finish) == 0);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, transaction_in_a_thread, &t), 0);
        char c;
        cr_assert_eq(read(t.began[0], &c, 1), 1);
        struct child_arg ca = { name, backends[b], t.w };
        int st = th_fork_run(cow_alloc_fails_fast, &ca);
        cr_assert_eq(write(t.finish[1], &c, 1), 1);
        void *ok;
        cr_assert_eq(pthread_join(th, &ok), 0);
        ASSERT_EXITED_OK(st, backends[b], "child");
        cr_assert_not_null(ok, "%s: the thread's transaction failed", backend_name(backends[b]));
        for (int i = 0; i < 2; i++) {
            close(t.began[i]);
            close(t.finish[i]);
        }
        mseg_close(t.w);
        mseg_remove(name, backends[b]);
    }
}

/* ---- found by the fourth review ---- */

/* A thread that died inside its transaction on a copy-on-write handle no
   longer holds its lock once the handle recovered it: a child forked after
   that can lock (no false EDEADLK). */
static void *transaction_then_thread_exit(void *arg)
{
    mseg *w = arg;
    if (mseg_tx_begin(w) == 0 && mseg_alloc(w, 64))
        pthread_exit(w);   /* inside the transaction */
    return NULL;
}

static void cow_alloc_works(void *arg)
{
    struct child_arg *c = arg;
    alarm(10);
    CHILD_CHECK(mseg_alloc(c->s, 64) != NULL);
    CHILD_CHECK(mseg_close(c->s) == 0);
}

Test(fork, a_copy_on_write_transaction_whose_thread_died_does_not_block_a_later_child, .timeout = 60,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < 2; b++) {
        char name[256];
        mseg *w = fresh_cow(name, backends[b]);
        pthread_t th;
        void *ok;
        cr_assert_eq(pthread_create(&th, NULL, transaction_then_thread_exit, w), 0);
        cr_assert_eq(pthread_join(th, &ok), 0);
        cr_assert_eq(ok, w, "%s: the thread's transaction did not begin", backend_name(backends[b]));
        cr_assert_not_null(mseg_alloc(w, 64), "%s: %s", backend_name(backends[b]), mseg_errmsg());
        struct child_arg c = { name, backends[b], w };
        int st = th_fork_run(cow_alloc_works, &c);
        ASSERT_EXITED_OK(st, backends[b], "child");
        mseg_close(w);
        mseg_remove(name, backends[b]);
    }
}
