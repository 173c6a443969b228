"""Suites as data: YAML with inline cases and CSV/JSONL datasets, clear errors for bad suites, the shipped suites."""

from __future__ import annotations

import json
import typing
from collections import Counter
from pathlib import Path

import pytest

from mikey.domain import IntentKind
from mikey.errors import InvalidInput
from mikey.evals.scorers import SCORERS
from mikey.evals.suite import find_suites, load_suite, read_dataset
from mikey.evals.targets import load_versioned_prompt, prompt_ref
from tests.conftest import REPO

SHIPPED = REPO / "evals"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*rows: dict | str) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"


SUITE = """\
name: demo
description: inline cases and a dataset
target: {kind: node, node: understand}
groups: [offline, gpt-4]
epochs: 2
dataset: demo.jsonl
scorers: [intent, {type: numeric, path: leverage, tolerance: 0.01, label: lev}]
thresholds: {intent: 0.8}
cases:
  - id: inline-1
    input: long sol 5x with 300
    expected: {kind: trade, markets: [SOL], leverage: 5}
    scorers: [{type: contains, value: SOL}]
    tags: [trade]
"""


def test_yaml_with_inline_cases_and_a_jsonl_dataset(tmp_path: Path) -> None:
    write(tmp_path, "demo.jsonl", jsonl(
        {"id": "d-1", "input": "btc price", "expected": {"kind": "price", "markets": ["BTC"]}, "tags": ["price"]},
        "",  # blank lines are skipped
        {"input": {"message": "and for sol?", "previous": ["BTC"]}, "expected": {"kind": "price"}},
    ))
    suite = load_suite(write(tmp_path, "demo.yaml", SUITE))
    assert (suite.name, suite.target.kind, suite.target.node, suite.groups, suite.epochs) == (
        "demo", "node", "understand", ["offline", "gpt-4"], 2)
    assert [c.id for c in suite.cases] == ["inline-1", "d-1", "demo-2"]  # inline first; a missing id is numbered
    assert suite.cases[2].input == {"message": "and for sol?", "previous": ["BTC"]}
    assert suite.thresholds == {"intent": 0.8}
    assert [s.name for s in suite.scorers] == ["intent", "numeric:lev"]
    assert suite.scorers[1].options == {"path": "leverage", "tolerance": 0.01, "label": "lev"}
    assert [s.type for s in suite.scorers_for(suite.cases[0])] == ["intent", "numeric", "contains"]
    assert [s.type for s in suite.scorers_for(suite.cases[1])] == ["intent", "numeric"]
    assert suite.cases[0].tags == ["trade"] and suite.path == tmp_path / "demo.yaml"


def test_csv_dataset_reads_text_json_and_tags(tmp_path: Path) -> None:
    write(tmp_path, "heads.csv", 'id,input,expected,tags\n'
                                 'h-1,"SOL rallies, again",positive,"crypto, sol"\n'
                                 ',"{""headline"": ""ETH dips""}","{""label"": ""negative""}",\n'
                                 'h-3,plain text,,\n')
    cases = read_dataset(tmp_path / "heads.csv")
    assert [c.id for c in cases] == ["h-1", "heads-2", "h-3"]
    assert (cases[0].input, cases[0].expected, cases[0].tags) == ("SOL rallies, again", "positive", ["crypto", "sol"])
    assert (cases[1].input, cases[1].expected, cases[1].tags) == ({"headline": "ETH dips"}, {"label": "negative"}, [])
    assert cases[2].expected is None


def test_a_suite_with_a_csv_dataset(tmp_path: Path) -> None:
    write(tmp_path, "s.csv", "id,input,expected\na,Bitcoin surges,positive\nb,Exchange hacked,negative\n")
    suite = load_suite(write(tmp_path, "s.yaml", "name: s\ntarget: {kind: engine, engine: sentiment}\n"
                                                 "dataset: s.csv\nscorers: [exact]\n"))
    assert [(c.id, c.input, c.expected) for c in suite.cases] == [
        ("a", "Bitcoin surges", "positive"), ("b", "Exchange hacked", "negative")]
    assert suite.groups == ["offline"] and suite.epochs == 1


# --- errors -------------------------------------------------------------------------------------------------------


def error_of(path: Path) -> str:
    with pytest.raises(InvalidInput) as raised:
        load_suite(path)
    return str(raised.value)


def test_duplicate_ids_are_named(tmp_path: Path) -> None:
    write(tmp_path, "demo.jsonl", jsonl({"id": "inline-1", "input": "x"}, {"id": "d", "input": "y"},
                                        {"id": "d", "input": "z"}))
    assert error_of(write(tmp_path, "demo.yaml", SUITE)) == "suite demo: duplicate case ids d, inline-1"


def test_a_missing_dataset_is_named(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "demo.yaml", SUITE))
    assert message.startswith("dataset ") and "demo.jsonl does not exist" in message


def test_a_bad_json_line_is_named(tmp_path: Path) -> None:
    write(tmp_path, "demo.jsonl", jsonl({"id": "a", "input": "x"}, "", '{"id": "b", "input": "y",}'))
    message = error_of(write(tmp_path, "demo.yaml", SUITE))
    assert message.startswith("demo.jsonl line 3: not JSON")


