/* modules/mod_turn.c: the embedded STUN (RFC 8489) and TURN (RFC 8656)
 * server on the raw listeners turn_udp, turn_tcp and turns (TLS) on the
 * libuv loop: allocations with UDP relays from a port range, permissions,
 * channels, Send/Data and ChannelData, lifetimes, per-user quota and
 * bandwidth, coturn shared-secret credentials, internal peers refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <uv.h>

#include <palaver/module.h>
#include <palaver/stun.h>

#define TURN_PERMISSION_MS (300 * 1000)    /* RFC 8656 §9 */
#define TURN_CHANNEL_MS (600 * 1000)       /* RFC 8656 §12 */
#define TURN_MAX_PERMS 64
#define TURN_MAX_CHANNELS 64
#define TURN_BUF 65600
#define TURN_TCP_MAX_QUEUE (1024 * 1024)
#define TURN_TCP_IDLE_MS (60 * 1000)
#define TURN_SOFTWARE "Palaver TURN"

typedef struct {
    char *secret;
    char *relay_ports;
    char *relay_address;
    char *external_address;
    int allow_private;
    long long max_allocations;
    size_t max_bandwidth;
    pv_duration_t default_lifetime;
    pv_duration_t max_lifetime;
    pv_duration_t nonce_lifetime;
    char *tls_certificate;
    char *tls_key;
} turn_conf_t;

typedef struct turn_srv_s turn_srv_t;
typedef struct turn_conn_s turn_conn_t;

/* One raw listener we serve: a UDP socket or a TCP listening socket. */
typedef struct turn_listener_s {
    union {
        uv_handle_t h;
        uv_udp_t udp;
        uv_tcp_t tcp;
    } u;
    turn_srv_t *ts;
    int is_udp;
    int is_tls;
    int core_fd;            /* the core's fd we claimed (F_SETOWN) */
    struct turn_listener_s *next;
} turn_listener_t;

/* A TURN-over-TCP client connection (RFC 8656 §12.5 framing). */
struct turn_conn_s {
    uv_tcp_t tcp;
    turn_srv_t *ts;
    struct sockaddr_storage peer;
    uint8_t *in;
    size_t in_len;
    int closing;
    uint64_t last_active;   /* loop ms of the last frame received */
    SSL *ssl;               /* TURN over TLS (turns), else NULL */
    BIO *rbio, *wbio;       /* memory BIOs: libuv moves the bytes */
    turn_conn_t *next;
};

typedef struct turn_user_s {
    char *name;
    long long n_allocs;
    double tokens;          /* bandwidth bucket, bytes */
    uint64_t refill_ms;
    struct turn_user_s *next;
} turn_user_t;

typedef struct {
    struct sockaddr_storage ip;     /* port ignored */
    uint64_t expires;
} turn_perm_t;

typedef struct {
    uint16_t num;
    struct sockaddr_storage peer;
    uint64_t expires;
} turn_chan_t;

typedef struct turn_alloc_s {
    uv_udp_t relay;
    turn_srv_t *ts;
    /* the client's 5-tuple: the UDP listener and address, or the TCP
     * connection */
    turn_listener_t *ul;
    turn_conn_t *conn;
    struct sockaddr_storage client;     /* normalised (IPv4 as such) */
    struct sockaddr_storage client_raw; /* as the listener sees it: what
                                         * we send to */
    struct sockaddr_storage relay_addr;
    uint8_t tid[PV_STUN_TID_LEN];   /* of the Allocate, for retransmits */
    char *username;
    uint8_t key[PV_STUN_KEY_LEN];
    turn_user_t *user;
    uint64_t expires;
    turn_perm_t perms[TURN_MAX_PERMS];
    size_t n_perms;
    turn_chan_t chans[TURN_MAX_CHANNELS];
    size_t n_chans;
    int closing;
    struct turn_alloc_s *next;
} turn_alloc_t;

struct turn_srv_s {
    pv_module_t *m;
    pv_host_t *h;
    const turn_conf_t *conf;
    uv_loop_t *loop;
    char *secret;
    uint8_t nonce_key[32];
    int port_lo, port_hi, port_next;
    turn_listener_t *listeners;
    turn_conn_t *conns;
    turn_alloc_t *allocs;
    turn_user_t *users;
    pv_mtimer_t *sweep;
    SSL_CTX *tls;           /* NULL without turn_tls_certificate */
    int is_listening;
    uint8_t rbuf[TURN_BUF];         /* receive buffer shared by handles:
                                     * callbacks run one at a time */
    uint8_t wbuf[TURN_BUF];
};

/* What a request came in on, for answering it. */
typedef struct {
    turn_srv_t *ts;
    turn_listener_t *ul;
    turn_conn_t *conn;
    const struct sockaddr *from;    /* as received (may be v4-mapped) */
    struct sockaddr_storage addr;   /* normalised: v4-mapped -> IPv4 */
} turn_src_t;

/* --- small helpers --------------------------------------------------- */

static uint64_t
now_ms(const turn_srv_t *ts)
{
    return pv_now_ms(pv_host_server(ts->h));
}

static socklen_t
sa_len(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                     : sizeof(struct sockaddr_in);
}

/* IPv4-mapped IPv6 addresses (from a dual-stack listener) as IPv4, so
 * that attributes, permissions and the address checks see one form. */
static void
sa_normalise(const struct sockaddr *in, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (in->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)in;

        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)out;

            s4->sin_family = AF_INET;
            s4->sin_port = s6->sin6_port;
            memcpy(&s4->sin_addr, s6->sin6_addr.s6_addr + 12, 4);
            return;
        }
        memcpy(out, in, sizeof(*s6));
        return;
    }
    memcpy(out, in, sizeof(struct sockaddr_in));
}

static int
sa_same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

static uint16_t
sa_port(const struct sockaddr_storage *a)
{
    return ntohs(a->ss_family == AF_INET
                 ? ((const struct sockaddr_in *)a)->sin_port
                 : ((const struct sockaddr_in6 *)a)->sin6_port);
}

static int
sa_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    return sa_same_ip(a, b) && sa_port(a) == sa_port(b);
}

static void
sa_text(const struct sockaddr_storage *a, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (a->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, ip,
                  sizeof(ip));
    else if (a->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr,
                  ip, sizeof(ip));
    snprintf(out, len, a->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip,
             (unsigned)sa_port(a));
}

/* Peers the relay must not reach unless turn_allow_private: the
 * operator's loopback, private, shared, link-local, multicast and
 * unspecified ranges (RFC 8656 §21.2.1 "relaying to internal hosts"). */
static int
is_forbidden_peer(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET) {
        uint32_t ip = ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr);

        return (ip >> 24) == 0 || (ip >> 24) == 10 || (ip >> 24) == 127 ||
               (ip & 0xffc00000u) == 0x64400000u ||     /* 100.64/10 */
               (ip & 0xffff0000u) == 0xa9fe0000u ||     /* 169.254/16 */
               (ip & 0xfff00000u) == 0xac100000u ||     /* 172.16/12 */
               (ip & 0xffff0000u) == 0xc0a80000u ||     /* 192.168/16 */
               (ip >> 28) >= 0xe;                       /* 224/4, 240/4 */
    }
    if (a->ss_family == AF_INET6) {
        const uint8_t *b =
            ((const struct sockaddr_in6 *)a)->sin6_addr.s6_addr;
        static const uint8_t zero[16];

        return memcmp(b, zero, 15) == 0 ||              /* :: and ::1 */
               (b[0] & 0xfe) == 0xfc ||                 /* fc00::/7 */
               (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || /* fe80::/10 */
               b[0] == 0xff ||                          /* multicast */
               IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)b) ||
               IN6_IS_ADDR_V4COMPAT((const struct in6_addr *)b);
    }
    return 1;
}

