"""The services, their ports and databases: the one list that infra, connectors and apps agree on.

Its variables are read when asked, not once at start: infra's commands and the tests point them elsewhere
within one process (a scratch cluster's ``PG_PORT``), and most names are built per service or process
(``<SERVICE>_PORT``, ``_WORKERS``, ``_DB_PASSWORD``, ``_DATABASE_URL``), which no settings field can name. The
numbers go through apps/common/settings.py's ``read_env``: a value that is not one, a port outside 1 to
65535, or fewer than one worker, is refused naming the variable (``PG_PORT='5432x': not an integer``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from apps.common.settings import read_env
from outbox.config import kafka_bootstrap, topic_for

__all__ = ["BY_NAME", "SERVICES", "ServiceSpec", "kafka_bootstrap", "topic_for"]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A service as the platform sees it: name, HTTP port, database and login role."""

    name: str
    port: int
    database: str
    aggregates: tuple[str, ...]
    # uvicorn worker processes. One each, the order service too: on the 2-core reference machine two
    # order workers cost more per order than one (whole `just bench` runs alternated, session 24: order API
    # 4.26-4.75 vs 3.23-3.39 ms of CPU per order, PostgreSQL 7.2-7.6 vs 5.9-6.2 with half the connections,
    # 89-96 vs 112-116 orders/s, fixed-rate tails lower): at ~115 orders/s a worker is half a core busy.
    workers: int = 1

    def worker_count(self) -> int:
        """How many uvicorn workers serve this API (``<NAME>_WORKERS`` overrides): stack and pool agree. At least
        one: 0 means nothing here (it was taken as 1, silently, until session 34)."""
        return read_env(f"{self.name.upper()}_WORKERS", self.workers, minimum=1)

    @property
    def port_env(self) -> str:
        return f"{self.name.upper()}_PORT"

    def local_port(self) -> int:
        """The port the local stack serves this API on (``<NAME>_PORT`` overrides ``port``): the stack starts it
        there and the other services call it there, so both read it here."""
        return read_env(self.port_env, self.port, minimum=1, maximum=65535)

    @property
    def role(self) -> str:
        return f"{self.name}_svc"

    @property
    def publication(self) -> str:
        return f"{self.name}_outbox"

    @property
    def slot(self) -> str:
        return f"{self.name}_outbox"

    @property
    def password_env(self) -> str:
        return f"{self.name.upper()}_DB_PASSWORD"

    def password(self) -> str:
        # Local development default; production sets the variable from its secret store.
        return os.environ.get(self.password_env, f"{self.name}-local-pw")


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("catalog", 8001, "catalog_db", ("product", "category")),
    ServiceSpec("customer", 8002, "customer_db", ("customer",)),
    ServiceSpec("checkout", 8003, "checkout_db", ("checkout",)),
    ServiceSpec("order", 8004, "order_db", ("order",)),
    ServiceSpec("payment", 8005, "payment_db", ("payment",)),
    ServiceSpec("warehouse", 8006, "warehouse_db", ("inventory",)),
    ServiceSpec("returns", 8007, "return_db", ("return",)),
    ServiceSpec("analytics", 8008, "analytics_db", ("analytics",)),
)

BY_NAME = {spec.name: spec for spec in SERVICES}

CDC_ROLE = "debezium"
CDC_PASSWORD_ENV = "DEBEZIUM_DB_PASSWORD"


def cdc_password() -> str:
    return os.environ.get(CDC_PASSWORD_ENV, "debezium-local-pw")


def pg_host() -> str:
    return os.environ.get("PGHOST_OVERRIDE", "127.0.0.1")


def pg_port() -> int:
    return read_env("PG_PORT", 5432, minimum=1, maximum=65535)


def replica_port() -> int:
    """The streaming read replica's port (infra/replica.py; apps/common/read_routing.py reads from it)."""
    return read_env("PG_REPLICA_PORT", 5433, minimum=1, maximum=65535)


def connect_url() -> str:
    return os.environ.get("CONNECT_URL", "http://127.0.0.1:8083")


def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def database_url(spec: ServiceSpec, driver: str = "postgresql+asyncpg") -> str:
    return os.environ.get(
        f"{spec.name.upper()}_DATABASE_URL",
        f"{driver}://{spec.role}:{spec.password()}@{pg_host()}:{pg_port()}/{spec.database}",
    )


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """A process of ours beside the services' APIs and consumers (a provider sandbox, a worker, a sweeper).

    The stack runs ``python -m <module> --port <port>`` and waits for ``GET /health`` on that port;
    ``just start|stop|restart <name>`` controls it like any other component.
    """

    name: str
    module: str
    port: int
    # Its CPU priority class (infra/priority.py): "request" if an HTTP client waits on it, else "pipeline".
    priority: str = "pipeline"

    @property
    def port_env(self) -> str:
        return f"{self.name.upper().replace('-', '_')}_PORT"

    def local_port(self) -> int:
        """The port the local stack runs it on (``port_env`` overrides ``port``), as ``ServiceSpec.local_port``."""
        return read_env(self.port_env, self.port, minimum=1, maximum=65535)


PROCESSES: tuple[ProcessSpec, ...] = (
    # The card-provider sandbox the payment service calls (a real provider replaces it: PAYMENT_PROVIDER_URL).
    ProcessSpec("payment-sandbox", "apps.payment_sandbox", 8009, priority="request"),
    # Calls the provider for the payment ledger's pending operations (service port + 200).
    ProcessSpec("payment-worker", "apps.payment.worker", 8205),
    # Compensates order sagas whose step was not answered before its deadline (service port + 200).
    ProcessSpec("order-sweeper", "apps.order.sweeper", 8204),
    # Expires return requests nobody approved or shipped back in time (service port + 200).
    ProcessSpec("returns-sweeper", "apps.returns.sweeper", 8207),
    # The order service's read models of customers and products (consumer group order-references; + 300).
    ProcessSpec("order-references", "apps.order.references", 8304),
)
