/* test_crash.c - every engine operation is atomic at every crash point.

   A scripted sequence of operations runs once in full in a reference child
   that records the state after each operation (the oracle). Then, for
   k = 1, 2, 3, ..., a child runs the script and _exit()s at the k-th crash
   point, telling the parent through a pipe which operations it completed.
   The parent reopens the segment as its first opener (recovery), checks it,
   and compares what it finds with the oracle: the state after the last
   completed operation, or after the one in flight, nothing in between.
   The allocator is deterministic, so a fresh segment of the same size gives
   the same offsets in every run. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <sys/mman.h>

#include "helpers.h"
#include "testing.h"

#define SEG_SIZE (1024u * 1024u)
#define CRASH_EXIT 42
#define MAXOPS 128
#define MAXRAW 16
#define MAXNAMED 64

/* ---- the script ---- */

enum kind { ALLOC, ALLOC_ALIGNED, FREE, NEW, NEW_INIT, FIND_OR_NEW, DESTROY };

struct op {
    enum kind kind;
    int slot;           /* raw block slot (ALLOC*, FREE) */
    size_t n;           /* bytes, or element count */
    size_t align;       /* ALLOC_ALIGNED; elem_size for named objects */
    char name[16];
};

static struct op script[MAXOPS];
static int nops;

static void add(enum kind k, int slot, size_t n, size_t align, const char *name)
{
    struct op *o = &script[++nops];          /* operations are numbered from 1 */
    o->kind = k;
    o->slot = slot;
    o->n = n;
    o->align = align;
    snprintf(o->name, sizeof o->name, "%s", name ? name : "");
}

#define A(slot, n)          add(ALLOC, slot, n, 0, NULL)
#define AA(slot, n, al)     add(ALLOC_ALIGNED, slot, n, al, NULL)
#define F(slot)             add(FREE, slot, 0, 0, NULL)
#define NEW(name, es, n)    add(NEW, -1, n, es, name)
#define NEWI(name, es, n)   add(NEW_INIT, -1, n, es, name)
#define FON(name, es, n)    add(FIND_OR_NEW, -1, n, es, name)
#define DEL(name)           add(DESTROY, -1, 0, 0, name)

static void build_script(void)
{
    nops = 0;
    A(0, 100); A(1, 200); A(2, 300); A(3, 400); A(4, 500); A(5, 50);
    NEWI("alpha", 4, 10);
    F(1);                    /* between two used blocks: no merge */
    A(6, 200);               /* takes that whole block again */
    F(2);
    F(3);                    /* merges with its free left neighbour */
    F(6);                    /* merges with its free right neighbour */
    A(7, 40);                /* splits a free block */
    NEW("big", 8, 20000);    /* a large array */
    F(4);
    FON("alpha", 4, 10);     /* exists: nothing changes */
    FON("gamma", 1, 333);    /* constructs */
    DEL("alpha");
    AA(8, 1000, 256);
    AA(9, 64, 4096);
    F(0);
    F(8);
    NEWI("delta", 8, 300);
    DEL("big");              /* merges into the free tail */
    A(10, 8000);
    A(12, 700); A(13, 700); A(14, 700); A(15, 700);
    F(12);
    F(14);
    F(13);                   /* merges with both neighbours */
    F(7);
    F(9);
    A(11, 0);                /* a minimal block */
    FON("alpha", 4, 7);      /* constructs anew */
    DEL("gamma");
    for (int i = 0; i < 45; i++) {   /* the directory outgrows its table */
        char nm[16];
        snprintf(nm, sizeof nm, "n%02d", i);
        NEWI(nm, 2, (size_t)(i % 5 + 1));
    }
    DEL("n07");
    DEL("n30");
    F(10);
    F(11);
    F(15);
    DEL("delta");
    A(0, 100000);
    F(0);
}

/* ---- states ---- */

struct named_state { char name[16]; uint64_t elem_size, count, hash; };
struct raw_state { uint64_t off, n, hash; uint32_t head; int born; };

struct state {
    uint64_t free_mem, blocks_used, blocks_free, bytes_used, bytes_free, largest_free, named;
    int nnamed, nraw;
    struct named_state nm[MAXNAMED];
    struct raw_state raw[MAXRAW];
};