/* --- users: quota and bandwidth ------------------------------------- */

static turn_user_t *
user_get(turn_srv_t *ts, const char *name)
{
    turn_user_t *u;

    for (u = ts->users; u != NULL; u = u->next)
        if (strcmp(u->name, name) == 0)
            return u;
    u = pv_xcalloc(1, sizeof(*u));
    u->name = pv_xstrdup(name);
    u->refill_ms = now_ms(ts);
    if (ts->conf->max_bandwidth != PV_SIZE_OFF)
        u->tokens = (double)ts->conf->max_bandwidth;
    u->next = ts->users;
    ts->users = u;
    return u;
}

static void
user_put(turn_srv_t *ts, turn_user_t *u)
{
    turn_user_t **pp;

    if (--u->n_allocs > 0)
        return;
    for (pp = &ts->users; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == u) {
            *pp = u->next;
            break;
        }
    }
    free(u->name);
    free(u);
}

/* Token bucket of turn_max_bandwidth bytes/s per user (both directions
 * together), with one second of burst. False: drop the packet. */
static int
user_spend(turn_srv_t *ts, turn_user_t *u, size_t n)
{
    double rate = (double)ts->conf->max_bandwidth;
    uint64_t now;

    if (ts->conf->max_bandwidth == PV_SIZE_OFF)
        return 1;
    now = now_ms(ts);
    u->tokens += rate * (double)(now - u->refill_ms) / 1000.0;
    if (u->tokens > rate)
        u->tokens = rate;
    u->refill_ms = now;
    if (u->tokens < (double)n)
        return 0;
    u->tokens -= (double)n;
    return 1;
}

/* --- sending to clients ---------------------------------------------- */

typedef struct {
    uv_write_t req;
    char data[];
} turn_wreq_t;

static void
conn_write_done(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void conn_close(turn_conn_t *c);

static void
raw_write(turn_conn_t *c, const uint8_t *p, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
    turn_wreq_t *w;
    int n;

    if (c->closing)
        return;
    n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)len)
        return;
    if (n < 0 && n != UV_EAGAIN) {
        conn_close(c);
        return;
    }
    if (n < 0)
        n = 0;
    /* a slow client: queue what is left, but not without bound (relayed
     * media older than a second is worthless anyway) */
    if (c->tcp.write_queue_size > TURN_TCP_MAX_QUEUE)
        return;
    w = pv_xmalloc(sizeof(*w) + len - (size_t)n);
    memcpy(w->data, p + n, len - (size_t)n);
    b = uv_buf_init(w->data, (unsigned)(len - (size_t)n));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1,
                 conn_write_done) != 0) {
        free(w);
        conn_close(c);
    }
}

/* Moves what OpenSSL produced (handshake, records) to the socket. */
static void
tls_flush(turn_conn_t *c)
{
    uint8_t buf[16384];
    int n;

    while (!c->closing && (n = BIO_read(c->wbio, buf, sizeof(buf))) > 0)
        raw_write(c, buf, (size_t)n);
}

static void
conn_write(turn_conn_t *c, const uint8_t *p, size_t len)
{
    if (c->ssl == NULL) {
        raw_write(c, p, len);
        return;
    }
    if (c->closing)
        return;
    /* memory BIOs never block: SSL_write takes it all once the
     * handshake is done, and nothing is relayed to a client before it
     * has sent a request over the finished handshake */
    if (SSL_write(c->ssl, p, (int)len) <= 0) {
        conn_close(c);
        return;
    }
    tls_flush(c);
}

static void
send_client(turn_listener_t *ul, turn_conn_t *conn,
            const struct sockaddr *to, const uint8_t *p, size_t len)
{
    if (conn != NULL) {
        conn_write(conn, p, len);
    } else if (ul != NULL) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);

        /* UDP: a full socket buffer drops the datagram, as the network
         * would */
        (void)uv_udp_try_send(&ul->u.udp, &b, 1, to);
    }
}

static void
reply(const turn_src_t *src, pv_stun_builder_t *b)
{
    size_t n = pv_stun_build_len(b);

    if (n > 0)
        send_client(src->ul, src->conn, src->from, b->buf, n);
}

/* --- allocations ------------------------------------------------------ */

static void
alloc_closed(uv_handle_t *h)
{
    turn_alloc_t *a = (turn_alloc_t *)h;

    free(a->username);
    free(a);
}

static void
alloc_free(turn_alloc_t *a)
{
    turn_srv_t *ts = a->ts;
    turn_alloc_t **pp;
    char txt[64];

    if (a->closing)
        return;
    a->closing = 1;
    for (pp = &ts->allocs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    }
    sa_text(&a->relay_addr, txt, sizeof(txt));
    pv_log(PV_LOG_INFO, pv_host_name(ts->h), "turn: allocation %s of %s "
           "released", txt, a->username);
    user_put(ts, a->user);
    uv_close((uv_handle_t *)&a->relay, alloc_closed);
}

static turn_alloc_t *
alloc_find(turn_srv_t *ts, const turn_src_t *src)
{
    turn_alloc_t *a;

    for (a = ts->allocs; a != NULL; a = a->next) {
        if (src->conn != NULL ? a->conn == src->conn
                              : a->ul == src->ul && a->conn == NULL &&
                                    sa_same(&a->client, &src->addr)) {
            /* the sweep runs once a second; do not serve a dead one
             * meanwhile */
            if (a->expires <= now_ms(ts)) {
                alloc_free(a);
                return NULL;
            }
            return a;
        }
    }
    return NULL;
}

static int
perm_ok(turn_alloc_t *a, const struct sockaddr_storage *peer, uint64_t now)
{
    size_t i;

    for (i = 0; i < a->n_perms; i++)
        if (a->perms[i].expires > now && sa_same_ip(&a->perms[i].ip, peer))
            return 1;
    return 0;
}

static int
perm_add(turn_alloc_t *a, const struct sockaddr_storage *peer, uint64_t now)
{
    size_t i;

    for (i = 0; i < a->n_perms; i++) {
        if (sa_same_ip(&a->perms[i].ip, peer)) {
            a->perms[i].expires = now + TURN_PERMISSION_MS;
            return 1;
        }
    }
    if (a->n_perms == TURN_MAX_PERMS)
        return 0;
    a->perms[a->n_perms].ip = *peer;
    a->perms[a->n_perms].expires = now + TURN_PERMISSION_MS;
    a->n_perms++;
    return 1;
}

static void
relay_alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    turn_alloc_t *a = (turn_alloc_t *)h;

    (void)suggested;
    /* leave room in front for a ChannelData or Data indication header */
    *buf = uv_buf_init((char *)a->ts->rbuf + 64, TURN_BUF - 128);
}

/* A datagram from a peer to the relayed address: to the client as
 * ChannelData when a channel is bound to the peer, else as a Data
 * indication, and only when a permission exists (RFC 8656 §11.6). */
