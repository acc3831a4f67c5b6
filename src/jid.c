/* src/jid.c: XMPP addresses (RFC 7622). Owns the PRECIS string classes and
 * the UsernameCaseMapped and OpaqueString profiles (RFC 8264, RFC 8265) on
 * libunistring, IDNA2008 domainparts on libidn2, and the one-block
 * pv_jid_t layout. Printable ASCII takes a fast path that calls neither
 * library. XEP-0106 escaping and routing decisions live elsewhere. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <idn2.h>
#include <unicase.h>
#include <unictype.h>
#include <unigbrk.h>
#include <uninorm.h>
#include <unistr.h>

#include <palaver/jid.h>

/* Input bound per part before preparation. Width mapping and NFC can
 * shrink a string to a third (U+FF21 -> 'a', Hangul L V T -> one
 * syllable), so 4x the prepared limit never refuses a valid part, and it
 * caps the work a hostile peer can ask for. */
#define PART_RAW_MAX (4 * PV_JID_PART_MAX)

/* RFC 1035 §2.3.4 limits, applied to the A-label form. */
#define DNS_LABEL_MAX 63
#define DNS_NAME_MAX 253

/* The byte before pv_jid_t.full says who owns the block, so that
 * pv_jid_clear() never frees arena memory. */
#define BLOCK_HEAP 'h'
#define BLOCK_ARENA 'a'

/* What a preparation produced: either a borrowed slice of the input (fast
 * path; copied, optionally ASCII-lowercased, into the jid block) or a
 * malloc'd prepared string. */
typedef struct part_s {
    const char *s;
    size_t len;
    char *owned;
    int lower;
} part_t;

/* ------------------------------------------------------------------ */
/* PRECIS derived property, RFC 8264 §8 and §9                         */

typedef enum {
    PRECIS_PVALID,
    PRECIS_FREE_PVAL, /* "ID_DIS or FREE_PVAL": FreeformClass only */
    PRECIS_CONTEXTJ,
    PRECIS_CONTEXTO,
    PRECIS_DISALLOWED,
    PRECIS_UNASSIGNED
} precis_prop_t;

/* The Exceptions category (F), RFC 5892 §2.6, which RFC 8264 §9.6 reuses.
 * Returns -1 for code points that are not exceptions. */
static int
precis_exception(ucs4_t c)
{
    switch (c) {
    case 0x00DF:
    case 0x03C2:
    case 0x06FD:
    case 0x06FE:
    case 0x0F0B:
    case 0x3007: return PRECIS_PVALID;
    case 0x00B7:
    case 0x0375:
    case 0x05F3:
    case 0x05F4:
    case 0x30FB: return PRECIS_CONTEXTO;
    case 0x0640:
    case 0x07FA:
    case 0x302E:
    case 0x302F:
    case 0x3031:
    case 0x3032:
    case 0x3033:
    case 0x3034:
    case 0x3035:
    case 0x303B: return PRECIS_DISALLOWED;
    default: break;
    }
    if ((c >= 0x0660 && c <= 0x0669) || (c >= 0x06F0 && c <= 0x06F9))
        return PRECIS_CONTEXTO;
    return -1;
}

/* HasCompat (Q): toNFKC(cp) != cp. Most code points have no decomposition
 * at all, and then NFKC leaves them alone, so normalise only the rest. */
static int
precis_has_compat(ucs4_t c)
{
    ucs4_t decomp[UC_DECOMPOSITION_MAX_LENGTH];
    uint32_t buf[32];
    uint32_t *r;
    size_t n = PV_COUNTOF(buf);
    int tag, same;

    if (uc_decomposition(c, &tag, decomp) < 0)
        return 0;
    r = u32_normalize(UNINORM_NFKC, &c, 1, buf, &n);
    if (r == NULL)
        return 1;
    same = n == 1 && r[0] == c;
    if (r != buf)
        free(r);
    return !same;
}

