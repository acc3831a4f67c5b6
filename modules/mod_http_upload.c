/* modules/mod_http_upload.c: XEP-0363 HTTP File Upload as a component
 * (upload.D): slot requests from local users of the parent vhost, size
 * limit (disco form, file-too-large), per-user quota, HMAC-SHA256 slot
 * tokens with a secret kept in the store, PUT streamed to disk under
 * <storage_path>/upload (generated names), GET/HEAD with Range served from
 * disk, metadata in LMDB, expiry, and removal with the account. The HTTP
 * side (streaming, Range, CORS) is src/http.c's, through <palaver/http.h>. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <palaver/http.h>
#include <palaver/module.h>

#define NS_UPLOAD "urn:xmpp:http:upload:0"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_DATA "jabber:x:data"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

#define ID_BYTES 16                 /* slot ids: 32 hex digits */
#define ID_LEN (ID_BYTES * 2)
#define SECRET_LEN 32
#define NAME_MAX_BYTES 128          /* sanitized file name */
#define CTYPE_MAX 128
#define DEFAULT_CTYPE "application/octet-stream"

typedef struct up_conf_s {
    char *domain;                   /* http_upload_domain (core uses it) */
    size_t max_size;
    size_t quota;
    pv_duration_t expire;
    pv_duration_t slot_timeout;
    char *url;
    char *path;
} up_conf_t;

/* Per component host. Refcounted: store callbacks and uploads in flight
 * may finish after host_fini (is_dead then). */
typedef struct up_host_s {
    unsigned refs;
    int is_dead;
    pv_module_t *m;
    pv_host_t *h;
    char *domain;
    const up_conf_t *conf;
    pv_store_t *files;              /* MAP (domain, "", id) -> meta */
    pv_store_t *owners;             /* MAP (domain, owner, id) -> size */
    pv_store_t *secret_store;       /* KEYVAL (domain, "") -> secret */
    uint8_t secret[SECRET_LEN];
    char *dir;                      /* where files live */
    char *prefix;                   /* route prefix, "/upload/" */
    struct up_put_s *puts;          /* uploads in progress */
} up_host_t;

/* A slot row. */
typedef struct up_meta_s {
    char state;                     /* 'P' slot handed out, 'D' uploaded */
    char owner[1024];
    uint64_t size;
    char ctype[CTYPE_MAX + 1];
    uint64_t created;               /* unix seconds */
    uint64_t expires;               /* token expiry, unix seconds */
    char name[NAME_MAX_BYTES * 3 + 1];
} up_meta_t;

/* One PUT in progress. */
typedef struct up_put_s {
    up_host_t *uh;
    pv_http_req_t *r;               /* NULL once the client left */
    char id[ID_LEN + 1];
    up_meta_t meta;
    struct up_put_s *next;
} up_put_t;

/* ---- helpers ----------------------------------------------------------- */

static void
uh_unref(up_host_t *uh)
{
    if (--uh->refs > 0)
        return;
    free(uh->domain);
    free(uh->dir);
    free(uh->prefix);
    free(uh);
}

static uint64_t
now_s(void)
{
    return (uint64_t)time(NULL);
}