struct runner {
    mseg *s;
    unsigned char *slot[MAXRAW];
    size_t slot_n[MAXRAW];
    int slot_born[MAXRAW];
};

static int collect(const struct mseg_named *o, void *arg)
{
    struct state *st = arg;
    if (st->nnamed >= MAXNAMED)
        return 1;
    struct named_state *n = &st->nm[st->nnamed++];
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", o->name);
    n->elem_size = o->elem_size;
    n->count = o->count;
    n->hash = o->off;        /* replaced by the hash of the data in capture() */
    return 0;
}

static int cmp_named(const void *a, const void *b)
{
    return strcmp(((const struct named_state *)a)->name, ((const struct named_state *)b)->name);
}

/* The observable state of s: accounting, named objects with a hash of
   their bytes, and (when r is given) the script's live raw blocks. */
static int capture(mseg *s, const struct runner *r, int op, struct state *st, char *why, size_t whylen)
{
    memset(st, 0, sizeof *st);
    struct mseg_report rep;
    if (mseg_verify(s, &rep) != 0 || rep.problems != 0) {
        snprintf(why, whylen, "verify: %s", mseg_errmsg());
        return -1;
    }
    st->free_mem = mseg_free_memory(s);
    st->blocks_used = rep.blocks_used;
    st->blocks_free = rep.blocks_free;
    st->bytes_used = rep.bytes_used;
    st->bytes_free = rep.bytes_free;
    st->largest_free = rep.largest_free;
    st->named = rep.named;
    if (mseg_named_foreach(s, collect, st) != 0) {
        snprintf(why, whylen, "foreach failed or too many objects: %s", mseg_errmsg());
        return -1;
    }
    for (int i = 0; i < st->nnamed; i++) {
        struct named_state *n = &st->nm[i];
        void *p = mseg_at(s, n->hash);
        n->hash = p ? th_hash(p, n->elem_size * n->count) : 0;
    }
    qsort(st->nm, (size_t)st->nnamed, sizeof st->nm[0], cmp_named);
    if (r)
        for (int i = 0; i < MAXRAW; i++)
            if (r->slot[i]) {
                struct raw_state *x = &st->raw[st->nraw++];
                x->off = mseg_off_of(s, r->slot[i]);
                x->n = r->slot_n[i];
                x->hash = th_hash(r->slot[i], r->slot_n[i]);
                memcpy(&x->head, r->slot[i] - 4, 4);
                x->born = r->slot_born[i];
            }
    (void)op;
    return 0;
}

/* Does the recovered segment s, whose capture (without raw blocks) is
   got, match the oracle state cand (the state after operation idx)? */
static int matches(mseg *s, const struct state *got, const struct state *cand, int idx, char *why, size_t whylen)
{
#define DIFF(field)                                                                     \
    if (got->field != cand->field) {                                                    \
        snprintf(why, whylen, "after op %d: " #field " %llu, expected %llu", idx,      \
                 (unsigned long long)got->field, (unsigned long long)cand->field);     \
        return 0;                                                                       \
    }
    DIFF(free_mem) DIFF(blocks_used) DIFF(blocks_free) DIFF(bytes_used) DIFF(bytes_free)
    DIFF(largest_free) DIFF(named) DIFF(nnamed)
#undef DIFF
    for (int i = 0; i < got->nnamed; i++) {
        const struct named_state *a = &got->nm[i], *b = &cand->nm[i];
        if (strcmp(a->name, b->name) || a->elem_size != b->elem_size || a->count != b->count ||
            a->hash != b->hash) {
            snprintf(why, whylen, "after op %d: named object %s/%s differs (count %llu/%llu, contents %s)",
                     idx, a->name, b->name, (unsigned long long)a->count, (unsigned long long)b->count,
                     a->hash == b->hash ? "same" : "different");
            return 0;
        }
    }
    for (int i = 0; i < cand->nraw; i++) {
        const struct raw_state *x = &cand->raw[i];
        unsigned char *p = mseg_at(s, x->off);
        uint32_t head;
        if (!p) {
            snprintf(why, whylen, "after op %d: raw block at %#llx outside", idx, (unsigned long long)x->off);
            return 0;
        }
        memcpy(&head, p - 4, 4);
        if (head != x->head) {
            snprintf(why, whylen, "after op %d: block at %#llx has header %#x, expected %#x",
                     idx, (unsigned long long)x->off, head, x->head);
            return 0;
        }
        if (x->born != idx && th_hash(p, x->n) != x->hash) {
            snprintf(why, whylen, "after op %d: contents of the raw block at %#llx changed",
                     idx, (unsigned long long)x->off);
            return 0;
        }
    }
    return 1;
}

