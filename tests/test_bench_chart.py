"""bench/chart.sh: the chart of make bench, from its TSVs.

The data step (rows in their sections, labels, the colour that says
whether a goal is met, the caption that says whether the machine was
loaded) is checked without gnuplot; the drawing itself where gnuplot is
installed (scripts/deps.sh bench installs it).
"""
import os
import shutil
import subprocess
import tempfile
import unittest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(TOP, "bench", "chart.sh")

HEAD = "benchmark\tpolldrop\tbaseline\tbaseline_value\tratio\tgoal\tmet\tunit\n"

# build/bench.tsv: one row meeting its goal, one missing it, two without.
BENCH = HEAD + (
    "nop_chain\t990.0\tliburing\t1000.0\t0.990\t0.980\tyes\tnops/s\n"
    "nop_tasks\t900.0\tliburing\t1000.0\t0.900\t0.950\tno\tnops/s (128 tasks)\n"
    "echo\t1100.0\tlibuv\t1000.0\t1.100\t-\t-\tround trips/s\n"
    "echo_epoll\t1050.0\tlibuv\t1000.0\t1.050\t1.000\tyes\tround trips/s, epoll\n"
    "cancel\t500.0\tliburing\t400.0\t0.800\t-\t-\tns per cancelled op\n"
)

# build/bench-httpd.tsv: rows against h2o, nginx and the raw liburing
# floor, and the epoll engine's against nginx, interleaved as the script
# writes them; the chart groups them by anchor, the epoll engine's in a
# section of their own.
HTTPD = HEAD + (
    "httpd_13b_c64_rps\t100\th2o\t90\t1.111\t1.000\tyes\trequests/s, 1 thread(s)\n"
    "httpd_13b_c64_cpu_us\t10\th2o\t12\t1.200\t1.333\tno\tserver CPU us/request\n"
    "httpd_13b_c64_rps\t100\tnginx\t50\t2.000\t-\t-\trequests/s, 1 thread(s)\n"
    "httpd_13b_c64_cpu_us\t10\traw\t5\t0.500\t-\t-\tserver CPU us/request\n"
    "httpd_epoll_13b_c64_rps\t40\tnginx\t50\t0.800\t1.000\tno\trequests/s, epoll\n"
    "httpd_epoll_t2_13b_c64_rps\t60\tnginx\t50\t1.200\t1.000\tyes\trequests/s, epoll\n"
    "httpd_t2_13b_c64_rps\t100\th2o\t110\t0.909\t1.000\tno\trequests/s, 2 thread(s)\n"
)

MET, MISSED, LEADS, TRAILS = "0x1b7f3b", "0xc62828", "0x9fd3a8", "0xf2a7a7"


class ChartTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="pd-chart-")
        os.mkdir(os.path.join(self.dir, "build"))
        self.write("bench.tsv", BENCH)
        self.write("bench-httpd.tsv", HTTPD)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def write(self, name, text):
        with open(os.path.join(self.dir, "build", name), "w") as f:
            f.write(text)

    def read(self, name):
        with open(os.path.join(self.dir, "build", name)) as f:
            return f.read()

    def chart(self, gnuplot="true"):
        env = dict(os.environ, GNUPLOT=gnuplot)
        return subprocess.run(["sh", CHART], cwd=self.dir, env=env, capture_output=True,
                              text=True, timeout=120)

    def rows(self):
        """The data lines as (y, label, ratio, goal, colour, text, has_goal)."""
        out = []
        for line in self.read("bench-chart.dat").splitlines():
            f = line.split("\t")
            out.append((int(f[0]), f[1], float(f[2]), float(f[3]), f[4], f[5], f[6]))
        return out

    def test_rows_in_sections_with_goal_colours(self):
        r = self.chart()
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = self.rows()
        self.assertEqual([x[1] for x in rows],
                         ["nop_chain vs liburing", "nop_tasks vs liburing", "echo vs libuv",
                          "echo_epoll vs libuv", "cancel vs liburing",
                          "13b_c64_rps", "13b_c64_cpu_us", "t2_13b_c64_rps",
                          "13b_c64_rps",
                          "13b_c64_rps", "t2_13b_c64_rps",
                          "13b_c64_cpu_us"])
        self.assertEqual([x[4] for x in rows],
                         [MET, MISSED, LEADS, MET, TRAILS, MET, MISSED, MISSED, LEADS,
                          MISSED, MET, TRAILS])
        self.assertEqual([x[5] for x in rows][:2], ["0.99  met", "0.90  not met"])
        self.assertEqual([x[6] for x in rows],
                         ["1", "1", "0", "1", "0", "1", "1", "1", "0", "1", "1", "0"])
        # Top to bottom, one row left for each of the five section headings.
        ys = [x[0] for x in rows]
        self.assertEqual(ys, sorted(ys, reverse=True))
        self.assertEqual(ys[0], 17 - 1)
        self.assertIn("rows = 17", self.read("bench-chart.gp"))
        self.assertIn("httpd on the epoll engine against nginx", self.read("bench-chart.gp"))
        self.assertIn("httpd against the raw liburing floor", self.read("bench-chart.gp"))

    def test_a_goal_met_exactly_is_met(self):
        self.write("bench.tsv", HEAD + "nop_tasks\t95.0\tliburing\t100.0\t0.950\t0.950\tyes\tx\n")
        os.remove(os.path.join(self.dir, "build", "bench-httpd.tsv"))
        self.assertEqual(self.chart().returncode, 0)
        self.assertEqual(self.rows()[0][4], MET)

    def test_caption_says_whether_the_machine_was_loaded(self):
        cores = os.cpu_count()
        self.write("bench-load.txt", f"{cores * 4}.00 1.00 1.00\n{cores * 4}.00 2.00 1.00\n")
        self.assertEqual(self.chart().returncode, 0)
        inc = self.read("bench-chart.gp")
        self.assertIn("the machine was loaded: the figures are indicative only", inc)
        self.assertIn(f"Load average {cores * 4}.00 1.00 1.00 at the start", inc)
        self.write("bench-load.txt", "0.00 0.00 0.00\n0.00 0.00 0.00\n")
        self.assertEqual(self.chart().returncode, 0)
        self.assertIn("the machine was otherwise idle", self.read("bench-chart.gp"))

    def test_no_tsv_is_an_error(self):
        os.remove(os.path.join(self.dir, "build", "bench.tsv"))
        os.remove(os.path.join(self.dir, "build", "bench-httpd.tsv"))
        r = self.chart()
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no build/bench.tsv", r.stderr)

    @unittest.skipUnless(shutil.which("gnuplot"), "gnuplot (scripts/deps.sh bench)")
    def test_draws_an_svg_with_title_and_legend(self):
        r = self.chart("gnuplot")
        self.assertEqual(r.returncode, 0, r.stderr)
        svg = self.read("bench.svg")
        self.assertTrue(svg.lstrip().startswith("<?xml"))
        for text in ("make bench, ", "goal not met", "13b_c64_cpu_us", "nop_tasks vs liburing",
                     "httpd against h2o"):
            self.assertIn(text, svg)


if __name__ == "__main__":
    unittest.main()
