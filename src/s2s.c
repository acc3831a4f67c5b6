/* src/s2s.c: server-to-server streams (RFC 6120): outgoing links per
 * (local domain, remote domain) found with dns.c, STARTTLS or XEP-0368
 * direct TLS, certificate checks (RFC 6125), SASL EXTERNAL (XEP-0178),
 * the queue of a link that is coming up, incoming streams authenticated
 * per domain pair, and the idle sweep. Dialback is s2s_dialback.c's,
 * local delivery the router's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "s2s.h"

typedef struct s2s_tls_s {
    char *host;
    const pv_host_conf_t *conf;  /* identity of the generation's host */
    pv_tls_ctx_t *server, *client;
    struct s2s_tls_s *next;
} s2s_tls_t;

static void s2s_on_data(pv_conn_t *conn, const char *data, size_t len);
static void s2s_on_tls_done(pv_conn_t *conn, int ok, const char *err);
static void s2s_on_close(pv_conn_t *conn, const char *reason);
static void s2s_out_try(pv_s2s_stream_t *s);
static void s2s_abort_attempts(pv_s2s_stream_t *s, const char *why);
static void s2s_out_fail(pv_s2s_stream_t *s, const char *cond,
                         const char *why);

static const pv_conn_handler_t s2s_handler = {
    .on_data = s2s_on_data,
    .on_tls_done = s2s_on_tls_done,
    .on_close = s2s_on_close,
};

/* For connections that outlive their stream (shutdown, free). */
static void
dead_on_data(pv_conn_t *c, const char *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
}

static void
dead_on_close(pv_conn_t *c, const char *reason)
{
    (void)c;
    (void)reason;
}

static const pv_conn_handler_t s2s_dead_handler = {
    .on_data = dead_on_data,
    .on_close = dead_on_close,
};

const pv_core_conf_t *
pv_s2s_conf(const pv_s2s_t *s2s)
{
    return PV_GLOBAL(s2s->srv);
}

/* --- dialback keys (XEP-0185) ----------------------------------------- */


/* --- state, contexts, policy ------------------------------------------ */

static pv_tls_ctx_t *s2s_sni(void *arg, const char *servername);

/* OpenSSL records the verification result; policy is applied later
 * (dialback may still be allowed), so the handshake never fails on it. */
static int
s2s_verify_cb(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1;
}

static int
s2s_load_trust(SSL_CTX *ssl, const char *ca_file)
{
    if (ca_file != NULL)
        return SSL_CTX_load_verify_locations(ssl, ca_file, NULL) == 1;
    return SSL_CTX_set_default_verify_paths(ssl) == 1;
}

/* Per local host: a server context that asks for the peer's certificate
 * (SASL EXTERNAL needs it) and speaks ALPN xmpp-server (XEP-0368), and a
 * client context presenting our certificate. Rebuilt when a reload gave
 * the host a new configuration. */
static s2s_tls_t *
s2s_tls_get(pv_s2s_t *s2s, const char *name)
{
    static const char *const alpn[] = { "xmpp-server" };
    pv_host_t *h = pv_server_host(s2s->srv, name);
    const pv_core_conf_t *cc;
    s2s_tls_t *t, **pp;
    char err[512];

    if (h == NULL)
        return NULL;
    for (pp = &s2s->tls; (t = *pp) != NULL; pp = &t->next) {
        if (strcmp(t->host, name) != 0)
            continue;
        if (t->conf == h->conf)
            return t;
        *pp = t->next;
        pv_tls_ctx_unref(t->server);
        pv_tls_ctx_unref(t->client);
        free(t->host);
        free(t);
        break;
    }
    cc = &h->conf->core;
    t = pv_xcalloc(1, sizeof(*t));
    t->host = pv_xstrdup(name);
    t->conf = h->conf;
    if (cc->tls_certificate != NULL && cc->tls_key != NULL) {
        t->server = pv_tls_ctx_new_server(cc->tls_certificate, cc->tls_key,
                                          err, sizeof(err));
        if (t->server == NULL) {
            pv_log(PV_LOG_ERROR, name, "s2s: %s", err);
        } else {
            SSL_CTX *ssl = pv_tls_ctx_ssl(t->server);

            SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER, s2s_verify_cb);
            /* server certificates often lack the clientAuth EKU */
            SSL_CTX_set_purpose(ssl, X509_PURPOSE_ANY);
            if (!s2s_load_trust(ssl, pv_s2s_conf(s2s)->s2s_ca_file))
                pv_log(PV_LOG_WARN, name, "s2s: cannot load trusted "
                       "certificates");
            pv_tls_ctx_set_alpn(t->server, alpn, 1);
            pv_tls_ctx_set_sni(t->server, s2s_sni, s2s);
        }
    }
    t->client = pv_tls_ctx_new_client(pv_s2s_conf(s2s)->s2s_ca_file, err,
                                      sizeof(err));
    if (t->client == NULL) {
        pv_log(PV_LOG_ERROR, name, "s2s: %s", err);
    } else if (cc->tls_certificate != NULL && cc->tls_key != NULL) {
        SSL_CTX *ssl = pv_tls_ctx_ssl(t->client);

        SSL_CTX_set_purpose(ssl, X509_PURPOSE_ANY);
        if (SSL_CTX_use_certificate_chain_file(ssl, cc->tls_certificate)
            != 1 ||
            SSL_CTX_use_PrivateKey_file(ssl, cc->tls_key, SSL_FILETYPE_PEM)
            != 1)
            pv_log(PV_LOG_WARN, name, "s2s: cannot load %s for outgoing "
                   "streams", cc->tls_certificate);
    }
    t->next = s2s->tls;
    s2s->tls = t;
    return t;
}

static pv_tls_ctx_t *
s2s_sni(void *arg, const char *servername)
{
    pv_s2s_t *s2s = arg;
    s2s_tls_t *t = NULL;
    char *d;

    if (servername == NULL)
        return NULL;
    d = pv_jid_prep_domain(servername, strlen(servername));
    if (d != NULL)
        t = s2s_tls_get(s2s, d);
    free(d);
    return t ? t->server : NULL;
}

static void
s2s_dns_free(pv_s2s_t *s2s)
{
    size_t i;

    pv_dns_free(s2s->dns);
    s2s->dns = NULL;
    for (i = 0; s2s->overrides != NULL && s2s->overrides[i].domain; i++) {
        free((void *)s2s->overrides[i].targets);
        free(s2s->override_strs[i]);
    }
    free(s2s->overrides);
    free(s2s->override_strs);
    s2s->overrides = NULL;
    s2s->override_strs = NULL;
}

/* The resolver from dns_servers and s2s_override of the running
 * generation. */
static void
s2s_dns_setup(pv_s2s_t *s2s)
{
    const pv_core_conf_t *g = pv_s2s_conf(s2s);
    pv_dns_opts_t opts;
    size_t i, n = 0;
    char err[256];

    /* "domain target [target...]" from conf_core.c's setter */
    while (g->s2s_override != NULL && g->s2s_override[n] != NULL)
        n++;
    s2s->overrides = pv_xcalloc(n + 1, sizeof(*s2s->overrides));
    s2s->override_strs = pv_xcalloc(n + 1, sizeof(char *));
    for (i = 0; i < n; i++) {
        char *copy = pv_xstrdup(g->s2s_override[i]);
        char **targets = NULL, *save = NULL, *tok;
        size_t nt = 0;

        s2s->override_strs[i] = copy;
        s2s->overrides[i].domain = strtok_r(copy, " ", &save);
        while ((tok = strtok_r(NULL, " ", &save)) != NULL) {
            targets = pv_xrealloc(targets, (nt + 2) * sizeof(char *));
            targets[nt++] = tok;
            targets[nt] = NULL;
        }
        s2s->overrides[i].targets = (const char *const *)targets;
    }
    memset(&opts, 0, sizeof(opts));
    opts.servers = (const char *const *)g->dns_servers;
    opts.overrides = s2s->overrides;
    s2s->dns = pv_dns_new(s2s->srv->loop, &opts, err, sizeof(err));
    if (s2s->dns == NULL)
        pv_log(PV_LOG_ERROR, "s2s", "cannot start the resolver: %s", err);
}

