/* src/dns.c: c-ares on the libuv loop, and the RFC 6120 §3.2 / XEP-0368
 * lookup of a remote XMPP server on top of it: SRV ordering (RFC 2782),
 * A/AAAA per target with family interleaving (RFC 8305), overrides,
 * special-use names. c-ares sockets are watched with uv_poll handles and
 * its retransmissions driven by one pv_timer. Connecting is s2s.c's job. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <ares.h>
#include <idn2.h>
#include <uv.h>

#include <palaver/log.h>
#include <palaver/mem.h>

#include "dns.h"

#define DNS_NAME_MAX 253
#define DNS_LABEL_MAX 63

/* c-ares T_SRV/T_A/T_AAAA and C_IN, spelled out to avoid arpa/nameser.h. */
#define DNS_CLASS_IN 1
#define DNS_TYPE_SRV 33

typedef struct dns_sock_s {
    uv_poll_t poll;
    ares_socket_t fd;
    pv_dns_t *dns;
    struct dns_sock_s *next;
} dns_sock_t;

typedef struct dns_override_s {
    char *domain;
    char **targets;
    size_t n_targets;
} dns_override_t;

struct pv_dns_s {
    pv_loop_obj_t obj;
    pv_loop_t *loop;
    ares_channel channel;
    dns_sock_t *socks;
    pv_timer_t *timer;
    pv_dns_query_t *queries; /* every live query, for pv_dns_free() */
    dns_override_t *overrides;
    size_t n_overrides;
    pv_dns_tls_order_t tls_order;
    uint64_t rng;
    unsigned is_halted : 1;
};

/* One address lookup (an SRV target, an override host, the fallback). */
typedef struct dns_target_s {
    pv_dns_query_t *q;
    const char *host;
    uint16_t port;
    unsigned is_direct_tls : 1;
    pv_dns_srv_t *srv; /* the record it came from, or NULL */
    pv_dns_status_t status;
    pv_dns_candidate_t *addrs; /* interleaved, in the result's arena */
    size_t n_addrs;
} dns_target_t;

typedef struct dns_srv_req_s {
    pv_dns_query_t *q;
    int idx; /* 0: _xmpps-server, 1: _xmpp-server */
    pv_dns_srv_t *recs;
    size_t n_recs;
} dns_srv_req_t;

enum {
    STAGE_SRV,
    STAGE_ADDR,
    STAGE_DONE
};

struct pv_dns_query_s {
    pv_dns_t *dns;
    pv_dns_query_t *prev, *next;
    pv_dns_cb_t *cb;
    void *arg;
    pv_dns_result_t *res;
    int stage;
    /* c-ares requests in flight plus a guard held while starting them,
     * because c-ares may call back before ares_getaddrinfo() returns. */
    unsigned n_pending;
    unsigned is_cancelled : 1;
    dns_srv_req_t srv_req[2];
    dns_target_t *targets;
    size_t n_targets;
    pv_defer_t defer;
};

static void dns_update_timer(pv_dns_t *dns);
static void query_release(pv_dns_query_t *q);

/* ---- statuses ---- */

const char *
pv_dns_status_str(pv_dns_status_t status)
{
    switch (status) {
    case PV_DNS_OK: return "ok";
    case PV_DNS_NXDOMAIN: return "nxdomain";
    case PV_DNS_NODATA: return "nodata";
    case PV_DNS_UNAVAILABLE: return "service-unavailable";
    case PV_DNS_SERVFAIL: return "servfail";
    case PV_DNS_TIMEOUT: return "timeout";
    case PV_DNS_BAD_NAME: return "bad-name";
    case PV_DNS_ERROR: return "error";
    }
    return "error";
}

int
pv_dns_status_is_temporary(pv_dns_status_t status)
{
    return status == PV_DNS_SERVFAIL || status == PV_DNS_TIMEOUT ||
           status == PV_DNS_ERROR;
}

static pv_dns_status_t
status_from_ares(int st)
{
    switch (st) {
    case ARES_SUCCESS: return PV_DNS_OK;
    case ARES_ENOTFOUND: return PV_DNS_NXDOMAIN;
    case ARES_ENODATA: return PV_DNS_NODATA;
    case ARES_ETIMEOUT: return PV_DNS_TIMEOUT;
    case ARES_ESERVFAIL:
    case ARES_EREFUSED:
    case ARES_EFORMERR:
    case ARES_ENOTIMP:
    case ARES_EBADRESP:
    case ARES_ECONNREFUSED: return PV_DNS_SERVFAIL;
    case ARES_EBADNAME: return PV_DNS_BAD_NAME;
    default: return PV_DNS_ERROR;
    }
}

/* When nothing resolved, the most hopeful failure wins: a temporary one
 * means a retry may succeed, so s2s should say timeout, not not-found. */
static int
status_rank(pv_dns_status_t st)
{
    switch (st) {
    case PV_DNS_TIMEOUT: return 7;
    case PV_DNS_SERVFAIL: return 6;
    case PV_DNS_ERROR: return 5;
    case PV_DNS_NODATA: return 4;
    case PV_DNS_NXDOMAIN: return 3;
    case PV_DNS_BAD_NAME: return 2;
    case PV_DNS_UNAVAILABLE: return 1;
    case PV_DNS_OK: return 0;
    }
    return 0;
}

