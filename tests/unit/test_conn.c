/* tests/unit/test_conn.c: src/loop.c, src/conn.c and src/tls.c over real
 * sockets on 127.0.0.1 (port 0) and unix sockets, with certificates made
 * at test time in a temporary directory. Two CUnit suites: "loop"
 * (timers, deferred tasks, async, work) and "conn" (echo, TLS, SNI, ALPN,
 * channel binding, backpressure, closes, idle memory per TLS session). */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <palaver/mem.h>

#include "conn.h"
#include "loop.h"
#include "tls.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#endif
#ifdef TEST_ASAN
/* from the sanitizer runtime (sanitizer/allocator_interface.h, which
 * gcc does not install) */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#define WAIT_MS 60000 /* generous: valgrind runs are slow */

/* The suite's temporary directory and certificates (test fixture only). */
static char tmpdir[256];
static char cert_default[300], key_default[300];
static char cert_a[300], key_a[300];
static char cert_b[300], key_b[300];

/* ---- helpers ---- */

static int
make_cert(const char *cn, long serial, char *cert_path, char *key_path)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name;
    X509_EXTENSION *ext;
    char san[128];
    FILE *f;
    int ok = 0;

    if (pk == NULL || x == NULL)
        goto out;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    snprintf(san, sizeof(san), "DNS:%s", cn);
    ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (X509_sign(x, pk, EVP_sha256()) == 0)
        goto out;
    sprintf(cert_path, "%s/%s.pem", tmpdir, cn);
    sprintf(key_path, "%s/%s.key", tmpdir, cn);
    f = fopen(cert_path, "w");
    if (f == NULL)
        goto out;
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key_path, "w");
    if (f == NULL)
        goto out;
    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    ok = 1;
out:
    X509_free(x);
    EVP_PKEY_free(pk);
    return ok;
}

static int
suite_init(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/pv-test-conn-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return 1;
    if (!make_cert("default.example", 1, cert_default, key_default) ||
        !make_cert("a.example", 2, cert_a, key_a) ||
        !make_cert("b.example", 3, cert_b, key_b))
        return 1;
    return 0;
}

static int
suite_clean(void)
{
    const char *files[] = {cert_default, key_default, cert_a,
                           key_a,        cert_b,      key_b};
    size_t i;

    for (i = 0; i < PV_COUNTOF(files); i++)
        unlink(files[i]);
    rmdir(tmpdir);
    return 0;
}

typedef struct wait_s {
    pv_loop_t *loop;
    int (*pred)(void *arg);
    void *arg;
    uint64_t deadline;
    int ok;
} wait_t;

static void
wait_tick(void *arg)
{
    wait_t *w = arg;

    if (w->pred(w->arg)) {
        w->ok = 1;
        pv_loop_stop(w->loop);
    } else if (pv_loop_now_ms(w->loop) >= w->deadline) {
        pv_loop_stop(w->loop);
    }
}

/* Runs the loop until pred(arg) holds; 0 after WAIT_MS without. */
static int
run_until(pv_loop_t *loop, int (*pred)(void *), void *arg)
{
    wait_t w = {loop, pred, arg, pv_loop_now_ms(loop) + WAIT_MS, 0};
    pv_timer_t *t = pv_timer_add(loop, 1, 1, wait_tick, &w);

    pv_loop_run(loop);
    pv_timer_cancel(t);
    return w.ok;
}

static void
stop_cb(void *arg)
{
    pv_loop_stop(arg);
}

/* Runs the loop for ms milliseconds. */
static void
run_for(pv_loop_t *loop, uint64_t ms)
{
    pv_timer_t *t = pv_timer_add(loop, ms, 0, stop_cb, loop);

    (void)t; /* one-shot: frees itself */
    pv_loop_run(loop);
}

/* ---- the connection fixture ---- */

typedef struct peer_s {
    struct fix_s *f;
    pv_conn_t *c;
    pv_buf_t got;
    int echo;
    int on_data_action; /* 1 close, 2 abort, 3 reply and close */
    int pause_each;
    int n_tls_done;
    int tls_ok;
    char tls_err[256];
    int n_closed;
    int reason_null;
    char reason[256];
    int n_drained;
    int after_close_write_rc;
} peer_t;

typedef struct fix_s {
    pv_loop_t *loop;
    pv_listener_t *l;
    pv_tls_ctx_t *sctx;
    pv_tls_ctx_t *cctx;
    const char *sni;
    const char *alpn;
    const char *hello;
    peer_t srv;
    peer_t cli;
    int n_connect;
    char connect_err[128];
} fix_t;

static void
peer_resume_cb(void *arg)
{
    peer_t *p = arg;

    if (p->c != NULL)
        pv_conn_resume(p->c);
}

static void
h_data(pv_conn_t *c, const char *data, size_t len)
{
    peer_t *p = pv_conn_data(c);

    pv_buf_append(&p->got, data, len);
    if (p->echo) {
        CU_ASSERT_EQUAL(pv_conn_write(c, data, len), PV_OK);
    }
    switch (p->on_data_action) {
    case 1:
        pv_conn_close(c);
        p->after_close_write_rc = pv_conn_write(c, "x", 1);
        pv_conn_close(c);
        break;
    case 2:
        pv_conn_abort(c, "test abort");
        p->after_close_write_rc = pv_conn_write(c, "x", 1);
        pv_conn_close(c);
        pv_conn_abort(c, "again");
        break;
    case 3:
        CU_ASSERT_EQUAL(pv_conn_write(c, "bye", 3), PV_OK);
        pv_conn_close(c);
        p->after_close_write_rc = pv_conn_write(c, "x", 1);
        break;
    }
    if (p->pause_each) {
        pv_conn_pause(c);
        pv_loop_defer(p->f->loop, peer_resume_cb, p);
    }
}

static void
h_tls_done(pv_conn_t *c, int ok, const char *err)
{
    peer_t *p = pv_conn_data(c);

    p->n_tls_done++;
    p->tls_ok = ok;
    snprintf(p->tls_err, sizeof(p->tls_err), "%s", err ? err : "");
}

static void
h_close(pv_conn_t *c, const char *reason)
{
    peer_t *p = pv_conn_data(c);

    CU_ASSERT_PTR_EQUAL(c, p->c);
    p->n_closed++;
    p->reason_null = reason == NULL;
    snprintf(p->reason, sizeof(p->reason), "%s", reason ? reason : "");
    p->c = NULL;
}

static void
h_drained(pv_conn_t *c)
{
    peer_t *p = pv_conn_data(c);

    p->n_drained++;
}

static const pv_conn_handler_t handler = {h_data, h_tls_done, h_close,
                                          h_drained};

static void
fix_accept(void *arg, pv_conn_t *c)
{
    fix_t *f = arg;

    CU_ASSERT_PTR_NULL(f->srv.c);
    f->srv.c = c;
    pv_conn_set_handler(c, &handler, &f->srv);
    if (f->sctx != NULL) {
        CU_ASSERT_EQUAL(pv_conn_start_tls_server(c, f->sctx), PV_OK);
    }
}

