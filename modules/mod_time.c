/* modules/mod_time.c: XEP-0202 entity time of the server (UTC and the
 * server's offset). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <palaver/module.h>

#define NS_TIME "urn:xmpp:time"

static pv_rc_t
time_reply(pv_event_t *ev)
{
    pv_stanza_t *st = pv_iq_result(ev->stanza);
    pv_node_t *t = pv_node_new(st->arena, "time", NS_TIME, st->root);
    pv_node_t *n;
    char utc[40], tzo[16];
    struct timespec ts;
    struct tm tm_utc, tm_local;
    int off;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm_utc);
    localtime_r(&ts.tv_sec, &tm_local);
    strftime(utc, sizeof(utc), "%Y-%m-%dT%H:%M:%S", &tm_utc);
    snprintf(utc + strlen(utc), sizeof(utc) - strlen(utc), ".%03ldZ",
             ts.tv_nsec / 1000000);
    /* UTC offsets stay within +-14 hours */
    off = (int)(tm_local.tm_gmtoff / 60) % (24 * 60);
    snprintf(tzo, sizeof(tzo), "%c%02d:%02d", off < 0 ? '-' : '+',
             (off < 0 ? -off : off) / 60, (off < 0 ? -off : off) % 60);
    n = pv_node_new(st->arena, "tzo", NULL, t);
    pv_node_add_text(st->arena, n, tzo, strlen(tzo));
    n = pv_node_new(st->arena, "utc", NULL, t);
    pv_node_add_text(st->arena, n, utc, strlen(utc));
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

static const pv_hook_t time_hooks[] = {
    { PV_IQ_GET, PV_TO_HOST, NS_TIME, "time", time_reply, 0, 0 },
    PV_HOOKS_END
};

PV_MODULE(time) = {
    .abi = PV_MODULE_ABI,
    .name = "time",
    .features = (const char *const[]){ NS_TIME, NULL },
    .hooks = time_hooks,
};
