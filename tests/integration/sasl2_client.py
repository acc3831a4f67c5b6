# The test suite's own XEP-0388 SASL2 client (no Debian library speaks
# SASL2, CONTRACTS.md §5): <authenticate/> with SCRAM or PLAIN, inline
# XEP-0386 Bind2, XEP-0484 FAST with HT-SHA-256-NONE
# (draft-schmaus-kitten-sasl-ht). Built on pvtest.RawClient; stdlib only.

import base64
import hashlib
import hmac
import ssl
import uuid
from xml.sax.saxutils import escape, quoteattr

import pvtest
from pvtest import check

NS_SASL2 = 'urn:xmpp:sasl:2'
NS_BIND2 = 'urn:xmpp:bind:0'
NS_FAST = 'urn:xmpp:fast:0'


def b64(data):
    return base64.b64encode(data).decode()


def ht_sha256(token, label):
    return hmac.new(token.encode(), label.encode(), hashlib.sha256).digest()


class Outcome:
    """What one SASL2 exchange ended with: success (the <success/>
    element) or a failure condition."""

    def __init__(self, el):
        self.el = el
        self.ok = el.tag == '{%s}success' % NS_SASL2
        self.condition = None
        self.text = None
        if not self.ok:
            check(el.tag == '{%s}failure' % NS_SASL2,
                  'unexpected SASL2 answer %s' % pvtest.tostr(el))
            for c in el:
                if c.tag == '{%s}text' % NS_SASL2:
                    self.text = c.text
                elif c.tag.startswith('{%s}' % pvtest.NS_SASL):
                    self.condition = c.tag.split('}', 1)[1]

    def find(self, path):
        return self.el.find(path)

    @property
    def authzid(self):
        return self.el.findtext('{%s}authorization-identifier' % NS_SASL2)

    @property
    def additional_data(self):
        t = self.el.findtext('{%s}additional-data' % NS_SASL2)
        return None if t is None else base64.b64decode(t)

    @property
    def bound(self):
        return self.el.find('{%s}bound' % NS_BIND2)

    @property
    def token(self):
        """(token, expiry) of a <token/> in success, or None."""
        t = self.el.find('{%s}token' % NS_FAST)
        return None if t is None else (t.get('token'), t.get('expiry'))


class Sasl2Client(pvtest.RawClient):

    def __init__(self, *a, tls12=False, **kw):
        self.tls12 = tls12
        super().__init__(*a, **kw)
        self.ua_id = str(uuid.uuid4())

    def _ctx(self):
        ctx = super()._ctx()
        if self.tls12:
            # tls-unique (RFC 5929), the one binding Python's ssl exports
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def tls_unique(self):
        return self.tls_sock.get_channel_binding('tls-unique')

    # features
    def authentication(self):
        f = self.features
        return None if f is None else \
            f.find('{%s}authentication' % NS_SASL2)

    def sasl2_mechanisms(self):
        a = self.authentication()
        if a is None:
            return []
        return [m.text for m in a.findall('{%s}mechanism' % NS_SASL2)]

    def fast_mechanisms(self):
        a = self.authentication()
        f = None if a is None else a.find('{%s}inline/{%s}fast' %
                                          (NS_SASL2, NS_FAST))
        return [] if f is None else \
            [m.text for m in f.findall('{%s}mechanism' % NS_FAST)]

    def bind2_features(self):
        a = self.authentication()
        b = None if a is None else a.find(
            '{%s}inline/{%s}bind/{%s}inline' % (NS_SASL2, NS_BIND2, NS_BIND2))
        return None if b is None else \
            [x.get('var') for x in b.findall('{%s}feature' % NS_BIND2)]

    # exchange
    def _inline(self, bind, bind_extra, extra):
        x = ("<user-agent id=%s><software>pvtest</software>"
             "<device>test rig</device></user-agent>" % quoteattr(self.ua_id))
        if bind is not None:
            x += ("<bind xmlns='%s'>%s%s</bind>" %
                  (NS_BIND2, '<tag>%s</tag>' % escape(bind) if bind else '',
                   bind_extra))
        return x + extra

    def authenticate(self, user, password, mech='SCRAM-SHA-256', bind=None,
                     bind_extra='', extra='', request_token=False,
                     initial=True, cb_type=None, cb_data=None):
        """One SASL2 exchange; returns an Outcome. bind: None = no Bind2,
        '' = Bind2 without a tag, else the tag."""
        if request_token:
            extra += ("<request-token xmlns='%s' mechanism="
                      "'HT-SHA-256-NONE'/>" % NS_FAST)
        inl = self._inline(bind, bind_extra, extra)
        sc = None
        if mech == 'PLAIN':
            first = ('\0%s\0%s' % (user, password)).encode()
        else:
            sc = pvtest.Scram(mech, user, password, cb_type, cb_data)
            first = sc.first()
        if initial:
            ir = '<initial-response>%s</initial-response>' % b64(first)
        else:
            ir = ''
        self.send("<authenticate xmlns='%s' mechanism='%s'>%s%s"
                  "</authenticate>" % (NS_SASL2, mech, ir, inl))
        el = self.recv()
        if not initial and el.tag == '{%s}challenge' % NS_SASL2:
            check(not (el.text or '').strip(),
                  'first challenge without initial response not empty')
            self.send("<response xmlns='%s'>%s</response>" %
                      (NS_SASL2, b64(first)))
            el = self.recv()
        if sc is not None and el.tag == '{%s}challenge' % NS_SASL2:
            final = sc.final(base64.b64decode(el.text or ''))
            self.send("<response xmlns='%s'>%s</response>" %
                      (NS_SASL2, b64(final)))
            el = self.recv()
        out = Outcome(el)
        if out.ok and sc is not None:
            check(sc.verify(out.additional_data or b''),
                  'SCRAM server signature in additional-data does not '
                  'verify')
        if out.ok and out.bound is not None:
            self.jid = out.authzid
        return out

    def fast(self, user, token, count=None, bind=None, bind_extra='',
             invalidate=False, request_token=False, proof=None, extra=''):
        """Authenticates with HT-SHA-256-NONE and a FAST token."""
        attrs = ''
        if count is not None:
            attrs += " count='%d'" % count
        if invalidate:
            attrs += " invalidate='true'"
        extra += "<fast xmlns='%s'%s/>" % (NS_FAST, attrs)
        if request_token:
            extra += ("<request-token xmlns='%s' mechanism="
                      "'HT-SHA-256-NONE'/>" % NS_FAST)
        if proof is None:
            proof = ht_sha256(token, 'Initiator')
        ir = user.encode() + b'\0' + proof
        self.send("<authenticate xmlns='%s' mechanism='HT-SHA-256-NONE'>"
                  "<initial-response>%s</initial-response>%s</authenticate>"
                  % (NS_SASL2, b64(ir), self._inline(bind, bind_extra,
                                                     extra)))
        out = Outcome(self.recv())
        if out.ok:
            check(hmac.compare_digest(out.additional_data or b'',
                                      ht_sha256(token, 'Responder')),
                  'HT Responder proof in additional-data does not verify')
            if out.bound is not None:
                self.jid = out.authzid
        return out


def client(srv, tls='starttls', ua_id=None, **kw):
    kind = 'c2s_direct_tls' if tls == 'direct' else 'c2s'
    c = Sasl2Client(srv.host(kind), srv.port(kind), srv.domain,
                    cafile=srv.cafile, tls=tls, **kw)
    if ua_id is not None:
        c.ua_id = ua_id
    return c
