"""Own the shared job store: ``RedisJobQueue``, the ``JobQueue`` protocol on Redis (scale-out).

Imported only when ``REVIEWBOT_QUEUE_URL`` is set. Any number of webhook servers and workers on
any number of hosts share one Redis; every guarantee listed in ``reviewbot.jobs`` holds across
them because each state change is one Lua script, which Redis runs atomically:

- ``dedup:<delivery>:<kind>`` points at the delivery's job, so a redelivery finds it (and
  reruns it only when it failed);
- ``pr:<owner/repo#n>:pending`` names the one queued job of a pull request (a newer one
  supersedes it and inherits an explicit request) and ``pr:<…>:running`` is the PR's lock;
- ``pending`` (by due time) and ``running`` (by lease expiry) are sorted sets; every claim first
  requeues the jobs whose lease expired, so a dead worker's job runs again elsewhere;
- finished jobs expire after the retention period: Redis itself forgets them.

The ``worker.Worker`` drives this queue exactly as it drives the SQLite one. docs/queue.md says
why this is not built on arq.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, get_args
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from reviewbot.jobs import (
    MAX_COALESCED_IDS,
    EnqueueResult,
    EnqueueStatus,
    Job,
    JobKind,
    JobRecord,
    JobStatus,
    QueueError,
    Trigger,
    error_text,
    log_lost_lease,
)
from reviewbot.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "reviewbot:"
# GitHub gives a delivery 10 s; a Redis that cannot be reached in this long is reported down
# (webhook 503, /readyz 503) rather than waited for.
CONNECT_TIMEOUT_SECONDS = 1.5
COMMAND_TIMEOUT_SECONDS = 2.0
# Wake-up tokens kept for idle workers; more would only cause empty claims.
_WAKE_TOKENS = 64
# Below this a wait is slept locally rather than spent blocking on Redis.
_MIN_BLOCK_SECONDS = 0.05
_MIN_WAIT_SECONDS = 0.01
_KINDS: tuple[str, ...] = get_args(JobKind)
_TRIGGERS: tuple[str, ...] = get_args(Trigger)

_T = TypeVar("_T")

# Every script gets ARGV[1] = key prefix, ARGV[2] = now (epoch seconds), ARGV[3] = retention
# (ms), ARGV[4] = how many coalesced delivery ids to keep; its own arguments follow. Keys are
# built from the prefix inside the scripts, so one Redis (or a Sentinel-managed primary) is
# required: a Redis Cluster would spread them over slots.
_PRELUDE = """
local P, NOW, TTL, MAXC = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local function jkey(id) return P .. 'job:' .. id end

local function forced(trigger) return trigger == 'requested' or trigger == 'command' end

local function finish(id, status)
  local j = jkey(id)
  redis.call('HSET', j, 'status', status, 'lease_owner', '', 'lease_expires', '',
             'updated_at', NOW)
  redis.call('PEXPIRE', j, TTL)
  redis.call('PEXPIRE', j .. ':coalesced', TTL)
  redis.call('PEXPIRE', P .. 'dedup:' .. redis.call('HGET', j, 'dedup_key'), TTL)
end

local function unlock(id)
  local ck = redis.call('HGET', jkey(id), 'coalesce_key')
  if ck and ck ~= '' and redis.call('GET', P .. 'pr:' .. ck .. ':running') == id then
    redis.call('DEL', P .. 'pr:' .. ck .. ':running')
  end
end

local function wake()
  redis.call('LPUSH', P .. 'wake', '1')
  redis.call('LTRIM', P .. 'wake', 0, WAKE_TOKENS - 1)
end

