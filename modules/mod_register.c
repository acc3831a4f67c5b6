/* modules/mod_register.c: XEP-0077 in-band registration. Before
 * authentication: the stream feature, the sign-up form and account
 * creation (off unless register_open, limited per IP address); after:
 * password change and account removal for the user's own account. The
 * accounts themselves and the deletion of a removed user's rows are the
 * core's (pv_user_create, pv_user_delete). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/module.h>

#define NS_REGISTER "jabber:iq:register"
#define NS_FEATURE "http://jabber.org/features/iq-register"
#define NS_DATA "jabber:x:data"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define FORM_CHANGEPW "jabber:iq:register:changepassword"

typedef struct {
    int is_open;                /* sign-up allowed */
    long long rate_limit;       /* sign-ups per IP per window, or
                                 * PV_COUNT_OFF */
    pv_duration_t rate_window;
} register_conf_t;

/* Sign-ups of one address in the current window (fixed windows: cheap,
 * and at most twice the limit across a window edge). */
typedef struct {
    char ip[48];
    uint64_t start_ms;
    long long n;
} register_ip_t;

typedef struct register_job_s register_job_t;

typedef struct {
    pv_module_t *m;
    pv_host_t *h;
    pv_arena_t *arena;          /* the stream feature element */
    pv_node_t *feature;
    register_ip_t *ips;
    size_t n_ips, cap_ips;
    register_job_t *jobs;       /* account operations in flight */
} register_host_t;

/* A sign-up or password change waiting for the core's hashing and
 * commit: it is answered from the completion, once the client can log
 * in with the new credentials. */
struct register_job_s {
    register_host_t *rh;        /* NULL once the host went away */
    pv_stanza_t *req;           /* our reference */
    pv_reply_t *reply;          /* the unauthenticated stream (sign-up) */
    char *user;                 /* prepared localpart */
    char ip[48];                /* sign-up: whose rate slot it holds */
    int is_signup;
    register_job_t *prev, *next;
};

/* --- helpers ------------------------------------------------------- */

static void
register_error(pv_event_t *ev, pv_err_type_t type, const char *cond,
               const char *text)
{
    pv_stanza_t *st = pv_stanza_error(ev->stanza, type, cond, text);

    if (st != NULL)
        pv_event_reply(ev, st);
}

static void
register_add_field(pv_arena_t *a, pv_node_t *form, const char *var,
                   const char *type, const char *label, const char *value)
{
    pv_node_t *f = pv_node_new(a, "field", NULL, form);

    pv_node_set_attr(a, f, "var", var);
    pv_node_set_attr(a, f, "type", type);
    if (label != NULL) {
        pv_node_set_attr(a, f, "label", label);
        pv_node_new(a, "required", NULL, f);
    }
    if (value != NULL) {
        pv_node_t *v = pv_node_new(a, "value", NULL, f);
        pv_node_add_text(a, v, value, strlen(value));
    }
}

static void
register_add_text(pv_arena_t *a, pv_node_t *parent, const char *name,
                  const char *text)
{
    pv_node_t *n = pv_node_new(a, name, NULL, parent);

    if (text != NULL)
        pv_node_add_text(a, n, text, strlen(text));
}

/* What a set carries. XEP-0077 §4: a submitted data form takes
 * precedence over the plain fields. Strings borrow from the stanza. */
typedef struct {
    const char *username;
    const char *password;
    const char *form_type;
    int has_form;
    int has_remove;
    int n_others;               /* children other than <remove/> */
} register_fields_t;

static const char *
register_field_value(const pv_node_t *field, pv_arena_t *a)
{
    const pv_node_t *v = pv_node_child(field, "value", NS_DATA);

    return v != NULL ? pv_node_text(v, a) : NULL;
}