static void
relay_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
           const struct sockaddr *from, unsigned flags)
{
    turn_alloc_t *a = (turn_alloc_t *)h;
    turn_srv_t *ts = a->ts;
    struct sockaddr_storage peer;
    uint64_t now;
    size_t i, n;

    (void)flags;
    if (nread < 0 || from == NULL || a->closing)
        return;
    now = now_ms(ts);
    sa_normalise(from, &peer);
    if (a->expires <= now || !perm_ok(a, &peer, now) ||
        !user_spend(ts, a->user, (size_t)nread))
        return;
    for (i = 0; i < a->n_chans; i++) {
        if (a->chans[i].expires > now && sa_same(&a->chans[i].peer, &peer)) {
            uint8_t *p = (uint8_t *)buf->base - 4;
            size_t total = 4 + (size_t)nread;

            /* the header goes in the room left in front of the data */
            p[0] = (uint8_t)(a->chans[i].num >> 8);
            p[1] = (uint8_t)a->chans[i].num;
            p[2] = (uint8_t)(nread >> 8);
            p[3] = (uint8_t)nread;
            if (a->conn != NULL) {
                total = (total + 3) & ~(size_t)3;
                memset(p + 4 + nread, 0, total - 4 - (size_t)nread);
            }
            send_client(a->ul, a->conn, (struct sockaddr *)&a->client_raw,
                        p, total);
            return;
        }
    }
    {
        pv_stun_builder_t b;
        uint8_t tid[PV_STUN_TID_LEN];

        RAND_bytes(tid, sizeof(tid));
        pv_stun_build_init(&b, ts->wbuf, sizeof(ts->wbuf), PV_STUN_DATA,
                           PV_STUN_INDICATION, tid);
        pv_stun_add_xor_addr(&b, PV_STUN_A_XOR_PEER_ADDRESS,
                             (struct sockaddr *)&peer);
        pv_stun_add(&b, PV_STUN_A_DATA, buf->base, (size_t)nread);
        n = pv_stun_build_len(&b);
        if (n > 0)
            send_client(a->ul, a->conn, (struct sockaddr *)&a->client_raw,
                        ts->wbuf, n);
    }
}

/* Sends payload from the allocation's relay to peer if permitted. */
static void
relay_send(turn_alloc_t *a, const struct sockaddr_storage *peer,
           const uint8_t *p, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);

    if (!perm_ok(a, peer, now_ms(a->ts)) ||
        !user_spend(a->ts, a->user, len))
        return;
    (void)uv_udp_try_send(&a->relay, &b, 1, (const struct sockaddr *)peer);
}

/* The address the relay binds to: turn_relay_address, or the listener's
 * own address, or (a wildcard listener) the local address the kernel
 * routes to this client from, so the relayed address we hand out is one
 * the client can reach. */
static int
relay_bind_addr(turn_srv_t *ts, const turn_src_t *src,
                struct sockaddr_storage *out)
{
    const char *want = ts->conf->relay_address;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd;

    memset(out, 0, sizeof(*out));
    if (want != NULL) {
        if (uv_ip4_addr(want, 0, (struct sockaddr_in *)out) == 0 ||
            uv_ip6_addr(want, 0, (struct sockaddr_in6 *)out) == 0)
            return 0;
        return -1;
    }
    if (src->conn != NULL) {
        int len = (int)sizeof(ss);

        if (uv_tcp_getsockname(&src->conn->tcp, (struct sockaddr *)&ss,
                               &len) != 0)
            return -1;
    } else {
        if (uv_udp_getsockname(&src->ul->u.udp, (struct sockaddr *)&ss,
                               (int *)&sl) != 0)
            return -1;
    }
    sa_normalise((struct sockaddr *)&ss, out);
    if ((out->ss_family == AF_INET &&
         ((struct sockaddr_in *)out)->sin_addr.s_addr != INADDR_ANY) ||
        (out->ss_family == AF_INET6 &&
         !IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)out)->sin6_addr)))
        return 0;
    /* wildcard: ask the routing table */
    fd = socket(src->addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    sl = sizeof(ss);
    if (connect(fd, (const struct sockaddr *)&src->addr,
                sa_len((const struct sockaddr *)&src->addr)) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        close(fd);
        return -1;
    }
    close(fd);
    sa_normalise((struct sockaddr *)&ss, out);
    return 0;
}

/* Binds the relay to a free port of turn_relay_ports, going round the
 * range from where the last allocation stopped. */
static int
relay_open(turn_srv_t *ts, turn_alloc_t *a, const turn_src_t *src)
{
    struct sockaddr_storage addr;
    int span = ts->port_hi - ts->port_lo + 1, i;
    int len;

    if (relay_bind_addr(ts, src, &addr) != 0)
        return -1;
    for (i = 0; i < span && i < 1000; i++) {
        int port = ts->port_next;

        ts->port_next = port >= ts->port_hi ? ts->port_lo : port + 1;
        if (addr.ss_family == AF_INET)
            ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)port);
        else
            ((struct sockaddr_in6 *)&addr)->sin6_port =
                htons((uint16_t)port);
        if (uv_udp_bind(&a->relay, (struct sockaddr *)&addr,
                        addr.ss_family == AF_INET6 ? UV_UDP_IPV6ONLY
                                                   : 0) == 0) {
            len = (int)sizeof(a->relay_addr);
            uv_udp_getsockname(&a->relay, (struct sockaddr *)&a->relay_addr,
                               &len);
            if (ts->conf->external_address != NULL) {
                struct sockaddr_storage ext;

                memset(&ext, 0, sizeof(ext));
                if (uv_ip4_addr(ts->conf->external_address, port,
                                (struct sockaddr_in *)&ext) == 0 ||
                    uv_ip6_addr(ts->conf->external_address, port,
                                (struct sockaddr_in6 *)&ext) == 0)
                    a->relay_addr = ext;
            }
            if (uv_udp_recv_start(&a->relay, relay_alloc_buf,
                                  relay_recv) == 0)
                return 0;
            break;
        }
    }
    return -1;
}

/* --- authentication (RFC 8489 §9.2, coturn's REST scheme) ------------ */

static void
nonce_make(turn_srv_t *ts, const turn_src_t *src, uint64_t expiry,
           char out[41])
{
    uint8_t mac[EVP_MAX_MD_SIZE], data[8 + 16];
    size_t n = 0, i;

    snprintf(out, 9, "%08llx", (unsigned long long)(expiry & 0xffffffffu));
    memcpy(data, out, 8);
    memset(data + 8, 0, 16);
    /* bound to the client's IP so a nonce cannot be replayed elsewhere */
    if (src->addr.ss_family == AF_INET)
        memcpy(data + 8, &((struct sockaddr_in *)&src->addr)->sin_addr, 4);
    else
        memcpy(data + 8, &((struct sockaddr_in6 *)&src->addr)->sin6_addr,
               16);
    EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, ts->nonce_key,
              sizeof(ts->nonce_key), data, sizeof(data), mac, sizeof(mac),
              &n);
    for (i = 0; i < 16; i++)
        snprintf(out + 8 + 2 * i, 3, "%02x", mac[i]);
}

/* 1: good, 0: stale (438), -1: not ours (treated as stale too) */
static int
nonce_check(turn_srv_t *ts, const turn_src_t *src, const pv_stun_attr_t *a)
{
    char want[41], hex[9];
    uint64_t expiry;

    if (a == NULL || a->len != 40)
        return -1;
    memcpy(hex, a->value, 8);
    hex[8] = '\0';
    expiry = strtoull(hex, NULL, 16);
    nonce_make(ts, src, expiry, want);
    if (CRYPTO_memcmp(want, a->value, 40) != 0)
        return -1;
    return expiry > (uint64_t)time(NULL) ? 1 : 0;
}

static void
add_realm_nonce(turn_srv_t *ts, const turn_src_t *src, pv_stun_builder_t *b)
{
    char nonce[41];
    uint64_t life = ts->conf->nonce_lifetime / 1000;

    nonce_make(ts, src, (uint64_t)time(NULL) + (life ? life : 1), nonce);
    pv_stun_add_str(b, PV_STUN_A_REALM, pv_host_name(ts->h));
    pv_stun_add_str(b, PV_STUN_A_NONCE, nonce);
}

