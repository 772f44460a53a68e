//! The Lua scripts that make rooms exact: each runs atomically in Redis, so every
//! join, leave and message of a room happens in one order, and its event
//! (`member_joined` / `member_left` / the numbered message) is published in that same
//! order to every node with members.
//!
//! Keys (see `wire`): `ringcast:room:<room>` is a hash of members per node plus `*`,
//! the total; `ringcast:members:<node>` a set of `<client_id> <room>`, what the reaper
//! removes when the node dies; `ringcast:seq:<room>` the room's `epoch` and latest
//! `offset`, and `ringcast:history:<room>` a stream of its last `history_size`
//! messages under ids `<offset>-0`, both expiring `history_ttl_s` after the room's
//! last message or join (then the room starts a new epoch). Join and leave are
//! idempotent (the set says whether the membership exists), so a node may resend one
//! whose reply it lost with its connection: a repeat returns `-1 - total` (join) or
//! `-1` (leave) and publishes nothing.
//!
//! The scripts name keys they build (not all in KEYS): this is for a single Redis
//! (or a primary with replicas), not Redis Cluster.

/// KEYS: room hash, node's members set, room's sequence, room's history stream.
/// ARGV: node, client id, room, token, id JSON, epoch candidate, history TTL (ms),
/// recover (`1` or `0`), recover epoch, recover offset.
/// Publishes `J <total> <client> <epoch> <offset> <recovered: - 0 1> <token> <id>`.
/// Returns `{total, epoch, offset, recovered, open JSON of each missed message...}`;
/// a repeat returns `{-1 - total, epoch, offset, '-'}` and publishes nothing.
pub const JOIN: &str = r#"
local function sequence(seq, stream, candidate, ttl)
  if redis.call('HSETNX', seq, 'epoch', candidate) == 1 then
    redis.call('DEL', stream)
  end
  redis.call('PEXPIRE', seq, ttl)
  local position = redis.call('HMGET', seq, 'epoch', 'offset')
  return position[1], tonumber(position[2]) or 0
end
local epoch, offset = sequence(KEYS[3], KEYS[4], ARGV[6], ARGV[7])
if redis.call('SADD', KEYS[2], ARGV[2] .. ' ' .. ARGV[3]) == 0 then
  return {-1 - (tonumber(redis.call('HGET', KEYS[1], '*')) or 0), epoch, offset, '-'}
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local total = redis.call('HINCRBY', KEYS[1], '*', 1)
local recovered = '-'
local reply = {total, epoch, offset}
if ARGV[8] == '1' then
  local from = tonumber(ARGV[10])
  recovered = '0'
  if ARGV[9] == epoch and from ~= nil and from <= offset then
    if from == offset then
      recovered = '1'
    else
      local first = string.format('%d-0', from + 1)
      local entries = redis.call('XRANGE', KEYS[4], first, '+')
      if #entries == offset - from and entries[1][1] == first then
        recovered = '1'
        for _, entry in ipairs(entries) do
          table.insert(reply, entry[2][2])
        end
      end
    end
  end
end
table.insert(reply, 4, recovered)
redis.call('PUBLISH', KEYS[1], 'J ' .. total .. ' ' .. ARGV[2] .. ' ' .. epoch .. ' ' .. offset .. ' ' .. recovered .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
return reply
"#;

/// KEYS: room's sequence, room's history stream, room channel. ARGV: epoch
/// candidate, history TTL (ms), history size, sender's client id, open JSON, and `1`
/// to refresh the keys' TTL (a node asks at most every quarter TTL per room: three
/// Redis operations per message, not five).
/// Numbers the message, keeps it (at most `history size`), publishes
/// `M <offset> <sender>\n<open JSON>`, returns the offset.
pub const ROOM_MESSAGE: &str = r#"
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local refresh = ARGV[6] == '1'
if offset == 1 then
  -- a new sequence (or one a join made): a new epoch unless the join gave one
  if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
    redis.call('DEL', KEYS[2])
  end
  refresh = true
end
if refresh then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], string.format('%d-0', offset), 'm', ARGV[5])
  if refresh or offset <= 1 then
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  end
end
redis.call('PUBLISH', KEYS[3], 'M ' .. offset .. ' ' .. ARGV[4] .. '\n' .. ARGV[5])
return offset
"#;

/// KEYS: room hash, node's members set. ARGV: node, client id, room.
pub const LEAVE: &str = r#"
if redis.call('SREM', KEYS[2], ARGV[2] .. ' ' .. ARGV[3]) == 0 then
  return -1
end
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local total = redis.call('HINCRBY', KEYS[1], '*', -1)
if total <= 0 then
  redis.call('DEL', KEYS[1])
end
redis.call('PUBLISH', KEYS[1], 'L ' .. total .. ' ' .. ARGV[2])
return total
"#;

/// Removes the members of dead nodes (registered in `ringcast:nodes`, heartbeat key
/// expired), at most ARGV[1] memberships per call, each as a leave with its event.
/// Returns how many it removed (the caller runs it again soon when that is ARGV[1]).
pub const REAP: &str = r#"
local budget = tonumber(ARGV[1])
local done = 0
for _, node in ipairs(redis.call('SMEMBERS', 'ringcast:nodes')) do
  if redis.call('EXISTS', 'ringcast:alive:' .. node) == 0 then
    local members = 'ringcast:members:' .. node
    for _, entry in ipairs(redis.call('SPOP', members, budget - done)) do
      local space = string.find(entry, ' ', 1, true)
      local client = string.sub(entry, 1, space - 1)
      local room = 'ringcast:room:' .. string.sub(entry, space + 1)
      if redis.call('HINCRBY', room, node, -1) <= 0 then
        redis.call('HDEL', room, node)
      end
      local total = redis.call('HINCRBY', room, '*', -1)
      if total <= 0 then
        redis.call('DEL', room)
      end
      redis.call('PUBLISH', room, 'L ' .. total .. ' ' .. client)
      done = done + 1
    end
    if redis.call('SCARD', members) == 0 then
      redis.call('SREM', 'ringcast:nodes', node)
    end
    if done >= budget then
      return done
    end
  end
end
return done
"#;
