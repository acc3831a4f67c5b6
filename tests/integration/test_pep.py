#!/usr/bin/python3
# mod_pep (XEP-0163 over the XEP-0060 subset PEP needs): the account's
# disco identity, publish with auto-create and XEP-0223 publish-options
# (conflict -> precondition-not-met), every access model with an allowed
# and a refused user (retrieval and notification), +notify filtering from
# XEP-0115 caps (two resources whose caps differ, and one whose caps
# hash does not verify), last item on available presence, max_items
# trimming, retract notifications, item size limit, configure/delete,
# items surviving a restart and the rows going with the account; and a
# contact on another server (s2s between two palaverd): notifications,
# last item, expiry retraction and item fetches both ways by address.
# Raw clients answer the server's caps disco#info themselves.

import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
import pvcaps  # noqa: E402
from pvtest import check, check_eq, stanza_error, tostr  # noqa: E402

NS_CLIENT = pvtest.NS_CLIENT
NS_ROSTER = 'jabber:iq:roster'
NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_OWNER = NS_PUBSUB + '#owner'
NS_EVENT = NS_PUBSUB + '#event'
NS_ERRORS = NS_PUBSUB + '#errors'
NS_INFO = 'http://jabber.org/protocol/disco#info'
NS_ITEMS = 'http://jabber.org/protocol/disco#items'
NS_CAPS = 'http://jabber.org/protocol/caps'
IQ = '{%s}iq' % NS_CLIENT
MSG = '{%s}message' % NS_CLIENT
PRES = '{%s}presence' % NS_CLIENT
MODULES = ['disco', 'ping', 'roster', 'presence', 'pep']
NAMES = ('alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gone')
USERS = {u: u + '-pep-pw' for u in NAMES}
CAPS_NODE = 'https://palaver.test/client'
N_OPEN, N_PRES, N_ROSTER, N_WHITE = ('urn:t:open', 'urn:t:presence',
                                     'urn:t:roster', 'urn:t:white')
ALL_NODES = (N_OPEN, N_PRES, N_ROSTER, N_WHITE, 'urn:t:trim', 'urn:t:ret')

suite = pvtest.Suite('pep')


def server():
    if pvtest.available_modules(MODULES) != MODULES:
        pvtest.skip('mod_roster/mod_presence/mod_pep not built')
    srv = suite.shared_server(users=USERS, modules=MODULES,
                              pep_max_item_size='2K')
    if not getattr(srv, 'pep_ready', False):
        setup(srv)
        srv.pep_ready = True
    return srv


def bare(srv, user):
    return '%s@%s' % (user, srv.domain)


# --- XEP-0115 ---------------------------------------------------------------

class Caps(pvcaps.Caps):
    def __init__(self, notify, lie=False):
        super().__init__(notify, name='pep-test', node=CAPS_NODE, lie=lie)


expect = pvcaps.expect
pump = pvcaps.pump


def iq(c, xml, **kw):
    """Sends an IQ (an id added) and returns its answer."""
    return pvcaps.iq(c, xml, prefix='q', **kw)


def sync(c):
    r = iq(c, "<iq type='get' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" %
           c.domain)
    check_eq(r.get('type'), 'result', 'ping')


def online(srv, user, resource, caps=None):
    c = srv.login(user, resource=resource)
    c.caps = caps
    iq(c, "<iq type='get'><query xmlns='%s'/></iq>" % NS_ROSTER)
    c.send('<presence>%s</presence>' % (caps.element() if caps else ''))
    expect(c, lambda e: e.tag == PRES and e.get('from') == c.jid,
           what='own presence')
    sync(c)     # the caps answer, if one was asked for, is processed
    return c


def events(c, node=None):
    """Notifications queued on c (after a round trip), removed."""
    sync(c)
    pump(c)
    out = [e for e in c.pending if e.tag == MSG and
           e.find('{%s}event' % NS_EVENT) is not None and
           (node is None or e.find('.//*[@node="%s"]' % node) is not None)]
    for e in out:
        c.pending.remove(e)
    return out


def event_of(c, node, what):
    return expect(c, lambda e: e.tag == MSG and
                  e.find('{%s}event/{%s}items[@node="%s"]' %
                         (NS_EVENT, NS_EVENT, node)) is not None,
                  what=what)


