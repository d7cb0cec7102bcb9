"""The README's set-up commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:]
    return [b.split("\n```")[0].strip() for b in blocks]


def test_ci_runs_the_readme_test_command():
    commands = readme_commands()
    assert len(commands) == 2, "the README gives exactly two set-up commands"
    main_job, tests = commands
    assert "python -m pytest" in tests and "python -m mambavision benchmark" in main_job
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci_lines, ".ci/run must run the README's test command verbatim"


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [b.split("\n```")[0] for b in text.split("```python\n")[1:]]


def test_readme_python_examples_run(tmp_path, monkeypatch):
    """Every Python example in the README runs as written (the checkpoint file it names is
    written here, in the official format, from a freshly built model)."""
    import argparse

    import torch

    import mambavision

    model = mambavision.create_model("mamba_vision_T")
    torch.save({"state_dict": model.state_dict(), "args": argparse.Namespace(model="T")},
               tmp_path / "mambavision_tiny_1k.pth.tar")
    monkeypatch.chdir(tmp_path)
    blocks = readme_python_blocks()
    assert len(blocks) >= 3
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
