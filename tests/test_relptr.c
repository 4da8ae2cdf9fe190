/* test_relptr.c - self-relative pointers. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include "helpers.h"

#define MiB (1024u * 1024u)

static mseg *new_seg(char *name)
{
    th_name(name, 0);
    struct mseg_config c = { .size = 2 * MiB };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &c);
    cr_assert_not_null(s, "create %s: %s", name, mseg_errmsg());
    return s;
}

Test(relptr, zero_filled_is_null)
{
    mseg_relptr p;
    memset(&p, 0, sizeof p);
    cr_assert_null(mseg_rel_get(&p));
    static mseg_relptr zeroed[4];
    for (int i = 0; i < 4; i++)
        cr_assert_null(mseg_rel_get(&zeroed[i]));
}

Test(relptr, zero_filled_in_a_new_object_is_null, .fini = th_cleanup)
{
    char name[256];
    mseg *s = new_seg(name);
    mseg_relptr *v = MSEG_NEW(s, "ptrs", mseg_relptr, 64);
    cr_assert_not_null(v);
    for (int i = 0; i < 64; i++)
        cr_assert_null(mseg_rel_get(&v[i]));
    mseg_close(s);
}

Test(relptr, set_then_get_round_trips_forward_and_backward, .fini = th_cleanup)
{
    char name[256];
    mseg *s = new_seg(name);
    enum { N = 256 };
    mseg_relptr *v = MSEG_NEW(s, "ptrs", mseg_relptr, N);
    char *bytes = MSEG_NEW(s, "bytes", char, 100000);
    cr_assert(v && bytes);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j += 7) {
            mseg_rel_set(&v[i], &v[j]);
            cr_assert_eq(mseg_rel_get(&v[i]), &v[j], "v[%d] -> v[%d]", i, j);
        }
    /* targets at any byte offset, before and after, near and far */
    long offs[] = { 0, 1, 3, 15, 16, 4095, 99999 };
    for (size_t k = 0; k < sizeof offs / sizeof offs[0]; k++) {
        mseg_rel_set(&v[0], bytes + offs[k]);
        cr_assert_eq(mseg_rel_get(&v[0]), bytes + offs[k]);
        mseg_rel_set(&v[N - 1], bytes + offs[k]);
        cr_assert_eq(mseg_rel_get(&v[N - 1]), bytes + offs[k]);
    }
    /* a relptr stored at an odd address inside a byte array works too */
    mseg_relptr *odd = (mseg_relptr *)(void *)(bytes + 8);
    mseg_rel_set(odd, bytes + 5000);
    cr_assert_eq(mseg_rel_get(odd), bytes + 5000);
    mseg_rel_set(odd, bytes);
    cr_assert_eq(mseg_rel_get(odd), bytes);
    mseg_close(s);
}

Test(relptr, a_pointer_to_itself_is_not_null)
{
    mseg_relptr p = { 0 };
    mseg_rel_set(&p, &p);
    cr_assert_eq(mseg_rel_get(&p), &p);
    /* a neighbour pointing at p is distinct from p pointing at itself */
    mseg_relptr q[2] = { { 0 }, { 0 } };
    mseg_rel_set(&q[0], &q[0]);
    mseg_rel_set(&q[1], &q[0]);
    cr_assert_eq(mseg_rel_get(&q[0]), &q[0]);
    cr_assert_eq(mseg_rel_get(&q[1]), &q[0]);
    mseg_rel_set(&q[0], &q[1]);
    cr_assert_eq(mseg_rel_get(&q[0]), &q[1]);
}

Test(relptr, setting_null_makes_it_null)
{
    mseg_relptr p[3] = { { 0 }, { 0 }, { 0 } };
    mseg_rel_set(&p[0], &p[2]);
    cr_assert_not_null(mseg_rel_get(&p[0]));
    mseg_rel_set(&p[0], NULL);
    cr_assert_null(mseg_rel_get(&p[0]));
    mseg_rel_set(&p[1], &p[1]);
    mseg_rel_set(&p[1], NULL);
    cr_assert_null(mseg_rel_get(&p[1]));
    mseg_rel_set(&p[2], NULL);
    cr_assert_null(mseg_rel_get(&p[2]));
}

