package redis

import (
	goredis "github.com/redis/go-redis/v9"
)

// Every script takes the key prefix "{P}:" in ARGV[1] and builds key names
// from it; KEYS[1] is "{P}:clock", so that on a Cluster the script runs on
// the node that holds the prefix's hash tag, which holds every key.
//
// Encodings (all strings; Lua strings and Redis values are byte-safe):
//   version: point "\0" unix-ms "\0" txn "\0" value          (list {P}:v:name, newest first)
//   intent:  txn "\0" coord "\0" flags "\0" value            (field "intent" of hash {P}:r:name; flags: W write, S staged, E ensure, and the Lock round's digits)
//   ref:     hash {P}:r:name: kind, min, max, keep, trimmed, ensured, newest, intent, meta, metaver
//   record:  hash {P}:t:id: status, rp, prio, cp, lease, created (unix ms), refs (opaque, msgpack from Go)
//   one-phase record: string {P}:o:id: cp "\0" created (unix ms), with a TTL (OnePhaseKeep)
//   watched: string {P}:w:name, present while a subscription to the ref is open (see Subscribe)

// epochLib starts every script: ARGV[1] is P "\0" id "\0" seen, where id
// is the backend's identity read at open ({P}:id) and seen the newest point
// this client has seen. A script refuses to run (EPOCHAL_LOST) when the
// identity key no longer holds id (the data was emptied, a FLUSHALL, a
// restart without persistence, and possibly recreated by another client)
// or the clock is behind seen (the data went back in time: a restart from
// an older AOF or snapshot): what the client knows no longer matches the
// server, and committing on top of it would corrupt the data silently.
// epochParse is its first half (ARGV[1] and lost); onephase reads the two
// keys itself, in the MGET that also reads its record and watch marks, and
// checks them with lost before it changes anything.
const epochParse = `
local P, ID, SEEN
do
  local a = string.find(ARGV[1], "\0", 1, true)
  local b = string.find(ARGV[1], "\0", a + 1, true)
  P, ID, SEEN = string.sub(ARGV[1], 1, a - 1), string.sub(ARGV[1], a + 1, b - 1), tonumber(string.sub(ARGV[1], b + 1))
end
-- lost returns the EPOCHAL_LOST error for what the identity key and the
-- clock hold (id, clk: GET's replies), or nil when they are as expected.
local function lost(id, clk)
  if id ~= ID then
    return redis.error_reply("EPOCHAL_LOST the identity key " .. P .. "id no longer holds " .. ID .. ": the data was emptied or replaced")
  end
  if (tonumber(clk) or 0) < SEEN then
    return redis.error_reply("EPOCHAL_LOST the clock " .. P .. "clock is behind point " .. SEEN .. ", which this client saw: the data went back in time")
  end
  return nil
end
`

const epochLib = epochParse + `
do
  local g = redis.call("MGET", P .. "id", P .. "clock")
  local e = lost(g[1], g[2])
  if e then return e end
end
`

// luaFuncs are the helpers of the ref and record scripts.
const luaFuncs = `
local function rkey(n) return P .. "r:" .. n end
local function vkey(n) return P .. "v:" .. n end
local function tkey(id) return P .. "t:" .. id end
local function okey(id) return P .. "o:" .. id end
local function vpoint(v)
  local i = string.find(v, "\0", 1, true)
  return tonumber(string.sub(v, 1, i - 1))
end
local function intentTxn(s)
  local i = string.find(s, "\0", 1, true)
  return string.sub(s, 1, i - 1)
end
local function intentRound(f) return tonumber(string.match(f, "%d+")) or 0 end
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
-- append adds a version, trims it and, while the ref is watched, publishes
-- it. keep and trimmed may be passed when the caller has read them; mark is
-- what the ref's watch mark {P}:w:name holds (GET's reply: false when
-- absent). While the mark exists (a subscription to the ref is open
-- somewhere, see Subscribe) the version is published on {P}:c:name and the
-- ref keeps at least as many older versions as the mark's value (the
-- subscriber's Config.WatchKeep); without it nobody listens, and nothing is
-- published (a subscriber sets the mark before it reads the history, and
-- learns of any time without it from scriptWatchMark's marker). After the
-- push the list usually holds keep + 2 entries, and
-- one RPOP trims it; when the watch retention has just ended it may hold
-- more, and LTRIM cuts them. The newest entry dropped raises trimmed.
local function append(name, point, ms, txn, value, keep, trimmed, mark)
  local r = rkey(name)
  if not keep then
    local h = redis.call("HMGET", r, "keep", "trimmed")
    keep, trimmed = tonumber(h[1]), tonumber(h[2])
  end
  local wk = tonumber(mark)
  if wk and keep < wk then keep = wk end
  local entry = point .. "\0" .. ms .. "\0" .. txn .. "\0" .. value
  local v = vkey(name)
  local n = redis.call("LPUSH", v, entry)
  local dropped = nil
  if n == keep + 2 then
    dropped = vpoint(redis.call("RPOP", v))
  elseif n > keep + 2 then
    dropped = vpoint(redis.call("LINDEX", v, keep + 1))
    redis.call("LTRIM", v, 0, keep)
  end
  if dropped and dropped > trimmed then trimmed = dropped end
  redis.call("HSET", r, "trimmed", trimmed, "newest", point)
  -- A hint may be lost (watchers poll): one refused (an ACL user without
  -- PUBLISH) must not fail the script after its writes, which Redis keeps.
  if mark then redis.pcall("PUBLISH", P .. "c:" .. name, entry) end
end
`

