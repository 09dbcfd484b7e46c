#include "config.h"

#include "redis.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/async.h>
#include <openssl/evp.h>

#include "auth.h"
#include "conf.h"
#include "err.h"
#include "log.h"
#include "text.h"

/*
 * The publish script.  docs/publish.lua holds the same text for callers in
 * other languages (a unit test keeps the two identical).
 *
 * Contract: KEYS[1] = P:U:history; ARGV[1] = payload (JSON); ARGV[2] =
 * MAXLEN ~ (default 1000); ARGV[3] = expiry in seconds (default 604800).
 * Builds {"id":"MS-SEQ","channel":"P:U","ts":MS,"data":PAYLOAD} with the id it
 * will XADD under, XADDs it (field "e"), EXPIREs the key, PUBLISHes the same
 * bytes to P:U, and returns the id.  Errors start "ERR herald: ".
 * Optionally KEYS[2] = P:U:history:idem:KEY and ARGV[4] = its window in
 * seconds (default 600): a publish whose record exists stores nothing and
 * answers the recorded id as a status reply (a new one is a bulk string);
 * the record also holds the payload's SHA1, and another payload under the
 * same KEY is an error ("idempotency key already used for another payload").
 */
static const char publish_lua[] =
    "-- Herald publish script: store a notification in the user's history and\n"
    "-- deliver it live, atomically.  See docs/protocol.md.\n"
    "--\n"
    "-- KEYS[1]  P:U:history, the user's stream; the channel is KEYS[1] without\n"
    "--          the \":history\" suffix (P:U).\n"
    "-- KEYS[2]  the idempotency record (optional): KEYS[1] .. \":idem:\" .. KEY, KEY\n"
    "--          being 1..200 characters of [A-Za-z0-9_.:-] naming this publish.\n"
    "-- ARGV[1]  the payload: JSON text, sent on verbatim as the envelope's \"data\".\n"
    "-- ARGV[2]  entries kept, XADD MAXLEN ~ (optional, default 1000).\n"
    "-- ARGV[3]  expiry of the stream in seconds, refreshed on each publish\n"
    "--          (optional, default 604800, 7 days).\n"
    "-- ARGV[4]  with KEYS[2]: seconds the record is kept, the window in which a\n"
    "--          retry is recognised (optional, default 600).\n"
    "-- An empty ARGV[2], ARGV[3] or ARGV[4] means the default.\n"
    "--\n"
    "-- Writes the envelope\n"
    "--   {\"id\":\"MS-SEQ\",\"channel\":\"P:U\",\"ts\":MS,\"data\":PAYLOAD}\n"
    "-- once: XADD to KEYS[1] (field \"e\") under the id it names, EXPIRE, and\n"
    "-- PUBLISH of the same bytes to P:U.  Returns the id \"MS-SEQ\".\n"
    "--\n"
    "-- With KEYS[2] a retry stores nothing: when the record exists, the script\n"
    "-- writes nothing and returns the id the record holds as a status reply\n"
    "-- (+MS-SEQ: most clients read it as the same string as the usual bulk reply;\n"
    "-- a caller that looks at the type can tell a replay).  Otherwise it publishes\n"
    "-- and SETs the record to \"ID SHA1(payload)\", EX ARGV[4].  A script runs\n"
    "-- atomically, so two calls with one record, even at once, store one entry.\n"
    "-- A record made for another payload is an error, not a replay: a key reused\n"
    "-- by mistake must not swallow a different notification.\n"
    "--\n"
    "-- The envelope holds its own id, so the id is chosen here before the XADD,\n"
    "-- as Redis would: the current time in ms, or the last entry's id + 1 when\n"
    "-- that is not smaller.  When entries were deleted from the end (the stream's\n"
    "-- last-generated-id is above its last entry) that XADD fails; the id then\n"
    "-- follows last-generated-id.  Lua numbers are doubles: ms (about 1.7e12) is\n"
    "-- exact, and a seq that would pass 2^53 moves to the next millisecond.\n"
    "\n"
    "local key = KEYS[1]\n"
    "local idem = KEYS[2]\n"
    "local payload = ARGV[1]\n"
    "\n"
    "local function fail(why)\n"
    "\treturn redis.error_reply('ERR herald: ' .. why)\n"
    "end\n"
    "\n"
    "local function count(arg, default)\n"
    "\tif arg == nil or arg == '' then\n"
    "\t\treturn default\n"
    "\tend\n"
    "\tlocal n = tonumber(arg)\n"
    "\tif n == nil or n < 1 or n % 1 ~= 0 or n > 1e15 then\n"
    "\t\treturn nil\n"
    "\tend\n"
    "\treturn n\n"
    "end\n"
    "\n"
    "if #KEYS ~= 1 and #KEYS ~= 2 then\n"
    "\treturn fail('expected one or two keys, P:U:history [P:U:history:idem:KEY]')\n"
    "end\n"
    "local channel = string.match(key, '^(.+):history$')\n"
    "if channel == nil then\n"
    "\treturn fail('key must end in \":history\"')\n"
    "end\n"
    "if string.find(channel, '[%c\"\\\\]') then\n"
    "\treturn fail('channel must not hold quotes, backslashes or control characters')\n"
    "end\n"
    "if idem ~= nil then\n"
    "\tlocal name = string.sub(idem, #key + 7)\n"
    "\tif string.sub(idem, 1, #key + 6) ~= key .. ':idem:' or #name < 1 or #name > 200 or\n"
    "\t\tstring.find(name, '[^A-Za-z0-9_.:%-]') then\n"
    "\t\treturn fail('KEYS[2] must be KEYS[1] .. \":idem:\" .. KEY, KEY of "
    "[A-Za-z0-9_.:-]{1,200}')\n"
    "\tend\n"
    "end\n"
    "if payload == nil or payload == '' then\n"
    "\treturn fail('payload is empty')\n"
    "end\n"
    "if not pcall(cjson.decode, payload) then\n"
    "\treturn fail('payload is not JSON')\n"
    "end\n"
    "local maxlen = count(ARGV[2], 1000)\n"
    "if maxlen == nil then\n"
    "\treturn fail('maxlen must be a positive integer')\n"
    "end\n"
    "local ttl = count(ARGV[3], 604800)\n"
    "if ttl == nil then\n"
    "\treturn fail('ttl must be a positive integer')\n"
    "end\n"
    "local window = count(ARGV[4], 600)\n"
    "if window == nil then\n"
    "\treturn fail('window must be a positive integer')\n"
    "end\n"
    "if idem == nil and ARGV[4] ~= nil and ARGV[4] ~= '' then\n"
    "\treturn fail('a window needs KEYS[2], the idempotency record')\n"
    "end\n"
    "if idem ~= nil then\n"
    "\tlocal done = redis.call('GET', idem)\n"
    "\tif done then\n"
    "\t\tlocal was, sum = string.match(done, '^(%d+%-%d+) (%x+)$')\n"
    "\t\tif was == nil then\n"
    "\t\t\treturn fail('the idempotency record holds no id')\n"
    "\t\tend\n"
    "\t\tif sum ~= redis.sha1hex(payload) then\n"
    "\t\t\treturn fail('idempotency key already used for another payload')\n"
    "\t\tend\n"
    "\t\treturn redis.status_reply(was)\n"
    "\tend\n"
    "end\n"
    "\n"
    "local function split(id)\n"
    "\tlocal ms, seq = string.match(id, '^(%d+)-(%d+)$')\n"
    "\treturn tonumber(ms), tonumber(seq)\n"
    "end\n"
    "\n"
    "-- The smallest id after ms-seq.\n"
    "local function after(ms, seq)\n"
    "\tif seq + 1 >= 9007199254740992 then\n"
    "\t\treturn ms + 1, 0\n"
    "\tend\n"
    "\treturn ms, seq + 1\n"
    "end\n"
    "\n"
    "local function add(ms, seq)\n"
    "\tlocal id = string.format('%d-%d', ms, seq)\n"
    "\tlocal env = '{\"id\":\"' .. id .. '\",\"channel\":\"' .. channel .. '\",\"ts\":' ..\n"
    "\t\tstring.format('%d', ms) .. ',\"data\":' .. payload .. '}'\n"
    "\tlocal r = redis.pcall('XADD', key, 'MAXLEN', '~', string.format('%d', maxlen),\n"
    "\t\tid, 'e', env)\n"
    "\treturn r, id, env\n"
    "end\n"
    "\n"
    "local t = redis.call('TIME')\n"
    "local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local seq = 0\n"
    "local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)\n"
    "if last[1] then\n"
    "\tlocal lms, lseq = split(last[1][1])\n"
    "\tif lms >= ms then\n"
    "\t\tms, seq = after(lms, lseq)\n"
    "\tend\n"
    "end\n"
    "\n"
    "local r, id, env = add(ms, seq)\n"
    "if type(r) == 'table' and r.err then\n"
    "\tif not string.find(r.err, 'equal or smaller', 1, true) then\n"
    "\t\treturn r\n"
    "\tend\n"
    "\tlocal info = redis.call('XINFO', 'STREAM', key)\n"
    "\tfor i = 1, #info, 2 do\n"
    "\t\tif info[i] == 'last-generated-id' then\n"
    "\t\t\tms, seq = after(split(info[i + 1]))\n"
    "\t\tend\n"
    "\tend\n"
    "\tr, id, env = add(ms, seq)\n"
    "\tif type(r) == 'table' and r.err then\n"
    "\t\treturn r\n"
    "\tend\n"
    "end\n"
    "-- The record goes first: from here on the entry exists.\n"
    "if idem ~= nil then\n"
    "\tredis.call('SET', idem, id .. ' ' .. redis.sha1hex(payload), 'EX',\n"
    "\t\tstring.format('%d', window))\n"
    "end\n"
    "redis.call('EXPIRE', key, string.format('%d', ttl))\n"
    "redis.call('PUBLISH', channel, env)\n"
    "return id\n";

