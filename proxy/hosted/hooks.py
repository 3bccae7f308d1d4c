"""The hook worker: delivers the outbox's events, per hook strictly in order, with backoff.

One task watches the queue; each hook with a due event gets one delivery task at a time, so a
hanging receiver holds up only its own queue (and only for `hooks.timeout`), never an upload or
another hook. An attempt is recorded (state, time, status, error, answer excerpt) right after it
ends, so a restart does not send a delivered event again. Woken by the db listener at every
commit; otherwise it sleeps until the soonest retry is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from proxy import delivery
from proxy.config import HooksConfig, IndexConfig, WebhookConfig
from proxy.delivery import Outcome
from proxy.hosted import jenkins
from proxy.hosted.outbox import (
    JENKINS,
    KEEP_FINISHED,
    QueuedEvent,
    State,
    drop_events,
    prune_events,
    read_heads,
    record_attempt,
    webhook_key,
)
from proxy.metrics import Metrics
from proxy.model import mask_url
from proxy.storage.changes import Change
from proxy.storage.db import Database
from proxy.tasks import Background

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0  #: seconds between two deletions of old finished events
SIGNATURE_HEADER = "X-Wheelwell-Signature"
EVENT_HEADER = "X-Wheelwell-Event"  #: upload, yank, …
EVENT_ID_HEADER = "X-Wheelwell-Event-Id"  #: the same on every retry: receivers dedupe by it


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 of the exact body with the hook's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay(cfg: HooksConfig, attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling, capped."""
    return float(min(cfg.retry_max, cfg.retry_min * 2.0 ** max(0, min(attempts - 1, 60))))


def find_hook(cfg: IndexConfig | None, key: str) -> WebhookConfig | str | None:
    """The index's hook of this key as configured now: a webhook, the Jenkins URL, or None."""
    if cfg is None:
        return None
    if key == JENKINS:
        return cfg.uploadtrigger_jenkins or None
    return next((h for h in cfg.webhooks if webhook_key(h.url) == key), None)


def _hook_keys(cfg: IndexConfig) -> list[str]:
    keys = [webhook_key(h.url) for h in cfg.webhooks]
    return [*keys, JENKINS] if cfg.uploadtrigger_jenkins else keys


