#!/usr/bin/python3
# Real end-to-end encryption over Palaver (issue 5): clients built on
# python3-omemo with both backends, oldmemo (eu.siacs.conversations.axolotl)
# and twomemo (urn:xmpp:omemo:2), through omemo_glue.py's SessionManager
# over slixmpp's XEP-0060. They publish device lists and bundles in PEP
# with the publish-options XEP-0384 asks for (reconfiguring nodes that
# exist with other settings), learn a contact's device list from the
# +notify notification, fetch a stranger's bundles (open access model),
# build sessions and exchange encrypted messages online and to an offline
# recipient (offline storage); the receiver decrypts the original text.
# A second device of the sender joins the device list and decrypts its
# carbon copies. The <encrypted/> elements must arrive and be archived
# (MAM) untouched.

import asyncio
import logging
import os
import secrets
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'harness'))
sys.path.insert(0, HERE)
import pvtest  # noqa: E402
from pvtest import check, check_eq, tostr  # noqa: E402

try:
    import omemo_glue as glue
    from omemo_glue import NS_OLD, NS_TWO
    IMPORT_ERROR = None
except ImportError as e:            # python3-omemo & co. not installed
    glue = None
    NS_OLD, NS_TWO = ('eu.siacs.conversations.axolotl', 'urn:xmpp:omemo:2')
    IMPORT_ERROR = e

NS_CLIENT = pvtest.NS_CLIENT
NS_ROSTER = 'jabber:iq:roster'
NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_OWNER = NS_PUBSUB + '#owner'
NS_MAM = 'urn:xmpp:mam:2'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_FWD = 'urn:xmpp:forward:0'
NS_DATA = 'jabber:x:data'
IQ = '{%s}iq' % NS_CLIENT
PRES = '{%s}presence' % NS_CLIENT
MODULES = ['disco', 'ping', 'roster', 'presence', 'offline', 'mam',
           'carbons', 'pep']
NAMES = ('alice', 'bob', 'carol', 'eve')
USERS = {u: u + '-omemo-pw' for u in NAMES}
NSS = ((NS_OLD, 'axolotl'), (NS_TWO, 'omemo2'))

# python-omemo warns about expected first-run events (own device not yet
# in the device list); the test asserts on what matters
logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

suite = pvtest.Suite('omemo')
state = {'storage': {}, 'clients': {}}
_loop = []


def T(seconds):
    return seconds * pvtest.time_factor()


def loop():
    if not _loop:
        lp = asyncio.new_event_loop()
        asyncio.set_event_loop(lp)
        _loop.append(lp)
    return _loop[0]


def run(coro, timeout=30):
    """Runs a coroutine on the clients' event loop; a timeout fails."""
    try:
        return loop().run_until_complete(asyncio.wait_for(coro, T(timeout)))
    except glue.WaitFailed as e:
        pvtest.fail(str(e))
    except asyncio.TimeoutError:
        pvtest.fail('timed out after %.0fs' % T(timeout))


def server():
    if glue is None:
        pvtest.skip('OMEMO libraries missing (python3-omemo, -oldmemo, '
                    '-twomemo, -xmlschema, -slixmpp): %s' % IMPORT_ERROR)
    if pvtest.available_modules(MODULES) != MODULES:
        pvtest.skip('needs modules %s' % ', '.join(MODULES))
    srv = suite.shared_server(users=USERS, modules=MODULES)
    if not getattr(srv, 'omemo_ready', False):
        contacts(srv, 'alice', 'bob')
        srv.omemo_ready = True
    return srv


def bare(srv, user):
    return '%s@%s' % (user, srv.domain)


# --- raw clients: roster setup and server-side checks -----------------------

_ids = [0]


def iq(c, xml):
    _ids[0] += 1
    return c.iq(xml.replace('<iq ', "<iq id='o%d' " % _ids[0], 1))


def raw(srv, user, presence=False):
    c = srv.login(user, resource='raw-%s' % secrets.token_hex(3))
    if presence:
        iq(c, "<iq type='get'><query xmlns='%s'/></iq>" % NS_ROSTER)
        c.send('<presence/>')
        c.recv_until(lambda e: e.tag == PRES and e.get('from') == c.jid,
                     what='own presence')
    return c


