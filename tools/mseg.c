#define _GNU_SOURCE
/*
 * mseg.c - the mseg command: inspect, verify, recover and copy segments.
 *
 *   mseg [--version | --help]
 *   mseg COMMAND [--shm] [--json] [--help] ARGS...
 *
 * One file per group of commands (check.c, info.c, objects.c, copy.c); this
 * one parses the command line and owns the exit codes and output helpers.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static const struct command commands[] = {
    { "check", 1, "[--shm] [--json] PATH",
      "Reopens the segment privately (copy-on-write: never writes it), applies\n"
      "recovery to the private view and verifies every structure. Prints the\n"
      "first problem with its offset. Exit 0 sound, 1 sound after recovery,\n"
      "2 corrupt, 3 could not run (missing, no permission, newer format).\n"
      "Shows progress on stderr when stderr is a terminal.", cmd_check },
    { "recover", 1, "[--shm] [--json] PATH",
      "Opens the segment read-write and takes its lock, so that recovery runs\n"
      "in place, and closes it; the open also rewrites a damaged header copy.\n"
      "Exit 0 done, 2 corrupt, 3 could not run (also: a header copy left\n"
      "damaged, another process having the segment open).", cmd_recover },
    { "info", 1, "[--shm] [--json] PATH",
      "Header fields of both copies, format version, sizes, free memory, the\n"
      "largest free block, fragmentation (1 - largest free / free bytes),\n"
      "named-object count and whether the segment was closed cleanly.", cmd_info },
    { "ls", 1, "[--shm] [--json] PATH",
      "Lists named objects: name, type, element size, count, bytes, offset.", cmd_ls },
    { "dump", 2, "[--shm] [--json] PATH NAME",
      "Prints object NAME: a hex dump for raw objects,\n"
      "one element a line for a vector, one entry a line for a map (u64 and\n"
      "i64 keys as numbers, byte keys escaped). A vector or map that other\n"
      "processes change meanwhile is not listed as one snapshot (dump a copy\n"
      "made with mseg copy for one).", cmd_dump },
    { "stats", 1, "[--shm] [--json] PATH",
      "Block-size histogram of used and free blocks (power-of-two buckets).", cmd_stats },
    { "copy", 2, "[--shm] [--json] SRC DST",
      "Copies segment SRC to the file DST, consistently, under the segment\n"
      "lock while other processes keep working (reflink when the file system\n"
      "has it). DST is written to a temporary file, synced and renamed.", cmd_copy },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const char exit_codes[] =
    "Exit status:\n"
    "  0  success; for check: the segment is sound\n"
    "  1  check: sound once recovery was applied, or once a damaged header\n"
    "     copy is rewritten from the other (recover would do either)\n"
    "  2  the segment is corrupt (check names the first problem and its offset)\n"
    "  3  could not run: bad usage, no such segment or object, permission\n"
    "     denied, or a format version this mseg does not read; or the\n"
    "     output could not be written (a full disk)\n";

static void usage_all(FILE *f)
{
    fprintf(f, "usage: mseg COMMAND [--shm] [--json] [--help] ARGS...\n"
               "       mseg --version | --help\n\nCommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].usage);
    fprintf(f, "\nOptions:\n"
               "  --shm   PATH (SRC for copy) is a POSIX shm name such as /name\n"
               "  --json  machine-readable output on stdout\n"
               "  --help  help on a command\n\n%s", exit_codes);
}

static void usage_cmd(FILE *f, const struct command *c)
{
    fprintf(f, "usage: mseg %s %s\n\n%s\n\n%s", c->name, c->usage, c->help, exit_codes);
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* Whether --json stands among the options after the command. Looked for
   before anything else is parsed, so that a usage error itself comes out
   as JSON wherever the option stands. */
static bool wants_json(int argc, char **argv)
{
    for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--json") == 0)
            return true;
    return false;
}

/* Options go anywhere after the command; "--" ends them. On a usage
   error, -1 with what is wrong in why. */
static int parse(int argc, char **argv, struct opts *o, char *why, size_t whylen)
{
    o->json = wants_json(argc, argv);
    bool options = true;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (options && strcmp(a, "--") == 0)
            options = false;
        else if (options && strcmp(a, "--json") == 0)
            o->json = true;
        else if (options && strcmp(a, "--shm") == 0)
            o->flags |= MSEG_SHM;
        else if (options && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0))
            o->help = true;
        else if (options && a[0] == '-' && a[1]) {
            snprintf(why, whylen, "unknown option %s", a);
            return -1;
        } else if (o->nargs < 4)
            o->args[o->nargs++] = a;
        else {
            snprintf(why, whylen, "too many arguments");
            return -1;
        }
    }
    return 0;
}

/* A usage error: with --json, an error object like any other (mseg.1:
   "errors too"); otherwise the message, then the command's usage. */
static int usage_error(const struct opts *o, const struct command *c, const char *why)
{
    if (o->json)
        return report_error(o, EINVAL, why);
    fprintf(stderr, "mseg %s: %s\n", c->name, why);
    usage_cmd(stderr, c);
    return EXIT_CANNOT;
}

static int error_fields(int err, const char *what);

/* With --json an error object like any other usage error's (mseg.1:
   "errors too"), the name as given; otherwise the message and the usage. */
