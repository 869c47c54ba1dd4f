-- Roles and databases for the compose stack (the local stack runs the same in infra/postgres.py).
CREATE ROLE debezium LOGIN REPLICATION PASSWORD 'debezium-local-pw';
CREATE ROLE catalog_svc LOGIN PASSWORD 'catalog-local-pw';
CREATE DATABASE catalog_db OWNER catalog_svc;
REVOKE ALL ON DATABASE catalog_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE catalog_db TO catalog_svc;
GRANT CONNECT ON DATABASE catalog_db TO debezium;
\connect catalog_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
CREATE ROLE customer_svc LOGIN PASSWORD 'customer-local-pw';
CREATE DATABASE customer_db OWNER customer_svc;
REVOKE ALL ON DATABASE customer_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE customer_db TO customer_svc;
GRANT CONNECT ON DATABASE customer_db TO debezium;
\connect customer_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
CREATE ROLE checkout_svc LOGIN PASSWORD 'checkout-local-pw';
CREATE DATABASE checkout_db OWNER checkout_svc;
REVOKE ALL ON DATABASE checkout_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE checkout_db TO checkout_svc;
GRANT CONNECT ON DATABASE checkout_db TO debezium;
\connect checkout_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
CREATE ROLE order_svc LOGIN PASSWORD 'order-local-pw';
CREATE DATABASE order_db OWNER order_svc;
REVOKE ALL ON DATABASE order_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE order_db TO order_svc;
GRANT CONNECT ON DATABASE order_db TO debezium;
\connect order_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
CREATE ROLE payment_svc LOGIN PASSWORD 'payment-local-pw';
CREATE DATABASE payment_db OWNER payment_svc;
REVOKE ALL ON DATABASE payment_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE payment_db TO payment_svc;
GRANT CONNECT ON DATABASE payment_db TO debezium;
\connect payment_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
CREATE ROLE warehouse_svc LOGIN PASSWORD 'warehouse-local-pw';
CREATE DATABASE warehouse_db OWNER warehouse_svc;
REVOKE ALL ON DATABASE warehouse_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE warehouse_db TO warehouse_svc;
GRANT CONNECT ON DATABASE warehouse_db TO debezium;
\connect warehouse_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
CREATE ROLE returns_svc LOGIN PASSWORD 'returns-local-pw';
CREATE DATABASE return_db OWNER returns_svc;
REVOKE ALL ON DATABASE return_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE return_db TO returns_svc;
GRANT CONNECT ON DATABASE return_db TO debezium;
\connect return_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
CREATE ROLE analytics_svc LOGIN PASSWORD 'analytics-local-pw';
CREATE DATABASE analytics_db OWNER analytics_svc;
REVOKE ALL ON DATABASE analytics_db FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE analytics_db TO analytics_svc;
GRANT CONNECT ON DATABASE analytics_db TO debezium;
\connect analytics_db
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO debezium;
\connect postgres
