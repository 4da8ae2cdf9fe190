/*
 * quickguide_named.c - named objects created in one process, found and
 * destroyed in another.
 *
 * The C version of Boost.Interprocess's quick guide "Creating named shared
 * memory objects":
 *
 *   1. the parent constructs three named objects: one MyType ("MyType
 *      instance"), an array of 10 ("MyType array") and an array of 3 copied
 *      from initializers ("MyType array from it");
 *   2. it starts itself as a child, which finds each object by name and
 *      type, checks its length and contents, and destroys it;
 *   3. the parent checks that every name is gone.
 *
 * MSEG_NEW / MSEG_FIND record the type's name ("MyType") and size with the
 * object, so that finding it as another type fails with EINVAL.
 *
 * Usage: quickguide_named file|shm
 * Exit status 0 when every check holds, 1 otherwise (with a message).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mseg.h"

typedef struct {
    int   a;
    float b;
} MyType;

/* The contents each object is given, and checked against. */
static const MyType instance_value = { 42, 3.5f };
static MyType array_value(size_t i) { return (MyType){ (int)i, (float)i * 0.5f }; }
static const MyType initializers[3] = { { 0, 0.0f }, { 1, 1.0f }, { 2, 2.0f } };

static const char *const names[3] = { "MyType instance", "MyType array", "MyType array from it" };

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
        snprintf(buf, len, "/mseg-qg-%ld-named", (long)getpid());
    else
        snprintf(buf, len, "%s/mseg-qg-%ld-named",
                 tmp && *tmp ? tmp : "/tmp", (long)getpid());
}

static int same(MyType x, MyType y)
{
    return x.a == y.a && x.b == y.b;
}

/* Finds name as MyType and checks it has `expected` elements equal to want[i]
   (want_one: every element equals *want). Prints what is wrong. */
static int check_object(mseg *s, const char *name, size_t expected,
                        const MyType *want, int want_one)
{
    size_t count = 0;
    MyType *obj = MSEG_FIND(s, name, MyType, &count);
    if (!obj) {
        fprintf(stderr, "child: MSEG_FIND \"%s\": %s\n", name, mseg_errmsg());
        return -1;
    }
    if (count != expected) {
        fprintf(stderr, "child: \"%s\" has %zu elements, expected %zu\n", name, count, expected);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        MyType w = want_one ? *want : want[i];
        if (!same(obj[i], w)) {
            fprintf(stderr, "child: \"%s\"[%zu] is {%d, %g}, expected {%d, %g}\n",
                    name, i, obj[i].a, obj[i].b, w.a, w.b);
            return -1;
        }
    }
    printf("child: found \"%s\": %zu MyType, contents as written\n", name, count);
    return 0;
}

static int child_checks(mseg *s)
{
    if (check_object(s, names[0], 1, &instance_value, 1) != 0)
        return -1;

    MyType want[10];
    for (size_t i = 0; i < 10; i++)
        want[i] = array_value(i);
    if (check_object(s, names[1], 10, want, 0) != 0)
        return -1;
    if (check_object(s, names[2], 3, initializers, 0) != 0)
        return -1;

    /* The type is part of the object: finding it as an int fails. */
    errno = 0;
    if (mseg_find(s, names[0], "int", sizeof(int), NULL) != NULL || errno != EINVAL) {
        fprintf(stderr, "child: finding \"%s\" as int did not fail with EINVAL\n", names[0]);
        return -1;
    }
    printf("child: finding \"%s\" as an int fails with EINVAL, as it should\n", names[0]);

    for (int i = 0; i < 3; i++) {
        if (mseg_destroy(s, names[i]) != 0) {
            fprintf(stderr, "child: mseg_destroy \"%s\": %s\n", names[i], mseg_errmsg());
            return -1;
        }
        printf("child: destroyed \"%s\"\n", names[i]);
    }
    return 0;
}

static int child(const char *backend, const char *name)
{
    unsigned flags;
    if (backend_flags(backend, &flags) != 0) {
        fprintf(stderr, "child: unknown backend '%s'\n", backend);
        return 1;
    }
    mseg *s = mseg_open(name, flags, NULL);           /* open_only */
    if (!s) {
        fprintf(stderr, "child: cannot open %s: %s\n", name, mseg_errmsg());
        return 1;
    }
    int rc = child_checks(s) == 0 ? 0 : 1;
    if (mseg_close(s) != 0) {
        fprintf(stderr, "child: mseg_close: %s\n", mseg_errmsg());
        rc = 1;
    }
    return rc;
}

static int construct_all(mseg *s)
{
    MyType *instance = MSEG_NEW(s, names[0], MyType, 1);
    if (!instance) {
        fprintf(stderr, "parent: MSEG_NEW \"%s\": %s\n", names[0], mseg_errmsg());
        return -1;
    }
    *instance = instance_value;
    printf("parent: constructed \"%s\"\n", names[0]);

    MyType *array = MSEG_NEW(s, names[1], MyType, 10);
    if (!array) {
        fprintf(stderr, "parent: MSEG_NEW \"%s\": %s\n", names[1], mseg_errmsg());
        return -1;
    }
    for (size_t i = 0; i < 10; i++)
        array[i] = array_value(i);
    printf("parent: constructed \"%s\" (10 elements)\n", names[1]);

    MyType *from = MSEG_NEW_FROM(s, names[2], MyType, 3, initializers);
    if (!from) {
        fprintf(stderr, "parent: MSEG_NEW_FROM \"%s\": %s\n", names[2], mseg_errmsg());
        return -1;
    }
    printf("parent: constructed \"%s\" (3 elements from initializers)\n", names[2]);

    /* A name is taken once. */
    errno = 0;
    if (MSEG_NEW(s, names[0], MyType, 1) != NULL || errno != EEXIST) {
        fprintf(stderr, "parent: constructing \"%s\" twice did not fail with EEXIST\n", names[0]);
        return -1;
    }
    printf("parent: %zu named objects\n", mseg_named_count(s));
    return 0;
}

static int check_all_gone(mseg *s)
{
    for (int i = 0; i < 3; i++) {
        errno = 0;
        if (MSEG_FIND(s, names[i], MyType, NULL) != NULL || errno != ENOENT) {
            fprintf(stderr, "parent: \"%s\" is still there (or errno %d is not ENOENT)\n",
                    names[i], errno);
            return -1;
        }
    }
    size_t n = mseg_named_count(s);
    if (n != 0) {
        fprintf(stderr, "parent: %zu named objects left, expected 0\n", n);
        return -1;
    }
    printf("parent: the child destroyed all three; no named objects left\n");
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
    printf("parent: created %s\n", name);

    int rc = 1;
    if (construct_all(s) != 0)
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

    if (check_all_gone(s) != 0)
        goto out;
    rc = 0;
out:
    if (mseg_close(s) != 0) {
        fprintf(stderr, "parent: mseg_close: %s\n", mseg_errmsg());
        rc = 1;
    }
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

    /* Remove the segment whatever happened (it may not exist if creation failed). */
    if (mseg_remove(name, flags) != 0 && errno != ENOENT) {
        fprintf(stderr, "parent: mseg_remove %s: %s\n", name, mseg_errmsg());
        rc = 1;
    }
    printf("quickguide_named (%s): %s\n", argv[1], rc == 0 ? "OK" : "FAILED");
    return rc;
}
