package redis

import goredis "github.com/redis/go-redis/v9"

// Every script takes the key prefix "{P}:" as ARGV[1] and builds key names
// from it; KEYS[1] is "{P}:clock", so that on a Cluster the script runs on
// the node that holds the prefix's hash tag, which holds every key.
//
// Encodings (all strings; Lua strings and Redis values are byte-safe):
//   version: point "\0" unix-ms "\0" txn "\0" value          (list {P}:v:name, newest first)
//   intent:  txn "\0" coord "\0" flags "\0" value            (field "intent" of hash {P}:r:name; flags: W write, S staged, E ensure)
//   ref:     hash {P}:r:name: kind, min, max, keep, trimmed, ensured, newest, intent, meta, metaver
//   record:  hash {P}:t:id: status, rp, prio, cp, lease, created (unix ms), refs (opaque, msgpack from Go)

const luaLib = `
local P = ARGV[1]
local function rkey(n) return P .. "r:" .. n end
local function vkey(n) return P .. "v:" .. n end
local function tkey(id) return P .. "t:" .. id end
local function vpoint(v)
  local i = string.find(v, "\0", 1, true)
  return tonumber(string.sub(v, 1, i - 1))
end
local function intentTxn(s)
  local i = string.find(s, "\0", 1, true)
  return string.sub(s, 1, i - 1)
end
local function intentParts(s)
  local a = string.find(s, "\0", 1, true)
  local b = string.find(s, "\0", a + 1, true)
  local c = string.find(s, "\0", b + 1, true)
  return string.sub(s, 1, a - 1), string.sub(s, a + 1, b - 1), string.sub(s, b + 1, c - 1), string.sub(s, c + 1)
end
-- conflicts(mode, rp, newest, ensured): the Go side's backend.Mode.Conflicts
-- modes: 0 write, 1 ensure, 2 commute, 3 ensure+commute
local function conflicts(mode, rp, newest, ensured)
  if mode ~= 2 and newest > rp then return newest end
  if mode == 0 and ensured > rp then return ensured end
  return nil
end
-- append adds a version, trims and publishes it. keep and trimmed may be
-- passed when the caller has read them. keep only grows, so after the push
-- the list holds at most keep + 2 entries: one RPOP trims it, returning the
-- newest entry dropped.
local function append(name, point, ms, txn, value, keep, trimmed)
  local r = rkey(name)
  if not keep then
    local h = redis.call("HMGET", r, "keep", "trimmed")
    keep, trimmed = tonumber(h[1]), tonumber(h[2])
  end
  local entry = point .. "\0" .. ms .. "\0" .. txn .. "\0" .. value
  local v = vkey(name)
  if redis.call("LPUSH", v, entry) > keep + 1 then
    local dropped = vpoint(redis.call("RPOP", v))
    if dropped > trimmed then trimmed = dropped end
  end
  redis.call("HSET", r, "trimmed", trimmed, "newest", point)
  redis.call("PUBLISH", P .. "c:" .. name, entry)
end
`

// create: ARGV = P, name, kind, value, min, max, ms. Returns "" if created,
// else the existing kind.
var scriptCreate = goredis.NewScript(luaLib + `
local name = ARGV[2]
local r = rkey(name)
local kind = redis.call("HGET", r, "kind")
if kind then return kind end
redis.call("HSET", r, "kind", ARGV[3], "min", ARGV[5], "max", ARGV[6], "keep", ARGV[5], "trimmed", 0, "ensured", 0, "newest", 0, "metaver", 0)
redis.call("RPUSH", vkey(name), "0\0" .. ARGV[7] .. "\0\0" .. ARGV[4])
redis.call("ZADD", P .. "refs", 0, name)
return ""
`)

// grow: ARGV = P, name. A read fault: keep grows by one up to max.
var scriptGrow = goredis.NewScript(luaLib + `
local r = rkey(ARGV[2])
local keep = tonumber(redis.call("HGET", r, "keep"))
if keep and keep < tonumber(redis.call("HGET", r, "max")) then redis.call("HINCRBY", r, "keep", 1) end
return 1
`)