var luaLib = epochLib + luaFuncs

// create: ARGV = P, name, kind, value, min, max, ms. Returns "" if created,
// else the existing kind. Keys of the name that are not a ref this driver
// wrote (a hash key of another type, a hash without kind, versions without
// a hash) are refused with EPOCHAL_CORRUPT, never taken over.
var scriptCreate = goredis.NewScript(luaLib + `
local name = ARGV[2]
local r = rkey(name)
local rt = redis.call("TYPE", r)["ok"]
if rt ~= "hash" and rt ~= "none" then
  return redis.error_reply("EPOCHAL_CORRUPT " .. r .. " holds a " .. rt .. ", not a hash")
end
local kind = redis.call("HGET", r, "kind")
if kind then return kind end
if rt == "hash" then
  return redis.error_reply("EPOCHAL_CORRUPT its hash " .. r .. " has no kind field")
end
if redis.call("EXISTS", vkey(name)) == 1 then
  return redis.error_reply("EPOCHAL_CORRUPT " .. vkey(name) .. " exists without a ref hash " .. r)
end
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

// lock: ARGV = P, txn, coord, rp, round, then triples name, mode, value.
// Returns {0, conflicts...} where each conflict is {name, reason, point,
// intent}, or {1, newest versions...} with every intent taken.
var scriptLock = goredis.NewScript(luaLib + `
local txn, coord, rp, round = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local bad = {}
for i = 6, #ARGV, 3 do
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
for i = 6, #ARGV, 3 do
  local name, mode, value = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local r = rkey(name)
  local s = redis.call("HGET", r, "intent")
  if not s then
    local flags = ""
    if mode ~= 1 then flags = flags .. "W" end
    if mode == 0 then flags = flags .. "S" end
    if mode == 1 or mode == 3 then flags = flags .. "E" end
    if mode ~= 0 then value = "" end
    redis.call("HSET", r, "intent", txn .. "\0" .. coord .. "\0" .. flags .. round .. "\0" .. value)
  else
    local t, c, f, v = intentParts(s)
    if round > intentRound(f) then
      f = string.gsub(f, "%d+", "")
      redis.call("HSET", r, "intent", t .. "\0" .. c .. "\0" .. f .. round .. "\0" .. v)
    end
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

// resolve: ARGV = P, txn, commit (1/0), cp, ms, round, names... (a
// rollback with round > 0 drops only intents that Lock round took).
var scriptResolve = goredis.NewScript(luaLib + `
local txn, commit, cp, ms, round = ARGV[2], ARGV[3] == "1", tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
for i = 7, #ARGV do
  local name = ARGV[i]
  local r = rkey(name)
  local s = redis.call("HGET", r, "intent")
  if s then
    local t, c, f, v = intentParts(s)
    if t == txn and (commit or round == 0 or intentRound(f) == round) then
      redis.call("HDEL", r, "intent")
      if commit then
        if string.find(f, "E", 1, true) and cp > tonumber(redis.call("HGET", r, "ensured")) then
          redis.call("HSET", r, "ensured", cp)
        end
        if string.find(f, "W", 1, true) and string.find(f, "S", 1, true) then
          append(name, cp, ms, txn, v, nil, nil, redis.call("GET", P .. "w:" .. name))
        end
      end
    end
  end
end
return 1
`)

// onephase: ARGV = P, txn, rp, ms, keepMs, then quads name, mode, value,
// base. Returns {status, cp} or {0, conflicts} (status: 2 committed, 3
// aborted, 0 conflicts). One MGET reads the identity key and the clock
// (epochLib's check), the transaction's record {P}:o:txn and every ref's
// watch mark; a commit writes that record, cp "\0" ms, expiring after
// keepMs (OnePhaseKeep), so that a repeat, AbortRecord (I7) and Records
// find it. A record of txn in {P}:t: (a tombstone, or a general-path
// record of the same id) is looked up too: a tombstone refuses it.
var scriptOnePhase = goredis.NewScript(epochParse + luaFuncs + onePhaseBody)

const onePhaseBody = `
local txn, rp, ms, keepMs = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local keys = {P .. "id", P .. "clock", okey(txn)}
for i = 6, #ARGV, 4 do keys[#keys + 1] = P .. "w:" .. ARGV[i] end
local g = redis.call("MGET", unpack(keys))
local e = lost(g[1], g[2])
if e then return e end
if g[3] then return {2, vpoint(g[3])} end
local st = redis.call("HMGET", tkey(txn), "status", "cp")
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
local k = 3
for i = 6, #ARGV, 4 do
  local name, mode, value = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local h = refs[i]
  k = k + 1
  if (mode == 1 or mode == 3) and cp > tonumber(h[3]) then redis.call("HSET", rkey(name), "ensured", cp) end
  if mode ~= 1 then append(name, cp, ms, txn, value, tonumber(h[5]), tonumber(h[6]), g[k]) end
end
redis.call("SET", okey(txn), cp .. "\0" .. ms, "PX", keepMs)
return {2, cp}
`

// putrecord: ARGV = P, id, rp, prio, lease, created, refs. Returns 1 if
// created (or the same pending record exists), else 0.
var scriptPutRecord = goredis.NewScript(luaLib + `
local t = tkey(ARGV[2])
if redis.call("EXISTS", okey(ARGV[2])) == 1 then return 0 end
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
// a tombstone that expires after keepMs; a one-phase commit's record
// ({P}:o:id) is returned as committed, in HGETALL's form.
var scriptAbortRecord = goredis.NewScript(luaLib + `
local o = redis.call("GET", okey(ARGV[2]))
if o then
  local i = string.find(o, "\0", 1, true)
  return {"status", "committed", "cp", string.sub(o, 1, i - 1), "created", string.sub(o, i + 1)}
end
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

// Sessions (backend.Sessions). Keys, for a session id, a dir d and a name n
// (each family's fixed part is followed by one variable part only, so no
// two families, dirs or ids can collide):
//
//	{P}:ss:id  hash holder, lease (ms), hb (unix ms); PEXPIRE lease: Redis
//	           ends the session by its own clock
//	{P}:sx:id  set of the session's entries, each d "\0" n, plus the marker
//	           "" that outlives the session by idKeep (PEXPIRE lease +
//	           idKeep, renewed with the session; after CloseSession only
//	           the marker is left): an id found here is not opened again
//	{P}:dz:d   zset of d's entries: score seq (0 for named entries), member n
//	{P}:dh:d   hash n -> session "\0" created (unix ms, "" if none) "\0" data
//	{P}:sq:d   d's sequence counter (INCR), never deleted
//	{P}:dv:d   d's change counter (INCR on every change), never deleted:
//	           the dir's revision (ReadDir)
//	{P}:dl:d   list of d's newest 256 additions of named entries, newest
//	           first, each rev "\0" n
//	{P}:df:d   the revision of the newest addition dropped from dl
//	{P}:dirs   zset (score 0) of the dirs that hold entries, for Dirs
//
// Channel {P}:dc:d carries, as a hint, the name of each entry of d added,
// changed or removed. An entry whose session key is gone is dead: every
// script that reads a dir drops it (and publishes) before answering.
const sessLib = epochLib + `
local function skey(id) return P .. "ss:" .. id end
local function xkey(id) return P .. "sx:" .. id end
local function zkey(d) return P .. "dz:" .. d end
local function hkey(d) return P .. "dh:" .. d end
local function owner(v)
  local i = string.find(v, "\0", 1, true)
  return string.sub(v, 1, i - 1)
end
local function created(v)
  local a = string.find(v, "\0", 1, true)
  local b = string.find(v, "\0", a + 1, true)
  return string.sub(v, a + 1, b - 1)
end
local function changed(d, n)
  redis.call("INCR", P .. "dv:" .. d)
  redis.pcall("PUBLISH", P .. "dc:" .. d, n) -- a hint: may be lost
end
-- logadd logs the addition of named entry n to d at d's revision, keeping
-- the newest 256 (backend.MinAddLog); df is the revision of the newest
-- addition dropped.
local function logadd(d, n)
  local l = P .. "dl:" .. d
  redis.call("LPUSH", l, redis.call("GET", P .. "dv:" .. d) .. "\0" .. n)
  if redis.call("LLEN", l) > 256 then
    local old = redis.call("RPOP", l)
    redis.call("SET", P .. "df:" .. d, string.sub(old, 1, string.find(old, "\0", 1, true) - 1))
  end
end
-- drop removes entry n of d, owned by session s.
local function drop(d, n, s)
  redis.call("ZREM", zkey(d), n)
  redis.call("HDEL", hkey(d), n)
  redis.call("SREM", xkey(s), d .. "\0" .. n)
  if redis.call("ZCARD", zkey(d)) == 0 then redis.call("ZREM", P .. "dirs", d) end
  changed(d, n)
end
-- purge drops d's entries of ended sessions and returns the live ones
-- (name -> value) and how many it found dead. With ro (a read-only
-- backend's call, which writes nothing) it drops none: they are only left
-- out.
local function purge(d, ro)
  local h = redis.call("HGETALL", hkey(d))
  local live, alive, dead = {}, {}, 0
  for i = 1, #h, 2 do
    local s = owner(h[i + 1])
    if alive[s] == nil then alive[s] = redis.call("EXISTS", skey(s)) == 1 end
    if alive[s] then
      live[h[i]] = h[i + 1]
    else
      dead = dead + 1
      if not ro then drop(d, h[i], s) end
    end
  end
  return live, dead
end
`

// opensession: ARGV = P, id, lease ms, holder, hb ms, idKeep ms. Returns 1,
// or -1 if the id belongs to a session that has ended.
var scriptOpenSession = goredis.NewScript(sessLib + `
local id, lease, keep = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[6])
local s, x = skey(id), xkey(id)
if redis.call("EXISTS", s) == 0 then
  if redis.call("EXISTS", x) == 1 then return -1 end
  redis.call("SADD", x, "")
end
redis.call("HSET", s, "holder", ARGV[4], "lease", lease, "hb", ARGV[5])
redis.call("PEXPIRE", s, lease)
redis.call("PEXPIRE", x, lease + keep)
return 1
`)

// renewsession: ARGV = P, id, hb ms, idKeep ms. Returns 1, or -1 if the
// session has ended.
var scriptRenewSession = goredis.NewScript(sessLib + `
local s = skey(ARGV[2])
local lease = tonumber(redis.call("HGET", s, "lease"))
if not lease then return -1 end
redis.call("HSET", s, "hb", ARGV[3])
redis.call("PEXPIRE", s, lease)
redis.call("PEXPIRE", xkey(ARGV[2]), lease + tonumber(ARGV[4]))
return 1
`)

// closesession: ARGV = P, id, idKeep ms. Drops the session's entries (those
// still its own) and leaves only the marker of sx, for idKeep.
var scriptCloseSession = goredis.NewScript(sessLib + `
local id = ARGV[2]
local s, x = skey(id), xkey(id)
if redis.call("EXISTS", s, x) == 0 then return 0 end
for _, e in ipairs(redis.call("SMEMBERS", x)) do
  if e ~= "" then
    local i = string.find(e, "\0", 1, true)
    local d, n = string.sub(e, 1, i - 1), string.sub(e, i + 1)
    local v = redis.call("HGET", hkey(d), n)
    if v and owner(v) == id then drop(d, n, id) end
  end
end
redis.call("DEL", s, x)
redis.call("SADD", x, "")
redis.call("PEXPIRE", x, tonumber(ARGV[3]))
return 1
`)

// addLib adds an entry: ARGV = P, session, dir, name, sequential (1/0),
// data, created. add() returns {seq}, {-1} (session ended) or {-2} (named
// entry held by another live session). A repeat by the same session
// returns the entry's seq.
const addLib = `
local function add()
  local sess, d, n = ARGV[2], ARGV[3], ARGV[4]
  if redis.call("EXISTS", skey(sess)) == 0 then return {-1} end
  local h, z = hkey(d), zkey(d)
  local value = sess .. "\0" .. ARGV[7] .. "\0" .. ARGV[6]
  local cur = redis.call("HGET", h, n)
  if cur then
    local o = owner(cur)
    if o == sess then
      if ARGV[5] == "0" and cur ~= value then
        redis.call("HSET", h, n, value)
        changed(d, n)
      end
      return {tonumber(redis.call("ZSCORE", z, n))}
    end
    if redis.call("EXISTS", skey(o)) == 1 then return {-2} end
    drop(d, n, o)
  end
  local seq = 0
  if ARGV[5] == "1" then seq = redis.call("INCR", P .. "sq:" .. d) end
  redis.call("ZADD", z, seq, n)
  redis.call("HSET", h, n, value)
  redis.call("SADD", xkey(sess), d .. "\0" .. n)
  redis.call("ZADD", P .. "dirs", 0, d)
  changed(d, n)
  if ARGV[5] == "0" then logadd(d, n) end
  return {seq}
end
`

// addentry: add (see addLib).
var scriptAddEntry = goredis.NewScript(sessLib + addLib + `
return add()
`)

// addlist: add, then (when it added) drop d's dead entries and list the
// live ones: {{seq}, {{name, seq}...}} by seq then name.
var scriptAddList = goredis.NewScript(sessLib + addLib + `
local r = add()
if r[1] < 0 then return {r, {}} end
local d = ARGV[3]
local live = purge(d)
local z = redis.call("ZRANGE", zkey(d), 0, -1, "WITHSCORES")
local out = {}
for i = 1, #z, 2 do
  if live[z[i]] then table.insert(out, {z[i], tonumber(z[i + 1])}) end
end
return {r, out}
`)

// setentry: ARGV = P, session, dir, name, data, remove (1/0). Replaces the
// data of (or removes) the session's entry. Returns 1, 0 (no such entry of
// the session) or -1 (the session has ended: the entry is dropped as dead).
var scriptSetEntry = goredis.NewScript(sessLib + `
local sess, d, n = ARGV[2], ARGV[3], ARGV[4]
local h = hkey(d)
local cur = redis.call("HGET", h, n)
if not cur or owner(cur) ~= sess then return 0 end
if redis.call("EXISTS", skey(sess)) == 0 then
  drop(d, n, sess)
  return -1
end
if ARGV[6] == "1" then
  drop(d, n, sess)
else
  local value = sess .. "\0" .. created(cur) .. "\0" .. ARGV[5]
  if value ~= cur then
    redis.call("HSET", h, n, value)
    changed(d, n)
  end
end
return 1
`)

// entries: ARGV = P, dir, details (1/0), since ("": no log), ro (1/0).
// Drops dead entries (only leaves them out with ro) and returns {change
// counter, {{name, seq[, value, {holder, lease, hb}]}...} by seq then
// name, {"rev\0name"...} the logged additions after since (newest first),
// the log's floor}.
var scriptEntries = goredis.NewScript(sessLib + `
local d = ARGV[2]
local live = purge(d, ARGV[5] == "1")
local z = redis.call("ZRANGE", zkey(d), 0, -1, "WITHSCORES")
local out, info = {}, {}
for i = 1, #z, 2 do
  local n, seq = z[i], tonumber(z[i + 1])
  local v = live[n]
  if v then
    if ARGV[3] == "1" then
      local s = owner(v)
      if not info[s] then info[s] = redis.call("HMGET", skey(s), "holder", "lease", "hb") end
      table.insert(out, {n, seq, v, info[s]})
    else
      table.insert(out, {n, seq})
    end
  end
end
local adds, floor = {}, "0"
if ARGV[4] ~= "" then
  local since = tonumber(ARGV[4])
  floor = redis.call("GET", P .. "df:" .. d) or "0"
  for _, a in ipairs(redis.call("LRANGE", P .. "dl:" .. d, 0, -1)) do
    if tonumber(string.sub(a, 1, string.find(a, "\0", 1, true) - 1)) <= since then break end
    table.insert(adds, a)
  end
end
return {redis.call("GET", P .. "dv:" .. d) or "0", out, adds, floor}
`)

// waitcheck: ARGV = P, dir, name, ro (1/0). With a name, drops that entry
// if its session has ended and returns {change counter, 1 if it is there
// (and live) else 0}; without, drops d's dead entries and returns {change
// counter, 0}. With ro (a read-only backend's call) it drops nothing, and
// the change counter is followed by "/" and the number of dead entries:
// a session's end changes no counter until somebody drops its entries,
// and must still show as a change.
var scriptWaitCheck = goredis.NewScript(sessLib + `
local d, n, ro = ARGV[2], ARGV[3], ARGV[4] == "1"
local there, dead = 0, nil
if n == "" then
  local _
  _, dead = purge(d, ro)
else
  local v = redis.call("HGET", hkey(d), n)
  if v then
    local s = owner(v)
    if redis.call("EXISTS", skey(s)) == 1 then there = 1 elseif not ro then drop(d, n, s) end
  end
end
local ver = redis.call("GET", P .. "dv:" .. d) or "0"
if ro and dead then ver = ver .. "/" .. dead end
return {ver, there}
`)

// dirs: ARGV = P, min, max (ZRANGEBYLEX bounds), ro (1/0). Drops dead
// entries of each dir in range and returns the dirs that still hold
// entries; with ro (a read-only backend's call) it drops nothing and
// returns the dirs that hold live entries.
var scriptDirs = goredis.NewScript(sessLib + `
local ro = ARGV[4] == "1"
local out = {}
for _, d in ipairs(redis.call("ZRANGEBYLEX", P .. "dirs", ARGV[2], ARGV[3])) do
  local live = purge(d, ro)
  if ro then
    if next(live) ~= nil then table.insert(out, d) end
  elseif redis.call("ZCARD", zkey(d)) > 0 then
    table.insert(out, d)
  else
    redis.call("ZREM", P .. "dirs", d)
  end
end
return out
`)

// watchmark: KEYS[1] = {P}:w:name, ARGV = value (Config.WatchKeep),
// lifetime (ms), the ref's channel {P}:c:name, marker. Sets the ref's
// watch mark and, when it creates it (no mark was there), publishes marker
// on the channel: commits are published only while the mark exists, so a
// subscriber that receives a marker it did not publish itself at Subscribe
// may have missed versions before it (see sub.loop). The marker is a hint
// like the versions: PUBLISH goes by pcall, so a refused one (an ACL user
// without it) loses the marker and does not fail the script after its SET.
// Returns 1 if the mark was there.
var scriptWatchMark = goredis.NewScript(`
local existed = redis.call("EXISTS", KEYS[1])
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
if existed == 0 then redis.pcall("PUBLISH", ARGV[3], ARGV[4]) end
return existed
`)

// scriptVersions reads a ref's version list (KEYS[1], {P}:v:name) and
// sends, for each value longer than ARGV[1] bytes, its size instead:
// "!" size "\0" point "\0" ms "\0" txn "\0" (parseVersion). Reads with a
// limit (VersionsBounded, List) run it inside their MULTI, so a large
// value stays on the server. It changes nothing, needs no identity check
// (the MULTI reads the identity key) and runs by EVALSHA only.
var scriptVersions = goredis.NewScript(`
local limit = tonumber(ARGV[1])
local t = redis.call("TYPE", KEYS[1])["ok"]
if t ~= "list" and t ~= "none" then
  return redis.error_reply("WRONGTYPE " .. KEYS[1] .. " holds a " .. t)
end
local out = redis.call("LRANGE", KEYS[1], 0, -1)
for i, v in ipairs(out) do
  if #v > limit then
    local a = string.find(v, "\0", 1, true)
    local b = a and string.find(v, "\0", a + 1, true)
    local c = b and string.find(v, "\0", b + 1, true)
    if c and #v - c > limit then
      out[i] = "!" .. (#v - c) .. "\0" .. string.sub(v, 1, c)
    end
  end
end
return out
`)
