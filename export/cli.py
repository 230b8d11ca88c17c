"""`export onnx`: model directory -> validated (int8) ONNX edge bundle.

The click group `export_group` is attached to `distill` as `distill export` and runs alone as
`python -m export`. Heavy libraries are imported inside the command, so --help is instant.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from distill.options import data_options, data_options_from
from export import ExportError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULT_OPSET = 18          # same value as onnx_export.DEFAULT_OPSET (kept import-free here)
DEFAULT_SAMPLES = 64
DEFAULT_MAX_DROP = 1.0
VALIDATION_BATCH = 32


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


def export_bundle(s: ExportSettings, log=_log) -> dict:
    """The whole export; returns the export.json report. Raises ExportError (with .report when
    the export ran but failed a check) and leaves --out untouched on any failure."""
    from export import validate as v
    from export.bundle import check_out_dir, runtime_config, staging, write_json, write_support_files
    from export.onnx_export import export_fp32, load_classifier

    started = time.time()
    if s.samples < 1:
        raise ExportError("--samples must be at least 1")
    check_out_dir(s.out, s.force)
    model, tokenizer, labels = load_classifier(s.model_dir)
    max_length = resolve_max_length(s.max_length, s.model_dir, model, tokenizer)
    runtime = runtime_config(labels, tokenizer, max_length, quantized=s.int8)
    data = None
    if s.eval_path:
        from distill.data import DataOptions, load_labelled
        data = load_labelled(s.eval_path, s.data_options or DataOptions(), labels=labels)
        if not len(data):
            raise ExportError(f"{s.eval_path}: no rows to evaluate")

    # the same padded int64 batches go to torch and to every ONNX graph
    texts = data.texts if data is not None else v.generated_texts(tokenizer, s.samples, max_length, s.seed)
    rows = v.encode_rows(tokenizer, texts, max_length)
    pad = tokenizer.pad_token_id
    main = v.batches(rows, VALIDATION_BATCH, pad)
    edge_rows = v.edge_rows(tokenizer, max_length) + rows[:1]   # lengths 1, max_length, one real row
    edge = v.mixed_batch(edge_rows, pad)
    lengths = [len(r["input_ids"]) for r in rows + edge_rows]
    log(f"torch reference on {len(rows)} {'eval' if data is not None else 'generated'} texts "
        f"+ {len(edge_rows)} edge rows (lengths {min(lengths)}..{max(lengths)})")
    torch_main, torch_edge = v.torch_logits(model, main, len(rows)), v.torch_logits(model, edge, len(edge_rows))

    out = Path(s.out)
    with staging(out, s.force) as tmp:
        fp32_path = tmp / ("model-fp32.onnx" if s.int8 else "model.onnx")
        log(f"exporting {s.model_dir} (torch.onnx.export dynamo=True, opset {s.opset})")
        exporter = export_fp32(model, fp32_path, s.opset)
        fp32 = v.ort_session(fp32_path)
        fp32_main, fp32_edge = v.ort_logits(fp32, main, len(rows)), v.ort_logits(fp32, edge, len(edge_rows))
        parity = {"rows": len(rows) + len(edge_rows),
                  "source": "eval" if data is not None else "generated",
                  "min_length": min(lengths), "max_length": max(lengths),
                  "tolerance": v.PARITY_TOLERANCE,
                  "max_abs_logit_diff": max(v.max_abs_diff(torch_main, fp32_main),
                                            v.max_abs_diff(torch_edge, fp32_edge)),
                  "label_agreement_fp32_vs_torch": v.label_agreement(torch_main, fp32_main)}
        graphs = {"fp32": fp32_path}
        quantization = None
        if s.int8:
            log(f"quantizing to int8 ({s.weight_type}, {'per-channel' if s.per_channel else 'per-tensor'})")
            from export.quantize import quantize_int8
            int8_path = tmp / "model.onnx"
            quantization = quantize_int8(fp32_path, int8_path, s.weight_type, s.per_channel)
            graphs["int8"] = int8_path
            int8 = v.ort_session(int8_path)
            int8_main, int8_edge = v.ort_logits(int8, main, len(rows)), v.ort_logits(int8, edge, len(edge_rows))
            parity["int8_max_abs_logit_diff_vs_fp32"] = max(v.max_abs_diff(fp32_main, int8_main),
                                                            v.max_abs_diff(fp32_edge, int8_edge))
            parity["label_agreement_int8_vs_fp32"] = v.label_agreement(fp32_main, int8_main)

        census = {name: v.op_census(path) for name, path in graphs.items()}
        sizes = {f"{name}_bytes": path.stat().st_size for name, path in graphs.items()}
        if s.int8:
            sizes["int8_fraction_of_fp32"] = sizes["int8_bytes"] / sizes["fp32_bytes"]
        accuracy = None
        if data is not None:
            accuracy = {"file": str(s.eval_path), "sha256": data.sha256, "n": len(data),
                        "skipped": data.skipped,
                        "torch": v.scores(data.labels, torch_main, labels),
                        "onnx_fp32": v.scores(data.labels, fp32_main, labels)}
            if s.int8:
                accuracy["onnx_int8"] = v.scores(data.labels, int8_main, labels)
                accuracy["label_agreement_int8_vs_fp32"] = v.label_agreement(fp32_main, int8_main)
                accuracy["int8_accuracy_drop_points"] = v.accuracy_drop_points(accuracy["onnx_fp32"],
                                                                                accuracy["onnx_int8"])
                accuracy["max_accuracy_drop_points"] = s.max_accuracy_drop

        report = {
            "bundle": str(out), "model_dir": str(Path(s.model_dir).resolve()),
            "weights_sha256": _weights_sha256(s.model_dir),
            "model_file": "model.onnx", "model_precision": "int8" if s.int8 else "fp32",
            "fp32_graph_kept": not s.int8,
            "labels": runtime["labels"], "max_length": max_length,
            "inputs": runtime["inputs"], "output": runtime["output"],
            "export": exporter, "opset": {name: v.opset_of(path) for name, path in graphs.items()},
            "quantization": quantization, "sizes": sizes, "parity": parity, "accuracy": accuracy,
            "ops": census, "ops_missing_in_runtime": None,
            "settings": {k: val for k, val in asdict(s).items() if k != "data_options"}
                        | {"data_options": asdict(s.data_options) if s.data_options else None},
            "versions": _versions(),
        }

        failures = []
        try:
            v.check_parity(parity["max_abs_logit_diff"])
        except ExportError as error:
            failures.append(str(error))
        try:
            report["ops_missing_in_runtime"] = v.check_runtime_ops(census)
        except ExportError as error:
            failures.append(str(error))
        if accuracy is not None and s.int8:
            try:
                v.check_accuracy_drop(accuracy["int8_accuracy_drop_points"], s.max_accuracy_drop)
            except ExportError as error:
                failures.append(str(error))
        report["wall_time_s"] = round(time.time() - started, 2)
        if failures:
            error = ExportError("; ".join(failures))
            error.report = report
            raise error

        if s.int8:
            fp32_path.unlink()   # the bundle keeps the one model the runtime runs
        write_support_files(tmp, s.model_dir, tokenizer, runtime)
        write_json(tmp / "export.json", report)
    return report


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
    missing = report.get("ops_missing_in_runtime")
    if missing is not None:
        lines.append("every op type is implemented by the numpy runtime" if not any(missing.values())
                     else f"ops missing in runtime: {missing}")
    return "\n".join(lines)


@click.group("export", context_settings=CONTEXT)
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
              help="Weight type: unsigned (quint8, asymmetric) or signed (qint8, symmetric). quint8 "
                   "runs exactly in onnxruntime and the numpy runtime; onnxruntime computes qint8 "
                   "inexactly on AVX2 CPUs without VNNI (saturating int16 sums).")
@click.option("--per-channel", is_flag=True, default=False,
              help="Quantize weights per output channel instead of per tensor.")
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True,
              help="ai.onnx opset version to export (18 or later).")
@click.option("--max-length", type=int, default=None,
              help="Token limit written to runtime.json (default: the model's training max_length, "
                   "capped by its position embeddings).")
@click.option("--eval", "eval_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Labelled file: accuracy and macro-F1 of torch, fp32 and int8 ONNX; its texts are "
                   "also the parity sample.")
@click.option("--max-accuracy-drop", type=float, default=DEFAULT_MAX_DROP, show_default=True,
              help="With --int8 and --eval: fail (nothing written) when int8 accuracy is more than "
                   "this many points below fp32.")
@click.option("--samples", type=int, default=DEFAULT_SAMPLES, show_default=True,
              help="Generated texts for the parity check when --eval is not given.")
@click.option("--force", is_flag=True, default=False, help="Replace an existing --out directory.")
@data_options
def onnx_command(model_dir, out, int8, weight_type, per_channel, opset, max_length, eval_path,
                 max_accuracy_drop, samples, force, **kwargs):
    """Export MODEL_DIR (a save_pretrained BERT sequence classifier) to the bundle --out.

    Checks before anything is written: fp32 ONNX logits within 1e-4 of torch, every op type
    known to the numpy runtime, and with --int8 --eval the accuracy drop. Writes model.onnx,
    vocab.txt, runtime.json, export.json and the Hugging Face config/tokenizer files.
    """
    from distill.data import DataError

    _quiet_transformers()
    settings = ExportSettings(model_dir=model_dir, out=out, int8=int8, weight_type=weight_type,
                              per_channel=per_channel, opset=opset, max_length=max_length,
                              eval_path=eval_path, data_options=data_options_from(kwargs),
                              max_accuracy_drop=max_accuracy_drop, samples=samples, force=force)
    try:
        report = export_bundle(settings)
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


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