static pv_s2s_t *
s2s_get(pv_server_t *srv)
{
    pv_s2s_t *s2s = srv->s2s;

    if (s2s != NULL)
        return s2s;
    s2s = pv_xcalloc(1, sizeof(*s2s));
    s2s->srv = srv;
    if (RAND_bytes(s2s->secret, sizeof(s2s->secret)) != 1)
        memcpy(s2s->secret, srv->secret, sizeof(s2s->secret));
    s2s_dns_setup(s2s);
    srv->s2s = s2s;
    return s2s;
}

int
pv_s2s_insecure_ok(const pv_s2s_t *s2s, const char *domain)
{
    const pv_core_conf_t *g = pv_s2s_conf(s2s);
    char **d;

    if (!g->s2s_secure_auth)
        return 1;
    for (d = g->s2s_insecure_domains; domain && d && *d; d++)
        if (strcasecmp(*d, domain) == 0)
            return 1;
    return 0;
}

/* --- stream objects --------------------------------------------------- */

/* Drops n references at once (n may be 0): one call per site keeps the
 * last use of s visibly before the free. */
static void
s2s_release(pv_s2s_stream_t *s, unsigned n)
{
    s->refs -= n;
    if (s->refs > 0)
        return;
    free(s->key);
    free(s->local);
    free(s->remote);
    free(s);
}

static void
s2s_unref(pv_s2s_stream_t *s)
{
    s2s_release(s, 1);
}

static void s2s_xml_open(void *ud, const pv_stream_header_t *h);
static void s2s_xml_stanza(void *ud, pv_stanza_t *st);
static void s2s_xml_close(void *ud);
static void s2s_xml_error(void *ud, const char *cond, const char *text);

static const pv_xmlstream_cb_t s2s_xml_cb = {
    .stream_open = s2s_xml_open,
    .stanza = s2s_xml_stanza,
    .stream_close = s2s_xml_close,
    .error = s2s_xml_error,
};

static pv_s2s_stream_t *
s2s_stream_new(pv_s2s_t *s2s, int is_out)
{
    pv_s2s_stream_t *s = pv_xcalloc(1, sizeof(*s));
    const pv_core_conf_t *g = pv_s2s_conf(s2s);
    pv_xmlstream_limits_t lim;

    s->s2s = s2s;
    s->refs = 1;
    s->is_out = is_out != 0;
    s->id = ++s2s->srv->next_id;
    s->last_active = pv_loop_now_ms(s2s->srv->loop);
    memset(&lim, 0, sizeof(lim));
    lim.max_stanza_bytes = g->s2s_max_stanza_size;
    lim.max_depth = (unsigned)g->xml_max_depth;
    lim.max_attrs = (unsigned)g->xml_max_attrs;
    s->xs = pv_xmlstream_new(&s2s_xml_cb, s, &lim);
    pv_xmlstream_set_lazy(s->xs, 1);
    s->next = s2s->streams;
    if (s2s->streams != NULL)
        s2s->streams->prev = s;
    s2s->streams = s;
    s->attached = 1;
    return s;
}

static const char *
s2s_dir(const pv_s2s_stream_t *s)
{
    return s->is_out ? "s2sout" : "s2sin";
}

void
pv_s2s_write(pv_s2s_stream_t *s, const char *data, size_t len)
{
    if (s->conn != NULL && s->state != PV_S2S_CLOSED)
        pv_conn_write(s->conn, data, len);
}

static void
s2s_puts(pv_s2s_stream_t *s, const char *text)
{
    pv_s2s_write(s, text, strlen(text));
}

static void
s2s_send_header(pv_s2s_stream_t *s)
{
    pv_buf_t b = {0};

    pv_buf_puts(&b, "<?xml version='1.0'?><stream:stream xmlns='"
                    NS_SERVER "' xmlns:stream='" PV_NS_STREAMS
                    "' xmlns:db='" NS_DB "' version='1.0'");
    if (!s->is_out) {
        pv_buf_puts(&b, " id='");
        pv_buf_puts(&b, s->stream_id);
        pv_buf_puts(&b, "'");
    }
    if (s->local != NULL) {
        pv_buf_puts(&b, " from='");
        pv_buf_append_escaped(&b, s->local, strlen(s->local), 1);
        pv_buf_puts(&b, "'");
    }
    if (s->remote != NULL) {
        pv_buf_puts(&b, " to='");
        pv_buf_append_escaped(&b, s->remote, strlen(s->remote), 1);
        pv_buf_puts(&b, "'");
    }
    pv_buf_puts(&b, ">");
    pv_s2s_write(s, b.data, b.len);
    pv_buf_free(&b);
    s->header_sent = 1;
}

/* Forgets the stream: out of the map and the list, pending work
 * cancelled. The connection (if any) is closed by the caller. Returns 1
 * when an outgoing stream's membership reference is now the caller's to
 * drop. */
static int
s2s_detach(pv_s2s_stream_t *s)
{
    int was = s->attached && s->is_out;

    pv_s2s_t *s2s = s->s2s;
    pv_s2s_verify_t *v;
    pv_s2s_pair_t *p;

    if (s->in_map) {
        pv_map_del(&s2s->out, s->key);
        s->in_map = 0;
    }
    if (s->timer != NULL) {
        pv_timer_cancel(s->timer);
        s->timer = NULL;
    }
    if (s->resume != NULL) {
        pv_timer_cancel(s->resume);
        s->resume = NULL;
    }
    if (s->stagger != NULL) {
        pv_timer_cancel(s->stagger);
        s->stagger = NULL;
    }
    if (s->counted) {
        pv_server_conn_closed(s2s->srv, s->peer_ip);
        s->counted = 0;
    }
    if (s->query != NULL) {
        pv_dns_cancel(s->query);
        s->query = NULL;
    }
    if (s->res != NULL) {
        pv_dns_result_free(s->res);
        s->res = NULL;
    }
    while ((v = s->verifies) != NULL) {
        s->verifies = v->next;
        free(v->stream_id);
        free(v->key);
        free(v);
    }
    while ((p = s->pairs) != NULL) {
        s->pairs = p->next;
        free(p->remote);
        free(p->local);
        free(p);
    }
    if (s->xs != NULL) {
        pv_xmlstream_free(s->xs);
        s->xs = NULL;
    }
    if (!s->attached)
        return 0;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        s2s->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    s->attached = 0;
    return was;
}

