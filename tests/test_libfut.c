/*
 * The library futures for directories and signals: read_dir (and
 * tests/specs/walk_tree.yaml, a tree walk made of it) on real directories,
 * hostile ones included (huge, names of 255 bytes, removed mid-walk, out of
 * descriptors), and sigset_wait (and tests/specs/sig_select.yaml, a select
 * with a signal branch) on real signals, each also under the
 * cancel-at-every-suspension-point harness.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "read_dir.h"
#include "sig_select.h"
#include "sigset_wait.h"
#include "testutil.h"
#include "walk_tree.h"

/* --- fixtures: directories --- */

/* The number the next descriptor would get. */
static int pd_lowest_free_fd(void)
{
    int fd = dup(0);

    ck_assert_int_ge(fd, 0);
    close(fd);
    return fd;
}

/* Creates dir/name as an empty file. */
static void pd_touch(const char *dir, const char *name)
{
    char path[PATH_MAX];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
    close(fd);
}

/* Removes the tree under path (no symlink is followed). */
static void pd_rm_tree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;

    if (d == NULL) {
        unlink(path);
        return;
    }
    while ((e = readdir(d)) != NULL) {
        char sub[PATH_MAX];

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        if (e->d_type == DT_DIR)
            pd_rm_tree(sub);
        else
            unlink(sub);
    }
    closedir(d);
    rmdir(path);
}

/* A fresh directory with n empty files f0 .. f(n-1) and the directories d0, d1. */
static void pd_make_dir(char *dir, size_t len, int n)
{
    char name[32];

    pd_test_tmp_path(dir, len, "rdir");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        pd_touch(dir, name);
    }
    for (int i = 0; i < 2; i++) {
        char sub[PATH_MAX];

        snprintf(sub, sizeof(sub), "%s/d%d", dir, i);
        ck_assert_int_eq(mkdir(sub, 0700), 0);
    }
}

/* One await of read_dir, as a spec's: its output. */
static int pd_read_dir(pd_runtime *rt, int dfd, struct dirent *ents, int cap)
{
    read_dir f;
    int out = 0;

    read_dir_init(&f, dfd, ents, cap);
    ck_assert_int_eq(pd_block_on(rt, read_dir_dyn(&f), &out), 0);
    return out;
}

/*
 * Reads dir to its end in batches of cap: every entry other than . and ..
 * is given exactly once, with the type it has (n files, two directories).
 */
static void pd_read_all(pd_runtime *rt, const char *dir, int n, int cap)
{
    struct dirent ents[16];
    char *seen = calloc((size_t)n, 1);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), got, total = 0, dirs = 0;

    ck_assert_int_ge(dfd, 0);
    ck_assert_ptr_nonnull(seen);
    while ((got = pd_read_dir(rt, dfd, ents, cap)) > 0) {
        ck_assert_int_le(got, cap);
        for (int i = 0; i < got; i++) {
            int k;

            total++;
            if (ents[i].d_name[0] == 'd') {
                ck_assert_int_eq(ents[i].d_type, DT_DIR);
                dirs++;
                continue;
            }
            ck_assert_int_eq(ents[i].d_type, DT_REG);
            ck_assert_int_eq(sscanf(ents[i].d_name, "f%d", &k), 1);
            ck_assert_int_lt(k, n);
            ck_assert_msg(!seen[k], "f%d given twice", k);
            seen[k] = 1;
        }
    }
    ck_assert_int_eq(got, 0);
    ck_assert_int_eq(total, n + 2);
    ck_assert_int_eq(dirs, 2);
    /* At the end it stays at the end. */
    ck_assert_int_eq(pd_read_dir(rt, dfd, ents, cap), 0);
    close(dfd);
    free(seen);
}

/* --- read_dir --- */

START_TEST(read_dir_gives_every_entry_once)
{
    char dir[128];
    pd_runtime *rt = pd_test_rt();
    int fds = pd_test_fd_count();

    pd_make_dir(dir, sizeof(dir), 300);
    pd_read_all(rt, dir, 300, 16);
    /* One entry a batch: the directory's position goes back each time. */
    pd_read_all(rt, dir, 300, 1);
    pd_read_all(rt, dir, 300, 7);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_rm_tree(dir);
    pd_runtime_free(rt);
}
END_TEST

