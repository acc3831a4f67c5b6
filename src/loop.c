/* src/loop.c: the libuv loop wrapper: run/stop, timers, deferred tasks,
 * thread-pool work, async wake-ups, signals and the loop-wide scratch
 * buffers. Streams and TLS live in conn.c and tls.c; this file knows
 * nothing about them beyond the tracking list used at shutdown. */
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include <palaver/log.h>
#include <palaver/mem.h>

#include "loop.h"

#define LOOP_READ_BUF_SIZE (64 * 1024)
/* One TLS record carries at most 2^14 plaintext bytes (RFC 8446 §5.1). */
#define LOOP_PLAIN_BUF_SIZE (16 * 1024)
/* Pooled defer nodes kept for reuse; more than this are freed. */
#define LOOP_DEFER_POOL_MAX 64

struct pv_loop_s {
    uv_loop_t uv;
    uv_async_t stop_async;  /* keeps the loop alive; makes stop MT-safe */
    uv_check_t defer_check; /* runs deferred tasks after the poll */
    uv_idle_t defer_idle;   /* zero poll timeout while tasks wait */
    pv_defer_t defers;      /* sentinel of the queued tasks */
    pv_defer_t *pool;       /* free pooled nodes, linked by next */
    size_t n_pool;
    pv_loop_obj_t objs; /* sentinel of tracked objects */
    char *read_buf;
    char *plain_buf;
    int is_running;
};

struct pv_timer_s {
    pv_loop_obj_t obj;
    pv_loop_t *loop;
    uv_timer_t uv;
    void (*cb)(void *arg);
    void *arg;
    uint64_t repeat_ms;
    unsigned in_cb : 1;
    unsigned rearmed : 1;
    unsigned cancelled : 1;
};

struct pv_async_s {
    pv_loop_obj_t obj;
    pv_loop_t *loop;
    uv_async_t uv;
    void (*cb)(void *arg);
    void *arg;
};

struct pv_signal_s {
    pv_loop_obj_t obj;
    pv_loop_t *loop;
    uv_signal_t uv;
    void (*cb)(void *arg, int signum);
    void *arg;
};

typedef struct loop_work_s {
    pv_loop_obj_t obj;
    pv_loop_t *loop;
    uv_work_t req;
    void (*work)(void *arg);
    void (*done)(void *arg, int cancelled);
    void *arg;
} loop_work_t;

/* ---- tracking ---- */

void
pv_loop_track(pv_loop_t *loop, pv_loop_obj_t *obj,
              void (*shutdown)(pv_loop_obj_t *obj))
{
    obj->shutdown = shutdown;
    obj->next = loop->objs.next;
    obj->prev = &loop->objs;
    loop->objs.next->prev = obj;
    loop->objs.next = obj;
}

void
pv_loop_untrack(pv_loop_t *loop, pv_loop_obj_t *obj)
{
    (void)loop;
    if (obj->next == NULL)
        return;
    obj->prev->next = obj->next;
    obj->next->prev = obj->prev;
    obj->prev = obj->next = NULL;
}

/* ---- deferred tasks ---- */

static void
defer_unlink(pv_defer_t *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = NULL;
}

static void
defer_idle_cb(uv_idle_t *h)
{
    (void)h; /* exists only so that the poll does not block */
}

static void
defer_check_cb(uv_check_t *h)
{
    pv_loop_t *loop = h->data;
    pv_defer_t batch;

    /* Take the current batch: tasks queued while it runs go to the
     * loop's (now empty) list and wait for the next iteration. */
    if (loop->defers.next == &loop->defers) {
        uv_idle_stop(&loop->defer_idle);
        return;
    }
    batch.next = loop->defers.next;
    batch.prev = loop->defers.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    loop->defers.next = loop->defers.prev = &loop->defers;

    while (batch.next != &batch) {
        pv_defer_t *node = batch.next;
        void (*cb)(void *) = node->cb;
        void *arg = node->arg;

        defer_unlink(node);
        if (node->is_pooled) {
            if (loop->n_pool < LOOP_DEFER_POOL_MAX) {
                node->next = loop->pool;
                loop->pool = node;
                loop->n_pool++;
            } else {
                free(node);
            }
        }
        cb(arg);
    }
    if (loop->defers.next == &loop->defers)
        uv_idle_stop(&loop->defer_idle);
}

void
pv_loop_defer_node(pv_loop_t *loop, pv_defer_t *node, void (*cb)(void *arg),
                   void *arg)
{
    if (node->next != NULL)
        return;
    node->cb = cb;
    node->arg = arg;
    node->next = &loop->defers;
    node->prev = loop->defers.prev;
    loop->defers.prev->next = node;
    loop->defers.prev = node;
    if (!uv_is_active((uv_handle_t *)&loop->defer_idle))
        uv_idle_start(&loop->defer_idle, defer_idle_cb);
}

void
pv_loop_defer_cancel(pv_loop_t *loop, pv_defer_t *node)
{
    (void)loop;
    if (node->next != NULL)
        defer_unlink(node);
}

