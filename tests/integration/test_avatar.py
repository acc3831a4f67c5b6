#!/usr/bin/python3
# mod_avatar: XEP-0398 conversion both ways, checked from a second client
# (a PEP avatar publish becomes the vCard PHOTO another user reads; a
# vCard PHOTO becomes PEP data + metadata items, with notifications, that
# a contact reads), SHA-1 verification, disabling, no conversion loop,
# the XEP-0153 hash the server adds to available presence (and leaves
# alone when the client sent its own <photo/>), the account's disco
# feature; and XEP-0172 nicknames as a plain PEP node (contact notified,
# stranger refused, <nick/> in a subscription request passes through).

import base64
import hashlib
import os
import struct
import sys
import time
import zlib

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
import pvcaps  # noqa: E402
from pvtest import check, check_eq, stanza_error, tostr  # noqa: E402

NS_CLIENT = pvtest.NS_CLIENT
NS_ROSTER = 'jabber:iq:roster'
NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_EVENT = NS_PUBSUB + '#event'
NS_ERRORS = NS_PUBSUB + '#errors'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_CAPS = 'http://jabber.org/protocol/caps'
NS_DATA = 'urn:xmpp:avatar:data'
NS_META = 'urn:xmpp:avatar:metadata'
NS_VCARD = 'vcard-temp'
NS_UPDATE = 'vcard-temp:x:update'
NS_NICK = 'http://jabber.org/protocol/nick'
NS_CONVERSION = 'urn:xmpp:pep-vcard-conversion:0'
IQ = '{%s}iq' % NS_CLIENT
MSG = '{%s}message' % NS_CLIENT
PRES = '{%s}presence' % NS_CLIENT
MODULES = ['disco', 'ping', 'roster', 'presence', 'pep', 'vcard', 'avatar']
NAMES = ('alice', 'bob', 'carol', 'dave', 'erin', 'frank')
USERS = {u: u + '-av-pw' for u in NAMES}
CAPS_NODE = 'https://palaver.test/avatar-client'

suite = pvtest.Suite('avatar')


def server():
    if pvtest.available_modules(MODULES) != MODULES:
        pvtest.skip('a module of %s is not built' % MODULES)
    srv = suite.shared_server(users=USERS, modules=MODULES)
    if not getattr(srv, 'av_ready', False):
        setup(srv)
        srv.av_ready = True
    return srv


def bare(srv, user):
    return '%s@%s' % (user, srv.domain)


def factor():
    return pvtest.time_factor()


# --- images -----------------------------------------------------------------

def png(w, h, seed=0):
    """A real PNG of w x h grey pixels (seed varies the bytes)."""
    def chunk(kind, data):
        c = struct.pack('>I', len(data)) + kind + data
        return c + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    raw = b''.join(b'\0' + bytes([(seed + x) & 0xff for x in range(w)])
                   for _ in range(h))
    return (b'\x89PNG\r\n\x1a\n' +
            chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)) +
            chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def gif(w, h):
    """A 1-colour GIF89a of w x h."""
    return (b'GIF89a' + struct.pack('<HH', w, h) + b'\x80\x00\x00' +
            b'\x00\x00\x00\xff\xff\xff' +
            b',\x00\x00\x00\x00' + struct.pack('<HH', w, h) + b'\x00' +
            b'\x02\x02\x44\x01\x00;')


def sha1(b):
    return hashlib.sha1(b).hexdigest()


def b64(b):
    return base64.b64encode(b).decode()


# --- XEP-0115 (clients that want notifications) ----------------------------

class Caps(pvcaps.Caps):
    def __init__(self, notify, lie=False):
        super().__init__(notify, name='avatar-test', node=CAPS_NODE, lie=lie)


expect = pvcaps.expect
pump = pvcaps.pump


def iq(c, xml, **kw):
    """Sends an IQ (an id added) and returns its answer."""
    return pvcaps.iq(c, xml, prefix='av', **kw)


def check_ok(r, what):
    check(r.get('type') == 'result', '%s: %s' % (what, tostr(r)))


