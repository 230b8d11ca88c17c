"""`export onnx`: model directory -> validated (int8) ONNX edge bundle.

The click group `export_group` is attached to `distill` as `distill export` and runs alone as
`python -m export`. Heavy libraries are imported inside the command, so --help is instant.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from distill.cli_group import Group
from distill.options import data_options, data_options_from
from export import ExportError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULT_OPSET = 18          # same value as onnx_export.DEFAULT_OPSET (kept import-free here)
DEFAULT_SAMPLES = 64
DEFAULT_MAX_DROP = 1.0
VALIDATION_BATCH = 32
INT8_ONLY = ("weight_type", "per_channel", "max_accuracy_drop")   # settings that mean nothing for fp32


@dataclass
class ExportSettings:
    model_dir: str
    out: str
    int8: bool = False
    weight_type: str = "quint8"
    per_channel: bool = False
    opset: int = DEFAULT_OPSET
    max_length: int | None = None
    eval_path: str | None = None
    data_options: object = None          # distill.data.DataOptions for --eval
    max_accuracy_drop: float = DEFAULT_MAX_DROP
    samples: int = DEFAULT_SAMPLES
    force: bool = False
    seed: int = 0


def _log(message: str) -> None:
    click.echo(message, err=True)


def resolve_max_length(requested, model_dir, model, tokenizer) -> int:
    from distill.predict import default_max_length

    positions = int(getattr(model.config, "max_position_embeddings", 512))
    if requested is None:
        return min(default_max_length(model_dir, tokenizer), positions)
    if not 2 <= requested <= positions:
        raise ExportError(f"--max-length {requested}: must lie in 2..{positions} "
                          "(the model's max_position_embeddings)")
    return int(requested)


def _weights_sha256(model_dir) -> str | None:
    from distill.data import file_sha256

    weights = Path(model_dir) / "model.safetensors"
    return file_sha256(weights) if weights.is_file() else None


@dataclass
class Sample:
    """The rows every graph is run on: the same padded int64 batches go to torch and ONNX."""
    source: str        # "eval" or "generated"
    main: list         # [(row indices, feeds)] over the eval/generated texts
    n_main: int
    edge: list         # one heavily padded batch: lengths 1 and max_length, plus a real row
    n_edge: int
    lengths: list


def make_sample(tokenizer, rows: list[dict], source: str, max_length: int) -> Sample:
    """rows: the texts encoded by validate.encode_rows."""
    from export import validate as v

    edge_rows = v.edge_rows(tokenizer, max_length) + rows[:1]
    pad = tokenizer.pad_token_id
    return Sample(source, v.batches(rows, VALIDATION_BATCH, pad), len(rows),
                  v.mixed_batch(edge_rows, pad), len(edge_rows),
                  [len(r["input_ids"]) for r in rows + edge_rows])


def run_sample(logits_fn, sample: Sample):
    """(main logits, edge logits) from logits_fn(feed_batches, n)."""
    return logits_fn(sample.main, sample.n_main), logits_fn(sample.edge, sample.n_edge)


def max_diff(a, b) -> float:
    from export.validate import max_abs_diff

    return max(max_abs_diff(a[0], b[0]), max_abs_diff(a[1], b[1]))


def accuracy_section(data, labels, logits: dict, max_drop: float) -> dict:
    """Scores of every engine on the eval file; with int8, its agreement and accuracy drop."""
    from export import validate as v

    section = {"file": data.path, "sha256": data.sha256, "n": len(data), "skipped": data.skipped}
    for name, (main, _) in logits.items():
        section[name] = v.scores(data.labels, main, labels)
    if "onnx_int8" in logits:
        section["label_agreement_int8_vs_fp32"] = v.label_agreement(logits["onnx_fp32"][0],
                                                                    logits["onnx_int8"][0])
        section["int8_accuracy_drop_points"] = v.accuracy_drop_points(section["onnx_fp32"],
                                                                       section["onnx_int8"])
        section["max_accuracy_drop_points"] = max_drop
    return section


def failed_checks(report: dict, int8: bool) -> list[str]:
    """Every check that failed (all of them are run, so one message lists everything)."""
    from export import validate as v

    failures = []

    def attempt(check, *args):
        try:
            return check(*args)
        except ExportError as error:
            failures.append(str(error))

    attempt(v.check_parity, report["parity"]["max_abs_logit_diff"])
    attempt(v.check_tokenizer_parity, report["tokenizer_parity"])
    report["ops_missing_in_runtime"] = attempt(v.check_runtime_ops, report["ops"])
    accuracy = report["accuracy"]
    if accuracy is not None and int8:
        attempt(v.check_accuracy_drop, accuracy["int8_accuracy_drop_points"],
                accuracy["max_accuracy_drop_points"])
    return failures


def export_bundle(s: ExportSettings, log=_log) -> dict:
    """The whole export, holding --out's lock; returns the export.json report. Raises ExportError
    (with .report when the export ran but failed a check) and leaves --out untouched on any
    failure."""
    from distill.savedir import OutputLockedError, output_lock

    try:
        with output_lock(s.out):
            return _export_bundle(s, log)
    except OutputLockedError as error:
        raise ExportError(str(error)) from None


def _export_bundle(s: ExportSettings, log=_log) -> dict:
    from distill.savedir import OutputExistsError, check_spares_inputs
    from export import validate as v
    from export.bundle import check_out_dir, runtime_config, staging, write_json, write_support_files
    from export.onnx_export import export_fp32, load_classifier, opset_problem

    started = time.time()
    if s.samples < 1:
        raise ExportError("--samples must be at least 1")
    if s.max_accuracy_drop < 0:
        raise ExportError(f"--max-accuracy-drop {s.max_accuracy_drop:g}: must be at least 0 (points of accuracy)")
    problem = opset_problem(s.opset)
    if problem:
        raise ExportError(f"--opset {s.opset}: {problem}")
    check_out_dir(s.out, s.force)
    try:
        check_spares_inputs(s.out, {"MODEL_DIR": s.model_dir, "--eval": s.eval_path,
                                    "--label-names": s.data_options.label_names if s.data_options else None})
    except OutputExistsError as error:
        raise ExportError(str(error)) from None
    model, tokenizer, labels = load_classifier(s.model_dir)
    max_length = resolve_max_length(s.max_length, s.model_dir, model, tokenizer)
    runtime = runtime_config(labels, tokenizer, max_length, quantized=s.int8)
    data = None
    if s.eval_path:
        from distill.data import DataOptions, describe_skipped, load_labelled
        data = load_labelled(s.eval_path, s.data_options or DataOptions(), labels=labels)
        if data.skipped:
            log(f"{s.eval_path}: {describe_skipped(data.skipped)}")
        if not len(data):
            raise ExportError(f"{s.eval_path}: no rows to evaluate")
        texts, source = data.texts, "eval"
    else:
        texts, source = v.generated_texts(tokenizer, s.samples, max_length, s.seed), "generated"
    rows = v.encode_rows(tokenizer, texts, max_length)
    sample = make_sample(tokenizer, rows, source, max_length)
    tokens = v.tokenizer_parity(tokenizer, runtime, texts, rows, max_length)
    log(f"torch reference on {sample.n_main} {sample.source} texts + {sample.n_edge} edge rows "
        f"(lengths {min(sample.lengths)}..{max(sample.lengths)})")
    logits = {"torch": run_sample(lambda b, n: v.torch_logits(model, b, n), sample)}

    out = Path(s.out)
    with staging(out, s.force) as tmp:
        graphs = {"fp32": tmp / ("model-fp32.onnx" if s.int8 else "model.onnx")}
        log(f"exporting {s.model_dir} (torch.onnx.export dynamo=True, opset {s.opset})")
        exporter = export_fp32(model, graphs["fp32"], s.opset)
        quantization = None
        if s.int8:
            from export.quantize import quantize_int8
            log(f"quantizing to int8 ({s.weight_type}, {'per-channel' if s.per_channel else 'per-tensor'})")
            graphs["int8"] = tmp / "model.onnx"
            quantization = quantize_int8(graphs["fp32"], graphs["int8"], s.weight_type, s.per_channel)
        for name, path in graphs.items():
            session = v.ort_session(path)
            logits[f"onnx_{name}"] = run_sample(lambda b, n: v.ort_logits(session, b, n), sample)

        parity = {"rows": sample.n_main + sample.n_edge, "source": sample.source,
                  "min_length": min(sample.lengths), "max_length": max(sample.lengths),
                  "tolerance": v.PARITY_TOLERANCE,
                  "max_abs_logit_diff": max_diff(logits["torch"], logits["onnx_fp32"]),
                  "label_agreement_fp32_vs_torch": v.label_agreement(logits["torch"][0],
                                                                     logits["onnx_fp32"][0])}
        sizes = {f"{name}_bytes": path.stat().st_size for name, path in graphs.items()}
        if s.int8:
            parity["int8_max_abs_logit_diff_vs_fp32"] = max_diff(logits["onnx_fp32"], logits["onnx_int8"])
            parity["label_agreement_int8_vs_fp32"] = v.label_agreement(logits["onnx_fp32"][0],
                                                                       logits["onnx_int8"][0])
            sizes["int8_fraction_of_fp32"] = sizes["int8_bytes"] / sizes["fp32_bytes"]
        report = {
            "bundle": str(out), "model_dir": str(Path(s.model_dir).resolve()),
            "weights_sha256": _weights_sha256(s.model_dir),
            "model_file": "model.onnx", "model_precision": "int8" if s.int8 else "fp32",
            "fp32_graph_kept": not s.int8,
            "labels": runtime["labels"], "max_length": max_length,
            "inputs": runtime["inputs"], "output": runtime["output"],
            "export": exporter, "opset": {name: v.opset_of(path) for name, path in graphs.items()},
            "quantization": quantization, "sizes": sizes, "parity": parity,
            "accuracy": accuracy_section(data, labels, logits, s.max_accuracy_drop) if data else None,
            "ops": {name: v.op_census(path) for name, path in graphs.items()},
            "ops_missing_in_runtime": None,
            "tokenizer_parity": tokens,
            "settings": settings_record(s),
            "versions": _versions(),
        }
        failures = failed_checks(report, s.int8)
        report["wall_time_s"] = round(time.time() - started, 2)
        if failures:
            error = ExportError("; ".join(failures))
            error.report = report
            raise error
        if s.int8:
            graphs["fp32"].unlink()   # the bundle keeps the one model the runtime runs
        write_support_files(tmp, s.model_dir, tokenizer, runtime)
        write_json(tmp / "export.json", report)
    return report


def settings_record(s: ExportSettings) -> dict:
    """export.json's settings: the int8-only ones are None for an fp32 bundle."""
    record = {k: val for k, val in asdict(s).items() if k != "data_options"}
    if not s.int8:
        record.update(dict.fromkeys(INT8_ONLY))
    return record | {"data_options": asdict(s.data_options) if s.data_options else None}


