#!/usr/bin/python3
# SIGHUP (CONTRACTS.md §1, palaver.conf(5) SIGNALS): a new configuration
# generation takes effect for module directives (version_show_os,
# ping_idle), module lists (disco#info features, XEP-0115 caps ver), TLS
# certificates (new connections see the new one) and log_level; listener
# changes are logged as needing a restart and not applied; a broken file
# is logged with FILE:LINE and the running configuration stays. Sessions
# bound before the first reload live through all of them and keep
# exchanging messages with sessions bound after. One server, tests in
# order (each leaves the configuration as it found it).

import hashlib
import os
import shutil
import signal
import socket
import ssl
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq  # noqa: E402

suite = pvtest.Suite('reload')
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw', 'carol': 'car0l-pw'}
NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info'
NS_VERSION = 'jabber:iq:version'
NS_TIME = 'urn:xmpp:time'
NS_CAPS = 'http://jabber.org/protocol/caps'
NS_PING = 'urn:xmpp:ping'
BASE_MODULES = ['disco', 'ping', 'version']

state = {'n': 0}


def server():
    srv = state.get('srv')
    if srv is None:
        mods = pvtest.available_modules(BASE_MODULES + ['time'])
        if mods != BASE_MODULES + ['time']:
            pvtest.skip('needs modules %s, have %s' %
                        (BASE_MODULES + ['time'], mods))
        srv = suite.shared_server(users=USERS, modules=BASE_MODULES,
                                  ping_idle='off')
        state['srv'] = srv
        # bound before any reload: they must survive every one
        state['a'] = srv.login('alice', resource='gen1')
        state['b'] = srv.login('bob', resource='gen1', tls='direct')
        state['base'] = dict(srv.config)
    elif srv.config != state['base'] or srv.modules != BASE_MODULES:
        # a failed test left its configuration behind
        srv.config = dict(state['base'])
        srv.modules = list(BASE_MODULES)
        reload(srv, want=None)
    return srv


def uid():
    state['n'] += 1
    return 'r%d' % state['n']


def old_sessions_ok():
    pvtest.message_round_trip(state['a'], state['b'])


def reload(srv, want='configuration reloaded'):
    """Rewrites the config from srv.config/srv.modules, sends SIGHUP and
    waits until the server has handled it; returns the log lines the
    reload wrote. want: the line that must be among them (None: none)."""
    srv.write_config()
    return hup(srv, want)


MARKERS = ('server: reloading ', 'server: configuration reloaded',
           'server: reload failed')


def hup(srv, want):
    """SIGHUP, then waits until the reload has run; returns what it
    logged. With log_level raised above info, only one of MARKERS may be
    logged (before or after the level changes), so any of them counts."""
    before = srv.log_text()
    n = sum(before.count(m) for m in MARKERS)
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10 * pvtest.time_factor()
    while sum(srv.log_text().count(m) for m in MARKERS) <= n:
        check(srv.running(), 'palaverd died on SIGHUP')
        check(time.monotonic() < deadline, 'no reload logged')
        time.sleep(0.02)    # polling the log file
    # the reload runs in one loop callback: once an IQ sent now is
    # answered, it is complete
    r = state['a'].iq("<iq type='get' id='%s' to='localhost'>"
                      "<ping xmlns='%s'/></iq>" % (uid(), NS_PING))
    check_eq(r.get('type'), 'result', 'ping after SIGHUP')
    new = srv.log_text()[len(before):]
    if want is not None:
        check(want in new, 'no %r after SIGHUP; logged:\n%s' %
              (want, pvtest.indent(new)))
    return new


def version_has_os(c):
    r = c.iq("<iq type='get' id='%s' to='localhost'><query xmlns='%s'/>"
             "</iq>" % (uid(), NS_VERSION))
    check_eq(r.get('type'), 'result', 'version answer')
    q = r.find('{%s}query' % NS_VERSION)
    check(q is not None and q.find('{%s}name' % NS_VERSION) is not None,
          'version answer without name: %s' % pvtest.tostr(r))
    return q.find('{%s}os' % NS_VERSION) is not None


def disco_features(c):
    r = c.iq("<iq type='get' id='%s' to='localhost'><query xmlns='%s'/>"
             "</iq>" % (uid(), NS_DISCO_INFO))
    check_eq(r.get('type'), 'result', 'disco#info answer')
    return set(f.get('var') for f in
               r.iter('{%s}feature' % NS_DISCO_INFO))


def caps_ver(c):
    el = c.features.find('{%s}c' % NS_CAPS) if c.features is not None \
        else None
    check(el is not None, 'no XEP-0115 <c/> in the stream features')
    return el.get('ver')


def time_answer(c):
    r = c.iq("<iq type='get' id='%s' to='localhost'><time xmlns='%s'/>"
             "</iq>" % (uid(), NS_TIME))
    if r.get('type') == 'result':
        return 'result'
    return pvtest.stanza_error(r)[1]