static precis_prop_t
precis_property(ucs4_t c)
{
    int exc = precis_exception(c);
    int gbp;

    if (exc >= 0)
        return (precis_prop_t)exc;
    /* BackwardCompatible (G) is empty in RFC 8264 §9.7. */
    if (uc_is_general_category(c, UC_CATEGORY_Cn) &&
        !uc_is_property_not_a_character(c))
        return PRECIS_UNASSIGNED;
    if (c >= 0x21 && c <= 0x7E)
        return PRECIS_PVALID;
    if (uc_is_property_join_control(c))
        return PRECIS_CONTEXTJ;
    /* OldHangulJamo (I) is Hangul_Syllable_Type L, V or T, which UAX #29
     * copies into Grapheme_Cluster_Break; libunistring exposes only the
     * latter. */
    gbp = uc_graphemeclusterbreak_property(c);
    if (gbp == GBP_L || gbp == GBP_V || gbp == GBP_T)
        return PRECIS_DISALLOWED;
    if (uc_is_property_default_ignorable_code_point(c) ||
        uc_is_property_not_a_character(c))
        return PRECIS_DISALLOWED;
    if (uc_is_general_category(c, UC_CATEGORY_Cc))
        return PRECIS_DISALLOWED;
    if (precis_has_compat(c))
        return PRECIS_FREE_PVAL;
    if ((uc_is_general_category(c, UC_CATEGORY_L) &&
         !uc_is_general_category(c, UC_CATEGORY_Lt)) ||
        uc_is_general_category(c, UC_CATEGORY_Nd) ||
        uc_is_general_category(c, UC_CATEGORY_Mn) ||
        uc_is_general_category(c, UC_CATEGORY_Mc))
        return PRECIS_PVALID;
    if (uc_is_general_category(c, UC_CATEGORY_Lt) ||
        uc_is_general_category(c, UC_CATEGORY_Nl) ||
        uc_is_general_category(c, UC_CATEGORY_No) ||
        uc_is_general_category(c, UC_CATEGORY_Me) ||
        uc_is_general_category(c, UC_CATEGORY_Zs) ||
        uc_is_general_category(c, UC_CATEGORY_S) ||
        uc_is_general_category(c, UC_CATEGORY_P))
        return PRECIS_FREE_PVAL;
    return PRECIS_DISALLOWED;
}

static int
is_script(ucs4_t c, const char *name)
{
    const uc_script_t *sc = uc_script(c);

    return sc != NULL && strcmp(sc->name, name) == 0;
}

static int
is_joining(ucs4_t c, int a, int b)
{
    int jt = uc_joining_type(c);

    return jt == a || jt == b;
}

/* CONTEXTJ rules, RFC 5892 Appendix A.1 and A.2. */
static int
precis_context_j(const uint32_t *s, size_t n, size_t i)
{
    size_t j, k;

    if (i > 0 && uc_combining_class(s[i - 1]) == UC_CCC_VR)
        return 1;
    if (s[i] != 0x200C)
        return 0;
    /* (Joining_Type:{L,D})(Joining_Type:T)*\u200C(Joining_Type:T)*
     * (Joining_Type:{R,D}) */
    for (j = i; j > 0 && uc_joining_type(s[j - 1]) == UC_JOINING_TYPE_T; j--)
        ;
    if (j == 0 || !is_joining(s[j - 1], UC_JOINING_TYPE_L, UC_JOINING_TYPE_D))
        return 0;
    for (k = i + 1; k < n && uc_joining_type(s[k]) == UC_JOINING_TYPE_T; k++)
        ;
    return k < n && is_joining(s[k], UC_JOINING_TYPE_R, UC_JOINING_TYPE_D);
}

