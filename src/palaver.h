/* src/palaver.h: the core's internal objects (server, host, module,
 * session, c2s stream) and the prototypes shared between core files,
 * grouped by the file that defines them. Modules never include this. */
#ifndef PV_PALAVER_H
#define PV_PALAVER_H

#include <palaver/module.h>

#include "conf_core.h"
#include "conn.h"
#include "loop.h"
#include "map.h"
#include "tls.h"

typedef struct pv_c2s_s pv_c2s_t;
typedef struct pv_s2s_s pv_s2s_t;
typedef struct pv_user_s pv_user_t;

/* A configuration generation pinned by the hosts built from it. */
typedef struct pv_gen_s {
    pv_config_t *cfg;
    unsigned refs;
} pv_gen_t;

/* A loaded module (process-wide); per-host state is in pv_modinst_t. */
struct pv_module_s {
    const pv_module_def_t *def;
    pv_conf_module_t decl;  /* what the config engine sees */
    void *dl;              /* dlopen handle, NULL when linked in */
    int initialised;
    pv_module_t *next;
};

typedef struct pv_modinst_s {
    pv_module_t *module;
    void *conf;            /* owned by the config generation */
    void *data;            /* module's own, pv_module_set_host_data() */
    size_t slot_offset;    /* into a session's module data block */
    int active;            /* host_init succeeded */
} pv_modinst_t;

typedef struct pv_hentry_s {
    const pv_hook_t *hook;
    pv_module_t *module;
} pv_hentry_t;

typedef struct pv_hlist_s {
    pv_hentry_t *v;
    size_t n;
} pv_hlist_t;

struct pv_mtimer_s {
    pv_timer_t *timer;
    pv_host_t *host;
    pv_module_t *module;
    void (*cb)(void *arg);
    void *arg;
    int one_shot;
    struct pv_mtimer_s *prev, *next;
};

/* A served domain (vhost or component) of one configuration generation.
 * Refcounted: sessions pin the generation their host came from. */
struct pv_host_s {
    unsigned refs;
    pv_server_t *server;
    pv_gen_t *gen;                /* reference */
    const pv_host_conf_t *conf;
    const char *name;             /* conf->name */
    pv_tls_ctx_t *tls;            /* NULL: no certificate for this host */
    pv_modinst_t *mods;
    size_t n_mods;
    size_t session_data_size;
    pv_hlist_t hooks[PV_EV_COUNT_][4];
    pv_hlist_t pre_hooks[PV_EV_COUNT_];
    pv_hlist_t preauth_hooks[PV_EV_COUNT_];
    char **features;              /* sorted, unique, malloc'd */
    size_t n_features;
    struct { const pv_identity_t *id; } *identities;
    size_t n_identities;
    char *caps_ver;
    pv_map_t stores;              /* "module.name" -> pv_store_t */
    struct pv_mtimer_s *timers;
    int activated;
};

/* The registry entry of one local account with bound resources. */
struct pv_user_s {
    char *bare;                   /* map key */
    pv_session_t *sessions;       /* linked by next_res */
};

typedef enum { PV_SESSION_C2S } pv_session_kind_t;

struct pv_session_s {
    pv_session_kind_t kind;
    pv_server_t *server;
    pv_host_t *host;              /* reference */
    pv_jid_t jid;                 /* malloc'd, full JID */
    pv_user_t *user;
    pv_session_t *next_res;
    pv_c2s_t *c2s;                /* transport, NULL when detached */
    unsigned long id;
    uint32_t stanzas_in;          /* from the client, for XEP-0198 */
    int priority;
    unsigned available : 1;
    unsigned closing : 1;
    unsigned char *mod_data;      /* host->session_data_size bytes */
};

typedef struct pv_counter_s {
    char *key;                    /* IP address */
    unsigned n;
    uint64_t window_start;
} pv_counter_t;

/* http.c (issue 7): counters for /metrics, bumped where the events
 * happen (c2s.c, server.c). */
typedef struct pv_metrics_s {
    uint64_t stanzas_in[4];       /* by pv_stanza_kind_t */
    uint64_t stanzas_out[4];
    uint64_t auth_failures;
} pv_metrics_t;
struct pv_http_s;