static void
fix_connect(void *arg, pv_conn_t *c, const char *err)
{
    fix_t *f = arg;

    f->n_connect++;
    if (c == NULL) {
        snprintf(f->connect_err, sizeof(f->connect_err), "%s", err);
        return;
    }
    f->cli.c = c;
    pv_conn_set_handler(c, &handler, &f->cli);
    if (f->cctx != NULL) {
        CU_ASSERT_EQUAL(pv_conn_start_tls_client(c, f->cctx, f->sni, f->alpn),
                        PV_OK);
    }
    if (f->hello != NULL) {
        CU_ASSERT_EQUAL(pv_conn_write(c, f->hello, strlen(f->hello)), PV_OK);
    }
}

static void
fix_init(fix_t *f)
{
    char err[256];

    memset(f, 0, sizeof(*f));
    f->srv.f = f->cli.f = f;
    f->srv.echo = 1;
    f->loop = pv_loop_new();
    f->l = pv_listen_tcp(f->loop, "127.0.0.1", 0, 16, fix_accept, f, err,
                         sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->l);
    CU_ASSERT(pv_listener_port(f->l) > 0);
}

static void
fix_connect_tcp(fix_t *f)
{
    CU_ASSERT_PTR_NOT_NULL(pv_conn_connect_tcp(
        f->loop, "127.0.0.1", pv_listener_port(f->l), fix_connect, f));
}

static void
fix_done(fix_t *f)
{
    pv_listener_close(f->l);
    pv_loop_free(f->loop);
    /* pv_loop_free() aborted what was left: every peer saw on_close */
    CU_ASSERT_PTR_NULL(f->srv.c);
    CU_ASSERT_PTR_NULL(f->cli.c);
    CU_ASSERT(f->srv.n_closed <= 1);
    CU_ASSERT(f->cli.n_closed <= 1);
    pv_buf_free(&f->srv.got);
    pv_buf_free(&f->cli.got);
    pv_tls_ctx_unref(f->sctx);
    pv_tls_ctx_unref(f->cctx);
}

static int
pred_both_connected(void *arg)
{
    fix_t *f = arg;

    return f->srv.c != NULL && f->cli.c != NULL;
}

static int
pred_cli_got_hello(void *arg)
{
    fix_t *f = arg;

    return f->cli.got.len >= strlen(f->hello);
}

static int
pred_both_closed(void *arg)
{
    fix_t *f = arg;

    return f->srv.n_closed > 0 && f->cli.n_closed > 0;
}

static int
pred_srv_closed(void *arg)
{
    fix_t *f = arg;

    return f->srv.n_closed > 0;
}

static int
pred_tls_done(void *arg)
{
    fix_t *f = arg;

    return f->srv.n_tls_done > 0 && f->cli.n_tls_done > 0;
}

static pv_tls_ctx_t *
server_ctx(const char *cert, const char *key)
{
    char err[256];
    pv_tls_ctx_t *ctx = pv_tls_ctx_new_server(cert, key, err, sizeof(err));

    if (ctx == NULL)
        fprintf(stderr, "%s\n", err);
    return ctx;
}

static pv_tls_ctx_t *
client_ctx(const char *ca)
{
    char err[256];
    pv_tls_ctx_t *ctx = pv_tls_ctx_new_client(ca, err, sizeof(err));

    if (ctx == NULL)
        fprintf(stderr, "%s\n", err);
    return ctx;
}

/* ---- loop tests ---- */

typedef struct tcount_s {
    pv_loop_t *loop;
    pv_timer_t *t;
    int n;
    int limit;
    int again;
} tcount_t;

static void
count_cb(void *arg)
{
    tcount_t *c = arg;

    c->n++;
}

static void
cancel_at_limit_cb(void *arg)
{
    tcount_t *c = arg;

    if (++c->n == c->limit) {
        pv_timer_cancel(c->t);
        c->t = NULL;
    }
}

static void
again_cb(void *arg)
{
    tcount_t *c = arg;

    c->n++;
    if (c->again-- > 0)
        pv_timer_again(c->t, 5);
    else
        c->t = NULL; /* one-shot: freed after this returns */
}

static void
oneshot_cancel_self_cb(void *arg)
{
    tcount_t *c = arg;

    c->n++;
    pv_timer_cancel(c->t);
    c->t = NULL;
}

static void
test_timers(void)
{
    pv_loop_t *loop = pv_loop_new();
    tcount_t once = {loop, NULL, 0, 0, 0};
    tcount_t rep = {loop, NULL, 0, 3, 0};
    tcount_t never = {loop, NULL, 0, 0, 0};
    tcount_t again = {loop, NULL, 0, 0, 2};
    tcount_t self = {loop, NULL, 0, 0, 0};
    tcount_t reset = {loop, NULL, 0, 0, 0};
    uint64_t t0 = pv_loop_now_ms(loop);

    once.t = pv_timer_add(loop, 5, 0, count_cb, &once);
    rep.t = pv_timer_add(loop, 2, 2, cancel_at_limit_cb, &rep);
    never.t = pv_timer_add(loop, 10, 0, count_cb, &never);
    pv_timer_cancel(never.t);
    again.t = pv_timer_add(loop, 5, 0, again_cb, &again);
    self.t = pv_timer_add(loop, 1, 0, oneshot_cancel_self_cb, &self);
    reset.t = pv_timer_add(loop, 20, 0, count_cb, &reset);
    pv_timer_again(reset.t, 120); /* pushes the deadline out */
    run_for(loop, 80);
    CU_ASSERT_EQUAL(once.n, 1);
    CU_ASSERT_EQUAL(rep.n, 3);
    CU_ASSERT_PTR_NULL(rep.t);
    CU_ASSERT_EQUAL(never.n, 0);
    CU_ASSERT_EQUAL(again.n, 3);
    CU_ASSERT_EQUAL(self.n, 1);
    CU_ASSERT_EQUAL(reset.n, 0);
    run_for(loop, 80);
    CU_ASSERT_EQUAL(reset.n, 1);
    CU_ASSERT(pv_loop_now_ms(loop) - t0 >= 150);
    /* a running repeat timer left to pv_loop_free() */
    pv_timer_add(loop, 1000, 1000, count_cb, &once);
    pv_loop_free(loop);
}

typedef struct dctx_s {
    pv_loop_t *loop;
    pv_defer_t node;
    char order[16];
    int n;
    uint64_t nested_iter_seen;
} dctx_t;

static void
defer_mark(dctx_t *d, char ch)
{
    if (d->n < (int)sizeof(d->order) - 1)
        d->order[d->n++] = ch;
}

static void
defer_b(void *arg)
{
    defer_mark(arg, 'b');
}

static void
defer_c(void *arg)
{
    defer_mark(arg, 'c');
}

static void
defer_nested(void *arg)
{
    dctx_t *d = arg;

    defer_mark(d, 'n');
}

static void
defer_a(void *arg)
{
    dctx_t *d = arg;

    defer_mark(d, 'a');
    /* queued from a deferred task: runs after this batch */
    pv_loop_defer(d->loop, defer_nested, d);
}