-- Job id has just become pending: keep only the newest pending job of its PR. The survivor
-- inherits an explicit request's trigger and remembers the deliveries folded into it.
local function coalesce(id)
  local ck = redis.call('HGET', jkey(id), 'coalesce_key')
  if not ck or ck == '' then return {} end
  local pkey = P .. 'pr:' .. ck .. ':pending'
  local current = redis.call('GET', pkey)
  if (not current) or current == id
      or redis.call('HGET', jkey(current), 'status') ~= 'pending' then
    redis.call('SET', pkey, id)
    return {}
  end
  local keep, old = current, id
  if tonumber(id) > tonumber(current) then keep, old = id, current end
  local kept_trigger = redis.call('HGET', jkey(keep), 'trigger')
  local old_trigger = redis.call('HGET', jkey(old), 'trigger')
  if forced(old_trigger) and not forced(kept_trigger) then
    redis.call('HSET', jkey(keep), 'trigger', old_trigger)
  end
  local folded = jkey(keep) .. ':coalesced'
  for _, delivery in ipairs(redis.call('LRANGE', jkey(old) .. ':coalesced', 0, -1)) do
    redis.call('RPUSH', folded, delivery)
  end
  local old_delivery = redis.call('HGET', jkey(old), 'delivery_id')
  redis.call('RPUSH', folded, old_delivery)
  redis.call('LTRIM', folded, -MAXC, -1)
  redis.call('ZREM', P .. 'pending', old)
  redis.call('HSET', jkey(old), 'superseded_by', keep)
  finish(old, 'superseded')
  redis.call('SET', pkey, keep)
  return {old_delivery}
end

local function held(id, owner)
  local state = redis.call('HMGET', jkey(id), 'status', 'lease_owner')
  return state[1] == 'running' and state[2] == owner
end
""".replace("WAKE_TOKENS", str(_WAKE_TOKENS))

# ARGV[5..]: dedup key, delivery id, coalesce key ('' for none), payload, trigger.
_ENQUEUE = """
local dedup, delivery, ck, payload, trigger = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local dkey = P .. 'dedup:' .. dedup
local id = redis.call('GET', dkey)
if id and redis.call('EXISTS', jkey(id)) == 1 then
  if redis.call('HGET', jkey(id), 'status') ~= 'failed' then return {'duplicate', id} end
  -- A redelivery of a delivery that gave up: the maintainer is retrying it, with a new budget.
  redis.call('DEL', jkey(id) .. ':coalesced')
  redis.call('PERSIST', jkey(id))
  redis.call('PERSIST', dkey)
else
  id = tostring(redis.call('INCR', P .. 'seq'))
  redis.call('SET', dkey, id)
  redis.call('HSET', jkey(id), 'dedup_key', dedup, 'delivery_id', delivery, 'created_at', NOW)
end
redis.call('HSET', jkey(id), 'payload', payload, 'coalesce_key', ck, 'trigger', trigger,
           'status', 'pending', 'attempts', 0, 'available_at', NOW, 'lease_owner', '',
           'lease_expires', '', 'last_error', '', 'superseded_by', '', 'updated_at', NOW)
redis.call('ZADD', P .. 'pending', NOW, id)
local superseded = coalesce(id)
wake()
if #superseded > 0 then return {'coalesced', id, unpack(superseded)} end
return {'new', id}
"""

# ARGV[5..]: worker id, lease expiry.
_CLAIM = """
local worker, expires = ARGV[5], ARGV[6]
-- First requeue the jobs whose lease expired: their worker died or stalled past its lease.
local recovered = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'running', '-inf', NOW)) do
  redis.call('ZREM', P .. 'running', id)
  local state = redis.call('HMGET', jkey(id), 'status', 'lease_owner')
  if state[1] == 'running' then
    unlock(id)
    redis.call('HSET', jkey(id), 'status', 'pending', 'lease_owner', '', 'lease_expires', '',
               'available_at', NOW, 'updated_at', NOW)
    redis.call('ZADD', P .. 'pending', NOW, id)
    coalesce(id)
    table.insert(recovered, id)
    table.insert(recovered, state[2] or '')
  end
end
-- The oldest due job whose PR has no running job: jobs of one PR never run side by side.
local chosen, offset = nil, 0
while not chosen do
  local batch = redis.call('ZRANGEBYSCORE', P .. 'pending', '-inf', NOW, 'LIMIT', offset, 100)
  if #batch == 0 then break end
  for _, id in ipairs(batch) do
    local ck = redis.call('HGET', jkey(id), 'coalesce_key')
    if not ck then
      redis.call('ZREM', P .. 'pending', id)  -- its record is gone (evicted): nothing to run
    elseif ck == '' or redis.call('EXISTS', P .. 'pr:' .. ck .. ':running') == 0 then
      chosen = id
      break
    end
  end
  offset = offset + #batch
end
if not chosen then return {'', recovered} end
local j = jkey(chosen)
local attempt = redis.call('HINCRBY', j, 'attempts', 1)
redis.call('HSET', j, 'status', 'running', 'lease_owner', worker, 'lease_expires', expires,
           'updated_at', NOW)
