//! The Lua scripts that make membership exact: each runs atomically in Redis, so every
//! join and leave of a room is counted in one order, and its `member_joined` /
//! `member_left` event is published in that same order to every node with members.
//!
//! Keys (see `wire`): `ringcast:room:<room>` is a hash of members per node plus `*`,
//! the total; `ringcast:members:<node>` a set of `<client_id> <room>`, what the reaper
//! removes when the node dies. Join and leave are idempotent (the set says whether the
//! membership exists), so a node may resend one whose reply it lost with its
//! connection: a repeat returns `-1 - total` (join) or `-1` (leave) and publishes
//! nothing.
//!
//! The scripts name keys they build (not all in KEYS): this is for a single Redis
//! (or a primary with replicas), not Redis Cluster.

/// KEYS: room hash, node's members set. ARGV: node, client id, room, token, id JSON.
pub const JOIN: &str = r#"
if redis.call('SADD', KEYS[2], ARGV[2] .. ' ' .. ARGV[3]) == 0 then
  return -1 - (tonumber(redis.call('HGET', KEYS[1], '*')) or 0)
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local total = redis.call('HINCRBY', KEYS[1], '*', 1)
redis.call('PUBLISH', KEYS[1], 'J ' .. total .. ' ' .. ARGV[2] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
return total
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
