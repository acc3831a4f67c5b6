#!/usr/bin/python3
# mod_bookmarks: XEP-0402 §compat / XEP-0411 conversion between private
# XML (XEP-0049 <storage xmlns='storage:bookmarks'/>), the legacy PEP node
# storage:bookmarks and urn:xmpp:bookmarks:1, in every direction, each
# checked from a second resource of the account: a private XML set shows
# up as XEP-0402 items (with notifications, none for unchanged items) and
# in the legacy node; XEP-0402 publish and retract show up in private XML
# (URL bookmarks kept); a legacy PEP publish shows up in both; the
# converted nodes are private (whitelist); the account's disco features.

import os
import sys
import time

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
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_CAPS = 'http://jabber.org/protocol/caps'
NS_PRIVATE = 'jabber:iq:private'
NS_LEGACY = 'storage:bookmarks'
NS_B2 = 'urn:xmpp:bookmarks:1'
IQ = '{%s}iq' % NS_CLIENT
MSG = '{%s}message' % NS_CLIENT
PRES = '{%s}presence' % NS_CLIENT
MODULES = ['disco', 'ping', 'roster', 'presence', 'pep', 'private',
           'bookmarks']
NAMES = ('alice', 'bob', 'carol', 'dave')
USERS = {u: u + '-bm-pw' for u in NAMES}
CAPS_NODE = 'https://palaver.test/bookmarks-client'
ROOM1 = 'council@conference.example.org'
ROOM2 = 'orchard@conference.example.org'
ROOM3 = 'balcony@conference.example.org'

suite = pvtest.Suite('bookmarks')


def server():
    if pvtest.available_modules(MODULES) != MODULES:
        pvtest.skip('a module of %s is not built' % MODULES)
    srv = suite.shared_server(users=USERS, modules=MODULES)
    if not getattr(srv, 'bm_ready', False):
        setup(srv)
        srv.bm_ready = True
    return srv


def bare(srv, user):
    return '%s@%s' % (user, srv.domain)


class Caps(pvcaps.Caps):
    def __init__(self, notify, lie=False):
        super().__init__(notify, name='bookmarks-test', node=CAPS_NODE, lie=lie)


expect = pvcaps.expect
pump = pvcaps.pump


def iq(c, xml, **kw):
    """Sends an IQ (an id added) and returns its answer."""
    return pvcaps.iq(c, xml, prefix='bm', **kw)


def check_ok(r, what):
    check(r.get('type') == 'result', '%s: %s' % (what, tostr(r)))


def sync(c):
    check_ok(iq(c, "<iq type='get' to='%s'><ping xmlns='urn:xmpp:ping'/>"
                "</iq>" % c.domain), 'ping')


def online(srv, user, resource, caps=None):
    c = srv.login(user, resource=resource)
    c.caps = caps
    iq(c, "<iq type='get'><query xmlns='%s'/></iq>" % NS_ROSTER)
    c.send('<presence>%s</presence>' % (caps.element() if caps else ''))
    expect(c, lambda e: e.tag == PRES and e.get('from') == c.jid,
           what='own presence')
    sync(c)
    return c


def poll(what, fn, timeout=3.0):
    """Calls fn until it returns something true: the conversion runs after
    the client's own request was answered."""
    deadline = time.monotonic() + timeout * pvtest.time_factor()
    last = None
    while True:
        got, last = fn()
        if got:
            return last
        if time.monotonic() > deadline:
            pvtest.fail('%s: not within %.1fs; last: %s' %
                        (what, timeout * pvtest.time_factor(), last))
        time.sleep(0.1)


# --- the three stores, as a second client reads them -----------------------

def private_get(c):
    r = iq(c, "<iq type='get'><query xmlns='%s'><storage xmlns='%s'/>"
           "</query></iq>" % (NS_PRIVATE, NS_LEGACY))
    check_ok(r, 'private get')
    return r.find('{%s}query/{%s}storage' % (NS_PRIVATE, NS_LEGACY))


def private_set(c, inner):
    check_ok(iq(c, "<iq type='set'><query xmlns='%s'><storage xmlns='%s'>%s"
                "</storage></query></iq>" % (NS_PRIVATE, NS_LEGACY, inner)),
             'private set')


