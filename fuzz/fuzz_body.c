/*
 * fuzz_body: create_body_parse (supervisor/body.c) on any bytes. On success
 * the path and key are absolute, the key names a directory or nothing (SPEC
 * §4: a non-directory is a 400), client_id is canonical lower-case and every
 * env entry is KEY=VALUE; on failure there is a message and nothing is held
 * (LeakSanitizer checks create_body_free).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "supervisor/body.h"

#include "fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	create_body_t b;
	const char *msg = NULL;
	struct stat st;

	if (create_body_parse(&b, (const char *)data, size, &msg) != 0) {
		CHECK(msg != NULL && *msg != '\0');
		CHECK(b.root == NULL && b.env == NULL);
		return 0;
	}
	CHECK(b.path != NULL && b.path[0] == '/');
	if (create_body_resolve(&b, &msg) == 0) {
		CHECK(b.key[0] == '/' && strlen(b.key) < sizeof(b.key));
		CHECK(stat(b.key, &st) == 0 ? S_ISDIR(st.st_mode) : errno == ENOENT);
	} else {
		CHECK(msg != NULL && *msg != '\0');
	}
	CHECK(strlen(b.client_id) == ID_LEN);
	for (size_t i = 0; i < ID_LEN; i++) {
		char c = b.client_id[i];
		if (i == 8 || i == 13 || i == 18 || i == 23)
			CHECK(c == '-');
		else
			CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
	}
	CHECK(b.data_dir != NULL);
	CHECK(b.nenv == 0 || b.env != NULL);
	for (size_t i = 0; i < b.nenv; i++)
		CHECK(b.env[i] != NULL && b.env[i][0] != '=' && strchr(b.env[i], '=') != NULL);
	create_body_free(&b);
	return 0;
}
