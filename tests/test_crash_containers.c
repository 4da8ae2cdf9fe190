/* test_crash_containers.c - every vector and map operation is atomic at
   every crash point.

   A deterministic script of vector and map operations (pushes that grow the
   buffer, pops, resizes, puts that split leaves and grow the tree, deletes
   that empty leaves, byte keys with variable values) runs in a child that
   _exit()s at its k-th crash point, telling the parent through a pipe which
   operations it completed. The parent checks the segment (mseg_check: sound
   after recovery), reopens it as its first opener, and compares the
   containers with an in-memory oracle replaying the script: the state after
   the last acknowledged operation, or after the one in flight, never
   anything in between. k goes 1, 2, 3, ... until the script completes. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include "helpers.h"
#include "layout.h"
#include "testing.h"

int vec_check(mseg *s, uint64_t root, char *why, size_t whylen);
int map_check(mseg *s, uint64_t root, char *why, size_t whylen);

#define CC_SEG_SIZE (2u * 1024u * 1024u)
#define CC_EXIT     42
#define CC_OPS      90
#define CC_KEYS     400      /* u64 map keys are < CC_KEYS */
#define CC_BKEYS    24       /* byte-map keys "key-<i>" */
#define CC_VMAX     4096

enum cc_kind { MPUT, MDEL, VPUSH, VPOP, VRESIZE, BPUT, BDEL };

struct cc_op {
    enum cc_kind kind;
    uint64_t a, b;
};

/* The oracle: the containers' contents after some prefix of the script. */
struct cc_state {
    bool     mhas[CC_KEYS];
    uint64_t mval[CC_KEYS];
    size_t   vlen;
    uint64_t vec[CC_VMAX];
    bool     bhas[CC_BKEYS];
    size_t   blen[CC_BKEYS];
};

static struct cc_op cc_script[CC_OPS + 1];   /* numbered from 1 */

static void cc_build_script(void)
{
    uint64_t seed = 2026;
    for (int i = 1; i <= CC_OPS; i++) {
        uint64_t r = th_rand(&seed), x = th_rand(&seed);
        struct cc_op *o = &cc_script[i];
        if (i <= 20) {                          /* first, a burst that splits leaves */
            *o = (struct cc_op){ MPUT, x % CC_KEYS, x };
            continue;
        }
        switch (r % 10) {
        case 0: case 1: *o = (struct cc_op){ MPUT, x % CC_KEYS, x }; break;
        case 2:         *o = (struct cc_op){ MDEL, x % CC_KEYS, 0 }; break;
        case 3: case 4: *o = (struct cc_op){ VPUSH, x, 0 }; break;
        case 5:         *o = (struct cc_op){ VPOP, 0, 0 }; break;
        case 6:         *o = (struct cc_op){ VRESIZE, x % 300, 0 }; break;
        case 7: case 8: *o = (struct cc_op){ BPUT, x % CC_BKEYS, x % 700 }; break;
        default:        *o = (struct cc_op){ BDEL, x % CC_BKEYS, 0 }; break;
        }
    }
}

static void cc_apply(struct cc_state *st, const struct cc_op *o)
{
    switch (o->kind) {
    case MPUT: st->mhas[o->a] = true; st->mval[o->a] = o->b; break;
    case MDEL: st->mhas[o->a] = false; break;
    case VPUSH: st->vec[st->vlen++] = o->a; break;
    case VPOP: if (st->vlen) st->vlen--; break;
    case VRESIZE:
        for (size_t i = st->vlen; i < o->a; i++)
            st->vec[i] = 0;
        st->vlen = o->a;
        break;
    case BPUT: st->bhas[o->a] = true; st->blen[o->a] = o->b; break;
    case BDEL: st->bhas[o->a] = false; break;
    }
}

/* The oracle after operations 1..n. */
static void cc_oracle(struct cc_state *st, int n)
{
    memset(st, 0, sizeof *st);
    for (int i = 1; i <= n; i++)
        cc_apply(st, &cc_script[i]);
}