def legacy_confs(storage):
    """{jid: (name, autojoin, nick, password)} of a <storage/>."""
    out = {}
    if storage is None:
        return out
    for c in storage.findall('{%s}conference' % NS_LEGACY):
        out[c.get('jid')] = (c.get('name'),
                             c.get('autojoin') in ('true', '1'),
                             c.findtext('{%s}nick' % NS_LEGACY),
                             c.findtext('{%s}password' % NS_LEGACY))
    return out


def items(c, owner, node):
    return iq(c, "<iq type='get' to='%s'><pubsub xmlns='%s'><items "
              "node='%s'/></pubsub></iq>" % (owner, NS_PUBSUB, node))


def b2_confs(c, owner):
    """{item id: (name, autojoin, nick, password)} of urn:xmpp:bookmarks:1;
    None when the node does not exist."""
    r = items(c, owner, NS_B2)
    if r.get('type') == 'error':
        return None
    out = {}
    for it in r.iter('{%s}item' % NS_PUBSUB):
        conf = it.find('{%s}conference' % NS_B2)
        check(conf is not None, 'item without conference: %s' % tostr(it))
        out[it.get('id')] = (conf.get('name'),
                             conf.get('autojoin') in ('true', '1'),
                             conf.findtext('{%s}nick' % NS_B2),
                             conf.findtext('{%s}password' % NS_B2))
    return out


def legacy_pep(c, owner):
    r = items(c, owner, NS_LEGACY)
    if r.get('type') == 'error':
        return None
    return r.find('.//{%s}item/{%s}storage' % (NS_PUBSUB, NS_LEGACY))


def b2_publish(c, jid, conf, opts=True):
    po = ''
    if opts:
        po = ("<publish-options><x xmlns='jabber:x:data' type='submit'>"
              "<field var='FORM_TYPE' type='hidden'><value>%s#publish-options"
              "</value></field><field var='pubsub#persist_items'><value>true"
              "</value></field><field var='pubsub#max_items'><value>max"
              "</value></field><field var='pubsub#send_last_published_item'>"
              "<value>never</value></field><field var='pubsub#access_model'>"
              "<value>whitelist</value></field></x></publish-options>" %
              NS_PUBSUB)
    return iq(c, "<iq type='set'><pubsub xmlns='%s'><publish node='%s'>"
              "<item id='%s'>%s</item></publish>%s</pubsub></iq>" %
              (NS_PUBSUB, NS_B2, jid, conf, po))


def b2_events(c, owner):
    """XEP-0402 notifications queued on c: [('item'|'retract', id)]."""
    sync(c)
    pump(c)
    out = []
    for m in list(c.pending):
        if m.tag != MSG or m.get('from') != owner:
            continue
        its = m.find('{%s}event/{%s}items[@node="%s"]' % (NS_EVENT, NS_EVENT,
                                                         NS_B2))
        if its is None:
            continue
        c.pending.remove(m)
        for e in its:
            out.append((e.tag.split('}')[1], e.get('id')))
    return out


def setup(srv):
    """bob is alice's contact (he must still not see her bookmarks)."""
    a = online(srv, 'alice', 'setup')
    b = online(srv, 'bob', 'setup')
    b.send("<presence to='%s' type='subscribe'/>" % bare(srv, 'alice'))
    expect(a, lambda e: e.tag == PRES and e.get('type') == 'subscribe',
           what='subscribe request')
    a.send("<presence to='%s' type='subscribed'/>" % bare(srv, 'bob'))
    expect(b, lambda e: e.tag == PRES and e.get('type') == 'subscribed',
           what='subscribed')
    a.close()
    b.close()


# --- tests ------------------------------------------------------------------

@suite.test
def account_features():
    srv = server()
    a = online(srv, 'alice', 'disco')
    r = iq(a, "<iq type='get' to='%s'><query xmlns='%s'/></iq>" %
           (bare(srv, 'alice'), NS_INFO))
    check_ok(r, 'disco#info')
    feats = [f.get('var') for f in r.iter('{%s}feature' % NS_INFO)]
    for f in (NS_B2 + '#compat', NS_B2 + '#compat-pep',
              'urn:xmpp:bookmarks-conversion:0'):
        check(f in feats, 'no %s in %s' % (f, feats))
    a.close()


LIST1 = ("<conference jid='%s' name='The Council' autojoin='true'>"
         "<nick>Puck</nick><password>s3cret</password></conference>"
         "<conference jid='%s' name='Orchard'/>"
         "<url name='Site' url='https://example.org/'/>" % (ROOM1, ROOM2))


