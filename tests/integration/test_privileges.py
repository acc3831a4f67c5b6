#!/usr/bin/python3
# Least privilege (CONTRACTS.md §1, issue 10): started as root without
# `user` and without run_as_root palaverd refuses, naming both fixes; with
# user = "nobody" it binds a privileged port, then runs as that user (no
# capabilities, no root group), keeps serving logins and store writes, owns
# its store, control socket and log file, and can still reload. Files it
# creates are 0600 and directories 0700. Needs root (CI runs as root).

import grp
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq  # noqa: E402

suite = pvtest.Suite('privileges')
USERS = {'alice': 'al1ce-pw', 'bob': 'b0b-pw'}
RUN_AS = 'nobody'

state = {}


def need_root():
    if os.geteuid() != 0:
        pvtest.skip('needs root')


def run_palaverd(srv):
    """Runs palaverd on srv's config without waiting for readiness;
    returns (exit code, everything it logged)."""
    out = open(srv.out_path, 'ab')
    try:
        r = subprocess.run([pvtest.palaverd_path(), '-c', srv.conf_path],
                           cwd=srv.dir, stdout=out, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL,
                           timeout=30 * pvtest.time_factor())
    except subprocess.TimeoutExpired:
        pvtest.fail('palaverd kept running')
    finally:
        out.close()
    return r.returncode, srv.log_text()


@suite.test
def refuses_root_without_user():
    need_root()
    # no accounts: palaverctl refuses root without user just the same
    srv = suite.server(run_as_root=None)
    rc, text = run_palaverd(srv)
    check(rc != 0, 'palaverd as root without user exited with 0')
    check('user = ' in text and 'run_as_root = true' in text,
          'refusal does not name both fixes:\n%s' % pvtest.indent(text))
    check(not os.path.exists(os.path.join(srv.data_dir, 'ports')),
          'ports written (listeners bound) before refusing')
    # run_as_root = false is the same
    srv.config['run_as_root'] = False
    srv.write_config()
    rc, _ = run_palaverd(srv)
    check(rc != 0, 'palaverd with run_as_root = false exited with 0')


@suite.test
def refuses_unknown_user():
    need_root()
    srv = suite.server(run_as_root=None, user='no-such-user-pv')
    rc, text = run_palaverd(srv)
    check(rc != 0, 'palaverd with an unknown user exited with 0')
    check("'no-such-user-pv' does not exist" in text,
          'no message for the unknown user:\n%s' % pvtest.indent(text))