/*
 * The history script.
 *
 * Contract: KEYS[1] = P:U:history; ARGV[1] = since ("MS-SEQ", "" for none);
 * ARGV[2] = limit (1..1000); ARGV[3] = byte budget (optional, 0 = none).
 * Returns {truncated, last_id, page_end, env1, env2, ...}, oldest first:
 * without since the newest `limit` envelopes, with since the envelopes after
 * it (exclusive), at most `limit`, stopping before the one that would pass
 * the byte budget (but never at none).  truncated is 1 when the stream is
 * gone or entries after since may have been removed (since is before
 * max-deleted-entry-id, or before the first entry of a trimmed stream: Redis
 * 7.0 does not count MAXLEN trimming in max-deleted-entry-id).  last_id is the
 * newest entry's id, "" when the stream is empty; page_end is the id of the
 * last entry the read looked at (envelope or not), "" when none: the next
 * page starts after it, and entries wait after the page when it is before
 * last_id.
 */
static const char history_lua[] =
    "-- Herald history script: a user's envelopes after a cursor, in one round trip.\n"
    "--\n"
    "-- KEYS[1]  P:U:history\n"
    "-- ARGV[1]  since: \"MS-SEQ\" (or a bare \"MS\", meaning MS-0); \"\" for none\n"
    "-- ARGV[2]  limit, 1..1000 (optional, default 100)\n"
    "-- ARGV[3]  byte budget of the page (optional, 0 or \"\" = none)\n"
    "--\n"
    "-- Returns {truncated, last_id, page_end, env1, env2, ...}, envelopes oldest\n"
    "-- first:\n"
    "--   - no since: the newest `limit` envelopes; truncated is 0;\n"
    "--   - since: at most `limit` envelopes with an id after since (exclusive),\n"
    "--     stopping before the envelope that would take the page past the byte\n"
    "--     budget (the first one always goes in);\n"
    "--     truncated is 1 when entries after since may have been removed: the\n"
    "--     stream is gone (expired), since is before the stream's\n"
    "--     max-deleted-entry-id (XDEL), or since is before the first entry and\n"
    "--     entries were removed (MAXLEN trimming, which Redis 7.0 does not count\n"
    "--     in max-deleted-entry-id).\n"
    "-- last_id is the id of the newest entry in the stream, \"\" when there is none.\n"
    "-- page_end is the id of the last entry the read looked at, \"\" when none:\n"
    "-- the next page starts after it; more entries wait when it is before last_id.\n"
    "-- Ids are compared as decimal strings, exactly (seq may pass 2^53).\n"
    "\n"
    "local key = KEYS[1]\n"
    "local since = ARGV[1] or ''\n"
    "local UMAX = '18446744073709551615'\n"
    "\n"
    "local limit = 100\n"
    "if ARGV[2] ~= nil and ARGV[2] ~= '' then\n"
    "\tlimit = tonumber(ARGV[2])\n"
    "\tif limit == nil or limit < 1 or limit > 1000 or limit % 1 ~= 0 then\n"
    "\t\treturn redis.error_reply('ERR herald: limit must be 1..1000')\n"
    "\tend\n"
    "end\n"
    "local budget = 0\n"
    "if ARGV[3] ~= nil and ARGV[3] ~= '' then\n"
    "\tbudget = tonumber(ARGV[3])\n"
    "\tif budget == nil or budget < 0 or budget % 1 ~= 0 then\n"
    "\t\treturn redis.error_reply('ERR herald: budget must be a byte count')\n"
    "\tend\n"
    "end\n"
    "\n"
    "-- The entry's envelope, or nil: a foreign entry would break the reader.\n"
    "local function envelope(entry)\n"
    "\tlocal f = entry[2]\n"
    "\tfor i = 1, #f, 2 do\n"
    "\t\tif f[i] == 'e' then\n"
    "\t\t\tif string.sub(f[i + 1], 1, 7) == '{\"id\":\"' then\n"
    "\t\t\t\treturn f[i + 1]\n"
    "\t\t\tend\n"
    "\t\t\treturn nil\n"
    "\t\tend\n"
    "\tend\n"
    "\treturn nil\n"
    "end\n"
    "\n"
    "-- <0, 0, >0 for decimal strings a, b of any length.\n"
    "local function numcmp(a, b)\n"
    "\ta = string.gsub(a, '^0+(%d)', '%1')\n"
    "\tb = string.gsub(b, '^0+(%d)', '%1')\n"
    "\tif #a ~= #b then\n"
    "\t\treturn #a - #b\n"
    "\tend\n"
    "\tif a == b then\n"
    "\t\treturn 0\n"
    "\tend\n"
    "\treturn a < b and -1 or 1\n"
    "end\n"
    "\n"
    "local function before(ms, seq, id)\n"
    "\tlocal ims, iseq = string.match(id, '^(%d+)-(%d+)$')\n"
    "\tlocal c = numcmp(ms, ims)\n"
    "\tif c ~= 0 then\n"
    "\t\treturn c < 0\n"
    "\tend\n"
    "\treturn numcmp(seq, iseq) < 0\n"
    "end\n"
    "\n"
    "if since == '' then\n"
    "\tlocal r = redis.call('XREVRANGE', key, '+', '-', 'COUNT', limit)\n"
    "\tlocal newest = r[1] and r[1][1] or ''\n"
    "\tlocal out = {0, newest, newest}\n"
    "\tfor i = #r, 1, -1 do\n"
    "\t\tout[#out + 1] = envelope(r[i])\n"
    "\tend\n"
    "\treturn out\n"
    "end\n"
    "\n"
    "local sms, sseq = string.match(since, '^(%d+)-(%d+)$')\n"
    "if sms == nil then\n"
    "\tsms, sseq = string.match(since, '^(%d+)$'), '0'\n"
    "end\n"
    "if sms == nil or numcmp(sms, UMAX) > 0 or numcmp(sseq, UMAX) > 0 then\n"
    "\treturn redis.error_reply('ERR herald: since must be MS-SEQ')\n"
    "end\n"
    "sms = string.gsub(sms, '^0+(%d)', '%1')\n"
    "sseq = string.gsub(sseq, '^0+(%d)', '%1')\n"
    "\n"
    "if redis.call('EXISTS', key) == 0 then\n"
    "\treturn {1, '', ''}\n"
    "end\n"
    "local info = redis.call('XINFO', 'STREAM', key)\n"
    "local h = {}\n"
    "for i = 1, #info, 2 do\n"
    "\th[info[i]] = info[i + 1]\n"
    "end\n"
    "\n"
    "local truncated = 0\n"
    "local maxdel = h['max-deleted-entry-id']\n"
    "if maxdel and before(sms, sseq, maxdel) then\n"
    "\ttruncated = 1\n"
    "end\n"
    "local first = h['first-entry']\n"
    "local added = h['entries-added']\n"
    "if first and (added == nil or added > h['length']) and before(sms, sseq, first[1]) then\n"
    "\ttruncated = 1\n"
    "end\n"
    "\n"
    "local out = {truncated, h['last-entry'] and h['last-entry'][1] or '', ''}\n"
    "if sms == UMAX and sseq == UMAX then\n"
    "\treturn out\n"
    "end\n"
    "local r = redis.call('XRANGE', key, '(' .. sms .. '-' .. sseq, '+', 'COUNT', limit)\n"
    "local bytes = 0\n"
    "for i = 1, #r do\n"
    "\tlocal env = envelope(r[i])\n"
    "\tif env then\n"
    "\t\tif budget > 0 and bytes > 0 and bytes + #env > budget then\n"
    "\t\t\tbreak\n"
    "\t\tend\n"
    "\t\tbytes = bytes + #env\n"
    "\t\tout[#out + 1] = env\n"
    "\tend\n"
    "\tout[3] = r[i][1]\n"
    "end\n"
    "return out\n";