/* ---- running the script ---- */

static void fill(unsigned char *p, size_t n, int op)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(op * 37 + i * 11 + 1);
}

/* Runs operation i; 0 or -1. */
static int do_op(struct runner *r, int i)
{
    const struct op *o = &script[i];
    mseg *s = r->s;
    unsigned char init[4096];
    switch (o->kind) {
    case ALLOC:
    case ALLOC_ALIGNED: {
        unsigned char *p = o->kind == ALLOC ? mseg_alloc(s, o->n) : mseg_alloc_aligned(s, o->n, o->align);
        if (!p || r->slot[o->slot])
            return -1;
        fill(p, o->n, i);
        r->slot[o->slot] = p;
        r->slot_n[o->slot] = o->n;
        r->slot_born[o->slot] = i;
        return 0;
    }
    case FREE:
        if (!r->slot[o->slot] || mseg_free(s, r->slot[o->slot]) != 0)
            return -1;
        r->slot[o->slot] = NULL;
        return 0;
    case NEW:
        return mseg_construct(s, o->name, "t", o->align, o->n, NULL) ? 0 : -1;
    case NEW_INIT:
        if (o->align * o->n > sizeof init)
            return -1;
        fill(init, o->align * o->n, i);
        return mseg_construct(s, o->name, "t", o->align, o->n, init) ? 0 : -1;
    case FIND_OR_NEW:
        fill(init, o->align * o->n, i);
        return mseg_find_or_construct(s, o->name, "t", o->align, o->n, init) ? 0 : -1;
    case DESTROY:
        return mseg_destroy(s, o->name);
    }
    return -1;
}

enum msg_type { MSG_ACK = 1, MSG_CRASH, MSG_DONE };
struct msg { int type, op; unsigned long points; char label[24]; };

static int msg_fd = -1;
static unsigned long crash_at;

static void send_msg(int type, int op, unsigned long points, const char *label)
{
    struct msg m = { type, op, points, "" };
    if (label)
        snprintf(m.label, sizeof m.label, "%s", label);
    if (write(msg_fd, &m, sizeof m) != (ssize_t)sizeof m)
        _exit(96);
}

static void crash_hook(const char *point, unsigned long n, void *arg)
{
    (void)arg;
    if (n == crash_at) {
        send_msg(MSG_CRASH, 0, n, point);
        _exit(CRASH_EXIT);
    }
}

/* Child: run the whole script; with oracle, record the state after each
   operation; with k > 0, die at the k-th crash point. */
static void run_script(const char *name, unsigned flags, unsigned long k, int fd, struct state *oracle)
{
    msg_fd = fd;
    alarm(60);
    struct runner r;
    memset(&r, 0, sizeof r);
    r.s = mseg_open(name, flags, NULL);
    CHILD_CHECK(r.s != NULL);
    char why[256];
    if (oracle)
        CHILD_CHECK(capture(r.s, &r, 0, &oracle[0], why, sizeof why) == 0);
    crash_at = k;                 /* 0: only count the crash points */
    mseg_test_set_crash_hook(crash_hook, NULL);
    for (int i = 1; i <= nops; i++) {
        if (do_op(&r, i) != 0) {
            fprintf(stderr, "script op %d (kind %d, %s) failed: %s\n", i, script[i].kind,
                    script[i].name, mseg_errmsg());
            _exit(95);
        }
        send_msg(MSG_ACK, i, 0, NULL);
        if (oracle && capture(r.s, &r, i, &oracle[i], why, sizeof why) != 0) {
            fprintf(stderr, "op %d: %s\n", i, why);
            _exit(94);
        }
    }
    send_msg(MSG_DONE, nops, mseg_test_crash_points(), NULL);
    CHILD_CHECK(mseg_close(r.s) == 0);
    _exit(0);
}