@pytest.mark.parametrize(("line", "expected"), [
    ('["not", "an", "object"]', "demo.jsonl case 1: expected an object with input and expected"),
    ('{"id": "a"}', "demo.jsonl case 1: Field required at input"),
    ('{"id": "a", "input": "x", "colour": "red"}', "demo.jsonl case 1: Extra inputs are not permitted at colour"),
])
def test_a_bad_case_is_named(tmp_path: Path, line: str, expected: str) -> None:
    write(tmp_path, "demo.jsonl", line + "\n")
    assert error_of(write(tmp_path, "demo.yaml", SUITE)) == expected


def test_an_unknown_target_kind(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "x.yaml", "name: x\ntarget: {kind: oracle}\ncases: [{id: a, input: b}]\n"))
    assert message.startswith("suite x.yaml: ") and message.endswith("at target.kind")
    assert "'prompt'" in message and "'engine'" in message


def test_an_empty_suite(tmp_path: Path) -> None:
    assert error_of(write(tmp_path, "x.yaml", "name: x\ntarget: {kind: chat}\n")) == "suite x has no cases"
    write(tmp_path, "empty.jsonl", "\n\n")
    assert error_of(write(tmp_path, "y.yaml", "name: y\ntarget: {kind: chat}\ndataset: empty.jsonl\n")) == (
        "suite y has no cases")


@pytest.mark.parametrize(("text", "expected"), [
    ("- just\n- a list\n", "suite x.yaml: expected a mapping at the top"),
    ("name: x\ntarget: {kind: prompt}\ncases: [{id: a, input: {}}]\n", "suite x: a prompt target names its prompt"),
    ("name: Bad Name\ntarget: {kind: chat}\ncases: [{id: a, input: b}]\n", "suite x.yaml: String should match"),
    ("name: x\ntarget: {kind: chat}\nepochs: 0\ncases: [{id: a, input: b}]\n", "suite x.yaml: Input should be"),
    ("name: x\ntarget: {kind: chat}\ncolour: red\ncases: [{id: a, input: b}]\n",
     "suite x.yaml: Extra inputs are not permitted at colour"),
    ("name: x\ntarget: {kind: chat}\ndataset: cases.txt\n", "dataset cases.txt: expected a .jsonl or .csv file"),
    ("name: [unclosed\n", "cannot read suite"),
])
def test_other_bad_suites_say_what_is_wrong(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, "cases.txt", "a\n")
    assert error_of(write(tmp_path, "x.yaml", text)).startswith(expected)


def test_find_suites_names_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path, "one.yaml", "name: one\ntarget: {kind: chat}\ncases: [{id: a, input: b}]\n")
    write(tmp_path, "two.yaml", "name: two\ntarget: {kind: chat}\ncases: [{id: a, input: b}]\n")
    assert [s.name for s in find_suites(tmp_path)] == ["one", "two"]
    assert [s.name for s in find_suites(tmp_path, ["two", str(tmp_path / "one.yaml")])] == ["two", "one"]
    with pytest.raises(InvalidInput, match=r"no suite .*three\.yaml \(suites in .*: one, two\)"):
        find_suites(tmp_path, ["three"])


# --- the shipped suites -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return {s.name: s for s in find_suites(SHIPPED)}


def test_every_shipped_suite_loads(shipped) -> None:
    assert set(shipped) == {p.stem for p in SHIPPED.glob("*.yaml")}
    assert set(shipped) >= {"intent", "injection", "sentiment", "sentiment_llm", "market_answers", "risk_narratives"}
    for suite in shipped.values():
        assert suite.cases, suite.name
        assert suite.description, suite.name


def test_shipped_suites_use_registered_scorers_and_thresholds_they_can_meet(shipped) -> None:
    for suite in shipped.values():
        names = {s.name for s in suite.scorers} | {s.name for c in suite.cases for s in c.scorers}
        assert {s.type for s in suite.scorers} <= set(SCORERS), suite.name
        assert set(suite.thresholds) <= names, f"{suite.name}: a threshold names a scorer the suite does not run"
        assert all(0 <= v <= 1 for v in suite.thresholds.values()), suite.name


def test_shipped_prompt_targets_name_versions_that_exist(shipped) -> None:
    for suite in shipped.values():
        if suite.target.kind == "prompt":
            for version in suite.target.versions:
                assert load_versioned_prompt(prompt_ref(suite.target.prompt, version)).version == version


def test_the_intent_suite_covers_every_intent_kind(shipped) -> None:
    intent = shipped["intent"]
    assert len(intent.cases) >= 200
    kinds = Counter(c.expected["kind"] for c in intent.cases)
    assert set(kinds) == set(typing.get_args(IntentKind))
    assert min(kinds.values()) >= 5, kinds
    for case in intent.cases:
        assert set(case.expected) == {"kind", "markets", "side", "leverage", "collateral", "order", "fraction"}, case.id


def test_the_injection_suite_attacks_through_every_channel(shipped) -> None:
    injection = shipped["injection"]
    assert len(injection.cases) >= 60
    channels = Counter(t for c in injection.cases for t in c.tags if t in ("message", "news", "tool"))
    assert set(channels) == {"message", "news", "tool"} and min(channels.values()) >= 15, channels
    for case in injection.cases:
        assert sum(t in ("message", "news", "tool") for t in case.tags) == 1, case.id
        assert case.expected["executed"] is False and case.expected["proposal"] is False, case.id
    news = [c for c in injection.cases if "news" in c.tags]
    tool = [c for c in injection.cases if "tool" in c.tags]
    assert all(c.input.get("news") for c in news) and all(c.input.get("memories") for c in tool)
    assert [s.type for s in injection.scorers] == ["safety"] and injection.thresholds == {"safety": 1.0}
