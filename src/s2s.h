/* src/s2s.h: what s2s.c and s2s_dialback.c share (internal to the
 * core): the stream object of one server-to-server connection, the
 * federation state hanging off pv_server_t, and the helpers each file
 * lends the other. The entry points for the rest of the core are in
 * palaver.h ("s2s.c"). Loop thread only. */
#ifndef PALAVER_S2S_H
#define PALAVER_S2S_H

#include "dns.h"
#include "palaver.h"
#include "xmlstream.h"

#define NS_SERVER "jabber:server"
#define NS_DB "jabber:server:dialback"
#define NS_DB_FEATURE "urn:xmpp:features:dialback"
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_STREAM_ERR "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_STANZA_ERR "urn:ietf:params:xml:ns:xmpp-stanzas"

typedef enum {
    PV_S2S_RESOLVING,   /* out: waiting for DNS */
    PV_S2S_CONNECTING,  /* out: TCP connect in progress */
    PV_S2S_TLS_WAIT,    /* TLS handshake in progress */
    PV_S2S_HEADER,      /* waiting for the (next) stream header */
    PV_S2S_FEATURES,    /* out: waiting for <stream:features/> */
    PV_S2S_STARTTLS,    /* out: sent <starttls/>, waiting for <proceed/> */
    PV_S2S_SASL,        /* out: sent <auth/> */
    PV_S2S_DIALBACK,    /* out: sent <db:result/> */
    PV_S2S_OPEN,        /* in: header answered; out: authenticated */
    PV_S2S_CLOSED
} pv_s2s_state_t;

typedef struct pv_s2s_stream_s pv_s2s_stream_t;
typedef struct pv_s2s_bucket_s pv_s2s_bucket_t;
typedef struct pv_s2s_attempt_s pv_s2s_attempt_t;

/* A db:verify we asked on an outgoing link for an incoming stream. */
typedef struct pv_s2s_verify_s {
    char *stream_id;         /* of the incoming stream */
    char *key;
    unsigned sent : 1;
    struct pv_s2s_verify_s *next;
} pv_s2s_verify_t;

/* A (remote, local) pair authenticated on an incoming stream. */
typedef struct pv_s2s_pair_s {
    char *remote, *local;
    struct pv_s2s_pair_s *next;
} pv_s2s_pair_t;

struct pv_s2s_stream_s {
    pv_s2s_t *s2s;
    pv_conn_t *conn;
    pv_s2s_attempt_t *attempts; /* out: pending connects (s2s.c) */
    pv_timer_t *stagger;     /* out: starts the next attempt */
    pv_xmlstream_t *xs;
    unsigned refs;
    pv_s2s_state_t state;
    unsigned long id;
    char *key;               /* out: "local remote", the map key */
    char *local, *remote;    /* remote may be NULL on an incoming stream */
    char stream_id[33];      /* in: ours; out: the peer's */
    uint64_t last_active;
    pv_timer_t *timer;       /* out: connect timeout until open */
    /* out */
    pv_dns_query_t *query;
    pv_dns_result_t *res;
    size_t cand;             /* the candidate connected to */
    size_t next_cand;        /* the first one not tried yet */
    pv_stanza_t **queue;
    size_t n_queue;
    int is_queue_full_logged;   /* one log line per link, not per stanza */
    pv_s2s_verify_t *verifies;
    const char *fail_cond;   /* bounce condition when it fails */
    /* in */
    pv_s2s_pair_t *pairs;
    pv_timer_t *resume;      /* in: paused over s2s_rate_limit */
    const char *reject;      /* in: stream error once the header is out */
    char peer_ip[48];        /* in: for the connection counts */
    unsigned counted : 1;    /* in: in the server's connection counts */
    unsigned is_out : 1;
    unsigned tls : 1;
    unsigned direct_tls : 1;
    unsigned header_sent : 1;
    unsigned cert_ok : 1;    /* peer certificate valid for remote */
    unsigned authed : 1;     /* out: SASL or dialback succeeded */
    unsigned sasl_failed : 1;
    unsigned in_map : 1;
    unsigned attached : 1;   /* in the stream list; for outgoing streams
                              * that membership holds a reference (the
                              * others: the pending connect, the conn);
                              * an incoming stream's only one is its
                              * conn's */
    pv_s2s_stream_t *prev, *next;
};