/* Sends a stream error and closes (RFC 6120 §4.9). */
void
pv_s2s_stream_error(pv_s2s_stream_t *s, const char *cond, const char *text)
{
    pv_buf_t b = {0};

    if (s->state == PV_S2S_CLOSED)
        return;
    pv_log(PV_LOG_INFO, "s2s", "%s#%lu %s->%s: stream error %s%s%s",
           s2s_dir(s), s->id, s->local ? s->local : "?",
           s->remote ? s->remote : "?", cond, text ? ": " : "",
           text ? text : "");
    if (s->conn != NULL && s->state != PV_S2S_TLS_WAIT &&
        s->state != PV_S2S_CONNECTING) {
        if (!s->header_sent)
            s2s_send_header(s);
        pv_buf_printf(&b, "<stream:error><%s xmlns='" NS_STREAM_ERR "'/>",
                      cond);
        if (text != NULL) {
            pv_buf_puts(&b, "<text xmlns='" NS_STREAM_ERR "'>");
            pv_buf_append_escaped(&b, text, strlen(text), 0);
            pv_buf_puts(&b, "</text>");
        }
        pv_buf_puts(&b, "</stream:error></stream:stream>");
        pv_s2s_write(s, b.data, b.len);
        pv_buf_free(&b);
    }
    if (s->is_out && !s->authed) {
        s2s_out_fail(s, "remote-server-not-found", cond);
        return;
    }
    s->state = PV_S2S_CLOSED;
    if (s->conn != NULL)
        pv_conn_close(s->conn);
}

/* --- bouncing (RFC 6120 §8.3.3.15, §8.3.3.16) -------------------------- */

static void
s2s_bounce(pv_s2s_t *s2s, pv_stanza_t *st, const char *cond)
{
    pv_stanza_t *err;
    pv_host_t *h;
    pv_err_type_t type;

    if (s2s->shutting_down || st->from == NULL)
        return;
    h = pv_server_host(s2s->srv, st->from->domain);
    /* never answer errors: no loops (RFC 6120 §8.3.1); a full queue and
     * a slow peer may clear up, the rest will not (§8.3.3) */
    type = strcmp(cond, "resource-constraint") == 0 ||
                   strcmp(cond, "remote-server-timeout") == 0
               ? PV_ERR_WAIT : PV_ERR_CANCEL;
    err = h ? pv_stanza_error(st, type, cond, NULL) : NULL;
    if (err == NULL)
        return;
    pv_host_route(h, err);
    pv_stanza_unref(err);
}

/* The link could not be set up: bounce its queue, answer the incoming
 * streams whose dialback waited on it, and close. */
static void
s2s_out_fail(pv_s2s_stream_t *s, const char *cond, const char *why)
{
    pv_s2s_t *s2s = s->s2s;
    pv_stanza_t **q = s->queue;
    size_t i, n = s->n_queue;
    unsigned drop;

    if (s->state == PV_S2S_CLOSED)
        return;
    pv_log(PV_LOG_INFO, "s2s", "s2sout#%lu %s->%s failed: %s", s->id,
           s->local, s->remote, why ? why : cond);
    s->state = PV_S2S_CLOSED;
    s->queue = NULL;
    s->n_queue = 0;
    pv_s2s_db_fail_all(s);
    /* the membership reference (if any) keeps s until the end */
    drop = (unsigned)s2s_detach(s);
    s2s_abort_attempts(s, "s2s failed");
    if (s->conn != NULL)
        pv_conn_close(s->conn);
    for (i = 0; i < n; i++) {
        s2s_bounce(s2s, q[i], cond);
        pv_stanza_unref(q[i]);
    }
    free(q);
    s2s_release(s, drop);
}

/* --- outgoing ----------------------------------------------------------- */

static void
s2s_connect_timeout(void *arg)
{
    pv_s2s_stream_t *s = arg;

    s->timer = NULL;
    if (s->fail_cond != NULL)
        s2s_out_fail(s, s->fail_cond, "no resolver");
    else
        s2s_out_fail(s, "remote-server-timeout", "timed out");
}

static void
s2s_out_ready(pv_s2s_stream_t *s, const char *how)
{
    size_t i, n = s->n_queue;
    pv_stanza_t **q = s->queue;

    s->state = PV_S2S_OPEN;
    s->authed = 1;
    if (s->timer != NULL) {
        pv_timer_cancel(s->timer);
        s->timer = NULL;
    }
    pv_log(PV_LOG_INFO, "s2s", "s2sout#%lu %s->%s: authenticated (%s), "
           "%zu queued", s->id, s->local, s->remote, how, n);
    s->queue = NULL;
    s->n_queue = 0;
    for (i = 0; i < n; i++) {
        size_t len;
        const char *wire = pv_stanza_wire(q[i], &len);

        pv_s2s_write(s, wire, len);
        pv_stanza_unref(q[i]);
    }
    free(q);
}

static void
s2s_dns_done(void *arg, pv_dns_result_t *res)
{
    pv_s2s_stream_t *s = arg;

    s->query = NULL;
    if (res->status != PV_DNS_OK) {
        pv_dns_status_t st = res->status;

        pv_dns_result_free(res);
        s2s_out_fail(s, pv_dns_status_is_temporary(st)
                            ? "remote-server-timeout"
                            : "remote-server-not-found",
                     pv_dns_status_str(st));
        return;
    }
    s->res = res;
    s->cand = 0;
    s->next_cand = 0;
    s2s_out_try(s);
}

/* Happy eyeballs (RFC 8305 §5): the next address is tried when the
 * current attempt has not connected within this delay, or at once when
 * it fails; the first connection wins and the others are cancelled. */
#define S2S_ATTEMPT_DELAY_MS 250

/* One pending connect; it holds a reference on its stream until its
 * on_connect reports. */
struct pv_s2s_attempt_s {
    pv_s2s_stream_t *s;
    pv_conn_t *pending;
    size_t cand;
    pv_s2s_attempt_t *next;
};

static void
s2s_abort_attempts(pv_s2s_stream_t *s, const char *why)
{
    pv_s2s_attempt_t *a;

    /* each reports back (NULL) and drops its reference then; the list
     * is walked from its head again after each abort in case that report
     * came at once */
    for (;;) {
        pv_conn_t *p;

        for (a = s->attempts; a != NULL && a->pending == NULL; a = a->next)
            ;
        if (a == NULL)
            return;
        p = a->pending;
        a->pending = NULL;
        pv_conn_abort(p, why);
    }
}

static void
s2s_stagger(void *arg)
{
    pv_s2s_stream_t *s = arg;

    s->stagger = NULL;
    if (s->state == PV_S2S_CONNECTING)
        s2s_out_try(s);
}