/* A directory of 20000 entries, in batches of 16: each once. */
START_TEST(read_dir_huge_directory)
{
    char dir[128];
    pd_runtime *rt = pd_test_rt();

    pd_make_dir(dir, sizeof(dir), 20000);
    pd_read_all(rt, dir, 20000, 16);
    pd_rm_tree(dir);
    pd_runtime_free(rt);
}
END_TEST

/* Names of NAME_MAX (255) bytes, the longest there are, come whole. */
START_TEST(read_dir_names_of_255_bytes)
{
    char dir[128], name[256];
    struct dirent ents[3];
    pd_runtime *rt = pd_test_rt();
    char seen[40] = { 0 };
    int dfd, got, total = 0;

    pd_test_tmp_path(dir, sizeof(dir), "rdir255");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    for (int i = 0; i < 40; i++) {
        memset(name, 'a' + i % 26, 255);
        name[255] = '\0';
        name[0] = (char)('A' + i % 26);
        name[1] = (char)('0' + i / 26);
        pd_touch(dir, name);
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(dfd, 0);
    while ((got = pd_read_dir(rt, dfd, ents, 3)) > 0) {
        for (int i = 0; i < got; i++) {
            int k = (ents[i].d_name[0] - 'A') + 26 * (ents[i].d_name[1] - '0');

            ck_assert_uint_eq(strlen(ents[i].d_name), 255);
            ck_assert_int_eq(ents[i].d_name[254], 'a' + k % 26);
            ck_assert_int_lt(k, 40);
            ck_assert_msg(!seen[k], "name %d given twice", k);
            seen[k] = 1;
            total++;
        }
    }
    ck_assert_int_eq(got, 0);
    ck_assert_int_eq(total, 40);
    close(dfd);
    pd_rm_tree(dir);
    pd_runtime_free(rt);
}
END_TEST

/* The directory is removed between two batches: the next says -ENOENT. */
START_TEST(read_dir_directory_removed_mid_walk)
{
    char dir[128];
    struct dirent ents[2];
    pd_runtime *rt = pd_test_rt();
    int dfd;

    pd_make_dir(dir, sizeof(dir), 10);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(dfd, 0);
    ck_assert_int_eq(pd_read_dir(rt, dfd, ents, 2), 2);
    pd_rm_tree(dir);
    ck_assert_int_eq(pd_read_dir(rt, dfd, ents, 2), -ENOENT);
    close(dfd);
    pd_runtime_free(rt);
}
END_TEST

/* What is not an open directory is refused as getdents64 refuses it. */
START_TEST(read_dir_refuses_what_is_not_a_directory)
{
    char dir[128], path[160];
    struct dirent ents[2];
    pd_runtime *rt = pd_test_rt();
    int fd;

    pd_make_dir(dir, sizeof(dir), 1);
    snprintf(path, sizeof(path), "%s/f0", dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pd_read_dir(rt, fd, ents, 2), -ENOTDIR);
    ck_assert_int_eq(pd_read_dir(rt, -1, ents, 2), -EBADF);
    ck_assert_int_eq(pd_read_dir(rt, fd, ents, 0), -EINVAL);
    close(fd);
    pd_rm_tree(dir);
    pd_runtime_free(rt);
}
END_TEST

/* --- walk_tree: a spec that walks a tree with read_dir --- */

/*
 * A tree of `depth` levels below root: each level has `files` files, a
 * symbolic link to the root (not followed) and the next level's directory.
 */
static void pd_make_tree(char *root, size_t len, int depth, int files)
{
    char dir[PATH_MAX], name[32];

    pd_test_tmp_path(root, len, "tree");
    snprintf(dir, sizeof(dir), "%s", root);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    for (int d = 0; d < depth; d++) {
        char link[PATH_MAX + 8];
        size_t l = strlen(dir);

        for (int i = 0; i < files; i++) {
            snprintf(name, sizeof(name), "f%d", i);
            pd_touch(dir, name);
        }
        snprintf(link, sizeof(link), "%s/up", dir);
        ck_assert_int_eq(symlink(root, link), 0);
        ck_assert_int_lt(l + 3, sizeof(dir));
        memcpy(dir + l, "/s", 3);
        ck_assert_int_eq(mkdir(dir, 0700), 0);
    }
}

START_TEST(walk_tree_counts_the_files)
{
    char root[128];
    long out = 0;
    pd_runtime *rt = pd_test_rt();
    int fds = pd_test_fd_count();

    pd_make_tree(root, sizeof(root), 5, 30);
    for (int batch = 1; batch <= 8; batch += 7) {
        ck_assert_int_eq(walk_tree_block_on(rt, root, batch, &out), 0);
        ck_assert_int_eq(out, 5 * 30);
    }
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_rm_tree(root);
    pd_runtime_free(rt);
}
END_TEST

/* Deeper than its 16 levels: -ELOOP, and every level it opened is closed. */
START_TEST(walk_tree_too_deep_closes_every_level)
{
    char root[128];
    long out = 0;
    pd_runtime *rt = pd_test_rt();
    int fds = pd_test_fd_count();

    pd_make_tree(root, sizeof(root), 20, 1);
    ck_assert_int_eq(walk_tree_block_on(rt, root, 8, &out), 0);
    ck_assert_int_eq(out, -ELOOP);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_rm_tree(root);
    pd_runtime_free(rt);
}
END_TEST

/*
 * Out of descriptors after three levels: the engine's openat says -EMFILE,
 * the walk returns it, and its teardown closes the three it holds.
 */
START_TEST(walk_tree_emfile_closes_what_it_opened)
{
    char root[128];
    long out = 0;
    pd_runtime *rt = pd_test_rt();
    int fds = pd_test_fd_count();
    struct rlimit old, lim;

    pd_make_tree(root, sizeof(root), 6, 2);
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    lim = old;
    /* Room for at most three more descriptors (fewer if the table has holes). */
    lim.rlim_cur = (rlim_t)pd_lowest_free_fd() + 3;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
    ck_assert_int_eq(walk_tree_block_on(rt, root, 8, &out), 0);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    ck_assert_int_eq(out, -EMFILE);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_rm_tree(root);
    pd_runtime_free(rt);
}
END_TEST

/* --- the harness: read_dir and walk_tree at every suspension point --- */

struct rd_ctx {
    char dir[128];
    int dfd;
    struct dirent ents[4];
};

static void rd_setup(void *v)
{
    struct rd_ctx *c = v;

    pd_make_dir(c->dir, sizeof(c->dir), 5);
    c->dfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(c->dfd, 0);
}

static void rd_init(void *self, void *v)
{
    struct rd_ctx *c = v;

    read_dir_init(self, c->dfd, c->ents, 4);
}

static void rd_after(void *v, const void *out)
{
    (void)v;
    if (out)
        ck_assert_int_eq(*(const int *)out, 4);
}

static void rd_cleanup(void *v)
{
    struct rd_ctx *c = v;

    close(c->dfd);
    pd_rm_tree(c->dir);
}

struct wt_ctx {
    char root[128];
};

static void wt_setup(void *v)
{
    struct wt_ctx *c = v;

    pd_make_tree(c->root, sizeof(c->root), 3, 3);
}

static void wt_init(void *self, void *v)
{
    struct wt_ctx *c = v;

    walk_tree_init(self, c->root, 2);
}

static void wt_after(void *v, const void *out)
{
    (void)v;
    if (out)
        ck_assert_int_eq(*(const long *)out, 9);
}

static void wt_cleanup(void *v)
{
    struct wt_ctx *c = v;

    pd_rm_tree(c->root);
}

static struct rd_ctx rd_c;
static struct wt_ctx wt_c;

static const struct {
    pd_harness_case c;
    int min_points;
} dir_cases[] = {
    { { "read_dir", &read_dir_vtable, 0, &rd_c, rd_setup, rd_init, NULL, rd_after,
        rd_cleanup }, 1 },
    { { "walk_tree", &walk_tree_vtable, 1, &wt_c, wt_setup, wt_init, NULL, wt_after,
        wt_cleanup }, 20 },
};

START_TEST(dir_cancel_points)
{
    pd_harness_stats st;

    pd_harness_run(&dir_cases[_i].c, &st);
    ck_assert_int_ge(st.points, dir_cases[_i].min_points);
}
END_TEST

Suite *pd_suite_read_dir(void)
{
    Suite *s = suite_create("spec read_dir");
    TCase *tc = tcase_create("read_dir");
    TCase *h = tcase_create("cancel points");

    tcase_add_test(tc, read_dir_gives_every_entry_once);
    tcase_add_test(tc, read_dir_huge_directory);
    tcase_add_test(tc, read_dir_names_of_255_bytes);
    tcase_add_test(tc, read_dir_directory_removed_mid_walk);
    tcase_add_test(tc, read_dir_refuses_what_is_not_a_directory);
    tcase_add_test(tc, walk_tree_counts_the_files);
    tcase_add_test(tc, walk_tree_too_deep_closes_every_level);
    tcase_add_test(tc, walk_tree_emfile_closes_what_it_opened);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tcase_add_loop_test(h, dir_cancel_points, 0, (int)(sizeof(dir_cases) / sizeof(dir_cases[0])));
    tcase_set_timeout(h, 120);
    tcase_set_tags(h, "harness");
    suite_add_tcase(s, h);
    return s;
}

/* --- sigset_wait --- */

static volatile sig_atomic_t pd_handled[NSIG];

static void pd_count(int sig)
{
    pd_handled[sig]++;
}

/* Counts sig's deliveries from now on; returns the action it replaced. */
static struct sigaction pd_catch(int sig)
{
    struct sigaction sa, old;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = pd_count;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(sig, &sa, &old), 0);
    pd_handled[sig] = 0;
    return old;
}

