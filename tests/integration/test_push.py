#!/usr/bin/python3
# mod_push (XEP-0357): a test client registers its own full JID as the app
# server and receives the <publish/>: enable/disable rules, the summary
# form (count, sender, body only when configured), publish-options round
# trip, throttling, removal on cancel/auth errors (not on wait), the
# per-account limit, persistence over a restart, and notifications for a
# session hibernated by XEP-0198 (skipped while mod_smacks is missing).

import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, NS_CLIENT  # noqa: E402

NS_PUSH = 'urn:xmpp:push:0'
NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_DATA = 'jabber:x:data'
NS_SM = 'urn:xmpp:sm:3'
MODULES = pvtest.CORE_MODULES + ['offline', 'push']
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw', 'carol': 'car0l-pw',
         'dave': 'd4ve-pw', 'erin': '3rin-pw', 'frank': 'fr4nk-pw',
         'gina': 'g1na-pw', 'hank': 'h4nk-pw', 'ivy': '1vy-pw'}
THROTTLE = 1.0      # push_throttle of the servers below, seconds

suite = pvtest.Suite('push')


def server(key='default', **kw):
    if pvtest.available_modules(['push', 'offline']) != ['push', 'offline']:
        pvtest.skip('mod_push or mod_offline not built')
    conf = {'push_throttle': '%dms' % int(THROTTLE * 1000),
            'push_max_registrations': 3}
    conf.update(kw)
    return suite.shared_server(key, users=USERS, modules=MODULES, **conf)


def options_form(secret):
    return ("<x xmlns='%s' type='submit'><field var='FORM_TYPE'>"
            "<value>http://jabber.org/protocol/pubsub#publish-options</value>"
            "</field><field var='secret'><value>%s</value></field></x>"
            % (NS_DATA, secret))


def enable(c, jid, node, form='', iq_id='en1'):
    return c.iq("<iq type='set' id='%s'><enable xmlns='%s' jid='%s' "
                "node='%s'>%s</enable></iq>" % (iq_id, NS_PUSH, jid, node,
                                                form))


def disable(c, jid, node=None, iq_id='dis1'):
    n = " node='%s'" % node if node is not None else ''
    return c.iq("<iq type='set' id='%s'><disable xmlns='%s' jid='%s'%s/>"
                "</iq>" % (iq_id, NS_PUSH, jid, n))


def check_result(el, what):
    check(el.get('type') == 'result', '%s failed: %s' % (what,
                                                          pvtest.tostr(el)))


def logout(c):
    c.send('</stream:stream>')
    check(c.wait_closed(), 'server did not close the stream')
    c.close()


def registrations(srv, user):
    return sorted(k[2] for k in pvtest.store_keys(srv, 'push.registrations')
                  if len(k) == 3 and k[0] == srv.domain and k[1] == user)


def wait_registrations(srv, user, want, timeout=5):
    deadline = time.monotonic() + timeout * pvtest.time_factor()
    got = registrations(srv, user)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.05)
        got = registrations(srv, user)
    check_eq(got, want, 'push registrations of %s' % user)


def is_push(el):
    return (el.tag == '{%s}iq' % NS_CLIENT and el.get('type') == 'set' and
            el.find('{%s}pubsub' % NS_PUBSUB) is not None)


def recv_push(app, timeout=None):
    return app.recv_until(is_push, timeout, what='push notification')


def no_push(app, timeout=None):
    timeout = timeout or (THROTTLE + 1.0) * pvtest.time_factor()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            el = app.recv(left)
        except TimeoutError:
            return
        if is_push(el):
            pvtest.fail('unexpected push: %s' % pvtest.tostr(el))


def summary(push):
    """(publish node, {var: value} of the summary form, publish-options
    {var: value} or None)."""
    ps = push.find('{%s}pubsub' % NS_PUBSUB)
    pub = ps.find('{%s}publish' % NS_PUBSUB)
    check(pub is not None, 'no <publish/>: %s' % pvtest.tostr(push))
    form = pub.find('{%s}item/{%s}notification/{%s}x' %
                    (NS_PUBSUB, NS_PUSH, NS_DATA))
    check(form is not None, 'no notification form: %s' % pvtest.tostr(push))
    check_eq(form.get('type'), 'submit', 'summary form type')
    fields = {f.get('var'): f.findtext('{%s}value' % NS_DATA)
              for f in form.findall('{%s}field' % NS_DATA)}
    po = ps.find('{%s}publish-options/{%s}x' % (NS_PUBSUB, NS_DATA))
    opts = None
    if po is not None:
        opts = {f.get('var'): f.findtext('{%s}value' % NS_DATA)
                for f in po.findall('{%s}field' % NS_DATA)}
    return pub.get('node'), fields, opts