/* ---- random numbers (splitmix64: tiny, seedable, good enough to spread
 * load; SRV selection is not a security decision) ---- */

static uint64_t
rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void
pv_dns_set_seed(pv_dns_t *dns, uint64_t seed)
{
    dns->rng = seed;
}

/* ---- RFC 2782 ordering ---- */

static int
srv_cmp_priority(const void *a, const void *b)
{
    const pv_dns_srv_t *x = a, *y = b;

    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    /* Zero weights first: RFC 2782 puts them at the start of the running
     * sum so that they get a very small chance. */
    if ((x->weight == 0) != (y->weight == 0))
        return x->weight == 0 ? -1 : 1;
    return 0;
}

void
pv_dns_srv_order(pv_dns_srv_t *recs, size_t n, uint64_t *rng)
{
    size_t start = 0;

    /* qsort is not stable, but records equal under the comparison are
     * shuffled by the weighted choice below anyway. */
    qsort(recs, n, sizeof(*recs), srv_cmp_priority);
    while (start < n) {
        size_t end = start, i;

        while (end < n && recs[end].priority == recs[start].priority)
            end++;
        /* RFC 2782: sum the weights of the unordered records, pick a
         * uniform number in [0, sum], take the first record whose running
         * sum reaches it, move it to the front, repeat with the rest. */
        for (i = start; i + 1 < end; i++) {
            uint64_t sum = 0, pick, run = 0;
            size_t j, chosen = end - 1;

            for (j = i; j < end; j++)
                sum += recs[j].weight;
            if (sum == 0) {
                /* All zero: RFC 2782 leaves the order open; spread the
                 * load evenly instead of always taking the first. */
                chosen = i + (size_t)(rng_next(rng) % (end - i));
            } else {
                pick = rng_next(rng) % (sum + 1);
                for (j = i; j < end; j++) {
                    run += recs[j].weight;
                    if (run >= pick) {
                        chosen = j;
                        break;
                    }
                }
            }
            if (chosen != i) {
                pv_dns_srv_t tmp = recs[chosen];

                /* Keep the rest in place (zero weights stay in front). */
                memmove(&recs[i + 1], &recs[i], (chosen - i) * sizeof(*recs));
                recs[i] = tmp;
            }
        }
        start = end;
    }
}

/* ---- names and literals ---- */

/* Lowercases name into out (at most DNS_NAME_MAX + 1 bytes), drops one
 * trailing dot and checks the LDH syntax of every label. */
static int
name_normalise(const char *name, char *out)
{
    size_t len = strlen(name), i, label = 0;

    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > DNS_NAME_MAX)
        return PV_ERROR;
    for (i = 0; i < len; i++) {
        char c = name[i];

        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c == '.') {
            if (label == 0 || out[i - 1] == '-')
                return PV_ERROR;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   (c == '-' && label > 0)) {
            if (++label > DNS_LABEL_MAX)
                return PV_ERROR;
        } else {
            return PV_ERROR;
        }
        out[i] = c;
    }
    if (out[len - 1] == '-')
        return PV_ERROR;
    out[len] = '\0';
    return PV_OK;
}

/* RFC 6761 §6.3 (localhost), §6.4 (invalid) and RFC 7686 (onion) names
 * must not reach DNS: localhost is this machine, not a peer; invalid
 * never exists; onion needs Tor. "test" and "example" are left alone
 * (RFC 6761 §6.2, §6.5: applications do not special-case them), so
 * tests can serve them from a stub server. */
static int
name_is_special(const char *name)
{
    static const char *const tlds[] = {"invalid", "localhost", "onion"};
    const char *last = strrchr(name, '.');
    size_t i;

    last = last ? last + 1 : name;
    for (i = 0; i < PV_COUNTOF(tlds); i++)
        if (strcmp(last, tlds[i]) == 0)
            return 1;
    return 0;
}

/* Parses an IP literal ("192.0.2.1", "[2001:db8::1]" or bare IPv6) into
 * a candidate's ip and family. */
static int
ip_literal(const char *s, char *ip, int *family)
{
    char buf[64];
    unsigned char bin[16];
    size_t len = strlen(s);

    if (len >= sizeof(buf))
        return PV_ERROR;
    if (s[0] == '[') {
        if (len < 3 || s[len - 1] != ']')
            return PV_ERROR;
        memcpy(buf, s + 1, len - 2);
        buf[len - 2] = '\0';
    } else {
        memcpy(buf, s, len + 1);
    }
    if (inet_pton(AF_INET, buf, bin) == 1) {
        *family = AF_INET;
        inet_ntop(AF_INET, bin, ip, 46);
        return PV_OK;
    }
    if (inet_pton(AF_INET6, buf, bin) == 1) {
        *family = AF_INET6;
        inet_ntop(AF_INET6, bin, ip, 46);
        return PV_OK;
    }
    return PV_ERROR;
}

