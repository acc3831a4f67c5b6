"""Helpers for tests/integration/test_s2s.py: palaverd and Prosody set up
as federation peers on their own loopback addresses (s2s on port 5269),
with certificates from one shared test CA, and a tiny DNS responder for
Prosody, which ignores /etc/hosts (CONTRACTS.md §5)."""

import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pvtest

S2S_PORT = 5269


class LaxClient(pvtest.RawClient):
    """A c2s test client that trusts the CA but not the name: for peers
    whose certificate deliberately names another domain."""

    def _ctx(self):
        ctx = super()._ctx()
        ctx.check_hostname = False
        return ctx


def lax_client(srv, tls='starttls', **kw):
    kind = 'c2s_direct_tls' if tls == 'direct' else 'c2s'
    cls = LaxClient if srv.cert_name else pvtest.RawClient
    return cls(srv.host(kind), srv.port(kind), srv.domain,
               cafile=srv.cafile, tls=tls, **kw)


def s2s_modules():
    return pvtest.available_modules(pvtest.CORE_MODULES +
                                    ['roster', 'presence', 'pep'])


class PalaverPeer(pvtest.Server):
    """palaverd serving domain, s2s listening on addr:5269, its certificate
    (for cert_name, default the domain) from the shared CA in ca_dir.
    peers: {domain: addr} written as s2s_override."""

    def __init__(self, suite, domain, addr, ca_dir, peers, users,
                 cert_name=None, direct_tls_port=None, extra_modules=(),
                 **config):
        listen = [
            {'kind': 'c2s', 'address': '127.0.0.1', 'port': 0},
            {'kind': 'c2s_direct_tls', 'address': '127.0.0.1', 'port': 0},
            {'kind': 's2s', 'address': addr, 'port': S2S_PORT},
        ]
        if direct_tls_port:
            listen.append({'kind': 's2s_direct_tls', 'address': addr,
                           'port': direct_tls_port})
        # a peer is an address (s2s on 5269) or a full target
        override = [{'domain': d,
                     'target': a if ':' in a else '%s:%d' % (a, S2S_PORT)}
                    for d, a in sorted(peers.items())]
        config.setdefault('s2s_override', override)
        super().__init__(name='s2s-%s' % domain, domain=domain, users=users,
                         modules=s2s_modules() + list(extra_modules),
                         listen=listen,
                         s2s_ca_file=os.path.join(ca_dir, 'ca.crt'),
                         **config)
        self.addr = addr
        self.cert_name = cert_name
        self.cafile = os.path.join(ca_dir, 'ca.crt')
        # a MUC runs on conference.<domain>: the certificate names it
        self.cert, self.key = pvtest.make_host_cert(
            self.tls_dir, cert_name or domain, ca_dir,
            extra=('conference',) if 'muc' in extra_modules else ())
        self.write_config()
        suite.servers.append(self)

    def client(self, tls='starttls', **kw):
        return lax_client(self, tls, **kw)


class DnsStub:
    """Answers A queries for the names in records (name -> IPv4) on
    addr:53/udp; NXDOMAIN for other names, no data for other types.
    Enough for Prosody's resolver: no SRV, then A on port 5269."""

    def __init__(self, addr, records):
        self.records = {k.lower().rstrip('.'): v for k, v in records.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, 53))
        self.sock.settimeout(0.2)
        self.addr = addr
        self.queries = []
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _answer(self, q):
        if len(q) < 12:
            return None
        qid, flags, qd = struct.unpack('!HHH', q[:6])
        if qd != 1 or flags & 0x8000:
            return None
        pos, labels = 12, []
        while pos < len(q) and q[pos] != 0:
            n = q[pos]
            labels.append(q[pos + 1:pos + 1 + n].decode('ascii', 'replace'))
            pos += 1 + n
        pos += 1
        if pos + 4 > len(q):
            return None
        qtype, _ = struct.unpack('!HH', q[pos:pos + 4])
        question = q[12:pos + 4]
        name = '.'.join(labels).lower()
        self.queries.append((name, qtype))
        ip = self.records.get(name)
        rcode = 0 if ip else 3
        answers = b''
        if ip and qtype == 1:
            answers = struct.pack('!HHHIH', 0xc00c, 1, 1, 60, 4) + \
                socket.inet_aton(ip)
        hdr = struct.pack('!HHHHHH', qid, 0x8180 | (flags & 0x0100) | rcode,
                          1, 1 if answers else 0, 0, 0)
        return hdr + question + answers

    def _run(self):
        while not self.stopped:
            try:
                q, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            r = self._answer(q)
            if r is not None:
                self.sock.sendto(r, peer)

    def stop(self):
        self.stopped = True
        self.thread.join(2)
        self.sock.close()


