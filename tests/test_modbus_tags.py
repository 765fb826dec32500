"""`edgegw import-tags modbus FILE.csv`: CSV rows -> points, bad rows reported by line and column."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

from drivers.modbus.config import ByteOrder, ModbusPoint, Table
from gateway.cli import main
from gateway.config import parse
from tests.test_config import GOOD

CSV = """name,address,table,data_type,byte_order,scale,unit,bit,code
ch4,30003,,float32,CDAB,,%CH4,,
speed,9,input_register,int16,,0.1,rpm,,88.608.5288/DEV.fan.speed
run,"00001",,bool,,,,,
fault,40011,,bool,,,,3,
"""


def test_a_tag_list_becomes_a_valid_device_config(tmp_path: Path) -> None:
    src, out = tmp_path / "tags.csv", tmp_path / "points.toml"
    src.write_text(CSV)
    assert main(["import-tags", "modbus", str(src), "-o", str(out)]) == 0
    data = copy.deepcopy(GOOD)
    data["devices"][0]["points"] = tomllib.loads(out.read_text())["devices"]["points"]
    points = parse(data).devices[0].points
    modbus = [p for p in points if isinstance(p, ModbusPoint)]
    assert len(modbus) == len(points)
    got = [(p.name, p.table, p.address, p.data_type.value, p.byte_order, p.scale, p.bit) for p in modbus]
    assert got == [
        ("ch4", Table.INPUT_REGISTER, 2, "float32", ByteOrder.CDAB, 1.0, None),
        ("speed", Table.INPUT_REGISTER, 9, "int16", None, 0.1, None),
        ("run", Table.COIL, 0, "bool", None, 1.0, None),
        ("fault", Table.HOLDING_REGISTER, 10, "bool", None, 1.0, 3),
    ]
    assert points[1].code == "88.608.5288/DEV.fan.speed"


def test_bad_rows_are_located_and_nothing_is_written(tmp_path: Path, capsys: object) -> None:
    src, out = tmp_path / "tags.csv", tmp_path / "points.toml"
    src.write_text(CSV + "bad,40001,,float16,,x,,,\nrun,40002,,,,,,,\nstr,40003,,string,,,,,\n")
    assert main(["import-tags", "modbus", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert f"{src}:6: data_type: Input should be" in err
    assert f"{src}:6: scale: Input should be a valid number" in err
    assert f"{src}:8: a string needs `length`" in err
    assert "two rows are named 'run'" in err
    assert not out.exists()


def test_a_missing_column_is_reported(tmp_path: Path, capsys: object) -> None:
    src = tmp_path / "tags.csv"
    src.write_text("name,register\nx,1\n")
    assert main(["import-tags", "modbus", str(src)]) == 2
    assert "missing column 'address'" in capsys.readouterr().err  # type: ignore[attr-defined]


def test_an_unknown_column_is_named(tmp_path: Path, capsys: object) -> None:
    src = tmp_path / "tags.csv"
    src.write_text("name,address,colour\nx,40001,red\n")
    assert main(["import-tags", "modbus", str(src)]) == 2
    assert f"{src}:1: column 'colour' is not a point key" in capsys.readouterr().err  # type: ignore[attr-defined]


def test_an_unreadable_tag_list_is_a_user_mistake_not_a_traceback(tmp_path: Path, capsys: object) -> None:
    missing = tmp_path / "missing.csv"
    assert main(["import-tags", "modbus", str(missing)]) == 2
    assert f"error: {missing}: cannot read the tag list" in capsys.readouterr().err  # type: ignore[attr-defined]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("name,address,unit\ntemp,30001,°C\n".encode("latin-1"))  # saved as "CSV", not "CSV UTF-8"
    assert main(["import-tags", "modbus", str(latin)]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err  # type: ignore[attr-defined]


HOSTILE_UNITS = [
    '%CH4"\n]\nscale = 1000.0\n[[devices]]\ntype = "modbus_tcp"\n# ',
    "scale = 1000.0",
    "m3/min # flow",
    "]]\n[[devices.points]]\nname = \"extra\"\naddress = 1",
    "kPa'''\"\"\"\\",
    "°C\u2028scale = 2.0\r\n",
]


def test_hostile_cells_stay_data(tmp_path: Path, capsys: object) -> None:
    """Quotes, newlines, `]`, `#`, table headers and `scale = ...` in a cell come back as that cell's text:
    the file parses to exactly the columns given, and the pasted points pass `edgegw check`."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "address", "data_type", "unit"])
    for i, unit in enumerate(HOSTILE_UNITS):
        w.writerow([f"p{i}", 2 * i, "float32", unit])
    src, out = tmp_path / "tags.csv", tmp_path / "points.toml"
    src.write_text(buf.getvalue(), encoding="utf-8")
    assert main(["import-tags", "modbus", str(src), "-o", str(out)]) == 0
    doc = tomllib.loads(out.read_text(encoding="utf-8"))
    assert doc == {"devices": {"points": [
        {"name": f"p{i}", "address": 2 * i, "data_type": "float32", "unit": unit.strip()}
        for i, unit in enumerate(HOSTILE_UNITS)
    ]}}
    data = copy.deepcopy(GOOD)
    data["devices"][0]["points"] = doc["devices"]["points"]
    assert [p.scale for p in parse(data).devices[0].points] == [1.0] * len(HOSTILE_UNITS)
    # pasted under a [[devices]] entry of a real config file, `edgegw check` accepts it
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        '[gateway]\nid = "gw1"\nsite = "s1"\nenterprise_prefix = "88.608.5288"\n\n'
        '[[devices]]\ntype = "modbus_tcp"\nname = "gas-sub-01"\nhost = "127.0.0.1"\n\n' + out.read_text("utf-8"),
        encoding="utf-8",
    )
    assert main(["check", "-c", str(cfg)]) == 0
    assert "(1 device, 6 points" in capsys.readouterr().out  # type: ignore[attr-defined]