struct pv_server_s {
    pv_loop_t *loop;
    pv_gen_t *gen;                /* current generation */
    pv_gen_t *boot_gen;           /* the one the listeners, storage and
                                   * user come from (restart-only) */
    char *config_path;
    pv_module_t *modules;         /* every module loaded so far */
    pv_map_t hosts;               /* name -> pv_host_t (current gen) */
    pv_host_t **host_list;
    size_t n_hosts;
    pv_map_t users;               /* bare JID -> pv_user_t */
    pv_storage_t *storage;
    pv_async_t *storage_wake;
    pv_listener_t **listeners;
    size_t n_listeners;
    pv_buf_t fanout_buf;          /* c2s.c: one readdressed stanza */
    int *raw_fds;                 /* per listener: socket bound for a
                                   * service module (TURN, proxy65), or -1 */
    int *raw_ports;
    pv_listener_t *control;
    pv_c2s_t *c2s_list;           /* every client stream */
    pv_s2s_t *s2s;                /* federation state, created on first
                                   * use (s2s.c) */
    size_t n_conns;
    pv_map_t conns_per_ip;        /* ip -> pv_counter_t */
    pv_map_t auth_failures;       /* ip -> pv_counter_t */
    pv_map_t deleting;            /* "user@host" of accounts being deleted */
    unsigned long next_id;
    uint8_t secret[32];           /* per-process: fake SCRAM salts */
    int shutting_down;
    int shutdown_polls;           /* 50 ms rounds waited for streams */
    int in_process;               /* palaverctl without a daemon */
    struct pv_http_s *http;       /* http.c: NULL without http listeners */
    pv_metrics_t metrics;         /* http.c: /metrics counters */
};

/* server.c */
#define PV_GLOBAL(srv) (&(srv)->gen->cfg->global)
void pv_gen_unref(pv_gen_t *g);
int pv_server_conn_opened(pv_server_t *srv, const char *ip,
                          const char **reject);
pv_server_t *pv_server_new(const char *config_path, int in_process);
/* Loads the configuration; prints every error to stderr as FILE:LINE.
 * Returns the generation or NULL. */
pv_config_t *pv_server_load_config(pv_server_t *srv, const char *path,
                                   int to_stderr);
int pv_server_apply_config(pv_server_t *srv, pv_config_t *cfg);
/* Opens the store, applies cfg (taking ownership, also on failure) and,
 * unless in_process, binds listeners, drops privileges and notifies
 * readiness. */
int pv_server_start(pv_server_t *srv, pv_config_t *cfg);
int pv_server_open_storage(pv_server_t *srv, const char *path);
int pv_server_listen(pv_server_t *srv);
int pv_server_run(pv_server_t *srv);
void pv_server_free(pv_server_t *srv);
pv_host_t *pv_server_host(pv_server_t *srv, const char *name);
/* Per-IP counters with a time window (auth failures). */
int pv_server_auth_blocked(pv_server_t *srv, const char *ip);
void pv_server_auth_failed(pv_server_t *srv, const char *ip);
void pv_server_conn_closed(pv_server_t *srv, const char *ip);
void pv_server_reload(pv_server_t *srv);
void pv_server_shutdown(pv_server_t *srv);
pv_tls_ctx_t *pv_server_sni(void *arg, const char *servername);

/* module.c */
const pv_module_def_t *pv_module_find_static(const char *name);
/* Finds or loads module name (module_path NULL: only already loaded or
 * linked-in modules). */
pv_module_t *pv_module_load(pv_server_t *srv, const char *name,
                            const char *module_path, char *err,
                            size_t errlen);
void pv_module_unload_all(pv_server_t *srv);
pv_modinst_t *pv_host_modinst(pv_host_t *h, const pv_module_t *m);

/* host.c */
const char *const *pv_core_contact(const pv_core_conf_t *cc,
                                   const char *kind);
pv_host_t *pv_host_new(pv_server_t *srv, pv_gen_t *gen,
                       const pv_host_conf_t *conf);
int pv_host_activate(pv_host_t *h);
pv_host_t *pv_host_ref(pv_host_t *h);
void pv_host_unref(pv_host_t *h);

/* event.c */
void pv_event_build(pv_host_t *h);
void pv_event_clear(pv_host_t *h);
/* Dispatches a stanza event; returns PV_HANDLED or PV_PASS. stage 0:
 * main, 1: pre-routing (PV_HOOK_PRE), 2: unauthenticated (PV_HOOK_PREAUTH). */