static void
s2s_on_connect(void *arg, pv_conn_t *c, const char *err)
{
    pv_s2s_attempt_t *a = arg, **pp;
    pv_s2s_stream_t *s = a->s;
    const pv_dns_candidate_t *cand;
    size_t ci = a->cand;

    for (pp = &s->attempts; *pp != a; pp = &(*pp)->next)
        ;
    *pp = a->next;
    free(a);
    if (s->state != PV_S2S_CONNECTING) {
        /* failed, freed or another attempt won meanwhile: only our
         * reference is left */
        if (c != NULL)
            pv_conn_abort(c, "s2s gone");
        s2s_unref(s);
        return;
    }
    cand = &s->res->candidates[ci];
    if (c == NULL) {
        pv_log(PV_LOG_DEBUG, "s2s", "s2sout#%lu %s [%s]:%u: %s", s->id,
               s->remote, cand->ip, cand->port, err ? err : "failed");
        if (s->stagger != NULL) {
            pv_timer_cancel(s->stagger);
            s->stagger = NULL;
        }
        /* membership still holds s; the connect's reference goes after */
        s2s_out_try(s);
        s2s_unref(s);
        return;
    }
    if (s->stagger != NULL) {
        pv_timer_cancel(s->stagger);
        s->stagger = NULL;
    }
    s2s_abort_attempts(s, "another address answered first");
    /* the reference of the pending connect now belongs to the conn */
    s->cand = ci;
    s->conn = c;
    pv_conn_set_handler(c, &s2s_handler, s);
    pv_conn_set_max_queue(c, PV_CONN_MAX_QUEUE_DEFAULT);
    pv_log(PV_LOG_DEBUG, "s2s", "s2sout#%lu %s: connected to [%s]:%u%s",
           s->id, s->remote, cand->ip, cand->port,
           cand->is_direct_tls ? " (direct TLS)" : "");
    if (cand->is_direct_tls) {
        s2s_tls_t *t = s2s_tls_get(s->s2s, s->local);

        s->direct_tls = 1;
        s->state = PV_S2S_TLS_WAIT;
        if (t == NULL || t->client == NULL ||
            pv_conn_start_tls_client(c, t->client, s->remote,
                                     "xmpp-server") != PV_OK)
            s2s_out_fail(s, "remote-server-not-found", "tls failed");
        return;
    }
    s->state = PV_S2S_HEADER;
    s2s_send_header(s);
}

/* Starts an attempt on the next untried address; fails the link when
 * none is left and none is pending. */
static void
s2s_out_try(pv_s2s_stream_t *s)
{
    pv_loop_t *loop = s->s2s->srv->loop;

    while (s->res != NULL && s->next_cand < s->res->n_candidates) {
        const pv_dns_candidate_t *c = &s->res->candidates[s->next_cand];
        pv_s2s_attempt_t *a = pv_xcalloc(1, sizeof(*a));

        a->s = s;
        a->cand = s->next_cand++;
        s->state = PV_S2S_CONNECTING;
        a->pending = pv_conn_connect_tcp(loop, c->ip, c->port,
                                         s2s_on_connect, a);
        if (a->pending == NULL) {
            free(a);
            continue;
        }
        s->refs++;
        a->next = s->attempts;
        s->attempts = a;
        if (s->next_cand < s->res->n_candidates && s->stagger == NULL)
            s->stagger = pv_timer_add(loop, S2S_ATTEMPT_DELAY_MS, 0,
                                      s2s_stagger, s);
        return;
    }
    if (s->attempts == NULL)
        s2s_out_fail(s, "remote-server-not-found", "no address answered");
}

pv_s2s_stream_t *
pv_s2s_out_get(pv_s2s_t *s2s, const char *local, const char *remote)
{
    char *key = pv_xasprintf("%s %s", local, remote);
    pv_s2s_stream_t *s = pv_map_get(&s2s->out, key);
    const pv_core_conf_t *g = pv_s2s_conf(s2s);

    if (s != NULL && s->state != PV_S2S_CLOSED) {
        free(key);
        return s;
    }
    if (s != NULL) {
        /* closing: a new link takes its place */
        pv_map_del(&s2s->out, s->key);
        s->in_map = 0;
    }
    s = s2s_stream_new(s2s, 1);
    s->key = key;
    s->local = pv_xstrdup(local);
    s->remote = pv_xstrdup(remote);
    s->state = PV_S2S_RESOLVING;
    pv_map_put(&s2s->out, s->key, s);
    s->in_map = 1;
    s->timer = pv_timer_add(s2s->srv->loop, g->s2s_connect_timeout, 0,
                            s2s_connect_timeout, s);
    pv_log(PV_LOG_INFO, "s2s", "s2sout#%lu %s->%s: connecting", s->id,
           local, remote);
    if (s2s->dns == NULL ||
        (s->query = pv_dns_resolve_xmpp_server(s2s->dns, remote,
                                               s2s_dns_done, s)) == NULL) {
        /* report it later: the caller still uses s */
        s->fail_cond = "remote-server-not-found";
        pv_timer_cancel(s->timer);
        s->timer = pv_timer_add(s2s->srv->loop, 0, 0, s2s_connect_timeout,
                                s);
    }
    return s;
}

void
pv_s2s_route(pv_server_t *srv, pv_stanza_t *st)
{
    pv_s2s_t *s2s = s2s_get(srv);
    pv_s2s_stream_t *s;
    const char *local;

    if (s2s->shutting_down)
        return;
    if (st->from == NULL ||
        pv_server_host(srv, (local = st->from->domain)) == NULL) {
        pv_log(PV_LOG_DEBUG, "s2s", "not relaying a stanza from %s to %s",
               st->from ? st->from->full : "nobody", st->to->domain);
        return;
    }
    if (!pv_s2s_domain_allowed(s2s, st->to->domain)) {
        pv_log(PV_LOG_DEBUG, "s2s", "%s: not federating (s2s policy)",
               st->to->domain);
        s2s_bounce(s2s, st, "not-allowed");
        return;
    }
    s = pv_s2s_out_get(s2s, local, st->to->domain);
    if (s->state == PV_S2S_OPEN) {
        size_t len;
        const char *wire = pv_stanza_wire(st, &len);

        s->last_active = pv_loop_now_ms(srv->loop);
        pv_s2s_write(s, wire, len);
        return;
    }
    if ((long long)s->n_queue >= pv_s2s_conf(s2s)->s2s_queue_max) {
        if (!s->is_queue_full_logged)
            pv_log(PV_LOG_WARN, "s2s", "s2sout#%lu %s->%s: queue full "
                   "(s2s_queue_max %lld), refusing stanzas", s->id,
                   s->local, s->remote,
                   (long long)pv_s2s_conf(s2s)->s2s_queue_max);
        s->is_queue_full_logged = 1;
        s2s_bounce(s2s, st, "resource-constraint");
        return;
    }
    s->queue = pv_xrealloc(s->queue, (s->n_queue + 1) * sizeof(*s->queue));
    s->queue[s->n_queue++] = pv_stanza_ref(st);
}


static void
s2s_out_send_external(pv_s2s_stream_t *s)
{
    unsigned char enc[4 * 256 / 3 + 8];
    size_t l = strlen(s->local);
    pv_buf_t b = {0};

    if (l > 255)
        l = 255;
    /* XEP-0178 §3: the authorization identity is our domain */
    EVP_EncodeBlock(enc, (const unsigned char *)s->local, (int)l);
    pv_buf_printf(&b, "<auth xmlns='" NS_SASL "' mechanism='EXTERNAL'>%s"
                  "</auth>", enc);
    pv_s2s_write(s, b.data, b.len);
    pv_buf_free(&b);
    s->state = PV_S2S_SASL;
}

static int
s2s_offers_external(const pv_node_t *features)
{
    pv_node_t *mechs = pv_node_child(features, "mechanisms", NS_SASL);
    pv_node_t *m = NULL;

    while (mechs != NULL &&
           (m = pv_node_next_child(mechs, m, "mechanism", NS_SASL)) != NULL)
        if (m->children != NULL && m->children->name == NULL &&
            m->children->text_len == 8 &&
            memcmp(m->children->text, "EXTERNAL", 8) == 0)
            return 1;
    return 0;
}

/* Authentication once TLS is up (or not required): SASL EXTERNAL when
 * offered, then dialback where the policy allows it. */
