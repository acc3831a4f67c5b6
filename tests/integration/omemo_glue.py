#!/usr/bin/python3
# OMEMO clients for the integration tests: python3-omemo's SessionManager
# with the oldmemo (eu.siacs.conversations.axolotl) and twomemo
# (urn:xmpp:omemo:2) backends, glued to slixmpp's XEP-0060 plugin the way
# slixmpp-omemo would (Debian 12 has none, CONTRACTS.md §5): PEP device
# lists and bundles with the publish-options XEP-0384 asks for, an
# in-memory omemo.storage.Storage, blind trust, +notify through XEP-0115
# caps, and a queue that decrypts incoming <encrypted/> messages in order.
# Runs under /usr/bin/python3 (python3-omemo, -oldmemo, -twomemo,
# -xmlschema, -slixmpp); reusable by any test that needs real OMEMO.

import asyncio
import copy
import logging
import secrets
import uuid
import xml.etree.ElementTree as ET

import omemo
from omemo.storage import Just, Nothing, Storage
from omemo.types import TrustLevel
import oldmemo
import oldmemo.etree
import twomemo
import twomemo.etree
import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS_OLD = oldmemo.oldmemo.NAMESPACE          # eu.siacs.conversations.axolotl
NS_TWO = twomemo.twomemo.NAMESPACE          # urn:xmpp:omemo:2
NAMESPACES = (NS_OLD, NS_TWO)
NS_CLIENT = 'jabber:client'
NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_EVENT = NS_PUBSUB + '#event'
NS_HINTS = 'urn:xmpp:hints'
NS_EME = 'urn:xmpp:eme:0'
NS_SCE = 'urn:xmpp:sce:1'
NS_DELAY = 'urn:xmpp:delay'
NS_CARBONS = 'urn:xmpp:carbons:2'
NS_FWD = 'urn:xmpp:forward:0'

# XEP-0384 "Announcing support": v0.3 (legacy) and v0.8 (OMEMO 2)
DEVICELIST_NODE = {NS_OLD: NS_OLD + '.devicelist',
                   NS_TWO: NS_TWO + ':devices'}
OLD_BUNDLE_NODE = NS_OLD + '.bundles:%d'
TWO_BUNDLE_NODE = NS_TWO + ':bundles'
# The legacy fallback body Conversations puts next to <encrypted/>
FALLBACK = ('I sent you an OMEMO encrypted message but your client '
            "doesn't seem to support that.")

TRUSTED, UNDECIDED, DISTRUSTED = 'trusted', 'undecided', 'distrusted'

log = logging.getLogger('omemo_glue')


class WaitFailed(Exception):
    """OmemoClient.wait_for gave up: what it waited for, and why."""


class MemoryStorage(Storage):
    """omemo.storage.Storage in a dict. Keep the object to reconnect the
    same device (same id, keys and sessions)."""

    def __init__(self):
        super().__init__()
        self.data = {}

    async def _load(self, key):
        if key in self.data:
            return Just(copy.deepcopy(self.data[key]))
        return Nothing()

    async def _store(self, key, value):
        self.data[key] = copy.deepcopy(value)

    async def _delete(self, key):
        self.data.pop(key, None)


def publish_options(xmpp, **opts):
    """XEP-0223 publish-options form: pubsub#KEY = VALUE."""
    form = xmpp['xep_0004'].make_form(ftype='submit')
    form.add_field(var='FORM_TYPE', ftype='hidden',
                   value=NS_PUBSUB + '#publish-options')
    for k, v in opts.items():
        form.add_field(var='pubsub#' + k, value=v)
    return form


def node_config_form(xmpp, **opts):
    """XEP-0060 §8.2 node configuration form: pubsub#KEY = VALUE."""
    form = xmpp['xep_0004'].make_form(ftype='submit')
    form.add_field(var='FORM_TYPE', ftype='hidden',
                   value=NS_PUBSUB + '#node_config')
    for k, v in opts.items():
        form.add_field(var='pubsub#' + k, value=v)
    return form


