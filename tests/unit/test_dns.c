/* tests/unit/test_dns.c: the s2s resolver against a real DNS server: a
 * tiny UDP responder on 127.0.0.1 (random port) on the same libuv loop,
 * serving SRV/A/AAAA from a table, or SERVFAIL, or silence. Also RFC 2782
 * ordering statistics, override parsing and the check-dns text. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>
#include <uv.h>

#include "dns.h"
#include "loop.h"

/* ---- the stub DNS server ---- */

enum {
    RR_A = 1,
    RR_AAAA = 28,
    RR_SRV = 33
};
enum {
    STUB_ANSWER,
    STUB_SERVFAIL,
    STUB_DROP
};

typedef struct stub_rr_s {
    const char *name; /* lowercase, no trailing dot */
    int type;
    const char *data; /* A/AAAA: literal; SRV: "prio weight port target" */
} stub_rr_t;

typedef struct stub_s {
    uv_udp_t udp;
    int port;
    const stub_rr_t *rrs;
    int mode;
    unsigned n_queries;
    struct {
        char name[256];
        int type;
    } log[256];
    unsigned n_log;
    char buf[1500];
} stub_t;

static unsigned
stub_count(const stub_t *st, const char *name, int type)
{
    unsigned i, n = 0;

    for (i = 0; i < st->n_log && i < 256; i++)
        if (strcmp(st->log[i].name, name) == 0 && st->log[i].type == type)
            n++;
    return n;
}

static size_t
put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
    return 2;
}

/* Writes name as uncompressed labels; "." is the root. */
static size_t
put_name(unsigned char *p, const char *name)
{
    size_t n = 0;

    while (*name != '\0' && strcmp(name, ".") != 0) {
        const char *dot = strchr(name, '.');
        size_t len = dot ? (size_t)(dot - name) : strlen(name);

        p[n++] = (unsigned char)len;
        memcpy(p + n, name, len);
        n += len;
        name += len + (dot ? 1 : 0);
    }
    p[n++] = 0;
    return n;
}

static size_t
stub_answer(stub_t *st, const unsigned char *q, size_t qlen, unsigned char *out)
{
    char name[256];
    size_t off = 12, nlen = 0, n, ancount = 0;
    unsigned qtype, rcode = 3; /* NXDOMAIN unless the name exists */
    const stub_rr_t *rr;

    if (qlen < 12)
        return 0;
    while (off < qlen && q[off] != 0) {
        size_t l = q[off++], i;

        if (off + l > qlen || nlen + l + 1 >= sizeof(name))
            return 0;
        if (nlen > 0)
            name[nlen++] = '.';
        for (i = 0; i < l; i++) {
            char c = (char)q[off + i];

            name[nlen++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        off += l;
    }
    name[nlen] = '\0';
    off++;
    if (off + 4 > qlen)
        return 0;
    qtype = (unsigned)(q[off] << 8 | q[off + 1]);
    off += 4;
    st->n_queries++;
    if (st->n_log < 256) {
        snprintf(st->log[st->n_log].name, sizeof(st->log[0].name), "%s", name);
        st->log[st->n_log].type = (int)qtype;
    }
    st->n_log++;
    if (st->mode == STUB_DROP)
        return 0;

    memcpy(out, q, off); /* header and question */
    n = off;
    for (rr = st->rrs; rr != NULL && rr->name != NULL; rr++) {
        unsigned char *rdlen;
        size_t start;

        if (strcmp(rr->name, name) != 0)
            continue;
        rcode = 0;
        if ((unsigned)rr->type != qtype || st->mode != STUB_ANSWER)
            continue;
        n += put16(out + n, 0xc00c); /* pointer to the question name */
        n += put16(out + n, qtype);
        n += put16(out + n, 1);
        n += put16(out + n, 0);
        n += put16(out + n, 300);
        rdlen = out + n;
        n += 2;
        start = n;
        if (rr->type == RR_A) {
            inet_pton(AF_INET, rr->data, out + n);
            n += 4;
        } else if (rr->type == RR_AAAA) {
            inet_pton(AF_INET6, rr->data, out + n);
            n += 16;
        } else {
            unsigned prio, weight, port;
            char target[256];

            sscanf(rr->data, "%u %u %u %255s", &prio, &weight, &port, target);
            n += put16(out + n, prio);
            n += put16(out + n, weight);
            n += put16(out + n, port);
            n += put_name(out + n, target);
        }
        put16(rdlen, (unsigned)(n - start));
        ancount++;
    }
    if (st->mode == STUB_SERVFAIL)
        rcode = 2;
    out[2] = (unsigned char)(0x84 | (q[2] & 0x01)); /* QR, AA, RD copied */
    out[3] = (unsigned char)(0x80 | rcode);         /* RA */
    put16(out + 6, (unsigned)ancount);
    put16(out + 8, 0);
    put16(out + 10, 0);
    return n;
}

static void
stub_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    stub_t *st = h->data;

    (void)hint;
    buf->base = st->buf;
    buf->len = sizeof(st->buf);
}

static void
stub_recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
             const struct sockaddr *from, unsigned flags)
{
    stub_t *st = h->data;
    unsigned char out[1500];
    size_t n;
    uv_buf_t b;

    (void)flags;
    if (nread <= 0 || from == NULL)
        return;
    n = stub_answer(st, (const unsigned char *)buf->base, (size_t)nread, out);
    if (n == 0)
        return;
    b = uv_buf_init((char *)out, (unsigned)n);
    uv_udp_try_send(h, &b, 1, from);
}

