#!/bin/sh
# Draws build/bench.svg from build/bench.tsv and build/bench-httpd.tsv (make
# bench writes both; either may be missing): every row's ratio against its
# anchor as a horizontal bar from parity (1) on a logarithmic axis, so that
# leading and trailing by the same factor look the same size; a black tick
# where a row has a goal; the bar green where the goal is met (or, on a row
# without a goal, pale green where polldrop leads) and red where it is not
# (pale red where it trails). The title gives the run's date and the
# machine: cores, kernel, CPU model, and the load average at the start of
# the run and at its end (build/bench-load.txt, written by make bench).
#
# Usage: sh bench/chart.sh [OUT.svg]   (from the top directory, or any
# directory whose build/ holds the TSVs; Debian's gnuplot-nox, which
# scripts/deps.sh bench installs)
set -eu

out=${1:-build/bench.svg}
dat=build/bench-chart.dat
inc=build/bench-chart.gp
tsvs=""
for f in build/bench.tsv build/bench-httpd.tsv; do
    [ -f "$f" ] && tsvs="$tsvs $f"
done
[ -n "$tsvs" ] || { echo "chart: no build/bench.tsv or build/bench-httpd.tsv" >&2; exit 1; }

# The rows in sections, top to bottom: the runtime's rows against their
# baselines, then httpd against h2o, then httpd against nginx, then httpd
# on the epoll engine (httpd_epoll_*) against nginx, then httpd against
# the raw liburing floor (baseline raw, bench/raw_http.c). Each data
# line: y, label, ratio, goal (1 where there is none), the bar's colour,
# the ratio as printed, whether there is a goal (1/0), and the colour of
# text drawn on the bar.
# The section headings go to the include file as labels and rules.
# shellcheck disable=SC2086
awk -F '\t' -v inc="$inc" '
    FNR == 1 { next }
    {
        sec = $1 ~ /^httpd_epoll_/ ? 4 : $1 ~ /^httpd_/ ? ($3 == "h2o" ? 2 : $3 == "raw" ? 5 : 3) : 1
        n[sec]++
        row[sec, n[sec]] = $0
    }
    END {
        title[1] = "polldrop against raw liburing, libuv and itself (build/bench.tsv)"
        title[2] = "httpd against h2o, the anchor (build/bench-httpd.tsv; t2: two threads each)"
        title[3] = "httpd against nginx (build/bench-httpd.tsv; t2: two threads each)"
        title[4] = "httpd on the epoll engine against nginx (build/bench-httpd.tsv; t2: two threads each)"
        title[5] = "httpd against the raw liburing floor, no goal (build/bench-httpd.tsv; t2: two threads each)"
        total = 0
        for (s = 1; s <= 5; s++)
            if (n[s])
                total += n[s] + 1
        y = total
        for (s = 1; s <= 5; s++) {
            if (!n[s])
                continue
            printf "set label \"%s\" at graph 0.005, first %d left font \",11\" textcolor rgb \"#333333\"\n", title[s], y > inc
            if (y < total)
                printf "set arrow from graph 0, first %g to graph 1, first %g nohead lc rgb \"#999999\" lw 1\n", y + 0.5, y + 0.5 > inc
            y--
            last = ""
            for (i = 1; i <= n[s]; i++) {
                split(row[s, i], f, "\t")
                # httpd rows come in groups: one thread, two threads, large
                # files and memory; a dotted rule goes between them.
                group = f[1] ~ /^httpd_(epoll_)?t2_/ ? "t2" : f[1] ~ /_mb|_idle_/ ? "large" : "t1"
                if (s > 1 && last != "" && group != last)
                    printf "set arrow from graph 0, first %g to graph 1, first %g nohead lc rgb \"#bbbbbb\" dt 3 lw 1\n", y + 0.5, y + 0.5 > inc
                last = group
                label = s == 1 ? f[1] " vs " f[3] : s == 4 ? substr(f[1], 13) : substr(f[1], 7)
                ratio = f[5] + 0
                goal = f[6] == "-" || f[6] == "" ? "NaN" : f[6]
                if (goal != "NaN")
                    colour = ratio >= goal + 0 ? "0x1b7f3b" : "0xc62828"
                else
                    colour = ratio >= 1 ? "0x9fd3a8" : "0xf2a7a7"
                text = sprintf("%.2f", ratio)
                if (goal != "NaN")
                    text = text (ratio >= goal + 0 ? "  met" : "  not met")
                ink = goal != "NaN" ? "0xffffff" : "0x000000"
                printf "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", y, label, f[5], \
                    goal == "NaN" ? 1 : goal, colour, text, goal != "NaN", ink
                y--
            }
        }
        printf "rows = %d\n", total > inc
    }' $tsvs >"$dat.tmp"
mv "$dat.tmp" "$dat"

cpu=$(awk -F ': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
# make bench writes the load averages at its start and its end there; a
# line that is missing is read now.
load_start=$(sed -n 1p build/bench-load.txt 2>/dev/null || true)
load_end=$(sed -n 2p build/bench-load.txt 2>/dev/null || true)
[ -n "$load_start" ] || load_start=$(cut -d' ' -f1-3 /proc/loadavg)
[ -n "$load_end" ] || load_end=$(cut -d' ' -f1-3 /proc/loadavg)
when=$(date -r "${tsvs##* }" '+%Y-%m-%d %H:%M')
echo "chart_title = \"make bench, $when, on $(nproc) cores, Linux $(uname -r), $cpu\"" >>"$inc"
# Loaded means more than half the cores' worth of runnable work besides
# the benchmark's, at the start or at the end.
if awk -v a="$load_start" -v b="$load_end" -v c="$(nproc)" \
       'BEGIN { exit !((a + 0 > c / 2) || (b + 0 > c / 2)) }'; then
    busy="the machine was loaded: the figures are indicative only"
else
    busy="the machine was otherwise idle"
fi
echo "chart_note = \"Load average $load_start at the start, $load_end at the end: $busy.\"" >>"$inc"
# GNUPLOT=true leaves the drawing out (tests/test_bench_chart.py checks the
# data without gnuplot).
${GNUPLOT:-gnuplot} -e "load '$inc'; outfile = '$out'" "$(dirname "$0")/bench.gp"
echo "wrote $out"
