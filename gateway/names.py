"""Names in any language (what people call the site, devices and points) in the gateway's catalog.

Display names and descriptions (``回风巷甲烷``) are static facts of a gateway's configuration, so
they travel once per connection in the retained wire format v2 catalog message (its ``names`` key,
see ``docs/wire-format.md`` 9.1), never in the batches.  The ingest keeps them with the catalog and
adds them as InfluxDB tags of every row it writes for that gateway (:data:`NAME_TAGS`).

Pure: data in, data out.  Keys (device and point names) stay ASCII; only these values carry other
scripts, and only where no topic, code or series key depends on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.catalog import Catalog
from gateway.core.errors import CodecError
from gateway.core.lineproto import NAME_TAGS, tag_value_issue

__all__ = ["CATALOG_VERSION", "NAME_TAGS", "NO_NAMES", "Names", "names_doc"]

CATALOG_VERSION = 1


def _entry(display_name: str, description: str) -> dict[str, str]:
    out = {}
    if display_name:
        out["display_name"] = display_name
    if description:
        out["description"] = description
    return out


def names_doc(catalog: Catalog) -> dict[str, Any] | None:
    """The ``names`` entry of the catalog message, or None when nothing has a name."""
    # a point whose grade is kept on site (data_policy keep_on_site) is not named off site either
    points = {p.key: e for p in catalog.points if p.spec.forward and (e := _entry(p.display_name, p.description))}
    devices = {d: e for d, (name, text) in sorted(catalog.device_names.items()) if (e := _entry(name, text))}
    site = _entry(catalog.site_display_name, catalog.site_description)
    if not (points or devices or site or catalog.gateway_display_name):
        return None
    doc: dict[str, Any] = {"v": CATALOG_VERSION, "site": site, "devices": devices, "points": points}
    if catalog.gateway_display_name:
        doc["gateway_display_name"] = catalog.gateway_display_name
    return doc


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

    id: str = ""  # the catalog's id
    site: tuple[tuple[str, str], ...] = ()
    devices: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    points: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()  # entries left out: not storable as a tag (a line break, a final backslash)

    @classmethod
    def from_doc(cls, doc: Any, catalog_id: str = "") -> Names:
        """Check a catalog's ``names`` entry; :class:`CodecError` when it is malformed.  A name a
        store could not hold as a tag is left out (listed in ``dropped``), never the catalog."""
        if not isinstance(doc, dict):
            raise CodecError("catalog names: not a map")
        if doc.get("v") != CATALOG_VERSION:
            raise CodecError(f"catalog names version {doc.get('v')!r} is not {CATALOG_VERSION}")
        dropped: list[str] = []
        site = _names(doc.get("site", {}), "site", dropped)
        site_tags = tuple(sorted((f"site_{k}", v) for k, v in site.items()))
        devices_doc, points_doc = doc.get("devices", {}), doc.get("points", {})
        if not isinstance(devices_doc, dict) or not isinstance(points_doc, dict):
            raise CodecError("catalog names: devices and points must be maps")
        devices = {}
        for name, entry in devices_doc.items():
            names = _names(entry, f"devices.{name}", dropped)
            devices[str(name)] = tuple(sorted((f"device_{k}", v) for k, v in names.items()))
        points = {str(key): tuple(sorted(_names(entry, f"points.{key}", dropped).items()))
                  for key, entry in points_doc.items()}
        return cls(catalog_id, site_tags, devices, points, tuple(dropped))

    def tags(self, key: str, device: str) -> tuple[tuple[str, str], ...]:
        """The name tags of one point (``key`` = ``<device>.<point>``)."""
        return self.site + self.devices.get(device, ()) + self.points.get(key, ())


NO_NAMES = Names()
