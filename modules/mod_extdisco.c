/* modules/mod_extdisco.c: XEP-0215 external service discovery on
 * urn:xmpp:extdisco:2 (and :1 for older clients): the STUN and TURN
 * services of the server's own TURN (mod_turn, its listeners and shared
 * secret) or of an external coturn, with time-limited credentials in the
 * shared-secret scheme (username "expiry:jid", password base64 HMAC-SHA1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <palaver/datetime.h>
#include <palaver/module.h>
#include <palaver/stun.h>

#define NS_EXTDISCO2 "urn:xmpp:extdisco:2"
#define NS_EXTDISCO1 "urn:xmpp:extdisco:1"

typedef struct {
    char *host;
    char *turn_host;
    long long turn_port;
    long long turns_port;
    char *turn_secret;
    pv_duration_t lifetime;
} extdisco_conf_t;

typedef struct {
    const char *type;       /* stun, turn, turns */
    const char *transport;  /* udp, tcp */
    const char *host;
    int port;
} ed_service_t;

#define ED_MAX 8

typedef struct {
    ed_service_t s[ED_MAX];
    size_t n;
    const char *secret;     /* NULL: no TURN credentials to give */
} ed_list_t;

typedef struct {
    int udp, tcp, tls;
} ed_ports_t;

static void
first_port(void *arg, const pv_raw_listener_t *l)
{
    int *port = arg;

    if (*port == 0)
        *port = l->port;
}

static void
add(ed_list_t *L, const char *type, const char *transport, const char *host,
    int port)
{
    if (port <= 0 || L->n == ED_MAX)
        return;
    L->s[L->n].type = type;
    L->s[L->n].transport = transport;
    L->s[L->n].host = host;
    L->s[L->n].port = port;
    L->n++;
}

/* What this host offers: an external TURN server when extdisco_turn_host
 * is set, else the embedded one on the raw listeners the core bound for
 * mod_turn (ports from extdisco_turn_port/extdisco_turns_port when
 * set). */
static void
ed_services(pv_event_t *ev, const extdisco_conf_t *conf, ed_list_t *L)
{
    ed_ports_t p = { 0, 0, 0 };
    const char *host;

    memset(L, 0, sizeof(*L));
    if (conf->turn_host != NULL) {
        host = conf->turn_host;
        p.udp = p.tcp = (int)conf->turn_port;
        p.tls = conf->turns_port == PV_COUNT_OFF ? 0 : (int)conf->turns_port;
        L->secret = conf->turn_secret;
    } else {
        pv_event_t q;
        const char *secret = NULL;

        host = conf->host != NULL ? conf->host : pv_host_name(ev->host);
        pv_server_each_raw_listener(ev->server, "turn_udp", first_port,
                                    &p.udp);
        pv_server_each_raw_listener(ev->server, "turn_tcp", first_port,
                                    &p.tcp);
        pv_server_each_raw_listener(ev->server, "turns", first_port, &p.tls);
        if (conf->turn_port != 3478 || (p.udp == 0 && p.tcp == 0))
            p.udp = p.tcp = (int)conf->turn_port;
        if (conf->turns_port != PV_COUNT_OFF)
            p.tls = (int)conf->turns_port;
        /* mod_turn's secret (configured or generated), asked through an
         * event: the modules never call each other */
        memset(&q, 0, sizeof(q));
        q.kind = PV_EV_TURN_SECRET;
        q.host = ev->host;
        q.server = ev->server;
        q.data = &secret;
        if (pv_event_fire(&q) == PV_HANDLED && secret != NULL)
            L->secret = secret;
        else
            L->secret = conf->turn_secret;
    }
    add(L, "stun", "udp", host, p.udp);
    add(L, "stun", "tcp", host, p.tcp);
    if (L->secret != NULL) {
        add(L, "turn", "udp", host, p.udp);
        add(L, "turn", "tcp", host, p.tcp);
        add(L, "turns", "tcp", host, p.tls);
    }
}

/* Appends <service/> for s; TURN entries carry restricted='1', expires
 * and the credentials. */
static void
ed_node(pv_stanza_t *st, pv_node_t *parent, const ed_service_t *s,
        const ed_list_t *L, const char *jid, const extdisco_conf_t *conf)
{
    pv_node_t *n = pv_node_new(st->arena, "service", NULL, parent);
    char port[16], username[600], pw[PV_STUN_REST_PASSWORD_LEN], exp[32];
    time_t expiry;

    snprintf(port, sizeof(port), "%d", s->port);
    pv_node_set_attr(st->arena, n, "type", s->type);
    pv_node_set_attr(st->arena, n, "transport", s->transport);
    pv_node_set_attr(st->arena, n, "host", s->host);
    pv_node_set_attr(st->arena, n, "port", port);
    if (strcmp(s->type, "stun") == 0)
        return;
    expiry = time(NULL) + (time_t)(conf->lifetime / 1000);
    snprintf(username, sizeof(username), "%lld:%s", (long long)expiry, jid);
    if (pv_stun_rest_password(L->secret, username, pw, sizeof(pw)) != PV_OK)
        return;
    pv_datetime_format((uint64_t)expiry * 1000000u, 0, exp, sizeof(exp));
    pv_node_set_attr(st->arena, n, "restricted", "1");
    pv_node_set_attr(st->arena, n, "expires", exp);
    pv_node_set_attr(st->arena, n, "username", username);
    pv_node_set_attr(st->arena, n, "password", pw);
}