static int pd_blocked(int sig)
{
    sigset_t cur;

    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, sig) == 1;
}

static sigset_t pd_set(int a, int b)
{
    sigset_t s;

    sigemptyset(&s);
    sigaddset(&s, a);
    if (b > 0)
        sigaddset(&s, b);
    return s;
}

/* Runs one turn: the future blocked its signals and waits on its signalfd. */
static void pd_started(pd_runtime *rt)
{
    ck_assert_int_ge(pd_run_once(rt, 0), 1);
}

START_TEST(sigset_wait_returns_the_signal_and_unblocks)
{
    pd_runtime *rt = pd_test_rt();
    int fds = pd_test_fd_count();
    pd_task *t;

    pd_catch(SIGUSR1);
    ck_assert(!pd_blocked(SIGUSR1));
    t = sigset_wait_spawn(rt, pd_set(SIGUSR1, 0));
    ck_assert_ptr_nonnull(t);
    pd_started(rt);
    ck_assert(pd_blocked(SIGUSR1));
    kill(getpid(), SIGUSR1);
    ck_assert_int_eq(pd_run(rt), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_DONE);
    ck_assert_int_eq(*(const int *)pd_task_output(t), SIGUSR1);
    /* Read by the future, not delivered; unblocked again; signalfd closed. */
    ck_assert_int_eq(pd_handled[SIGUSR1], 0);
    ck_assert(!pd_blocked(SIGUSR1));
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_task_release(t);
    pd_runtime_free(rt);
}
END_TEST

