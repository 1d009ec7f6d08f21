/*
 * reply: answer writers (see reply.h).
 */
#include "supervisor/reply.h"

#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

const char *reply_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Payload Too Large";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 499:
		return "Client Closed Request";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return status < 300 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
	}
}

void reply_text(h2o_req_t *req, int status, const char *text, size_t len)
{
	req->res.status = status;
	req->res.reason = reply_reason(status);
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
		       H2O_STRLIT("application/json"));
	/* Every JSON body ends with a newline, as curl users expect. */
	int nl = len > 0 && text[len - 1] != '\n';
	char *body = h2o_mem_alloc_pool(&req->pool, len + 1);
	memcpy(body, text, len);
	body[len] = '\n';
	req->res.content_length = len + nl;
	/* h2o_send_inline without its second copy: body is in the pool. */
	static h2o_generator_t generator = {NULL, NULL};
	h2o_iovec_t v = h2o_iovec_init(body, len + nl);
	h2o_start_response(req, &generator);
	if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
		h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
	else
		h2o_send(req, &v, 1, H2O_SEND_STATE_FINAL);
}

void reply_json(h2o_req_t *req, int status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	reply_text(req, status, text ? text : "", text ? strlen(text) : 0);
	free(text);
}

int reply_error(h2o_req_t *req, int status, const char *message)
{
	/* A message may quote a worker's reason, which may quote a path. */
	reply_json(req, status, json_pack("{s:o}", "message", utf8_json_string(message)));
	return 0;
}

void reply_empty(h2o_req_t *req)
{
	req->res.status = 200;
	req->res.reason = "OK";
	req->res.content_length = 0;
	/* No body buffer at all: an empty one costs h2o a second write. */
	static h2o_generator_t none = {NULL, NULL};
	h2o_start_response(req, &none);
	h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
}