static void
send_error(const turn_src_t *src, const pv_stun_msg_t *m, int code,
           const char *reason, int with_nonce, const uint8_t *key)
{
    pv_stun_builder_t b;

    pv_stun_build_init(&b, src->ts->wbuf, sizeof(src->ts->wbuf), m->method,
                       PV_STUN_ERROR, m->tid);
    pv_stun_add_error(&b, code, reason);
    if (code == 420)
        pv_stun_add_unknown(&b, m->unknown, m->n_unknown);
    if (with_nonce)
        add_realm_nonce(src->ts, src, &b);
    pv_stun_add_str(&b, PV_STUN_A_SOFTWARE, TURN_SOFTWARE);
    if (key != NULL)
        pv_stun_add_integrity(&b, key, PV_STUN_KEY_LEN);
    pv_stun_add_fingerprint(&b);
    reply(src, &b);
}

/* Checks the long-term credentials of a request. Returns 0 with the
 * username (NUL-terminated, in uname) and key filled, or -1 after
 * sending the error (401, 400, 438). */
static int
authenticate(turn_srv_t *ts, const turn_src_t *src, const pv_stun_msg_t *m,
             char *uname, size_t uname_cap, uint8_t key[PV_STUN_KEY_LEN])
{
    const pv_stun_attr_t *u, *r, *n;
    char pw[PV_STUN_REST_PASSWORD_LEN], realm[1024];
    unsigned long long expiry;
    char *end;
    int nc;

    if (pv_stun_find(m, PV_STUN_A_MESSAGE_INTEGRITY) == NULL) {
        send_error(src, m, 401, "Unauthorized", 1, NULL);
        return -1;
    }
    u = pv_stun_find(m, PV_STUN_A_USERNAME);
    r = pv_stun_find(m, PV_STUN_A_REALM);
    n = pv_stun_find(m, PV_STUN_A_NONCE);
    if (u == NULL || r == NULL || n == NULL || u->len >= uname_cap ||
        r->len >= sizeof(realm)) {
        send_error(src, m, 400, "Bad Request", 0, NULL);
        return -1;
    }
    memcpy(uname, u->value, u->len);
    uname[u->len] = '\0';
    memcpy(realm, r->value, r->len);
    realm[r->len] = '\0';
    nc = nonce_check(ts, src, n);
    if (nc <= 0) {
        send_error(src, m, 438, "Stale Nonce", 1, NULL);
        return -1;
    }
    /* "<expiry>:<user>"; coturn also takes a bare expiry */
    expiry = strtoull(uname, &end, 10);
    if (end == uname || (*end != '\0' && *end != ':') ||
        expiry <= (unsigned long long)time(NULL) ||
        strcmp(realm, pv_host_name(ts->h)) != 0 ||
        memchr(uname, '\0', u->len) != NULL ||
        pv_stun_rest_password(ts->secret, uname, pw, sizeof(pw)) != PV_OK) {
        send_error(src, m, 401, "Unauthorized", 1, NULL);
        return -1;
    }
    pv_stun_long_term_key(uname, realm, pw, key);
    if (pv_stun_check_integrity(m, key, PV_STUN_KEY_LEN) != PV_OK) {
        pv_log(PV_LOG_INFO, pv_host_name(ts->h), "turn: bad credentials "
               "for %s", uname);
        send_error(src, m, 401, "Unauthorized", 1, NULL);
        return -1;
    }
    return 0;
}

/* --- requests ------------------------------------------------------- */

static void
success_start(const turn_src_t *src, const pv_stun_msg_t *m,
              pv_stun_builder_t *b)
{
    pv_stun_build_init(b, src->ts->wbuf, sizeof(src->ts->wbuf), m->method,
                       PV_STUN_SUCCESS, m->tid);
}

static void
success_finish(const turn_src_t *src, pv_stun_builder_t *b,
               const uint8_t *key)
{
    pv_stun_add_str(b, PV_STUN_A_SOFTWARE, TURN_SOFTWARE);
    if (key != NULL)
        pv_stun_add_integrity(b, key, PV_STUN_KEY_LEN);
    pv_stun_add_fingerprint(b);
    reply(src, b);
}

static uint64_t
lifetime_ms(turn_srv_t *ts, const pv_stun_msg_t *m)
{
    uint32_t want;
    uint64_t ms;

    if (pv_stun_get_u32(m, PV_STUN_A_LIFETIME, &want) != PV_OK)
        return ts->conf->default_lifetime;
    ms = (uint64_t)want * 1000;
    if (ms == 0)
        return 0;
    if (ms > ts->conf->max_lifetime)
        ms = ts->conf->max_lifetime;
    /* RFC 8656 §7.2: a shorter request than the default gets the
     * default */
    if (ms < ts->conf->default_lifetime)
        ms = ts->conf->default_lifetime;
    return ms;
}

static void
allocation_success(const turn_src_t *src, const pv_stun_msg_t *m,
                   turn_alloc_t *a)
{
    pv_stun_builder_t b;
    uint64_t now = now_ms(src->ts);

    success_start(src, m, &b);
    pv_stun_add_xor_addr(&b, PV_STUN_A_XOR_RELAYED_ADDRESS,
                         (struct sockaddr *)&a->relay_addr);
    pv_stun_add_u32(&b, PV_STUN_A_LIFETIME,
                    (uint32_t)((a->expires - now + 999) / 1000));
    pv_stun_add_xor_addr(&b, PV_STUN_A_XOR_MAPPED_ADDRESS,
                         (struct sockaddr *)&src->addr);
    success_finish(src, &b, a->key);
}