pv_rc_t pv_event_stanza(pv_event_t *ev, int stage);

/* session.c */
/* Binds resource (NULL: generated) for user on c2s; a session holding
 * the same full JID is closed with <conflict/>. Returns NULL and sets
 * *cond on failure. */
pv_session_t *pv_session_bind(pv_c2s_t *c2s, pv_host_t *h, const char *user,
                              const char *resource, const char **cond);
void pv_session_destroy(pv_session_t *s);
pv_user_t *pv_user_find(pv_server_t *srv, const char *bare);
pv_session_t *pv_session_find(pv_server_t *srv, const pv_jid_t *full);
void pv_session_set_presence(pv_session_t *s, int available, int priority);
/* Destroys every session without a stream (shutdown: hibernated
 * sessions hand their queues over before the store closes). */
void pv_session_end_detached(pv_server_t *srv);

/* router.c */
void pv_route_local(pv_host_t *h, pv_session_t *from, pv_stanza_t *st);

/* stanza.c */
/* Parses st's to/from into its arena (to defaults to def_to when absent).
 * PV_ERROR when either is malformed. */
int pv_stanza_parse_addrs(pv_stanza_t *st, const pv_jid_t *def_to);

/* c2s.c */
void pv_c2s_accept(void *arg, pv_conn_t *conn);
void pv_c2s_accept_tls(void *arg, pv_conn_t *conn);
void pv_c2s_send(pv_c2s_t *c, pv_stanza_t *st);
/* Bytes that may still be queued for c before c2s_send_queue_max ends
 * the stream; SIZE_MAX when unlimited or framed. */
size_t pv_c2s_send_room(const pv_c2s_t *c);
void pv_c2s_close(pv_c2s_t *c, const char *condition);
void pv_c2s_detach(pv_c2s_t *c);   /* the session is going away */
void pv_c2s_shutdown_all(pv_server_t *srv);
/* Releases the XML parser of streams idle for idle_ms (DESIGN.md §3). */
void pv_c2s_sweep(pv_server_t *srv, uint64_t idle_ms);
uint64_t pv_c2s_last_active(const pv_c2s_t *c);
const char *pv_c2s_peer_ip(const pv_c2s_t *c);
/* Binds resource (NULL: generated) on an authenticated stream; NULL and
 * *cond on failure. */
pv_session_t *pv_c2s_bind(pv_c2s_t *c, const char *resource,
                          const char **cond);
/* Marks the stream authenticated as user without a stream restart
 * (XEP-0388). */
void pv_c2s_set_user(pv_c2s_t *c, const char *user);
/* While on, everything written to the stream is held back; off writes
 * it out. SASL2 holds output so that <success/> goes first. */
void pv_c2s_hold_output(pv_c2s_t *c, int on);
/* Writes past the hold. */
void pv_c2s_write_now(pv_c2s_t *c, const char *xml, size_t len);
pv_host_t *pv_c2s_host(const pv_c2s_t *c);
pv_conn_t *pv_c2s_conn(const pv_c2s_t *c);
int pv_c2s_is_tls(const pv_c2s_t *c);
/* References that keep a pv_c2s_t (not its connection) allocated past
 * its close, for deferred replies (pv_event_defer). */
pv_c2s_t *pv_c2s_ref(pv_c2s_t *c);
void pv_c2s_unref(pv_c2s_t *c);

/* s2s.c: server-to-server streams (RFC 6120, XEP-0220, XEP-0178).
 * Everything hangs off srv->s2s, created on first use. */
/* Listener callbacks for the s2s (STARTTLS) and s2s_direct_tls kinds;
 * arg is the pv_server_t. */
void pv_s2s_accept(void *arg, pv_conn_t *conn);
void pv_s2s_accept_tls(void *arg, pv_conn_t *conn);
/* Sends st (borrowed) to its remote domain on the link from its from
 * domain (which must be a local host; otherwise it is dropped), opening
 * and authenticating the link when needed. While the link comes up st is
 * queued (s2s_queue_max); if it cannot come up, st is bounced to its
 * sender with remote-server-not-found or remote-server-timeout (never
 * for an error stanza). */