struct redis_script redis_script_publish = {"publish", publish_lua, ""};
struct redis_script redis_script_history = {"history", history_lua, ""};

/* The longest key + argument list redis_eval_sync() takes (the scripts use 6 at most). */
#define EVAL_KV_MAX 16

static const char *const numkeys_str[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;
static int scripts_rc;

static int copy_str(char *dst, size_t dstlen, const char *s, size_t len)
{
	if (len >= dstlen || memchr(s, '\0', len) != NULL)
		return HERR_INVAL;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return 0;
}

#define URL_FORMS "redis://[:password@]host[:port][/db] or unix:///path[?db=N]"

/* After "redis://": [[user]:password@]host[:port][/db].  The password is never
 * echoed in an error. */
static int parse_tcp(const char *s, struct redis_addr *a, char *err, size_t errlen)
{
	/* The last '@' ends the password, whatever it holds ('/', '?', '@'):
	 * everything after it may be echoed in an error, nothing before it. */
	const char *at = strrchr(s, '@');
	const char *rest = at != NULL ? at + 1 : s;
	const char *slash = strchr(rest, '/');
	const char *end = slash != NULL ? slash : rest + strlen(rest);
	const char *host, *hend, *port = NULL;
	uint64_t v;

	if (strchr(rest, '?') != NULL)
		return herr_set(HERR_INVAL, err, errlen,
				"redis_url: query parameters are for unix:// only");
	host = s;
	if (at != NULL) {
		const char *colon = memchr(s, ':', (size_t)(at - s));

		if (colon == NULL)
			return herr_set(HERR_INVAL, err, errlen,
					"redis_url: expected :password@ before the host");
		if (colon != s && !((size_t)(colon - s) == 7 && memcmp(s, "default", 7) == 0))
			return herr_set(HERR_INVAL, err, errlen,
					"redis_url: ACL user names other than \"default\" are not "
					"supported; write redis://:password@host");
		if (text_pct_decode(colon + 1, (size_t)(at - colon - 1), a->password,
				    sizeof a->password, 0) < 0)
			return herr_set(HERR_INVAL, err, errlen,
					"redis_url: bad password (too long, NUL or bad %%-escape)");
		host = at + 1;
	}
	if (*host == '[') {
		hend = memchr(host, ']', (size_t)(end - host));
		if (hend == NULL)
			return herr_set(HERR_INVAL, err, errlen,
					"redis_url: missing ']' after IPv6 host");
		if (hend + 1 < end) {
			if (hend[1] != ':')
				return herr_set(HERR_INVAL, err, errlen,
						"redis_url: expected ':port' after ']'");
			port = hend + 2;
		}
		host++;
	} else {
		const char *colon = memchr(host, ':', (size_t)(end - host));

		hend = colon != NULL ? colon : end;
		if (colon != NULL)
			port = colon + 1;
	}
	if (hend == host)
		return herr_set(HERR_INVAL, err, errlen, "redis_url: no host (expected %s)",
				URL_FORMS);
	if (copy_str(a->host, sizeof a->host, host, (size_t)(hend - host)) != 0)
		return herr_set(HERR_INVAL, err, errlen, "redis_url: host name too long");
	if (port != NULL) {
		if (text_parse_uint(port, (size_t)(end - port), 65535, &v) != 0 || v == 0)
			return herr_set(HERR_INVAL, err, errlen,
					"redis_url: bad port \"%.*s\" (1..65535)",
					(int)(end - port), port);
		a->port = (int)v;
	}
	if (slash != NULL && slash[1] != '\0') {
		if (text_parse_uint(slash + 1, strlen(slash + 1), INT_MAX, &v) != 0)
			return herr_set(HERR_INVAL, err, errlen,
					"redis_url: bad database \"%s\" (a number after '/')",
					slash + 1);
		a->db = (int)v;
	}
	return 0;
}

/* After "unix://": /path[?db=N[&password=P]]. */
static int parse_unix(const char *s, struct redis_addr *a, char *err, size_t errlen)
{
	const char *q = strchr(s, '?');
	size_t plen = q != NULL ? (size_t)(q - s) : strlen(s);
	uint64_t v;

	if (*s != '/' || plen < 2)
		return herr_set(
		    HERR_INVAL, err, errlen,
		    "redis_url: unix:// needs an absolute socket path (unix:///run/redis.sock)");
	if (copy_str(a->path, sizeof a->path, s, plen) != 0)
		return herr_set(HERR_INVAL, err, errlen, "redis_url: socket path too long");
	a->host[0] = '\0';
	a->port = 0;
	while (q != NULL) {
		const char *p = q + 1;
		const char *amp = strchr(p, '&');
		size_t len = amp != NULL ? (size_t)(amp - p) : strlen(p);

		if (len > 3 && memcmp(p, "db=", 3) == 0) {
			if (text_parse_uint(p + 3, len - 3, INT_MAX, &v) != 0)
				return herr_set(HERR_INVAL, err, errlen,
						"redis_url: bad database \"%.*s\"", (int)(len - 3),
						p + 3);
			a->db = (int)v;
		} else if (len > 9 && memcmp(p, "password=", 9) == 0) {
			if (text_pct_decode(p + 9, len - 9, a->password, sizeof a->password, 0) < 0)
				return herr_set(HERR_INVAL, err, errlen,
						"redis_url: bad password (too long, NUL or bad "
						"%%-escape)");
		} else {
			const char *eq = memchr(p, '=', len);

			return herr_set(HERR_INVAL, err, errlen,
					"redis_url: unknown parameter \"%.*s\" (db=N, password=P)",
					(int)(eq != NULL ? (size_t)(eq - p) : len), p);
		}
		q = amp;
	}
	return 0;
}

int redis_url_parse(const char *url, struct redis_addr *out, char *err, size_t errlen)
{
	struct redis_addr a;
	int rv;

	memset(&a, 0, sizeof a);
	a.port = 6379;
	if (url == NULL || *url == '\0')
		return herr_set(HERR_INVAL, err, errlen, "redis_url: empty (expected %s)",
				URL_FORMS);
	if (strncmp(url, "redis://", 8) == 0)
		rv = parse_tcp(url + 8, &a, err, errlen);
	else if (strncmp(url, "unix://", 7) == 0)
		rv = parse_unix(url + 7, &a, err, errlen);
	else
		rv = herr_set(HERR_INVAL, err, errlen, "redis_url: expected %s", URL_FORMS);
	if (rv == 0)
		*out = a;
	return rv;
}

const char *redis_addr_str(const struct redis_addr *a, char *buf, size_t len)
{
	if (a->nsentinels > 0)
		snprintf(buf, len, "master %s (via sentinels)", a->master_name);
	else if (a->path[0] != '\0')
		snprintf(buf, len, "%s", a->path);
	else if (strchr(a->host, ':') != NULL)
		snprintf(buf, len, "[%s]:%d", a->host, a->port);
	else
		snprintf(buf, len, "%s:%d", a->host, a->port);
	return buf;
}

/* Run one set-up command (AUTH, SELECT); 0 or HERR_REDIS naming it. */
static int setup_command(redisContext *rc, const char *name, int argc, const char **argv,
			 const char *addr, char *err, size_t errlen)
{
	redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
	int rv = 0;

	if (r == NULL)
		rv = herr_set(HERR_REDIS, err, errlen, "%s on %s failed: %s", name, addr,
			      rc->errstr);
	else if (r->type == REDIS_REPLY_ERROR)
		rv = herr_set(HERR_REDIS, err, errlen, "%s on %s failed: %s", name, addr, r->str);
	freeReplyObject(r);
	return rv;
}

int redis_node_parse(const char *s, struct redis_node *out)
{
	const char *colon = s != NULL ? strrchr(s, ':') : NULL;
	const char *h = s, *hend = colon;
	uint64_t v;

	if (colon == NULL || colon == s)
		return HERR_INVAL;
	if (*s == '[') {
		if (colon[-1] != ']')
			return HERR_INVAL;
		h = s + 1;
		hend = colon - 1;
	} else if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
		return HERR_INVAL;
	}
	if (hend <= h || text_parse_uint(colon + 1, strlen(colon + 1), 65535, &v) != 0 || v == 0 ||
	    copy_str(out->host, sizeof out->host, h, (size_t)(hend - h)) != 0)
		return HERR_INVAL;
	out->port = (int)v;
	return 0;
}