def sync(c):
    check_ok(iq(c, "<iq type='get' to='%s'><ping xmlns='urn:xmpp:ping'/>"
                "</iq>" % c.domain), 'ping')


def online(srv, user, resource, caps=None, presence=None):
    c = srv.login(user, resource=resource)
    c.caps = caps
    iq(c, "<iq type='get'><query xmlns='%s'/></iq>" % NS_ROSTER)
    c.send(presence or '<presence>%s</presence>' %
           (caps.element() if caps else ''))
    expect(c, lambda e: e.tag == PRES and e.get('from') == c.jid,
           what='own presence')
    sync(c)
    return c


def subscribe(srv, a, b, ua, ub, extra=''):
    a.send("<presence to='%s' type='subscribe'>%s</presence>" %
           (bare(srv, ub), extra))
    req = expect(b, lambda e: e.tag == PRES and e.get('type') == 'subscribe',
                 what='subscribe request')
    b.send("<presence to='%s' type='subscribed'/>" % bare(srv, ua))
    expect(a, lambda e: e.tag == PRES and e.get('type') == 'subscribed',
           what='subscribed')
    return req


def publish(c, node, item_id, payload):
    return iq(c, "<iq type='set'><pubsub xmlns='%s'><publish node='%s'>"
              "<item id='%s'>%s</item></publish></pubsub></iq>" %
              (NS_PUBSUB, node, item_id, payload))


def items(c, owner, node, item_id=None):
    inner = "<item id='%s'/>" % item_id if item_id else ''
    return iq(c, "<iq type='get' to='%s'><pubsub xmlns='%s'><items "
              "node='%s'>%s</items></pubsub></iq>" % (owner, NS_PUBSUB, node,
                                                     inner))


def vcard_get(c, owner):
    r = iq(c, "<iq type='get' to='%s'><vCard xmlns='%s'/></iq>" %
           (owner, NS_VCARD))
    check_ok(r, 'vCard get')
    return r.find('{%s}vCard' % NS_VCARD)


def vcard_photo(v):
    """(TYPE, BINVAL without whitespace) of a vCard, or None."""
    p = v.find('{%s}PHOTO' % NS_VCARD)
    if p is None:
        return None
    t = p.find('{%s}TYPE' % NS_VCARD)
    b = p.find('{%s}BINVAL' % NS_VCARD)
    return (t.text if t is not None else None,
            ''.join((b.text or '').split()) if b is not None else None)


def poll(what, fn, timeout=3.0):
    """Calls fn until it returns something true; the conversion runs after
    the client's own request was answered."""
    deadline = time.monotonic() + timeout * factor()
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            pvtest.fail('%s: not within %.1fs' % (what, timeout * factor()))
        time.sleep(0.1)


def publish_avatar(c, data, item_id=None, mime='image/png', w=None, h=None):
    item_id = item_id or sha1(data)
    check_ok(publish(c, NS_DATA, item_id, "<data xmlns='%s'>%s</data>" %
                     (NS_DATA, b64(data))), 'publish avatar data')
    size = " width='%d' height='%d'" % (w, h) if w else ''
    check_ok(publish(c, NS_META, item_id,
                     "<metadata xmlns='%s'><info bytes='%d' id='%s' "
                     "type='%s'%s/></metadata>" %
                     (NS_META, len(data), item_id, mime, size)),
             'publish avatar metadata')
    return item_id


def photo_hash(p):
    """The XEP-0153 hash in a presence: None (no <x/>), '' or the hash."""
    x = p.find('{%s}x' % NS_UPDATE)
    if x is None:
        return None
    ph = x.find('{%s}photo' % NS_UPDATE)
    if ph is None:
        return None
    return ph.text or ''


def presence_from(c, jid, what, status=None):
    """The next available presence from jid (with that <status/>: earlier
    ones, such as probe answers, are skipped)."""
    return expect(c, lambda e: e.tag == PRES and e.get('from') == jid and
                  e.get('type') is None and
                  (status is None or
                   e.findtext('{%s}status' % NS_CLIENT) == status),
                  what=what)


