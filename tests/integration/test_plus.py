#!/usr/bin/python3
# Channel binding: SCRAM-*-PLUS with every binding type Palaver advertises
# (XEP-0440), driven through tests/integration/plus_client (Palaver's SCRAM
# client over OpenSSL), a wrong binding refused, and slixmpp, which picks
# -PLUS when offered and always binds with tls-unique.

import asyncio
import os
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq  # noqa: E402

suite = pvtest.Suite('plus')
USERS = {'romeo': 'r0meo-plus', 'juliet': 'jul1et-plus'}
MECHS = ('SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256-PLUS')
CB_TYPES = ('tls-unique', 'tls-server-end-point', 'tls-exporter')


def server():
    return suite.shared_server(users=USERS)


def plus_client(srv, mech, cb, direct=False, extra=()):
    exe = pvtest.plus_client_path()
    if not os.access(exe, os.X_OK):
        pvtest.skip('%s not built' % exe)
    kind = 'c2s_direct_tls' if direct else 'c2s'
    args = [exe, '--host', srv.host(kind), '--port', str(srv.port(kind)),
            '--domain', srv.domain, '--cafile', srv.cafile,
            '--user', 'romeo', '--password', USERS['romeo'],
            '--mech', mech, '--cb', cb] + (['--direct'] if direct else []) \
        + list(extra)
    r = subprocess.run(args, capture_output=True, text=True,
                       timeout=60 * pvtest.time_factor())
    return r.returncode, (r.stdout + r.stderr).strip()


def matrix_test(mech, cb, direct):
    def test():
        srv = server()
        rc, out = plus_client(srv, mech, cb, direct)
        check_eq(rc, 0, '%s with %s over %s: %s' %
                 (mech, cb, 'direct TLS' if direct else 'STARTTLS', out))
    test.__name__ = '%s_%s%s' % (mech, cb, '_direct' if direct else '')
    test.__name__ = test.__name__.replace('-', '_')
    return test


for _m in MECHS:
    for _cb in CB_TYPES:
        suite.test(matrix_test(_m, _cb, False))
    suite.test(matrix_test(_m, 'tls-exporter', True))


@suite.test
def tls_unique_on_tls12():
    # tls-unique is the RFC 5929 binding proper on TLS 1.2
    srv = server()
    for mech in MECHS:
        rc, out = plus_client(srv, mech, 'tls-unique', extra=['--tls12'])
        check_eq(rc, 0, '%s with tls-unique on TLS 1.2: %s' % (mech, out))


@suite.test
def wrong_binding_refused():
    srv = server()
    for mech in MECHS:
        for cb in CB_TYPES:
            rc, out = plus_client(srv, mech, cb, extra=[
                '--corrupt-cb', '--expect-failure', 'not-authorized'])
            check_eq(rc, 0, '%s with corrupted %s data: %s' % (mech, cb, out))


class Bot:
    """A slixmpp client; records the SASL mechanism it used."""

    def __init__(self, srv, user, resource, direct):
        import slixmpp
        self.xmpp = slixmpp.ClientXMPP('%s@%s/%s' % (user, srv.domain,
                                                       resource),
                                       USERS[user])
        self.xmpp.ca_certs = srv.cafile
        self.srv = srv
        self.direct = direct
        self.started = asyncio.get_event_loop().create_future()
        self.got = asyncio.get_event_loop().create_future()
        self.xmpp.add_event_handler('session_start', self._start)
        self.xmpp.add_event_handler('failed_all_auth', self._failed)
        self.xmpp.add_event_handler('message', self._message)

    def connect(self):
        kind = 'c2s_direct_tls' if self.direct else 'c2s'
        self.xmpp.connect((self.srv.host(kind), self.srv.port(kind)),
                          use_ssl=self.direct, force_starttls=not self.direct,
                          disable_starttls=self.direct)

    def mech(self):
        m = self.xmpp['feature_mechanisms'].mech
        return m.name if m is not None else None

    def _start(self, event):
        if not self.started.done():
            self.started.set_result(True)

    def _failed(self, event):
        if not self.started.done():
            self.started.set_exception(pvtest.TestFailure(
                'slixmpp login failed'))

    def _message(self, msg):
        if not self.got.done() and msg['body']:
            self.got.set_result(msg)


@suite.test
def slixmpp_plus_login_and_message():
    import importlib.util
    if importlib.util.find_spec('slixmpp') is None:
        pvtest.skip('slixmpp not installed (python3-slixmpp)')
    srv = server()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    romeo = Bot(srv, 'romeo', 'slix', direct=False)
    juliet = Bot(srv, 'juliet', 'slix', direct=True)
    timeout = 20 * pvtest.time_factor()

    async def scenario():
        romeo.connect()
        juliet.connect()
        await asyncio.wait_for(asyncio.gather(romeo.started, juliet.started),
                               timeout)
        romeo.xmpp.send_message(mto=juliet.xmpp.boundjid.full,
                                mbody='slixmpp over -PLUS', mtype='chat')
        msg = await asyncio.wait_for(juliet.got, timeout)
        check_eq(msg['from'].full, romeo.xmpp.boundjid.full,
                 'from of the relayed message')
        juliet.xmpp.send_message(mto=romeo.xmpp.boundjid.full,
                                 mbody='and back', mtype='chat')
        msg = await asyncio.wait_for(romeo.got, timeout)
        check_eq(msg['body'], 'and back', 'reply body')

    try:
        loop.run_until_complete(scenario())
    except asyncio.TimeoutError:
        pvtest.fail('slixmpp timed out (romeo mech %s, juliet mech %s)' %
                    (romeo.mech(), juliet.mech()))
    finally:
        async def close():
            waits = []
            for b in (romeo, juliet):
                try:
                    w = b.xmpp.disconnect(wait=1.0)
                    if w is not None:
                        waits.append(w)
                except Exception:       # noqa: BLE001
                    pass
            if waits:
                await asyncio.wait(waits, timeout=5)
        loop.run_until_complete(close())
        pending = asyncio.all_tasks(loop)
        for t in pending:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*pending,
                                               return_exceptions=True))
        loop.close()
    for name, b in (('romeo', romeo), ('juliet', juliet)):
        check(b.mech() and b.mech().endswith('-PLUS'),
              '%s logged in with %s, not a -PLUS mechanism' %
              (name, b.mech()))


if __name__ == '__main__':
    suite.main()