def precondition_not_met(e):
    """A publish refused because publish-options did not match the
    node's configuration (XEP-0060 §7.1.5)."""
    return isinstance(e, IqError) and e.iq.xml.find(
        '{%s}error/{%s#errors}precondition-not-met' %
        (NS_CLIENT, NS_PUBSUB)) is not None


async def publish(xmpp, node, item_id, payload, **opts):
    """Publishes to the account's own PEP node with publish-options; if
    the node exists with another configuration, reconfigures it and
    publishes again, as XEP-0384 (Bundles) asks of clients. Records
    reconfigured nodes in xmpp.reconfigured."""
    try:
        return await xmpp['xep_0060'].publish(
            None, node, id=item_id, payload=payload,
            options=publish_options(xmpp, **opts), timeout=xmpp.iq_timeout)
    except IqError as e:
        if not precondition_not_met(e):
            raise
    await xmpp['xep_0060'].set_node_config(
        None, node, node_config_form(xmpp, **opts), timeout=xmpp.iq_timeout)
    xmpp.reconfigured.append(node)
    return await xmpp['xep_0060'].publish(
        None, node, id=item_id, payload=copy.deepcopy(payload),
        options=publish_options(xmpp, **opts), timeout=xmpp.iq_timeout)


def _condition(e):
    return e.iq['error']['condition'] if isinstance(e, IqError) else \
        'timeout'


def item_payload(iq):
    """The payload of the last <item/> of an items result (the newest,
    XEP-0060 §6.5.7), or None."""
    items = iq.xml.findall('{%s}pubsub/{%s}items/{%s}item' %
                           (NS_PUBSUB, NS_PUBSUB, NS_PUBSUB))
    for it in reversed(items):
        for child in it:
            return child
    return None


