# report.awk - the table of `make bench`, from runs.csv
# (rep,workload,impl,backend,phase,n,seconds,ops_per_sec,extra).
#
# For each backend and (workload, phase): the median ops/s of every
# implementation, and mseg's ratio to each peer, taken as the median of the
# per-repetition ratios (mseg/peer, >1: mseg faster), as issue 6 states its
# targets. Then those targets (file backend), the space and reopen figures,
# and the scaling run. Writes the ratios of the first backend to `svgdata`
# for the chart. Plain POSIX awk (mawk): no asort.

function isort(a, n,    i, j, t) {
    for (i = 2; i <= n; i++) {
        t = a[i]
        for (j = i - 1; j >= 1 && a[j] > t; j--)
            a[j + 1] = a[j]
        a[j + 1] = t
    }
}

# Median of a space-separated list of numbers; "" when empty.
function median(list,    a, n) {
    n = split(list, a, " ")
    if (n == 0)
        return ""
    isort(a, n)
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}

function human(x) {
    if (x == "") return "-"
    if (x >= 1e9) return sprintf("%.2fG", x / 1e9)
    if (x >= 1e6) return sprintf("%.2fM", x / 1e6)
    if (x >= 1e3) return sprintf("%.1fk", x / 1e3)
    return sprintf("%.1f", x)
}

# Value of key in an extra field "k=v;k=v"; "" when absent.
function extra_get(extra, key,    kv, n, i, p) {
    n = split(extra, kv, ";")
    for (i = 1; i <= n; i++) {
        p = index(kv[i], "=")
        if (substr(kv[i], 1, p - 1) == key)
            return substr(kv[i], p + 1)
    }
    return ""
}

# Median over repetitions of mseg's ops/s divided by peer's, for row k.
function ratio(k, peer,    r, list) {
    list = ""
    for (r = 1; r <= maxrep; r++)
        if ((k, "mseg", r) in ops && (k, peer, r) in ops && ops[k, peer, r] > 0)
            list = list " " ops[k, "mseg", r] / ops[k, peer, r]
    return median(list)
}

# Median of arr[key] without creating the element; "" when absent.
function medof(arr, key) { return (key in arr) ? median(arr[key]) : "" }

function add(arr, key, v) { arr[key] = (key in arr) ? arr[key] " " v : v }

NR == 1 { next }
{
    rep = $1; w = $2; impl = $3; b = $4; ph = $5; extra = $9
    if (rep > maxrep) maxrep = rep
    k = w SUBSEP b SUBSEP ph
    if (!(k in seen)) { seen[k] = 1; rows[++nrows] = k }
    if (w != "scale" && !(b in bseen)) { bseen[b] = 1; backends[++nb] = b }
    ops[k, impl, rep] = $8
    add(opslist, k SUBSEP impl, $8)
    present[impl] = 1
    if (w == "alloc" && ph == "alloc" && extra_get(extra, "requested_bytes") > 0)
        add(space, b SUBSEP impl, extra_get(extra, "used_bytes") / extra_get(extra, "requested_bytes"))
    if (w == "reopen")
        add(reopen_us, b SUBSEP impl, extra_get(extra, "us"))
}

function print_backend(b,    i, j, k, part, line, m, r) {
    printf "backend %s: medians of %d repetition(s), ops/s; (ratio) = mseg/peer, median of per-repetition ratios, >1: mseg faster\n", b, maxrep
    line = sprintf("%-8s %-12s %10s", "workload", "phase", "mseg")
    for (j = 1; j <= npeers; j++)
        line = line sprintf("  %-20s", peers[j])
    print line
    for (i = 1; i <= nrows; i++) {
        k = rows[i]
        split(k, part, SUBSEP)
        if (part[2] != b || part[1] == "scale")
            continue
        m = medof(opslist, k SUBSEP "mseg")
        line = sprintf("%-8s %-12s %10s", part[1], part[3], human(m))
        for (j = 1; j <= npeers; j++) {
            r = ratio(k, peers[j])
            if ((k SUBSEP peers[j]) in opslist)
                line = line sprintf("  %-20s", human(median(opslist[k SUBSEP peers[j]])) (r == "" ? "" : sprintf(" (%.2fx)", r)))
            else
                line = line sprintf("  %-20s", "-")
        }
        print line
    }
    print ""
}

function target(w, ph, peer, want,    r, verdict) {
    r = ratio(w SUBSEP tb SUBSEP ph, peer)
    if (r == "")
        verdict = "n/a (no figure)"
    else
        verdict = sprintf("%6.2fx  %s", r, r >= want ? "met" : "MISSED")
    printf "  %-8s %-8s vs %-8s >= %4.1fx : %s\n", w, ph, peer, want, verdict
}