/* "[tls://]host[:port]" into its parts; host is written to hostbuf. */
static int
target_parse(const char *s, char *hostbuf, size_t hostlen, uint16_t *port,
             int *is_tls, char *err, size_t errlen)
{
    const char *host = s, *colon = NULL, *end;
    size_t len;

    *is_tls = 0;
    if (strncmp(s, "tls://", 6) == 0) {
        *is_tls = 1;
        host = s + 6;
    }
    *port = *is_tls ? PV_DNS_XMPPS_SERVER_PORT : PV_DNS_XMPP_SERVER_PORT;
    if (host[0] == '[') {
        end = strchr(host, ']');
        if (end == NULL) {
            snprintf(err, errlen, "'%s': missing ']'", s);
            return PV_ERROR;
        }
        end++;
        if (*end == ':')
            colon = end;
        else if (*end != '\0') {
            snprintf(err, errlen, "'%s': junk after ']'", s);
            return PV_ERROR;
        }
    } else {
        colon = strchr(host, ':');
        if (colon != NULL && strchr(colon + 1, ':') != NULL) {
            snprintf(err, errlen, "'%s': put IPv6 addresses in brackets", s);
            return PV_ERROR;
        }
        end = colon ? colon : host + strlen(host);
    }
    if (colon != NULL) {
        char *stop;
        long p;

        errno = 0;
        p = strtol(colon + 1, &stop, 10);
        if (colon[1] < '0' || colon[1] > '9' || *stop != '\0' || p < 1 ||
            p > 65535 || errno != 0) {
            snprintf(err, errlen, "'%s': bad port", s);
            return PV_ERROR;
        }
        *port = (uint16_t)p;
    }
    len = (size_t)(end - host);
    if (len == 0 || len >= hostlen) {
        snprintf(err, errlen, "'%s': bad host", s);
        return PV_ERROR;
    }
    memcpy(hostbuf, host, len);
    hostbuf[len] = '\0';
    {
        char ip[46], norm[DNS_NAME_MAX + 1];
        int family;

        if (ip_literal(hostbuf, ip, &family) == PV_OK) {
            strcpy(hostbuf, ip);
            return PV_OK;
        }
        if (hostbuf[0] == '[' || name_normalise(hostbuf, norm) != PV_OK) {
            snprintf(err, errlen, "'%s': bad host", s);
            return PV_ERROR;
        }
        strcpy(hostbuf, norm);
    }
    return PV_OK;
}

int
pv_dns_check_target(const char *target, char *err, size_t errlen)
{
    char host[DNS_NAME_MAX + 1], dummy[1];
    uint16_t port;
    int is_tls;

    if (err == NULL) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    return target_parse(target, host, sizeof(host), &port, &is_tls, err,
                        errlen);
}

/* ---- c-ares on the loop ---- */

static void
sock_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

static void
sock_close(dns_sock_t *s)
{
    uv_close((uv_handle_t *)&s->poll, sock_closed_cb);
}

static void
sock_poll_cb(uv_poll_t *h, int status, int events)
{
    dns_sock_t *s = h->data;
    pv_dns_t *dns = s->dns;
    ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

    /* On a poll error let c-ares read and write so it sees the error on
     * the socket itself and moves on to the next server. */
    if (status < 0 || (events & UV_READABLE))
        rfd = s->fd;
    if (status < 0 || (events & UV_WRITABLE))
        wfd = s->fd;
    /* s may be closed by c-ares in here; only dns is used afterwards. */
    ares_process_fd(dns->channel, rfd, wfd);
    dns_update_timer(dns);
}

/* c-ares says which sockets it wants watched; (0, 0) comes right before
 * it closes one, and the poll must stop before the fd goes. */
static void
sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    pv_dns_t *dns = data;
    dns_sock_t **pp, *s;
    int events = 0, rc;

    for (pp = &dns->socks; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->fd == fd)
            break;
    s = *pp;
    if (!readable && !writable) {
        if (s != NULL) {
            *pp = s->next;
            sock_close(s);
        }
        return;
    }
    if (s == NULL) {
        s = pv_xcalloc(1, sizeof(*s));
        rc = uv_poll_init(pv_loop_uv(dns->loop), &s->poll, fd);
        if (rc != 0) {
            /* The query then ends by timeout. */
            pv_log(PV_LOG_ERROR, NULL, "dns: cannot watch socket: %s",
                   uv_strerror(rc));
            free(s);
            return;
        }
        s->poll.data = s;
        s->fd = fd;
        s->dns = dns;
        s->next = dns->socks;
        dns->socks = s;
    }
    if (readable)
        events |= UV_READABLE;
    if (writable)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, sock_poll_cb);
}

static void
timer_cb(void *arg)
{
    pv_dns_t *dns = arg;

    /* A one-shot pv_timer frees itself after this callback. */
    dns->timer = NULL;
    ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_update_timer(dns);
}

static void
dns_update_timer(pv_dns_t *dns)
{
    struct timeval tv, *tvp;
    uint64_t ms;

    if (dns->is_halted)
        return;
    tvp = ares_timeout(dns->channel, NULL, &tv);
    if (tvp == NULL) {
        pv_timer_cancel(dns->timer);
        dns->timer = NULL;
        return;
    }
    /* Round up: firing early would only spin. */
    ms = (uint64_t)tvp->tv_sec * 1000 + ((uint64_t)tvp->tv_usec + 999) / 1000;
    if (dns->timer != NULL)
        pv_timer_again(dns->timer, ms);
    else
        dns->timer = pv_timer_add(dns->loop, ms, 0, timer_cb, dns);
}