static void
do_allocate(turn_srv_t *ts, const turn_src_t *src, const pv_stun_msg_t *m)
{
    char uname[514];
    uint8_t key[PV_STUN_KEY_LEN];
    const pv_stun_attr_t *tr, *fam;
    turn_alloc_t *a;
    turn_user_t *u;
    const char *colon;
    uint64_t life;
    char txt[64];

    if (authenticate(ts, src, m, uname, sizeof(uname), key) != 0)
        return;
    a = alloc_find(ts, src);
    if (a != NULL) {
        /* a retransmitted Allocate gets the same answer (§7.2) */
        if (memcmp(a->tid, m->tid, PV_STUN_TID_LEN) == 0)
            allocation_success(src, m, a);
        else
            send_error(src, m, 437, "Allocation Mismatch", 0, key);
        return;
    }
    tr = pv_stun_find(m, PV_STUN_A_REQUESTED_TRANSPORT);
    if (tr == NULL || tr->len != 4) {
        send_error(src, m, 400, "Bad Request", 0, key);
        return;
    }
    if (tr->value[0] != 17) {
        send_error(src, m, 442, "Unsupported Transport Protocol", 0, key);
        return;
    }
    if (pv_stun_find(m, PV_STUN_A_RESERVATION_TOKEN) != NULL ||
        pv_stun_find(m, PV_STUN_A_EVEN_PORT) != NULL) {
        /* we keep no reserved ports (§7.2 step 5/6) */
        send_error(src, m, 508, "Insufficient Capacity", 0, key);
        return;
    }
    colon = strchr(uname, ':');
    u = user_get(ts, colon != NULL ? colon + 1 : uname);
    if (ts->conf->max_allocations != PV_COUNT_OFF &&
        u->n_allocs >= ts->conf->max_allocations) {
        if (u->n_allocs == 0) {
            /* a quota of 0: forget the user entry we just made */
            u->n_allocs = 1;
            user_put(ts, u);
        }
        pv_log(PV_LOG_INFO, pv_host_name(ts->h), "turn: %s is over its "
               "allocation quota", uname);
        send_error(src, m, 486, "Allocation Quota Reached", 0, key);
        return;
    }
    u->n_allocs++;
    a = pv_xcalloc(1, sizeof(*a));
    uv_udp_init(ts->loop, &a->relay);
    a->ts = ts;
    a->user = u;
    a->username = pv_xstrdup(uname);
    memcpy(a->key, key, sizeof(key));
    memcpy(a->tid, m->tid, PV_STUN_TID_LEN);
    a->ul = src->conn != NULL ? NULL : src->ul;
    a->conn = src->conn;
    a->client = src->addr;
    memcpy(&a->client_raw, src->from, sa_len(src->from));
    if (relay_open(ts, a, src) != 0) {
        pv_log(PV_LOG_WARN, pv_host_name(ts->h), "turn: no relay port free "
               "in %s", ts->conf->relay_ports);
        user_put(ts, u);
        a->closing = 1;
        a->user = NULL;
        uv_close((uv_handle_t *)&a->relay, alloc_closed);
        send_error(src, m, 508, "Insufficient Capacity", 0, key);
        return;
    }
    fam = pv_stun_find(m, PV_STUN_A_REQUESTED_ADDRESS_FAMILY);
    if (fam != NULL && fam->len == 4 &&
        (fam->value[0] == 0x02) != (a->relay_addr.ss_family == AF_INET6)) {
        user_put(ts, u);
        a->closing = 1;
        uv_close((uv_handle_t *)&a->relay, alloc_closed);
        send_error(src, m, 440, "Address Family not Supported", 0, key);
        return;
    }
    life = lifetime_ms(ts, m);
    if (life == 0)
        life = ts->conf->default_lifetime;
    a->expires = now_ms(ts) + life;
    a->next = ts->allocs;
    ts->allocs = a;
    sa_text(&a->relay_addr, txt, sizeof(txt));
    pv_log(PV_LOG_INFO, pv_host_name(ts->h), "turn: allocation %s for %s",
           txt, uname);
    allocation_success(src, m, a);
}

/* The common start of Refresh, CreatePermission and ChannelBind: the
 * credentials, then an allocation of this 5-tuple made by the same
 * user (RFC 8656 §7.3 / §9.2 / §11.2, 437 and 441). */
static turn_alloc_t *
auth_alloc(turn_srv_t *ts, const turn_src_t *src, const pv_stun_msg_t *m,
           uint8_t key[PV_STUN_KEY_LEN])
{
    char uname[514];
    turn_alloc_t *a;

    if (authenticate(ts, src, m, uname, sizeof(uname), key) != 0)
        return NULL;
    a = alloc_find(ts, src);
    if (a == NULL) {
        send_error(src, m, 437, "Allocation Mismatch", 0, key);
        return NULL;
    }
    if (strcmp(a->username, uname) != 0) {
        send_error(src, m, 441, "Wrong Credentials", 0, key);
        return NULL;
    }
    return a;
}

static void
do_refresh(turn_srv_t *ts, const turn_src_t *src, const pv_stun_msg_t *m)
{
    uint8_t key[PV_STUN_KEY_LEN];
    pv_stun_builder_t b;
    turn_alloc_t *a = auth_alloc(ts, src, m, key);
    uint64_t life;

    if (a == NULL)
        return;
    life = lifetime_ms(ts, m);
    success_start(src, m, &b);
    pv_stun_add_u32(&b, PV_STUN_A_LIFETIME, (uint32_t)(life / 1000));
    if (life == 0)
        alloc_free(a);
    else
        a->expires = now_ms(ts) + life;
    success_finish(src, &b, key);
}

/* A peer address the client may use: same family as the relay, not on
 * the operator's internal networks (403) unless allowed. */
static int
peer_check(turn_srv_t *ts, const turn_src_t *src, const pv_stun_msg_t *m,
           turn_alloc_t *a, const struct sockaddr_storage *peer,
           const uint8_t *key)
{
    char txt[64];

    if (peer->ss_family != a->relay_addr.ss_family) {
        send_error(src, m, 443, "Peer Address Family Mismatch", 0, key);
        return -1;
    }
    if (!ts->conf->allow_private && is_forbidden_peer(peer)) {
        sa_text(peer, txt, sizeof(txt));
        pv_log(PV_LOG_INFO, pv_host_name(ts->h), "turn: %s may not relay "
               "to %s (internal address)", a->username, txt);
        send_error(src, m, 403, "Forbidden", 0, key);
        return -1;
    }
    return 0;
}

static void
do_create_permission(turn_srv_t *ts, const turn_src_t *src,
                     const pv_stun_msg_t *m)
{
    uint8_t key[PV_STUN_KEY_LEN];
    struct sockaddr_storage peers[PV_STUN_MAX_ATTRS];
    pv_stun_builder_t b;
    pv_stun_msg_t one;
    turn_alloc_t *a = auth_alloc(ts, src, m, key);
    size_t i, n = 0;
    uint64_t now = now_ms(ts);

    if (a == NULL)
        return;
    /* every XOR-PEER-ADDRESS must pass before any is installed (§9.2) */
    for (i = 0; i < m->n_attrs; i++) {
        if (m->attrs[i].type != PV_STUN_A_XOR_PEER_ADDRESS)
            continue;
        /* decode this occurrence: a message view holding only it */
        memset(&one, 0, sizeof(one));
        memcpy(one.tid, m->tid, PV_STUN_TID_LEN);
        one.attrs[0] = m->attrs[i];
        one.n_attrs = 1;
        if (pv_stun_get_xor_addr(&one, PV_STUN_A_XOR_PEER_ADDRESS,
                                 &peers[n]) != PV_OK) {
            send_error(src, m, 400, "Bad Request", 0, key);
            return;
        }
        if (peer_check(ts, src, m, a, &peers[n], key) != 0)
            return;
        n++;
    }
    if (n == 0) {
        send_error(src, m, 400, "Bad Request", 0, key);
        return;
    }
    for (i = 0; i < n; i++) {
        if (!perm_add(a, &peers[i], now)) {
            send_error(src, m, 508, "Insufficient Capacity", 0, key);
            return;
        }
    }
    success_start(src, m, &b);
    success_finish(src, &b, key);
}

static void
do_channel_bind(turn_srv_t *ts, const turn_src_t *src,
                const pv_stun_msg_t *m)
{
    uint8_t key[PV_STUN_KEY_LEN];
    struct sockaddr_storage peer;
    pv_stun_builder_t b;
    turn_alloc_t *a = auth_alloc(ts, src, m, key);
    uint16_t num;
    uint64_t now = now_ms(ts);
    size_t i;
    turn_chan_t *c = NULL;

    if (a == NULL)
        return;
    if (pv_stun_get_channel(m, &num) != PV_OK ||
        pv_stun_get_xor_addr(m, PV_STUN_A_XOR_PEER_ADDRESS, &peer) !=
            PV_OK) {
        send_error(src, m, 400, "Bad Request", 0, key);
        return;
    }
    if (peer_check(ts, src, m, a, &peer, key) != 0)
        return;
    /* a channel is bound to one peer and a peer to one channel (§11.2) */
    for (i = 0; i < a->n_chans; i++) {
        turn_chan_t *x = &a->chans[i];
        int live = x->expires > now;

        if (x->num == num) {
            if (live && !sa_same(&x->peer, &peer)) {
                send_error(src, m, 400, "Bad Request", 0, key);
                return;
            }
            c = x;
        } else if (live && sa_same(&x->peer, &peer)) {
            send_error(src, m, 400, "Bad Request", 0, key);
            return;
        }
    }
    if (c == NULL) {
        if (a->n_chans == TURN_MAX_CHANNELS) {
            send_error(src, m, 508, "Insufficient Capacity", 0, key);
            return;
        }
        c = &a->chans[a->n_chans++];
        c->num = num;
    }
    c->peer = peer;
    c->expires = now + TURN_CHANNEL_MS;
    if (!perm_add(a, &peer, now)) {
        send_error(src, m, 508, "Insufficient Capacity", 0, key);
        return;
    }
    success_start(src, m, &b);
    success_finish(src, &b, key);
}