static void
test_defer(void)
{
    dctx_t d;
    pv_defer_t cancelled;

    memset(&d, 0, sizeof(d));
    memset(&cancelled, 0, sizeof(cancelled));
    d.loop = pv_loop_new();
    pv_loop_defer(d.loop, defer_a, &d);
    pv_loop_defer_node(d.loop, &d.node, defer_b, &d);
    pv_loop_defer_node(d.loop, &d.node, defer_c, &d); /* no-op */
    pv_loop_defer_node(d.loop, &cancelled, defer_c, &d);
    pv_loop_defer_cancel(d.loop, &cancelled);
    pv_loop_defer(d.loop, defer_c, &d);
    run_for(d.loop, 20);
    CU_ASSERT_STRING_EQUAL(d.order, "abcn");
    CU_ASSERT_PTR_NULL(d.node.next);
    /* the node can be queued again after it ran */
    pv_loop_defer_node(d.loop, &d.node, defer_b, &d);
    run_for(d.loop, 5);
    CU_ASSERT_STRING_EQUAL(d.order, "abcnb");
    pv_loop_free(d.loop);
}

typedef struct actx_s {
    pv_loop_t *loop;
    pv_async_t *a;
    atomic_int sent;
    int seen;
    int n_cb;
} actx_t;

static void
async_cb(void *arg)
{
    actx_t *a = arg;

    a->n_cb++;
    a->seen = atomic_load(&a->sent);
}

static void *
async_thread(void *arg)
{
    actx_t *a = arg;
    int i;

    for (i = 0; i < 1000; i++) {
        atomic_fetch_add(&a->sent, 1);
        pv_async_send(a->a);
    }
    return NULL;
}

static int
pred_async_all(void *arg)
{
    actx_t *a = arg;

    return a->seen == 1000;
}

static void
test_async(void)
{
    actx_t a;
    pthread_t th;

    memset(&a, 0, sizeof(a));
    a.loop = pv_loop_new();
    a.a = pv_async_new(a.loop, async_cb, &a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a.a);
    CU_ASSERT_EQUAL(pthread_create(&th, NULL, async_thread, &a), 0);
    CU_ASSERT(run_until(a.loop, pred_async_all, &a));
    pthread_join(th, NULL);
    /* sends coalesce: never more callbacks than sends */
    CU_ASSERT(a.n_cb >= 1 && a.n_cb <= 1000);
    pv_async_free(a.a);
    pv_loop_free(a.loop);
}

typedef struct wctx_s {
    pthread_t loop_thread;
    int n_done;
    int n_cancelled;
    int n_off_loop;
    int bad_done_thread;
    int results[8];
} wctx_t;

typedef struct witem_s {
    wctx_t *w;
    int i;
} witem_t;

static void
work_fn(void *arg)
{
    witem_t *it = arg;

    if (!pthread_equal(pthread_self(), it->w->loop_thread))
        __atomic_add_fetch(&it->w->n_off_loop, 1, __ATOMIC_SEQ_CST);
    it->w->results[it->i] = it->i * it->i;
}

static void
work_done(void *arg, int cancelled)
{
    witem_t *it = arg;

    if (!pthread_equal(pthread_self(), it->w->loop_thread))
        it->w->bad_done_thread = 1;
    if (cancelled)
        it->w->n_cancelled++;
    else
        it->w->n_done++;
}

static int
pred_work_done(void *arg)
{
    wctx_t *w = arg;

    return w->n_done == 8;
}

static void
test_work(void)
{
    pv_loop_t *loop = pv_loop_new();
    witem_t items[8];
    wctx_t w;
    int i;

    memset(&w, 0, sizeof(w));
    w.loop_thread = pthread_self();
    for (i = 0; i < 8; i++) {
        items[i].w = &w;
        items[i].i = i;
        CU_ASSERT_EQUAL(pv_loop_work(loop, work_fn, work_done, &items[i]),
                        PV_OK);
    }
    CU_ASSERT(run_until(loop, pred_work_done, &w));
    CU_ASSERT_EQUAL(w.n_off_loop, 8);
    CU_ASSERT_EQUAL(w.bad_done_thread, 0);
    CU_ASSERT_EQUAL(w.n_cancelled, 0);
    for (i = 0; i < 8; i++)
        CU_ASSERT_EQUAL(w.results[i], i * i);
    pv_loop_free(loop);
}

typedef struct sctx_s {
    pv_loop_t *loop;
    int got;
} sigctx_t;

static void
signal_cb(void *arg, int signum)
{
    sigctx_t *s = arg;

    s->got = signum;
}

static int
pred_signal(void *arg)
{
    sigctx_t *s = arg;

    return s->got != 0;
}

static void
test_signal(void)
{
    sigctx_t s = {pv_loop_new(), 0};
    pv_signal_t *sig = pv_loop_signal(s.loop, SIGUSR1, signal_cb, &s);

    CU_ASSERT_PTR_NOT_NULL_FATAL(sig);
    kill(getpid(), SIGUSR1);
    CU_ASSERT(run_until(s.loop, pred_signal, &s));
    CU_ASSERT_EQUAL(s.got, SIGUSR1);
    pv_signal_free(sig);
    pv_loop_free(s.loop);
}

/* ---- plain connections ---- */

static void
test_plain_echo(void)
{
    fix_t f;

    fix_init(&f);
    f.hello = "hello world";
    fix_connect_tcp(&f);
    CU_ASSERT_FATAL(run_until(f.loop, pred_cli_got_hello, &f));
    CU_ASSERT_EQUAL(f.cli.got.len, 11);
    CU_ASSERT_NSTRING_EQUAL(f.cli.got.data, "hello world", 11);
    CU_ASSERT_STRING_EQUAL(pv_conn_peer_ip(f.srv.c), "127.0.0.1");
    CU_ASSERT_EQUAL(pv_conn_peer_port(f.cli.c), pv_listener_port(f.l));
    CU_ASSERT(pv_conn_peer_port(f.srv.c) > 0);
    CU_ASSERT_FALSE(pv_conn_is_tls(f.srv.c));
    CU_ASSERT_FALSE(pv_conn_is_unix(f.srv.c));
    CU_ASSERT_PTR_NULL(pv_conn_tls_version(f.srv.c));
    /* idle: no queue, no read buffer */
    CU_ASSERT(pv_conn_memory(f.srv.c) < 1024);
    pv_conn_close(f.cli.c);
    CU_ASSERT(run_until(f.loop, pred_both_closed, &f));
    CU_ASSERT(f.cli.reason_null);
    CU_ASSERT_STRING_EQUAL(f.srv.reason, "connection closed by peer");
    fix_done(&f);
}

static void
unix_accept(void *arg, pv_conn_t *c)
{
    fix_accept(arg, c);
}

