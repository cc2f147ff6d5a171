#!/bin/sh
# httpd against h2o (Debian's 2.2.5, bench/h2o.conf) and nginx (Debian's,
# bench/nginx.conf, configured like httpd's defaults), the three serving
# the same root on loopback, first with one thread each (httpd -t 1, h2o
# num-threads 1, nginx worker_processes 1) and then with two each. httpd
# runs on the io_uring engine (-e uring), and a second httpd on the epoll
# engine (-e epoll) serves the same root as a fourth server in the same
# rounds. Load from Debian's wrk with as many threads as the servers have.
#
# Rows, each the median of BENCH_ROUNDS rounds (default 3) of BENCH_SECONDS
# (default 3) per server, the servers taking turns (each goes first once in
# as many rounds as there are servers): requests/s, p99 latency, and the server's CPU time per
# request (user + system time over the run of every thread of httpd and
# h2o, which are one process each, and of every nginx worker, from
# /proc/PID/stat, divided by the requests wrk completed) for a 13-byte and
# a 4 KiB file at 64 and 256 connections, at one and at two threads; then,
# at one thread, large files (1 MiB and 64 MiB, 4 connections): MB/s and
# the server's CPU time per MB sent; then the idle memory per keep-alive
# connection: the server's RSS delta with 10,000 connections that each
# made one request and went quiet.
#
# The small-file rows run a fifth server in the same rounds, the raw
# liburing floor (build/raw_http, bench/raw_http.c: the same work as
# httpd's cached small-file path in plain liburing, one instance per file
# since it serves one file); httpd's requests/s and CPU per request are
# given against it too, with no goal, so that every run shows how far
# httpd is from what io_uring itself costs on the machine.
#
# Every row of httpd is given against h2o (the anchor) and nginx; the
# epoll engine's (httpd_epoll_*: 13 B and 4 KiB files, requests/s, p99 and
# CPU per request) against nginx, which polls with epoll too. The ratio
# favours httpd above 1 (anchor / httpd for the rows where lower is
# better). Goals (issue 22), reported as met or not and never failing the
# run: against h2o, >= 1.0x its requests/s and <= 0.75x its CPU per
# request (a ratio >= 1/0.75), both files, one and two threads; against
# nginx, large files at >= its MB/s and <= 1.0x its CPU per MB. Goals of
# issue 19: on epoll, against nginx, >= 1.0x its requests/s and <= 1.0x
# its CPU per request.
#
# Prints a table and writes build/bench-httpd.tsv (the columns of
# build/bench.tsv: benchmark, polldrop, baseline, baseline_value, ratio,
# goal, met, unit; goal is the least ratio that meets it, or -).
#
# BENCH_HTTPD is the httpd binary measured (default ./build/httpd), on
# both engines, and BENCH_HTTPD_ARGS more of its flags (for example
# "-L sendfile").
# BENCH_PORT (default 18480) is the first of the six loopback ports the
# servers listen on (the last two are raw_http's), so that two runs can
# share a machine.
#
# BENCH_ROWS=small measures the 13 B and 4 KiB rows alone (requests/s, p99,
# CPU per request): on a shared machine the p99 moves most between runs,
# and more rounds of these rows alone (BENCH_ROUNDS=7) say more about it
# than one round of everything. BENCH_THREADS="1" (or "2") measures those
# rows at one thread count only (default "1 2"). BENCH_ROWS=large measures
# the large-file rows alone (1 MiB and 64 MiB, one thread each).
#
# Usage: sh bench/httpd_bench.sh   (from the top directory, after make)
set -eu

rounds=${BENCH_ROUNDS:-3}
secs=${BENCH_SECONDS:-3}
rows=${BENCH_ROWS:-all}
threads_list=${BENCH_THREADS:-1 2}
case $rows in
all | small) ;;
large) threads_list=1 ;;
*) echo "bench: BENCH_ROWS is all, small or large, not '$rows'" >&2; exit 2 ;;
esac
for t in $threads_list; do
    case $t in
    1 | 2) ;;
    *) echo "bench: BENCH_THREADS holds 1 and/or 2, not '$t'" >&2; exit 2 ;;
    esac
