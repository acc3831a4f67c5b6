# Palaver integration-test harness: owns starting a real palaverd (or, for
# validating the tests themselves, a private Prosody) in a temporary
# directory with generated certificates, config and accounts, plus a raw XMPP
# client for hostile-input tests and a tiny test runner with keep-on-failure.
# It does not own the scenario runner (tests/runner/scn_runner.c).
# Run under /usr/bin/python3 (CONTRACTS.md §5); stdlib only.

import base64
import hashlib
import hmac
import os
import secrets
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET

NS_CLIENT = 'jabber:client'
NS_STREAMS = 'http://etherx.jabber.org/streams'
NS_STREAM_ERR = 'urn:ietf:params:xml:ns:xmpp-streams'
NS_STANZA_ERR = 'urn:ietf:params:xml:ns:xmpp-stanzas'
NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls'
NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl'
NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind'
NS_SASL_CB = 'urn:xmpp:sasl-cb:0'

CORE_MODULES = ['disco', 'ping', 'version', 'time']
# every module of the tree, for servers that should behave like a real
# deployment (the scenario suite)
ALL_MODULES = CORE_MODULES + ['roster', 'presence', 'offline', 'blocking',
                              'vcard', 'private', 'register',
                              'lastactivity', 'smacks', 'mam', 'carbons',
                              'csi', 'push', 'pep', 'muc', 'http_upload',
                              'proxy65', 'extdisco', 'turn', 'avatar',
                              'bookmarks']


# --------------------------------------------------------------------------
# Locations of the build outputs (CONTRACTS.md §5; `make check` sets these)

def srcdir():
    d = os.environ.get('PV_SRCDIR')
    if d:
        return os.path.abspath(d)
    return os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def builddir():
    d = os.environ.get('PV_BUILDDIR')
    return os.path.abspath(d) if d else srcdir()


def palaverd_path():
    return os.path.join(builddir(), 'src', 'palaverd')


def palaverctl_path():
    return os.path.join(builddir(), 'tools', 'palaverctl')


def module_path():
    d = os.environ.get('PV_MODULE_PATH')
    if d:
        return os.path.abspath(d)
    return os.path.join(builddir(), 'modules', '.libs')


def runner_path():
    return os.environ.get('PV_SCN_RUNNER') or os.path.join(
        builddir(), 'tests', 'runner', 'scn_runner')


def plus_client_path():
    return os.environ.get('PV_PLUS_CLIENT') or os.path.join(
        builddir(), 'tests', 'integration', 'plus_client')


def scenarios_dir():
    return os.path.join(srcdir(), 'tests', 'scenarios')


def strict():
    return os.environ.get('PV_TEST_STRICT') == '1'


def leave():
    return os.environ.get('PV_TEST_LEAVE') == '1'


_factor = []


def time_factor():
    """Every timeout scales by this: PV_TEST_TIME_FACTOR, else 3 for a
    palaverd built with ASan (several times slower), else 1."""
    if not _factor:
        f = 1.0
        try:
            f = float(os.environ['PV_TEST_TIME_FACTOR'])
        except (KeyError, ValueError):
            try:
                with open(palaverd_path(), 'rb') as fh:
                    if b'__asan_init' in fh.read():
                        f = 3.0
            except OSError:
                pass
        _factor.append(f)
    return _factor[0]


def backend():
    return os.environ.get('PV_TEST_SERVER', 'palaverd')


def available_modules(names=None):
    """Modules that exist as mod_NAME.so in the module path or are linked
    into palaverd (--enable-static-modules exports pv_module_NAME)."""
    found = set()
    if os.environ.get('PV_STATIC_MODULES') == '1':
        # --enable-static-modules: every module of the tree is linked in
        found.update(names or ALL_MODULES)
    mp = module_path()
    if os.path.isdir(mp):
        for f in os.listdir(mp):
            if f.startswith('mod_') and f.endswith('.so'):
                found.add(f[4:-3])
    try:
        with open(palaverd_path(), 'rb') as f:
            blob = f.read()
        for n in (names or ALL_MODULES):
            if ('pv_module_' + n).encode() + b'\0' in blob:
                found.add(n)
    except OSError:
        pass
    if names is not None:
        return [n for n in names if n in found]
    return sorted(found)


def store_keys(srv, db):
    """(host, user[, key]) tuples of every row of the LMDB database db (a
    keyval or map store: keys are length-prefixed strings, CONTRACTS.md §4),
    read with mdb_dump (lmdb-utils) while the server runs; [] when the
    database does not exist yet."""
    if shutil.which('mdb_dump') is None:
        skip('mdb_dump (lmdb-utils) not installed')
    r = subprocess.run(['mdb_dump', '-s', db, srv.data_dir],
                       capture_output=True, text=True)
    if r.returncode != 0:
        if 'MDB_NOTFOUND' in r.stderr:
            return []
        fail('mdb_dump %s: %s' % (db, r.stderr.strip()))
    lines = r.stdout.split('HEADER=END\n', 1)[1].splitlines()
    keys = []
    for i, line in enumerate(l for l in lines if l.startswith(' ')):
        if i % 2:
            continue        # the value line of the row
        raw = bytes.fromhex(line.strip())
        parts = []
        while len(raw) >= 2:
            n = int.from_bytes(raw[:2], 'big')
            parts.append(raw[2:2 + n].decode(errors='replace'))
            raw = raw[2 + n:]
        keys.append(tuple(parts))
    return keys