class GlueSessionManager(omemo.SessionManager):
    """The XMPP side of python-omemo. create() builds the instance itself
    (cls()), so the client comes in through a per-client subclass made by
    session_manager_class()."""

    client = None           # OmemoClient, set on the subclass

    # --- bundles -----------------------------------------------------
    async def _upload_bundle(self, bundle):
        c = self.client
        ns = bundle.namespace
        try:
            if ns == NS_OLD:
                await publish(c, OLD_BUNDLE_NODE % bundle.device_id,
                              'current',
                              oldmemo.etree.serialize_bundle(bundle),
                              access_model='open')
            elif ns == NS_TWO:
                await publish(c, TWO_BUNDLE_NODE, str(bundle.device_id),
                              twomemo.etree.serialize_bundle(bundle),
                              access_model='open', max_items='max')
            else:
                raise omemo.UnknownNamespace(ns)
        except (IqError, IqTimeout) as e:
            c.record_error('bundle upload %s: %s' % (ns, _condition(e)))
            raise omemo.BundleUploadFailed(str(e)) from e

    async def _download_bundle(self, namespace, bare_jid, device_id):
        c = self.client
        try:
            if namespace == NS_OLD:
                iq = await c['xep_0060'].get_items(
                    bare_jid, OLD_BUNDLE_NODE % device_id, max_items=1,
                    timeout=c.iq_timeout)
            elif namespace == NS_TWO:
                iq = await c['xep_0060'].get_item(
                    bare_jid, TWO_BUNDLE_NODE, str(device_id),
                    timeout=c.iq_timeout)
            else:
                raise omemo.UnknownNamespace(namespace)
        except IqError as e:
            if _condition(e) == 'item-not-found':
                raise omemo.BundleNotFound(str(e)) from e
            c.record_error('bundle download %s %s/%d: %s' %
                           (namespace, bare_jid, device_id, _condition(e)))
            raise omemo.BundleDownloadFailed(str(e)) from e
        except IqTimeout as e:
            c.record_error('bundle download timeout')
            raise omemo.BundleDownloadFailed(str(e)) from e
        payload = item_payload(iq)
        if payload is None:
            raise omemo.BundleNotFound('%s/%d: no item' % (bare_jid,
                                                          device_id))
        c.bundles_fetched.append((namespace, bare_jid, device_id))
        mod = oldmemo.etree if namespace == NS_OLD else twomemo.etree
        return mod.parse_bundle(payload, bare_jid, device_id)

    async def _delete_bundle(self, namespace, device_id):
        c = self.client
        try:
            if namespace == NS_OLD:
                await c['xep_0060'].delete_node(
                    None, OLD_BUNDLE_NODE % device_id, timeout=c.iq_timeout)
            elif namespace == NS_TWO:
                await c['xep_0060'].retract(
                    None, TWO_BUNDLE_NODE, str(device_id), notify=True,
                    timeout=c.iq_timeout)
            else:
                raise omemo.UnknownNamespace(namespace)
        except IqError as e:
            if _condition(e) != 'item-not-found':
                raise omemo.BundleDeletionFailed(str(e)) from e
        except IqTimeout as e:
            raise omemo.BundleDeletionFailed(str(e)) from e

    # --- device lists ------------------------------------------------
    async def _upload_device_list(self, namespace, device_list):
        c = self.client
        if namespace == NS_OLD:
            payload = oldmemo.etree.serialize_device_list(device_list)
        elif namespace == NS_TWO:
            payload = twomemo.etree.serialize_device_list(device_list)
        else:
            raise omemo.UnknownNamespace(namespace)
        try:
            await publish(c, DEVICELIST_NODE[namespace], 'current', payload,
                          access_model='open')
        except (IqError, IqTimeout) as e:
            c.record_error('device list upload %s: %s' %
                           (namespace, _condition(e)))
            raise omemo.DeviceListUploadFailed(str(e)) from e

    async def _download_device_list(self, namespace, bare_jid):
        c = self.client
        if namespace not in DEVICELIST_NODE:
            raise omemo.UnknownNamespace(namespace)
        try:
            iq = await c['xep_0060'].get_items(
                bare_jid, DEVICELIST_NODE[namespace], timeout=c.iq_timeout)
        except IqError as e:
            if _condition(e) == 'item-not-found':
                return {}
            c.record_error('device list download %s %s: %s' %
                           (namespace, bare_jid, _condition(e)))
            raise omemo.DeviceListDownloadFailed(str(e)) from e
        except IqTimeout as e:
            c.record_error('device list download timeout')
            raise omemo.DeviceListDownloadFailed(str(e)) from e
        payload = item_payload(iq)
        if payload is None:
            return {}
        c.device_lists_fetched.append((namespace, bare_jid))
        mod = oldmemo.etree if namespace == NS_OLD else twomemo.etree
        return mod.parse_device_list(payload)

    # --- trust: blind trust (the test checks transport, not TOFU UX) -
    async def _evaluate_custom_trust_level(self, device):
        level = {TRUSTED: TrustLevel.TRUSTED,
                 UNDECIDED: TrustLevel.UNDECIDED,
                 DISTRUSTED: TrustLevel.DISTRUSTED}.get(
                     device.trust_level_name)
        if level is None:
            raise omemo.UnknownTrustLevel(device.trust_level_name)
        return level

    async def _make_trust_decision(self, undecided, identifier):
        for d in undecided:
            await self.set_trust(d.bare_jid, d.identity_key, TRUSTED)

    # --- key transport / session completion messages -----------------
    async def _send_message(self, message, bare_jid):
        c = self.client
        try:
            c.send_encrypted(message, bare_jid, fallback=False)
        except Exception as e:                      # noqa: BLE001
            raise omemo.MessageSendingFailed(str(e)) from e
        c.empty_sent.append((message.namespace, bare_jid))


def session_manager_class(client):
    return type('GlueSessionManager_%s' % client.boundjid.user,
                (GlueSessionManager,), {'client': client})


# --- XEP-0420 envelope (the OMEMO 2 plaintext, XEP-0384 SCE profile) ---

def sce_envelope(text, sender, recipient):
    env = ET.Element('{%s}envelope' % NS_SCE)
    content = ET.SubElement(env, '{%s}content' % NS_SCE)
    ET.SubElement(content, '{%s}body' % NS_CLIENT).text = text
    ET.SubElement(env, '{%s}rpad' % NS_SCE).text = \
        secrets.token_urlsafe(secrets.randbelow(16) + 1)
    ET.SubElement(env, '{%s}from' % NS_SCE, jid=sender)
    ET.SubElement(env, '{%s}to' % NS_SCE, jid=recipient)
    return ET.tostring(env, encoding='utf-8')


