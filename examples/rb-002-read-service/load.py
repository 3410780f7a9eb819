"""A bounded load generator for the read service: `--rate` requests a second for at most
`--duration` seconds, at most `--concurrency` in flight, in the mix a shop sees (the popular
list most, order histories of random customers, customer pages).

    python load.py --url http://127.0.0.1:8080 --rate 40 --duration 300
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import aiohttp

MIX = (("/popular", 5), ("/history/{id}", 3), ("/customers/{id}", 2))
CUSTOMERS = 20_000


async def run(url: str, *, rate: float, duration: float, concurrency: int) -> None:
    paths = [p for p, weight in MIX for _ in range(weight)]
    slots = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def one(path: str) -> None:
            try:
                async with session.get(url + path) as response:
                    await response.read()
            except (aiohttp.ClientError, TimeoutError):
                pass
            finally:
                slots.release()

        end = time.monotonic() + duration
        tasks = set()
        while time.monotonic() < end:
            await slots.acquire()   # over `concurrency` in flight: the rate waits
            path = random.choice(paths).format(id=random.randint(1, CUSTOMERS))
            task = asyncio.create_task(one(path))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=40)
    parser.add_argument("--duration", type=float, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(run(args.url, rate=args.rate, duration=args.duration,
                    concurrency=args.concurrency))


if __name__ == "__main__":
    main()