def publish_options(opts):
    if not opts:
        return ''
    fields = "<field var='FORM_TYPE' type='hidden'><value>%s#publish-" \
             "options</value></field>" % NS_PUBSUB
    for k, v in opts.items():
        fields += "<field var='pubsub#%s'><value>%s</value></field>" % (k, v)
    return ("<publish-options><x xmlns='jabber:x:data' type='submit'>%s</x>"
            "</publish-options>" % fields)


def publish(c, node, item_id, text, opts=None, payload=None):
    payload = payload or "<entry xmlns='urn:t'>%s</entry>" % text
    return iq(c, "<iq type='set'><pubsub xmlns='%s'><publish node='%s'>"
              "<item id='%s'>%s</item></publish>%s</pubsub></iq>" %
              (NS_PUBSUB, node, item_id, payload, publish_options(opts)))


def items(c, owner, node, extra='', inner=''):
    return iq(c, "<iq type='get' to='%s'><pubsub xmlns='%s'><items node='%s'"
              "%s>%s</items></pubsub></iq>" % (owner, NS_PUBSUB, node, extra,
                                                inner))


def item_ids(r):
    check_eq(r.get('type'), 'result', 'items answer %s' % tostr(r))
    return [i.get('id') for i in r.iter('{%s}item' % NS_PUBSUB)]


def check_ok(r, what):
    check(r.get('type') == 'result', '%s: %s' % (what, tostr(r)))


def check_err(r, cond, app, what):
    t, c = stanza_error(r)
    check_eq(c, cond, what + ' condition (%s)' % tostr(r))
    if app is not None:
        check(r.find('{%s}error/{%s}%s' % (NS_CLIENT, NS_ERRORS, app))
              is not None, '%s: no <%s/> in %s' % (what, app, tostr(r)))


def subscribe(srv, a, b, ua, ub):
    """a (ua) subscribes to b's (ub) presence and b approves."""
    a.send("<presence to='%s' type='subscribe'/>" % bare(srv, ub))
    expect(b, lambda e: e.tag == PRES and e.get('type') == 'subscribe',
           what='subscribe request')
    b.send("<presence to='%s' type='subscribed'/>" % bare(srv, ua))
    expect(a, lambda e: e.tag == PRES and e.get('type') == 'subscribed',
           what='subscribed')


def setup(srv):
    """alice's roster: bob (group friends) and carol (group other), both
    subscribed to her presence; dave and erin are strangers; alice's
    nodes: one per access model, erin whitelisted."""
    alice = online(srv, 'alice', 'setup')
    for who, group in (('bob', 'friends'), ('carol', 'other')):
        r = iq(alice, "<iq type='set'><query xmlns='%s'><item jid='%s'>"
               "<group>%s</group></item></query></iq>" %
               (NS_ROSTER, bare(srv, who), group))
        check_ok(r, 'roster set')
        c = online(srv, who, 'setup')
        subscribe(srv, c, alice, who, 'alice')
        c.close()
    for node, model in ((N_OPEN, 'open'), (N_PRES, 'presence'),
                        (N_ROSTER, 'roster'), (N_WHITE, 'whitelist')):
        opts = {'access_model': model}
        if model == 'roster':
            opts['roster_groups_allowed'] = 'friends'
        check_ok(publish(alice, node, 'first', model, opts), 'publish')
    r = iq(alice, "<iq type='set'><pubsub xmlns='%s'><affiliations "
           "node='%s'><affiliation jid='%s' affiliation='member'/>"
           "</affiliations></pubsub></iq>" % (NS_OWNER, N_WHITE,
                                               bare(srv, 'erin')))
    check_ok(r, 'whitelist erin')
    alice.close()


# --- tests ------------------------------------------------------------------

