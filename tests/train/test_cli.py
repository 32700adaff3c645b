"""The train stage's CLI: train -> eval -> models list/promote/rollback, through `sopforge.cli.main`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from sopforge.cli import main


def test_train_eval_promote_through_the_cli(tmp_path: Path, overrides, capsys):
    ws = str(tmp_path / "ws")
    assert main(["-w", ws, "train", *overrides("sft.max_steps=2")]) == 0
    out = capsys.readouterr().out
    run_id = re.search(r"^run (\S+): finished", out, re.MULTILINE).group(1)
    assert "finished" in out and f"sopforge eval --run {run_id}" in out

    assert main(["-w", ws, "eval", "--limit", "3", "--no-general", "--max-new-tokens", "16"]) == 0
    out = capsys.readouterr().out
    assert "compliance" in out and f"{run_id}/report/report.html" in out
    tasks = ["--tasks", "summary,qa", "--limit", "2", "--no-general", "--max-new-tokens", "16"]
    assert main(["-w", ws, "eval", *tasks]) == 0
    out = capsys.readouterr().out
    assert f"{run_id}/report-qa-summary/report.html" in out and "json:procedure" not in out

    assert main(["-w", ws, "models", "list"]) == 0
    assert run_id in capsys.readouterr().out
    assert main(["-w", ws, "models", "promote", "latest"]) == 0
    assert f"promoted: {run_id}" in capsys.readouterr().out
    assert main(["-w", ws, "models", "show", "promoted"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["promoted"] == 1 and Path(shown["adapter_path"]).is_dir()
    assert Path(shown["base_model"]).is_absolute()

    assert main(["-w", ws, "models", "rollback"]) == 1  # a UserError: one line, no traceback
    assert "nothing to roll back" in capsys.readouterr().err


def test_models_import_copies_a_local_folder_once(tmp_path: Path, tiny_model_dir: Path, capsys):
    ws = str(tmp_path / "ws")
    for _ in range(2):  # idempotent
        assert main(["-w", ws, "models", "import", str(tiny_model_dir), "--name", "tiny"]) == 0
    assert (tmp_path / "ws" / "models" / "tiny" / "config.json").is_file()
    main(["-w", ws, "models", "list"])
    assert "tiny" in capsys.readouterr().out


def test_cli_module_imports_nothing_heavy():
    code = (
        "import sys, sopforge.train.cli, sopforge.cli; sopforge.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_resume_without_an_unfinished_run_is_a_clear_error(tmp_path: Path, capsys):
    assert main(["-w", str(tmp_path / "ws"), "train", "--resume"]) == 1
    assert "no unfinished run" in capsys.readouterr().err