/* CONTEXTO rules, RFC 5892 Appendix A.3 to A.9. */
static int
precis_context_o(const uint32_t *s, size_t n, size_t i)
{
    ucs4_t c = s[i];
    size_t j;

    if (c == 0x00B7)
        return i > 0 && i + 1 < n && s[i - 1] == 0x6C && s[i + 1] == 0x6C;
    if (c == 0x0375)
        return i + 1 < n && is_script(s[i + 1], "Greek");
    if (c == 0x05F3 || c == 0x05F4)
        return i > 0 && is_script(s[i - 1], "Hebrew");
    if (c == 0x30FB) {
        for (j = 0; j < n; j++)
            if (is_script(s[j], "Hiragana") || is_script(s[j], "Katakana") ||
                is_script(s[j], "Han"))
                return 1;
        return 0;
    }
    if (c >= 0x0660 && c <= 0x0669) {
        for (j = 0; j < n; j++)
            if (s[j] >= 0x06F0 && s[j] <= 0x06F9)
                return 0;
        return 1;
    }
    if (c >= 0x06F0 && c <= 0x06F9) {
        for (j = 0; j < n; j++)
            if (s[j] >= 0x0660 && s[j] <= 0x0669)
                return 0;
        return 1;
    }
    return 0;
}

/* Is every code point valid in IdentifierClass (freeform == 0) or
 * FreeformClass (RFC 8264 §4.2, §4.3)? */
static int
precis_class_ok(const uint32_t *s, size_t n, int freeform)
{
    size_t i;

    for (i = 0; i < n; i++) {
        switch (precis_property(s[i])) {
        case PRECIS_PVALID: break;
        case PRECIS_FREE_PVAL:
            if (!freeform)
                return 0;
            break;
        case PRECIS_CONTEXTJ:
            if (!precis_context_j(s, n, i))
                return 0;
            break;
        case PRECIS_CONTEXTO:
            if (!precis_context_o(s, n, i))
                return 0;
            break;
        default: return 0;
        }
    }
    return 1;
}

/* The Bidi Rule, RFC 5893 §2, which UsernameCaseMapped applies (RFC 8265
 * §3.3.1 rule 5). As in IDNA it only constrains strings that contain a
 * right-to-left code point (R, AL or AN). */
static int
precis_bidi_ok(const uint32_t *s, size_t n)
{
    int has_rtl = 0, has_en = 0, has_an = 0, rtl, b;
    size_t i, end;

    for (i = 0; i < n; i++) {
        b = uc_bidi_class(s[i]);
        if (b == UC_BIDI_R || b == UC_BIDI_AL || b == UC_BIDI_AN)
            has_rtl = 1;
    }
    if (!has_rtl)
        return 1;
    b = uc_bidi_class(s[0]);
    if (b != UC_BIDI_L && b != UC_BIDI_R && b != UC_BIDI_AL)
        return 0;
    rtl = b != UC_BIDI_L;
    for (i = 0; i < n; i++) {
        b = uc_bidi_class(s[i]);
        switch (b) {
        case UC_BIDI_EN: has_en = 1; break;
        case UC_BIDI_AN:
            if (!rtl)
                return 0;
            has_an = 1;
            break;
        case UC_BIDI_R:
        case UC_BIDI_AL:
            if (!rtl)
                return 0;
            break;
        case UC_BIDI_L:
            if (rtl)
                return 0;
            break;
        case UC_BIDI_ES:
        case UC_BIDI_CS:
        case UC_BIDI_ET:
        case UC_BIDI_ON:
        case UC_BIDI_BN:
        case UC_BIDI_NSM: break;
        default: return 0;
        }
    }
    if (has_en && has_an)
        return 0;
    for (end = n; end > 0 && uc_bidi_class(s[end - 1]) == UC_BIDI_NSM; end--)
        ;
    if (end == 0)
        return 0;
    b = uc_bidi_class(s[end - 1]);
    if (rtl)
        return b == UC_BIDI_R || b == UC_BIDI_AL || b == UC_BIDI_EN ||
               b == UC_BIDI_AN;
    return b == UC_BIDI_L || b == UC_BIDI_EN;
}

/* ------------------------------------------------------------------ */
/* Profiles on the slow path (non-ASCII input)                         */

