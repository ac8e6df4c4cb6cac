/* oid.h - the PostgreSQL types quarry knows by OID: their names (what
 * rows.fields and lua/quarry/formats.lua call them) and how a value of each
 * is decoded. One table; an OID not in it is "unknown" and decodes as text.
 */
#ifndef QR_OID_H
#define QR_OID_H

typedef enum {
    QR_DECODE_TEXT = 0, /* the exact text PostgreSQL sent (numeric, dates, ...) */
    QR_DECODE_INT,
    QR_DECODE_FLOAT,
    QR_DECODE_BOOL,
    QR_DECODE_JSON,
    QR_DECODE_BYTEA,
    QR_DECODE_ARRAY /* of the element type `elem` */
} qr_decode;

typedef struct qr_oid_info {
    unsigned oid;
    const char *name;
    qr_decode decode;
    unsigned elem; /* arrays: the element's OID */
} qr_oid_info;

/* The entry for oid, or NULL when quarry does not know it. */
const qr_oid_info *qr_oid_lookup(unsigned oid);

/* Its name, or "unknown". */
const char *qr_oid_name(unsigned oid);

#endif
