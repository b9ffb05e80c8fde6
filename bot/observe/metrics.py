"""What a process counts for Prometheus (``/metrics``): one registry per core, so that several cores in one
process (tests) keep apart, and nothing is counted by hand that prometheus-client counts for us."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds: image services take from about one second (a turbo model) to minutes (a busy self-hosted GPU).
GENERATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs = Gauge("sdbot_jobs", "Jobs by state: queued and running now; done, failed and cancelled today.",
                          ["state"], registry=r)  # fmt: skip
        self.queue_depth = Gauge("sdbot_queue_depth", "Jobs waiting for a generation slot.", registry=r)
        self.generation = Histogram(
            "sdbot_generation_seconds", "Time the image service took per generation, in this process.",
            ["backend", "outcome"], buckets=GENERATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.backend_up = Gauge("sdbot_backend_up", "1 while the image service is not marked down.", ["backend"],
                                registry=r)  # fmt: skip
        self.backend_busy = Gauge("sdbot_backend_busy", "Generations running now on each service of a pool.",
                                  ["backend"], registry=r)  # fmt: skip
        self.refusals = Counter("sdbot_refusals", "Requests refused before anything was queued, by reason.",
                                ["reason"], registry=r)  # fmt: skip
        self.deliveries = Counter("sdbot_deliveries", "Jobs whose pictures this process delivered.", ["platform"],
                                  registry=r)  # fmt: skip
        self.failures = Counter("sdbot_failures", "Jobs this process failed, by platform and error code.",
                                ["platform", "code"], registry=r)  # fmt: skip
        self.leader = Gauge("sdbot_leader", "1 while this process does the duties of one process at a time.",
                            registry=r)  # fmt: skip

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