int redis_addr_from_conf(const struct conf *c, struct redis_addr *out, char *err, size_t errlen)
{
	const char *name = c->redis_sentinel_master != NULL ? c->redis_sentinel_master : "mymaster";
	const char *pw = c->redis_sentinel_password != NULL ? c->redis_sentinel_password : "";
	struct redis_addr a;
	int n = 0, rc;

	rc = redis_url_parse(c->redis_url != NULL ? c->redis_url : "redis://127.0.0.1:6379/0", &a,
			     err, errlen);
	if (rc != 0)
		return rc;
	for (char *const *p = c->redis_sentinels; p != NULL && *p != NULL; p++, n++) {
		if (n == REDIS_SENTINELS_MAX)
			return herr_set(HERR_INVAL, err, errlen,
					"redis_sentinels: more than %d sentinels",
					REDIS_SENTINELS_MAX);
		if (redis_node_parse(*p, &a.sentinel[n]) != 0)
			return herr_set(HERR_INVAL, err, errlen,
					"redis_sentinels: expected host:port, got '%s'", *p);
	}
	a.nsentinels = n;
	if (n > 0) {
		/* The sentinels name the master: redis_url's host is not used. */
		a.host[0] = '\0';
		a.path[0] = '\0';
		if (copy_str(a.master_name, sizeof a.master_name, name, strlen(name)) != 0 ||
		    *name == '\0')
			return herr_set(HERR_INVAL, err, errlen,
					"redis_sentinel_master: empty or longer than %zu bytes",
					sizeof a.master_name - 1);
		if (copy_str(a.sentinel_password, sizeof a.sentinel_password, pw, strlen(pw)) != 0)
			return herr_set(HERR_INVAL, err, errlen,
					"redis_sentinel_password: longer than %zu bytes",
					sizeof a.sentinel_password - 1);
	}
	*out = a;
	return 0;
}