@suite.test
def private_to_pep():
    """A legacy client stores its list in private XML: a modern resource
    of the same account is notified and reads XEP-0402 items, and the
    legacy PEP node holds the list too."""
    srv = server()
    me = bare(srv, 'alice')
    modern = online(srv, 'alice', 'modern', caps=Caps([NS_B2]))
    legacy = online(srv, 'alice', 'legacy')
    private_set(legacy, LIST1)
    want = {ROOM1: ('The Council', True, 'Puck', 's3cret'),
            ROOM2: ('Orchard', False, None, None)}
    got = poll('XEP-0402 items', lambda: (lambda g: (g == want, g))(
        b2_confs(modern, me)))
    check_eq(got, want, 'XEP-0402 items')
    ev = []
    deadline = time.monotonic() + 3 * pvtest.time_factor()
    while len(ev) < 2 and time.monotonic() < deadline:
        ev += b2_events(modern, me)
    check_eq(sorted(ev), sorted([('item', ROOM1), ('item', ROOM2)]),
             'notifications')
    poll('legacy PEP node', lambda: (lambda s: (legacy_confs(s) == want,
                                                s is not None and tostr(s)))(
        legacy_pep(modern, me)))
    # unchanged items are not published again (XEP-0402 §compat)
    private_set(legacy, LIST1.replace("name='Orchard'",
                                      "name='The Orchard'"))
    poll('renamed item', lambda: (lambda g: (
        g and g[ROOM2][0] == 'The Orchard', g))(b2_confs(modern, me)))
    time.sleep(0.3 * pvtest.time_factor())
    check_eq(b2_events(modern, me), [('item', ROOM2)],
             'notifications for one changed item')
    # a room dropped from the list is retracted
    private_set(legacy, "<conference jid='%s' name='The Council' "
                "autojoin='true'><nick>Puck</nick><password>s3cret"
                "</password></conference>" % ROOM1)
    poll('retraction', lambda: (lambda g: (g is not None and
                                           list(g) == [ROOM1], g))(
        b2_confs(modern, me)))
    time.sleep(0.3 * pvtest.time_factor())
    check_eq(b2_events(modern, me), [('retract', ROOM2)],
             'retract notification')
    modern.close()
    legacy.close()


@suite.test
def pep_to_private():
    """A modern client publishes and retracts XEP-0402 items: a legacy
    resource reads the list in private XML (URL bookmarks kept) and in
    the legacy PEP node."""
    srv = server()
    me = bare(srv, 'alice')
    modern = online(srv, 'alice', 'modern2')
    legacy = online(srv, 'alice', 'legacy2')
    private_set(legacy, LIST1)
    poll('initial sync', lambda: (lambda g: (g is not None and len(g) == 2,
                                             g))(b2_confs(modern, me)))
    check_ok(b2_publish(modern, ROOM3, "<conference xmlns='%s' name='Balcony'"
                        " autojoin='true'><nick>Juliet</nick></conference>" %
                        NS_B2), 'publish')
    want = {ROOM1: ('The Council', True, 'Puck', 's3cret'),
            ROOM2: ('Orchard', False, None, None),
            ROOM3: ('Balcony', True, 'Juliet', None)}
    poll('private XML after publish', lambda: (lambda s: (
        legacy_confs(s) == want, legacy_confs(s)))(private_get(legacy)))
    st = private_get(legacy)
    urls = [u.get('url') for u in st.findall('{%s}url' % NS_LEGACY)]
    check_eq(urls, ['https://example.org/'], 'URL bookmarks kept')
    poll('legacy PEP after publish', lambda: (lambda s: (
        legacy_confs(s) == want, s is not None and tostr(s)))(
        legacy_pep(legacy, me)))
    check_ok(iq(modern, "<iq type='set'><pubsub xmlns='%s'><retract "
                "node='%s' notify='true'><item id='%s'/></retract></pubsub>"
                "</iq>" % (NS_PUBSUB, NS_B2, ROOM1)), 'retract')
    del want[ROOM1]
    poll('private XML after retract', lambda: (lambda s: (
        legacy_confs(s) == want, legacy_confs(s)))(private_get(legacy)))
    modern.close()
    legacy.close()


