/*
 * scale.h - the scale workload, shared by the runners that have it: P
 * processes allocating and freeing at once on one shm segment.
 *
 * The parent creates the segment, closes it and forks P children. Each
 * opens the segment itself, allocates SCALE_LIVE blocks of 16..256 bytes
 * (not timed), says it is ready and waits for the start, which the parent
 * gives once all are ready; then each runs N steps: free the block at a
 * random index, allocate a new one there, write its tag. At the end it
 * checks that every block still holds its tag (a block handed out twice
 * would have been overwritten). The timed span runs from the start to the
 * last child's exit; the row counts the operations of all processes (2 per
 * step).
 *
 * Each runner says how to open, allocate, free and close through struct
 * scale_ops, so the loop, the random numbers and the timing are the same
 * for every implementation. The callbacks die() themselves, with the
 * library's own message, when a call fails.
 *
 * Header-only, as common.h, which it needs included first.
 */
#ifndef MSEG_BENCH_SCALE_H
#define MSEG_BENCH_SCALE_H

#include <sys/wait.h>

#define SCALE_LIVE 10000

struct scale_ops {
    void *(*open)(void *ctx);                 /* this child's handle on the segment */
    void *(*alloc)(void *seg, size_t bytes);   /* never NULL: dies instead */
    void (*release)(void *seg, void *block);   /* frees a block; dies on failure */
    void (*close)(void *seg);
    void *ctx;                                 /* what open needs: the segment's name */
};

/* One child: the blocks, a byte on ready_fd, the start (end of file on
   go_fd), n steps, the check. Exits the process. */
static inline void scale_child(const struct scale_ops *o, uint64_t n, unsigned id, int ready_fd,
                               int go_fd)
{
    struct rng r = rng_seeded(42 + id);
    void **p = (void **)xcalloc(SCALE_LIVE, sizeof *p);
    uint64_t *tag = (uint64_t *)xcalloc(SCALE_LIVE, sizeof *tag);
    char c;
    void *s = o->open(o->ctx);
    for (size_t i = 0; i < SCALE_LIVE; i++) {
        p[i] = o->alloc(s, (size_t)rand_range(&r, 16, 256));
        *(uint64_t *)p[i] = tag[i] = i;
    }
    CHECK(write(ready_fd, "r", 1) == 1, "scale: child %u: ready: %s", id, strerror(errno));
    close(ready_fd);   /* so a sibling that dies unready ends the parent's wait */
    CHECK(read(go_fd, &c, 1) == 0, "scale: child %u: barrier", id);
    for (uint64_t step = 0; step < n; step++) {
        size_t k = (size_t)rand_range(&r, 0, SCALE_LIVE - 1);
        o->release(s, p[k]);
        p[k] = o->alloc(s, (size_t)rand_range(&r, 16, 256));
        *(uint64_t *)p[k] = tag[k] = SCALE_LIVE + step;
    }
    for (size_t i = 0; i < SCALE_LIVE; i++)
        CHECK(*(uint64_t *)p[i] == tag[i], "scale: child %u: block %zu overwritten", id, i);
    o->close(s);
    _exit(0);
}

/* Forks procs children that each prepare, say so on ready, then wait on
   go[0] until the parent closes go[1]; seconds from that close to the
   last exit. */
static inline double scale_run(const struct scale_ops *o, unsigned procs, uint64_t n)
{
    int go[2], ready[2];
    CHECK(pipe(go) == 0 && pipe(ready) == 0, "pipe: %s", strerror(errno));
    pid_t *pids = (pid_t *)xcalloc(procs, sizeof *pids);
    fflush(NULL);
    for (unsigned i = 0; i < procs; i++) {
        pids[i] = fork();
        CHECK(pids[i] >= 0, "fork: %s", strerror(errno));
        if (pids[i] == 0) {
            close(go[1]);
            close(ready[0]);
            scale_child(o, n, i, ready[1], go[0]);
        }
    }
    close(go[0]);
    close(ready[1]);
    /* every child has opened and filled (not timed). Each closes its end
       once it has written, so if one dies before, the others' ends are
       closed too and read() sees the end of file instead of waiting for
       ever; that child's status then fails the run below */
    char c;
    for (unsigned i = 0; i < procs && read(ready[0], &c, 1) == 1; i++)
        ;
    close(ready[0]);
    double t0 = now_sec();
    close(go[1]);
    int bad = 0;
    for (unsigned i = 0; i < procs; i++) {
        int st;
        CHECK(waitpid(pids[i], &st, 0) == pids[i], "waitpid: %s", strerror(errno));
        bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    double t1 = now_sec();
    CHECK(!bad, "scale: a child failed");
    free(pids);
    return t1 - t0;
}

/* The workload's row: phase procs<P>, all processes' operations. */
static inline void scale_emit(const struct args *a, const char *impl, uint64_t n, double secs)
{
    char phase[32], extra[64];
    snprintf(phase, sizeof phase, "procs%u", a->procs);
    snprintf(extra, sizeof extra, "procs=%u;steps_per_proc=%llu;ops=free+alloc", a->procs,
             (unsigned long long)n);
    emit(a, impl, phase, 2 * n * a->procs, secs, extra);
}

#endif /* MSEG_BENCH_SCALE_H */
