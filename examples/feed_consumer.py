"""A small consumer of hookline's change feed (docs/feed.md).

    pip install nats-py
    python3 examples/feed_consumer.py --filter 'hookline.changes.*.*.bounced'

A durable pull consumer of its own on WEBHOOK_CHANGES: each change is handled, then acked, so a
crash redelivers what was not handled. Drop repeats by change_id (the feed's dedup window is two
minutes; a change relayed again later has the same id).
"""

import argparse
import asyncio
import json

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default="nats://127.0.0.1:4222")
    p.add_argument("--stream", default="WEBHOOK_CHANGES")
    p.add_argument("--durable", default="example-app")
    p.add_argument("--filter", default="hookline.changes.>")
    p.add_argument("--count", type=int, default=0, help="stop after this many changes (0: never)")
    args = p.parse_args()

    nc = await nats.connect(args.server)
    js = nc.jetstream()
    await js.add_consumer(
        args.stream,
        ConsumerConfig(
            durable_name=args.durable,
            filter_subject=args.filter,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
        ),
    )
    sub = await js.pull_subscribe_bind(args.durable, stream=args.stream)
    seen = 0
    while args.count == 0 or seen < args.count:
        try:
            msgs = await sub.fetch(100, timeout=5)
        except nats.errors.TimeoutError:
            continue
        for m in msgs:
            change = json.loads(m.data)
            handle(change)
            await m.ack()
            seen += 1
    await nc.close()


def handle(change: dict) -> None:
    """Your application's part: here, one line per change."""
    if change["kind"] == "batch_completed":
        counts = change["batch"]["counts"]
        print(f"batch {change['batch_id']} complete: {json.dumps(counts)}", flush=True)
    else:
        r = change["recipient"]
        print(
            f"{change['kind']} {r['provider']}/{r['message_id']} "
            f"{change['old_status']} -> {change['new_status']} at {change['occurred_at']}",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