static void
test_unix_echo(void)
{
    char path[300], err[256];
    struct stat st;
    fix_t f;

    fix_init(&f);
    snprintf(path, sizeof(path), "%s/ctl.sock", tmpdir);
    pv_listener_close(f.l);
    f.l = pv_listen_unix(f.loop, path, 0600, 8, unix_accept, &f, err,
                         sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(f.l);
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    CU_ASSERT_EQUAL(pv_listener_port(f.l), 0);
    f.hello = "status";
    CU_ASSERT_PTR_NOT_NULL(pv_conn_connect_unix(f.loop, path, fix_connect, &f));
    CU_ASSERT_FATAL(run_until(f.loop, pred_cli_got_hello, &f));
    CU_ASSERT_NSTRING_EQUAL(f.cli.got.data, "status", 6);
    CU_ASSERT(pv_conn_is_unix(f.srv.c));
    CU_ASSERT_STRING_EQUAL(pv_conn_peer_ip(f.srv.c), "");
    pv_listener_close(f.l);
    f.l = NULL;
    CU_ASSERT_NOT_EQUAL(stat(path, &st), 0);
    /* a regular file in the way is not replaced */
    close(open(path, O_CREAT | O_WRONLY, 0600));
    CU_ASSERT_PTR_NULL(pv_listen_unix(f.loop, path, 0600, 8, unix_accept, &f,
                                      err, sizeof(err)));
    unlink(path);
    fix_done(&f);
}

static void
test_connect_fail(void)
{
    fix_t f;
    int port;
    pv_conn_t *c;

    fix_init(&f);
    port = pv_listener_port(f.l);
    pv_listener_close(f.l);
    f.l = NULL;
    run_for(f.loop, 5);
    CU_ASSERT_PTR_NULL(
        pv_conn_connect_tcp(f.loop, "not-an-ip", port, fix_connect, &f));
    CU_ASSERT_PTR_NOT_NULL(
        pv_conn_connect_tcp(f.loop, "127.0.0.1", port, fix_connect, &f));
    run_for(f.loop, 50);
    CU_ASSERT_EQUAL(f.n_connect, 1);
    CU_ASSERT_STRING_EQUAL(f.connect_err, "connection refused");
    /* cancelled while connecting: reported, never from inside abort */
    f.n_connect = 0;
    c = pv_conn_connect_tcp(f.loop, "127.0.0.1", port, fix_connect, &f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    pv_conn_abort(c, "cancelled");
    CU_ASSERT_EQUAL(f.n_connect, 0);
    run_for(f.loop, 20);
    CU_ASSERT_EQUAL(f.n_connect, 1);
    CU_ASSERT_STRING_EQUAL(f.connect_err, "cancelled");
    fix_done(&f);
}

static void
fill_pattern(char *buf, size_t off, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        buf[i] = (char)((off + i) % 251);
}

static int
check_pattern(const char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if (buf[i] != (char)(i % 251))
            return 0;
    return 1;
}

typedef struct bulk_s {
    fix_t *f;
    size_t total;
} bulk_t;

static int
pred_bulk_done(void *arg)
{
    bulk_t *b = arg;

    return b->f->cli.got.len >= b->total && b->f->srv.n_drained > 0;
}

static int
pred_cli_total(void *arg)
{
    bulk_t *b = arg;

    return b->f->cli.got.len >= b->total;
}

static void
test_slow_reader(void)
{
    enum {
        CHUNK = 64 * 1024
    };
    bulk_t b;
    char *chunk = pv_xmalloc(CHUNK);
    size_t off;
    fix_t f;

    fix_init(&f);
    f.srv.echo = 0;
    fix_connect_tcp(&f);
    CU_ASSERT_FATAL(run_until(f.loop, pred_both_connected, &f));
    pv_conn_pause(f.cli.c);
    pv_conn_set_max_queue(f.srv.c, 64 * 1024 * 1024);
    b.f = &f;
    b.total = 32 * 1024 * 1024;
    for (off = 0; off < b.total; off += CHUNK) {
        fill_pattern(chunk, off, CHUNK);
        CU_ASSERT_EQUAL_FATAL(pv_conn_write(f.srv.c, chunk, CHUNK), PV_OK);
    }
    run_for(f.loop, 30);
    /* the kernel took what it could; the rest waits in the queue */
    CU_ASSERT(pv_conn_queued(f.srv.c) > 0);
    CU_ASSERT(pv_conn_memory(f.srv.c) > pv_conn_queued(f.srv.c));
    CU_ASSERT_EQUAL(f.cli.got.len, 0);
    CU_ASSERT_EQUAL(f.srv.n_drained, 0);
    pv_conn_resume(f.cli.c);
    CU_ASSERT(run_until(f.loop, pred_bulk_done, &b));
    CU_ASSERT_EQUAL(f.cli.got.len, b.total);
    CU_ASSERT(check_pattern(f.cli.got.data, f.cli.got.len));
    CU_ASSERT_EQUAL(pv_conn_queued(f.srv.c), 0);
    CU_ASSERT(pv_conn_memory(f.srv.c) < 1024);
    free(chunk);
    fix_done(&f);
}

static void
test_max_queue(void)
{
    enum {
        CHUNK = 64 * 1024
    };
    char *chunk = pv_xcalloc(1, CHUNK);
    int i, rc = PV_OK;
    fix_t f;

    fix_init(&f);
    f.srv.echo = 0;
    fix_connect_tcp(&f);
    CU_ASSERT_FATAL(run_until(f.loop, pred_both_connected, &f));
    pv_conn_pause(f.cli.c);
    pv_conn_set_max_queue(f.srv.c, 256 * 1024);
    for (i = 0; i < 4096 && rc == PV_OK; i++)
        rc = pv_conn_write(f.srv.c, chunk, CHUNK);
    CU_ASSERT_EQUAL(rc, PV_ERROR);
    CU_ASSERT(pv_conn_queued(f.srv.c) <= 256 * 1024);
    /* closing now: later writes fail, on_close comes from the loop */
    CU_ASSERT_EQUAL(pv_conn_write(f.srv.c, "x", 1), PV_ERROR);
    CU_ASSERT_EQUAL(f.srv.n_closed, 0);
    CU_ASSERT(run_until(f.loop, pred_srv_closed, &f));
    CU_ASSERT_EQUAL(f.srv.n_closed, 1);
    CU_ASSERT_STRING_EQUAL(f.srv.reason, PV_CONN_REASON_QUEUE);
    free(chunk);
    fix_done(&f);
}

static int
pred_close_seen(void *arg)
{
    fix_t *f = arg;

    return f->srv.n_closed > 0 && f->cli.n_closed > 0;
}

static void
run_close_in_data(int action, int tls)
{
    fix_t f;

    fix_init(&f);
    f.srv.echo = 0;
    f.srv.on_data_action = action;
    f.hello = "hi";
    if (tls) {
        f.sctx = server_ctx(cert_default, key_default);
        f.cctx = client_ctx(NULL);
    }
    fix_connect_tcp(&f);
    CU_ASSERT(run_until(f.loop, pred_close_seen, &f));
    CU_ASSERT_EQUAL(f.srv.n_closed, 1);
    CU_ASSERT_EQUAL(f.cli.n_closed, 1);
    CU_ASSERT_EQUAL(f.srv.after_close_write_rc, PV_ERROR);
    CU_ASSERT_NSTRING_EQUAL(f.srv.got.data, "hi", 2);
    if (action == 2) {
        CU_ASSERT_STRING_EQUAL(f.srv.reason, "test abort");
    } else {
        CU_ASSERT(f.srv.reason_null);
    }
    if (action == 3) {
        /* the reply queued before the close still arrives */
        CU_ASSERT_EQUAL(f.cli.got.len, 3);
        CU_ASSERT_NSTRING_EQUAL(f.cli.got.data, "bye", 3);
        CU_ASSERT_STRING_EQUAL(f.cli.reason, tls ? "tls closed by peer"
                                                 : "connection closed by "
                                                   "peer");
    }
    fix_done(&f);
}

static void
test_close_in_data(void)
{
    run_close_in_data(1, 0);
    run_close_in_data(2, 0);
    run_close_in_data(3, 0);
    run_close_in_data(1, 1);
    run_close_in_data(3, 1);
}

/* ---- TLS ---- */

static void
test_tls_echo(void)
{
    enum {
        BIG = 300000
    };
    char *big = pv_xmalloc(BIG);
    char err[256];
    bulk_t b;
    fix_t f;

    fix_init(&f);
    f.sctx = server_ctx(cert_default, key_default);
    f.cctx = client_ctx(cert_default);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f.sctx);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f.cctx);
    f.hello = "hello over tls"; /* written before the handshake */
    f.sni = "default.example";
    fix_connect_tcp(&f);
    CU_ASSERT_FATAL(run_until(f.loop, pred_cli_got_hello, &f));
    CU_ASSERT_NSTRING_EQUAL(f.cli.got.data, "hello over tls", 14);
    CU_ASSERT_EQUAL(f.srv.n_tls_done, 1);
    CU_ASSERT_EQUAL(f.cli.n_tls_done, 1);
    CU_ASSERT(f.srv.tls_ok && f.cli.tls_ok);
    CU_ASSERT(pv_conn_is_tls(f.srv.c) && pv_conn_is_tls(f.cli.c));
    CU_ASSERT_STRING_EQUAL(pv_conn_tls_version(f.srv.c), "TLSv1.3");
    CU_ASSERT_STRING_EQUAL(pv_conn_tls_sni(f.srv.c), "default.example");
    CU_ASSERT_PTR_NULL(pv_conn_tls_alpn(f.srv.c));
    /* trusted via ca_file, and the name matches */
    CU_ASSERT_EQUAL(
        pv_conn_tls_verify(f.cli.c, "default.example", err, sizeof(err)),
        PV_OK);
    CU_ASSERT_EQUAL(
        pv_conn_tls_verify(f.cli.c, "other.example", err, sizeof(err)),
        PV_ERROR);
    CU_ASSERT_EQUAL(pv_conn_tls_verify(f.srv.c, NULL, err, sizeof(err)),
                    PV_ERROR); /* the client sent no certificate */

    /* many records in both directions */
    fill_pattern(big, 0, BIG);
    pv_buf_reset(&f.cli.got);
    CU_ASSERT_EQUAL(pv_conn_write(f.cli.c, big, BIG), PV_OK);
    b.f = &f;
    b.total = BIG;
    CU_ASSERT(run_until(f.loop, pred_cli_total, &b));
    CU_ASSERT_EQUAL(f.cli.got.len, BIG);
    CU_ASSERT(check_pattern(f.cli.got.data, f.cli.got.len));

    pv_conn_close(f.cli.c);
    CU_ASSERT(run_until(f.loop, pred_both_closed, &f));
    CU_ASSERT_STRING_EQUAL(f.srv.reason, "tls closed by peer");
    free(big);
    fix_done(&f);
}