@suite.test
def account_disco():
    srv = server()
    bob = online(srv, 'bob', 'disco')
    r = iq(bob, "<iq type='get' to='%s'><query xmlns='%s'/></iq>" %
           (bare(srv, 'alice'), NS_INFO))
    check_ok(r, 'disco#info')
    q = r.find('{%s}query' % NS_INFO)
    ids = [(i.get('category'), i.get('type')) for i in q.findall(
        '{%s}identity' % NS_INFO)]
    check(('pubsub', 'pep') in ids, 'no pubsub/pep identity: %s' % ids)
    check(('account', 'registered') in ids, 'mod_disco identity lost')
    feats = {f.get('var') for f in q.findall('{%s}feature' % NS_INFO)}
    for f in ('#publish', '#publish-options', '#access-whitelist',
              '#auto-create', '#persistent-items', '#retrieve-items'):
        check(NS_PUBSUB + f in feats, 'feature %s missing' % f)
    # disco#items: the nodes bob may see (not the whitelist one)
    r = iq(bob, "<iq type='get' to='%s'><query xmlns='%s'/></iq>" %
           (bare(srv, 'alice'), NS_ITEMS))
    nodes = {i.get('node') for i in r.iter('{%s}item' % NS_ITEMS)}
    check({N_OPEN, N_PRES, N_ROSTER} <= nodes and N_WHITE not in nodes,
          'disco#items for bob: %s' % nodes)
    r = iq(bob, "<iq type='get' to='%s'><query xmlns='%s' node='%s'/></iq>"
           % (bare(srv, 'alice'), NS_INFO, N_PRES))
    check(r.find('.//{%s}identity[@type="leaf"]' % NS_INFO) is not None,
          'node disco#info: %s' % tostr(r))
    bob.close()


@suite.test
def access_models():
    srv = server()
    alice = bare(srv, 'alice')
    cl = {u: online(srv, u, 'acc') for u in ('bob', 'carol', 'dave', 'erin')}
    # open: a stranger reads
    check_eq(item_ids(items(cl['dave'], alice, N_OPEN)), ['first'], 'open')
    # presence: subscriber yes, stranger no
    check_eq(item_ids(items(cl['bob'], alice, N_PRES)), ['first'],
             'presence/bob')
    check_err(items(cl['dave'], alice, N_PRES), 'not-authorized',
              'presence-subscription-required', 'presence/dave')
    # roster: group 'friends' yes, group 'other' no
    check_eq(item_ids(items(cl['bob'], alice, N_ROSTER)), ['first'],
             'roster/bob')
    check_err(items(cl['carol'], alice, N_ROSTER), 'not-authorized',
              'not-in-roster-group', 'roster/carol')
    # whitelist: member yes, subscriber not listed no
    check_eq(item_ids(items(cl['erin'], alice, N_WHITE)), ['first'],
             'whitelist/erin')
    check_err(items(cl['bob'], alice, N_WHITE), 'not-allowed',
              'closed-node', 'whitelist/bob')
    # nobody but the owner publishes
    r = iq(cl['bob'], "<iq type='set' to='%s'><pubsub xmlns='%s'><publish "
           "node='%s'><item id='x'><e xmlns='urn:t'/></item></publish>"
           "</pubsub></iq>" % (alice, NS_PUBSUB, N_OPEN))
    check_err(r, 'forbidden', None, 'publish by bob')
    for c in cl.values():
        c.close()


@suite.test
def notify_filtering():
    srv = server()
    want = Caps([N_OPEN, N_PRES, N_ROSTER, N_WHITE, 'urn:t:ret'])
    none = Caps(['urn:t:unrelated'])
    liar = Caps([N_OPEN, N_PRES, N_ROSTER, N_WHITE], lie=True)
    b1 = online(srv, 'bob', 'b1', want)
    check_eq(getattr(b1, 'n_caps_queries', 0), 1, 'caps queries for b1')
    b2 = online(srv, 'bob', 'b2', none)
    b3 = online(srv, 'bob', 'b3', liar)
    carol = online(srv, 'carol', 'c1', want)
    check_eq(getattr(carol, 'n_caps_queries', 0), 0,
             'caps hash asked again (must be cached per hash)')
    dave = online(srv, 'dave', 'd1', want)
    erin = online(srv, 'erin', 'e1', want)
    alice = online(srv, 'alice', 'a1', want)
    for c in (b1, b2, b3, carol, dave, erin, alice):
        events(c)        # last items sent on presence: not this test's
    check_ok(publish(alice, N_PRES, 'p2', 'hello'), 'publish')
    ev = event_of(b1, N_PRES, 'notification on b1')
    check_eq(ev.get('from'), bare(srv, 'alice'), 'notification from')
    check_eq(ev.get('type'), 'headline', 'notification type')
    it = ev.find('.//{%s}item' % NS_EVENT)
    check(it is not None and it.get('id') == 'p2' and
          it.find('{urn:t}entry').text == 'hello', tostr(ev))
    event_of(alice, N_PRES, 'notification on the owner')
    event_of(carol, N_PRES, 'notification on carol (presence model)')
    check_eq(events(b2), [], 'b2 (no +notify) notified')
    check_eq(events(b3), [], 'b3 (unverified caps) notified')
    check_eq(events(dave), [], 'dave (stranger) notified')
    # roster model: bob's group only
    check_ok(publish(alice, N_ROSTER, 'r2', 'friends only'), 'publish')
    event_of(b1, N_ROSTER, 'roster notification on b1')
    check_eq(events(carol, N_ROSTER), [], 'carol notified on roster node')
    # whitelist: erin is no presence subscriber, bob is not a member
    check_ok(publish(alice, N_WHITE, 'w2', 'members only'), 'publish')
    check_eq(events(b1, N_WHITE), [], 'bob notified on whitelist node')
    check_eq(events(dave, N_WHITE), [], 'dave notified on whitelist node')
    # open: presence subscribers, never strangers (XEP-0163 §4)
    check_ok(publish(alice, N_OPEN, 'o2', 'open'), 'publish')
    event_of(b1, N_OPEN, 'open notification on b1')
    check_eq(events(dave, N_OPEN), [], 'dave notified on open node')
    # a new resource with +notify gets the last item on presence
    b4 = online(srv, 'bob', 'b4', want)
    ev = event_of(b4, N_PRES, 'last item on available presence')
    check_eq(ev.find('.//{%s}item' % NS_EVENT).get('id'), 'p2',
             'last item id')
    check_eq(events(b4, N_WHITE), [], 'last item of a refused node')
    for c in (b1, b2, b3, b4, carol, dave, erin, alice):
        c.close()