done
idle_conns=${BENCH_IDLE_CONNS:-10000}
# The servers' ports: BENCH_PORT (default 18480) and the five after it.
port0=${BENCH_PORT:-18480}
hport=$port0
nport=$((port0 + 1))
oport=$((port0 + 2))
eport=$((port0 + 3))
rport=$((port0 + 4))
r4port=$((port0 + 5))
tck=$(getconf CLK_TCK)
nginx=$(command -v nginx || echo /usr/sbin/nginx)
h2o=$(command -v h2o || echo /usr/bin/h2o)
# The httpd binary measured (BENCH_HTTPD, default ./build/httpd): another
# build, kept aside, can be measured against the same servers.
httpd_bin=${BENCH_HTTPD:-./build/httpd}
httpd_args=${BENCH_HTTPD_ARGS:-}
# The goals, as least ratios: h2o's requests/s (1.0x), its CPU per request
# (0.75x, so h2o / httpd >= 1/0.75), nginx's MB/s and CPU per MB (1.0x).
goal_rps=1.000
goal_cpu=$(awk 'BEGIN { printf "%.3f", 1 / 0.75 }')
goal_large=1.000
goal_epoll=1.000

# 10,000 connections on each side of loopback, plus the servers' own.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/pd-httpd-bench.XXXXXX)
# nginx's workers and h2o (started as root) run as nobody: the root must
# be readable by others.
chmod 755 "$work"
root=$work/www
mkdir -p "$root" "$work/nginx" "$work/h2o"
printf 'hello, world\n' >"$root/13b.txt"
head -c 4096 /dev/urandom >"$root/4k.bin"
if [ "$rows" != small ]; then
    head -c 1048576 /dev/urandom >"$root/1m.bin"
    head -c 67108864 /dev/urandom >"$root/64m.bin"
fi
# wrk's summary of a large-file run: the bytes it read.
cat >"$work/bytes.lua" <<'EOF'
done = function(summary, latency, requests)
    io.write(string.format("BYTES %d\n", summary.bytes))
end
EOF
hpid=""
npid=""
opid=""
epid=""
rpid=""
r4pid=""

cleanup() {
    # Under set -e a server that dies of the signal (raw_http) must not end
    # the cleanup before the others are stopped.
    for p in $hpid $npid $opid $epid $rpid $r4pid; do
        { kill "$p" && wait "$p"; } 2>/dev/null || true
    done
    rm -rf "$work"
}
# A signal stops the run: a trap that only cleaned up would let the script
# go on without its servers and its directory.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits until something accepts connections on port $1.
wait_port() {
    python3 - "$1" <<'EOF'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit("bench: nothing listens on port " + sys.argv[1])
EOF
}

# Starts the servers (httpd on io_uring, nginx, h2o, httpd on epoll, and
# for the small-file rows raw_http on 13b.txt and on 4k.bin) with
# keep-alive idle time $1 seconds and $2 threads (workers) each; sets
# hpid, npid (nginx's master), opid, epid, rpid and r4pid, and hsrv /
# nsrv / osrv / esrv / rsrv / r4srv, the processes that serve (nginx's
# workers).
start_servers() {
    # shellcheck disable=SC2086
    "$httpd_bin" -q -e uring -p "$hport" -r "$root" -k "$(($1 * 1000))" -t "$2" $httpd_args &
    hpid=$!
    # shellcheck disable=SC2086
    "$httpd_bin" -q -e epoll -p "$eport" -r "$root" -k "$(($1 * 1000))" -t "$2" $httpd_args &
    epid=$!
    sed -e "s|@ROOT@|$root|" -e "s|@PORT@|$nport|" -e "s|@PREFIX@|$work/nginx|g" \
        -e "s|@IDLE_S@|$1|" -e "s|@WORKERS@|$2|" bench/nginx.conf >"$work/nginx/nginx.conf"
    "$nginx" -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" &
    npid=$!
    sed -e "s|@ROOT@|$root|" -e "s|@PORT@|$oport|" -e "s|@PREFIX@|$work/h2o|g" \
        -e "s|@IDLE_S@|$1|" -e "s|@THREADS@|$2|" bench/h2o.conf >"$work/h2o/h2o.conf"
    # h2o says on stderr that it raised its descriptor limit.
    "$h2o" -c "$work/h2o/h2o.conf" 2>>"$work/h2o/stderr" &
    opid=$!
    if [ "$rows" != large ]; then
        ./build/raw_http -p "$rport" -t "$2" "$root/13b.txt" &
        rpid=$!
        ./build/raw_http -p "$r4port" -t "$2" "$root/4k.bin" &
        r4pid=$!
        wait_port "$rport"
        wait_port "$r4port"
    fi
    wait_port "$hport"
    wait_port "$nport"
    wait_port "$oport"
    wait_port "$eport"
    hsrv=$hpid
    osrv=$opid
    esrv=$epid
    rsrv=$rpid
    r4srv=$r4pid
    tries=0
    while [ "$(pgrep -P "$npid" | wc -l)" -lt "$2" ]; do
        tries=$((tries + 1))
        [ "$tries" -lt 100 ] || { echo "bench: nginx started no $2 workers" >&2; exit 1; }
        sleep 0.05
    done
    nsrv=$(pgrep -P "$npid" | tr '\n' ' ' | sed 's/ $//')
}

