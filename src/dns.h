/* src/dns.h: the resolver s2s uses to find a remote XMPP server: the
 * RFC 6120 §3.2 / XEP-0368 procedure (SRV, then A/AAAA) over c-ares on the
 * loop, a static override table, special-use names refused (RFC 6761) and
 * the text `palaverctl check dns` prints. It hands out candidate addresses;
 * connecting and certificate checks are s2s.c's job. Loop thread only. */
#ifndef PALAVER_DNS_H
#define PALAVER_DNS_H

#include <stddef.h>
#include <stdint.h>

#include <palaver/defs.h>
#include <palaver/mem.h>

#include "loop.h"

typedef struct pv_dns_s pv_dns_t;
typedef struct pv_dns_query_s pv_dns_query_t;

/* Outcome of a resolution. s2s maps the temporary ones
 * (pv_dns_status_is_temporary()) to remote-server-timeout and the others
 * to remote-server-not-found (RFC 6120 §8.3.3.15, §8.3.3.16). */
typedef enum pv_dns_status_e {
    PV_DNS_OK = 0,
    PV_DNS_NXDOMAIN,    /* the name does not exist */
    PV_DNS_NODATA,      /* it exists but has no SRV, A nor AAAA records */
    PV_DNS_UNAVAILABLE, /* SRV target "." (RFC 2782): no XMPP service */
    PV_DNS_SERVFAIL,    /* the resolver failed, refused or answered junk */
    PV_DNS_TIMEOUT,     /* no answer after every try */
    PV_DNS_BAD_NAME,    /* malformed or special-use name; nothing was sent */
    PV_DNS_ERROR        /* local failure (sockets, memory) */
} pv_dns_status_t;

/* Lowercase name of a status ("ok", "nxdomain", "timeout", ...). */
const char *pv_dns_status_str(pv_dns_status_t status);
/* 1 for SERVFAIL, TIMEOUT and ERROR (trying again later may work). */
int pv_dns_status_is_temporary(pv_dns_status_t status);

/* How _xmpps-server (direct TLS) and _xmpp-server (STARTTLS) records are
 * ordered. XEP-0368 §3 rule 1: both sets SHOULD be mixed as one SRV set
 * (priorities and weights compared across them); an initiator MAY prefer
 * one kind, which the other two values do (each set is ordered by
 * RFC 2782 on its own, the preferred set first). */
typedef enum pv_dns_tls_order_e {
    PV_DNS_TLS_MIXED = 0,
    PV_DNS_DIRECT_TLS_FIRST,
    PV_DNS_STARTTLS_FIRST
} pv_dns_tls_order_t;

/* One override: connections to domain go to targets, in that order, and
 * DNS is not asked about the domain itself (names among the targets are
 * still resolved, A/AAAA only). A target is "[tls://]host[:port]": host
 * is a name, an IPv4 literal or a bracketed IPv6 literal; the port
 * defaults to 5269, or 5270 with tls:// (a direct TLS candidate, XEP-0368).
 * domain matches exactly (ASCII case-insensitive, trailing dot ignored). */
typedef struct pv_dns_override_s {
    const char *domain;
    const char *const *targets; /* NULL-terminated, at least one */
} pv_dns_override_t;

typedef struct pv_dns_opts_s {
    /* Name servers as "ip", "ip:port" or "[ipv6]:port", NULL-terminated;
     * NULL or empty uses the system's /etc/resolv.conf. */
    const char *const *servers;
    /* Terminated by an entry with domain == NULL; NULL for none. */
    const pv_dns_override_t *overrides;
    unsigned timeout_ms; /* per try; 0 = resolv.conf / c-ares default */
    unsigned tries;      /* 0 = resolv.conf / c-ares default */
    pv_dns_tls_order_t tls_order;
} pv_dns_opts_t;

/* One SRV record as received, in the order the candidates follow.
 * is_dot marks the "." target. addr_status and n_addrs say how resolving
 * the target went (PV_DNS_OK with n_addrs 0 when it was not tried: a
 * "." record, or past PV_DNS_MAX_TARGETS). */
typedef struct pv_dns_srv_s {
    const char *target; /* lowercase, no trailing dot; "." for the root */
    uint16_t priority;
    uint16_t weight;
    uint16_t port;
    unsigned is_direct_tls : 1;
    unsigned is_dot : 1;
    pv_dns_status_t addr_status;
    size_t n_addrs;
} pv_dns_srv_t;

/* Where to connect, best first. ip is a numeric literal for
 * pv_conn_connect_tcp(). host is the name ip came from (SRV target,
 * override host or the domain itself) for logs; certificates are checked
 * against the XMPP domain (RFC 6120 §13.7.2.1, RFC 6125 §6.2.1; an SRV
 * target is only a reference identity with DNSSEC, which we do not do),
 * and a direct TLS connection sends the domain as SNI (XEP-0368 §3). */
typedef struct pv_dns_candidate_s {
    char ip[46];
    int family; /* AF_INET or AF_INET6 */
    uint16_t port;
    unsigned is_direct_tls : 1;
    const char *host;
} pv_dns_candidate_t;

/* Limits against hostile answers: SRV targets resolved per lookup and
 * addresses kept per target. */
#define PV_DNS_MAX_TARGETS 16
#define PV_DNS_MAX_ADDRS 16
/* RFC 6120 §3.2.2 fallback port, and the direct TLS default
 * (CONTRACTS.md §3 s2s_direct_tls). */