struct cc_handles {
    mseg_map *m, *b;
    mseg_vec *v;
};

static int cc_open_all(mseg *s, struct cc_handles *h, unsigned flags)
{
    h->m = mseg_map_open(s, "m", MSEG_KEY_U64, 8, flags);
    h->b = mseg_map_open(s, "b", MSEG_KEY_BYTES, 0, flags);
    h->v = mseg_vec_open(s, "v", 8, flags);
    return h->m && h->b && h->v ? 0 : -1;
}

static void cc_bkey(char *buf, uint64_t i) { snprintf(buf, 32, "key-%llu", (unsigned long long)i); }

/* Runs one operation; failures other than the expected ENOENT/ERANGE are fatal. */
static int cc_run(mseg *s, struct cc_handles *h, const struct cc_op *o)
{
    uint8_t val[700];
    char key[32];
    int rc = 0;
    switch (o->kind) {
    case MPUT: rc = mseg_map_put(s, h->m, &o->a, 8, &o->b, 8); break;
    case MDEL: rc = mseg_map_del(s, h->m, &o->a, 8); if (rc && errno == ENOENT) rc = 0; break;
    case VPUSH: rc = mseg_vec_push(s, h->v, &o->a); break;
    case VPOP: rc = mseg_vec_pop(s, h->v, NULL); if (rc && errno == ERANGE) rc = 0; break;
    case VRESIZE: rc = mseg_vec_resize(s, h->v, o->a); break;
    case BPUT:
        cc_bkey(key, o->a);
        memset(val, (int)(o->a + o->b), sizeof val);
        rc = mseg_map_put(s, h->b, key, strlen(key), val, o->b);
        break;
    case BDEL:
        cc_bkey(key, o->a);
        rc = mseg_map_del(s, h->b, key, strlen(key));
        if (rc && errno == ENOENT)
            rc = 0;
        break;
    }
    return rc;
}

static unsigned long cc_target;

static void cc_hook(const char *point, unsigned long n, void *arg)
{
    (void)point;
    (void)arg;
    if (n == cc_target)
        _exit(CC_EXIT);
}

/* The child: builds the containers, then runs the script with the hook set,
   writing the number of each completed operation to fd. */
static void cc_child(const char *name, unsigned backend, int fd)
{
    struct mseg_config c = { .size = CC_SEG_SIZE };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL | backend, &c);
    struct cc_handles h;
    CHILD_CHECK(s && cc_open_all(s, &h, MSEG_CREATE) == 0);
    mseg_test_set_crash_hook(cc_hook, NULL);
    for (uint32_t i = 1; i <= CC_OPS; i++) {
        CHILD_CHECK(cc_run(s, &h, &cc_script[i]) == 0);
        CHILD_CHECK(write(fd, &i, sizeof i) == sizeof i);
    }
    mseg_test_set_crash_hook(NULL, NULL);
    mseg_close(s);
    _exit(0);
}

/* Compares the segment's containers with st; a description of the first
   difference in why, or "" when equal. */
static void cc_compare(mseg *s, struct cc_handles *h, const struct cc_state *st, char *why, size_t n)
{
    *why = 0;
    size_t vlen = mseg_vec_len(s, h->v);
    if (vlen != st->vlen) {
        snprintf(why, n, "vector has %zu elements, oracle %zu", vlen, st->vlen);
        return;
    }
    for (size_t i = 0; i < vlen; i++)
        if (*(uint64_t *)mseg_vec_at(s, h->v, i) != st->vec[i]) {
            snprintf(why, n, "vector element %zu differs", i);
            return;
        }
    size_t count = 0;
    for (uint64_t k = 0; k < CC_KEYS; k++) {
        size_t vl;
        uint64_t *v = mseg_map_get(s, h->m, &k, 8, &vl);
        count += st->mhas[k];
        if ((v != NULL) != st->mhas[k] || (v && *v != st->mval[k])) {
            snprintf(why, n, "u64 map key %llu: %s", (unsigned long long)k, v ? "differs" : "missing");
            return;
        }
    }
    if (mseg_map_len(s, h->m) != count) {
        snprintf(why, n, "u64 map has %zu entries, oracle %zu", mseg_map_len(s, h->m), count);
        return;
    }
    for (uint64_t k = 0; k < CC_BKEYS; k++) {
        char key[32];
        cc_bkey(key, k);
        size_t vl = 0;
        uint8_t *v = mseg_map_get(s, h->b, key, strlen(key), &vl);
        if ((v != NULL) != st->bhas[k] || (v && vl != st->blen[k]) ||
            (v && vl && v[vl - 1] != (uint8_t)(k + vl))) {
            snprintf(why, n, "byte map key %s differs", key);
            return;
        }
    }
}