/* A signal of the set that was blocked before stays blocked after. */
START_TEST(sigset_wait_keeps_what_was_blocked_before)
{
    pd_runtime *rt = pd_test_rt();
    sigset_t two = pd_set(SIGUSR2, 0);
    int out = 0;
    pd_task *t;

    pd_catch(SIGUSR1);
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &two, NULL), 0);
    t = sigset_wait_spawn(rt, pd_set(SIGUSR1, SIGUSR2));
    ck_assert_ptr_nonnull(t);
    pd_started(rt);
    kill(getpid(), SIGUSR2);
    ck_assert_int_eq(pd_task_wait(t), 0);
    out = *(const int *)pd_task_output(t);
    ck_assert_int_eq(out, SIGUSR2);
    ck_assert(!pd_blocked(SIGUSR1));
    ck_assert(pd_blocked(SIGUSR2));
    pd_task_release(t);
    pd_runtime_free(rt);
}
END_TEST

/*
 * Two signals arrive; the future reads one. The other, unblocked by the
 * drop, is delivered to the program's handler as if the future never was.
 */
START_TEST(sigset_wait_unread_signal_is_delivered_after_the_drop)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *t;
    int got;

    pd_catch(SIGUSR1);
    pd_catch(SIGUSR2);
    t = sigset_wait_spawn(rt, pd_set(SIGUSR1, SIGUSR2));
    ck_assert_ptr_nonnull(t);
    pd_started(rt);
    kill(getpid(), SIGUSR1);
    kill(getpid(), SIGUSR2);
    ck_assert_int_eq(pd_task_wait(t), 0);
    got = *(const int *)pd_task_output(t);
    ck_assert(got == SIGUSR1 || got == SIGUSR2);
    ck_assert_int_eq(pd_handled[got], 0);
    ck_assert_int_eq(pd_handled[got == SIGUSR1 ? SIGUSR2 : SIGUSR1], 1);
    pd_task_release(t);
    pd_runtime_free(rt);
}
END_TEST