def _versions() -> dict:
    from importlib import metadata

    from distill.savedir import library_versions

    versions = library_versions()
    try:
        versions["onnxscript"] = metadata.version("onnxscript")
    except metadata.PackageNotFoundError:
        pass
    return versions


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def format_summary(report: dict) -> str:
    """The short table printed at the end (and on a failed check)."""
    from distill.data import describe_skipped

    acc, sizes, parity = report.get("accuracy"), report["sizes"], report["parity"]
    rows = [("torch", acc and acc["torch"], None, None),
            ("onnx fp32", acc and acc["onnx_fp32"], parity["max_abs_logit_diff"], sizes["fp32_bytes"])]
    if "int8_bytes" in sizes:
        rows.append(("onnx int8", acc and acc.get("onnx_int8"),
                     parity.get("int8_max_abs_logit_diff_vs_fp32"), sizes["int8_bytes"]))
    lines = [f"{'':10}  {'accuracy':>8}  {'macro-F1':>8}  {'max|dlogit|':>11}  {'size':>9}"]
    for name, score, diff, size in rows:
        a = f"{score['accuracy']:.4f}" if score else "-"
        f = f"{score['macro_f1']:.4f}" if score else "-"
        d = "-" if diff is None else f"{diff:.2e}"
        z = "-" if size is None else _mb(size)
        lines.append(f"{name:10}  {a:>8}  {f:>8}  {d:>11}  {z:>9}")
    if acc:
        skipped = describe_skipped(acc.get("skipped") or {})
        lines.append(f"accuracy on {acc['n']} rows of {acc['file']}" + (f" ({skipped})" if skipped else ""))
    lines.append(f"max|dlogit|: fp32 vs torch (limit {parity['tolerance']:g}); int8 vs fp32 (information) "
                 f"on {parity['rows']} rows, lengths {parity['min_length']}..{parity['max_length']}")
    if "int8_bytes" in sizes:
        q = report["quantization"]
        lines.append(f"int8: {q['weight_type']}, {'per-channel' if q['per_channel'] else 'per-tensor'}, "
                     f"{sizes['int8_fraction_of_fp32']:.1%} of fp32; labels agree with fp32 on "
                     f"{parity['label_agreement_int8_vs_fp32']:.1%} of rows")
        if acc:
            lines.append(f"int8 accuracy drop {acc['int8_accuracy_drop_points']:.2f} points "
                         f"(limit {acc['max_accuracy_drop_points']:g})")
    for name, census in report["ops"].items():
        lines.append(f"ops {name} ({len(census)}): {' '.join(census)}")
    tokens = report.get("tokenizer_parity")
    if tokens is not None and not tokens["differ"]:
        lines.append(f"the numpy runtime's tokenizer gives the model's ids on all {tokens['texts']} texts")
    missing = report.get("ops_missing_in_runtime")
    if missing is not None:
        lines.append("every op type is implemented by the numpy runtime" if not any(missing.values())
                     else f"ops missing in runtime: {missing}")
    return "\n".join(lines)