/* Returns NULL, or the condition of a malformed request. */
static const char *
register_parse(const pv_node_t *q, pv_arena_t *a, register_fields_t *f)
{
    const pv_node_t *c;
    const char *user = NULL, *pass = NULL;

    memset(f, 0, sizeof(*f));
    for (c = q->children; c != NULL; c = c->next) {
        if (c->name == NULL)
            continue;
        if (strcmp(c->xmlns, NS_DATA) == 0 && strcmp(c->name, "x") == 0) {
            const char *type = pv_node_attr(c, "type");
            const pv_node_t *fl = NULL;

            if (type == NULL || strcmp(type, "submit") != 0)
                return "bad-request";
            f->has_form = 1;
            while ((fl = pv_node_next_child(c, fl, "field", NS_DATA))) {
                const char *var = pv_node_attr(fl, "var");
                if (var == NULL)
                    continue;
                if (strcmp(var, "FORM_TYPE") == 0)
                    f->form_type = register_field_value(fl, a);
                else if (strcmp(var, "username") == 0)
                    f->username = register_field_value(fl, a);
                else if (strcmp(var, "password") == 0)
                    f->password = register_field_value(fl, a);
            }
            f->n_others++;
            continue;
        }
        if (strcmp(c->xmlns, NS_REGISTER) != 0) {
            f->n_others++;
            continue;
        }
        if (strcmp(c->name, "remove") == 0) {
            f->has_remove = 1;
            continue;
        }
        f->n_others++;
        if (strcmp(c->name, "username") == 0)
            user = pv_node_text(c, a);
        else if (strcmp(c->name, "password") == 0)
            pass = pv_node_text(c, a);
    }
    if (!f->has_form) {
        f->username = user;
        f->password = pass;
    }
    return NULL;
}

/* Checks a new password with the profile the core stores it under (RFC
 * 8265 §4.2), so that a bad one is refused here and not after hashing. */
static int
register_password_ok(const char *pw)
{
    char *p;

    if (pw == NULL || *pw == '\0')
        return 0;
    p = pv_precis_opaque(pw, strlen(pw));
    if (p == NULL)
        return 0;
    memset(p, 0, strlen(p));
    free(p);
    return 1;
}

static void
register_job_link(register_host_t *rh, register_job_t *job)
{
    job->rh = rh;
    job->next = rh->jobs;
    if (rh->jobs != NULL)
        rh->jobs->prev = job;
    rh->jobs = job;
}

static void
register_job_free(register_job_t *job)
{
    register_host_t *rh = job->rh;

    if (rh != NULL) {
        if (job->prev != NULL)
            job->prev->next = job->next;
        else
            rh->jobs = job->next;
        if (job->next != NULL)
            job->next->prev = job->prev;
    }
    pv_stanza_unref(job->req);
    free(job->user);
    free(job);
}

/* --- per-IP rate limit ---------------------------------------------- */

static register_ip_t *
register_ip_find(register_host_t *rh, const register_conf_t *conf,
                 const char *ip)
{
    uint64_t now = pv_now_ms(pv_host_server(rh->h));
    size_t i;

    /* drop finished windows first, so the table only holds addresses
     * that signed up recently */
    for (i = 0; i < rh->n_ips;) {
        if (now - rh->ips[i].start_ms >= conf->rate_window)
            rh->ips[i] = rh->ips[--rh->n_ips];
        else
            i++;
    }
    for (i = 0; i < rh->n_ips; i++)
        if (strcmp(rh->ips[i].ip, ip) == 0)
            return &rh->ips[i];
    return NULL;
}

