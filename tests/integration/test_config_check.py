#!/usr/bin/python3
# Configuration checks (CONTRACTS.md §1, palaver.conf(5)): `palaverd -t -c
# FILE` and `palaverctl -c FILE check config` accept the shipped
# conf/palaver.conf and a generated file, exit 0 and start nothing; on a
# broken file both print every error as FILE:LINE (unknown key, type
# error, several at once, scope, unknown module, module directive, syntax,
# errors inside an @include) and exit non-zero.

import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'harness'))
import pvtest  # noqa: E402
from pvtest import check, check_eq  # noqa: E402

suite = pvtest.Suite('config_check')
state = {}


def base():
    """A harness server that is never started: its directory, certificate
    and generated config are the material for the cases."""
    srv = state.get('srv')
    if srv is None:
        srv = suite.server()
        state['srv'] = srv
    return srv


def run(args, cwd=None):
    r = subprocess.run(args, capture_output=True, text=True, cwd=cwd,
                       stdin=subprocess.DEVNULL,
                       timeout=60 * pvtest.time_factor())
    return r.returncode, r.stdout + r.stderr


def both(path, cwd=None):
    """[(tool, exit code, output)] of palaverd -t and palaverctl check
    config on path."""
    return [('palaverd -t',) + run([pvtest.palaverd_path(), '-t', '-c',
                                    path], cwd),
            ('palaverctl check config',) + run([pvtest.palaverctl_path(),
                                                '-c', path, 'check',
                                                'config'], cwd)]


def expect_ok(path, cwd=None):
    for tool, rc, out in both(path, cwd):
        check_eq(rc, 0, '%s exit code on %s (output: %s)' % (tool, path,
                                                             out.strip()))
        check('configuration ok' in out, '%s: no "configuration ok": %s'
              % (tool, out.strip()))


def expect_errors(path, errors, cwd=None):
    """errors: [(file, line, words in the message)]; every one must be
    printed as FILE:LINE: by both tools, which exit non-zero."""
    for tool, rc, out in both(path, cwd):
        check(rc != 0, '%s exited 0 on a broken file:\n%s' %
              (tool, pvtest.indent(out)))
        lines = out.splitlines()
        for fname, line, words in errors:
            prefix = '%s:%d:' % (fname, line)
            hits = [x for x in lines if x.startswith(prefix)]
            check(hits, '%s: no %s error line:\n%s' %
                  (tool, prefix, pvtest.indent(out)))
            check(any(all(w in h for w in words) for h in hits),
                  '%s: %s line lacks %s:\n%s' %
                  (tool, prefix, words, pvtest.indent(out)))
    return out


def write(path, lines):
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def good_lines():
    srv = base()
    with open(srv.conf_path) as f:
        return f.read().splitlines()


@suite.test
def shipped_example():
    # conf/palaver.conf as shipped, in a tree laid out like the checkout:
    # it points at ../var/tls and ../modules/.libs relative to itself
    srv = base()
    root = os.path.join(srv.dir, 'tree')
    os.makedirs(os.path.join(root, 'conf'))
    os.makedirs(os.path.join(root, 'var', 'tls'))
    os.makedirs(os.path.join(root, 'modules'))
    shipped = os.path.join(pvtest.srcdir(), 'conf', 'palaver.conf')
    conf = os.path.join(root, 'conf', 'palaver.conf')
    shutil.copyfile(shipped, conf)
    shutil.copyfile(srv.cert, os.path.join(root, 'var', 'tls',
                                           'localhost.crt'))
    shutil.copyfile(srv.key, os.path.join(root, 'var', 'tls',
                                          'localhost.key'))
    os.symlink(pvtest.module_path(), os.path.join(root, 'modules', '.libs'))
    # relative paths follow the file, not the working directory
    expect_ok(conf, cwd='/')
    expect_ok(os.path.relpath(conf, srv.dir), cwd=srv.dir)
    check(not os.path.exists(os.path.join(root, 'var', 'data')),
          'checking the configuration created the store')


@suite.test
def generated_file_ok():
    srv = base()
    expect_ok(srv.conf_path)
    check(not os.path.exists(srv.data_dir),
          'checking the configuration created %s' % srv.data_dir)


@suite.test
def unknown_key():
    srv = base()
    lines = good_lines() + ['c2s_max_stanza = "10K";']
    path = os.path.join(srv.dir, 'unknown.conf')
    write(path, lines)
    expect_errors(path, [(path, len(lines), ['c2s_max_stanza'])])