struct result { int last_ack, crashed, done, status; unsigned long points; char label[24]; };

static struct result spawn(const char *name, unsigned flags, unsigned long k, struct state *oracle)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        run_script(name, flags, k, fds[1], oracle);
    }
    close(fds[1]);
    struct result res = { 0 };
    struct msg m;
    while (read(fds[0], &m, sizeof m) == (ssize_t)sizeof m) {
        if (m.type == MSG_ACK)
            res.last_ack = m.op;
        else if (m.type == MSG_CRASH) {
            res.crashed = 1;
            snprintf(res.label, sizeof res.label, "%s", m.label);
        } else if (m.type == MSG_DONE) {
            res.done = 1;
            res.points = m.points;
        }
    }
    close(fds[0]);
    waitpid(pid, &res.status, 0);
    return res;
}

/* Creates the segment once and keeps its bytes: every run starts from a
   byte copy of them (creating a file segment costs a directory fsync). */
static unsigned char *pristine;
static size_t pristine_len;

static void fresh_segment(const char *name, unsigned flags)
{
    char path[300];
    th_path(path, name, flags & MSEG_SHM);
    if (!pristine) {
        mseg_remove(name, flags & MSEG_SHM);
        struct mseg_config c = { .size = SEG_SIZE };
        mseg *s = mseg_open(name, (flags & (MSEG_SHM | MSEG_DURABLE)) | MSEG_CREATE | MSEG_EXCL, &c);
        cr_assert_not_null(s, "%s", mseg_errmsg());
        cr_assert_eq(mseg_close(s), 0);
        pristine = th_read_file(path, &pristine_len);
        cr_assert(pristine && pristine_len >= SEG_SIZE);
        return;
    }
    cr_assert_eq(th_write_file(path, pristine, pristine_len), 0, "%s: %s", path, strerror(errno));
}

/* Child: first opener after a crash, killed when its recovery has replayed
   the log but not yet retired it. */
struct reopen_arg { const char *name; unsigned flags; };

static void die_after_replay(const char *point, unsigned long n, void *arg)
{
    (void)n;
    (void)arg;
    if (strcmp(point, "recover.replayed") == 0)
        _exit(CRASH_EXIT);
}

static void recover_and_die(void *arg)
{
    const struct reopen_arg *a = arg;
    alarm(30);
    mseg_test_set_crash_hook(die_after_replay, NULL);
    mseg *s = mseg_open(a->name, a->flags, NULL);
    CHILD_CHECK(s != NULL);
    mseg_close(s);
    _exit(0);
}

