/*
 * quickguide_alloc.c - a raw block passed between processes by its handle.
 *
 * The C version of Boost.Interprocess's quick guide "Using shared memory as
 * a pool of unnamed memory blocks":
 *
 *   1. the parent creates a segment, notes how much memory is free and
 *      allocates 1024 bytes;
 *   2. it turns the address into a handle (an offset from the segment's
 *      base, valid in every process) and starts itself as a child with the
 *      handle on the command line;
 *   3. the child opens the segment, turns the handle back into an address
 *      in its own mapping, checks the bytes and frees the block;
 *   4. the parent checks that the free memory is back to what it was.
 *
 * Usage: quickguide_alloc file|shm
 * Exit status 0 when every check holds, 1 otherwise (with a message).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mseg.h"

#define BLOCK_SIZE 1024

/* "file" or "shm" -> the flag that selects the backend; -1 if neither. */
static int backend_flags(const char *backend, unsigned *flags)
{
    if (strcmp(backend, "file") == 0) { *flags = 0; return 0; }
    if (strcmp(backend, "shm") == 0)  { *flags = MSEG_SHM; return 0; }
    return -1;
}

/* A name no other run uses: the pid is in it. */
static void segment_name(char *buf, size_t len, unsigned flags)
{
    const char *tmp = getenv("TMPDIR");
    if (flags & MSEG_SHM)
        snprintf(buf, len, "/mseg-qg-%ld-alloc", (long)getpid());
    else
        snprintf(buf, len, "%s/mseg-qg-%ld-alloc",
                 tmp && *tmp ? tmp : "/tmp", (long)getpid());
}

static int child(const char *backend, const char *name, const char *handle_text)
{
    unsigned flags;
    if (backend_flags(backend, &flags) != 0) {
        fprintf(stderr, "child: unknown backend '%s'\n", backend);
        return 1;
    }
    char *end;
    errno = 0;
    mseg_off handle = strtoull(handle_text, &end, 10);
    if (errno || *end || handle == 0) {
        fprintf(stderr, "child: bad handle '%s'\n", handle_text);
        return 1;
    }

    mseg *s = mseg_open(name, flags, NULL);           /* open_only */
    if (!s) {
        fprintf(stderr, "child: cannot open %s: %s\n", name, mseg_errmsg());
        return 1;
    }

    int rc = 1;
    unsigned char *block = mseg_at(s, handle);
    if (!block) {
        fprintf(stderr, "child: handle %" PRIu64 ": %s\n", handle, mseg_errmsg());
        goto out;
    }
    printf("child: handle %" PRIu64 " is at %p in this process\n", handle, (void *)block);
    for (size_t i = 0; i < BLOCK_SIZE; i++) {
        if (block[i] != (unsigned char)i) {
            fprintf(stderr, "child: byte %zu is %u, expected %u\n",
                    i, block[i], (unsigned)(unsigned char)i);
            goto out;
        }
    }
    printf("child: the %d bytes the parent wrote are there\n", BLOCK_SIZE);
    if (mseg_free(s, block) != 0) {
        fprintf(stderr, "child: mseg_free: %s\n", mseg_errmsg());
        goto out;
    }
    printf("child: block freed\n");
    rc = 0;
out:
    if (mseg_close(s) != 0) {
        fprintf(stderr, "child: mseg_close: %s\n", mseg_errmsg());
        rc = 1;
    }
    return rc;
}

static int parent(const char *program, const char *backend, unsigned flags, const char *name)
{
    struct mseg_config cfg = { .size = 1 << 20 };
    mseg *s = mseg_open(name, flags | MSEG_CREATE | MSEG_EXCL, &cfg);  /* create_only */
    if (!s) {
        fprintf(stderr, "parent: cannot create %s: %s\n", name, mseg_errmsg());
        return 1;
    }
    printf("parent: created %s (%zu bytes)\n", name, mseg_size(s));

    int rc = 1;
    size_t free_before = mseg_free_memory(s);
    printf("parent: %zu bytes free\n", free_before);

    unsigned char *block = mseg_alloc(s, BLOCK_SIZE);
    if (!block) {
        fprintf(stderr, "parent: mseg_alloc: %s\n", mseg_errmsg());
        goto out;
    }
    for (size_t i = 0; i < BLOCK_SIZE; i++)
        block[i] = (unsigned char)i;
    mseg_off handle = mseg_off_of(s, block);
    if (handle == 0) {
        fprintf(stderr, "parent: mseg_off_of: %s\n", mseg_errmsg());
        goto out;
    }
    printf("parent: allocated %d bytes at %p, handle %" PRIu64 "\n",
           BLOCK_SIZE, (void *)block, handle);
    if (mseg_free_memory(s) >= free_before) {
        fprintf(stderr, "parent: free memory did not go down after mseg_alloc\n");
        goto out;
    }

    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' child %s '%s' %" PRIu64, program, backend, name, handle);
    printf("parent: running %s\n", cmd);
    fflush(stdout);
    int status = system(cmd);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "parent: the child failed (status %#x)\n", status);
        goto out;
    }

    size_t free_after = mseg_free_memory(s);
    if (free_after != free_before) {
        fprintf(stderr, "parent: %zu bytes free after the child's mseg_free, expected %zu\n",
                free_after, free_before);
        goto out;
    }
    printf("parent: %zu bytes free again: the child's mseg_free returned the block\n",
           free_after);
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
    if (argc == 5 && strcmp(argv[1], "child") == 0)
        return child(argv[2], argv[3], argv[4]);

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
    printf("quickguide_alloc (%s): %s\n", argv[1], rc == 0 ? "OK" : "FAILED");
    return rc;
}
