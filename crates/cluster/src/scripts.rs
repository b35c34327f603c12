//! The Lua scripts that change the cluster's shared state. Each runs atomically in Redis and
//! publishes the change it makes in the same step, so every node hears a room's changes in
//! the order Redis made them. Room change numbers (`rseq`) are at least Redis's clock in
//! microseconds, so they keep growing even after Redis lost its data.
//!
//! Keys (prefix `P`, `--redis-prefix`): `P:nodes` (zset, lease deadlines in ms), `P:node:ID`
//! (hash: `inc`, `conns`), `P:inc:ID` (incarnation counter), `P:nrooms:ID` / `P:nchans:ID`
//! (sets: where the node has members), `P:room:ROOM` (hash: name → `node|key|seq`),
//! `P:rseq:ROOM` (last change number), `P:rooms` (rooms with members),
//! `P:media:ROOM` (the node its media lives on), `P:nmedia:NODE` (rooms whose media a node has), `P:chan:CH` (set of nodes with subscribers),
//! `P:boot` (random, set once: a new value means Redis lost its data), `P:user:ID` (hash:
//! a pairing user's `node`, `key`, `state`, `target`), `P:watch:ID` (users whose target is
//! ID), `P:nusers:NODE` (a node's pairing users).
//! Durable sessions (resumable sessions, docs/scaling.md "Durable sessions"): `P:sess:SID`
//! (hash: `node`, `key`, `tok` (the token's SHA-256, hex), `room`, `name`, `win` (the resume
//! window, ms), `cap` (the inbox's bound), `subj`, `out` (the last frame written), `recv`
//! (the last client frame processed), `in` (the last inbox entry written), `nin` (the last
//! inbox entry), `lost` (the inbox overflowed)), `P:tok:HASH` (the session of a token),
//! `P:out:SID` (stream: every frame written to the client and not yet acknowledged, id
//! `seq-0`), `P:in:SID` (stream: relays and membership changes other nodes published for
//! it, id `n-0`, until its node has written them), `P:parked` (zset: sessions whose node
//! died, by the end of their window), `P:dur:ROOM` (set: the room's durable members, so that
//! keeping a message for them costs what they are, not what the room is). A durable
//! member's room entry is `node|key|seq|SID`.
//! Channels: `P:r:ROOM`, `P:b:CH`, `P:n:ID`, `P:ctl`.

use std::sync::{Mutex, OnceLock, PoisonError};

/// Shared helpers, prepended to every script.
const PRELUDE: &str = r#"
-- A durable session's keys live this long (s) without a write: a session nothing reaps
-- (its node died before it joined a room) does not stay for ever.
local TTL = 86400
local function f(s) s = tostring(s) return #s .. ':' .. s end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function next_rseq(p, room)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local key = p .. ':rseq:' .. room
  local last = tonumber(redis.call('GET', key) or '0')
  local rseq = string.format('%d', math.max(last + 1, now))
  redis.call('SET', key, rseq)
  return rseq
end
local function fenced(p, node, inc)
  return redis.call('HGET', p .. ':node:' .. node, 'inc') ~= inc
end
-- A room entry: node, key, seq and, for a durable member, its session ('' otherwise).
local function entry(v)
  return string.match(v, '^([^|]+)|([^|]+)|([^|]+)|?([^|]*)$')