/* ---- queries ---- */

static void
query_unlink(pv_dns_query_t *q)
{
    pv_dns_t *dns = q->dns;

    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        dns->queries = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

static void
query_free(pv_dns_query_t *q)
{
    query_unlink(q);
    pv_loop_defer_cancel(q->dns->loop, &q->defer);
    pv_dns_result_free(q->res);
    free(q);
}

static void
query_deliver_cb(void *arg)
{
    pv_dns_query_t *q = arg;
    pv_dns_result_t *res = q->res;
    pv_dns_cb_t *cb = q->cb;
    void *cb_arg = q->arg;

    q->res = NULL;
    query_free(q);
    cb(cb_arg, res);
}

/* Results always go out from a deferred task: callers never see their
 * callback run inside pv_dns_resolve_xmpp_server(), and the callback is
 * never inside c-ares, so it may free the resolver. */
static void
query_finish(pv_dns_query_t *q, pv_dns_status_t status)
{
    q->stage = STAGE_DONE;
    q->res->status = status;
    pv_loop_defer_node(q->dns->loop, &q->defer, query_deliver_cb, q);
}

static int
candidate_is_dup(const pv_dns_candidate_t *c, size_t n,
                 const pv_dns_candidate_t *x)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (c[i].port == x->port && c[i].is_direct_tls == x->is_direct_tls &&
            strcmp(c[i].ip, x->ip) == 0)
            return 1;
    return 0;
}

/* Every address lookup is back: candidates in target order. */
static void
query_addr_done(pv_dns_query_t *q)
{
    pv_dns_result_t *res = q->res;
    pv_dns_candidate_t *cands;
    pv_dns_status_t worst = PV_DNS_OK;
    size_t i, j, n = 0, total = 0;

    for (i = 0; i < q->n_targets; i++)
        total += q->targets[i].n_addrs;
    cands = pv_arena_calloc(res->arena, (total ? total : 1) * sizeof(*cands));
    for (i = 0; i < q->n_targets; i++) {
        dns_target_t *t = &q->targets[i];

        if (t->srv != NULL) {
            t->srv->addr_status = t->status;
            t->srv->n_addrs = t->n_addrs;
        }
        if (t->n_addrs == 0 && status_rank(t->status) > status_rank(worst))
            worst = t->status;
        for (j = 0; j < t->n_addrs; j++)
            if (!candidate_is_dup(cands, n, &t->addrs[j]))
                cands[n++] = t->addrs[j];
    }
    res->candidates = cands;
    res->n_candidates = n;
    if (n > 0)
        query_finish(q, PV_DNS_OK);
    else
        query_finish(q, worst == PV_DNS_OK ? PV_DNS_NODATA : worst);
}

static void
target_add_addr(dns_target_t *t, pv_arena_t *arena, int family,
                const struct sockaddr *sa)
{
    pv_dns_candidate_t *c;

    if (t->addrs == NULL)
        t->addrs = pv_arena_calloc(arena, PV_DNS_MAX_ADDRS * sizeof(*t->addrs));
    if (t->n_addrs >= PV_DNS_MAX_ADDRS)
        return;
    c = &t->addrs[t->n_addrs];
    c->family = family;
    c->port = t->port;
    c->is_direct_tls = t->is_direct_tls;
    c->host = t->host;
    if (family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->ip,
                  sizeof(c->ip));
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
                  c->ip, sizeof(c->ip));
    t->n_addrs++;
}

static void
addrinfo_cb(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    dns_target_t *t = arg;
    pv_dns_query_t *q = t->q;

    (void)timeouts;
    t->status = status_from_ares(status);
    if (status == ARES_SUCCESS && ai != NULL && !q->is_cancelled) {
        const struct ares_addrinfo_node *n, *fam[2] = {NULL, NULL};
        int first = -1, k;

        /* RFC 8305 §4: keep the RFC 6724 order c-ares gave, but
         * alternate families, starting with the family of the first
         * address, so that one broken family costs one attempt. */
        for (n = ai->nodes; n != NULL; n = n->ai_next) {
            k = n->ai_family == AF_INET6 ? 1 : 0;
            if (n->ai_family != AF_INET && n->ai_family != AF_INET6)
                continue;
            if (first < 0)
                first = k;
            if (fam[k] == NULL)
                fam[k] = n;
        }
        k = first < 0 ? 0 : first;
        while (fam[0] != NULL || fam[1] != NULL) {
            const struct ares_addrinfo_node *cur = fam[k];

            if (cur == NULL) {
                k = !k;
                continue;
            }
            target_add_addr(t, q->res->arena, cur->ai_family, cur->ai_addr);
            for (n = cur->ai_next; n != NULL; n = n->ai_next)
                if (n->ai_family == cur->ai_family)
                    break;
            fam[k] = n;
            k = !k;
        }
        if (t->n_addrs == 0)
            t->status = PV_DNS_NODATA;
    }
    if (ai != NULL)
        ares_freeaddrinfo(ai);
    query_release(q);
}

