/* modules/mod_lastactivity.c: XEP-0012 Last Activity answered by the
 * server: its uptime for the host, and for an account's bare JID the time
 * since its last logout with the status of that last unavailable presence
 * (keyval store "lastactivity.last": u64 unix seconds, big-endian, then
 * the status bytes), told only to the owner and to contacts who may see
 * the owner's presence. Queries to a full JID are the client's. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <palaver/module.h>
#include <palaver/roster.h>

#define NS_LAST "jabber:iq:last"

/* A logout whose writes are not all committed: lookups use it, since a
 * read sees committed data only and a contact may ask at once. */
typedef struct la_pending_s {
    char *user;
    uint64_t when;            /* unix seconds */
    char *status;             /* NULL: none */
    unsigned n_inflight;
    int is_dead;              /* account deleted: ignored by lookups */
    struct la_pending_s *next;
} la_pending_t;

/* Per host; refcounted because store completions may outlive
 * host_fini. */
typedef struct {
    unsigned refs;
    int is_dead;
    pv_host_t *h;
    pv_store_t *store;
    /* process start on CLOCK_BOOTTIME (ms), or -1: then started_mono,
     * the loop clock at host_init */
    int64_t started_boot_ms;
    uint64_t started_mono_ms;
    la_pending_t *pending;
} la_host_t;

typedef struct {
    int was_available;
    /* the session's presence just made the account go offline: the
     * unavailable stanza that did it follows through the PRE hook, with
     * the status text to keep */
    int is_status_due;
    uint64_t logout_at;
} la_session_t;

typedef struct {
    la_host_t *lh;
    la_pending_t *p;
} la_job_t;

/* --- host state ---------------------------------------------------- */

static void
pending_free(la_pending_t *p)
{
    free(p->user);
    free(p->status);
    free(p);
}

static void
lh_unref(la_host_t *lh)
{
    la_pending_t *p, *next;

    if (--lh->refs > 0)
        return;
    for (p = lh->pending; p != NULL; p = next) {
        next = p->next;
        pending_free(p);
    }
    free(lh);
}

static la_pending_t *
pending_find(la_host_t *lh, const char *user)
{
    la_pending_t *p;

    for (p = lh->pending; p != NULL; p = p->next)
        if (!p->is_dead && strcmp(p->user, user) == 0)
            return p;
    return NULL;
}

static void
pending_unlink(la_host_t *lh, la_pending_t *p)
{
    la_pending_t **pp;

    for (pp = &lh->pending; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            return;
        }
    }
}

/* --- clocks -------------------------------------------------------- */

static int64_t
boottime_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* When this process started, in CLOCK_BOOTTIME ms (proc(5): field 22 of
 * /proc/self/stat, clock ticks after boot), or -1. The process, not the
 * host object, because a reload builds new host objects and the server
 * has not restarted. */
static int64_t
process_start_ms(void)
{
    char buf[1024];
    const char *p;
    unsigned long long ticks;
    long hz = sysconf(_SC_CLK_TCK);
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n;
    int field;

    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the command name (field 2) may hold spaces and parentheses: count
     * from the last ')' */
    p = strrchr(buf, ')');
    if (p == NULL || hz <= 0)
        return -1;
    for (field = 2; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (p == NULL)
            return -1;
    }
    if (sscanf(p + 1, "%llu", &ticks) != 1)
        return -1;
    return (int64_t)(ticks * 1000ULL / (unsigned long long)hz);
}

static uint64_t
uptime_seconds(la_host_t *lh)
{
    int64_t now;

    if (lh->started_boot_ms >= 0) {
        now = boottime_ms();
        if (now >= lh->started_boot_ms)
            return (uint64_t)(now - lh->started_boot_ms) / 1000;
    }
    return (pv_now_ms(pv_host_server(lh->h)) - lh->started_mono_ms) / 1000;
}

/* --- the record ---------------------------------------------------- */

static void
write_done(void *arg, int rc)
{
    la_job_t *job = arg;
    la_host_t *lh = job->lh;
    la_pending_t *p = job->p;

    /* after host_fini the host may be freed: no name to log with */
    if (rc != PV_OK)
        pv_log(PV_LOG_ERROR, lh->is_dead ? "mod_lastactivity" :
               pv_host_name(lh->h), "cannot store the last logout of %s",
               p->user);
    if (--p->n_inflight == 0) {
        /* the store is the truth again */
        pending_unlink(lh, p);
        pending_free(p);
    }
    lh_unref(lh);
    free(job);
}

