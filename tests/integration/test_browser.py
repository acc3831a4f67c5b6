#!/usr/bin/python3
# A real browser (issue 7): Converse.js from npm in Debian's headless
# Chromium, driven by playwright-core (tests/browser/drive.js, both pinned
# in tests/browser/package-lock.json and installed with `npm ci` when
# node_modules is missing), logs in to palaverd over WebSocket
# (ws://127.0.0.1 on the plain http listener, /xmpp-websocket) and over
# BOSH (/http-bind, a cross-origin page: CORS), and exchanges a message
# both ways with a libstrophe client (tests/runner/scn_runner). Each run
# leaves a screenshot of the Converse window, kept in the server's
# directory and copied to a path the test prints.

import os
import shutil
import struct
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import NS_CLIENT, check, check_eq  # noqa: E402
import http_client as hc  # noqa: E402

suite = pvtest.Suite('browser')
USERS = {'ws-alice': 'w3b-al1ce', 'ws-bob': 'l1bstr0phe-b0b',
         'bosh-alice': 'b0sh-al1ce', 'bosh-bob': 'l1bstr0phe-b0b2'}
MODULES = ['disco', 'ping', 'version', 'time', 'roster', 'presence',
           'offline', 'vcard', 'carbons', 'smacks', 'private']
NS_ROSTER = 'jabber:iq:roster'
BROWSER_DIR = os.path.join(pvtest.srcdir(), 'tests', 'browser')
CHROMIUM = os.environ.get('PV_CHROMIUM', '/usr/bin/chromium')


def server():
    return hc.http_server(suite, users=USERS,
                          modules=pvtest.available_modules(MODULES))