static void
do_binding(const turn_src_t *src, const pv_stun_msg_t *m)
{
    pv_stun_builder_t b;

    success_start(src, m, &b);
    pv_stun_add_xor_addr(&b, PV_STUN_A_XOR_MAPPED_ADDRESS,
                         (struct sockaddr *)&src->addr);
    success_finish(src, &b, NULL);
}

static void
do_send(turn_srv_t *ts, const turn_src_t *src, const pv_stun_msg_t *m)
{
    struct sockaddr_storage peer;
    const pv_stun_attr_t *d = pv_stun_find(m, PV_STUN_A_DATA);
    turn_alloc_t *a = alloc_find(ts, src);

    /* indications are never answered (§10.2): drop what is wrong */
    if (a == NULL || d == NULL ||
        pv_stun_get_xor_addr(m, PV_STUN_A_XOR_PEER_ADDRESS, &peer) !=
            PV_OK ||
        peer.ss_family != a->relay_addr.ss_family)
        return;
    relay_send(a, &peer, d->value, d->len);
}

static void
do_channel_data(turn_srv_t *ts, const turn_src_t *src, const uint8_t *p,
                size_t len)
{
    const uint8_t *payload;
    size_t plen, i;
    uint16_t chan;
    turn_alloc_t *a;
    uint64_t now;

    if (pv_stun_channel_data_parse(p, len, &chan, &payload, &plen) != PV_OK)
        return;
    a = alloc_find(ts, src);
    if (a == NULL)
        return;
    now = now_ms(ts);
    for (i = 0; i < a->n_chans; i++) {
        if (a->chans[i].num == chan && a->chans[i].expires > now) {
            relay_send(a, &a->chans[i].peer, payload, plen);
            return;
        }
    }
}

/* One datagram or TCP frame from a client. */
static void
handle_packet(turn_src_t *src, const uint8_t *p, size_t len)
{
    turn_srv_t *ts = src->ts;
    pv_stun_msg_t m;
    pv_stun_err_t e;

    if (pv_stun_is_channel_data(p, len)) {
        do_channel_data(ts, src, p, len);
        return;
    }
    e = pv_stun_parse(&m, p, len);
    if (e != PV_STUN_OK) {
        pv_log_debug_cat("turn", pv_host_name(ts->h),
                         "dropped a datagram: %s", pv_stun_strerror(e));
        return;
    }
    if (m.cls == PV_STUN_INDICATION) {
        if (m.method == PV_STUN_SEND)
            do_send(ts, src, &m);
        return;
    }
    if (m.cls != PV_STUN_REQUEST)
        return;
    if (m.n_unknown > 0) {
        send_error(src, &m, 420, "Unknown Attribute", 0, NULL);
        return;
    }
    switch (m.method) {
    case PV_STUN_BINDING:
        do_binding(src, &m);
        break;
    case PV_STUN_ALLOCATE:
        do_allocate(ts, src, &m);
        break;
    case PV_STUN_REFRESH:
        do_refresh(ts, src, &m);
        break;
    case PV_STUN_CREATE_PERMISSION:
        do_create_permission(ts, src, &m);
        break;
    case PV_STUN_CHANNEL_BIND:
        do_channel_bind(ts, src, &m);
        break;
    default:
        send_error(src, &m, 400, "Bad Request", 0, NULL);
        break;
    }
}

/* --- UDP listener ----------------------------------------------------- */

static void
udp_alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    turn_listener_t *l = (turn_listener_t *)h;

    (void)suggested;
    *buf = uv_buf_init((char *)l->ts->rbuf, TURN_BUF);
}

static void
udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
         const struct sockaddr *from, unsigned flags)
{
    turn_listener_t *l = (turn_listener_t *)h;
    turn_src_t src;

    (void)flags;
    if (nread <= 0 || from == NULL)
        return;
    memset(&src, 0, sizeof(src));
    src.ts = l->ts;
    src.ul = l;
    src.from = from;
    sa_normalise(from, &src.addr);
    handle_packet(&src, (const uint8_t *)buf->base, (size_t)nread);
}

/* --- TCP connections ------------------------------------------------ */

static void
conn_closed(uv_handle_t *h)
{
    turn_conn_t *c = (turn_conn_t *)h;

    SSL_free(c->ssl);   /* frees both BIOs too */
    free(c->in);
    free(c);
}

static void
conn_close(turn_conn_t *c)
{
    turn_srv_t *ts = c->ts;
    turn_conn_t **pp;
    turn_alloc_t *a, *next;

    if (c->closing)
        return;
    c->closing = 1;
    /* an allocation over TCP lives as long as its connection (§7) */
    for (a = ts->allocs; a != NULL; a = next) {
        next = a->next;
        if (a->conn == c)
            alloc_free(a);
    }
    for (pp = &ts->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void
conn_alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    turn_conn_t *c = (turn_conn_t *)h;

    (void)suggested;
    /* plain TCP reads straight into the frame buffer; TLS records go
     * through the shared buffer into OpenSSL first */
    if (c->ssl != NULL)
        *buf = uv_buf_init((char *)c->ts->rbuf, TURN_BUF);
    else
        *buf = uv_buf_init((char *)c->in + c->in_len,
                           (unsigned)(TURN_BUF - c->in_len));
}

/* Handles every whole frame in c->in. -1 when the connection closed. */
static int
conn_frames(turn_conn_t *c)
{
    size_t off = 0, flen;
    turn_src_t src;

    memset(&src, 0, sizeof(src));
    src.ts = c->ts;
    src.conn = c;
    src.from = (struct sockaddr *)&c->peer;
    sa_normalise((struct sockaddr *)&c->peer, &src.addr);
    while (!c->closing) {
        pv_rc_t rc = pv_stun_frame_len(c->in + off, c->in_len - off, &flen);

        if (rc == PV_AGAIN || (rc == PV_OK && flen > c->in_len - off))
            break;
        if (rc != PV_OK) {
            /* the stream cannot be resynchronised (RFC 8656 §12.5) */
            conn_close(c);
            return -1;
        }
        c->last_active = now_ms(c->ts);
        handle_packet(&src, c->in + off, flen);
        off += flen;
    }
    if (c->closing)
        return -1;
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return 0;
}

static void
conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    turn_conn_t *c = (turn_conn_t *)s;
    int n;

    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (c->ssl == NULL) {
        c->in_len += (size_t)nread;
        conn_frames(c);
        return;
    }
    if (BIO_write(c->rbio, buf->base, (int)nread) != (int)nread) {
        conn_close(c);
        return;
    }
    for (;;) {
        /* a whole frame always fits: TURN_BUF exceeds the largest */
        n = SSL_read(c->ssl, c->in + c->in_len,
                     (int)(TURN_BUF - c->in_len));
        if (n > 0) {
            c->in_len += (size_t)n;
            if (conn_frames(c) != 0)
                return;
            continue;
        }
        if (SSL_get_error(c->ssl, n) != SSL_ERROR_WANT_READ) {
            /* a failed handshake, a bad record or close_notify */
            ERR_clear_error();
            tls_flush(c);
            conn_close(c);
            return;
        }
        break;
    }
    tls_flush(c);
}