static void
test_tls_untrusted(void)
{
    char err[256];
    fix_t f;

    fix_init(&f);
    f.sctx = server_ctx(cert_default, key_default);
    f.cctx = client_ctx(NULL); /* system store: self-signed fails */
    f.hello = "x";
    fix_connect_tcp(&f);
    CU_ASSERT_FATAL(run_until(f.loop, pred_cli_got_hello, &f));
    CU_ASSERT(f.cli.tls_ok); /* verification is the caller's call */
    CU_ASSERT_EQUAL(
        pv_conn_tls_verify(f.cli.c, "default.example", err, sizeof(err)),
        PV_ERROR);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "self"));
    fix_done(&f);
}

typedef struct sni_map_s {
    pv_tls_ctx_t *a;
    pv_tls_ctx_t *b;
    int n_calls;
} sni_map_t;

static pv_tls_ctx_t *
sni_select(void *arg, const char *name)
{
    sni_map_t *m = arg;

    m->n_calls++;
    if (strcmp(name, "a.example") == 0)
        return m->a;
    if (strcmp(name, "b.example") == 0)
        return m->b;
    return NULL;
}

static void
run_sni(sni_map_t *m, const char *sni, const char *want_cn)
{
    static const char *const alpn[] = {"xmpp-client"};
    char cn[128];
    fix_t f;

    fix_init(&f);
    f.sctx = server_ctx(cert_default, key_default);
    pv_tls_ctx_set_sni(f.sctx, sni_select, m);
    pv_tls_ctx_set_alpn(f.sctx, alpn, 1);
    f.cctx = client_ctx(NULL);
    f.sni = sni;
    f.alpn = "xmpp-client";
    f.hello = "x";
    fix_connect_tcp(&f);
    CU_ASSERT_FATAL(run_until(f.loop, pred_cli_got_hello, &f));
    CU_ASSERT_EQUAL(pv_conn_tls_peer_cn(f.cli.c, cn, sizeof(cn)), PV_OK);
    CU_ASSERT_STRING_EQUAL(cn, want_cn);
    if (sni != NULL) {
        CU_ASSERT_STRING_EQUAL(pv_conn_tls_sni(f.srv.c), sni);
    }
    /* ALPN follows the listener's context after the SNI switch */
    CU_ASSERT_PTR_NOT_NULL_FATAL(pv_conn_tls_alpn(f.srv.c));
    CU_ASSERT_STRING_EQUAL(pv_conn_tls_alpn(f.srv.c), "xmpp-client");
    fix_done(&f);
}

static void
test_tls_sni(void)
{
    sni_map_t m = {server_ctx(cert_a, key_a), server_ctx(cert_b, key_b), 0};

    CU_ASSERT_PTR_NOT_NULL_FATAL(m.a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m.b);
    run_sni(&m, "b.example", "b.example");
    run_sni(&m, "a.example", "a.example");
    run_sni(&m, "unknown.example", "default.example");
    CU_ASSERT_EQUAL(m.n_calls, 3);
    run_sni(&m, NULL, "default.example");
    CU_ASSERT_EQUAL(m.n_calls, 3);
    /* a reload drops the vhost contexts; nothing may still use them */
    pv_tls_ctx_unref(m.a);
    pv_tls_ctx_unref(m.b);
}

static void
run_alpn(const char *offer, const char *want)
{
    static const char *const alpn[] = {"xmpp-client", "xmpp-server"};
    fix_t f;

    fix_init(&f);
    f.sctx = server_ctx(cert_default, key_default);
    CU_ASSERT_EQUAL(pv_tls_ctx_set_alpn(f.sctx, alpn, 2), PV_OK);
    f.cctx = client_ctx(NULL);
    f.alpn = offer;
    f.hello = "x";
    fix_connect_tcp(&f);
    CU_ASSERT_FATAL(run_until(f.loop, pred_cli_got_hello, &f));
    if (want == NULL) {
        CU_ASSERT_PTR_NULL(pv_conn_tls_alpn(f.srv.c));
        CU_ASSERT_PTR_NULL(pv_conn_tls_alpn(f.cli.c));
    } else {
        CU_ASSERT_STRING_EQUAL(pv_conn_tls_alpn(f.srv.c), want);
        CU_ASSERT_STRING_EQUAL(pv_conn_tls_alpn(f.cli.c), want);
    }
    fix_done(&f);
}

