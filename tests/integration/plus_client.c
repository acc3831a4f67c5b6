/*
 * plus_client: a minimal XMPP client for the SCRAM-*-PLUS integration test.
 * It owns one connection (STARTTLS or direct TLS, OpenSSL), checks the
 * XEP-0440 channel-binding stream feature, authenticates with Palaver's own
 * SCRAM client (src/scram.h) over the chosen binding type, binds a resource
 * and exits 0. Not a general client: the server's output is read with
 * expat only as far as these few elements need.
 */

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <expat.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <palaver/mem.h>

#include "scram.h"

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SASL_CB "urn:xmpp:sasl-cb:0"
#define NS_CLIENT "jabber:client"
/* RFC 9266 §2 */
#define CB_EXPORTER_LABEL "EXPORTER-Channel-Binding"
#define CB_EXPORTER_LEN 32

#define MAX_NAMES 16

/* exit codes */
#define PC_OK 0
#define PC_AUTH_FAILED 1
#define PC_USAGE 2
#define PC_PROTOCOL 3

typedef struct pc_opts_s {
    const char *host;
    const char *port;
    const char *domain;
    const char *cafile;
    const char *user;
    const char *password;
    const char *mech;
    const char *cb_type;
    const char *expect_failure;
    int direct;
    int no_xep0440;
    int corrupt_cb;
    int tls12;
    int verbose;
} pc_opts_t;

/* One complete top-level element of the server's stream, flattened to
 * what the exchange needs. */
typedef struct pc_elem_s {
    char name[64];
    char ns[128];
    char *text; /* text of the element itself (base64) */
    char *jid;  /* <bind><jid> */
    char *mechs[MAX_NAMES];
    size_t n_mechs;
    char *cbs[MAX_NAMES];
    size_t n_cbs;
    int has_starttls;
    int has_bind;
    char cond[64]; /* first child of <failure/>/<stream:error/> */
} pc_elem_t;

typedef struct pc_conn_s {
    const pc_opts_t *o;
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    XML_Parser parser;
    int depth;
    int stream_open;
    int stream_closed;
    pc_elem_t cur;
    pv_buf_t text;  /* character data of the current leaf */
    char path2[64]; /* name of the current depth-2 child */
    char path3[64];
    pc_elem_t done[8]; /* completed elements, FIFO */
    size_t n_done;
    char fail_cond[64]; /* SASL condition of a refused exchange */
} pc_conn_t;

static void PV_PRINTF(1, 2) __attribute__((noreturn)) die(const char *fmt, ...)
{
    va_list ap;

    fputs("plus_client: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ERR_print_errors_fp(stderr);
    exit(PC_PROTOCOL);
}

static void
elem_clear(pc_elem_t *e)
{
    size_t i;

    free(e->text);
    free(e->jid);
    for (i = 0; i < e->n_mechs; i++)
        free(e->mechs[i]);
    for (i = 0; i < e->n_cbs; i++)
        free(e->cbs[i]);
    memset(e, 0, sizeof(*e));
}

/* expat with namespace processing gives "ns local" */
static void
split_name(const char *full, char *ns, size_t ns_len, char *local,
           size_t local_len)
{
    const char *sp = strchr(full, ' ');

    if (sp == NULL) {
        snprintf(ns, ns_len, "%s", "");
        snprintf(local, local_len, "%s", full);
    } else {
        snprintf(ns, ns_len, "%.*s", (int)(sp - full), full);
        snprintf(local, local_len, "%s", sp + 1);
    }
}

static void XMLCALL
on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    pc_conn_t *c = ud;
    char ns[128], local[64];
    int i;

    split_name(name, ns, sizeof(ns), local, sizeof(local));
    c->depth++;
    pv_buf_reset(&c->text);
    if (c->depth == 1) {
        c->stream_open = 1;
        return;
    }
    if (c->depth == 2) {
        elem_clear(&c->cur);
        snprintf(c->cur.name, sizeof(c->cur.name), "%s", local);
        snprintf(c->cur.ns, sizeof(c->cur.ns), "%s", ns);
        return;
    }
    if (c->depth == 3) {
        snprintf(c->path2, sizeof(c->path2), "%s", local);
        if (strcmp(local, "starttls") == 0 && strcmp(ns, NS_TLS) == 0)
            c->cur.has_starttls = 1;
        if (strcmp(local, "bind") == 0 && strcmp(ns, NS_BIND) == 0)
            c->cur.has_bind = 1;
        if (c->cur.cond[0] == '\0' && strcmp(local, "text") != 0 &&
            (strcmp(c->cur.name, "failure") == 0 ||
             strcmp(c->cur.name, "error") == 0))
            snprintf(c->cur.cond, sizeof(c->cur.cond), "%s", local);
        return;
    }
    if (c->depth == 4) {
        snprintf(c->path3, sizeof(c->path3), "%s", local);
        if (strcmp(local, "channel-binding") == 0 &&
            strcmp(ns, NS_SASL_CB) == 0 && c->cur.n_cbs < MAX_NAMES) {
            for (i = 0; attrs[i]; i += 2)
                if (strcmp(attrs[i], "type") == 0)
                    c->cur.cbs[c->cur.n_cbs++] = pv_xstrdup(attrs[i + 1]);
        }
        /* <iq><error><cond/></error></iq> */
        if (c->cur.cond[0] == '\0' && strcmp(c->path2, "error") == 0 &&
            strcmp(local, "text") != 0)
            snprintf(c->cur.cond, sizeof(c->cur.cond), "%s", local);
    }
}