/*
 * Cancelled after its read took the signal and completed, before the future
 * saw the completion: the drop raises the signal again, and its unblock
 * delivers it to the handler. No signal is lost.
 */
START_TEST(sigset_wait_taken_but_unseen_is_raised_again)
{
    pd_runtime *rt = pd_test_rt();
    pd_task *t;

    pd_catch(SIGUSR1);
    t = sigset_wait_spawn(rt, pd_set(SIGUSR1, 0));
    ck_assert_ptr_nonnull(t);
    pd_started(rt);
    kill(getpid(), SIGUSR1);
    /*
     * A turn driven by halves, that waits, reaps the read's completion: the
     * task is woken, not polled (a whole turn would poll it in place).
     */
    ck_assert_int_eq(pd__run_polls(rt), 0);
    ck_assert_int_eq(pd__run_enter(rt, 1), 0);
    ck_assert(pd__task_queued(t));
    pd_task_cancel(t);
    ck_assert_int_eq(pd_task_wait(t), 0);
    ck_assert_int_eq(pd_task_state(t), PD_TASK_CANCELLED);
    ck_assert_int_eq(pd_handled[SIGUSR1], 1);
    ck_assert(!pd_blocked(SIGUSR1));
    pd_task_release(t);
    pd_runtime_free(rt);
}
END_TEST

/* Out of descriptors for its signalfd: -EMFILE, and nothing stays blocked. */
START_TEST(sigset_wait_emfile_unblocks)
{
    pd_runtime *rt = pd_test_rt();
    struct rlimit old, lim;
    sigset_wait f;
    int out = 0;

    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)pd_lowest_free_fd(); /* room for none */
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
    sigset_wait_init(&f, pd_set(SIGUSR1, 0));
    ck_assert_int_eq(pd_block_on(rt, sigset_wait_dyn(&f), &out), 0);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    ck_assert_int_eq(out, -EMFILE);
    ck_assert(!pd_blocked(SIGUSR1));
    pd_runtime_free(rt);
}
END_TEST

