"""adapters.lanes: a sink's one throttle. Latest state wins, one request per interval per lane, settle drops."""

from __future__ import annotations

import asyncio

from adapters.lanes import Lanes

WAIT_LIMIT = 5.0


class Board:
    """Items whose wanted text the lane shows; records (item, text, loop time) per request."""

    def __init__(self) -> None:
        self.wanted: dict[int, str] = {}
        self.shown: dict[int, str] = {}
        self.sent: list[tuple[int, str, float]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.changed = asyncio.Condition()

    def due(self, item: int) -> bool:
        return self.wanted.get(item) != self.shown.get(item)

    async def apply(self, item: int) -> None:
        """As the sinks do: called for every marked item, a request only for what is due."""
        if not self.due(item):
            return
        await self.gate.wait()
        text = self.wanted[item]
        self.shown[item] = text
        async with self.changed:
            self.sent.append((item, text, asyncio.get_running_loop().time()))
            self.changed.notify_all()

    async def wait(self, count: int) -> None:
        async with asyncio.timeout(WAIT_LIMIT), self.changed:
            await self.changed.wait_for(lambda: len(self.sent) >= count)


async def test_a_lane_shows_the_latest_state_at_most_once_per_interval() -> None:
    board = Board()
    lanes = Lanes[str](board.due, board.apply, 0.2)
    board.wanted[1] = "#5"
    lanes.mark("chat", 1)
    await board.wait(1)
    for text in ("#4", "#3", "#2"):
        board.wanted[1] = text
        lanes.mark("chat", 1)
    board.wanted[2] = "#9"  # another item of the same lane waits its turn in the lane
    lanes.mark("chat", 2)
    await asyncio.sleep(0.05)
    assert [text for _, text, _ in board.sent] == ["#5"]
    await board.wait(3)
    assert [(item, text) for item, text, _ in board.sent] == [(1, "#5"), (1, "#2"), (2, "#9")]
    assert board.sent[1][2] - board.sent[0][2] >= 0.15 and board.sent[2][2] - board.sent[1][2] >= 0.15
    await lanes.close()


async def test_lanes_are_paced_apart_and_nothing_due_costs_no_request() -> None:
    board = Board()
    lanes = Lanes[str](board.due, board.apply, 30.0)
    board.wanted.update({1: "a", 2: "b"})
    lanes.mark("one", 1)
    lanes.mark("two", 2)  # another chat: not held behind the first
    await board.wait(2)
    lanes.mark("one", 1)  # nothing new to show: no request, no wait
    await asyncio.sleep(0.05)
    assert len(board.sent) == 2
    await lanes.close()


async def test_settle_drops_what_waits_and_waits_for_what_is_being_shown() -> None:
    board = Board()
    lanes = Lanes[str](board.due, board.apply, 30.0)
    board.wanted[1] = "#3"
    lanes.mark("chat", 1)
    await board.wait(1)
    board.wanted[1] = "#2"
    lanes.mark("chat", 1)  # waits 30 s for the lane's pace
    await lanes.settle(1)  # the job's result comes next: "#2" must never be shown
    board.wanted[2], board.gate = "x", asyncio.Event()
    lanes.mark("other", 2)
    await asyncio.sleep(0.01)  # "x" is being shown, held at the gate
    settling = asyncio.create_task(lanes.settle(2))
    await asyncio.sleep(0.01)
    assert not settling.done()
    board.gate.set()
    await settling
    assert [text for _, text, _ in board.sent] == ["#3", "x"]
    await lanes.close()