void pv_s2s_route(pv_server_t *srv, pv_stanza_t *st);
/* Closes streams idle for s2s_idle_timeout and releases idle parsers;
 * called from the server's once-a-second sweep. */
void pv_s2s_sweep(pv_server_t *srv);
/* Ends every stream with <system-shutdown/> and drops queued stanzas
 * without bouncing them. Idempotent. */
void pv_s2s_shutdown(pv_server_t *srv);
/* After a reload: rebuilds the resolver from the new dns_servers and
 * s2s_override (lookups in progress start again); the other s2s
 * directives are read from the running generation on use. */
void pv_s2s_reload(pv_server_t *srv);
/* Frees srv->s2s; safe before pv_loop_free() (connections still open
 * are aborted without calling back into s2s). NULL s2s is a no-op. */
void pv_s2s_free(pv_server_t *srv);
/* s2s_dialback.c: XEP-0185 dialback key: lowercase hex of
 * HMAC-SHA256(key = hex(SHA256(secret)), receiving + ' ' + originating +
 * ' ' + stream_id) into out (65 bytes with the NUL). XEP-0185's vector:
 * secret "s3cr3tf0rd14lb4ck", "xmpp.example.com", "example.org",
 * "D60000229F" gives "37c69b1c...23075643". Pure; any thread. */
void pv_s2s_dialback_key(const uint8_t *secret, size_t secret_len,
                         const char *receiving, const char *originating,
                         const char *stream_id, char out[65]);
/* For `palaverctl check dns DOMAIN`: resolves domain with the resolver
 * settings of g (dns_servers, s2s_override) on a private loop, blocking
 * until done, and appends pv_dns_describe()'s text to out. Returns
 * PV_OK when there is at least one candidate. */
int pv_s2s_check_dns(const pv_core_conf_t *g, const char *domain,
                     pv_buf_t *out);

/* sasl.c */
typedef struct pv_sasl_s pv_sasl_t;
/* Appends <mechanisms/> (and the XEP-0440 channel-binding list) for
 * conn to features. */
void pv_sasl_features(pv_host_t *h, pv_conn_t *conn, pv_node_t *features,
                      pv_arena_t *a);
/* Handles a SASL nonza (<auth/>, <response/>, <abort/>). Calls
 * done(c2s, user) on success (user malloc'd) or sends the failure. */
typedef void (*pv_sasl_done_fn)(void *arg, const char *user);
pv_sasl_t *pv_sasl_new(pv_host_t *h, pv_conn_t *conn,
                       void (*send)(void *arg, const char *xml, size_t len),
                       pv_sasl_done_fn done, void *arg);
void pv_sasl_input(pv_sasl_t *s, pv_node_t *nonza);
void pv_sasl_free(pv_sasl_t *s);

/* sasl2.c: XEP-0388 SASL2 with XEP-0386 Bind2 and XEP-0484 FAST on a
 * client stream. */
typedef struct pv_sasl2_s pv_sasl2_t;
/* Appends <authentication xmlns='urn:xmpp:sasl:2'/> (with its inline
 * Bind2 and FAST features) to features. */
void pv_sasl2_features(pv_c2s_t *c, pv_node_t *features, pv_arena_t *a);
pv_sasl2_t *pv_sasl2_new(pv_c2s_t *c);
/* Handles a nonza in urn:xmpp:sasl:2 (<authenticate/>, <response/>,
 * <abort/>). On success calls pv_c2s_set_user() and binds or resumes as
 * the request asks. */
void pv_sasl2_input(pv_sasl2_t *s, pv_node_t *nonza);
void pv_sasl2_free(pv_sasl2_t *s);

/* admin.c: account administration shared by the control socket and
 * palaverctl's in-process mode. A request is a list of fields:
 *   adduser JID HEXRECORD | passwd JID HEXRECORD | deluser JID |
 *   users DOMAIN
 * where HEXRECORD is a pv_account_record_t in hex (palaverctl hashes the
 * password itself, so the daemon's loop never runs PBKDF2). done(arg, ok,
 * text) is called exactly once, possibly before pv_admin_run returns;
 * text is a human line (several lines for users). Fires the user-created
 * and user-deleted events, and closes a deleted user's sessions. */
