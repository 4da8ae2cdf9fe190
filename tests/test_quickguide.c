/*
 * test_quickguide.c - every quick-guide program passes with both backends.
 *
 * The programs in tests/quickguide/ are documentation that runs: each
 * checks its own story and exits 0 only if all of it holds. Here each one is
 * run as a separate process from the build directory; its output is kept in
 * a temporary file and shown only when it fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#ifndef MSEG_BUILD_DIR
#error "MSEG_BUILD_DIR must be defined by the Makefile"
#endif

/* Prints what the program wrote to the (unlinked) file open as fd. */
static void show_output(int fd)
{
    FILE *f = lseek(fd, 0, SEEK_SET) == 0 ? fdopen(dup(fd), "r") : NULL;
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f))
        fprintf(stderr, "    | %s", line);
    fclose(f);
}

/* Runs MSEG_BUILD_DIR/quickguide/<program> <backend>. Its output goes to a
   temporary file that is unlinked as soon as it is made (the program writes
   to the inherited descriptor), so not even a test killed by its timeout
   leaves a file behind. */
static void run_quickguide(const char *program, const char *backend)
{
    const char *tmp = getenv("TMPDIR");
    char log[4096];
    snprintf(log, sizeof log, "%s/mseg-qg-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(log);
    cr_assert(fd >= 0, "mkstemp %s failed", log);
    unlink(log);

    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s/quickguide/%s' %s >&%d 2>&1",
             MSEG_BUILD_DIR, program, backend, fd);
    int status = system(cmd);
    int ok = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
        fprintf(stderr, "%s %s failed; its output:\n", program, backend);
        show_output(fd);
    }
    close(fd);
    cr_assert(ok, "%s %s: exit status %d (raw %#x)", program, backend,
              status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1, status);
}

Test(quickguide, alloc_file, .timeout = 60) { run_quickguide("quickguide_alloc", "file"); }
Test(quickguide, alloc_shm,  .timeout = 60) { run_quickguide("quickguide_alloc", "shm"); }
Test(quickguide, named_file, .timeout = 60) { run_quickguide("quickguide_named", "file"); }
Test(quickguide, named_shm,  .timeout = 60) { run_quickguide("quickguide_named", "shm"); }
Test(quickguide, list_file,  .timeout = 60) { run_quickguide("quickguide_list", "file"); }
Test(quickguide, list_shm,   .timeout = 60) { run_quickguide("quickguide_list", "shm"); }
Test(quickguide, vector_file, .timeout = 60) { run_quickguide("quickguide_vector", "file"); }
Test(quickguide, vector_shm,  .timeout = 60) { run_quickguide("quickguide_vector", "shm"); }
Test(quickguide, map_file,    .timeout = 60) { run_quickguide("quickguide_map", "file"); }
Test(quickguide, map_shm,     .timeout = 60) { run_quickguide("quickguide_map", "shm"); }
/* one process writes a map and a vector, another verifies every entry */
Test(quickguide, persistence_file, .timeout = 60) { run_quickguide("persist_demo", "file"); }
Test(quickguide, persistence_shm,  .timeout = 60) { run_quickguide("persist_demo", "shm"); }