typedef void (*cc_child_fn)(const char *name, unsigned backend, int fd);

/* Runs child in a forked process that _exit()s at its k-th crash point. The
   child writes head_len bytes first (read into head), then the number of
   each step it completes. Checks the segment (sound after recovery) and
   reopens it as its first opener. Returns the last step acknowledged;
   *completed when the child ran to the end without reaching point k. */
static uint32_t cc_crash_child(const char *name, unsigned backend, unsigned long k, cc_child_fn child,
                               void *head, size_t head_len, bool *completed, mseg **sp)
{
    char why[256];
    mseg_remove(name, backend);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    cc_target = k;
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        child(name, backend, fds[1]);
    }
    close(fds[1]);
    if (head_len)
        cr_assert_eq(read(fds[0], head, head_len), (ssize_t)head_len, "crash point %lu: the child's first bytes",
                     k);
    uint32_t acked = 0, i;
    while (read(fds[0], &i, sizeof i) == sizeof i)
        acked = i;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && (WEXITSTATUS(status) == CC_EXIT || WEXITSTATUS(status) == 0),
              "crash point %lu: child %s", k, th_status_str(status, why, sizeof why));
    *completed = WEXITSTATUS(status) == 0;
    struct mseg_report r;
    cr_assert_eq(mseg_check(name, backend, &r), 0, "crash point %lu after step %u: check: %s", k, acked,
                 mseg_errmsg());
    *sp = mseg_open(name, backend, NULL);
    cr_assert_not_null(*sp, "crash point %lu: reopen: %s", k, mseg_errmsg());
    return acked;
}

/* One crash at point k: returns the number of completed operations, or -1
   when the script ran to the end without reaching point k. */
static int cc_crash_at(const char *name, unsigned long k, unsigned backend)
{
    char why[256];
    bool completed;
    mseg *s;
    uint32_t acked = cc_crash_child(name, backend, k, cc_child, NULL, 0, &completed, &s);
    struct cc_handles h;
    cr_assert_eq(cc_open_all(s, &h, 0), 0, "crash point %lu: containers: %s", k, mseg_errmsg());
    cr_assert_eq(map_check(s, mseg_off_of(s, h.m), why, sizeof why), 0, "crash point %lu: %s", k, why);
    cr_assert_eq(map_check(s, mseg_off_of(s, h.b), why, sizeof why), 0, "crash point %lu: %s", k, why);
    cr_assert_eq(vec_check(s, mseg_off_of(s, h.v), why, sizeof why), 0, "crash point %lu: %s", k, why);

    struct cc_state before, after;
    cc_oracle(&before, (int)acked);
    cc_compare(s, &h, &before, why, sizeof why);
    if (*why && !completed && acked < CC_OPS) {
        char why2[256];
        cc_oracle(&after, (int)acked + 1);
        cc_compare(s, &h, &after, why2, sizeof why2);
        cr_assert_eq(*why2, 0, "crash point %lu in op %u: neither before (%s) nor after (%s)",
                     k, acked + 1, why, why2);
    } else {
        cr_assert_eq(*why, 0, "crash point %lu after op %u: %s", k, acked, why);
    }
    mseg_close(s);
    mseg_remove(name, backend);
    return completed ? -1 : (int)acked;
}

