#!/usr/bin/python3
# Runs every tests/scenarios/*.scn through the libstrophe runner against one
# shared palaverd (scenarios use their own accounts, so they do not disturb
# each other). Accounts are collected from the [client] lines. One test per
# scenario file; `test_scenarios.py NAME.scn...` runs a subset.

import glob
import os
import sys

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
            jid = jid.replace('${domain}', domain).split('/')[0]
            if users.get(jid, pw) != pw:
                raise SystemExit('%s: %s has two passwords across scenarios'
                                 % (f, jid))
            users[jid.split('@')[0]] = pw
    return users


def make_test(path):
    def test():
        srv = suite.shared_server(users=accounts(FILES, 'localhost'))
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

if __name__ == '__main__':
    sys.exit(suite.run([]))