/* A select with a signal branch: the signal wins over a read that waits. */
START_TEST(sig_select_signal_branch_wins)
{
    pd_runtime *rt = pd_test_rt();
    int p[2], fds;
    pd_task *t;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    fds = pd_test_fd_count();
    pd_catch(SIGTERM);
    t = sig_select_spawn(rt, p[0], pd_set(SIGTERM, 0));
    ck_assert_ptr_nonnull(t);
    pd_started(rt);
    ck_assert(pd_blocked(SIGTERM));
    kill(getpid(), SIGTERM);
    ck_assert_int_eq(pd_task_wait(t), 0);
    ck_assert_int_eq(*(const int *)pd_task_output(t), 1000 + SIGTERM);
    ck_assert_int_eq(pd_handled[SIGTERM], 0);
    ck_assert(!pd_blocked(SIGTERM));
    /* The read lost and took nothing. */
    pd_test_nothing_taken(p[0], p[1]);
    ck_assert_int_eq(pd_test_fd_count(), fds);
    pd_task_release(t);
    pd_runtime_free(rt);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* The read wins: the signal branch is dropped, and unblocks what it blocked. */
START_TEST(sig_select_data_wins_and_the_signal_is_unblocked)
{
    pd_runtime *rt = pd_test_rt();
    int p[2];
    pd_task *t;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    t = sig_select_spawn(rt, p[0], pd_set(SIGTERM, 0));
    ck_assert_ptr_nonnull(t);
    pd_started(rt);
    ck_assert(pd_blocked(SIGTERM));
    pd_test_write(p[1], "z", 1);
    ck_assert_int_eq(pd_task_wait(t), 0);
    ck_assert_int_eq(*(const int *)pd_task_output(t), 'z');
    ck_assert(!pd_blocked(SIGTERM));
    pd_task_release(t);
    pd_runtime_free(rt);
    close(p[0]);
    close(p[1]);
}
END_TEST

/*
 * The harness: SIGUSR1 raised after the first suspension. Whatever the
 * path, SIGUSR1 is not left blocked, and the signal went to the future (its
 * output) or, once the drop unblocked it, to the handler, never to both.
 * (Whether it was lost is not known here: a future that returned and was
 * then destroyed by a path that cancels it reports no output. The test
 * sigset_wait_taken_but_unseen_is_raised_again checks that.)
 */
struct sw_ctx {
    int raised;
    struct sigaction old;
};

static void sw_setup(void *v)
{
    struct sw_ctx *c = v;

    c->raised = 0;
    c->old = pd_catch(SIGUSR1);
}

static void sw_init(void *self, void *v)
{
    (void)v;
    sigset_wait_init(self, pd_set(SIGUSR1, 0));
}

static void sw_progress(void *v, int when)
{
    struct sw_ctx *c = v;

    if (when == PD_HARNESS_RUN_SUSPENDED && !c->raised) {
        c->raised = 1;
        kill(getpid(), SIGUSR1);
    }
}

static void sw_after(void *v, const void *out)
{
    struct sw_ctx *c = v;
    sigset_t pending;

    ck_assert_msg(!pd_blocked(SIGUSR1), "SIGUSR1 left blocked");
    ck_assert_int_eq(sigpending(&pending), 0);
    ck_assert(!sigismember(&pending, SIGUSR1));
    ck_assert_int_le(pd_handled[SIGUSR1], c->raised);
    if (out) {
        ck_assert_int_eq(*(const int *)out, SIGUSR1);
        ck_assert_int_eq(pd_handled[SIGUSR1], 0);
    }
}

static void sw_cleanup(void *v)
{
    struct sw_ctx *c = v;

    sigaction(SIGUSR1, &c->old, NULL);
}

static struct sw_ctx sw_c;

START_TEST(sigset_wait_cancel_points)
{
    const pd_harness_case c = {
        .future = "sigset_wait", .vt = &sigset_wait_vtable, .has_teardown = 1,
        .ctx = &sw_c, .setup = sw_setup, .init = sw_init, .progress = sw_progress,
        .after = sw_after, .cleanup = sw_cleanup,
    };
    pd_harness_stats st;

    pd_harness_run(&c, &st);
    ck_assert_int_ge(st.points, 1);
    ck_assert_int_gt(st.in_flight, 0);
}
END_TEST

Suite *pd_suite_sigset_wait(void)
{
    Suite *s = suite_create("spec sigset_wait");
    TCase *tc = tcase_create("sigset_wait"), *h;

    tcase_add_test(tc, sigset_wait_returns_the_signal_and_unblocks);
    tcase_add_test(tc, sigset_wait_keeps_what_was_blocked_before);
    tcase_add_test(tc, sigset_wait_unread_signal_is_delivered_after_the_drop);
    tcase_add_test(tc, sigset_wait_taken_but_unseen_is_raised_again);
    tcase_add_test(tc, sigset_wait_emfile_unblocks);
    tcase_add_test(tc, sig_select_signal_branch_wins);
    tcase_add_test(tc, sig_select_data_wins_and_the_signal_is_unblocked);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    h = tcase_create("cancel points");
    tcase_add_test(h, sigset_wait_cancel_points);
    tcase_set_timeout(h, 120);
    tcase_set_tags(h, "harness");
    suite_add_tcase(s, h);
    return s;
}
