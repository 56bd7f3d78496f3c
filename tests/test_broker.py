"""The broker the celery executor publishes to: the test Redis (scripts/test-redis.sh) carries a message through
kombu, Celery's messaging library, and each test gets a database of its own, empty."""

from __future__ import annotations

import redis
from kombu import Connection, Exchange, Message, Queue

BROKER_TIMEOUT_S = 10


def test_a_published_message_is_consumed_once_and_leaves_the_queue(broker_url):
    queue = Queue("nodeops-test", Exchange("nodeops-test", type="direct"), routing_key="nodeops-test")
    received: list[object] = []

    def receive(body: object, message: Message) -> None:
        received.append(body)
        message.ack()

    with Connection(broker_url, connect_timeout=BROKER_TIMEOUT_S) as connection:
        with connection.Producer() as producer:
            producer.publish(
                {"task_id": 7, "bk_host_ids": [1, 2]},
                exchange=queue.exchange,
                routing_key=queue.routing_key,
                declare=[queue],
                serializer="json",
            )
        with connection.Consumer(queue, callbacks=[receive], accept=["json"]):
            connection.drain_events(timeout=BROKER_TIMEOUT_S)
        assert received == [{"task_id": 7, "bk_host_ids": [1, 2]}]
        assert queue(connection.default_channel).get() is None  # acknowledged: not delivered again


def test_each_test_gets_an_empty_database_of_its_own(broker_url, broker_admin_url):
    assert broker_url != broker_admin_url  # database 0 holds the claims
    with redis.Redis.from_url(broker_url) as client:
        assert client.dbsize() == 0
        client.set("left-behind", "by this test")
    with redis.Redis.from_url(broker_admin_url) as admin:
        number = broker_url.rsplit("/", 1)[1]
        assert admin.get(f"nodeops-test:database:{number}") is not None  # claimed while the test runs
