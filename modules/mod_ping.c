/* modules/mod_ping.c: XEP-0199 replies, and server-initiated pings of
 * idle clients: a client silent for ping_idle gets a ping and is closed
 * with connection-timeout when ping_timeout passes without any input. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/module.h>

typedef struct {
    pv_duration_t idle;       /* PV_DURATION_OFF: never ping */
    pv_duration_t timeout;
} ping_conf_t;

typedef struct {
    uint64_t sent_at;         /* loop ms of our outstanding ping, or 0 */
} ping_session_t;

typedef struct {
    pv_module_t *m;
    pv_host_t *h;
    pv_mtimer_t *timer;
    unsigned long seq;
} ping_host_t;

static pv_rc_t
ping_reply(pv_event_t *ev)
{
    pv_event_result(ev, NULL);
    return PV_HANDLED;
}

typedef struct {
    ping_host_t *ph;
    const ping_conf_t *conf;
    uint64_t now;
} ping_scan_t;

static void
ping_check_session(void *arg, pv_session_t *s)
{
    ping_scan_t *scan = arg;
    ping_session_t *ps = pv_session_data(s, scan->ph->m);
    uint64_t last = pv_session_last_active(s);
    pv_stanza_t *st;
    pv_node_t *p;
    char id[40];

    /* a hibernated session (XEP-0198) has nobody to ping */
    if (ps == NULL || !pv_session_is_connected(s))
        return;
    if (ps->sent_at != 0) {
        if (last >= ps->sent_at) {
            ps->sent_at = 0;    /* any input proves the client is there */
        } else if (scan->now - ps->sent_at >= scan->conf->timeout) {
            pv_log(PV_LOG_INFO, pv_host_name(scan->ph->h),
                   "%s did not answer a ping", pv_session_jid(s)->full);
            pv_session_close(s, "connection-timeout");
        }
        return;
    }
    if (scan->now - last < scan->conf->idle)
        return;
    st = pv_stanza_build("iq");
    snprintf(id, sizeof(id), "pvping%lu", ++scan->ph->seq);
    pv_node_set_attr(st->arena, st->root, "type", "get");
    pv_node_set_attr(st->arena, st->root, "id", id);
    pv_node_set_attr(st->arena, st->root, "from", pv_host_name(scan->ph->h));
    pv_node_set_attr(st->arena, st->root, "to", pv_session_jid(s)->full);
    p = pv_node_new(st->arena, "ping", "urn:xmpp:ping", st->root);
    (void)p;
    pv_session_send(s, st);
    pv_stanza_unref(st);
    ps->sent_at = scan->now;
}

static void
ping_scan(void *arg)
{
    ping_host_t *ph = arg;
    ping_scan_t scan = { ph, pv_module_conf(ph->m, ph->h),
                         pv_now_ms(pv_host_server(ph->h)) };

    pv_host_each_session(ph->h, NULL, ping_check_session, &scan);
}

static int
ping_host_init(pv_module_t *m, pv_host_t *h)
{
    const ping_conf_t *conf = pv_module_conf(m, h);
    ping_host_t *ph;
    uint64_t every;

    if (conf->idle == PV_DURATION_OFF || conf->idle == 0)
        return PV_OK;
    ph = pv_xcalloc(1, sizeof(*ph));
    ph->m = m;
    ph->h = h;
    /* scan often enough that idle and timeout are honoured to ~10% */
    every = (conf->timeout < conf->idle ? conf->timeout : conf->idle) / 4;
    if (every < 250)
        every = 250;
    ph->timer = pv_module_timer(m, h, every, every, ping_scan, ph);
    pv_module_set_host_data(m, h, ph);
    return PV_OK;
}

static void
ping_host_fini(pv_module_t *m, pv_host_t *h)
{
    /* the core cancels module timers; only our struct is ours to free */
    free(pv_module_host_data(m, h));
}

static const pv_hook_t ping_hooks[] = {
    { PV_IQ_GET, PV_TO_HOST, "urn:xmpp:ping", "ping", ping_reply, 0, 0 },
    { PV_IQ_GET, PV_TO_BARE, "urn:xmpp:ping", "ping", ping_reply, 0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t ping_directives[] = {
    { "ping_idle", PV_CTX_ANY, pv_conf_duration,
      offsetof(ping_conf_t, idle), "5m", 0, 0, NULL },
    { "ping_timeout", PV_CTX_ANY, pv_conf_duration,
      offsetof(ping_conf_t, timeout), "60s", 0, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(ping) = {
    .abi = PV_MODULE_ABI,
    .name = "ping",
    .features = (const char *const[]){ "urn:xmpp:ping", NULL },
    .hooks = ping_hooks,
    .directives = ping_directives,
    .conf_size = sizeof(ping_conf_t),
    .session_data_size = sizeof(ping_session_t),
    .host_init = ping_host_init,
    .host_fini = ping_host_fini,
};
