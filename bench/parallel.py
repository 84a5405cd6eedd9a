"""Run requests from several threads, each on its own connection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from bench.client import Client

Item = TypeVar("Item")


def run_in_threads(
    url: str,
    threads: int,
    items: Sequence[Item],
    action: Callable[[Client, Item], None],
) -> None:
    """Call `action(client, item)` for every item, spread over `threads`.

    Thread i takes items i, i + threads, ...; the first failure is raised
    once every thread has stopped.
    """

    def work(share: Sequence[Item]) -> None:
        with Client(url) as client:
            for item in share:
                action(client, item)

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(work, items[i::threads]) for i in range(threads)]
    for future in futures:
        future.result()