static void
test_tls_alpn(void)
{
    run_alpn("xmpp-server", "xmpp-server");
    run_alpn("xmpp-client", "xmpp-client");
    run_alpn("h2", NULL); /* no overlap: continue without */
    run_alpn(NULL, NULL);
}

static void
test_tls_old_version_refused(void)
{
    SSL_CTX *ssl;
    fix_t f;

    fix_init(&f);
    f.sctx = server_ctx(cert_default, key_default);
    f.cctx = client_ctx(NULL);
    ssl = pv_tls_ctx_ssl(f.cctx);
    /* a client that could speak TLS 1.1 if the server let it */
    SSL_CTX_set_min_proto_version(ssl, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(ssl, TLS1_1_VERSION);
    SSL_CTX_set_cipher_list(ssl, "DEFAULT:@SECLEVEL=0");
    fix_connect_tcp(&f);
    CU_ASSERT(run_until(f.loop, pred_both_closed, &f));
    CU_ASSERT_EQUAL(f.srv.n_tls_done, 1);
    CU_ASSERT_FALSE(f.srv.tls_ok);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.srv.tls_err, "unsupported protocol"));
    CU_ASSERT_EQUAL(f.cli.n_tls_done, 1);
    CU_ASSERT_FALSE(f.cli.tls_ok);
    /* the server's protocol_version alert reached the client */
    CU_ASSERT_PTR_NOT_NULL(strstr(f.cli.tls_err, "protocol version"));
    fix_done(&f);
}

static void
run_channel_binding(int max_version)
{
    uint8_t s[64], c[64], want[EVP_MAX_MD_SIZE];
    size_t slen, clen;
    unsigned int wlen;
    const char *types[4];
    X509 *x;
    FILE *fp;
    fix_t f;
    int n;

    fix_init(&f);
    f.sctx = server_ctx(cert_default, key_default);
    f.cctx = client_ctx(NULL);
    if (max_version != 0)
        SSL_CTX_set_max_proto_version(pv_tls_ctx_ssl(f.cctx), max_version);
    f.hello = "x";
    fix_connect_tcp(&f);
    CU_ASSERT_FATAL(run_until(f.loop, pred_cli_got_hello, &f));
    CU_ASSERT_STRING_EQUAL(pv_conn_tls_version(f.srv.c),
                           max_version == TLS1_2_VERSION ? "TLSv1.2"
                                                         : "TLSv1.3");

    /* tls-unique: the client's Finished, the same on both ends */
    slen = clen = 64;
    CU_ASSERT_EQUAL(pv_conn_channel_binding(f.srv.c, "tls-unique", s, &slen),
                    PV_OK);
    CU_ASSERT_EQUAL(pv_conn_channel_binding(f.cli.c, "tls-unique", c, &clen),
                    PV_OK);
    CU_ASSERT_EQUAL(slen, clen);
    CU_ASSERT(memcmp(s, c, slen) == 0);
    if (max_version == TLS1_2_VERSION) {
        CU_ASSERT_EQUAL(slen, 12); /* RFC 5246 §7.4.9 verify_data */
    } else {
        CU_ASSERT(slen == 32 || slen == 48);
    }

    /* tls-server-end-point: SHA-256 of our certificate's DER */
    slen = clen = 64;
    CU_ASSERT_EQUAL(
        pv_conn_channel_binding(f.srv.c, "tls-server-end-point", s, &slen),
        PV_OK);
    CU_ASSERT_EQUAL(
        pv_conn_channel_binding(f.cli.c, "tls-server-end-point", c, &clen),
        PV_OK);
    fp = fopen(cert_default, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    X509_digest(x, EVP_sha256(), want, &wlen);
    X509_free(x);
    CU_ASSERT_EQUAL(slen, wlen);
    CU_ASSERT_EQUAL(clen, wlen);
    CU_ASSERT(memcmp(s, want, wlen) == 0);
    CU_ASSERT(memcmp(c, want, wlen) == 0);

    /* tls-exporter: TLS 1.3 only */
    slen = clen = 64;
    n = pv_conn_cb_types(f.srv.c, types, 4);
    if (max_version == TLS1_2_VERSION) {
        CU_ASSERT_EQUAL(
            pv_conn_channel_binding(f.srv.c, "tls-exporter", s, &slen),
            PV_ERROR);
        CU_ASSERT_EQUAL(n, 2);
        CU_ASSERT_STRING_EQUAL(types[0], "tls-server-end-point");
        CU_ASSERT_STRING_EQUAL(types[1], "tls-unique");
    } else {
        CU_ASSERT_EQUAL(
            pv_conn_channel_binding(f.srv.c, "tls-exporter", s, &slen), PV_OK);
        CU_ASSERT_EQUAL(
            pv_conn_channel_binding(f.cli.c, "tls-exporter", c, &clen), PV_OK);
        CU_ASSERT_EQUAL(slen, 32);
        CU_ASSERT_EQUAL(clen, 32);
        CU_ASSERT(memcmp(s, c, 32) == 0);
        CU_ASSERT_EQUAL(n, 3);
        CU_ASSERT_STRING_EQUAL(types[0], "tls-exporter");
        /* max bounds the list */
        CU_ASSERT_EQUAL(pv_conn_cb_types(f.srv.c, types, 1), 1);
    }
    slen = 64;
    CU_ASSERT_EQUAL(pv_conn_channel_binding(f.srv.c, "tls-bogus", s, &slen),
                    PV_ERROR);
    slen = 4; /* too small for any value */
    CU_ASSERT_EQUAL(pv_conn_channel_binding(f.srv.c, "tls-unique", s, &slen),
                    PV_ERROR);
    fix_done(&f);
}

static void
test_channel_binding(void)
{
    fix_t f;
    uint8_t buf[64];
    size_t len = sizeof(buf);

    run_channel_binding(0);
    run_channel_binding(TLS1_2_VERSION);
    /* no TLS, no binding */
    fix_init(&f);
    f.hello = "x";
    fix_connect_tcp(&f);
    CU_ASSERT_FATAL(run_until(f.loop, pred_cli_got_hello, &f));
    CU_ASSERT_EQUAL(pv_conn_channel_binding(f.srv.c, "tls-unique", buf, &len),
                    PV_ERROR);
    CU_ASSERT_EQUAL(pv_conn_cb_types(f.srv.c, NULL, 0), 0);
    fix_done(&f);
}

/* A plain blocking OpenSSL client on a thread: its own view of the
 * handshake is the reference the server's values must match (RFC 5929
 * §3.1: tls-unique is the client's Finished on a full handshake). */
typedef struct raw_cli_s {
    int port;
    int max_version;
    atomic_int ok; /* set (release) once fin and exp are filled in */
    uint8_t fin[64];
    size_t fin_len;
    uint8_t exp[32];
    int exp_ok;
} raw_cli_t;

static void *
raw_client(void *arg)
{
    raw_cli_t *r = arg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    struct sockaddr_in sin;
    SSL *ssl = NULL;
    char ch;
    int fd;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)r->port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (r->max_version != 0)
        SSL_CTX_set_max_proto_version(ctx, r->max_version);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
        goto out;
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1)
        goto out;
    r->fin_len = SSL_get_finished(ssl, r->fin, sizeof(r->fin));
    r->exp_ok = SSL_export_keying_material(ssl, r->exp, sizeof(r->exp),
                                           "EXPORTER-Channel-Binding", 24, NULL,
                                           0, 0) == 1;
    atomic_store(&r->ok, 1);
    if (SSL_write(ssl, "x", 1) != 1)
        goto out;
    /* wait until the server has looked and closes */
    while (SSL_read(ssl, &ch, 1) > 0)
        ;
