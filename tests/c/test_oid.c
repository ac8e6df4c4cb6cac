/* What src/oid.c says of PostgreSQL's types. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "oid.h"

static void test_names_and_decoding(void **state)
{
    (void)state;
    assert_string_equal(qr_oid_name(1700), "numeric");
    assert_string_equal(qr_oid_name(20), "int8");
    assert_string_equal(qr_oid_name(424242), "unknown");
    assert_int_equal(qr_oid_lookup(20)->decode, QR_DECODE_INT);
    assert_int_equal(qr_oid_lookup(1700)->decode, QR_DECODE_TEXT); /* numerics stay exact text */
    assert_int_equal(qr_oid_lookup(3802)->decode, QR_DECODE_JSON);
    assert_null(qr_oid_lookup(424242));
}

static void test_arrays_name_their_element(void **state)
{
    (void)state;
    const qr_oid_info *a = qr_oid_lookup(1231);
    assert_non_null(a);
    assert_int_equal(a->decode, QR_DECODE_ARRAY);
    assert_string_equal(qr_oid_name(a->elem), "numeric");
    assert_int_equal(qr_oid_lookup(qr_oid_lookup(1007)->elem)->decode, QR_DECODE_INT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_decoding),
        cmocka_unit_test(test_arrays_name_their_element),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