static void
s2s_out_authenticate(pv_s2s_stream_t *s, const pv_node_t *features)
{
    if (features != NULL && !s->sasl_failed && s->tls &&
        s2s_offers_external(features)) {
        s2s_out_send_external(s);
        return;
    }
    if (s->cert_ok || pv_s2s_insecure_ok(s->s2s, s->remote)) {
        pv_s2s_db_send_result(s);
        return;
    }
    pv_s2s_stream_error(s, "policy-violation", "no acceptable authentication");
}

static void
s2s_out_features(pv_s2s_stream_t *s, pv_stanza_t *st)
{
    const pv_node_t *f = st->root;

    if (s->authed) {
        s2s_out_ready(s, "SASL EXTERNAL");
        pv_s2s_db_flush(s);
        return;
    }
    if (!s->tls && pv_node_child(f, "starttls", NS_TLS) != NULL) {
        s2s_puts(s, "<starttls xmlns='" NS_TLS "'/>");
        s->state = PV_S2S_STARTTLS;
        return;
    }
    if (!s->tls && pv_s2s_conf(s->s2s)->s2s_require_encryption) {
        pv_s2s_stream_error(s, "policy-violation", "peer offers no TLS");
        return;
    }
    /* db:verify may go out on a stream that is not authenticated yet
     * (XEP-0220 §2.4) */
    s->state = PV_S2S_FEATURES;
    pv_s2s_db_flush(s);
    s2s_out_authenticate(s, f);
}

static void
s2s_out_stanza(pv_s2s_stream_t *s, pv_stanza_t *st)
{
    const char *name = st->root->name, *ns = st->root->xmlns;

    if (strcmp(ns, PV_NS_STREAMS) == 0 && strcmp(name, "features") == 0 &&
        (s->state == PV_S2S_FEATURES || s->state == PV_S2S_OPEN)) {
        s2s_out_features(s, st);
    } else if (strcmp(ns, NS_TLS) == 0 && s->state == PV_S2S_STARTTLS) {
        s2s_tls_t *t;

        if (strcmp(name, "proceed") != 0) {
            s2s_out_fail(s, "remote-server-not-found", "starttls refused");
            return;
        }
        t = s2s_tls_get(s->s2s, s->local);
        pv_xmlstream_restart(s->xs);
        s->state = PV_S2S_TLS_WAIT;
        /* SNI is the XMPP domain (RFC 6120 §13.7.2.1) */
        if (t == NULL || t->client == NULL ||
            pv_conn_start_tls_client(s->conn, t->client, s->remote, NULL)
            != PV_OK)
            s2s_out_fail(s, "remote-server-not-found", "tls failed");
    } else if (strcmp(ns, NS_SASL) == 0 && s->state == PV_S2S_SASL) {
        if (strcmp(name, "success") == 0) {
            /* RFC 6120 §6.4.6: restart without TLS renegotiation */
            s->authed = 1;
            pv_xmlstream_restart(s->xs);
            s->state = PV_S2S_HEADER;
            s2s_send_header(s);
        } else {
            pv_log(PV_LOG_INFO, "s2s", "s2sout#%lu %s->%s: SASL EXTERNAL "
                   "refused; trying dialback", s->id, s->local, s->remote);
            s->sasl_failed = 1;
            s2s_out_authenticate(s, NULL);
        }
    } else if (strcmp(ns, NS_DB) == 0 && strcmp(name, "result") == 0 &&
               s->state == PV_S2S_DIALBACK) {
        const char *type = pv_node_attr(st->root, "type");

        if (type != NULL && strcmp(type, "valid") == 0) {
            s2s_out_ready(s, "dialback");
        } else {
            s2s_out_fail(s, "remote-server-not-found", "dialback refused");
        }
    } else if (strcmp(ns, NS_DB) == 0 && strcmp(name, "verify") == 0) {
        pv_s2s_db_out_verify(s, st);
    } else if (strcmp(ns, PV_NS_STREAMS) == 0 &&
               strcmp(name, "error") == 0) {
        pv_node_t *c = pv_node_first_element(st->root);

        pv_log(PV_LOG_INFO, "s2s", "s2sout#%lu %s->%s: stream error from "
               "peer: %s", s->id, s->local, s->remote,
               c ? c->name : "?");
        if (!s->authed) {
            s2s_out_fail(s, "remote-server-not-found", "peer stream error");
        } else {
            s->state = PV_S2S_CLOSED;
            pv_conn_close(s->conn);
        }
    } else if (st->kind != PV_STANZA_OTHER && s->authed) {
        /* XEP-0288 is not negotiated: stanzas have no business here */
        pv_s2s_stream_error(s, "unsupported-stanza-type", NULL);
    } else {
        pv_s2s_stream_error(s, "unsupported-stanza-type", name);
    }
}


/* --- incoming ----------------------------------------------------------- */

static int
s2s_in_authed(const pv_s2s_stream_t *s, const char *remote, const char *local)
{
    const pv_s2s_pair_t *p;

    for (p = s->pairs; p != NULL; p = p->next)
        if (strcmp(p->remote, remote) == 0 &&
            (local == NULL || strcmp(p->local, local) == 0))
            return 1;
    return 0;
}

void
pv_s2s_in_add_pair(pv_s2s_stream_t *s, const char *remote, const char *local)
{
    pv_s2s_pair_t *p;

    if (s2s_in_authed(s, remote, local))
        return;
    p = pv_xcalloc(1, sizeof(*p));
    p->remote = pv_xstrdup(remote);
    p->local = pv_xstrdup(local);
    p->next = s->pairs;
    s->pairs = p;
}

int
pv_s2s_peer_cert_ok(pv_s2s_stream_t *s, const char *domain)
{
    char err[256];

    if (!s->tls || domain == NULL)
        return 0;
    if (pv_conn_tls_verify(s->conn, domain, err, sizeof(err)) == PV_OK)
        return 1;
    pv_log(PV_LOG_DEBUG, "s2s", "%s#%lu: certificate not valid for %s: %s",
           s2s_dir(s), s->id, domain, err);
    return 0;
}

static void
s2s_in_features(pv_s2s_stream_t *s)
{
    const pv_core_conf_t *g = pv_s2s_conf(s->s2s);
    s2s_tls_t *t = s2s_tls_get(s->s2s, s->local);
    pv_buf_t b = {0};

    pv_buf_puts(&b, "<stream:features>");
    if (!s->tls && t != NULL && t->server != NULL) {
        pv_buf_puts(&b, "<starttls xmlns='" NS_TLS "'>");
        if (g->s2s_require_encryption)
            pv_buf_puts(&b, "<required/>");
        pv_buf_puts(&b, "</starttls>");
    }
    if (s->tls || !g->s2s_require_encryption) {
        /* XEP-0178: EXTERNAL only when the certificate names the peer */
        if (s->remote != NULL && !s2s_in_authed(s, s->remote, s->local) &&
            pv_s2s_peer_cert_ok(s, s->remote))
            pv_buf_puts(&b, "<mechanisms xmlns='" NS_SASL "'><mechanism>"
                            "EXTERNAL</mechanism></mechanisms>");
        pv_buf_puts(&b, "<dialback xmlns='" NS_DB_FEATURE "'><errors/>"
                        "</dialback>");
    }
    pv_buf_puts(&b, "</stream:features>");
    pv_s2s_write(s, b.data, b.len);
    pv_buf_free(&b);
}