static uint32_t *
utf8_decode(const char *in, size_t len, size_t *n)
{
    if (u8_check((const uint8_t *)in, len) != NULL)
        return NULL;
    return u8_to_u32((const uint8_t *)in, len, NULL, n);
}

/* Encodes to a malloc'd NUL-terminated UTF-8 string of *len octets. */
static char *
utf32_encode(const uint32_t *s, size_t n, size_t *len)
{
    size_t cap = n * 4;
    uint8_t *buf = pv_xmalloc(cap + 1);
    uint8_t *r;

    *len = cap;
    r = u32_to_u8(s, n, buf, len);
    if (r != buf) {
        /* cannot happen (4 octets per code point suffice); stay safe */
        free(r);
        free(buf);
        return NULL;
    }
    buf[*len] = '\0';
    return (char *)buf;
}

/* RFC 7622 §3.3.1: characters UsernameCaseMapped allows but a localpart
 * must not contain. */
static int
node_ascii_excluded(unsigned char c)
{
    switch (c) {
    case '"':
    case '&':
    case '\'':
    case '/':
    case ':':
    case '<':
    case '>':
    case '@': return 1;
    default: return 0;
    }
}

/* UsernameCaseMapped enforcement, RFC 8265 §3.3: width mapping, case
 * mapping with toLowerCase (not case folding, so 'ß' stays), NFC, then the
 * IdentifierClass, RFC 7622 §3.3.1 and Bidi checks. */
static char *
precis_username_casemapped(const char *in, size_t len, size_t max,
                           size_t *out_len)
{
    ucs4_t decomp[UC_DECOMPOSITION_MAX_LENGTH];
    uint32_t *a, *b;
    size_t n, m, i;
    char *r = NULL;
    int tag;

    a = utf8_decode(in, len, &n);
    if (a == NULL)
        return NULL;
    /* Width mapping: fullwidth and halfwidth forms to their decomposition
     * (UAX #11). Every such decomposition is a single code point. */
    for (i = 0; i < n; i++)
        if (a[i] >= 0x3000 && uc_decomposition(a[i], &tag, decomp) == 1 &&
            (tag == UC_DECOMP_WIDE || tag == UC_DECOMP_NARROW))
            a[i] = decomp[0];
    b = u32_tolower(a, n, NULL, UNINORM_NFC, NULL, &m);
    free(a);
    if (b == NULL)
        return NULL;
    if (m == 0 || !precis_class_ok(b, m, 0) || !precis_bidi_ok(b, m))
        goto out;
    for (i = 0; i < m; i++)
        if (b[i] < 0x80 && node_ascii_excluded((unsigned char)b[i]))
            goto out;
    r = utf32_encode(b, m, out_len);
    if (r != NULL && *out_len > max) {
        free(r);
        r = NULL;
    }
out:
    free(b);
    return r;
}

/* OpaqueString enforcement, RFC 8265 §4.2: non-ASCII spaces to U+0020,
 * NFC, then the FreeformClass check. No width or case mapping. */
static char *
precis_opaque_string(const char *in, size_t len, size_t max, size_t *out_len)
{
    uint32_t *a, *b;
    size_t n, m, i;
    char *r = NULL;

    a = utf8_decode(in, len, &n);
    if (a == NULL)
        return NULL;
    for (i = 0; i < n; i++)
        if (a[i] != 0x20 && uc_is_general_category(a[i], UC_CATEGORY_Zs))
            a[i] = 0x20;
    b = u32_normalize(UNINORM_NFC, a, n, NULL, &m);
    free(a);
    if (b == NULL)
        return NULL;
    if (m > 0 && precis_class_ok(b, m, 1)) {
        r = utf32_encode(b, m, out_len);
        if (r != NULL && *out_len > max) {
            free(r);
            r = NULL;
        }
    }
    free(b);
    return r;
}

/* ------------------------------------------------------------------ */
/* Parts                                                               */