static void
stub_start(stub_t *st, pv_loop_t *loop)
{
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int len = sizeof(bound);

    memset(st, 0, sizeof(*st));
    uv_udp_init(pv_loop_uv(loop), &st->udp);
    st->udp.data = st;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    CU_ASSERT_FATAL(uv_udp_bind(&st->udp, (struct sockaddr *)&sa, 0) == 0);
    uv_udp_getsockname(&st->udp, (struct sockaddr *)&bound, &len);
    st->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    uv_udp_recv_start(&st->udp, stub_alloc_cb, stub_recv_cb);
}

/* ---- fixture ---- */

typedef struct env_s {
    pv_loop_t *loop;
    stub_t stub;
    pv_dns_t *dns;
    char server[64];
    int calls;
    int timed_out;
    pv_dns_result_t *res;
    pv_timer_t *guard;
} env_t;

static void
guard_cb(void *arg)
{
    env_t *e = arg;

    e->guard = NULL;
    e->timed_out = 1;
    pv_loop_stop(e->loop);
}

static void
on_result(void *arg, pv_dns_result_t *res)
{
    env_t *e = arg;

    e->calls++;
    pv_dns_result_free(e->res);
    e->res = res;
    pv_loop_stop(e->loop);
}

/* Starts loop, stub and resolver; overrides and options optional. */
static void
env_init(env_t *e, const stub_rr_t *rrs, const pv_dns_override_t *ov,
         pv_dns_opts_t *opts_in)
{
    const char *servers[2];
    pv_dns_opts_t opts;
    char err[128] = "";

    memset(e, 0, sizeof(*e));
    e->loop = pv_loop_new();
    CU_ASSERT_FATAL(e->loop != NULL);
    stub_start(&e->stub, e->loop);
    e->stub.rrs = rrs;
    snprintf(e->server, sizeof(e->server), "127.0.0.1:%d", e->stub.port);
    servers[0] = e->server;
    servers[1] = NULL;
    if (opts_in != NULL)
        opts = *opts_in;
    else
        memset(&opts, 0, sizeof(opts));
    opts.servers = servers;
    opts.overrides = ov;
    if (opts.timeout_ms == 0)
        opts.timeout_ms = 2000;
    if (opts.tries == 0)
        opts.tries = 1;
    e->dns = pv_dns_new(e->loop, &opts, err, sizeof(err));
    CU_ASSERT_FATAL(e->dns != NULL);
    pv_dns_set_seed(e->dns, 42);
}

/* Runs the loop until a callback stops it or ms pass. */
static void
env_run(env_t *e, uint64_t ms)
{
    e->timed_out = 0;
    e->guard = pv_timer_add(e->loop, ms, 0, guard_cb, e);
    pv_loop_run(e->loop);
    pv_timer_cancel(e->guard);
    e->guard = NULL;
}

static const pv_dns_result_t *
env_resolve(env_t *e, const char *domain)
{
    int before = e->calls;

    CU_ASSERT_FATAL(pv_dns_resolve_xmpp_server(e->dns, domain, on_result, e) !=
                    NULL);
    /* Never called back from inside the call. */
    CU_ASSERT_EQUAL(e->calls, before);
    env_run(e, 5000);
    CU_ASSERT_FALSE(e->timed_out);
    CU_ASSERT_EQUAL(e->calls, before + 1);
    CU_ASSERT_FATAL(e->res != NULL);
    return e->res;
}

static void
env_fini(env_t *e)
{
    pv_dns_result_free(e->res);
    pv_dns_free(e->dns);
    uv_close((uv_handle_t *)&e->stub.udp, NULL);
    pv_loop_free(e->loop);
}

static void
check_cand(const pv_dns_result_t *r, size_t i, const char *ip, int port,
           int is_tls, const char *host)
{
    CU_ASSERT_FATAL(i < r->n_candidates);
    CU_ASSERT_STRING_EQUAL(r->candidates[i].ip, ip);
    CU_ASSERT_EQUAL(r->candidates[i].port, port);
    CU_ASSERT_EQUAL(r->candidates[i].is_direct_tls, is_tls);
    CU_ASSERT_STRING_EQUAL(r->candidates[i].host, host);
}

/* Addresses of one host must alternate families (RFC 8305 §4); which one
 * leads depends on RFC 6724 sorting and the machine's routes. */
static void
check_alternate(const pv_dns_result_t *r, size_t from, size_t n)
{
    size_t i;

    for (i = from + 1; i < from + n && i < r->n_candidates; i++)
        CU_ASSERT_NOT_EQUAL(r->candidates[i].family,
                            r->candidates[i - 1].family);
}