static void
tcp_accept(uv_stream_t *server, int status)
{
    turn_listener_t *l = (turn_listener_t *)server;
    turn_srv_t *ts = l->ts;
    turn_conn_t *c;
    int len;

    if (status != 0)
        return;
    c = pv_xcalloc(1, sizeof(*c));
    c->ts = ts;
    c->in = pv_xmalloc(TURN_BUF);
    uv_tcp_init(ts->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
        return;
    }
    len = (int)sizeof(c->peer);
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len);
    uv_tcp_nodelay(&c->tcp, 1);
    c->last_active = now_ms(ts);
    if (l->is_tls) {
        c->ssl = SSL_new(ts->tls);
        c->rbio = BIO_new(BIO_s_mem());
        c->wbio = BIO_new(BIO_s_mem());
        if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
            BIO_free(c->rbio);
            BIO_free(c->wbio);
            SSL_free(c->ssl);
            c->ssl = NULL;
            uv_close((uv_handle_t *)&c->tcp, conn_closed);
            return;
        }
        SSL_set_bio(c->ssl, c->rbio, c->wbio);
        SSL_set_accept_state(c->ssl);
    }
    c->next = ts->conns;
    ts->conns = c;
    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_buf, conn_read);
}

/* --- listeners, timers, lifecycle ------------------------------------ */

static void
listener_closed(uv_handle_t *h)
{
    free(h);
}

typedef struct {
    turn_srv_t *ts;
    int is_udp;
    int is_tls;
} claim_t;

/* Listeners are process-wide but the module runs per host: the first
 * host to serve a socket marks it with F_SETOWN (a field of the core's
 * open file description, not state of ours), so other hosts skip it;
 * host_fini clears the mark. */
static void
claim_listener(void *arg, const pv_raw_listener_t *rl)
{
    claim_t *cl = arg;
    turn_srv_t *ts = cl->ts;
    turn_listener_t *l;
    int fd, rc;

    if (fcntl(rl->fd, F_GETOWN) == getpid())
        return;
    fd = dup(rl->fd);
    if (fd < 0)
        return;
    l = pv_xcalloc(1, sizeof(*l));
    l->ts = ts;
    l->is_udp = cl->is_udp;
    l->is_tls = cl->is_tls;
    l->core_fd = rl->fd;
    if (cl->is_udp) {
        uv_udp_init(ts->loop, &l->u.udp);
        rc = uv_udp_open(&l->u.udp, fd);
        if (rc == 0)
            rc = uv_udp_recv_start(&l->u.udp, udp_alloc_buf, udp_recv);
    } else {
        uv_tcp_init(ts->loop, &l->u.tcp);
        rc = uv_tcp_open(&l->u.tcp, fd);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&l->u.tcp, 128, tcp_accept);
    }
    if (rc != 0) {
        pv_log(PV_LOG_ERROR, pv_host_name(ts->h), "turn: cannot serve %s "
               "port %d: %s", rl->kind, rl->port, uv_strerror(rc));
        uv_close(&l->u.h, listener_closed);
        return;
    }
    fcntl(rl->fd, F_SETOWN, getpid());
    l->next = ts->listeners;
    ts->listeners = l;
    pv_log(PV_LOG_INFO, pv_host_name(ts->h), "turn: serving %s on port %d "
           "(realm %s)", rl->kind, rl->port, pv_host_name(ts->h));
}

static void
count_listener(void *arg, const pv_raw_listener_t *rl)
{
    (void)rl;
    ++*(int *)arg;
}

static void
turn_listen(turn_srv_t *ts)
{
    claim_t cl = { ts, 1, 0 };
    pv_server_t *srv = pv_host_server(ts->h);
    int n_tls = 0;

    if (ts->is_listening)
        return;
    ts->is_listening = 1;
    pv_server_each_raw_listener(srv, "turn_udp", claim_listener, &cl);
    cl.is_udp = 0;
    pv_server_each_raw_listener(srv, "turn_tcp", claim_listener, &cl);
    if (ts->tls != NULL) {
        cl.is_tls = 1;
        pv_server_each_raw_listener(srv, "turns", claim_listener, &cl);
        return;
    }
    pv_server_each_raw_listener(srv, "turns", count_listener, &n_tls);
    if (n_tls > 0)
        pv_log(PV_LOG_WARN, pv_host_name(ts->h), "turn: a turns listener "
               "exists but turn_tls_certificate/turn_tls_key are not set: "
               "it is not served");
}

static void
turn_listen_later(void *arg)
{
    turn_listen(arg);
}

static pv_rc_t
turn_on_listening(pv_event_t *ev)
{
    turn_srv_t *ts = pv_module_host_data(ev->module, ev->host);

    if (ts != NULL)
        turn_listen(ts);
    return PV_PASS;
}

static pv_rc_t
turn_on_secret(pv_event_t *ev)
{
    turn_srv_t *ts = pv_module_host_data(ev->module, ev->host);

    if (ts == NULL || ts->secret == NULL || ev->data == NULL)
        return PV_PASS;
    *(const char **)ev->data = ts->secret;
    return PV_HANDLED;
}

static int
conn_has_alloc(turn_srv_t *ts, const turn_conn_t *c)
{
    const turn_alloc_t *a;

    for (a = ts->allocs; a != NULL; a = a->next)
        if (a->conn == c)
            return 1;
    return 0;
}

static void
turn_sweep(void *arg)
{
    turn_srv_t *ts = arg;
    uint64_t now = now_ms(ts);
    turn_alloc_t *a, *next;
    turn_conn_t *c, *cnext;
    size_t i, j;

    /* a TCP connection that holds no allocation and stays silent is
     * closed, so idle sockets cannot pile up */
    for (c = ts->conns; c != NULL; c = cnext) {
        cnext = c->next;
        if (now - c->last_active > TURN_TCP_IDLE_MS &&
            !conn_has_alloc(ts, c))
            conn_close(c);
    }

    for (a = ts->allocs; a != NULL; a = next) {
        next = a->next;
        if (a->expires <= now) {
            alloc_free(a);
            continue;
        }
        for (i = j = 0; i < a->n_perms; i++)
            if (a->perms[i].expires > now)
                a->perms[j++] = a->perms[i];
        a->n_perms = j;
        for (i = j = 0; i < a->n_chans; i++)
            if (a->chans[i].expires > now)
                a->chans[j++] = a->chans[i];
        a->n_chans = j;
    }
}

static int
parse_ports(const char *s, int *lo, int *hi)
{
    char *end;
    long a, b;

    a = strtol(s, &end, 10);
    if (*end != '-')
        return -1;
    b = strtol(end + 1, &end, 10);
    if (*end != '\0' || a < 1 || b > 65535 || a > b)
        return -1;
    *lo = (int)a;
    *hi = (int)b;
    return 0;
}

static void
secret_stored(void *arg, int rc)
{
    (void)arg;
    if (rc != PV_OK && rc != PV_AGAIN)
        pv_log(PV_LOG_WARN, "turn", "could not store the generated "
               "secret: TURN credentials will change at restart");
}

/* turn_secret, or the one generated at first start and kept in the
 * store "turn.secret" (host, user "") so that it survives restarts and
 * palaverctl check turn can read it. */