static void
part_free(part_t *p)
{
    free(p->owned);
    memset(p, 0, sizeof(*p));
}

static int
part_own(part_t *p, char *s, size_t len)
{
    if (s == NULL)
        return -1;
    p->owned = s;
    p->s = s;
    p->len = len;
    p->lower = 0;
    return 0;
}

static int
prep_node(const char *in, size_t len, part_t *p)
{
    size_t i, out_len;
    char *r;

    if (len == 0 || len > PART_RAW_MAX)
        return -1;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c < 0x21 || c > 0x7E)
            break;
        /* No mapping turns these back into something valid. */
        if (node_ascii_excluded(c))
            return -1;
    }
    if (i == len) {
        /* Printable ASCII is PVALID, NFC-stable and LTR: lowercasing is
         * the whole profile. */
        if (len > PV_JID_PART_MAX)
            return -1;
        p->s = in;
        p->len = len;
        p->lower = 1;
        return 0;
    }
    r = precis_username_casemapped(in, len, PV_JID_PART_MAX, &out_len);
    return part_own(p, r, r != NULL ? out_len : 0);
}

static int
prep_resource(const char *in, size_t len, part_t *p)
{
    size_t i, out_len;
    char *r;

    if (len == 0 || len > PART_RAW_MAX)
        return -1;
    for (i = 0; i < len; i++)
        if ((unsigned char)in[i] < 0x20 || (unsigned char)in[i] > 0x7E)
            break;
    if (i == len) {
        if (len > PV_JID_PART_MAX)
            return -1;
        p->s = in;
        p->len = len;
        p->lower = 0;
        return 0;
    }
    r = precis_opaque_string(in, len, PV_JID_PART_MAX, &out_len);
    return part_own(p, r, r != NULL ? out_len : 0);
}

static int
ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Checks an ASCII name as NR-LDH labels and A-labels (RFC 5890 §2.3.1):
 * letters, digits and hyphens, no hyphen at either end, 1..63 octets per
 * label, 253 in all, and "--" in positions 3-4 only for "xn--". Returns
 * -1 when invalid, 1 when an A-label is present, else 0. */
static int
domain_ldh_check(const char *s, size_t len)
{
    size_t i, start = 0, l;
    int has_alabel = 0;

    if (len == 0 || len > DNS_NAME_MAX)
        return -1;
    for (i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') {
            int c = ascii_lower((unsigned char)s[i]);
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
                return -1;
            continue;
        }
        l = i - start;
        if (l == 0 || l > DNS_LABEL_MAX || s[start] == '-' || s[i - 1] == '-')
            return -1;
        if (l >= 4 && s[start + 2] == '-' && s[start + 3] == '-') {
            if (ascii_lower((unsigned char)s[start]) != 'x' ||
                ascii_lower((unsigned char)s[start + 1]) != 'n')
                return -1;
            has_alabel = 1;
        }
        start = i + 1;
    }
    return has_alabel;
}

/* IP literals (RFC 7622 §3.2: "[" IPv6 "]" or dotted-quad IPv4), stored in
 * their canonical text form (RFC 5952 for IPv6) so that equal addresses
 * compare equal. Returns 1 and fills *p when in is one, 0 when it is not
 * an IP literal, -1 when it looks like an IPv6 literal but is invalid. */