static void crash_everywhere(unsigned flags, int recrash_recovery)
{
    build_script();
    cr_assert_lt(nops, MAXOPS);
    char name[256], why[256], st_why[128];
    th_name(name, flags & MSEG_SHM);
    struct stat dst;
    if ((flags & MSEG_DURABLE) && !(flags & MSEG_SHM) && stat("/dev/shm", &dst) == 0 && S_ISDIR(dst.st_mode)) {
        /* a file on tmpfs: the durable path with every flush, minus the disk
           latency (process crashes lose nothing a flush would keep) */
        snprintf(name, sizeof name, "/dev/shm/mseg-t-%d-%d-durable", th_run_id(), (int)getpid());
        th_track(name, 0);
    }
    unsigned be = flags & MSEG_SHM;

    struct state *oracle = mmap(NULL, sizeof(struct state) * (MAXOPS + 1), PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(oracle, MAP_FAILED);

    fresh_segment(name, flags);
    struct result ref = spawn(name, flags, 0, oracle);
    cr_assert(TH_EXITED_OK(ref.status) && ref.done, "reference run %s",
              th_status_str(ref.status, st_why, sizeof st_why));
    cr_assert_eq(ref.last_ack, nops);
    cr_assert_gt(ref.points, 100ul, "the script reaches only %lu crash points", ref.points);

    unsigned long k, exercised = 0, completed = 0, rolled_back = 0, recrashed = 0;
    double t0 = th_now();
    for (k = 1;; k++) {
        fresh_segment(name, flags);
        struct result res = spawn(name, flags, k, NULL);
        if (res.done) {
            cr_assert(TH_EXITED_OK(res.status), "k=%lu: finished but %s", k,
                      th_status_str(res.status, st_why, sizeof st_why));
            break;
        }
        cr_assert(res.crashed && WIFEXITED(res.status) && WEXITSTATUS(res.status) == CRASH_EXIT,
                  "k=%lu: child %s without reaching the crash point (last op %d)", k,
                  th_status_str(res.status, st_why, sizeof st_why), res.last_ack);
        exercised++;
        int j = res.last_ack;
        cr_assert_lt(j, nops);

        struct mseg_report rep;
        memset(&rep, 0, sizeof rep);
        cr_assert_eq(mseg_check(name, be, &rep), 0, "k=%lu (%s in op %d): mseg_check: %s",
                     k, res.label, j + 1, mseg_errmsg());
        cr_assert_eq(rep.problems, 0);

        if (recrash_recovery && rep.recovered) {
            struct reopen_arg a = { name, flags & (MSEG_SHM | MSEG_DURABLE) };
            int st = th_fork_run(recover_and_die, &a);
            cr_assert(st != -1 && WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == CRASH_EXIT),
                      "k=%lu: recovering child %s", k, th_status_str(st, st_why, sizeof st_why));
            if (WEXITSTATUS(st) == CRASH_EXIT)
                recrashed++;
        }

        mseg *s = mseg_open(name, flags & (MSEG_SHM | MSEG_DURABLE), NULL);
        cr_assert_not_null(s, "k=%lu (%s in op %d): reopen: %s", k, res.label, j + 1, mseg_errmsg());
        struct state got;
        cr_assert_eq(capture(s, NULL, j, &got, why, sizeof why), 0, "k=%lu (%s in op %d): %s",
                     k, res.label, j + 1, why);
        char why_before[256], why_after[256];
        int before = matches(s, &got, &oracle[j], j, why_before, sizeof why_before);
        int after = !before && matches(s, &got, &oracle[j + 1], j + 1, why_after, sizeof why_after);
        cr_assert(before || after,
                  "k=%lu: crashed at %s in op %d; the recovered state is neither before (%s) nor after (%s) it",
                  k, res.label, j + 1, why_before, why_after);
        if (before)
            rolled_back++;
        else
            completed++;
        cr_assert_eq(mseg_close(s), 0);
        mseg_remove(name, be);
    }
    double t = th_now() - t0;
    munmap(oracle, sizeof(struct state) * (MAXOPS + 1));
    free(pristine);
    pristine = NULL;
    cr_log_info("crash (%s%s%s): %d operations, %lu crash points exercised "
                "(%lu rolled back, %lu completed, %lu recoveries re-crashed) in %.1f s",
                be ? "shm" : "file", flags & MSEG_DURABLE ? ", durable" : "",
                recrash_recovery ? ", crash in recovery" : "",
                nops, exercised, rolled_back, completed, recrashed, t);
    cr_assert_gt(exercised, 100ul, "only %lu crash points exercised", exercised);
    cr_assert_eq(exercised, ref.points, "the reference run reached %lu crash points, the crash runs %lu",
                 ref.points, exercised);
}

Test(crash, every_operation_is_atomic_at_every_crash_point_file, .timeout = 600, .fini = th_cleanup)
{ crash_everywhere(0, 0); }

Test(crash, every_operation_is_atomic_at_every_crash_point_shm, .timeout = 600, .fini = th_cleanup)
{ crash_everywhere(MSEG_SHM, 0); }

Test(crash, every_operation_is_atomic_at_every_crash_point_durable, .timeout = 600, .fini = th_cleanup)
{ crash_everywhere(MSEG_DURABLE, 0); }

Test(crash, a_crash_during_recovery_is_recovered_again, .timeout = 600, .fini = th_cleanup)
{ crash_everywhere(MSEG_SHM, 1); }

/* ---- growth of containers, with another process attached ---- */