def setup(srv):
    """Mutual subscriptions alice<->bob and erin<->bob; carol, dave and
    frank know nobody."""
    for owner in ('alice', 'erin'):
        o = online(srv, owner, 'setup')
        b = online(srv, 'bob', 'setup')
        subscribe(srv, b, o, 'bob', owner)
        subscribe(srv, o, b, owner, 'bob')
        o.close()
        b.close()


# --- tests ------------------------------------------------------------------

@suite.test
def account_feature():
    srv = server()
    a = online(srv, 'alice', 'disco')
    r = iq(a, "<iq type='get' to='%s'><query xmlns='%s'/></iq>" %
           (bare(srv, 'alice'), NS_INFO))
    check_ok(r, 'disco#info')
    feats = [f.get('var') for f in r.iter('{%s}feature' % NS_INFO)]
    check(NS_CONVERSION in feats, 'no %s in %s' % (NS_CONVERSION, feats))
    a.close()


@suite.test
def pep_to_vcard():
    """alice publishes a PEP avatar: bob then reads it as her vCard
    PHOTO, her other vCard fields untouched."""
    srv = server()
    a = online(srv, 'alice', 'pep2vc')
    check_ok(iq(a, "<iq type='set'><vCard xmlns='%s'><FN>Alice A.</FN>"
                "<NICKNAME>ali</NICKNAME></vCard></iq>" % NS_VCARD),
             'vCard set')
    img = png(3, 2)
    publish_avatar(a, img, w=3, h=2)
    b = online(srv, 'bob', 'pep2vc')

    def photo():
        return vcard_photo(vcard_get(b, bare(srv, 'alice')))
    got = poll('PHOTO in alice vCard', photo)
    check_eq(got, ('image/png', b64(img)), 'PHOTO TYPE and BINVAL')
    v = vcard_get(b, bare(srv, 'alice'))
    check_eq(v.findtext('{%s}FN' % NS_VCARD), 'Alice A.', 'FN kept')
    check_eq(v.findtext('{%s}NICKNAME' % NS_VCARD), 'ali', 'NICKNAME kept')
    # a second avatar replaces the first one (a single PHOTO)
    img2 = png(4, 4, seed=7)
    publish_avatar(a, img2)
    poll('new PHOTO', lambda: photo() == ('image/png', b64(img2)))
    v = vcard_get(b, bare(srv, 'alice'))
    check_eq(len(v.findall('{%s}PHOTO' % NS_VCARD)), 1, 'PHOTO count')
    a.close()
    b.close()


@suite.test
def pep_to_vcard_checks_hash():
    """Data whose SHA-1 is not the metadata id never reaches the vCard
    (XEP-0398 §3.1); an info with only a URL neither."""
    srv = server()
    c = online(srv, 'carol', 'hash')
    good = png(2, 2, seed=1)
    publish_avatar(c, good)
    d = online(srv, 'dave', 'hash')
    poll('good PHOTO', lambda: vcard_photo(vcard_get(
        d, bare(srv, 'carol'))) == ('image/png', b64(good)))
    bad = png(2, 2, seed=2)
    publish_avatar(c, bad, item_id=sha1(b'something else'))
    check_ok(publish(c, NS_META, 'u1', "<metadata xmlns='%s'><info "
                     "bytes='10' id='%s' type='image/png' url='https://"
                     "example.org/a.png'/></metadata>" %
                     (NS_META, sha1(b'remote'))), 'URL-only metadata')
    time.sleep(0.5 * factor())
    check_eq(vcard_photo(vcard_get(d, bare(srv, 'carol'))),
             ('image/png', b64(good)), 'PHOTO after bad data')
    c.close()
    d.close()


