/*
 * reply: the one way an answer is written: JSON bodies, the one error
 * shape {"message": "..."} (the message made valid UTF-8), empty 200s.
 */
#ifndef CRUSH_REPLY_H
#define CRUSH_REPLY_H

#include <stddef.h>

#include <h2o.h>
#include <jansson.h>

/* The reason phrase of an HTTP status. */
const char *reply_reason(int status);
/* A JSON body already serialised (h2o copies it). */
void reply_text(h2o_req_t *req, int status, const char *text, size_t len);
/* body is consumed. */
void reply_json(h2o_req_t *req, int status, json_t *body);
/* {"message": message} with status; returns 0 for handlers to return. */
int reply_error(h2o_req_t *req, int status, const char *message);
/* 200 with no body. */
void reply_empty(h2o_req_t *req);

#endif
