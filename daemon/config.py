"""The daemon's configuration: :class:`DaemonConfig`.

Where it listens, its settings file (``daemon.toml``), its folders and its token store are shared
with its clients and live in :mod:`lowkey.service`; the address is always loopback.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from lowkey.service import DEFAULT_HOST, DEFAULT_PORT, daemon_config_dir, daemon_state_dir


@dataclass(frozen=True)
class DaemonConfig:
    """Everything :func:`lowkey_daemon.app.create_app` needs; the defaults are the daemon's.

    ``devices``: one worker each (None: CUDA when present, else the CPU); ``preset``: loaded and
    warmed at start and used when a request names none; ``models``: attack this ensemble under
    every preset instead of the preset's own (tests use one small model); ``queue_size``: jobs
    queued or running at once before 503; ``max_body_bytes`` and ``max_pixels``: input limits;
    ``job_timeout``: the longest deadline a job may have (seconds from submission);
    ``result_ttl`` and ``result_max_bytes``: how long and how much finished results are kept;
    ``rate`` and ``burst``: requests per second per authenticated client kind (token bucket);
    ``decode_budget_bytes``: the memory the photos being worked on at once may take, judged
    from their headers (:mod:`lowkey_daemon.budget`); ``warm_up``: run one
    dummy step at start; ``batch``: the most queued jobs (with the same attack options) a
    worker protects with one attack (None: :data:`~lowkey.protect.BATCH_ON_GPU` on a GPU, 1 on
    a CPU, where batching a 1-MP measured job gained 5% throughput and lengthened the latency
    tail; bench/README.md).
    """

    port: int = DEFAULT_PORT
    host: str = DEFAULT_HOST
    devices: tuple[str, ...] | None = None
    preset: str = "default"
    models: tuple[str, ...] | None = None
    queue_size: int = 8
    max_body_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 40_000_000
    job_timeout: float = 900.0
    result_ttl: float = 600.0
    result_max_bytes: int = 512 * 1024 * 1024
    rate: float = 20.0
    burst: int = 60
    #: room for the largest photo max_pixels lets in (40 MP with alpha: 1.28 GB)
    decode_budget_bytes: int = 2 * 1024**3
    warm_up: bool = True
    batch: int | None = None
    config_dir: Path = field(default_factory=daemon_config_dir)
    state_dir: Path = field(default_factory=daemon_state_dir)

    def __post_init__(self) -> None:
        from lowkey.jobs import ProtectOptions

        ProtectOptions(preset=self.preset, models=self.models)  # the default request's rules
        if not ipaddress.ip_address(self.host).is_loopback:
            raise ValueError(f"the daemon binds to loopback only, not {self.host}")
        if (self.queue_size < 1 or self.max_body_bytes < 1 or self.max_pixels < 1
                or self.decode_budget_bytes < 1):
            raise ValueError("queue_size, max_body_bytes, max_pixels and decode_budget_bytes "
                             "must be positive")
        if self.batch is not None and self.batch < 1:
            raise ValueError("batch must be at least 1")
        if self.job_timeout <= 0 or self.result_ttl <= 0 or self.rate <= 0 or self.burst < 1:
            raise ValueError("job_timeout, result_ttl, rate and burst must be positive")