def fingerprint_der(der):
    return hashlib.sha256(der).hexdigest()


def cert_fingerprint(path):
    with open(path) as f:
        return fingerprint_der(ssl.PEM_cert_to_DER_cert(f.read()))


def peer_fingerprint(srv, tls):
    c = srv.client(tls=tls)
    c.connect()
    fp = fingerprint_der(c.tls_sock.getpeercert(binary_form=True))
    c.close()
    return fp


@suite.test
def module_directive():
    srv = server()
    new = srv.login('carol', resource=uid())
    check(not version_has_os(state['a']), '<os/> with version_show_os off')
    srv.config['version_show_os'] = True
    reload(srv)
    check(version_has_os(new), 'no <os/> after version_show_os = true '
          '(session bound before the reload)')
    fresh = srv.login('carol', resource=uid())
    check(version_has_os(fresh), 'no <os/> after version_show_os = true '
          '(new session)')
    srv.config['version_show_os'] = False
    reload(srv)
    check(not version_has_os(fresh), '<os/> after version_show_os = false')
    old_sessions_ok()
    for c in (new, fresh):
        c.close()


@suite.test
def ping_idle_directive():
    srv = server()
    srv.config['ping_idle'] = '1s'
    reload(srv)
    idle = srv.login('carol', resource=uid())
    p = idle.recv_until(lambda e: e.tag == '{%s}iq' % pvtest.NS_CLIENT and
                        e.get('type') == 'get' and
                        e.find('{%s}ping' % NS_PING) is not None,
                        (1 + 5) * pvtest.time_factor(),
                        what='server ping with ping_idle = 1s')
    check_eq(p.get('from'), 'localhost', 'from of the server ping')
    idle.send("<iq type='result' id='%s' to='localhost'/>" % p.get('id'))
    # back to off: a session idle from now on is never pinged, also
    # while one bound under the 1s generation is still connected
    srv.config['ping_idle'] = 'off'
    reload(srv)
    quiet = srv.login('carol', resource=uid())
    try:
        el = quiet.recv_until(
            lambda e: e.tag == '{%s}iq' % pvtest.NS_CLIENT and
            e.find('{%s}ping' % NS_PING) is not None, 3.5,
            what='ping')
        pvtest.fail('server ping after ping_idle = "off" was reloaded: %s'
                    % pvtest.tostr(el))
    except pvtest.TestFailure as e:
        if 'no ping within' not in str(e):
            raise
    old_sessions_ok()
    for c in (idle, quiet):
        c.close()


@suite.test
def module_list():
    srv = server()
    before = srv.login('carol', resource=uid())
    ver0 = caps_ver(before)
    check(NS_TIME not in disco_features(before), 'time before it is loaded')
    check_eq(time_answer(before), 'service-unavailable',
             'time query without mod_time')
    srv.modules = BASE_MODULES + ['time']
    reload(srv)
    after = srv.login('carol', resource=uid())
    check(NS_TIME in disco_features(after),
          'disco#info lacks %s after adding time' % NS_TIME)
    check(NS_TIME in disco_features(state['a']),
          'disco#info lacks %s for a session bound before' % NS_TIME)
    check_eq(time_answer(after), 'result', 'time query after adding time')
    ver1 = caps_ver(after)
    check(ver1 != ver0, 'caps ver unchanged (%s) after adding time' % ver1)
    srv.modules = list(BASE_MODULES)
    reload(srv)
    removed = srv.login('carol', resource=uid())
    check(NS_TIME not in disco_features(removed),
          'disco#info still has %s after removing time' % NS_TIME)
    check_eq(time_answer(removed), 'service-unavailable',
             'time query after removing time')
    check_eq(caps_ver(removed), ver0, 'caps ver back without time')
    old_sessions_ok()
    pvtest.message_round_trip(state['a'], removed)
    pvtest.message_round_trip(after, removed)
    for c in (before, after, removed):
        c.close()


@suite.test
def tls_certificate():
    srv = server()
    old = cert_fingerprint(srv.cert)
    for tls in ('starttls', 'direct'):
        check_eq(peer_fingerprint(srv, tls), old, 'certificate (%s)' % tls)
    # renewed in place, as certbot does: same paths, new files
    d = os.path.join(srv.dir, 'tls-renewed')
    os.makedirs(d)
    crt, key = pvtest.make_host_cert(d, srv.domain, srv.tls_dir)
    shutil.copyfile(crt, srv.cert)
    shutil.copyfile(key, srv.key)
    new = cert_fingerprint(srv.cert)
    check(new != old, 'renewed certificate is the same')
    reload(srv)
    for tls in ('starttls', 'direct'):
        check_eq(peer_fingerprint(srv, tls), new,
                 'certificate after the reload (%s)' % tls)
    c = srv.login('carol', resource=uid(), tls='direct')
    old_sessions_ok()
    pvtest.message_round_trip(state['a'], c)
    c.close()


