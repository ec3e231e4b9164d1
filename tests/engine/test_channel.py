"""Channel: queue.Queue plus moving several items under one lock."""

from __future__ import annotations

import queue
import threading

import pytest

from engine.channel import Channel

END = object()


def test_get_many_takes_up_to_the_limit_in_order():
    channel = Channel(10)
    for i in range(5):
        channel.put(i)
    assert channel.get_many(3, timeout=0.01) == [0, 1, 2]
    assert channel.get_many(10, timeout=0.01) == [3, 4]
    assert channel.qsize() == 0


def test_get_many_stops_right_after_the_sentinel():
    channel = Channel()
    for item in (1, END, END, 2):
        channel.put(item)
    assert channel.get_many(10, timeout=0.01, until=END) == [1, END]
    assert channel.get_many(10, timeout=0.01, until=END) == [END]
    assert channel.get_many(10, timeout=0.01, until=END) == [2]


def test_get_many_raises_empty_when_nothing_comes():
    with pytest.raises(queue.Empty):
        Channel(3).get_many(5, timeout=0.01)


def test_put_many_puts_only_what_fits_and_says_how_many():
    channel = Channel(3)
    assert channel.put_many([1, 2, 3, 4, 5], timeout=0.01) == 3
    assert channel.put_many([4, 5], timeout=0.01) == 0  # still full after waiting
    assert channel.get_many(10, timeout=0.01) == [1, 2, 3]
    assert channel.put_many([1, 2, 3, 4, 5], start=3, timeout=0.01) == 2
    assert channel.get_many(10, timeout=0.01) == [4, 5]


def test_unbounded_put_many_takes_everything():
    channel = Channel()
    assert channel.put_many(list(range(1000))) == 1000
    assert channel.qsize() == 1000


def test_a_waiting_putter_is_woken_when_get_many_frees_room():
    channel = Channel(2)
    channel.put_many([1, 2])
    put = threading.Event()

    def putter():
        while channel.put_many([3], timeout=5) == 0:
            pass
        put.set()

    thread = threading.Thread(target=putter)
    thread.start()
    assert channel.get_many(2, timeout=1) == [1, 2]
    assert put.wait(5)
    thread.join()
    assert channel.get(timeout=1) == 3


def test_a_waiting_getter_is_woken_by_put_many():
    channel = Channel(5)
    got: list[list[int]] = []
    thread = threading.Thread(target=lambda: got.append(channel.get_many(5, timeout=5)))
    thread.start()
    channel.put_many([7, 8])
    thread.join()
    assert got and got[0][0] == 7