/* Stores the logout of user at when (unix seconds) with status (NULL:
 * none). Not for accounts that are gone or being deleted: a row written
 * after the core's removal would outlive the account. */
static void
record_logout(la_host_t *lh, const char *user, uint64_t when,
              const char *status)
{
    size_t slen = status != NULL ? strlen(status) : 0;
    unsigned char *val;
    la_pending_t *p;
    la_job_t *job;
    int i;

    if (lh->store == NULL || user == NULL || !pv_user_exists(lh->h, user))
        return;
    val = pv_xmalloc(8 + slen);
    for (i = 0; i < 8; i++)
        val[i] = (unsigned char)(when >> (56 - 8 * i));
    if (slen > 0)
        memcpy(val + 8, status, slen);
    p = pending_find(lh, user);
    if (p == NULL) {
        p = pv_xcalloc(1, sizeof(*p));
        p->user = pv_xstrdup(user);
        p->next = lh->pending;
        lh->pending = p;
    }
    free(p->status);
    p->status = slen > 0 ? pv_xstrdup(status) : NULL;
    p->when = when;
    job = pv_xcalloc(1, sizeof(*job));
    job->lh = lh;
    job->p = p;
    if (pv_store_put(lh->store, pv_host_name(lh->h), user, NULL, val,
                     8 + slen, write_done, job) != PV_OK) {
        pv_log(PV_LOG_ERROR, pv_host_name(lh->h), "mod_lastactivity: "
               "cannot store the last logout of %s", user);
        if (p->n_inflight == 0) {
            pending_unlink(lh, p);
            pending_free(p);
        }
        free(job);
    } else {
        p->n_inflight++;
        lh->refs++;
    }
    free(val);
}

/* The last logout of user: PV_OK with *when and *status (malloc'd or
 * NULL), PV_NOTFOUND when never recorded, PV_ERROR. */
static pv_rc_t
lookup_logout(la_host_t *lh, const char *user, uint64_t *when,
              char **status)
{
    la_pending_t *p = pending_find(lh, user);
    void *val = NULL;
    const unsigned char *v;
    size_t len = 0;
    pv_rc_t rc;
    int i;

    *status = NULL;
    if (p != NULL) {
        *when = p->when;
        *status = p->status != NULL ? pv_xstrdup(p->status) : NULL;
        return PV_OK;
    }
    if (lh->store == NULL)
        return PV_ERROR;
    rc = pv_store_get(lh->store, pv_host_name(lh->h), user, NULL, &val,
                      &len);
    if (rc != PV_OK)
        return rc;
    if (len < 8) {
        pv_log(PV_LOG_ERROR, pv_host_name(lh->h), "mod_lastactivity: "
               "damaged row of %s", user);
        free(val);
        return PV_ERROR;
    }
    v = val;
    *when = 0;
    for (i = 0; i < 8; i++)
        *when = (*when << 8) | v[i];
    if (len > 8)
        *status = pv_xstrndup((const char *)v + 8, len - 8);
    free(val);
    return PV_OK;
}

/* --- logouts ------------------------------------------------------- */

typedef struct {
    const pv_session_t *except;
    int n;
} count_t;

static void
count_available(void *arg, pv_session_t *s)
{
    count_t *c = arg;

    if (s != c->except && pv_session_is_available(s))
        c->n++;
}

/* Available resources of user other than except (NULL: all). */
static int
n_available(pv_host_t *h, const char *user, const pv_session_t *except)
{
    count_t c = { except, 0 };

    pv_host_each_session(h, user, count_available, &c);
    return c.n;
}

static uint64_t
unix_now(void)
{
    time_t t = time(NULL);

    return t > 0 ? (uint64_t)t : 0;
}

/* A logout is the account's last available resource going unavailable:
 * a resource that never sent presence was not "logged in" in the sense
 * of XEP-0012 §3 (nobody saw it online), and one going away while
 * another stays available is no logout either. */
static pv_rc_t
la_presence_changed(pv_event_t *ev)
{
    la_host_t *lh = pv_module_host_data(ev->module, ev->host);
    la_session_t *ls;
    int is_available;

    if (lh == NULL || ev->session == NULL)
        return PV_PASS;
    ls = pv_session_data(ev->session, ev->module);
    if (ls == NULL)
        return PV_PASS;
    is_available = pv_session_is_available(ev->session);
    ls->is_status_due = 0;
    if (ls->was_available && !is_available &&
        n_available(ev->host, ev->user, ev->session) == 0) {
        /* stored at once without a status, in case the stanza never
         * reaches the PRE hook; the hook rewrites it with the status */
        ls->logout_at = unix_now();
        ls->is_status_due = 1;
        record_logout(lh, ev->user, ls->logout_at, NULL);
    }
    ls->was_available = is_available;
    return PV_PASS;
}