@click.group("export", cls=Group, context_settings=CONTEXT)
def export_group():
    """Export a trained model to an edge bundle (ONNX + vocabulary + runtime.json).

    Run as `distill export ...` or `python -m export ...` (a console script called `export`
    could never run: `export` is a shell builtin)."""


@export_group.command("onnx", context_settings=CONTEXT)
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(),
              help="Bundle directory to create (built in a temporary sibling, renamed at the end).")
@click.option("--int8", is_flag=True, default=False,
              help="Quantize weights to int8 (onnxruntime dynamic quantization); model.onnx is then "
                   "the int8 graph and the fp32 graph is validated but not kept.")
@click.option("--weight-type", type=click.Choice(["quint8", "qint8"]), default="quint8", show_default=True,
              help="With --int8: unsigned (quint8, asymmetric) or signed (qint8, symmetric) weights. quint8 "
                   "runs exactly in onnxruntime and the numpy runtime; onnxruntime computes qint8 "
                   "inexactly on AVX2 CPUs without VNNI (saturating int16 sums).")
@click.option("--per-channel", is_flag=True, default=False,
              help="With --int8: quantize weights per output channel instead of per tensor.")
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True,
              help="ai.onnx opset version to export: 18 up to the highest the installed exporter can "
                   "produce (25 with onnxscript 0.7); another is refused before the model is loaded.")