static void XMLCALL
on_end(void *ud, const XML_Char *name)
{
    pc_conn_t *c = ud;
    char ns[128], local[64];

    split_name(name, ns, sizeof(ns), local, sizeof(local));
    if (c->depth == 4 && strcmp(local, "mechanism") == 0 &&
        strcmp(ns, NS_SASL) == 0 && c->cur.n_mechs < MAX_NAMES)
        c->cur.mechs[c->cur.n_mechs++] =
            pv_xstrdup(c->text.data ? c->text.data : "");
    if (c->depth == 4 && strcmp(local, "jid") == 0 && c->cur.jid == NULL)
        c->cur.jid = pv_xstrdup(c->text.data ? c->text.data : "");
    if (c->depth == 2) {
        c->cur.text = pv_xstrdup(c->text.data ? c->text.data : "");
        if (c->n_done == sizeof(c->done) / sizeof(c->done[0]))
            die("too many unread elements");
        c->done[c->n_done++] = c->cur;
        memset(&c->cur, 0, sizeof(c->cur));
    }
    if (c->depth == 1)
        c->stream_closed = 1;
    c->depth--;
    pv_buf_reset(&c->text);
}

static void XMLCALL
on_text(void *ud, const XML_Char *s, int len)
{
    pc_conn_t *c = ud;

    pv_buf_append(&c->text, s, (size_t)len);
}

static void
parser_reset(pc_conn_t *c)
{
    if (c->parser)
        XML_ParserFree(c->parser);
    c->parser = XML_ParserCreateNS(NULL, ' ');
    XML_SetUserData(c->parser, c);
    XML_SetElementHandler(c->parser, on_start, on_end);
    XML_SetCharacterDataHandler(c->parser, on_text);
    c->depth = 0;
    c->stream_open = 0;
    c->stream_closed = 0;
}

static void
send_str(pc_conn_t *c, const char *s)
{
    size_t len = strlen(s);

    if (c->o->verbose)
        fprintf(stderr, "SEND %s\n", s);
    if (c->ssl) {
        if (SSL_write(c->ssl, s, (int)len) <= 0)
            die("SSL_write failed");
    } else {
        while (len > 0) {
            ssize_t n = write(c->fd, s, len);

            if (n <= 0)
                die("write: %s", strerror(errno));
            s += n;
            len -= (size_t)n;
        }
    }
}

/* Next complete top-level element; dies on EOF or parse errors. */
static pc_elem_t
next_elem(pc_conn_t *c)
{
    char buf[8192];
    pc_elem_t e;

    while (c->n_done == 0) {
        int n;

        if (c->stream_closed)
            die("server closed the stream");
        n = c->ssl ? SSL_read(c->ssl, buf, sizeof(buf))
                   : (int)read(c->fd, buf, sizeof(buf));
        if (n <= 0)
            die("connection closed by server");
        if (c->o->verbose)
            fprintf(stderr, "RECV %.*s\n", n, buf);
        if (XML_Parse(c->parser, buf, n, 0) == XML_STATUS_ERROR)
            die("server XML: %s", XML_ErrorString(XML_GetErrorCode(c->parser)));
    }
    e = c->done[0];
    memmove(&c->done[0], &c->done[1], (c->n_done - 1) * sizeof(e));
    c->n_done--;
    return e;
}