/* The status of an unavailable presence: RFC 6121 §4.7.2.2 allows one
 * <status/> per language; the one without xml:lang is in the stanza's
 * own language and is preferred. */
static const char *
presence_status(const pv_stanza_t *st)
{
    const pv_node_t *c, *first = NULL;

    for (c = pv_node_child(st->root, "status", NULL); c != NULL;
         c = pv_node_next_child(st->root, c, "status", NULL)) {
        if (strcmp(c->xmlns, PV_NS_CLIENT) != 0 &&
            strcmp(c->xmlns, PV_NS_SERVER) != 0)
            continue;
        if (pv_node_attr(c, "xml:lang") == NULL)
            return pv_node_text(c, st->arena);
        if (first == NULL)
            first = c;
    }
    return first != NULL ? pv_node_text(first, st->arena) : NULL;
}

/* Runs for every presence a local client sends, right after the core's
 * PV_EV_PRESENCE_CHANGED for a broadcast one. */
static pv_rc_t
la_presence_out(pv_event_t *ev)
{
    la_host_t *lh = pv_module_host_data(ev->module, ev->host);
    la_session_t *ls;
    const char *type = ev->stanza->type;
    const char *status;

    if (lh == NULL || ev->origin == NULL)
        return PV_PASS;
    ls = pv_session_data(ev->origin, ev->module);
    if (ls == NULL || !ls->is_status_due)
        return PV_PASS;
    ls->is_status_due = 0;
    if (pv_node_attr(ev->stanza->root, "to") != NULL || type == NULL ||
        strcmp(type, "unavailable") != 0)
        return PV_PASS;
    status = presence_status(ev->stanza);
    if (status != NULL && status[0] != '\0')
        record_logout(lh, pv_session_jid(ev->origin)->node, ls->logout_at,
                      status);
    return PV_PASS;
}

/* Closing an available resource without unavailable presence is a
 * logout too (RFC 6121 §4.5.2: the server sends the unavailable). This
 * also runs at shutdown, which logs everyone out. */
static pv_rc_t
la_session_closed(pv_event_t *ev)
{
    la_host_t *lh = pv_module_host_data(ev->module, ev->host);

    if (lh == NULL || ev->session == NULL ||
        !pv_session_is_available(ev->session) ||
        n_available(ev->host, ev->user, ev->session) > 0)
        return PV_PASS;
    record_logout(lh, ev->user, unix_now(), NULL);
    return PV_PASS;
}

/* From here on pv_user_exists() says no, so nothing new is written; what
 * is in flight was queued before the core's removal and goes with it. */
static pv_rc_t
la_user_deleting(pv_event_t *ev)
{
    la_host_t *lh = pv_module_host_data(ev->module, ev->host);
    la_pending_t *p;

    if (lh == NULL || ev->user == NULL)
        return PV_PASS;
    p = pending_find(lh, ev->user);
    if (p != NULL)
        p->is_dead = 1;
    return PV_PASS;
}

/* --- queries ------------------------------------------------------- */

static void
send_seconds(pv_event_t *ev, uint64_t seconds, const char *text)
{
    pv_stanza_t *st = pv_iq_result(ev->stanza);
    pv_node_t *q = pv_node_new(st->arena, "query", NS_LAST, st->root);
    char buf[24];

    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)seconds);
    pv_node_set_attr(st->arena, q, "seconds", buf);
    if (text != NULL && text[0] != '\0')
        pv_node_add_text(st->arena, q, text, strlen(text));
    pv_event_reply(ev, st);
}

/* XEP-0012 §5: a server's answer is its uptime, without text. */
static pv_rc_t
la_host_query(pv_event_t *ev)
{
    la_host_t *lh = pv_module_host_data(ev->module, ev->host);

    if (lh == NULL)
        return PV_PASS;
    send_seconds(ev, uptime_seconds(lh), NULL);
    return PV_HANDLED;
}

/* XEP-0012 §3 and §8: the owner, or someone allowed to see the owner's
 * presence (RFC 6121 subscription 'from' or 'both'), asked of mod_roster
 * through its event; without a roster module only the owner. Blocked
 * requesters never get here: mod_blocking refuses their IQs first. */
