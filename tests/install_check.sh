#!/bin/sh
# install_check.sh REPO WORK - what `make install` gives a user (issue 7,
# item 4), run by tests/test_install.c:
#   1. make install PREFIX=WORK/usr: header, static and shared library (with
#      its soname links), pkg-config file, the mseg tool, mseg(1), mseg(3);
#   2. an example program built against that copy with pkg-config, once
#      shared (run with LD_LIBRARY_PATH) and once with --static;
#   3. make uninstall PREFIX=WORK/usr leaves no file behind.
# Prints what went wrong and exits 1 at the first failure.
set -eu
repo=$1
work=$2
prefix=$work/usr
fail() { echo "install_check: $*" >&2; exit 1; }

command -v pkg-config >/dev/null 2>&1 ||
    fail "pkg-config is not installed: run 'make deps' as root, or: sudo apt-get install pkg-config"
command -v "${CC:-cc}" >/dev/null 2>&1 || fail "no C compiler (${CC:-cc})"

# A make started from inside `make test` must not inherit its variables
# (SANITIZE=1 would install the sanitizer build) nor its jobserver.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
mk() { make --no-print-directory -C "$repo" SANITIZE=0 PREFIX="$prefix" "$@" >"$work/make.log" 2>&1 ||
       { cat "$work/make.log" >&2; fail "make $* failed"; }; }

version_part() { sed -n "s/^#define MSEG_VERSION_$1  *\([0-9][0-9]*\).*/\1/p" "$repo/include/mseg.h"; }
major=$(version_part MAJOR)
version=$major.$(version_part MINOR).$(version_part PATCH)

# ---- 1. install ----
mk install
for f in include/mseg.h lib/libmseg.a "lib/libmseg.so.$version" "lib/libmseg.so.$major" lib/libmseg.so \
         lib/pkgconfig/mseg.pc bin/mseg share/man/man1/mseg.1 share/man/man3/mseg.3; do
    [ -e "$prefix/$f" ] || fail "make install did not install $prefix/$f"
done
[ "$(readlink "$prefix/lib/libmseg.so.$major")" = "libmseg.so.$version" ] || fail "libmseg.so.$major does not point at libmseg.so.$version"
[ "$(readlink "$prefix/lib/libmseg.so")" = "libmseg.so.$major" ] || fail "libmseg.so does not point at the soname"
soname=$(readelf -d "$prefix/lib/libmseg.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = "libmseg.so.$major" ] || fail "the shared library's soname is '$soname', not libmseg.so.$major"
for m in "$prefix/share/man/man1/mseg.1" "$prefix/share/man/man3/mseg.3"; do
    head -n 1 "$m" | grep -q '^\.TH MSEG [13]' || fail "$m is not a man page"
    if command -v groff >/dev/null 2>&1; then
        out=$(groff -man -Tutf8 -ww -z "$m" 2>&1) || fail "groff cannot format $m"
        [ -z "$out" ] || fail "groff warns about $m: $out"
    fi
done
"$prefix/bin/mseg" --version | grep -q "$version" || fail "mseg --version does not name the library version $version"

# ---- 2. an example program against the installed copy ----
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
[ "$(pkg-config --modversion mseg)" = "$version" ] || fail "pkg-config --modversion mseg is not $version"
cat >"$work/example.c" <<'PROG'
#include <stdio.h>
#include <string.h>
#include <mseg.h>

struct point { double x, y; };

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    struct mseg_config cfg = { .size = 1 << 20, .max_size = 8 << 20 };
    mseg *s = mseg_open(argv[1], MSEG_CREATE | MSEG_EXCL, &cfg);
    if (!s) {
        fprintf(stderr, "mseg_open: %s\n", mseg_errmsg());
        return 1;
    }
    struct point *p = MSEG_NEW(s, "points", struct point, 3);
    if (!p || !mseg_alloc(s, 2 << 20))             /* grows the segment */
        return fprintf(stderr, "%s\n", mseg_errmsg()), 1;
    p[2].y = 42;
    mseg_close(s);
    s = mseg_open(argv[1], 0, NULL);
    size_t n = 0;
    p = s ? MSEG_FIND(s, "points", struct point, &n) : NULL;
    if (!p || n != 3 || p[2].y != 42)
        return fprintf(stderr, "not found again: %s\n", mseg_errmsg()), 1;
    mseg_close(s);
    if (mseg_check(argv[1], 0, NULL) != 0 || mseg_remove(argv[1], 0) != 0)
        return fprintf(stderr, "%s\n", mseg_errmsg()), 1;
    if (strcmp(mseg_version(), MSEG_VERSION_STRING_FOR_TEST) != 0)
        return fprintf(stderr, "library %s, header %s\n", mseg_version(), MSEG_VERSION_STRING_FOR_TEST), 1;
    printf("mseg %s format %u ok\n", mseg_version(), mseg_format_version());
    return 0;
}
PROG
vdef="-DMSEG_VERSION_STRING_FOR_TEST=\"$version\""

# shared: the soname, found through LD_LIBRARY_PATH in the installed lib/
# shellcheck disable=SC2046
"${CC:-cc}" "$vdef" -o "$work/ex_shared" "$work/example.c" $(pkg-config --cflags --libs mseg) ||
    fail "cannot build the example with: pkg-config --cflags --libs mseg ($(pkg-config --cflags --libs mseg))"
readelf -d "$work/ex_shared" | grep -q "NEEDED.*\[libmseg.so.$major\]" || fail "the example does not need libmseg.so.$major"
LD_LIBRARY_PATH="$prefix/lib" ldd "$work/ex_shared" | grep -q "libmseg.so.$major => $prefix/lib/" ||
    fail "the example does not load the installed libmseg: $(LD_LIBRARY_PATH="$prefix/lib" ldd "$work/ex_shared")"
out=$(LD_LIBRARY_PATH="$prefix/lib" "$work/ex_shared" "$work/seg-shared") || fail "the shared example failed: $out"
[ "$out" = "mseg $version format $("$prefix/bin/mseg" --version | sed -n 's/.*format \([0-9]*\).*/\1/p') ok" ] ||
    fail "the shared example printed '$out'"

# static: libmseg.a and what it needs (Libs.private)
# shellcheck disable=SC2046
"${CC:-cc}" "$vdef" -static -o "$work/ex_static" "$work/example.c" $(pkg-config --cflags --libs --static mseg) \
    2>"$work/static.log" ||
    { cat "$work/static.log" >&2; fail "cannot build the example with: pkg-config --cflags --libs --static mseg ($(pkg-config --cflags --libs --static mseg))"; }
if readelf -d "$work/ex_static" 2>/dev/null | grep -q NEEDED; then
    fail "the static example still needs shared libraries"
fi
out=$(env -u LD_LIBRARY_PATH "$work/ex_static" "$work/seg-static") || fail "the static example failed: $out"
case $out in "mseg $version format "*" ok") ;; *) fail "the static example printed '$out'" ;; esac

# ---- 3. uninstall ----
mk uninstall
left=$(find "$prefix" ! -type d)
[ -z "$left" ] || fail "make uninstall left behind: $left"
echo "install_check: OK (mseg $version under $prefix: shared and static example, man pages, uninstall)"