def test_a_hostile_name_is_a_located_error(tmp_path: Path, capsys: object) -> None:
    src, out = tmp_path / "tags.csv", tmp_path / "points.toml"
    src.write_text('name,address\nok,40001\n"x""\n[[devices]]\nscale = 1000.0",40002\n', encoding="utf-8")
    assert main(["import-tags", "modbus", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert f"{src}:5: name: 'x\"\\n[[devices]]\\nscale = 1000.0' is not a valid key: use 1-64 letters" in err, err
    assert not out.exists()


def test_a_tag_list_that_would_fail_check_is_refused_at_its_row(tmp_path: Path, capsys: object) -> None:
    src, out = tmp_path / "tags.csv", tmp_path / "points.toml"
    src.write_text("name,address,code\nco,30002,88.608.5288/DEV.x.co\nco2,30003,88.608.5288/DEV.x.co\n")
    assert main(["import-tags", "modbus", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert f"{src}:3: code: identifier '88.608.5288/DEV.x.co' is already used by the row on line 2" in err, err
    assert "what `edgegw check` would say" in err
    assert not out.exists()


def test_chinese_descriptions_are_a_column() -> None:
    from drivers.modbus.tags import csv_to_points

    (p,) = csv_to_points("name,address,display_name,description\nch4,30001,甲烷浓度,回风巷 T1 传感器\n")
    assert (p.display_name, p.description) == ("甲烷浓度", "回风巷 T1 传感器")


def test_raw_count_scaling_and_other_sub_table_keys_are_columns(tmp_path: Path) -> None:
    src, out = tmp_path / "tags.csv", tmp_path / "points.toml"
    src.write_text("name,address,unit,scaling.raw_low,scaling.raw_high,scaling.eng_low,scaling.eng_high,tags.area\n"
                   "level,30001,m,0,27648,0,12.5,sump\n"
                   "flow,30002,m3/h,,,,,\n")
    assert main(["import-tags", "modbus", str(src), "-o", str(out)]) == 0
    data = copy.deepcopy(GOOD)
    data["devices"][0]["points"] = tomllib.loads(out.read_text())["devices"]["points"]
    level, flow = parse(data).devices[0].points
    assert level.scaling is not None and flow.scaling is None
    assert (level.scaling.raw_low, level.scaling.raw_high, level.scaling.eng_high) == (0, 27648, 12.5)
    assert level.tags == {"area": "sump"}


def test_a_bad_sub_table_cell_is_located_at_its_column(tmp_path: Path, capsys: object) -> None:
    src = tmp_path / "tags.csv"
    src.write_text("name,address,scaling.raw_low,scaling.raw_high,scaling.eng_low,scaling.eng_high\n"
                   "level,30001,0,27648,0,x\n")
    assert main(["import-tags", "modbus", str(src)]) == 2
    assert f"{src}:2: scaling.eng_high: Input should be a valid number" in capsys.readouterr().err  # type: ignore[attr-defined]


def test_every_problem_of_a_tag_list_at_once(tmp_path: Path, capsys: object) -> None:
    """Header, single rows and rows together in one run: a column named the vendor's way gets our
    key, a Chinese name the display_name column, and a bad row does not hide a duplicate code between
    two good rows (what `edgegw check` says)."""
    src, out = tmp_path / "tags.csv", tmp_path / "points.toml"
    src.write_text("name,address,code,multiplier\n", encoding="utf-8")
    assert main(["import-tags", "modbus", str(src), "-o", str(out)]) == 2
    assert f"{src}:1: column 'multiplier' is not a point key; did you mean 'scale'?" in (
        capsys.readouterr().err)  # type: ignore[attr-defined]
    src.write_text("name,address,code\nch4,40001,88.608.5288/DEV.a.b\n甲烷,40002,\nco,40003,88.608.5288/DEV.a.b\n"
                   "x,-4,\n", encoding="utf-8")
    assert main(["import-tags", "modbus", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    lines = [ln.strip() for ln in err.splitlines()[1:]]
    assert len(lines) == 3, err
    assert lines[0].startswith(f"{src}:3: name: '甲烷' is not a valid key") and "display_name" in lines[0]
    assert lines[1].startswith(f"{src}:4: code: identifier '88.608.5288/DEV.a.b' is already used by the row on line 2")
    assert lines[2].startswith(f"{src}:5: address: Input should be greater than or equal to 0")
    assert not out.exists()
