"""The retained per-gateway catalog of names: what people call the site, devices and points.

Display names and descriptions (any language: ``回风巷甲烷``) are static facts of a gateway's
configuration, so they travel once per connection in a retained message on
``<prefix>/<site>/<gateway>/catalog``, never in the batches (which stay as small as they were).
The ingest keeps the newest catalog of every gateway, taking site and gateway from the topic as
for data, and adds the names as InfluxDB tags of every row it writes for that gateway
(:data:`NAME_TAGS`).  The layout is in ``docs/wire-format.md`` ("The catalog of names").

Pure: bytes in, bytes or a :class:`Names` out.  Keys (device and point names) stay ASCII; only
these values carry other scripts, and only where no topic, code or series key depends on them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from gateway.catalog import Catalog
from gateway.errors import CodecError
from gateway.lineproto import NAME_TAGS, tag_value_issue

__all__ = ["CATALOG_VERSION", "NAME_TAGS", "Names", "catalog_message"]

CATALOG_VERSION = 1
_MAX_CATALOG = 64 << 20


def _entry(display_name: str, description: str) -> dict[str, str]:
    out = {}
    if display_name:
        out["display_name"] = display_name
    if description:
        out["description"] = description
    return out


def catalog_message(catalog: Catalog) -> bytes:
    """The retained catalog message of a gateway (UTF-8 JSON); sent also when nothing has a name, so
    that names removed from the config are removed at the ingest too.

    ``id`` is a digest of the names, so a receiver tells a changed catalog from a repeated one."""
    # a point whose grade is kept on site (data_policy keep_on_site) is not named off site either
    points = {p.key: e for p in catalog.points if p.spec.forward and (e := _entry(p.display_name, p.description))}
    devices = {d: e for d, (name, text) in sorted(catalog.device_names.items()) if (e := _entry(name, text))}
    site = _entry(catalog.site_display_name, catalog.site_description)
    body: dict[str, Any] = {"site_names": site, "gateway_display_name": catalog.gateway_display_name,
                            "devices": devices, "points": points}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    doc = {"v": CATALOG_VERSION, "kind": "catalog", "gw": catalog.gateway_id, "site": catalog.site, "id": digest,
           **body}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _names(value: Any, where: str, dropped: list[str]) -> dict[str, str]:
    """A ``{"display_name", "description"}`` entry, keeping only values a store can hold as tags."""
    if not isinstance(value, dict):
        raise CodecError(f"catalog: {where} is not an object")
    out = {}
    for k in ("display_name", "description"):
        v = value.get(k)
        if v is None or v == "":
            continue
        if not isinstance(v, str):
            raise CodecError(f"catalog: {where}.{k} is not a string")
        if tag_value_issue(v) or len(v.encode("utf-8", "surrogatepass")) > 4096:
            dropped.append(f"{where}.{k}")
            continue
        out[k] = v
    return out


@dataclass(frozen=True, slots=True)
class Names:
    """One gateway's catalog of names, as the ingest uses it."""

    id: str = ""
    site_key: str = ""  # the site and gateway the payload names (the ingest compares them with the topic)
    gateway: str = ""
    site: tuple[tuple[str, str], ...] = ()
    devices: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    points: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()  # entries left out: not storable as a tag (a line break, a final backslash)

    @classmethod
    def decode(cls, payload: bytes) -> Names:
        """Parse and check a catalog message; :class:`CodecError` when it is not one.  A name a store
        could not hold as a tag is left out (listed in ``dropped``), never the whole catalog."""
        if len(payload) > _MAX_CATALOG:
            raise CodecError(f"catalog of {len(payload)} bytes is larger than {_MAX_CATALOG}")
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as err:
            raise CodecError(f"catalog is not JSON: {err}") from None
        if not isinstance(doc, dict) or doc.get("kind") != "catalog":
            raise CodecError("not a catalog message (no \"kind\": \"catalog\")")
        if doc.get("v") != CATALOG_VERSION:
            raise CodecError(f"catalog version {doc.get('v')!r} is not {CATALOG_VERSION}")
        dropped: list[str] = []
        site = _names(doc.get("site_names", {}), "site_names", dropped)
        site_tags = tuple(sorted((f"site_{k}", v) for k, v in site.items()))
        devices_doc, points_doc = doc.get("devices", {}), doc.get("points", {})
        if not isinstance(devices_doc, dict) or not isinstance(points_doc, dict):
            raise CodecError("catalog: devices and points must be objects")
        devices = {}
        for name, entry in devices_doc.items():
            names = _names(entry, f"devices.{name}", dropped)
            devices[name] = tuple(sorted((f"device_{k}", v) for k, v in names.items()))
        points = {key: tuple(sorted(_names(entry, f"points.{key}", dropped).items()))
                  for key, entry in points_doc.items()}
        return cls(str(doc.get("id", "")), str(doc.get("site", "")), str(doc.get("gw", "")), site_tags, devices,
                   points, tuple(dropped))

    def tags(self, key: str, device: str) -> tuple[tuple[str, str], ...]:
        """The name tags of one point (``key`` = ``<device>.<point>``)."""
        return self.site + self.devices.get(device, ()) + self.points.get(key, ())
