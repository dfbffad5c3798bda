"""The obvious loop a user writes to score a Kafka topic (bench/stream/run.py's baseline (a)): poll one record ->
json.loads -> predict_proba on that one row -> produce the answer -> commit that record's offset synchronously.

It does not wait for the output's delivery before committing (no flush per record), so it is not even
at-least-once: the fastest form of the loop, which favours it. The outputs carry the same source-partition and
source-offset headers as `modelserver stream`'s, so the benchmark joins them to their inputs the same way.
Runs until SIGTERM: `python bench/stream/naive.py BOOTSTRAP INPUT OUTPUT GROUP MODEL`.
"""

from __future__ import annotations

import json
import signal
import sys
from types import FrameType

import joblib
from confluent_kafka import Consumer, Producer

N_FEATURES = 20


def main() -> None:
    bootstrap, input_topic, output_topic, group, model_path = sys.argv[1:6]
    model = joblib.load(model_path)
    classes = [str(c) for c in model.classes_]
    names = [f"f{i}" for i in range(N_FEATURES)]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})  # fmt: skip
    producer = Producer({"bootstrap.servers": bootstrap})
    consumer.subscribe([input_topic])
    running = True

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    while running:
        message = consumer.poll(0.1)
        if message is None or message.error() is not None:
            continue
        record = json.loads(message.value() or b"null")
        proba = model.predict_proba([[record[name] for name in names]])[0]
        best = int(proba.argmax())
        value = json.dumps(
            {"prediction": classes[best], "probabilities": dict(zip(classes, proba.tolist(), strict=True))}
        )
        headers: list[tuple[str, str | bytes | None]] = [("source-partition", str(message.partition()).encode()),
                   ("source-offset", str(message.offset()).encode())]  # fmt: skip
        producer.produce(output_topic, value.encode(), message.key(), headers=headers)
        producer.poll(0)
        consumer.commit(message=message, asynchronous=False)
    producer.flush(10)
    consumer.close()


if __name__ == "__main__":
    main()
