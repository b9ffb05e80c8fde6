"""Nothing lost: a bot process killed (SIGKILL) with jobs queued, generating and delivering; the restarted one
delivers or refunds every accepted job, and the quota counters match exactly."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

from tests.pipeline_support import Worker


def test_a_killed_bot_delivers_or_refunds_every_accepted_job_after_restart(tmp_path: Path) -> None:
    db, log = tmp_path / "sdbot.db", tmp_path / "sink.jsonl"
    env = {
        "SDBOT_DB": str(db),
        "SDBOT_BACKEND_CONCURRENCY": "2",
        "SDBOT_DAILY_IMAGES": "5",
        "SDBOT_RATE_PER_MINUTE": "0",
        "SDBOT_MAX_PENDING": "5",
        "SDBOT_JOB_MAX_AGE": "3600",
    }
    crashed = Worker(env, "crash")
    try:
        lines = crashed.read_until("ready")
        os.kill(crashed.proc.pid, signal.SIGKILL)
        assert crashed.proc.wait() == -signal.SIGKILL
    finally:
        crashed.close()
    accepted = {line.split()[2]: int(line.split()[1]) for line in lines if line.startswith("accepted")}
    assert set(accepted) == {"fast", "slow", "queued", "gone", "old"}
    assert [line for line in lines if line.startswith("refused")] == ["refused quota_daily"]

    with sqlite3.connect(db) as conn:
        status = dict(conn.execute("SELECT json_extract(request, '$.prompt'), status FROM jobs"))
        # What the kill left: one job generated but not delivered, one generating, three waiting.
        assert status == {"fast": "running", "slow": "running", "queued": "queued", "gone": "queued", "old": "queued"}
        used_before = dict(conn.execute("SELECT key, images FROM usage WHERE scope = 'user'"))
        assert used_before == {"telegram:1": 3, "telegram:2": 3, "telegram:3": 1}
        conn.execute("UPDATE jobs SET created_at = created_at - 7200 WHERE id = ?", (accepted["old"],))
    conn.close()

    resumed = Worker(env, "resume", "--log", str(log))
    try:
        assert resumed.read_until("idle") == []
        assert resumed.proc.wait() == 0, resumed.error_output()
    finally:
        resumed.close()

    told = [json.loads(line) for line in log.read_text().splitlines()]
    delivered = {entry["job"]: entry["detail"] for entry in told if entry["kind"] == "delivered"}
    failed = {entry["job"]: entry["detail"] for entry in told if entry["kind"] == "failed"}
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        jobs = {row["id"]: row for row in conn.execute("SELECT * FROM jobs")}
        usage = {(r["key"], r["day"]): r["images"] for r in conn.execute("SELECT * FROM usage WHERE scope = 'user'")}
        charged = {
            (r["user_key"], r["quota_day"]): r["images"]
            for r in conn.execute("SELECT user_key, quota_day, sum(charged) AS images FROM jobs GROUP BY 1, 2")
        }
    conn.close()

    assert set(jobs) == set(accepted.values())  # refused requests left nothing behind
    for prompt in ("fast", "slow", "queued"):  # re-run with the seed they were admitted with, and delivered
        job = jobs[accepted[prompt]]
        assert (job["status"], job["delivered"], job["charged"]) == ("done", job["images"], job["images"])
        assert delivered[job["id"]] == job["seed"]
    assert jobs[accepted["fast"]]["attempts"] == 2 and jobs[accepted["queued"]]["attempts"] == 1
    gone, old = jobs[accepted["gone"]], jobs[accepted["old"]]
    assert (gone["status"], gone["error"], gone["charged"]) == ("failed", "delivery_gone", 0)
    assert (old["status"], old["error"], old["charged"]) == ("failed", "job_expired", 0)
    assert failed == {old["id"]: ["job_expired", True]}  # told; the gone chat cannot be
    assert not [j for j in jobs.values() if j["status"] in ("queued", "running")]

    # Counters are exact: each equals what its jobs still charge, and that is what was delivered.
    assert usage == charged
    day = jobs[accepted["fast"]]["quota_day"]
    assert usage == {("telegram:1", day): 3, ("telegram:2", day): 2, ("telegram:3", day): 0}