function print_targets(    s, u) {
    tb = "file"
    print "issue 6 targets (file backend):"
    target("alloc", "alloc", "boost", 2);   target("alloc", "free", "boost", 5)
    target("alloc", "alloc", "malloc", 0.8); target("alloc", "free", "malloc", 0.8)
    target("churn", "churn", "boost", 3);   target("named", "find", "boost", 5)
    target("vector", "push", "boost", 1)
    target("map", "insert", "boost", 2);    target("map", "insert", "lmdb", 2)
    target("map", "lookup", "boost", 2);    target("map", "lookup", "lmdb", 2)
    target("map", "iterate", "lmdb", 1)
    target("durable", "commit", "lmdb", 1); target("durable", "commit", "pmemobj", 5)
    s = medof(space, tb SUBSEP "mseg")
    printf "  alloc    used_bytes/requested_bytes <= 1.10 : %s\n", s == "" ? "n/a" : sprintf("%.3f  %s", s, s <= 1.10 ? "met" : "MISSED")
    u = medof(reopen_us, tb SUBSEP "mseg")
    printf "  reopen   of the map < 100 us              : %s\n", u == "" ? "n/a" : sprintf("%.1f us  %s", u, u < 100 ? "met" : "MISSED")
    print ""
}

function print_extras(    i, b, j, p) {
    print "space (alloc: used_bytes/requested_bytes) and reopen (microseconds), medians:"
    for (i = 1; i <= nb; i++) {
        b = backends[i]
        for (j = 0; j <= npeers; j++) {
            p = j ? peers[j] : "mseg"
            if ((b SUBSEP p) in space || (b SUBSEP p) in reopen_us)
                printf "  %-5s %-8s used/requested %-7s reopen %s\n", b, p,
                       (b SUBSEP p) in space ? sprintf("%.3f", medof(space, b SUBSEP p)) : "-",
                       (b SUBSEP p) in reopen_us ? sprintf("%.1f us", medof(reopen_us, b SUBSEP p)) : "-"
        }
    }
    print ""
}

# One line per implementation that ran the scale workload (mseg first),
# then mseg's rate with 2 processes over each other's (the median of the
# per-repetition ratios, as in the tables).
function print_scale(    k1, k2, m1, m2, impls, n, i, im, r) {
    k1 = "scale" SUBSEP "shm" SUBSEP "procs1"
    k2 = "scale" SUBSEP "shm" SUBSEP "procs2"
    if (!((k1 SUBSEP "mseg") in opslist))
        return
    impls[n = 1] = "mseg"
    for (i = 1; i <= npeers; i++)
        if ((k1 SUBSEP peers[i]) in opslist)
            impls[++n] = peers[i]
    print "scaling (shm, free+alloc operations/s of all processes, medians):"
    for (i = 1; i <= n; i++) {
        im = impls[i]
        m1 = medof(opslist, k1 SUBSEP im); m2 = medof(opslist, k2 SUBSEP im)
        printf "  %-8s 1 process %-9s 2 processes %-9s 2/1 = %s\n", im, human(m1), human(m2),
               (m1 > 0 && m2 != "") ? sprintf("%.2fx", m2 / m1) : "-"
    }
    for (i = 2; i <= n; i++)
        if ((r = ratio(k2, impls[i])) != "")
            printf "  2 processes: mseg %.2fx %s\n", r, impls[i]
    print ""
}

function write_svgdata(b,    i, j, k, part, line, r) {
    if (svgdata == "")
        return
    line = "phase"
    for (j = 1; j <= npeers; j++)
        line = line " " peers[j]
    print line > svgdata
    for (i = 1; i <= nrows; i++) {
        k = rows[i]
        split(k, part, SUBSEP)
        if (part[2] != b || part[1] == "scale")
            continue
        line = part[1] "/" part[3]
        for (j = 1; j <= npeers; j++) {
            r = ratio(k, peers[j])
            line = line " " (r == "" ? "?" : r)
        }
        print line > svgdata
    }
    close(svgdata)
}

END {
    split("boost pmemobj lmdb malloc", all, " ")
    for (j = 1; j <= 4; j++)
        if (all[j] in present)
            peers[++npeers] = all[j]
    for (i = 1; i <= nb; i++)
        print_backend(backends[i])
    print_targets()
    print_extras()
    print_scale()
    write_svgdata(("file" in bseen) ? "file" : backends[1])
}
