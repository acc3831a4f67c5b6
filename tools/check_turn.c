/* tools/check_turn.c: `palaverctl check turn [JID]`: computes TURN
 * credentials for JID from the configuration (turn_secret, or the secret
 * mod_turn generated and keeps in its store) exactly as mod_extdisco
 * hands them to clients, allocates a relay on the configured turn_udp
 * listener, permits a UDP socket of its own, sends a packet through the
 * relay and back, and says in plain words what failed. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <openssl/rand.h>

#include <palaver/stun.h>
#include <palaver/storage.h>

#include "palaver.h"

int pv_check_turn(const pv_config_t *cfg, const char *jid);

typedef struct {
    int fd;                         /* our client socket (connected) */
    int peer;                       /* the stand-in peer */
    struct sockaddr_storage server;
    struct sockaddr_storage peer_addr;
    struct sockaddr_storage relay;
    char username[600];
    char password[PV_STUN_REST_PASSWORD_LEN];
    char realm[256];
    char nonce[256];
    uint8_t key[PV_STUN_KEY_LEN];
    int have_key;
    uint8_t in[2048];
    size_t in_len;
} ct_t;

static void
addr_text(const struct sockaddr_storage *a, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port;

    if (a->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr,
                  ip, sizeof(ip));
        port = ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
        snprintf(out, len, "[%s]:%u", ip, port);
        return;
    }
    inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, ip,
              sizeof(ip));
    port = ntohs(((const struct sockaddr_in *)a)->sin_port);
    snprintf(out, len, "%s:%u", ip, port);
}

static socklen_t
addr_len(const struct sockaddr_storage *a)
{
    return a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                    : sizeof(struct sockaddr_in);
}

/* The directive name's value in module's conf struct for host (its table
 * gives the offset), or NULL. */
static const char *
module_string(const pv_config_t *cfg, const pv_host_conf_t *host,
              const char *module, const char *name)
{
    const pv_directive_t *d;
    void *conf = pv_config_module_conf(cfg, host, module);
    size_t i;

    if (conf == NULL)
        return NULL;
    for (i = 0; i < host->n_modules; i++) {
        if (strcmp(host->modules[i], module) != 0)
            continue;
        for (d = host->module_decls[i]->directives; d && d->name; d++)
            if (strcmp(d->name, name) == 0)
                return *(char **)((char *)conf + d->offset);
    }
    return NULL;
}

/* The port the running server bound for kind (its <storage>/ports file),
 * else the configured one; 0 when there is no such listener. */
static int
listener_port(const pv_config_t *cfg, pv_listen_kind_t kind,
              const char **address)
{
    char *path, line[512], k[64], a[256];
    int port = 0, p;
    size_t i;
    FILE *f;

    *address = NULL;
    for (i = 0; i < cfg->n_listeners; i++) {
        if (cfg->listeners[i].kind == kind) {
            *address = cfg->listeners[i].address;
            port = cfg->listeners[i].port;
            break;
        }
    }
    if (i == cfg->n_listeners)
        return 0;
    path = pv_xasprintf("%s/ports", cfg->global.storage_path);
    f = fopen(path, "r");
    free(path);
    if (f == NULL)
        return port;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "%63s %255s %d", k, a, &p) == 3 &&
            strcmp(k, pv_listen_kind_name(kind)) == 0) {
            port = p;
            break;
        }
    }
    fclose(f);
    return port;
}

/* turn_secret, or the one mod_turn generated (store "turn.secret"). */
static char *
find_secret(const pv_config_t *cfg, const pv_host_conf_t *host)
{
    const char *s = module_string(cfg, host, "turn", "turn_secret");
    pv_storage_t *st;
    pv_store_t *store;
    void *val = NULL;
    size_t len = 0;
    char *out = NULL;

    if (s != NULL)
        return pv_xstrdup(s);
    st = pv_storage_open(cfg->global.storage_path, NULL);
    if (st == NULL)
        return NULL;
    store = pv_storage_store(st, "turn", "secret", PV_STORE_KEYVAL);
    if (store != NULL && pv_store_get(store, host->name, "", NULL, &val,
                                      &len) == PV_OK && len > 0)
        out = pv_xstrndup(val, len);
    free(val);
    pv_storage_close(st);
    return out;
}

static int
wait_readable(int fd, int ms)
{
    struct pollfd p = { fd, POLLIN, 0 };

    return poll(&p, 1, ms) > 0;
}

/* Sends a request built by the caller into buf and waits for the answer
 * with the same transaction id, retransmitting (RFC 8489 §6.2.1, shorter
 * here: 4 tries, 500 ms apart). Fills m; 0 or -1 on timeout. */