typedef void (*pv_admin_done_fn)(void *arg, int ok, const char *text);
void pv_admin_run(pv_server_t *srv, char **fields, size_t n,
                  pv_admin_done_fn done, void *arg);
/* Hex helpers for the record field. */
char *pv_admin_hex(const void *data, size_t len);

/* users.c */
struct pv_account_record_s;
/* Stores a prepared credential record (from palaverctl) for user. */
void pv_user_store_record(pv_host_t *h, const char *user,
                          const struct pv_account_record_s *rec, int create,
                          pv_user_done_fn cb, void *arg);

/* control.c */
int pv_control_listen(pv_server_t *srv, const char *path);

/* ---- http (issue 7): c2s over framed transports, websocket_c2s.c ---- */

/* c2s.c: a client stream over a message transport (RFC 7395 WebSocket)
 * instead of a pv_conn_t of its own. write gets whole or partial XML
 * elements exactly as TCP would (the transport frames them); close ends
 * the transport gracefully. Both borrowed: must outlive the stream. */
typedef struct pv_c2s_transport_s {
    int (*write)(void *arg, const char *data, size_t len);
    void (*close)(void *arg);
} pv_c2s_transport_t;
/* New framed stream on conn (borrowed: the transport owns it and its
 * handler; peer address and TLS facts for channel binding come from it).
 * secure: the stream counts as encrypted (TLS of ours, or a loopback
 * peer behind a TLS proxy). Framed streams never offer STARTTLS. */
pv_c2s_t *pv_c2s_new_framed(pv_server_t *srv, pv_conn_t *conn,
                            const pv_c2s_transport_t *tr, void *arg,
                            int secure);
/* RFC 7395 §3.4 <open/>: (re)starts the stream with these attributes
 * (any may be NULL). */
void pv_c2s_framed_open(pv_c2s_t *c, const char *to, const char *from,
                        const char *version, const char *lang);
/* One message holding one element (stanza or nonza). */
void pv_c2s_framed_element(pv_c2s_t *c, const char *data, size_t len);
/* The transport has closed (its on_close); c is gone after this. */
void pv_c2s_transport_closed(pv_c2s_t *c, const char *reason);
/* Open client streams over TCP and over framed transports. */
void pv_c2s_count(pv_server_t *srv, size_t *tcp, size_t *framed);

/* Output of a framed stream, as c2s.c writes it (our serialiser: quoted
 * attributes, no comments, CDATA or raw '<' in text), cut into top-level
 * elements: appends data to pending and calls emit(arg, el, len) for
 * each complete element; an incomplete tail stays in pending (freed when
 * empty). XML declarations and stray end tags are dropped. Returns the
 * first non-PV_OK emit() result (then stops), else PV_OK. */
int pv_c2s_split(pv_buf_t *pending, const char *data, size_t len,
                 int (*emit)(void *arg, const char *el, size_t len),
                 void *arg);
/* Appends el to out with the declarations a standalone element needs
 * (RFC 7395 §3.3.3, XEP-0206 §6): xmlns='jabber:client' when it has no
 * default namespace, xmlns:stream on stream:-prefixed elements. */
void pv_c2s_qualify(pv_buf_t *out, const char *el, size_t len);

/* bosh.c: XMPP over BOSH (XEP-0124/0206) at /http-bind on h; freed with
 * pv_bosh_free() after the loop (only memory is left then). */
typedef struct pv_bosh_s pv_bosh_t;
pv_bosh_t *pv_bosh_new(struct pv_http_s *h, pv_server_t *srv);
void pv_bosh_free(pv_bosh_t *b);
size_t pv_bosh_n_sessions(const pv_bosh_t *b);

/* module.c: one function of each core object whose API only modules
 * use, so that the linker keeps it in palaverd (see module.c). */
extern void (*const pv_module_api_objects[])(void);

/* metrics.c: /metrics lines. The s2s_in/s2s_out samples of the
 * palaver_connections family (written inside that family's block), then
 * the s2s queue, storage counters, queue depth and commit histogram. */
void pv_metrics_s2s_connections(pv_server_t *srv, pv_buf_t *b);
void pv_metrics_write(pv_server_t *srv, pv_buf_t *b);

/* websocket_c2s.c: registers /xmpp-websocket on h (called by
 * pv_http_new). */
void pv_websocket_c2s_register(struct pv_http_s *h);

#endif
