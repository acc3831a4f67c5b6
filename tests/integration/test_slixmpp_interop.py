#!/usr/bin/python3
# Interoperability with a second client library (issue 3, "done when"): a
# slixmpp script (python3-slixmpp, run under /usr/bin/python3) signs up a
# new account in-band with its XEP-0077 plugin, logs in on the same stream
# and exchanges messages with a libstrophe client (tests/runner/scn_runner
# playing a generated scenario). With mod_roster and mod_presence present
# the second test adds the libstrophe user as a contact, completes the
# subscription handshake both ways, exchanges presence and then messages.

import json
import os
import secrets
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq, tostr  # noqa: E402

PYTHON = '/usr/bin/python3'
NS_ROSTER = 'jabber:iq:roster'
MODULES = ['disco', 'ping', 'register', 'roster', 'presence']
USERS = {'interop-bob': 'b0b-strophe', 'interop-bob2': 'b0b2-strophe',
         'interop-probe1': 'pr0be-pw', 'interop-probe2': 'pr0be-pw'}

suite = pvtest.Suite('slixmpp_interop')

# The slixmpp side, run as its own process: argv[1] is a JSON config. It
# prints one JSON line with what it saw and exits 0 only on success.
SLIX_SCRIPT = r'''
import asyncio
import json
import logging
import sys

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

cfg = json.loads(sys.argv[1])
logging.basicConfig(level=logging.DEBUG if cfg.get('debug') else
                    logging.ERROR, stream=sys.stderr)


class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__('%s@%s/slix' % (cfg['user'], cfg['domain']),
                         cfg['password'])
        self.ca_certs = cfg['cafile']
        # COMPAT: slixmpp 1.8 queues every stanza until the session starts,
        # including its own XEP-0077 IQs before authentication
        self._always_send_everything = True
        for p in ('xep_0030', 'xep_0004', 'xep_0066', 'xep_0077'):
            self.register_plugin(p)
        self.out = {'registered': False, 'form_fields': [],
                    'session': False, 'reply': None, 'peer_online': False,
                    'subscription': None, 'errors': []}
        self.finished = asyncio.get_event_loop().create_future()
        self.peer_online = asyncio.get_event_loop().create_future()
        self.reply = asyncio.get_event_loop().create_future()
        self.add_event_handler('register', self.on_register)
        self.add_event_handler('session_start', self.on_session)
        self.add_event_handler('message', self.on_message)
        self.add_event_handler('presence_available', self.on_available)
        self.add_event_handler('failed_all_auth', self.on_auth_failed)

    def fail(self, what):
        self.out['errors'].append(what)
        if not self.finished.done():
            self.finished.set_result(False)

    async def on_register(self, form):
        reg = form['register']
        self.out['form_fields'] = sorted(
            f for f in ('username', 'password') if f in reg.get_fields())
        resp = self.Iq()
        resp['type'] = 'set'
        resp['register']['username'] = self.boundjid.user
        resp['register']['password'] = self.password
        try:
            await resp.send(timeout=cfg['timeout'])
            self.out['registered'] = True
        except (IqError, IqTimeout) as e:
            self.fail('registration: %r' % (e,))
            self.disconnect()

    def on_auth_failed(self, event):
        self.fail('SASL failed after registration')

    def on_available(self, pres):
        if pres['from'].bare == cfg['peer_bare'] and \
                not self.peer_online.done():
            self.out['peer_online'] = True
            self.peer_online.set_result(pres['from'].full)

    def on_message(self, msg):
        if msg['from'].bare != cfg['peer_bare']:
            return
        if msg['type'] == 'error':
            return      # the peer is not there yet: on_session retries
        if msg['body'] == cfg['expect_body'] and not self.reply.done():
            self.reply.set_result(msg['from'].full)

    async def on_session(self, event):
        self.out['session'] = True
        self._always_send_everything = False
        try:
            if cfg['mode'] == 'roster':
                await self.with_roster()
            else:
                await self.message_only()
            if not self.finished.done():
                self.finished.set_result(True)
        except Exception as e:           # noqa: BLE001
            self.fail('%s: %r' % (cfg['mode'], e))

    async def message_only(self):
        # the libstrophe peer may still be connecting: resend until the
        # reply arrives (an absent full JID bounces with an error)
        deadline = asyncio.get_event_loop().time() + cfg['timeout']
        while not self.reply.done():
            self.send_message(mto=cfg['peer_full'], mbody=cfg['send_body'],
                              mtype='chat')
            try:
                await asyncio.wait_for(asyncio.shield(self.reply), 1.0)
            except asyncio.TimeoutError:
                if asyncio.get_event_loop().time() > deadline:
                    raise
        self.out['reply'] = self.reply.result()

    async def with_roster(self):
        self.send_presence()
        await self.get_roster(timeout=cfg['timeout'])
        await self.update_roster(cfg['peer_bare'], name='Bob',
                                 groups=['Friends'],
                                 timeout=cfg['timeout'])
        self.send_presence_subscription(pto=cfg['peer_bare'])
        await asyncio.wait_for(self.peer_online, cfg['timeout'])
        self.send_message(mto=cfg['peer_bare'], mbody=cfg['send_body'],
                          mtype='chat')
        self.out['reply'] = await asyncio.wait_for(self.reply,
                                                   cfg['timeout'])
        item = self.client_roster[cfg['peer_bare']]
        self.out['subscription'] = item['subscription']
        self.out['roster_name'] = item['name']


async def run():
    c = Client()
    c.connect((cfg['host'], cfg['port']), force_starttls=True)
    try:
        ok = await asyncio.wait_for(c.finished, cfg['timeout'] + 5)
    except asyncio.TimeoutError:
        c.out['errors'].append('timed out')
        ok = False
    try:
        await asyncio.wait_for(c.disconnect(wait=1.0), 5)
    except Exception:                    # noqa: BLE001
        pass
    print(json.dumps(c.out))
    return ok

sys.exit(0 if asyncio.get_event_loop().run_until_complete(run()) else 1)
'''