def answer(app, push, error=None):
    if error is None:
        app.send("<iq type='result' id='%s' to='%s'/>" %
                 (push.get('id'), push.get('from')))
    else:
        etype, cond = error
        app.send("<iq type='error' id='%s' to='%s'><error type='%s'>"
                 "<%s xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
                 "</iq>" % (push.get('id'), push.get('from'), etype, cond))


def send_chat(c, to, body, extra=''):
    c.send("<message type='chat' to='%s' id='m-%s'><body>%s</body>%s"
           "</message>" % (to, body, body, extra))


def setup(srv, user, app_res, node, form=''):
    """The app server (alice/app_res) and user's registration of it, made
    by a session of user that then logs out cleanly."""
    app = srv.login('alice', resource=app_res)
    c = srv.login(user, resource='phone')
    check_result(enable(c, app.jid, node, form), 'enable')
    logout(c)
    return app


@suite.test
def disco_advertises_push():
    srv = server()
    c = srv.login('carol', resource='disco')
    r = c.iq("<iq type='get' id='d1' to='%s'><query xmlns='http://jabber."
             "org/protocol/disco#info'/></iq>" % srv.jid('carol'))
    feats = [f.get('var') for f in r.iter(
        '{http://jabber.org/protocol/disco#info}feature')]
    check(NS_PUSH in feats, '%s not in disco: %s' % (NS_PUSH, feats))
    c.close()


@suite.test
def notification_for_offline_account():
    srv = server()
    app = setup(srv, 'bob', 'app-bob', 'node-bob', options_form('s3cret'))
    wait_registrations(srv, 'bob', [app.jid + '\nnode-bob'])
    carol = srv.login('carol', resource='pc')
    send_chat(carol, srv.jid('bob'), 'hello-bob')
    p = recv_push(app)
    t_first = time.monotonic()
    check_eq(p.get('from'), srv.jid('bob'), 'from of the publish')
    check_eq(p.get('to'), app.jid, 'to of the publish')
    node, fields, opts = summary(p)
    check_eq(node, 'node-bob', 'publish node')
    check_eq(fields.get('FORM_TYPE'), 'urn:xmpp:push:summary', 'FORM_TYPE')
    check_eq(fields.get('message-count'), '1', 'message-count')
    # privacy defaults: neither sender nor body leave the server
    check('last-message-body' not in fields, 'body sent: %s' % fields)
    check('last-message-sender' not in fields, 'sender sent: %s' % fields)
    check_eq(opts, {'FORM_TYPE': 'http://jabber.org/protocol/pubsub'
                    '#publish-options', 'secret': 's3cret'},
             'publish-options round trip')
    answer(app, p)
    # two more inside the throttle interval: one publish, all counted
    send_chat(carol, srv.jid('bob') + '/phone', 'second')
    send_chat(carol, srv.jid('bob'), 'third')
    p = recv_push(app, timeout=(THROTTLE + 3) * pvtest.time_factor())
    _, fields, _ = summary(p)
    check_eq(fields.get('message-count'), '3', 'message-count after 3')
    # the interval runs from the first publish (sent a little before it
    # was read here)
    check(time.monotonic() - t_first >= THROTTLE * 0.7,
          'throttled publish came too early')
    answer(app, p)
    no_push(app)
    # messages that do not matter: chat states only, headline
    carol.send("<message type='chat' to='%s'><active xmlns='http://jabber."
               "org/protocol/chatstates'/></message>" % srv.jid('bob'))
    carol.send("<message type='headline' to='%s'><body>news</body>"
               "</message>" % srv.jid('bob'))
    no_push(app)
    # an OMEMO message without a body matters
    carol.send("<message type='chat' to='%s'><encrypted xmlns='eu.siacs."
               "conversations.axolotl'><header sid='1'/></encrypted>"
               "</message>" % srv.jid('bob'))
    _, fields, _ = summary(recv_push(app))
    check_eq(fields.get('message-count'), '4', 'count after OMEMO')
    # bob comes back: the count starts again
    b = srv.login('bob', resource='phone2')
    b.close()
    time.sleep(0.3)
    send_chat(carol, srv.jid('bob'), 'after-login')
    _, fields, _ = summary(recv_push(app, timeout=(THROTTLE + 3) *
                                     pvtest.time_factor()))
    check_eq(fields.get('message-count'), '1', 'count after a login')
    carol.close()
    app.close()