const char *redis_addr_describe(const struct redis_addr *a, char *buf, size_t len)
{
	char where[300];

	if (a->nsentinels > 0)
		snprintf(buf, len,
			 "master %s through %d sentinel%s; redis_url gives its password and db "
			 "only, its host and port are not used",
			 a->master_name, a->nsentinels, a->nsentinels == 1 ? "" : "s");
	else
		snprintf(buf, len, "redis %s", redis_addr_str(a, where, sizeof where));
	return buf;
}

static const char *node_str(const struct redis_node *n, char *buf, size_t len)
{
	if (strchr(n->host, ':') != NULL)
		snprintf(buf, len, "[%s]:%d", n->host, n->port);
	else
		snprintf(buf, len, "%s:%d", n->host, n->port);
	return buf;
}

void redis_resolve_start(struct redis_resolve *r, const struct redis_addr *a)
{
	r->a = a;
	r->next = 0;
	r->asked = 0;
	r->rounds = 1;
	r->current = -1;
	r->master = *a;
	snprintf(r->why, sizeof r->why, "no sentinel configured");
}

const struct redis_node *redis_resolve_next(struct redis_resolve *r)
{
	if (r->asked >= r->a->nsentinels)
		return NULL;
	r->current = r->next;
	r->next = (r->next + 1) % r->a->nsentinels;
	r->asked++;
	return &r->a->sentinel[r->current];
}

void redis_resolve_failed(struct redis_resolve *r, const char *why)
{
	size_t n = strnlen(why, sizeof r->why - 1);

	/* why may be r->why itself. */
	memmove(r->why, why, n);
	r->why[n] = '\0';
}

int redis_resolve_retry(struct redis_resolve *r)
{
	if (r->rounds >= REDIS_RESOLVE_ROUNDS)
		return HERR_AGAIN;
	r->rounds++;
	r->asked = 0;
	r->next = 0;
	return 0;
}