@suite.test
def last_item_on_subscription():
    srv = server()
    want = Caps([N_OPEN, N_PRES, N_ROSTER, N_WHITE])
    frank = online(srv, 'frank', 'f1', want)
    events(frank)
    check_eq(events(frank, N_PRES), [], 'presence node before approval')
    alice = online(srv, 'alice', 'sub')
    subscribe(srv, frank, alice, 'frank', 'alice')
    event_of(frank, N_PRES, 'last item on subscription approval')
    check_eq(events(frank, N_ROSTER), [], 'roster node (not in the group)')
    check_eq(events(frank, N_WHITE), [], 'whitelist node (not a member)')
    frank.close()
    alice.close()


@suite.test
def publish_options_conflict():
    srv = server()
    alice = online(srv, 'alice', 'po')
    r = publish(alice, N_PRES, 'c1', 'x', {'access_model': 'open'})
    check_err(r, 'conflict', 'precondition-not-met', 'publish-options')
    check_eq(stanza_error(r)[0], 'cancel', 'error type')
    # matching options publish
    check_ok(publish(alice, N_PRES, 'c2', 'x', {'access_model': 'presence'}),
             'matching publish-options')
    # the node's configuration is unchanged
    r = iq(alice, "<iq type='get'><pubsub xmlns='%s'><configure node='%s'/>"
           "</pubsub></iq>" % (NS_OWNER, N_PRES))
    f = r.find('.//{jabber:x:data}field[@var="pubsub#access_model"]')
    check_eq(f.find('{jabber:x:data}value').text, 'presence', 'config')
    alice.close()


@suite.test
def max_items_trimming():
    srv = server()
    alice = online(srv, 'alice', 'trim')
    for i in range(1, 5):
        check_ok(publish(alice, 'urn:t:trim', 'i%d' % i, 'n%d' % i,
                         {'max_items': '3'}), 'publish %d' % i)
    check_eq(item_ids(items(alice, bare(srv, 'alice'), 'urn:t:trim')),
             ['i2', 'i3', 'i4'], 'items after trimming')
    check_eq(item_ids(items(alice, bare(srv, 'alice'), 'urn:t:trim',
                            " max_items='2'")), ['i3', 'i4'], 'max_items=2')
    check_eq(item_ids(items(alice, bare(srv, 'alice'), 'urn:t:trim', '',
                            "<item id='i1'/><item id='i3'/>")), ['i3'],
             'items by id')
    # republishing an id moves it to the end
    check_ok(publish(alice, 'urn:t:trim', 'i2', 'again'), 'republish')
    check_eq(item_ids(items(alice, bare(srv, 'alice'), 'urn:t:trim')),
             ['i3', 'i4', 'i2'], 'order after republish')
    # lowering max_items through configure trims at once
    r = iq(alice, "<iq type='set'><pubsub xmlns='%s'><configure node='%s'>"
           "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' "
           "type='hidden'><value>%s#node_config</value></field><field "
           "var='pubsub#max_items'><value>1</value></field></x></configure>"
           "</pubsub></iq>" % (NS_OWNER, 'urn:t:trim', NS_PUBSUB))
    check_ok(r, 'configure')
    check_eq(item_ids(items(alice, bare(srv, 'alice'), 'urn:t:trim')),
             ['i2'], 'items after configure')
    # the node keeps max_items=1: a 'max' precondition does not hold
    check_err(publish(alice, 'urn:t:trim', 'i5', 'x', {'max_items': 'max'}),
              'conflict', 'precondition-not-met', 'max_items=max vs 1')
    # 'max' on a new node maps to pep_max_items
    for i in range(1, 6):
        check_ok(publish(alice, 'urn:t:max', 'm%d' % i, 'x',
                         {'max_items': 'max'}), 'publish max_items=max')
    check_eq(len(item_ids(items(alice, bare(srv, 'alice'), 'urn:t:max'))),
             5, "items of a 'max' node")
    r = iq(alice, "<iq type='set'><pubsub xmlns='%s'><publish node='%s'>"
           "<item id='big'><e xmlns='urn:t'/></item></publish>%s</pubsub>"
           "</iq>" % (NS_PUBSUB, 'urn:t:new', publish_options(
               {'max_items': '100000'})))
    check_err(r, 'conflict', 'precondition-not-met', 'max_items over cap')
    alice.close()