out:
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(ctx);
    return NULL;
}

static int
pred_srv_got(void *arg)
{
    fix_t *f = arg;

    return f->srv.got.len > 0;
}

static void
run_raw_binding(int max_version)
{
    raw_cli_t r;
    pthread_t th;
    uint8_t buf[64];
    size_t len;
    fix_t f;

    fix_init(&f);
    f.srv.echo = 0;
    f.sctx = server_ctx(cert_default, key_default);
    memset(&r, 0, sizeof(r));
    r.port = pv_listener_port(f.l);
    r.max_version = max_version;
    CU_ASSERT_FATAL(pthread_create(&th, NULL, raw_client, &r) == 0);
    CU_ASSERT(run_until(f.loop, pred_srv_got, &f));
    if (f.srv.c != NULL) {
        CU_ASSERT(atomic_load(&r.ok));
        len = sizeof(buf);
        CU_ASSERT_EQUAL(
            pv_conn_channel_binding(f.srv.c, "tls-unique", buf, &len), PV_OK);
        CU_ASSERT_EQUAL(len, r.fin_len);
        CU_ASSERT(memcmp(buf, r.fin, r.fin_len) == 0);
        len = sizeof(buf);
        if (max_version == TLS1_2_VERSION) {
            CU_ASSERT_EQUAL(
                pv_conn_channel_binding(f.srv.c, "tls-exporter", buf, &len),
                PV_ERROR);
        } else {
            CU_ASSERT(r.exp_ok);
            CU_ASSERT_EQUAL(
                pv_conn_channel_binding(f.srv.c, "tls-exporter", buf, &len),
                PV_OK);
            CU_ASSERT_EQUAL(len, 32);
            CU_ASSERT(memcmp(buf, r.exp, 32) == 0);
        }
        pv_conn_close(f.srv.c);
    }
    CU_ASSERT(run_until(f.loop, pred_srv_closed, &f));
    pthread_join(th, NULL);
    fix_done(&f);
}

static void
test_channel_binding_raw(void)
{
    run_raw_binding(0);
    run_raw_binding(TLS1_2_VERSION);
}

/* STARTTLS: plaintext first, then TLS on the same connection. */
typedef struct stls_s {
    fix_t f;
    int upgraded;
} stls_t;

static void
stls_data(pv_conn_t *c, const char *data, size_t len)
{
    stls_t *s = pv_conn_data(c);

    if (!s->upgraded && len >= 11 && memcmp(data, "<starttls/>", 11) == 0) {
        s->upgraded = 1;
        CU_ASSERT_EQUAL(pv_conn_write(c, "<proceed/>", 10), PV_OK);
        CU_ASSERT_EQUAL(pv_conn_start_tls_server(c, s->f.sctx), PV_OK);
        CU_ASSERT_EQUAL(pv_conn_start_tls_server(c, s->f.sctx), PV_ERROR);
        return;
    }
    pv_buf_append(&s->f.srv.got, data, len);
    pv_conn_write(c, data, len);
}

static void
stls_close(pv_conn_t *c, const char *reason)
{
    stls_t *s = pv_conn_data(c);

    (void)reason;
    s->f.srv.n_closed++;
    s->f.srv.c = NULL;
}

static const pv_conn_handler_t stls_handler = {stls_data, NULL, stls_close,
                                               NULL};

static void
stls_accept(void *arg, pv_conn_t *c)
{
    stls_t *s = arg;

    s->f.srv.c = c;
    pv_conn_set_handler(c, &stls_handler, s);
}

static int
pred_proceed(void *arg)
{
    fix_t *f = arg;

    return f->cli.got.len >= 10;
}

