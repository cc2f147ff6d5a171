/*
 * uv_dcopy: the directory copy of examples/dcopy written in libuv, the
 * way its users write it, to compare the two programs' length.
 *
 *   build/uv_dcopy [-t DEADLINE_MS] SRC DST
 *
 * Copies the tree SRC to DST (which must not exist): directories are
 * created, regular files copied, at most 8 at once, anything else skipped.
 * One deadline covers the whole job. On the deadline, on SIGINT or on the
 * first error, the copies still running stop and their half-written files
 * are removed; the files already copied stay. Exit status: 0 when all was
 * copied, 1 on an error, 2 on the deadline or SIGINT.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#define MAX_ACTIVE 8
#define CHUNK 65536

/* One file to copy, from the queue until its last close. */
struct job {
    uv_fs_t req;
    struct job *next;
    char *src, *dst;
    uv_file in, out;
    int64_t off;
    ssize_t len, done; /* the chunk in buf and how much of it is written */
    char buf[CHUNK];
};

/* One directory being listed. */
struct dir {
    uv_fs_t req;
    char *src, *dst;
};

static uv_loop_t *loop;
static uv_timer_t deadline;
static uv_signal_t sigint;
static struct job *queue_head, **queue_tail = &queue_head;
static struct job *active[MAX_ACTIVE];
static int n_active, dirs_pending, status;

static void start_more(void);
static void on_read(uv_fs_t *req);

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);

    if (p == NULL) {
        fputs("uv_dcopy: out of memory\n", stderr);
        exit(1);
    }
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

/* The job is finished, by success or not: the loop may exit once nothing is left. */
static void finish_check(void)
{
    if (n_active == 0 && dirs_pending == 0 && queue_head == NULL) {
        uv_close((uv_handle_t *)&deadline, NULL);
        uv_close((uv_handle_t *)&sigint, NULL);
    }
}

/* Stops the whole job with exit status code: queued copies are dropped, running ones stop at their next callback. */
static void stop(int code)
{
    if (status != 0)
        return;
    status = code;
    while (queue_head != NULL) {
        struct job *j = queue_head;

        queue_head = j->next;
        free(j->src);
        free(j->dst);
        free(j);
    }
    queue_tail = &queue_head;
    for (int i = 0; i < MAX_ACTIVE; i++)
        if (active[i] != NULL)
            uv_cancel((uv_req_t *)&active[i]->req);
    finish_check();
}

/*
 * Ends a running job: closes its files (synchronously, as they are local
 * and close does not block) and, unless it completed, removes the
 * half-written destination.
 */
static void job_end(struct job *j, int err)
{
    uv_fs_t r;

    if (err < 0 && err != UV_ECANCELED) {
        fprintf(stderr, "uv_dcopy: %s: %s\n", j->src, uv_strerror(err));
        stop(1);
    }
    if (j->in >= 0) {
        uv_fs_close(NULL, &r, j->in, NULL);
        uv_fs_req_cleanup(&r);
    }
    if (j->out >= 0) {
        uv_fs_close(NULL, &r, j->out, NULL);
        uv_fs_req_cleanup(&r);
        if (err < 0) {
            uv_fs_unlink(NULL, &r, j->dst, NULL);
            uv_fs_req_cleanup(&r);
        }
    }
    for (int i = 0; i < MAX_ACTIVE; i++)
        if (active[i] == j)
            active[i] = NULL;
    n_active--;
    free(j->src);
    free(j->dst);
    free(j);
    start_more();
    finish_check();
}

/*
 * Takes the result of the request just completed, storing an opened fd in
 * *fd first so that a job stopped meanwhile closes it; 0 means go on, else
 * the job has ended.
 */
static int job_result(struct job *j, ssize_t *res, uv_file *fd)
{
    *res = j->req.result;
    uv_fs_req_cleanup(&j->req);
    if (fd != NULL && *res >= 0)
        *fd = (uv_file)*res;
    if (*res < 0 || status != 0) {
        job_end(j, *res < 0 ? (int)*res : UV_ECANCELED);
        return -1;
    }
    return 0;
}

static void on_write(uv_fs_t *req)
{
    struct job *j = req->data;
    ssize_t res;
    uv_buf_t b;

    if (job_result(j, &res, NULL) < 0)
        return;
    j->done += res;
    j->off += res;
    if (j->done < j->len) {
        b = uv_buf_init(j->buf + j->done, (unsigned)(j->len - j->done));
        uv_fs_write(loop, &j->req, j->out, &b, 1, j->off, on_write);
        return;
    }
    b = uv_buf_init(j->buf, CHUNK);
    uv_fs_read(loop, &j->req, j->in, &b, 1, j->off, on_read);
}