def contacts(srv, a, b):
    """a and b: roster items with a mutual presence subscription."""
    ca, cb = raw(srv, a, True), raw(srv, b, True)
    for x, cx, y, cy in ((a, ca, b, cb), (b, cb, a, ca)):
        cx.send("<presence to='%s' type='subscribe'/>" % bare(srv, y))
        cy.recv_until(lambda e: e.tag == PRES and
                      e.get('type') == 'subscribe', what='subscribe')
        cy.send("<presence to='%s' type='subscribed'/>" % bare(srv, x))
        cx.recv_until(lambda e: e.tag == PRES and
                      e.get('type') == 'subscribed', what='subscribed')
    for c, other in ((ca, b), (cb, a)):
        r = iq(c, "<iq type='get'><query xmlns='%s'/></iq>" % NS_ROSTER)
        item = r.find('.//{%s}item[@jid="%s"]' % (NS_ROSTER,
                                                  bare(srv, other)))
        check(item is not None and item.get('subscription') == 'both',
              'roster of %s: %s' % (c.jid, tostr(r)))
    ca.close()
    cb.close()


def items(c, owner, node, item_id=None):
    inner = "<item id='%s'/>" % item_id if item_id else ''
    return iq(c, "<iq type='get' to='%s'><pubsub xmlns='%s'><items "
              "node='%s'>%s</items></pubsub></iq>" % (owner, NS_PUBSUB,
                                                      node, inner))


def item_payloads(r, what):
    check(r.get('type') == 'result', '%s: %s' % (what, tostr(r)))
    return [list(it)[0] for it in r.iter('{%s}item' % NS_PUBSUB)
            if len(it)]


def node_config(c, node):
    r = iq(c, "<iq type='get'><pubsub xmlns='%s'><configure node='%s'/>"
           "</pubsub></iq>" % (NS_OWNER, node))
    check(r.get('type') == 'result', 'configure %s: %s' % (node, tostr(r)))
    out = {}
    for f in r.iter('{%s}field' % NS_DATA):
        out[f.get('var')] = f.findtext('{%s}value' % NS_DATA)
    return out


def mam(c):
    """The whole archive of c's account: [(stanza-id, message)]."""
    _ids[0] += 1
    qid, iq_id = 'oq%d' % _ids[0], 'om%d' % _ids[0]
    c.send("<iq type='set' id='%s'><query xmlns='%s' queryid='%s'><set "
           "xmlns='%s'><max>200</max></set></query></iq>" %
           (iq_id, NS_MAM, qid, NS_RSM))
    out = []
    while True:
        el = c.recv()
        if el.tag == IQ and el.get('id') == iq_id:
            check(el.get('type') == 'result', 'MAM query: %s' % tostr(el))
            return out
        r = el.find('{%s}result' % NS_MAM)
        if r is None or r.get('queryid') != qid:
            continue
        m = r.find('{%s}forwarded/{%s}message' % (NS_FWD, NS_CLIENT))
        check(m is not None, 'MAM result without message: %s' % tostr(el))
        out.append((r.get('id'), m))


# --- OMEMO clients ---------------------------------------------------------

async def connect(srv, user, device='omemo', presence=True):
    """One OMEMO device of user (resource `device`; the same device on
    every call: its storage is kept), logged in, both backends ready.
    """
    key = '%s/%s' % (user, device)
    storage = state['storage'].setdefault(key, glue.MemoryStorage())
    c = glue.OmemoClient('%s/%s' % (bare(srv, user), device), USERS[user],
                         srv.cafile, storage, timeout=T(10),
                         presence=presence)
    await c.start(srv.host('c2s'), srv.port('c2s'))
    state['clients'][key] = c
    if presence:
        # the owner gets the last item of its own device lists once the
        # server has its caps (+notify): only then may a test expect
        # notifications on this resource
        for ns, _ in NSS:
            await c.wait_for(
                lambda: any(n['from'] == c.bare and n['ns'] == ns and
                            c.device_id in n['ids']
                            for n in c.notifications),
                T(10), 'own %s device list (last item on presence)' % ns)
    return c


async def disconnect(user, device='omemo'):
    c = state['clients'].pop('%s/%s' % (user, device), None)
    if c is not None:
        await c.stop()


def client(user, device='omemo'):
    c = state['clients'].get('%s/%s' % (user, device))
    if c is None:
        pvtest.skip('%s is not connected (an earlier test failed)' % user)
    return c


def check_clean(*cs):
    for c in cs:
        check_eq(c.errors, [], 'errors on %s' % c.boundjid)


def text_for(tag):
    return 'secret %s %s \u00e9\u00e8 <&>' % (tag, secrets.token_hex(6))


