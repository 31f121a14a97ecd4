"""Reads every record of one topic with Confluent's Python client and its schema-registry
Avro deserializer, as another team's consumer would, and prints one JSON object per record:
{"partition", "offset", "schema_id", "value"}; datetimes (timestamp-millis) are printed as
UTC milliseconds. Then one last line, {"subject": ..., "subject_schema_ids": [...]}: the
schema ids of every version registered under the topic's own subject (topic name strategy,
"<topic>-value"), or an empty list when that subject does not exist.

Usage: decode_topic.py BROKERS REGISTRY_URL TOPIC COUNT [TIMEOUT_SECONDS]
Exits 1 when fewer than COUNT records arrive in time or a record does not decode.
"""

import datetime
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(value):
    """JSON-friendly: timestamp-millis come back as datetimes, bytes as bytes."""
    if isinstance(value, datetime.datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def subject_schema_ids(registry, subject):
    try:
        versions = registry.get_versions(subject)
    except SchemaRegistryError as e:
        if e.http_status_code == 404:
            return []
        raise
    return sorted(registry.get_version(subject, v).schema_id for v in versions)


def main():
    brokers, registry_url, topic, count = sys.argv[1:5]
    count = int(count)
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
    # A request timeout: the client's default is none, and a registry that never answers
    # would hang the test (the client retries a timed-out request). The topic name strategy
    # is what we register under; the client's default, ASSOCIATED, first asks the
    # registry's /associations API, which Apicurio 3.3 answers 404 (then it falls back).
    registry = SchemaRegistryClient({"url": registry_url, "timeout": 10})
    deserialize = AvroDeserializer(registry, conf={"subject.name.strategy.type": "TOPIC"})
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"python-reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            payload = message.value()
            value = deserialize(payload, SerializationContext(topic, MessageField.VALUE))
            record = {
                "partition": message.partition(),
                "offset": message.offset(),
                "schema_id": int.from_bytes(payload[1:5], "big"),
                "value": plain(value),
            }
            print(json.dumps(record, sort_keys=True))
            seen += 1
    finally:
        consumer.close()
    subject = f"{topic}-value"
    print(json.dumps({"subject": subject, "subject_schema_ids": subject_schema_ids(registry, subject)}))
    if seen < count:
        print(f"only {seen} of {count} records arrived within {timeout}s", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
