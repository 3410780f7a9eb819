"""A bounded sender of webhook deliveries: `count` valid events, a share of them delivered
again (the re-sending of a provider that saw no timely answer), and a share of malformed
deliveries. It prints (or returns) what it sent, for an accounting of what became of each.

    python sender.py --url http://127.0.0.1:8080/webhooks --count 1000 --duplicates 0.5 \\
        --malformed 0.05 --rate 200 --prefix storm
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Sent:
    valid: list[str] = field(default_factory=list)     # event ids, each sent at least once
    duplicates: int = 0                                # extra deliveries of those ids
    malformed: int = 0
    refused: int = 0                                   # deliveries the receiver did not take


def deliveries(*, count: int, duplicates: float, malformed: float, prefix: str,
               seed: int) -> tuple[list[str], Sent]:
    """The bodies in sending order: each duplicate comes a little after its original."""
    rng = random.Random(seed)
    bodies: list[str] = []
    sent = Sent()
    for n in range(count):
        event_id = f"{prefix}-{n}"
        body = json.dumps({"id": event_id, "type": "order.paid", "payload": {"n": n}})
        bodies.append(body)
        sent.valid.append(event_id)
        if rng.random() < duplicates:
            bodies.insert(rng.randint(len(bodies) - 1, len(bodies)), body)
            sent.duplicates += 1
        if rng.random() < malformed:
            bodies.append(json.dumps({"type": "order.paid", "payload": f"broken {n}"}))
            sent.malformed += 1
    return bodies, sent


async def send(url: str, *, count: int, duplicates: float = 0.0, malformed: float = 0.0,
               rate: float = 200.0, prefix: str = "event", seed: int = 1) -> Sent:
    bodies, sent = deliveries(count=count, duplicates=duplicates, malformed=malformed,
                              prefix=prefix, seed=seed)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for body in bodies:
            try:
                async with session.post(url, data=body,
                                        headers={"Content-Type": "application/json"}) as r:
                    if r.status >= 300:
                        sent.refused += 1
            except (TimeoutError, aiohttp.ClientError):
                sent.refused += 1
            await asyncio.sleep(1 / rate)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--duplicates", type=float, default=0.0)
    parser.add_argument("--malformed", type=float, default=0.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--prefix", default="event")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sent = asyncio.run(send(args.url, count=args.count, duplicates=args.duplicates,
                            malformed=args.malformed, rate=args.rate, prefix=args.prefix,
                            seed=args.seed))
    print(json.dumps(sent.__dict__))


if __name__ == "__main__":
    main()