static pc_elem_t
open_stream(pc_conn_t *c)
{
    char hdr[512];
    pc_elem_t e;

    parser_reset(c);
    snprintf(hdr, sizeof(hdr),
             "<?xml version='1.0'?><stream:stream xmlns='" NS_CLIENT "' "
             "xmlns:stream='" NS_STREAMS "' to='%s' version='1.0' "
             "xml:lang='en'>",
             c->o->domain);
    send_str(c, hdr);
    e = next_elem(c);
    if (strcmp(e.name, "features") != 0 || strcmp(e.ns, NS_STREAMS) != 0)
        die("expected <stream:features/>, got <%s/> (%s)", e.name, e.cond);
    return e;
}

static void
tls_start(pc_conn_t *c)
{
    static const unsigned char alpn[] = "\x0bxmpp-client";
    long vr;

    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    if (c->o->tls12)
        SSL_CTX_set_max_proto_version(c->ctx, TLS1_2_VERSION);
    if (SSL_CTX_load_verify_locations(c->ctx, c->o->cafile, NULL) != 1)
        die("cannot load CA %s", c->o->cafile);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, c->o->domain);
    SSL_set1_host(c->ssl, c->o->domain);
    SSL_set_alpn_protos(c->ssl, alpn, sizeof(alpn) - 1);
    if (SSL_connect(c->ssl) != 1)
        die("TLS handshake failed");
    vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK)
        die("certificate: %s", X509_verify_cert_error_string(vr));
    if (c->o->verbose)
        fprintf(stderr, "TLS %s\n", SSL_get_version(c->ssl));
}

/* RFC 5929 §3 / RFC 9266 §2 / RFC 5929 §4: the client side of each type */
static size_t
cb_data(pc_conn_t *c, const char *type, unsigned char *out, size_t cap)
{
    if (strcmp(type, "tls-unique") == 0) {
        /* the first Finished of the handshake: ours on a full handshake */
        return SSL_get_finished(c->ssl, out, cap);
    }
    if (strcmp(type, "tls-exporter") == 0) {
        if (cap < CB_EXPORTER_LEN ||
            SSL_export_keying_material(
                c->ssl, out, CB_EXPORTER_LEN, CB_EXPORTER_LABEL,
                strlen(CB_EXPORTER_LABEL), NULL, 0, 0) != 1)
            return 0;
        return CB_EXPORTER_LEN;
    }
    if (strcmp(type, "tls-server-end-point") == 0) {
        X509 *cert = SSL_get0_peer_certificate(c->ssl);
        int mdnid = NID_undef;
        const EVP_MD *md;
        unsigned int n = 0;

        /* hash of the certificate with its signature's digest; MD5 and
         * SHA-1 become SHA-256 */
        if (cert == NULL ||
            X509_get_signature_info(cert, &mdnid, NULL, NULL, NULL) != 1)
            return 0;
        if (mdnid == NID_md5 || mdnid == NID_sha1 || mdnid == NID_undef)
            mdnid = NID_sha256;
        md = EVP_get_digestbynid(mdnid);
        if (md == NULL || (size_t)EVP_MD_get_size(md) > cap ||
            X509_digest(cert, md, out, &n) != 1)
            return 0;
        return n;
    }
    return 0;
}

static int
has_name(char *const *list, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return 1;
    return 0;
}

static void
tcp_connect(pc_conn_t *c)
{
    struct addrinfo hints, *res = NULL, *ai;
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(c->o->host, c->o->port, &hints, &res);
    if (rc != 0)
        die("%s: %s", c->o->host, gai_strerror(rc));
    c->fd = -1;
    for (ai = res; ai && c->fd < 0; ai = ai->ai_next) {
        c->fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (c->fd >= 0 && connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            close(c->fd);
            c->fd = -1;
        }
    }
    freeaddrinfo(res);
    if (c->fd < 0)
        die("cannot connect to %s:%s", c->o->host, c->o->port);
}