class ProsodyPeer(pvtest.ProsodyServer):
    """Debian's Prosody 0.12 as a federation peer: s2s on addr:5269,
    dialback and SASL EXTERNAL, trusting the shared CA, resolving through
    a DnsStub (its resolver reads only /etc/resolv.conf, so the process
    runs in a private mount namespace where that file names the stub)."""

    def __init__(self, suite, domain, addr, ca_dir, dns_addr, users,
                 cert_name=None, secure_auth=True, insecure_domains=(),
                 muc=False):
        self.addr = addr
        self.muc = muc
        self.ca_dir = ca_dir
        self.dns_addr = dns_addr
        self.secure_auth = secure_auth
        self.insecure_domains = list(insecure_domains)
        self.cert_name = cert_name
        if not shutil.which('unshare'):
            raise pvtest.Skip('unshare (util-linux) not available')
        if os.geteuid() != 0:
            # a private /etc/resolv.conf needs a mount namespace
            raise pvtest.Skip('the Prosody peer needs root (unshare -m)')
        super().__init__(name='s2s-prosody-%s' % domain, domain=domain,
                         users=users)
        self.cafile = os.path.join(ca_dir, 'ca.crt')
        self.cert, self.key = pvtest.make_host_cert(
            self.tls_dir, cert_name or domain, ca_dir,
            extra=('conference',) if muc else ())
        self.write_config()
        suite.servers.append(self)

    def client(self, tls='starttls', **kw):
        return lax_client(self, tls, **kw)

    def write_config(self):
        cert = getattr(self, 'cert', None)
        cafile = os.path.join(self.ca_dir, 'ca.crt')
        ssl = '{ certificate = %r, key = %r, cafile = %r }' % (
            cert, self.key, cafile)
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
            's2s_interfaces = { %r }' % self.addr,
            's2s_ports = { %d }' % S2S_PORT,
            'http_ports = {}', 'https_ports = {}', 'component_ports = {}',
            'modules_enabled = { "saslauth", "tls", "dialback", "roster", '
            '"presence", "message", "iq", "disco", "ping", "posix" }',
            'c2s_require_encryption = true',
            's2s_require_encryption = true',
            's2s_secure_auth = %s' % ('true' if self.secure_auth
                                      else 'false'),
            's2s_insecure_domains = { %s }' % ', '.join(
                '%r' % d for d in self.insecure_domains),
            'authentication = "internal_hashed"',
            'certificates = %r' % self.tls_dir,
            'ssl = %s' % ssl,
            'VirtualHost %r' % self.domain,
            '    ssl = %s' % ssl,
        ]
        if self.muc:
            lines += ['Component %r "muc"' % ('conference.' + self.domain),
                      '    ssl = %s' % ssl]
        with open(self.conf_path, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        with open(os.path.join(self.dir, 'resolv.conf'), 'w') as f:
            f.write('nameserver %s\n' % self.dns_addr)

    def start(self, timeout=20):
        resolv = os.path.join(self.dir, 'resolv.conf')
        cmd = ('mount --bind %s /etc/resolv.conf && exec prosody -F '
               '--config %s' % (resolv, self.conf_path))
        out = open(self.out_path, 'ab')
        self.proc = subprocess.Popen(['unshare', '--mount', 'sh', '-c', cmd],
                                     cwd=self.dir, stdout=out,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        out.close()
        self.started_once = True
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((self.addr, S2S_PORT), 0.2).close()
                socket.create_connection(('127.0.0.1', self.port('c2s')),
                                         0.2).close()
                return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise pvtest.ServerError('prosody did not start\n' +
                                         self.log_tail())
            time.sleep(0.05)