/* A circular doubly linked list with a head that points at itself when
   empty, built with relptrs only. */
struct node {
    mseg_relptr next, prev;
    long value;
};

static void list_init(struct node *head)
{
    mseg_rel_set(&head->next, head);
    mseg_rel_set(&head->prev, head);
}

static void list_push(struct node *head, struct node *n)
{
    struct node *last = mseg_rel_get(&head->prev);
    mseg_rel_set(&n->next, head);
    mseg_rel_set(&n->prev, last);
    mseg_rel_set(&last->next, n);
    mseg_rel_set(&head->prev, n);
}

/* Walks the list both ways through handle s; checks every node lies in
   s's mapping and the values are 0..n-1 in order. */
static void walk(mseg *s, struct node *head, long n)
{
    size_t size = mseg_size(s);
    char *base = (char *)mseg_at(s, 16) - 16;
    long i = 0;
    struct node *prev = head;
    for (struct node *x = mseg_rel_get(&head->next); x != head; x = mseg_rel_get(&x->next)) {
        cr_assert((char *)x >= base && (char *)x < base + size, "node %ld outside this mapping", i);
        cr_assert_eq(x->value, i);
        cr_assert_eq(mseg_rel_get(&x->prev), prev);
        prev = x;
        cr_assert_leq(++i, n, "the list does not end");
    }
    cr_assert_eq(i, n);
    for (struct node *x = mseg_rel_get(&head->prev); x != head; x = mseg_rel_get(&x->prev))
        cr_assert_eq(x->value, --i);
}

Test(relptr, linked_structure_is_valid_in_two_mappings_at_different_addresses, .fini = th_cleanup)
{
    char name[256];
    mseg *s = new_seg(name);
    struct node *head = MSEG_NEW(s, "head", struct node, 1);
    cr_assert_not_null(head);
    list_init(head);
    cr_assert_eq(mseg_rel_get(&head->next), head);
    enum { N = 2000 };
    for (long i = 0; i < N; i++) {
        struct node *n = mseg_alloc(s, sizeof *n);
        cr_assert_not_null(n);
        n->value = i;
        list_push(head, n);
    }
    walk(s, head, N);
    mseg_close(s);

    mseg *a = mseg_open(name, 0, NULL);
    cr_assert_not_null(a, "%s", mseg_errmsg());
    mseg *b = mseg_open(name, 0, NULL);
    cr_assert_not_null(b, "second handle in one process: %s", mseg_errmsg());
    struct node *ha = MSEG_FIND(a, "head", struct node, NULL);
    struct node *hb = MSEG_FIND(b, "head", struct node, NULL);
    cr_assert(ha && hb);
    cr_assert_neq(ha, hb, "two handles share one mapping address");
    cr_assert_eq(mseg_off_of(a, ha), mseg_off_of(b, hb));
    walk(a, ha, N);
    walk(b, hb, N);

    /* a node linked through one mapping is seen through the other */
    struct node *extra = mseg_alloc(a, sizeof *extra);
    cr_assert_not_null(extra);
    extra->value = N;
    list_push(ha, extra);
    walk(b, hb, N + 1);
    struct node *last_b = mseg_rel_get(&hb->prev);
    cr_assert_eq(mseg_off_of(b, last_b), mseg_off_of(a, extra));
    mseg_close(a);
    mseg_close(b);

    s = mseg_open(name, MSEG_RDONLY, NULL);
    cr_assert_not_null(s);
    walk(s, MSEG_FIND(s, "head", struct node, NULL), N + 1);
    mseg_close(s);
}