/* ---- RFC 2782 ordering (pure) ---- */

static void
test_order_priority(void)
{
    static const uint16_t prios[] = {30, 10, 20, 10, 0, 65535, 20, 10};
    pv_dns_srv_t recs[PV_COUNTOF(prios)];
    uint64_t rng = 7;
    size_t i, round;

    for (round = 0; round < 50; round++) {
        unsigned seen = 0;

        memset(recs, 0, sizeof(recs));
        for (i = 0; i < PV_COUNTOF(prios); i++) {
            recs[i].priority = prios[i];
            recs[i].weight = (uint16_t)(i * 3);
            recs[i].port = (uint16_t)i; /* identifies the record */
        }
        pv_dns_srv_order(recs, PV_COUNTOF(recs), &rng);
        for (i = 0; i < PV_COUNTOF(recs); i++) {
            if (i > 0)
                CU_ASSERT(recs[i - 1].priority <= recs[i].priority);
            CU_ASSERT_EQUAL(recs[i].priority, prios[recs[i].port]);
            seen |= 1u << recs[i].port;
        }
        CU_ASSERT_EQUAL(seen, (1u << PV_COUNTOF(prios)) - 1);
    }
}

static void
test_order_weights(void)
{
    /* Weights 10/30/60 in one priority: the first pick follows w/(sum+1)
     * (RFC 2782 picks in [0, sum]); checked over 30000 seeded runs. */
    static const struct {
        uint16_t w[3];
        double expect[3];
    } cases[] = {
        {{10, 30, 60}, {10.0 / 101, 30.0 / 101, 61.0 / 101}},
        {{0, 50, 50}, {1.0 / 101, 50.0 / 101, 50.0 / 101}},
        {{0, 0, 0}, {1.0 / 3, 1.0 / 3, 1.0 / 3}},
        {{1, 0, 1}, {1.0 / 3, 1.0 / 3, 1.0 / 3}},
    };
    size_t c, i, k;
    const int runs = 30000;

    for (c = 0; c < PV_COUNTOF(cases); c++) {
        int first[3] = {0, 0, 0};
        uint64_t rng = 12345 + c;

        for (k = 0; k < (size_t)runs; k++) {
            pv_dns_srv_t recs[3];

            memset(recs, 0, sizeof(recs));
            for (i = 0; i < 3; i++) {
                recs[i].priority = 5;
                recs[i].weight = cases[c].w[i];
                recs[i].port = (uint16_t)i;
            }
            pv_dns_srv_order(recs, 3, &rng);
            first[recs[0].port]++;
        }
        for (i = 0; i < 3; i++) {
            double got = (double)first[i] / runs;
            double want = cases[c].expect[i];

            if (got < want - 0.015 || got > want + 0.015) {
                fprintf(stderr, "case %zu rec %zu: got %.3f want %.3f\n", c, i,
                        got, want);
                CU_FAIL("weighted selection off");
            }
        }
    }
    /* A fixed seed repeats the order. */
    {
        pv_dns_srv_t a[6], b[6];
        uint64_t r1 = 99, r2 = 99;

        memset(a, 0, sizeof(a));
        for (i = 0; i < 6; i++) {
            a[i].priority = 1;
            a[i].weight = 10;
            a[i].port = (uint16_t)i;
        }
        memcpy(b, a, sizeof(a));
        pv_dns_srv_order(a, 6, &r1);
        pv_dns_srv_order(b, 6, &r2);
        CU_ASSERT(memcmp(a, b, sizeof(a)) == 0);
    }
}

/* ---- targets and options ---- */

static void
test_check_target(void)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"127.0.0.2", 1},
        {"127.0.0.2:5269", 1},
        {"tls://127.0.0.2:5270", 1},
        {"[::1]:5269", 1},
        {"tls://[2001:db8::1]", 1},
        {"xmpp.example.net", 1},
        {"XMPP.Example.NET.:5299", 1},
        {"", 0},
        {":5269", 0},
        {"::1", 0},
        {"::1:5269", 0},
        {"[::1", 0},
        {"[::1]x", 0},
        {"[not-ip]:5269", 0},
        {"host:0", 0},
        {"host:65536", 0},
        {"host:52a", 0},
        {"host:", 0},
        {"host:-1", 0},
        {"bad_host", 0},
        {"-bad.example", 0},
        {"bad-.example", 0},
        {"a..b", 0},
        {"tls://", 0},
    };
    size_t i;

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        char err[128] = "";
        int rc = pv_dns_check_target(cases[i].s, err, sizeof(err));

        if ((rc == PV_OK) != cases[i].ok)
            fprintf(stderr, "target '%s': rc %d (%s)\n", cases[i].s, rc, err);
        CU_ASSERT_EQUAL(rc == PV_OK, cases[i].ok);
        if (!cases[i].ok)
            CU_ASSERT(err[0] != '\0');
    }
}

