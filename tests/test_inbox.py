"""The inbox of platform events: kept until handled, handed back after a crash, redeliveries recognised."""

from __future__ import annotations

from bot.chats.inbox import MAX_ATTEMPTS, REMEMBER, Inbox
from bot.storage.sqlite import SQLiteStorage


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_an_event_is_held_until_done_and_a_redelivery_is_refused(store: SQLiteStorage) -> None:
    inbox = Inbox(store, Clock())
    assert await inbox.receive("telegram", 10, '{"update_id": 10}')
    assert not await inbox.receive("telegram", 10, '{"update_id": 10}')  # still being handled
    assert await inbox.receive("discord", 10, "{}")  # ids are per platform
    assert await inbox.unhandled("telegram") == 1
    await inbox.done("telegram", 10)
    assert await inbox.unhandled("telegram") == 0
    assert not await inbox.receive("telegram", 10, '{"update_id": 10}')  # handled: remembered, not redone
    row = await store.fetchone("SELECT payload FROM inbox WHERE platform = 'telegram' AND event_id = 10")
    assert row is not None and row["payload"] == ""  # what the user wrote is not kept once handled


async def test_a_new_process_takes_over_what_the_last_left_unhandled(store: SQLiteStorage) -> None:
    inbox = Inbox(store, Clock())
    for event_id in (3, 1, 2):
        await inbox.receive("telegram", event_id, f'{{"update_id": {event_id}}}')
    await inbox.done("telegram", 2)
    held = await inbox.take_over("telegram")
    assert [e.event_id for e in held] == [1, 3]  # oldest first, the handled one not again
    assert held[0].payload == '{"update_id": 1}'
    assert await inbox.take_over("discord") == []


async def test_an_event_is_handed_back_at_most_max_attempts_times(store: SQLiteStorage) -> None:
    inbox = Inbox(store, Clock())
    await inbox.receive("telegram", 1, "{}")
    for _ in range(MAX_ATTEMPTS):
        assert [e.event_id for e in await inbox.take_over("telegram")] == [1]
    assert await inbox.take_over("telegram") == []  # it crashed the bot every time: dropped
    assert await inbox.unhandled("telegram") == 0


async def test_old_events_are_dropped_and_handled_ones_forgotten_after_a_day(store: SQLiteStorage) -> None:
    clock = Clock()
    inbox = Inbox(store, clock)
    await inbox.receive("telegram", 1, "{}")
    await inbox.receive("discord", 2, "{}")
    await inbox.done("discord", 2)  # prunes nothing yet: everything is new
    clock.now += REMEMBER + 1
    assert await inbox.take_over("telegram") == []  # Telegram would not have kept it either
    await inbox.receive("telegram", 3, "{}")
    await inbox.done("telegram", 3)  # an hour after the last pruning: prunes what was handled over a day ago
    remaining = [(r[0], r[1]) for r in await store.fetchall("SELECT platform, event_id FROM inbox ORDER BY 1, 2")]
    assert remaining == [("telegram", 3)]
