/* test_install.c - `make install` gives a user a library they can build
   against with pkg-config (issue 7, item 4).

   The work is done by tests/install_check.sh (see its header): install
   under a fresh PREFIX, build and run an example program against the
   installed copy with `pkg-config --cflags --libs mseg`, shared and
   --static, check the man pages and the tool, then uninstall and find no
   file left. It runs the top-level make with SANITIZE=0, so under the
   sanitizer run it installs (and at most rebuilds) the plain products. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <libgen.h>

#include "helpers.h"

static char work[300];

static void remove_work(void)
{
    if (work[0]) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
        if (system(cmd) != 0)
            fprintf(stderr, "test_install: could not remove %s\n", work);
        work[0] = 0;
    }
}

/* The repository: the nearest directory above the build directory holding
   the Makefile and include/mseg.h (build/ or build/san/ lies inside it). */
static int find_repo(char *out, size_t n)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", MSEG_BUILD_DIR);
    while (strcmp(dir, "/") != 0) {
        char a[4200], b[4200];
        snprintf(a, sizeof a, "%s/Makefile", dir);
        snprintf(b, sizeof b, "%s/include/mseg.h", dir);
        if (access(a, R_OK) == 0 && access(b, R_OK) == 0) {
            snprintf(out, n, "%s", dir);
            return 0;
        }
        snprintf(dir, sizeof dir, "%s", dirname(dir));
    }
    return -1;
}

Test(install, make_install_gives_a_library_that_builds_with_pkg_config_and_uninstall_removes_it,
     .timeout = 600, .fini = remove_work)
{
    char repo[4096], cmd[9000], log[400];
    cr_assert_eq(find_repo(repo, sizeof repo), 0, "no repository above %s", MSEG_BUILD_DIR);
    snprintf(work, sizeof work, "%s/mseg-install-%d-XXXXXX", th_tmpdir(), (int)getpid());
    cr_assert_not_null(mkdtemp(work), "mkdtemp: %s", strerror(errno));
    snprintf(log, sizeof log, "%s/check.log", work);
    snprintf(cmd, sizeof cmd, "sh '%s/tests/install_check.sh' '%s' '%s' >'%s' 2>&1", repo, repo, work, log);
    int rc = system(cmd);
    if (!(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0)) {
        size_t len = 0;
        char *text = th_read_file(log, &len);
        if (text) {
            text[len] = 0;
            /* the end of the log holds the failure */
            const char *tail = len > 3000 ? text + len - 3000 : text;
            cr_log_error("install_check.sh output:\n%s", tail);
        }
        const char *last = "";
        if (text) {
            char *nl = strrchr(text, '\n');
            while (nl && nl > text && nl[1] == 0) {
                *nl = 0;
                nl = strrchr(text, '\n');
            }
            last = nl ? nl + 1 : text;
        }
        cr_assert_fail("install check failed (status %#x): %s", rc, last);
    }
}