def privileged_port():
    for p in range(700, 1000):
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(('127.0.0.1', p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    pvtest.skip('no free port below 1024')


def dropped_server():
    """A server started as root with user = RUN_AS, its config and key
    readable the way a deployment has them (/etc/palaver 0755, key
    root:group 0640)."""
    need_root()
    srv = state.get('srv')
    if srv is not None:
        return srv
    try:
        pw = pwd.getpwnam(RUN_AS)
    except KeyError:
        pvtest.skip('no user %s' % RUN_AS)
    port = privileged_port()
    srv = suite.server(users=USERS, run_as_root=None, user=RUN_AS,
                       listen=[{'kind': 'c2s', 'address': '127.0.0.1',
                                'port': port},
                               {'kind': 'c2s_direct_tls',
                                'address': '127.0.0.1', 'port': 0}])
    os.chmod(srv.dir, 0o755)
    os.chmod(srv.conf_path, 0o644)
    os.chown(srv.key, 0, pw.pw_gid)
    os.chmod(srv.key, 0o640)
    # the harness's NOTIFY_SOCKET must be writable for RUN_AS, as
    # systemd's is (ready_after_drop tests a socket that is not)
    old = os.umask(0)
    try:
        srv.start()
    finally:
        os.umask(old)
    check_eq(srv.port('c2s'), port, 'privileged c2s port')
    state['srv'] = srv
    state['pw'] = pw
    return srv


def status(pid):
    out = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            k, _, v = line.partition(':')
            out[k] = v.split()
    return out


@suite.test
def drops_to_user():
    srv = dropped_server()
    pw = state['pw']
    st = status(srv.proc.pid)
    check_eq(st['Uid'], [str(pw.pw_uid)] * 4, 'Uid (real, effective, saved,'
             ' fs)')
    check_eq(st['Gid'], [str(pw.pw_gid)] * 4, 'Gid (real, effective, saved,'
             ' fs)')
    groups = set(int(g) for g in st.get('Groups', []))
    want = set(g.gr_gid for g in grp.getgrall() if RUN_AS in g.gr_mem)
    want.add(pw.pw_gid)
    check(0 not in groups, 'still in group root: %s' % sorted(groups))
    check(groups <= want, 'supplementary groups %s, %s has %s' %
          (sorted(groups), RUN_AS, sorted(want)))
    for cap in ('CapPrm', 'CapEff', 'CapAmb'):
        if cap in st:
            check_eq(int(st[cap][0], 16), 0, cap)
    check(os.path.exists(os.path.join(srv.data_dir, 'ports')),
          'no ports file')
    with open(srv.log_path) as f:
        check('running as user %s' % RUN_AS in f.read(),
              'no "running as user" log line')


@suite.test
def serves_after_drop():
    srv = dropped_server()
    a = srv.login('alice', resource='dropped')
    b = srv.login('bob', resource='dropped', tls='direct')
    pvtest.message_round_trip(a, b)
    # a store write by the unprivileged process, through the control
    # socket (palaverctl runs as root here)
    srv.ctl('adduser', 'carol@localhost', input='car0l-pw\n')
    c = srv.login('carol', 'car0l-pw', resource='new')
    pvtest.message_round_trip(c, a)
    r = srv.ctl('users', 'localhost')
    check('carol' in r.stdout.split(), 'carol not listed: %r' % r.stdout)
    for x in (a, b, c):
        x.close()


def check_file(path, mode, uid, what):
    try:
        st = os.lstat(path)
    except OSError as e:
        pvtest.fail('%s %s: %s' % (what, path, e))
    check_eq(oct(stat.S_IMODE(st.st_mode)), oct(mode), 'mode of %s' % what)
    check_eq(st.st_uid, uid, 'owner of %s %s' % (what, path))


@suite.test
def file_modes_and_owner():
    srv = dropped_server()
    uid = state['pw'].pw_uid
    d = srv.data_dir
    check_file(d, 0o700, uid, 'storage directory')
    for name in ('data.mdb', 'lock.mdb', 'ports'):
        check_file(os.path.join(d, name), 0o600, uid, name)
    ctl = os.path.join(d, 'control')
    check(stat.S_ISSOCK(os.lstat(ctl).st_mode), 'control is not a socket')
    check_file(ctl, 0o600, uid, 'control socket')
    # the log file: created 0600, and the server must be able to open it
    # again on SIGHUP (reload_after_drop)
    check_file(srv.log_path, 0o600, uid, 'log file')
    # nothing in the store is left to root
    for name in os.listdir(d):
        check_eq(os.lstat(os.path.join(d, name)).st_uid, uid,
                 'owner of %s' % name)


@suite.test
def reload_after_drop():
    srv = dropped_server()
    a = srv.login('alice', resource='before-hup')
    n = srv.log_text().count('configuration reloaded')
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10 * pvtest.time_factor()
    while srv.log_text().count('configuration reloaded') <= n:
        check('reload failed' not in srv.log_text(),
              'reload as %s failed:\n%s' % (RUN_AS, srv.log_tail(10)))
        check(time.monotonic() < deadline, 'no reload logged')
        time.sleep(0.05)    # polling the log
    with open(srv.log_path) as f:
        logged = f.read()
    check(logged.count('configuration reloaded') > 0,
          'after SIGHUP as %s the log no longer goes to %s:\n%s' %
          (RUN_AS, srv.log_path, srv.log_tail(10)))
    b = srv.login('bob', resource='after-hup', tls='direct')
    pvtest.message_round_trip(a, b)
    # logged just after the bind result is sent: poll
    deadline = time.monotonic() + 10 * pvtest.time_factor()
    while True:
        with open(srv.log_path) as f:
            if 'bound bob@localhost/after-hup' in f.read():
                break
        check(time.monotonic() < deadline,
              'log lines after the reload missing from %s' % srv.log_path)
        time.sleep(0.02)    # polling the log file
    for x in (a, b):
        x.close()


@suite.test
def ready_after_drop():
    # READY=1 reaches a NOTIFY_SOCKET only root may write to: the
    # listeners are bound before the drop, so is the notification's
    # socket
    need_root()
    srv = suite.server(run_as_root=None, user=RUN_AS)
    os.chmod(srv.dir, 0o755)
    os.chmod(srv.conf_path, 0o644)
    srv.started_once = True     # log tail on failure
    path = os.path.join(srv.dir, 'notify-root.sock')
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(path)
    os.chmod(path, 0o755)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    out = open(srv.out_path, 'ab')
    proc = subprocess.Popen([pvtest.palaverd_path(), '-c', srv.conf_path],
                            cwd=srv.dir, env=env, stdout=out,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    out.close()
    try:
        ns.settimeout(15 * pvtest.time_factor())
        try:
            msg = ns.recv(4096).decode(errors='replace')
        except socket.timeout:
            msg = ''
        check('READY=1' in msg.split('\n'),
              'no READY=1 on a root-only NOTIFY_SOCKET after dropping to '
              '%s:\n%s' % (RUN_AS, srv.log_tail(10)))
    finally:
        ns.close()
        proc.terminate()
        check_eq(proc.wait(30 * pvtest.time_factor()), 0,
                 'exit code after SIGTERM')


@suite.test
def modes_without_drop():
    # run_as_root (the harness default): the same modes
    srv = suite.shared_server('root', users=USERS)
    d = srv.data_dir
    check_file(d, 0o700, os.geteuid(), 'storage directory')
    for name in ('data.mdb', 'lock.mdb', 'ports'):
        check_file(os.path.join(d, name), 0o600, os.geteuid(), name)
    check_file(os.path.join(d, 'control'), 0o600, os.geteuid(),
               'control socket')
    check_file(srv.log_path, 0o600, os.geteuid(), 'log file')


if __name__ == '__main__':
    suite.main()