redis.call('ZREM', P .. 'pending', chosen)
redis.call('ZADD', P .. 'running', expires, chosen)
local ck = redis.call('HGET', j, 'coalesce_key')
if ck ~= '' then
  redis.call('SET', P .. 'pr:' .. ck .. ':running', chosen)
  if redis.call('GET', P .. 'pr:' .. ck .. ':pending') == chosen then
    redis.call('DEL', P .. 'pr:' .. ck .. ':pending')
  end
end
local fields = redis.call('HMGET', j, 'payload', 'trigger')
local folded = redis.call('LRANGE', j .. ':coalesced', 0, -1)
return {chosen, recovered, attempt, fields[1], fields[2], folded}
"""

# ARGV[5..]: job id, lease owner, new lease expiry.
_HEARTBEAT = """
local id, owner, expires = ARGV[5], ARGV[6], ARGV[7]
if not held(id, owner) then return 0 end
redis.call('HSET', jkey(id), 'lease_expires', expires, 'updated_at', NOW)
redis.call('ZADD', P .. 'running', expires, id)
return 1
"""

# ARGV[5..]: job id, lease owner.
_COMPLETE = """
local id, owner = ARGV[5], ARGV[6]
if not held(id, owner) then return 0 end
redis.call('ZREM', P .. 'running', id)
unlock(id)
redis.call('HSET', jkey(id), 'last_error', '')
finish(id, 'done')
wake()  -- a newer job of the same PR may have been waiting for this one
return 1
"""

# ARGV[5..]: job id, lease owner, error text, retry time ('' to fail for good).
_FAIL = """
local id, owner, message, retry_at = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if not held(id, owner) then return 0 end
redis.call('ZREM', P .. 'running', id)
unlock(id)
redis.call('HSET', jkey(id), 'last_error', message)
if retry_at == '' then
  finish(id, 'failed')
else
  redis.call('HSET', jkey(id), 'status', 'pending', 'lease_owner', '', 'lease_expires', '',
             'available_at', retry_at, 'updated_at', NOW)
  redis.call('ZADD', P .. 'pending', retry_at, id)
  coalesce(id)  -- a newer job for the PR arrived meanwhile: it replaces this retry
end
wake()
return 1
"""

# ARGV[5..]: job id, lease owner.
_RELEASE = """
local id, owner = ARGV[5], ARGV[6]
if not held(id, owner) then return 0 end
redis.call('ZREM', P .. 'running', id)
unlock(id)
local attempts = tonumber(redis.call('HGET', jkey(id), 'attempts'))
redis.call('HSET', jkey(id), 'status', 'pending', 'attempts', math.max(attempts - 1, 0),
           'lease_owner', '', 'lease_expires', '', 'available_at', NOW, 'updated_at', NOW)
redis.call('ZADD', P .. 'pending', NOW, id)
coalesce(id)
wake()
return 1
"""

# The earliest time a claim could succeed: a due job of an idle PR, or an expiring lease.
_NEXT_DUE = """
local due, offset = '', 0
while due == '' do
  local batch = redis.call('ZRANGE', P .. 'pending', offset, offset + 99, 'WITHSCORES')
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local ck = redis.call('HGET', jkey(batch[i]), 'coalesce_key')
    if ck == '' or (ck and redis.call('EXISTS', P .. 'pr:' .. ck .. ':running') == 0) then
      due = batch[i + 1]
      break
    end
  end
  offset = offset + 100