static int
prep_ip_literal(const char *in, size_t len, part_t *p)
{
    char tmp[INET6_ADDRSTRLEN + 2];
    unsigned char addr[sizeof(struct in6_addr)];
    char *out;
    size_t i;

    if (in[0] == '[') {
        if (len < 3 || in[len - 1] != ']' || len - 2 >= sizeof(tmp) ||
            memchr(in, '\0', len) != NULL)
            return -1;
        memcpy(tmp, in + 1, len - 2);
        tmp[len - 2] = '\0';
        if (inet_pton(AF_INET6, tmp, addr) != 1)
            return -1;
        out = pv_xmalloc(INET6_ADDRSTRLEN + 2);
        out[0] = '[';
        if (inet_ntop(AF_INET6, addr, out + 1, INET6_ADDRSTRLEN) == NULL) {
            free(out);
            return -1;
        }
        strcat(out, "]");
        return part_own(p, out, strlen(out)) == 0 ? 1 : -1;
    }
    if (len >= sizeof(tmp))
        return 0;
    for (i = 0; i < len; i++)
        if (!((in[i] >= '0' && in[i] <= '9') || in[i] == '.'))
            return 0;
    memcpy(tmp, in, len);
    tmp[len] = '\0';
    if (inet_pton(AF_INET, tmp, addr) != 1)
        return 0;
    out = pv_xmalloc(INET_ADDRSTRLEN);
    if (inet_ntop(AF_INET, addr, out, INET_ADDRSTRLEN) == NULL) {
        free(out);
        return -1;
    }
    return part_own(p, out, strlen(out)) == 0 ? 1 : -1;
}

/* libidn2's UTS #46 processing checks CONTEXTJ but not the CONTEXTO
 * rules (RFC 5892 Appendix A.3-A.9) that RFC 5891 §5.4 asks lookups to
 * apply; check them per label on the U-label form. */
static int
domain_context_o_ok(const char *ulabels)
{
    const char *label = ulabels, *dot;
    uint32_t *s;
    size_t len, n, i;
    int ok = 1;

    while (ok) {
        dot = strchr(label, '.');
        len = dot ? (size_t)(dot - label) : strlen(label);
        s = u8_to_u32((const uint8_t *)label, len, NULL, &n);
        if (s == NULL)
            return 0;
        for (i = 0; i < n && ok; i++)
            if (precis_exception(s[i]) == PRECIS_CONTEXTO)
                ok = precis_context_o(s, n, i);
        free(s);
        if (dot == NULL)
            break;
        label = dot + 1;
    }
    return ok;
}

#define IDN2_FLAGS \
    (IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL | IDN2_USE_STD3_ASCII_RULES)

/* IDNA2008 with UTS #46 mapping (lowercase, width, NFC) through libidn2,
 * then back to U-labels: RFC 7622 §3.2.1 stores no A-labels. The result
 * must map to the same A-labels again, so that preparing a prepared
 * domain is the identity. */
static char *
domain_idna(const char *in, size_t len)
{
    char *src, *ulabel = NULL;
    uint8_t *alabel = NULL, *again = NULL;
    size_t i, alen;

    if (u8_check((const uint8_t *)in, len) != NULL ||
        memchr(in, '\0', len) != NULL)
        return NULL;
    src = pv_xstrndup(in, len);
    if (idn2_lookup_u8((const uint8_t *)src, &alabel, IDN2_FLAGS) != IDN2_OK)
        goto fail;
    alen = strlen((char *)alabel);
    for (i = 0; i < alen; i++)
        alabel[i] = (uint8_t)ascii_lower(alabel[i]);
    if (domain_ldh_check((char *)alabel, alen) < 0)
        goto fail;
    if (idn2_to_unicode_8z8z((char *)alabel, &ulabel, 0) != IDN2_OK)
        goto fail;
    if (strlen(ulabel) > PV_JID_PART_MAX ||
        idn2_lookup_u8((const uint8_t *)ulabel, &again, IDN2_FLAGS) !=
            IDN2_OK ||
        strcmp((char *)again, (char *)alabel) != 0 ||
        !domain_context_o_ok(ulabel))
        goto fail;
    free(src);
    idn2_free(alabel);
    idn2_free(again);
    return ulabel;
fail:
    free(src);
    idn2_free(alabel);
    idn2_free(again);
    idn2_free(ulabel);
    return NULL;
}

