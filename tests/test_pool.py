"""A pool of image services (SDBOT_BACKENDS) with real members against their fakes: an A1111 server ("gpu1") and
Stability's v2beta ("paid"). Routing by what each member takes and by --model, the least busy first, failover
with the same seed, each member's breaker, configuration errors naming the prefixed variables, check, and a whole
job through the core: charged once, one result, the member in the caption, stats and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.backends import create_backend
from bot.backends.pool import PoolBackend
from bot.chats.refs import ChatRef, UserRef
from bot.config import Settings
from bot.draw.validation import parse_request
from bot.errors import BackendError, ConfigError, DrawError, SdbotError
from bot.jobs.generation import generate, user_key
from bot.messages.i18n import render_error
from bot.messages.presentation import parameters_line
from tests.fakes.a1111 import FakeA1111
from tests.fakes.stability import FakeStability
from tests.pipeline_support import RecordingSink, make_settings

KEY = "sk-pool-paid-key-0001"
USER = user_key("telegram", 3)
ANN = UserRef("telegram", "1", "en", "Ann")
DM = ChatRef("telegram", "1", False)


@pytest.fixture
async def gpu1() -> AsyncIterator[FakeA1111]:
    async with FakeA1111(duration=0.05) as server:
        yield server


@pytest.fixture
async def paid() -> AsyncIterator[FakeStability]:
    async with FakeStability(api_key=KEY) as server:
        yield server


def pool_env(gpu1: FakeA1111, paid: FakeStability, **extra: str) -> dict[str, str]:
    return {
        "SDBOT_BACKENDS": "gpu1,paid",
        "SDBOT_BACKEND_RETRIES": "0",
        "GPU1_SDBOT_BACKEND": "a1111",
        "GPU1_A1111_URL": gpu1.url,
        "GPU1_SDBOT_BACKEND_CONCURRENCY": "1",
        "PAID_SDBOT_BACKEND": "stability",
        "PAID_STABILITY_API_KEY": KEY,
        "PAID_STABILITY_BASE_URL": paid.url,
        "PAID_SDBOT_BACKEND_CONCURRENCY": "1",
        **extra,
    }


def make(gpu1: FakeA1111, paid: FakeStability, **extra: str) -> PoolBackend:
    backend = create_backend(Settings.from_env(pool_env(gpu1, paid, **extra), env_file=None))
    assert isinstance(backend, PoolBackend)
    return backend


async def test_a_request_goes_to_a_member_that_takes_it(gpu1: FakeA1111, paid: FakeStability) -> None:
    async with make(gpu1, paid) as pool:
        caps = await pool.capabilities()
        assert caps.models == ("gpu1", "paid") and pool.slots == 2
        steps = parse_request("a fox --steps 30 --size 768x768", caps)  # only A1111 has steps
        first = await generate(pool, steps.with_seed(7), user=USER)
        chosen = parse_request("a fox --model paid", caps)
        second = await generate(pool, chosen.with_seed(8), user=USER)
    assert first.images[0].service == "gpu1" and first.drawn.service == "gpu1"
    assert second.images[0].service == "paid" and second.drawn.size == "1536x1536"  # Core: about 1.5 megapixels
    assert len(gpu1.generate_calls) == 1 and [c.fields["seed"] for c in paid.v2_calls] == ["8"]
    assert "via paid" in parameters_line(second.request, "en", second.drawn)
    assert "由 paid 绘制" in parameters_line(second.request, "zh", second.drawn)


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_a_chosen_member_that_cannot_says_why_and_none_able_is_no_service(
    gpu1: FakeA1111, paid: FakeStability, lang: str
) -> None:
    async with make(gpu1, paid) as pool:
        caps = await pool.capabilities()
        with pytest.raises(DrawError) as caught:
            await pool.check_request(parse_request("x --model paid --steps 30", caps))
        assert caught.value.code == "unsupported_option" and "paid" in render_error(caught.value, lang)
        # Each option is offered by one member, but no member takes both.
        with pytest.raises(DrawError) as caught:
            await pool.check_request(parse_request("x --steps 30 --style Anime", caps))
        assert caught.value.code == "no_service" and "gpu1" in render_error(caught.value, lang)
        with pytest.raises(DrawError) as caught:
            parse_request("x --model gpu9", caps)
        assert caught.value.code == "unknown_model"
    assert gpu1.generate_calls == [] and paid.v2_calls == []


async def test_an_outage_is_drawn_again_by_another_member_with_the_same_seed(
    gpu1: FakeA1111, paid: FakeStability
) -> None:
    gpu1.push_status(500, "CUDA error: device lost", error="RuntimeError")
    async with make(gpu1, paid) as pool:
        request = parse_request("a fox", await pool.capabilities()).with_seed(41)
        generation = await generate(pool, request, user=USER)
    assert len(gpu1.generate_calls) == 1 and generation.images[0].service == "paid"
    assert [c.fields["seed"] for c in paid.v2_calls] == ["41"]


async def test_the_users_own_fault_is_not_tried_elsewhere(gpu1: FakeA1111, paid: FakeStability) -> None:
    gpu1.push_status(422, [{"loc": ["body", "steps"], "msg": "bad", "type": "value_error"}])
    async with make(gpu1, paid) as pool:
        with pytest.raises(BackendError) as caught:
            await generate(pool, parse_request("a fox", await pool.capabilities()).with_seed(1), user=USER)
    assert caught.value.code == "backend_invalid_request" and paid.v2_calls == []


async def test_the_least_busy_member_takes_the_next_job_and_a_full_pool_waits(
    gpu1: FakeA1111, paid: FakeStability
) -> None:
    gpu1.duration = 0.4
    paid.push_delay(0.4)
    async with make(gpu1, paid) as pool:
        request = parse_request("a fox", await pool.capabilities())
        jobs = [asyncio.create_task(generate(pool, request.with_seed(i), user=USER)) for i in range(3)]
        await asyncio.sleep(0.2)
        busy = pool.services()
        assert (busy["gpu1"].running, busy["paid"].running) == (1, 1)  # the third waits for a slot
        results = await asyncio.gather(*jobs)
    services = [generation.images[0].service for generation in results]
    assert services[:2] == ["gpu1", "paid"] and services[2] in ("gpu1", "paid")
    assert all(state.running == 0 for state in pool.services().values())


async def test_a_member_marked_down_gets_no_new_jobs(gpu1: FakeA1111, paid: FakeStability) -> None:
    gpu1.push_status(503, "restarting")
    async with make(gpu1, paid, GPU1_SDBOT_BREAKER_FAILURES="1", GPU1_SDBOT_BREAKER_COOLDOWN="60") as pool:
        request = parse_request("a fox", await pool.capabilities())
        for seed in (1, 2, 3):
            generation = await generate(pool, request.with_seed(seed), user=USER)
            assert generation.images[0].service == "paid"
        assert not pool.services()["gpu1"].up
        with pytest.raises(SdbotError) as caught:  # only the member that is down could draw this
            await generate(pool, parse_request("x --steps 30", await pool.capabilities()).with_seed(4), user=USER)
    assert caught.value.code == "backend_down" and len(gpu1.generate_calls) == 1


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_configuration_errors_name_the_members_variables(lang: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_backend(Settings.from_env({"SDBOT_BACKENDS": "gpu1"}, env_file=None))
    assert caught.value.variable == "GPU1_SDBOT_BACKEND" and "GPU1_SDBOT_BACKEND" in render_error(caught.value, lang)
    with pytest.raises(ConfigError) as caught:
        create_backend(Settings.from_env({"SDBOT_BACKENDS": "gpu1", "GPU1_SDBOT_BACKEND": "a1111"}, env_file=None))
    assert caught.value.variable == "GPU1_A1111_URL"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SDBOT_BACKENDS": "gpu1,GPU1"}, env_file=None)
    assert caught.value.variable == "SDBOT_BACKENDS"
    env = {"SDBOT_BACKENDS": "stability", "STABILITY_API_KEY": KEY}  # named like a service: that service
    pool = create_backend(Settings.from_env(env, env_file=None))
    assert isinstance(pool, PoolBackend) and pool.members[0].backend.name == "stability"


async def test_check_runs_every_members_probes(gpu1: FakeA1111, paid: FakeStability) -> None:
    async with make(gpu1, paid) as pool:
        report = await pool.check()
    assert report.ok
    labels = [label if isinstance(label, str) else label.render("en") for label, _ in report.findings]
    assert "gpu1" in labels and "paid" in labels and any(label.startswith("paid · ") for label in labels)
    assert gpu1.generate_calls == [] and paid.v2_calls == []


async def test_a_job_through_the_core_is_charged_once_and_reported_per_service(
    tmp_path: Path, gpu1: FakeA1111, paid: FakeStability
) -> None:
    from bot.core import Core

    gpu1.push_status(500, "CUDA error", error="RuntimeError")
    pool = make(gpu1, paid)
    async with pool:
        core = await Core.open(make_settings(tmp_path / "db", rate_per_minute=0), pool)
        sink = RecordingSink()
        core.register_sink("telegram", sink)
        await core.start()
        try:
            job = await core.submit(ANN, DM, "/draw a fox --n 2", {})
            await core.wait_idle()
            done = await core.get_job(job.id)
            assert done is not None and (done.status, done.charged, done.delivered) == ("done", 2, 2)
            assert (await core.quotas.state(ANN.key)).used == 2
            generation = sink.generations[job.id]
            assert generation.drawn.service == "paid" and len(generation.images) == 2
            assert sorted(int(c.fields["seed"]) for c in paid.v2_calls) == [job.seed, job.seed + 1]
            report = await core.commands.stats_report("en")
            assert "paid 1 jobs, 2 images" in report
            metrics = (await core.metrics_text()).decode()
            assert 'sdbot_backend_up{backend="paid"} 1.0' in metrics
            assert 'sdbot_generation_seconds_count{backend="paid",outcome="ok"} 1.0' in metrics
        finally:
            await core.close()


async def test_sdbot_check_and_draw_with_a_pool(gpu1: FakeA1111, paid: FakeStability, tmp_path: Path) -> None:
    from tests.backend_support import sdbot

    env = pool_env(gpu1, paid)
    code, out, err = await sdbot("check", env=env, cwd=tmp_path)
    assert code == 0, out + err
    assert "gpu1, paid" in out and "gpu1 · " in out and "paid · " in out and KEY not in out + err
    code, out, err = await sdbot("draw", "--json", "--out", str(tmp_path), "a fox --model paid", env=env, cwd=tmp_path)
    assert code == 0, err
    assert len(paid.v2_calls) == 1 and gpu1.generate_calls == []
    code, out, err = await sdbot("check", env={**env, "PAID_STABILITY_API_KEY": "sk-wrong"}, cwd=tmp_path)
    assert code == 1 and "paid" in out


def test_a_members_prefixed_secrets_are_kept_out_of_logs(gpu1: FakeA1111, paid: FakeStability) -> None:
    from bot.process import redact

    url = gpu1.url.replace("http://", "http://operator:gpu1-proxy-password@")
    pool = make(gpu1, paid, GPU1_A1111_URL=url, PAID_STABILITY_API_KEY="sk-paid-member-key-42")
    assert isinstance(pool, PoolBackend)
    # The password alone, as a proxy's error page or a traceback of a library may show it, not only in its URL.
    shown = redact.scrub(f"GET {url}; proxy said: bad password gpu1-proxy-password; key sk-paid-member-key-42")
    assert "gpu1-proxy-password" not in shown and "sk-paid-member-key-42" not in shown