/* Takes a sign-up slot for ip; 0 when its window is used up. */
static int
register_rate_take(register_host_t *rh, const register_conf_t *conf,
                   const char *ip)
{
    register_ip_t *e;

    if (conf->rate_limit == PV_COUNT_OFF)
        return 1;
    e = register_ip_find(rh, conf, ip);
    if (e == NULL) {
        if (rh->n_ips == rh->cap_ips) {
            rh->cap_ips = rh->cap_ips ? 2 * rh->cap_ips : 16;
            rh->ips = pv_xrealloc(rh->ips, rh->cap_ips * sizeof(*rh->ips));
        }
        e = &rh->ips[rh->n_ips++];
        memset(e, 0, sizeof(*e));
        snprintf(e->ip, sizeof(e->ip), "%s", ip);
        e->start_ms = pv_now_ms(pv_host_server(rh->h));
    }
    if (e->n >= conf->rate_limit)
        return 0;
    e->n++;
    return 1;
}

/* A sign-up that created nothing gives its slot back. */
static void
register_rate_release(register_host_t *rh, const char *ip)
{
    size_t i;

    for (i = 0; i < rh->n_ips; i++) {
        if (strcmp(rh->ips[i].ip, ip) == 0) {
            if (rh->ips[i].n > 0)
                rh->ips[i].n--;
            return;
        }
    }
}

/* --- before authentication: sign-up ---------------------------------- */