/* Starts A/AAAA lookups for every target (literals need none). */
static void
query_start_addr(pv_dns_query_t *q)
{
    struct ares_addrinfo_hints hints;
    size_t i;

    q->stage = STAGE_ADDR;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    q->n_pending++; /* guard */
    for (i = 0; i < q->n_targets; i++) {
        dns_target_t *t = &q->targets[i];
        char ip[46];
        int family;

        if (ip_literal(t->host, ip, &family) == PV_OK) {
            pv_dns_candidate_t *c;

            t->addrs = pv_arena_calloc(q->res->arena, sizeof(*t->addrs));
            c = &t->addrs[0];
            memcpy(c->ip, ip, sizeof(c->ip));
            c->family = family;
            c->port = t->port;
            c->is_direct_tls = t->is_direct_tls;
            c->host = t->host;
            t->n_addrs = 1;
            continue;
        }
        q->n_pending++;
        ares_getaddrinfo(q->dns->channel, t->host, NULL, &hints, addrinfo_cb,
                         t);
    }
    dns_update_timer(q->dns);
    query_release(q);
}

static dns_target_t *
query_alloc_targets(pv_dns_query_t *q, size_t n)
{
    q->targets =
        pv_arena_calloc(q->res->arena, (n ? n : 1) * sizeof(*q->targets));
    q->n_targets = 0;
    return q->targets;
}

static void
query_add_target(pv_dns_query_t *q, const char *host, uint16_t port,
                 int is_direct_tls, pv_dns_srv_t *srv)
{
    dns_target_t *t = &q->targets[q->n_targets++];

    t->q = q;
    t->host = host;
    t->port = port;
    t->is_direct_tls = is_direct_tls ? 1 : 0;
    t->srv = srv;
    t->status = PV_DNS_OK;
}

static size_t
srv_usable(const dns_srv_req_t *r)
{
    size_t i, n = 0;

    for (i = 0; i < r->n_recs; i++)
        n += !r->recs[i].is_dot;
    return n;
}

/* Both SRV answers are in: order them, or fall back. */
static void
query_srv_done(pv_dns_query_t *q)
{
    pv_dns_t *dns = q->dns;
    pv_dns_result_t *res = q->res;
    dns_srv_req_t *r = q->srv_req;
    size_t n_usable = srv_usable(&r[0]) + srv_usable(&r[1]);
    size_t n_all = r[0].n_recs + r[1].n_recs, i, n;
    pv_dns_srv_t *all;
    int has_dot = 0;

    all = pv_arena_calloc(res->arena, (n_all ? n_all : 1) * sizeof(*all));
    n = 0;
    for (i = 0; i < 2; i++) {
        if (r[i].n_recs > 0)
            memcpy(&all[n], r[i].recs, r[i].n_recs * sizeof(*all));
        n += r[i].n_recs;
        /* A set whose only record is "." says the service is not
         * offered (RFC 2782); a "." mixed with real records is junk. */
        if (r[i].n_recs > 0 && srv_usable(&r[i]) == 0)
            has_dot = 1;
    }
    if (dns->tls_order == PV_DNS_TLS_MIXED) {
        pv_dns_srv_order(all, n_all, &dns->rng);
    } else {
        size_t n0 = r[0].n_recs;

        /* Each set by itself, the preferred one first. */
        pv_dns_srv_order(all, n0, &dns->rng);
        pv_dns_srv_order(all + n0, n_all - n0, &dns->rng);
        if (dns->tls_order == PV_DNS_STARTTLS_FIRST && n0 > 0 && n_all > n0) {
            pv_dns_srv_t *tmp =
                pv_arena_alloc(res->arena, n_all * sizeof(*tmp));

            memcpy(tmp, all + n0, (n_all - n0) * sizeof(*tmp));
            memcpy(tmp + (n_all - n0), all, n0 * sizeof(*tmp));
            all = tmp;
        }
    }
    /* "." records go last: they are shown, never tried. */
    {
        size_t w = 0;
        pv_dns_srv_t *sorted =
            pv_arena_alloc(res->arena, (n_all ? n_all : 1) * sizeof(*sorted));

        for (i = 0; i < n_all; i++)
            if (!all[i].is_dot)
                sorted[w++] = all[i];
        for (i = 0; i < n_all; i++)
            if (all[i].is_dot)
                sorted[w++] = all[i];
        all = sorted;
    }
    res->srv = all;
    res->n_srv = n_all;

    if (n_usable == 0) {
        if (has_dot) {
            /* RFC 6120 §3.2.1, XEP-0368 §5: no A/AAAA fallback. */
            query_finish(q, PV_DNS_UNAVAILABLE);
            return;
        }
        /* RFC 6120 §3.2.2: whatever made SRV fail, try the domain. */
        res->is_fallback = 1;
        query_alloc_targets(q, 1);
        query_add_target(q, res->domain, PV_DNS_XMPP_SERVER_PORT, 0, NULL);
        query_start_addr(q);
        return;
    }
    n = n_usable < PV_DNS_MAX_TARGETS ? n_usable : PV_DNS_MAX_TARGETS;
    query_alloc_targets(q, n);
    for (i = 0; i < n; i++)
        query_add_target(q, all[i].target, all[i].port, all[i].is_direct_tls,
                         &all[i]);
    query_start_addr(q);
}

