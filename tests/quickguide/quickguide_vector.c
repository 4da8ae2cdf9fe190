/*
 * quickguide_vector.c - a vector of ints built by one process, sorted and
 * destroyed by another.
 *
 * The C version of Boost.Interprocess's quick guide "Creating vectors in
 * shared memory":
 *
 *   1. the parent creates a vector of int named "MyVector" and pushes
 *      0..99 into it;
 *   2. it starts itself as a child (system()), which finds "MyVector" by
 *      name and element size, sorts it in reverse with qsort on
 *      mseg_vec_data, checks the result, and destroys it;
 *   3. the parent checks that "MyVector" is gone.
 *
 * Usage: quickguide_vector file|shm
 * Exit status 0 when every check holds, 1 otherwise (with a message).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mseg.h"

#define COUNT 100

static int backend_flags(const char *backend, unsigned *flags)
{
    if (strcmp(backend, "file") == 0) { *flags = 0; return 0; }
    if (strcmp(backend, "shm") == 0)  { *flags = MSEG_SHM; return 0; }
    return -1;
}

static void segment_name(char *buf, size_t len, unsigned flags)
{
    const char *tmp = getenv("TMPDIR");
    if (flags & MSEG_SHM)
        snprintf(buf, len, "/mseg-qg-%ld-vector", (long)getpid());
    else
        snprintf(buf, len, "%s/mseg-qg-%ld-vector", tmp && *tmp ? tmp : "/tmp", (long)getpid());
}

static int descending(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

/* The child: find, sort in reverse, check, destroy. */
static int child_work(mseg *s)
{
    mseg_vec *v = mseg_vec_open(s, "MyVector", sizeof(int), 0);     /* find, do not create */
    if (!v) {
        fprintf(stderr, "child: cannot find MyVector: %s\n", mseg_errmsg());
        return -1;
    }
    size_t n = mseg_vec_len(s, v);
    if (n != COUNT) {
        fprintf(stderr, "child: MyVector has %zu elements, expected %d\n", n, COUNT);
        return -1;
    }
    int *data = mseg_vec_data(s, v);
    qsort(data, n, sizeof *data, descending);
    for (size_t i = 0; i < n; i++) {
        if (data[i] != COUNT - 1 - (int)i) {
            fprintf(stderr, "child: after the sort, element %zu is %d\n", i, data[i]);
            return -1;
        }
    }
    printf("child: found MyVector (%zu ints), sorted it in reverse: %d %d %d ... %d\n",
           n, data[0], data[1], data[2], data[n - 1]);
    if (mseg_destroy(s, "MyVector") != 0) {
        fprintf(stderr, "child: mseg_destroy MyVector: %s\n", mseg_errmsg());
        return -1;
    }
    printf("child: destroyed MyVector\n");
    return 0;
}

static int child(const char *backend, const char *name)
{
    unsigned flags;
    if (backend_flags(backend, &flags) != 0)
        return 1;
    mseg *s = mseg_open(name, flags, NULL);                  /* open_only */
    if (!s) {
        fprintf(stderr, "child: cannot open %s: %s\n", name, mseg_errmsg());
        return 1;
    }
    int rc = child_work(s) == 0 ? 0 : 1;
    if (mseg_close(s) != 0)
        rc = 1;
    return rc;
}

static int build_vector(mseg *s)
{
    mseg_vec *v = mseg_vec_open(s, "MyVector", sizeof(int), MSEG_CREATE);
    if (!v) {
        fprintf(stderr, "parent: cannot create MyVector: %s\n", mseg_errmsg());
        return -1;
    }
    for (int i = 0; i < COUNT; i++) {
        if (mseg_vec_push(s, v, &i) != 0) {
            fprintf(stderr, "parent: push %d: %s\n", i, mseg_errmsg());
            return -1;
        }
    }
    printf("parent: built MyVector with %zu ints (0..%d)\n", mseg_vec_len(s, v), COUNT - 1);
    return 0;
}

static int parent(const char *program, const char *backend, unsigned flags, const char *name)
{
    struct mseg_config cfg = { .size = 1 << 20 };
    mseg *s = mseg_open(name, flags | MSEG_CREATE | MSEG_EXCL, &cfg);  /* create_only */
    if (!s) {
        fprintf(stderr, "parent: cannot create %s: %s\n", name, mseg_errmsg());
        return 1;
    }
    size_t free_before = mseg_free_memory(s);
    int rc = 1;
    if (build_vector(s) != 0)
        goto out;

    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' child %s '%s'", program, backend, name);
    printf("parent: running %s\n", cmd);
    fflush(stdout);
    int status = system(cmd);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "parent: the child failed (status %#x)\n", status);
        goto out;
    }
    errno = 0;
    if (mseg_vec_open(s, "MyVector", sizeof(int), 0) != NULL || errno != ENOENT) {
        fprintf(stderr, "parent: MyVector is still there\n");
        goto out;
    }
    if (mseg_free_memory(s) != free_before) {
        fprintf(stderr, "parent: %zu bytes free, %zu before the vector existed\n",
                mseg_free_memory(s), free_before);
        goto out;
    }
    printf("parent: MyVector is gone and its memory is free again\n");
    rc = 0;
out:
    if (mseg_close(s) != 0)
        rc = 1;
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "child") == 0)
        return child(argv[2], argv[3]);
    unsigned flags;
    if (argc != 2 || backend_flags(argv[1], &flags) != 0) {
        fprintf(stderr, "usage: %s file|shm\n", argv[0]);
        return 2;
    }
    char name[4096];
    segment_name(name, sizeof name, flags);
    int rc = parent(argv[0], argv[1], flags, name);
    if (mseg_remove(name, flags) != 0 && errno != ENOENT) {
        fprintf(stderr, "parent: mseg_remove %s: %s\n", name, mseg_errmsg());
        rc = 1;
    }
    printf("quickguide_vector (%s): %s\n", argv[1], rc == 0 ? "OK" : "FAILED");
    return rc;
}