stop_servers() {
    # shellcheck disable=SC2086
    kill "$hpid" "$npid" "$opid" "$epid" $rpid $r4pid
    wait "$hpid" || { echo "bench: httpd did not exit 0" >&2; exit 1; }
    wait "$epid" || { echo "bench: httpd -e epoll did not exit 0" >&2; exit 1; }
    wait "$npid" || true
    wait "$opid" || true
    # raw_http has no orderly exit: SIGTERM ends it.
    for p in $rpid $r4pid; do
        wait "$p" || true
    done
    rpid=""
    r4pid=""
    hpid=""
    npid=""
    opid=""
    epid=""
}

# The CPU time of processes $@ (user + system, every thread), in ticks.
cpu_ticks() {
    for p in "$@"; do
        cat "/proc/$p/stat"
    done | awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t }'
}

rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# The port and the serving processes of server $1 (h, n, o, e: httpd on
# epoll, or r: raw_http, whose instance depends on the path $2).
port_of() {
    case $1 in
    h) echo "$hport" ;; n) echo "$nport" ;; o) echo "$oport" ;; e) echo "$eport" ;;
    r) case $2 in /4k.bin) echo "$r4port" ;; *) echo "$rport" ;; esac ;;
    esac
}
pids_of() {
    case $1 in
    h) echo "$hsrv" ;; n) echo "$nsrv" ;; o) echo "$osrv" ;; e) echo "$esrv" ;;
    r) case $2 in /4k.bin) echo "$r4srv" ;; *) echo "$rsrv" ;; esac ;;
    esac
}