static int
transact(ct_t *c, const uint8_t *buf, size_t len, const uint8_t *tid,
         pv_stun_msg_t *m)
{
    int tries;

    for (tries = 0; tries < 4; tries++) {
        if (send(c->fd, buf, len, 0) < 0)
            return -1;
        while (wait_readable(c->fd, 500)) {
            ssize_t n = recv(c->fd, c->in, sizeof(c->in), 0);

            if (n <= 0)
                return -1;
            if (pv_stun_parse(m, c->in, (size_t)n) == PV_STUN_OK &&
                memcmp(m->tid, tid, PV_STUN_TID_LEN) == 0)
                return 0;
        }
    }
    return -1;
}

static void
start(ct_t *c, pv_stun_builder_t *b, uint8_t *buf, size_t cap,
      uint16_t method, uint8_t *tid)
{
    RAND_bytes(tid, PV_STUN_TID_LEN);
    pv_stun_build_init(b, buf, cap, method, PV_STUN_REQUEST, tid);
    (void)c;
}

static void
finish_auth(ct_t *c, pv_stun_builder_t *b)
{
    pv_stun_add_str(b, PV_STUN_A_USERNAME, c->username);
    pv_stun_add_str(b, PV_STUN_A_REALM, c->realm);
    pv_stun_add_str(b, PV_STUN_A_NONCE, c->nonce);
    pv_stun_add_integrity(b, c->key, sizeof(c->key));
    pv_stun_add_fingerprint(b);
}

static void
learn_nonce(ct_t *c, const pv_stun_msg_t *m)
{
    const pv_stun_attr_t *r = pv_stun_find(m, PV_STUN_A_REALM);
    const pv_stun_attr_t *n = pv_stun_find(m, PV_STUN_A_NONCE);

    if (r != NULL && r->len < sizeof(c->realm)) {
        memcpy(c->realm, r->value, r->len);
        c->realm[r->len] = '\0';
    }
    if (n != NULL && n->len < sizeof(c->nonce)) {
        memcpy(c->nonce, n->value, n->len);
        c->nonce[n->len] = '\0';
    }
    pv_stun_long_term_key(c->username, c->realm, c->password, c->key);
    c->have_key = 1;
}

static const char *
explain(int code)
{
    switch (code) {
    case 401:
        return "the server refused the credentials: is turn_secret the "
               "same for mod_turn and whoever computes them, and are the "
               "clocks right?";
    case 403:
        return "the server refuses to relay to this address: loopback, "
               "private and link-local peers need turn_allow_private = "
               "true";
    case 437:
        return "the server has no allocation for this client (expired?)";
    case 438:
        return "the server keeps saying the nonce is stale";
    case 486:
        return "this user has reached turn_max_allocations_per_user";
    case 508:
        return "no relay port is free in turn_relay_ports (or the relay "
               "address cannot be bound: check turn_relay_address)";
    default:
        return "unexpected error";
    }
}

/* Runs one authenticated request (learning a fresh nonce on 438 once).
 * Returns 0 on success, else prints why and returns -1. */
static int
request(ct_t *c, const char *what, uint16_t method,
        void (*add)(ct_t *c, pv_stun_builder_t *b), pv_stun_msg_t *m)
{
    uint8_t buf[1024], tid[PV_STUN_TID_LEN];
    pv_stun_builder_t b;
    int attempt, code;
    const char *reason;
    size_t rlen;

    for (attempt = 0; attempt < 2; attempt++) {
        start(c, &b, buf, sizeof(buf), method, tid);
        add(c, &b);
        finish_auth(c, &b);
        if (transact(c, buf, pv_stun_build_len(&b), tid, m) != 0) {
            printf("FAIL: %s: no answer from the TURN server\n", what);
            return -1;
        }
        if (m->cls == PV_STUN_SUCCESS) {
            if (pv_stun_check_integrity(m, c->key, sizeof(c->key)) !=
                PV_OK) {
                printf("FAIL: %s: the answer's MESSAGE-INTEGRITY does not "
                       "verify\n", what);
                return -1;
            }
            return 0;
        }
        if (pv_stun_get_error(m, &code, &reason, &rlen) != PV_OK) {
            printf("FAIL: %s: an error answer without ERROR-CODE\n", what);
            return -1;
        }
        if (code == 438 && attempt == 0) {
            learn_nonce(c, m);
            continue;
        }
        printf("FAIL: %s: %d %.*s: %s\n", what, code, (int)rlen, reason,
               explain(code));
        return -1;
    }
    return -1;
}

static void
add_allocate(ct_t *c, pv_stun_builder_t *b)
{
    (void)c;
    pv_stun_add_transport(b, 17);
}