end
local lease = redis.call('ZRANGE', P .. 'running', 0, 0, 'WITHSCORES')
return {due, lease[2] or ''}
"""


def display_url(url: str) -> str:
    """The queue URL without credentials, for logs and error messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisJobQueue:
    """The ``JobQueue`` on Redis: the same guarantees as ``SqliteJobQueue``, across hosts.

    Lease and due times come from this process's clock (hosts are assumed NTP-synchronised; a
    skew shortens or lengthens a lease by that much). Nothing touches the network before the
    first operation, so a server starts while Redis is down and answers 503 until it is back.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        lease_seconds: float = 60.0,
        retention_seconds: float = 14 * 86400,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        command_timeout: float = COMMAND_TIMEOUT_SECONDS,
        client_name: str = "reviewbot",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lease_seconds <= 0 or retention_seconds <= 0:
            raise ValueError("lease and retention must be positive")
        if connect_timeout <= 0 or command_timeout <= 0:
            raise ValueError("Redis timeouts must be positive")
        if not prefix:
            raise ValueError("the key prefix must not be empty")
        self.url = url
        self.prefix = prefix
        self._lease = lease_seconds
        self._retention_ms = int(retention_seconds * 1000)
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._client_name = client_name
        self._clock = clock
        self._client: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._closed = False
        self._checked_server = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisJobQueue:
        if settings.queue_url is None:
            raise ValueError("REVIEWBOT_QUEUE_URL is not set")
        return cls(
            settings.queue_url,
            prefix=DEFAULT_PREFIX,  # read at call time: tests point a process at their own keys
            lease_seconds=settings.job_lease_seconds,
            retention_seconds=settings.job_retention_days * 86400,
        )

    @property
    def lease_seconds(self) -> float:
        return self._lease

    # -- plumbing ---------------------------------------------------------------------------

    def _redis(self) -> Redis:
        if self._closed:
            raise QueueError("the job queue is closed")
        if self._client is None:
            self._client = Redis.from_url(
                self.url,
                socket_connect_timeout=self._connect_timeout,
                socket_timeout=self._command_timeout,
                # One immediate retry on a dropped connection (Redis restarted, idle connection
                # cut): every script is safe to run twice. Timeouts are not retried: a webhook
                # must hear 503 quickly.
                retry=Retry(NoBackoff(), 1),
                retry_on_error=[RedisConnectionError],
                decode_responses=True,
                client_name=self._client_name,  # operators see who is who in CLIENT LIST
            )
            body = {
                "enqueue": _ENQUEUE,
                "claim": _CLAIM,
                "heartbeat": _HEARTBEAT,
                "complete": _COMPLETE,
                "fail": _FAIL,
                "release": _RELEASE,
                "next_due": _NEXT_DUE,
            }
            self._scripts = {
                name: self._client.register_script(_PRELUDE + text) for name, text in body.items()
            }
        return self._client

    async def _call(self, operation: Awaitable[_T]) -> _T:
        try:
            return await operation
        except (RedisError, OSError, TimeoutError) as error:
            raise QueueError(f"job store {display_url(self.url)}: {error}") from error

    async def _script(self, name: str, *args: str | int | float) -> Any:
        self._redis()
        common = (self.prefix, repr(self._clock()), self._retention_ms, MAX_COALESCED_IDS)
        return await self._call(self._scripts[name](args=[*common, *args]))

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        # No network here: a server must start (and say "not ready") while Redis is down.
        self._redis()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def ping(self) -> None:
        client = self._redis()
        await self._call(client.ping())
        if not self._checked_server:
            self._checked_server = True
            await self._warn_about_server(client)

    async def _warn_about_server(self, client: Redis) -> None:
        """Say so once when the server's settings can lose acknowledged deliveries."""
        try:
            persistence = await client.info("persistence")
            memory = await client.info("memory")
        except RedisError as error:  # INFO may be renamed or denied on managed services
            logger.info("cannot read the Redis server's settings: %s", error)
            return
        if not persistence.get("aof_enabled"):
            logger.warning(
                "Redis at %s has no append-only file: a restart loses queued deliveries "
                "(run it with --appendonly yes)",
                display_url(self.url),
            )
        policy = str(memory.get("maxmemory_policy", "noeviction"))
        if policy != "noeviction":
            logger.warning(
                "Redis at %s evicts keys (maxmemory-policy %s): queued jobs may vanish; "
                "use noeviction",
                display_url(self.url),
                policy,
            )

    # -- producing --------------------------------------------------------------------------

    async def enqueue(self, job: Job) -> EnqueueResult:
        payload = job.to_json()  # fails here, in the caller, if extra is not JSON-able
        reply = await self._script(
            "enqueue",
            job.dedup_key,
            job.delivery_id,
            job.coalesce_key or "",
            payload,
            job.trigger,
        )
        status, job_id, *superseded = reply
        return EnqueueResult(EnqueueStatus(status), int(job_id), tuple(superseded))

    # -- consuming --------------------------------------------------------------------------

    async def claim(self, worker_id: str) -> Job | None:
        expires = self._clock() + self._lease
        reply = await self._script("claim", worker_id, repr(expires))
        chosen, recovered = reply[0], reply[1]
        for job_id, owner in zip(recovered[::2], recovered[1::2], strict=True):
            logger.warning("job %s: lease of worker %s expired; job requeued", job_id, owner)
        if not chosen:
            return None
        attempt, payload, trigger, coalesced = reply[2:6]
        return _job(
            payload, trigger, coalesced, id=int(chosen), attempt=int(attempt), claimed_by=worker_id
        )

    async def heartbeat(self, job: Job) -> bool:
        expires = self._clock() + self._lease
        renewed = await self._script("heartbeat", _id(job), _owner(job), repr(expires))
        return bool(renewed)

    async def complete(self, job: Job) -> None:
        if not await self._script("complete", _id(job), _owner(job)):
            log_lost_lease(job, "done")

    async def fail(self, job: Job, error: BaseException, retry_at: float | None) -> None:
        when = "" if retry_at is None else repr(retry_at)
        if not await self._script("fail", _id(job), _owner(job), error_text(error), when):
            log_lost_lease(job, "failed" if retry_at is None else "retried")

    async def release(self, job: Job) -> None:
        await self._script("release", _id(job), _owner(job))

    # -- inspection -------------------------------------------------------------------------

    async def depth(self) -> int:
        return int(await self._call(self._redis().zcard(self.prefix + "pending")))

    async def records(self, delivery_id: str) -> list[JobRecord]:
        client = self._redis()
        keys = [f"{self.prefix}dedup:{delivery_id}:{kind}" for kind in _KINDS]
        ids = sorted({int(found) for found in await self._call(client.mget(keys)) if found})
        async with client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(f"{self.prefix}job:{job_id}")
                pipe.lrange(f"{self.prefix}job:{job_id}:coalesced", 0, -1)
            replies = await self._call(pipe.execute())
        records = []
        for job_id, fields, coalesced in zip(ids, replies[::2], replies[1::2], strict=True):
            if not fields:
                continue  # expired between the two reads
            records.append(
                JobRecord(
                    job=_job(fields["payload"], fields["trigger"], coalesced, id=job_id),
                    status=JobStatus(fields["status"]),
                    attempts=int(fields["attempts"]),
                    last_error=fields["last_error"] or None,
                    superseded_by=int(fields["superseded_by"]) if fields["superseded_by"] else None,
                )
            )
        return records

    async def is_done(self, delivery_id: str) -> bool:
        records = await self.records(delivery_id)
        finished = {JobStatus.DONE, JobStatus.SUPERSEDED}
        return bool(records) and all(record.status in finished for record in records)

    async def wait_for_job(self, timeout: float) -> None:
        # Every enqueue, completion and release pushes a wake-up token, so an idle worker in
        # any process starts at once; a retry or an expiring lease is waited for until its time.
        due_job, due_lease = await self._script("next_due")
        now = self._clock()
        for due in (due_job, due_lease):
            if due:
                timeout = min(timeout, max(float(due) - now, _MIN_WAIT_SECONDS))
        # Blocking must end well inside the socket timeout, or it would read as Redis hanging.
        block = min(timeout, self._command_timeout / 2)
        if block < _MIN_BLOCK_SECONDS:
            await asyncio.sleep(block)
            return
        # BLPOP takes fractions of a second (Redis >= 6); redis-py's typing says int.
        waiting = self._redis().blpop([self.prefix + "wake"], timeout=cast(int, block))
        await self._call(cast(Awaitable[Any], waiting))

    async def prune(self) -> int:
        # Finished jobs carry a time-to-live of the retention period: Redis forgets them.
        return 0


def _id(job: Job) -> str:
    if job.id is None:
        raise ValueError("the job was not claimed from a queue")
    return str(job.id)


def _owner(job: Job) -> str:
    return job.claimed_by or ""


def _job(payload: str, trigger: str, coalesced: list[str], **claim: Any) -> Job:
    """Rebuild a job as coalescing left it: the inherited trigger, the folded deliveries."""
    job = Job.from_json(payload, **claim)
    extra = dict(job.extra)
    if coalesced:
        extra["coalesced_deliveries"] = list(coalesced)
    merged = cast(Trigger, trigger) if trigger in _TRIGGERS else job.trigger
    return dataclasses.replace(job, trigger=merged, extra=extra)
