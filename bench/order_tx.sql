-- pgbench: placing one order as the order service sends it (apps/order/known.py _LOOKUP, then
-- apps/order/transitions.py _PLACE): the read models' lookup of the customer and the two products, then one
-- statement writing the order, its 2 items, the status history row, the saga row waiting on the reservation,
-- the outbox row with its per-aggregate version and the order's data_access_log row (issue 14). The service
-- runs both in autocommit (apps/order/services.py place): no BEGIN or COMMIT, the write is atomic on its own;
-- its asyncpg connection sends these two statements per order and nothing else (checked with SQLAlchemy's
-- before_cursor_execute and asyncpg's Connection.execute, which BEGIN and COMMIT go through). The write
-- path's ceiling on this machine.
-- The order's lines come as the service sends them, one array parameter per column (-D, bench/orders.py
-- order_tx_variables), for the bench's two products: the lookup finds both, as the service's does (the
-- customer is a random id, not found: one index probe either way). Until session 23 the lookup called
-- gen_random_uuid() inside its join condition: a volatile
-- value cannot use the primary key, so each transaction scanned all of order_known_products (923 rows, two
-- more per bench run) calling OpenSSL's random generator twice per row (perf: libcrypto and its string
-- lookups ~25 % of PostgreSQL's CPU during pgbench). That was work the service never asks of PostgreSQL,
-- and it halved pgbench's tps (153.7 and 192.9 -> 356.4 and 403.8, alternated, one stack): the ratio's
-- denominator was too low, the ratio flattered.
-- Ids as the service makes them (uuid7: time-ordered, so each primary key grows at its end); a random
-- order id would scatter the inserts over the indexes' pages and lower the ceiling. The event's id too
-- (outbox/writer.py new_event_id) since session 24: a random one had put each insert on a random leaf of
-- event_store's primary key (88 MB) and written its full-page image after each checkpoint: WAL per
-- transaction 10.2-10.7 -> 8.4-8.6 kB, full-page images 1.59-1.67 -> 1.26-1.47, tps at 16 clients 516.6,
-- 600.7 -> 609.0, 533.1 (alternated, within noise); one backend's CPU per order at 40/s 2.11, 2.01 -> 1.87, 1.66.
-- Run with -M prepared (bench/orders.py, bench/pgbench.py), as the service's asyncpg connections send these
-- statements: prepared once per connection, then bound and executed; PostgreSQL plans the lookup afresh each
-- time (custom plans) and keeps the write's generic plan from its 6th execution, for the service's session
-- and for pgbench's alike (pg_prepared_statements). So every :variable is a $n parameter, unquoted (a quoted
-- one would reach PostgreSQL as literal text), cast where its type cannot be inferred. Until session 24
-- pgbench ran -M simple, parsing and planning both statements in every transaction. One backend's CPU per
-- order at 40/s (alternated, 2 rounds): -M simple 2.91, 2.62 ms; prepared 2.11, 2.01; the service's own two
-- statements replayed through asyncpg 2.03, 1.92. With the time-ordered event id and the lines as
-- parameters (below): this script 1.90, 2.03 against the service's 1.87, 1.97.
-- The idempotency key's CTE is there as in the service's statement; like the bench's orders, it has no key.
SELECT encode(overlay(uuid_send(gen_random_uuid())
                      placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                      FROM 1 FOR 6), 'hex')::uuid AS oid,
       encode(overlay(uuid_send(gen_random_uuid())
                      placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                      FROM 1 FOR 6), 'hex')::uuid AS logid,
       encode(overlay(uuid_send(gen_random_uuid())
                      placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                      FROM 1 FOR 6), 'hex')::uuid AS eid,
       gen_random_uuid() AS cid, md5(random()::text) AS tag \gset
SELECT EXISTS (SELECT 1 FROM order_known_customers WHERE customer_id = :cid) AS customer_known,
       p.product_id, p.sku, p.name, p.price, p.currency, p.confirmed_at
FROM (SELECT 1) AS one
LEFT JOIN order_known_products p ON p.product_id = ANY(CAST(:pids AS uuid[])) AND p.sellable;
WITH o AS (
  INSERT INTO orders (id, order_number, customer_id, status, currency, subtotal, tax_amount, shipping_amount,
                      discount_amount, total_amount, payment_method, payment_status, shipping_address,
                      billing_address, notes, metadata, created_at, updated_at, source_service)
  VALUES (:oid, 'PGB-' || :tag, :cid, 'pending', 'USD', 30.00, 0, 0, 0, 30.00, NULL, 'pending', NULL, NULL,
          NULL, '{}'::jsonb, now(), now(), 'pgbench')
), i AS (
  INSERT INTO order_items (order_id, product_id, product_sku, product_name, quantity, unit_price, total_price,
                           discount_amount, tax_amount, metadata)
  SELECT CAST(:oid AS uuid), t.product_id, t.sku, t.name, t.quantity, t.unit_price, t.total_price, 0, 0, '{}'::jsonb
  FROM unnest(CAST(:pids AS uuid[]), CAST(:skus AS varchar[]), CAST(:names AS varchar[]),
              CAST(:quantities AS int[]), CAST(:unit_prices AS numeric[]), CAST(:total_prices AS numeric[]))
       WITH ORDINALITY AS t(product_id, sku, name, quantity, unit_price, total_price, ord)
  ORDER BY t.ord
  RETURNING id
), h AS (
  INSERT INTO order_status_history (order_id, status_to, changed_by, reason, metadata)
  VALUES (:oid, 'pending', 'pgbench', 'awaiting stock', '{}'::jsonb)
), s AS (
  INSERT INTO order_sagas (order_id, checkout_id, step, deadline_at, payment_method_type, payment_token,
                           payment_attempts, created_at, updated_at)
  VALUES (:oid, NULL, 'reservation', now() + interval '120 seconds', NULL, NULL, 0, now(), now())
), k AS (
  INSERT INTO idempotency_keys (key, request_hash, order_id)
  SELECT CAST(NULL AS varchar), NULL, CAST(:oid AS uuid) WHERE NULL IS NOT NULL
), v AS (
  INSERT INTO outbox_aggregate_version AS v (aggregate_id, aggregate_type, version) VALUES (:oid, 'order', 1)
  ON CONFLICT (aggregate_id) DO UPDATE SET version = v.version + 1
  RETURNING version
), e AS (
  INSERT INTO event_store (id, aggregate_id, aggregate_type, event_type, event_data, event_version, schema_version)
  SELECT CAST(:eid AS uuid), CAST(:oid AS uuid), 'order', 'order.benchmarked', '{"total_amount": "30.00"}', v.version, 1
  FROM v
), a AS (
  INSERT INTO data_access_log (id, user_id, table_name, operation, record_id, customer_id, accessed_at)
  SELECT CAST(:logid AS uuid), 'customer:' || :cid, 'orders', 'INSERT', CAST(:oid AS varchar), :cid, now()
  WHERE CAST(:logid AS uuid) IS NOT NULL
)
SELECT id FROM i ORDER BY id;