/* Returns the exit code. */
static int
authenticate(pc_conn_t *c, pc_elem_t *features)
{
    const char *mechs[MAX_NAMES + 1], *cbs[MAX_NAMES + 1];
    unsigned char cb[EVP_MAX_MD_SIZE + 64];
    size_t cb_len, i, len;
    pv_scram_hash_t h;
    pv_scram_client_t *sc;
    const char *msg;
    char *b64, *xml;
    uint8_t *dec;
    pc_elem_t e;
    int rc = PC_OK;

    if (strncmp(c->o->mech, "SCRAM-SHA-1-", 12) == 0)
        h = PV_SCRAM_SHA1;
    else if (strncmp(c->o->mech, "SCRAM-SHA-256-", 14) == 0)
        h = PV_SCRAM_SHA256;
    else
        die("unsupported mechanism %s (want SCRAM-SHA-{1,256}-PLUS)",
            c->o->mech);
    if (!has_name(features->mechs, features->n_mechs, c->o->mech))
        die("server does not offer %s", c->o->mech);
    /* XEP-0440 §4: the types the server supports on this connection */
    if (!c->o->no_xep0440 &&
        !has_name(features->cbs, features->n_cbs, c->o->cb_type))
        die("<sasl-channel-binding/> does not list %s (%zu types listed)",
            c->o->cb_type, features->n_cbs);
    cb_len = cb_data(c, c->o->cb_type, cb, sizeof(cb));
    if (cb_len == 0)
        die("cannot compute %s binding data", c->o->cb_type);
    if (c->o->corrupt_cb)
        cb[0] ^= 0x01;
    sc = pv_scram_client_new(h, c->o->user, c->o->password, c->o->cb_type, cb,
                             cb_len);
    if (sc == NULL)
        die("pv_scram_client_new refused the arguments");
    for (i = 0; i < features->n_mechs; i++)
        mechs[i] = features->mechs[i];
    mechs[features->n_mechs] = NULL;
    for (i = 0; i < features->n_cbs; i++)
        cbs[i] = features->cbs[i];
    cbs[features->n_cbs] = NULL;
    pv_scram_client_set_advertised(sc, mechs, cbs);

    msg = pv_scram_client_first(sc, &len);
    if (msg == NULL)
        die("client-first failed");
    b64 = pv_base64_encode(msg, len, NULL);
    xml = pv_xasprintf("<auth xmlns='" NS_SASL "' mechanism='%s'>%s</auth>",
                       c->o->mech, b64);
    send_str(c, xml);
    free(b64);
    free(xml);

    e = next_elem(c);
    if (strcmp(e.name, "challenge") != 0)
        goto failed;
    dec = pv_base64_decode(e.text, strlen(e.text), &len);
    if (dec == NULL)
        die("challenge is not base64");
    if (pv_scram_client_server_first(sc, (const char *)dec, len) != PV_OK)
        die("server-first refused: %s", pv_scram_client_error(sc));
    free(dec);
    elem_clear(&e);
    msg = pv_scram_client_final(sc, &len);
    b64 = pv_base64_encode(msg, len, NULL);
    xml = pv_xasprintf("<response xmlns='" NS_SASL "'>%s</response>", b64);
    send_str(c, xml);
    free(b64);
    free(xml);

    e = next_elem(c);
    if (strcmp(e.name, "success") != 0)
        goto failed;
    dec = pv_base64_decode(e.text, strlen(e.text), &len);
    if (dec == NULL ||
        pv_scram_client_server_final(sc, (const char *)dec, len) != PV_OK)
        die("server-final does not verify: %s", pv_scram_client_error(sc));
    free(dec);
    if (c->o->verbose)
        fprintf(stderr, "XEP-0474 h= verified: %d\n",
                pv_scram_client_ssdp_verified(sc));
    elem_clear(&e);
    pv_scram_client_free(sc);
    return PC_OK;

failed:
    if (strcmp(e.name, "failure") == 0) {
        printf("auth failed: %s\n", e.cond[0] ? e.cond : "(no condition)");
        snprintf(c->fail_cond, sizeof(c->fail_cond), "%s", e.cond);
        rc = PC_AUTH_FAILED;
    } else {
        printf("unexpected <%s xmlns='%s'/> (%s)\n", e.name, e.ns, e.cond);
        rc = PC_PROTOCOL;
    }
    elem_clear(&e);
    pv_scram_client_free(sc);
    return rc;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: plus_client --host H --port P --domain D --cafile F\n"
               "         --user U --password PW --mech SCRAM-SHA-256-PLUS\n"
               "         --cb tls-unique|tls-server-end-point|tls-exporter\n"
               "         [--direct] [--tls12] [--corrupt-cb] [--no-xep0440]\n"
               "         [--expect-failure COND] [--verbose]\n"
               "--no-xep0440 skips the channel-binding feature check (for\n"
               "servers without XEP-0440, e.g. to validate this client)\n"
               "exit: 0 logged in and bound (or refused with COND as\n"
               "expected), 1 authentication refused, 2 usage, 3 protocol\n");
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"domain", required_argument, NULL, 'd'},
        {"cafile", required_argument, NULL, 'c'},
        {"user", required_argument, NULL, 'u'},
        {"password", required_argument, NULL, 'w'},
        {"mech", required_argument, NULL, 'm'},
        {"cb", required_argument, NULL, 'b'},
        {"direct", no_argument, NULL, 'D'},
        {"tls12", no_argument, NULL, '2'},
        {"no-xep0440", no_argument, NULL, 'n'},
        {"corrupt-cb", no_argument, NULL, 'x'},
        {"expect-failure", required_argument, NULL, 'e'},
        {"verbose", no_argument, NULL, 'v'},
        {NULL, 0, NULL, 0}};
    pc_opts_t o;
    pc_conn_t c;
    pc_elem_t f, e;
    int opt, rc;

    memset(&o, 0, sizeof(o));
    o.host = "127.0.0.1";
    o.domain = "localhost";
    while ((opt = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
        switch (opt) {
        case 'H': o.host = optarg; break;
        case 'p': o.port = optarg; break;
        case 'd': o.domain = optarg; break;
        case 'c': o.cafile = optarg; break;
        case 'u': o.user = optarg; break;
        case 'w': o.password = optarg; break;
        case 'm': o.mech = optarg; break;
        case 'b': o.cb_type = optarg; break;
        case 'D': o.direct = 1; break;
        case '2': o.tls12 = 1; break;
        case 'n': o.no_xep0440 = 1; break;
        case 'x': o.corrupt_cb = 1; break;
        case 'e': o.expect_failure = optarg; break;
        case 'v': o.verbose = 1; break;
        default: usage(stderr); return PC_USAGE;
        }
    }
    if (!o.port || !o.cafile || !o.user || !o.password || !o.mech ||
        !o.cb_type) {
        usage(stderr);
        return PC_USAGE;
    }

    memset(&c, 0, sizeof(c));
    c.o = &o;
    tcp_connect(&c);
    if (o.direct)
        tls_start(&c);
    f = open_stream(&c);
    if (!o.direct) {
        if (!f.has_starttls)
            die("no <starttls/> offered");
        elem_clear(&f);
        send_str(&c, "<starttls xmlns='" NS_TLS "'/>");
        e = next_elem(&c);
        if (strcmp(e.name, "proceed") != 0)
            die("expected <proceed/>, got <%s/>", e.name);
        elem_clear(&e);
        tls_start(&c);
        f = open_stream(&c);
    }
    rc = authenticate(&c, &f);
    elem_clear(&f);
    if (o.expect_failure) {
        /* the refusal is the success of this run */
        if (rc == PC_AUTH_FAILED && strcmp(c.fail_cond, o.expect_failure) == 0)
            rc = PC_OK;
        else if (rc == PC_AUTH_FAILED)
            printf("refused with %s, expected %s\n", c.fail_cond,
                   o.expect_failure);
        else if (rc == PC_OK) {
            printf("logged in although %s was expected\n", o.expect_failure);
            rc = PC_AUTH_FAILED;
        }
    } else if (rc == PC_OK) {
        f = open_stream(&c);
        if (!f.has_bind)
            die("no <bind/> after authentication");
        elem_clear(&f);
        send_str(&c, "<iq type='set' id='b1'><bind xmlns='" NS_BIND
                     "'><resource>plus</resource></bind></iq>");
        e = next_elem(&c);
        if (strcmp(e.name, "iq") != 0 || e.jid == NULL)
            die("bind failed (%s)", e.cond);
        printf("bound %s with %s over %s (%s)\n", e.jid, o.mech, o.cb_type,
               SSL_get_version(c.ssl));
        elem_clear(&e);
        send_str(&c, "</stream:stream>");
    }
    while (c.n_done)
        elem_clear(&c.done[--c.n_done]);
    elem_clear(&c.cur);
    pv_buf_free(&c.text);
    if (c.parser)
        XML_ParserFree(c.parser);
    if (c.ssl) {
        SSL_shutdown(c.ssl);
        SSL_free(c.ssl);
    }
    SSL_CTX_free(c.ctx);
    close(c.fd);
    return rc;
}