@suite.test
def vcard_to_pep():
    """erin (a legacy client) sets a vCard PHOTO: bob, her contact, is
    notified of the new metadata and reads both PEP items."""
    srv = server()
    b = online(srv, 'bob', 'vc2pep', caps=Caps([NS_META]))
    e = online(srv, 'erin', 'vc2pep')
    img = gif(5, 4)
    h = sha1(img)
    # folded base64, as vCard clients write it
    folded = '\n'.join(b64(img)[i:i + 20] for i in range(0, len(b64(img)),
                                                         20))
    check_ok(iq(e, "<iq type='set'><vCard xmlns='%s'><FN>Erin</FN><PHOTO>"
                "<TYPE>image/gif</TYPE><BINVAL>%s</BINVAL></PHOTO></vCard>"
                "</iq>" % (NS_VCARD, folded)), 'vCard set with PHOTO')
    ev = expect(b, lambda m: m.tag == MSG and m.get('from') ==
                bare(srv, 'erin') and m.find(
                    '{%s}event/{%s}items[@node="%s"]' %
                    (NS_EVENT, NS_EVENT, NS_META)) is not None,
                timeout=5 * factor(), what='metadata notification')
    item = ev.find('.//{%s}item' % NS_EVENT)
    check_eq(item.get('id'), h, 'notified item id')
    r = items(b, bare(srv, 'erin'), NS_META)
    check_ok(r, 'metadata items')
    info = r.find('.//{%s}metadata/{%s}info' % (NS_META, NS_META))
    check(info is not None, 'no info in %s' % tostr(r))
    check_eq((info.get('id'), info.get('type'), info.get('bytes'),
              info.get('width'), info.get('height')),
             (h, 'image/gif', str(len(img)), '5', '4'), 'info attributes')
    r = items(b, bare(srv, 'erin'), NS_DATA, h)
    check_ok(r, 'data item')
    data = r.find('.//{%s}data' % NS_DATA)
    check(data is not None, 'no data in %s' % tostr(r))
    check_eq(base64.b64decode(data.text), img, 'data bytes')
    # no loop: the published avatar did not rewrite erin's vCard
    time.sleep(0.3 * factor())
    v = vcard_get(b, bare(srv, 'erin'))
    check_eq(vcard_photo(v), ('image/gif', ''.join(folded.split())),
             'vCard after conversion')
    check_eq(v.findtext('{%s}FN' % NS_VCARD), 'Erin', 'FN')
    # the same PHOTO again (a legacy client changing its FN) publishes
    # nothing new
    check_ok(iq(e, "<iq type='set'><vCard xmlns='%s'><FN>Erin E.</FN>"
                "<PHOTO><TYPE>image/gif</TYPE><BINVAL>%s</BINVAL></PHOTO>"
                "</vCard></iq>" % (NS_VCARD, b64(img))), 'vCard set again')
    time.sleep(0.5 * factor())
    sync(b)
    pump(b)
    again = [m for m in b.pending if m.tag == MSG and
             m.get('from') == bare(srv, 'erin') and m.find(
        './/{%s}items[@node="%s"]' % (NS_EVENT, NS_META)) is not None]
    check_eq([tostr(m) for m in again], [],
             'notifications for an unchanged PHOTO')
    # the vCard-only client's contacts see the hash in presence too
    e2 = online(srv, 'erin', 'second')
    p = presence_from(b, e2.jid, 'erin presence')
    check_eq(photo_hash(p), h, 'presence hash after a vCard PHOTO')
    e.close()
    e2.close()
    b.close()


