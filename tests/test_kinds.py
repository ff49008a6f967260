"""`model.yaml` -> CRD generation, checked without an API server (see test_kinds_apiserver.py for that).

Inputs are the original project's mock kinds (a copy in tests/data/kinds/mock) and
small model.yaml texts written here for each rule of spec §3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from digi.cli.kinds_cmd import gen_cmd, init_cmd
from digi.kinds import KIND_LABEL, KindError, load_kind, parse_model, plural, render_cr
from digi.kinds.schema import PRESERVE

MOCKS = Path(__file__).resolve().parent / "data" / "kinds" / "mock"
REPO = Path(__file__).resolve().parents[1]


def spec_props(text: str) -> dict[str, Any]:
    return parse_model(text, "model.yaml").schema["properties"]


def gvk(body: str) -> str:
    return "group: mock.digi.dev\nversion: v1\nkind: Thing\n" + body


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("Lamp", "lamps"), ("Campus", "campuses"), ("Occupancy", "occupancies"), ("Box", "boxes"),
     ("Switch", "switches"), ("Key", "keys"), ("Person", "people"), ("Underdesk", "underdesks")],
)
def test_plural(kind: str, expected: str) -> None:
    assert plural(kind) == expected


def test_control_attribute_becomes_intent_and_status() -> None:
    control = spec_props(gvk("control:\n  power: string\n  brightness: number\n"))["control"]
    assert control["properties"]["power"] == {
        "type": "object",
        "properties": {"intent": {"type": "string"}, "status": {"type": "string"}},
    }
    assert control["properties"]["brightness"]["properties"]["status"] == {"type": "number"}


def test_meta_obs_data_groups() -> None:
    props = spec_props(gvk("meta:\n  seed: integer\nobs:\n  motion: boolean\n"))
    assert props["meta"]["properties"]["seed"] == {"type": "integer"}
    assert props["obs"]["properties"]["motion"] == {"type": "boolean"}
    data = spec_props(gvk("data:\n  input:\n    url: string\n  output:\n    n: number\n"))["data"]
    assert data["properties"]["input"]["properties"]["url"] == {"type": "string"}
    assert data["properties"]["output"]["properties"]["n"] == {"type": "number"}


def test_obs_reason_and_reflex_always_present() -> None:
    props = spec_props(gvk("control:\n  power: string\n"))
    assert props["obs"]["properties"]["reason"] == {"type": "string"}
    entry = props["reflex"]["additionalProperties"]["properties"]
    assert set(entry) == {"policy", "processor", "priority"}


def test_free_form_attributes_keep_unknown_fields() -> None:
    props = spec_props(gvk("meta:\n  cfg: object\n  tags: array\n"))["meta"]["properties"]
    assert props["cfg"] == {"type": "object", PRESERVE: True}
    assert props["tags"]["items"] == {PRESERVE: True}


def test_openapi_pass_through_marks_objects_without_additional_properties() -> None:
    home = load_kind(MOCKS / "home")
    rooms = home.schema["properties"]["obs"]["properties"]["rooms"]
    # additionalProperties already keeps every key: left as written.
    assert PRESERVE not in rooms
    room = rooms["additionalProperties"]
    assert room[PRESERVE] is True
    item = room["properties"]["objects"]["items"]
    assert item[PRESERVE] is True and item["properties"]["class"] == {"type": "string"}


def test_mount_ingress_egress_schemas() -> None:
    building = load_kind(MOCKS / "building").schema["properties"]
    rooms = building["mount"]["properties"]["mock.digi.dev/v1/rooms"]
    entry = rooms["additionalProperties"]["properties"]
    assert set(entry) == {"mode", "status", "generation", "spec"}
    assert entry["spec"] == {"type": "object", PRESERVE: True}
    ingress = building["ingress"]["properties"]["occupancy"]["properties"]
    assert {"source", "sources", "flow", "flow_agg", "eoio", "patch_source", "pause",
            "use_sourcer", "offload", "skip_history"} == set(ingress)
    egress = building["egress"]["properties"]["energy"]["properties"]
    assert {"flow", "eoio", "driver_managed", "pause", "desc", "de_id", "offload", "link"} == set(egress)


@pytest.mark.parametrize("kind_dir", sorted(MOCKS.iterdir()), ids=lambda p: p.name)
def test_every_mock_kind_generates(kind_dir: Path) -> None:
    kind = load_kind(kind_dir)
    crd = kind.crd()
    assert crd["metadata"]["labels"] == {KIND_LABEL: "true"}
    assert crd["metadata"]["name"] == f"{kind.plural}.mock.digi.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    model = yaml.safe_load((kind_dir / "model.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for section in model:
        if section not in ("group", "version", "kind"):
            assert section in spec["properties"]


def assert_extends(ours: dict[str, Any], theirs: dict[str, Any], path: str) -> None:
    """`ours` accepts every model `theirs` does: same schema, properties may be added."""
    for key, value in theirs.items():
        if key == "properties":
            for name, sub in value.items():
                assert name in ours["properties"], f"{path}.{name} is missing"
                assert_extends(ours["properties"][name], sub, f"{path}.{name}")
        else:
            assert ours.get(key) == value, f"{path}: {key} differs"


def test_lamp_kind_is_the_mock_lamp_plus_energy_egress() -> None:
    ours = load_kind(REPO / "digis" / "lamp")
    mock = load_kind(MOCKS / "lamp")
    assert (ours.group, ours.version, ours.kind) == (mock.group, mock.version, mock.kind)
    assert_extends(ours.schema, mock.schema, "spec")
    assert "energy" in ours.schema["properties"]["egress"]["properties"]
    assert "wattage" in ours.schema["properties"]["meta"]["properties"]


@pytest.mark.parametrize("kind_dir", sorted(p for p in (REPO / "digis").iterdir() if (p / "model.yaml").is_file()),
                         ids=lambda p: p.name)
def test_committed_crds_are_what_gen_writes(kind_dir: Path) -> None:
    committed = yaml.safe_load((kind_dir / "crd.yaml").read_text())
    assert committed == load_kind(kind_dir).crd(), f"{kind_dir}/crd.yaml is stale: run `digi gen {kind_dir}`"


def test_render_cr_replaces_name() -> None:
    obj = render_cr((MOCKS / "lamp" / "deploy" / "cr.yaml").read_text(), "l1", "ns1")
    assert obj["metadata"] == {"name": "l1", "namespace": "ns1"}
    assert obj["spec"]["control"]["power"]["intent"] == "off"


@pytest.mark.parametrize(
    ("text", "path", "fix_words"),
    [
        (gvk("control:\n  power: strng\n"), "control.power", "did you mean `string`"),
        (gvk("meta:\n  x: float\n"), "meta.x", "use one of string, number"),
        (gvk("control:\n  power: string\ndata:\n  input:\n    x: number\n"), "data", "separate digilake"),
        ("version: v1\nkind: Thing\n", "group", "add `group: ...`"),
        ("group: mock.digi.dev\nkind: Thing\n", "version", "add `version: ...`"),
        ("group: mock.digi.dev\nversion: v1\n", "kind", "add `kind: ...`"),
        ("group: mock.digi.dev\nversion: v1\nkind: thing\n", "kind", "CamelCase"),
        (gvk("control:\n  power: string\n   x: 1\n"), "line 6", "indentation"),
        (gvk("mount:\n  lamps: object\n"), "mount.lamps", "group/version/plural"),
        (gvk("data:\n  inputs:\n    x: number\n"), "data.inputs", "data.input"),
        (gvk("egress:\n  energy: string\n"), "egress.energy", "energy: object"),
        (gvk("obs:\n  reason: number\n"), "obs.reason", "reason: string"),
        (gvk("meta:\n  x:\n    openapi:\n      properties:\n        a: {type: string}\n"),
         "meta.x.openapi", "add `type:`"),
    ],
)
def test_bad_model_names_file_path_and_fix(text: str, path: str, fix_words: str) -> None:
    with pytest.raises(KindError) as err:
        parse_model(text, "kinds/thing/model.yaml")
    assert err.value.file == "kinds/thing/model.yaml"
    assert err.value.path.startswith(path)
    assert fix_words in str(err.value)
    assert "Fix:" in str(err.value)


def test_gen_cli_writes_nothing_when_any_model_is_bad(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    for d, body in ((good, "control:\n  power: string\n"), (bad, "control:\n  power: strng\n")):
        d.mkdir()
        (d / "model.yaml").write_text(gvk(body))
    result = CliRunner().invoke(gen_cmd, [str(good), str(bad)])
    assert result.exit_code != 0
    assert f"{bad / 'model.yaml'}: control.power: unknown type `strng`" in result.output
    assert not (good / "crd.yaml").exists() and not (bad / "crd.yaml").exists()
    assert list(tmp_path.rglob(".crd.yaml*")) == []


def test_gen_cli_keeps_previous_output_on_error(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text(gvk("control:\n  power: string\n"))
    assert CliRunner().invoke(gen_cmd, [str(tmp_path)]).exit_code == 0
    before = (tmp_path / "crd.yaml").read_text()
    (tmp_path / "model.yaml").write_text("group: [unclosed\n")
    result = CliRunner().invoke(gen_cmd, [str(tmp_path)])
    assert result.exit_code != 0 and "not valid YAML" in result.output
    assert (tmp_path / "crd.yaml").read_text() == before


def test_init_then_gen(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(init_cmd, ["smart-plug", "--group", "home.digi.dev", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    kind_dir = tmp_path / "smart-plug"
    for f in ("model.yaml", "deploy/cr.yaml", "driver/handler.py"):
        assert (kind_dir / f).is_file()
    assert runner.invoke(gen_cmd, [str(kind_dir)]).exit_code == 0
    crd = yaml.safe_load((kind_dir / "crd.yaml").read_text())
    assert crd["metadata"]["name"] == "smartplugs.home.digi.dev"
    assert crd["spec"]["names"]["kind"] == "SmartPlug"
    cr = render_cr((kind_dir / "deploy" / "cr.yaml").read_text(), "p1")
    assert cr["apiVersion"] == "home.digi.dev/v1" and cr["kind"] == "SmartPlug"
    again = runner.invoke(init_cmd, ["smart-plug", "--dir", str(tmp_path)])
    assert again.exit_code != 0 and "already exists" in again.output


def test_init_rejects_bad_group_without_writing(tmp_path: Path) -> None:
    result = CliRunner().invoke(init_cmd, ["plug", "--group", "nodots", "--dir", str(tmp_path)])
    assert result.exit_code != 0 and "group" in result.output
    assert not (tmp_path / "plug").exists()


def test_gen_output_yaml_prints_without_writing(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text(gvk("control:\n  power: string\n"))
    result = CliRunner().invoke(gen_cmd, [str(tmp_path), "-o", "yaml"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.output)["metadata"]["name"] == "things.mock.digi.dev"
    assert not (tmp_path / "crd.yaml").exists()


def columns_of(text: str) -> list[dict[str, Any]]:
    version = parse_model(text, "model.yaml").crd()["spec"]["versions"][0]
    return list(version.get("additionalPrinterColumns", []))


def test_printer_columns_show_status_and_intent_of_control_attributes() -> None:
    columns = columns_of(gvk("control:\n  power: string\n  set_point: number\n"))
    assert [(c["name"], c["type"], c["jsonPath"]) for c in columns] == [
        ("Power", "string", ".spec.control.power.status"),
        ("Power-Intent", "string", ".spec.control.power.intent"),
        ("Set-Point", "number", ".spec.control.set_point.status"),
        ("Set-Point-Intent", "number", ".spec.control.set_point.intent"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    assert all("priority" not in c for c in columns)


def test_printer_columns_skip_non_scalar_and_move_extra_attributes_to_wide() -> None:
    columns = columns_of(gvk("control:\n  a: string\n  cfg: object\n  b: integer\n  c: boolean\n"
                             "  d:\n    openapi:\n      type: string\n"))
    assert [c["name"] for c in columns] == ["A", "A-Intent", "B", "B-Intent", "C", "C-Intent", "D", "D-Intent", "Age"]
    assert [c.get("priority", 0) for c in columns] == [0] * 6 + [1, 1, 0]
    assert columns[2]["type"] == "integer" and columns[4]["type"] == "boolean"


def test_kind_without_control_keeps_kubectl_default_columns() -> None:
    assert columns_of(gvk("data:\n  input:\n    url: string\n")) == []
    assert columns_of(gvk("control:\n  cfg: object\n")) == []