# --------------------------------------------------------------------------
# Test runner: ordered tests, skip/fail accounting, keep-on-failure.

class Skip(Exception):
    pass


class TestFailure(AssertionError):
    pass


def skip(reason):
    raise Skip(reason)


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def check_eq(got, want, what):
    if got != want:
        raise TestFailure('%s: expected %r, got %r' % (what, want, got))


class Suite:
    """One test file: tests run in definition order; servers created
    through the suite are stopped at the end (their exit status and
    sanitizer reports are checked) and kept on failure."""

    def __init__(self, name):
        self.name = name
        self.tests = []
        self.servers = []
        self.shared = {}
        self.shared_errors = {}
        self.failed = False

    def test(self, fn):
        self.tests.append(fn)
        return fn

    def server(self, **kw):
        srv = make_server(name=kw.pop('name', self.name), **kw)
        self.servers.append(srv)
        return srv

    def shared_server(self, key='default', **kw):
        """A started server shared by tests that do not disturb each
        other; created on first use."""
        err = self.shared_errors.get(key)
        if err is not None:
            # failed once: do not pay another start timeout per test
            raise err
        srv = self.shared.get(key)
        if srv is None or not srv.running():
            try:
                srv = self.server(name='%s-%s' % (self.name, key), **kw)
                srv.start()
            except Exception as e:      # noqa: BLE001
                if not isinstance(e, Skip):
                    e = ServerError('shared server %s: %s' % (key, e))
                self.shared_errors[key] = e
                raise e
            self.shared[key] = srv
        return srv

    def _finish_servers(self):
        ok = True
        for srv in self.servers:
            try:
                problems = srv.finish()
            except Exception as e:          # noqa: BLE001
                problems = ['finish: %s' % e]
            if problems:
                ok = False
                print('FAIL %s: server %s: %s' % (self.name, srv.name,
                                                 '; '.join(problems)))
        return ok

    def run(self, argv=None):
        argv = sys.argv[1:] if argv is None else argv
        only = set(argv)
        n_pass = n_fail = n_skip = 0
        for fn in self.tests:
            if only and fn.__name__ not in only:
                continue
            t0 = time.monotonic()
            n_before = len(self.servers)
            try:
                fn()
            except Skip as e:
                n_skip += 1
                print('SKIP %s.%s: %s' % (self.name, fn.__name__, e))
                continue
            except Exception as e:          # noqa: BLE001
                n_fail += 1
                self.failed = True
                print('FAIL %s.%s: %s' % (self.name, fn.__name__, e))
                if not isinstance(e, (TestFailure, ServerError)):
                    traceback.print_exc(file=sys.stdout)
                shared = list(self.shared.values())
                for srv in self.servers:
                    if srv.started_once and (
                            srv in shared or
                            self.servers.index(srv) >= n_before):
                        print('     server %s log tail:\n%s' %
                              (srv.name, indent(srv.log_tail(25))))
                continue
            n_pass += 1
            print('PASS %s.%s (%.1fs)' % (self.name, fn.__name__,
                                          time.monotonic() - t0))
            sys.stdout.flush()
        if not self._finish_servers():
            n_fail += 1
            self.failed = True
        for srv in self.servers:
            srv.cleanup(keep=self.failed or leave())
        print('%s: %d passed, %d failed, %d skipped' %
              (self.name, n_pass, n_fail, n_skip))
        sys.stdout.flush()
        if n_fail:
            return 1
        if n_skip and strict():
            print('%s: skipped tests count as failures (PV_TEST_STRICT=1)'
                  % self.name)
            return 1
        if n_skip and not n_pass:
            return 77
        return 0

    def main(self):
        sys.exit(self.run())


def indent(text, prefix='     | '):
    return '\n'.join(prefix + line for line in text.splitlines())


# --------------------------------------------------------------------------
# Certificates (openssl command line, CONTRACTS.md §5)