def server():
    for what in ('register',):
        if what not in pvtest.available_modules(MODULES):
            pvtest.skip('mod_%s not built' % what)
    try:
        import importlib.util
        if importlib.util.find_spec('slixmpp') is None:
            raise ImportError
    except ImportError:
        pvtest.skip('slixmpp not installed (python3-slixmpp)')
    return suite.shared_server(users=USERS,
                               modules=pvtest.available_modules(MODULES),
                               register_open=True, register_rate_limit='off')


def start_runner(srv, name, text):
    runner = pvtest.runner_path()
    if not os.access(runner, os.X_OK):
        pvtest.skip('%s not built' % runner)
    path = os.path.join(srv.dir, name + '.scn')
    with open(path, 'w') as f:
        f.write(text)
    timeout_ms = int(30000 * pvtest.time_factor())
    args = [runner] + srv.runner_args() + [
        '--provide', ','.join(['tls', 'c2s'] + list(srv.modules)),
        '--timeout', str(timeout_ms), path]
    return subprocess.Popen(args, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def run_slixmpp(srv, cfg):
    script = os.path.join(srv.dir, 'slix_interop.py')
    with open(script, 'w') as f:
        f.write(SLIX_SCRIPT)
    cfg = dict(cfg, host=srv.host('c2s'), port=srv.port('c2s'),
               domain=srv.domain, cafile=srv.cafile,
               timeout=20 * pvtest.time_factor())
    r = subprocess.run([PYTHON, script, json.dumps(cfg)],
                       capture_output=True, text=True,
                       timeout=90 * pvtest.time_factor())
    with open(os.path.join(srv.dir, 'slix_%s.log' % cfg['user']), 'w') as f:
        f.write(r.stdout + r.stderr)
    out = None
    for line in r.stdout.splitlines():
        if line.startswith('{'):
            out = json.loads(line)
    return r.returncode, out, (r.stdout + r.stderr).strip()


def finish_runner(proc):
    try:
        out, _ = proc.communicate(timeout=60 * pvtest.time_factor())
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return -1, out
    return proc.returncode, out


def can_login(srv, user, password):
    c = srv.client()
    c.connect()
    cond = c.auth(user, password)
    c.close()
    return cond is None


@suite.test
def signup_and_messages_with_libstrophe():
    srv = server()
    user = 'slix-%s' % secrets.token_hex(3)
    slix_full = '%s@%s/slix' % (user, srv.domain)
    bob_full = 'interop-bob@%s/strophe' % srv.domain
    runner = start_runner(srv, 'interop_messages', """\
# libstrophe side of test_slixmpp_interop: a message from the account
# slixmpp just registered in-band, and the answer.
[client] bob jid=%s password=%s

bob connects

bob receives:
    <message type='chat' from='%s'><body>hello from slixmpp</body></message>

bob sends:
    <message type='chat' to='%s' id='strophe-1'><body>hello from libstrophe</body></message>

bob disconnects
""" % (bob_full, USERS['interop-bob'], slix_full, slix_full))
    rc, out, log = run_slixmpp(srv, {
        'mode': 'message', 'user': user, 'password': 'sl1x-pw',
        'peer_bare': 'interop-bob@' + srv.domain, 'peer_full': bob_full,
        'send_body': 'hello from slixmpp',
        'expect_body': 'hello from libstrophe'})
    rrc, rout = finish_runner(runner)
    check(out is not None, 'slixmpp printed no result:\n%s'
          % pvtest.indent(log))
    check(out['registered'], 'slixmpp did not register: %s' % out)
    check_eq(out['form_fields'], ['password', 'username'],
             'fields slixmpp saw in the registration form')
    check(out['session'], 'no session after the in-band sign-up: %s' % out)
    check_eq(rc, 0, 'slixmpp exit code (%s)' % out)
    check_eq(out['reply'], bob_full, 'sender of the reply slixmpp got')
    check_eq(rrc, 0, 'libstrophe scenario:\n%s' % pvtest.indent(rout))
    check(can_login(srv, user, 'sl1x-pw'),
          'the slixmpp account cannot log in on a new stream')


def roster_and_presence_work(srv):
    """Probes the modules (they may still be placeholders): a roster get
    answers, and a subscription request gives the RFC 6121 §3.1.2 roster
    push with ask='subscribe'."""
    if pvtest.available_modules(['roster', 'presence']) != ['roster',
                                                            'presence']:
        return False
    a = srv.login('interop-probe1', resource='p')
    try:
        r = a.iq("<iq type='get' id='probe-roster'><query xmlns='%s'/>"
                 "</iq>" % NS_ROSTER)
        if r.get('type') != 'result':
            return False
        a.send("<presence type='subscribe' to='interop-probe2@%s'/>"
               % srv.domain)
        deadline = time.monotonic() + 3 * pvtest.time_factor()
        while time.monotonic() < deadline:
            try:
                el = a.recv(max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                break
            item = el.find('{%s}query/{%s}item' % (NS_ROSTER, NS_ROSTER))
            if el.get('type') == 'set' and item is not None and \
                    item.get('ask') == 'subscribe':
                return True
        return False
    finally:
        a.close()


@suite.test
def contact_presence_and_messages_with_libstrophe():
    srv = server()
    if not roster_and_presence_work(srv):
        pvtest.skip('mod_roster/mod_presence are not working yet (roster '
                    'get or the subscription roster push missing): the '
                    'roster and presence part of the interop test cannot '
                    'run')
    user = 'slix-%s' % secrets.token_hex(3)
    slix_bare = '%s@%s' % (user, srv.domain)
    slix_full = slix_bare + '/slix'
    bob_bare = 'interop-bob2@' + srv.domain
    runner = start_runner(srv, 'interop_presence', """\
# libstrophe side of test_slixmpp_interop: slixmpp's new account asks for
# a subscription; bob approves and asks back (RFC 6121 §3.1), sees its
# presence, gets its message and answers.
[client] bob jid=%s/strophe password=%s

bob connects

bob sends:
    <presence/>

bob receives:
    <presence type='subscribe' from='%s'/>

bob sends:
    <presence type='subscribed' to='%s'/>

bob sends:
    <presence type='subscribe' to='%s'/>

bob receives:
    <presence type='subscribed' from='%s'/>

bob receives:
    <presence from='%s'/>

bob receives:
    <message type='chat' from='%s'><body>hi bob, from slixmpp</body></message>

bob sends:
    <message type='chat' to='%s' id='strophe-2'><body>hi slixmpp, from libstrophe</body></message>

bob disconnects
""" % (bob_bare, USERS['interop-bob2'], slix_bare, slix_bare, slix_bare,
       slix_bare, slix_full, slix_full, slix_full))
    rc, out, log = run_slixmpp(srv, {
        'mode': 'roster', 'user': user, 'password': 'sl1x-pw',
        'peer_bare': bob_bare, 'peer_full': bob_bare + '/strophe',
        'send_body': 'hi bob, from slixmpp',
        'expect_body': 'hi slixmpp, from libstrophe'})
    rrc, rout = finish_runner(runner)
    check(out is not None, 'slixmpp printed no result:\n%s'
          % pvtest.indent(log))
    check(out['registered'] and out['session'],
          'slixmpp sign-up/login: %s' % out)
    check(out['peer_online'], 'slixmpp never saw bob\'s presence: %s' % out)
    check_eq(rc, 0, 'slixmpp exit code (%s)' % out)
    check_eq(out['subscription'], 'both', 'subscription slixmpp ends with')
    check_eq(out['roster_name'], 'Bob', 'roster name slixmpp set')
    check_eq(rrc, 0, 'libstrophe scenario:\n%s' % pvtest.indent(rout))
    # the server's view: bob's roster has the slixmpp account, both ways
    b = srv.login('interop-bob2', resource='check')
    r = b.iq("<iq type='get' id='check-roster'><query xmlns='%s'/></iq>"
             % NS_ROSTER)
    items = {i.get('jid'): i.get('subscription') for i in
             r.iter('{%s}item' % NS_ROSTER)}
    check_eq(items.get(slix_bare), 'both', 'bob\'s roster item: %s'
             % tostr(r))
    b.close()


if __name__ == '__main__':
    suite.main()
