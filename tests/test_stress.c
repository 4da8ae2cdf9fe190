/* test_stress.c - several processes allocating, freeing and naming at once
   in one segment: nothing handed out twice, nothing lost. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include "helpers.h"

#define MiB (1024u * 1024u)
#define PROCS 2
#define OPS 100000
#define SLOTS 1024
#define NAMES 16

struct stamp { uint32_t pid, slot; uint64_t seq; };

struct blk { unsigned char *p; size_t n; uint64_t seq; };

static unsigned char pattern(uint64_t seq, uint32_t pid, size_t i)
{
    return (unsigned char)(seq * 31 + pid * 7 + i);
}

static void write_stamp(struct blk *b, uint32_t pid, uint32_t slot)
{
    size_t i = 0;
    if (b->n >= sizeof(struct stamp)) {
        struct stamp st = { pid, slot, b->seq };
        memcpy(b->p, &st, sizeof st);
        i = sizeof st;
    }
    for (; i < b->n; i++)
        b->p[i] = pattern(b->seq, pid, i);
}

static int stamp_intact(const struct blk *b, uint32_t pid, uint32_t slot)
{
    size_t i = 0;
    if (b->n >= sizeof(struct stamp)) {
        struct stamp st;
        memcpy(&st, b->p, sizeof st);
        if (st.pid != pid || st.slot != slot || st.seq != b->seq)
            return 0;
        i = sizeof st;
    }
    for (; i < b->n; i++)
        if (b->p[i] != pattern(b->seq, pid, i))
            return 0;
    return 1;
}

struct worker { const char *name; unsigned be; int id; };

static void work(void *arg)
{
    struct worker *w = arg;
    alarm(240);
    mseg *s = mseg_open(w->name, w->be, NULL);
    CHILD_CHECK(s != NULL);
    uint32_t pid = (uint32_t)getpid();
    uint64_t rng = 0x1234567ull * (uint64_t)(w->id + 1);
    static struct blk b[SLOTS];
    int named[NAMES] = { 0 };
    char nm[64];
    uint64_t seq = 0;
    for (long op = 1; op <= OPS; op++) {
        uint64_t r = th_rand(&rng);
        if (r % 100 < 90) {
            uint32_t slot = (uint32_t)((r >> 8) % SLOTS);
            struct blk *x = &b[slot];
            if (x->p) {
                if (!stamp_intact(x, pid, slot)) {
                    fprintf(stderr, "op %ld: block %p (%zu bytes, seq %llu) was overwritten\n",
                            op, (void *)x->p, x->n, (unsigned long long)x->seq);
                    _exit(90);
                }
                CHILD_CHECK(mseg_free(s, x->p) == 0);
                x->p = NULL;
            } else {
                x->n = 1 + (size_t)((r >> 32) % 2048);
                x->p = mseg_alloc(s, x->n);
                CHILD_CHECK(x->p != NULL);
                x->seq = ++seq;
                write_stamp(x, pid, slot);
            }
        } else {
            int k = (int)((r >> 8) % NAMES);
            snprintf(nm, sizeof nm, "p%u-%d", pid, k);
            if (named[k]) {
                size_t n = 0;
                uint64_t *v = mseg_find(s, nm, "u64", 8, &n);
                CHILD_CHECK(v != NULL);
                CHILD_CHECK(n == (size_t)k + 2 && v[0] == pid && v[1] == (uint64_t)named[k]);
                if ((r >> 40) & 1) {
                    CHILD_CHECK(mseg_destroy(s, nm) == 0);
                    named[k] = 0;
                }
            } else {
                uint64_t init[NAMES + 2] = { pid, (uint64_t)(op & 0x7fffffff) };
                errno = 0;
                CHILD_CHECK(mseg_find(s, nm, "u64", 8, NULL) == NULL && errno == ENOENT);
                uint64_t *v = mseg_construct(s, nm, "u64", 8, (size_t)k + 2, init);
                CHILD_CHECK(v != NULL);
                named[k] = (int)(op & 0x7fffffff);
            }
        }
        if (op % 25000 == 0) {
            struct mseg_report rep;
            CHILD_CHECK(mseg_verify(s, &rep) == 0 && rep.problems == 0);
        }
    }
    for (uint32_t i = 0; i < SLOTS; i++)
        if (b[i].p) {
            if (!stamp_intact(&b[i], pid, i))
                _exit(91);
            CHILD_CHECK(mseg_free(s, b[i].p) == 0);
        }
    for (int k = 0; k < NAMES; k++)
        if (named[k]) {
            snprintf(nm, sizeof nm, "p%u-%d", pid, k);
            CHILD_CHECK(mseg_destroy(s, nm) == 0);
        }
    CHILD_CHECK(mseg_close(s) == 0);
    _exit(0);
}

static void stress(unsigned be)
{
    char name[256];
    th_name(name, be);
    struct mseg_config c = { .size = 64 * MiB };
    mseg *s = mseg_open(name, be | MSEG_CREATE | MSEG_EXCL, &c);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_not_null(MSEG_NEW(s, "warm", int, 1));
    cr_assert_eq(mseg_destroy(s, "warm"), 0);
    size_t f0 = mseg_free_memory(s);

    pid_t pids[PROCS];
    struct worker w[PROCS];
    double t0 = th_now();
    fflush(NULL);
    for (int i = 0; i < PROCS; i++) {
        w[i] = (struct worker){ name, be, i };
        pids[i] = fork();
        cr_assert_geq(pids[i], 0);
        if (pids[i] == 0)
            work(&w[i]);
    }
    int failed = 0;
    char why[PROCS][128];
    for (int i = 0; i < PROCS; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        th_status_str(st, why[i], sizeof why[i]);
        if (!TH_EXITED_OK(st))
            failed++;
    }
    double t = th_now() - t0;
    cr_assert_eq(failed, 0, "worker 0 %s; worker 1 %s", why[0], why[1]);
    cr_log_info("stress (%s): %d processes x %d operations in %.2f s",
                be ? "shm" : "file", PROCS, OPS, t);

    cr_assert_eq(mseg_named_count(s), 0);
    cr_assert_eq(mseg_free_memory(s), f0, "free memory %zu after everything was freed, %zu before",
                 mseg_free_memory(s), f0);
    struct mseg_report r;
    cr_assert_eq(mseg_verify(s, &r), 0, "%s", mseg_errmsg());
    cr_assert_eq(r.problems, 0);
    cr_assert_eq(mseg_close(s), 0);
    cr_assert_eq(mseg_check(name, be, NULL), 0, "%s", mseg_errmsg());
}

Test(stress, processes_sharing_a_file_segment_never_share_or_lose_a_block, .timeout = 300, .fini = th_cleanup)
{ stress(0); }

Test(stress, processes_sharing_a_shm_segment_never_share_or_lose_a_block, .timeout = 300, .fini = th_cleanup)
{ stress(MSEG_SHM); }