def _openssl(args, cwd):
    r = subprocess.run(['openssl'] + args, cwd=cwd, capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError('openssl %s failed: %s' % (args[0], r.stderr))


def make_ca(dirpath):
    """Writes ca.key/ca.crt (EC P-256, SHA-256) into dirpath."""
    os.makedirs(dirpath, exist_ok=True)
    _openssl(['req', '-x509', '-newkey', 'ec',
              '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-sha256',
              '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30',
              '-subj', '/CN=Palaver Test CA',
              '-addext', 'basicConstraints=critical,CA:TRUE',
              '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dirpath)
    return os.path.join(dirpath, 'ca.crt')


def make_host_cert(dirpath, host, ca_dir,
                   extra=('conference', 'upload', 'proxy', 'pubsub')):
    """Writes HOST.key/HOST.crt signed by the CA in ca_dir, SAN covering the
    host and its component names."""
    names = [host] + ['%s.%s' % (e, host) for e in extra]
    ext = os.path.join(dirpath, host + '.ext')
    with open(ext, 'w') as f:
        f.write('basicConstraints=CA:FALSE\n'
                'keyUsage=critical,digitalSignature,keyEncipherment\n'
                'extendedKeyUsage=serverAuth,clientAuth\n'
                'subjectAltName=%s\n' %
                ','.join('DNS:' + n for n in names))
    _openssl(['req', '-new', '-newkey', 'ec',
              '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
              '-keyout', host + '.key', '-out', host + '.csr',
              '-subj', '/CN=' + host], dirpath)
    _openssl(['x509', '-req', '-sha256', '-in', host + '.csr',
              '-CA', os.path.join(ca_dir, 'ca.crt'),
              '-CAkey', os.path.join(ca_dir, 'ca.key'),
              '-CAcreateserial', '-out', host + '.crt', '-days', '30',
              '-extfile', ext], dirpath)
    os.chmod(os.path.join(dirpath, host + '.key'), 0o600)
    return (os.path.join(dirpath, host + '.crt'),
            os.path.join(dirpath, host + '.key'))


# --------------------------------------------------------------------------
# libconfig writer

def _lc_value(v, level):
    pad = '    ' * (level + 1)
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"%s"' % v.replace('\\', '\\\\').replace('"', '\\"')
    if isinstance(v, dict):
        inner = ''.join('%s%s = %s;\n' % (pad, k, _lc_value(x, level + 1))
                        for k, x in v.items())
        return '{\n%s%s}' % (inner, '    ' * level)
    if isinstance(v, (list, tuple)):
        if any(isinstance(x, dict) for x in v):
            # a libconfig list of groups
            items = (',\n' + pad).join(_lc_value(x, level + 1) for x in v)
            return '(\n%s%s\n%s)' % (pad, items, '    ' * level)
        return '[ %s ]' % ', '.join(_lc_value(x, level + 1) for x in v)
    raise TypeError('cannot write %r to libconfig' % (v,))


def libconfig_text(cfg):
    return ''.join('%s = %s;\n' % (k, _lc_value(v, 0))
                   for k, v in cfg.items() if v is not None)


# --------------------------------------------------------------------------
# Servers

class ServerError(Exception):
    pass


def make_server(**kw):
    if backend() == 'prosody':
        return ProsodyServer(**kw)
    return Server(**kw)


class BaseServer:
    """Temp dir, certificates, accounts and process bookkeeping common to
    palaverd and the validation Prosody."""

    kind = 'base'

    def __init__(self, name='palaver', domain='localhost', users=None,
                 **config):
        self.name = name
        self.domain = domain
        self.users = dict(users or {})
        self.config = config
        self.dir = tempfile.mkdtemp(prefix='pvtest-%s-' % name)
        self.tls_dir = os.path.join(self.dir, 'tls')
        make_ca(self.tls_dir)
        self.cafile = os.path.join(self.tls_dir, 'ca.crt')
        self.cert, self.key = make_host_cert(self.tls_dir, domain,
                                             self.tls_dir)
        self.proc = None
        self.ports = {}
        self.started_once = False
        self.exit_codes = []
        self.out_path = os.path.join(self.dir, 'stderr.log')
        self.log_path = os.path.join(self.dir, 'palaverd.log')

    # ports
    def port(self, kind='c2s'):
        try:
            return self.ports[kind][0][1]
        except (KeyError, IndexError):
            raise ServerError('%s: no %s listener (have %s)' %
                              (self.name, kind, sorted(self.ports)))

    def host(self, kind='c2s'):
        return self.ports[kind][0][0]

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=40):
        out = []
        for p in (self.log_path, self.out_path):
            try:
                with open(p, errors='replace') as f:
                    lines = f.read().splitlines()
                out.append('== %s' % p)
                out.extend(lines[-n:])
            except OSError:
                pass
        return '\n'.join(out)

    def log_text(self):
        txt = ''
        for p in (self.log_path, self.out_path):
            try:
                with open(p, errors='replace') as f:
                    txt += f.read()
            except OSError:
                pass
        return txt

    def stop(self, timeout=None):
        """SIGTERM; returns the exit code (negative: killed by signal)."""
        if self.proc is None:
            return None
        timeout = timeout or 20 * time_factor()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_codes.append('timeout')
                self.proc = None
                raise ServerError('%s did not exit within %.0fs of SIGTERM'
                                  % (self.name, timeout))
        rc = self.proc.returncode
        self.exit_codes.append(rc)
        self.proc = None
        return rc

    def kill(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
        rc = self.proc.wait()
        self.exit_codes.append('killed')
        self.proc = None
        return rc

    def restart(self):
        self.stop()
        self.start()

    def finish(self):
        """Stops the server; returns a list of problems (bad exit code,
        sanitizer reports) found over its whole life."""
        problems = []
        if self.proc is not None:
            if self.proc.poll() is not None:
                problems.append('exited on its own with %s' %
                                self.proc.returncode)
                self.exit_codes.append(self.proc.returncode)
                self.proc = None
            else:
                rc = self.stop()
                if rc != 0:
                    problems.append('exit code %s after SIGTERM' % rc)
        txt = self.log_text()
        for marker in ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer',
                       'runtime error:', 'SUMMARY: UndefinedBehavior'):
            if marker in txt:
                problems.append('sanitizer report (%s) in %s' %
                                (marker, self.out_path))
                break
        return problems

    def cleanup(self, keep=False):
        if self.proc is not None:
            self.kill()
        if keep:
            print('     kept %s (%s)' % (self.dir, self.name))
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # clients
    def client(self, tls='starttls', **kw):
        kind = 'c2s_direct_tls' if tls == 'direct' else 'c2s'
        return RawClient(self.host(kind), self.port(kind), self.domain,
                         cafile=self.cafile, tls=tls, **kw)

    def login(self, user, password=None, resource=None, tls='starttls',
              mech=None, **kw):
        c = self.client(tls=tls, **kw)
        c.login(user, password or self.users[user], resource=resource,
                mech=mech)
        return c

    def runner_args(self):
        return ['--host', self.host('c2s'), '--port', str(self.port('c2s')),
                '--tls-port', str(self.port('c2s_direct_tls')),
                '--domain', self.domain, '--cafile', self.cafile]


class Server(BaseServer):
    """A palaverd in a temp directory (CONTRACTS.md §5). Keyword arguments
    other than name/domain/users/modules/vhost are config directives,
    written as given (None drops a default)."""

    kind = 'palaverd'

    def __init__(self, name='palaver', domain='localhost', users=None,
                 modules=None, vhost=None, **config):
        for p in (palaverd_path(), palaverctl_path()):
            if not os.access(p, os.X_OK):
                raise Skip('%s not built' % p)
        super().__init__(name=name, domain=domain, users=users, **config)
        if modules is None:
            modules = available_modules(CORE_MODULES)
        self.modules = list(modules)
        self.vhost = dict(vhost or {})
        self.conf_path = os.path.join(self.dir, 'palaver-test.conf')
        self.data_dir = os.path.join(self.dir, 'data')
        self.extra_env = {}   # for palaverd (fault injection: LD_PRELOAD)
        try:
            self.write_config()
            for user, pw in self.users.items():
                self.ctl('adduser', self.jid(user), input=pw + '\n')
        except Exception:
            # the error carries palaverctl's output; the suite never saw
            # this server, so it would not clean up after it
            self.cleanup(keep=leave())
            raise

    def jid(self, user):
        return user if '@' in user else '%s@%s' % (user, self.domain)

    def write_config(self):
        vh = {'name': self.domain,
              'tls_certificate': os.path.relpath(self.cert, self.dir),
              'tls_key': os.path.relpath(self.key, self.dir)}
        vh.update(self.vhost)
        cfg = {
            'run_as_root': True,
            'storage_path': 'data',
            'module_path': module_path(),
            'log_level': 'debug',
            'log': 'palaverd.log',
            'listen': [
                {'kind': 'c2s', 'address': '127.0.0.1', 'port': 0},
                {'kind': 'c2s_direct_tls', 'address': '127.0.0.1',
                 'port': 0},
            ],
            'modules_enabled': self.modules,
            'scram_iterations': 4096,
            'contact_info': {'abuse': ['mailto:abuse@%s' % self.domain],
                             'admin': ['xmpp:admin@%s' % self.domain]},
        }
        cfg.update(self.config)
        cfg['vhosts'] = [vh]
        with open(self.conf_path, 'w') as f:
            f.write('# written by tests/harness/pvtest.py\n')
            f.write(libconfig_text(cfg))

    def ctl(self, *args, input=None, check=True):
        """Runs palaverctl -c CONF ARGS; returns CompletedProcess."""
        r = subprocess.run([palaverctl_path(), '-c', self.conf_path] +
                           list(args), input=input, capture_output=True,
                           text=True, timeout=60 * time_factor())
        with open(os.path.join(self.dir, 'palaverctl.log'), 'a') as f:
            f.write('$ palaverctl %s\n-> %d\n%s%s' %
                    (' '.join(args), r.returncode, r.stdout, r.stderr))
        if check and r.returncode != 0:
            raise ServerError('palaverctl %s failed (%d): %s%s' %
                              (' '.join(args), r.returncode, r.stdout,
                               r.stderr))
        return r

    def start(self, timeout=None):
        timeout = timeout or 30 * time_factor()
        try:
            os.unlink(os.path.join(self.data_dir, 'ports'))
        except OSError:
            pass
        sock_path = os.path.join(self.dir, 'notify.sock')
        try:
            os.unlink(sock_path)
        except OSError:
            pass
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(sock_path)
        env = dict(os.environ)
        env['NOTIFY_SOCKET'] = sock_path
        env.update(self.extra_env)
        out = open(self.out_path, 'ab')
        self.proc = subprocess.Popen([palaverd_path(), '-c', self.conf_path],
                                     cwd=self.dir, env=env, stdout=out,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        out.close()
        self.started_once = True
        deadline = time.monotonic() + timeout
        ready = False
        try:
            while not ready:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise ServerError('%s: no READY=1 within %.0fs\n%s' %
                                      (self.name, timeout,
                                       self.log_tail()))
                r, _, _ = select.select([ns], [], [], min(left, 0.1))
                if r:
                    msg = ns.recv(4096).decode(errors='replace')
                    if 'READY=1' in msg.split('\n'):
                        ready = True
                        break
                if self.proc.poll() is not None:
                    rc = self.proc.returncode
                    self.exit_codes.append(rc)
                    self.proc = None
                    raise ServerError('%s exited with %s before READY=1\n%s'
                                      % (self.name, rc, self.log_tail()))
        finally:
            ns.close()
            os.unlink(sock_path)
        self.ports = self.read_ports(deadline)
        return self

    def read_ports(self, deadline):
        path = os.path.join(self.data_dir, 'ports')
        while True:
            try:
                with open(path) as f:
                    text = f.read()
                ports = {}
                for line in text.splitlines():
                    parts = line.split()
                    if len(parts) == 3:
                        ports.setdefault(parts[0], []).append(
                            (parts[1], int(parts[2])))
                if ports:
                    return ports
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerError('%s: %s missing after READY=1' %
                                  (self.name, path))
            time.sleep(0.05)


class ProsodyServer(BaseServer):
    """A private Prosody 0.12 with the same interface, used only to check
    that the tests and the runner are right (PV_TEST_SERVER=prosody)."""

    kind = 'prosody'

    def __init__(self, name='prosody', domain='localhost', users=None,
                 modules=None, vhost=None, **config):
        if not shutil.which('prosody'):
            raise Skip('prosody not installed')
        super().__init__(name=name, domain=domain, users=users, **config)
        self.modules = list(CORE_MODULES if modules is None else modules)
        self.conf_path = os.path.join(self.dir, 'prosody.cfg.lua')
        self.log_path = os.path.join(self.dir, 'prosody.log')
        self.data_dir = os.path.join(self.dir, 'data')
        os.makedirs(self.data_dir)
        self.ports = {'c2s': [('127.0.0.1', free_port())],
                      'c2s_direct_tls': [('127.0.0.1', free_port())]}
        self.write_config()
        for user, pw in self.users.items():
            self.ctl('register', user, self.domain, pw)

    def write_config(self):
        mods = {'disco': 'disco', 'ping': 'ping', 'version': 'version',
                'time': 'time'}
        enabled = ['saslauth', 'tls', 'roster', 'presence', 'message',
                   'iq', 'server_contact_info', 'posix']
        enabled += [mods[m] for m in self.modules if m in mods]
        mechs = self.config.get('sasl_mechanisms')
        lines = [
            'run_as_root = true',
            'daemonize = false',
            'pidfile = %r' % os.path.join(self.dir, 'prosody.pid'),
            'data_path = %r' % self.data_dir,
            'plugin_paths = {}',
            'log = { debug = %r }' % self.log_path,
            'interfaces = { "127.0.0.1" }',
            'c2s_ports = { %d }' % self.port('c2s'),
            'c2s_direct_tls_ports = { %d }' % self.port('c2s_direct_tls'),
            's2s_ports = {}', 'http_ports = {}', 'https_ports = {}',
            'component_ports = {}',
            'modules_enabled = { %s }' % ', '.join('%r' % m for m in enabled),
            'modules_disabled = { "s2s" }',
            'c2s_require_encryption = true',
            'authentication = "internal_hashed"',
            'contact_info = { abuse = { "mailto:abuse@%s" }, '
            'admin = { "xmpp:admin@%s" } }' % (self.domain, self.domain),
            'certificates = %r' % self.tls_dir,
            'ssl = { certificate = %r, key = %r }' % (self.cert, self.key),
        ]
        if mechs:
            lines.append('sasl_mechanisms = { %s }' %
                         ', '.join('%r' % m for m in mechs))
        lines.append('VirtualHost %r' % self.domain)
        lines.append('    ssl = { certificate = %r, key = %r }' %
                     (self.cert, self.key))
        with open(self.conf_path, 'w') as f:
            f.write('\n'.join(lines) + '\n')

    def ctl(self, *args, input=None, check=True):
        cmd = ['prosodyctl', '--config', self.conf_path] + list(args)
        if args and args[0] == 'adduser':
            # palaverctl-style adduser JID with the password on stdin
            user, host = args[1].split('@')
            cmd = ['prosodyctl', '--config', self.conf_path, 'register',
                   user, host, input.strip()]
            input = None
        r = subprocess.run(cmd, input=input, capture_output=True, text=True,
                           timeout=60)
        if check and r.returncode != 0:
            raise ServerError('prosodyctl %s: %s%s' % (args, r.stdout,
                                                       r.stderr))
        return r

    def start(self, timeout=20):
        out = open(self.out_path, 'ab')
        self.proc = subprocess.Popen(['prosody', '-F', '--config',
                                      self.conf_path], cwd=self.dir,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        out.close()
        self.started_once = True
        # Prosody has no sd_notify here: wait for its listener.
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(('127.0.0.1', self.port('c2s')),
                                         0.2).close()
                return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ServerError('prosody did not start\n' + self.log_tail())
            time.sleep(0.05)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


# --------------------------------------------------------------------------
# SASL client side (RFC 5802 SCRAM, RFC 4616 PLAIN), small and strict

HASHES = {'SCRAM-SHA-1': 'sha1', 'SCRAM-SHA-256': 'sha256',
          'SCRAM-SHA-512': 'sha512'}


class Scram:
    def __init__(self, mech, user, password, cb_type=None, cb_data=None):
        base = mech[:-5] if mech.endswith('-PLUS') else mech
        self.hash = HASHES[base]
        self.user = user
        self.password = password.encode()
        if mech.endswith('-PLUS'):
            self.gs2 = 'p=%s,,' % cb_type
            self.cb_data = cb_data
        else:
            self.gs2 = 'n,,'
            self.cb_data = b''
        self.nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self.bare = 'n=%s,r=%s' % (user.replace('=', '=3D')
                                   .replace(',', '=2C'), self.nonce)
        self.server_sig = None

    def first(self):
        return (self.gs2 + self.bare).encode()

    def _h(self, data):
        return hashlib.new(self.hash, data).digest()

    def _hmac(self, key, data):
        return hmac.new(key, data, self.hash).digest()

    def final(self, server_first):
        sf = server_first.decode()
        attrs = dict(kv.split('=', 1) for kv in sf.split(','))
        if not attrs['r'].startswith(self.nonce):
            raise ValueError('server nonce does not extend ours')
        salt = base64.b64decode(attrs['s'])
        iters = int(attrs['i'])
        salted = hashlib.pbkdf2_hmac(self.hash, self.password, salt, iters)
        client_key = self._hmac(salted, b'Client Key')
        stored = self._h(client_key)
        cbind = base64.b64encode(self.gs2.encode() + self.cb_data).decode()
        without_proof = 'c=%s,r=%s' % (cbind, attrs['r'])
        auth_msg = ('%s,%s,%s' % (self.bare, sf, without_proof)).encode()
        sig = self._hmac(stored, auth_msg)
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        server_key = self._hmac(salted, b'Server Key')
        self.server_sig = self._hmac(server_key, auth_msg)
        return ('%s,p=%s' % (without_proof,
                             base64.b64encode(proof).decode())).encode()

    def verify(self, server_final):
        sf = server_final.decode()
        if not sf.startswith('v='):
            return False
        return hmac.compare_digest(base64.b64decode(sf[2:]), self.server_sig)


# --------------------------------------------------------------------------
# Raw XMPP client

class StreamClosed(Exception):
    pass


class RawClient:
    """A client that speaks XML over a real socket with real TLS and lets
    a test send arbitrary bytes. Elements come back as ElementTree
    elements with {namespace}tags."""

    def __init__(self, host, port, domain, cafile=None, tls='starttls',
                 source=None, timeout=None):
        self.host, self.port, self.domain = host, port, domain
        self.cafile = cafile
        self.tls = tls
        self.timeout = timeout or 10 * time_factor()
        src = (source, 0) if source else None
        self.sock = socket.create_connection((host, port), self.timeout,
                                             source_address=src)
        self.raw_sock = self.sock
        self.tls_sock = None
        self.parser = None
        self.depth = 0
        self.root = None
        self.stream_attrs = None
        self.pending = []
        self.closed = False        # </stream:stream> seen
        self.eof = False           # TCP closed
        self.jid = None
        self.features = None
        self.received = []         # every element, for diagnostics
        if tls == 'direct':
            self._wrap_tls()

    # transport
    def _ctx(self):
        ctx = ssl.create_default_context(cafile=self.cafile)
        ctx.set_alpn_protocols(['xmpp-client'])
        return ctx

    def _wrap_tls(self):
        self.sock = self._ctx().wrap_socket(self.raw_sock,
                                            server_hostname=self.domain)
        self.tls_sock = self.sock

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _reset_parser(self):
        self.parser = ET.XMLPullParser(events=('start', 'end'))
        self.depth = 0
        self.root = None
        self.stream_attrs = None
        self.closed = False

    def _feed(self, data):
        self.parser.feed(data)
        for ev, el in self.parser.read_events():
            if ev == 'start':
                self.depth += 1
                if self.depth == 1:
                    self.root = el
                    self.stream_attrs = dict(el.attrib)
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.pending.append(el)
                    self.received.append(el)
                    self.root.remove(el)
                elif self.depth == 0:
                    self.closed = True

    def _recv_some(self, timeout):
        if self.eof:
            raise StreamClosed('connection closed')
        if self.tls_sock is not None and self.tls_sock.pending():
            timeout = 0.001
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError,
                ssl.SSLEOFError):
            data = b''
        if not data:
            self.eof = True
            return True
        self._feed(data)
        return True

    def recv(self, timeout=None):
        """Next top-level element; raises StreamClosed if the stream
        ends first, TimeoutError on timeout."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self.pending:
            if self.closed or self.eof:
                raise StreamClosed('stream closed by server')
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('nothing received in %.1fs' % timeout)
            self._recv_some(left)
        return self.pending.pop(0)

    def recv_until(self, pred, timeout=None, what='element'):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        skipped = []
        while True:
            left = deadline - time.monotonic()
            try:
                el = self.recv(max(left, 0))
            except TimeoutError:
                raise TestFailure('no %s within %.1fs; received instead: %s'
                                  % (what, timeout,
                                     [tostr(e) for e in skipped] or
                                     'nothing'))
            if pred(el):
                return el
            skipped.append(el)

    def wait_closed(self, timeout=None):
        """True when the server closes the TCP connection in time."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._recv_some(left)
            except StreamClosed:
                break
            except ET.ParseError:
                pass
        return True

    # stream
    def open_stream(self, to=None, prefix=b'', header=None, lang='en'):
        """Sends a stream header (or `header` verbatim after `prefix`);
        returns the features element (None if the server errs first)."""
        self._reset_parser()
        if header is None:
            header = ("<?xml version='1.0'?><stream:stream "
                      "xmlns='jabber:client' "
                      "xmlns:stream='http://etherx.jabber.org/streams' "
                      "to='%s' version='1.0' xml:lang='%s'>" %
                      (to or self.domain, lang))
        self.send(prefix + (header.encode() if isinstance(header, str)
                            else header))
        el = self.recv()
        if el.tag == '{%s}features' % NS_STREAMS:
            self.features = el
            return el
        self.pending.insert(0, el)
        return None

    def mechanisms(self, features=None):
        f = self.features if features is None else features
        mechs = f.find('{%s}mechanisms' % NS_SASL) if f is not None else None
        if mechs is None:
            return []
        return [m.text for m in mechs.findall('{%s}mechanism' % NS_SASL)]

    def starttls(self):
        self.send("<starttls xmlns='%s'/>" % NS_TLS)
        el = self.recv()
        check_eq(el.tag, '{%s}proceed' % NS_TLS, 'answer to <starttls/>')
        self._wrap_tls()
        return self.open_stream()

    def connect(self):
        """Stream open, STARTTLS if needed; returns the features offered
        on the encrypted stream."""
        f = self.open_stream()
        if self.tls == 'starttls':
            check(f is not None and f.find('{%s}starttls' % NS_TLS)
                  is not None, 'server offers no STARTTLS')
            f = self.starttls()
        return f

    def auth(self, user, password, mech=None, cb_type=None, cb_data=None,
             authzid=''):
        """Runs one SASL exchange; returns None on success or the failure
        condition name."""
        mech = mech or self._pick_mech()
        if mech == 'PLAIN':
            payload = ('%s\0%s\0%s' % (authzid, user, password)).encode()
            self.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" %
                      (NS_SASL, base64.b64encode(payload).decode()))
            return self._sasl_outcome(None)
        sc = Scram(mech, user, password, cb_type, cb_data)
        self.send("<auth xmlns='%s' mechanism='%s'>%s</auth>" %
                  (NS_SASL, mech, base64.b64encode(sc.first()).decode()))
        el = self.recv()
        if el.tag != '{%s}challenge' % NS_SASL:
            return self._failure(el)
        final = sc.final(base64.b64decode(el.text or ''))
        self.send("<response xmlns='%s'>%s</response>" %
                  (NS_SASL, base64.b64encode(final).decode()))
        return self._sasl_outcome(sc)

    def _pick_mech(self):
        offered = self.mechanisms()
        for m in ('SCRAM-SHA-256', 'SCRAM-SHA-1', 'SCRAM-SHA-512', 'PLAIN'):
            if m in offered:
                return m
        raise TestFailure('no usable SASL mechanism in %s' % offered)

    def _failure(self, el):
        if el.tag != '{%s}failure' % NS_SASL:
            raise TestFailure('unexpected SASL answer %s' % tostr(el))
        for c in el:
            if c.tag.startswith('{%s}' % NS_SASL) and \
                    not c.tag.endswith('}text'):
                return c.tag.split('}', 1)[1]
        return 'failure-without-condition'

    def _sasl_outcome(self, sc):
        el = self.recv()
        if el.tag == '{%s}success' % NS_SASL:
            if sc is not None:
                check(sc.verify(base64.b64decode(el.text or '')),
                      'server signature in <success/> does not verify')
            return None
        return self._failure(el)

    def bind(self, resource=None):
        self.open_stream()
        check(self.features is not None and
              self.features.find('{%s}bind' % NS_BIND) is not None,
              'no <bind/> offered after SASL')
        res = '<resource>%s</resource>' % resource if resource else ''
        self.send("<iq type='set' id='bind1'><bind xmlns='%s'>%s</bind></iq>"
                  % (NS_BIND, res))
        el = self.recv()
        j = el.find('{%s}bind/{%s}jid' % (NS_BIND, NS_BIND))
        check(el.get('type') == 'result' and j is not None,
              'bind failed: %s' % tostr(el))
        self.jid = j.text
        return self.jid

    def login(self, user, password, resource=None, mech=None,
              presence=False):
        self.connect()
        cond = self.auth(user.split('@')[0], password, mech=mech)
        if cond is not None:
            raise TestFailure('login of %s failed: %s' % (user, cond))
        self.bind(resource)
        if presence:
            self.send('<presence/>')
        return self.jid

    def expect_stream_error(self, timeout=None):
        """Waits for <stream:error/>; returns its condition. Also requires
        the server to close the connection."""
        el = self.recv_until(lambda e: e.tag == '{%s}error' % NS_STREAMS,
                             timeout, what='<stream:error/>')
        cond = None
        for c in el:
            if c.tag.startswith('{%s}' % NS_STREAM_ERR) and \
                    not c.tag.endswith('}text'):
                cond = c.tag.split('}', 1)[1]
        check(self.wait_closed(5 * time_factor()),
              'connection not closed after stream error %s' % cond)
        return cond

    def iq(self, xml, timeout=None):
        """Sends an IQ (must carry id=) and returns the answer."""
        el = ET.fromstring(xml)
        iq_id = el.get('id')
        self.send(xml)
        return self.recv_until(lambda e: e.tag == '{%s}iq' % NS_CLIENT and
                               e.get('id') == iq_id, timeout,
                               what='answer to iq %s' % iq_id)


def tostr(el):
    return ET.tostring(el, encoding='unicode')


def stanza_error(el):
    """(type, condition) of a stanza's <error/>, or (None, None)."""
    err = el.find('{%s}error' % NS_CLIENT)
    if err is None:
        return None, None
    for c in err:
        if c.tag.startswith('{%s}' % NS_STANZA_ERR) and \
                not c.tag.endswith('}text'):
            return err.get('type'), c.tag.split('}', 1)[1]
    return err.get('type'), None


def message_round_trip(a, b, text=None):
    """a sends a chat message to b's full JID and b answers; both must
    arrive. a and b are logged-in RawClients."""
    text = text or 'ping-%s' % secrets.token_hex(4)
    a.send("<message type='chat' to='%s' id='%s'><body>%s</body></message>"
           % (b.jid, text, text))
    m = b.recv_until(lambda e: e.tag == '{%s}message' % NS_CLIENT and
                     e.findtext('{%s}body' % NS_CLIENT) == text,
                     what='message %s' % text)
    check_eq(m.get('from'), a.jid, 'from of relayed message')
    reply = text + '-reply'
    b.send("<message type='chat' to='%s' id='%s'><body>%s</body></message>"
           % (a.jid, reply, reply))
    a.recv_until(lambda e: e.tag == '{%s}message' % NS_CLIENT and
                 e.findtext('{%s}body' % NS_CLIENT) == reply,
                 what='reply %s' % reply)


# --------------------------------------------------------------------------
# Scenario runner glue

def scenario_clients(path):
    """[(name, jid, password)] from a .scn header."""
    out = []
    with open(path) as f:
        for line in f:
            if line.startswith('[client]'):
                parts = line.split()
                name = parts[1]
                kv = dict(p.split('=', 1) for p in parts[2:] if '=' in p)
                out.append((name, kv.get('jid', ''), kv.get('password', '')))
    return out


def scenario_requires(path):
    req = []
    with open(path) as f:
        for line in f:
            if line.startswith('requires:'):
                req += line.split(':', 1)[1].split()
    return req


def run_scenario(server, path, extra=(), timeout=None):
    """Runs scn_runner on one file against a started server; returns
    (exit code, output)."""
    runner = runner_path()
    if not os.access(runner, os.X_OK):
        raise Skip('%s not built' % runner)
    provided = ['tls', 'c2s'] + list(server.modules)
    args = [runner] + server.runner_args() + [
        '--provide', ','.join(provided),
        '--timeout', str(int(5000 * time_factor()))] + list(extra) + [path]
    r = subprocess.run(args, capture_output=True, text=True,
                       timeout=(timeout or 120) * time_factor())
    return r.returncode, r.stdout + r.stderr


def run_scenario_text(server, text, name='inline'):
    """Writes text as a .scn into the server's directory and runs it;
    fails the test with the runner's output unless it passes."""
    path = os.path.join(server.dir, name + '.scn')
    with open(path, 'w') as f:
        f.write(text)
    rc, out = run_scenario(server, path)
    if rc == 77:
        skip(out.strip().splitlines()[-1])
    if rc != 0:
        fail('scenario %s: scn_runner exit %d\n%s' % (name, rc,
                                                      indent(out.rstrip())))
    return out