int redis_resolve_answer(struct redis_resolve *r, const redisReply *reply, char *msg, size_t len)
{
	char sn[300], mn[300];
	const char *name = r->a->master_name;
	uint64_t port;
	int rc = HERR_REDIS;

	node_str(&r->a->sentinel[r->current < 0 ? 0 : r->current], sn, sizeof sn);
	if (reply == NULL) {
		herr_set(HERR_REDIS, r->why, sizeof r->why, "sentinel %s: no reply", sn);
	} else if (reply->type == REDIS_REPLY_ERROR) {
		herr_set(HERR_REDIS, r->why, sizeof r->why,
			 "sentinel %s: SENTINEL get-master-addr-by-name %s: %s", sn, name,
			 reply->str);
	} else if (reply->type == REDIS_REPLY_NIL) {
		herr_set(HERR_REDIS, r->why, sizeof r->why, "sentinel %s knows no master named %s",
			 sn, name);
		rc = HERR_NOTFOUND;
	} else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
		   reply->element[0]->type != REDIS_REPLY_STRING ||
		   reply->element[1]->type != REDIS_REPLY_STRING ||
		   copy_str(r->master.host, sizeof r->master.host, reply->element[0]->str,
			    reply->element[0]->len) != 0 ||
		   text_parse_uint(reply->element[1]->str, reply->element[1]->len, 65535, &port) !=
		       0 ||
		   port == 0) {
		herr_set(HERR_REDIS, r->why, sizeof r->why,
			 "sentinel %s: SENTINEL get-master-addr-by-name %s: unexpected reply", sn,
			 name);
	} else {
		r->master = *r->a;
		r->master.nsentinels = 0;
		r->master.path[0] = '\0';
		memcpy(r->master.host, reply->element[0]->str, reply->element[0]->len);
		r->master.host[reply->element[0]->len] = '\0';
		r->master.port = (int)port;
		herr_set(0, msg, len, "redis: sentinel %s says master %s is %s", sn, name,
			 redis_addr_str(&r->master, mn, sizeof mn));
		return 0;
	}
	herr_set(rc, msg, len, "redis: %s", r->why);
	return rc;
}

int redis_role_check(const redisReply *reply, const char *addr, char *err, size_t errlen)
{
	if (reply == NULL)
		return herr_set(HERR_AGAIN, err, errlen, "ROLE on %s: no reply", addr);
	if (reply->type == REDIS_REPLY_ERROR)
		return herr_set(HERR_AGAIN, err, errlen, "ROLE on %s failed: %s", addr, reply->str);
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
	    reply->element[0]->type != REDIS_REPLY_STRING)
		return herr_set(HERR_AGAIN, err, errlen, "ROLE on %s: unexpected reply", addr);
	if (strcmp(reply->element[0]->str, "master") != 0)
		return herr_set(HERR_AGAIN, err, errlen,
				"%s answered ROLE %s, not master: the sentinel's answer is stale",
				addr, reply->element[0]->str);
	return 0;
}

int redis_switch_parse(const char *msg, size_t len, const char *master_name, struct redis_node *to)
{
	const char *f[5];
	size_t flen[5];
	const char *p = msg, *end = msg + len;
	uint64_t port;
	int n = 0;

	while (p < end && n < 5) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));

		f[n] = p;
		flen[n] = (size_t)((sp != NULL ? sp : end) - p);
		n++;
		p = sp != NULL ? sp + 1 : end;
	}
	if (n != 5 || p != end)
		return HERR_INVAL;
	if (flen[0] != strlen(master_name) || memcmp(f[0], master_name, flen[0]) != 0)
		return HERR_NOTFOUND;
	if (text_parse_uint(f[4], flen[4], 65535, &port) != 0 || port == 0 ||
	    copy_str(to->host, sizeof to->host, f[3], flen[3]) != 0 || flen[3] == 0)
		return HERR_INVAL;
	to->port = (int)port;
	return 0;
}

int redis_watch_reply(const redisReply *r, const char *master_name, struct redis_node *to)
{
	const redisReply *kind, *payload;

	if (r == NULL)
		return REDIS_WATCH_OTHER;
	if (r->type == REDIS_REPLY_ERROR)
		return REDIS_WATCH_ERROR;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    (kind = r->element[0])->type != REDIS_REPLY_STRING)
		return REDIS_WATCH_OTHER;
	if (strcmp(kind->str, "subscribe") == 0)
		return REDIS_WATCH_SUBSCRIBED;
	payload = r->element[2];
	if (strcmp(kind->str, "message") != 0 || payload->type != REDIS_REPLY_STRING)
		return REDIS_WATCH_OTHER;
	switch (redis_switch_parse(payload->str, payload->len, master_name, to)) {
	case 0:
		return REDIS_WATCH_SWITCH;
	case HERR_NOTFOUND:
		return REDIS_WATCH_OTHER;
	default:
		return REDIS_WATCH_MALFORMED;
	}
}

static void note(const struct redis_addr *a, int level, const char *msg)
{
	if (a->note != NULL)
		a->note(a->note_ud, level, msg);
}

static int connect_one(const struct redis_addr *a, int timeout_ms, redisContext **out, char *err,
		       size_t errlen);

/* Ask sentinel n of a for the master: 0 with r->master set. */
static int ask_sentinel(const struct redis_addr *a, const struct redis_node *n, int timeout_ms,
			struct redis_resolve *r, char *msg, size_t len)
{
	struct redis_addr sa;
	redisContext *rc = NULL;
	redisReply *reply;
	char why[256];
	int rv;

