/*
 * Unit tests for supervisor/token.c: the generated token file is created
 * 0600 and reused, never read through a planted symlink or from another
 * user's file; --token-file refuses files others could read or write.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "supervisor/token.h"

typedef struct fixture {
	char dir[64];
	char path[128];
} fixture_t;

static int setup(void **state)
{
	fixture_t *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-token-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/crush-%u.token", f->dir, (unsigned)getuid());
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture_t *f = *state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_a_fresh_token_is_written_0600_and_then_reused(void **state)
{
	fixture_t *f = *state;
	char a[GUARD_TOKEN_MAX + 1], b[GUARD_TOKEN_MAX + 1], err[256];
	int created = -1;
	struct stat st;

	assert_int_equal(token_load_or_create(f->path, a, &created, err, sizeof(err)), 0);
	assert_int_equal(created, 1);
	assert_int_equal(strlen(a), TOKEN_GENERATED_LEN);
	assert_int_equal(strspn(a, "0123456789abcdef"), TOKEN_GENERATED_LEN);
	assert_int_equal(lstat(f->path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);

	assert_int_equal(token_load_or_create(f->path, b, &created, err, sizeof(err)), 0);
	assert_int_equal(created, 0);
	assert_string_equal(a, b);
}

static void test_a_symlink_is_refused_and_left_alone(void **state)
{
	fixture_t *f = *state;
	char tok[GUARD_TOKEN_MAX + 1], err[256], target[160], link[160];
	int created = -1;

	snprintf(target, sizeof(target), "%s/elsewhere", f->dir);
	write_file(target, "attacker-chosen-token-000000\n", 0600);
	assert_int_equal(symlink(target, f->path), 0);
	assert_int_equal(token_load_or_create(f->path, tok, &created, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "symbolic link"));
	assert_int_equal(readlink(f->path, link, sizeof(link) - 1) > 0, 1);

	/* A dangling one too: creating through it would write where the
	 * attacker points. */
	unlink(f->path);
	assert_int_equal(symlink("/tmp/nonexistent-target-of-test-token", f->path), 0);
	assert_int_equal(token_load_or_create(f->path, tok, &created, err, sizeof(err)), -1);
	assert_int_equal(access("/tmp/nonexistent-target-of-test-token", F_OK), -1);
}

static void test_another_users_file_is_refused(void **state)
{
	fixture_t *f = *state;
	char tok[GUARD_TOKEN_MAX + 1], err[256];
	int created = -1;

	if (geteuid() != 0)
		skip();
	write_file(f->path, "0123456789abcdef0123456789abcdef\n", 0600);
	assert_int_equal(chown(f->path, 65534, 65534), 0);
	assert_int_equal(token_load_or_create(f->path, tok, &created, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file of this user"));
}

static void test_a_directory_or_fifo_is_refused(void **state)
{
	fixture_t *f = *state;
	char tok[GUARD_TOKEN_MAX + 1], err[256];
	int created = -1;

	assert_int_equal(mkfifo(f->path, 0600), 0);
	assert_int_equal(token_load_or_create(f->path, tok, &created, err, sizeof(err)), -1);
	unlink(f->path);
	assert_int_equal(mkdir(f->path, 0700), 0);
	assert_int_equal(token_load_or_create(f->path, tok, &created, err, sizeof(err)), -1);
}

static void test_our_unusable_file_is_replaced(void **state)
{
	fixture_t *f = *state;
	char tok[GUARD_TOKEN_MAX + 1], err[256];
	int created = -1;
	struct stat st;

	/* Readable by others: whatever it held may be known; replace it. */
	write_file(f->path, "0123456789abcdef0123456789abcdef\n", 0644);
	assert_int_equal(token_load_or_create(f->path, tok, &created, err, sizeof(err)), 0);
	assert_int_equal(created, 1);
	assert_string_not_equal(tok, "0123456789abcdef0123456789abcdef");
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	write_file(f->path, "short\n", 0600);
	assert_int_equal(token_load_or_create(f->path, tok, &created, err, sizeof(err)), 0);
	assert_int_equal(created, 1);
	assert_int_equal(strlen(tok), TOKEN_GENERATED_LEN);
}

static void test_token_file_rules(void **state)
{
	fixture_t *f = *state;
	char tok[GUARD_TOKEN_MAX + 1], err[256], path[160];

	snprintf(path, sizeof(path), "%s/given", f->dir);
	write_file(path, "my-own-token-0123456789\r\n", 0600);
	assert_int_equal(token_read_file(path, tok, err, sizeof(err)), 0);
	assert_string_equal(tok, "my-own-token-0123456789");

	write_file(path, "my-own-token-0123456789\n", 0640);
	assert_int_equal(token_read_file(path, tok, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "chmod 600"));

	write_file(path, "too short\n", 0600);
	assert_int_equal(token_read_file(path, tok, err, sizeof(err)), -1);

	write_file(path, "", 0600);
	assert_int_equal(token_read_file(path, tok, err, sizeof(err)), -1);

	assert_int_equal(token_read_file("/nonexistent/token", tok, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/token"));

	if (geteuid() == 0) {
		write_file(path, "my-own-token-0123456789\n", 0600);
		assert_int_equal(chown(path, 65534, 65534), 0);
		assert_int_equal(token_read_file(path, tok, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "owned by uid 65534"));
	}
}

static void test_default_path_follows_the_runtime_dir(void **state)
{
	char path[256], want[256];
	const char *old = getenv("XDG_RUNTIME_DIR");
	char *saved = old ? strdup(old) : NULL;
	(void)state;

	setenv("XDG_RUNTIME_DIR", "/run/user/42", 1);
	assert_int_equal(token_default_path(path, sizeof(path)), 0);
	snprintf(want, sizeof(want), "/run/user/42/crush-%u.token", (unsigned)getuid());
	assert_string_equal(path, want);
	unsetenv("XDG_RUNTIME_DIR");
	assert_int_equal(token_default_path(path, sizeof(path)), 0);
	snprintf(want, sizeof(want), "/tmp/crush-%u.token", (unsigned)getuid());
	assert_string_equal(path, want);
	if (saved != NULL)
		setenv("XDG_RUNTIME_DIR", saved, 1);
	free(saved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_a_fresh_token_is_written_0600_and_then_reused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_a_symlink_is_refused_and_left_alone, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_another_users_file_is_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_directory_or_fifo_is_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_our_unusable_file_is_replaced, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_token_file_rules, setup, teardown),
	    cmocka_unit_test(test_default_path_follows_the_runtime_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
