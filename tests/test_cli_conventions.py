"""Conventions every `recroute` command follows (docs/cli.md): an Example in --help that parses,
`--json -` / `--csv -` on standard output, and bad input as one `error:` line on stderr with exit 2."""

from __future__ import annotations

import io
import json
import shlex

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from recroute.cli.common import user_errors, write_csv, write_json
from recroute.cli.data_cmd import write_dataset
from recroute.cli.main import app
from recroute.data.synthetic import make_synthetic

runner = CliRunner()


def leaf_commands() -> list:
    """(["data", "info"], command) for every registered command, walking the groups."""
    out = []

    def walk(group, path: list[str]) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):  # a group
                walk(command, [*path, name])
            else:
                out.append(([*path, name], command))

    walk(typer.main.get_command(app), [])
    return out


COMMANDS = leaf_commands()


def test_the_walk_finds_the_commands():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"eval", "scaling", "data info", "data convert", "encode", "fit", "route", "serve"} <= names


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_shows_one_runnable_example(path, command):
    examples = [line.strip() for line in (command.help or "").splitlines() if line.strip().startswith("Example:")]
    assert len(examples) == 1, f"{' '.join(path)}: expected one 'Example:' line in the docstring, got {examples}"
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert " ".join(examples[0].split()) in " ".join(result.output.split())  # shown by --help
    words = shlex.split(examples[0].split("Example:", 1)[1].split("|")[-1])
    assert words[: 1 + len(path)] == ["recroute", *path]
    args = words[1 + len(path):]
    with command.make_context(" ".join(path), args, resilient_parsing=False) as ctx:  # every option exists, parses
        assert ctx.params


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    data = make_synthetic(200, 8, 3, embedding_dim=8, random_state=1)
    return data.save(tmp_path_factory.mktemp("conv") / "ds")


def test_json_to_stdout_is_pure_json(folder):
    result = runner.invoke(app, ["data", "info", str(folder), "--json", "-"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # the table went to stderr
    assert report["n_prompts"] == 200 and report["n_llms"] == 8
    assert "per LLM" in result.stderr


def test_eval_json_and_csv_to_stdout(folder, tmp_path):
    args = ["eval", "-d", str(folder), "--routers", "best_single,knn", "--setting", "easy"]
    result = runner.invoke(app, [*args, "--json", "-"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["router"] for r in rows} == {"random", "oracle", "best_single", "knn"}
    assert "V_B" in result.stderr and "Summary" in result.stderr  # the table is still shown, on stderr
    result = runner.invoke(app, [*args, "--csv", "-", "--json", str(tmp_path / "rows.json")])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert len(frame) == len(json.loads((tmp_path / "rows.json").read_text())) == len(rows)
    assert list(frame.columns[:4]) == ["router", "setting", "m", "group"]
    result = runner.invoke(app, [*args, "--csv", "-", "--json", "-"])
    assert result.exit_code == 2 and "--json and --csv both write to standard output" in result.stderr


def test_writers_to_a_file_and_to_stdout(tmp_path, capsys):
    assert write_json(tmp_path / "a.json", {"x": float("nan"), "y": [1, 2]}) == tmp_path / "a.json"
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": None, "y": [1, 2]}
    assert write_json("-", [{"a": 1}]) is None and json.loads(capsys.readouterr().out) == [{"a": 1}]
    write_csv("-", pd.DataFrame({"a": [1, 2]}))
    assert capsys.readouterr().out.splitlines() == ["a", "1", "2"]


def test_data_info_reads_what_convert_reads(folder, tmp_path):
    data = make_synthetic(60, 5, 2, random_state=3)
    sources = {"long.csv": "csv", "long.parquet": "parquet", "wide.parquet": "wide-parquet", "wide.csv": "wide-csv",
               "rd.pkl": "routereval"}
    for name, to in sources.items():
        write_dataset(data, tmp_path / name, to)
        result = runner.invoke(app, ["data", "info", str(tmp_path / name), "--json", "-"])
        assert result.exit_code == 0, f"{name}: {result.output}"
        report = json.loads(result.stdout)
        n_prompts = 60 if to != "routereval" else report["n_prompts"]  # a router dataset keeps train + val + test
        assert (report["n_prompts"], report["n_llms"]) == (n_prompts, 5), name


BAD = [
    (["data", "info", "{tmp}/missing.csv"], "missing.csv"),
    (["data", "info", "{folder}", "--top", "many"], "Invalid value for '--top'"),
    (["data", "info", "{folder}", "--from", "xml"], "unknown input format 'xml'"),
    (["data", "convert", "{folder}", "{tmp}/o", "--to", "xml"], "unknown output format 'xml'"),
    (["eval", "-d", "no_such_dataset"], "no dataset 'no_such_dataset'"),
    (["eval", "-d", "{folder}", "--routers", "knn,nope"], "unknown router 'nope'"),
    (["eval", "-d", "{folder}", "--setting", "medium"], "unknown setting"),
    (["eval", "-d", "{folder}", "--no-such-option"], "No such option: --no-such-option"),
    (["scaling", "-d", "{folder}", "--out", "{tmp}/s.png", "--samples", "0"], "--samples must be at least 1"),
    (["encode", "no_such_dataset"], "no dataset 'no_such_dataset'"),
    (["fit", "-d", "{folder}", "--router", "nope", "--out", "{tmp}/b"], "unknown router 'nope'"),
    (["route", "--bundle", "{tmp}/no_bundle"], "no_bundle"),
    (["serve", "--bundle", "{tmp}/no_bundle"], "no_bundle"),
    (["debias", "-d", "{folder}", "--remedies", "magic"], "magic"),
    (["coldstart", "-d", "{folder}", "--k", "ten"], "--k must be comma-separated"),
    (["new-tasks", "-d", "{folder}", "--m", "five"], "--m must be comma-separated integers"),
    (["eval"], "exactly one of --dataset"),
    (["fit", "-d", "{folder}"], "Missing option '--out'"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a[:2]) + f" #{i}" for i, (a, _) in enumerate(BAD)])
def test_bad_input_is_one_error_line_on_stderr(folder, tmp_path, args, message):
    args = [a.replace("{folder}", str(folder)).replace("{tmp}", str(tmp_path)) for a in args]
    result = runner.invoke(app, [*args, "--quiet"] if "--no-such-option" not in args and args[0] != "fit" else args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0] and "Traceback" not in result.output
    assert result.stdout == ""


def test_user_errors_catches_os_errors():
    with pytest.raises(typer.Exit) as info, user_errors():
        open("/no/such/dir/file.txt")
    assert info.value.exit_code == 2