async def exchange(a, b, ns, tag, refresh):
    """a encrypts a fresh text to b in ns; b must decrypt it, and the
    <encrypted/> it got must be the one a sent."""
    text = text_for(tag)
    n = len(b.received)
    sent, mid = await a.encrypt_to(b.bare, text, ns, refresh=refresh)
    await b.wait_for(lambda: any(r['id'] == mid for r in b.received[n:]),
                     T(15), '%s message %s' % (ns, tag))
    got = [r for r in b.received[n:] if r['id'] == mid][0]
    check_eq(got['text'], text, '%s decrypted by %s' % (tag, b.bare))
    check_eq((got['ns'], got['from']), (ns, a.bare), tag + ' sender')
    check(glue.same_element(got['element'], sent),
          '%s: <encrypted/> changed in transit:\nsent %s\ngot  %s' %
          (tag, tostr(sent), tostr(got['element'])))
    return got


# --- tests ----------------------------------------------------------------

@suite.test
def device_lists_and_bundles():
    """bob is online with +notify when alice's device first publishes: he
    gets her device lists (both namespaces) as a contact; the nodes carry
    the requested access model; eve, who has no subscription, fetches
    alice's device lists and bundles (open access) and they parse."""
    srv = server()

    async def go():
        bob = await connect(srv, 'bob')
        alice = await connect(srv, 'alice')
        for ns, _ in NSS:
            await bob.wait_for(
                lambda: any(n['from'] == alice.bare and n['ns'] == ns and
                            alice.device_id in n['ids']
                            for n in bob.notifications),
                T(10), '%s device list notification from alice' % ns)
        return alice, bob
    alice, bob = run(go())
    check_clean(alice, bob)
    info = run(alice.sm.get_own_device_information())[0]
    dev = alice.device_id
    # eve: a stranger to alice, no presence subscription either way
    eve = raw(srv, 'eve')
    a = bare(srv, 'alice')
    for ns, mod in ((NS_OLD, glue.oldmemo.etree),
                    (NS_TWO, glue.twomemo.etree)):
        pl = item_payloads(items(eve, a, glue.DEVICELIST_NODE[ns]),
                           '%s device list by eve' % ns)
        check_eq(len(pl), 1, '%s device list items' % ns)
        check(dev in mod.parse_device_list(pl[0]),
              '%s device list lacks %d: %s' % (ns, dev, tostr(pl[0])))
        if ns == NS_OLD:
            r = items(eve, a, glue.OLD_BUNDLE_NODE % dev)
        else:
            r = items(eve, a, glue.TWO_BUNDLE_NODE, str(dev))
        pl = item_payloads(r, '%s bundle by eve' % ns)
        check_eq(len(pl), 1, '%s bundle items' % ns)
        b = mod.parse_bundle(pl[0], a, dev)
        check_eq(b.identity_key, info.identity_key,
                 '%s bundle identity key' % ns)
    eve.close()
    # the publish-options took effect (XEP-0384: open device lists and
    # bundles; OMEMO 2 keeps one bundle item per device)
    owner = raw(srv, 'alice')
    for node in (glue.DEVICELIST_NODE[NS_OLD], glue.OLD_BUNDLE_NODE % dev,
                 glue.DEVICELIST_NODE[NS_TWO], glue.TWO_BUNDLE_NODE):
        cfg = node_config(owner, node)
        check_eq(cfg.get('pubsub#access_model'), 'open',
                 'access model of ' + node)
    mx = node_config(owner, glue.TWO_BUNDLE_NODE).get('pubsub#max_items')
    check(mx is not None and (mx == 'max' or int(mx) > 1),
          'max_items of the OMEMO 2 bundles node: %s' % mx)
    owner.close()


@suite.test
def online_exchange_axolotl():
    online_exchange(NS_OLD, 'axolotl')


@suite.test
def online_exchange_omemo2():
    online_exchange(NS_TWO, 'omemo2')


