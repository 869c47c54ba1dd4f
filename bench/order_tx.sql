-- pgbench: placing one order as the order service sends it when the read models know the customer and the
-- products at the prices the order was priced with (apps/order/known.py PLACE_IF_KNOWN, whose inserts are
-- apps/order/transitions.py placement_ctes): ONE statement that looks the customer and the two products up
-- and, only when the customer is known and every line's product is sellable, fresh and as priced, writes the
-- order, its 2 items, the status history row, the saga row waiting on the reservation, the outbox row with
-- its per-aggregate version and the order's data_access_log row (issue 14); it returns the lookup's rows and
-- the items' ids. Until session 26 the lookup and the write were two statements (known.py _LOOKUP, then
-- transitions.py _PLACE); the service still sends those two when its guess of the prices is wrong or a row
-- is missing or stale. The service runs it in autocommit (apps/order/services.py place): no BEGIN or COMMIT,
-- the write is atomic on its own; its asyncpg connection sends this one statement per order and nothing else.
-- The write path's ceiling on this machine.
-- The customer is a known one (the bench seeds :customers of them in order_known_customers, ids md5('pgbench-'
-- || n) as uuids, bench/orders.py pgbench_customers), a different one per transaction as the service's bench
-- orders are; until session 26 it was a random id nobody knew (the lookup was a statement of its own, and its
-- miss cost the same index probe). The lines, the products' sku, name, price and currency come as the service
-- sends them, one array parameter per column (-D, bench/orders.py order_tx_variables), read from the read
-- model for the bench's two products; :fresh_since is the older row's confirmed_at, so the freshness test
-- passes as it does in the service (which passes now minus ORDER_PRICE_MAX_AGE_S and keeps its rows fresh by
-- refreshing them ahead; pgbench cannot) with the same comparisons.
-- History. Until session 23 the lookup called gen_random_uuid() inside its join condition: a volatile value
-- cannot use the primary key, so each transaction scanned all of order_known_products (923 rows, two
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
-- statements: prepared once per connection, then bound and executed (until session 26, the lookup planned
-- afresh each time and the write on its generic plan from its 6th execution; the one statement now runs its
-- generic plan from the 6th, pg_prepared_statements of an asyncpg session sending it). So every :variable
-- is a $n parameter, unquoted (a quoted one would reach PostgreSQL as literal text), cast where its type
-- cannot be inferred. Until session 24
-- pgbench ran -M simple, parsing and planning both statements in every transaction. One backend's CPU per
-- order at 40/s (alternated, 2 rounds): -M simple 2.91, 2.62 ms; prepared 2.11, 2.01; the service's own two
-- statements replayed through asyncpg 2.03, 1.92. With the time-ordered event id and the lines as
-- parameters (below): this script 1.90, 2.03 against the service's 1.87, 1.97.
-- The idempotency key's CTE is there as in the service's statement; like the bench's orders, it has no key.
-- Since session 29 (order_0017-0018) a key is its customer's own: the CTE names the order's customer too.
-- The order number has the service's shape (apps/order/rules.py order_number: the UTC day, the millisecond of
-- the day in 7 hex digits, 8 random hex digits), with PGB- for ORD- (bench/orders.py removes PGB- orders);
-- until session 29 it was 'PGB-' and 32 random hex digits, as the service's tail was random within the day.
-- Since session 32 the saga's reservation deadline is the database's clock, statement_timestamp() + the step's
-- timeout (the service sends ORDER_SAGA_RESERVATION_TIMEOUT_S as a parameter; 120 s here), and the statement
-- returns it for the order API's answer. Before, the service sent its own clock + 120 s as a value (this script
-- wrote now() + 120 s there) and the statement returned no deadline.
-- Since session 34 the event carries the request's id (correlation_id, a uuid: the order API's X-Request-ID),
-- here a random one per order (rid), as the API makes one when none is sent.
SELECT encode(overlay(uuid_send(gen_random_uuid())
                      placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                      FROM 1 FOR 6), 'hex')::uuid AS oid,
       encode(overlay(uuid_send(gen_random_uuid())
                      placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                      FROM 1 FOR 6), 'hex')::uuid AS logid,
       encode(overlay(uuid_send(gen_random_uuid())
                      placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                      FROM 1 FOR 6), 'hex')::uuid AS eid,
       gen_random_uuid() AS rid,
       CAST(CAST(md5('pgbench-' || floor(random() * :customers)::int) AS uuid) AS text) AS cid,
       'PGB-' || to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDD') || '-'
         || lpad(upper(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint % 86400000)), 7, '0')
         || upper(substr(md5(random()::text), 1, 8)) AS onum \gset
