-- Roles and databases for the compose stack, generated from infra/postgres.py (setup_statements):
-- do not edit; run `python -m infra.postgres initdb-sql > infra/compose/initdb.sql`.
DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'debezium') THEN CREATE ROLE debezium LOGIN REPLICATION PASSWORD 'debezium-local-pw'; ELSE ALTER ROLE debezium LOGIN REPLICATION PASSWORD 'debezium-local-pw'; END IF; END$$;
DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'catalog_svc') THEN CREATE ROLE catalog_svc LOGIN PASSWORD 'catalog-local-pw'; ELSE ALTER ROLE catalog_svc LOGIN PASSWORD 'catalog-local-pw'; END IF; END$$;
ALTER ROLE catalog_svc SET log_error_verbosity = terse;
CREATE DATABASE catalog_db OWNER catalog_svc;
REVOKE ALL ON DATABASE catalog_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE catalog_db TO catalog_svc;
GRANT CONNECT ON DATABASE catalog_db TO debezium;
\connect catalog_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'customer_svc') THEN CREATE ROLE customer_svc LOGIN PASSWORD 'customer-local-pw'; ELSE ALTER ROLE customer_svc LOGIN PASSWORD 'customer-local-pw'; END IF; END$$;
ALTER ROLE customer_svc SET log_error_verbosity = terse;
CREATE DATABASE customer_db OWNER customer_svc;
REVOKE ALL ON DATABASE customer_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE customer_db TO customer_svc;
GRANT CONNECT ON DATABASE customer_db TO debezium;
\connect customer_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'checkout_svc') THEN CREATE ROLE checkout_svc LOGIN PASSWORD 'checkout-local-pw'; ELSE ALTER ROLE checkout_svc LOGIN PASSWORD 'checkout-local-pw'; END IF; END$$;
ALTER ROLE checkout_svc SET log_error_verbosity = terse;
CREATE DATABASE checkout_db OWNER checkout_svc;
REVOKE ALL ON DATABASE checkout_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE checkout_db TO checkout_svc;
GRANT CONNECT ON DATABASE checkout_db TO debezium;
\connect checkout_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'order_svc') THEN CREATE ROLE order_svc LOGIN PASSWORD 'order-local-pw'; ELSE ALTER ROLE order_svc LOGIN PASSWORD 'order-local-pw'; END IF; END$$;
ALTER ROLE order_svc SET log_error_verbosity = terse;
CREATE DATABASE order_db OWNER order_svc;
REVOKE ALL ON DATABASE order_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE order_db TO order_svc;
GRANT CONNECT ON DATABASE order_db TO debezium;
\connect order_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'payment_svc') THEN CREATE ROLE payment_svc LOGIN PASSWORD 'payment-local-pw'; ELSE ALTER ROLE payment_svc LOGIN PASSWORD 'payment-local-pw'; END IF; END$$;
ALTER ROLE payment_svc SET log_error_verbosity = terse;
CREATE DATABASE payment_db OWNER payment_svc;
REVOKE ALL ON DATABASE payment_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE payment_db TO payment_svc;
GRANT CONNECT ON DATABASE payment_db TO debezium;
\connect payment_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'warehouse_svc') THEN CREATE ROLE warehouse_svc LOGIN PASSWORD 'warehouse-local-pw'; ELSE ALTER ROLE warehouse_svc LOGIN PASSWORD 'warehouse-local-pw'; END IF; END$$;
ALTER ROLE warehouse_svc SET log_error_verbosity = terse;
CREATE DATABASE warehouse_db OWNER warehouse_svc;
REVOKE ALL ON DATABASE warehouse_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE warehouse_db TO warehouse_svc;
GRANT CONNECT ON DATABASE warehouse_db TO debezium;
\connect warehouse_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'returns_svc') THEN CREATE ROLE returns_svc LOGIN PASSWORD 'returns-local-pw'; ELSE ALTER ROLE returns_svc LOGIN PASSWORD 'returns-local-pw'; END IF; END$$;
ALTER ROLE returns_svc SET log_error_verbosity = terse;
CREATE DATABASE return_db OWNER returns_svc;
REVOKE ALL ON DATABASE return_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE return_db TO returns_svc;
GRANT CONNECT ON DATABASE return_db TO debezium;
\connect return_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'analytics_svc') THEN CREATE ROLE analytics_svc LOGIN PASSWORD 'analytics-local-pw'; ELSE ALTER ROLE analytics_svc LOGIN PASSWORD 'analytics-local-pw'; END IF; END$$;
ALTER ROLE analytics_svc SET log_error_verbosity = terse;
CREATE DATABASE analytics_db OWNER analytics_svc;
REVOKE ALL ON DATABASE analytics_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE analytics_db TO analytics_svc;
GRANT CONNECT ON DATABASE analytics_db TO debezium;
\connect analytics_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
