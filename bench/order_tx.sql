-- pgbench: the inserts of placing one order (1 order, 2 items, 1 status history row, the saga row waiting
-- on the reservation, 1 outbox row with its per-aggregate version), one statement each as the order
-- service sends them, in one transaction.
-- The write path's ceiling on this machine.
SELECT gen_random_uuid() AS oid, gen_random_uuid() AS cid, md5(random()::text) AS tag \gset
BEGIN;
INSERT INTO orders (id, order_number, customer_id, status, currency, subtotal, total_amount, payment_status,
                    created_at, updated_at)
VALUES (':oid', 'PGB-' || ':tag', ':cid', 'pending', 'USD', 30.00, 30.00, 'pending', now(), now());
INSERT INTO order_items (order_id, product_id, product_sku, product_name, quantity, unit_price, total_price)
VALUES (':oid', gen_random_uuid(), 'SKU-A', 'Bench item', 1, 10.00, 10.00),
       (':oid', gen_random_uuid(), 'SKU-B', 'Bench item', 2, 10.00, 20.00);
INSERT INTO order_status_history (order_id, status_to, changed_by, reason)
VALUES (':oid', 'pending', 'pgbench', 'awaiting stock');
INSERT INTO order_sagas (order_id, step, deadline_at, payment_attempts, created_at, updated_at)
VALUES (':oid', 'reservation', now() + interval '120 seconds', 0, now(), now());
WITH next AS (
  INSERT INTO outbox_aggregate_version AS v (aggregate_id, aggregate_type, version) VALUES (':oid', 'order', 1)
  ON CONFLICT (aggregate_id) DO UPDATE SET version = v.version + 1
  RETURNING version
)
INSERT INTO event_store (id, aggregate_id, aggregate_type, event_type, event_data, event_version)
SELECT gen_random_uuid(), ':oid', 'order', 'order.benchmarked', '{"total_amount": "30.00"}', next.version FROM next;
COMMIT;