/* A script of vector pushes and reserves, map puts and transactions grows a
   160 KiB segment (max_size 16 MiB) about four times. A child runs it and
   is killed at its k-th event (crash point, or flush: a growth flushes its
   header before its operation commits), while another process stays
   attached from before the script to after the kill. After the kill a
   third process opens the segment and makes an object that does not fit
   without growth (a growth into the space a grower killed after its header
   left, if there is one). The attached process must follow: its next calls
   see every acknowledged operation, the one in flight whole or not at all,
   and the new object; and it grows the segment itself. Then the segment
   checks sound and reopens in the same state, and grows again. */

#define GROW_SEG   (160u * 1024u)
#define GROW_MAX   (16u << 20)
#define GROW_OPS   24
#define GROW_VAL   8000
#define GROW_MARK  7u       /* the attached process's own push */

enum grow_kind { GROW_TX, GROW_RESERVE, GROW_PUT, GROW_PUSH };

static enum grow_kind grow_kind_of(int i)
{
    return i % 5 == 0 ? GROW_TX : i % 7 == 0 ? GROW_RESERVE : i % 3 == 0 ? GROW_PUT : GROW_PUSH;
}

static void grow_value(unsigned char *v, uint64_t k)
{
    memset(v, (int)(k * 7 + 1), GROW_VAL);
    memcpy(v, &k, sizeof k);
}

/* Operation i of the script: one atomic call, or one transaction. */
static int grow_op(mseg *s, mseg_vec *v, mseg_map *m, int i)
{
    static unsigned char val[GROW_VAL];
    uint64_t k = (uint64_t)i, x = (uint64_t)i * 1000;
    grow_value(val, k);
    switch (grow_kind_of(i)) {
    case GROW_TX: {
        int rc = mseg_tx_begin(s);
        for (uint64_t j = 0; rc == 0 && j < 4; j++, x++)
            rc = mseg_vec_push(s, v, &x);
        if (rc == 0)
            rc = mseg_map_put(s, m, &k, 8, val, sizeof val);
        unsigned char *raw = rc == 0 ? mseg_alloc(s, 200 * 1024) : NULL;
        if (raw)
            memset(raw, i, 200 * 1024);
        return raw ? mseg_tx_commit(s) : -1;
    }
    case GROW_RESERVE:
        return mseg_vec_reserve(s, v, mseg_vec_len(s, v) * 3 + 100);
    case GROW_PUT:
        return mseg_map_put(s, m, &k, 8, val, sizeof val);
    default:
        return mseg_vec_push(s, v, &x);
    }
}

/* Whether v and m hold what operations 1..n made, and nothing else. */
static int grow_state_is(mseg *s, mseg_vec *v, mseg_map *m, int n)
{
    static unsigned char want[GROW_VAL];
    size_t len = 0, entries = 0;
    for (int i = 1; i <= n; i++) {
        enum grow_kind kind = grow_kind_of(i);
        size_t pushes = kind == GROW_TX ? 4 : kind == GROW_PUSH ? 1 : 0;
        for (size_t j = 0; j < pushes; j++, len++) {
            uint64_t *e = mseg_vec_at(s, v, len);
            if (!e || *e != (uint64_t)i * 1000 + j)
                return 0;
        }
        if (kind == GROW_TX || kind == GROW_PUT) {
            uint64_t k = (uint64_t)i;
            size_t vlen = 0;
            const void *got = mseg_map_get(s, m, &k, 8, &vlen);
            grow_value(want, k);
            if (!got || vlen != GROW_VAL || memcmp(got, want, GROW_VAL) != 0)
                return 0;
            entries++;
        }
    }
    return mseg_vec_len(s, v) == len && mseg_map_len(s, m) == entries;
}

struct grow_run { const char *name; unsigned flags; };

/* Child: opens the segment and its vector and map. */
static mseg *grow_attach(const struct grow_run *g, mseg_vec **v, mseg_map **m)
{
    alarm(60);
    mseg *s = mseg_open(g->name, g->flags, NULL);
    CHILD_CHECK(s != NULL);
    *v = mseg_vec_open(s, "v", 8, 0);
    *m = mseg_map_open(s, "m", MSEG_KEY_U64, 0, 0);
    CHILD_CHECK(*v && *m);
    return s;
}

