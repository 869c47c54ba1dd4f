"""A database's refusal names the values it refused: PostgreSQL's DETAIL of a NOT NULL or CHECK violation
shows the whole row ("Failing row contains (...)"), a unique violation the key ("Key (email)=(...) already
exists"), and asyncpg's encoding error the argument. Real violations on the real PostgreSQL, carrying an
email, a street and a name, go through every place such text is written, and none of those values is found:

- an API's answers and its JSON log lines (apps/common/error_handlers.py, apps/common/logs.py): a 409, a 400
  and a 500 whose own message quotes the database's text (logged with its traceback);
- a consumer's dead letter (its ``dlq.*`` headers: outbox.decoding), `just dlq list`, the consumer's log;
- PostgreSQL's own server log (the service roles log errors without their DETAIL: infra/postgres.py).

The dead letter's record itself keeps the event as it was sent, so that it can be redriven: the event is
the producer's, not the database's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from litestar import Litestar, post
from litestar.params import FromPath, JSONBody
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from apps.common.error_handlers import exception_handlers
from apps.common.logs import JsonLogFormatter
from apps.common.topology import BY_NAME, database_url
from outbox import dlq
from outbox.dead_letters import dead_letter_topic
from tests.support.consumers import ThrowawayConsumer
from tests.support.db import connect
from tests.support.kafka import TopicTail
from tests.support.log_files import LOGS, sizes, written_since
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")

POSTGRES_LOG = LOGS / "postgres.log"


def _person() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"email": f"dberr-{tag}@example.com", "street": f"{tag} Hidden Lane", "name": f"Zelda Quist{tag}"}


def _leaks(person: dict[str, str], texts: dict[str, str]) -> dict[str, list[str]]:
    """Where (by the texts' names) each of the person's values was found."""
    found = {label: [where for where, written in texts.items() if value in written] for label, value in person.items()}
    return {label: places for label, places in found.items() if places}


@contextlib.contextmanager
def _json_log() -> Iterator[io.StringIO]:
    """The services' error log ("apps.http") as JSON lines, the services' formatter, into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLogFormatter("test"))
    logger = logging.getLogger("apps.http")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextlib.asynccontextmanager
async def _customer_table() -> AsyncIterator[str]:
    """A table of the customer database with a unique email, a street that must be a number and a name
    that must be there."""
    table = f"dberr_{uuid.uuid4().hex[:10]}"
    conn = await connect("customer")
    try:
        await conn.execute(
            f"CREATE TABLE {table} (id int, email text UNIQUE, street text CHECK (street ~ '^[0-9]+$'), "
            "name text NOT NULL)"
        )
        yield table
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


def _app(table: str) -> Litestar:
    """Routes writing ``table`` as the customer service's role, with the services' exception handlers."""
    statements = {
        "insert": f"INSERT INTO {table} (id, email, street, name) VALUES (:id, :email, :street, :name)",
        "by_id": f"SELECT id FROM {table} WHERE id = :id",
    }
    engines: list[AsyncEngine] = []

    async def connect_engine() -> None:  # on the app's own event loop
        engines.append(create_async_engine(database_url(BY_NAME["customer"]), pool_size=1))

    async def dispose_engine() -> None:
        await engines[0].dispose()

    async def execute(statement: str, data: dict[str, Any]) -> None:
        async with engines[0].begin() as conn:
            await conn.execute(text(statements[statement]), data)

    @post("/rows/{statement:str}", status_code=201)
    async def write(statement: FromPath[str], data: JSONBody[dict[str, Any]]) -> None:
        await execute(statement, data)

    @post("/quoting", status_code=201)
    async def quoting(data: JSONBody[dict[str, Any]]) -> None:
        """A bug that quotes the database's text in its own message (a 500, logged with its traceback)."""
        failure = ""
        try:
            await execute("insert", data)
        except SQLAlchemyError as exc:
            failure = str(exc)
        raise RuntimeError(f"saving the row failed: {failure}")  # outside the except: no database error chained

    return Litestar(
        [write, quoting],
        exception_handlers=exception_handlers(),
        logging_config=None,
        on_startup=[connect_engine],
        on_shutdown=[dispose_engine],
    )


