"""What this gateway registers on its resolution node, and the background task that does it.

Records (one per gateway, device and point code), with the attributes a data template for
telemetry points needs; the types must exist in the node's template (docs/identifiers.md):

=====  ==========  ========================================================
index  type        value
=====  ==========  ========================================================
2000   name        config key (``<device>.<point>``, device name, gateway id)
2001   kind        ``gateway`` / ``device`` / ``point``
2002   parent      code of the device (points) or gateway (devices)
2003   site        site key
2004   unit        engineering unit (points)
2005   data_grade  general / important / core (points)
2006   class       mine point class, e.g. ``ch4`` (points, when set)
=====  ==========  ========================================================

Registering is a sync: a record that already exists is read back and, where one of these
attributes differs from what the config would register (a unit, a name, a device, a data grade,
a class that was changed, set or removed), updated.  Attributes of other types on the node are
left as they are.

The sync task never blocks acquisition or buffering: it runs the blocking HTTP client in a
thread, and a node that is down or answers garbage only makes it back off and try later.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from gateway.catalog import Catalog
from gateway.config import RegistrySection
from gateway.core.errors import ConfigError, ConfigIssue, RegistryError
from pipelines.registry import DoipClient, Record, RegisterReport, RegistryClient, SnmsClient

__all__ = ["MANAGED_TYPES", "RegistrySync", "RegistrySyncStats", "describe_changes", "make_client", "records"]

log = logging.getLogger("edgegw.registry")

MANAGED_TYPES = ("name", "kind", "parent", "site", "unit", "data_grade", "class")  # indexes 2000, 2001, ...


def records(catalog: Catalog, gateway_code: str | None) -> list[Record]:
    out: list[Record] = []
    site = catalog.site
    if gateway_code:
        out.append(Record(gateway_code, _values(catalog.gateway_id, "gateway", "", site)))
    seen: set[str] = set()
    for p in catalog.points:
        if p.device_code and p.device_code not in seen:
            seen.add(p.device_code)
            out.append(Record(p.device_code, _values(p.device, "device", gateway_code or "", site)))
    for p in catalog.points:
        out.append(Record(p.code, _values(p.key, "point", p.device_code, site, p.unit, p.data_grade, p.point_class)))
    return out


def _values(name: str, kind: str, parent: str, site: str, unit: str = "", grade: str = "", cls: str = ""
            ) -> tuple[tuple[int, str, str], ...]:
    fields = zip(MANAGED_TYPES, (name, kind, parent, site, unit, grade, cls), strict=True)
    return tuple((2000 + i, t, v) for i, (t, v) in enumerate(fields) if v)


def describe_changes(diff: dict[str, tuple[str, str]]) -> str:
    return ", ".join(f"{t} {old!r} -> {new!r}" for t, (old, new) in diff.items())


def make_client(cfg: RegistrySection) -> RegistryClient:
    if cfg.api == "snms":
        return SnmsClient(cfg.url, cfg.identity, cfg.password(), template_version=cfg.template_version,
                          timeout_s=cfg.timeout_s, retries_504=cfg.retries_504, batch_size=cfg.batch_size,
                          managed_types=MANAGED_TYPES)
    assert cfg.private_key_file is not None and cfg.type_handle is not None
    try:
        key = Path(cfg.private_key_file).read_bytes()
    except OSError as err:
        raise ConfigError([ConfigIssue("registry.private_key_file", f"cannot read: {err.strerror}")]) from None
    return DoipClient(cfg.url, cfg.identity, key, type_handle=cfg.type_handle, timeout_s=cfg.timeout_s,
                      retries_504=cfg.retries_504, batch_size=cfg.batch_size, managed_types=MANAGED_TYPES)


@dataclass(slots=True)
class RegistrySyncStats:
    attempts: int = 0
    failures: int = 0
    done: bool = False
    last_error: str = ""
    report: RegisterReport | None = None


class RegistrySync:
    """Registers the catalog's codes once, retrying with capped backoff while the node is unusable."""

    def __init__(
        self, client: RegistryClient, recs: list[Record], *, compare: bool = False, backoff_max_s: float = 600.0
    ) -> None:
        self.client = client
        self.records = recs
        self.compare = compare  # read back and update existing records too (one read per code)
        self.backoff_max = backoff_max_s
        self.stats = RegistrySyncStats()

    async def run(self) -> None:
        backoff = 1.0
        while not self.stats.done:
            self.stats.attempts += 1
            try:
                report = await asyncio.to_thread(self.client.register, self.records, compare=self.compare)
            except RegistryError as err:
                self.stats.failures += 1
                if self.stats.failures == 1 or str(err) != self.stats.last_error:
                    log.warning("Registering %d codes failed: %s; retrying in the background.", len(self.records), err)
                self.stats.last_error = str(err)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            self.stats.report = report
            self.stats.done = True
            log.info("Registered codes: %s.", report.summary())
            for handle, diff in list(report.changes.items())[:10]:
                log.info("Updated %s: %s", handle, describe_changes(diff))
            for handle, msg in report.failed[:10]:
                log.error("The node refused %s: %s", handle, msg)
        await asyncio.Event().wait()  # done: stay idle, so the supervisor never sees this task end