void
pv_loop_defer(pv_loop_t *loop, void (*cb)(void *arg), void *arg)
{
    pv_defer_t *node = loop->pool;

    if (node != NULL) {
        loop->pool = node->next;
        loop->n_pool--;
        node->next = NULL;
    } else {
        node = pv_xcalloc(1, sizeof(*node));
    }
    node->is_pooled = 1;
    pv_loop_defer_node(loop, node, cb, arg);
}

/* ---- loop ---- */

static void
loop_stop_cb(uv_async_t *h)
{
    uv_stop(h->loop);
}

pv_loop_t *
pv_loop_new(void)
{
    pv_loop_t *loop = pv_xcalloc(1, sizeof(*loop));
    int rc;

    rc = uv_loop_init(&loop->uv);
    if (rc != 0) {
        pv_log(PV_LOG_ERROR, NULL, "cannot create event loop: %s",
               uv_strerror(rc));
        free(loop);
        return NULL;
    }
    loop->uv.data = loop;
    loop->defers.next = loop->defers.prev = &loop->defers;
    loop->objs.next = loop->objs.prev = &loop->objs;
    uv_async_init(&loop->uv, &loop->stop_async, loop_stop_cb);
    uv_check_init(&loop->uv, &loop->defer_check);
    loop->defer_check.data = loop;
    uv_check_start(&loop->defer_check, defer_check_cb);
    /* The check handle alone must not keep the loop alive. */
    uv_unref((uv_handle_t *)&loop->defer_check);
    uv_idle_init(&loop->uv, &loop->defer_idle);
    return loop;
}

int
pv_loop_run(pv_loop_t *loop)
{
    if (loop->is_running)
        return PV_ERROR;
    loop->is_running = 1;
    uv_run(&loop->uv, UV_RUN_DEFAULT);
    loop->is_running = 0;
    return PV_OK;
}

void
pv_loop_stop(pv_loop_t *loop)
{
    uv_async_send(&loop->stop_async);
}

uint64_t
pv_loop_now_ms(const pv_loop_t *loop)
{
    return uv_now(&loop->uv);
}

struct uv_loop_s *
pv_loop_uv(pv_loop_t *loop)
{
    return &loop->uv;
}

char *
pv_loop_read_buf(pv_loop_t *loop, size_t *len)
{
    if (loop->read_buf == NULL)
        loop->read_buf = pv_xmalloc(LOOP_READ_BUF_SIZE);
    *len = LOOP_READ_BUF_SIZE;
    return loop->read_buf;
}

char *
pv_loop_plain_buf(pv_loop_t *loop, size_t *len)
{
    if (loop->plain_buf == NULL)
        loop->plain_buf = pv_xmalloc(LOOP_PLAIN_BUF_SIZE);
    *len = LOOP_PLAIN_BUF_SIZE;
    return loop->plain_buf;
}

void
pv_loop_free(pv_loop_t *loop)
{
    pv_defer_t *node;

    if (loop == NULL)
        return;
    /* Shut down what is still attached; each object untracks itself
     * when its handles have closed, so iterate until the list drains.
     * Objects already shutting down are asked again; their shutdown
     * functions are idempotent. */
    while (loop->objs.next != &loop->objs ||
           loop->defers.next != &loop->defers) {
        pv_loop_obj_t *obj = loop->objs.next;

        while (obj != &loop->objs) {
            pv_loop_obj_t *next = obj->next;

            obj->shutdown(obj);
            obj = next;
        }
        uv_run(&loop->uv, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&loop->stop_async, NULL);
    uv_close((uv_handle_t *)&loop->defer_check, NULL);
    uv_close((uv_handle_t *)&loop->defer_idle, NULL);
    uv_run(&loop->uv, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop->uv) != 0)
        pv_log(PV_LOG_WARN, NULL, "event loop closed with live handles");
    while ((node = loop->pool) != NULL) {
        loop->pool = node->next;
        free(node);
    }
    free(loop->read_buf);
    free(loop->plain_buf);
    free(loop);
}

/* ---- timers ---- */

static void
timer_closed_cb(uv_handle_t *h)
{
    pv_timer_t *t = h->data;

    pv_loop_untrack(t->loop, &t->obj);
    free(t);
}

static void
timer_close(pv_timer_t *t)
{
    t->cancelled = 1;
    if (!uv_is_closing((uv_handle_t *)&t->uv))
        uv_close((uv_handle_t *)&t->uv, timer_closed_cb);
}

static void
timer_shutdown(pv_loop_obj_t *obj)
{
    timer_close((pv_timer_t *)obj);
}

static void
timer_cb(uv_timer_t *h)
{
    pv_timer_t *t = h->data;

    t->in_cb = 1;
    t->rearmed = 0;
    t->cb(t->arg);
    t->in_cb = 0;
    /* The memory stays valid until the close callback, which runs later
     * in this iteration, so t may be inspected even after a cancel. */
    if (!t->cancelled && t->repeat_ms == 0 && !t->rearmed)
        timer_close(t);
}

