/*
 * call_client: a headless audio-call endpoint for the end-to-end call test
 * (tests/integration/test_calls.py, issue 9). It owns one XMPP session
 * (libstrophe), one ICE agent (libnice) and one Opus codec, all driven by
 * one GLib main loop. Roles: the caller discovers TURN (XEP-0215), rings
 * (XEP-0353), opens a Jingle RTP session (XEP-0166/0167/0176) and sends a
 * tone; the callee answers and judges the audio it receives.
 */

/*
 * What this client deliberately does not do: DTLS-SRTP (XEP-0320). The
 * media is plain RTP (RFC 3550 12-byte header, plus a one-byte header
 * extension (RFC 8285) that carries the sender's CLOCK_MONOTONIC time so
 * the callee can report the one-way delay on loopback). The test is about
 * the server: signalling routing, STUN/TURN and that packets really flow;
 * encryption between the two apps does not involve Palaver at all.
 *
 * Trickle ICE is not used: each side gathers all its candidates before it
 * sends its transport description.
 *
 * Output (stdout, one line each, parsed by the test):
 *   READY <full-jid>                      callee: gathered, waiting to ring
 *   EXTDISCO <type> <transport> <host> <port> [user]
 *   EXTDISCO-UNAVAILABLE <condition>      relay mode without XEP-0215: exit 77
 *   SELECTED local=<type> remote=<type>   ICE pair in use
 *   RESULT role=... key=value ...         final summary
 *   BURST pkts=... mbps=...               callee: the --burst throughput
 * Exit status: 0 success, 1 failure, 77 relay mode impossible (see above).
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* M_PI, clock_gettime, getaddrinfo */
#endif

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <arpa/inet.h>

#include <glib.h>
#include <nice/agent.h>
#include <opus.h>
#include <strophe.h>

#define NS_JINGLE "urn:xmpp:jingle:1"
#define NS_RTP "urn:xmpp:jingle:apps:rtp:1"
#define NS_ICE "urn:xmpp:jingle:transports:ice-udp:1"
#define NS_JMI "urn:xmpp:jingle-message:0"
#define NS_EXTDISCO "urn:xmpp:extdisco:2"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

#define RATE 48000
#define FRAME_MS 20
#define FRAME_SAMPLES (RATE * FRAME_MS / 1000)
#define PT_OPUS 111
#define PT_BURST 127            /* filler of the throughput burst */
#define BURST_SIZE 1000         /* bytes per burst packet, headers included */
#define BURST_PER_TICK 32
#define RTP_HDR 12
#define RTP_EXT_ID 1            /* our private one-byte extension id */
#define MAX_PACKET 1500
#define MAX_CANDS 32

typedef enum { ROLE_CALLER, ROLE_CALLEE } role_t;

typedef enum {
    ST_CONNECTING,
    ST_DISCOVERY,
    ST_GATHERING,
    ST_READY,                   /* callee: waiting for propose */
    ST_PROPOSED,                /* caller: waiting for proceed */
    ST_INITIATED,               /* caller: session-initiate sent */
    ST_MEDIA,
    ST_TERMINATING,
    ST_DONE
} state_t;

typedef struct remote_cand_s {
    char foundation[33];
    char ip[INET6_ADDRSTRLEN];
    char type[8];
    unsigned port;
    unsigned priority;
    unsigned component;
} remote_cand_t;

typedef struct call_s {
    /* options */
    role_t role;
    const char *jid, *password, *host, *peer;
    unsigned short port;
    int relay;
    int answer;
    double tone;
    double seconds;
    double timeout;
    int verbose;
    int drop_every;             /* caller: skip every Nth frame (self-test) */
    const char *turn_override;  /* IP:PORT, bypasses XEP-0215 (debugging) */
    const char *turn_transport; /* "udp" or "tcp": how we reach TURN */
    const char *extdisco_jid;   /* who answers XEP-0215: our domain */
    char domain[1024];

    /* loops and libraries */
    GMainLoop *loop;
    xmpp_ctx_t *xctx;
    xmpp_conn_t *conn;
    NiceAgent *agent;
    guint stream_id;
    OpusEncoder *enc;
    OpusDecoder *dec;

    state_t state;
    int exit_code;
    int connected;
    char sid[64];
    char peer_full[512];        /* caller: who proceeded; callee: caller */
    char peer_bare[512];
    unsigned next_iq;
    int ice_ready;
    int remote_set;
    int gathered;

    /* TURN service from XEP-0215 */
    char turn_ip[INET6_ADDRSTRLEN];
    unsigned turn_port;
    char turn_user[256], turn_pass[256];
    int have_turn;

    /* remote transport */
    char r_ufrag[256], r_pwd[256];
    remote_cand_t rc[MAX_CANDS];
    int n_rc;

    /* sender */
    uint16_t seq;
    uint32_t ts, ssrc;
    double phase;
    int frames_total, frames_sent, frames_dropped;
    gint64 t_start;
    guint send_timer;

    /* receiver */
    int got_first;
    uint32_t r_ssrc;
    uint64_t first_ext, max_ext;
    uint16_t last_seq16;
    uint64_t cycles;
    uint8_t *seen;              /* by ext seq - first_ext */
    size_t seen_cap;
    int frames_recv, dups, bad_pt, decode_errors;
    int16_t *pcm;
    size_t pcm_len, pcm_cap;
    double delay_sum, delay_max;
    int delay_n;
    int terminated;

    /* throughput burst (--burst): caller side, then callee side */
    int burst_total, burst_sent;
    uint16_t burst_seq;
    int burst_pkts;
    uint64_t burst_bytes;
    gint64 burst_first, burst_last;
    double burst_delay_sum;
} call_t;

