#!/usr/bin/python3
# slixmpp side of test_muc.py: logs in, joins a room with slixmpp's
# XEP-0045 plugin (history on join), says one line and waits for its
# reflection, reads the room archive with the XEP-0313 plugin (MUC MAM),
# then prints one JSON line: {"history": [...], "mam": [...],
# "reflected": bool, "errors": [...]}. argv[1] is a JSON config (host,
# port, domain, cafile, user, password, room, nick, say, timeout).

import asyncio
import json
import logging
import sys

import slixmpp

cfg = json.loads(sys.argv[1])
logging.basicConfig(level=logging.ERROR, stream=sys.stderr)


class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__('%s@%s/slix' % (cfg['user'], cfg['domain']),
                         cfg['password'])
        self.ca_certs = cfg['cafile']
        for p in ('xep_0030', 'xep_0004', 'xep_0045', 'xep_0059',
                  'xep_0203', 'xep_0297', 'xep_0313'):
            self.register_plugin(p)
        self.out = {'errors': [], 'history': [], 'mam': [],
                    'reflected': False}
        self.finished = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', self.on_session)

    async def on_session(self, event):
        room = slixmpp.JID(cfg['room'])
        try:
            self.send_presence()
            _, _, _, hist = await self['xep_0045'].join_muc_wait(
                room, cfg['nick'], maxstanzas=20, timeout=cfg['timeout'])
            self.out['history'] = [m['body'] for m in hist]
            got = asyncio.get_event_loop().create_future()

            def on_msg(msg):
                if msg['body'] == cfg['say'] and not got.done():
                    got.set_result(msg)
            self.add_event_handler('groupchat_message', on_msg)
            self.send_message(mto=room, mbody=cfg['say'], mtype='groupchat')
            await asyncio.wait_for(got, cfg['timeout'])
            self.out['reflected'] = True
            async for msg in self['xep_0313'].iterate(jid=room,
                                                      rsm={'max': 10}):
                fwd = msg['mam_result']['forwarded']
                self.out['mam'].append(fwd['stanza']['body'])
            self['xep_0045'].leave_muc(room, cfg['nick'])
            self.finished.set_result(True)
        except Exception as e:          # noqa: BLE001
            self.out['errors'].append(repr(e))
            self.finished.set_result(False)


async def run():
    c = Client()
    c.connect((cfg['host'], cfg['port']), force_starttls=True)
    try:
        ok = await asyncio.wait_for(c.finished, cfg['timeout'] * 3)
    except asyncio.TimeoutError:
        c.out['errors'].append('timed out')
        ok = False
    try:
        await asyncio.wait_for(c.disconnect(wait=1.0), 5)
    except Exception:                   # noqa: BLE001
        pass
    print(json.dumps(c.out))
    return ok

sys.exit(0 if asyncio.get_event_loop().run_until_complete(run()) else 1)