def sce_open(data, sender, recipient):
    """The body of an envelope; raises ValueError if the affixes do not
    name this sender and recipient (XEP-0420 affixes)."""
    env = ET.fromstring(data)
    if env.tag != '{%s}envelope' % NS_SCE:
        raise ValueError('not an SCE envelope: %r' % data[:80])
    f = env.find('{%s}from' % NS_SCE)
    t = env.find('{%s}to' % NS_SCE)
    if f is None or f.get('jid') != sender or t is None or \
            t.get('jid') != recipient:
        raise ValueError('SCE affixes do not match: %r' % data)
    return env.findtext('{%s}content/{%s}body' % (NS_SCE, NS_CLIENT))


# --- the client --------------------------------------------------------

class OmemoClient(slixmpp.ClientXMPP):
    """A slixmpp client with one OMEMO device (both backends). Attributes
    the tests read: sm (SessionManager), device_id, received (decrypted
    messages: dicts ns/from/to/text/element/delayed/id/carbon),
    notifications (device list events: ns/from/ids), errors."""

    def __init__(self, jid, password, cafile, storage, timeout=10.0,
                 notify=True, presence=True):
        super().__init__(jid, password)
        self.ca_certs = cafile
        self.storage = storage
        self.iq_timeout = timeout
        self.send_presence_on_start = presence
        for p in ('xep_0030', 'xep_0004', 'xep_0060', 'xep_0115',
                  'xep_0163', 'xep_0199'):
            self.register_plugin(p)
        if notify:
            # XEP-0163 §4: +notify in the XEP-0115 caps asks for the
            # device lists of contacts; bundles are fetched on demand
            for ns in NAMESPACES:
                self['xep_0030'].add_feature(DEVICELIST_NODE[ns] +
                                             '+notify')
        self['xep_0115'].caps_node = 'https://palaver.test/omemo-glue'
        self.sm = None
        self.device_id = None
        self.received = []
        self.notifications = []
        self.errors = []
        self.bundles_fetched = []
        self.device_lists_fetched = []
        self.empty_sent = []
        self.reconfigured = []      # nodes publish() had to configure
        self.not_for_us = []        # (ns, id, carbon) without our key
        self.sent = []              # (ns, to, <encrypted/> copy, id)
        self._inbox = asyncio.Queue()
        self._changed = asyncio.Event()
        self._worker = None
        loop = asyncio.get_event_loop()
        self.ready = loop.create_future()
        self.register_handler(Callback(
            'omemo-glue messages', MatchXPath('{%s}message' % NS_CLIENT),
            self._on_message))
        self.add_event_handler('session_start', self._on_session)
        self.add_event_handler('failed_all_auth', self._on_auth_failed)
        self.add_event_handler('disconnected', self._on_disconnected)

    def record_error(self, what):
        log.info('%s: %s', self.boundjid, what)
        self.errors.append(what)
        self._changed.set()

    @property
    def bare(self):
        return self.boundjid.bare

    # --- connection ---------------------------------------------------
    def _on_auth_failed(self, _event):
        if not self.ready.done():
            self.ready.set_exception(RuntimeError('%s: SASL failed' %
                                                  self.boundjid))

    def _on_disconnected(self, _event):
        if not self.ready.done():
            self.ready.set_exception(RuntimeError('%s: disconnected before '
                                                  'the session started' %
                                                  self.boundjid))

    async def _on_session(self, _event):
        try:
            # the caps hash must cover the +notify features before the
            # initial presence carries it
            await self['xep_0115'].update_caps(broadcast=False)
            cls = session_manager_class(self)
            self.sm = await cls.create(
                [oldmemo.Oldmemo(self.storage), twomemo.Twomemo(self.storage)],
                self.storage, self.bare, 'palaver-test', UNDECIDED)
            info, _ = await self.sm.get_own_device_information()
            self.device_id = info.device_id
            self._worker = asyncio.ensure_future(self._work())
            if self.send_presence_on_start:
                self.send_presence()
            if not self.ready.done():
                self.ready.set_result(True)
        except Exception as e:                      # noqa: BLE001
            log.exception('session start')
            if not self.ready.done():
                self.ready.set_exception(e)

    async def start(self, host, port):
        self.connect((host, port), force_starttls=True)
        await asyncio.wait_for(self.ready, self.iq_timeout * 6)
        return self

    async def stop(self):
        if self._worker is not None:
            self._worker.cancel()
        try:
            await asyncio.wait_for(self.disconnect(wait=1.0), 5)
        except Exception:                           # noqa: BLE001
            pass

    # --- incoming -----------------------------------------------------
    def _on_message(self, msg):
        self._inbox.put_nowait(msg)

    async def _work(self):
        while True:
            msg = await self._inbox.get()
            try:
                await self._handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception as e:                  # noqa: BLE001
                log.exception('incoming message')
                self.record_error('handling %s: %r' % (msg['id'], e))
            self._changed.set()

    async def _handle(self, msg):
        x = msg.xml
        sender = msg['from'].bare
        if msg['type'] == 'error':
            self.record_error('message error from %s: %s' %
                              (msg['from'], msg['error']['condition']))
            return
        ev = x.find('{%s}event/{%s}items' % (NS_EVENT, NS_EVENT))
        if ev is not None:
            for ns, node in DEVICELIST_NODE.items():
                if ev.get('node') != node:
                    continue
                for it in ev.findall('{%s}item' % NS_EVENT):
                    for payload in it:
                        mod = oldmemo.etree if ns == NS_OLD else \
                            twomemo.etree
                        ids = mod.parse_device_list(payload)
                        self.notifications.append({
                            'ns': ns, 'from': sender, 'ids': set(ids),
                            'delayed': x.find('{%s}delay' % NS_DELAY)
                            is not None})
                        await self.sm.update_device_list(ns, sender, ids)
            return
        for kind in ('sent', 'received'):
            fwd = x.find('{%s}%s/{%s}forwarded/{%s}message' %
                          (NS_CARBONS, kind, NS_FWD, NS_CLIENT))
            if fwd is None:
                continue
            # XEP-0280 §11: only the own account may send carbons
            if msg['from'].full != self.bare:
                self.record_error('carbon from %s' % msg['from'])
                return
            await self._decrypt(fwd, kind)
            return
        await self._decrypt(x, None)

    async def _decrypt(self, x, carbon):
        """Decrypts the <encrypted/> of message element x (a carbon copy
        when carbon is 'sent' or 'received') into self.received."""
        sender = slixmpp.JID(x.get('from') or '').bare
        recipient = slixmpp.JID(x.get('to') or self.bare).bare
        for ns in NAMESPACES:
            enc = x.find('{%s}encrypted' % ns)
            if enc is None:
                continue
            keep = copy.deepcopy(enc)
            if ns == NS_OLD:
                m = await oldmemo.etree.parse_message(enc, sender, self.bare,
                                                      self.sm)
            else:
                m = twomemo.etree.parse_message(enc, sender)
            try:
                plain, device, _ = await self.sm.decrypt(m)
            except omemo.MessageNotForUs:
                # key material only for other devices: an empty session
                # message to another device of ours, or its carbon
                self.not_for_us.append((ns, x.get('id'), carbon))
                return
            text = None
            if plain is not None:
                text = plain.decode('utf-8') if ns == NS_OLD else \
                    sce_open(plain, sender, recipient)
            self.received.append({
                'ns': ns, 'from': sender, 'to': recipient,
                'device': device.device_id, 'text': text, 'element': keep,
                'id': x.get('id'), 'type': x.get('type'), 'carbon': carbon,
                'body': x.findtext('{%s}body' % NS_CLIENT),
                'delayed': x.find('{%s}delay' % NS_DELAY) is not None})
            return

    async def enable_carbons(self):
        """XEP-0280 §4: copies of this account's other conversations."""
        iq = self.make_iq_set()
        ET.SubElement(iq.xml, '{%s}enable' % NS_CARBONS)
        await iq.send(timeout=self.iq_timeout)

    async def end_history_sync(self):
        """Leaves python-omemo's history synchronization mode: hidden
        pre keys go, queued session-completion messages are sent."""
        await self.sm.after_history_sync()

    async def wait_for(self, pred, timeout, what):
        """Waits until pred() is true (re-checked after each handled
        stanza). Raises WaitFailed naming what on timeout, or at once
        when handling a stanza fails meanwhile (a message that does not
        decrypt will not decrypt later)."""
        loop = asyncio.get_event_loop()
        deadline = loop.time() + timeout
        n_errors = len(self.errors)
        while not pred():
            if len(self.errors) > n_errors:
                raise WaitFailed('%s: waiting for %s: %s' %
                                 (self.boundjid, what,
                                  '; '.join(self.errors[n_errors:])))
            left = deadline - loop.time()
            if left <= 0:
                raise WaitFailed('%s: no %s within %.1fs (errors: %s)' %
                                 (self.boundjid, what, timeout,
                                  self.errors or 'none'))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass
        return True

    async def drain(self):
        """Lets every stanza received so far be handled (a ping round
        trip orders it after the server's earlier output)."""
        await self['xep_0199'].ping(self.boundjid.domain,
                                    timeout=self.iq_timeout)
        while not self._inbox.empty():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)

    # --- outgoing -----------------------------------------------------
    def send_encrypted(self, message, bare_jid, fallback=True, mid=None):
        """Sends an omemo Message as a chat <message/> with XEP-0380 and,
        for the legacy namespace, Conversations' fallback body and
        XEP-0334 <store/> hint. Returns the <encrypted/> element sent."""
        ns = message.namespace
        if ns == NS_OLD:
            enc = oldmemo.etree.serialize_message(message)
        elif ns == NS_TWO:
            enc = twomemo.etree.serialize_message(message)
        else:
            raise omemo.UnknownNamespace(ns)
        msg = self.make_message(mto=bare_jid, mtype='chat')
        msg['id'] = mid or uuid.uuid4().hex
        msg.xml.append(enc)
        ET.SubElement(msg.xml, '{%s}encryption' % NS_EME, namespace=ns,
                      name='OMEMO' if ns == NS_TWO else 'OMEMO (legacy)')
        if ns == NS_OLD and fallback:
            msg['body'] = FALLBACK
            ET.SubElement(msg.xml, '{%s}store' % NS_HINTS)
        sent = copy.deepcopy(enc)
        msg.send()
        self.sent.append((ns, bare_jid, sent, msg['id']))
        return sent, msg['id']

    async def encrypt_to(self, bare_jid, text, ns, refresh=True):
        """Encrypts text for every device of bare_jid in namespace ns and
        sends it. refresh: fetch the recipient's device list first (what
        a client does when it opens a chat); without it only the device
        lists learnt from PEP notifications are used."""
        if refresh:
            await self.sm.refresh_device_list(ns, bare_jid)
        if ns == NS_OLD:
            plain = text.encode('utf-8')
        else:
            plain = sce_envelope(text, self.bare, bare_jid)
        messages, errors = await self.sm.encrypt(
            frozenset([bare_jid]), {ns: plain}, backend_priority_order=[ns])
        if errors:
            raise RuntimeError('encryption errors: %s' % (errors,))
        out = None
        for m in messages:
            if m.namespace == ns:
                out = self.send_encrypted(m, bare_jid)
        if out is None:
            raise RuntimeError('no %s message produced' % ns)
        return out


def same_element(a, b):
    """Equality of two ElementTree elements: tag (with namespace),
    attributes, text and children, in order; only the tails (whitespace
    between elements) are ignored."""
    if a.tag != b.tag or dict(a.attrib) != dict(b.attrib):
        return False
    if (a.text or '') != (b.text or ''):
        return False
    if len(a) != len(b):
        return False
    return all(same_element(x, y) for x, y in zip(a, b))