static void
say(call_t *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
say(call_t *c, const char *fmt, ...)
{
    va_list ap;

    if (!c->verbose)
        return;
    fprintf(stderr, "[%s %.3f] ", c->role == ROLE_CALLER ? "caller" : "callee",
            (double)g_get_monotonic_time() / 1e6);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Ends the run: the exit code of the first finish wins. */
static void
finish(call_t *c, int code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
finish(call_t *c, int code, const char *fmt, ...)
{
    va_list ap;

    if (c->state == ST_DONE)
        return;
    if (fmt != NULL) {
        fprintf(stderr, "call_client %s: ",
                c->role == ROLE_CALLER ? "caller" : "callee");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    c->exit_code = code;
    c->state = ST_DONE;
    g_main_loop_quit(c->loop);
}

static void
bare_of(const char *jid, char *out, size_t n)
{
    const char *slash = strchr(jid, '/');
    size_t len = slash ? (size_t)(slash - jid) : strlen(jid);

    if (len >= n)
        len = n - 1;
    memcpy(out, jid, len);
    out[len] = '\0';
}

/* --- XMPP plumbing --------------------------------------------------- */

/* Stanzas are written as text with escaped values, then parsed by
 * libstrophe: a typo becomes a NULL here rather than a malformed stream. */
static int
send_xml(call_t *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static int
send_xml(call_t *c, const char *fmt, ...)
{
    va_list ap;
    char *text;
    xmpp_stanza_t *st;

    va_start(ap, fmt);
    text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    st = xmpp_stanza_new_from_string(c->xctx, text);
    if (st == NULL) {
        finish(c, 1, "internal error: cannot parse own stanza %s", text);
        g_free(text);
        return -1;
    }
    say(c, "send %s", text);
    g_free(text);
    xmpp_send(c->conn, st);
    xmpp_stanza_release(st);
    return 0;
}

static char *
esc(const char *s)
{
    return g_markup_escape_text(s ? s : "", -1);
}

static const char *
new_id(call_t *c, char *buf, size_t n)
{
    snprintf(buf, n, "cc%u", ++c->next_iq);
    return buf;
}

static gboolean
pump_xmpp(gpointer data)
{
    call_t *c = data;

    /* timeout 0: poll only, so the GLib loop (ICE, media clock) never
     * waits on the XMPP socket */
    xmpp_run_once(c->xctx, 0);
    return G_SOURCE_CONTINUE;
}

static gboolean
on_timeout(gpointer data)
{
    call_t *c = data;

    finish(c, 1, "timed out in state %d", (int)c->state);
    return G_SOURCE_REMOVE;
}

/* --- ICE -------------------------------------------------------------- */

static const char *
cand_type_name(NiceCandidateType t)
{
    switch (t) {
    case NICE_CANDIDATE_TYPE_HOST:
        return "host";
    case NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE:
        return "srflx";
    case NICE_CANDIDATE_TYPE_PEER_REFLEXIVE:
        return "prflx";
    case NICE_CANDIDATE_TYPE_RELAYED:
        return "relay";
    }
    return "host";
}

static int
cand_type_parse(const char *s, NiceCandidateType *t)
{
    if (strcmp(s, "host") == 0)
        *t = NICE_CANDIDATE_TYPE_HOST;
    else if (strcmp(s, "srflx") == 0)
        *t = NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE;
    else if (strcmp(s, "prflx") == 0)
        *t = NICE_CANDIDATE_TYPE_PEER_REFLEXIVE;
    else if (strcmp(s, "relay") == 0)
        *t = NICE_CANDIDATE_TYPE_RELAYED;
    else
        return -1;
    return 0;
}

/* <transport/> with our ufrag, pwd and every gathered candidate. */
static char *
transport_xml(call_t *c)
{
    GString *s = g_string_new(NULL);
    gchar *ufrag = NULL, *pwd = NULL;
    GSList *cands, *l;
    int i = 0;

    nice_agent_get_local_credentials(c->agent, c->stream_id, &ufrag, &pwd);
    g_string_append_printf(s, "<transport xmlns='%s' ufrag='%s' pwd='%s'>",
                           NS_ICE, ufrag, pwd);
    cands = nice_agent_get_local_candidates(c->agent, c->stream_id, 1);
    for (l = cands; l != NULL; l = l->next) {
        NiceCandidate *nc = l->data;
        char ip[NICE_ADDRESS_STRING_LEN], rel[NICE_ADDRESS_STRING_LEN];

        if (nc->transport != NICE_CANDIDATE_TRANSPORT_UDP)
            continue;
        nice_address_to_string(&nc->addr, ip);
        g_string_append_printf(s, "<candidate component='%u' "
                               "foundation='%s' generation='0' id='c%d' "
                               "ip='%s' network='0' port='%u' "
                               "priority='%u' protocol='udp' type='%s'",
                               nc->component_id, nc->foundation, i++, ip,
                               nice_address_get_port(&nc->addr),
                               nc->priority, cand_type_name(nc->type));
        if (nc->type != NICE_CANDIDATE_TYPE_HOST &&
            nice_address_is_valid(&nc->base_addr)) {
            nice_address_to_string(&nc->base_addr, rel);
            g_string_append_printf(s, " rel-addr='%s' rel-port='%u'", rel,
                                   nice_address_get_port(&nc->base_addr));
        }
        g_string_append(s, "/>");
    }
    g_string_append(s, "</transport>");
    g_slist_free_full(cands, (GDestroyNotify)nice_candidate_free);
    g_free(ufrag);
    g_free(pwd);
    if (i == 0) {
        g_string_free(s, TRUE);
        return NULL;
    }
    return g_string_free(s, FALSE);
}

/* Reads the peer's <transport/> (XEP-0176 §5) into c->r_* . */
static int
parse_transport(call_t *c, xmpp_stanza_t *jingle)
{
    xmpp_stanza_t *content, *tr, *cand;
    const char *u, *p;

    content = xmpp_stanza_get_child_by_name(jingle, "content");
    tr = content ? xmpp_stanza_get_child_by_name_and_ns(content, "transport",
                                                         NS_ICE) : NULL;
    if (tr == NULL)
        return -1;
    u = xmpp_stanza_get_attribute(tr, "ufrag");
    p = xmpp_stanza_get_attribute(tr, "pwd");
    if (u == NULL || p == NULL)
        return -1;
    g_strlcpy(c->r_ufrag, u, sizeof(c->r_ufrag));
    g_strlcpy(c->r_pwd, p, sizeof(c->r_pwd));
    c->n_rc = 0;
    for (cand = xmpp_stanza_get_children(tr); cand != NULL;
         cand = xmpp_stanza_get_next(cand)) {
        const char *name = xmpp_stanza_get_name(cand);
        const char *ip, *port, *prio, *type, *fnd, *comp, *proto;
        remote_cand_t *r;

        if (name == NULL || strcmp(name, "candidate") != 0 ||
            c->n_rc >= MAX_CANDS)
            continue;
        ip = xmpp_stanza_get_attribute(cand, "ip");
        port = xmpp_stanza_get_attribute(cand, "port");
        prio = xmpp_stanza_get_attribute(cand, "priority");
        type = xmpp_stanza_get_attribute(cand, "type");
        fnd = xmpp_stanza_get_attribute(cand, "foundation");
        comp = xmpp_stanza_get_attribute(cand, "component");
        proto = xmpp_stanza_get_attribute(cand, "protocol");
        if (ip == NULL || port == NULL || prio == NULL || type == NULL ||
            fnd == NULL || comp == NULL ||
            (proto != NULL && g_ascii_strcasecmp(proto, "udp") != 0))
            continue;
        r = &c->rc[c->n_rc++];
        g_strlcpy(r->ip, ip, sizeof(r->ip));
        g_strlcpy(r->type, type, sizeof(r->type));
        g_strlcpy(r->foundation, fnd, sizeof(r->foundation));
        r->port = (unsigned)strtoul(port, NULL, 10);
        r->priority = (unsigned)strtoul(prio, NULL, 10);
        r->component = (unsigned)strtoul(comp, NULL, 10);
    }
    return c->n_rc > 0 ? 0 : -1;
}

static int
apply_remote(call_t *c)
{
    GSList *list = NULL;
    int i, n;

    if (!nice_agent_set_remote_credentials(c->agent, c->stream_id,
                                           c->r_ufrag, c->r_pwd))
        return -1;
    for (i = 0; i < c->n_rc; i++) {
        remote_cand_t *r = &c->rc[i];
        NiceCandidateType t;
        NiceCandidate *nc;

        if (r->component != 1 || cand_type_parse(r->type, &t) != 0)
            continue;
        nc = nice_candidate_new(t);
        nc->stream_id = c->stream_id;
        nc->component_id = 1;
        nc->transport = NICE_CANDIDATE_TRANSPORT_UDP;
        nc->priority = r->priority;
        g_strlcpy(nc->foundation, r->foundation, sizeof(nc->foundation));
        if (!nice_address_set_from_string(&nc->addr, r->ip)) {
            nice_candidate_free(nc);
            continue;
        }
        nice_address_set_port(&nc->addr, r->port);
        list = g_slist_append(list, nc);
    }
    n = nice_agent_set_remote_candidates(c->agent, c->stream_id, 1, list);
    g_slist_free_full(list, (GDestroyNotify)nice_candidate_free);
    say(c, "remote candidates added: %d of %d", n, c->n_rc);
    c->remote_set = 1;
    return n > 0 ? 0 : -1;
}

static void start_media(call_t *c);

static void
on_state_changed(NiceAgent *agent, guint stream_id, guint component_id,
                 guint state, gpointer data)
{
    call_t *c = data;
    NiceCandidate *l = NULL, *r = NULL;

    (void)stream_id;
    say(c, "ICE component %u state %s", component_id,
        nice_component_state_to_string(state));
    if (state == NICE_COMPONENT_STATE_FAILED) {
        finish(c, 1, "ICE failed (%s mode)", c->relay ? "relay" : "host");
        return;
    }
    if ((state != NICE_COMPONENT_STATE_READY &&
         state != NICE_COMPONENT_STATE_CONNECTED) || c->ice_ready)
        return;
    c->ice_ready = 1;
    if (nice_agent_get_selected_pair(agent, c->stream_id, 1, &l, &r)) {
        char la[NICE_ADDRESS_STRING_LEN], ra[NICE_ADDRESS_STRING_LEN];

        nice_address_to_string(&l->addr, la);
        nice_address_to_string(&r->addr, ra);
        printf("SELECTED local=%s remote=%s local_addr=%s:%u "
               "remote_addr=%s:%u\n", cand_type_name(l->type),
               cand_type_name(r->type), la, nice_address_get_port(&l->addr),
               ra, nice_address_get_port(&r->addr));
        fflush(stdout);
    }
    if (c->role == ROLE_CALLER)
        start_media(c);
}

static void
on_new_selected_pair(NiceAgent *agent, guint stream_id, guint component_id,
                     NiceCandidate *l, NiceCandidate *r, gpointer data)
{
    call_t *c = data;

    (void)agent;
    (void)stream_id;
    say(c, "selected pair for component %u: %s -> %s", component_id,
        cand_type_name(l->type), cand_type_name(r->type));
}

static void after_gathering(call_t *c);

static void
on_gathering_done(NiceAgent *agent, guint stream_id, gpointer data)
{
    call_t *c = data;

    (void)agent;
    (void)stream_id;
    if (c->gathered)
        return;
    c->gathered = 1;
    say(c, "candidate gathering done");
    after_gathering(c);
}

/* --- media: sender ---------------------------------------------------- */

static gint64
mono_us(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC is system-wide: both processes share it, which is
     * what lets the callee compute a one-way delay on one machine */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (gint64)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t
get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

static int
send_frame(call_t *c)
{
    int16_t pcm[FRAME_SAMPLES];
    uint8_t pkt[MAX_PACKET];
    uint64_t now = (uint64_t)mono_us();
    int i, n;
    size_t off;

    for (i = 0; i < FRAME_SAMPLES; i++) {
        pcm[i] = (int16_t)(0.5 * 32767.0 * sin(c->phase));
        c->phase += 2.0 * G_PI * c->tone / RATE;
        if (c->phase > 2.0 * G_PI)
            c->phase -= 2.0 * G_PI;
    }
    /* RFC 3550 §5.1: V=2, X=1 (one extension), M on the first packet */
    pkt[0] = 0x80 | 0x10;
    pkt[1] = (uint8_t)(PT_OPUS | (c->frames_sent == 0 ? 0x80 : 0));
    pkt[2] = (uint8_t)(c->seq >> 8);
    pkt[3] = (uint8_t)c->seq;
    put32(pkt + 4, c->ts);
    put32(pkt + 8, c->ssrc);
    /* RFC 8285 §4.2 one-byte header: 0xBEDE, length 3 words; element
     * id=1 len=8 (L=7) carrying the send time, then padding */
    off = RTP_HDR;
    pkt[off++] = 0xBE;
    pkt[off++] = 0xDE;
    pkt[off++] = 0;
    pkt[off++] = 3;
    pkt[off++] = (uint8_t)(RTP_EXT_ID << 4 | 7);
    for (i = 7; i >= 0; i--)
        pkt[off++] = (uint8_t)(now >> (8 * i));
    pkt[off++] = 0;
    pkt[off++] = 0;
    pkt[off++] = 0;
    n = opus_encode(c->enc, pcm, FRAME_SAMPLES, pkt + off,
                    (opus_int32)(sizeof(pkt) - off));
    if (n < 0) {
        finish(c, 1, "opus_encode: %s", opus_strerror(n));
        return -1;
    }
    if (c->drop_every > 0 && c->frames_sent % c->drop_every ==
        c->drop_every - 1)
        c->frames_dropped++;    /* "lost": the receiver must notice */
    else if (nice_agent_send(c->agent, c->stream_id, 1,
                             (guint)(off + (size_t)n),
                             (const gchar *)pkt) < 0)
        say(c, "nice_agent_send failed for seq %u", c->seq);
    c->seq++;
    c->ts += FRAME_SAMPLES;
    c->frames_sent++;
    return 0;
}

static void send_terminate(call_t *c);

/* One filler packet of the burst: RTP with our time extension, PT 127,
 * so the callee counts it apart from the audio. */
static void
send_burst_packet(call_t *c)
{
    uint8_t pkt[BURST_SIZE];
    uint64_t now = (uint64_t)mono_us();
    size_t off = RTP_HDR;
    int i;

    memset(pkt, 0xa5, sizeof(pkt));
    pkt[0] = 0x80 | 0x10;
    pkt[1] = PT_BURST;
    pkt[2] = (uint8_t)(c->burst_seq >> 8);
    pkt[3] = (uint8_t)c->burst_seq;
    put32(pkt + 4, 0);
    put32(pkt + 8, c->ssrc);
    pkt[off++] = 0xBE;
    pkt[off++] = 0xDE;
    pkt[off++] = 0;
    pkt[off++] = 3;
    pkt[off++] = (uint8_t)(RTP_EXT_ID << 4 | 7);
    for (i = 7; i >= 0; i--)
        pkt[off++] = (uint8_t)(now >> (8 * i));
    pkt[off++] = 0;
    pkt[off++] = 0;
    pkt[off++] = 0;
    nice_agent_send(c->agent, c->stream_id, 1, sizeof(pkt),
                    (const gchar *)pkt);
    c->burst_seq++;
    c->burst_sent++;
}

/* The burst: as fast as the loop goes, a few dozen packets per tick
 * (the kernel and the relay may drop some; the callee reports what came
 * through and how fast). */
static gboolean
on_burst_tick(gpointer data)
{
    call_t *c = data;
    int i;

    for (i = 0; i < BURST_PER_TICK && c->burst_sent < c->burst_total; i++)
        send_burst_packet(c);
    if (c->burst_sent < c->burst_total)
        return G_SOURCE_CONTINUE;
    say(c, "sent %d burst packets", c->burst_sent);
    send_terminate(c);
    return G_SOURCE_REMOVE;
}

/* The media clock: sends every frame that is due by the monotonic clock,
 * so GLib timer jitter does not change the packet count or the rate. */
static gboolean
on_send_tick(gpointer data)
{
    call_t *c = data;
    gint64 due = (g_get_monotonic_time() - c->t_start) / (FRAME_MS * 1000)
                 + 1;

    while (c->frames_sent < c->frames_total && c->frames_sent < due)
        if (send_frame(c) != 0)
            return G_SOURCE_REMOVE;
    if (c->frames_sent >= c->frames_total) {
        c->send_timer = 0;
        say(c, "sent %d frames", c->frames_sent);
        if (c->burst_total > 0)
            g_timeout_add(1, on_burst_tick, c);
        else
            send_terminate(c);
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static void
start_media(call_t *c)
{
    if (c->state == ST_MEDIA || c->state == ST_DONE)
        return;
    c->state = ST_MEDIA;
    c->frames_total = (int)(c->seconds * 1000.0 / FRAME_MS + 0.5);
    c->seq = (uint16_t)g_random_int();
    c->ts = g_random_int();
    c->ssrc = g_random_int();
    c->t_start = g_get_monotonic_time();
    say(c, "media: %d frames of %.1f Hz", c->frames_total, c->tone);
    c->send_timer = g_timeout_add(5, on_send_tick, c);
}

/* --- media: receiver -------------------------------------------------- */

static void
on_recv(NiceAgent *agent, guint stream_id, guint component_id, guint len,
        gchar *buf, gpointer data)
{
    call_t *c = data;
    const uint8_t *p = (const uint8_t *)buf;
    size_t off, cc;
    uint16_t seq16;
    uint64_t ext, idx;
    int16_t pcm[FRAME_SAMPLES * 6];
    int n;
    double d = -1;              /* one-way delay in ms, when carried */

    (void)agent;
    (void)stream_id;
    (void)component_id;
    if (c->role != ROLE_CALLEE || len < RTP_HDR || (p[0] >> 6) != 2)
        return;
    cc = p[0] & 0x0f;
    off = RTP_HDR + 4 * cc;
    seq16 = (uint16_t)(p[2] << 8 | p[3]);
    if (p[0] & 0x10) {
        size_t words, e;

        if (len < off + 4)
            return;
        words = (size_t)(p[off + 2] << 8 | p[off + 3]);
        if (len < off + 4 + 4 * words)
            return;
        /* one-byte elements (RFC 8285 §4.2) */
        if (p[off] == 0xBE && p[off + 1] == 0xDE) {
            for (e = off + 4; e < off + 4 + 4 * words;) {
                unsigned id = p[e] >> 4, l = (p[e] & 0x0f) + 1u;

                if (p[e] == 0) {
                    e++;
                    continue;
                }
                if (id == 15 || e + 1 + l > off + 4 + 4 * words)
                    break;
                if (id == RTP_EXT_ID && l == 8) {
                    uint64_t sent = 0;
                    unsigned k;

                    for (k = 0; k < 8; k++)
                        sent = sent << 8 | p[e + 1 + k];
                    d = (double)((uint64_t)mono_us() - sent) / 1000.0;
                }
                e += 1 + l;
            }
        }
        off += 4 + 4 * words;
    }
    if (off > len)
        return;
    if ((p[1] & 0x7f) == PT_BURST) {
        gint64 now = g_get_monotonic_time();

        if (c->burst_pkts++ == 0)
            c->burst_first = now;
        c->burst_last = now;
        c->burst_bytes += len;
        if (d >= 0)
            c->burst_delay_sum += d;
        return;
    }
    if ((p[1] & 0x7f) != PT_OPUS) {
        c->bad_pt++;
        return;
    }
    if (d >= 0) {
        c->delay_sum += d;
        c->delay_n++;
        if (d > c->delay_max)
            c->delay_max = d;
    }
    /* extended sequence numbers (RFC 3550 A.1, without probation) */
    if (!c->got_first) {
        c->got_first = 1;
        c->r_ssrc = get32(p + 8);
        c->last_seq16 = seq16;
        c->first_ext = c->max_ext = seq16;
        c->cycles = 0;
        ext = seq16;
    } else {
        if (get32(p + 8) != c->r_ssrc)
            return;
        if (seq16 < c->last_seq16 && c->last_seq16 - seq16 > 0x8000)
            c->cycles += 0x10000;       /* wrapped forward */
        ext = c->cycles + seq16;
        if (seq16 > c->last_seq16 && seq16 - c->last_seq16 > 0x8000)
            ext -= 0x10000;             /* late packet from before a wrap */
        if (ext > c->max_ext) {
            c->max_ext = ext;
            c->last_seq16 = seq16;
        }
        if (ext < c->first_ext)
            return;                     /* older than the first: ignore */
    }
    idx = ext - c->first_ext;
    if (idx >= 1u << 20)
        return;
    if (idx >= c->seen_cap) {
        size_t ncap = c->seen_cap ? c->seen_cap : 1024;

        while (ncap <= idx)
            ncap *= 2;
        c->seen = g_realloc(c->seen, ncap);
        memset(c->seen + c->seen_cap, 0, ncap - c->seen_cap);
        c->seen_cap = ncap;
    }
    if (c->seen[idx]) {
        c->dups++;
        return;
    }
    c->seen[idx] = 1;
    c->frames_recv++;
    n = opus_decode(c->dec, p + off, (opus_int32)(len - off), pcm,
                    FRAME_SAMPLES * 6, 0);
    if (n < 0) {
        c->decode_errors++;
        return;
    }
    if (c->pcm_len + (size_t)n > c->pcm_cap) {
        c->pcm_cap = (c->pcm_cap + (size_t)n) * 2;
        c->pcm = g_realloc_n(c->pcm, c->pcm_cap, sizeof(*c->pcm));
    }
    memcpy(c->pcm + c->pcm_len, pcm, (size_t)n * sizeof(*pcm));
    c->pcm_len += (size_t)n;
}

/* Power of one frequency over a windowed block (Goertzel); x is already
 * multiplied by the window. */
static double
goertzel(const double *x, size_t n, double f)
{
    double k = 2.0 * cos(2.0 * G_PI * f / RATE);
    double s0, s1 = 0, s2 = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        s0 = x[i] + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    return s1 * s1 + s2 * s2 - k * s1 * s2;
}

/* Best frequency in [lo, hi] by steps of step over the first n samples of
 * pcm, Hann-windowed. */
static double
scan(const int16_t *pcm, size_t n, double lo, double hi, double step,
     double *power)
{
    double *x = g_new(double, n), f, best = lo, best_p = -1, p;
    size_t i;

    for (i = 0; i < n; i++)
        x[i] = pcm[i] * (0.5 - 0.5 * cos(2.0 * G_PI * (double)i /
                                         (double)(n - 1)));
    for (f = lo; f <= hi + step / 2; f += step) {
        p = goertzel(x, n, f);
        if (p > best_p) {
            best_p = p;
            best = f;
        }
    }
    g_free(x);
    if (power != NULL)
        *power = best_p;
    return best;
}

/* The dominant frequency between 50 Hz and 4 kHz, coarse to fine: 5 Hz
 * steps over 0.1 s, 0.5 Hz over 0.5 s, 0.05 Hz over up to 2 s (whose
 * 0.5 Hz bins are well inside the ±5 Hz the test allows). peak_db is the
 * peak's share of the block's energy (0 dB: a pure tone). */
static double
dominant_frequency(const int16_t *pcm, size_t len, double *peak_db)
{
    size_t skip = RATE / 4, n = 2 * RATE, i;
    double f, p, total = 0;

    if (len < skip + RATE / 2)
        return 0;
    pcm += skip;                /* the codec's start-up is not the tone */
    len -= skip;
    if (n > len)
        n = len;
    f = scan(pcm, RATE / 10, 50, 4000, 5, NULL);
    f = scan(pcm, RATE / 2, f - 10, f + 10, 0.5, NULL);
    f = scan(pcm, n, f - 1, f + 1, 0.05, &p);
    for (i = 0; i < n; i++)
        total += (double)pcm[i] * pcm[i];
    /* a Hann-windowed tone of amplitude A peaks at (A n / 4)^2 while the
     * block's energy is A^2 n / 2: the ratio below reads 0 dB for a clean
     * tone and less for noise or mixtures (printed, not judged) */
    if (peak_db != NULL)
        *peak_db = total > 0 ? 10.0 * log10(p / (total * (double)n / 8.0)
                                            + 1e-12) : -999;
    return f;
}

static int
report_callee(call_t *c)
{
    int expected_span = c->got_first ? (int)(c->max_ext - c->first_ext + 1)
                                     : 0;
    int expected_time = (int)(c->seconds * 1000.0 / FRAME_MS + 0.5);
    int expected = expected_span > expected_time ? expected_span
                                                 : expected_time;
    int lost = expected - c->frames_recv;
    double loss = expected > 0 ? 100.0 * lost / expected : 100.0;
    double snr = 0, freq = dominant_frequency(c->pcm, c->pcm_len, &snr);
    int ok_freq = fabs(freq - c->tone) <= 5.0;
    int ok_loss = c->frames_recv > 0 && loss < 1.0;
    int ok = ok_freq && ok_loss && c->terminated;

    if (lost < 0)
        lost = 0;
    printf("RESULT role=callee mode=%s frames=%d expected=%d lost=%d "
           "loss=%.2f%% dups=%d freq=%.1f want=%.1f peak_db=%.1f "
           "delay_avg_ms=%.3f delay_max_ms=%.3f terminated=%d ok=%d\n",
           c->relay ? "relay" : "host", c->frames_recv, expected, lost, loss,
           c->dups, freq, c->tone, snr,
           c->delay_n ? c->delay_sum / c->delay_n : 0.0, c->delay_max,
           c->terminated, ok);
    if (c->burst_pkts > 0) {
        double secs = (double)(c->burst_last - c->burst_first) / 1e6;

        /* the rate counts the packets after the first over the time
         * between the first and the last arrival */
        printf("BURST pkts=%d bytes=%llu secs=%.3f mbps=%.1f pps=%.0f "
               "delay_avg_ms=%.3f\n", c->burst_pkts,
               (unsigned long long)c->burst_bytes, secs,
               secs > 0 ? (double)(c->burst_bytes - c->burst_bytes /
                                   (uint64_t)c->burst_pkts) * 8 / secs / 1e6
                        : 0.0,
               secs > 0 ? (c->burst_pkts - 1) / secs : 0.0,
               c->burst_delay_sum / c->burst_pkts);
        fflush(stdout);
    }
    fflush(stdout);
    if (!ok_freq)
        fprintf(stderr, "call_client callee: dominant frequency %.1f Hz, "
                "expected %.1f±5 Hz\n", freq, c->tone);
    if (!ok_loss)
        fprintf(stderr, "call_client callee: %d of %d frames lost\n", lost,
                expected);
    if (!c->terminated)
        fprintf(stderr, "call_client callee: no session-terminate\n");
    return ok ? 0 : 1;
}

static gboolean
on_report(gpointer data)
{
    call_t *c = data;

    finish(c, report_callee(c), NULL);
    return G_SOURCE_REMOVE;
}

/* --- Jingle and XEP-0353 ---------------------------------------------- */

static const char *
description_xml(void)
{
    /* RFC 7587 §7: Opus is always signalled as 48000/2 */
    return "<description xmlns='" NS_RTP "' media='audio'>"
           "<payload-type id='111' name='opus' clockrate='48000' "
           "channels='2'/></description>";
}

static void
jmi_message(call_t *c, const char *to, const char *body)
{
    char *eto = esc(to);

    /* XEP-0353 §3: type chat and a store hint (XEP-0334), so that
     * carbons and MAM carry it to every device */
    send_xml(c, "<message type='chat' to='%s' id='jmi-%u'>%s"
             "<store xmlns='urn:xmpp:hints'/></message>", eto, ++c->next_iq,
             body);
    g_free(eto);
}

static void
send_finish(call_t *c)
{
    char *sid = esc(c->sid);
    char *body = g_strdup_printf("<finish xmlns='%s' id='%s'><reason "
                                 "xmlns='%s'><success/></reason></finish>",
                                 NS_JMI, sid, NS_JINGLE);

    jmi_message(c, c->peer_bare, body);
    g_free(body);
    g_free(sid);
}

static int
on_terminate_result(xmpp_conn_t *conn, xmpp_stanza_t *st, void *data)
{
    call_t *c = data;
    const char *type = xmpp_stanza_get_type(st);

    (void)conn;
    if (type == NULL || strcmp(type, "result") != 0) {
        finish(c, 1, "session-terminate answered with %s",
               type ? type : "(no type)");
        return 0;
    }
    printf("RESULT role=caller mode=%s frames_sent=%d dropped=%d tone=%.1f "
           "ok=1\n", c->relay ? "relay" : "host",
           c->frames_sent - c->frames_dropped, c->frames_dropped, c->tone);
    fflush(stdout);
    finish(c, 0, NULL);
    return 0;
}

static void
send_terminate(call_t *c)
{
    char id[32], *to = esc(c->peer_full), *sid = esc(c->sid);

    c->state = ST_TERMINATING;
    new_id(c, id, sizeof(id));
    xmpp_id_handler_add(c->conn, on_terminate_result, id, c);
    send_xml(c, "<iq type='set' to='%s' id='%s'><jingle xmlns='%s' "
             "action='session-terminate' sid='%s'><reason><success/>"
             "</reason></jingle></iq>", to, id, NS_JINGLE, sid);
    send_finish(c);
    g_free(to);
    g_free(sid);
}

static void
iq_result(call_t *c, xmpp_stanza_t *iq)
{
    char *to = esc(xmpp_stanza_get_from(iq));
    char *id = esc(xmpp_stanza_get_id(iq));

    send_xml(c, "<iq type='result' to='%s' id='%s'/>", to, id);
    g_free(to);
    g_free(id);
}

static void
iq_error(call_t *c, xmpp_stanza_t *iq, const char *type, const char *cond)
{
    char *to = esc(xmpp_stanza_get_from(iq));
    char *id = esc(xmpp_stanza_get_id(iq));

    send_xml(c, "<iq type='error' to='%s' id='%s'><error type='%s'><%s "
             "xmlns='%s'/></error></iq>", to, id, type, cond, NS_STANZAS);
    g_free(to);
    g_free(id);
}

static int
on_accept_result(xmpp_conn_t *conn, xmpp_stanza_t *st, void *data)
{
    call_t *c = data;
    const char *type = xmpp_stanza_get_type(st);

    (void)conn;
    if (type == NULL || strcmp(type, "result") != 0)
        finish(c, 1, "session-accept answered with %s",
               type ? type : "(no type)");
    return 0;
}

static int
on_initiate_result(xmpp_conn_t *conn, xmpp_stanza_t *st, void *data)
{
    call_t *c = data;
    const char *type = xmpp_stanza_get_type(st);

    (void)conn;
    if (type == NULL || strcmp(type, "result") != 0)
        finish(c, 1, "session-initiate answered with %s",
               type ? type : "(no type)");
    return 0;
}

static void
send_initiate(call_t *c)
{
    char id[32], *to = esc(c->peer_full), *sid = esc(c->sid);
    char *me = esc(xmpp_conn_get_bound_jid(c->conn));
    char *tr = transport_xml(c);

    if (tr == NULL) {
        finish(c, 1, "no local candidates to offer");
        goto out;
    }
    c->state = ST_INITIATED;
    new_id(c, id, sizeof(id));
    xmpp_id_handler_add(c->conn, on_initiate_result, id, c);
    send_xml(c, "<iq type='set' to='%s' id='%s'><jingle xmlns='%s' "
             "action='session-initiate' initiator='%s' sid='%s'>"
             "<content creator='initiator' name='audio' senders='both'>"
             "%s%s</content></jingle></iq>", to, id, NS_JINGLE, me, sid,
             description_xml(), tr);
out:
    g_free(tr);
    g_free(to);
    g_free(sid);
    g_free(me);
}

static void
send_accept(call_t *c)
{
    char id[32], *to = esc(c->peer_full), *sid = esc(c->sid);
    char *me = esc(xmpp_conn_get_bound_jid(c->conn));
    char *tr = transport_xml(c);

    if (tr == NULL) {
        finish(c, 1, "no local candidates to answer with");
        goto out;
    }
    new_id(c, id, sizeof(id));
    xmpp_id_handler_add(c->conn, on_accept_result, id, c);
    send_xml(c, "<iq type='set' to='%s' id='%s'><jingle xmlns='%s' "
             "action='session-accept' responder='%s' sid='%s'>"
             "<content creator='initiator' name='audio' senders='both'>"
             "%s%s</content></jingle></iq>", to, id, NS_JINGLE, me, sid,
             description_xml(), tr);
out:
    g_free(tr);
    g_free(to);
    g_free(sid);
    g_free(me);
}

/* Does the offered description carry Opus/48000 as payload 111? */
static int
offers_opus(xmpp_stanza_t *jingle)
{
    xmpp_stanza_t *content = xmpp_stanza_get_child_by_name(jingle, "content");
    xmpp_stanza_t *d, *pt;

    d = content ? xmpp_stanza_get_child_by_name_and_ns(content, "description",
                                                        NS_RTP) : NULL;
    if (d == NULL)
        return 0;
    for (pt = xmpp_stanza_get_children(d); pt != NULL;
         pt = xmpp_stanza_get_next(pt)) {
        const char *n = xmpp_stanza_get_name(pt);
        const char *name = xmpp_stanza_get_attribute(pt, "name");
        const char *id = xmpp_stanza_get_attribute(pt, "id");
        const char *rate = xmpp_stanza_get_attribute(pt, "clockrate");

        if (n != NULL && strcmp(n, "payload-type") == 0 && name != NULL &&
            g_ascii_strcasecmp(name, "opus") == 0 && id != NULL &&
            atoi(id) == PT_OPUS && rate != NULL && atoi(rate) == RATE)
            return 1;
    }
    return 0;
}

static int
on_jingle(xmpp_conn_t *conn, xmpp_stanza_t *iq, void *data)
{
    call_t *c = data;
    xmpp_stanza_t *j = xmpp_stanza_get_child_by_name_and_ns(iq, "jingle",
                                                           NS_JINGLE);
    const char *type = xmpp_stanza_get_type(iq);
    const char *action, *sid, *from = xmpp_stanza_get_from(iq);

    (void)conn;
    if (j == NULL || type == NULL || strcmp(type, "set") != 0 ||
        from == NULL)
        return 1;
    action = xmpp_stanza_get_attribute(j, "action");
    sid = xmpp_stanza_get_attribute(j, "sid");
    if (action == NULL || sid == NULL || strcmp(sid, c->sid) != 0) {
        /* XEP-0166 §7.2.13 would add <unknown-session/>; not needed */
        iq_error(c, iq, "cancel", "item-not-found");
        return 1;
    }
    say(c, "jingle %s from %s", action, from);
    if (c->role == ROLE_CALLEE && strcmp(action, "session-initiate") == 0) {
        if (!offers_opus(j)) {
            iq_error(c, iq, "cancel", "bad-request");
            finish(c, 1, "session-initiate without opus/48000 id 111");
            return 1;
        }
        if (parse_transport(c, j) != 0) {
            iq_error(c, iq, "cancel", "bad-request");
            finish(c, 1, "session-initiate without ICE-UDP candidates");
            return 1;
        }
        g_strlcpy(c->peer_full, from, sizeof(c->peer_full));
        iq_result(c, iq);
        send_accept(c);
        c->state = ST_MEDIA;
        if (apply_remote(c) != 0)
            finish(c, 1, "none of the caller's candidates is usable");
        return 1;
    }
    if (c->role == ROLE_CALLER && strcmp(action, "session-accept") == 0) {
        if (strcmp(from, c->peer_full) != 0) {
            iq_error(c, iq, "cancel", "forbidden");
            return 1;
        }
        if (!offers_opus(j) || parse_transport(c, j) != 0) {
            iq_error(c, iq, "cancel", "bad-request");
            finish(c, 1, "session-accept without opus or candidates");
            return 1;
        }
        iq_result(c, iq);
        if (apply_remote(c) != 0)
            finish(c, 1, "none of the callee's candidates is usable");
        return 1;
    }
    if (strcmp(action, "session-terminate") == 0) {
        iq_result(c, iq);
        c->terminated = 1;
        if (c->role == ROLE_CALLEE) {
            send_finish(c);
            c->state = ST_TERMINATING;
            /* the terminate overtook nothing on loopback, but a relayed
             * packet may still be on its way: judge a little later */
            g_timeout_add(300, on_report, c);
        } else {
            finish(c, 1, "callee terminated the session");
        }
        return 1;
    }
    /* transport-info, content-* and the like: acknowledged, unused */
    iq_result(c, iq);
    return 1;
}

static int
on_message(xmpp_conn_t *conn, xmpp_stanza_t *m, void *data)
{
    call_t *c = data;
    const char *from = xmpp_stanza_get_from(m);
    xmpp_stanza_t *x;
    const char *id;

    (void)conn;
    if (from == NULL)
        return 1;
    if (c->role == ROLE_CALLEE && c->state == ST_READY &&
        (x = xmpp_stanza_get_child_by_name_and_ns(m, "propose", NS_JMI))
        != NULL) {
        id = xmpp_stanza_get_attribute(x, "id");
        if (id == NULL || xmpp_stanza_get_child_by_name_and_ns(
                              x, "description", NS_RTP) == NULL)
            return 1;
        if (c->peer != NULL && strncmp(from, c->peer, strlen(c->peer)) != 0)
            return 1;
        g_strlcpy(c->sid, id, sizeof(c->sid));
        g_strlcpy(c->peer_full, from, sizeof(c->peer_full));
        bare_of(from, c->peer_bare, sizeof(c->peer_bare));
        printf("PROPOSE from=%s id=%s\n", from, id);
        fflush(stdout);
        if (c->answer) {
            char *sid = esc(c->sid);
            char *body = g_strdup_printf("<proceed xmlns='%s' id='%s'/>",
                                         NS_JMI, sid);

            /* XEP-0353 §3.4: to the initiator's bare JID, so the
             * initiator's other devices and ours (carbons) learn of it */
            jmi_message(c, c->peer_bare, body);
            g_free(body);
            g_free(sid);
            c->state = ST_PROPOSED;
        }
        return 1;
    }
    if (c->role == ROLE_CALLER && c->state == ST_PROPOSED) {
        if ((x = xmpp_stanza_get_child_by_name_and_ns(m, "proceed", NS_JMI))
            != NULL) {
            id = xmpp_stanza_get_attribute(x, "id");
            if (id == NULL || strcmp(id, c->sid) != 0 ||
                strchr(from, '/') == NULL)
                return 1;
            /* the first full JID that proceeds gets the session */
            g_strlcpy(c->peer_full, from, sizeof(c->peer_full));
            printf("PROCEED from=%s\n", from);
            fflush(stdout);
            send_initiate(c);
        } else if ((x = xmpp_stanza_get_child_by_name_and_ns(m, "reject",
                                                             NS_JMI))
                   != NULL) {
            id = xmpp_stanza_get_attribute(x, "id");
            if (id != NULL && strcmp(id, c->sid) == 0)
                finish(c, 1, "call rejected by %s", from);
        }
    }
    return 1;
}

/* --- XEP-0215 ---------------------------------------------------------- */

static int
resolve_ipv4(const char *host, char *out, size_t n)
{
    struct addrinfo hints, *res = NULL;
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL)
        return -1;
    inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, out,
              (socklen_t)n);
    freeaddrinfo(res);
    return 0;
}

static void start_gathering(call_t *c);

static const char *
error_condition(xmpp_stanza_t *st)
{
    xmpp_stanza_t *e = xmpp_stanza_get_child_by_name(st, "error"), *k;

    if (e == NULL)
        return "no-error-element";
    for (k = xmpp_stanza_get_children(e); k != NULL;
         k = xmpp_stanza_get_next(k)) {
        const char *ns = xmpp_stanza_get_ns(k);

        if (xmpp_stanza_get_name(k) != NULL && ns != NULL &&
            strcmp(ns, NS_STANZAS) == 0 &&
            strcmp(xmpp_stanza_get_name(k), "text") != 0)
            return xmpp_stanza_get_name(k);
    }
    return "undefined-condition";
}

static int on_credentials(xmpp_conn_t *conn, xmpp_stanza_t *st, void *data);

/* Takes a usable TURN/UDP service from <services/> or <credentials/>;
 * returns 1 when one with credentials was found, 2 when one without
 * credentials was found (a <credentials/> request was sent). */
static int
take_services(call_t *c, xmpp_stanza_t *parent)
{
    xmpp_stanza_t *s;
    int pending = 0;

    for (s = xmpp_stanza_get_children(parent); s != NULL;
         s = xmpp_stanza_get_next(s)) {
        const char *n = xmpp_stanza_get_name(s);
        const char *type, *tr, *host, *port, *user, *pass;

        if (n == NULL || strcmp(n, "service") != 0)
            continue;
        type = xmpp_stanza_get_attribute(s, "type");
        tr = xmpp_stanza_get_attribute(s, "transport");
        host = xmpp_stanza_get_attribute(s, "host");
        port = xmpp_stanza_get_attribute(s, "port");
        user = xmpp_stanza_get_attribute(s, "username");
        pass = xmpp_stanza_get_attribute(s, "password");
        printf("EXTDISCO %s %s %s %s%s%s\n", type ? type : "-",
               tr ? tr : "-", host ? host : "-", port ? port : "-",
               user ? " " : "", user ? user : "");
        fflush(stdout);
        /* XEP-0215 §4: no transport attribute means UDP */
        if (c->have_turn || type == NULL || strcmp(type, "turn") != 0 ||
            strcmp(tr ? tr : "udp", c->turn_transport) != 0 || host == NULL)
            continue;
        if (user == NULL || pass == NULL) {
            /* XEP-0215 §3.3: restricted service, ask for credentials */
            char id[32], *eh = esc(host);

            if (pending)
                continue;
            new_id(c, id, sizeof(id));
            xmpp_id_handler_add(c->conn, on_credentials, id, c);
            send_xml(c, "<iq type='get' to='%s' id='%s'><credentials "
                     "xmlns='%s'><service host='%s' type='turn'/>"
                     "</credentials></iq>", c->extdisco_jid, id,
                     NS_EXTDISCO, eh);
            say(c, "asked for credentials of %s", host);
            g_free(eh);
            pending = 1;
            continue;
        }
        if (resolve_ipv4(host, c->turn_ip, sizeof(c->turn_ip)) != 0) {
            fprintf(stderr, "call_client: cannot resolve TURN host %s\n",
                    host);
            continue;
        }
        c->turn_port = port ? (unsigned)strtoul(port, NULL, 10) : 3478;
        g_strlcpy(c->turn_user, user, sizeof(c->turn_user));
        g_strlcpy(c->turn_pass, pass, sizeof(c->turn_pass));
        c->have_turn = 1;
    }
    if (c->have_turn)
        return 1;
    return pending ? 2 : 0;
}

static void
discovery_done(call_t *c)
{
    if (c->relay && !c->have_turn) {
        finish(c, 1, "XEP-0215 lists no TURN/%s service with credentials",
               c->turn_transport);
        return;
    }
    start_gathering(c);
}

static int
on_credentials(xmpp_conn_t *conn, xmpp_stanza_t *st, void *data)
{
    call_t *c = data;
    const char *type = xmpp_stanza_get_type(st);
    xmpp_stanza_t *cr;

    (void)conn;
    if (type == NULL || strcmp(type, "result") != 0) {
        if (c->relay) {
            finish(c, 1, "XEP-0215 <credentials/> failed: %s",
                   error_condition(st));
            return 0;
        }
        start_gathering(c);
        return 0;
    }
    cr = xmpp_stanza_get_child_by_name_and_ns(st, "credentials",
                                              NS_EXTDISCO);
    if (cr != NULL)
        take_services(c, cr);
    discovery_done(c);
    return 0;
}

static int
on_services(xmpp_conn_t *conn, xmpp_stanza_t *st, void *data)
{
    call_t *c = data;
    const char *type = xmpp_stanza_get_type(st);
    xmpp_stanza_t *sv;

    (void)conn;
    if (type == NULL || strcmp(type, "result") != 0) {
        const char *cond = error_condition(st);

        printf("EXTDISCO-UNAVAILABLE %s\n", cond);
        fflush(stdout);
        if (c->relay)
            finish(c, 77, "XEP-0215 query failed (%s): no TURN credentials",
                   cond);
        else
            start_gathering(c);        /* host candidates need no TURN */
        return 0;
    }
    sv = xmpp_stanza_get_child_by_name_and_ns(st, "services", NS_EXTDISCO);
    if (sv == NULL) {
        finish(c, 1, "XEP-0215 result without <services/>");
        return 0;
    }
    if (take_services(c, sv) == 2)
        return 0;               /* on_credentials continues */
    discovery_done(c);
    return 0;
}

static void
start_discovery(call_t *c)
{
    char id[32];

    c->state = ST_DISCOVERY;
    new_id(c, id, sizeof(id));
    xmpp_id_handler_add(c->conn, on_services, id, c);
    send_xml(c, "<iq type='get' to='%s' id='%s'><services xmlns='%s'/>"
             "</iq>", c->extdisco_jid, id, NS_EXTDISCO);
}

/* --- flow ------------------------------------------------------------- */

static void
start_gathering(call_t *c)
{
    NiceAddress lo;

    if (c->state == ST_DONE || c->state == ST_GATHERING)
        return;
    c->state = ST_GATHERING;
    c->agent = nice_agent_new(g_main_loop_get_context(c->loop),
                              NICE_COMPATIBILITY_RFC5245);
    g_object_set(c->agent, "controlling-mode", c->role == ROLE_CALLER,
                 "ice-tcp", FALSE, "upnp", FALSE, "force-relay",
                 c->relay ? TRUE : FALSE, NULL);
    g_signal_connect(c->agent, "candidate-gathering-done",
                     G_CALLBACK(on_gathering_done), c);
    g_signal_connect(c->agent, "component-state-changed",
                     G_CALLBACK(on_state_changed), c);
    g_signal_connect(c->agent, "new-selected-pair-full",
                     G_CALLBACK(on_new_selected_pair), c);
    /* libnice ignores loopback when it enumerates interfaces; with an
     * explicit address it uses exactly that one (CONTRACTS.md §5) */
    nice_address_init(&lo);
    nice_address_set_from_string(&lo, "127.0.0.1");
    nice_agent_add_local_address(c->agent, &lo);
    c->stream_id = nice_agent_add_stream(c->agent, 1);
    if (c->stream_id == 0) {
        finish(c, 1, "nice_agent_add_stream failed");
        return;
    }
    nice_agent_set_stream_name(c->agent, c->stream_id, "audio");
    if (c->relay) {
        say(c, "TURN/%s %s:%u user %s", c->turn_transport, c->turn_ip,
            c->turn_port, c->turn_user);
        if (!nice_agent_set_relay_info(c->agent, c->stream_id, 1, c->turn_ip,
                                       c->turn_port, c->turn_user,
                                       c->turn_pass,
                                       strcmp(c->turn_transport, "tcp") == 0
                                       ? NICE_RELAY_TYPE_TURN_TCP
                                       : NICE_RELAY_TYPE_TURN_UDP)) {
            finish(c, 1, "nice_agent_set_relay_info refused %s:%u",
                   c->turn_ip, c->turn_port);
            return;
        }
    }
    nice_agent_attach_recv(c->agent, c->stream_id, 1,
                           g_main_loop_get_context(c->loop), on_recv, c);
    if (!nice_agent_gather_candidates(c->agent, c->stream_id))
        finish(c, 1, "nice_agent_gather_candidates failed");
}

static void
after_gathering(call_t *c)
{
    GSList *cands = nice_agent_get_local_candidates(c->agent, c->stream_id,
                                                    1);
    guint n = g_slist_length(cands);

    g_slist_free_full(cands, (GDestroyNotify)nice_candidate_free);
    if (n == 0) {
        finish(c, 1, "no local candidates gathered (%s mode%s)",
               c->relay ? "relay" : "host",
               c->relay ? ": TURN allocation failed?" : "");
        return;
    }
    if (c->role == ROLE_CALLEE) {
        c->state = ST_READY;
        printf("READY %s\n", xmpp_conn_get_bound_jid(c->conn));
        fflush(stdout);
        return;
    }
    {
        char *sid = g_uuid_string_random();
        char *body;

        g_strlcpy(c->sid, sid, sizeof(c->sid));
        g_free(sid);
        bare_of(c->peer, c->peer_bare, sizeof(c->peer_bare));
        body = g_strdup_printf("<propose xmlns='%s' id='%s'><description "
                               "xmlns='%s' media='audio'/></propose>",
                               NS_JMI, c->sid, NS_RTP);
        c->state = ST_PROPOSED;
        jmi_message(c, c->peer_bare, body);
        g_free(body);
    }
}

static void
on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
        xmpp_stream_error_t *serr, void *data)
{
    call_t *c = data;

    (void)serr;
    if (ev == XMPP_CONN_CONNECT) {
        c->connected = 1;
        say(c, "logged in as %s", xmpp_conn_get_bound_jid(conn));
        xmpp_handler_add(conn, on_message, NULL, "message", NULL, c);
        xmpp_handler_add(conn, on_jingle, NULL, "iq", "set", c);
        /* available presence: a message to the bare JID reaches only
         * available resources (RFC 6121 §8.5.2.1.1) */
        send_xml(c, "<presence/>");
        if (c->turn_override != NULL)
            start_gathering(c);     /* TURN given on the command line */
        else if (c->role == ROLE_CALLER || c->relay)
            start_discovery(c);
        else
            start_gathering(c);
        return;
    }
    c->connected = 0;
    if (c->state != ST_DONE)
        finish(c, 1, "XMPP connection %s (error %d)",
               ev == XMPP_CONN_FAIL ? "failed" : "lost", error);
}

static void
on_agent_closed(GObject *src, GAsyncResult *res, gpointer data)
{
    call_t *c = data;

    (void)src;
    (void)res;
    g_main_loop_quit(c->loop);
}

static gboolean
on_close_timeout(gpointer data)
{
    call_t *c = data;

    g_main_loop_quit(c->loop);
    return G_SOURCE_REMOVE;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: call_client --role caller|callee --jid JID --password PW"
            " --port PORT\n"
            "       [--host 127.0.0.1] [--peer JID] [--relay] [--tone HZ]\n"
            "       [--seconds S] [--timeout S] [--no-answer] [--verbose]\n"
            "       [--turn-transport udp|tcp] [--drop-every N] [--burst N]"
            " [--extdisco-jid JID]\n"
            "       [--turn IP:PORT --turn-user U --turn-pass P]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "role", required_argument, NULL, 'r' },
        { "jid", required_argument, NULL, 'j' },
        { "password", required_argument, NULL, 'p' },
        { "host", required_argument, NULL, 'H' },
        { "port", required_argument, NULL, 'P' },
        { "peer", required_argument, NULL, 'e' },
        { "relay", no_argument, NULL, 'R' },
        { "tone", required_argument, NULL, 't' },
        { "seconds", required_argument, NULL, 's' },
        { "timeout", required_argument, NULL, 'T' },
        { "no-answer", no_argument, NULL, 'n' },
        { "verbose", no_argument, NULL, 'v' },
        { "drop-every", required_argument, NULL, 'D' },
        { "burst", required_argument, NULL, 'B' },
        { "turn", required_argument, NULL, 'U' },
        { "turn-transport", required_argument, NULL, 'X' },
        { "extdisco-jid", required_argument, NULL, 'E' },
        { "turn-user", required_argument, NULL, 'u' },
        { "turn-pass", required_argument, NULL, 'w' },
        { NULL, 0, NULL, 0 }
    };
    call_t c;
    int o, err;
    xmpp_log_t *log = NULL;

    memset(&c, 0, sizeof(c));
    c.host = "127.0.0.1";
    c.tone = 440;
    c.seconds = 5;
    c.timeout = 60;
    c.answer = 1;
    c.role = (role_t)-1;
    c.turn_transport = "udp";
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'r':
            if (strcmp(optarg, "caller") == 0)
                c.role = ROLE_CALLER;
            else if (strcmp(optarg, "callee") == 0)
                c.role = ROLE_CALLEE;
            else
                usage();
            break;
        case 'j':
            c.jid = optarg;
            break;
        case 'p':
            c.password = optarg;
            break;
        case 'H':
            c.host = optarg;
            break;
        case 'P':
            c.port = (unsigned short)atoi(optarg);
            break;
        case 'e':
            c.peer = optarg;
            break;
        case 'R':
            c.relay = 1;
            break;
        case 't':
            c.tone = atof(optarg);
            break;
        case 's':
            c.seconds = atof(optarg);
            break;
        case 'T':
            c.timeout = atof(optarg);
            break;
        case 'n':
            c.answer = 0;
            break;
        case 'v':
            c.verbose = 1;
            break;
        case 'D':
            c.drop_every = atoi(optarg);
            break;
        case 'B':
            c.burst_total = atoi(optarg);
            break;
        case 'U':
            c.turn_override = optarg;
            break;
        case 'E':
            c.extdisco_jid = optarg;
            break;
        case 'X':
            if (strcmp(optarg, "udp") != 0 && strcmp(optarg, "tcp") != 0)
                usage();
            c.turn_transport = optarg;
            break;
        case 'u':
            g_strlcpy(c.turn_user, optarg, sizeof(c.turn_user));
            break;
        case 'w':
            g_strlcpy(c.turn_pass, optarg, sizeof(c.turn_pass));
            break;
        default:
            usage();
        }
    }
    if ((int)c.role < 0 || c.jid == NULL || c.password == NULL ||
        c.port == 0 || strchr(c.jid, '@') == NULL ||
        (c.role == ROLE_CALLER && c.peer == NULL) || c.tone <= 0 ||
        c.seconds <= 0)
        usage();

    if (c.extdisco_jid == NULL) {
        /* XEP-0215 §3: the user's server; the domain part of the JID */
        bare_of(strchr(c.jid, '@') + 1, c.domain, sizeof(c.domain));
        c.extdisco_jid = c.domain;
    }
    if (c.turn_override != NULL) {
        const char *colon = strrchr(c.turn_override, ':');

        if (colon == NULL || (size_t)(colon - c.turn_override) >=
            sizeof(c.turn_ip))
            usage();
        memcpy(c.turn_ip, c.turn_override,
               (size_t)(colon - c.turn_override));
        c.turn_port = (unsigned)atoi(colon + 1);
        c.have_turn = 1;
    }

    c.enc = opus_encoder_create(RATE, 1, OPUS_APPLICATION_AUDIO, &err);
    if (c.enc == NULL) {
        fprintf(stderr, "opus_encoder_create: %s\n", opus_strerror(err));
        return 1;
    }
    opus_encoder_ctl(c.enc, OPUS_SET_BITRATE(32000));
    c.dec = opus_decoder_create(RATE, 1, &err);
    if (c.dec == NULL) {
        fprintf(stderr, "opus_decoder_create: %s\n", opus_strerror(err));
        return 1;
    }

    c.loop = g_main_loop_new(NULL, FALSE);
    xmpp_initialize();
    if (c.verbose)
        log = xmpp_get_default_logger(XMPP_LEVEL_DEBUG);
    c.xctx = xmpp_ctx_new(NULL, log);
    c.conn = xmpp_conn_new(c.xctx);
    /* the test's certificate is issued by its own throw-away CA */
    xmpp_conn_set_flags(c.conn, XMPP_CONN_FLAG_MANDATORY_TLS |
                                XMPP_CONN_FLAG_TRUST_TLS |
                                XMPP_CONN_FLAG_DISABLE_SM);
    xmpp_conn_set_jid(c.conn, c.jid);
    xmpp_conn_set_pass(c.conn, c.password);
    if (xmpp_connect_client(c.conn, c.host, c.port, on_conn, &c) !=
        XMPP_EOK) {
        fprintf(stderr, "call_client: cannot connect to %s:%u\n", c.host,
                c.port);
        return 1;
    }
    c.exit_code = 1;
    g_timeout_add(2, pump_xmpp, &c);
    g_timeout_add((guint)(c.timeout * 1000), on_timeout, &c);
    g_main_loop_run(c.loop);

    if (c.state == ST_DONE && c.exit_code != 0 && c.role == ROLE_CALLEE &&
        c.got_first && !c.terminated)
        report_callee(&c);      /* what arrived, for the diagnosis */
    if (c.connected) {
        int i;

        xmpp_disconnect(c.conn);
        for (i = 0; i < 100 && c.connected; i++)
            xmpp_run_once(c.xctx, 10);
    }
    if (c.agent != NULL) {
        guint t;

        /* releases the TURN allocation (a refresh with lifetime 0,
         * RFC 8656 §7) instead of leaving it to expire on the server */
        nice_agent_close_async(c.agent, on_agent_closed, &c);
        t = g_timeout_add(2000, on_close_timeout, &c);
        g_main_loop_run(c.loop);
        g_source_remove(t);
        g_object_unref(c.agent);
    }
    xmpp_conn_release(c.conn);
    xmpp_ctx_free(c.xctx);
    xmpp_shutdown();
    g_main_loop_unref(c.loop);
    opus_encoder_destroy(c.enc);
    opus_decoder_destroy(c.dec);
    g_free(c.seen);
    g_free(c.pcm);
    return c.exit_code;
}