@suite.test
def legacy_pep_to_others():
    """A client on the XEP-0048 PEP node: private XML and XEP-0402 follow."""
    srv = server()
    me = bare(srv, 'carol')
    c = online(srv, 'carol', 'pep48')
    other = online(srv, 'carol', 'other')
    r = iq(c, "<iq type='set'><pubsub xmlns='%s'><publish node='%s'><item "
           "id='current'><storage xmlns='%s'><conference jid='%s' name='R3' "
           "autojoin='1'><nick>cc</nick></conference></storage></item>"
           "</publish><publish-options><x xmlns='jabber:x:data' "
           "type='submit'><field var='FORM_TYPE' type='hidden'><value>%s"
           "#publish-options</value></field><field var='pubsub#access_model'>"
           "<value>whitelist</value></field></x></publish-options></pubsub>"
           "</iq>" % (NS_PUBSUB, NS_LEGACY, NS_LEGACY, ROOM3, NS_PUBSUB))
    check_ok(r, 'legacy PEP publish')
    want = {ROOM3: ('R3', True, 'cc', None)}
    poll('private XML', lambda: (lambda s: (legacy_confs(s) == want,
                                            legacy_confs(s)))(
        private_get(other)))
    poll('XEP-0402', lambda: (lambda g: (g == want, g))(b2_confs(other, me)))
    c.close()
    other.close()


@suite.test
def converted_nodes_are_private():
    """XEP-0411 §6: what the server copies to PEP only the owner reads,
    even for a contact with a presence subscription."""
    srv = server()
    a = online(srv, 'alice', 'priv')
    b = online(srv, 'bob', 'priv')
    check(b2_confs(a, bare(srv, 'alice')), 'alice has XEP-0402 items')
    for node in (NS_B2, NS_LEGACY):
        r = items(b, bare(srv, 'alice'), node)
        t, cond = stanza_error(r)
        check(cond in ('not-allowed', 'forbidden', 'item-not-found',
                       'not-authorized'),
              'bob reads %s of alice: %s' % (node, tostr(r)))
    a.close()
    b.close()


@suite.test
def first_sync_creates_private_node():
    """dave has no bookmarks anywhere: his first private XML set creates
    urn:xmpp:bookmarks:1 with the private node options."""
    srv = server()
    me = bare(srv, 'dave')
    d = online(srv, 'dave', 'first')
    r = items(d, me, NS_B2)
    t, cond = stanza_error(r)
    check_eq(cond, 'item-not-found', 'no node before')
    private_set(d, "<conference jid='%s'/>" % ROOM2)
    poll('node created', lambda: (lambda g: (g == {ROOM2: (None, False, None,
                                                           None)}, g))(
        b2_confs(d, me)))
    r = iq(d, "<iq type='get'><pubsub xmlns='%s#owner'><configure node='%s'/>"
           "</pubsub></iq>" % (NS_PUBSUB, NS_B2))
    check_ok(r, 'configure get')
    fields = {f.get('var'): f.findtext('{jabber:x:data}value')
              for f in r.iter('{jabber:x:data}field')}
    check_eq(fields.get('pubsub#access_model'), 'whitelist', 'access model')
    check(fields.get('pubsub#max_items') not in (None, '1'),
          'max_items %s' % fields.get('pubsub#max_items'))
    check_eq(fields.get('pubsub#send_last_published_item'), 'never',
             'send_last_published_item')
    d.close()


@suite.test
def migration_at_login():
    """XEP-0411 §5: bookmarks stored in private XML before the module was
    enabled reach urn:xmpp:bookmarks:1 when the user logs in."""
    if pvtest.available_modules(MODULES) != MODULES:
        pvtest.skip('a module of %s is not built' % MODULES)
    srv = suite.server(name='bookmarks-migrate', users={'old': 'old-bm-pw'},
                       modules=[m for m in MODULES if m != 'bookmarks'])
    srv.start()
    c = online(srv, 'old', 'before')
    private_set(c, "<conference jid='%s' name='Old' autojoin='true'><nick>o"
                "</nick></conference>" % ROOM1)
    check_eq(b2_confs(c, bare(srv, 'old')), None, 'no conversion without '
             'the module')
    c.close()
    srv.stop()
    srv.modules = list(MODULES)
    srv.write_config()
    srv.start()
    c = online(srv, 'old', 'after')
    want = {ROOM1: ('Old', True, 'o', None)}
    poll('migrated items', lambda: (lambda g: (g == want, g))(
        b2_confs(c, bare(srv, 'old'))))
    poll('legacy PEP node', lambda: (lambda s: (legacy_confs(s) == want,
                                                s is not None and tostr(s)))(
        legacy_pep(c, bare(srv, 'old'))))
    c.close()


if __name__ == '__main__':
    suite.main()