static void
test_new_errors(void)
{
    pv_loop_t *loop = pv_loop_new();
    const char *bad_servers[] = {"not-an-address", NULL};
    const char *bad_targets[] = {"host:99999", NULL};
    const char *no_targets[] = {NULL};
    pv_dns_override_t bad_ov[] = {{"a.test", bad_targets}, {NULL, NULL}};
    pv_dns_override_t empty_ov[] = {{"a.test", no_targets}, {NULL, NULL}};
    pv_dns_opts_t opts;
    char err[128];
    pv_dns_t *dns;

    memset(&opts, 0, sizeof(opts));
    opts.servers = bad_servers;
    err[0] = '\0';
    CU_ASSERT_PTR_NULL(pv_dns_new(loop, &opts, err, sizeof(err)));
    CU_ASSERT(err[0] != '\0');

    memset(&opts, 0, sizeof(opts));
    opts.overrides = bad_ov;
    err[0] = '\0';
    CU_ASSERT_PTR_NULL(pv_dns_new(loop, &opts, err, sizeof(err)));
    CU_ASSERT(strstr(err, "port") != NULL);

    opts.overrides = empty_ov;
    CU_ASSERT_PTR_NULL(pv_dns_new(loop, &opts, err, sizeof(err)));

    /* System configuration works too (nothing is sent). */
    dns = pv_dns_new(loop, NULL, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL(dns);
    pv_dns_free(dns);
    pv_loop_free(loop);
}

/* ---- the full procedure against the stub ---- */

static const stub_rr_t zone[] = {
    /* a.test: direct TLS at priority 5, STARTTLS at 10 and 20. */
    {"_xmpps-server._tcp.a.test", RR_SRV, "5 0 5270 tls.a.test"},
    {"_xmpp-server._tcp.a.test", RR_SRV, "20 0 5269 y.a.test"},
    {"_xmpp-server._tcp.a.test", RR_SRV, "10 0 5269 x.a.test."},
    {"tls.a.test", RR_A, "192.0.2.10"},
    {"x.a.test", RR_A, "192.0.2.1"},
    {"x.a.test", RR_A, "192.0.2.2"},
    {"x.a.test", RR_AAAA, "2001:db8::1"},
    {"x.a.test", RR_AAAA, "2001:db8::2"},
    {"y.a.test", RR_AAAA, "2001:db8::9"},
    /* b.test: STARTTLS preferred by priority over direct TLS. */
    {"_xmpps-server._tcp.b.test", RR_SRV, "20 0 5270 tls.b.test"},
    {"_xmpp-server._tcp.b.test", RR_SRV, "10 0 5269 plain.b.test"},
    {"tls.b.test", RR_A, "192.0.2.20"},
    {"plain.b.test", RR_A, "192.0.2.21"},
    /* dot.test: "." for STARTTLS, nothing for direct TLS; has an A
     * record that must not be used. */
    {"_xmpp-server._tcp.dot.test", RR_SRV, "0 0 0 ."},
    {"dot.test", RR_A, "192.0.2.99"},
    /* dotls.test: "." for direct TLS only: use the STARTTLS records. */
    {"_xmpps-server._tcp.dotls.test", RR_SRV, "0 0 0 ."},
    {"_xmpp-server._tcp.dotls.test", RR_SRV, "0 0 5269 srv.dotls.test"},
    {"srv.dotls.test", RR_A, "192.0.2.40"},
    /* plain.test: no SRV at all: fallback to A/AAAA on 5269. */
    {"plain.test", RR_A, "192.0.2.50"},
    {"plain.test", RR_AAAA, "2001:db8::50"},
    /* nodata.test exists but has nothing useful. */
    {"nodata.test", 16, ""},
    /* broken.test: SRV target that does not resolve, then a good one. */
    {"_xmpp-server._tcp.broken.test", RR_SRV, "1 0 5269 gone.broken.test"},
    {"_xmpp-server._tcp.broken.test", RR_SRV, "2 0 5299 ok.broken.test"},
    {"ok.broken.test", RR_A, "192.0.2.60"},
    /* dup.test: two targets with the same address. */
    {"_xmpp-server._tcp.dup.test", RR_SRV, "1 0 5269 one.dup.test"},
    {"_xmpp-server._tcp.dup.test", RR_SRV, "2 0 5269 two.dup.test"},
    {"one.dup.test", RR_A, "192.0.2.70"},
    {"two.dup.test", RR_A, "192.0.2.70"},
    {"two.dup.test", RR_A, "192.0.2.71"},
    /* name used by overrides */
    {"host.override.test", RR_A, "192.0.2.80"},
    {NULL, 0, NULL},
};

static void
test_srv_order_and_kinds(void)
{
    env_t e;
    const pv_dns_result_t *r;
    size_t i;

    env_init(&e, zone, NULL, NULL);
    r = env_resolve(&e, "A.Test.");
    CU_ASSERT_EQUAL(r->status, PV_DNS_OK);
    CU_ASSERT_STRING_EQUAL(r->domain, "a.test");
    CU_ASSERT(r->is_srv_asked && !r->is_fallback && !r->is_override);
    CU_ASSERT_EQUAL(r->srv_status[0], PV_DNS_OK);
    CU_ASSERT_EQUAL(r->srv_status[1], PV_DNS_OK);
    CU_ASSERT_EQUAL_FATAL(r->n_srv, 3);
    CU_ASSERT_STRING_EQUAL(r->srv[0].target, "tls.a.test");
    CU_ASSERT_STRING_EQUAL(r->srv[1].target, "x.a.test");
    CU_ASSERT_STRING_EQUAL(r->srv[2].target, "y.a.test");
    CU_ASSERT_EQUAL(r->srv[1].n_addrs, 4);
    CU_ASSERT_EQUAL_FATAL(r->n_candidates, 6);
    check_cand(r, 0, "192.0.2.10", 5270, 1, "tls.a.test");
    for (i = 1; i <= 4; i++) {
        CU_ASSERT_EQUAL(r->candidates[i].port, 5269);
        CU_ASSERT_EQUAL(r->candidates[i].is_direct_tls, 0);
        CU_ASSERT_STRING_EQUAL(r->candidates[i].host, "x.a.test");
    }
    check_alternate(r, 1, 4);
    /* Same family keeps its order (first 192.0.2.1 before .2). */
    for (i = 1; i <= 4; i++)
        if (strcmp(r->candidates[i].ip, "192.0.2.2") == 0)
            CU_ASSERT(i >= 3);
    check_cand(r, 5, "2001:db8::9", 5269, 0, "y.a.test");

    /* Priorities mix across kinds (XEP-0368 §3 rule 1). */
    r = env_resolve(&e, "b.test");
    CU_ASSERT_EQUAL_FATAL(r->n_candidates, 2);
    check_cand(r, 0, "192.0.2.21", 5269, 0, "plain.b.test");
    check_cand(r, 1, "192.0.2.20", 5270, 1, "tls.b.test");
    env_fini(&e);
}

static void
test_tls_order_options(void)
{
    pv_dns_opts_t opts;
    env_t e;
    const pv_dns_result_t *r;

    memset(&opts, 0, sizeof(opts));
    opts.tls_order = PV_DNS_DIRECT_TLS_FIRST;
    env_init(&e, zone, NULL, &opts);
    r = env_resolve(&e, "b.test");
    CU_ASSERT_EQUAL_FATAL(r->n_candidates, 2);
    CU_ASSERT_EQUAL(r->candidates[0].is_direct_tls, 1);
    CU_ASSERT_EQUAL(r->candidates[1].is_direct_tls, 0);
    env_fini(&e);

    opts.tls_order = PV_DNS_STARTTLS_FIRST;
    env_init(&e, zone, NULL, &opts);
    r = env_resolve(&e, "a.test");
    CU_ASSERT_EQUAL_FATAL(r->n_candidates, 6);
    CU_ASSERT_EQUAL(r->candidates[0].is_direct_tls, 0);
    CU_ASSERT_STRING_EQUAL(r->candidates[0].host, "x.a.test");
    check_cand(r, 5, "192.0.2.10", 5270, 1, "tls.a.test");
    env_fini(&e);
}

static void
test_dot_target(void)
{
    env_t e;
    const pv_dns_result_t *r;

    env_init(&e, zone, NULL, NULL);
    r = env_resolve(&e, "dot.test");
    CU_ASSERT_EQUAL(r->status, PV_DNS_UNAVAILABLE);
    CU_ASSERT_EQUAL(r->n_candidates, 0);
    CU_ASSERT_FALSE(r->is_fallback);
    /* No A/AAAA fallback for the domain (RFC 6120 §3.2.1). */
    CU_ASSERT_EQUAL(stub_count(&e.stub, "dot.test", RR_A), 0);
    CU_ASSERT_EQUAL(stub_count(&e.stub, "dot.test", RR_AAAA), 0);
    CU_ASSERT_EQUAL_FATAL(r->n_srv, 1);
    CU_ASSERT(r->srv[0].is_dot);
    CU_ASSERT_FALSE(pv_dns_status_is_temporary(r->status));

    /* "." for direct TLS only: STARTTLS records still work (XEP-0368
     * §5). */
    r = env_resolve(&e, "dotls.test");
    CU_ASSERT_EQUAL(r->status, PV_DNS_OK);
    CU_ASSERT_EQUAL_FATAL(r->n_candidates, 1);
    check_cand(r, 0, "192.0.2.40", 5269, 0, "srv.dotls.test");
    env_fini(&e);
}

static void
test_fallback(void)
{
    env_t e;
    const pv_dns_result_t *r;

    env_init(&e, zone, NULL, NULL);
    r = env_resolve(&e, "plain.test");
    CU_ASSERT_EQUAL(r->status, PV_DNS_OK);
    CU_ASSERT(r->is_fallback);
    CU_ASSERT_EQUAL(r->srv_status[0], PV_DNS_NXDOMAIN);
    CU_ASSERT_EQUAL(r->srv_status[1], PV_DNS_NXDOMAIN);
    CU_ASSERT_EQUAL_FATAL(r->n_candidates, 2);
    check_alternate(r, 0, 2);
    CU_ASSERT(strcmp(r->candidates[0].ip, "192.0.2.50") == 0 ||
              strcmp(r->candidates[1].ip, "192.0.2.50") == 0);
    CU_ASSERT_EQUAL(r->candidates[0].port, 5269);
    CU_ASSERT_EQUAL(r->candidates[1].port, 5269);
    CU_ASSERT_EQUAL(r->candidates[0].is_direct_tls, 0);
    CU_ASSERT_STRING_EQUAL(r->candidates[0].host, "plain.test");
    /* Both SRV names were asked once, in absolute form (no search). */
    CU_ASSERT_EQUAL(
        stub_count(&e.stub, "_xmpps-server._tcp.plain.test", RR_SRV), 1);
    CU_ASSERT_EQUAL(stub_count(&e.stub, "_xmpp-server._tcp.plain.test", RR_SRV),
                    1);
    env_fini(&e);
}

static void
test_errors(void)
{
    env_t e;
    const pv_dns_result_t *r;

    env_init(&e, zone, NULL, NULL);
    r = env_resolve(&e, "nowhere.test");
    CU_ASSERT_EQUAL(r->status, PV_DNS_NXDOMAIN);
    CU_ASSERT_EQUAL(r->n_candidates, 0);
    CU_ASSERT_FALSE(pv_dns_status_is_temporary(r->status));

    r = env_resolve(&e, "nodata.test");
    CU_ASSERT_EQUAL(r->status, PV_DNS_NODATA);

    /* First target gone: the second is used; the record says why. */
    r = env_resolve(&e, "broken.test");
    CU_ASSERT_EQUAL(r->status, PV_DNS_OK);
    CU_ASSERT_EQUAL_FATAL(r->n_candidates, 1);
    check_cand(r, 0, "192.0.2.60", 5299, 0, "ok.broken.test");
    CU_ASSERT_EQUAL_FATAL(r->n_srv, 2);
    CU_ASSERT_EQUAL(r->srv[0].addr_status, PV_DNS_NXDOMAIN);

    /* Same address twice: tried once. */
    r = env_resolve(&e, "dup.test");
    CU_ASSERT_EQUAL_FATAL(r->n_candidates, 2);
    check_cand(r, 0, "192.0.2.70", 5269, 0, "one.dup.test");
    check_cand(r, 1, "192.0.2.71", 5269, 0, "two.dup.test");

    e.stub.mode = STUB_SERVFAIL;
    r = env_resolve(&e, "a.test");
    CU_ASSERT_EQUAL(r->status, PV_DNS_SERVFAIL);
    CU_ASSERT(pv_dns_status_is_temporary(r->status));
    env_fini(&e);
}

static void
test_timeout(void)
{
    pv_dns_opts_t opts;
    env_t e;
    const pv_dns_result_t *r;

    memset(&opts, 0, sizeof(opts));
    opts.timeout_ms = 100;
    opts.tries = 1;
    env_init(&e, zone, NULL, &opts);
    e.stub.mode = STUB_DROP;
    r = env_resolve(&e, "a.test");
    CU_ASSERT_EQUAL(r->status, PV_DNS_TIMEOUT);
    CU_ASSERT_EQUAL(r->srv_status[0], PV_DNS_TIMEOUT);
    CU_ASSERT_EQUAL(r->srv_status[1], PV_DNS_TIMEOUT);
    CU_ASSERT(pv_dns_status_is_temporary(r->status));
    CU_ASSERT(e.stub.n_queries >= 2);
    env_fini(&e);
}

static void
test_special_names(void)
{
    static const char *const names[] = {
        "invalid",   "foo.invalid", "FOO.INVALID.",
        "localhost", "x.localhost", "hidden.onion",
        "",          ".",           "a..b",
        "-a.test",   "a_b.test",    "a b.test",
        "[::1",      "xn--.test",
    };
    env_t e;
    size_t i;

    env_init(&e, zone, NULL, NULL);
    for (i = 0; i < PV_COUNTOF(names); i++) {
        const pv_dns_result_t *r = env_resolve(&e, names[i]);

        if (r->status != PV_DNS_BAD_NAME)
            fprintf(stderr, "'%s': %s\n", names[i],
                    pv_dns_status_str(r->status));
        CU_ASSERT_EQUAL(r->status, PV_DNS_BAD_NAME);
        CU_ASSERT_EQUAL(r->n_candidates, 0);
    }
    /* Nothing reached the network. */
    CU_ASSERT_EQUAL(e.stub.n_queries, 0);
    env_fini(&e);
}

static void
test_ip_literal_and_idn(void)
{
    env_t e;
    const pv_dns_result_t *r;

    env_init(&e, zone, NULL, NULL);
    r = env_resolve(&e, "192.0.2.7");
    CU_ASSERT_EQUAL(r->status, PV_DNS_OK);
    CU_ASSERT(r->is_ip_literal);
    CU_ASSERT_EQUAL_FATAL(r->n_candidates, 1);
    check_cand(r, 0, "192.0.2.7", 5269, 0, "192.0.2.7");
    CU_ASSERT_EQUAL(r->candidates[0].family, AF_INET);

    r = env_resolve(&e, "[2001:DB8::7]");
    CU_ASSERT_EQUAL_FATAL(r->n_candidates, 1);
    check_cand(r, 0, "2001:db8::7", 5269, 0, "2001:db8::7");
    CU_ASSERT_EQUAL(e.stub.n_queries, 0);

    /* U-labels are asked as A-labels. */
    r = env_resolve(&e, "b\xc3\xbc"
                        "cher.test");
    CU_ASSERT_STRING_EQUAL(r->domain, "xn--bcher-kva.test");
    CU_ASSERT_EQUAL(
        stub_count(&e.stub, "_xmpp-server._tcp.xn--bcher-kva.test", RR_SRV), 1);
    env_fini(&e);
}

static void
test_override(void)
{
    static const char *const t1[] = {"127.0.0.7:5999", "tls://[::1]",
                                     "host.override.test:5300",
                                     "127.0.0.7:5999", NULL};
    static const char *const t2[] = {"nxhost.override.test", NULL};
    static const char *const t3[] = {"127.0.0.9", NULL};
    const pv_dns_override_t ov[] = {
        {"Over.Test", t1},
        {"bad.override.test", t2},
        /* overrides beat the special-name rule */
        {"peer.localhost", t3},
        {NULL, NULL},
    };
    env_t e;
    const pv_dns_result_t *r;
    pv_buf_t text = {0};

    env_init(&e, zone, ov, NULL);
    r = env_resolve(&e, "over.test.");
    CU_ASSERT_EQUAL(r->status, PV_DNS_OK);
    CU_ASSERT(r->is_override && !r->is_srv_asked);
    CU_ASSERT_EQUAL_FATAL(r->n_candidates, 3);
    check_cand(r, 0, "127.0.0.7", 5999, 0, "127.0.0.7");
    check_cand(r, 1, "::1", 5270, 1, "::1");
    check_cand(r, 2, "192.0.2.80", 5300, 0, "host.override.test");
    /* Only the override's host name was asked, never SRV. */
    CU_ASSERT_EQUAL(e.stub.n_queries, 2);
    CU_ASSERT_EQUAL(stub_count(&e.stub, "host.override.test", RR_A), 1);
    pv_dns_describe(r, &text);
    CU_ASSERT(strstr(text.data, "static override") != NULL);
    pv_buf_free(&text);

    r = env_resolve(&e, "bad.override.test");
    CU_ASSERT_EQUAL(r->status, PV_DNS_NXDOMAIN);

    e.stub.n_queries = 0;
    r = env_resolve(&e, "peer.localhost");
    CU_ASSERT_EQUAL_FATAL(r->n_candidates, 1);
    check_cand(r, 0, "127.0.0.9", 5269, 0, "127.0.0.9");
    CU_ASSERT_EQUAL(e.stub.n_queries, 0);
    env_fini(&e);
}

static void
test_describe(void)
{
    env_t e;
    const pv_dns_result_t *r;
    pv_buf_t text = {0};
    static const char *const want[] = {
        "domain a.test\n",
        "srv _xmpps-server._tcp.a.test: ok\n",
        "srv _xmpp-server._tcp.a.test: ok\n",
        "  xmpps-server prio 5 weight 0 port 5270 target tls.a.test -> 1 "
        "address\n",
        "  xmpp-server prio 10 weight 0 port 5269 target x.a.test -> 4 "
        "addresses\n",
        "candidate 1: 192.0.2.10 port 5270 direct-tls (tls.a.test)\n",
        "candidate 6: [2001:db8::9] port 5269 starttls (y.a.test)\n",
        "status: ok\n",
    };
    size_t i;

    env_init(&e, zone, NULL, NULL);
    r = env_resolve(&e, "a.test");
    pv_dns_describe(r, &text);
    for (i = 0; i < PV_COUNTOF(want); i++) {
        if (strstr(text.data, want[i]) == NULL)
            fprintf(stderr, "missing '%s' in:\n%s", want[i], text.data);
        CU_ASSERT_PTR_NOT_NULL(strstr(text.data, want[i]));
    }
    pv_buf_reset(&text);
    r = env_resolve(&e, "dot.test");
    pv_dns_describe(r, &text);
    CU_ASSERT_PTR_NOT_NULL(strstr(text.data, "(service not offered)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text.data, "status: service-unavailable"));
    pv_buf_reset(&text);
    r = env_resolve(&e, "plain.test");
    pv_dns_describe(r, &text);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(text.data, "fallback: A/AAAA of plain.test on port 5269\n"));
    pv_buf_free(&text);
    env_fini(&e);
}

/* ---- cancellation and teardown ---- */

static void
test_cancel(void)
{
    static const char *const t1[] = {"127.0.0.7", NULL};
    const pv_dns_override_t ov[] = {{"over.test", t1}, {NULL, NULL}};
    pv_dns_opts_t opts;
    pv_dns_query_t *q;
    env_t e;

    memset(&opts, 0, sizeof(opts));
    opts.timeout_ms = 100;
    env_init(&e, zone, ov, &opts);

    /* In flight (the server never answers): no callback, ever. */
    e.stub.mode = STUB_DROP;
    q = pv_dns_resolve_xmpp_server(e.dns, "a.test", on_result, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    env_run(&e, 30);
    pv_dns_cancel(q);
    env_run(&e, 400);
    CU_ASSERT(e.timed_out);
    CU_ASSERT_EQUAL(e.calls, 0);

    /* Cancelled with its SRV queries just sent: the answers arrive and
     * are dropped. */
    e.stub.mode = STUB_ANSWER;
    q = pv_dns_resolve_xmpp_server(e.dns, "a.test", on_result, &e);
    pv_dns_cancel(q);
    /* Result already decided (override), callback queued: dropped. */
    q = pv_dns_resolve_xmpp_server(e.dns, "over.test", on_result, &e);
    pv_dns_cancel(q);
    q = pv_dns_resolve_xmpp_server(e.dns, "x.invalid", on_result, &e);
    pv_dns_cancel(q);
    pv_dns_cancel(NULL);
    env_run(&e, 300);
    CU_ASSERT_EQUAL(e.calls, 0);

    /* The resolver still works afterwards. */
    CU_ASSERT_EQUAL(env_resolve(&e, "b.test")->status, PV_DNS_OK);
    env_fini(&e);
}

typedef struct free_ctx_s {
    env_t *e;
    int calls;
} free_ctx_t;

static void
on_result_free_dns(void *arg, pv_dns_result_t *res)
{
    free_ctx_t *f = arg;

    f->calls++;
    pv_dns_result_free(res);
    /* Allowed from a callback: the other query must never report. */
    pv_dns_free(f->e->dns);
    f->e->dns = NULL;
    pv_loop_stop(f->e->loop);
}

static void
test_free_pending(void)
{
    pv_dns_opts_t opts;
    env_t e;
    free_ctx_t f;

    /* Freed with queries in flight and in every state. */
    memset(&opts, 0, sizeof(opts));
    opts.timeout_ms = 200;
    env_init(&e, zone, NULL, &opts);
    e.stub.mode = STUB_DROP;
    pv_dns_resolve_xmpp_server(e.dns, "a.test", on_result, &e);
    pv_dns_resolve_xmpp_server(e.dns, "b.test", on_result, &e);
    env_run(&e, 20);
    /* Decided but not yet delivered. */
    pv_dns_resolve_xmpp_server(e.dns, "y.invalid", on_result, &e);
    pv_dns_free(e.dns);
    e.dns = NULL;
    env_run(&e, 300);
    CU_ASSERT_EQUAL(e.calls, 0);
    env_fini(&e);

    /* Freed from inside a callback. */
    env_init(&e, zone, NULL, NULL);
    f.e = &e;
    f.calls = 0;
    pv_dns_resolve_xmpp_server(e.dns, "z.invalid", on_result_free_dns, &f);
    pv_dns_resolve_xmpp_server(e.dns, "a.test", on_result_free_dns, &f);
    env_run(&e, 2000);
    env_run(&e, 200);
    CU_ASSERT_EQUAL(f.calls, 1);
    env_fini(&e);

    /* The loop torn down first: the resolver is halted, then freed. */
    env_init(&e, zone, NULL, NULL);
    e.stub.mode = STUB_DROP;
    pv_dns_resolve_xmpp_server(e.dns, "a.test", on_result, &e);
    env_run(&e, 20);
    uv_close((uv_handle_t *)&e.stub.udp, NULL);
    pv_loop_free(e.loop);
    pv_dns_free(e.dns);
    CU_ASSERT_EQUAL(e.calls, 0);
}

void test_suite_dns(void);

void
test_suite_dns(void)
{
    CU_pSuite s = CU_add_suite("dns", NULL, NULL);

    CU_add_test(s, "RFC 2782 priority order", test_order_priority);
    CU_add_test(s, "RFC 2782 weight distribution", test_order_weights);
    CU_add_test(s, "override target syntax", test_check_target);
    CU_add_test(s, "pv_dns_new errors", test_new_errors);
    CU_add_test(s, "SRV order, xmpps and xmpp mixed", test_srv_order_and_kinds);
    CU_add_test(s, "direct TLS / STARTTLS preference", test_tls_order_options);
    CU_add_test(s, "'.' target", test_dot_target);
    CU_add_test(s, "A/AAAA fallback on 5269", test_fallback);
    CU_add_test(s, "NXDOMAIN, NODATA, SERVFAIL, dead targets", test_errors);
    CU_add_test(s, "timeout", test_timeout);
    CU_add_test(s, "special-use and malformed names", test_special_names);
    CU_add_test(s, "IP literals and IDN", test_ip_literal_and_idn);
    CU_add_test(s, "override table", test_override);
    CU_add_test(s, "check dns text", test_describe);
    CU_add_test(s, "cancel", test_cancel);
    CU_add_test(s, "free with queries pending", test_free_pending);
}