static void
srv_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    dns_srv_req_t *r = arg;
    pv_dns_query_t *q = r->q;
    pv_dns_result_t *res = q->res;

    (void)timeouts;
    res->srv_status[r->idx] = status_from_ares(status);
    if (status == ARES_SUCCESS && !q->is_cancelled) {
        struct ares_srv_reply *srv = NULL, *s;
        size_t n = 0;
        int rc = ares_parse_srv_reply(abuf, alen, &srv);

        if (rc != ARES_SUCCESS) {
            res->srv_status[r->idx] = status_from_ares(rc);
        } else {
            for (s = srv; s != NULL; s = s->next)
                n++;
            r->recs =
                pv_arena_calloc(res->arena, (n ? n : 1) * sizeof(*r->recs));
            for (s = srv; s != NULL; s = s->next) {
                pv_dns_srv_t *rec = &r->recs[r->n_recs];
                char norm[DNS_NAME_MAX + 1];

                rec->priority = s->priority;
                rec->weight = s->weight;
                rec->port = s->port;
                rec->is_direct_tls = r->idx == 0;
                /* c-ares expands the root name to "". */
                if (s->host[0] == '\0' || strcmp(s->host, ".") == 0) {
                    rec->is_dot = 1;
                    rec->target = ".";
                } else if (name_normalise(s->host, norm) == PV_OK) {
                    rec->target = pv_arena_strdup(res->arena, norm);
                } else {
                    /* Not a host name: never resolved, never counted. */
                    continue;
                }
                r->n_recs++;
            }
            ares_free_data(srv);
            if (r->n_recs == 0)
                res->srv_status[r->idx] = PV_DNS_NODATA;
        }
    }
    query_release(q);
}

static void
query_release(pv_dns_query_t *q)
{
    if (--q->n_pending > 0)
        return;
    if (q->is_cancelled) {
        query_free(q);
        return;
    }
    if (q->stage == STAGE_SRV)
        query_srv_done(q);
    else if (q->stage == STAGE_ADDR)
        query_addr_done(q);
}

static const dns_override_t *
override_find(const pv_dns_t *dns, const char *domain)
{
    size_t i;

    for (i = 0; i < dns->n_overrides; i++)
        if (strcmp(dns->overrides[i].domain, domain) == 0)
            return &dns->overrides[i];
    return NULL;
}

/* Puts domain in its DNS form: A-labels (IDNA2008 via libidn2, as
 * jid.c does), lowercase, no trailing dot. */
