/*
 * scn_runner: plays the .scn conversations in tests/scenarios (STYLE.md §11,
 * scansion-like) against a running server with libstrophe clients and
 * reports PASS/FAIL/SKIP per file. It owns the .scn parser, the pattern
 * matcher and the client event loop; it does not start the server (the
 * Python harness tests/harness/pvtest.py does and passes host/ports).
 */

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <strophe.h>

#define SCN_NS_CLIENT "jabber:client"
#define SCN_NS_STREAMS "http://etherx.jabber.org/streams"
#define SCN_ANY "{any}"

/* exit codes, automake convention */
#define SCN_PASS 0
#define SCN_FAIL 1
#define SCN_USAGE 2
#define SCN_SKIP 77

typedef enum {
    SCN_CLIENT_IDLE,
    SCN_CLIENT_CONNECTING,
    SCN_CLIENT_CONNECTED,
    SCN_CLIENT_CLOSED
} scn_client_state_t;

typedef enum {
    SCN_TLS_STARTTLS,
    SCN_TLS_DIRECT
} scn_tls_t;

typedef struct scn_client_s {
    char *name;
    char *jid; /* as written, variables expanded at connect */
    char *password;
    scn_tls_t tls;
    xmpp_conn_t *conn;
    scn_client_state_t state;
    char *full; /* bound JID */
    char *bare;
    xmpp_stanza_t **queue; /* received, not yet matched */
    size_t n_queue;
    size_t cap_queue;
    int has_stream_error;
    char *fail_reason;
} scn_client_t;

typedef enum {
    SCN_STEP_CONNECTS,
    SCN_STEP_SENDS,
    SCN_STEP_RECEIVES,
    SCN_STEP_NOTHING,
    SCN_STEP_DISCONNECTS
} scn_step_kind_t;

typedef struct scn_step_s {
    scn_step_kind_t kind;
    size_t client;
    char *xml; /* SENDS/RECEIVES, unexpanded */
    int line;
} scn_step_t;

typedef struct scn_opts_s {
    const char *host;
    int port;
    int tls_port;
    const char *domain;
    const char *cafile;
    const char *provides; /* comma list, "all" or NULL */
    long timeout_ms;
    long quiet_ms;
    int verbose;
    int trust_tls;
} scn_opts_t;

typedef struct scn_s {
    const char *path;
    const scn_opts_t *opts;
    xmpp_ctx_t *ctx;
    scn_client_t *clients;
    size_t n_clients;
    scn_step_t *steps;
    size_t n_steps;
    char **requires;
    size_t n_requires;
    int line; /* line of the running step, for messages */
} scn_t;

/* ---------------------------------------------------------------------- */
/* small helpers */

static void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL) {
        fprintf(stderr, "scn_runner: out of memory\n");
        exit(SCN_FAIL);
    }
    return p;
}

static void *
xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "scn_runner: out of memory\n");
        exit(SCN_FAIL);
    }
    return p;
}

static char *
xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);

    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *
xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

static long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* growable string */
typedef struct scn_str_s {
    char *s;
    size_t len;
    size_t cap;
} scn_str_t;

static void
str_addn(scn_str_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void
str_add(scn_str_t *b, const char *s)
{
    str_addn(b, s, strlen(s));
}

#define SCN_PRINTF(a, b) __attribute__((format(printf, a, b)))

static void SCN_PRINTF(2, 3) str_printf(scn_str_t *b, const char *fmt, ...)
{
    va_list ap;
    char tmp[512];
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        str_addn(b, tmp, (size_t)n);
        return;
    }
    {
        char *big = xmalloc((size_t)n + 1);

        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        str_addn(b, big, (size_t)n);
        free(big);
    }
}

static int
is_blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return 0;
    return 1;
}

/* trimmed copy */
static char *
trim_dup(const char *s)
{
    const char *e;

    while (*s && isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    return xstrndup(s, (size_t)(e - s));
}

static void SCN_PRINTF(2, 3) scn_fail(scn_t *scn, const char *fmt, ...)
{
    va_list ap;

    fprintf(stdout, "%s:%d: ", scn->path, scn->line);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
}

/* ---------------------------------------------------------------------- */
/* parsing .scn files */

static scn_client_t *
find_client(scn_t *scn, const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < scn->n_clients; i++)
        if (strlen(scn->clients[i].name) == len &&
            strncmp(scn->clients[i].name, name, len) == 0)
            return &scn->clients[i];
    return NULL;
}