def online_exchange(ns, tag):
    """Both online: alice opens the session (key exchange) from the
    device list the server pushed to her, bob decrypts and answers, then
    a message on the confirmed session."""
    server()
    alice, bob = client('alice'), client('bob')

    async def go():
        # alice learnt bob's device list from the last item sent on her
        # available presence (+notify), not by asking
        await alice.wait_for(
            lambda: any(n['from'] == bob.bare and n['ns'] == ns and
                        bob.device_id in n['ids']
                        for n in alice.notifications),
            T(10), '%s device list of bob' % ns)
        check((ns, bob.bare) not in alice.device_lists_fetched,
              "alice fetched bob's device list instead of being told")
        for c in (alice, bob):
            await c.end_history_sync()
        first = await exchange(alice, bob, ns, tag + '-1', refresh=False)
        check(first['element'].find('.//{%s}key[@%s="true"]' % (
            ns, 'prekey' if ns == NS_OLD else 'kex')) is not None,
            'first message carries no key exchange')
        await exchange(bob, alice, ns, tag + '-reply', refresh=False)
        third = await exchange(alice, bob, ns, tag + '-2', refresh=False)
        check(third['element'].find('.//{%s}key[@%s="true"]' % (
            ns, 'prekey' if ns == NS_OLD else 'kex')) is None,
            'session not confirmed after the reply')
        if ns == NS_OLD:
            check_eq(third['body'], glue.FALLBACK, 'fallback body')
    run(go())
    check_clean(alice, bob)


@suite.test
def offline_delivery():
    """carol (a stranger to alice) publishes her device and goes offline;
    alice fetches carol's device lists and bundles (open access), builds
    sessions and sends in both namespaces; carol's next login gets the
    messages from offline storage and decrypts them, then answers."""
    srv = server()
    alice = client('alice')

    async def go():
        carol = await connect(srv, 'carol')
        dev = carol.device_id
        await disconnect('carol')
        sent = []
        for ns, tag in NSS:
            for i in (1, 2):
                t = text_for('%s-offline-%d' % (tag, i))
                enc, mid = await alice.encrypt_to(carol.bare, t, ns,
                                                  refresh=(i == 1))
                sent.append((ns, t, enc, mid))
        fetched = {(ns, d) for ns, j, d in alice.bundles_fetched
                   if j == carol.bare}
        check_eq(fetched, {(NS_OLD, dev), (NS_TWO, dev)},
                 "carol's bundles fetched by alice")
        await alice.drain()             # the messages reached the server
        carol = await connect(srv, 'carol')
        check_eq(carol.device_id, dev, "carol's device id")
        await carol.wait_for(lambda: len(carol.received) >= len(sent),
                             T(15), '%d offline messages' % len(sent))
        await carol.drain()
        got = carol.received
        check_eq([(r['ns'], r['text'], r['id']) for r in got],
                 [(ns, t, mid) for ns, t, _e, mid in sent],
                 'offline messages decrypted by carol, in order')
        for r, (ns, t, enc, mid) in zip(got, sent):
            check(r['delayed'], 'offline message %s has no <delay/>' % mid)
            check(glue.same_element(r['element'], enc),
                  'offline <encrypted/> changed:\nsent %s\ngot  %s' %
                  (tostr(enc), tostr(r['element'])))
        await carol.end_history_sync()
        for ns, tag in NSS:
            # a stranger's device list comes from no notification: carol
            # fetches it when she answers, as a client opening the chat
            await exchange(carol, alice, ns, tag + '-answer', refresh=True)
        return carol
    carol = run(go(), 60)
    check_clean(alice, carol)
    state['offline_sent'] = True


@suite.test
def second_device():
    """alice adds a second device: it joins her device lists, bob (a
    contact with +notify) and her first device are told; bob's next
    message carries a key for each of alice's devices (the new one
    through a session bob builds from its bundle) and both decrypt it;
    the new device's message reaches bob."""
    srv = server()
    alice, bob = client('alice'), client('bob')

    async def go():
        alice2 = await connect(srv, 'alice', 'omemo-2')
        await alice2.end_history_sync()
        both = {alice.device_id, alice2.device_id}
        check(alice.device_id != alice2.device_id, 'same device id twice')
        for ns, _ in NSS:
            for c in (bob, alice):
                await c.wait_for(
                    lambda: any(n['from'] == alice.bare and n['ns'] == ns
                                and both <= n['ids']
                                for n in c.notifications),
                    T(10), '%s device list with both devices of alice' % ns)
        for ns, tag in NSS:
            t = text_for(tag + '-two-devices')
            n1, n2 = len(alice.received), len(alice2.received)
            enc, mid = await bob.encrypt_to(alice.bare, t, ns,
                                            refresh=False)
            rids = {int(k.get('rid')) for k in enc.iter('{%s}key' % ns)}
            check(both <= rids, '%s: keys for %s, want %s' % (ns, rids,
                                                               both))
            for c, n in ((alice, n1), (alice2, n2)):
                await c.wait_for(
                    lambda: any(r['id'] == mid for r in c.received[n:]),
                    T(10), '%s message to both devices' % ns)
                r = [r for r in c.received[n:] if r['id'] == mid][0]
                check_eq(r['text'], t, '%s decrypted on %s' % (ns,
                                                                c.boundjid))
            check((ns, alice.bare, alice2.device_id) in bob.bundles_fetched,
                  "%s: bob did not fetch the new device's bundle" % ns)
            await exchange(alice2, bob, ns, tag + '-from-second', False)
        return alice2
    alice2 = run(go())
    check_clean(alice, alice2, bob)
    # OMEMO 2 keeps every device's bundle as an item of one node
    # (max_items=max); the legacy namespace has a node per device
    eve = raw(srv, 'eve')
    ids = {it.get('id') for it in items(eve, alice.bare,
                                        glue.TWO_BUNDLE_NODE).iter(
                                            '{%s}item' % NS_PUBSUB)}
    check_eq(ids, {str(alice.device_id), str(alice2.device_id)},
             'items of the OMEMO 2 bundles node')
    for d in (alice.device_id, alice2.device_id):
        check_eq(len(item_payloads(items(eve, alice.bare,
                                         glue.OLD_BUNDLE_NODE % d),
                                   'legacy bundle of %d' % d)), 1,
                 'legacy bundle of %d' % d)
    eve.close()