WITH known AS (
  SELECT EXISTS (SELECT FROM order_known_customers WHERE customer_id = :cid AND NOT erased FOR SHARE) AS customer_known,
         p.product_id, p.sku, p.name, p.price, p.currency, p.confirmed_at
  FROM (SELECT 1) AS one
  LEFT JOIN order_known_products p ON p.product_id = ANY(CAST(:pids AS uuid[])) AND p.sellable
), ready AS (
  SELECT FROM known
  WHERE customer_known AND NOT EXISTS (
    SELECT FROM unnest(CAST(:pids AS uuid[]), CAST(:skus AS varchar[]), CAST(:names AS varchar[]),
                       CAST(:unit_prices AS numeric[])) AS t(product_id, sku, name, price)
    WHERE NOT EXISTS (
      SELECT FROM known k
      WHERE k.product_id = t.product_id AND k.sku = t.sku AND k.name IS NOT DISTINCT FROM t.name
            AND k.price = t.price AND k.currency = :currency AND k.confirmed_at >= :fresh_since))
  LIMIT 1
), o AS (
  INSERT INTO orders (id, order_number, customer_id, status, currency, subtotal, tax_amount, shipping_amount,
                      discount_amount, total_amount, payment_method, payment_status, shipping_address,
                      billing_address, notes, metadata, created_at, updated_at, source_service)
  SELECT :oid, :onum, :cid, 'pending', :currency, 19.00, 0, 0, 0, 19.00, NULL, 'pending', NULL, NULL,
         NULL, '{}'::jsonb, now(), now(), 'pgbench'
  WHERE EXISTS (SELECT FROM ready)
), i AS (
  INSERT INTO order_items (order_id, product_id, product_sku, product_name, quantity, unit_price, total_price,
                           discount_amount, tax_amount, metadata)
  SELECT CAST(:oid AS uuid), t.product_id, t.sku, t.name, t.quantity, t.unit_price, t.total_price, 0, 0, '{}'::jsonb
  FROM unnest(CAST(:pids AS uuid[]), CAST(:skus AS varchar[]), CAST(:names AS varchar[]),
              CAST(:quantities AS int[]), CAST(:unit_prices AS numeric[]), CAST(:total_prices AS numeric[]))
       WITH ORDINALITY AS t(product_id, sku, name, quantity, unit_price, total_price, ord)
  WHERE EXISTS (SELECT FROM ready)
  ORDER BY t.ord
  RETURNING id
), h AS (
  INSERT INTO order_status_history (order_id, status_to, changed_by, reason, metadata)
  SELECT :oid, 'pending', 'pgbench', 'awaiting stock', '{}'::jsonb
  WHERE EXISTS (SELECT FROM ready)
), s AS (
  INSERT INTO order_sagas (order_id, checkout_id, step, deadline_at, payment_method_type, payment_token,
                           payment_attempts, created_at, updated_at)
  SELECT :oid, NULL, 'reservation', statement_timestamp() + interval '120 seconds', NULL, NULL, 0, now(), now()
  WHERE EXISTS (SELECT FROM ready)
  RETURNING deadline_at
), k AS (
  INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id)
  SELECT :cid, CAST(NULL AS varchar), NULL, CAST(:oid AS uuid)
  WHERE NULL IS NOT NULL AND EXISTS (SELECT FROM ready)
), v AS (
  INSERT INTO outbox_aggregate_version AS v (aggregate_id, aggregate_type, version)
  SELECT :oid, 'order', 1
  WHERE EXISTS (SELECT FROM ready)
  ON CONFLICT (aggregate_id) DO UPDATE SET version = v.version + 1
  RETURNING version
), e AS (
  INSERT INTO event_store (id, aggregate_id, aggregate_type, event_type, event_data, event_version, schema_version,
                           min_reader_version, correlation_id)
  SELECT CAST(:eid AS uuid), CAST(:oid AS uuid), 'order', 'order.benchmarked', CAST(:event_data AS jsonb), v.version, 1,
         1, CAST(:rid AS uuid)
  FROM v
), a AS (
  INSERT INTO data_access_log (id, user_id, table_name, operation, record_id, customer_id, accessed_at)
  SELECT CAST(:logid AS uuid), 'customer:' || :cid, 'orders', 'INSERT', CAST(:oid AS varchar), :cid, now()
  WHERE CAST(:logid AS uuid) IS NOT NULL AND EXISTS (SELECT FROM ready)
)
SELECT (SELECT array_agg(id ORDER BY id) FROM i) AS item_ids, (SELECT deadline_at FROM s) AS deadline_at, known.* FROM known;
