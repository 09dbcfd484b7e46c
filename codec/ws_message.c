#include "config.h"
#include "ws_message.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "jsonv.h"

/* A refresh is flat; nesting past this is not one (and bounds json-c). */
#define WSM_DEPTH 8

static int string_is(json_object *v, const char *want)
{
	size_t n = strlen(want);

	return (size_t)json_object_get_string_len(v) == n &&
	       memcmp(json_object_get_string(v), want, n) == 0;
}

int wsm_parse(const void *s, size_t len, char *token, size_t tokenmax)
{
	json_tokener *tok;
	json_object *obj, *v;
	const char *t;
	size_t n;
	int rc;

	if (tokenmax > 0)
		token[0] = '\0';
	/* json-c's strict mode still takes NaN, 'quotes', raw control
	 * characters (NOTES.md): the validator decides what is JSON. */
	if (s == NULL || len > INT_MAX || jsonv_validate(s, len, WSM_DEPTH, NULL) != 0)
		return WSM_MALFORMED;
	tok = json_tokener_new_ex(WSM_DEPTH);
	if (tok == NULL)
		return WSM_INTERNAL;
	obj = json_tokener_parse_ex(tok, s, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len || !json_object_is_type(obj, json_type_object)) {
		rc = WSM_MALFORMED;
		goto done;
	}
	if (!json_object_object_get_ex(obj, "type", &v) || !json_object_is_type(v, json_type_string) ||
	    !string_is(v, "refresh")) {
		rc = WSM_UNKNOWN_TYPE;
		goto done;
	}
	if (!json_object_object_get_ex(obj, "token", &v) || !json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) == 0) {
		rc = WSM_NO_TOKEN;
		goto done;
	}
	t = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (memchr(t, '\0', n) != NULL) {
		rc = WSM_MALFORMED;
		goto done;
	}
	if (n >= tokenmax) {
		rc = WSM_TOO_LONG;
		goto done;
	}
	memcpy(token, t, n);
	token[n] = '\0';
	rc = WSM_REFRESH;
done:
	json_object_put(obj);
	json_tokener_free(tok);
	return rc;
}

const char *wsm_reason(int result)
{
	switch (result) {
	case WSM_REFRESH:
		return "refresh";
	case WSM_MALFORMED:
		return "bad_message";
	case WSM_UNKNOWN_TYPE:
		return "unknown_type";
	case WSM_NO_TOKEN:
		return "missing";
	case WSM_TOO_LONG:
		return "too_long";
	default:
		return "internal";
	}
}

size_t wsm_refreshed(char out[WSM_OUT_MAX], long long expires_at)
{
	int n = snprintf(out, WSM_OUT_MAX, "{\"type\":\"refreshed\",\"expires_at\":%lld}", expires_at);

	return n > 0 ? (size_t)n : 0;
}

size_t wsm_expiring(char out[WSM_OUT_MAX], long long expires_in)
{
	int n = snprintf(out, WSM_OUT_MAX, "{\"type\":\"expiring\",\"expires_in\":%lld}", expires_in);

	return n > 0 ? (size_t)n : 0;
}

size_t wsm_heartbeat(char out[WSM_OUT_MAX])
{
	int n = snprintf(out, WSM_OUT_MAX, "{\"type\":\"heartbeat\"}");

	return n > 0 ? (size_t)n : 0;
}