static void
hex(const uint8_t *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int
is_slot_id(const char *s, size_t n)
{
    size_t i;

    if (n != ID_LEN)
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* The name the file gets in its URL and metadata: path separators and
 * control characters become '_', at most NAME_MAX_BYTES bytes (cut on a
 * UTF-8 boundary), and names the path decoder refuses become "file". */
static void
sanitize_name(const char *in, char *out, size_t size)
{
    size_t i, n = 0, max = size - 1 < NAME_MAX_BYTES ? size - 1
                                                      : NAME_MAX_BYTES;

    for (i = 0; in[i] != '\0' && n < max; i++) {
        unsigned char c = (unsigned char)in[i];

        out[n++] = (c < 0x20 || c == 0x7f || c == '/' || c == '\\')
                       ? '_' : (char)c;
    }
    /* do not end inside a UTF-8 sequence */
    if (in[i] != '\0')
        while (n > 0 && ((unsigned char)out[n - 1] & 0xc0) == 0x80)
            n--;
    if (n > 0 && ((unsigned char)out[n - 1] & 0xc0) == 0xc0 &&
        in[i] != '\0')
        n--;
    out[n] = '\0';
    if (n == 0 || strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
        snprintf(out, size, "file");
}

/* Percent-encodes everything but RFC 3986 unreserved characters. */
static void
url_encode(pv_buf_t *b, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
            c == '~')
            pv_buf_append(b, s, 1);
        else
            pv_buf_printf(b, "%%%02X", c);
    }
}

/* type/subtype with optional parameters, printable ASCII only. */
static int
valid_ctype(const char *s)
{
    size_t i, n = strlen(s);
    const char *slash = strchr(s, '/');

    if (n == 0 || n > CTYPE_MAX || slash == NULL || slash == s ||
        slash[1] == '\0')
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

static int
parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* ---- metadata rows ------------------------------------------------------ */

static void
meta_encode(const up_meta_t *mt, pv_buf_t *b)
{
    pv_buf_printf(b, "%c\n%s\n%llu\n%s\n%llu\n%llu\n%s", mt->state,
                  mt->owner, (unsigned long long)mt->size, mt->ctype,
                  (unsigned long long)mt->created,
                  (unsigned long long)mt->expires, mt->name);
}

static int
meta_decode(const char *v, size_t len, up_meta_t *mt)
{
    char *copy = pv_xstrndup(v, len), *f[7], *p = copy;
    int i, rc = -1;

    for (i = 0; i < 7; i++) {
        f[i] = p;
        p = i < 6 ? strchr(p, '\n') : NULL;
        if (i < 6) {
            if (p == NULL)
                goto out;
            *p++ = '\0';
        }
    }
    memset(mt, 0, sizeof(*mt));
    mt->state = f[0][0];
    if (strlen(f[1]) >= sizeof(mt->owner) ||
        strlen(f[3]) >= sizeof(mt->ctype) ||
        strlen(f[6]) >= sizeof(mt->name) ||
        parse_u64(f[2], &mt->size) != 0 ||
        parse_u64(f[4], &mt->created) != 0 ||
        parse_u64(f[5], &mt->expires) != 0)
        goto out;
    strcpy(mt->owner, f[1]);
    strcpy(mt->ctype, f[3]);
    strcpy(mt->name, f[6]);
    rc = 0;
out:
    free(copy);
    return rc;
}

static int
meta_get(up_host_t *uh, const char *id, up_meta_t *mt)
{
    void *v;
    size_t len;
    int rc;

    if (pv_store_get(uh->files, uh->domain, "", id, &v, &len) != PV_OK)
        return -1;
    rc = meta_decode(v, len, mt);
    free(v);
    return rc;
}

static char *
file_path(const up_host_t *uh, const char *id, const char *suffix)
{
    return pv_xasprintf("%s/%s%s", uh->dir, id, suffix);
}

/* Removes a slot: its file, a partial file, both rows. */
static void
slot_remove(up_host_t *uh, const char *id, const char *owner)
{
    char *p = file_path(uh, id, "");
    char *t = file_path(uh, id, ".part");

    if (unlink(p) != 0 && errno != ENOENT)
        pv_log_errno("http_upload", "cannot remove %s", p);
    unlink(t);
    free(p);
    free(t);
    pv_store_delete(uh->files, uh->domain, "", id, NULL, NULL);
    pv_store_delete(uh->owners, uh->domain, owner, id, NULL, NULL);
}

/* ---- tokens ------------------------------------------------------------ */

/* HMAC-SHA256 over everything the slot promises, so that a token opens
 * exactly one slot for one file of one size and type until it expires. */
static void
token_mac(const up_host_t *uh, const char *id, const up_meta_t *mt,
          uint64_t expires, char out[65])
{
    pv_buf_t b = {0};
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    pv_buf_printf(&b, "%s", id);
    pv_buf_append(&b, "", 1);
    pv_buf_puts(&b, mt->name);
    pv_buf_append(&b, "", 1);
    pv_buf_printf(&b, "%llu", (unsigned long long)mt->size);
    pv_buf_append(&b, "", 1);
    pv_buf_puts(&b, mt->ctype);
    pv_buf_append(&b, "", 1);
    pv_buf_printf(&b, "%llu", (unsigned long long)expires);
    if (HMAC(EVP_sha256(), uh->secret, SECRET_LEN,
             (const unsigned char *)b.data, b.len, mac, &n) == NULL ||
        n != 32)
        memset(mac, 0, sizeof(mac));     /* never matches a real token */
    hex(mac, 32, out);
    pv_buf_free(&b);
}

/* "<expires>-<hex mac>" checked against the row: 0 when valid. */
static int
token_check(const up_host_t *uh, const char *id, const up_meta_t *mt,
            const char *token)
{
    const char *dash = strchr(token, '-');
    char num[24], want[65];
    uint64_t expires;
    size_t n;

    if (dash == NULL || (n = (size_t)(dash - token)) == 0 ||
        n >= sizeof(num) || strlen(dash + 1) != 64)
        return -1;
    memcpy(num, token, n);
    num[n] = '\0';
    if (parse_u64(num, &expires) != 0 || expires != mt->expires ||
        expires < now_s())
        return -1;
    token_mac(uh, id, mt, expires, want);
    return CRYPTO_memcmp(want, dash + 1, 64) == 0 ? 0 : -1;
}

/* ---- HTTP --------------------------------------------------------------- */

/* Splits "<prefix><id>/<name>" (decoded); 0 when it has that shape. */
static int
split_path(const up_host_t *uh, const char *path, char id[ID_LEN + 1],
           const char **name)
{
    size_t pl = strlen(uh->prefix);
    const char *p, *slash;

    if (strncmp(path, uh->prefix, pl) != 0)
        return -1;
    p = path + pl;
    slash = strchr(p, '/');
    if (slash == NULL || !is_slot_id(p, (size_t)(slash - p)) ||
        slash[1] == '\0' || strchr(slash + 1, '/') != NULL)
        return -1;
    memcpy(id, p, ID_LEN);
    id[ID_LEN] = '\0';
    *name = slash + 1;
    return 0;
}

static up_put_t *
put_find(up_host_t *uh, const char *id)
{
    up_put_t *p;

    for (p = uh->puts; p != NULL; p = p->next)
        if (strcmp(p->id, id) == 0)
            return p;
    return NULL;
}

static void
put_unlink(up_put_t *p)
{
    up_put_t **pp;

    for (pp = &p->uh->puts; *pp != NULL; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    p->next = NULL;
}

static void
put_free(up_put_t *p)
{
    put_unlink(p);
    uh_unref(p->uh);
    free(p);
}

static void
put_gone(void *arg, pv_http_req_t *r)
{
    up_put_t *p = arg;

    (void)r;
    p->r = NULL;
    /* before the commit: the file stays as a partial upload (removed
     * by recv_file); after done(): the row write frees p */
    if (p->meta.state != 'D')
        put_free(p);
}

static void
put_committed(void *arg, int rc)
{
    up_put_t *p = arg;

    if (p->r != NULL) {
        if (rc == PV_OK) {
            pv_http_respond(p->r, 201, NULL, NULL, 0);
        } else {
            pv_http_respond_status(p->r, 500);
        }
    }
    put_free(p);
}

static void
put_done(void *arg, pv_http_req_t *r, int rc, uint64_t size)
{
    up_put_t *p = arg;
    up_host_t *uh = p->uh;
    pv_buf_t b = {0};

    if (rc != PV_OK) {
        put_free(p);
        return;
    }
    if (size != p->meta.size || uh->is_dead) {
        char *fp = file_path(uh, p->id, "");

        unlink(fp);
        free(fp);
        pv_http_respond_status(r, uh->is_dead ? 503 : 400);
        put_free(p);
        return;
    }
    p->meta.state = 'D';
    p->meta.created = now_s();
    meta_encode(&p->meta, &b);
    /* 201 only once the row is durable (the commit callback) */
    if (pv_store_put(uh->files, uh->domain, "", p->id, b.data, b.len,
                     put_committed, p) != PV_OK) {
        pv_http_respond_status(r, 500);
        put_free(p);
    }
    pv_buf_free(&b);
}

static void
upload_put(up_host_t *uh, pv_http_req_t *r, const char *id,
           const char *name)
{
    up_meta_t mt;
    char token[128];
    uint64_t len;
    int chunked;
    const char *ct;
    up_put_t *p;
    char *tmp, *fin;

    if (meta_get(uh, id, &mt) != 0 || strcmp(mt.name, name) != 0 ||
        pv_http_req_param(r, "token", token, sizeof(token)) != PV_OK ||
        token_check(uh, id, &mt, token) != 0) {
        pv_http_respond_status(r, 403);
        return;
    }
    /* a slot is good for one upload */
    if (mt.state != 'P' || put_find(uh, id) != NULL) {
        pv_http_respond_status(r, 409);
        return;
    }
    len = pv_http_req_content_length(r, &chunked);
    if (!chunked && len > mt.size) {
        pv_http_respond_status(r, 413);
        return;
    }
    if (!chunked && len != mt.size) {
        pv_http_respond_status(r, 400);
        return;
    }
    ct = pv_http_req_header(r, "Content-Type");
    if (ct != NULL && strcasecmp(ct, mt.ctype) != 0 &&
        strcmp(mt.ctype, DEFAULT_CTYPE) != 0) {
        pv_http_respond_status(r, 400);
        return;
    }
    p = pv_xcalloc(1, sizeof(*p));
    p->uh = uh;
    uh->refs++;
    p->r = r;
    memcpy(p->id, id, sizeof(p->id));
    p->meta = mt;
    p->next = uh->puts;
    uh->puts = p;
    tmp = file_path(uh, id, ".part");
    fin = file_path(uh, id, "");
    /* a stale partial file from a crash would block O_EXCL */
    unlink(tmp);
    if (pv_http_recv_file(r, tmp, fin, mt.size, put_done, put_gone, p)
        != PV_OK) {
        pv_http_respond_status(r, 500);
        put_free(p);
    }
    free(tmp);
    free(fin);
}

static void
upload_get(up_host_t *uh, pv_http_req_t *r, const char *id,
           const char *name)
{
    up_meta_t mt;
    char *fp;
    int rc;

    if (meta_get(uh, id, &mt) != 0 || mt.state != 'D' ||
        strcmp(mt.name, name) != 0) {
        pv_http_respond_status(r, 404);
        return;
    }
    /* XEP-0363 §11: what users upload must not run as our origin */
    pv_http_add_header(r, "X-Content-Type-Options", "nosniff");
    pv_http_add_header(r, "Content-Security-Policy",
                       "default-src 'none'; sandbox");
    fp = file_path(uh, id, "");
    rc = pv_http_send_file(r, fp, mt.ctype);
    free(fp);
    if (rc != PV_OK)
        pv_http_respond_status(r, 404);
}

static void
upload_http(void *arg, pv_http_req_t *r)
{
    up_host_t *uh = arg;
    const char *method = pv_http_req_method(r), *name;
    char id[ID_LEN + 1];

    if (uh->is_dead) {
        pv_http_respond_status(r, 503);
        return;
    }
    if (split_path(uh, pv_http_req_path(r), id, &name) != 0) {
        pv_http_respond_status(r, strcmp(method, "PUT") == 0 ? 403 : 404);
        return;
    }
    if (strcmp(method, "PUT") == 0)
        upload_put(uh, r, id, name);
    else
        upload_get(uh, r, id, name);
}

/* ---- slots -------------------------------------------------------------- */

typedef struct up_slot_s {
    up_host_t *uh;
    pv_stanza_t *reply;
} up_slot_t;

static void
slot_committed(void *arg, int rc)
{
    up_slot_t *s = arg;

    if (!s->uh->is_dead) {
        if (rc == PV_OK) {
            pv_host_route(s->uh->h, s->reply);
        } else {
            pv_log(PV_LOG_ERROR, "http_upload", "cannot store a slot");
        }
    }
    pv_stanza_unref(s->reply);
    uh_unref(s->uh);
    free(s);
}

typedef struct up_sum_s {
    uint64_t total;
} up_sum_t;

static int
sum_cb(const char *key, size_t key_len, const void *val, size_t val_len,
       void *arg)
{
    up_sum_t *s = arg;
    char buf[24];
    uint64_t v;

    (void)key;
    (void)key_len;
    if (val_len == 0 || val_len >= sizeof(buf))
        return 0;
    memcpy(buf, val, val_len);
    buf[val_len] = '\0';
    if (parse_u64(buf, &v) == 0)
        s->total += v;
    return 0;
}

/* The URL files are served under: http_upload_url, else the https
 * listener of this server with our domain. */
static void
base_url(up_host_t *uh, pv_buf_t *b)
{
    pv_server_t *srv = pv_host_server(uh->h);
    int port;

    if (uh->conf->url != NULL) {
        pv_buf_puts(b, uh->conf->url);
        if (b->len == 0 || b->data[b->len - 1] != '/')
            pv_buf_puts(b, "/");
        return;
    }
    port = pv_http_port(srv, 1);
    if (port != 0 || pv_http_port(srv, 0) == 0)
        pv_buf_printf(b, "https://%s:%d%s", uh->domain,
                      port ? port : 5281, uh->prefix);
    else
        pv_buf_printf(b, "http://%s:%d%s", uh->domain, pv_http_port(srv, 0),
                      uh->prefix);
}

/* True when jid is an account of the vhost this component serves. */
typedef struct up_parent_s {
    const char *domain;
    int found;
} up_parent_t;

static void
parent_cb(void *arg, const char *domain)
{
    up_parent_t *pp = arg;

    if (strcmp(domain, pp->domain) == 0)
        pp->found = 1;
}

static int
is_parent(up_host_t *uh, const char *vhost)
{
    pv_host_t *vh = pv_host_find(pv_host_server(uh->h), vhost);
    up_parent_t pp = { uh->domain, 0 };

    if (vh == NULL || vh == uh->h)
        return 0;
    pv_host_each_component(vh, parent_cb, &pp);
    return pp.found;
}

static void
error_too_large(pv_event_t *ev, size_t max)
{
    pv_stanza_t *st = pv_stanza_error(ev->stanza, PV_ERR_MODIFY,
                                      "not-acceptable", "File too large");
    pv_node_t *err, *ftl, *mx;
    char num[24];

    if (st == NULL)
        return;
    err = pv_node_child(st->root, "error", NULL);
    if (err != NULL) {
        ftl = pv_node_new(st->arena, "file-too-large", NS_UPLOAD, err);
        mx = pv_node_new(st->arena, "max-file-size", NS_UPLOAD, ftl);
        snprintf(num, sizeof(num), "%zu", max);
        pv_node_add_text(st->arena, mx, num, strlen(num));
    }
    pv_event_reply(ev, st);
}

static pv_rc_t
slot_request(pv_event_t *ev)
{
    up_host_t *uh = pv_module_host_data(ev->module, ev->host);
    const pv_node_t *q = ev->payload;
    const char *fname = pv_node_attr(q, "filename");
    const char *ssize = pv_node_attr(q, "size");
    const char *ctype = pv_node_attr(q, "content-type");
    uint8_t rnd[ID_BYTES];
    char id[ID_LEN + 1], mac[65];
    up_meta_t mt;
    up_sum_t sum = {0};
    uint64_t size;
    pv_buf_t b = {0}, url = {0};
    pv_stanza_t *st;
    pv_node_t *slot, *put, *get;
    size_t get_len;
    up_slot_t *s;

    if (uh == NULL)
        return PV_PASS;
    /* only accounts of our vhost, on their own sessions */
    if (ev->origin == NULL || ev->from == NULL || ev->from->node == NULL ||
        !is_parent(uh, ev->from->domain)) {
        pv_event_error(ev, PV_ERR_AUTH, "forbidden",
                       "Only local users may upload");
        return PV_HANDLED;
    }
    if (fname == NULL || *fname == '\0' || parse_u64(ssize, &size) != 0 ||
        size == 0 || (ctype != NULL && !valid_ctype(ctype))) {
        pv_event_error(ev, PV_ERR_MODIFY, "bad-request",
                       "filename, size and a valid content-type needed");
        return PV_HANDLED;
    }
    if (uh->conf->max_size != PV_SIZE_OFF && size > uh->conf->max_size) {
        error_too_large(ev, uh->conf->max_size);
        return PV_HANDLED;
    }
    if (strlen(ev->from->node) >= sizeof(mt.owner)) {
        pv_event_error(ev, PV_ERR_MODIFY, "bad-request", NULL);
        return PV_HANDLED;
    }
    if (uh->conf->quota != PV_SIZE_OFF) {
        pv_store_map_each(uh->owners, uh->domain, ev->from->node, sum_cb,
                          &sum);
        if (sum.total + size > uh->conf->quota || sum.total + size < size) {
            pv_event_error(ev, PV_ERR_WAIT, "resource-constraint",
                           "Upload quota exceeded");
            return PV_HANDLED;
        }
    }
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        pv_event_error(ev, PV_ERR_WAIT, "internal-server-error", NULL);
        return PV_HANDLED;
    }
    hex(rnd, sizeof(rnd), id);
    memset(&mt, 0, sizeof(mt));
    mt.state = 'P';
    strcpy(mt.owner, ev->from->node);
    mt.size = size;
    snprintf(mt.ctype, sizeof(mt.ctype), "%s",
             ctype != NULL ? ctype : DEFAULT_CTYPE);
    mt.created = now_s();
    mt.expires = mt.created + (uh->conf->slot_timeout / 1000);
    sanitize_name(fname, mt.name, NAME_MAX_BYTES + 1);
    token_mac(uh, id, &mt, mt.expires, mac);

    st = pv_iq_result(ev->stanza);
    slot = pv_node_new(st->arena, "slot", NS_UPLOAD, st->root);
    base_url(uh, &url);
    pv_buf_printf(&url, "%s/", id);
    url_encode(&url, mt.name);
    get_len = url.len;
    pv_buf_printf(&url, "?token=%llu-%s", (unsigned long long)mt.expires,
                  mac);
    put = pv_node_new(st->arena, "put", NS_UPLOAD, slot);
    pv_node_set_attr(st->arena, put, "url", url.data);
    url.data[get_len] = '\0';
    get = pv_node_new(st->arena, "get", NS_UPLOAD, slot);
    pv_node_set_attr(st->arena, get, "url", url.data);
    pv_buf_free(&url);

    meta_encode(&mt, &b);
    s = pv_xcalloc(1, sizeof(*s));
    s->uh = uh;
    uh->refs++;
    s->reply = st;
    {
        char num[24];

        snprintf(num, sizeof(num), "%llu", (unsigned long long)size);
        pv_store_put(uh->owners, uh->domain, mt.owner, id, num, strlen(num),
                     NULL, NULL);
    }
    /* the slot goes out once its row is durable: a PUT right after the
     * answer finds it */
    if (pv_store_put(uh->files, uh->domain, "", id, b.data, b.len,
                     slot_committed, s) != PV_OK) {
        pv_stanza_unref(st);
        uh_unref(uh);
        free(s);
        pv_event_error(ev, PV_ERR_WAIT, "internal-server-error", NULL);
    }
    pv_buf_free(&b);
    return PV_HANDLED;
}

/* ---- disco -------------------------------------------------------------- */

static void
add_field(pv_stanza_t *st, pv_node_t *x, const char *var, const char *type,
          const char *value)
{
    pv_node_t *f = pv_node_new(st->arena, "field", NS_DATA, x);
    pv_node_t *v;

    pv_node_set_attr(st->arena, f, "var", var);
    if (type != NULL)
        pv_node_set_attr(st->arena, f, "type", type);
    v = pv_node_new(st->arena, "value", NS_DATA, f);
    pv_node_add_text(st->arena, v, value, strlen(value));
}

static pv_rc_t
disco_info(pv_event_t *ev)
{
    up_host_t *uh = pv_module_host_data(ev->module, ev->host);
    pv_stanza_t *st;
    pv_node_t *q, *n;

    if (uh == NULL)
        return PV_PASS;
    if (pv_node_attr(ev->payload, "node") != NULL) {
        pv_event_error(ev, PV_ERR_CANCEL, "item-not-found", NULL);
        return PV_HANDLED;
    }
    st = pv_iq_result(ev->stanza);
    q = pv_node_new(st->arena, "query", NS_DISCO_INFO, st->root);
    n = pv_node_new(st->arena, "identity", NS_DISCO_INFO, q);
    pv_node_set_attr(st->arena, n, "category", "store");
    pv_node_set_attr(st->arena, n, "type", "file");
    pv_node_set_attr(st->arena, n, "name", "HTTP File Upload");
    n = pv_node_new(st->arena, "feature", NS_DISCO_INFO, q);
    pv_node_set_attr(st->arena, n, "var", NS_DISCO_INFO);
    n = pv_node_new(st->arena, "feature", NS_DISCO_INFO, q);
    pv_node_set_attr(st->arena, n, "var", NS_UPLOAD);
    /* XEP-0363 §3: the limit as a XEP-0128 form */
    if (uh->conf->max_size != PV_SIZE_OFF) {
        char num[24];
        pv_node_t *x = pv_node_new(st->arena, "x", NS_DATA, q);

        pv_node_set_attr(st->arena, x, "type", "result");
        add_field(st, x, "FORM_TYPE", "hidden", NS_UPLOAD);
        snprintf(num, sizeof(num), "%zu", uh->conf->max_size);
        add_field(st, x, "max-file-size", NULL, num);
    }
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

static pv_rc_t
disco_items(pv_event_t *ev)
{
    pv_stanza_t *st = pv_iq_result(ev->stanza);

    pv_node_new(st->arena, "query", NS_DISCO_ITEMS, st->root);
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

/* ---- expiry and accounts ------------------------------------------------ */

typedef struct up_scan_s {
    up_host_t *uh;
    uint64_t now;
    char **ids;
    char **owners;
    size_t n;
    const char *only_owner;         /* account deletion */
} up_scan_t;

static int
scan_cb(const char *key, size_t key_len, const void *val, size_t val_len,
        void *arg)
{
    up_scan_t *sc = arg;
    up_meta_t mt;
    int old;

    if (!is_slot_id(key, key_len) || meta_decode(val, val_len, &mt) != 0)
        return 0;
    if (sc->only_owner != NULL) {
        old = strcmp(mt.owner, sc->only_owner) == 0;
    } else if (mt.state == 'D') {
        old = sc->uh->conf->expire != PV_DURATION_OFF &&
              mt.created + sc->uh->conf->expire / 1000 <= sc->now;
    } else {
        /* a slot never used: gone some time after its token expired */
        old = mt.expires + 3600 <= sc->now && put_find(sc->uh, key) == NULL;
    }
    if (!old)
        return 0;
    sc->ids = pv_xrealloc(sc->ids, (sc->n + 1) * sizeof(char *));
    sc->owners = pv_xrealloc(sc->owners, (sc->n + 1) * sizeof(char *));
    sc->ids[sc->n] = pv_xstrdup(key);
    sc->owners[sc->n] = pv_xstrdup(mt.owner);
    sc->n++;
    return 0;
}

static void
scan_remove(up_scan_t *sc)
{
    size_t i;

    for (i = 0; i < sc->n; i++) {
        pv_log(PV_LOG_DEBUG, "http_upload", "%s: removing %s of %s",
               sc->uh->domain, sc->ids[i], sc->owners[i]);
        slot_remove(sc->uh, sc->ids[i], sc->owners[i]);
        free(sc->ids[i]);
        free(sc->owners[i]);
    }
    free(sc->ids);
    free(sc->owners);
}

static void
expire_tick(void *arg)
{
    up_host_t *uh = arg;
    up_scan_t sc;

    memset(&sc, 0, sizeof(sc));
    sc.uh = uh;
    sc.now = now_s();
    pv_store_map_each(uh->files, uh->domain, "", scan_cb, &sc);
    scan_remove(&sc);
}

static pv_rc_t
user_deleting(pv_event_t *ev)
{
    up_host_t *uh = pv_module_host_data(ev->module, ev->host);
    up_scan_t sc;
    up_put_t *p;

    if (uh == NULL || ev->user == NULL || ev->data == NULL ||
        !is_parent(uh, ev->data))
        return PV_PASS;
    memset(&sc, 0, sizeof(sc));
    sc.uh = uh;
    sc.now = now_s();
    sc.only_owner = ev->user;
    pv_store_map_each(uh->files, uh->domain, "", scan_cb, &sc);
    pv_log(PV_LOG_INFO, "http_upload", "%s: removing %zu file(s) of %s",
           uh->domain, sc.n, ev->user);
    scan_remove(&sc);
    /* uploads in progress of the account are refused at completion */
    for (p = uh->puts; p != NULL; p = p->next)
        if (strcmp(p->meta.owner, ev->user) == 0)
            p->meta.size = UINT64_MAX;
    return PV_PASS;
}

/* ---- host lifecycle ----------------------------------------------------- */

/* The route prefix: the path of http_upload_url, else "/upload/". */
static char *
url_prefix(const char *url)
{
    const char *p;
    size_t n;

    if (url == NULL || (p = strstr(url, "://")) == NULL ||
        (p = strchr(p + 3, '/')) == NULL)
        return pv_xstrdup("/upload/");
    n = strcspn(p, "?#");
    if (n > 0 && p[n - 1] == '/')
        return pv_xstrndup(p, n);
    return pv_xasprintf("%.*s/", (int)n, p);
}

static void
secret_stored(void *arg, int rc)
{
    up_host_t *uh = arg;

    if (rc == PV_AGAIN && !uh->is_dead) {
        /* someone was first: theirs is the one */
        void *v;
        size_t len;

        if (pv_store_get(uh->secret_store, uh->domain, "", NULL, &v, &len)
            == PV_OK) {
            if (len == SECRET_LEN)
                memcpy(uh->secret, v, SECRET_LEN);
            free(v);
        }
    }
    uh_unref(uh);
}

static int
load_secret(up_host_t *uh)
{
    void *v;
    size_t len;
    int rc = pv_store_get(uh->secret_store, uh->domain, "", NULL, &v, &len);

    if (rc == PV_OK && len == SECRET_LEN) {
        memcpy(uh->secret, v, SECRET_LEN);
        free(v);
        return PV_OK;
    }
    if (rc == PV_OK)
        free(v);
    /* first start: a new secret, kept so tokens survive restarts */
    if (RAND_bytes(uh->secret, SECRET_LEN) != 1)
        return PV_ERROR;
    uh->refs++;
    if (pv_store_put_if_absent(uh->secret_store, uh->domain, "", NULL,
                               uh->secret, SECRET_LEN, secret_stored, uh)
        != PV_OK) {
        uh->refs--;
        return PV_ERROR;
    }
    return PV_OK;
}

static int
up_host_init(pv_module_t *m, pv_host_t *h)
{
    const up_conf_t *conf = pv_module_conf(m, h);
    pv_server_t *srv = pv_host_server(h);
    up_host_t *uh = pv_xcalloc(1, sizeof(*uh));
    uint64_t every;

    uh->refs = 1;
    uh->m = m;
    uh->h = h;
    uh->conf = conf;
    uh->domain = pv_xstrdup(pv_host_name(h));
    uh->files = pv_store_open(h, m, "files", PV_STORE_MAP);
    uh->owners = pv_store_open(h, m, "owners", PV_STORE_MAP);
    uh->secret_store = pv_store_open(h, m, "secret", PV_STORE_KEYVAL);
    if (conf->path != NULL)
        uh->dir = pv_xstrdup(conf->path);
    else
        uh->dir = pv_xasprintf("%s/upload", pv_http_data_dir(srv));
    uh->prefix = url_prefix(conf->url);
    if (uh->files == NULL || uh->owners == NULL || uh->secret_store == NULL ||
        load_secret(uh) != PV_OK) {
        pv_log(PV_LOG_ERROR, "http_upload", "%s: cannot open the stores",
               uh->domain);
        uh_unref(uh);
        return PV_ERROR;
    }
    if (mkdir(uh->dir, 0700) != 0 && errno != EEXIST) {
        pv_log_errno("http_upload", "cannot create %s", uh->dir);
        uh->is_dead = 1;
        uh_unref(uh);
        return PV_ERROR;
    }
    pv_module_set_host_data(m, h, uh);
    pv_http_register(h, uh->prefix, "GET PUT", PV_HTTP_CORS | PV_HTTP_STREAM,
                     upload_http, uh);
    /* sweep at half the retention (bounded), so files live at most
     * 1.5 times http_upload_expire */
    every = conf->expire == PV_DURATION_OFF ? 3600000 : conf->expire / 2;
    if (every < 1000)
        every = 1000;
    if (every > 3600000)
        every = 3600000;
    pv_module_timer(m, h, every, every, expire_tick, uh);
    return PV_OK;
}

static void
up_host_fini(pv_module_t *m, pv_host_t *h)
{
    up_host_t *uh = pv_module_host_data(m, h);

    if (uh == NULL)
        return;
    uh->is_dead = 1;
    /* ends uploads in flight: their gone callbacks free them */
    pv_http_unregister(h, uh);
    pv_module_set_host_data(m, h, NULL);
    uh_unref(uh);
}

static const pv_hook_t up_hooks[] = {
    { PV_IQ_GET, PV_TO_HOST, NS_UPLOAD, "request", slot_request, 0, 0 },
    { PV_IQ_GET, PV_TO_HOST, NS_DISCO_INFO, "query", disco_info, 0, 0 },
    { PV_IQ_GET, PV_TO_HOST, NS_DISCO_ITEMS, "query", disco_items, 0, 0 },
    { PV_EV_USER_DELETING, PV_TO_ANY, NULL, NULL, user_deleting, 0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t up_directives[] = {
    { "http_upload_domain", PV_CTX_ANY, pv_conf_string,
      offsetof(up_conf_t, domain), "", 0, 0, NULL },
    { "http_upload_max_size", PV_CTX_ANY, pv_conf_size,
      offsetof(up_conf_t, max_size), "100M", 0, 0, NULL },
    { "http_upload_quota", PV_CTX_ANY, pv_conf_size,
      offsetof(up_conf_t, quota), "1G", 0, 0, NULL },
    { "http_upload_expire", PV_CTX_ANY, pv_conf_duration,
      offsetof(up_conf_t, expire), "30d", 1000, 0, NULL },
    { "http_upload_slot_timeout", PV_CTX_ANY, pv_conf_duration,
      offsetof(up_conf_t, slot_timeout), "5m", 1000, 0, NULL },
    { "http_upload_url", PV_CTX_ANY, pv_conf_string,
      offsetof(up_conf_t, url), "", 0, 0, NULL },
    { "http_upload_path", PV_CTX_ANY, pv_conf_path,
      offsetof(up_conf_t, path), "", 0, 0, NULL },
    PV_DIRECTIVES_END
};

static const char *const up_features[] = { NS_UPLOAD, NULL };

static const pv_identity_t up_identities[] = {
    { "store", "file", "HTTP File Upload" },
    PV_IDENTITIES_END
};

PV_MODULE(http_upload) = {
    .abi = PV_MODULE_ABI,
    .name = "http_upload",
    .features = up_features,
    .identities = up_identities,
    .hooks = up_hooks,
    .directives = up_directives,
    .conf_size = sizeof(up_conf_t),
    .host_init = up_host_init,
    .host_fini = up_host_fini,
    .component = "upload",
};
