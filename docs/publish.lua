-- Herald publish script: store a notification in the user's history and
-- deliver it live, atomically.  See docs/protocol.md.
--
-- KEYS[1]  P:U:history, the user's stream; the channel is KEYS[1] without
--          the ":history" suffix (P:U).
-- KEYS[2]  the idempotency record (optional): KEYS[1] .. ":idem:" .. KEY, KEY
--          being 1..200 characters of [A-Za-z0-9_.:-] naming this publish.
-- ARGV[1]  the payload: JSON text, sent on verbatim as the envelope's "data".
-- ARGV[2]  entries kept, XADD MAXLEN ~ (optional, default 1000).
-- ARGV[3]  expiry of the stream in seconds, refreshed on each publish
--          (optional, default 604800, 7 days).
-- ARGV[4]  with KEYS[2]: seconds the record is kept, the window in which a
--          retry is recognised (optional, default 600).
-- An empty ARGV[2], ARGV[3] or ARGV[4] means the default.
--
-- Writes the envelope
--   {"id":"MS-SEQ","channel":"P:U","ts":MS,"data":PAYLOAD}
-- once: XADD to KEYS[1] (field "e") under the id it names, EXPIRE, and
-- PUBLISH of the same bytes to P:U.  Returns the id "MS-SEQ".
--
-- With KEYS[2] a retry stores nothing: when the record exists, the script
-- writes nothing and returns the id the record holds as a status reply
-- (+MS-SEQ: most clients read it as the same string as the usual bulk reply;
-- a caller that looks at the type can tell a replay).  Otherwise it publishes
-- and SETs the record to "ID SHA1(payload)", EX ARGV[4].  A script runs
-- atomically, so two calls with one record, even at once, store one entry.
-- A record made for another payload is an error, not a replay: a key reused
-- by mistake must not swallow a different notification.
--
-- The envelope holds its own id, so the id is chosen here before the XADD,
-- as Redis would: the current time in ms, or the last entry's id + 1 when
-- that is not smaller.  When entries were deleted from the end (the stream's
-- last-generated-id is above its last entry) that XADD fails; the id then
-- follows last-generated-id.  Lua numbers are doubles: ms (about 1.7e12) is
-- exact, and a seq that would pass 2^53 moves to the next millisecond.

local key = KEYS[1]
local idem = KEYS[2]
local payload = ARGV[1]

local function fail(why)
	return redis.error_reply('ERR herald: ' .. why)
end

local function count(arg, default)
	if arg == nil or arg == '' then
		return default
	end
	local n = tonumber(arg)
	if n == nil or n < 1 or n % 1 ~= 0 or n > 1e15 then
		return nil
	end
	return n
end

if #KEYS ~= 1 and #KEYS ~= 2 then
	return fail('expected one or two keys, P:U:history [P:U:history:idem:KEY]')
end
local channel = string.match(key, '^(.+):history$')
if channel == nil then
	return fail('key must end in ":history"')
end
if string.find(channel, '[%c"\\]') then
	return fail('channel must not hold quotes, backslashes or control characters')
end
if idem ~= nil then
	local name = string.sub(idem, #key + 7)
	if string.sub(idem, 1, #key + 6) ~= key .. ':idem:' or #name < 1 or #name > 200 or
		string.find(name, '[^A-Za-z0-9_.:%-]') then
		return fail('KEYS[2] must be KEYS[1] .. ":idem:" .. KEY, KEY of [A-Za-z0-9_.:-]{1,200}')
	end
end
if payload == nil or payload == '' then
	return fail('payload is empty')
end
if not pcall(cjson.decode, payload) then
	return fail('payload is not JSON')
end
local maxlen = count(ARGV[2], 1000)
if maxlen == nil then
	return fail('maxlen must be a positive integer')
end
local ttl = count(ARGV[3], 604800)
if ttl == nil then
	return fail('ttl must be a positive integer')
end
local window = count(ARGV[4], 600)
if window == nil then
	return fail('window must be a positive integer')
end
if idem == nil and ARGV[4] ~= nil and ARGV[4] ~= '' then
	return fail('a window needs KEYS[2], the idempotency record')
end
if idem ~= nil then
	local done = redis.call('GET', idem)
	if done then
		local was, sum = string.match(done, '^(%d+%-%d+) (%x+)$')
		if was == nil then
			return fail('the idempotency record holds no id')
		end
		if sum ~= redis.sha1hex(payload) then
			return fail('idempotency key already used for another payload')
		end
		return redis.status_reply(was)
	end
end

local function split(id)
	local ms, seq = string.match(id, '^(%d+)-(%d+)$')
	return tonumber(ms), tonumber(seq)
end

-- The smallest id after ms-seq.
local function after(ms, seq)
	if seq + 1 >= 9007199254740992 then
		return ms + 1, 0
	end
	return ms, seq + 1
end

local function add(ms, seq)
	local id = string.format('%d-%d', ms, seq)
	local env = '{"id":"' .. id .. '","channel":"' .. channel .. '","ts":' ..
		string.format('%d', ms) .. ',"data":' .. payload .. '}'
	local r = redis.pcall('XADD', key, 'MAXLEN', '~', string.format('%d', maxlen),
		id, 'e', env)
	return r, id, env
end

local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = 0
local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
if last[1] then
	local lms, lseq = split(last[1][1])
	if lms >= ms then
		ms, seq = after(lms, lseq)
	end
end

local r, id, env = add(ms, seq)
if type(r) == 'table' and r.err then
	if not string.find(r.err, 'equal or smaller', 1, true) then
		return r
	end
	local info = redis.call('XINFO', 'STREAM', key)
	for i = 1, #info, 2 do
		if info[i] == 'last-generated-id' then
			ms, seq = after(split(info[i + 1]))
		end
	end
	r, id, env = add(ms, seq)
	if type(r) == 'table' and r.err then
		return r
	end
end
-- The record goes first: from here on the entry exists.
if idem ~= nil then
	redis.call('SET', idem, id .. ' ' .. redis.sha1hex(payload), 'EX',
		string.format('%d', window))
end
redis.call('EXPIRE', key, string.format('%d', ttl))
redis.call('PUBLISH', channel, env)
return id