#define PV_DNS_XMPP_SERVER_PORT 5269
#define PV_DNS_XMPPS_SERVER_PORT 5270

/* A finished resolution; everything in it lives until
 * pv_dns_result_free(). status is PV_DNS_OK exactly when n_candidates
 * > 0. srv_status[0] is the _xmpps-server query's outcome, srv_status[1]
 * _xmpp-server's (PV_DNS_OK and no records when not asked). */
typedef struct pv_dns_result_s {
    pv_dns_status_t status;
    const char *domain; /* normalised (lowercase A-labels, no dot) */
    unsigned is_override : 1;
    unsigned is_ip_literal : 1;
    unsigned is_srv_asked : 1;
    unsigned is_fallback : 1; /* A/AAAA of the domain on 5269 */
    pv_dns_status_t srv_status[2];
    const pv_dns_srv_t *srv;
    size_t n_srv;
    const pv_dns_candidate_t *candidates;
    size_t n_candidates;
    pv_arena_t *arena; /* private */
} pv_dns_result_t;

/* Gets the result of a query and takes ownership of it (free it with
 * pv_dns_result_free(), from the callback or later). Runs on the loop
 * from a deferred task, never from inside a pv_dns_* call, so it may call
 * pv_dns_resolve_xmpp_server(), pv_dns_cancel() on other queries and
 * pv_dns_free(). */
typedef void pv_dns_cb_t(void *arg, pv_dns_result_t *res);

/* Creates a resolver on loop (one per server; nothing is shared). opts
 * may be NULL (system servers, no overrides); it is copied. Returns NULL
 * with a reason in err (when err != NULL) for a bad server address, a bad
 * override, or when c-ares cannot start. */
pv_dns_t *pv_dns_new(pv_loop_t *loop, const pv_dns_opts_t *opts, char *err,
                     size_t errlen);

/* Cancels every pending query (their callbacks never run) and frees dns.
 * May be called from a query callback, and before or after
 * pv_loop_free() (which stops the resolver's I/O but leaves the memory to
 * this call). NULL is a no-op. */
void pv_dns_free(pv_dns_t *dns);

/* Starts the RFC 6120 §3.2 procedure for domain (UTF-8 or A-labels; a
 * trailing dot is ignored), with XEP-0368 direct TLS records:
 *  1. an override for domain wins: its targets, in order;
 *  2. an IP literal domain (RFC 7622 §3.2 allows them; IPv6 in brackets)
 *     is its own single candidate on port 5269, with no DNS;
 *  3. malformed names and RFC 6761/7686 special-use names ("invalid",
 *     "localhost" and their subdomains, ".onion") end with
 *     PV_DNS_BAD_NAME without any query;
 *  4. _xmpps-server._tcp and _xmpp-server._tcp SRV are asked in
 *     parallel and ordered (RFC 2782 priority, then weighted random
 *     choice; see pv_dns_opts_t.tls_order); a set whose only record is
 *     "." says the service is not offered: when no usable record remains
 *     the result is PV_DNS_UNAVAILABLE and there is no fallback
 *     (RFC 6120 §3.2.1, XEP-0368 §5);
 *  5. each target's A and AAAA are asked; the addresses of one target
 *     alternate between families, starting with the one RFC 6724 sorting
 *     put first (RFC 8305 §4); duplicates (same ip, port, kind) are
 *     dropped;
 *  6. without any SRV record, the domain's own A/AAAA on port 5269,
 *     STARTTLS (RFC 6120 §3.2.2).
 * cb(arg, res) runs exactly once, later, unless the query is cancelled
 * or dns freed first. The returned handle is valid until the callback
 * starts or pv_dns_cancel(); NULL (and no callback) only when the loop
 * has shut the resolver down. */
pv_dns_query_t *pv_dns_resolve_xmpp_server(pv_dns_t *dns, const char *domain,
                                           pv_dns_cb_t *cb, void *arg);

/* Forgets q: its callback never runs. Safe at any time before the
 * callback starts; not after it started, nor after pv_dns_free() or
 * pv_loop_free() (the handle is gone then). NULL is a no-op. */
void pv_dns_cancel(pv_dns_query_t *q);

void pv_dns_result_free(pv_dns_result_t *res);

/* Appends a human-readable account of res, one fact per line, to out:
 * the SRV answers in connection order, what each target resolved to,
 * the fallback, the candidates in order, and the status. For
 * `palaverctl check dns DOMAIN`. */
void pv_dns_describe(const pv_dns_result_t *res, pv_buf_t *out);

/* Checks an override target ("[tls://]host[:port]") for the config
 * setter; PV_ERROR with a reason in err when it is malformed. */
int pv_dns_check_target(const char *target, char *err, size_t errlen);

/* ---- Exposed for the unit tests ---- */

/* Orders recs in place by RFC 2782: ascending priority, and within a
 * priority a weighted random order (zero weights first in the running
 * sum, so they are picked rarely). rng is the generator's state; any
 * value but 0 works as a seed. */
void pv_dns_srv_order(pv_dns_srv_t *recs, size_t n, uint64_t *rng);
/* Replaces the generator's seed so that the order of equal-priority SRV
 * records repeats (tests); seeded from getrandom() otherwise. */
void pv_dns_set_seed(pv_dns_t *dns, uint64_t seed);

#endif