@suite.test
def no_push_while_online():
    srv = server()
    app = setup(srv, 'dave', 'app-dave', 'n')
    dave = srv.login('dave', resource='desk')
    dave.send('<presence/>')
    carol = srv.login('carol', resource='pc2')
    send_chat(carol, srv.jid('dave'), 'live')
    dave.recv_until(lambda e: e.tag == '{%s}message' % NS_CLIENT,
                    what='live message')
    no_push(app)
    for c in (app, dave, carol):
        c.close()


@suite.test
def body_and_sender_when_configured():
    srv = server('body', push_include_body=True, push_include_sender=True)
    app = setup(srv, 'erin', 'app-erin', 'n-erin')
    carol = srv.login('carol', resource='pc')
    send_chat(carol, srv.jid('erin'), 'wherefore')
    node, fields, opts = summary(recv_push(app))
    check_eq(node, 'n-erin', 'publish node')
    check_eq(fields.get('last-message-body'), 'wherefore', 'body field')
    check_eq(fields.get('last-message-sender'), carol.jid, 'sender field')
    check(opts is None, 'publish-options without a form: %s' % opts)
    carol.close()
    app.close()


@suite.test
def error_removes_registration():
    srv = server()
    app = setup(srv, 'frank', 'app-frank', 'nf')
    carol = srv.login('carol', resource='pc3')
    # a transient error (wait) keeps the registration
    send_chat(carol, srv.jid('frank'), 'one')
    answer(app, recv_push(app), error=('wait', 'resource-constraint'))
    time.sleep(0.3)
    check_eq(registrations(srv, 'frank'), [app.jid + '\nnf'],
             'registrations after a wait error')
    # an answer from someone else than the app server changes nothing
    send_chat(carol, srv.jid('frank'), 'two')
    p = recv_push(app, timeout=(THROTTLE + 3) * pvtest.time_factor())
    carol.send("<iq type='error' id='%s' to='%s'><error type='cancel'>"
               "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'"
               "/></error></iq>" % (p.get('id'), srv.jid('frank')))
    time.sleep(0.3)
    check_eq(registrations(srv, 'frank'), [app.jid + '\nnf'],
             'registrations after a spoofed error')
    # the app server says the node is gone: cancel removes it
    answer(app, p, error=('cancel', 'item-not-found'))
    wait_registrations(srv, 'frank', [])
    send_chat(carol, srv.jid('frank'), 'three')
    no_push(app)
    carol.close()
    app.close()


@suite.test
def auth_error_removes_registration():
    srv = server()
    app = setup(srv, 'gina', 'app-gina', 'ng')
    carol = srv.login('carol', resource='pc4')
    send_chat(carol, srv.jid('gina'), 'one')
    answer(app, recv_push(app), error=('auth', 'not-authorized'))
    wait_registrations(srv, 'gina', [])
    carol.close()
    app.close()


@suite.test
def disable_and_refusals():
    srv = server()
    app = srv.login('alice', resource='app-hank')
    h = srv.login('hank', resource='phone')
    for i, n in enumerate(('a', 'b', 'c')):
        check_result(enable(h, app.jid, n, iq_id='e%d' % i), 'enable ' + n)
    # the limit is 3 per account; enabling an existing one again is fine
    r = enable(h, app.jid, 'd', iq_id='e4')
    check_eq(pvtest.stanza_error(r), ('wait', 'resource-constraint'),
             'fourth registration')
    check_result(enable(h, app.jid, 'c', options_form('x'), iq_id='e5'),
                 're-enable c')
    wait_registrations(srv, 'hank', sorted(app.jid + '\n' + n
                                           for n in ('a', 'b', 'c')))
    # bad requests
    r = h.iq("<iq type='set' id='b1'><enable xmlns='%s' jid='%s'/></iq>" %
             (NS_PUSH, app.jid))
    check_eq(pvtest.stanza_error(r), ('modify', 'bad-request'), 'no node')
    r = h.iq("<iq type='set' id='b2'><enable xmlns='%s' node='x'/></iq>" %
             NS_PUSH)
    check_eq(pvtest.stanza_error(r), ('modify', 'bad-request'), 'no jid')
    r = enable(h, app.jid, 'x', "<x xmlns='jabber:x:data'><field var="
               "'FORM_TYPE'><value>urn:other</value></field></x>", 'b3')
    check_eq(pvtest.stanza_error(r), ('modify', 'bad-request'),
             'wrong FORM_TYPE')
    # someone else cannot touch hank's registrations
    carol = srv.login('carol', resource='pc5')
    r = carol.iq("<iq type='set' id='f1' to='%s'><disable xmlns='%s' "
                 "jid='%s'/></iq>" % (srv.jid('hank'), NS_PUSH, app.jid))
    check_eq(pvtest.stanza_error(r), ('auth', 'forbidden'), 'foreign disable')
    # one node, then all nodes of that app server
    check_result(disable(h, app.jid, 'a'), 'disable a')
    wait_registrations(srv, 'hank', sorted(app.jid + '\n' + n
                                           for n in ('b', 'c')))
    check_result(disable(h, app.jid, iq_id='dis2'), 'disable all')
    wait_registrations(srv, 'hank', [])
    logout(h)
    send_chat(carol, srv.jid('hank'), 'nobody-listens')
    no_push(app)
    carol.close()
    app.close()