class HookWorker:
    """Owns the delivery tasks; `configs` looks an index's current config up (None: gone)."""

    def __init__(
        self,
        db: Database,
        configs: Callable[[str], IndexConfig | None],
        session_for: Callable[[str], aiohttp.ClientSession],
        cfg: HooksConfig,
        base_url: str,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.configs = configs
        self.session_for = session_for  #: the session with the address policy of an index
        self.cfg = cfg
        self.base_url = base_url  #: where Jenkins reaches this server (job scripts install from it)
        self.metrics = metrics
        self.clock = clock
        self._wakeup = asyncio.Event()
        self._busy: set[tuple[str, str]] = set()
        self._tasks = Background()
        self._main: asyncio.Task[None] | None = None

    def wake(self, serial: int = 0, change: Change | None = None) -> None:
        """A db listener: a commit may have queued events (not when its hooks are all busy:
        each busy hook looks at its queue again when its delivery ends)."""
        index = change.index if change is not None else None
        if index is not None:
            cfg = self.configs(index)
            keys = _hook_keys(cfg) if cfg is not None else []
            if all((index, key) in self._busy for key in keys):
                return
        self._wakeup.set()

    def start(self) -> None:
        self._main = asyncio.create_task(self._run(), name="hook worker")

    async def close(self) -> None:
        """Cancel what is in flight: an unrecorded attempt is simply made again after a restart."""
        if self._main is not None:
            self._main.cancel()
            await asyncio.gather(self._main, return_exceptions=True)
        await self._tasks.close()

    async def _run(self) -> None:
        pruned = 0.0
        while True:
            self._wakeup.clear()
            try:
                if self.clock() - pruned >= PRUNE_EVERY:
                    pruned = self.clock()
                    await self.db.write_derived(
                        functools.partial(prune_events, before=pruned - KEEP_FINISHED)
                    )
                wait = await self._dispatch()
                wait = PRUNE_EVERY if wait is None else min(wait, PRUNE_EVERY)
            except Exception:  # the supervisor: log, back off, keep delivering
                log.exception("hook worker failed; trying again")
                wait = self.cfg.retry_min
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    async def _dispatch(self) -> float | None:
        """Start a delivery for every hook whose oldest event is due; seconds to the next one."""
        heads = await self.db.read(read_heads)
        now = self.clock()
        soonest: float | None = None
        for head in heads:
            key = (head.index, head.hook)
            if key in self._busy:
                continue
            if head.next_at > now:
                due = head.next_at - now
                soonest = due if soonest is None else min(soonest, due)
                continue
            self._busy.add(key)
            self._tasks.spawn(self._deliver(head), name=f"hook {head.index} {head.hook}")
        return soonest

    async def _deliver(self, event: QueuedEvent) -> None:
        try:
            hook = find_hook(self.configs(event.index), event.hook)
            if hook is None:
                dropped = await self.db.write_derived(
                    lambda c: drop_events(c, event.index, event.hook)
                )
                log.info(
                    "hook %s of %s is gone: %d events dropped",
                    event.hook,
                    event.index,
                    dropped,
                    extra={"index": event.index},
                )
                return
            started = self.clock()
            session = self.session_for(event.index)
            if isinstance(hook, WebhookConfig):
                outcome = await self._send_webhook(session, hook, event)
                shown = mask_url(hook.url)
            else:
                outcome = await self._trigger_jenkins(session, hook, event)
                shown = mask_url(hook)
            await self._record(event, started, outcome, shown)
        finally:
            self._busy.discard((event.index, event.hook))
            self._wakeup.set()

    async def _record(self, event: QueuedEvent, started: float, outcome: Outcome, url: str) -> None:
        now = self.clock()
        attempts = event.attempts + 1
        if outcome.ok:
            state, next_at = State.DELIVERED, now
        elif attempts >= self.cfg.max_attempts or now - event.created >= self.cfg.max_age:
            state, next_at = State.FAILED, now
        else:
            state, next_at = State.PENDING, now + retry_delay(self.cfg, attempts)
        await self.db.write_derived(
            lambda c: record_attempt(
                c, event, started, outcome.status, outcome.error, outcome.excerpt, state, next_at
            )
        )
        kind = "jenkins" if event.hook == JENKINS else "webhook"
        outcome_name = {State.DELIVERED: "delivered", State.FAILED: "failed"}.get(state, "retry")
        self.metrics.hook_attempts.labels(kind, outcome_name).inc()
        extra = {"index": event.index, "event_id": event.id, "upstream": url}
        if outcome.ok:
            log.info("hook %s: %s event %d delivered", url, event.event, event.id, extra=extra)
        elif state == State.FAILED:
            log.error(
                "hook %s: gave up on event %d after %d attempts: %s",
                url,
                event.id,
                attempts,
                outcome.error,
                extra=extra,
            )
        else:
            log.warning(
                "hook %s: event %d attempt %d failed (%s); next in %.1f s",
                url,
                event.id,
                attempts,
                outcome.error,
                next_at - now,
                extra=extra,
            )

    async def _send_webhook(
        self, session: aiohttp.ClientSession, hook: WebhookConfig, event: QueuedEvent
    ) -> Outcome:
        body = event.body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(hook.secret, body),
            EVENT_HEADER: event.event,
            EVENT_ID_HEADER: str(json.loads(event.body)["id"]),
        }
        return await delivery.send(
            session, "POST", hook.url, timeout=self.cfg.timeout, data=body, headers=headers
        )

    async def _trigger_jenkins(
        self, session: aiohttp.ClientSession, template: str, event: QueuedEvent
    ) -> Outcome:
        """devpi-jenkins's POST; a crumb first when Jenkins issues them (CSRF protection on)."""
        data: dict[str, Any] = json.loads(event.body)
        url = jenkins.render_trigger_url(template, data)
        headers: dict[str, str] = {}
        crumb = await delivery.send(
            session, "GET", jenkins.crumb_url(url), timeout=self.cfg.timeout
        )
        found = jenkins.parse_crumb(delivery.parse_json(crumb)) if crumb.ok else None
        if found is not None:
            headers[found[0]] = found[1]
            cookie = (crumb.headers or {}).get("Set-Cookie", "").split(";", 1)[0]
            if cookie:  # a crumb belongs to the web session it was issued in
                headers["Cookie"] = cookie
        script = jenkins.render_job_script(data, self.base_url)
        return await delivery.send(
            session,
            "POST",
            url,
            timeout=self.cfg.timeout,
            data=jenkins.render_form(script),
            headers=headers,
        )
