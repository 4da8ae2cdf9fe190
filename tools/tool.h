/*
 * tool.h - what the commands of the mseg tool share: parsed options, exit
 * codes, output helpers (text and JSON).
 */
#ifndef MSEG_TOOL_H
#define MSEG_TOOL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "mseg.h"

/* Exit codes, the same for every command (mseg --help, mseg(1), README). */
enum {
    EXIT_SOUND     = 0,   /* done; for check: the segment is sound */
    EXIT_RECOVERED = 1,   /* check: sound once recovery was applied (in private) */
    EXIT_CORRUPT   = 2,   /* the segment is damaged (EUCLEAN) */
    EXIT_CANNOT    = 3,   /* could not run: usage, missing, permissions, newer format */
};

struct opts {
    const char *cmd;
    unsigned flags;        /* 0 or MSEG_SHM */
    bool json;
    bool help;
    int nargs;
    const char *args[4];
};

struct command {
    const char *name;
    int nargs;                         /* positional arguments it takes */
    const char *usage;                 /* after "mseg NAME " */
    const char *help;                  /* what it does, a few lines */
    int (*run)(const struct opts *o);
};

int cmd_check(const struct opts *o);
int cmd_recover(const struct opts *o);
int cmd_info(const struct opts *o);
int cmd_stats(const struct opts *o);
int cmd_ls(const struct opts *o);
int cmd_dump(const struct opts *o);
int cmd_copy(const struct opts *o);

/* The exit code for a failed library call, from errno. */
int exit_for_errno(int err);

/* Prints "mseg CMD: message" to stderr (or a JSON error object to stdout)
   and returns the exit code for err. */
int report_error(const struct opts *o, int err, const char *what);
/* The same for an error met after a JSON object was begun on stdout (its
   last member printed): the error fields end that object, so that --json
   still prints one object, and a partial listing carries its error. */
int end_with_error(const struct opts *o, int err, const char *what);
/* Opens the segment to read it: read-only, or, when that is EAGAIN because
   recovery is due and no writer is attached, a private copy-on-write view
   with the recovery applied to it (never written back). NULL with errno. */
mseg *open_for_reading(const struct opts *o);
/* Such a private view stops showing one state once a writer attaches (the
   pages its recovery wrote no longer follow the file, the rest does): a
   command that read through one checks inspect_view_moved(s) after its
   reads and, when it moved, reads again through a fresh handle (which is
   read-only once a writer has recovered the segment), at most VIEW_TRIES
   times, then gives up with EAGAIN and VIEW_MOVED_MSG. */
#define VIEW_TRIES 5
#define VIEW_MOVED_MSG "writers kept attaching while the segment, which needed recovery, " \
                       "was read through a private view; run the command again"

/* JSON output: a string with escapes. */
void json_str(FILE *f, const char *s);
/* Text output: a name with control characters and stray bytes escaped
   (\xNN); malloc'd, NULL without memory. */
char *text_str(const char *s);

#endif