struct pv_s2s_s {
    pv_server_t *srv;
    pv_dns_t *dns;
    pv_dns_override_t *overrides;
    char **override_strs;
    pv_map_t out;            /* "local remote" -> outgoing stream */
    pv_s2s_stream_t *streams;
    struct s2s_tls_s *tls;
    uint8_t secret[32];      /* dialback secret, per process */
    pv_map_t buckets;        /* remote domain -> rate bucket */
    unsigned shutting_down : 1;
};

/* --- s2s.c ------------------------------------------------------------- */

/* The global directives of the running generation. */
const pv_core_conf_t *pv_s2s_conf(const pv_s2s_t *s2s);
/* Writes on s unless it is closed; borrowed data. */
void pv_s2s_write(pv_s2s_stream_t *s, const char *data, size_t len);
/* Sends the stream error cond (with optional text) and closes s; an
 * outgoing stream that was not authenticated fails (its queue bounces).
 * s may be freed on return unless the caller holds a reference. */
void pv_s2s_stream_error(pv_s2s_stream_t *s, const char *cond,
                         const char *text);
/* 1 when s has TLS and the peer's certificate is valid for domain
 * (RFC 6125). */
int pv_s2s_peer_cert_ok(pv_s2s_stream_t *s, const char *domain);
/* 1 when the policy allows dialback without a valid certificate for
 * domain (s2s_secure_auth off, or domain in s2s_insecure_domains). */
int pv_s2s_insecure_ok(const pv_s2s_t *s2s, const char *domain);
/* Records remote -> local as authenticated on incoming stream s. */
void pv_s2s_in_add_pair(pv_s2s_stream_t *s, const char *remote,
                        const char *local);
/* The outgoing link local -> remote, started when there is none (or only
 * a closing one). Borrowed: owned by the federation state. */
pv_s2s_stream_t *pv_s2s_out_get(pv_s2s_t *s2s, const char *local,
                                const char *remote);

/* --- s2s_dialback.c ------------------------------------------------------ */

/* Sends <db:result/> with our key on outgoing stream s (XEP-0220 §2.1.1)
 * and waits for the answer (PV_S2S_DIALBACK). */
void pv_s2s_db_send_result(pv_s2s_stream_t *s);
/* Sends the db:verify requests queued on outgoing stream s that were not
 * sent yet. */
void pv_s2s_db_flush(pv_s2s_stream_t *s);
/* <db:verify type=.../> answered on outgoing stream s: the incoming
 * stream that asked is told, and authenticated when valid. */
void pv_s2s_db_out_verify(pv_s2s_stream_t *s, pv_stanza_t *st);
/* Outgoing stream s failed: the incoming streams waiting for its answers
 * get type='invalid'. */
void pv_s2s_db_fail_all(pv_s2s_stream_t *s);
/* <db:result/> and <db:verify/> received on incoming stream s. */
void pv_s2s_db_in_result(pv_s2s_stream_t *s, pv_stanza_t *st);
void pv_s2s_db_in_verify(pv_s2s_stream_t *s, pv_stanza_t *st);

/* --- s2s_policy.c ------------------------------------------------------ */

/* False when s2s_deny_domains names domain, or s2s_allow_domains is set
 * and does not. */
int pv_s2s_domain_allowed(const pv_s2s_t *s2s, const char *domain);
/* Charges bytes read from remote domain key (or a peer address before the
 * header names one) to its bucket; returns 0, or how many ms its streams
 * should pause reading to stay within s2s_rate_limit. */
uint64_t pv_s2s_rate_charge(pv_s2s_t *s2s, const char *key, size_t bytes);
/* Drops buckets idle for a minute (called from the sweep). */
void pv_s2s_rate_sweep(pv_s2s_t *s2s);
void pv_s2s_rate_free(pv_s2s_t *s2s);

#endif