static void
s2s_in_starttls(pv_s2s_stream_t *s)
{
    s2s_tls_t *t = s2s_tls_get(s->s2s, s->local);

    if (s->tls || t == NULL || t->server == NULL) {
        s2s_puts(s, "<failure xmlns='" NS_TLS "'/></stream:stream>");
        s->state = PV_S2S_CLOSED;
        pv_conn_close(s->conn);
        return;
    }
    s2s_puts(s, "<proceed xmlns='" NS_TLS "'/>");
    pv_xmlstream_restart(s->xs);
    s->state = PV_S2S_TLS_WAIT;
    if (pv_conn_start_tls_server(s->conn, t->server) != PV_OK)
        pv_s2s_stream_error(s, "internal-server-error", "tls failed");
}

static void
s2s_in_sasl(pv_s2s_stream_t *s, pv_stanza_t *st)
{
    static const char fail[] = "<failure xmlns='" NS_SASL "'>"
                               "<not-authorized/></failure>";
    const char *mech = pv_node_attr(st->root, "mechanism");
    const char *text = pv_node_text(st->root, st->arena);
    unsigned char dec[400];
    size_t tl = strlen(text);

    if (strcmp(st->root->name, "auth") != 0) {
        if (strcmp(st->root->name, "abort") == 0)
            pv_s2s_write(s, fail, sizeof(fail) - 1);
        else
            pv_s2s_stream_error(s, "unsupported-stanza-type", NULL);
        return;
    }
    if (mech == NULL || strcmp(mech, "EXTERNAL") != 0 || !s->tls ||
        s->remote == NULL) {
        s2s_puts(s, "<failure xmlns='" NS_SASL "'><invalid-mechanism/>"
                    "</failure>");
        return;
    }
    /* an authzid, when given, must be the stream's from domain */
    if (tl > 0 && strcmp(text, "=") != 0) {
        int n;

        if (tl >= sizeof(dec) * 3 / 4 || tl % 4 != 0 ||
            (n = EVP_DecodeBlock(dec, (const unsigned char *)text,
                                 (int)tl)) < 0) {
            s2s_puts(s, "<failure xmlns='" NS_SASL "'><incorrect-encoding/>"
                        "</failure>");
            return;
        }
        while (n > 0 && text[tl - 1] == '=' && tl-- > 0)
            n--;
        if ((size_t)n != strlen(s->remote) ||
            strncasecmp((const char *)dec, s->remote, (size_t)n) != 0) {
            s2s_puts(s, "<failure xmlns='" NS_SASL "'><invalid-authzid/>"
                        "</failure>");
            return;
        }
    }
    if (!pv_s2s_peer_cert_ok(s, s->remote)) {
        pv_s2s_write(s, fail, sizeof(fail) - 1);
        return;
    }
    pv_s2s_in_add_pair(s, s->remote, s->local);
    pv_log(PV_LOG_INFO, "s2s", "s2sin#%lu %s->%s: authenticated (SASL "
           "EXTERNAL)", s->id, s->remote, s->local);
    s2s_puts(s, "<success xmlns='" NS_SASL "'/>");
    pv_xmlstream_restart(s->xs);
    s->state = PV_S2S_HEADER;
    s->header_sent = 0;
}



/* A stanza from the peer: both addresses must be on an authenticated
 * pair (RFC 6120 §13.1, §4.9.3.9, §4.9.3.6). */
static void
s2s_in_deliver(pv_s2s_stream_t *s, pv_stanza_t *st)
{
    pv_host_t *h;

    if (pv_node_attr(st->root, "to") == NULL ||
        pv_node_attr(st->root, "from") == NULL) {
        pv_s2s_stream_error(s, "improper-addressing", NULL);
        return;
    }
    if (pv_stanza_parse_addrs(st, NULL) != PV_OK) {
        pv_log(PV_LOG_DEBUG, "s2s", "s2sin#%lu: dropping a stanza with a "
               "malformed address", s->id);
        return;
    }
    if (!s2s_in_authed(s, st->from->domain, NULL)) {
        pv_s2s_stream_error(s, s->pairs ? "invalid-from" : "not-authorized",
                         NULL);
        return;
    }
    if (!pv_s2s_domain_allowed(s->s2s, st->from->domain)) {
        pv_s2s_stream_error(s, "policy-violation", "federation with this "
                            "domain is not allowed here");
        return;
    }
    h = pv_server_host(s->s2s->srv, st->to->domain);
    if (h == NULL) {
        pv_s2s_stream_error(s, "host-unknown", NULL);
        return;
    }
    if (!s2s_in_authed(s, st->from->domain, h->name)) {
        pv_s2s_stream_error(s, "invalid-from", NULL);
        return;
    }
    pv_route_local(h, NULL, st);
}

static void
s2s_in_stanza(pv_s2s_stream_t *s, pv_stanza_t *st)
{
    const char *name = st->root->name, *ns = st->root->xmlns;

    if (strcmp(ns, NS_TLS) == 0 && strcmp(name, "starttls") == 0) {
        s2s_in_starttls(s);
    } else if (strcmp(ns, NS_SASL) == 0) {
        s2s_in_sasl(s, st);
    } else if (strcmp(ns, NS_DB) == 0 && strcmp(name, "result") == 0) {
        pv_s2s_db_in_result(s, st);
    } else if (strcmp(ns, NS_DB) == 0 && strcmp(name, "verify") == 0) {
        pv_s2s_db_in_verify(s, st);
    } else if (strcmp(ns, PV_NS_STREAMS) == 0 &&
               strcmp(name, "error") == 0) {
        pv_node_t *c = pv_node_first_element(st->root);

        pv_log(PV_LOG_INFO, "s2s", "s2sin#%lu: stream error from peer: %s",
               s->id, c ? c->name : "?");
        s->state = PV_S2S_CLOSED;
        pv_conn_close(s->conn);
    } else if (st->kind != PV_STANZA_OTHER) {
        if (!s->tls && pv_s2s_conf(s->s2s)->s2s_require_encryption)
            pv_s2s_stream_error(s, "policy-violation", "encryption required");
        else
            s2s_in_deliver(s, st);
    } else {
        pv_s2s_stream_error(s, "unsupported-stanza-type", NULL);
    }
}

/* --- parser callbacks ---------------------------------------------------- */