@suite.test
def log_level():
    srv = server()
    srv.config['log_level'] = 'warn'
    reload(srv, want=None)
    r1 = uid()
    c = srv.login('carol', resource=r1)
    c.close()
    srv.config['log_level'] = 'debug'
    reload(srv, want=None)
    r2 = uid()
    c = srv.login('carol', resource=r2)
    # the server logs "bound" just after sending the result: poll
    deadline = time.monotonic() + 10 * pvtest.time_factor()
    while 'bound carol@localhost/%s' % r2 not in srv.log_text():
        check(time.monotonic() < deadline,
              'no info line after log_level = "debug" came back')
        time.sleep(0.02)    # polling the log file
    # lines are in order: r1's would be there by now
    check('bound carol@localhost/%s' % r1 not in srv.log_text(),
          'info line logged with log_level = "warn"')
    old_sessions_ok()
    c.close()


@suite.test
def listener_change_needs_restart():
    srv = server()
    port = srv.port('c2s')
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    other = s.getsockname()[1]
    s.close()
    listen = [{'kind': 'c2s', 'address': '127.0.0.1', 'port': other},
              {'kind': 'c2s_direct_tls', 'address': '127.0.0.1', 'port': 0}]
    srv.config['listen'] = listen
    # in the same file, a change that does apply
    srv.config['version_show_os'] = True
    new = reload(srv)
    check('listener changes need a restart; not applied' in new,
          'listener change not logged as needing a restart:\n%s' %
          pvtest.indent(new))
    check(version_has_os(state['a']),
          'the rest of the file was not applied with a listener change')
    try:
        socket.create_connection(('127.0.0.1', other), 2).close()
        pvtest.fail('the new listener port %d was opened' % other)
    except OSError:
        pass
    c = srv.login('carol', resource=uid())      # still the old port
    check_eq(c.port, port, 'port')
    # the file still differs from what runs: said again on every reload
    new = reload(srv)
    check('listener changes need a restart; not applied' in new,
          'a listener change still pending not logged on the next '
          'reload:\n%s' % pvtest.indent(new))
    del srv.config['listen']
    srv.config['version_show_os'] = False
    new = reload(srv)
    check('need a restart' not in new, 'listeners back as they run, yet '
          'a restart is asked for:\n%s' % pvtest.indent(new))
    old_sessions_ok()
    c.close()


@suite.test
def broken_config_keeps_running():
    srv = server()
    srv.config['version_show_os'] = True
    srv.write_config()
    with open(srv.conf_path) as f:
        lines = f.read().splitlines()
    lines += ['bogus_directive = 1;', 'xml_max_depth = "deep";']
    bad = {len(lines) - 1: 'bogus_directive', len(lines): 'xml_max_depth'}
    with open(srv.conf_path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    new = hup(srv, 'reload failed; keeping the running configuration')
    for line, what in bad.items():
        check('%s:%d:' % (srv.conf_path, line) in new,
              'no %s:%d: for %s in the log:\n%s' %
              (srv.conf_path, line, what, pvtest.indent(new)))
    check(not version_has_os(state['a']),
          'part of a broken file was applied')
    # a syntax error
    with open(srv.conf_path, 'a') as f:
        f.write('this is not libconfig\n')
    new = hup(srv, 'reload failed; keeping the running configuration')
    check('%s:%d:' % (srv.conf_path, len(lines) + 1) in new,
          'syntax error not logged with %s:%d:\n%s' %
          (srv.conf_path, len(lines) + 1, pvtest.indent(new)))
    c = srv.login('carol', resource=uid(), tls='direct')
    pvtest.message_round_trip(state['a'], c)
    old_sessions_ok()
    # and a good file after the broken ones is applied
    reload(srv)
    check(version_has_os(c), 'good file after a broken one not applied')
    srv.config['version_show_os'] = False
    reload(srv)
    c.close()


@suite.test
def sessions_survive():
    srv = server()
    a, b = state['a'], state['b']
    latest = srv.login('carol', resource=uid(), tls='direct')
    a.send('<presence/>')       # available: bare JID messages reach it
    a.iq("<iq type='get' id='%s' to='localhost'><ping xmlns='%s'/></iq>"
         % (uid(), NS_PING))
    pvtest.message_round_trip(a, b)
    pvtest.message_round_trip(a, latest)
    pvtest.message_round_trip(latest, b)
    # messages to the bare JID of a session bound before the reloads
    latest.send("<message type='chat' to='alice@localhost' id='bare'>"
                "<body>to-bare</body></message>")
    m = a.recv_until(lambda e: e.findtext('{%s}body' % pvtest.NS_CLIENT)
                     == 'to-bare', what='message to the bare JID')
    check_eq(m.get('from'), latest.jid, 'from')
    r = b.iq("<iq type='get' id='%s' to='localhost'><ping xmlns='%s'/>"
             "</iq>" % (uid(), NS_PING))
    check_eq(r.get('type'), 'result', 'ping from a first-generation '
             'session')
    latest.close()


if __name__ == '__main__':
    suite.main()