static int
domain_prepare(const char *domain, char *out)
{
    const unsigned char *p;
    int rc;

    for (p = (const unsigned char *)domain; *p != '\0'; p++)
        if (*p >= 0x80)
            break;
    if (*p != '\0') {
        uint8_t *ace = NULL;

        rc = idn2_lookup_u8((const uint8_t *)domain, &ace,
                            IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
        if (rc != IDN2_OK)
            return PV_ERROR;
        rc = name_normalise((const char *)ace, out);
        idn2_free(ace);
        return rc;
    }
    return name_normalise(domain, out);
}

pv_dns_query_t *
pv_dns_resolve_xmpp_server(pv_dns_t *dns, const char *domain, pv_dns_cb_t *cb,
                           void *arg)
{
    pv_dns_query_t *q;
    pv_dns_result_t *res;
    const dns_override_t *ov;
    char norm[DNS_NAME_MAX + 1], ip[46];
    int family, is_name;
    size_t i;

    if (dns->is_halted)
        return NULL;
    q = pv_xcalloc(1, sizeof(*q));
    q->dns = dns;
    q->cb = cb;
    q->arg = arg;
    q->next = dns->queries;
    if (dns->queries != NULL)
        dns->queries->prev = q;
    dns->queries = q;
    res = q->res = pv_xcalloc(1, sizeof(*res));
    res->arena = pv_arena_new(1024);

    if (strlen(domain) > 2 * DNS_NAME_MAX) {
        res->domain = pv_arena_strndup(res->arena, domain, DNS_NAME_MAX);
        query_finish(q, PV_DNS_BAD_NAME);
        return q;
    }
    is_name = domain_prepare(domain, norm) == PV_OK;
    res->domain = pv_arena_strdup(res->arena, is_name ? norm : domain);
    ov = is_name ? override_find(dns, norm) : NULL;
    if (ov != NULL) {
        res->is_override = 1;
        query_alloc_targets(q, ov->n_targets);
        for (i = 0; i < ov->n_targets; i++) {
            char host[DNS_NAME_MAX + 1], e[2];
            uint16_t port;
            int is_tls;

            /* Checked by pv_dns_new(). */
            target_parse(ov->targets[i], host, sizeof(host), &port, &is_tls, e,
                         sizeof(e));
            query_add_target(q, pv_arena_strdup(res->arena, host), port, is_tls,
                             NULL);
        }
        query_start_addr(q);
        return q;
    }
    if (ip_literal(domain, ip, &family) == PV_OK) {
        res->is_ip_literal = 1;
        query_alloc_targets(q, 1);
        query_add_target(q, pv_arena_strdup(res->arena, ip),
                         PV_DNS_XMPP_SERVER_PORT, 0, NULL);
        query_start_addr(q);
        return q;
    }
    if (!is_name) {
        query_finish(q, PV_DNS_BAD_NAME);
        return q;
    }
    if (name_is_special(norm)) {
        query_finish(q, PV_DNS_BAD_NAME);
        return q;
    }

    res->is_srv_asked = 1;
    q->stage = STAGE_SRV;
    q->n_pending = 1; /* guard */
    for (i = 0; i < 2; i++) {
        char *name =
            pv_arena_printf(res->arena, "_%s._tcp.%s.",
                            i == 0 ? "xmpps-server" : "xmpp-server", norm);

        q->srv_req[i].q = q;
        q->srv_req[i].idx = (int)i;
        q->n_pending++;
        /* ares_query, not ares_search: XMPP domains are fully qualified
         * and must not get search domains appended. */
        ares_query(dns->channel, name, DNS_CLASS_IN, DNS_TYPE_SRV, srv_cb,
                   &q->srv_req[i]);
    }
    dns_update_timer(dns);
    query_release(q);
    return q;
}

void
pv_dns_cancel(pv_dns_query_t *q)
{
    if (q == NULL || q->is_cancelled)
        return;
    q->is_cancelled = 1;
    q->cb = NULL;
    /* c-ares still holds pointers into q; the last of its callbacks
     * frees it. Nothing in flight: free now. */
    if (q->n_pending == 0)
        query_free(q);
}

void
pv_dns_result_free(pv_dns_result_t *res)
{
    if (res == NULL)
        return;
    pv_arena_free(res->arena);
    free(res);
}

/* ---- the resolver ---- */

/* Stops all I/O: queries are cancelled, c-ares destroyed (it calls back
 * every query in flight with ARES_EDESTRUCTION, which frees them), the
 * poll handles and the timer closed. The struct stays for pv_dns_free(). */
static void
dns_halt(pv_dns_t *dns)
{
    pv_dns_query_t *q, *next;

    if (dns->is_halted)
        return;
    for (q = dns->queries; q != NULL; q = next) {
        next = q->next;
        q->is_cancelled = 1;
        q->cb = NULL;
        if (q->n_pending == 0)
            query_free(q);
    }
    ares_destroy(dns->channel);
    dns->channel = NULL;
    dns->is_halted = 1;
    while (dns->socks != NULL) {
        dns_sock_t *s = dns->socks;

        dns->socks = s->next;
        sock_close(s);
    }
    pv_timer_cancel(dns->timer);
    dns->timer = NULL;
    pv_loop_untrack(dns->loop, &dns->obj);
}

static void
dns_shutdown(pv_loop_obj_t *obj)
{
    dns_halt((pv_dns_t *)obj);
}

static void
overrides_free(pv_dns_t *dns)
{
    size_t i, j;

    for (i = 0; i < dns->n_overrides; i++) {
        for (j = 0; j < dns->overrides[i].n_targets; j++)
            free(dns->overrides[i].targets[j]);
        free(dns->overrides[i].targets);
        free(dns->overrides[i].domain);
    }
    free(dns->overrides);
}

static int
overrides_copy(pv_dns_t *dns, const pv_dns_override_t *ov, char *err,
               size_t errlen)
{
    size_t n = 0, i, j;

    while (ov != NULL && ov[n].domain != NULL)
        n++;
    dns->overrides = pv_xcalloc(n ? n : 1, sizeof(*dns->overrides));
    for (i = 0; i < n; i++) {
        dns_override_t *d = &dns->overrides[i];
        char norm[DNS_NAME_MAX + 1];
        size_t m = 0;

        dns->n_overrides++;
        if (domain_prepare(ov[i].domain, norm) != PV_OK) {
            snprintf(err, errlen, "override '%s': bad domain", ov[i].domain);
            return PV_ERROR;
        }
        d->domain = pv_xstrdup(norm);
        while (ov[i].targets != NULL && ov[i].targets[m] != NULL)
            m++;
        if (m == 0) {
            snprintf(err, errlen, "override '%s': no targets", ov[i].domain);
            return PV_ERROR;
        }
        d->targets = pv_xcalloc(m, sizeof(*d->targets));
        for (j = 0; j < m; j++) {
            if (pv_dns_check_target(ov[i].targets[j], err, errlen) != PV_OK)
                return PV_ERROR;
            d->targets[j] = pv_xstrdup(ov[i].targets[j]);
            d->n_targets++;
        }
    }
    return PV_OK;
}

static int
servers_set(pv_dns_t *dns, const char *const *servers, char *err, size_t errlen)
{
    pv_buf_t csv = {0};
    size_t i;
    int rc;

    if (servers == NULL || servers[0] == NULL)
        return PV_OK;
    for (i = 0; servers[i] != NULL; i++) {
        if (servers[i][0] == '\0' || strchr(servers[i], ',') != NULL) {
            snprintf(err, errlen, "bad dns server '%s'", servers[i]);
            pv_buf_free(&csv);
            return PV_ERROR;
        }
        pv_buf_printf(&csv, "%s%s", i ? "," : "", servers[i]);
    }
    rc = ares_set_servers_ports_csv(dns->channel, csv.data);
    pv_buf_free(&csv);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "bad dns servers: %s", ares_strerror(rc));
        return PV_ERROR;
    }
    return PV_OK;
}