static void
add_peer(ct_t *c, pv_stun_builder_t *b)
{
    pv_stun_add_xor_addr(b, PV_STUN_A_XOR_PEER_ADDRESS,
                         (struct sockaddr *)&c->peer_addr);
}

static void
add_zero_lifetime(ct_t *c, pv_stun_builder_t *b)
{
    (void)c;
    pv_stun_add_u32(b, PV_STUN_A_LIFETIME, 0);
}

static uint64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* The packet exchange through the relay: client -> relay -> peer, then
 * peer -> relay -> client as a Data indication. */
static int
exchange(ct_t *c)
{
    static const char probe[] = "palaverctl check turn";
    uint8_t buf[512], tid[PV_STUN_TID_LEN], got[512];
    pv_stun_builder_t b;
    pv_stun_msg_t m;
    struct sockaddr_storage from;
    socklen_t fl = sizeof(from);
    char txt[64];
    uint64_t t0 = mono_us();
    ssize_t n;
    const pv_stun_attr_t *d;

    RAND_bytes(tid, sizeof(tid));
    pv_stun_build_init(&b, buf, sizeof(buf), PV_STUN_SEND,
                       PV_STUN_INDICATION, tid);
    add_peer(c, &b);
    pv_stun_add(&b, PV_STUN_A_DATA, probe, sizeof(probe) - 1);
    if (send(c->fd, buf, pv_stun_build_len(&b), 0) < 0 ||
        !wait_readable(c->peer, 2000)) {
        printf("FAIL: the packet sent through the relay did not reach the "
               "peer (a firewall between the relay and this host?)\n");
        return -1;
    }
    n = recvfrom(c->peer, got, sizeof(got), 0, (struct sockaddr *)&from,
                 &fl);
    if (n != (ssize_t)sizeof(probe) - 1 || memcmp(got, probe, (size_t)n)) {
        printf("FAIL: the peer received something else than was sent\n");
        return -1;
    }
    addr_text(&from, txt, sizeof(txt));
    printf("the peer received the packet from %s\n", txt);
    if (sendto(c->peer, "pong", 4, 0, (struct sockaddr *)&c->relay,
               addr_len(&c->relay)) < 0)
        return -1;
    while (wait_readable(c->fd, 2000)) {
        n = recv(c->fd, c->in, sizeof(c->in), 0);
        if (n <= 0)
            break;
        if (pv_stun_parse(&m, c->in, (size_t)n) != PV_STUN_OK ||
            m.method != PV_STUN_DATA || m.cls != PV_STUN_INDICATION)
            continue;
        d = pv_stun_find(&m, PV_STUN_A_DATA);
        if (d == NULL || d->len != 4 || memcmp(d->value, "pong", 4) != 0) {
            printf("FAIL: the Data indication carried something else\n");
            return -1;
        }
        printf("ok: relayed a packet both ways through %s in %.1f ms\n",
               (addr_text(&c->relay, txt, sizeof(txt)), txt),
               (double)(mono_us() - t0) / 1000.0);
        return 0;
    }
    printf("FAIL: the peer's answer to the relayed address did not come "
           "back as a Data indication\n");
    return -1;
}