/* Child: runs the script, acknowledging each operation on fd, and dies at
   event th_die_at (0: never). */
static void grow_script(const struct grow_run *g, int fd)
{
    mseg_vec *v;
    mseg_map *m;
    mseg *s = grow_attach(g, &v, &m);
    th_count_events(1);
    for (int i = 1; i <= GROW_OPS; i++) {
        CHILD_CHECK(grow_op(s, v, m, i) == 0);
        CHILD_CHECK(write(fd, &i, sizeof i) == (ssize_t)sizeof i);
    }
    th_count_events(0);
    CHILD_CHECK(mseg_size(s) > 4 * GROW_SEG);   /* the script did grow it */
    mseg_close(s);
    _exit(0);
}

/* The object made after the kill: n bytes of 0x5a. */
static int grow_late_ok(mseg *s, size_t n)
{
    size_t count = 0;
    const unsigned char *o = mseg_find(s, "late", "char", 1, &count);
    if (!o || count != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (o[i] != 0x5a)
            return 0;
    return 1;
}

/* Child: attached before the script runs (it says so on ready_fd); told the
   last acknowledged operation and the late object's size on go_fd once the
   script's process is gone, it checks the state through its old handles,
   then pushes GROW_MARK and grows the segment by 1 MiB. */
static void grow_watch(const struct grow_run *g, int ready_fd, int go_fd)
{
    mseg_vec *v;
    mseg_map *m;
    mseg *s = grow_attach(g, &v, &m);
    size_t size0 = mseg_size(s);
    CHILD_CHECK(write(ready_fd, "r", 1) == 1);
    int acked;
    size_t late;
    CHILD_CHECK(read(go_fd, &acked, sizeof acked) == (ssize_t)sizeof acked);
    CHILD_CHECK(read(go_fd, &late, sizeof late) == (ssize_t)sizeof late);
    CHILD_CHECK(grow_state_is(s, v, m, acked) || grow_state_is(s, v, m, acked + 1));
    CHILD_CHECK(grow_late_ok(s, late));
    uint64_t mark = GROW_MARK;
    CHILD_CHECK(mseg_vec_push(s, v, &mark) == 0);
    unsigned char *more = mseg_alloc(s, 1u << 20);
    CHILD_CHECK(more != NULL);
    memset(more, 1, 1u << 20);
    CHILD_CHECK(mseg_size(s) > size0);
    struct mseg_report r;
    CHILD_CHECK(mseg_verify(s, &r) == 0);
    mseg_close(s);
    _exit(0);
}

/* One run killed at event k: 1 if it was killed, 0 if the script ran
   whole. Asserts everything after the kill. */
static int grow_crash_run(const struct grow_run *g, unsigned long k)
{
    char why[128];
    int ready[2], go[2], ack[2];
    cr_assert(pipe(ready) == 0 && pipe(go) == 0 && pipe(ack) == 0);
    fflush(NULL);
    pid_t watcher = fork();
    cr_assert_geq(watcher, 0);
    if (watcher == 0) {
        close(ack[0]);
        close(ack[1]);
        grow_watch(g, ready[1], go[0]);
    }
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1, "k=%lu: the attached process did not open", k);
    th_die_at = k;
    pid_t runner = fork();
    cr_assert_geq(runner, 0);
    if (runner == 0) {
        close(ack[0]);
        grow_script(g, ack[1]);
    }
    close(ack[1]);
    int acked = 0, i, st;
    while (read(ack[0], &i, sizeof i) == (ssize_t)sizeof i)
        acked = i;
    close(ack[0]);
    waitpid(runner, &st, 0);
    int killed = WIFEXITED(st) && WEXITSTATUS(st) == 42;   /* th_event's */
    cr_assert(killed || TH_EXITED_OK(st), "k=%lu: the script's process %s", k, th_status_str(st, why, sizeof why));
    mseg *s = mseg_open(g->name, g->flags, NULL);
    cr_assert_not_null(s, "k=%lu: a new opener: %s", k, mseg_errmsg());
    size_t late = mseg_free_memory(s) + 4096;
    unsigned char *o = mseg_construct(s, "late", "char", 1, late, NULL);
    cr_assert_not_null(o, "k=%lu: a new opener's growth: %s", k, mseg_errmsg());
    memset(o, 0x5a, late);
    cr_assert_eq(mseg_close(s), 0);
    cr_assert_eq(write(go[1], &acked, sizeof acked), (ssize_t)sizeof acked);
    cr_assert_eq(write(go[1], &late, sizeof late), (ssize_t)sizeof late);
    waitpid(watcher, &st, 0);
    cr_assert(TH_EXITED_OK(st), "k=%lu, killed after op %d: the attached process %s", k, acked,
              th_status_str(st, why, sizeof why));
    for (int p = 0; p < 2; p++) {
        close(ready[p]);
        close(go[p]);
    }
    unsigned be = g->flags & MSEG_SHM;
    cr_assert_eq(mseg_check(g->name, be, NULL), 0, "k=%lu: %s", k, mseg_errmsg());
    s = mseg_open(g->name, g->flags, NULL);
    cr_assert_not_null(s, "k=%lu: reopen: %s", k, mseg_errmsg());
    mseg_vec *v = mseg_vec_open(s, "v", 8, 0);
    mseg_map *m = mseg_map_open(s, "m", MSEG_KEY_U64, 0, 0);
    cr_assert(v && m, "k=%lu: %s", k, mseg_errmsg());
    uint64_t mark = 0;
    cr_assert(mseg_vec_pop(s, v, &mark) == 0 && mark == GROW_MARK, "k=%lu: the attached process's push", k);
    cr_assert(grow_state_is(s, v, m, acked) || grow_state_is(s, v, m, acked + 1),
              "k=%lu: killed after op %d: the reopened state is neither before nor after op %d", k, acked,
              acked + 1);
    cr_assert(killed || grow_state_is(s, v, m, GROW_OPS));
    cr_assert(grow_late_ok(s, late), "k=%lu: the object made after the kill", k);
    cr_assert_not_null(mseg_alloc(s, 4u << 20), "k=%lu: growth after the kill: %s", k, mseg_errmsg());
    struct mseg_report r;
    cr_assert_eq(mseg_verify(s, &r), 0, "k=%lu: %s", k, mseg_errmsg());
    mseg_close(s);
    return killed;
}

