"""``mtlexport eval``: metrics per task of a checkpoint, beside trivial baselines."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mtlexport.cli._common import CheckpointArg, JsonOpt, ModelOpt, RichReporter, emit_json, make_table, stdout

SplitOpt = Annotated[str, typer.Option("--split", help="Split to evaluate: train, val or test.")]
DataOpt = Annotated[list[str] | None, typer.Option(
    "--data", metavar="KEY=VALUE", help="Override a data config field: KEY=VALUE (value parsed as YAML). Repeatable.")]
BatchOpt = Annotated[int | None, typer.Option("--batch", "--batch-size", min=1,
                                              help="Batch size (default: the training one).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]


def parse_key_values(items: list[str], option: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` as ``{"a": 1, "b": "x"}`` (values parsed as YAML)."""
    import yaml

    from mtlexport.yamlio import load_yaml

    from mtlexport.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} {item!r} must look like KEY=VALUE")
        try:
            out[key] = load_yaml(raw) if raw else None
        except yaml.YAMLError:
            raise ConfigError(f"{option} {item!r}: the value is not valid YAML") from None
    return out


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""

    @app.command("eval")
    def eval_command(
        checkpoint: CheckpointArg,
        split: SplitOpt = "test",
        data: DataOpt = None,
        batch_size: BatchOpt = None,
        device: DeviceOpt = "auto",
        model: ModelOpt = None,
        json: JsonOpt = False,
    ) -> None:
        """Evaluate a checkpoint on a split, beside trivial baselines scored the same way."""
        from mtlexport.train import evaluate_checkpoint

        if device not in ("auto", "cpu", "cuda"):
            from mtlexport.errors import ConfigError

            raise ConfigError(f"--device must be auto, cpu or cuda, got {device!r}")
        with RichReporter() as reporter:
            result = evaluate_checkpoint(checkpoint, split=split, data_overrides=parse_key_values(data or [], "--data"),
                                         batch_size=batch_size, device=device, reporter=reporter, factory=model)
        if json:
            emit_json(result.to_dict())
            return
        rows = []
        for task, metrics in result.metrics.items():
            base = result.baseline.get(task, {})
            higher = result.higher_is_better.get(task, {})
            for name, value in metrics.items():
                b = base.get(name)
                direction = higher.get(name, higher.get(name.split("_")[0]))  # accuracy_<attr> -> accuracy
                better = None if b is None or direction is None else (value > b if direction else value < b)
                rows.append([f"{task}.{name}", value, b, better])
        stdout.print(make_table(f"{result.split} split, {result.num_samples} samples ({result.device})",
                                ["metric", "model", "baseline", "beats baseline"], rows))
        line = headline(result.delta_vs_baseline)
        if line:
            stdout.print(line, highlight=False)


def headline(delta: dict[str, float]) -> str:
    """Delta vs the trivial baseline per task, then the mean; a task that loses to the baseline
    is named first, so the mean never hides it."""
    tasks = {k: v for k, v in delta.items() if k != "overall"}
    if not tasks:
        return ""
    per_task = ", ".join(f"{k} {v:+.1f}%" for k, v in tasks.items())
    text = f"Delta vs baseline: {per_task}; mean {delta.get('overall', 0.0):+.1f}%"
    worse = [k for k, v in tasks.items() if v < 0]
    if worse:
        text = f"WORSE than the trivial baseline on {', '.join(worse)}. " + text
    return text