@suite.test
def retract_notifies():
    srv = server()
    want = Caps([N_OPEN, N_PRES, N_ROSTER, N_WHITE, 'urn:t:ret'])
    alice = online(srv, 'alice', 'ret')
    check_ok(publish(alice, 'urn:t:ret', 'r1', 'x', {'max_items': '5',
                                                      'access_model': 'open'}),
             'publish')
    check_ok(publish(alice, 'urn:t:ret', 'r2', 'y'), 'publish')
    bob = online(srv, 'bob', 'ret', want)
    events(bob)
    r = iq(alice, "<iq type='set'><pubsub xmlns='%s'><retract node='%s' "
           "notify='true'><item id='r1'/></retract></pubsub></iq>" %
           (NS_PUBSUB, 'urn:t:ret'))
    check_ok(r, 'retract')
    ev = event_of(bob, 'urn:t:ret', 'retraction')
    ret = ev.find('.//{%s}retract' % NS_EVENT)
    check(ret is not None and ret.get('id') == 'r1', tostr(ev))
    check_eq(item_ids(items(bob, bare(srv, 'alice'), 'urn:t:ret')), ['r2'],
             'items after retract')
    r = iq(alice, "<iq type='set'><pubsub xmlns='%s'><retract node='%s'>"
           "<item id='nope'/></retract></pubsub></iq>" %
           (NS_PUBSUB, 'urn:t:ret'))
    check_err(r, 'item-not-found', None, 'retract unknown id')
    alice.close()
    bob.close()


@suite.test
def item_size_limit():
    srv = server()
    alice = online(srv, 'alice', 'size')
    r = publish(alice, 'urn:t:big', 'b', None,
                payload="<data xmlns='urn:t'>%s</data>" % ('A' * 4096))
    check_err(r, 'not-acceptable', 'payload-too-big', 'item size')
    r = items(alice, bare(srv, 'alice'), 'urn:t:big')
    check_err(r, 'item-not-found', None, 'no node after a refused publish')
    check_ok(publish(alice, 'urn:t:big', 'b', None,
                     payload="<data xmlns='urn:t'>%s</data>" % ('A' * 1024)),
             'publish under the limit')
    alice.close()