	memset(&sa, 0, sizeof sa);
	memcpy(sa.host, n->host, sizeof sa.host);
	sa.port = n->port;
	memcpy(sa.password, a->sentinel_password, sizeof sa.password);
	if (connect_one(&sa, timeout_ms, &rc, why, sizeof why) != 0) {
		redis_resolve_failed(r, why);
		snprintf(msg, len, "redis: sentinel %s", why);
		return HERR_REDIS;
	}
	reply = redisCommand(rc, "SENTINEL get-master-addr-by-name %s", a->master_name);
	if (reply == NULL) {
		herr_set(HERR_REDIS, why, sizeof why, "sentinel %s:%d: %s", n->host, n->port,
			 rc->errstr);
		redis_resolve_failed(r, why);
		snprintf(msg, len, "redis: %s", why);
		rv = HERR_REDIS;
	} else {
		rv = redis_resolve_answer(r, reply, msg, len);
	}
	freeReplyObject(reply);
	redisFree(rc);
	return rv;
}

/* redis_connect() through the sentinels of a. */
static int sentinel_connect(const struct redis_addr *a, int timeout_ms, redisContext **out,
			    char *err, size_t errlen)
{
	struct redis_resolve r;
	char msg[512], why[256], addr[300];

	redis_resolve_start(&r, a);
	for (;;) {
		const struct redis_node *n;
		struct timespec pause = {0, 200 * 1000 * 1000};

		while ((n = redis_resolve_next(&r)) != NULL) {
			redisReply *reply;
			int rv;

			if (ask_sentinel(a, n, timeout_ms, &r, msg, sizeof msg) != 0) {
				note(a, LOG_LEVEL_WARN, msg);
				continue;
			}
			note(a, LOG_LEVEL_INFO, msg);
			if (connect_one(&r.master, timeout_ms, out, why, sizeof why) != 0) {
				redis_resolve_failed(&r, why);
				continue;
			}
			redis_addr_str(&r.master, addr, sizeof addr);
			reply = redisCommand(*out, "ROLE");
			rv = redis_role_check(reply, addr, why, sizeof why);
			freeReplyObject(reply);
			if (rv == 0)
				return 0;
			redisFree(*out);
			*out = NULL;
			redis_resolve_failed(&r, why);
			break;
		}
		if (n == NULL)
			return herr_set(HERR_REDIS, err, errlen,
					"redis: no sentinel gave a reachable master %s: %s",
					a->master_name, r.why);
		if (redis_resolve_retry(&r) != 0)
			return herr_set(HERR_REDIS, err, errlen, "redis: after %d rounds: %s",
					REDIS_RESOLVE_ROUNDS, r.why);
		snprintf(msg, sizeof msg, "redis: %s; asking the sentinels again", r.why);
		note(a, LOG_LEVEL_WARN, msg);
		nanosleep(&pause, NULL);
	}
}

static long (*nofile_hook)(void);

void redis_set_nofile_hook(long (*fn)(void))
{
	nofile_hook = fn;
}

int redis_nofile_retry(int err)
{
	return (err == EMFILE || err == ENFILE) && nofile_hook != NULL && nofile_hook() > 0;
}

redisAsyncContext *redis_async_connect(const char *path, const char *host, int port)
{
	for (int again = 1;; again = 0) {
		redisAsyncContext *ac;
		int e;

		errno = 0;
		if (path != NULL && path[0] != '\0')
			ac = redisAsyncConnectUnix(path);
		else
			ac = redisAsyncConnect(host, port);
		e = errno; /* hiredis keeps socket()'s errno (checked for 0.14) */
		if (ac == NULL || ac->err == 0 || !again || !redis_nofile_retry(e))
			return ac;
		redisAsyncFree(ac);
	}
}

int redis_connect(const struct redis_addr *a, int timeout_ms, redisContext **out, char *err,
		  size_t errlen)
{
	if (a->nsentinels > 0) {
		*out = NULL;
		return sentinel_connect(a, timeout_ms, out, err, errlen);
	}
	return connect_one(a, timeout_ms, out, err, errlen);
}

static int connect_one(const struct redis_addr *a, int timeout_ms, redisContext **out, char *err,
		       size_t errlen)
{
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	char addr[300], db[16];
	redisContext *rc;

	*out = NULL;
	redis_addr_str(a, addr, sizeof addr);
	for (int again = 1;; again = 0) {
		int e;

		errno = 0;
		if (a->path[0] != '\0')
			rc = timeout_ms > 0 ? redisConnectUnixWithTimeout(a->path, tv)
					    : redisConnectUnix(a->path);
		else
			rc = timeout_ms > 0 ? redisConnectWithTimeout(a->host, a->port, tv)
					    : redisConnect(a->host, a->port);
		e = errno; /* hiredis keeps socket()'s errno (checked for 0.14) */
		if (rc == NULL)
			return herr_set(HERR_NOMEM, err, errlen,
					"connect(%s) failed: out of memory", addr);
		if (rc->err == 0)
			break;
		herr_set(HERR_REDIS, err, errlen, "connect(%s) failed: %s", addr, rc->errstr);
		redisFree(rc);
		if (!again || !redis_nofile_retry(e))
			return HERR_REDIS;
	}
	/* hiredis 0.14 uses the connect timeout for connect() only. */
	if (timeout_ms > 0 && redisSetTimeout(rc, tv) != REDIS_OK) {
		herr_set(HERR_REDIS, err, errlen, "connect(%s) failed: setting the timeout: %s",
			 addr, rc->errstr);
		redisFree(rc);
		return HERR_REDIS;
	}
	if (a->password[0] != '\0') {
		const char *argv[] = {"AUTH", a->password};

		if (setup_command(rc, "AUTH", 2, argv, addr, err, errlen) != 0) {
			redisFree(rc);
			return HERR_REDIS;
		}
	}
	if (a->db != 0) {
		const char *argv[] = {"SELECT", db};

		snprintf(db, sizeof db, "%d", a->db);
		if (setup_command(rc, "SELECT", 2, argv, addr, err, errlen) != 0) {
			redisFree(rc);
			return HERR_REDIS;
		}
	}
	*out = rc;
	return 0;
}

