#!/usr/bin/python3
# Status updates (doc/status.md): XEP-0501 stories (Atom entry with one
# media enclosure) and Palaver text statuses on the PEP node
# urn:xmpp:pubsub-social-feed:stories:0. A contact with a presence
# subscription gets photo and text posts and can fetch them, a stranger
# is refused; the node is auto-created with access model presence and the
# server's item_expire; malformed posts and out-of-range item_expire are
# refused; with a few seconds of expiry the item rows leave LMDB and the
# contact receives the retraction, also across a restart and for items
# that expired while the server was down.
# Helpers (raw clients answering caps queries) come from test_pep.py.

import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'harness'))
sys.path.insert(0, HERE)
import pvtest  # noqa: E402
from pvtest import check, check_eq, tostr  # noqa: E402
import test_pep as tp  # noqa: E402

NS_STORIES = 'urn:xmpp:pubsub-social-feed:stories:0'
NS_ATOM = 'http://www.w3.org/2005/Atom'
NS_STATUS = 'urn:palaver:status:0'
NS_EVENT = tp.NS_EVENT
NS_PUBSUB = tp.NS_PUBSUB
NS_OWNER = tp.NS_OWNER
MODULES = tp.MODULES
NAMES = ('alice', 'bob', 'dave', 'erin', 'gone')
USERS = {u: u + '-status-pw' for u in NAMES}
WANT = tp.Caps([NS_STORIES])

suite = pvtest.Suite('status')


def photo(n, href=None, mime='image/jpeg', extra=''):
    href = href or 'https://upload.localhost/f/%s/beach.jpg' % n
    return ("<entry xmlns='%s'><title type='text'>photo %s</title>"
            "<id>tag:localhost,2026-11-28:%s</id>"
            "<published>2026-11-28T03:00:00Z</published>"
            "<updated>2026-11-28T03:00:00Z</updated>"
            "<link rel='enclosure' href='%s' type='%s' length='1234'/>%s"
            "</entry>" % (NS_ATOM, n, n, href, mime, extra))


def text(words, style=" background='#075E54' color='#FFFFFF' font='serif'",
         ctype='text'):
    return ("<entry xmlns='%s'><title type='text'>%s</title>"
            "<content type='%s'>%s</content>"
            "<id>tag:localhost,2026-11-28:t</id>"
            "<published>2026-11-28T03:00:00Z</published>"
            "<updated>2026-11-28T03:00:00Z</updated>"
            "<text-style xmlns='%s'%s/></entry>" %
            (NS_ATOM, words, ctype, words, NS_STATUS, style))


def post(c, item_id, payload, opts=None):
    return tp.publish(c, NS_STORIES, item_id, None, opts=opts,
                      payload=payload)


def item_key(item_id):
    return '%d:%s%s' % (len(NS_STORIES), NS_STORIES, item_id)


def rows(srv, user):
    return {k[2] for k in pvtest.store_keys(srv, 'pep.items')
            if k[:2] == (srv.domain, user)}