// lock: ARGV = P, txn, coord, rp, then triples name, mode, value. Returns
// {0, conflicts...} where each conflict is {name, reason, point, intent}, or
// {1, newest versions...} with every intent taken.
var scriptLock = goredis.NewScript(luaLib + `
local txn, coord, rp = ARGV[2], ARGV[3], tonumber(ARGV[4])
local bad = {}
for i = 5, #ARGV, 3 do
  local name, mode = ARGV[i], tonumber(ARGV[i + 1])
  local r = rkey(name)
  local h = redis.call("HMGET", r, "kind", "intent", "ensured", "newest")
  if not h[1] then
    table.insert(bad, {name, 3, 0, ""})
  elseif h[2] and intentTxn(h[2]) ~= txn then
    table.insert(bad, {name, 1, 0, h[2]})
  else
    local p = conflicts(mode, rp, tonumber(h[4]), tonumber(h[3]))
    if p then table.insert(bad, {name, 0, p, ""}) end
  end
end
if #bad > 0 then return {0, bad} end
local newest = {}
for i = 5, #ARGV, 3 do
  local name, mode, value = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local r = rkey(name)
  if not redis.call("HGET", r, "intent") then
    local flags = ""
    if mode ~= 1 then flags = flags .. "W" end
    if mode == 0 then flags = flags .. "S" end
    if mode == 1 or mode == 3 then flags = flags .. "E" end
    if mode ~= 0 then value = "" end
    redis.call("HSET", r, "intent", txn .. "\0" .. coord .. "\0" .. flags .. "\0" .. value)
  end
  table.insert(newest, redis.call("LINDEX", vkey(name), 0))
end
return {1, newest}
`)

// stage: ARGV = P, txn, then pairs name, value. Returns 1, or 0 (nothing
// staged) if any intent is not txn's write intent.
var scriptStage = goredis.NewScript(luaLib + `
local txn = ARGV[2]
for i = 3, #ARGV, 2 do
  local s = redis.call("HGET", rkey(ARGV[i]), "intent")
  if not s then return 0 end
  local t, c, f, v = intentParts(s)
  if t ~= txn or not string.find(f, "W", 1, true) then return 0 end
end
for i = 3, #ARGV, 2 do
  local r = rkey(ARGV[i])
  local t, c, f, v = intentParts(redis.call("HGET", r, "intent"))
  if not string.find(f, "S", 1, true) then f = f .. "S" end
  redis.call("HSET", r, "intent", t .. "\0" .. c .. "\0" .. f .. "\0" .. ARGV[i + 1])
end
return 1
`)

// resolve: ARGV = P, txn, commit (1/0), cp, ms, names...
var scriptResolve = goredis.NewScript(luaLib + `
local txn, commit, cp, ms = ARGV[2], ARGV[3] == "1", tonumber(ARGV[4]), ARGV[5]
for i = 6, #ARGV do
  local name = ARGV[i]
  local r = rkey(name)
  local s = redis.call("HGET", r, "intent")
  if s then
    local t, c, f, v = intentParts(s)
    if t == txn then
      redis.call("HDEL", r, "intent")
      if commit then
        if string.find(f, "E", 1, true) and cp > tonumber(redis.call("HGET", r, "ensured")) then
          redis.call("HSET", r, "ensured", cp)
        end
        if string.find(f, "W", 1, true) and string.find(f, "S", 1, true) then
          append(name, cp, ms, txn, v)
        end
      end
    end
  end
end
return 1
`)