static pv_rc_t
register_form(pv_event_t *ev)
{
    const register_conf_t *conf = pv_module_conf(ev->module, ev->host);
    pv_stanza_t *st;
    pv_node_t *q, *x;
    pv_arena_t *a;

    if (!conf->is_open) {
        /* XEP-0077 §3.1: a host without in-band registration */
        register_error(ev, PV_ERR_CANCEL, "service-unavailable", NULL);
        return PV_HANDLED;
    }
    st = pv_iq_result(ev->stanza);
    a = st->arena;
    q = pv_node_new(a, "query", NS_REGISTER, st->root);
    register_add_text(a, q, "instructions", "Choose a username and "
                      "password to register with this server.");
    register_add_text(a, q, "username", NULL);
    register_add_text(a, q, "password", NULL);
    /* XEP-0077 §4: the same fields as a data form (XEP-0004, FORM_TYPE
     * per XEP-0068) for clients that prefer forms */
    x = pv_node_new(a, "x", NS_DATA, q);
    pv_node_set_attr(a, x, "type", "form");
    register_add_text(a, x, "title", "Account registration");
    register_add_text(a, x, "instructions", "Choose a username and "
                      "password to register with this server.");
    register_add_field(a, x, "FORM_TYPE", "hidden", NULL, NS_REGISTER);
    register_add_field(a, x, "username", "text-single", "Username", NULL);
    register_add_field(a, x, "password", "text-private", "Password", NULL);
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

static void
register_created(void *arg, int rc)
{
    register_job_t *job = arg;
    register_host_t *rh = job->rh;
    pv_stanza_t *st;

    if (rc == PV_OK) {
        pv_log(PV_LOG_INFO, rh ? pv_host_name(rh->h) : "register",
               "mod_register: %s registered from %s", job->user, job->ip);
        st = pv_iq_result(job->req);
    } else {
        if (rh != NULL)
            register_rate_release(rh, job->ip);
        /* PV_AGAIN: created by someone else meanwhile (palaverctl) */
        st = rc == PV_AGAIN
                 ? pv_stanza_error(job->req, PV_ERR_CANCEL, "conflict",
                                   NULL)
                 : pv_stanza_error(job->req, PV_ERR_WAIT,
                                   "internal-server-error", NULL);
    }
    pv_reply_send(job->reply, st);
    register_job_free(job);
}

static int
register_is_pending(register_host_t *rh, const char *user)
{
    register_job_t *j;

    for (j = rh->jobs; j != NULL; j = j->next)
        if (j->is_signup && strcmp(j->user, user) == 0)
            return 1;
    return 0;
}

static pv_rc_t
register_signup(pv_event_t *ev)
{
    const register_conf_t *conf = pv_module_conf(ev->module, ev->host);
    register_host_t *rh = pv_module_host_data(ev->module, ev->host);
    const char *ip = pv_event_peer_ip(ev);
    register_fields_t f;
    register_job_t *job;
    const char *cond;
    char *user;

    if (!conf->is_open || rh == NULL) {
        register_error(ev, PV_ERR_CANCEL, "service-unavailable", NULL);
        return PV_HANDLED;
    }
    cond = register_parse(ev->payload, ev->stanza->arena, &f);
    if (cond != NULL) {
        register_error(ev, PV_ERR_MODIFY, cond, NULL);
        return PV_HANDLED;
    }
    if (f.has_remove) {
        /* XEP-0077 §3.2: nothing to remove before authentication */
        register_error(ev, PV_ERR_CANCEL, "unexpected-request", NULL);
        return PV_HANDLED;
    }
    if (f.form_type != NULL && strcmp(f.form_type, NS_REGISTER) != 0) {
        register_error(ev, PV_ERR_MODIFY, "bad-request", "unknown "
                       "FORM_TYPE");
        return PV_HANDLED;
    }
    /* XEP-0077 §3.1: a missing or empty field is not-acceptable */
    if (f.username == NULL || *f.username == '\0' || f.password == NULL ||
        *f.password == '\0') {
        register_error(ev, PV_ERR_MODIFY, "not-acceptable",
                       "a username and a password are required");
        return PV_HANDLED;
    }
    if (!register_password_ok(f.password)) {
        register_error(ev, PV_ERR_MODIFY, "not-acceptable",
                       "the password has characters that are not allowed");
        return PV_HANDLED;
    }
    /* RFC 7622 §3.3: the localpart as the account will be named */
    user = pv_jid_prep_node(f.username, strlen(f.username));
    if (user == NULL) {
        register_error(ev, PV_ERR_MODIFY, "jid-malformed",
                       "the username is not a valid JID localpart");
        return PV_HANDLED;
    }
    if (pv_user_exists(ev->host, user) || register_is_pending(rh, user)) {
        free(user);
        register_error(ev, PV_ERR_CANCEL, "conflict", NULL);
        return PV_HANDLED;
    }
    if (ip == NULL)
        ip = "";
    if (!register_rate_take(rh, conf, ip)) {
        /* XEP-0077 §3.1.1 names not-acceptable for an entity that
         * registers too often; type wait (RFC 6120 §8.3.2) tells the
         * client that the same request may work later */
        free(user);
        pv_log(PV_LOG_INFO, pv_host_name(ev->host), "mod_register: "
               "sign-up from %s refused: register_rate_limit", ip);
        register_error(ev, PV_ERR_WAIT, "not-acceptable", "too many "
                       "registrations from your address; try again later");
        return PV_HANDLED;
    }
    job = pv_xcalloc(1, sizeof(*job));
    job->req = pv_stanza_ref(ev->stanza);
    job->user = user;
    job->is_signup = 1;
    snprintf(job->ip, sizeof(job->ip), "%s", ip);
    register_job_link(rh, job);
    job->reply = pv_event_defer(ev);
    pv_user_create(ev->host, user, f.password, register_created, job);
    return PV_HANDLED;
}

/* --- after authentication: own account -------------------------------- */

/* The local account an authenticated request speaks for, or NULL when
 * it is not the sender's own (another user's bare JID: not ours). */
static const char *
register_own_user(const pv_event_t *ev)
{
    if (ev->origin == NULL || ev->from == NULL || ev->from->node == NULL ||
        strcmp(ev->from->domain, pv_host_name(ev->host)) != 0)
        return NULL;
    if (ev->addr == PV_TO_BARE && strcmp(ev->to->bare, ev->from->bare))
        return NULL;
    return ev->from->node;
}

static pv_rc_t
register_info(pv_event_t *ev)
{
    const char *user = register_own_user(ev);
    pv_stanza_t *st;
    pv_node_t *q;

    if (user == NULL)
        return PV_PASS;
    /* XEP-0077 §3.1: a registered entity gets <registered/> and what is
     * on file; the password stays empty */
    st = pv_iq_result(ev->stanza);
    q = pv_node_new(st->arena, "query", NS_REGISTER, st->root);
    register_add_text(st->arena, q, "instructions", "You are registered. "
                      "Send a new password to change it, or <remove/> "
                      "to delete the account.");
    pv_node_new(st->arena, "registered", NULL, q);
    register_add_text(st->arena, q, "username", user);
    register_add_text(st->arena, q, "password", NULL);
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

static void
register_removed(void *arg, int rc)
{
    char *who = arg;

    if (rc != PV_OK)
        pv_log(PV_LOG_ERROR, "register", "mod_register: removing %s "
               "failed (%d)", who, rc);
    free(who);
}

static void
register_password_set(void *arg, int rc)
{
    register_job_t *job = arg;
    pv_stanza_t *st;

    if (job->rh != NULL) {
        if (rc == PV_OK)
            st = pv_iq_result(job->req);
        else if (rc == PV_NOTFOUND)
            st = pv_stanza_error(job->req, PV_ERR_AUTH,
                                 "registration-required", NULL);
        else
            st = pv_stanza_error(job->req, PV_ERR_WAIT,
                                 "internal-server-error", NULL);
        /* by address: the session that asked may have ended */
        if (st != NULL) {
            pv_host_route(job->rh->h, st);
            pv_stanza_unref(st);
        }
    }
    register_job_free(job);
}

static pv_rc_t
register_account(pv_event_t *ev)
{
    register_host_t *rh = pv_module_host_data(ev->module, ev->host);
    const char *user = register_own_user(ev);
    register_fields_t f;
    register_job_t *job;
    const char *cond;

    if (user == NULL || rh == NULL)
        return PV_PASS;
    cond = register_parse(ev->payload, ev->stanza->arena, &f);
    if (cond != NULL) {
        register_error(ev, PV_ERR_MODIFY, cond, NULL);
        return PV_HANDLED;
    }
    if (f.has_remove) {
        /* XEP-0077 §3.2: <remove/> must be alone */
        if (f.n_others > 0) {
            register_error(ev, PV_ERR_MODIFY, "bad-request", NULL);
            return PV_HANDLED;
        }
        /* answer first: the deletion closes this very session */
        pv_log(PV_LOG_INFO, pv_host_name(ev->host), "mod_register: %s "
               "removes the account", ev->from->bare);
        pv_event_reply(ev, pv_iq_result(ev->stanza));
        pv_user_delete(ev->host, user, register_removed,
                       pv_xstrdup(ev->from->bare));
        return PV_HANDLED;
    }
    if (f.form_type != NULL && strcmp(f.form_type, NS_REGISTER) != 0 &&
        strcmp(f.form_type, FORM_CHANGEPW) != 0) {
        register_error(ev, PV_ERR_MODIFY, "bad-request", "unknown "
                       "FORM_TYPE");
        return PV_HANDLED;
    }
    if (f.username != NULL && *f.username != '\0') {
        char *named = pv_jid_prep_node(f.username, strlen(f.username));
        int is_other = named == NULL || strcmp(named, user) != 0;

        free(named);
        if (is_other) {
            /* XEP-0077 §3.1.1: no second account from a logged-in
             * stream, and no other user's password */
            register_error(ev, PV_ERR_MODIFY, "not-acceptable",
                           "you can only change your own password");
            return PV_HANDLED;
        }
    }
    /* XEP-0077 §3.3: an empty password never replaces the current one */
    if (f.password == NULL || *f.password == '\0') {
        register_error(ev, PV_ERR_MODIFY, "bad-request",
                       "a new password is required");
        return PV_HANDLED;
    }
    if (!register_password_ok(f.password)) {
        register_error(ev, PV_ERR_MODIFY, "not-acceptable",
                       "the password has characters that are not allowed");
        return PV_HANDLED;
    }
    job = pv_xcalloc(1, sizeof(*job));
    job->req = pv_stanza_ref(ev->stanza);
    job->user = pv_xstrdup(user);
    register_job_link(rh, job);
    pv_user_set_password(ev->host, user, f.password, register_password_set,
                         job);
    return PV_HANDLED;
}

/* --- stream feature ------------------------------------------------ */

static pv_rc_t
register_features(pv_event_t *ev)
{
    const register_conf_t *conf = pv_module_conf(ev->module, ev->host);
    register_host_t *rh = pv_module_host_data(ev->module, ev->host);
    pv_node_t *features = ev->data;

    /* XEP-0077 §6: offered with SASL, before authentication, and only
     * when sign-up is open (the core refuses pre-auth IQs in clear) */
    if (ev->user != NULL || !conf->is_open || rh == NULL ||
        features == NULL ||
        pv_node_child(features, "mechanisms", NS_SASL) == NULL)
        return PV_PASS;
    /* the core gives no arena with this event; our element lives in the
     * host's own arena and is linked into one features tree at a time
     * (append resets its links) */
    pv_node_append(features, rh->feature);
    return PV_PASS;
}

/* --- lifecycle ----------------------------------------------------- */

static int
register_host_init(pv_module_t *m, pv_host_t *h)
{
    register_host_t *rh = pv_xcalloc(1, sizeof(*rh));

    rh->m = m;
    rh->h = h;
    rh->arena = pv_arena_new(256);
    rh->feature = pv_node_new(rh->arena, "register", NS_FEATURE, NULL);
    pv_module_set_host_data(m, h, rh);
    return PV_OK;
}

static void
register_host_fini(pv_module_t *m, pv_host_t *h)
{
    register_host_t *rh = pv_module_host_data(m, h);
    register_job_t *job;

    if (rh == NULL)
        return;
    /* operations in flight finish later; they must not touch rh */
    for (job = rh->jobs; job != NULL; job = job->next)
        job->rh = NULL;
    pv_arena_free(rh->arena);
    free(rh->ips);
    free(rh);
    pv_module_set_host_data(m, h, NULL);
}

static const pv_hook_t register_hooks[] = {
    { PV_IQ_GET, PV_TO_HOST, NS_REGISTER, "query", register_form, 0,
      PV_HOOK_PREAUTH },
    { PV_IQ_SET, PV_TO_HOST, NS_REGISTER, "query", register_signup, 0,
      PV_HOOK_PREAUTH },
    { PV_IQ_GET, PV_TO_HOST, NS_REGISTER, "query", register_info, 0, 0 },
    { PV_IQ_GET, PV_TO_BARE, NS_REGISTER, "query", register_info, 0, 0 },
    { PV_IQ_SET, PV_TO_HOST, NS_REGISTER, "query", register_account, 0, 0 },
    { PV_IQ_SET, PV_TO_BARE, NS_REGISTER, "query", register_account, 0, 0 },
    { PV_EV_STREAM_FEATURES, PV_TO_ANY, NULL, NULL, register_features, 0,
      0 },
    PV_HOOKS_END
};

static const pv_directive_t register_directives[] = {
    { "register_open", PV_CTX_ANY, pv_conf_bool,
      offsetof(register_conf_t, is_open), "false", 0, 0, NULL },
    { "register_rate_limit", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(register_conf_t, rate_limit), "3", 0, 0, NULL },
    { "register_rate_window", PV_CTX_ANY, pv_conf_duration,
      offsetof(register_conf_t, rate_window), "10m", 0, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(register) = {
    .abi = PV_MODULE_ABI,
    .name = "register",
    .features = (const char *const[]){ NS_REGISTER, NULL },
    .hooks = register_hooks,
    .directives = register_directives,
    .conf_size = sizeof(register_conf_t),
    .host_init = register_host_init,
    .host_fini = register_host_fini,
};