static void on_read(uv_fs_t *req)
{
    struct job *j = req->data;
    ssize_t res;
    uv_buf_t b;

    if (job_result(j, &res, NULL) < 0)
        return;
    if (res == 0) {
        job_end(j, 0);
        return;
    }
    j->len = res;
    j->done = 0;
    b = uv_buf_init(j->buf, (unsigned)res);
    uv_fs_write(loop, &j->req, j->out, &b, 1, j->off, on_write);
}

static void on_open_out(uv_fs_t *req)
{
    struct job *j = req->data;
    ssize_t res;
    uv_buf_t b;

    if (job_result(j, &res, &j->out) < 0)
        return;
    b = uv_buf_init(j->buf, CHUNK);
    uv_fs_read(loop, &j->req, j->in, &b, 1, 0, on_read);
}

static void on_open_in(uv_fs_t *req)
{
    struct job *j = req->data;
    ssize_t res;

    if (job_result(j, &res, &j->in) < 0)
        return;
    uv_fs_open(loop, &j->req, j->dst, O_WRONLY | O_CREAT | O_EXCL, 0644, on_open_out);
}

/* Starts queued copies while fewer than MAX_ACTIVE run. */
static void start_more(void)
{
    while (status == 0 && n_active < MAX_ACTIVE && queue_head != NULL) {
        struct job *j = queue_head;
        int i = 0;

        queue_head = j->next;
        if (queue_head == NULL)
            queue_tail = &queue_head;
        while (active[i] != NULL)
            i++;
        active[i] = j;
        n_active++;
        j->req.data = j;
        uv_fs_open(loop, &j->req, j->src, O_RDONLY, 0, on_open_in);
    }
}

static void enqueue(char *src, char *dst)
{
    struct job *j = calloc(1, sizeof(*j));

    if (j == NULL) {
        fputs("uv_dcopy: out of memory\n", stderr);
        exit(1);
    }
    j->src = src;
    j->dst = dst;
    j->in = j->out = -1;
    *queue_tail = j;
    queue_tail = &j->next;
    start_more();
}

static void walk(char *src, char *dst);

static void on_scandir(uv_fs_t *req)
{
    struct dir *d = req->data;
    uv_dirent_t ent;

    if (req->result < 0) {
        fprintf(stderr, "uv_dcopy: %s: %s\n", d->src, uv_strerror((int)req->result));
        stop(1);
    } else {
        while (status == 0 && uv_fs_scandir_next(req, &ent) != UV_EOF) {
            if (ent.type == UV_DIRENT_DIR)
                walk(join(d->src, ent.name), join(d->dst, ent.name));
            else if (ent.type == UV_DIRENT_FILE)
                enqueue(join(d->src, ent.name), join(d->dst, ent.name));
        }
    }
    uv_fs_req_cleanup(req);
    free(d->src);
    free(d->dst);
    free(d);
    dirs_pending--;
    finish_check();
}

static void on_mkdir(uv_fs_t *req)
{
    struct dir *d = req->data;
    int res = (int)req->result;

    uv_fs_req_cleanup(req);
    if (res < 0 || status != 0) {
        if (res < 0) {
            fprintf(stderr, "uv_dcopy: %s: %s\n", d->dst, uv_strerror(res));
            stop(1);
        }
        free(d->src);
        free(d->dst);
        free(d);
        dirs_pending--;
        finish_check();
        return;
    }
    uv_fs_scandir(loop, &d->req, d->src, 0, on_scandir);
}

/* Creates dst, then lists src; takes ownership of both paths. */
static void walk(char *src, char *dst)
{
    struct dir *d = malloc(sizeof(*d));

    if (d == NULL) {
        fputs("uv_dcopy: out of memory\n", stderr);
        exit(1);
    }
    d->src = src;
    d->dst = dst;
    d->req.data = d;
    dirs_pending++;
    uv_fs_mkdir(loop, &d->req, dst, 0755, on_mkdir);
}

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    fputs("uv_dcopy: deadline passed\n", stderr);
    stop(2);
}

static void on_sigint(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    stop(2);
}

int main(int argc, char **argv)
{
    long long deadline_ms = 0;
    int opt;

    while ((opt = getopt(argc, argv, "t:")) != -1) {
        if (opt != 't')
            goto usage;
        deadline_ms = atoll(optarg);
    }
    if (argc - optind != 2)
        goto usage;
    loop = uv_default_loop();
    uv_timer_init(loop, &deadline);
    if (deadline_ms > 0)
        uv_timer_start(&deadline, on_deadline, (uint64_t)deadline_ms, 0);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_sigint, SIGINT);
    walk(strdup(argv[optind]), strdup(argv[optind + 1]));
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return status;
usage:
    fputs("usage: uv_dcopy [-t DEADLINE_MS] SRC DST\n", stderr);
    return 1;
}