@suite.test
def carbons_to_own_devices():
    """With XEP-0280 on, alice's second device gets a 'sent' carbon of
    what her first device encrypts to bob and decrypts it (OMEMO encrypts
    for the sender's other devices too); bob's answers to alice's bare
    JID reach each of her devices exactly once."""
    server()
    alice, alice2, bob = (client('alice'), client('alice', 'omemo-2'),
                          client('bob'))

    async def go():
        for c in (alice, alice2):
            await c.enable_carbons()
        for ns, tag in NSS:
            n2 = len(alice2.received)
            got = await exchange(alice, bob, ns, tag + '-carbon', False)
            await alice2.wait_for(
                lambda: any(r['id'] == got['id']
                            for r in alice2.received[n2:]),
                T(10), '%s sent carbon' % ns)
            r = [r for r in alice2.received[n2:] if r['id'] == got['id']]
            check_eq([(x['carbon'], x['from'], x['to'], x['text'])
                      for x in r],
                     [('sent', alice.bare, bob.bare, got['text'])],
                     '%s carbon on the second device' % ns)
            n1, n2 = len(alice.received), len(alice2.received)
            back = await exchange(bob, alice, ns, tag + '-to-both', False)
            await alice2.wait_for(
                lambda: any(r['id'] == back['id']
                            for r in alice2.received[n2:]),
                T(10), '%s answer on the second device' % ns)
            await bob.drain()
            for c in (alice, alice2):
                await c.drain()
            for c, n in ((alice, n1), (alice2, n2)):
                copies = [(x['carbon'], x['text'])
                          for x in c.received[n:] if x['id'] == back['id']]
                check_eq(copies, [(None, back['text'])],
                         '%s copies of the answer on %s' % (ns, c.boundjid))
    run(go())
    check_clean(alice, alice2, bob)


@suite.test
def reconfigure_existing_nodes():
    """eve's OMEMO 2 nodes exist with the PEP defaults (created by an
    older client): her device's publish-options do not hold, the server
    answers precondition-not-met, the client reconfigures the nodes
    (XEP-0384, Bundles) and publishes; carol, a stranger, then opens
    a session with eve from the reconfigured nodes."""
    srv = server()
    carol = client('carol')
    eve_raw = raw(srv, 'eve')
    for node in (glue.DEVICELIST_NODE[NS_TWO], glue.TWO_BUNDLE_NODE):
        r = iq(eve_raw, "<iq type='set'><pubsub xmlns='%s'><create "
               "node='%s'/></pubsub></iq>" % (NS_PUBSUB, node))
        check(r.get('type') == 'result', 'create %s: %s' % (node, tostr(r)))
    before = node_config(eve_raw, glue.TWO_BUNDLE_NODE)
    check(before.get('pubsub#access_model') != 'open' or
          before.get('pubsub#max_items') not in (None, 'max'),
          'PEP defaults already match OMEMO 2: %s' % before)

    async def go():
        eve = await connect(srv, 'eve')
        await eve.end_history_sync()
        await exchange(carol, eve, NS_TWO, 'omemo2-reconfigured', True)
        return eve
    eve = run(go())
    check_clean(eve, carol)
    check(glue.TWO_BUNDLE_NODE in eve.reconfigured,
          'bundles node not reconfigured: %s' % eve.reconfigured)
    for node in (glue.DEVICELIST_NODE[NS_TWO], glue.TWO_BUNDLE_NODE):
        check_eq(node_config(eve_raw, node).get('pubsub#access_model'),
                 'open', 'access model of %s after reconfiguration' % node)
    mx = node_config(eve_raw, glue.TWO_BUNDLE_NODE).get('pubsub#max_items')
    check(mx == 'max' or int(mx) > 1, 'max_items after reconfiguration: %s'
          % mx)
    eve_raw.close()


