/*
 * cmd_info.c - mseg info and mseg stats.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "inspect.h"
#include "tool.h"

static const char *state_name(uint64_t state)
{
    return state == MSEG_STATE_CLEAN ? "clean" :
           state == MSEG_STATE_OPEN ? "open (in use, or not closed cleanly)" : "unknown";
}

static void uuid_str(const uint8_t u[16], char out[33])
{
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", u[i]);
}

static void header_text(const char *label, const struct inspect_header *h)
{
    if (!h->present || !h->valid) {
        printf("%-14s INVALID: %s\n", label, h->why);
        return;
    }
    const struct mseg_header *r = &h->raw;
    char uuid[33], when[64] = "?";
    uuid_str(r->uuid, uuid);
    time_t t = (time_t)(r->created_ns / 1000000000ull);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%-14s valid, generation %llu, size %llu, max_size %llu, created %s, uuid %s\n",
           label, (unsigned long long)r->generation, (unsigned long long)r->size,
           (unsigned long long)r->max_size, when, uuid);
}

static void header_json(const char *key, const struct inspect_header *h)
{
    const struct mseg_header *r = &h->raw;
    char uuid[33];
    uuid_str(r->uuid, uuid);
    printf("\"%s\":{\"valid\":%s", key, h->valid ? "true" : "false");
    if (!h->valid) {
        printf(",\"problem\":");
        json_str(stdout, h->why);
    }
    if (h->present)
        printf(",\"format_version\":%u,\"generation\":%llu,\"size\":%llu,\"max_size\":%llu"
               ",\"compat_features\":%llu,\"incompat_features\":%llu,\"created_ns\":%llu,\"uuid\":\"%s\"",
               r->format_version, (unsigned long long)r->generation, (unsigned long long)r->size,
               (unsigned long long)r->max_size, (unsigned long long)r->compat_features,
               (unsigned long long)r->incompat_features, (unsigned long long)r->created_ns, uuid);
    printf("}");
}

struct info {
    struct inspect_header hdr[2];
    struct inspect_stats st;
    uint64_t size, free_memory, named;
};

/* Walks the heap into *st through a fresh view of the segment and, with
   in, reads its sizes and count of objects too; again through another
   view while the view moved (inspect_view_moved), at most VIEW_TRIES
   times. 0, -1 with errno when the segment did not open, or an exit code. */
static int read_heap(const struct opts *o, struct inspect_stats *st, struct info *in)
{
    for (int tries = 0;; tries++) {
        mseg *s = open_for_reading(o);
        if (!s)
            return -1;
        int rc = inspect_heap_stats(s, st, NULL, NULL);
        int e = errno;
        if (in) {
            in->size = mseg_size(s);
            in->free_memory = mseg_free_memory(s);
            in->named = mseg_named_count(s);
        }
        bool moved = inspect_view_moved(s);   /* what it read may mix two states */
        mseg_close(s);
        if (moved && tries + 1 < VIEW_TRIES)
            continue;
        if (moved)
            return report_error(o, EAGAIN, VIEW_MOVED_MSG);
        if (rc)
            return report_error(o, e, mseg_errmsg());
        return 0;
    }
}

/* Opens read-only and gathers everything; 0 or an exit code. */
static int gather(const struct opts *o, struct info *in)
{
    memset(in, 0, sizeof *in);
    if (inspect_headers(o->args[0], o->flags, in->hdr))
        return report_error(o, errno, mseg_errmsg());
    return read_heap(o, &in->st, in);
}

static void info_json(const struct opts *o, const struct info *in)
{
    const struct inspect_stats *st = &in->st;
    printf("{\"command\":\"info\",\"segment\":");
    json_str(stdout, o->args[0]);
    printf(",\"library_version\":\"%s\",\"format_version\":%u,", mseg_version(), mseg_format_version());
    header_json("header_a", &in->hdr[0]);
    printf(",");
    header_json("header_b", &in->hdr[1]);
    printf(",\"size\":%llu,\"heap_start\":%llu,\"heap_end\":%llu,\"free_memory\":%llu"
           ",\"bytes_free\":%llu,\"blocks_free\":%llu,\"bytes_used\":%llu,\"blocks_used\":%llu"
           ",\"largest_free\":%llu,\"fragmentation\":%.4f,\"named\":%llu,\"state\":\"%s\",\"clean\":%s}\n",
           (unsigned long long)in->size, (unsigned long long)st->heap_start,
           (unsigned long long)st->heap_end, (unsigned long long)in->free_memory,
           (unsigned long long)st->bytes_free, (unsigned long long)st->blocks_free,
           (unsigned long long)st->bytes_used, (unsigned long long)st->blocks_used,
           (unsigned long long)st->largest_free, inspect_fragmentation(st),
           (unsigned long long)in->named,
           st->state == MSEG_STATE_CLEAN ? "clean" : st->state == MSEG_STATE_OPEN ? "open" : "unknown",
           st->state == MSEG_STATE_CLEAN ? "true" : "false");
}

