//! Lua scripts that move jobs between the queue's keys atomically.
//!
//! Settled entries are not deleted one by one (`XDEL` costs several microseconds per entry,
//! more than the `XADD` that created it); every settling script trims the stream's settled
//! prefix instead, which frees whole internal nodes at a time.
//!
//! Each script touches only keys of one queue, which share a hash tag, so they run on Redis
//! Cluster too. Times come from the server's clock (`TIME`), so workers with skewed clocks
//! still agree on when a retry is due.
//!
//! Stream entry fields: `p` the JSON payload, `a` attempts already made before this entry was
//! added (absent on first enqueue), `e` the error of the last failed attempt (absent on first
//! enqueue). Dead-letter entries add `k` (the kind of failure), `s` (the stream id the job had)
//! and `l` (the error of the attempt before, if any).

use std::sync::LazyLock;

use redis::Script;

/// Lua helpers shared by the scripts (prepended to each of them).
const PRELUDE: &str = r"
local function field(fields, name)
  for f = 1, #fields, 2 do
    if fields[f] == name then return fields[f + 1] end
  end
  return nil
end
local function owned(stream, group, consumer, id)
  local p = redis.call('XPENDING', stream, group, id, id, 1)[1]
  return p ~= nil and p[2] == consumer
end
-- Trims the acknowledged prefix of the stream: every entry older than the oldest pending
-- one (or, with nothing pending, than the last delivered one) has been delivered and
-- settled. '~' removes whole internal nodes only, so it never goes past the threshold.
local function trim_settled(stream, group)
  local threshold = redis.call('XPENDING', stream, group)[2]
  if not threshold then
    for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      if field(info, 'name') == group then threshold = field(info, 'last-delivered-id') end
    end
  end
  if threshold then redis.call('XTRIM', stream, 'MINID', '~', threshold) end
end
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
";

/// Acknowledges deliveries, then trims the settled prefix of the stream.
///
/// KEYS: stream. ARGV: group, then the ids. Returns how many were pending.
pub(crate) static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}{}",
        r"
local acked = 0
-- unpack is limited by the Lua stack, so large batches go in slices.
for i = 2, #ARGV, 1000 do
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
trim_settled(KEYS[1], ARGV[1])
return acked
"
    ))
});

/// Moves deliveries into the delayed set for a later attempt.
///
/// KEYS: stream, delayed, counters. ARGV: group, consumer, then per job `id, attempts made,
/// delay_ms, error, counter`: the error is kept with the job (empty keeps the entry's previous
/// error) and the counter (`retried` or `postponed`) is incremented. Entries this consumer no
/// longer owns (reclaimed by another, or already acknowledged) are left alone. Returns how
/// many were scheduled.
pub(crate) static RETRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}{}",
        r"
local now = server_ms()
local moved = 0
for i = 3, #ARGV, 5 do
  local id = ARGV[i]
  if owned(KEYS[1], ARGV[1], ARGV[2], id) then
    local entry = redis.call('XRANGE', KEYS[1], id, id)[1]
    if entry then
      local error = ARGV[i + 3]
      if error == '' then error = field(entry[2], 'e') or '' end
      local member = cjson.encode({
        s = id, a = ARGV[i + 1], e = error, p = field(entry[2], 'p') or ''
      })
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[i + 2]), member)
      redis.call('HINCRBY', KEYS[3], ARGV[i + 4], 1)
      moved = moved + 1
    end
    redis.call('XACK', KEYS[1], ARGV[1], id)
  end
end
trim_settled(KEYS[1], ARGV[1])
return moved
"
    ))
});

/// Moves deliveries to the dead-letter stream.
///
/// KEYS: stream, dead, counters. ARGV: group, consumer, dead-letter max length (`0` for no
/// trimming), then per job `id, attempts, kind, error`. Entries this consumer does not own are
/// left alone. Returns how many were moved.
pub(crate) static DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}{}",
        r"
local maxlen = tonumber(ARGV[3])
local moved = 0
for i = 4, #ARGV, 4 do
  local id = ARGV[i]
  if owned(KEYS[1], ARGV[1], ARGV[2], id) then
    local entry = redis.call('XRANGE', KEYS[1], id, id)[1]
    if entry then
      local args = {'XADD', KEYS[2]}
      if maxlen > 0 then
        args[#args + 1] = 'MAXLEN'
        args[#args + 1] = '~'
        args[#args + 1] = maxlen
      end
      local rest = {'*', 'p', field(entry[2], 'p') or '', 'a', ARGV[i + 1],
        'k', ARGV[i + 2], 'e', ARGV[i + 3], 's', id}
      for _, v in ipairs(rest) do args[#args + 1] = v end
      local previous = field(entry[2], 'e')
      if previous then
        args[#args + 1] = 'l'
        args[#args + 1] = previous
      end
      redis.call(unpack(args))
      moved = moved + 1
    end
    redis.call('XACK', KEYS[1], ARGV[1], id)
  end
end
trim_settled(KEYS[1], ARGV[1])
if moved > 0 then redis.call('HINCRBY', KEYS[3], 'dead_lettered', moved) end
return moved
"
    ))
});

/// Moves retries that are due from the delayed set back into the stream.
///
/// KEYS: stream, delayed, dead. ARGV: now in Unix milliseconds (empty for the server's
/// clock), most jobs to move. A member that is not valid JSON (written by something other
/// than this crate) goes to the dead-letter stream rather than being dropped. Returns how many
/// members were taken out of the delayed set.
pub(crate) static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}{}",
        r"
local now = tonumber(ARGV[1]) or server_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local ok, job = pcall(cjson.decode, member)
  if ok and type(job) == 'table' and type(job.p) == 'string' then
    redis.call('XADD', KEYS[1], '*', 'p', job.p, 'a', tostring(job.a or '0'),
      'e', tostring(job.e or ''))
  else
    redis.call('XADD', KEYS[3], '*', 'p', member, 'a', '0', 'k', 'malformed',
      'e', 'delayed-set member is not a job written by clarion-queue', 's', '')
  end
  redis.call('ZREM', KEYS[2], member)
end
return #due
"
    ))
});

/// Puts dead letters back into the stream with a fresh set of attempts.
///
/// KEYS: stream, dead. ARGV: dead-letter ids. Returns how many were requeued; ids that are
/// not in the dead-letter stream are skipped.
pub(crate) static REQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}{}",
        r"
local moved = 0
for i = 1, #ARGV do
  local entry = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i])[1]
  if entry then
    redis.call('XADD', KEYS[1], '*', 'p', field(entry[2], 'p') or '')
    redis.call('XDEL', KEYS[2], ARGV[i])
    moved = moved + 1
  end
end
return moved
"
    ))
});