/* Domainpart preparation, RFC 7622 §3.2. */
static int
prep_domain(const char *in, size_t len, part_t *p)
{
    size_t i;
    int rc;
    char *u;

    /* RFC 7622 §3.2: one trailing label separator is not significant. */
    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0 || len > PART_RAW_MAX)
        return -1;
    rc = prep_ip_literal(in, len, p);
    if (rc != 0)
        return rc > 0 ? 0 : -1;
    for (i = 0; i < len; i++)
        if ((unsigned char)in[i] >= 0x80)
            break;
    if (i == len) {
        rc = domain_ldh_check(in, len);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            p->s = in;
            p->len = len;
            p->lower = 1;
            return 0;
        }
        /* an A-label: verify it and store its U-label */
    }
    u = domain_idna(in, len);
    return part_own(p, u, u != NULL ? strlen(u) : 0);
}

/* ------------------------------------------------------------------ */
/* The jid block                                                       */

static char *
put_part(char *dst, const part_t *p)
{
    size_t i;

    if (p->lower) {
        for (i = 0; i < p->len; i++)
            dst[i] = (char)ascii_lower((unsigned char)p->s[i]);
    } else {
        memcpy(dst, p->s, p->len);
    }
    return dst + p->len;
}

/* Lays out full, then (when they differ from a prefix-terminated string)
 * bare, node, domain and resource, each NUL-terminated, after one owner
 * byte. */
static void
jid_build(const part_t *node, const part_t *dom, const part_t *res,
          pv_jid_t *out, pv_arena_t *arena)
{
    size_t bare_len, full_len, total;
    char *block, *p, *full;

    bare_len = (node ? node->len + 1 : 0) + dom->len;
    full_len = bare_len + (res ? res->len + 1 : 0);
    total = 1 + full_len + 1;
    if (res)
        total += bare_len + 1 + res->len + 1;
    if (node)
        total += node->len + 1 + dom->len + 1;
    block = arena ? pv_arena_alloc(arena, total) : pv_xmalloc(total);
    block[0] = arena ? BLOCK_ARENA : BLOCK_HEAP;
    full = p = block + 1;
    if (node) {
        p = put_part(p, node);
        *p++ = '@';
    }
    p = put_part(p, dom);
    if (res) {
        *p++ = '/';
        p = put_part(p, res);
    }
    *p++ = '\0';
    out->full = full;
    out->bare = full;
    out->node = NULL;
    out->resource = NULL;
    if (res) {
        out->bare = p;
        memcpy(p, full, bare_len);
        p[bare_len] = '\0';
        p += bare_len + 1;
        out->resource = p;
        memcpy(p, full + bare_len + 1, res->len);
        p[res->len] = '\0';
        p += res->len + 1;
    }
    out->domain = out->bare;
    if (node) {
        out->node = p;
        memcpy(p, full, node->len);
        p[node->len] = '\0';
        p += node->len + 1;
        out->domain = p;
        memcpy(p, full + node->len + 1, dom->len);
        p[dom->len] = '\0';
    }
}

int
pv_jid_parse(const char *in, size_t len, pv_jid_t *out, pv_arena_t *arena)
{
    part_t node = {0}, dom = {0}, res = {0};
    const char *slash, *at, *d;
    size_t prefix_len, dlen;
    int rc = PV_ERROR;

    memset(out, 0, sizeof(*out));
    if (in == NULL || len == 0 || memchr(in, '\0', len) != NULL)
        return PV_ERROR;
    /* RFC 7622 §3.1: the resourcepart is everything after the first '/',
     * the localpart everything before the first '@' that precedes it. */
    slash = memchr(in, '/', len);
    prefix_len = slash ? (size_t)(slash - in) : len;
    if (slash && prep_resource(slash + 1, len - prefix_len - 1, &res) < 0)
        goto out;
    at = memchr(in, '@', prefix_len);
    d = in;
    dlen = prefix_len;
    if (at) {
        if (prep_node(in, (size_t)(at - in), &node) < 0)
            goto out;
        d = at + 1;
        dlen = prefix_len - (size_t)(at - in) - 1;
    }
    if (prep_domain(d, dlen, &dom) < 0)
        goto out;
    jid_build(at ? &node : NULL, &dom, slash ? &res : NULL, out, arena);
    rc = PV_OK;
out:
    part_free(&node);
    part_free(&dom);
    part_free(&res);
    return rc;
}

