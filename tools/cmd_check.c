#define _GNU_SOURCE
/*
 * cmd_check.c - mseg check and mseg recover.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inspect.h"
#include "tool.h"

/* Progress on a terminal: "checking PATH: 42%", rewritten in place. */
static void show_progress(uint64_t done, uint64_t total, void *arg)
{
    unsigned pct = total ? (unsigned)(done * 100 / total) : 100;
    fprintf(stderr, "\rchecking %s: heap %3u%%", (const char *)arg, pct);
    fflush(stderr);
}

static void print_report_json(const struct opts *o, const struct mseg_report *r, int rc, int err, int code)
{
    printf("{\"command\":\"check\",\"segment\":");
    json_str(stdout, o->args[0]);
    const char *verdict = code == EXIT_SOUND ? "sound" : code == EXIT_RECOVERED ? "recovered"
                        : code == EXIT_CORRUPT ? "corrupt" : "cannot-run";
    printf(",\"result\":\"%s\",\"exit\":%d", verdict, code);
    if (rc != 0 && err != EUCLEAN) {   /* an error object, with its errno as every command's has */
        printf(",\"error\":");
        json_str(stdout, mseg_errmsg());
        printf(",\"errno\":\"%s\"}\n", strerrorname_np(err) ? strerrorname_np(err) : "?");
        return;
    }
    printf(",\"format_version\":%u,\"header_a_ok\":%s,\"header_b_ok\":%s,\"recovered\":%s"
           ",\"generation\":%llu,\"size\":%llu,\"heap_bytes\":%llu,\"blocks_used\":%llu"
           ",\"blocks_free\":%llu,\"bytes_used\":%llu,\"bytes_free\":%llu,\"largest_free\":%llu"
           ",\"named\":%llu,\"problems\":%llu,\"first_problem\":",
           r->format_version, r->header_a_ok ? "true" : "false", r->header_b_ok ? "true" : "false",
           r->recovered ? "true" : "false", (unsigned long long)r->generation,
           (unsigned long long)r->size, (unsigned long long)r->heap_bytes,
           (unsigned long long)r->blocks_used, (unsigned long long)r->blocks_free,
           (unsigned long long)r->bytes_used, (unsigned long long)r->bytes_free,
           (unsigned long long)r->largest_free, (unsigned long long)r->named,
           (unsigned long long)r->problems);
    json_str(stdout, r->first_problem);
    printf("}\n");
}

static void print_report_text(const struct opts *o, const struct mseg_report *r, int code)
{
    const char *path = o->args[0];
    /* the problem may name an object: escaped as ls and dump show names */
    char *problem = text_str(r->first_problem);
    const char *why = problem ? problem : "(no memory to show the problem)";
    if (code == EXIT_CORRUPT) {
        printf("%s: CORRUPT: %s\n", path, why);
        if (r->problems > 1)
            printf("%s: %llu problems in all\n", path, (unsigned long long)r->problems);
        free(problem);
        return;
    }
    if (r->header_a_ok != r->header_b_ok)
        printf("%s: sound once header %c is repaired: %s; header %c is valid, and `mseg recover` (or any "
               "read-write open, with no other process attached) rewrites %c from it\n", path,
               r->header_a_ok ? 'B' : 'A', why, r->header_a_ok ? 'A' : 'B', r->header_a_ok ? 'B' : 'A');
    else
        printf("%s: %s\n", path, code == EXIT_RECOVERED ? "sound after recovery (the interrupted "
               "operation was completed or rolled back in a private view; `mseg recover` applies it)" : "sound");
    free(problem);
    printf("  format %u, generation %llu, %llu bytes; header A %s, header B %s\n",
           r->format_version, (unsigned long long)r->generation, (unsigned long long)r->size,
           r->header_a_ok ? "ok" : "BAD", r->header_b_ok ? "ok" : "BAD");
    printf("  heap %llu bytes: %llu blocks used (%llu bytes), %llu free (%llu bytes), "
           "largest free %llu\n", (unsigned long long)r->heap_bytes,
           (unsigned long long)r->blocks_used, (unsigned long long)r->bytes_used,
           (unsigned long long)r->blocks_free, (unsigned long long)r->bytes_free,
           (unsigned long long)r->largest_free);
    printf("  %llu named objects\n", (unsigned long long)r->named);
}

int cmd_check(const struct opts *o)
{
    struct mseg_report r;
    bool tty = !o->json && isatty(STDERR_FILENO);
    errno = 0;
    int rc = inspect_check(o->args[0], o->flags, &r, tty ? show_progress : NULL, (void *)o->args[0]);
    int err = errno;
    if (tty)
        fprintf(stderr, "\r\033[K");
    int code = rc == 0 ? (r.recovered ? EXIT_RECOVERED : EXIT_SOUND) : exit_for_errno(err);
    /* One header copy bad, the other valid and nothing else wrong: what a
       torn header write leaves (DESIGN: it never makes a segment
       unreadable), and what the next read-write open (mseg recover)
       rewrites from the good copy. Sound once repaired, not corrupt. */
    bool one_copy_bad = rc != 0 && err == EUCLEAN && r.problems == 1 && r.header_a_ok != r.header_b_ok;
    if (one_copy_bad)
        code = EXIT_RECOVERED;
    if (o->json) {
        print_report_json(o, &r, rc, err, code);
        return code;
    }
    if (rc != 0 && err != EUCLEAN) {
        fprintf(stderr, "mseg check: cannot check %s: %s\n", o->args[0], mseg_errmsg());
        return code;
    }
    print_report_text(o, &r, code);
    return code;
}

int cmd_recover(const struct opts *o)
{
    mseg *s = mseg_open(o->args[0], o->flags, NULL);
    if (!s)
        return report_error(o, errno, mseg_errmsg());
    /* Only the first read-write open recovers and rewrites a damaged
       header copy. With another process attached, a writer that died in
       the middle of an operation is recovered by the next one to take the
       lock: this takes it, reading both header copies under it. */
    struct inspect_header hdr[2];
    if (inspect_headers_locked(s, o->args[0], o->flags, hdr)) {
        int e = errno;
        mseg_close(s);
        return report_error(o, e, mseg_errmsg());
    }
    bool recovered = inspect_recovered(s);
    int repaired = inspect_header_repaired(s);   /* 0 A, 1 B, -1 none */
    /* a copy still damaged: this open rewrote nothing, which must not pass for done */
    int still = repaired < 0 && hdr[0].valid != hdr[1].valid ? !hdr[1].valid : -1;
    mseg_close(s);
    if (still >= 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "header %c is damaged (%s) and was not rewritten: another process has "
                 "the segment open, and only the first read-write open rewrites it; recover again once "
                 "no other process has it open", 'A' + still, hdr[still].why);
        return report_error(o, EBUSY, msg);
    }
    if (o->json) {
        printf("{\"command\":\"recover\",\"segment\":");
        json_str(stdout, o->args[0]);
        printf(",\"recovered\":%s,\"header_repaired\":%s,\"exit\":0}\n", recovered ? "true" : "false",
               repaired < 0 ? "null" : repaired ? "\"B\"" : "\"A\"");
        return EXIT_SOUND;
    }
    if (repaired >= 0)
        printf("%s: header %c was damaged and is rewritten from header %c\n", o->args[0], repaired ? 'B' : 'A',
               repaired ? 'A' : 'B');
    if (recovered || repaired < 0)
        printf("%s: %s\n", o->args[0], recovered ? "recovered: the interrupted operation was "
               "completed or rolled back" : "nothing to recover (or another process has it open "
               "and recovered it)");
    return EXIT_SOUND;
}
