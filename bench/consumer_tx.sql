-- pgbench: what the consumer runtime asks of PostgreSQL for one batch of :batch order.created events,
-- one statement each as the runtime sends them (outbox/inbox.py _CLAIM), in one transaction: the inbox
-- claim (with its real indexes; event and aggregate ids time-ordered, as the outbox and the services make
-- them), its columns arriving as array literals in text that PostgreSQL parses (the runtime sends them so;
-- here they are made by the first CTE, a little work the runtime does not ask of the server), answering the
-- ids already claimed before, and, in the same statement, the lookup of versions applied before (the
-- runtime asks only for aggregates whose first event in the batch is past version 1, so none here); then
-- the customer-stats upsert of the customers in the batch (apps/customer/consumers.py _APPLY: a row per
-- customer and currency; the bench's orders are all USD), then the commit. The consumer's durable ceiling on
-- this machine: tps x batch events/s. Variables: batch, customers, run (set by bench/consumer.py with -D).
BEGIN;
WITH literals AS (
  SELECT '{' || string_agg(lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') || '7'
                           || lpad(to_hex(g), 3, '0') || substr(md5(random()::text), 1, 16), ',') || '}' AS event_ids,
         '{' || string_agg(lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') || '7'
                           || lpad(to_hex(g), 3, '0') || substr(md5(random()::text), 1, 16), ',') || '}' AS aggregate_ids,
         '{' || string_agg('"order.created"', ',') || '}' AS event_types,
         '{' || string_agg('1', ',') || '}' AS event_versions,
         '{' || string_agg('"bench.order"', ',') || '}' AS topics,
         '{' || string_agg('0', ',') || '}' AS partitions,
         '{' || string_agg(g::text, ',') || '}' AS offsets
  FROM generate_series(1, :batch) AS g
), input AS (
  SELECT t.* FROM literals, unnest(CAST(literals.event_ids AS uuid[]), CAST(literals.aggregate_ids AS uuid[]),
                                   CAST(literals.event_types AS text[]), CAST(literals.event_versions AS int[]),
                                   CAST(literals.topics AS text[]), CAST(literals.partitions AS int[]),
                                   CAST(literals.offsets AS bigint[]))
       AS t(event_id, aggregate_id, event_type, event_version, topic, kafka_partition, kafka_offset)
), claimed AS (
  INSERT INTO inbox AS i (consumer_group, event_id, aggregate_id, event_type, event_version, outcome,
                          topic, kafka_partition, kafka_offset)
  SELECT 'bench-durable-' || :run, t.event_id, t.aggregate_id, t.event_type, t.event_version, 'applied',
         t.topic, t.kafka_partition, t.kafka_offset
  FROM input AS t
  ON CONFLICT (consumer_group, event_id) DO NOTHING
  RETURNING event_id
), previous AS (
  SELECT aggregate_id, max(event_version) AS version FROM inbox
  WHERE consumer_group = 'bench-durable-' || :run AND aggregate_id = ANY(CAST('{}' AS uuid[]))
    AND outcome = 'applied'
  GROUP BY aggregate_id
)
SELECT d.event_id, CAST(NULL AS uuid) AS aggregate_id, CAST(NULL AS int) AS version
FROM (SELECT event_id FROM input EXCEPT ALL SELECT event_id FROM claimed) AS d
UNION ALL
SELECT CAST(NULL AS uuid), aggregate_id, version FROM previous;
INSERT INTO customer_stats AS s (customer_id, currency, orders_count, cancelled_count, spent, last_order_at)
SELECT 'bench-durable-' || :run || '-' || c, 'USD', count(*), 0, 9.99 * count(*), now()
FROM (SELECT (random() * :customers)::int AS c FROM generate_series(1, :batch)) AS drawn
GROUP BY c ORDER BY c
ON CONFLICT (customer_id, currency) DO UPDATE SET
    orders_count = s.orders_count + excluded.orders_count,
    cancelled_count = s.cancelled_count + excluded.cancelled_count,
    spent = s.spent + excluded.spent,
    last_order_at = GREATEST(s.last_order_at, excluded.last_order_at),
    updated_at = now();
COMMIT;
