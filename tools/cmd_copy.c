/*
 * cmd_copy.c - mseg copy: a consistent copy of a live segment.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "inspect.h"
#include "tool.h"

int cmd_copy(const struct opts *o)
{
    const char *how;
    if (mseg_copy_locked(o->args[0], o->flags, o->args[1], &how))
        return report_error(o, errno, mseg_errmsg());
    struct stat st;
    long long bytes = stat(o->args[1], &st) == 0 ? (long long)st.st_size : -1;
    if (o->json) {
        printf("{\"command\":\"copy\",\"source\":");
        json_str(stdout, o->args[0]);
        printf(",\"destination\":");
        json_str(stdout, o->args[1]);
        printf(",\"bytes\":%lld,\"method\":\"%s\",\"exit\":0}\n", bytes, how);
    } else {
        printf("copied %s to %s (%lld bytes, %s)\n", o->args[0], o->args[1], bytes, how);
    }
    return EXIT_SOUND;
}