static void
s2s_xml_open(void *ud, const pv_stream_header_t *hdr)
{
    pv_s2s_stream_t *s = ud;

    if (s->state != PV_S2S_HEADER)
        return;
    if (s->is_out) {
        if (hdr->content_ns == NULL || strcmp(hdr->content_ns, NS_SERVER)) {
            pv_s2s_stream_error(s, "invalid-namespace", NULL);
            return;
        }
        if (hdr->version == NULL || strncmp(hdr->version, "1.", 2) != 0) {
            pv_s2s_stream_error(s, "unsupported-version", NULL);
            return;
        }
        snprintf(s->stream_id, sizeof(s->stream_id), "%s",
                 hdr->id ? hdr->id : "");
        s->state = PV_S2S_FEATURES;
        return;
    }
    /* incoming: the first header fixes the domains; later ones (after
     * STARTTLS or SASL) must agree */
    if (!s->header_sent) {
        unsigned char r[16];
        static const char hex[] = "0123456789abcdef";
        size_t i;
        char *local = hdr->to ? pv_jid_prep_domain(hdr->to,
                                                   strlen(hdr->to)) : NULL;
        char *remote = hdr->from ? pv_jid_prep_domain(hdr->from,
                                                      strlen(hdr->from))
                                 : NULL;

        RAND_bytes(r, sizeof(r));
        for (i = 0; i < sizeof(r); i++) {
            s->stream_id[2 * i] = hex[r[i] >> 4];
            s->stream_id[2 * i + 1] = hex[r[i] & 15];
        }
        s->stream_id[32] = '\0';
        if (s->local == NULL) {
            s->local = local;
            local = NULL;
        }
        if (s->remote == NULL) {
            s->remote = remote;
            remote = NULL;
        }
        free(local);
        free(remote);
        s2s_send_header(s);
    }
    if (hdr->content_ns == NULL || strcmp(hdr->content_ns, NS_SERVER)) {
        pv_s2s_stream_error(s, "invalid-namespace", NULL);
        return;
    }
    if (s->reject != NULL) {
        pv_s2s_stream_error(s, s->reject, NULL);
        return;
    }
    if (s->local == NULL || pv_server_host(s->s2s->srv, s->local) == NULL) {
        pv_s2s_stream_error(s, "host-unknown", NULL);
        return;
    }
    if (!pv_s2s_domain_allowed(s->s2s, s->remote)) {
        pv_log(PV_LOG_INFO, "s2s", "s2sin#%lu: %s is not allowed to "
               "federate (s2s policy)", s->id, s->remote);
        pv_s2s_stream_error(s, "policy-violation", "federation with this "
                            "domain is not allowed here");
        return;
    }
    if (s->s2s->shutting_down) {
        pv_s2s_stream_error(s, "system-shutdown", NULL);
        return;
    }
    s->state = PV_S2S_OPEN;
    if (hdr->version != NULL && strncmp(hdr->version, "1.", 2) == 0)
        s2s_in_features(s);
}

static void
s2s_xml_stanza(void *ud, pv_stanza_t *st)
{
    pv_s2s_stream_t *s = ud;

    if (s->state == PV_S2S_CLOSED || s->state == PV_S2S_HEADER ||
        s->state == PV_S2S_TLS_WAIT) {
        pv_stanza_unref(st);
        return;
    }
    s->refs++;
    if (s->is_out)
        s2s_out_stanza(s, st);
    else
        s2s_in_stanza(s, st);
    pv_stanza_unref(st);
    s2s_unref(s);
}

static void
s2s_xml_close(void *ud)
{
    pv_s2s_stream_t *s = ud;

    if (s->is_out && !s->authed) {
        s2s_out_fail(s, "remote-server-not-found", "closed by peer");
        return;
    }
    s2s_puts(s, "</stream:stream>");
    s->state = PV_S2S_CLOSED;
    if (s->conn != NULL)
        pv_conn_close(s->conn);
}

static void
s2s_xml_error(void *ud, const char *cond, const char *text)
{
    pv_s2s_stream_error(ud, cond, text);
}

/* --- connection callbacks ---------------------------------------------- */

static void
s2s_resume(void *arg)
{
    pv_s2s_stream_t *s = arg;

    s->resume = NULL;
    if (s->conn != NULL)
        pv_conn_resume(s->conn);
}

/* s2s_rate_limit: what was read is processed; reading then pauses until
 * the domain's bucket refills (TCP pushes back on the peer). */
static void
s2s_in_throttle(pv_s2s_stream_t *s, size_t bytes)
{
    uint64_t wait = pv_s2s_rate_charge(s->s2s, s->remote ? s->remote
                                       : pv_conn_peer_ip(s->conn), bytes);

    if (wait == 0 || s->resume != NULL)
        return;
    pv_log(PV_LOG_DEBUG, "s2s", "s2sin#%lu %s: over s2s_rate_limit, "
           "pausing %llu ms", s->id, s->remote ? s->remote : "?",
           (unsigned long long)wait);
    pv_conn_pause(s->conn);
    s->resume = pv_timer_add(s->s2s->srv->loop, wait, 0, s2s_resume, s);
}

static void
s2s_on_data(pv_conn_t *conn, const char *data, size_t len)
{
    pv_s2s_stream_t *s = pv_conn_data(conn);
    size_t n = len;

    s->last_active = pv_loop_now_ms(s->s2s->srv->loop);
    s->refs++;
    while (len > 0 && s->state != PV_S2S_CLOSED &&
           s->state != PV_S2S_TLS_WAIT &&
           s->xs != NULL) {
        size_t used = len;
        int rc = pv_xmlstream_feed(s->xs, data, len, &used);

        if (rc != PV_AGAIN)
            break;
        data += used;
        len -= used;
        /* RFC 6120 §5.4.3.3: nothing may follow <starttls/> in clear */
        if (s->state == PV_S2S_TLS_WAIT && len > 0)
            pv_s2s_stream_error(s, "policy-violation", NULL);
    }
    if (!s->is_out && s->conn != NULL && s->state != PV_S2S_CLOSED)
        s2s_in_throttle(s, n);
    s2s_unref(s);
}

static void
s2s_on_tls_done(pv_conn_t *conn, int ok, const char *err)
{
    pv_s2s_stream_t *s = pv_conn_data(conn);

    if (!ok) {
        pv_log(PV_LOG_INFO, "s2s", "%s#%lu %s: tls failed: %s", s2s_dir(s),
               s->id, pv_conn_peer_ip(conn), err ? err : "?");
        if (s->is_out)
            s2s_out_fail(s, "remote-server-not-found", "tls failed");
        else
            s->state = PV_S2S_CLOSED;
        return;
    }
    s->tls = 1;
    s->header_sent = 0;
    s->state = PV_S2S_HEADER;
    if (!s->is_out)
        return;
    /* RFC 6120 §13.7.2.1: the certificate must name the XMPP domain */
    s->cert_ok = pv_s2s_peer_cert_ok(s, s->remote);
    if (!s->cert_ok && !pv_s2s_insecure_ok(s->s2s, s->remote)) {
        s2s_out_fail(s, "remote-server-not-found",
                     "certificate not valid for the domain "
                     "(s2s_secure_auth)");
        return;
    }
    s2s_send_header(s);
}

static void
s2s_on_close(pv_conn_t *conn, const char *reason)
{
    pv_s2s_stream_t *s = pv_conn_data(conn);

    pv_log(PV_LOG_DEBUG, "s2s", "%s#%lu closed: %s", s2s_dir(s), s->id,
           reason ? reason : "");
    s->conn = NULL;
    if (s->is_out && s->state != PV_S2S_CLOSED && !s->authed) {
        /* try the next candidate before giving up */
        if (s->res != NULL && s->next_cand < s->res->n_candidates &&
            !s->s2s->shutting_down) {
            s->header_sent = 0;
            s->tls = 0;
            pv_xmlstream_restart(s->xs);
            s2s_out_try(s);
            s2s_unref(s);
            return;
        }
        s2s_out_fail(s, "remote-server-not-found",
                     reason ? reason : "closed");
    }
    s->state = PV_S2S_CLOSED;
    s2s_release(s, 1 + (unsigned)s2s_detach(s));
}