@suite.test
def create_delete_purge():
    srv = server()
    alice = online(srv, 'alice', 'del')
    r = iq(alice, "<iq type='set'><pubsub xmlns='%s'><create node='urn:t:c'"
           "/></pubsub></iq>" % NS_PUBSUB)
    check_ok(r, 'create')
    r = iq(alice, "<iq type='set'><pubsub xmlns='%s'><create node='urn:t:c'"
           "/></pubsub></iq>" % NS_PUBSUB)
    check_err(r, 'conflict', None, 'create twice')
    check_ok(publish(alice, 'urn:t:c', 'a', 'x'), 'publish')
    r = iq(alice, "<iq type='set'><pubsub xmlns='%s'><purge node='urn:t:c'/>"
           "</pubsub></iq>" % NS_OWNER)
    check_ok(r, 'purge')
    check_eq(item_ids(items(alice, bare(srv, 'alice'), 'urn:t:c')), [],
             'items after purge')
    r = iq(alice, "<iq type='set'><pubsub xmlns='%s'><delete node='urn:t:c'"
           "/></pubsub></iq>" % NS_OWNER)
    check_ok(r, 'delete')
    check_err(items(alice, bare(srv, 'alice'), 'urn:t:c'), 'item-not-found',
              None, 'items of a deleted node')
    r = iq(alice, "<iq type='get'><pubsub xmlns='%s'><default/></pubsub>"
           "</iq>" % NS_OWNER)
    check(r.find('.//{jabber:x:data}field[@var="pubsub#access_model"]')
          is not None, 'default config form: %s' % tostr(r))
    r = iq(alice, "<iq type='set'><pubsub xmlns='%s'><subscribe node='%s' "
           "jid='%s'/></pubsub></iq>" % (NS_PUBSUB, N_OPEN, alice.jid))
    check_err(r, 'feature-not-implemented', 'unsupported', 'subscribe')
    alice.close()


@suite.test
def survives_restart():
    srv = server()
    alice = online(srv, 'alice', 'rs')
    check_ok(publish(alice, 'urn:t:keep', 'k1', 'one', {'max_items': '4'}),
             'publish')
    check_ok(publish(alice, 'urn:t:keep', 'k2', 'two'), 'publish')
    alice.close()
    srv.restart()
    bob = online(srv, 'bob', 'rs')
    r = items(bob, bare(srv, 'alice'), 'urn:t:keep')
    check_eq(item_ids(r), ['k1', 'k2'], 'items after restart')
    check_eq([e.text for e in r.iter('{urn:t}entry')], ['one', 'two'],
             'payloads after restart')
    dave = online(srv, 'dave', 'rs')
    check_err(items(dave, bare(srv, 'alice'), N_PRES), 'not-authorized',
              'presence-subscription-required', 'access model after restart')
    bob.close()
    dave.close()


@suite.test
def rows_go_with_account():
    srv = server()
    c = online(srv, 'gone', 'x')
    check_ok(publish(c, 'urn:t:g', 'g1', 'bye'), 'publish')
    c.close()
    keys = pvtest.store_keys(srv, 'pep.items')
    check(any(k[:2] == ('localhost', 'gone') for k in keys),
          'no pep.items row for gone: %s' % keys)
    check(('localhost', 'gone', 'urn:t:g') in
          pvtest.store_keys(srv, 'pep.nodes'), 'no pep.nodes row')
    srv.ctl('deluser', bare(srv, 'gone'))
    for db in ('pep.items', 'pep.nodes'):
        left = [k for k in pvtest.store_keys(srv, db)
                if k[:2] == ('localhost', 'gone')]
        check_eq(left, [], '%s rows after deluser' % db)
    check(any(k[:2] == ('localhost', 'alice')
              for k in pvtest.store_keys(srv, 'pep.nodes')),
          "alice's rows went too")


# --- federation (session 3: replies and notifications by address) ------------

FED_A, FED_B = 'pa.example', 'pb.example'
FED_ADDR = {FED_A: '127.0.0.40', FED_B: '127.0.0.41'}
FED_PW = 'fed-pep-pw'


def fed_pair():
    """Two palaverd with mod_pep federating over s2s on their own loopback
    addresses (tests/integration/s2s_helpers.py)."""
    import atexit
    import shutil
    import tempfile
    import s2s_helpers
    mods = s2s_helpers.s2s_modules() + ['pep']
    if pvtest.available_modules(mods) != mods:
        pvtest.skip('roster/presence/pep not built')
    ca = tempfile.mkdtemp(prefix='pvtest-pep-ca-')
    atexit.register(shutil.rmtree, ca, True)
    pvtest.make_ca(ca)
    srvs = []
    for dom, other, users in ((FED_A, FED_B, ('alice', 'dave')),
                              (FED_B, FED_A, ('bob', 'tom'))):
        srv = s2s_helpers.PalaverPeer(suite, dom, FED_ADDR[dom], ca,
                                      {other: FED_ADDR[other]},
                                      {u: FED_PW for u in users})
        srv.modules = mods
        srv.write_config()
        srvs.append(srv)
    for srv in srvs:
        srv.start()
    return srvs


