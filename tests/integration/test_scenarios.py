#!/usr/bin/python3
# Runs every tests/scenarios/*.scn through the libstrophe runner against one
# shared palaverd (scenarios use their own accounts, so they do not disturb
# each other). Accounts are collected from the [client] lines. One test per
# scenario file; `test_scenarios.py NAME.scn...` runs a subset.

import glob
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402

suite = pvtest.Suite('scenarios')


def scenario_files(argv):
    files = sorted(glob.glob(os.path.join(pvtest.scenarios_dir(), '*.scn')))
    if argv:
        files = [f for f in files if os.path.basename(f) in argv or
                 os.path.basename(f)[:-4] in argv]
    return files


def accounts(files, domain):
    users = {}
    for f in files:
        for name, jid, pw in pvtest.scenario_clients(f):
            user = jid.replace('${domain}', domain).split('/')[0]
            user = user.split('@')[0]
            if users.get(user, pw) != pw:
                raise SystemExit('%s: %s has two passwords across scenarios'
                                 % (f, user))
            users[user] = pw
    return users


def make_test(path):
    def test():
        srv = suite.shared_server(
            users=accounts(FILES, 'localhost'),
            modules=pvtest.available_modules(pvtest.ALL_MODULES))
        rc, out = pvtest.run_scenario(srv, path)
        out = out.rstrip()
        if rc == 77:
            pvtest.skip(out.splitlines()[-1] if out else 'skipped')
        if rc != 0:
            pvtest.fail('scn_runner exit %d\n%s' % (rc, pvtest.indent(out)))
        if srv.proc is None or srv.proc.poll() is not None:
            pvtest.fail('server died during the scenario')
    test.__name__ = os.path.basename(path)[:-4]
    return test


FILES = scenario_files(sys.argv[1:])
for _f in FILES:
    suite.test(make_test(_f))

# The runner must be able to fail: each of these conversations is wrong.
BROKEN = {
    'wrong_text': """[client] romeo jid=version-romeo@${domain}/r password=romeo-pw
romeo connects
romeo sends:
    <iq type='get' id='v' to='${domain}'><query xmlns='jabber:iq:version'/></iq>
romeo receives:
    <iq type='result' id='v'><query xmlns='jabber:iq:version'><name>Not Palaver</name></query></iq>
""",
    'wrong_namespace': """[client] romeo jid=ping-romeo@${domain}/r password=romeo-pw
romeo connects
romeo sends:
    <iq type='get' id='p' to='${domain}'><ping xmlns='urn:xmpp:ping'/></iq>
romeo receives:
    <iq type='result' id='p' xmlns='jabber:server'/>
""",
    'missing_child': """[client] romeo jid=disco-romeo@${domain}/r password=romeo-pw
romeo connects
romeo sends:
    <iq type='get' id='d' to='${domain}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>
romeo receives:
    <iq type='result' id='d'><query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:example:nonexistent'/></query></iq>
""",
    'unexpected_stanza': """[client] romeo jid=ping-romeo@${domain}/r password=romeo-pw
romeo connects
romeo sends:
    <iq type='get' id='p2' to='${domain}'><ping xmlns='urn:xmpp:ping'/></iq>
romeo receives nothing
""",
}


def broken_test(name, text):
    def test():
        srv = suite.shared_server(
            users=accounts(FILES, 'localhost'),
            modules=pvtest.available_modules(pvtest.ALL_MODULES))
        path = os.path.join(srv.dir, 'broken-%s.scn' % name)
        with open(path, 'w') as f:
            f.write(text)
        rc, out = pvtest.run_scenario(srv, path, extra=['--timeout', '1500'])
        pvtest.check_eq(rc, 1, 'runner exit code for a wrong scenario '
                        '(output: %s)' % out.strip())
        pvtest.check('FAIL' in out and ('mismatch' in out or
                                        'unexpected' in out),
                     'runner output does not explain: %s' % out)
    test.__name__ = 'runner_fails_on_' + name
    return test


if not sys.argv[1:]:
    for _n, _t in BROKEN.items():
        suite.test(broken_test(_n, _t))

if __name__ == '__main__':
    sys.exit(suite.run([]))