static void
test_starttls(void)
{
    char err[256];
    stls_t s;

    fix_init(&s.f);
    s.upgraded = 0;
    pv_listener_close(s.f.l);
    s.f.l =
        pv_listen_tcp(s.f.loop, NULL, 0, 8, stls_accept, &s, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(s.f.l);
    s.f.sctx = server_ctx(cert_default, key_default);
    s.f.hello = "<starttls/>";
    fix_connect_tcp(&s.f);
    CU_ASSERT_FATAL(run_until(s.f.loop, pred_proceed, &s.f));
    CU_ASSERT_NSTRING_EQUAL(s.f.cli.got.data, "<proceed/>", 10);
    CU_ASSERT_STRING_EQUAL(pv_conn_peer_ip(s.f.srv.c), "127.0.0.1");
    s.f.cctx = client_ctx(NULL);
    CU_ASSERT_EQUAL(
        pv_conn_start_tls_client(s.f.cli.c, s.f.cctx, "default.example", NULL),
        PV_OK);
    s.f.hello = "<proceed/>secret";
    CU_ASSERT_EQUAL(pv_conn_write(s.f.cli.c, "secret", 6), PV_OK);
    CU_ASSERT(run_until(s.f.loop, pred_cli_got_hello, &s.f));
    CU_ASSERT_NSTRING_EQUAL(s.f.cli.got.data, "<proceed/>secret", 16);
    CU_ASSERT(pv_conn_is_tls(s.f.srv.c));
    fix_done(&s.f);
}

/* TLS reader that pauses after every record and resumes in a deferred
 * task: exercises the stash of unread ciphertext. */
static void
test_tls_pause(void)
{
    enum {
        TOTAL = 1024 * 1024,
        CHUNK = 20000
    };
    char *chunk = pv_xmalloc(CHUNK);
    size_t off;
    bulk_t b;
    fix_t f;

    fix_init(&f);
    f.srv.echo = 0;
    f.cli.pause_each = 1;
    f.sctx = server_ctx(cert_default, key_default);
    f.cctx = client_ctx(NULL);
    f.hello = "go";
    fix_connect_tcp(&f);
    CU_ASSERT_FATAL(run_until(f.loop, pred_tls_done, &f));
    for (off = 0; off < TOTAL; off += CHUNK) {
        size_t n = TOTAL - off < CHUNK ? TOTAL - off : CHUNK;

        fill_pattern(chunk, off, n);
        CU_ASSERT_EQUAL_FATAL(pv_conn_write(f.srv.c, chunk, n), PV_OK);
    }
    b.f = &f;
    b.total = TOTAL;
    CU_ASSERT(run_until(f.loop, pred_cli_total, &b));
    CU_ASSERT_EQUAL(f.cli.got.len, TOTAL);
    CU_ASSERT(check_pattern(f.cli.got.data, f.cli.got.len));
    free(chunk);
    fix_done(&f);
}

/* ---- memory of idle TLS sessions ---- */

#define MEM_WARM 20
#define MEM_N 200
#define MEM_PAYLOAD 20000

typedef struct mem_s {
    pv_loop_t *loop;
    pv_tls_ctx_t *sctx;
    pv_conn_t *conns[MEM_WARM + MEM_N];
    int n;
    int ready_fd;
} mem_t;

static void
mem_data(pv_conn_t *c, const char *data, size_t len)
{
    pv_conn_write(c, data, len);
}

static void
mem_close(pv_conn_t *c, const char *reason)
{
    mem_t *m = pv_conn_data(c);
    int i;

    (void)reason;
    for (i = 0; i < m->n; i++)
        if (m->conns[i] == c)
            m->conns[i] = NULL;
}

static const pv_conn_handler_t mem_handler = {mem_data, NULL, mem_close, NULL};

static void
mem_accept(void *arg, pv_conn_t *c)
{
    mem_t *m = arg;

    if (m->n < MEM_WARM + MEM_N)
        m->conns[m->n++] = c;
    pv_conn_set_handler(c, &mem_handler, m);
    pv_conn_start_tls_server(c, m->sctx);
}

static int
pred_ready(void *arg)
{
    mem_t *m = arg;
    char ch;

    return read(m->ready_fd, &ch, 1) == 1;
}

static size_t
heap_used(void)
{
#ifdef TEST_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
#endif
}

static PV_NORETURN void
mem_child(int port, int ready_fd, int go_fd)
{
    static SSL *ssl[MEM_WARM + MEM_N];
    static char payload[MEM_PAYLOAD], back[MEM_PAYLOAD];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    struct sockaddr_in sin;
    int i, phase, start = 0;
    char ch;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    memset(payload, 'p', sizeof(payload));
    for (phase = 0; phase < 2; phase++) {
        int end = phase == 0 ? MEM_WARM : MEM_WARM + MEM_N;

        for (i = start; i < end; i++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            int one = 1;
            size_t got = 0;

            /* without it Nagle and delayed ACKs cost 40 ms a session */
            if (fd < 0 ||
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) !=
                    0 ||
                connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
                _exit(2);
            ssl[i] = SSL_new(ctx);
            SSL_set_fd(ssl[i], fd);
            if (SSL_connect(ssl[i]) != 1)
                _exit(3);
            if (SSL_write(ssl[i], payload, sizeof(payload)) <= 0)
                _exit(4);
            while (got < sizeof(back)) {
                int n = SSL_read(ssl[i], back + got, (int)(sizeof(back) - got));

                if (n <= 0)
                    _exit(5);
                got += (size_t)n;
            }
        }
        start = end;
        if (write(ready_fd, "r", 1) != 1 || read(go_fd, &ch, 1) < 0)
            _exit(6);
    }
    _exit(0);
}

static void
test_tls_idle_memory(void)
{
    int c2p[2], p2c[2], status, i;
    size_t m1, m2, conn_mem = 0;
    char err[256];
    pv_listener_t *l;
    mem_t m;
    pid_t pid;

    memset(&m, 0, sizeof(m));
    m.loop = pv_loop_new();
    m.sctx = server_ctx(cert_default, key_default);
    l = pv_listen_tcp(m.loop, "127.0.0.1", 0, 256, mem_accept, &m, err,
                      sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_FATAL(pipe(c2p) == 0 && pipe(p2c) == 0);
    pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        close(c2p[0]);
        close(p2c[1]);
        mem_child(pv_listener_port(l), c2p[1], p2c[0]);
    }
    close(c2p[1]);
    close(p2c[0]);
    fcntl(c2p[0], F_SETFL, O_NONBLOCK);
    m.ready_fd = c2p[0];

    /* warm-up sessions pay the one-time costs (loop buffers, OpenSSL's
     * lazily loaded tables); the next MEM_N pay only their own */
    if (!run_until(m.loop, pred_ready, &m))
        goto fail;
    run_for(m.loop, 50);
    m1 = heap_used();
    CU_ASSERT_EQUAL(write(p2c[1], "g", 1), 1);
    if (!run_until(m.loop, pred_ready, &m))
        goto fail;
    run_for(m.loop, 50);
    m2 = heap_used();
    CU_ASSERT_EQUAL(m.n, MEM_WARM + MEM_N);
    for (i = MEM_WARM; i < m.n; i++) {
        if (m.conns[i] == NULL)
            goto fail;
        CU_ASSERT_STRING_EQUAL(pv_conn_tls_version(m.conns[i]), "TLSv1.3");
        CU_ASSERT_EQUAL(pv_conn_queued(m.conns[i]), 0);
        conn_mem += pv_conn_memory(m.conns[i]);
    }
    printf("\n    idle TLS 1.3 server session: %.2f KiB heap each "
           "(pv_conn_memory %zu B)%s ",
           (double)(m2 - m1) / MEM_N / 1024.0, conn_mem / MEM_N,
#ifdef TEST_ASAN
           " [asan]"
#else
           ""
#endif
    );
    if (m1 == 0 && m2 == 0) {
        /* valgrind replaces malloc and mallinfo2() reports nothing */
        printf("[no heap statistics] ");
    } else {
        CU_ASSERT(m2 > m1);
        /* the session budget is 16 KiB in all (DESIGN.md §3) */
        CU_ASSERT((m2 - m1) / MEM_N < 16 * 1024);
    }
    CU_ASSERT(conn_mem / MEM_N < 1024);

    close(p2c[1]);
    waitpid(pid, &status, 0);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    goto out;

fail:
    CU_FAIL("tls clients did not finish");
    kill(pid, SIGKILL);
    close(p2c[1]);
    waitpid(pid, &status, 0);
out:
    close(c2p[0]);
    run_for(m.loop, 20);
    pv_listener_close(l);
    pv_loop_free(m.loop);
    pv_tls_ctx_unref(m.sctx);
}

void test_suite_conn(void);

void
test_suite_conn(void)
{
    CU_pSuite loop = CU_add_suite("loop", NULL, NULL);
    CU_pSuite conn = CU_add_suite("conn", suite_init, suite_clean);

    CU_add_test(loop, "timers", test_timers);
    CU_add_test(loop, "defer", test_defer);
    CU_add_test(loop, "async from another thread", test_async);
    CU_add_test(loop, "work on the thread pool", test_work);
    CU_add_test(loop, "signal", test_signal);

    CU_add_test(conn, "plain echo", test_plain_echo);
    CU_add_test(conn, "unix socket echo", test_unix_echo);
    CU_add_test(conn, "connect failure and cancel", test_connect_fail);
    CU_add_test(conn, "slow reader queues then drains", test_slow_reader);
    CU_add_test(conn, "max queue exceeded closes", test_max_queue);
    CU_add_test(conn, "close inside on_data", test_close_in_data);
    CU_add_test(conn, "tls echo", test_tls_echo);
    CU_add_test(conn, "tls untrusted peer", test_tls_untrusted);
    CU_add_test(conn, "tls sni picks certificate", test_tls_sni);
    CU_add_test(conn, "tls alpn", test_tls_alpn);
    CU_add_test(conn, "tls 1.1 refused", test_tls_old_version_refused);
    CU_add_test(conn, "channel binding", test_channel_binding);
    CU_add_test(conn, "channel binding against openssl client",
                test_channel_binding_raw);
    CU_add_test(conn, "starttls", test_starttls);
    CU_add_test(conn, "tls pause and resume", test_tls_pause);
    CU_add_test(conn, "idle tls memory", test_tls_idle_memory);
}