# Runs wrk with $4 threads against server $1 for path $2 with $3
# connections, charging the CPU of its serving processes; appends
# "rps p99_us cpu_us_per_request" to file $5. Any socket error or non-2xx
# response stops the run; wrk's timeout is 10 s rather than its 2 s, which
# a machine loaded by other work can exceed for one response of a server
# that is working (it was h2o's, once, at a load average of 12).
run_wrk() {
    port=$(port_of "$1" "$2")
    # shellcheck disable=SC2046
    t0=$(cpu_ticks $(pids_of "$1" "$2"))
    out=$(wrk -t"$4" -c"$3" -d"${secs}s" --timeout 10s --latency "http://127.0.0.1:$port$2")
    # shellcheck disable=SC2046
    t1=$(cpu_ticks $(pids_of "$1" "$2"))
    echo "$out" | awk -v t0="$t0" -v t1="$t1" -v tck="$tck" -v port="$port$2 -c$3 -t$4" '
        / requests in / { n = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx|Socket errors/ { bad = bad $0 " " }
        $1 == "99%" {
            v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
            p99 = u == "us" ? v : u == "ms" ? v * 1000 : v * 1000000
        }
        END {
            if (bad != "") { print "bench: wrk on port " port ": " bad > "/dev/stderr"; exit 1 }
            printf "%.0f %.0f %.2f\n", rps, p99, (t1 - t0) * 1000000 / tck / n
        }' >>"$5"
}

# Runs wrk against server $1 for the large file $2 ($3 bytes) with 4
# connections, charging the CPU of its serving processes; appends "MB/s
# cpu_us_per_MB" to file $4. The MB are the bytes wrk read (its Lua
# summary), responses cut at the end of the run included: counted in
# whole responses, a 3 s run of 64 MiB files would leave out up to four
# responses' worth of what the server sent.
run_wrk_large() {
    port=$(port_of "$1")
    # shellcheck disable=SC2046
    t0=$(cpu_ticks $(pids_of "$1"))
    out=$(wrk -t1 -c4 -d"${secs}s" --timeout 10s -s "$work/bytes.lua" "http://127.0.0.1:$port$2")
    # shellcheck disable=SC2046
    t1=$(cpu_ticks $(pids_of "$1"))
    echo "$out" | awk -v t0="$t0" -v t1="$t1" -v tck="$tck" -v port="$port$2" -v size="$3" \
                      -v secs="$secs" '
        /^BYTES / { b = $2 }
        /Non-2xx|Socket errors/ { bad = bad $0 " " }
        END {
            if (bad != "") { print "bench: wrk on port " port ": " bad > "/dev/stderr"; exit 1 }
            mb = b / 1000000
            printf "%.0f %.1f\n", mb / secs, (t1 - t0) * 1000000 / tck / mb
        }' >>"$4"
}

median() {
    sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# Servers $2... in round $1's order, rotated by one each round: each goes
# first once in as many rounds as there are servers.
order() {
    _r=$1
    shift
    _k=$((_r % $#))
    while [ "$_k" -gt 0 ]; do
        _first=$1
        shift
        set -- "$@" "$_first"
        _k=$((_k - 1))
    done
    echo "$@"
}

for t in $threads_list; do
    start_servers 5 "$t"
    for r in $(seq "$rounds"); do
        for size in 13b.txt 4k.bin; do
            [ "$rows" = large ] && break
            for c in 64 256; do
                for s in $(order "$r" h n o e r); do
                    run_wrk "$s" "/$size" "$c" "$t" "$work/$s-t$t-$size-$c"
                done
            done
        done
        [ "$rows" = small ] || [ "$t" != 1 ] && continue
        for large in 1m.bin:1048576 64m.bin:67108864; do
            for s in $(order "$r" h n o); do
                run_wrk_large "$s" "/${large%%:*}" "${large##*:}" "$work/$s-${large%%:*}"
            done
        done
    done
    stop_servers
done

# Idle memory: 30 s keep-alive on every server so that no connection times
# out while the RSS is read; the reading comes 2 s after the last response,
# once httpd has given back the blocks of its connections.
idle_rss() {
    before=$(rss_kib "$2")
    mkfifo "$work/hold"
    ./build/idle_conns "$1" "$idle_conns" /13b.txt <"$work/hold" >"$work/idle.out" &
    cpid=$!
    exec 3>"$work/hold"
    while ! grep -q ready "$work/idle.out" 2>/dev/null; do
        kill -0 "$cpid" 2>/dev/null || { echo "bench: idle_conns failed" >&2; exit 1; }
        sleep 0.1
    done
    sleep 2
    after=$(rss_kib "$2")
    exec 3>&-
    wait "$cpid"
    rm -f "$work/hold" "$work/idle.out"
    echo $(((after - before) * 1024 / idle_conns))
}
if [ "$rows" = all ]; then
    start_servers 30 1
    hmem=$(idle_rss "$hport" "$hsrv")
    nmem=$(idle_rss "$nport" "$nsrv")
    omem=$(idle_rss "$oport" "$osrv")
    stop_servers
fi

tsv=build/bench-httpd.tsv
printf 'benchmark\tpolldrop\tbaseline\tbaseline_value\tratio\tgoal\tmet\tunit\n' >"$tsv"
printf '%-32s %10s  %-5s %10s %7s  %s\n' benchmark httpd vs value ratio goal
# row NAME HTTPD ANCHOR ANCHOR_VALUE HIGHER_IS_BETTER(1/0) GOAL(least ratio, or -) UNIT
row() {
    line=$(awk -v h="$2" -v a="$4" -v hb="$5" -v g="$6" 'BEGIN {
        r = hb ? (a > 0 ? h / a : 0) : (h > 0 ? a / h : 0)
        met = g == "-" ? "-" : (r >= g + 0 ? "yes" : "no")
        printf "%.3f %s", r, met
    }')
    ratio=${line% *}
    met=${line#* }
    case $met in
    yes) verdict="goal >= $6: met" ;;
    no) verdict="goal >= $6: NOT met" ;;
    *) verdict="" ;;
    esac
    printf '%-32s %10s  %-5s %10s %7s%s\n' "$1" "$2" "$3" "$4" "$ratio" "${verdict:+  $verdict}"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$ratio" "$6" "$met" "$7" \
        >>"$tsv"
}
# col FILE N: the median of column N of FILE.
col() {
    cut -d' ' -f"$2" "$1" | median
}
for t in $threads_list; do
    for size in 13b.txt 4k.bin; do
        [ "$rows" = large ] && break
        for c in 64 256; do
            if [ "$t" = 1 ]; then tag=httpd_${size%%.*}_c$c; else tag=httpd_t${t}_${size%%.*}_c$c; fi
            h=$work/h-t$t-$size-$c
            for a in o n; do
                f=$work/$a-t$t-$size-$c
                if [ "$a" = o ]; then an=h2o g1=$goal_rps g3=$goal_cpu; else an=nginx g1=- g3=-; fi
                row "${tag}_rps" "$(col "$h" 1)" "$an" "$(col "$f" 1)" 1 "$g1" \
                    "requests/s, $t thread(s)"
                row "${tag}_p99_us" "$(col "$h" 2)" "$an" "$(col "$f" 2)" 0 - \
                    "p99 us, $t thread(s)"
                row "${tag}_cpu_us" "$(col "$h" 3)" "$an" "$(col "$f" 3)" 0 "$g3" \
                    "server CPU us/request, $t thread(s)"
            done
            # httpd against the raw liburing floor: no goal.
            f=$work/r-t$t-$size-$c
            row "${tag}_rps" "$(col "$h" 1)" raw "$(col "$f" 1)" 1 - \
                "requests/s, $t thread(s)"
            row "${tag}_cpu_us" "$(col "$h" 3)" raw "$(col "$f" 3)" 0 - \
                "server CPU us/request, $t thread(s)"
            # The epoll engine against nginx.
            e=$work/e-t$t-$size-$c
            f=$work/n-t$t-$size-$c
            etag=httpd_epoll_${tag#httpd_}
            row "${etag}_rps" "$(col "$e" 1)" nginx "$(col "$f" 1)" 1 "$goal_epoll" \
                "requests/s, epoll, $t thread(s)"
            row "${etag}_p99_us" "$(col "$e" 2)" nginx "$(col "$f" 2)" 0 - \
                "p99 us, epoll, $t thread(s)"
            row "${etag}_cpu_us" "$(col "$e" 3)" nginx "$(col "$f" 3)" 0 "$goal_epoll" \
                "server CPU us/request, epoll, $t thread(s)"
        done
    done
done
for large in 1m 64m; do
    [ "$rows" = small ] && break
    case " $threads_list " in *" 1 "*) ;; *) break ;; esac
    h=$work/h-$large.bin
    for a in n o; do
        f=$work/$a-$large.bin
        if [ "$a" = n ]; then an=nginx g=$goal_large; else an=h2o g=-; fi
        row "httpd_${large}_c4_mb_per_s" "$(col "$h" 1)" "$an" "$(col "$f" 1)" 1 "$g" "MB/s"
        row "httpd_${large}_c4_cpu_us_per_mb" "$(col "$h" 2)" "$an" "$(col "$f" 2)" 0 "$g" \
            "server CPU us/MB"
    done
done
if [ "$rows" = all ]; then
    row httpd_idle_bytes_per_conn "$hmem" h2o "$omem" 0 - "bytes/keep-alive conn, 10k"
    row httpd_idle_bytes_per_conn "$hmem" nginx "$nmem" 0 - "bytes/keep-alive conn, 10k"
fi
echo "wrote $tsv"