@suite.test
def presence_hash():
    """The server adds the avatar hash to available presence, fills an
    <x/> without <photo/>, and leaves a client's own <photo/> alone."""
    srv = server()
    a = online(srv, 'alice', 'ph1')
    img = png(6, 6, seed=3)
    h = publish_avatar(a, img)
    b = online(srv, 'bob', 'ph')
    a2 = online(srv, 'alice', 'ph2')
    p = presence_from(b, a2.jid, 'presence of a new resource')
    check_eq(photo_hash(p), h, 'broadcast presence hash')
    a2.send("<presence><status>x1</status><x xmlns='%s'/></presence>" %
            NS_UPDATE)
    p = presence_from(b, a2.jid, 'presence with an empty x', 'x1')
    check_eq(photo_hash(p), h, 'hash in an x without photo')
    a2.send("<presence><status>x2</status><x xmlns='%s'><photo/></x>"
            "</presence>" % NS_UPDATE)
    p = presence_from(b, a2.jid, 'presence with an empty photo', 'x2')
    check_eq(photo_hash(p), '', 'empty photo left alone')
    a2.send("<presence><status>x3</status><x xmlns='%s'><photo>%s</photo>"
            "</x></presence>" % (NS_UPDATE, 'ab' * 20))
    p = presence_from(b, a2.jid, 'presence with own hash', 'x3')
    check_eq(photo_hash(p), 'ab' * 20, "client's own hash left alone")
    # directed presence (a MUC join) gets it as well
    f = online(srv, 'frank', 'ph')
    a2.send("<presence to='%s'><status>x4</status></presence>" % f.jid)
    p = presence_from(f, a2.jid, 'directed presence', 'x4')
    check_eq(photo_hash(p), h, 'directed presence hash')
    # a new avatar: the next presence carries the new hash
    img2 = png(6, 6, seed=4)
    h2 = publish_avatar(a, img2)
    a2.send('<presence><status>x5</status></presence>')
    p = presence_from(b, a2.jid, 'presence after a new avatar', 'x5')
    check_eq(photo_hash(p), h2, 'hash after a new avatar')
    for c in (a, a2, b, f):
        c.close()


@suite.test
def disable_avatar():
    """Empty metadata (XEP-0084 §4.5) removes the vCard PHOTO and the
    presence says 'no avatar'."""
    srv = server()
    a = online(srv, 'alice', 'off')
    publish_avatar(a, png(2, 3, seed=9))
    b = online(srv, 'bob', 'off')
    poll('PHOTO before', lambda: vcard_photo(vcard_get(
        b, bare(srv, 'alice'))) is not None)
    check_ok(publish(a, NS_META, 'current', "<metadata xmlns='%s'/>" %
                     NS_META), 'disable')
    poll('no PHOTO', lambda: vcard_photo(vcard_get(
        b, bare(srv, 'alice'))) is None)
    check_eq(vcard_get(b, bare(srv, 'alice')).findtext('{%s}FN' % NS_VCARD),
             'Alice A.', 'FN kept')
    a.send('<presence><status>off</status></presence>')
    p = presence_from(b, a.jid, 'presence without avatar', 'off')
    check_eq(photo_hash(p), '', 'empty photo for no avatar')
    a.close()
    b.close()


@suite.test
def vcard_photo_removed():
    """An empty PHOTO in a vCard set disables the PEP avatar."""
    srv = server()
    b = online(srv, 'bob', 'rm', caps=Caps([NS_META]))
    e = online(srv, 'erin', 'rm')
    check_ok(iq(e, "<iq type='set'><vCard xmlns='%s'><FN>Erin</FN><PHOTO/>"
                "</vCard></iq>" % NS_VCARD), 'vCard set, empty PHOTO')
    # (the last item, sent when bob came online, has an <info/>)
    ev = expect(b, lambda m: m.tag == MSG and m.find(
        './/{%s}items[@node="%s"]' % (NS_EVENT, NS_META)) is not None and
        m.find('.//{%s}info' % NS_META) is None,
        timeout=5 * factor(), what='empty metadata notification')
    check(ev.find('.//{%s}metadata' % NS_META) is not None,
          'no metadata in %s' % tostr(ev))
    e.close()
    b.close()


# --- XEP-0172 ---------------------------------------------------------------