static int
parse_client_line(scn_t *scn, char *line, int lineno)
{
    char *save = NULL;
    char *tok;
    scn_client_t c;

    memset(&c, 0, sizeof(c));
    tok = strtok_r(line + strlen("[client]"), " \t\r\n", &save);
    if (tok == NULL) {
        fprintf(stdout, "%s:%d: [client] needs a name\n", scn->path, lineno);
        return -1;
    }
    c.name = xstrdup(tok);
    while ((tok = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
        if (strncmp(tok, "jid=", 4) == 0) {
            free(c.jid);
            c.jid = xstrdup(tok + 4);
        } else if (strncmp(tok, "password=", 9) == 0) {
            free(c.password);
            c.password = xstrdup(tok + 9);
        } else if (strcmp(tok, "tls=starttls") == 0) {
            c.tls = SCN_TLS_STARTTLS;
        } else if (strcmp(tok, "tls=direct") == 0) {
            c.tls = SCN_TLS_DIRECT;
        } else {
            fprintf(stdout, "%s:%d: unknown client option '%s'\n", scn->path,
                    lineno, tok);
            goto fail;
        }
    }
    if (c.jid == NULL || c.password == NULL) {
        fprintf(stdout, "%s:%d: client %s needs jid= and password=\n",
                scn->path, lineno, c.name);
        goto fail;
    }
    if (find_client(scn, c.name, strlen(c.name)) != NULL) {
        fprintf(stdout, "%s:%d: client %s defined twice\n", scn->path, lineno,
                c.name);
        goto fail;
    }
    scn->clients =
        xrealloc(scn->clients, (scn->n_clients + 1) * sizeof(*scn->clients));
    scn->clients[scn->n_clients++] = c;
    return 0;
fail:
    free(c.name);
    free(c.jid);
    free(c.password);
    return -1;
}

static void
add_step(scn_t *scn, scn_step_kind_t kind, size_t client, char *xml, int line)
{
    scn_step_t *st;

    scn->steps = xrealloc(scn->steps, (scn->n_steps + 1) * sizeof(*st));
    st = &scn->steps[scn->n_steps++];
    st->kind = kind;
    st->client = client;
    st->xml = xml;
    st->line = line;
}

/* Reads the whole file into lines. */
static char **
read_lines(const char *path, size_t *n_lines)
{
    FILE *f = fopen(path, "r");
    char **lines = NULL;
    size_t n = 0;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;

    if (f == NULL)
        return NULL;
    while ((len = getline(&buf, &cap, f)) >= 0) {
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = '\0';
        lines = xrealloc(lines, (n + 1) * sizeof(*lines));
        lines[n++] = xstrndup(buf, (size_t)len);
    }
    free(buf);
    fclose(f);
    *n_lines = n;
    return lines;
}

/*
 * Steps are "NAME connects", "NAME disconnects", "NAME receives nothing",
 * "NAME sends:" and "NAME receives:"; the last two take the following
 * indented (or blank) lines as their XML block.
 */
static int
parse_scn(scn_t *scn)
{
    size_t n_lines = 0, i;
    char **lines = read_lines(scn->path, &n_lines);
    int rc = 0;

    if (lines == NULL) {
        fprintf(stdout, "%s: %s\n", scn->path, strerror(errno));
        return -1;
    }
    for (i = 0; i < n_lines && rc == 0; i++) {
        char *l = lines[i];
        int lineno = (int)i + 1;
        const char *sp, *verb;
        scn_client_t *c;

        if (is_blank(l) || l[0] == '#')
            continue;
        if (strncmp(l, "requires:", 9) == 0) {
            char *save = NULL, *tok;

            for (tok = strtok_r(l + 9, " \t,", &save); tok != NULL;
                 tok = strtok_r(NULL, " \t,", &save)) {
                scn->requires = xrealloc(scn->requires, (scn->n_requires + 1) *
                                                            sizeof(char *));
                scn->requires[scn->n_requires++] = xstrdup(tok);
            }
            continue;
        }
        if (strncmp(l, "[client]", 8) == 0) {
            rc = parse_client_line(scn, l, lineno);
            continue;
        }
        if (isspace((unsigned char)l[0])) {
            fprintf(stdout, "%s:%d: indented line outside a block\n", scn->path,
                    lineno);
            rc = -1;
            break;
        }
        sp = strchr(l, ' ');
        c = sp ? find_client(scn, l, (size_t)(sp - l)) : NULL;
        if (c == NULL) {
            fprintf(stdout, "%s:%d: expected '<client> <verb>', got '%s'\n",
                    scn->path, lineno, l);
            rc = -1;
            break;
        }
        verb = sp + 1;
        if (strcmp(verb, "connects") == 0) {
            add_step(scn, SCN_STEP_CONNECTS, (size_t)(c - scn->clients), NULL,
                     lineno);
        } else if (strcmp(verb, "disconnects") == 0) {
            add_step(scn, SCN_STEP_DISCONNECTS, (size_t)(c - scn->clients),
                     NULL, lineno);
        } else if (strcmp(verb, "receives nothing") == 0) {
            add_step(scn, SCN_STEP_NOTHING, (size_t)(c - scn->clients), NULL,
                     lineno);
        } else if (strcmp(verb, "sends:") == 0 ||
                   strcmp(verb, "receives:") == 0) {
            scn_str_t block = {NULL, 0, 0};

            while (i + 1 < n_lines &&
                   (is_blank(lines[i + 1]) ||
                    isspace((unsigned char)lines[i + 1][0]))) {
                i++;
                str_add(&block, lines[i]);
                str_add(&block, "\n");
            }
            if (block.s == NULL || is_blank(block.s)) {
                fprintf(stdout, "%s:%d: empty XML block\n", scn->path, lineno);
                free(block.s);
                rc = -1;
                break;
            }
            add_step(scn, verb[0] == 's' ? SCN_STEP_SENDS : SCN_STEP_RECEIVES,
                     (size_t)(c - scn->clients), block.s, lineno);
        } else {
            fprintf(stdout, "%s:%d: unknown verb '%s'\n", scn->path, lineno,
                    verb);
            rc = -1;
        }
    }
    for (i = 0; i < n_lines; i++)
        free(lines[i]);
    free(lines);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* variables: ${domain}, ${NAME.jid}, ${NAME.full}, ${NAME.bare},
 * ${NAME.resource} */

static char *expand(scn_t *scn, const char *in);

static int
lookup_var(scn_t *scn, const char *var, size_t len, scn_str_t *out)
{
    const char *dot = memchr(var, '.', len);
    scn_client_t *c;
    const char *field;
    size_t flen;

    if (len == 6 && strncmp(var, "domain", 6) == 0) {
        str_add(out, scn->opts->domain);
        return 0;
    }
    if (dot == NULL)
        return -1;
    c = find_client(scn, var, (size_t)(dot - var));
    if (c == NULL)
        return -1;
    field = dot + 1;
    flen = len - (size_t)(field - var);
    if (flen == 3 && strncmp(field, "jid", 3) == 0) {
        char *j = expand(scn, c->jid);

        if (j == NULL)
            return -1;
        str_add(out, j);
        free(j);
        return 0;
    }
    if (flen == 4 && strncmp(field, "full", 4) == 0) {
        if (c->full == NULL) {
            scn_fail(scn, "${%.*s}: %s has not connected yet", (int)len, var,
                     c->name);
            return -1;
        }
        str_add(out, c->full);
        return 0;
    }
    if (flen == 4 && strncmp(field, "bare", 4) == 0) {
        char *j = expand(scn, c->jid);
        char *slash;

        if (j == NULL)
            return -1;
        slash = strchr(j, '/');
        if (slash)
            *slash = '\0';
        str_add(out, j);
        free(j);
        return 0;
    }
    if (flen == 8 && strncmp(field, "resource", 8) == 0 && c->full) {
        const char *slash = strchr(c->full, '/');

        str_add(out, slash ? slash + 1 : "");
        return 0;
    }
    return -1;
}

/* Returns a new string, or NULL (reported) on an unknown variable. */
static char *
expand(scn_t *scn, const char *in)
{
    scn_str_t out = {NULL, 0, 0};
    const char *p = in;

    str_add(&out, "");
    while (*p) {
        const char *s = strstr(p, "${");
        const char *e;

        if (s == NULL) {
            str_add(&out, p);
            break;
        }
        str_addn(&out, p, (size_t)(s - p));
        e = strchr(s, '}');
        if (e == NULL ||
            lookup_var(scn, s + 2, (size_t)(e - s - 2), &out) < 0) {
            scn_fail(scn, "unknown or unset variable in '%.40s'", s);
            free(out.s);
            return NULL;
        }
        p = e + 1;
    }
    return out.s;
}

/* ---------------------------------------------------------------------- */
/* matching */

/* Local name and namespace, with "stream:" prefixes resolved (libstrophe
 * keeps the prefix on stream-level elements) and namespaces inherited. */
static const char *
elem_name(xmpp_stanza_t *st, const char **ns, const char *parent_ns)
{
    const char *name = xmpp_stanza_get_name(st);
    const char *own = xmpp_stanza_get_ns(st);

    *ns = own ? own : parent_ns;
    if (name && strncmp(name, "stream:", 7) == 0) {
        *ns = SCN_NS_STREAMS;
        return name + 7;
    }
    return name ? name : "";
}

static int
is_elem(xmpp_stanza_t *st)
{
    return xmpp_stanza_is_tag(st);
}

static int
has_text(xmpp_stanza_t *st)
{
    xmpp_stanza_t *ch;

    for (ch = xmpp_stanza_get_children(st); ch; ch = xmpp_stanza_get_next(ch)) {
        if (xmpp_stanza_is_text(ch) && !is_blank(xmpp_stanza_get_text_ptr(ch)))
            return 1;
    }
    return 0;
}

static char *
own_text(xmpp_stanza_t *st)
{
    scn_str_t b = {NULL, 0, 0};
    xmpp_stanza_t *ch;
    char *t;

    str_add(&b, "");
    for (ch = xmpp_stanza_get_children(st); ch; ch = xmpp_stanza_get_next(ch))
        if (xmpp_stanza_is_text(ch))
            str_add(&b, xmpp_stanza_get_text_ptr(ch));
    t = trim_dup(b.s);
    free(b.s);
    return t;
}

static size_t
elem_children(xmpp_stanza_t *st, xmpp_stanza_t ***out)
{
    xmpp_stanza_t *ch;
    size_t n = 0;

    *out = NULL;
    for (ch = xmpp_stanza_get_children(st); ch; ch = xmpp_stanza_get_next(ch))
        if (is_elem(ch)) {
            *out = xrealloc(*out, (n + 1) * sizeof(**out));
            (*out)[n++] = ch;
        }
    return n;
}

/* backtracking assignment over the precomputed match matrix */
static int
assign_children(const char *m, size_t n_w, size_t n_g, size_t wi, char *used)
{
    size_t gj;

    if (wi == n_w)
        return 1;
    for (gj = 0; gj < n_g; gj++) {
        if (!used[gj] && m[wi * n_g + gj]) {
            used[gj] = 1;
            if (assign_children(m, n_w, n_g, wi + 1, used))
                return 1;
            used[gj] = 0;
        }
    }
    return 0;
}

static int match_elem(xmpp_stanza_t *want, const char *want_pns,
                      xmpp_stanza_t *got, const char *got_pns, const char *path,
                      scn_str_t *why);

static int
match_children(xmpp_stanza_t *want, const char *wns, xmpp_stanza_t *got,
               const char *gns, const char *here, scn_str_t *why)
{
    xmpp_stanza_t **w, **g;
    size_t n_w = elem_children(want, &w), n_g = elem_children(got, &g);
    char *m = xmalloc(n_w * n_g + 1), *used = xmalloc(n_g + 1);
    size_t wi, gj;
    int ok;

    memset(used, 0, n_g + 1);
    for (wi = 0; wi < n_w; wi++)
        for (gj = 0; gj < n_g; gj++)
            m[wi * n_g + gj] =
                (char)match_elem(w[wi], wns, g[gj], gns, here, NULL);
    ok = assign_children(m, n_w, n_g, 0, used);
    if (!ok && why) {
        for (wi = 0; wi < n_w; wi++) {
            const char *wcns, *cns;
            const char *wcn = elem_name(w[wi], &wcns, wns);

            for (gj = 0; gj < n_g && !m[wi * n_g + gj]; gj++)
                ;
            if (gj < n_g)
                continue;
            {
                char *buf = NULL;
                size_t len = 0, n_same = 0, k = 0;

                if (xmpp_stanza_to_text(w[wi], &buf, &len) == XMPP_EOK) {
                    str_printf(why, "%s: no child matches %s", here, buf);
                    xmpp_free(xmpp_stanza_get_context(w[wi]), buf);
                }
                for (gj = 0; gj < n_g; gj++)
                    if (strcmp(elem_name(g[gj], &cns, gns), wcn) == 0) {
                        n_same++;
                        k = gj;
                    }
                /* a single candidate: say exactly what differs */
                if (n_same == 1) {
                    str_add(why, " (");
                    match_elem(w[wi], wns, g[k], gns, here, why);
                    str_add(why, ")");
                }
                (void)wcns;
            }
            break;
        }
        if (wi == n_w)
            str_printf(why,
                       "%s: expected children cannot all be matched by "
                       "distinct received children",
                       here);
    }
    free(m);
    free(used);
    free(w);
    free(g);
    return ok;
}

/*
 * Does `got` match the pattern `want`? On a mismatch `why` (if given)
 * gets the first difference, with the element path.
 */
static int
match_elem(xmpp_stanza_t *want, const char *want_pns, xmpp_stanza_t *got,
           const char *got_pns, const char *path, scn_str_t *why)
{
    const char *wns, *gns;
    const char *wname = elem_name(want, &wns, want_pns);
    const char *gname = elem_name(got, &gns, got_pns);
    int n_attrs = xmpp_stanza_get_attribute_count(want);
    const char **attrs;
    char *here;
    int i, ok = 1;

    if (strcmp(wname, gname) != 0 ||
        strcmp(wns ? wns : "", gns ? gns : "") != 0) {
        if (why)
            str_printf(why, "%s: expected element {%s}%s, got {%s}%s", path,
                       wns ? wns : "", wname, gns ? gns : "", gname);
        return 0;
    }
    here = xmalloc(strlen(path) + strlen(wname) + 2);
    sprintf(here, "%s/%s", path, wname);
    attrs = xmalloc(sizeof(char *) * (size_t)(2 * n_attrs + 2));
    n_attrs = xmpp_stanza_get_attributes(want, attrs, 2 * n_attrs + 2);
    for (i = 0; ok && i + 1 < n_attrs; i += 2) {
        const char *k = attrs[i], *v = attrs[i + 1];
        const char *gv;

        if (strcmp(k, "xmlns") == 0 || strncmp(k, "xmlns:", 6) == 0)
            continue;
        gv = xmpp_stanza_get_attribute(got, k);
        if (gv == NULL) {
            if (why)
                str_printf(why, "%s: attribute %s missing", here, k);
            ok = 0;
        } else if (strcmp(v, SCN_ANY) != 0 && strcmp(v, gv) != 0) {
            if (why)
                str_printf(why, "%s: attribute %s='%s', expected '%s'", here, k,
                           gv, v);
            ok = 0;
        }
    }
    free(attrs);
    if (ok && has_text(want)) {
        char *wt = own_text(want), *gt = own_text(got);

        if (strcmp(wt, SCN_ANY) != 0 && strcmp(wt, gt) != 0) {
            if (why)
                str_printf(why, "%s: text '%s', expected '%s'", here, gt, wt);
            ok = 0;
        }
        free(wt);
        free(gt);
    }
    /* expected children: each by a distinct received child, in any order
     * (disco features and form fields have no defined order) */
    if (ok)
        ok = match_children(want, wns, got, gns, here, why);
    free(here);
    return ok;
}

/* ---------------------------------------------------------------------- */
/* libstrophe plumbing */

static void
queue_push(scn_client_t *c, xmpp_stanza_t *st)
{
    if (c->n_queue == c->cap_queue) {
        c->cap_queue = c->cap_queue ? 2 * c->cap_queue : 16;
        c->queue = xrealloc(c->queue, c->cap_queue * sizeof(*c->queue));
    }
    c->queue[c->n_queue++] = st;
}

static void
queue_remove(scn_client_t *c, size_t i)
{
    xmpp_stanza_release(c->queue[i]);
    memmove(&c->queue[i], &c->queue[i + 1],
            (c->n_queue - i - 1) * sizeof(*c->queue));
    c->n_queue--;
}

static int
on_stanza(xmpp_conn_t *conn, xmpp_stanza_t *st, void *userdata)
{
    scn_client_t *c = userdata;
    const char *ns;
    const char *name = elem_name(st, &ns, SCN_NS_CLIENT);

    const char *id = xmpp_stanza_get_id(st);

    (void)conn;
    /* the handler is added from the CONNECT callback, which runs inside
     * the dispatch of libstrophe's own bind/session results */
    if (id != NULL && strncmp(id, "_xmpp_", 6) == 0)
        return 1;
    if (strcmp(name, "error") == 0 && ns && strcmp(ns, SCN_NS_STREAMS) == 0)
        c->has_stream_error = 1;
    queue_push(c, xmpp_stanza_copy(st));
    return 1;
}

static void
on_conn(xmpp_conn_t *conn, xmpp_conn_event_t event, int error,
        xmpp_stream_error_t *serr, void *userdata)
{
    scn_client_t *c = userdata;
    const char *bound;

    if (event == XMPP_CONN_CONNECT) {
        c->state = SCN_CLIENT_CONNECTED;
        bound = xmpp_conn_get_bound_jid(conn);
        free(c->full);
        c->full = xstrdup(bound ? bound : "");
        xmpp_handler_add(conn, on_stanza, NULL, NULL, NULL, c);
        return;
    }
    if (serr != NULL && serr->stanza != NULL && !c->has_stream_error) {
        /* libstrophe consumes <stream:error/> itself; keep it matchable */
        c->has_stream_error = 1;
        queue_push(c, xmpp_stanza_copy(serr->stanza));
    }
    if (c->fail_reason == NULL) {
        char buf[256];

        snprintf(buf, sizeof(buf), "%s (error %d%s%s)",
                 event == XMPP_CONN_FAIL ? "connection failed" : "disconnected",
                 error, serr ? ", stream error " : "",
                 serr && serr->text ? serr->text : (serr ? "set" : ""));
        c->fail_reason = xstrdup(buf);
    }
    c->state = SCN_CLIENT_CLOSED;
}

static int
on_certfail(const xmpp_tlscert_t *cert, const char *errormsg)
{
    (void)cert;
    fprintf(stdout, "  TLS certificate rejected: %s\n", errormsg);
    return 0;
}

static void
run_for(scn_t *scn, long ms)
{
    long end = now_ms() + ms;

    while (now_ms() < end)
        xmpp_run_once(scn->ctx, 20);
}

static void
print_stanza(const char *prefix, xmpp_stanza_t *st)
{
    char *buf = NULL;
    size_t len = 0;

    if (xmpp_stanza_to_text(st, &buf, &len) == XMPP_EOK) {
        fprintf(stdout, "%s%s\n", prefix, buf);
        xmpp_free(xmpp_stanza_get_context(st), buf);
    }
}

/* ---------------------------------------------------------------------- */
/* steps */

static int
step_connects(scn_t *scn, scn_client_t *c)
{
    char *jid = expand(scn, c->jid);
    long flags = XMPP_CONN_FLAG_DISABLE_SM;
    int port = scn->opts->port;
    long deadline;
    char *slash;

    if (jid == NULL)
        return -1;
    if (c->state == SCN_CLIENT_CONNECTED) {
        scn_fail(scn, "%s is already connected", c->name);
        free(jid);
        return -1;
    }
    if (c->conn)
        xmpp_conn_release(c->conn);
    c->conn = xmpp_conn_new(scn->ctx);
    if (c->tls == SCN_TLS_DIRECT) {
        flags |= XMPP_CONN_FLAG_LEGACY_SSL;
        port = scn->opts->tls_port;
    } else {
        flags |= XMPP_CONN_FLAG_MANDATORY_TLS;
    }
    if (scn->opts->trust_tls)
        flags |= XMPP_CONN_FLAG_TRUST_TLS;
    xmpp_conn_set_flags(c->conn, flags);
    if (scn->opts->cafile)
        xmpp_conn_set_cafile(c->conn, scn->opts->cafile);
    xmpp_conn_set_certfail_handler(c->conn, on_certfail);
    xmpp_conn_set_jid(c->conn, jid);
    xmpp_conn_set_pass(c->conn, c->password);
    free(c->bare);
    c->bare = xstrdup(jid);
    slash = strchr(c->bare, '/');
    if (slash)
        *slash = '\0';
    free(jid);
    free(c->fail_reason);
    c->fail_reason = NULL;
    c->has_stream_error = 0;
    c->state = SCN_CLIENT_CONNECTING;
    if (xmpp_connect_client(c->conn, scn->opts->host, (unsigned short)port,
                            on_conn, c) != XMPP_EOK) {
        scn_fail(scn, "%s: xmpp_connect_client failed", c->name);
        c->state = SCN_CLIENT_CLOSED;
        return -1;
    }
    deadline = now_ms() + scn->opts->timeout_ms;
    while (c->state == SCN_CLIENT_CONNECTING && now_ms() < deadline)
        xmpp_run_once(scn->ctx, 20);
    if (c->state != SCN_CLIENT_CONNECTED) {
        scn_fail(scn, "%s connects: %s", c->name,
                 c->state == SCN_CLIENT_CONNECTING ? "timed out"
                 : c->fail_reason                  ? c->fail_reason
                                                   : "failed");
        return -1;
    }
    if (scn->opts->verbose)
        fprintf(stdout, "  %s bound %s\n", c->name, c->full);
    return 0;
}

static int
step_sends(scn_t *scn, scn_client_t *c, const char *xml)
{
    char *text;

    if (c->state != SCN_CLIENT_CONNECTED) {
        scn_fail(scn, "%s sends: not connected (%s)", c->name,
                 c->fail_reason ? c->fail_reason : "never connected");
        return -1;
    }
    text = expand(scn, xml);
    if (text == NULL)
        return -1;
    /* raw on purpose: tests may send anything the server must cope with */
    xmpp_send_raw(c->conn, text, strlen(text));
    free(text);
    xmpp_run_once(scn->ctx, 1);
    return 0;
}

static int
step_receives(scn_t *scn, scn_client_t *c, const char *xml)
{
    char *text = expand(scn, xml);
    scn_str_t wrapped = {NULL, 0, 0};
    xmpp_stanza_t *pattern, *want;
    long deadline;
    int rc = 0;

    if (text == NULL)
        return -1;
    str_add(&wrapped, "<scn-block xmlns='" SCN_NS_CLIENT "' "
                      "xmlns:stream='" SCN_NS_STREAMS "'>");
    str_add(&wrapped, text);
    str_add(&wrapped, "</scn-block>");
    free(text);
    pattern = xmpp_stanza_new_from_string(scn->ctx, wrapped.s);
    free(wrapped.s);
    if (pattern == NULL) {
        scn_fail(scn, "%s receives: XML block does not parse", c->name);
        return -1;
    }
    deadline = now_ms() + scn->opts->timeout_ms;
    for (want = xmpp_stanza_get_children(pattern); want && rc == 0;
         want = xmpp_stanza_get_next(want)) {
        int matched = 0;

        if (!is_elem(want))
            continue;
        while (!matched) {
            size_t i;

            for (i = 0; i < c->n_queue; i++) {
                if (match_elem(want, SCN_NS_CLIENT, c->queue[i], SCN_NS_CLIENT,
                               "", NULL)) {
                    if (scn->opts->verbose)
                        print_stanza("  matched: ", c->queue[i]);
                    queue_remove(c, i);
                    matched = 1;
                    break;
                }
            }
            if (matched)
                break;
            if (now_ms() >= deadline ||
                (c->state == SCN_CLIENT_CLOSED && c->conn != NULL &&
                 xmpp_conn_is_disconnected(c->conn))) {
                scn_fail(scn, "%s receives: %s", c->name,
                         now_ms() >= deadline
                             ? "timed out waiting for"
                             : "connection closed while waiting for");
                print_stanza("  expected: ", want);
                if (c->n_queue == 0)
                    fprintf(stdout, "  received: nothing unmatched\n");
                for (i = 0; i < c->n_queue; i++) {
                    scn_str_t why = {NULL, 0, 0};

                    print_stanza("  received: ", c->queue[i]);
                    match_elem(want, SCN_NS_CLIENT, c->queue[i], SCN_NS_CLIENT,
                               "", &why);
                    fprintf(stdout, "    mismatch: %s\n", why.s ? why.s : "?");
                    free(why.s);
                }
                if (c->state == SCN_CLIENT_CLOSED && c->fail_reason)
                    fprintf(stdout, "  connection: %s\n", c->fail_reason);
                rc = -1;
                break;
            }
            xmpp_run_once(scn->ctx, 20);
        }
    }
    xmpp_stanza_release(pattern);
    return rc;
}

static int
step_nothing(scn_t *scn, scn_client_t *c)
{
    size_t i;

    run_for(scn, scn->opts->quiet_ms);
    if (c->n_queue == 0)
        return 0;
    scn_fail(scn, "%s receives nothing: got %zu unexpected stanza(s)", c->name,
             c->n_queue);
    for (i = 0; i < c->n_queue; i++)
        print_stanza("  received: ", c->queue[i]);
    return -1;
}

static int
step_disconnects(scn_t *scn, scn_client_t *c)
{
    long deadline = now_ms() + scn->opts->timeout_ms;

    if (c->conn == NULL || c->state != SCN_CLIENT_CONNECTED) {
        scn_fail(scn, "%s disconnects: not connected", c->name);
        return -1;
    }
    xmpp_disconnect(c->conn);
    while (c->state != SCN_CLIENT_CLOSED && now_ms() < deadline)
        xmpp_run_once(scn->ctx, 20);
    return 0;
}

static int
provided(const scn_opts_t *o, const char *what)
{
    const char *p = o->provides;
    size_t n = strlen(what);

    if (p == NULL || strcmp(p, "all") == 0)
        return 1;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);

        if (len == n && strncmp(p, what, n) == 0)
            return 1;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return 0;
}

static void
scn_free(scn_t *scn)
{
    size_t i;

    for (i = 0; i < scn->n_clients; i++) {
        scn_client_t *c = &scn->clients[i];

        while (c->n_queue)
            queue_remove(c, c->n_queue - 1);
        free(c->queue);
        if (c->conn)
            xmpp_conn_release(c->conn);
        free(c->name);
        free(c->jid);
        free(c->password);
        free(c->full);
        free(c->bare);
        free(c->fail_reason);
    }
    free(scn->clients);
    for (i = 0; i < scn->n_steps; i++)
        free(scn->steps[i].xml);
    free(scn->steps);
    for (i = 0; i < scn->n_requires; i++)
        free(scn->requires[i]);
    free(scn->requires);
}

static int
run_file(const scn_opts_t *o, xmpp_ctx_t *ctx, const char *path)
{
    scn_t scn;
    size_t i;
    int rc = SCN_PASS;
    long t0 = now_ms();

    memset(&scn, 0, sizeof(scn));
    scn.path = path;
    scn.opts = o;
    scn.ctx = ctx;
    if (parse_scn(&scn) < 0) {
        scn_free(&scn);
        fprintf(stdout, "FAIL %s (does not parse)\n", path);
        return SCN_FAIL;
    }
    for (i = 0; i < scn.n_requires; i++) {
        if (!provided(o, scn.requires[i])) {
            fprintf(stdout, "SKIP %s (requires %s)\n", path, scn.requires[i]);
            scn_free(&scn);
            return SCN_SKIP;
        }
    }
    for (i = 0; i < scn.n_steps && rc == SCN_PASS; i++) {
        scn_step_t *st = &scn.steps[i];
        scn_client_t *c = &scn.clients[st->client];
        int r = 0;

        scn.line = st->line;
        if (o->verbose)
            fprintf(stdout, "%s:%d: %s step %d\n", path, st->line, c->name,
                    (int)st->kind);
        switch (st->kind) {
        case SCN_STEP_CONNECTS: r = step_connects(&scn, c); break;
        case SCN_STEP_SENDS: r = step_sends(&scn, c, st->xml); break;
        case SCN_STEP_RECEIVES: r = step_receives(&scn, c, st->xml); break;
        case SCN_STEP_NOTHING: r = step_nothing(&scn, c); break;
        case SCN_STEP_DISCONNECTS: r = step_disconnects(&scn, c); break;
        }
        if (r < 0)
            rc = SCN_FAIL;
    }
    /* leave the server clean for the next scenario on the same server */
    {
        long deadline = now_ms() + 3000;
        int pending = 0;

        for (i = 0; i < scn.n_clients; i++) {
            scn_client_t *c = &scn.clients[i];

            if (c->conn && c->state != SCN_CLIENT_CLOSED &&
                !xmpp_conn_is_disconnected(c->conn)) {
                xmpp_disconnect(c->conn);
                pending = 1;
            }
        }
        while (pending && now_ms() < deadline) {
            xmpp_run_once(ctx, 20);
            pending = 0;
            for (i = 0; i < scn.n_clients; i++)
                if (scn.clients[i].conn &&
                    scn.clients[i].state != SCN_CLIENT_CLOSED &&
                    !xmpp_conn_is_disconnected(scn.clients[i].conn))
                    pending = 1;
        }
    }
    fprintf(stdout, "%s %s (%.1fs)\n", rc == SCN_PASS ? "PASS" : "FAIL", path,
            (double)(now_ms() - t0) / 1000.0);
    scn_free(&scn);
    return rc;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: scn_runner [options] FILE.scn...\n"
               "  --host ADDR      server address (127.0.0.1)\n"
               "  --port N         c2s STARTTLS port (5222)\n"
               "  --tls-port N     c2s direct TLS port (5223)\n"
               "  --domain D       value of ${domain} (localhost)\n"
               "  --cafile FILE    CA certificate to trust\n"
               "  --trust-tls      accept any certificate\n"
               "  --provide LIST   comma list satisfying 'requires:' "
               "(default: all)\n"
               "  --timeout MS     receive/connect timeout (5000)\n"
               "  --quiet MS       'receives nothing' wait (1000)\n"
               "  --verbose        trace steps and libstrophe\n"
               "exit: 0 all passed, 1 a failure, 77 all skipped, 2 usage\n");
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"tls-port", required_argument, NULL, 'P'},
        {"domain", required_argument, NULL, 'd'},
        {"cafile", required_argument, NULL, 'c'},
        {"trust-tls", no_argument, NULL, 'T'},
        {"provide", required_argument, NULL, 'r'},
        {"timeout", required_argument, NULL, 't'},
        {"quiet", required_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    scn_opts_t o = {"127.0.0.1", 5222, 5223, "localhost", NULL,
                    NULL,        5000, 1000, 0,           0};
    xmpp_log_t *log = NULL;
    xmpp_ctx_t *ctx;
    int opt, i, n_fail = 0, n_skip = 0, n_pass = 0;

    while ((opt = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
        switch (opt) {
        case 'H': o.host = optarg; break;
        case 'p': o.port = atoi(optarg); break;
        case 'P': o.tls_port = atoi(optarg); break;
        case 'd': o.domain = optarg; break;
        case 'c': o.cafile = optarg; break;
        case 'T': o.trust_tls = 1; break;
        case 'r': o.provides = optarg; break;
        case 't': o.timeout_ms = atol(optarg); break;
        case 'q': o.quiet_ms = atol(optarg); break;
        case 'v': o.verbose = 1; break;
        case 'h': usage(stdout); return SCN_PASS;
        default: usage(stderr); return SCN_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return SCN_USAGE;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    xmpp_initialize();
    if (o.verbose)
        log = xmpp_get_default_logger(XMPP_LEVEL_DEBUG);
    ctx = xmpp_ctx_new(NULL, log);
    for (i = optind; i < argc; i++) {
        int r = run_file(&o, ctx, argv[i]);

        if (r == SCN_PASS)
            n_pass++;
        else if (r == SCN_SKIP)
            n_skip++;
        else
            n_fail++;
    }
    xmpp_ctx_free(ctx);
    xmpp_shutdown();
    if (n_fail)
        return SCN_FAIL;
    if (n_skip && !n_pass)
        return SCN_SKIP;
    return SCN_PASS;
}
