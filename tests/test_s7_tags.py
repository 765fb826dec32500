"""`edgegw import-tags s7 FILE`: a TIA Portal PLC tag table (XLSX or CSV) -> S7 points; bad rows are
reported by line and column and nothing is written; types the driver does not read are warned about."""

from __future__ import annotations

import copy
import io
import tomllib
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from drivers.s7.config import S7Point
from gateway.cli import main
from gateway.config import parse
from tests.test_s7_config import config

HEADER = ["Name", "Path", "Data Type", "Logical Address", "Comment", "Hmi Visible", "Hmi Accessible"]
ROWS = [
    ["Rope_speed", "Hoist", "Real", "%DB10.DBD4", "绳速 m/s", "True", "True"],
    ["Hoist position", "Hoist", "LReal", "%DB10.DBB8", "", "True", "True"],
    ["主井名称", "Hoist", "WString[10]", "%DB10.DBB60", "", "True", "True"],
    ["conveyance", "Hoist", "String[16]", "%DB10.DBB34", "", "True", "True"],
    ["Brake_release", "Hoist", "Bool", "%M0.0", "", "True", "True"],
    ["Gate_closed", "Hoist", "Bool", "%I0.1", "", "True", "True"],
    ["Brake_AI", "Hoist", "Int", "%IW64", "", "True", "True"],
    ["Wind_started", "Hoist", "Date_And_Time", "%DB10.DBB52", "", "True", "True"],
    ["T_brake", "Hoist", "Timer", "%T1", "", "True", "True"],
]


def csv_text(rows: list[list[str]], sep: str = ",") -> str:
    return "\n".join(sep.join(f'"{c}"' if sep in c else c for c in r) for r in [HEADER, *rows]) + "\n"


def xlsx_bytes(rows: list[list[str]]) -> bytes:
    """A workbook laid out as TIA Portal writes it: sheet "PLC Tags", shared strings, a row per tag."""
    strings: list[str] = []

    def ref(text: str) -> int:
        if text not in strings:
            strings.append(text)
        return strings.index(text)

    xml_rows = []
    for r, row in enumerate([HEADER, *rows], start=1):
        cells = "".join(f'<c r="{chr(65 + c)}{r}" t="s"><v>{ref(v)}</v></c>' for c, v in enumerate(row) if v)
        xml_rows.append(f'<row r="{r}">{cells}</row>')
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("xl/workbook.xml", f'<workbook {ns} {rel}><sheets><sheet name="PLC Tags" sheetId="1" r:id="rId1"/>'
                                      "</sheets></workbook>")
        z.writestr("xl/_rels/workbook.xml.rels",
                   '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                   '<Relationship Id="rId1" Type="worksheet" Target="worksheets/sheet1.xml"/></Relationships>')
        z.writestr("xl/sharedStrings.xml", f"<sst {ns}>" + "".join(f"<si><t>{escape(s)}</t></si>" for s in strings)
                   + "</sst>")
        sheet = f"<worksheet {ns}><sheetData>{''.join(xml_rows)}</sheetData></worksheet>"
        z.writestr("xl/worksheets/sheet1.xml", sheet)
    return out.getvalue()


@pytest.mark.parametrize("kind", ["csv", "csv-semicolon", "xlsx"])
def test_a_tia_tag_table_becomes_a_valid_device_config(tmp_path: Path, kind: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    src, out = tmp_path / f"tags.{kind[:4]}", tmp_path / "points.toml"
    if kind == "xlsx":
        src.write_bytes(xlsx_bytes(ROWS))
    else:
        src.write_text(csv_text(ROWS, ";" if "semicolon" in kind else ","), encoding="utf-8-sig")
    assert main(["import-tags", "s7", str(src), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {src}:10: 'T_brake' is a Timer, which the S7 driver does not read: left out" in err
    data = copy.deepcopy(config({}))
    data["devices"][0]["points"] = tomllib.loads(out.read_text())["devices"]["points"]
    points = [p for p in parse(data).devices[0].points if isinstance(p, S7Point)]
    assert len(points) == 8
    got = [(p.name, p.display_name, p.address, p.type.value, getattr(p, "length", None)) for p in points]
    assert got == [
        ("Rope_speed", "", "DB10.DBD4", "real", None),
        ("Hoist_position", "Hoist position", "DB10.DBB8", "lreal", None),
        ("tag_4", "主井名称", "DB10.DBB60", "wstring", 10),
        ("conveyance", "", "DB10.DBB34", "string", 16),
        ("Brake_release", "", "M0.0", "bool", None),
        ("Gate_closed", "", "I0.1", "bool", None),
        ("Brake_AI", "", "IW64", "int", None),
        ("Wind_started", "", "DB10.DBB52", "date_and_time", None),
    ]
    assert points[0].description == "绳速 m/s"


def test_bad_rows_are_located_and_nothing_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, out = tmp_path / "tags.csv", tmp_path / "points.toml"
    bad = [
        ["ok", "", "Real", "%DB10.DBD4", "", "", ""],
        ["bit_without_bit", "", "Bool", "%DB10.DBX4", "", "", ""],
        ["too_wide", "", "Int", "%MD4", "", "", ""],
        ["ok", "", "Word", "%MW2", "", "", ""],
        ["garbage", "", "Real", "hello", "", "", ""],
    ]
    src.write_text(csv_text(bad))
    assert main(["import-tags", "s7", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{src}:3: Logical Address: S7 address 'DB10.DBX4': at the end: a bit address needs '.bit'" in err
    assert f"{src}:4: address 'MD4' is a dword (32 bit), but data_type 'int' needs 2 bytes: write 'MW4'" in err
    assert f"{src}:6: Logical Address: S7 address 'hello': 'h' at position 1: expected an area" in err
    assert "two rows are named 'ok'" in err
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(("content", "want"), [
    (b"Name,Type\nx,Real\n", "missing column 'Data Type', 'Logical Address'"),
    (b"\xff\xfe\x00garbage", "neither XLSX nor UTF-8 CSV"),
    (b"PK\x03\x04truncated zip", "not a readable XLSX workbook"),
    (b"", "empty tag table"),
])
def test_unreadable_tables_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes,
                                        want: str) -> None:
    src = tmp_path / "tags.csv"
    src.write_bytes(content)
    assert main(["import-tags", "s7", str(src)]) == 2
    err = capsys.readouterr().err
    assert want in err and "Traceback" not in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-tags", "s7", str(tmp_path / "nope.xlsx")]) == 2
    assert "cannot read the tag table" in capsys.readouterr().err
