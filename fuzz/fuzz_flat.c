/*
 * fuzz_flat: common/flatjson.c against jansson on any bytes. Whatever
 * flatjson_parse takes, jansson takes too, with the same fields and
 * values (the contract in flatjson.h: it only ever leaves heads to
 * jansson, never reads one differently); and a string literal written by
 * flatjson_string decodes, by both, to utf8_sanitize of its bytes.
 */
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "common/flatjson.h"
#include "common/utf8.h"

#include "fuzz/check.h"

static void agrees(const char *s, size_t len)
{
	flatjson_t fj;
	buf_t store = BUF_INIT;
	if (flatjson_parse(s, len, &fj, &store) == 0) {
		json_t *j = json_loadb(s, len, 0, NULL);
		CHECK(json_is_object(j));
		CHECK(json_object_size(j) == fj.n);
		for (size_t i = 0; i < fj.n; i++) {
			const flatjson_field_t *f = &fj.f[i];
			json_t *v = json_object_getn(j, f->key, f->keylen);
			CHECK(v != NULL);
			switch (f->type) {
			case 's':
				CHECK(json_is_string(v) && json_string_length(v) == f->len);
				CHECK(memcmp(json_string_value(v), f->str, f->len) == 0 &&
				      f->str[f->len] == '\0');
				break;
			case 'i':
				CHECK(json_is_integer(v) && json_integer_value(v) == f->num);
				break;
			case 'b':
				CHECK(json_is_boolean(v) && json_is_true(v) == f->num);
				break;
			default:
				CHECK(f->type == 'n' && json_is_null(v));
			}
		}
		json_decref(j);
	}
	buf_free(&store);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	agrees((const char *)data, size);

	buf_t lit = BUF_INIT, want = BUF_INIT, doc = BUF_INIT;
	flatjson_string(&lit, (const char *)data, size);
	utf8_sanitize(&want, (const char *)data, size);
	buf_append(&doc, "{\"p\":", 5);
	buf_append(&doc, buf_data(&lit), buf_size(&lit));
	buf_append(&doc, "}", 1);
	json_t *j = json_loadb(buf_data(&doc), buf_size(&doc), JSON_ALLOW_NUL, NULL);
	CHECK(j != NULL);
	json_t *v = json_object_get(j, "p");
	CHECK(json_string_length(v) == buf_size(&want));
	CHECK(buf_size(&want) == 0 || memcmp(json_string_value(v), buf_data(&want), buf_size(&want)) == 0);
	json_decref(j);
	agrees(buf_data(&doc), buf_size(&doc));
	buf_free(&lit);
	buf_free(&want);
	buf_free(&doc);
	return 0;
}