static void info_text(const struct opts *o, const struct info *in)
{
    const struct inspect_stats *st = &in->st;
    const struct mseg_header *h = &in->hdr[in->hdr[0].valid ? 0 : 1].raw;
    printf("%-14s %s\n", "segment", o->args[0]);
    printf("%-14s %u (this mseg: %s, writes format %u)\n", "format", h->format_version,
           mseg_version(), mseg_format_version());
    header_text("header A", &in->hdr[0]);
    header_text("header B", &in->hdr[1]);
    printf("%-14s %llu bytes, heap [%#llx, %#llx) %llu bytes\n", "size",
           (unsigned long long)in->size, (unsigned long long)st->heap_start,
           (unsigned long long)st->heap_end, (unsigned long long)(st->heap_end - st->heap_start));
    printf("%-14s %llu bytes allocatable, in %llu free blocks (%llu bytes)\n", "free",
           (unsigned long long)in->free_memory, (unsigned long long)st->blocks_free,
           (unsigned long long)st->bytes_free);
    printf("%-14s %llu bytes\n", "largest free", (unsigned long long)st->largest_free);
    printf("%-14s %llu blocks, %llu bytes\n", "used", (unsigned long long)st->blocks_used,
           (unsigned long long)st->bytes_used);
    printf("%-14s %.4f\n", "fragmentation", inspect_fragmentation(st));
    printf("%-14s %llu\n", "named objects", (unsigned long long)in->named);
    printf("%-14s %s\n", "state", state_name(st->state));
}

int cmd_info(const struct opts *o)
{
    struct info in;
    int rc = gather(o, &in);
    if (rc > 0)
        return rc;
    if (rc < 0) {
        /* the segment does not open: show the headers, then why */
        int e = errno;
        if (!o->json) {
            header_text("header A", &in.hdr[0]);
            header_text("header B", &in.hdr[1]);
        }
        return report_error(o, e, mseg_errmsg());
    }
    if (o->json)
        info_json(o, &in);
    else
        info_text(o, &in);
    return EXIT_SOUND;
}

/* ---- stats ---- */

static void stats_text(const struct inspect_stats *st)
{
    printf("%-24s %10s %10s\n", "block size (bytes)", "used", "free");
    for (unsigned b = 0; b < INSPECT_BUCKETS; b++) {
        if (!st->used_hist[b] && !st->free_hist[b])
            continue;
        char range[48];
        snprintf(range, sizeof range, "[%llu, %llu)", 1ull << b, b < 63 ? 1ull << (b + 1) : 0);
        printf("%-24s %10llu %10llu\n", range, (unsigned long long)st->used_hist[b],
               (unsigned long long)st->free_hist[b]);
    }
    printf("%-24s %10llu %10llu\n", "blocks", (unsigned long long)st->blocks_used,
           (unsigned long long)st->blocks_free);
    printf("%-24s %10llu %10llu\n", "bytes", (unsigned long long)st->bytes_used,
           (unsigned long long)st->bytes_free);
    printf("largest free %llu bytes, fragmentation %.4f\n",
           (unsigned long long)st->largest_free, inspect_fragmentation(st));
}

static void stats_json(const struct opts *o, const struct inspect_stats *st)
{
    printf("{\"command\":\"stats\",\"segment\":");
    json_str(stdout, o->args[0]);
    printf(",\"buckets\":[");
    const char *sep = "";
    for (unsigned b = 0; b < INSPECT_BUCKETS; b++) {
        if (!st->used_hist[b] && !st->free_hist[b])
            continue;
        printf("%s{\"min\":%llu,\"used\":%llu,\"free\":%llu}", sep, 1ull << b,
               (unsigned long long)st->used_hist[b], (unsigned long long)st->free_hist[b]);
        sep = ",";
    }
    printf("],\"blocks_used\":%llu,\"blocks_free\":%llu,\"bytes_used\":%llu,\"bytes_free\":%llu"
           ",\"largest_free\":%llu,\"fragmentation\":%.4f}\n",
           (unsigned long long)st->blocks_used, (unsigned long long)st->blocks_free,
           (unsigned long long)st->bytes_used, (unsigned long long)st->bytes_free,
           (unsigned long long)st->largest_free, inspect_fragmentation(st));
}

int cmd_stats(const struct opts *o)
{
    struct inspect_stats st;
    int code = read_heap(o, &st, NULL);
    if (code < 0)
        return report_error(o, errno, mseg_errmsg());
    if (code)
        return code;
    if (o->json)
        stats_json(o, &st);
    else
        stats_text(&st);
    return EXIT_SOUND;
}