@suite.test
def nick_pep():
    srv = server()
    b = online(srv, 'bob', 'nick', caps=Caps([NS_NICK]))
    a = online(srv, 'alice', 'nick')
    check_ok(publish(a, NS_NICK, 'current', "<nick xmlns='%s'>Ali the "
                     "Great</nick>" % NS_NICK), 'publish nick')
    ev = expect(b, lambda m: m.tag == MSG and m.find(
        './/{%s}items[@node="%s"]' % (NS_EVENT, NS_NICK)) is not None,
        what='nick notification')
    check_eq(ev.findtext('.//{%s}nick' % NS_NICK), 'Ali the Great',
             'notified nick')
    r = items(b, bare(srv, 'alice'), NS_NICK)
    check_ok(r, 'contact reads nick')
    check_eq(r.findtext('.//{%s}nick' % NS_NICK), 'Ali the Great',
             'nick item')
    c = online(srv, 'carol', 'nick')
    r = items(c, bare(srv, 'alice'), NS_NICK)
    t, cond = stanza_error(r)
    check_eq(cond, 'not-authorized', 'stranger reads nick (%s)' % tostr(r))
    check(r.find('{%s}error/{%s}presence-subscription-required' %
                 (NS_CLIENT, NS_ERRORS)) is not None,
          'no presence-subscription-required: %s' % tostr(r))
    # XEP-0172 §4.1: the nick rides along a subscription request
    d = online(srv, 'dave', 'nick')
    d.send("<presence to='%s' type='subscribe'><nick xmlns='%s'>Dave D"
           "</nick></presence>" % (bare(srv, 'carol'), NS_NICK))
    req = expect(c, lambda e: e.tag == PRES and e.get('type') ==
                 'subscribe', what='subscription request')
    check_eq(req.findtext('{%s}nick' % NS_NICK), 'Dave D',
             'nick in the subscription request')
    for x in (a, b, c, d):
        x.close()


@suite.test
def accounts_older_than_module():
    """Avatars stored before mod_avatar was enabled: at the user's first
    presence a vCard PHOTO goes to PEP, a PEP avatar to the vCard, and
    the presence already carries the hash."""
    if pvtest.available_modules(MODULES) != MODULES:
        pvtest.skip('a module of %s is not built' % MODULES)
    users = {u: u + '-old-pw' for u in ('vc', 'pep', 'watcher')}
    srv = suite.server(name='avatar-old', users=users,
                       modules=[m for m in MODULES if m != 'avatar'])
    srv.start()
    img_vc, img_pep = gif(7, 3), png(3, 3, seed=11)
    w = online(srv, 'watcher', 'w')
    for u in ('vc', 'pep'):
        c = online(srv, u, 'before')
        subscribe(srv, w, c, 'watcher', u)
        subscribe(srv, c, w, u, 'watcher')
        c.close()
    w.close()
    c = online(srv, 'vc', 'before')
    check_ok(iq(c, "<iq type='set'><vCard xmlns='%s'><PHOTO><TYPE>image/gif"
                "</TYPE><BINVAL>%s</BINVAL></PHOTO></vCard></iq>" %
                (NS_VCARD, b64(img_vc))), 'vCard set')
    c.close()
    c = online(srv, 'pep', 'before')
    publish_avatar(c, img_pep)
    c.close()
    srv.stop()
    srv.modules = list(MODULES)
    srv.write_config()
    srv.start()
    w = online(srv, 'watcher', 'w')
    for u, h in (('vc', sha1(img_vc)), ('pep', sha1(img_pep))):
        c = online(srv, u, 'after',
                   presence='<presence><status>back</status></presence>')
        p = presence_from(w, c.jid, 'presence of %s' % u, 'back')
        check_eq(photo_hash(p), h, 'first presence hash of %s' % u)
        c.close()
    r = items(w, bare(srv, 'vc'), NS_META)
    check_ok(r, 'metadata of vc')
    check_eq([i.get('id') for i in r.iter('{%s}item' % NS_PUBSUB)],
             [sha1(img_vc)], 'vCard PHOTO published to PEP')
    poll('PEP avatar in the vCard', lambda: vcard_photo(vcard_get(
        w, bare(srv, 'pep'))) == ('image/png', b64(img_pep)))
    w.close()


@suite.test
def rows_go_with_account():
    srv = server()
    check(any(k[:2] == ('localhost', 'alice')
              for k in pvtest.store_keys(srv, 'avatar.hash')),
          'no avatar.hash row for alice')
    srv.ctl('deluser', bare(srv, 'carol'))
    left = [k for k in pvtest.store_keys(srv, 'avatar.hash')
            if k[:2] == ('localhost', 'carol')]
    check_eq(left, [], 'avatar.hash rows after deluser')


if __name__ == '__main__':
    suite.main()