def expiry_rows(srv):
    """Rows of the expiry index (an archive store: its keys hold a
    timestamp, so count them rather than decode them)."""
    pvtest.store_keys(srv, 'pep.items')     # skips without lmdb-utils
    r = subprocess.run(['mdb_dump', '-s', 'pep.expiry', srv.data_dir],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return 0
    body = r.stdout.split('HEADER=END\n', 1)[1]
    return sum(1 for line in body.splitlines() if line.startswith(' ')) // 2


def config(c, node=NS_STORIES):
    r = tp.iq(c, "<iq type='get'><pubsub xmlns='%s'><configure node='%s'/>"
              "</pubsub></iq>" % (NS_OWNER, node))
    tp.check_ok(r, 'configure get')
    out = {}
    for f in r.iter('{jabber:x:data}field'):
        v = f.find('{jabber:x:data}value')
        out[f.get('var')] = v.text if v is not None else None
    return out


def befriend(srv, follower, owner):
    """follower subscribes to owner's presence, owner approves."""
    a = tp.online(srv, follower, 'setup')
    b = tp.online(srv, owner, 'setup')
    tp.subscribe(srv, a, b, follower, owner)
    a.close()
    b.close()


def server():
    if pvtest.available_modules(MODULES) != MODULES:
        pvtest.skip('mod_roster/mod_presence/mod_pep not built')
    srv = suite.shared_server(users=USERS, modules=MODULES,
                              pep_item_expire_max='2d')
    if not getattr(srv, 'status_ready', False):
        befriend(srv, 'bob', 'alice')
        befriend(srv, 'bob', 'erin')
        srv.status_ready = True
    return srv


def retraction(c, ids, timeout):
    """Waits for the retraction of every id in ids; returns the time."""
    left = set(ids)
    while left:
        ev = tp.expect(c, lambda e: e.tag == tp.MSG and e.find(
            './/{%s}retract' % NS_EVENT) is not None, timeout=timeout,
            what='retraction of %s' % sorted(left))
        items = ev.find('{%s}event/{%s}items' % (NS_EVENT, NS_EVENT))
        check_eq(items.get('node'), NS_STORIES, 'retraction node')
        for r in items.findall('{%s}retract' % NS_EVENT):
            check(r.get('id') in left, 'unexpected retraction %s' % tostr(ev))
            left.discard(r.get('id'))
    return time.monotonic()


# --- tests ------------------------------------------------------------------

@suite.test
def node_defaults():
    srv = server()
    alice = tp.online(srv, 'alice', 'def')
    tp.check_ok(post(alice, 'p0', photo('p0')), 'first story')
    cfg = config(alice)
    check_eq(cfg.get('pubsub#access_model'), 'presence', 'access model')
    check_eq(cfg.get('pubsub#item_expire'), '86400', 'item_expire')
    check_eq(cfg.get('pubsub#max_items'), 'max', 'max_items')
    check_eq(cfg.get('pubsub#type'), NS_STORIES, 'pubsub#type')
    r = tp.iq(alice, "<iq type='get' to='%s'><query xmlns='%s'/></iq>" %
              (tp.bare(srv, 'alice'), tp.NS_INFO))
    feats = {f.get('var') for f in r.iter('{%s}feature' % tp.NS_INFO)}
    check(NS_STATUS in feats, 'no %s feature: %s' % (NS_STATUS, feats))
    # several stories stay side by side (max_items 'max')
    tp.check_ok(post(alice, 'p1', photo('p1', mime='video/mp4')), 'video')
    check_eq(tp.item_ids(tp.items(alice, tp.bare(srv, 'alice'),
                                  NS_STORIES)), ['p0', 'p1'], 'items')
    alice.close()


@suite.test
def contact_gets_posts():
    srv = server()
    bob = tp.online(srv, 'bob', 'feed', WANT)
    dave = tp.online(srv, 'dave', 'feed', WANT)
    alice = tp.online(srv, 'alice', 'feed')
    for c in (bob, dave):
        tp.events(c)
    tp.check_ok(post(alice, 's-photo', photo('s-photo')), 'photo')
    ev = tp.event_of(bob, NS_STORIES, 'photo notification')
    check_eq(ev.get('from'), tp.bare(srv, 'alice'), 'from')
    link = ev.find('.//{%s}entry/{%s}link' % (NS_ATOM, NS_ATOM))
    check(link is not None and link.get('rel') == 'enclosure' and
          link.get('href').endswith('/s-photo/beach.jpg'), tostr(ev))
    tp.check_ok(post(alice, 's-text', text('Off to the beach!')), 'text')
    ev = tp.event_of(bob, NS_STORIES, 'text notification')
    entry = ev.find('.//{%s}entry' % NS_ATOM)
    check_eq(entry.find('{%s}content' % NS_ATOM).text, 'Off to the beach!',
             'text content')
    st = entry.find('{%s}text-style' % NS_STATUS)
    check(st is not None and st.get('background') == '#075E54' and
          st.get('font') == 'serif', 'text-style: %s' % tostr(ev))
    # the contact fetches them; the stranger is refused and not notified
    ids = tp.item_ids(tp.items(bob, tp.bare(srv, 'alice'), NS_STORIES))
    check(ids[-2:] == ['s-photo', 's-text'], 'bob fetches: %s' % ids)
    tp.check_err(tp.items(dave, tp.bare(srv, 'alice'), NS_STORIES),
                 'not-authorized', 'presence-subscription-required',
                 'stranger fetch')
    tp.check_err(tp.items(dave, tp.bare(srv, 'alice'), NS_STORIES, '',
                          "<item id='s-text'/>"), 'not-authorized',
                 'presence-subscription-required', 'stranger fetch by id')
    check_eq(tp.events(dave), [], 'stranger notified')
    # a contact coming online gets the newest story
    bob2 = tp.online(srv, 'bob', 'feed2', WANT)
    ev = tp.event_of(bob2, NS_STORIES, 'last story on presence')
    check_eq(ev.find('.//{%s}item' % NS_EVENT).get('id'), 's-text',
             'last story id')
    for c in (bob, bob2, dave, alice):
        c.close()


@suite.test
def bad_posts_refused():
    srv = server()
    alice = tp.online(srv, 'alice', 'bad')
    bad = {
        'two enclosures': photo('x', extra="<link rel='enclosure' href="
                                "'https://h/b.jpg' type='image/jpeg'/>"),
        'not atom': "<entry xmlns='urn:t'><link rel='enclosure' href="
                    "'https://h/a.jpg' type='image/jpeg'/></entry>",
        'no media no style': text('hi').replace(
            "<text-style xmlns='%s' background='#075E54' color='#FFFFFF' "
            "font='serif'/>" % NS_STATUS, ''),
        'ftp href': photo('x', href='ftp://h/a.jpg'),
        'pdf': photo('x', mime='application/pdf'),
        'style on media': photo('x', extra="<text-style xmlns='%s'/>" %
                                NS_STATUS),
        'bad colour': text('hi', style=" background='green'"),
        'bad font': text('hi', style=" font='Comic Sans'"),
        'empty text': text('  '),
        'xhtml text': text('hi', ctype='xhtml'),
    }
    for what, payload in bad.items():
        tp.check_err(post(alice, 'bad', payload), 'bad-request',
                     'invalid-payload', what)
    tp.check_ok(post(alice, 'plain', text('hi', style='')),
                'text without style attributes')
    # the node keeps its expiry: another value is a precondition failure,
    # more than pep_item_expire_max (2d) is refused, 0 cannot be set
    tp.check_err(post(alice, 'o1', photo('o1'), {'item_expire': '60'}),
                 'conflict', 'precondition-not-met', 'other item_expire')
    tp.check_ok(post(alice, 'o2', photo('o2'), {'item_expire': '86400',
                                                 'access_model': 'presence'}),
                'matching publish-options')
    r = tp.iq(alice, "<iq type='set'><pubsub xmlns='%s'><publish node="
              "'urn:t:exp'><item id='x'><e xmlns='urn:t'/></item></publish>"
              "%s</pubsub></iq>" % (NS_PUBSUB, tp.publish_options(
                  {'item_expire': str(3 * 86400)})))
    tp.check_err(r, 'conflict', 'precondition-not-met', 'over the max')
    tp.check_ok(tp.publish(alice, 'urn:t:exp', 'x', 'y',
                           {'item_expire': str(2 * 86400)}),
                'item_expire at the max')
    check_eq(config(alice, 'urn:t:exp').get('pubsub#item_expire'),
             str(2 * 86400), 'item_expire of a plain node')
    for value in ('0', str(3 * 86400)):
        r = tp.iq(alice, "<iq type='set'><pubsub xmlns='%s'><configure "
                  "node='%s'><x xmlns='jabber:x:data' type='submit'><field "
                  "var='FORM_TYPE' type='hidden'><value>%s#node_config"
                  "</value></field><field var='pubsub#item_expire'><value>"
                  "%s</value></field></x></configure></pubsub></iq>" %
                  (NS_OWNER, NS_STORIES, NS_PUBSUB, value))
        tp.check_err(r, 'not-acceptable', None, 'configure item_expire=%s'
                     % value)
    check_eq(config(alice).get('pubsub#item_expire'), '86400',
             'item_expire after refused configures')
    alice.close()


@suite.test
def expiry_removes_and_retracts():
    srv = server()
    tf = pvtest.time_factor()
    bob = tp.online(srv, 'bob', 'exp', WANT)
    dave = tp.online(srv, 'dave', 'exp', WANT)
    erin = tp.online(srv, 'erin', 'exp')
    tp.events(bob)
    t0 = time.monotonic()
    tp.check_ok(post(erin, 'e1', photo('e1'), {'item_expire': '3'}),
                'story with a 3 s expiry')
    check_eq(config(erin).get('pubsub#item_expire'), '3', 'item_expire')
    tp.check_ok(post(erin, 'e2', text('second')), 'second story')
    tp.event_of(bob, NS_STORIES, 'e1 notification')
    tp.event_of(bob, NS_STORIES, 'e2 notification')
    check(item_key('e1') in rows(srv, 'erin') and
          item_key('e2') in rows(srv, 'erin'), 'rows: %s' %
          rows(srv, 'erin'))
    t1 = retraction(bob, ['e1', 'e2'], 10 * tf)
    check(t1 - t0 >= 2.5, 'retracted after %.1fs, before the expiry' %
          (t1 - t0))
    # gone from storage and from every answer
    deadline = time.monotonic() + 5 * tf
    while rows(srv, 'erin') and time.monotonic() < deadline:
        time.sleep(0.1)
    check_eq(rows(srv, 'erin'), set(), 'item rows after expiry')
    check((srv.domain, 'erin', NS_STORIES) in
          pvtest.store_keys(srv, 'pep.nodes'), 'the node row went too')
    check_eq(tp.item_ids(tp.items(bob, tp.bare(srv, 'erin'), NS_STORIES)),
             [], 'items after expiry')
    r = tp.iq(bob, "<iq type='get' to='%s'><query xmlns='%s' node='%s'/>"
              "</iq>" % (tp.bare(srv, 'erin'), tp.NS_ITEMS, NS_STORIES))
    check_eq(list(r.iter('{%s}item' % tp.NS_ITEMS)), [], 'disco#items')
    check_eq(tp.events(dave), [], 'stranger got a notification')
    # the owner's own resource is a recipient too (it wants the node)
    for c in (bob, dave, erin):
        c.close()


@suite.test
def expiry_through_reload():
    """SIGHUP replaces the hosts and cancels their timers: the new
    generation's sweep takes over the pending expiry."""
    srv = server()
    tf = pvtest.time_factor()
    bob = tp.online(srv, 'bob', 'hup', WANT)
    erin = tp.online(srv, 'erin', 'hup')
    tp.events(bob)
    check_eq(config(erin).get('pubsub#item_expire'), '3', 'item_expire')
    tp.check_ok(post(erin, 'h1', photo('h1')), 'story')
    tp.event_of(bob, NS_STORIES, 'h1 notification')
    n = srv.log_text().count('configuration reloaded')
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10 * tf
    while srv.log_text().count('configuration reloaded') <= n:
        check(srv.running(), 'palaverd died on SIGHUP')
        check(time.monotonic() < deadline, 'no reload logged')
        time.sleep(0.02)
    retraction(bob, ['h1'], 10 * tf)
    check(item_key('h1') not in rows(srv, 'erin'), 'h1 row left')
    # and a story published after the reload expires as well
    tp.check_ok(post(erin, 'h2', text('after the reload')), 'story')
    retraction(bob, ['h2'], 10 * tf)
    bob.close()
    erin.close()


@suite.test
def expiry_rows_go_with_account():
    srv = server()
    before = expiry_rows(srv)
    c = tp.online(srv, 'gone', 'x')
    tp.check_ok(post(c, 'g1', photo('g1')), 'story')
    tp.check_ok(post(c, 'g2', text('bye')), 'story')
    c.close()
    check_eq(expiry_rows(srv), before + 2, 'expiry rows after 2 stories')
    srv.ctl('deluser', tp.bare(srv, 'gone'))
    check_eq(rows(srv, 'gone'), set(), 'item rows after deluser')
    check_eq(expiry_rows(srv), before, 'expiry rows after deluser')


@suite.test
def expiry_across_restart():
    if pvtest.available_modules(MODULES) != MODULES:
        pvtest.skip('mod_roster/mod_presence/mod_pep not built')
    tf = pvtest.time_factor()
    srv = suite.server(name='status-restart', users=USERS, modules=MODULES,
                       pep_status_expire='5s')
    srv.start()
    befriend(srv, 'bob', 'alice')
    alice = tp.online(srv, 'alice', 'rs')
    tp.check_ok(post(alice, 'r1', photo('r1')), 'story')
    check_eq(config(alice).get('pubsub#item_expire'), '5',
             'pep_status_expire default')
    tp.check_ok(tp.publish(alice, 'urn:t:keep', 'k1', 'stays',
                           {'item_expire': '3600'}), 'long-lived item')
    alice.close()
    t0 = time.monotonic()
    # 1: the expiry index survives a restart: the contact online after it
    # gets the retraction when the item falls due
    srv.restart()
    bob = tp.online(srv, 'bob', 'rs', WANT)
    tp.events(bob)
    check(time.monotonic() - t0 < 4.5, 'restart too slow to test (%.1fs)'
          % (time.monotonic() - t0))
    retraction(bob, ['r1'], 10 * tf)
    check(item_key('r1') not in rows(srv, 'alice'), 'r1 row left')
    bob.close()
    # 2: an item that expires while the server is down goes at start
    alice = tp.online(srv, 'alice', 'rs2')
    tp.check_ok(post(alice, 'r2', text('while down')), 'story')
    alice.close()
    check(item_key('r2') in rows(srv, 'alice'), 'r2 row missing')
    srv.stop()
    time.sleep(5.5)
    srv.start()
    deadline = time.monotonic() + 3 * tf
    while item_key('r2') in rows(srv, 'alice') and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    check(item_key('r2') not in rows(srv, 'alice'),
          'r2 row still there after the start')
    check(rows(srv, 'alice') == {'%d:%sk1' % (len('urn:t:keep'),
                                              'urn:t:keep')},
          'rows after start: %s' % rows(srv, 'alice'))
    bob = tp.online(srv, 'bob', 'rs2')
    check_eq(tp.item_ids(tp.items(bob, tp.bare(srv, 'alice'), NS_STORIES)),
             [], 'stories after start')
    check_eq(tp.item_ids(tp.items(bob, tp.bare(srv, 'alice'),
                                  'urn:t:keep')), ['k1'], 'long-lived item')
    bob.close()


if __name__ == '__main__':
    suite.main()