static char *
load_secret(pv_module_t *m, pv_host_t *h, const turn_conf_t *conf)
{
    pv_store_t *st;
    void *val = NULL;
    size_t len = 0, i;
    uint8_t rnd[24];
    char *s;

    if (conf->secret != NULL)
        return pv_xstrdup(conf->secret);
    st = pv_store_open(h, m, "secret", PV_STORE_KEYVAL);
    if (st == NULL)
        return NULL;
    if (pv_store_get(st, pv_host_name(h), "", NULL, &val, &len) == PV_OK &&
        len > 0) {
        s = pv_xstrndup(val, len);
        free(val);
        return s;
    }
    free(val);
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return NULL;
    s = pv_xmalloc(2 * sizeof(rnd) + 1);
    for (i = 0; i < sizeof(rnd); i++)
        snprintf(s + 2 * i, 3, "%02x", rnd[i]);
    pv_store_put(st, pv_host_name(h), "", NULL, s, strlen(s), secret_stored,
                 NULL);
    return s;
}

/* The TLS context of the turns listener (RFC 8656 §3.1: TURN over
 * TLS-over-TCP), TLS 1.2 at least. */
static SSL_CTX *
tls_context(pv_host_t *h, const turn_conf_t *conf)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    unsigned long e;
    char err[256];

    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, conf->tls_certificate) ==
            1 &&
        SSL_CTX_use_PrivateKey_file(ctx, conf->tls_key != NULL
                                             ? conf->tls_key
                                             : conf->tls_certificate,
                                    SSL_FILETYPE_PEM) == 1 &&
        SSL_CTX_check_private_key(ctx) == 1)
        return ctx;
    e = ERR_get_error();
    ERR_error_string_n(e, err, sizeof(err));
    ERR_clear_error();
    pv_log(PV_LOG_ERROR, pv_host_name(h), "turn: cannot use %s for TLS: %s",
           conf->tls_certificate, err);
    SSL_CTX_free(ctx);
    return NULL;
}

static int
turn_host_init(pv_module_t *m, pv_host_t *h)
{
    const turn_conf_t *conf = pv_module_conf(m, h);
    turn_srv_t *ts;
    int lo, hi;

    if (parse_ports(conf->relay_ports, &lo, &hi) != 0) {
        pv_log(PV_LOG_ERROR, pv_host_name(h), "turn: turn_relay_ports '%s' "
               "is not LOW-HIGH", conf->relay_ports);
        return PV_ERROR;
    }
    ts = pv_xcalloc(1, sizeof(*ts));
    ts->m = m;
    ts->h = h;
    ts->conf = conf;
    ts->loop = pv_server_uv_loop(pv_host_server(h));
    ts->port_lo = lo;
    ts->port_hi = hi;
    ts->secret = load_secret(m, h, conf);
    if (ts->secret == NULL || RAND_bytes(ts->nonce_key,
                                         sizeof(ts->nonce_key)) != 1) {
        pv_log(PV_LOG_ERROR, pv_host_name(h), "turn: no shared secret");
        free(ts->secret);
        free(ts);
        return PV_ERROR;
    }
    {
        uint8_t r[2];

        /* start somewhere in the range so restarts do not reuse ports */
        RAND_bytes(r, 2);
        ts->port_next = lo + (int)(((unsigned)r[0] << 8 | r[1]) %
                                   (unsigned)(hi - lo + 1));
    }
    if (conf->tls_certificate != NULL) {
        ts->tls = tls_context(h, conf);
        if (ts->tls == NULL) {
            free(ts->secret);
            free(ts);
            return PV_ERROR;
        }
    }
    ts->sweep = pv_module_timer(m, h, 1000, 1000, turn_sweep, ts);
    pv_module_set_host_data(m, h, ts);
    /* after a reload the listeners exist already and no PV_EV_LISTENING
     * comes: claim them from the loop, once the old generation's hosts
     * have let go of them (at first start PV_EV_LISTENING is first, and
     * pv_server_each_raw_listener() must not run inside host_init then:
     * the core has no boot generation yet) */
    pv_module_timer(m, h, 1, 0, turn_listen_later, ts);
    return PV_OK;
}

static void
turn_host_fini(pv_module_t *m, pv_host_t *h)
{
    turn_srv_t *ts = pv_module_host_data(m, h);
    turn_listener_t *l, *ln;
    turn_user_t *u, *un;

    if (ts == NULL)
        return;
    while (ts->allocs != NULL)
        alloc_free(ts->allocs);
    while (ts->conns != NULL)
        conn_close(ts->conns);
    for (l = ts->listeners; l != NULL; l = ln) {
        ln = l->next;
        fcntl(l->core_fd, F_SETOWN, 0);
        uv_close(&l->u.h, listener_closed);
    }
    for (u = ts->users; u != NULL; u = un) {
        un = u->next;
        free(u->name);
        free(u);
    }
    /* handles close on a later loop turn; their callbacks free only
     * their own memory, not ts. The relay buffers live in ts, but no
     * read callback runs on a closing handle. */
    SSL_CTX_free(ts->tls);  /* open connections keep their reference */
    free(ts->secret);
    OPENSSL_cleanse(ts->nonce_key, sizeof(ts->nonce_key));
    free(ts);
    pv_module_set_host_data(m, h, NULL);
}

static const pv_hook_t turn_hooks[] = {
    { PV_EV_LISTENING, PV_TO_ANY, NULL, NULL, turn_on_listening, 0, 0 },
    { PV_EV_TURN_SECRET, PV_TO_ANY, NULL, NULL, turn_on_secret, 0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t turn_directives[] = {
    { "turn_secret", PV_CTX_ANY, pv_conf_string,
      offsetof(turn_conf_t, secret), "", 0, 0, NULL },
    { "turn_relay_ports", PV_CTX_ANY, pv_conf_string,
      offsetof(turn_conf_t, relay_ports), "49152-65535", 0, 0, NULL },
    { "turn_relay_address", PV_CTX_ANY, pv_conf_string,
      offsetof(turn_conf_t, relay_address), "", 0, 0, NULL },
    { "turn_external_address", PV_CTX_ANY, pv_conf_string,
      offsetof(turn_conf_t, external_address), "", 0, 0, NULL },
    { "turn_allow_private", PV_CTX_ANY, pv_conf_bool,
      offsetof(turn_conf_t, allow_private), "false", 0, 0, NULL },
    { "turn_max_allocations_per_user", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(turn_conf_t, max_allocations), "10", 0, 0, NULL },
    { "turn_max_bandwidth", PV_CTX_ANY, pv_conf_rate,
      offsetof(turn_conf_t, max_bandwidth), "off", 0, 0, NULL },
    { "turn_default_lifetime", PV_CTX_ANY, pv_conf_duration,
      offsetof(turn_conf_t, default_lifetime), "10m", 1000, 0, NULL },
    { "turn_max_lifetime", PV_CTX_ANY, pv_conf_duration,
      offsetof(turn_conf_t, max_lifetime), "1h", 1000, 0, NULL },
    { "turn_nonce_lifetime", PV_CTX_ANY, pv_conf_duration,
      offsetof(turn_conf_t, nonce_lifetime), "1h", 1000, 0, NULL },
    { "turn_tls_certificate", PV_CTX_ANY, pv_conf_path,
      offsetof(turn_conf_t, tls_certificate), "", 0, 0, NULL },
    { "turn_tls_key", PV_CTX_ANY, pv_conf_path,
      offsetof(turn_conf_t, tls_key), "", 0, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(turn) = {
    .abi = PV_MODULE_ABI,
    .name = "turn",
    .hooks = turn_hooks,
    .directives = turn_directives,
    .conf_size = sizeof(turn_conf_t),
    .host_init = turn_host_init,
    .host_fini = turn_host_fini,
};