end
-- Keeps `envelope` in the inbox of every durable member of `room` it is for (all, or `to`;
-- not `except`, not those on node `skip`, which its publisher serves itself) and returns
-- what to publish: the envelope, wrapped with each such member's place in its inbox.
local function held(p, room, envelope, except, skip, to)
  local rk = p .. ':room:' .. room
  local names = to and {to} or redis.call('SMEMBERS', p .. ':dur:' .. room)
  local list, count = {}, 0
  for _, name in ipairs(names) do
    local n, _, _, sid = entry(redis.call('HGET', rk, name) or '')
    if sid and sid ~= '' and name ~= except and n ~= skip then
      local sk = p .. ':sess:' .. sid
      local ik = p .. ':in:' .. sid
      local cap = tonumber(redis.call('HGET', sk, 'cap') or '0') or 0
      if redis.call('EXISTS', sk) == 0 then
      elseif redis.call('XLEN', ik) >= cap then
        redis.call('HSET', sk, 'lost', '1')
      else
        local id = redis.call('HINCRBY', sk, 'nin', 1)
        redis.call('XADD', ik, id .. '-0', 'e', envelope)
        list[#list + 1] = f(name) .. f(id)
        count = count + 1
      end
    end
  end
  if count == 0 then return envelope end
  return 'SB1H' .. f(count) .. table.concat(list) .. envelope
end
local function left(p, room, name)
  local rseq = next_rseq(p, room)
  local envelope = 'SB1L' .. f(room) .. f(rseq) .. f(name)
  redis.call('PUBLISH', p .. ':r:' .. room, held(p, room, envelope, name))
  if redis.call('EXISTS', p .. ':room:' .. room) == 0 then
    -- Nothing is left of an empty room: the next change number is taken from the clock.
    redis.call('DEL', p .. ':rseq:' .. room, p .. ':dur:' .. room)
    redis.call('SREM', p .. ':rooms', room)
    local media = redis.call('GET', p .. ':media:' .. room)
    if media then
      redis.call('DEL', p .. ':media:' .. room)
      redis.call('SREM', p .. ':nmedia:' .. media, room)
    end
  end
end
local function roster(p, room, kind, rseq)
  local all = redis.call('HGETALL', p .. ':room:' .. room)
  local seats = {}
  for i = 1, #all, 2 do
    local n, k, s, sid = entry(all[i + 1])
    seats[#seats + 1] = f(all[i]) .. f(n) .. f(k) .. f(s) .. f(sid ~= '' and '1' or '0')
  end
  local media = redis.call('GET', p .. ':media:' .. room) or ''
  return 'SB1' .. kind .. f(room) .. f(rseq) .. f(media) .. f(#seats) .. table.concat(seats)
end
local function set_target(p, id, state, target)
  local key = p .. ':user:' .. id
  local old = redis.call('HGET', key, 'target')
  if old and old ~= '' and old ~= target then redis.call('SREM', p .. ':watch:' .. old, id) end
  if target ~= '' then redis.call('SADD', p .. ':watch:' .. target, id) end
  redis.call('HSET', key, 'state', state, 'target', target)
end
local function partner_gone(p, to, from)
  local node = redis.call('HGET', p .. ':user:' .. to, 'node')
  if node then
    redis.call('PUBLISH', p .. ':n:' .. node, 'SB1G' .. f(to) .. f(from))
  end
end
-- A pairing user went away: whoever was pairing with it is told and is idle again.
local function unregister(p, id)
  local key = p .. ':user:' .. id
  local user = redis.call('HMGET', key, 'node', 'target')
  if not user[1] then return end
  local target = user[2]
  local watchers = redis.call('SMEMBERS', p .. ':watch:' .. id)
  redis.call('DEL', key, p .. ':watch:' .. id)
  redis.call('SREM', p .. ':nusers:' .. user[1], id)
  if target and target ~= '' then
    redis.call('SREM', p .. ':watch:' .. target, id)
    local watching = false
    for _, w in ipairs(watchers) do if w == target then watching = true end end
    if not watching and redis.call('HGET', p .. ':user:' .. target, 'state') == 'idle' then
      partner_gone(p, target, id)
    end
  end
  for _, w in ipairs(watchers) do
    if redis.call('EXISTS', p .. ':user:' .. w) == 1 then
      set_target(p, w, 'idle', '')
      partner_gone(p, w, id)
    end
  end
end
-- Ends durable session `sid`: its member leaves its room (once), its keys go.
local function end_session(p, sid)
  local sk = p .. ':sess:' .. sid
  local s = redis.call('HMGET', sk, 'room', 'name', 'tok')
  if s[1] and s[1] ~= '' then
    local rk = p .. ':room:' .. s[1]
    local v = redis.call('HGET', rk, s[2])
    if v and select(4, entry(v)) == sid then
      redis.call('HDEL', rk, s[2])
      redis.call('SREM', p .. ':dur:' .. s[1], s[2])
      left(p, s[1], s[2])
    end
  end
  if s[3] then redis.call('DEL', p .. ':tok:' .. s[3]) end
  redis.call('DEL', sk, p .. ':out:' .. sid, p .. ':in:' .. sid)
  redis.call('ZREM', p .. ':parked', sid)
end
local function remove_node(p, node)
  redis.call('ZREM', p .. ':nodes', node)
  redis.call('DEL', p .. ':node:' .. node)
  for _, room in ipairs(redis.call('SMEMBERS', p .. ':nrooms:' .. node)) do
    local rk = p .. ':room:' .. room
    local all = redis.call('HGETALL', rk)
    for i = 1, #all, 2 do
      local n, _, _, sid = entry(all[i + 1])
      local sk = p .. ':sess:' .. (sid or '')
      if n ~= node then
      elseif sid and sid ~= '' and redis.call('EXISTS', sk) == 1 then
        -- A durable member waits, seated, for its session to be taken over elsewhere.
        local win = tonumber(redis.call('HGET', sk, 'win') or '0') or 0
        redis.call('ZADD', p .. ':parked', now_ms() + win, sid)
      else
        redis.call('HDEL', rk, all[i])
        left(p, room, all[i])
      end
    end
  end
  redis.call('DEL', p .. ':nrooms:' .. node)
  -- Rooms whose media lived here move to the node of a member left in them.
  for _, room in ipairs(redis.call('SMEMBERS', p .. ':nmedia:' .. node)) do
    local next_node = nil
    for _, v in ipairs(redis.call('HVALS', p .. ':room:' .. room)) do
      local n = entry(v)
      if n ~= node and redis.call('EXISTS', p .. ':node:' .. n) == 1 then
        next_node = n
        break
      end
    end
    if next_node then
      redis.call('SET', p .. ':media:' .. room, next_node)
      redis.call('SADD', p .. ':nmedia:' .. next_node, room)
      redis.call('PUBLISH', p .. ':r:' .. room, 'SB1K' .. f(room) .. f(next_node))
    else
      redis.call('DEL', p .. ':media:' .. room)
    end
  end
  redis.call('DEL', p .. ':nmedia:' .. node)
  for _, ch in ipairs(redis.call('SMEMBERS', p .. ':nchans:' .. node)) do
    redis.call('SREM', p .. ':chan:' .. ch, node)
    redis.call('PUBLISH', p .. ':b:' .. ch, 'SB1C' .. f(ch) .. f(node) .. f('0'))
  end
  redis.call('DEL', p .. ':nchans:' .. node)
  for _, id in ipairs(redis.call('SMEMBERS', p .. ':nusers:' .. node)) do unregister(p, id) end
  redis.call('DEL', p .. ':nusers:' .. node)
  redis.call('PUBLISH', p .. ':ctl', 'SB1D' .. f(node))
end
"#;

/// ARGV: prefix, node, lease ms, boot id candidate. Returns `{inc, boot}`.
const REGISTER: &str = r#"
local p, node, lease, boot = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local inc = redis.call('INCR', p .. ':inc:' .. node)
redis.call('HSET', p .. ':node:' .. node, 'inc', inc, 'conns', 0)
redis.call('ZADD', p .. ':nodes', now_ms() + lease, node)
redis.call('SET', p .. ':boot', boot, 'NX')
return {inc, redis.call('GET', p .. ':boot')}
"#;

/// ARGV: prefix, node, inc, lease ms, connections. Returns `OK`, or `FENCED` if this
/// incarnation was declared dead (or Redis forgot it).
const HEARTBEAT: &str = r#"
local p, node, inc, lease, conns = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
if fenced(p, node, inc) then return 'FENCED' end
redis.call('ZADD', p .. ':nodes', now_ms() + lease, node)
redis.call('HSET', p .. ':node:' .. node, 'conns', conns)
return {'OK', redis.call('ZCARD', p .. ':nodes'), redis.call('ZCARD', p .. ':parked')}
"#;

/// ARGV: prefix. Removes every node whose lease ran out, and ends every durable session
/// whose node died and whose window ran out untaken; returns how many nodes.
const REAP: &str = r#"
local p = ARGV[1]
local dead = redis.call('ZRANGEBYSCORE', p .. ':nodes', '-inf', now_ms())
for _, node in ipairs(dead) do remove_node(p, node) end
for _, sid in ipairs(redis.call('ZRANGEBYSCORE', p .. ':parked', '-inf', now_ms())) do
  end_session(p, sid)
end
return #dead
"#;

/// ARGV: prefix, node. A draining node removes itself at once.
const DRAIN: &str = r#"
remove_node(ARGV[1], ARGV[2])
return 1
"#;

/// ARGV: prefix, room, name, node, inc, key, cap, session (durable members; else empty).
/// Claims `name` in `room`; on success publishes the roster to the joining node, then the
/// join to the room. Returns `OK`, `TAKEN`, `FULL` (the room has `cap` members; 0 is no
/// cap), `FENCED`, or `MINE` when this very member already holds it (a claim made again).
const JOIN: &str = r#"
local p, room, name, node, inc, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local cap = tonumber(ARGV[7]) or 0
local sid = ARGV[8] or ''
if fenced(p, node, inc) then return 'FENCED' end
local rk = p .. ':room:' .. room
local owner = node .. '|' .. key .. '|'
local current = redis.call('HGET', rk, name)
if current then
  if string.sub(current, 1, #owner) == owner then
    -- Claimed again by its node (declared dead while cut off, now back): a durable
    -- member parked meanwhile is its node's again.
    local held_sid = select(4, entry(current))
    if held_sid and held_sid ~= '' then redis.call('ZREM', p .. ':parked', held_sid) end
    return 'MINE'
  end
  return 'TAKEN'
end
if cap > 0 and redis.call('HLEN', rk) >= cap then return 'FULL' end
local rseq = next_rseq(p, room)
local durable = sid ~= '' and redis.call('EXISTS', p .. ':sess:' .. sid) == 1
if durable then
  redis.call('HSET', rk, name, owner .. rseq .. '|' .. sid)
  redis.call('HSET', p .. ':sess:' .. sid, 'room', room, 'name', name)
  redis.call('SADD', p .. ':dur:' .. room, name)
else
  redis.call('HSET', rk, name, owner .. rseq)
end
redis.call('SADD', p .. ':nrooms:' .. node, room)
redis.call('SADD', p .. ':rooms', room)
if redis.call('SET', p .. ':media:' .. room, node, 'NX') then
  redis.call('SADD', p .. ':nmedia:' .. node, room)
end
redis.call('PUBLISH', p .. ':n:' .. node, roster(p, room, 'R', rseq))
local joined = 'SB1J' .. f(room) .. f(rseq) .. f(name) .. f(node) .. f(key) .. f(rseq)
  .. f(durable and '1' or '0')
redis.call('PUBLISH', p .. ':r:' .. room, held(p, room, joined, name))
return 'OK'
"#;

/// ARGV: prefix, room, name, node, key. Releases `name` if this member holds it (not a
/// durable member parked for a takeover: its drained node lets go of it without a leave).
const LEAVE: &str = r#"
local p, room, name, node, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local rk = p .. ':room:' .. room
local owner = node .. '|' .. key .. '|'
local current = redis.call('HGET', rk, name)
if not current or string.sub(current, 1, #owner) ~= owner then return 0 end
local sid = select(4, entry(current))
if sid and sid ~= '' then
  if redis.call('ZSCORE', p .. ':parked', sid) then return 0 end
  redis.call('HDEL', p .. ':sess:' .. sid, 'room', 'name')
  redis.call('SREM', p .. ':dur:' .. room, name)
end
redis.call('HDEL', rk, name)
left(p, room, name)
local prefix = node .. '|'
for _, v in ipairs(redis.call('HVALS', rk)) do
  if string.sub(v, 1, #prefix) == prefix then return 1 end
end
redis.call('SREM', p .. ':nrooms:' .. node, room)
return 1
"#;

/// ARGV: prefix, channel, node, inc. This node has subscribers of `channel`: returns the
/// nodes that have (this one included), or `FENCED`.
const CHANNEL_ON: &str = r#"
local p, ch, node, inc = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if fenced(p, node, inc) then return 'FENCED' end
redis.call('SADD', p .. ':chan:' .. ch, node)
redis.call('SADD', p .. ':nchans:' .. node, ch)
redis.call('PUBLISH', p .. ':b:' .. ch, 'SB1C' .. f(ch) .. f(node) .. f('1'))
return redis.call('SMEMBERS', p .. ':chan:' .. ch)
"#;

/// ARGV: prefix, channel, node. This node has no subscriber of `channel` any more.
const CHANNEL_OFF: &str = r#"
local p, ch, node = ARGV[1], ARGV[2], ARGV[3]
if redis.call('SREM', p .. ':chan:' .. ch, node) == 1 then
  redis.call('PUBLISH', p .. ':b:' .. ch, 'SB1C' .. f(ch) .. f(node) .. f('0'))
end
redis.call('SREM', p .. ':nchans:' .. node, ch)
return 1
"#;

/// ARGV: prefix, user id, node, inc, key. Registers a pairing user (idle).
const USER_ON: &str = r#"
local p, id, node, inc, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if fenced(p, node, inc) then return 'FENCED' end
if redis.call('EXISTS', p .. ':user:' .. id) == 1 then return 'TAKEN' end
redis.call('HSET', p .. ':user:' .. id, 'node', node, 'key', key, 'state', 'idle', 'target', '')
redis.call('SADD', p .. ':nusers:' .. node, id)
return 'OK'
"#;

/// ARGV: prefix, user id. The user went away.
const USER_OFF: &str = r#"
unregister(ARGV[1], ARGV[2])
return 1
"#;

/// ARGV: prefix, from, to, kind (`ping` `pong` `signal` `disconnect`), envelope, the
/// sender's node and key. Seed 001's state machine over both users' shared state; the
/// envelope is published to `to`'s node when the machine says `to` hears it, and then the
/// verdict (`OK`, `SILENT`: allowed, not delivered, or `E:code[:detail]`) to the sender's
/// node, so that it reaches the sender after anything published to it before.
const PAIR: &str = r#"
local p, from, to, kind, envelope, node, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local function verdict(text)
  redis.call('PUBLISH', p .. ':n:' .. node, 'SB1V' .. f(key) .. f(to) .. f(kind) .. f(text))
  return text
end
local a = redis.call('HMGET', p .. ':user:' .. from, 'node', 'state', 'target')
if not a[1] then return verdict('E:invalid_state:this user is not registered') end
local b = redis.call('HMGET', p .. ':user:' .. to, 'node', 'state', 'target')
if not b[1] then return verdict('E:user_not_found') end
if from == to then return verdict('E:invalid_state:a user cannot pair with itself') end
local state, target, ostate, otarget = a[2], a[3], b[2], b[3]
local deliver = true
if kind == 'ping' then
  if state ~= 'idle' and not (state == 'connecting' and target == to) then
    return verdict('E:invalid_state:only an idle user can ping')
  end
  if ostate ~= 'idle' then return verdict('E:user_busy') end
  set_target(p, from, 'connecting', to)
elseif kind == 'pong' then
  if ostate ~= 'connecting' or otarget ~= from then
    return verdict('E:invalid_state:no pending ping from that user')
  end
  if state ~= 'idle' then return verdict('E:invalid_state:only an idle user can accept a ping') end
  set_target(p, from, 'connected', to)
  set_target(p, to, 'connected', from)
elseif kind == 'signal' then
  if not (state == 'connected' and target == to and ostate == 'connected' and otarget == from) then
    return verdict('E:invalid_state:not connected to that user')
  end
elseif kind == 'disconnect' then
  if target ~= to then return verdict('E:invalid_state:not connecting or connected to that user') end
  set_target(p, from, 'idle', '')
  if otarget == from then set_target(p, to, 'idle', '') end
  deliver = otarget == from or ostate == 'idle'
else
  return verdict('E:invalid_state:not a pairing message')
end
if deliver then
  redis.call('PUBLISH', p .. ':n:' .. b[1], envelope)
  return verdict('OK')
end
return verdict('SILENT')
"#;

/// ARGV: prefix, room, node. Publishes the room's roster to `node` as of now, in its stream
/// (so everything after it there is newer): a node that may have missed changes catches up.
const RESYNC: &str = r#"
local p, room, node = ARGV[1], ARGV[2], ARGV[3]
local rseq = redis.call('GET', p .. ':rseq:' .. room) or '0'
redis.call('PUBLISH', p .. ':n:' .. node, roster(p, room, 'Y', rseq))
return 1
"#;

/// ARGV: prefix, room, node, addressed member (or empty), channel, envelope. A relay with
/// durable receivers on other nodes: kept in their inboxes, then published. A relay to one
/// member goes to the node Redis has it on, which a takeover may have changed before the
/// sender's node heard of it.
const RELAY: &str = r#"
local p, room, node, to, channel, envelope = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if to == '' then
  to = nil
else
  local at = entry(redis.call('HGET', p .. ':room:' .. room, to) or '')
  if at then channel = p .. ':n:' .. at end
end
redis.call('PUBLISH', channel, held(p, room, envelope, nil, node, to))
return 1
"#;

/// ARGV: prefix, session, token hash, node, key, window ms, inbox cap, subject. Opens a
/// durable session.
const SESSION: &str = r#"
local p, sid, tok = ARGV[1], ARGV[2], ARGV[3]
local sk = p .. ':sess:' .. sid
redis.call('HSET', sk, 'node', ARGV[4], 'key', ARGV[5], 'tok', tok, 'win', ARGV[6],
  'cap', ARGV[7], 'subj', ARGV[8], 'out', 0, 'recv', 0, 'in', 0, 'nin', 0)
redis.call('SET', p .. ':tok:' .. tok, sid)
redis.call('EXPIRE', sk, TTL)
redis.call('EXPIRE', p .. ':tok:' .. tok, TTL)
return 1
"#;

/// ARGV: prefix, session, node, key, recv, inbox, ack, new token hash (or empty), then
/// pairs of frame number and frame. What a session's node writes to its client, kept
/// before it is written: `OK`, `MOVED` (another node took the session over) or `GONE`.
const COMMIT: &str = r#"
local p, sid, node, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local recv, inbox, ack, tok = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local sk = p .. ':sess:' .. sid
local s = redis.call('HMGET', sk, 'node', 'key', 'out', 'recv', 'in', 'tok', 'cap')
if not s[1] then return 'GONE' end
if s[1] ~= node or s[2] ~= key then return 'MOVED' end
local ok, ik = p .. ':out:' .. sid, p .. ':in:' .. sid
local out = tonumber(s[3])
for i = 9, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if seq > out then
    redis.call('XADD', ok, seq .. '-0', 'f', ARGV[i + 1])
    out = seq
  end
end
redis.call('HSET', sk, 'out', out, 'recv', math.max(recv, tonumber(s[4])))
if inbox > tonumber(s[5]) then
  redis.call('HSET', sk, 'in', inbox)
  redis.call('XTRIM', ik, 'MINID', (inbox + 1) .. '-0')
end
redis.call('XTRIM', ok, 'MINID', (ack + 1) .. '-0')
-- Bounded like the node's replay buffer: a client that never acknowledges cannot make
-- Redis keep more (a takeover from before what is left fails, as a resume would).
local cap = tonumber(s[7]) or 0
if cap > 0 then redis.call('XTRIM', ok, 'MAXLEN', cap) end
if tok ~= '' and tok ~= s[6] then
  redis.call('DEL', p .. ':tok:' .. s[6])
  redis.call('SET', p .. ':tok:' .. tok, sid)
  redis.call('HSET', sk, 'tok', tok)
end
for _, k in ipairs({sk, ok, ik, p .. ':tok:' .. (tok ~= '' and tok or s[6])}) do
  redis.call('EXPIRE', k, TTL)
end
return 'OK'
"#;

/// ARGV: prefix, session, node, key. The session ended on its node (closed, expired,
/// overflowed): its keys go, unless it was parked for a takeover or another node holds it.
const END: &str = r#"
local p, sid = ARGV[1], ARGV[2]
if redis.call('ZSCORE', p .. ':parked', sid) then return 0 end
local s = redis.call('HMGET', p .. ':sess:' .. sid, 'node', 'key')
if s[1] ~= ARGV[3] or s[2] ~= ARGV[4] then return 0 end
end_session(p, sid)
return 1
"#;

/// ARGV: prefix, token hash. The durable session of a token: `{session, node, room, name,
/// alive}` (`alive`: its node holds a live lease and has not let it go), or an empty array.
const LOOKUP: &str = r#"
local p = ARGV[1]
local sid = redis.call('GET', p .. ':tok:' .. ARGV[2])
if not sid then return {} end
local s = redis.call('HMGET', p .. ':sess:' .. sid, 'node', 'room', 'name')
if not s[1] then return {} end
local lease = tonumber(redis.call('ZSCORE', p .. ':nodes', s[1]) or '0')
local parked = redis.call('ZSCORE', p .. ':parked', sid)
local alive = (lease > now_ms() and not parked) and '1' or '0'
return {sid, s[1], s[2] or '', s[3] or '', alive}
"#;

/// ARGV: prefix, session, token hash, node, inc, key, the client's seq, new token hash,
/// subject. Takes durable session `sid` over for this node's peer `key`: its seat moves
/// here (the roster to this node, `SB1O` to the room: nobody hears a leave or a join), and
/// the reply is what the session's new node needs: `{'OK', room, name, out, recv, frames
/// after seq, inbox entries not yet written}`. Or `UNKNOWN`, `FENCED`, `SUBJECT` (another
/// subject's token), `STALE` (the position is outside what was kept, or the inbox
/// overflowed: the session ends, and its room hears the leave once).
const TAKEOVER: &str = r#"
local p, sid, tok, node, inc, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local seq, new_tok, subj = tonumber(ARGV[7]), ARGV[8], ARGV[9]
if fenced(p, node, inc) then return 'FENCED' end
if redis.call('GET', p .. ':tok:' .. tok) ~= sid then return 'UNKNOWN' end
local sk, ok, ik = p .. ':sess:' .. sid, p .. ':out:' .. sid, p .. ':in:' .. sid
local s = redis.call('HMGET', sk, 'room', 'name', 'out', 'recv', 'in', 'lost', 'subj')
if not s[3] then return 'UNKNOWN' end
if (s[7] or '') ~= subj then return 'SUBJECT' end
local out = tonumber(s[3])
local first = redis.call('XRANGE', ok, '-', '+', 'COUNT', 1)[1]
local oldest = first and tonumber(string.match(first[1], '^(%d+)')) or out + 1
if seq > out or seq + 1 < oldest or s[6] == '1' then
  end_session(p, sid)
  return 'STALE'
end
redis.call('ZREM', p .. ':parked', sid)
redis.call('HSET', sk, 'node', node, 'key', key, 'tok', new_tok)
redis.call('DEL', p .. ':tok:' .. tok)
redis.call('SET', p .. ':tok:' .. new_tok, sid)
local room, name = s[1] or '', s[2] or ''
if room ~= '' then
  local rk = p .. ':room:' .. room
  local v = redis.call('HGET', rk, name)
  local _, _, at, owner = entry(v or '')
  if owner == sid then
    local rseq = next_rseq(p, room)
    redis.call('HSET', rk, name, node .. '|' .. key .. '|' .. at .. '|' .. sid)
    redis.call('SADD', p .. ':nrooms:' .. node, room)
    redis.call('PUBLISH', p .. ':n:' .. node, roster(p, room, 'R', rseq))
    redis.call('PUBLISH', p .. ':r:' .. room,
      'SB1O' .. f(room) .. f(rseq) .. f(name) .. f(node) .. f(key) .. f(at) .. f('1'))
  else
    room, name = '', ''
  end
end
local frames = {}
for _, e in ipairs(redis.call('XRANGE', ok, '(' .. seq .. '-0', '+')) do
  frames[#frames + 1] = string.match(e[1], '^(%d+)')
  frames[#frames + 1] = e[2][2]
end
local inbox = {}
for _, e in ipairs(redis.call('XRANGE', ik, '(' .. s[5] .. '-0', '+')) do
  inbox[#inbox + 1] = string.match(e[1], '^(%d+)')
  inbox[#inbox + 1] = e[2][2]
end
return {'OK', room, name, s[3], s[4], frames, inbox}
"#;

/// ARGV: prefix. The nodes with a live lease, and how many rooms have members.
const LIVE: &str = r#"
local p = ARGV[1]
return {redis.call('ZRANGEBYSCORE', p .. ':nodes', now_ms(), '+inf'), redis.call('SCARD', p .. ':rooms')}
"#;

/// A script, with the prelude, ready for `EVAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Script {
    Register,
    Heartbeat,
    Reap,
    Drain,
    Join,
    Leave,
    ChannelOn,
    ChannelOff,
    UserOn,
    UserOff,
    Pair,
    Live,
    Resync,
    Relay,
    Session,
    Commit,
    End,
    Lookup,
    Takeover,
}

impl Script {
    /// Every script, for loading them all at once.
    pub(crate) const ALL: [Script; 19] = [
        Script::Register,
        Script::Heartbeat,
        Script::Reap,
        Script::Drain,
        Script::Join,
        Script::Leave,
        Script::ChannelOn,
        Script::ChannelOff,
        Script::UserOn,
        Script::UserOff,
        Script::Pair,
        Script::Live,
        Script::Resync,
        Script::Relay,
        Script::Session,
        Script::Commit,
        Script::End,
        Script::Lookup,
        Script::Takeover,
    ];

    pub(crate) fn source(self) -> &'static str {
        static SOURCES: OnceLock<Vec<String>> = OnceLock::new();
        let sources = SOURCES.get_or_init(|| {
            Script::ALL
                .iter()
                .map(|script| format!("{PRELUDE}{}", script.body()))
                .collect()
        });
        &sources[self as usize]
    }

    /// The SHA-1 Redis knows the script by, once `SCRIPT LOAD` has told it.
    pub(crate) fn sha(self) -> Option<String> {
        SHAS.lock().unwrap_or_else(PoisonError::into_inner)[self as usize].clone()
    }

    pub(crate) fn set_sha(self, sha: String) {
        SHAS.lock().unwrap_or_else(PoisonError::into_inner)[self as usize] = Some(sha);
    }

    fn body(self) -> &'static str {
        match self {
            Script::Register => REGISTER,
            Script::Heartbeat => HEARTBEAT,
            Script::Reap => REAP,
            Script::Drain => DRAIN,
            Script::Join => JOIN,
            Script::Leave => LEAVE,
            Script::ChannelOn => CHANNEL_ON,
            Script::ChannelOff => CHANNEL_OFF,
            Script::UserOn => USER_ON,
            Script::UserOff => USER_OFF,
            Script::Pair => PAIR,
            Script::Live => LIVE,
            Script::Resync => RESYNC,
            Script::Relay => RELAY,
            Script::Session => SESSION,
            Script::Commit => COMMIT,
            Script::End => END,
            Script::Lookup => LOOKUP,
            Script::Takeover => TAKEOVER,
        }
    }
}

/// The scripts' SHA-1s as Redis reported them (the same for every node of this build).
static SHAS: Mutex<[Option<String>; Script::ALL.len()]> =
    Mutex::new([const { None }; Script::ALL.len()]);