@suite.test
def registration_survives_restart():
    srv = server('restart')
    app = setup(srv, 'ivy', 'app-ivy', 'n-ivy', options_form('kept'))
    wait_registrations(srv, 'ivy', [app.jid + '\nn-ivy'])
    app.close()
    srv.restart()
    app = srv.login('alice', resource='app-ivy')
    carol = srv.login('carol', resource='pc')
    send_chat(carol, srv.jid('ivy'), 'after-restart')
    node, fields, opts = summary(recv_push(app))
    check_eq(node, 'n-ivy', 'node after restart')
    check_eq(fields.get('message-count'), '1', 'count after restart')
    check_eq((opts or {}).get('secret'), 'kept', 'options after restart')
    carol.close()
    app.close()


def smacks_login(srv, user, resource):
    c = srv.login(user, resource=resource)
    if c.features is None or c.features.find('{%s}sm' % NS_SM) is None:
        c.close()
        pvtest.skip('mod_smacks offers no urn:xmpp:sm:3 stream feature '
                    '(still a placeholder?): hibernated sessions cannot be '
                    'tested')
    c.send("<enable xmlns='%s' resume='true'/>" % NS_SM)
    el = c.recv_until(lambda e: e.tag in ('{%s}enabled' % NS_SM,
                                          '{%s}failed' % NS_SM),
                      what='<enabled/>')
    check_eq(el.tag, '{%s}enabled' % NS_SM, 'answer to sm <enable/>')
    return c


@suite.test
def notification_for_hibernated_session():
    if pvtest.available_modules(['smacks']) != ['smacks']:
        pvtest.skip('mod_smacks not built')
    srv = suite.shared_server('smacks', users=USERS,
                              modules=MODULES + ['smacks'],
                              push_throttle='%dms' % int(THROTTLE * 1000),
                              push_include_body=True)
    app = srv.login('alice', resource='app-sm')
    # two resources of bob enabled the same registration; a message to
    # the bare JID reaches both hibernated sessions and is one message
    phones = []
    for res in ('mobile', 'mobile2'):
        b = smacks_login(srv, 'bob', res)
        b.send('<presence/>')
        check_result(enable(b, app.jid, 'sm-node'), 'enable')
        phones.append(b)
    for b in phones:
        b.sock.close()        # cut, not closed: the session hibernates
    time.sleep(0.5 * pvtest.time_factor())
    dave = srv.login('dave', resource='pc')
    send_chat(dave, phones[0].jid, 'while-asleep')
    p = recv_push(app)
    node, fields, _ = summary(p)
    check_eq(node, 'sm-node', 'publish node')
    check_eq(fields.get('message-count'), '1', 'message-count')
    check_eq(fields.get('last-message-body'), 'while-asleep', 'body')
    answer(app, p)
    # a burst to the bare JID: one more publish after the throttle,
    # counting every message once
    for i in range(3):
        send_chat(dave, srv.jid('bob'), 'burst%d' % i)
    p = recv_push(app, timeout=(THROTTLE + 3) * pvtest.time_factor())
    _, fields, _ = summary(p)
    check_eq(fields.get('message-count'), '4', 'message-count of a burst')
    check_eq(fields.get('last-message-body'), 'burst2', 'last body')
    answer(app, p)
    no_push(app)
    for c in (app, dave):
        c.close()


if __name__ == '__main__':
    suite.main()