static void grow_crash_everywhere(unsigned flags)
{
    char name[256], path[300];
    th_name(name, flags & MSEG_SHM);
    if (flags & MSEG_DURABLE) {   /* a file on tmpfs, as crash_everywhere's */
        snprintf(name, sizeof name, "/dev/shm/mseg-t-%d-%d-grow", th_run_id(), (int)getpid());
        th_track(name, 0);
    }
    th_path(path, name, flags & MSEG_SHM);
    struct mseg_config cfg = { .size = GROW_SEG, .max_size = GROW_MAX };
    mseg *s = mseg_open(name, flags | MSEG_CREATE | MSEG_EXCL, &cfg);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert(mseg_vec_open(s, "v", 8, MSEG_CREATE) && mseg_map_open(s, "m", MSEG_KEY_U64, 0, MSEG_CREATE));
    cr_assert_eq(mseg_close(s), 0);
    size_t len;
    unsigned char *fresh = th_read_file(path, &len);
    cr_assert(fresh && len == GROW_SEG);
    struct grow_run g = { name, flags };
    unsigned long k = 1;
    for (; grow_crash_run(&g, k); k++)
        cr_assert_eq(th_write_file(path, fresh, len), 0, "%s: %s", path, strerror(errno));
    free(fresh);
    cr_assert_gt(k, 50ul, "only %lu events: the hooks were not reached", k - 1);
}

Test(crash, containers_growing_the_segment_are_atomic_at_every_event_while_another_process_follows,
     .timeout = 300, .fini = th_cleanup)
{
    const unsigned flags[] = { 0, MSEG_SHM, MSEG_DURABLE };
    for (size_t f = 0; f < 3; f++)
        grow_crash_everywhere(flags[f]);
}