static void
s2s_accept(pv_server_t *srv, pv_conn_t *conn, int direct_tls)
{
    pv_s2s_t *s2s = s2s_get(srv);
    pv_s2s_stream_t *s = s2s_stream_new(s2s, 0);

    s->conn = conn;
    s->state = PV_S2S_HEADER;
    pv_conn_set_handler(conn, &s2s_handler, s);
    pv_conn_set_max_queue(conn, PV_CONN_MAX_QUEUE_DEFAULT);
    pv_log(PV_LOG_DEBUG, "s2s", "s2sin#%lu: connection from %s", s->id,
           pv_conn_peer_ip(conn));
    /* incoming links share max_connections(_per_ip) with clients */
    snprintf(s->peer_ip, sizeof(s->peer_ip), "%s", pv_conn_peer_ip(conn));
    if (s2s->shutting_down)
        s->reject = "system-shutdown";
    else if (pv_server_conn_opened(srv, s->peer_ip, &s->reject) == PV_OK)
        s->counted = 1;
    if (direct_tls) {
        s2s_tls_t *t = NULL;
        size_t i;

        /* the SNI callback picks the host's context; start on any */
        for (i = 0; i < srv->n_hosts && (t == NULL || t->server == NULL);
             i++)
            t = s2s_tls_get(s2s, srv->host_list[i]->name);
        s->direct_tls = 1;
        s->state = PV_S2S_TLS_WAIT;
        if (t == NULL || t->server == NULL ||
            pv_conn_start_tls_server(conn, t->server) != PV_OK) {
            pv_log(PV_LOG_ERROR, "s2s", "no certificate for direct TLS");
            s->state = PV_S2S_CLOSED;
            pv_conn_abort(conn, "no certificate");
        }
    }
}

void
pv_s2s_accept(void *arg, pv_conn_t *conn)
{
    s2s_accept(arg, conn, 0);
}

void
pv_s2s_accept_tls(void *arg, pv_conn_t *conn)
{
    s2s_accept(arg, conn, 1);
}

/* --- sweep, shutdown, free ------------------------------------------- */

void
pv_s2s_sweep(pv_server_t *srv)
{
    pv_s2s_t *s2s = srv->s2s;
    uint64_t now, idle;
    pv_s2s_stream_t *s, *next;

    if (s2s == NULL || s2s->shutting_down)
        return;
    pv_s2s_rate_sweep(s2s);
    now = pv_loop_now_ms(srv->loop);
    idle = pv_s2s_conf(s2s)->s2s_idle_timeout;
    for (s = s2s->streams; s != NULL; s = next) {
        next = s->next;
        if (s->state != PV_S2S_OPEN)
            continue;
        if (idle != PV_DURATION_OFF && now - s->last_active >= idle) {
            pv_log(PV_LOG_INFO, "s2s", "%s#%lu %s->%s: idle, closing",
                   s2s_dir(s), s->id, s->local ? s->local : "?",
                   s->remote ? s->remote : "?");
            if (s->is_out) {
                /* no new stanza may pick the closing link */
                pv_map_del(&s2s->out, s->key);
                s->in_map = 0;
            }
            s2s_puts(s, "</stream:stream>");
            s->state = PV_S2S_CLOSED;
            pv_conn_close(s->conn);
        } else if (now - s->last_active >= 1000 && s->xs != NULL) {
            pv_xmlstream_idle(s->xs);
        }
    }
}

void
pv_s2s_shutdown(pv_server_t *srv)
{
    pv_s2s_t *s2s = srv->s2s;
    pv_s2s_stream_t *s, *next;

    if (s2s == NULL || s2s->shutting_down)
        return;
    s2s->shutting_down = 1;
    for (s = s2s->streams; s != NULL; s = next) {
        next = s->next;
        if (s->conn != NULL && s->state != PV_S2S_TLS_WAIT)
            pv_s2s_stream_error(s, "system-shutdown", NULL);
        else if (s->is_out)
            s2s_out_fail(s, "remote-server-timeout", "shutdown");
    }
}

void
pv_s2s_reload(pv_server_t *srv)
{
    pv_s2s_t *s2s = srv->s2s;
    pv_s2s_stream_t *s;

    if (s2s == NULL || s2s->shutting_down)
        return;
    /* pending lookups move to the new resolver: cancelled ones would
     * never call back */
    for (s = s2s->streams; s != NULL; s = s->next)
        if (s->query != NULL) {
            pv_dns_cancel(s->query);
            s->query = NULL;
        }
    s2s_dns_free(s2s);
    s2s_dns_setup(s2s);
    for (s = s2s->streams; s != NULL; s = s->next)
        if (s->is_out && s->state == PV_S2S_RESOLVING && s2s->dns != NULL)
            s->query = pv_dns_resolve_xmpp_server(s2s->dns, s->remote,
                                                  s2s_dns_done, s);
}

void
pv_s2s_free(pv_server_t *srv)
{
    pv_s2s_t *s2s = srv->s2s;
    s2s_tls_t *t;

    if (s2s == NULL)
        return;
    s2s->shutting_down = 1;
    while (s2s->streams != NULL) {
        pv_s2s_stream_t *s = s2s->streams;
        unsigned drop;
        size_t k;

        for (k = 0; k < s->n_queue; k++)
            pv_stanza_unref(s->queue[k]);
        free(s->queue);
        s->queue = NULL;
        s->n_queue = 0;
        s->state = PV_S2S_CLOSED;
        drop = (unsigned)s2s_detach(s);
        if (s->conn != NULL) {
            /* its on_close must not reach the freed stream */
            pv_conn_set_handler(s->conn, &s2s_dead_handler, NULL);
            pv_conn_abort(s->conn, "server freed");
            s->conn = NULL;
            drop++;
        }
        /* a pending connect keeps its own reference and frees s when it
         * reports back (pv_loop_free() aborts it) */
        s2s_release(s, drop);
    }
    pv_map_clear(&s2s->out);
    s2s_dns_free(s2s);
    while ((t = s2s->tls) != NULL) {
        s2s->tls = t->next;
        pv_tls_ctx_unref(t->server);
        pv_tls_ctx_unref(t->client);
        free(t->host);
        free(t);
    }
    pv_s2s_rate_free(s2s);
    free(s2s);
    srv->s2s = NULL;
}

/* --- palaverctl check dns -------------------------------------------- */

typedef struct {
    pv_buf_t *out;
    int ok;
    int done;
    pv_loop_t *loop;
} check_dns_t;

static void
check_dns_done(void *arg, pv_dns_result_t *res)
{
    check_dns_t *c = arg;

    pv_dns_describe(res, c->out);
    c->ok = res->status == PV_DNS_OK;
    c->done = 1;
    pv_dns_result_free(res);
    pv_loop_stop(c->loop);
}

int
pv_s2s_check_dns(const pv_core_conf_t *g, const char *domain, pv_buf_t *out)
{
    pv_server_t fake;
    pv_gen_t gen;
    pv_config_t cfg;
    pv_s2s_t *s2s;
    check_dns_t c;

    /* the resolver settings exactly as the daemon builds them */
    memset(&fake, 0, sizeof(fake));
    memset(&gen, 0, sizeof(gen));
    memset(&cfg, 0, sizeof(cfg));
    cfg.global = *g;
    gen.cfg = &cfg;
    fake.gen = &gen;
    fake.loop = pv_loop_new();
    if (fake.loop == NULL)
        return PV_ERROR;
    s2s = s2s_get(&fake);
    memset(&c, 0, sizeof(c));
    c.out = out;
    c.loop = fake.loop;
    if (s2s->dns != NULL &&
        pv_dns_resolve_xmpp_server(s2s->dns, domain, check_dns_done, &c))
        pv_loop_run(fake.loop);
    if (!c.done)
        pv_buf_puts(out, "resolver not available\n");
    pv_s2s_free(&fake);
    pv_loop_free(fake.loop);
    return c.ok ? PV_OK : PV_ERROR;
}