/* Credentials are for the host's own accounts only: not for remote
 * users asking over s2s, nor for the server itself. */
static int
is_own_user(const pv_event_t *ev)
{
    return ev->from != NULL && ev->from->node != NULL &&
           strcmp(ev->from->domain, pv_host_name(ev->host)) == 0;
}

static int
type_matches(const char *want, const ed_service_t *s)
{
    return want == NULL || *want == '\0' || strcmp(want, s->type) == 0;
}

/* <services [type='...']/> (XEP-0215 §3.1, §3.2) */
static pv_rc_t
ed_on_services(pv_event_t *ev)
{
    const extdisco_conf_t *conf = pv_module_conf(ev->module, ev->host);
    const char *want = pv_node_attr(ev->payload, "type");
    const char *ns = ev->payload->xmlns;
    pv_stanza_t *st;
    pv_node_t *q;
    ed_list_t L;
    size_t i;

    if (!is_own_user(ev)) {
        pv_event_error(ev, PV_ERR_AUTH, "forbidden", NULL);
        return PV_HANDLED;
    }
    ed_services(ev, conf, &L);
    st = pv_iq_result(ev->stanza);
    q = pv_node_new(st->arena, "services", ns, st->root);
    if (want != NULL)
        pv_node_set_attr(st->arena, q, "type", want);
    for (i = 0; i < L.n; i++)
        if (type_matches(want, &L.s[i]))
            ed_node(st, q, &L.s[i], &L, ev->from->bare, conf);
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

/* <credentials><service host='' type='' [port='']/></credentials>
 * (XEP-0215 §3.3): fresh credentials for the services named. */
static pv_rc_t
ed_on_credentials(pv_event_t *ev)
{
    const extdisco_conf_t *conf = pv_module_conf(ev->module, ev->host);
    const char *ns = ev->payload->xmlns;
    const pv_node_t *want;
    pv_stanza_t *st;
    pv_node_t *q;
    ed_list_t L;
    size_t i, found = 0;

    if (!is_own_user(ev)) {
        pv_event_error(ev, PV_ERR_AUTH, "forbidden", NULL);
        return PV_HANDLED;
    }
    ed_services(ev, conf, &L);
    st = pv_iq_result(ev->stanza);
    q = pv_node_new(st->arena, "credentials", ns, st->root);
    for (want = pv_node_child(ev->payload, "service", NULL); want != NULL;
         want = pv_node_next_child(ev->payload, want, "service", NULL)) {
        const char *host = pv_node_attr(want, "host");
        const char *type = pv_node_attr(want, "type");
        const char *port = pv_node_attr(want, "port");

        for (i = 0; i < L.n; i++) {
            if (strcmp(L.s[i].type, "stun") == 0 ||
                (host != NULL && strcmp(host, L.s[i].host) != 0) ||
                !type_matches(type, &L.s[i]) ||
                (port != NULL && atoi(port) != L.s[i].port))
                continue;
            ed_node(st, q, &L.s[i], &L, ev->from->bare, conf);
            found++;
        }
    }
    if (found == 0) {
        pv_stanza_unref(st);
        pv_event_error(ev, PV_ERR_CANCEL, "item-not-found", NULL);
        return PV_HANDLED;
    }
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

static const char *const extdisco_features[] = {
    NS_EXTDISCO2, NS_EXTDISCO1, NULL
};

static const pv_hook_t extdisco_hooks[] = {
    { PV_IQ_GET, PV_TO_HOST, NS_EXTDISCO2, "services", ed_on_services, 0,
      0 },
    { PV_IQ_GET, PV_TO_HOST, NS_EXTDISCO1, "services", ed_on_services, 0,
      0 },
    { PV_IQ_GET, PV_TO_HOST, NS_EXTDISCO2, "credentials", ed_on_credentials,
      0, 0 },
    { PV_IQ_GET, PV_TO_HOST, NS_EXTDISCO1, "credentials", ed_on_credentials,
      0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t extdisco_directives[] = {
    { "extdisco_host", PV_CTX_ANY, pv_conf_string,
      offsetof(extdisco_conf_t, host), "", 0, 0, NULL },
    { "extdisco_turn_host", PV_CTX_ANY, pv_conf_string,
      offsetof(extdisco_conf_t, turn_host), "", 0, 0, NULL },
    { "extdisco_turn_port", PV_CTX_ANY, pv_conf_int,
      offsetof(extdisco_conf_t, turn_port), "3478", 1, 65535, NULL },
    { "extdisco_turns_port", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(extdisco_conf_t, turns_port), "off", 1, 65535, NULL },
    { "extdisco_turn_secret", PV_CTX_ANY, pv_conf_string,
      offsetof(extdisco_conf_t, turn_secret), "", 0, 0, NULL },
    { "extdisco_credentials_lifetime", PV_CTX_ANY, pv_conf_duration,
      offsetof(extdisco_conf_t, lifetime), "1d", 60000, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(extdisco) = {
    .abi = PV_MODULE_ABI,
    .name = "extdisco",
    .features = extdisco_features,
    .hooks = extdisco_hooks,
    .directives = extdisco_directives,
    .conf_size = sizeof(extdisco_conf_t),
};
