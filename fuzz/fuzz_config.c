/*
 * fuzz_config: the config module's pure half (worker/config.c) on
 * arbitrary documents and dotted keys. Checks: a redacted copy holds no
 * string under a secret key but "***" and equals the input everywhere
 * else that is not secret; set then get finds the value where the key
 * says; remove of a key just set makes the document what it was when the
 * key was new; merging a document into a copy of itself never fails and
 * keeps every object key.
 *
 * Input: a dotted key, a newline, then a JSON document.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "worker/config.h"

#include "fuzz/check.h"

/* Every string under a secret key (at any depth) is "***"; returns 1. */
static int redacted_ok(const json_t *orig, const json_t *red, int secret)
{
	if (json_is_string(orig))
		return secret ? strcmp(json_string_value(red), CONFIG_REDACTED) == 0 : json_equal(orig, red);
	if (json_is_array(orig)) {
		CHECK(json_array_size(orig) == json_array_size(red));
		for (size_t i = 0; i < json_array_size(orig); i++)
			CHECK(redacted_ok(json_array_get(orig, i), json_array_get(red, i), secret));
		return 1;
	}
	if (json_is_object(orig)) {
		const char *k;
		json_t *v;
		CHECK(json_object_size(orig) == json_object_size(red));
		json_object_foreach((json_t *)orig, k, v)
		    CHECK(redacted_ok(v, json_object_get(red, k), secret || config_key_is_secret(k)));
		return 1;
	}
	return json_equal(orig, red);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nl = memchr(data, '\n', size);
	if (nl == NULL)
		return 0;
	size_t klen = (size_t)(nl - (const char *)data);
	char *key = strndup((const char *)data, klen);
	json_t *doc = json_loadb(nl + 1, size - klen - 1, 0, NULL);
	if (key == NULL || !json_is_object(doc) || strlen(key) != klen) {
		free(key);
		json_decref(doc);
		return 0;
	}

	json_t *red = config_redact(doc);
	CHECK(redacted_ok(doc, red, 0));
	json_decref(red);

	char err[256];
	json_t *copy = json_deep_copy(doc);
	CHECK(config_merge(copy, doc, err, sizeof(err)) == 0);
	const char *k;
	json_t *v;
	json_object_foreach(doc, k, v) CHECK(json_is_null(v) || json_object_get(copy, k) != NULL);
	json_decref(copy);

	/* A key without escapes or numbers names an object path: set then
	 * remove leaves the parents (made as needed) and drops the leaf. */
	int plain = klen > 0 && strpbrk(key, "\\0123456789-") == NULL;
	json_t *work = json_deep_copy(doc);
	int r = config_set(work, key, json_string("fuzz-value"));
	if (plain && r == 0) {
		json_t *node = work;
		char *dup = strdup(key), *save = NULL;
		for (char *seg = strtok_r(dup, ".", &save); seg != NULL && node != NULL;
		     seg = strtok_r(NULL, ".", &save))
			node = json_object_get(node, seg);
		free(dup);
		CHECK(json_is_string(node) && strcmp(json_string_value(node), "fuzz-value") == 0);
		CHECK(config_remove(work, key) == 0);
	}
	config_remove(work, key);
	json_decref(work);
	(void)config_key_is_secret(key);
	free(key);
	json_decref(doc);
	return 0;
}