/* The prefix goes into the envelope's "channel" string unescaped. */
static int prefix_valid(const char *p)
{
	if (p == NULL || *p == '\0')
		return 0;
	for (; *p != '\0'; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

/* Set once at start-up, before any thread reads it: no lock. */
static int cluster_layout;

void redis_set_cluster(int on)
{
	cluster_layout = on != 0;
}

int redis_get_cluster(void)
{
	return cluster_layout;
}

static int key_name(char *buf, size_t len, const char *prefix, const char *user, const char *suffix)
{
	int n;

	if (!prefix_valid(prefix) || user == NULL || !auth_user_valid(user, strlen(user)))
		return HERR_INVAL;
	/* Cluster: the user's hash tag keeps all of a user's keys in one slot. */
	if (cluster_layout)
		n = snprintf(buf, len, "%s:{%s}%s", prefix, user, suffix);
	else
		n = snprintf(buf, len, "%s:%s%s", prefix, user, suffix);
	if (n < 0 || (size_t)n >= len)
		return HERR_TOOBIG;
	return n;
}

int redis_channel(char *buf, size_t len, const char *prefix, const char *user)
{
	return key_name(buf, len, prefix, user, "");
}

int redis_history_key(char *buf, size_t len, const char *prefix, const char *user)
{
	return key_name(buf, len, prefix, user, ":history");
}

int redis_channel_user(const char *channel, size_t len, const char *prefix, char *user)
{
	size_t plen = prefix != NULL ? strlen(prefix) : 0;
	size_t ulen;

	if (channel == NULL || plen == 0 || len <= plen + 1 || memcmp(channel, prefix, plen) != 0 ||
	    channel[plen] != ':')
		return HERR_INVAL;
	channel += plen + 1;
	ulen = len - plen - 1;
	if (cluster_layout) {
		if (ulen < 3 || channel[0] != '{' || channel[ulen - 1] != '}')
			return HERR_INVAL;
		channel++;
		ulen -= 2;
	}
	if (!auth_user_valid(channel, ulen))
		return HERR_INVAL;
	memcpy(user, channel, ulen);
	user[ulen] = '\0';
	return 0;
}

static int sha1_hex(const char *s, char out[41])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
		return HERR_NOMEM;
	for (unsigned i = 0; i < 20; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[40] = '\0';
	return 0;
}

static void scripts_init_once(void)
{
	scripts_rc = sha1_hex(redis_script_publish.source, redis_script_publish.sha);
	if (scripts_rc == 0)
		scripts_rc = sha1_hex(redis_script_history.source, redis_script_history.sha);
}

int redis_scripts_init(void)
{
	pthread_once(&scripts_once, scripts_init_once);
	return scripts_rc;
}

int redis_evalsha_argv(const struct redis_script *s, int nkeys, int nargs, const char *const *kv,
		       const size_t *kvlen, const char **argv, size_t *argvlen)
{
	int n;

	if (nkeys < 0 || nkeys > 9 || nargs < 0 || redis_scripts_init() != 0)
		return HERR_INVAL;
	argv[0] = "EVALSHA";
	argvlen[0] = 7;
	argv[1] = s->sha;
	argvlen[1] = 40;
	argv[2] = numkeys_str[nkeys];
	argvlen[2] = 1;
	n = nkeys + nargs;
	for (int i = 0; i < n; i++) {
		argv[3 + i] = kv[i];
		argvlen[3 + i] = kvlen != NULL ? kvlen[i] : strlen(kv[i]);
	}
	return 3 + n;
}

int redis_reply_is_noscript(const redisReply *r)
{
	return r != NULL && r->type == REDIS_REPLY_ERROR && r->str != NULL &&
	       strncmp(r->str, "NOSCRIPT", 8) == 0;
}

int redis_script_load(redisContext *rc, const struct redis_script *s, char *err, size_t errlen)
{
	const char *argv[] = {"SCRIPT", "LOAD", s->source};
	redisReply *r;
	int rv = 0;

	if (redis_scripts_init() != 0)
		return herr_set(HERR_NOMEM, err, errlen, "SHA1 of the %s script failed", s->name);
	r = redisCommandArgv(rc, 3, argv, NULL);
	if (r == NULL)
		rv = herr_set(HERR_REDIS, err, errlen, "redis: SCRIPT LOAD %s: %s", s->name,
			      rc->errstr[0] != '\0' ? rc->errstr : "no reply");
	else if (r->type == REDIS_REPLY_ERROR)
		rv =
		    herr_set(HERR_REDIS, err, errlen, "redis: SCRIPT LOAD %s: %s", s->name, r->str);
	else if (r->type != REDIS_REPLY_STRING || r->len != 40 || memcmp(r->str, s->sha, 40) != 0)
		rv =
		    herr_set(HERR_REDIS, err, errlen,
			     "redis: SCRIPT LOAD %s: the server's SHA1 differs from ours", s->name);
	freeReplyObject(r);
	return rv;
}

redisReply *redis_eval_sync(redisContext *rc, const struct redis_script *s, int nkeys, int nargs,
			    const char *const *kv, const size_t *kvlen, char *err, size_t errlen)
{
	const char *argv[3 + EVAL_KV_MAX];
	size_t argvlen[3 + EVAL_KV_MAX];
	int argc;

	if (nkeys < 0 || nargs < 0 || nkeys + nargs > EVAL_KV_MAX) {
		herr_set(HERR_INVAL, err, errlen, "redis: %d keys and %d arguments: too many",
			 nkeys, nargs);
		return NULL;
	}
	argc = redis_evalsha_argv(s, nkeys, nargs, kv, kvlen, argv, argvlen);
	if (argc < 0) {
		herr_set(HERR_INVAL, err, errlen, "redis: cannot build EVALSHA %s", s->name);
		return NULL;
	}
	for (int attempt = 0;; attempt++) {
		redisReply *r = redisCommandArgv(rc, argc, argv, argvlen);

		if (r == NULL) {
			herr_set(HERR_REDIS, err, errlen, "redis: %s",
				 rc->errstr[0] != '\0' ? rc->errstr : "no reply");
			return NULL;
		}
		if (attempt > 0 || !redis_reply_is_noscript(r))
			return r;
		freeReplyObject(r);
		if (redis_script_load(rc, s, err, errlen) != 0)
			return NULL;
	}
}