static int unknown_command(int argc, char **argv)
{
    char why[300];
    snprintf(why, sizeof why, "unknown command '%s'", argv[1]);
    if (!wants_json(argc, argv)) {
        fprintf(stderr, "mseg: %s\n\n", why);
        usage_all(stderr);
        return EXIT_CANNOT;
    }
    printf("{\"command\":");
    json_str(stdout, argv[1]);
    return error_fields(EINVAL, why);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_all(stderr);
        return EXIT_CANNOT;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("mseg %s (segment format %u)\n", mseg_version(), mseg_format_version());
        return EXIT_SOUND;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage_all(stdout);
        return EXIT_SOUND;
    }
    const struct command *c = find_command(argv[1]);
    if (!c)
        return unknown_command(argc, argv);
    /* A file size limit (RLIMIT_FSIZE) reached by copy's writes must be an
       error (EFBIG: exit 3, the temporary file removed), not SIGXFSZ
       killing the tool and leaving DST.XXXXXX behind. */
    signal(SIGXFSZ, SIG_IGN);
    struct opts o = { .cmd = c->name };
    char why[160];
    if (parse(argc, argv, &o, why, sizeof why))
        return usage_error(&o, c, why);
    if (o.help) {
        usage_cmd(stdout, c);
        return EXIT_SOUND;
    }
    if (o.nargs != c->nargs) {
        snprintf(why, sizeof why, "expected %d argument%s", c->nargs, c->nargs > 1 ? "s" : "");
        return usage_error(&o, c, why);
    }
    int code = c->run(&o);
    /* Output that could not be written (a full disk, a closed pipe reader
       aside) must not pass for a listing: a dump redirected to a full file
       system used to exit 0 with an empty or cut file. A failure's own exit
       code already says something went wrong, so only success changes. */
    int flushed = fflush(stdout), e = errno;
    if (flushed != 0 || ferror(stdout)) {
        /* errno is the reason only when this flush failed: an earlier
           write's error has been overwritten since */
        fprintf(stderr, "mseg %s: cannot write the output%s%s\n", c->name,
                flushed ? ": " : "", flushed ? strerror(e) : "");
        if (code == EXIT_SOUND)
            code = EXIT_CANNOT;
    }
    return code;
}

/* ---- shared helpers ---- */

int exit_for_errno(int err)
{
    return err == EUCLEAN ? EXIT_CORRUPT : EXIT_CANNOT;
}

mseg *open_for_reading(const struct opts *o)
{
    mseg *s = mseg_open(o->args[0], o->flags | MSEG_RDONLY, NULL);
    if (!s && errno == EAGAIN)
        s = mseg_open(o->args[0], o->flags | MSEG_COW, NULL);
    return s;
}

/* The error fields and the end of a JSON object: ,"error":...,"exit":N}. */
static int error_fields(int err, const char *what)
{
    int code = exit_for_errno(err);
    printf(",\"error\":");
    json_str(stdout, what);
    printf(",\"errno\":\"%s\",\"exit\":%d}\n", strerrorname_np(err) ? strerrorname_np(err) : "?", code);
    return code;
}

int report_error(const struct opts *o, int err, const char *what)
{
    if (o->json) {
        printf("{\"command\":\"%s\"", o->cmd);
        return error_fields(err, what);
    }
    fprintf(stderr, "mseg %s: %s\n", o->cmd, what);
    return exit_for_errno(err);
}

int end_with_error(const struct opts *o, int err, const char *what)
{
    if (o->json)
        return error_fields(err, what);
    fprintf(stderr, "mseg %s: %s\n", o->cmd, what);
    return exit_for_errno(err);
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs,
   no surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

/* A JSON string of the bytes of s: well-formed UTF-8 as it is (a name
   "caf\xc3\xa9" is "café", not "cafÃ©" as when every byte >= 0x7f was
   escaped as the code point of that value); a byte >= 0x80 that is not
   part of it, which no JSON string can hold, as \udc80..\udcff, a lone low
   surrogate, the escape of Python's surrogateescape (PEP 383), so a script
   gets the byte back; control characters and DEL as \u00XX. */
void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        size_t n;
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p >= 0x80 && (n = utf8_len(p)) > 0) {
            fwrite(p, 1, n, f);
            p += n - 1;
        } else if (*p >= 0x80)
            /* not \u00XX: that reads back as the character U+00XX, as its
               UTF-8 bytes do; the names "\xff" and "\xc3\xbf" came out alike */
            fprintf(f, "\\udc%02x", *p);
        else if (*p < 0x20 || *p == 0x7f)   /* keeps the output valid JSON */
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* A name for text output: well-formed UTF-8 and printable ASCII as they
   are; control characters (C0, DEL, C1), backslash and bytes that are not
   UTF-8 as \xNN, as dump prints byte keys. A name is bytes the segment's
   writer chose: printed raw, a newline in it would forge a line of
   `mseg ls` and an escape sequence would drive the terminal. Returns a
   malloc'd string, or NULL (ENOMEM). */
char *text_str(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(4 * n + 1), *q = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        size_t k;
        if (*p >= 0x80 && (k = utf8_len(p)) > 0 && !(p[0] == 0xc2 && p[1] < 0xa0)) {
            memcpy(q, p, k);
            q += k;
            p += k - 1;
        } else if (*p < 0x20 || *p >= 0x7f || *p == '\\')
            q += sprintf(q, "\\x%02x", *p);
        else
            *q++ = (char)*p;
    }
    *q = '\0';
    return out;
}
