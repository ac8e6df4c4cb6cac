/* oid.c - see oid.h. The OIDs are PostgreSQL's fixed ones (pg_type.dat). */
#include "oid.h"

#include <stddef.h>

static const qr_oid_info types[] = {
    {16, "bool", QR_DECODE_BOOL, 0},
    {17, "bytea", QR_DECODE_BYTEA, 0},
    {18, "char", QR_DECODE_TEXT, 0},
    {19, "name", QR_DECODE_TEXT, 0},
    {20, "int8", QR_DECODE_INT, 0},
    {21, "int2", QR_DECODE_INT, 0},
    {23, "int4", QR_DECODE_INT, 0},
    {25, "text", QR_DECODE_TEXT, 0},
    {26, "oid", QR_DECODE_INT, 0},
    {114, "json", QR_DECODE_JSON, 0},
    {700, "float4", QR_DECODE_FLOAT, 0},
    {701, "float8", QR_DECODE_FLOAT, 0},
    {1042, "bpchar", QR_DECODE_TEXT, 0},
    {1043, "varchar", QR_DECODE_TEXT, 0},
    {1082, "date", QR_DECODE_TEXT, 0},
    {1083, "time", QR_DECODE_TEXT, 0},
    {1114, "timestamp", QR_DECODE_TEXT, 0},
    {1184, "timestamptz", QR_DECODE_TEXT, 0},
    {1186, "interval", QR_DECODE_TEXT, 0},
    {1700, "numeric", QR_DECODE_TEXT, 0},
    {2950, "uuid", QR_DECODE_TEXT, 0},
    {3802, "jsonb", QR_DECODE_JSON, 0},
    {1000, "bool[]", QR_DECODE_ARRAY, 16},
    {1005, "int2[]", QR_DECODE_ARRAY, 21},
    {1007, "int4[]", QR_DECODE_ARRAY, 23},
    {1016, "int8[]", QR_DECODE_ARRAY, 20},
    {1009, "text[]", QR_DECODE_ARRAY, 25},
    {1015, "varchar[]", QR_DECODE_ARRAY, 1043},
    {1014, "bpchar[]", QR_DECODE_ARRAY, 1042},
    {1021, "float4[]", QR_DECODE_ARRAY, 700},
    {1022, "float8[]", QR_DECODE_ARRAY, 701},
    {1231, "numeric[]", QR_DECODE_ARRAY, 1700},
    {1182, "date[]", QR_DECODE_ARRAY, 1082},
    {1115, "timestamp[]", QR_DECODE_ARRAY, 1114},
    {1185, "timestamptz[]", QR_DECODE_ARRAY, 1184},
};

const qr_oid_info *qr_oid_lookup(unsigned oid)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].oid == oid) return &types[i];
    return NULL;
}

const char *qr_oid_name(unsigned oid)
{
    const qr_oid_info *t = qr_oid_lookup(oid);
    return t ? t->name : "unknown";
}