int
pv_jid_make(const char *node, const char *domain, const char *resource,
            pv_jid_t *out, pv_arena_t *arena)
{
    part_t n = {0}, d = {0}, r = {0};
    int rc = PV_ERROR;

    memset(out, 0, sizeof(*out));
    if (domain == NULL)
        return PV_ERROR;
    if (node && prep_node(node, strlen(node), &n) < 0)
        goto out;
    if (prep_domain(domain, strlen(domain), &d) < 0)
        goto out;
    if (resource && prep_resource(resource, strlen(resource), &r) < 0)
        goto out;
    jid_build(node ? &n : NULL, &d, resource ? &r : NULL, out, arena);
    rc = PV_OK;
out:
    part_free(&n);
    part_free(&d);
    part_free(&r);
    return rc;
}

void
pv_jid_clear(pv_jid_t *j)
{
    if (j->full != NULL && j->full[-1] == BLOCK_HEAP)
        free((char *)j->full - 1);
    memset(j, 0, sizeof(*j));
}

int
pv_jid_copy(const pv_jid_t *src, pv_jid_t *dst, pv_arena_t *arena)
{
    part_t n = {0}, d = {0}, r = {0};
    pv_jid_t tmp;

    if (src->full == NULL) {
        memset(dst, 0, sizeof(*dst));
        return PV_ERROR;
    }
    if (src->node) {
        n.s = src->node;
        n.len = strlen(src->node);
    }
    d.s = src->domain;
    d.len = strlen(src->domain);
    if (src->resource) {
        r.s = src->resource;
        r.len = strlen(src->resource);
    }
    /* Build into a temporary: src and dst may be the same jid. */
    jid_build(src->node ? &n : NULL, &d, src->resource ? &r : NULL, &tmp,
              arena);
    *dst = tmp;
    return PV_OK;
}

int
pv_jid_equal(const pv_jid_t *a, const pv_jid_t *b)
{
    return strcmp(a->full, b->full) == 0;
}

int
pv_jid_bare_equal(const pv_jid_t *a, const pv_jid_t *b)
{
    return strcmp(a->bare, b->bare) == 0;
}

/* Hands a part out as a malloc'd string. */
static char *
part_steal(part_t *p, int ok)
{
    char *r;

    if (!ok)
        return NULL;
    if (p->owned) {
        r = p->owned;
        p->owned = NULL;
        return r;
    }
    r = pv_xmalloc(p->len + 1);
    *put_part(r, p) = '\0';
    return r;
}

char *
pv_jid_prep_node(const char *in, size_t len)
{
    part_t p = {0};
    char *r = part_steal(&p, in != NULL && prep_node(in, len, &p) == 0);

    part_free(&p);
    return r;
}

char *
pv_jid_prep_domain(const char *in, size_t len)
{
    part_t p = {0};
    char *r;

    if (in == NULL || memchr(in, '\0', len) != NULL)
        return NULL;
    r = part_steal(&p, prep_domain(in, len, &p) == 0);
    part_free(&p);
    return r;
}

char *
pv_jid_prep_resource(const char *in, size_t len)
{
    part_t p = {0};
    char *r = part_steal(&p, in != NULL && prep_resource(in, len, &p) == 0);

    part_free(&p);
    return r;
}

char *
pv_precis_opaque(const char *in, size_t len)
{
    size_t i, out_len;

    if (in == NULL || len == 0)
        return NULL;
    for (i = 0; i < len; i++)
        if ((unsigned char)in[i] < 0x20 || (unsigned char)in[i] > 0x7E)
            break;
    if (i == len)
        return pv_xstrndup(in, len);
    return precis_opaque_string(in, len, SIZE_MAX, &out_len);
}
