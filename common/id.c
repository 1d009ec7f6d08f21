/*
 * id: mints workspace ids with libuuid and validates client ids. Only the
 * canonical 8-4-4-4-12 form is accepted, so one client has one spelling
 * (upper case is folded) and claims keyed by id cannot be split.
 */
#include "common/id.h"

#include <ctype.h>
#include <uuid/uuid.h>

void id_new(char out[ID_LEN + 1])
{
	uuid_t u;

	uuid_generate_random(u);
	uuid_unparse_lower(u, out);
}

int id_parse(const char *in, size_t len, char out[ID_LEN + 1])
{
	if (in == NULL || len != ID_LEN)
		return -1;
	for (size_t i = 0; i < ID_LEN; i++) {
		unsigned char ch = (unsigned char)in[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (ch != '-')
				return -1;
		} else if (!isxdigit(ch)) {
			return -1;
		}
	}
	for (size_t i = 0; i < ID_LEN; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[ID_LEN] = '\0';
	return 0;
}