// onephase: ARGV = P, txn, rp, ms, keepMs, then quads name, mode, value,
// base. Returns {status, cp} or {0, conflicts} (status: 2 committed, 3
// aborted, 0 conflicts).
var scriptOnePhase = goredis.NewScript(luaLib + `
local txn, rp, ms, keepMs = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local t = tkey(txn)
local st = redis.call("HMGET", t, "status", "cp")
if st[1] then
  if st[1] == "committed" then return {2, tonumber(st[2])} end
  return {3, 0}
end
local bad = {}
local refs = {}
for i = 6, #ARGV, 4 do
  local name, mode, base = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 3])
  local h = redis.call("HMGET", rkey(name), "kind", "intent", "ensured", "newest", "keep", "trimmed")
  refs[i] = h
  if not h[1] then
    table.insert(bad, {name, 3, 0, "", ""})
  elseif h[2] then
    table.insert(bad, {name, 1, 0, h[2], ""})
  else
    local newest = tonumber(h[4])
    if mode == 2 then
      if newest ~= base then table.insert(bad, {name, 2, 0, "", redis.call("LINDEX", vkey(name), 0)}) end
    else
      local p = conflicts(mode, rp, newest, tonumber(h[3]))
      if p then table.insert(bad, {name, 0, p, "", ""}) end
    end
  end
end
if #bad > 0 then return {0, bad} end
local cp = redis.call("INCR", P .. "clock")
for i = 6, #ARGV, 4 do
  local name, mode, value = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local h = refs[i]
  if (mode == 1 or mode == 3) and cp > tonumber(h[3]) then redis.call("HSET", rkey(name), "ensured", cp) end
  if mode ~= 1 then append(name, cp, ms, txn, value, tonumber(h[5]), tonumber(h[6])) end
end
redis.call("HSET", t, "status", "committed", "cp", cp, "created", ms)
redis.call("PEXPIRE", t, keepMs)
return {2, cp}
`)

// putrecord: ARGV = P, id, rp, prio, lease, created, refs. Returns 1 if
// created (or the same pending record exists), else 0.
var scriptPutRecord = goredis.NewScript(luaLib + `
local t = tkey(ARGV[2])
local st = redis.call("HMGET", t, "status", "rp", "prio")
if st[1] then
  if st[1] == "pending" and st[2] == ARGV[3] and st[3] == ARGV[4] then return 1 end
  return 0
end
redis.call("HSET", t, "status", "pending", "rp", ARGV[3], "prio", ARGV[4], "cp", 0, "lease", ARGV[5], "created", ARGV[6], "refs", ARGV[7])
redis.call("SADD", P .. "recs", ARGV[2])
return 1
`)

// commitrecord: ARGV = P, id. Draws CP for a pending record.
var scriptCommitRecord = goredis.NewScript(luaLib + `
local t = tkey(ARGV[2])
if redis.call("HGET", t, "status") == "pending" then
  local cp = redis.call("INCR", P .. "clock")
  redis.call("HSET", t, "status", "committed", "cp", cp)
end
return redis.call("HGETALL", t)
`)

// abortrecord: ARGV = P, id, ms, keepMs. Aborts a pending record or writes
// a tombstone that expires after keepMs.
var scriptAbortRecord = goredis.NewScript(luaLib + `
local t = tkey(ARGV[2])
local st = redis.call("HGET", t, "status")
if not st then
  redis.call("HSET", t, "status", "aborted", "rp", 0, "prio", 0, "cp", 0, "lease", ARGV[3], "created", ARGV[3], "refs", "")
  redis.call("PEXPIRE", t, ARGV[4])
  redis.call("SADD", P .. "recs", ARGV[2])
elseif st == "pending" then
  redis.call("HSET", t, "status", "aborted")
end
return redis.call("HGETALL", t)
`)

// deleterecord: ARGV = P, id, keepMs. Deletes now (0), or lets it expire
// after keepMs, never later than an expiry already set.
var scriptDeleteRecord = goredis.NewScript(luaLib + `
local t = tkey(ARGV[2])
local keep = tonumber(ARGV[3])
if keep <= 0 then
  redis.call("DEL", t)
  redis.call("SREM", P .. "recs", ARGV[2])
  return 1
end
local ttl = redis.call("PTTL", t)
if ttl == -1 or ttl > keep then redis.call("PEXPIRE", t, keep) end
return 1
`)

// setmeta: ARGV = P, name, expect, meta. Returns 1, 0 (stale), or -1 (no
// such ref).
var scriptSetMeta = goredis.NewScript(luaLib + `
local r = rkey(ARGV[2])
local v = redis.call("HGET", r, "metaver")
if not v then return -1 end
if v ~= ARGV[3] then return 0 end
redis.call("HSET", r, "meta", ARGV[4], "metaver", tonumber(v) + 1)
return 1
`)