@click.option("--max-length", type=int, default=None,
              help="Token limit written to runtime.json (default: the model's training max_length, "
                   "capped by its position embeddings).")
@click.option("--eval", "eval_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Labelled file: accuracy and macro-F1 of torch, fp32 and int8 ONNX; its texts are "
                   "also the parity sample.")
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0), default=DEFAULT_MAX_DROP, show_default=True,
              help="With --int8 and --eval: fail (nothing written) when int8 accuracy is more than "
                   "this many points below fp32.")
@click.option("--samples", type=int, default=DEFAULT_SAMPLES, show_default=True,
              help="Generated texts for the parity check when --eval is not given.")
@click.option("--force", is_flag=True, default=False, help="Replace an existing --out directory.")
@click.option("--quiet", is_flag=True, default=False,
              help="Print the summary alone: no step-by-step lines while exporting and checking.")
@data_options
def onnx_command(model_dir, out, int8, weight_type, per_channel, opset, max_length, eval_path,
                 max_accuracy_drop, samples, force, quiet, **kwargs):
    """Export MODEL_DIR (a save_pretrained BERT sequence classifier) to the bundle --out.

    Checks before anything is written: fp32 ONNX logits within 1e-4 of torch, every op type
    known to the numpy runtime, the runtime's tokenizer giving the model tokenizer's ids on every
    validation text, distinct label names, and with --int8 --eval the accuracy drop. Writes
    model.onnx, vocab.txt, runtime.json, export.json and the Hugging Face config/tokenizer files.
    """
    from distill.data import DataError

    ctx = click.get_current_context()
    if not int8:
        refuse_given(ctx, INT8_ONLY, "int8 settings, used only with --int8 (add --int8, or leave them out "
                                     "for an fp32 bundle)")
    if not eval_path:
        refuse_given(ctx, ("max_accuracy_drop",), "compares accuracies on --eval, so it needs --eval")
    else:
        refuse_given(ctx, ("samples",), "sizes the generated parity sample, which --eval's texts replace")
    _quiet_transformers()
    settings = ExportSettings(model_dir=model_dir, out=out, int8=int8, weight_type=weight_type,
                              per_channel=per_channel, opset=opset, max_length=max_length,
                              eval_path=eval_path, data_options=data_options_from(kwargs),
                              max_accuracy_drop=max_accuracy_drop, samples=samples, force=force)
    try:
        report = export_bundle(settings, log=(lambda message: None) if quiet else _log)
    except ExportError as error:
        if getattr(error, "report", None):  # it ran and failed a check: show what was measured
            click.echo(format_summary(error.report), err=True)
            raise click.ClickException(f"export failed: {error}") from error
        raise click.ClickException(str(error)) from error
    except DataError as error:
        raise click.ClickException(str(error)) from error
    click.echo(format_summary(report))
    click.echo(f"bundle: {report['bundle']} (model.onnx {report['model_precision']}); report: "
               f"{Path(report['bundle']) / 'export.json'}")


def refuse_given(ctx: click.Context, names, why: str) -> None:
    """Stop when one of these options was given where the export would ignore it (exit 1, as
    teach and student refuse theirs). Their defaults are real values, so "given" is read from
    click's parameter source."""
    from click.core import ParameterSource

    given = [f"--{name.replace('_', '-')}" for name in names
             if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)]
    if given:
        raise click.ClickException(f"{', '.join(given)}: {why}")


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