/* Runs the script crashed at point 1, 2, ... (crash_at: -1 once the run
   completes without reaching point k), on a fresh name; the points reached. */
typedef int crash_at_fn(const char *name, unsigned long k, unsigned backend);

static unsigned long crash_at_every_point(unsigned backend, crash_at_fn *crash_at, unsigned long limit)
{
    char name[256];
    th_name(name, backend);
    unsigned long k = 1;
    for (; k < limit; k++)
        if (crash_at(name, k, backend) < 0)
            break;
    return k - 1;
}

static void cc_every_point(unsigned backend)
{
    cc_build_script();
    unsigned long points = crash_at_every_point(backend, cc_crash_at, 100000);
    cr_assert_gt(points + 1, 3 * CC_OPS, "the script reaches several crash points per operation");
    cr_log_info("container crash test (%s): %lu crash points exercised over %d operations",
                backend ? "shm" : "file", points, CC_OPS);
}

Test(crash_containers, vector_and_map_ops_are_atomic_at_every_crash_point_file,
     .fini = th_cleanup, .timeout = 600)
{
    cc_every_point(0);
}

Test(crash_containers, vector_and_map_ops_are_atomic_at_every_crash_point_shm,
     .fini = th_cleanup, .timeout = 600)
{
    cc_every_point(MSEG_SHM);
}

/* ---- an owning map's entries and its containers' owner records ---- */

/* The script: containers c[0..2] are made first (an anonymous vector, an
   anonymous owning map, a vector), then each step changes one entry of the
   named owning map "own"; a replace and a delete free what they drop. */
enum { OW_V, OW_INNER, OW_V2, OW_CONTAINERS };
#define OW_STEPS 4

struct ow_step {
    uint64_t key;
    int put;                       /* container index, or -1: delete the key */
};

static const struct ow_step ow_script[OW_STEPS + 1] = {
    { 0, 0 }, { 1, OW_V }, { 2, OW_INNER }, { 1, OW_V2 }, { 2, -1 },
};

/* After steps 1..n: the container under key k (-1: none), and whether
   container i is still alive (not freed by a replace or delete). */
static int ow_held(int n, uint64_t key)
{
    int held = -1;
    for (int i = 1; i <= n; i++)
        if (ow_script[i].key == key)
            held = ow_script[i].put;
    return held;
}

static bool ow_alive(int n, int c)
{
    for (int i = 1; i <= n; i++)
        if (ow_held(i - 1, ow_script[i].key) == c && ow_script[i].put != c)
            return false;
    return true;
}

static void ow_child(const char *name, unsigned backend, int fd)
{
    struct mseg_config cfg = { .size = CC_SEG_SIZE };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL | backend, &cfg);
    CHILD_CHECK(s);
    mseg_map *own = mseg_map_open(s, "own", MSEG_KEY_U64, sizeof(mseg_off), MSEG_CREATE | MSEG_OWNED);
    void *c[OW_CONTAINERS] = { mseg_vec_new(s, 8), mseg_map_new_owned(s, MSEG_KEY_U64), mseg_vec_new(s, 8) };
    CHILD_CHECK(own && c[0] && c[1] && c[2] && mseg_vec_push(s, c[0], (uint64_t[]){ 5 }) == 0);
    mseg_off off[OW_CONTAINERS];
    for (int i = 0; i < OW_CONTAINERS; i++)
        off[i] = mseg_off_of(s, c[i]);
    CHILD_CHECK(write(fd, off, sizeof off) == sizeof off);
    mseg_test_set_crash_hook(cc_hook, NULL);
    for (uint32_t i = 1; i <= OW_STEPS; i++) {
        const struct ow_step *st = &ow_script[i];
        int rc = st->put >= 0 ? mseg_map_put(s, own, &st->key, 8, &off[st->put], 8)
                              : mseg_map_del(s, own, &st->key, 8);
        CHILD_CHECK(rc == 0);
        CHILD_CHECK(write(fd, &i, sizeof i) == sizeof i);
    }
    mseg_test_set_crash_hook(NULL, NULL);
    mseg_close(s);
    _exit(0);
}