async def test_an_api_refusing_a_database_violation_answers_and_logs_no_value_it_carried() -> None:
    person = _person()
    before = sizes()
    row = {"id": 1, "email": person["email"], "street": "12", "name": "x"}
    async with _customer_table() as table, AsyncTestClient(_app(table)) as client:
        with _json_log() as log:
            assert (await client.post("/rows/insert", json=row)).status_code == 201
            answers = {
                "unique email": await client.post("/rows/insert", json={**row, "id": 2}),
                "street check": await client.post("/rows/insert", json={**row, "id": 3, "street": person["street"]}),
                "name not null": await client.post(
                    "/rows/insert", json={**row, "id": 4, "email": person["name"], "name": None}
                ),
                "argument": await client.post("/rows/by_id", json={"id": person["name"]}),
                "quoted": await client.post("/quoting", json={**row, "id": 5, "street": person["street"]}),
            }
        logged = log.getvalue()
    statuses = {case: answer.status_code for case, answer in answers.items()}
    assert statuses == {
        "unique email": 409,
        "street check": 409,
        "name not null": 409,
        "argument": 400,
        "quoted": 500,
    }
    # The log still says what went wrong, where and which constraint: only the values are gone.
    assert f"{table}_email_key" in logged and f"{table}_street_check" in logged and "Traceback" in logged
    assert logged.count("<redacted>") >= 5, logged
    texts = {f"answer {case}": answer.text for case, answer in answers.items()} | {"json log": logged}
    await asyncio.sleep(0.5)  # the server's log writer
    texts |= {path.name: written.decode(errors="replace") for path, written in written_since(before).items()}
    # PostgreSQL logged each refused statement (so the search below reads something), without its DETAIL.
    assert f"{table}_email_key" in texts[POSTGRES_LOG.name]
    assert not _leaks(person, texts), _leaks(person, texts)


async def test_a_consumer_refused_by_a_constraint_dead_letters_and_logs_no_value_of_the_row() -> None:
    person = _person()
    before = sizes()
    async with ThrowawayConsumer() as consumer:
        conn = await connect("customer")
        try:
            # A customer id has no spaces and is one customer's: the street breaks the first, an email sent
            # twice the second.
            await conn.execute(
                f'ALTER TABLE "{consumer.table}" ADD CONSTRAINT "{consumer.table}_no_space" '
                "CHECK (customer_id !~ '\\s'), ADD UNIQUE (customer_id)"
            )
        finally:
            await conn.close()
        letters = TopicTail(dead_letter_topic(consumer.group))
        consumer.start()
        street = consumer.produce(person["street"])
        first = consumer.produce(person["email"])
        again = consumer.produce(person["email"])
        expected = {street: "dead_lettered", first: "applied", again: "dead_lettered"}
        await eventually(lambda: _outcomes_are(consumer, expected), within=90, what="each event applied or lettered")
        wanted = {str(street), str(again)}
        seen = await asyncio.to_thread(letters.read_until, lambda got: wanted <= {r.headers.get("id") for r in got})
        letters.close()
        errors = {r.headers["id"]: r.headers["dlq.error"] for r in seen}
        assert "violates check constraint" in errors[str(street)] and "<redacted>" in errors[str(street)]
        assert "duplicate key value" in errors[str(again)] and "<redacted>" in errors[str(again)]
        listing = await asyncio.to_thread(_printed, lambda: dlq.list_dead_letters(consumer.group))
        texts = {f"letter {r.headers['id']} headers": repr(r.headers) for r in seen} | {"dlq list": listing}
        consumer.kill()
        texts["consumer log"] = consumer.log.read_text()
        assert "rejected" in texts["consumer log"]
    await asyncio.sleep(0.5)  # the server's log writer
    texts |= {path.name: written.decode(errors="replace") for path, written in written_since(before).items()}
    assert "violates check constraint" in texts[POSTGRES_LOG.name]
    assert not _leaks(person, texts), _leaks(person, texts)


async def _outcomes_are(consumer: ThrowawayConsumer, expected: dict[uuid.UUID, str]) -> bool:
    for event_id, outcome in expected.items():
        if await consumer.outcomes([event_id]) != [outcome]:
            return False
    return True


def _printed(command: Any) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        command()
    return out.getvalue()
