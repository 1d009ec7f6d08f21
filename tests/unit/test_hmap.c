/*
 * Unit tests for common/hmap.c: the intrusive string hash table behind the
 * path index and the per-workspace client maps. Entries are test structs
 * embedding an hmap_node_t, as claims.c uses them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/hmap.h"

typedef struct item {
	hmap_node_t node;
	char key[32];
	int value;
	int seen;
} item_t;

#define ITEM(n) ((item_t *)((char *)(n)-offsetof(item_t, node)))

static item_t *make_items(size_t n)
{
	item_t *v = calloc(n, sizeof(*v));

	assert_non_null(v);
	for (size_t i = 0; i < n; i++) {
		snprintf(v[i].key, sizeof(v[i].key), "key-%zu", i);
		v[i].value = (int)i;
	}
	return v;
}

static void test_empty_map_finds_nothing(void **state)
{
	hmap_t m = HMAP_INIT;

	(void)state;
	assert_null(hmap_get(&m, "x"));
	assert_int_equal(m.count, 0);
	hmap_free(&m);
}

static void test_put_get_del(void **state)
{
	hmap_t m = HMAP_INIT;
	item_t *v = make_items(3);

	(void)state;
	for (int i = 0; i < 3; i++)
		hmap_put(&m, &v[i].node, v[i].key);
	assert_int_equal(m.count, 3);
	assert_ptr_equal(hmap_get(&m, "key-1"), &v[1].node);
	assert_ptr_equal(hmap_get(&m, "key-0"), &v[0].node);
	assert_null(hmap_get(&m, "key-3"));
	assert_null(hmap_get(&m, "key-"));

	hmap_del(&m, &v[1].node);
	assert_int_equal(m.count, 2);
	assert_null(hmap_get(&m, "key-1"));
	assert_ptr_equal(hmap_get(&m, "key-0"), &v[0].node);
	assert_ptr_equal(hmap_get(&m, "key-2"), &v[2].node);

	/* A removed node may be put back. */
	hmap_put(&m, &v[1].node, v[1].key);
	assert_ptr_equal(hmap_get(&m, "key-1"), &v[1].node);
	assert_int_equal(m.count, 3);
	hmap_free(&m);
	assert_int_equal(m.count, 0);
	assert_null(hmap_get(&m, "key-1"));
	free(v);
}

static void test_lookup_compares_the_key_not_the_pointer(void **state)
{
	hmap_t m = HMAP_INIT;
	item_t it = {.value = 7};
	char probe[32];

	(void)state;
	strcpy(it.key, "/home/u/project");
	hmap_put(&m, &it.node, it.key);
	strcpy(probe, "/home/u/project");
	assert_ptr_equal(hmap_get(&m, probe), &it.node);
	assert_null(hmap_get(&m, "/home/u/projec"));
	assert_null(hmap_get(&m, "/home/u/project/"));
	assert_null(hmap_get(&m, ""));
	hmap_free(&m);
}

static void test_growth_keeps_every_key_and_load_factor_at_most_one(void **state)
{
	enum { N = 5000 };
	hmap_t m = HMAP_INIT;
	item_t *v = make_items(N);

	(void)state;
	for (size_t i = 0; i < N; i++) {
		hmap_put(&m, &v[i].node, v[i].key);
		assert_true(m.count <= m.nbuckets);
		assert_int_equal(m.nbuckets & (m.nbuckets - 1), 0); /* power of two */
	}
	assert_int_equal(m.count, N);
	for (size_t i = 0; i < N; i++) {
		hmap_node_t *n = hmap_get(&m, v[i].key);

		assert_ptr_equal(n, &v[i].node);
		assert_int_equal(ITEM(n)->value, (int)i);
	}
	/* Delete every other key; the rest stay reachable. */
	for (size_t i = 0; i < N; i += 2)
		hmap_del(&m, &v[i].node);
	assert_int_equal(m.count, N / 2);
	for (size_t i = 0; i < N; i++) {
		if (i % 2 == 0)
			assert_null(hmap_get(&m, v[i].key));
		else
			assert_ptr_equal(hmap_get(&m, v[i].key), &v[i].node);
	}
	hmap_free(&m);
	free(v);
}

static void test_keys_spread_over_buckets(void **state)
{
	enum { N = 1024 };
	hmap_t m = HMAP_INIT;
	item_t *v = make_items(N);
	size_t longest = 0;

	(void)state;
	for (size_t i = 0; i < N; i++)
		hmap_put(&m, &v[i].node, v[i].key);
	for (size_t b = 0; b < m.nbuckets; b++) {
		size_t len = 0;

		for (hmap_node_t *n = m.buckets[b]; n != NULL; n = n->next)
			len++;
		if (len > longest)
			longest = len;
	}
	/* Similar keys must not pile into a few chains. */
	assert_true(longest <= 12);
	hmap_free(&m);
	free(v);
}

static void test_foreach_visits_each_node_once(void **state)
{
	enum { N = 300 };
	hmap_t m = HMAP_INIT;
	item_t *v = make_items(N);
	hmap_node_t *n, *nxt;
	size_t visits = 0;

	(void)state;
	hmap_foreach (&m, n, nxt)
		visits++;
	assert_int_equal(visits, 0);
	for (size_t i = 0; i < N; i++)
		hmap_put(&m, &v[i].node, v[i].key);
	hmap_foreach (&m, n, nxt) {
		ITEM(n)->seen++;
		visits++;
	}
	assert_int_equal(visits, N);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(v[i].seen, 1);
	hmap_free(&m);
	free(v);
}

static void test_foreach_may_delete_the_current_node(void **state)
{
	enum { N = 300 };
	hmap_t m = HMAP_INIT;
	item_t *v = make_items(N);
	hmap_node_t *n, *nxt;
	size_t visits = 0;

	(void)state;
	for (size_t i = 0; i < N; i++)
		hmap_put(&m, &v[i].node, v[i].key);
	/* Delete two keys in three while walking: every node is still visited. */
	hmap_foreach (&m, n, nxt) {
		item_t *it = ITEM(n);

		it->seen++;
		visits++;
		if (it->value % 3 != 0)
			hmap_del(&m, n);
	}
	assert_int_equal(visits, N);
	assert_int_equal(m.count, (N + 2) / 3);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(v[i].seen, 1);
		if (i % 3 == 0)
			assert_ptr_equal(hmap_get(&m, v[i].key), &v[i].node);
		else
			assert_null(hmap_get(&m, v[i].key));
	}
	/* Draining the whole map while walking it leaves it empty. */
	hmap_foreach (&m, n, nxt)
		hmap_del(&m, n);
	assert_int_equal(m.count, 0);
	for (size_t b = 0; b < m.nbuckets; b++)
		assert_null(m.buckets[b]);
	hmap_free(&m);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty_map_finds_nothing),
	    cmocka_unit_test(test_put_get_del),
	    cmocka_unit_test(test_lookup_compares_the_key_not_the_pointer),
	    cmocka_unit_test(test_growth_keeps_every_key_and_load_factor_at_most_one),
	    cmocka_unit_test(test_keys_spread_over_buckets),
	    cmocka_unit_test(test_foreach_visits_each_node_once),
	    cmocka_unit_test(test_foreach_may_delete_the_current_node),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