int
pv_check_turn(const pv_config_t *cfg, const char *jid)
{
    const pv_host_conf_t *host = NULL;
    const char *address, *at;
    char *secret = NULL, *own_jid = NULL, txt[64];
    uint8_t buf[512], tid[PV_STUN_TID_LEN];
    pv_stun_builder_t b;
    pv_stun_msg_t m;
    socklen_t sl;
    ct_t c;
    int port, rc = 1, code;
    size_t i;

    memset(&c, 0, sizeof(c));
    c.fd = c.peer = -1;
    at = jid != NULL ? strchr(jid, '@') : NULL;
    for (i = 0; i < cfg->n_hosts; i++) {
        const pv_host_conf_t *hc = &cfg->hosts[i];

        if (hc->is_component)
            continue;
        if (jid == NULL || strcmp(hc->name, at ? at + 1 : jid) == 0) {
            host = hc;
            break;
        }
    }
    if (host == NULL) {
        printf("FAIL: %s is not a virtual host of this configuration\n",
               at ? at + 1 : jid ? jid : "(none)");
        return 1;
    }
    if (jid == NULL || at == NULL)
        jid = own_jid = pv_xasprintf("palaverctl@%s", host->name);
    printf("checking TURN of %s as %s\n", host->name, jid);
    if (pv_config_module_conf(cfg, host, "turn") == NULL) {
        printf("FAIL: mod_turn is not enabled on %s (modules_enabled)\n",
               host->name);
        goto out;
    }
    port = listener_port(cfg, PV_LISTEN_TURN_UDP, &address);
    if (port == 0) {
        printf("FAIL: no turn_udp listener in listen = ( ... )\n");
        goto out;
    }
    secret = find_secret(cfg, host);
    if (secret == NULL) {
        printf("FAIL: no turn_secret configured and none generated yet "
               "(has palaverd with mod_turn run once?)\n");
        goto out;
    }
    /* the credentials mod_extdisco hands out: an hour from now */
    snprintf(c.username, sizeof(c.username), "%lld:%s",
             (long long)time(NULL) + 3600, jid);
    if (pv_stun_rest_password(secret, c.username, c.password,
                              sizeof(c.password)) != PV_OK)
        goto out;
    printf("credentials: username %s (computed from the configuration)\n",
           c.username);

    memset(&c.server, 0, sizeof(c.server));
    if (address == NULL || strcmp(address, "::") == 0 ||
        strcmp(address, "0.0.0.0") == 0)
        address = "127.0.0.1";
    if (inet_pton(AF_INET, address,
                  &((struct sockaddr_in *)&c.server)->sin_addr) == 1) {
        c.server.ss_family = AF_INET;
        ((struct sockaddr_in *)&c.server)->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, address,
                         &((struct sockaddr_in6 *)&c.server)->sin6_addr) ==
               1) {
        c.server.ss_family = AF_INET6;
        ((struct sockaddr_in6 *)&c.server)->sin6_port =
            htons((uint16_t)port);
    } else {
        printf("FAIL: cannot use the listener address %s\n", address);
        goto out;
    }
    c.fd = socket(c.server.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    c.peer = socket(c.server.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0 || c.peer < 0 ||
        connect(c.fd, (struct sockaddr *)&c.server,
                addr_len(&c.server)) != 0) {
        printf("FAIL: cannot open a UDP socket to the server: %s\n",
               strerror(errno));
        goto out;
    }
    /* the peer: a socket on the address we reach the server from */
    sl = sizeof(c.peer_addr);
    getsockname(c.fd, (struct sockaddr *)&c.peer_addr, &sl);
    if (c.peer_addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&c.peer_addr)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&c.peer_addr)->sin6_port = 0;
    sl = addr_len(&c.peer_addr);
    if (bind(c.peer, (struct sockaddr *)&c.peer_addr, sl) != 0 ||
        getsockname(c.peer, (struct sockaddr *)&c.peer_addr, &sl) != 0) {
        printf("FAIL: cannot bind the peer socket: %s\n", strerror(errno));
        goto out;
    }
    addr_text(&c.server, txt, sizeof(txt));
    printf("TURN server: %s (udp)\n", txt);

    /* an Allocate without credentials: the 401 brings realm and nonce */
    start(&c, &b, buf, sizeof(buf), PV_STUN_ALLOCATE, tid);
    pv_stun_add_transport(&b, 17);
    pv_stun_add_fingerprint(&b);
    if (transact(&c, buf, pv_stun_build_len(&b), tid, &m) != 0) {
        printf("FAIL: no answer from %s: is palaverd running with mod_turn, "
               "and is UDP port %d open?\n", txt, port);
        goto out;
    }
    if (m.cls != PV_STUN_ERROR ||
        pv_stun_get_error(&m, &code, NULL, NULL) != PV_OK || code != 401 ||
        pv_stun_find(&m, PV_STUN_A_NONCE) == NULL) {
        printf("FAIL: the server did not ask for credentials (401 with a "
               "NONCE) on an unauthenticated Allocate\n");
        goto out;
    }
    learn_nonce(&c, &m);
    printf("realm: %s\n", c.realm);
    if (request(&c, "Allocate", PV_STUN_ALLOCATE, add_allocate, &m) != 0)
        goto out;
    if (pv_stun_get_xor_addr(&m, PV_STUN_A_XOR_RELAYED_ADDRESS,
                             &c.relay) != PV_OK) {
        printf("FAIL: the Allocate answer has no XOR-RELAYED-ADDRESS\n");
        goto out;
    }
    addr_text(&c.relay, txt, sizeof(txt));
    printf("allocated relay %s\n", txt);
    addr_text(&c.peer_addr, txt, sizeof(txt));
    if (request(&c, "CreatePermission for our peer socket",
                PV_STUN_CREATE_PERMISSION, add_peer, &m) != 0) {
        printf("(the peer socket is %s)\n", txt);
        goto release;
    }
    printf("permission for peer %s\n", txt);
    rc = exchange(&c) == 0 ? 0 : 1;
release:
    if (request(&c, "Refresh (release)", PV_STUN_REFRESH, add_zero_lifetime,
                &m) == 0)
        printf("released the allocation\n");
out:
    if (c.fd >= 0)
        close(c.fd);
    if (c.peer >= 0)
        close(c.peer);
    free(secret);
    free(own_jid);
    return rc;
}