pv_timer_t *
pv_timer_add(pv_loop_t *loop, uint64_t after_ms, uint64_t repeat_ms,
             void (*cb)(void *arg), void *arg)
{
    pv_timer_t *t = pv_xcalloc(1, sizeof(*t));

    t->loop = loop;
    t->cb = cb;
    t->arg = arg;
    t->repeat_ms = repeat_ms;
    uv_timer_init(&loop->uv, &t->uv);
    t->uv.data = t;
    uv_timer_start(&t->uv, timer_cb, after_ms, repeat_ms);
    pv_loop_track(loop, &t->obj, timer_shutdown);
    return t;
}

void
pv_timer_cancel(pv_timer_t *t)
{
    if (t != NULL)
        timer_close(t);
}

void
pv_timer_again(pv_timer_t *t, uint64_t after_ms)
{
    if (t->cancelled)
        return;
    if (t->in_cb)
        t->rearmed = 1;
    uv_timer_start(&t->uv, timer_cb, after_ms, t->repeat_ms);
}

/* ---- async ---- */

static void
async_closed_cb(uv_handle_t *h)
{
    pv_async_t *a = h->data;

    pv_loop_untrack(a->loop, &a->obj);
    free(a);
}

static void
async_shutdown(pv_loop_obj_t *obj)
{
    pv_async_free((pv_async_t *)obj);
}

static void
async_cb(uv_async_t *h)
{
    pv_async_t *a = h->data;

    a->cb(a->arg);
}

pv_async_t *
pv_async_new(pv_loop_t *loop, void (*cb)(void *arg), void *arg)
{
    pv_async_t *a = pv_xcalloc(1, sizeof(*a));
    int rc;

    a->loop = loop;
    a->cb = cb;
    a->arg = arg;
    rc = uv_async_init(&loop->uv, &a->uv, async_cb);
    if (rc != 0) {
        pv_log(PV_LOG_ERROR, NULL, "cannot create async handle: %s",
               uv_strerror(rc));
        free(a);
        return NULL;
    }
    a->uv.data = a;
    pv_loop_track(loop, &a->obj, async_shutdown);
    return a;
}

void
pv_async_send(pv_async_t *a)
{
    uv_async_send(&a->uv);
}

void
pv_async_free(pv_async_t *a)
{
    if (a != NULL && !uv_is_closing((uv_handle_t *)&a->uv))
        uv_close((uv_handle_t *)&a->uv, async_closed_cb);
}

/* ---- signals ---- */

static void
signal_closed_cb(uv_handle_t *h)
{
    pv_signal_t *s = h->data;

    pv_loop_untrack(s->loop, &s->obj);
    free(s);
}

static void
signal_shutdown(pv_loop_obj_t *obj)
{
    pv_signal_free((pv_signal_t *)obj);
}

static void
signal_cb(uv_signal_t *h, int signum)
{
    pv_signal_t *s = h->data;

    s->cb(s->arg, signum);
}

pv_signal_t *
pv_loop_signal(pv_loop_t *loop, int signum, void (*cb)(void *arg, int signum),
               void *arg)
{
    pv_signal_t *s = pv_xcalloc(1, sizeof(*s));
    int rc;

    s->loop = loop;
    s->cb = cb;
    s->arg = arg;
    uv_signal_init(&loop->uv, &s->uv);
    s->uv.data = s;
    pv_loop_track(loop, &s->obj, signal_shutdown);
    rc = uv_signal_start(&s->uv, signal_cb, signum);
    if (rc != 0) {
        pv_log(PV_LOG_ERROR, NULL, "cannot watch signal %d: %s", signum,
               uv_strerror(rc));
        pv_signal_free(s);
        return NULL;
    }
    return s;
}

void
pv_signal_free(pv_signal_t *s)
{
    if (s != NULL && !uv_is_closing((uv_handle_t *)&s->uv))
        uv_close((uv_handle_t *)&s->uv, signal_closed_cb);
}

/* ---- thread-pool work ---- */

static void
work_run_cb(uv_work_t *req)
{
    loop_work_t *w = req->data;

    w->work(w->arg);
}

static void
work_done_cb(uv_work_t *req, int status)
{
    loop_work_t *w = req->data;

    pv_loop_untrack(w->loop, &w->obj);
    w->done(w->arg, status == UV_ECANCELED);
    free(w);
}

static void
work_shutdown(pv_loop_obj_t *obj)
{
    loop_work_t *w = (loop_work_t *)obj;

    /* Fails harmlessly for work already running; it is waited for. */
    uv_cancel((uv_req_t *)&w->req);
}

int
pv_loop_work(pv_loop_t *loop, void (*work)(void *arg),
             void (*done)(void *arg, int cancelled), void *arg)
{
    loop_work_t *w = pv_xcalloc(1, sizeof(*w));
    int rc;

    w->loop = loop;
    w->work = work;
    w->done = done;
    w->arg = arg;
    w->req.data = w;
    rc = uv_queue_work(&loop->uv, &w->req, work_run_cb, work_done_cb);
    if (rc != 0) {
        pv_log(PV_LOG_ERROR, NULL, "cannot queue work: %s", uv_strerror(rc));
        free(w);
        return PV_ERROR;
    }
    pv_loop_track(loop, &w->obj, work_shutdown);
    return PV_OK;
}