pv_dns_t *
pv_dns_new(pv_loop_t *loop, const pv_dns_opts_t *opts, char *err, size_t errlen)
{
    static const pv_dns_opts_t no_opts;
    pv_dns_t *dns = pv_xcalloc(1, sizeof(*dns));
    struct ares_options ao;
    char dummy[1];
    int mask, rc;

    if (err == NULL) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (opts == NULL)
        opts = &no_opts;
    dns->loop = loop;
    dns->tls_order = opts->tls_order;
    if (getrandom(&dns->rng, sizeof(dns->rng), 0) != sizeof(dns->rng))
        dns->rng = (uint64_t)(uintptr_t)dns ^ pv_loop_now_ms(loop);
    if (overrides_copy(dns, opts->overrides, err, errlen) != PV_OK) {
        overrides_free(dns);
        free(dns);
        return NULL;
    }

    memset(&ao, 0, sizeof(ao));
    /* No search domains and no hosts file: a remote XMPP domain is a
     * fully qualified name that only DNS answers for. */
    mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS | ARES_OPT_DOMAINS |
           ARES_OPT_FLAGS;
    ao.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
    ao.sock_state_cb = sock_state_cb;
    ao.sock_state_cb_data = dns;
    ao.lookups = (char *)"b";
    ao.domains = NULL;
    ao.ndomains = 0;
    if (opts->timeout_ms > 0) {
        mask |= ARES_OPT_TIMEOUTMS;
        ao.timeout = (int)opts->timeout_ms;
    }
    if (opts->tries > 0) {
        mask |= ARES_OPT_TRIES;
        ao.tries = (int)opts->tries;
    }
    /* ares_library_init() only matters on Windows; not calling it keeps
     * this free of process-wide state. */
    rc = ares_init_options(&dns->channel, &ao, mask);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "cannot start c-ares: %s", ares_strerror(rc));
        overrides_free(dns);
        free(dns);
        return NULL;
    }
    if (servers_set(dns, opts->servers, err, errlen) != PV_OK) {
        ares_destroy(dns->channel);
        overrides_free(dns);
        free(dns);
        return NULL;
    }
    pv_loop_track(loop, &dns->obj, dns_shutdown);
    return dns;
}

void
pv_dns_free(pv_dns_t *dns)
{
    if (dns == NULL)
        return;
    dns_halt(dns);
    overrides_free(dns);
    free(dns);
}

/* ---- palaverctl check dns ---- */

void
pv_dns_describe(const pv_dns_result_t *res, pv_buf_t *out)
{
    size_t i;

    pv_buf_printf(out, "domain %s\n", res->domain ? res->domain : "");
    if (res->is_override)
        pv_buf_puts(out, "source: static override (s2s_override)\n");
    else if (res->is_ip_literal)
        pv_buf_puts(out, "source: IP literal, no DNS\n");
    else if (!res->is_srv_asked)
        pv_buf_puts(out, "source: special-use or malformed name, no DNS\n");
    if (res->is_srv_asked) {
        for (i = 0; i < 2; i++) {
            pv_buf_printf(out, "srv _%s._tcp.%s: %s\n",
                          i == 0 ? "xmpps-server" : "xmpp-server", res->domain,
                          pv_dns_status_str(res->srv_status[i]));
        }
    }
    for (i = 0; i < res->n_srv; i++) {
        const pv_dns_srv_t *s = &res->srv[i];

        pv_buf_printf(out, "  %s prio %u weight %u port %u target %s",
                      s->is_direct_tls ? "xmpps-server" : "xmpp-server",
                      (unsigned)s->priority, (unsigned)s->weight,
                      (unsigned)s->port, s->target);
        if (s->is_dot)
            pv_buf_puts(out, " (service not offered)\n");
        else if (s->addr_status != PV_DNS_OK)
            pv_buf_printf(out, " -> %s\n", pv_dns_status_str(s->addr_status));
        else
            pv_buf_printf(out, " -> %zu address%s\n", s->n_addrs,
                          s->n_addrs == 1 ? "" : "es");
    }
    if (res->is_fallback)
        pv_buf_printf(out, "fallback: A/AAAA of %s on port %u\n", res->domain,
                      (unsigned)PV_DNS_XMPP_SERVER_PORT);
    for (i = 0; i < res->n_candidates; i++) {
        const pv_dns_candidate_t *c = &res->candidates[i];

        pv_buf_printf(out, "candidate %zu: %s%s%s port %u %s (%s)\n", i + 1,
                      c->family == AF_INET6 ? "[" : "", c->ip,
                      c->family == AF_INET6 ? "]" : "", (unsigned)c->port,
                      c->is_direct_tls ? "direct-tls" : "starttls", c->host);
    }
    pv_buf_printf(out, "status: %s\n", pv_dns_status_str(res->status));
}
