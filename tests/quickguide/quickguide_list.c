/*
 * quickguide_list.c - a linked list inside a segment, walked by two
 * processes that map the segment at different addresses.
 *
 * The C version of Boost.Interprocess's quick guide "Using an offset smart
 * pointer for shared memory": a node's `next` is an mseg_relptr, which
 * stores the distance from itself to its target instead of an address, so
 * the list is valid in every process.
 *
 *   1. the parent builds a list of 10 nodes (values 0..9) and keeps its head
 *      in a named object, "list head";
 *   2. it starts itself as a child, which finds the head and walks the list;
 *   3. the parent walks it too, then frees the nodes;
 *   4. circular cases, checked by both: a node whose next is the node
 *      itself ("circular node"), and a pointer set to its own address
 *      ("self pointer"), which must not read back as null.
 *
 * Usage: quickguide_list file|shm
 * Exit status 0 when every check holds, 1 otherwise (with a message).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mseg.h"

#define LIST_LENGTH 10

typedef struct {
    int         value;
    mseg_relptr next;
} Node;

typedef struct {
    mseg_relptr first;
} ListHead;

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
        snprintf(buf, len, "/mseg-qg-%ld-list", (long)getpid());
    else
        snprintf(buf, len, "%s/mseg-qg-%ld-list",
                 tmp && *tmp ? tmp : "/tmp", (long)getpid());
}

/* Walks the list from head and checks it holds 0..LIST_LENGTH-1 in order.
   The walk is bounded, so a broken (cyclic) list is reported, not looped on. */
static int walk(const char *who, ListHead *head)
{
    int i = 0;
    for (Node *n = mseg_rel_get(&head->first); n; n = mseg_rel_get(&n->next), i++) {
        if (i == LIST_LENGTH) {
            fprintf(stderr, "%s: the list is longer than %d nodes\n", who, LIST_LENGTH);
            return -1;
        }
        if (n->value != i) {
            fprintf(stderr, "%s: node %d holds %d\n", who, i, n->value);
            return -1;
        }
    }
    if (i != LIST_LENGTH) {
        fprintf(stderr, "%s: the list has %d nodes, expected %d\n", who, i, LIST_LENGTH);
        return -1;
    }
    printf("%s: walked %d nodes holding 0..%d (head at %p in this process)\n",
           who, i, LIST_LENGTH - 1, (void *)head);
    return 0;
}

/* The circular cases: a node that is its own successor, and a relptr that
   points at its own address (stored as a tagged offset, not as "null"). */
static int check_circular(const char *who, Node *n, mseg_relptr *selfptr)
{
    if (mseg_rel_get(&n->next) != n) {
        fprintf(stderr, "%s: a node's next does not point back at the node\n", who);
        return -1;
    }
    if (mseg_rel_get(selfptr) != selfptr) {
        fprintf(stderr, "%s: a relptr set to its own address does not read back\n", who);
        return -1;
    }
    printf("%s: a node whose next is itself, and a relptr to its own address, read back\n", who);
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
    int rc = 1;
    size_t count;
    ListHead *head = MSEG_FIND(s, "list head", ListHead, &count);
    Node *loop = MSEG_FIND(s, "circular node", Node, &count);
    mseg_relptr *selfptr = MSEG_FIND(s, "self pointer", mseg_relptr, &count);
    if (!head || !loop || !selfptr) {
        fprintf(stderr, "child: MSEG_FIND: %s\n", mseg_errmsg());
        goto out;
    }
    if (walk("child", head) != 0 || check_circular("child", loop, selfptr) != 0)
        goto out;
    rc = 0;
out:
    if (mseg_close(s) != 0) {
        fprintf(stderr, "child: mseg_close: %s\n", mseg_errmsg());
        rc = 1;
    }
    return rc;
}

/* Builds 0 -> 1 -> ... -> 9 by pushing 9, 8, ..., 0 at the front. */
static int build_list(mseg *s, ListHead *head)
{
    mseg_rel_set(&head->first, NULL);
    for (int i = LIST_LENGTH - 1; i >= 0; i--) {
        Node *n = mseg_alloc(s, sizeof *n);
        if (!n) {
            fprintf(stderr, "parent: mseg_alloc: %s\n", mseg_errmsg());
            return -1;
        }
        n->value = i;
        mseg_rel_set(&n->next, mseg_rel_get(&head->first));
        mseg_rel_set(&head->first, n);
    }
    printf("parent: built a list of %d nodes\n", LIST_LENGTH);
    return 0;
}

static int free_list(mseg *s, ListHead *head)
{
    Node *n = mseg_rel_get(&head->first);
    for (int i = 0; n && i < LIST_LENGTH; i++) {
        Node *next = mseg_rel_get(&n->next);
        if (mseg_free(s, n) != 0) {
            fprintf(stderr, "parent: mseg_free: %s\n", mseg_errmsg());
            return -1;
        }
        n = next;
    }
    mseg_rel_set(&head->first, NULL);
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
    ListHead *head = MSEG_NEW(s, "list head", ListHead, 1);
    Node *loop = MSEG_NEW(s, "circular node", Node, 1);
    mseg_relptr *selfptr = MSEG_NEW(s, "self pointer", mseg_relptr, 1);
    if (!head || !loop || !selfptr) {
        fprintf(stderr, "parent: MSEG_NEW: %s\n", mseg_errmsg());
        goto out;
    }
    if (build_list(s, head) != 0)
        goto out;
    loop->value = -1;
    mseg_rel_set(&loop->next, loop);
    mseg_rel_set(selfptr, selfptr);
    if (check_circular("parent", loop, selfptr) != 0)
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

    if (walk("parent", head) != 0 || free_list(s, head) != 0)
        goto out;
    if (mseg_destroy(s, "list head") != 0 || mseg_destroy(s, "circular node") != 0 ||
        mseg_destroy(s, "self pointer") != 0) {
        fprintf(stderr, "parent: mseg_destroy: %s\n", mseg_errmsg());
        goto out;
    }
    printf("parent: freed the nodes and destroyed the named objects\n");
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
    printf("quickguide_list (%s): %s\n", argv[1], rc == 0 ? "OK" : "FAILED");
    return rc;
}