static int
may_see(pv_event_t *ev)
{
    if (ev->from == NULL || ev->from->node == NULL)
        return 0;
    if (strcmp(ev->from->bare, ev->to->bare) == 0)
        return 1;
    return (pv_roster_state(ev->host, ev->to->node, ev->from->bare) &
            PV_SUB_FROM) != 0;
}

static pv_rc_t
la_user_query(pv_event_t *ev)
{
    la_host_t *lh = pv_module_host_data(ev->module, ev->host);
    const char *user = ev->to->node;
    uint64_t when, now;
    char *status = NULL;
    pv_rc_t rc;

    /* unknown accounts: the router's RFC 6121 §8.5.1 answer, the same
     * as for any other IQ, so nothing more is revealed here */
    if (lh == NULL || !pv_user_exists(ev->host, user))
        return PV_PASS;
    if (!may_see(ev)) {
        /* XEP-0012 §3: MUST return forbidden (auth, XEP-0086) */
        pv_event_error(ev, PV_ERR_AUTH, "forbidden",
                      NULL);
        return PV_HANDLED;
    }
    /* XEP-0012 §3: an account with an available resource SHOULD get an
     * empty query with seconds='0'; the IQ is answered by the server, not
     * routed to a resource (RFC 6121 §8.5.3.1) */
    if (n_available(ev->host, user, NULL) > 0) {
        send_seconds(ev, 0, NULL);
        return PV_HANDLED;
    }
    rc = lookup_logout(lh, user, &when, &status);
    if (rc == PV_NOTFOUND) {
        /* never logged out since it was created (or since this module
         * was enabled): there is no last activity to tell, and a count
         * since the account's creation would be an invented logout */
        pv_event_error(ev, PV_ERR_CANCEL,
                      "item-not-found", NULL);
        return PV_HANDLED;
    }
    if (rc != PV_OK) {
        pv_event_error(ev, PV_ERR_WAIT,
                      "internal-server-error", NULL);
        return PV_HANDLED;
    }
    now = unix_now();
    /* a clock set back must not give a huge unsigned number */
    send_seconds(ev, now > when ? now - when : 0, status);
    free(status);
    return PV_HANDLED;
}

/* --- lifecycle ----------------------------------------------------- */

static int
la_host_init(pv_module_t *m, pv_host_t *h)
{
    la_host_t *lh = pv_xcalloc(1, sizeof(*lh));

    lh->refs = 1;
    lh->h = h;
    lh->store = pv_store_open(h, m, "last", PV_STORE_KEYVAL);
    if (lh->store == NULL)
        pv_log(PV_LOG_WARN, pv_host_name(h), "mod_lastactivity: no "
               "storage: only the server uptime is answered");
    lh->started_boot_ms = process_start_ms();
    if (lh->started_boot_ms < 0 || boottime_ms() < 0)
        lh->started_boot_ms = -1;
    lh->started_mono_ms = pv_now_ms(pv_host_server(h));
    pv_module_set_host_data(m, h, lh);
    return PV_OK;
}

static void
la_host_fini(pv_module_t *m, pv_host_t *h)
{
    la_host_t *lh = pv_module_host_data(m, h);

    if (lh == NULL)
        return;
    lh->is_dead = 1;
    pv_module_set_host_data(m, h, NULL);
    lh_unref(lh);
}

static const pv_hook_t la_hooks[] = {
    { PV_IQ_GET, PV_TO_HOST, NS_LAST, "query", la_host_query, 0, 0 },
    { PV_IQ_GET, PV_TO_BARE, NS_LAST, "query", la_user_query, 0, 0 },
    /* before mod_presence and mod_blocking look at the stanza; only
     * reads it */
    { PV_PRESENCE, PV_TO_ANY, NULL, NULL, la_presence_out, -200,
      PV_HOOK_PRE },
    { PV_EV_PRESENCE_CHANGED, PV_TO_ANY, NULL, NULL, la_presence_changed,
      0, 0 },
    { PV_EV_SESSION_CLOSED, PV_TO_ANY, NULL, NULL, la_session_closed, 0,
      0 },
    { PV_EV_USER_DELETING, PV_TO_ANY, NULL, NULL, la_user_deleting, 0, 0 },
    PV_HOOKS_END
};

PV_MODULE(lastactivity) = {
    .abi = PV_MODULE_ABI,
    .name = "lastactivity",
    .features = (const char *const[]){ NS_LAST, NULL },
    .hooks = la_hooks,
    .session_data_size = sizeof(la_session_t),
    .host_init = la_host_init,
    .host_fini = la_host_fini,
};
