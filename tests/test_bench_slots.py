"""bench/slots.py runs the real core end to end, loses no job, and compares with the right floor."""

from __future__ import annotations

from bench import slots


def test_the_slots_benchmark_delivers_every_job_and_reports_against_the_service_time() -> None:
    args = slots.parser().parse_args(["--jobs", "4", "--generate-ms", "10", "--upload-ms", "30"])
    (figure,) = slots.figures(args)  # raises when a job was lost or failed
    # Two slots, two generations each: uploads of 30 ms two at a time take longer than the service's 20 ms.
    assert figure.floor == f"{4 / (0.010 + 2 * 0.030):.2f}"
    assert float(figure.figure) > 0 and figure.met is None
