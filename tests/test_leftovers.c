/*
 * test_leftovers.c - what a crashed or timed-out test created is removed.
 *
 * A test removes its segments in `.fini = th_cleanup`, which runs when an
 * assertion fails but not when the test process dies of a signal or is
 * killed at its timeout. So the runner gives the run an id (its pid, in the
 * environment, which every test process and its children inherit),
 * helpers.h puts that id in every name, and when all tests are done the
 * runner removes whatever still carries it, in ${TMPDIR:-/tmp} and
 * /dev/shm, and says so: a leftover is a test that did not clean up.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <ftw.h>

#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include "helpers.h"

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    char id[32];
    snprintf(id, sizeof id, "%d", (int)getpid());
    setenv("MSEG_TEST_RUN", id, 1);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)st, (void)type, (void)f;
    (void)remove(path);   /* best effort: go on with the rest */
    return 0;
}

/* Removes dir/<prefix>* (directories with their contents); how many. */
static int sweep(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        fprintf(stderr, "test run: removing %s, left by a test that crashed or timed out\n", path);
        nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        n++;
    }
    closedir(d);
    return n;
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "mseg-t-%d-", (int)getpid());
    sweep(th_tmpdir(), prefix);
    sweep("/dev/shm", prefix);
}

/* The id reaches the tests: names carry the runner's pid, which the sweep
   looks for (a test process is the runner's child or grandchild, never the
   runner itself). */
Test(leftovers, test_names_carry_the_runs_id)
{
    const char *run = getenv("MSEG_TEST_RUN");
    cr_assert(run && atoi(run) > 0, "MSEG_TEST_RUN is not set in the test process");
    cr_assert_neq(atoi(run), (int)getpid(), "the run id is the test's own pid, not the runner's");
    char name[256], want[64];
    th_name(name, 0);
    snprintf(want, sizeof want, "/mseg-t-%s-%d-", run, (int)getpid());
    cr_assert(strstr(name, want), "name %s does not carry the run id (%s)", name, want);
}