@suite.test
def archived_untouched():
    """MAM returns every encrypted message exactly as it was sent, in the
    sender's and in the recipient's archive (also the offline ones)."""
    srv = server()
    if 'offline_sent' not in state:
        pvtest.skip('the offline test did not complete')
    sent_by = {}
    for key, c in state['clients'].items():
        sent_by.setdefault(key.split('/')[0], []).extend(c.sent)
    run(asyncio.sleep(0.2))
    archives = {}
    for u in NAMES:
        c = raw(srv, u)
        archives[u] = mam(c)
        c.close()
    n = 0
    for sender, sent in sent_by.items():
        for ns, to, enc, mid in sent:
            for owner in (sender, to.split('@')[0]):
                hits = [m for _sid, m in archives[owner]
                        if m.get('id') == mid]
                check_eq(len(hits), 1, 'archive of %s: message %s (%s)' %
                         (owner, mid, ns))
                got = hits[0].find('{%s}encrypted' % ns)
                check(got is not None and glue.same_element(got, enc),
                      'archived <encrypted/> of %s changed:\nsent %s\n'
                      'got  %s' % (mid, tostr(enc), tostr(hits[0])))
                n += 1
    check(n >= 20, 'only %d archived copies checked' % n)


@suite.test
def survives_restart():
    """After a server restart the OMEMO nodes are still there: bob's
    login gets alice's device list (both devices) as the last item, a
    stranger still fetches her bundles, and bob's messages on the
    sessions built before the restart reach alice through offline
    storage and decrypt."""
    srv = server()
    if 'offline_sent' not in state:
        pvtest.skip('the offline test did not complete')
    a1, a2 = client('alice').device_id, client('alice', 'omemo-2').device_id
    for key in list(state['clients']):
        run(disconnect(*key.split('/')), 10)
    srv.restart()
    eve = raw(srv, 'eve')
    ids = {it.get('id') for it in items(eve, bare(srv, 'alice'),
                                        glue.TWO_BUNDLE_NODE).iter(
                                            '{%s}item' % NS_PUBSUB)}
    check_eq(ids, {str(a1), str(a2)}, 'OMEMO 2 bundles after restart')
    eve.close()

    async def go():
        bob = await connect(srv, 'bob')
        a = bare(srv, 'alice')
        for ns, _ in NSS:
            await bob.wait_for(
                lambda: any(n['from'] == a and n['ns'] == ns and
                            n['ids'] == {a1, a2} for n in bob.notifications),
                T(10), '%s device list of alice after restart' % ns)
        await bob.end_history_sync()
        sent = []
        for ns, tag in NSS:
            t = text_for(tag + '-after-restart')
            enc, mid = await bob.encrypt_to(a, t, ns, refresh=False)
            sent.append((ns, t, mid))
        await bob.drain()
        alice = await connect(srv, 'alice')
        await alice.wait_for(
            lambda: {r['id'] for r in alice.received} >=
            {mid for _n, _t, mid in sent}, T(10),
            'offline messages after restart')
        got = [(r['ns'], r['text'], r['id'], r['delayed'])
               for r in alice.received if r['from'] == bob.bare]
        check_eq(got, [x + (True,) for x in sent],
                 'decrypted by alice after the restart (from offline)')
        return alice, bob
    alice, bob = run(go())
    check_clean(alice, bob)


def close_clients():
    """Logs the OMEMO clients out and ends python-omemo's background
    tasks (signed pre key rotation) before the loop goes."""
    if not _loop:
        return
    lp = loop()
    for key in list(state['clients']):
        try:
            run(disconnect(*key.split('/')), 10)
        except Exception:                           # noqa: BLE001
            pass
    pending = [t for t in asyncio.all_tasks(lp) if not t.done()]
    for t in pending:
        t.cancel()
    lp.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    lp.close()


if __name__ == '__main__':
    rc = suite.run()
    close_clients()
    sys.exit(rc)