@suite.test
def type_errors():
    srv = base()
    lines = good_lines()
    cases = [
        ('xml_max_depth = "deep";', ['xml_max_depth']),
        # a size must carry a unit (libconfig wraps large integers)
        ('c2s_max_stanza_size = 100000;', ['c2s_max_stanza_size']),
        ('run_as_root = "yes";', ['run_as_root']),
        ('c2s_auth_timeout = "30";', ['c2s_auth_timeout']),
        ('scram_iterations = 100;', ['scram_iterations']),
    ]
    for i, (text, words) in enumerate(cases):
        path = os.path.join(srv.dir, 'type%d.conf' % i)
        # replace the directive if the generated file has it
        key = text.split('=')[0].strip()
        body = [x for x in lines if not x.startswith(key + ' ')]
        body.append(text)
        write(path, body)
        expect_errors(path, [(path, len(body), words)])


@suite.test
def several_errors_at_once():
    srv = base()
    lines = good_lines()
    extra = ['bogus_one = 1;', 'xml_max_attrs = "many";',
             'bogus_two = "x";']
    lines[1:1] = extra          # right after the first line
    path = os.path.join(srv.dir, 'several.conf')
    write(path, lines)
    expect_errors(path, [(path, 2, ['bogus_one']),
                         (path, 3, ['xml_max_attrs']),
                         (path, 4, ['bogus_two'])])


@suite.test
def scope_module_and_syntax_errors():
    srv = base()
    mods = pvtest.available_modules(['disco', 'ping', 'version'])
    lines = [
        'run_as_root = true;',                                  # 1
        'storage_path = "data";',                               # 2
        'module_path = "%s";' % pvtest.module_path(),           # 3
        'modules_enabled = [ %s, "no_such_module" ];' %         # 4
        ', '.join('"%s"' % m for m in mods),
        'vhosts = (',                                           # 5
        '  { name = "localhost";',                              # 6
        '    user = "nobody";',                                 # 7
        '    listen = ( { kind = "c2s"; port = 0; } );',        # 8
        '  }',                                                  # 9
        ');',                                                   # 10
    ]
    path = os.path.join(srv.dir, 'scope.conf')
    write(path, lines)
    expect_errors(path, [(path, 4, ['no_such_module']),
                         (path, 7, ['user']),
                         (path, 8, ['listen'])])
    # a module's directive where the module is not enabled names it
    if 'version' in mods:
        lines = good_lines()
        lines = [x for x in lines if not x.startswith('modules_enabled')]
        lines.append('modules_enabled = [ "disco" ];')
        lines.append('version_show_os = true;')
        path = os.path.join(srv.dir, 'module-directive.conf')
        write(path, lines)
        expect_errors(path, [(path, len(lines), ['version'])])
    # a syntax error: one error, with its line
    lines = good_lines()
    lines.insert(2, 'log_level = "debug"')      # no semicolon
    lines.insert(3, 'this is not = libconfig;')
    path = os.path.join(srv.dir, 'syntax.conf')
    write(path, lines)
    out = expect_errors(path, [(path, 4, ['syntax'])])
    check('configuration has errors' in out,
          'no summary line:\n%s' % pvtest.indent(out))


@suite.test
def errors_in_included_file():
    srv = base()
    incdir = os.path.join(srv.dir, 'conf.d')
    os.makedirs(incdir, exist_ok=True)
    inc = os.path.join(incdir, 'limits.conf')
    write(inc, ['# limits', 'c2s_stanza_rate = "fast";', 'bogus = 2;'])
    lines = good_lines() + ['@include "conf.d/limits.conf"']
    path = os.path.join(srv.dir, 'include.conf')
    write(path, lines)
    # from another working directory: the include is relative to the file
    expect_errors(path, [(inc, 2, ['c2s_stanza_rate']), (inc, 3, ['bogus'])],
                  cwd='/')
    write(inc, ['c2s_stanza_rate = 50;'])
    expect_ok(path, cwd='/')


@suite.test
def usage_and_missing_file():
    srv = base()
    rc, out = run([pvtest.palaverd_path(), '-t'])
    check_eq(rc, 2, 'palaverd -t without -c')
    missing = os.path.join(srv.dir, 'missing.conf')
    for tool, rc, out in both(missing):
        check(rc != 0, '%s exited 0 on a missing file' % tool)
        check(missing in out, '%s does not name the missing file: %s' %
              (tool, out.strip()))


if __name__ == '__main__':
    suite.main()