def fed_subscribe(x, xj, y, yj):
    x.send("<presence type='subscribe' to='%s'/>" % yj)
    expect(y, lambda e: e.tag == PRES and e.get('type') == 'subscribe',
           timeout=10 * pvtest.time_factor(), what='subscribe from ' + xj)
    y.send("<presence type='subscribed' to='%s'/>" % xj)
    expect(x, lambda e: e.tag == PRES and e.get('type') == 'subscribed' and
           e.get('from', '').split('/')[0] == yj,
           timeout=10 * pvtest.time_factor(), what='subscribed from ' + yj)


@suite.test
def federated_contacts():
    """A contact on another server gets notifications (also the last item
    on presence and an expiry retraction) and fetches items by s2s; a
    stranger there is refused; the other direction fetches too."""
    a, b = fed_pair()
    tf = pvtest.time_factor()
    want = Caps(['urn:t:fed', 'urn:t:fedx'])
    alice = a.login('alice', FED_PW, resource='fa')
    alice.caps = None
    alice.send('<presence/>')
    check_ok(publish(alice, 'urn:t:fed', 'f1', 'before'), 'publish f1')
    bob = b.login('bob', FED_PW, resource='fb')
    bob.caps = want
    bob.send('<presence/>')
    fed_subscribe(bob, 'bob@' + FED_B, alice, 'alice@' + FED_A)
    fed_subscribe(alice, 'alice@' + FED_A, bob, 'bob@' + FED_B)
    # bob's presence (with caps) now reaches pa.example, which asks bob's
    # client for its features across s2s and then sends the last item
    bob.send('<presence>%s</presence>' % want.element())
    ev = expect(bob, lambda e: e.tag == MSG and e.find(
        './/{%s}items[@node="urn:t:fed"]' % NS_EVENT) is not None,
        timeout=15 * tf, what='last item from pa.example')
    check_eq(ev.get('from'), 'alice@' + FED_A, 'from of the remote event')
    check_eq(ev.find('.//{%s}item' % NS_EVENT).get('id'), 'f1', 'last item')
    check(getattr(bob, 'n_caps_queries', 0) >= 1, 'no caps query over s2s')
    # items by s2s: answered to the remote full JID
    r = iq(bob, "<iq type='get' to='alice@%s'><pubsub xmlns='%s'><items "
           "node='urn:t:fed'/></pubsub></iq>" % (FED_A, NS_PUBSUB),
           timeout=10 * tf)
    check_eq(item_ids(r), ['f1'], 'remote fetch')
    tom = b.login('tom', FED_PW, resource='ft')
    check_err(iq(tom, "<iq type='get' to='alice@%s'><pubsub xmlns='%s'>"
                 "<items node='urn:t:fed'/></pubsub></iq>" %
                 (FED_A, NS_PUBSUB), timeout=10 * tf),
              'not-authorized', 'presence-subscription-required',
              'remote stranger')
    # a publish is notified over s2s
    check_ok(publish(alice, 'urn:t:fed', 'f2', 'live'), 'publish f2')
    ev = expect(bob, lambda e: e.tag == MSG and e.find(
        './/{%s}item[@id="f2"]' % NS_EVENT) is not None, timeout=10 * tf,
        what='remote notification')
    check_eq(ev.find('.//{urn:t}entry').text, 'live', 'payload')
    # an expiring item: the retraction crosses s2s too
    check_ok(publish(alice, 'urn:t:fedx', 'x1', 'short',
                     {'item_expire': '2'}), 'publish x1')
    expect(bob, lambda e: e.tag == MSG and e.find(
        './/{%s}item[@id="x1"]' % NS_EVENT) is not None, timeout=10 * tf,
        what='x1 notification')
    expect(bob, lambda e: e.tag == MSG and e.find(
        './/{%s}retract[@id="x1"]' % NS_EVENT) is not None,
        timeout=10 * tf, what='x1 expiry retraction')
    check_eq(events(tom), [], 'stranger notified')
    # the other direction: a local user fetches a remote account's items
    check_ok(publish(bob, 'urn:t:fb', 'b1', 'from b'), 'bob publishes')
    r = iq(alice, "<iq type='get' to='bob@%s'><pubsub xmlns='%s'><items "
           "node='urn:t:fb'/></pubsub></iq>" % (FED_B, NS_PUBSUB),
           timeout=10 * tf)
    check_eq(item_ids(r), ['b1'], 'fetch from the remote account')
    for c in (alice, bob, tom):
        c.close()


if __name__ == '__main__':
    suite.main()