/* Compares "own" and the owner records with the state after n steps; the
   first difference in why, or "" when they agree. */
static void ow_compare(mseg *s, mseg_map *own, const mseg_off *off, int n, char *why, size_t len)
{
    *why = 0;
    size_t entries = 0;
    for (uint64_t k = 1; k <= 2; k++) {
        int held = ow_held(n, k);
        const mseg_off *v = mseg_map_get(s, own, &k, 8, NULL);
        entries += held >= 0;
        if ((v != NULL) != (held >= 0) || (v && *v != off[held])) {
            snprintf(why, len, "key %llu: %s", (unsigned long long)k,
                     !v ? "missing" : held < 0 ? "present, expected absent" : "another container");
            return;
        }
    }
    if (mseg_map_len(s, own) != entries) {
        snprintf(why, len, "%zu entries, expected %zu", mseg_map_len(s, own), entries);
        return;
    }
    for (int c = 0; c < OW_CONTAINERS; c++) {
        if (!ow_alive(n, c))
            continue;
        bool held = ow_held(n, 1) == c || ow_held(n, 2) == c;
        uint64_t owner = ((const struct mseg_vec_root *)mseg_at(s, off[c]))->owner;
        if (owner != (held ? mseg_off_of(s, own) : 0)) {
            snprintf(why, len, "container %d (%s) records owner %#llx", c, held ? "held" : "not held",
                     (unsigned long long)owner);
            return;
        }
    }
}

/* One crash at point k (as cc_crash_at): the completed steps, or -1 when
   the script ran to the end first. */
static int ow_crash_at(const char *name, unsigned long k, unsigned backend)
{
    char why[256], why2[256];
    bool completed;
    mseg *s;
    mseg_off off[OW_CONTAINERS];
    uint32_t acked = cc_crash_child(name, backend, k, ow_child, off, sizeof off, &completed, &s);
    mseg_map *own = mseg_map_open(s, "own", MSEG_KEY_U64, sizeof(mseg_off), MSEG_OWNED);
    cr_assert_not_null(own, "crash point %lu: %s", k, mseg_errmsg());
    cr_assert_eq(map_check(s, mseg_off_of(s, own), why, sizeof why), 0, "crash point %lu: %s", k, why);
    ow_compare(s, own, off, (int)acked, why, sizeof why);
    if (*why && !completed && acked < OW_STEPS) {
        ow_compare(s, own, off, (int)acked + 1, why2, sizeof why2);
        cr_assert_eq(*why2, 0, "crash point %lu in step %u: neither before (%s) nor after (%s)", k, acked + 1,
                     why, why2);
    } else {
        cr_assert_eq(*why, 0, "crash point %lu after step %u: %s", k, acked, why);
    }
    mseg_close(s);
    mseg_remove(name, backend);
    return completed ? -1 : (int)acked;
}

static void ow_every_point(unsigned backend)
{
    unsigned long points = crash_at_every_point(backend, ow_crash_at, 10000);
    cr_assert_gt(points + 1, 2 * OW_STEPS, "the script reaches several crash points per step");
    cr_log_info("owning-map crash test (%s): %lu crash points exercised over %d steps",
                backend ? "shm" : "file", points, OW_STEPS);
}

Test(crash_containers, an_owning_maps_entries_and_owner_records_agree_at_every_crash_point_file,
     .fini = th_cleanup, .timeout = 120)
{
    ow_every_point(0);
}

Test(crash_containers, an_owning_maps_entries_and_owner_records_agree_at_every_crash_point_shm,
     .fini = th_cleanup, .timeout = 120)
{
    ow_every_point(MSEG_SHM);
}