def node_modules():
    """tests/browser/node_modules from the committed lock file; skips
    (a failure under PV_TEST_STRICT=1) when node, npm or Chromium is
    missing."""
    node, npm = shutil.which('node'), shutil.which('npm')
    if node is None or npm is None:
        pvtest.skip('node/npm not installed')
    if not os.access(CHROMIUM, os.X_OK):
        pvtest.skip('%s not installed (apt-get install chromium)' % CHROMIUM)
    stamp = os.path.join(BROWSER_DIR, 'node_modules', '.package-lock.json')
    lock = os.path.join(BROWSER_DIR, 'package-lock.json')
    if (os.path.exists(stamp) and
            os.path.getmtime(stamp) >= os.path.getmtime(lock) and
            os.path.isdir(os.path.join(BROWSER_DIR, 'node_modules',
                                       'playwright-core'))):
        return node
    t0 = time.monotonic()
    r = subprocess.run([npm, 'ci', '--no-audit', '--no-fund'],
                       cwd=BROWSER_DIR, capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        pvtest.fail('npm ci in %s failed (%d):\n%s' % (
            BROWSER_DIR, r.returncode, pvtest.indent(
                (r.stdout + r.stderr).strip()[-3000:])))
    print('     npm ci in %s took %.0fs' % (BROWSER_DIR,
                                            time.monotonic() - t0))
    return node


def wait_iq(c, iq_id):
    while True:
        el = c.recv()
        if el.tag == '{%s}iq' % NS_CLIENT and el.get('id') == iq_id:
            check_eq(el.get('type'), 'result', 'iq %s' % iq_id)
            return el


def presence_from(c, frm, type_):
    return c.recv_until(
        lambda e: e.tag == '{%s}presence' % NS_CLIENT and
        (e.get('from') or '').split('/')[0] == frm and
        e.get('type') == type_, what='presence %s from %s' % (type_, frm))


def befriend(srv, user, peer, name):
    """user and peer subscribed both ways, peer named `name` in user's
    roster, so that Converse shows the contact and its presence."""
    a = srv.login(user, resource='setup')
    b = srv.login(peer, resource='setup')
    ja, jb = srv.jid(user), srv.jid(peer)
    for c in (a, b):
        c.send("<iq type='get' id='r0'><query xmlns='%s'/></iq>" % NS_ROSTER)
        wait_iq(c, 'r0')
        c.send('<presence/>')
    a.send("<iq type='set' id='r1'><query xmlns='%s'><item jid='%s' "
           "name='%s'/></query></iq>" % (NS_ROSTER, jb, name))
    wait_iq(a, 'r1')
    a.send("<presence to='%s' type='subscribe'/>" % jb)
    presence_from(b, ja, 'subscribe')
    b.send("<presence to='%s' type='subscribed'/>" % ja)
    b.send("<presence to='%s' type='subscribe'/>" % ja)
    presence_from(a, jb, 'subscribe')
    a.send("<presence to='%s' type='subscribed'/>" % jb)
    # both rosters say 'both' now
    for c, other in ((a, jb), (b, ja)):
        deadline = time.monotonic() + 10 * pvtest.time_factor()
        while True:
            c.send("<iq type='get' id='rq'><query xmlns='%s'/></iq>"
                   % NS_ROSTER)
            r = wait_iq(c, 'rq')
            subs = {i.get('jid'): i.get('subscription') for i in
                    r.iter('{%s}item' % NS_ROSTER)}
            if subs.get(other) == 'both':
                break
            if time.monotonic() > deadline:
                pvtest.fail('%s: subscription to %s is %r, not both' %
                            (c.jid, other, subs.get(other)))
            time.sleep(0.1)
    a.close()
    b.close()


SCENARIO = """# libstrophe side of test_browser.py (%(mode)s)
[client] bob jid=%(peer)s/libstrophe password=%(password)s

bob connects
bob sends:
    <presence/>
bob receives:
    <message type='chat'><body>%(incoming)s</body></message>
bob sends:
    <message to='%(browser)s' type='chat' id='reply1'>
      <body>%(reply)s</body><request xmlns='urn:xmpp:receipts'/>
    </message>
bob receives:
    <message><received xmlns='urn:xmpp:receipts' id='reply1'/></message>
bob receives:
    <message type='chat'><body>%(bye)s</body></message>
bob disconnects
"""


def png_size(path):
    with open(path, 'rb') as f:
        head = f.read(24)
    check(head[:8] == b'\x89PNG\r\n\x1a\n', '%s is not a PNG' % path)
    return struct.unpack('>II', head[16:24])


def browser_chat(mode):
    node = node_modules()
    runner = pvtest.runner_path()
    if not os.access(runner, os.X_OK):
        pvtest.skip('%s not built' % runner)
    srv = server()
    user = 'bosh-alice' if mode == 'bosh' else 'ws-alice'
    peer = 'bosh-bob' if mode == 'bosh' else 'ws-bob'
    befriend(srv, user, peer, 'Bob (libstrophe)')
    tag = '%s-%d' % (mode, time.monotonic_ns() % 1000000)
    incoming = 'Hello Bob from Converse over %s (%s)' % (mode, tag)
    reply = 'Hi Alice, libstrophe here (%s)' % tag
    bye = 'Bye Bob, screenshot taken (%s)' % tag
    scn = os.path.join(srv.dir, 'browser-%s.scn' % mode)
    with open(scn, 'w') as f:
        f.write(SCENARIO % {'mode': mode, 'peer': srv.jid(peer),
                            'password': USERS[peer], 'incoming': incoming,
                            'browser': srv.jid(user), 'reply': reply,
                            'bye': bye})
    tf = pvtest.time_factor()
    timeout_ms = int(20000 * tf)
    bob = subprocess.Popen(
        [runner] + srv.runner_args() + [
            '--provide', 'tls,c2s', '--timeout', str(timeout_ms * 2),
            '--verbose', scn],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = 'http://%s:%d' % (srv.host('http'), srv.port('http'))
    if mode == 'bosh':
        url = base + '/http-bind'
    else:
        url = base.replace('http://', 'ws://') + '/xmpp-websocket'
    shot = os.path.join(srv.dir, 'browser-%s.png' % mode)
    drive_log = os.path.join(srv.dir, 'browser-%s.log' % mode)
    cmd = [node, os.path.join(BROWSER_DIR, 'drive.js'),
           '--mode', mode, '--url', url, '--jid', srv.jid(user),
           '--password', USERS[user], '--peer', srv.jid(peer),
           '--send', incoming, '--expect', reply, '--bye', bye,
           '--screenshot', shot,
           '--timeout', str(timeout_ms), '--log', drive_log,
           '--chromium', CHROMIUM]
    try:
        d = subprocess.run(cmd, cwd=BROWSER_DIR, capture_output=True,
                           text=True, timeout=timeout_ms * 4 / 1000)
        drive_out = (d.stdout + d.stderr).strip()
        drive_rc = d.returncode
    except subprocess.TimeoutExpired as e:
        drive_out = '%s\n(drive.js killed after %ss)' % (
            (e.stdout or b'').decode(errors='replace')
            if isinstance(e.stdout, bytes) else (e.stdout or ''),
            e.timeout)
        drive_rc = -1
    try:
        bob_out, _ = bob.communicate(timeout=timeout_ms * 3 / 1000)
    except subprocess.TimeoutExpired:
        bob.kill()
        bob_out, _ = bob.communicate()
    print(pvtest.indent(drive_out, '     drive | '))
    if drive_rc != 0 or 'drive: PASS' not in drive_out:
        pvtest.fail('drive.js (%s) exit %s (log %s):\n%s\nlibstrophe '
                    'client:\n%s' % (mode, drive_rc, drive_log,
                                     pvtest.indent(drive_out),
                                     pvtest.indent(bob_out.strip())))
    if bob.returncode != 0:
        pvtest.fail('libstrophe client exit %d:\n%s' %
                    (bob.returncode, pvtest.indent(bob_out.strip())))
    # the browser's message reached libstrophe from the browser's session
    check("from='%s/" % srv.jid(user) in bob_out or
          'from="%s/' % srv.jid(user) in bob_out,
          'libstrophe did not see a message from %s/...:\n%s' %
          (srv.jid(user), pvtest.indent(bob_out.strip())))
    w, h = png_size(shot)
    check_eq((w, h), (1280, 800), 'screenshot size')
    check(os.path.getsize(shot) > 20000, 'screenshot suspiciously small '
          '(%d bytes)' % os.path.getsize(shot))
    out_dir = os.environ.get('PV_BROWSER_SHOTS') or os.path.join(
        pvtest.builddir(), 'tests', 'integration')
    try:
        os.makedirs(out_dir, exist_ok=True)
        copy = os.path.join(out_dir, 'browser-%s.png' % mode)
        shutil.copyfile(shot, copy)
    except OSError:
        copy = os.path.join('/tmp', 'palaver-browser-%s.png' % mode)
        shutil.copyfile(shot, copy)
    print('     screenshot (%s): %s' % (mode, copy))


@suite.test
def converse_websocket():
    browser_chat('websocket')


@suite.test
def converse_bosh():
    browser_chat('bosh')


if __name__ == '__main__':
    suite.main()
