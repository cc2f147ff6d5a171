# The chart of make bench (bench/chart.sh runs it): one horizontal bar per
# row of build/bench.tsv and build/bench-httpd.tsv, from parity (1) to the
# row's ratio on a logarithmic axis, a black tick at the row's goal.
# bench/chart.sh first loads build/bench-chart.gp, which sets rows,
# chart_title, chart_note, the section labels and rules, and outfile.
dat = "build/bench-chart.dat"
xmin = 1.0 / 16
xmax = 24
clip(x) = x < xmin ? xmin : x > xmax ? xmax : x
# Where a row's text goes: past the bar's end, or past the goal's tick
# when that is further out on the same side of parity. A bar that reaches
# near an end of the axis has its text inside, at its far end.
outer(r, g) = r >= 1 ? (g > r ? g : r) : (g < r ? g : r)
inside(r) = (r > 8 || r < 1.0 / 8) ? 1 : 0
set terminal svg size 1100, 170 + 19 * rows dynamic font "DejaVu Sans,11" \
    background rgb "white"
set output outfile
set termoption noenhanced
set datafile separator "\t"

set title chart_title . "\n" . chart_note . \
    "\nRatio above 1: polldrop leads (throughput over the anchor's; for costs, the anchor's over polldrop's). Log scale." \
    font ",12"
set lmargin 34
set rmargin 4
set tmargin 7
set bmargin 5
set logscale x 2
set xrange [xmin:xmax]
set yrange [0.4:rows + 0.6]
set xtics ("1/16" 0.0625, "1/8" 0.125, "1/4" 0.25, "1/2" 0.5, "0.75" 0.75, "1" 1, \
           "1.33" 4.0 / 3, "2" 2, "4" 4, "8" 8, "16" 16) nomirror
set x2tics ("1/16" 0.0625, "1/8" 0.125, "1/4" 0.25, "1/2" 0.5, "0.75" 0.75, "1" 1, \
            "1.33" 4.0 / 3, "2" 2, "4" 4, "8" 8, "16" 16)
set x2range [xmin:xmax]
set logscale x2 2
set ytics nomirror scale 0 font ",10"
set grid xtics lc rgb "#dddddd" lw 1 dt 1
set arrow from 1, graph 0 to 1, graph 1 nohead lc rgb "#555555" lw 1.5 front
set key bmargin center horizontal samplen 1.5 width 2 font ",11"
set style fill solid 1.0 noborder

half = 0.36
plot dat using (1):1:(1):(clip($3)):($1 - half):($1 + half):5:ytic(2) \
         with boxxyerror lc rgb variable notitle, \
     "" using ($7 > 0 ? $4 : NaN):($1 - 0.48):(0):(0.96) with vectors nohead lw 3 \
         lc rgb "black" notitle, \
     "" using ($3 >= 1 && inside($3) == 0 ? outer($3, $4) * 1.05 : NaN):1:6 \
         with labels left font ",9" notitle, \
     "" using ($3 < 1 && inside($3) == 0 ? outer($3, $4) / 1.05 : NaN):1:6 \
         with labels right font ",9" notitle, \
     "" using ($3 > 8 ? clip($3) / 1.05 : NaN):1:6:8 \
         with labels right font ",9" tc rgb variable notitle, \
     "" using ($3 < 1.0 / 8 ? clip($3) * 1.05 : NaN):1:6:8 \
         with labels left font ",9" tc rgb variable notitle, \
     NaN with boxes lc rgb "#1b7f3b" title "goal met", \
     NaN with boxes lc rgb "#c62828" title "goal not met", \
     NaN with boxes lc rgb "#9fd3a8" title "no goal, polldrop leads", \
     NaN with boxes lc rgb "#f2a7a7" title "no goal, polldrop trails", \
     NaN with lines lw 3 lc rgb "black" title "goal"
