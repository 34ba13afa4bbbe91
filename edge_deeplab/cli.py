"""The `edge-deeplab` command line: one verb per job, each a thin layer over the Python API.

This module is the one bridge across the TensorFlow boundary: it imports only TF-free modules at the top
and reaches edge_deeplab.model / .train / .export inside the verbs that build, train or convert, so
`predict`, `webcam`, `bench` and `eval` of a .tflite never import TensorFlow. Choices come from
edge_deeplab.choices; a flag means one thing in every verb: -o/--output is the path a verb writes,
--json prints JSON on stdout, --os/--output-stride is the output stride.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edge_deeplab import choices
from edge_deeplab.errors import DataError, ModelFileError, OptionError, UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edge-deeplab")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's and LiteRT's own native log lines too.")
@click.pass_context
def cli(ctx, verbose):
    """DeepLab semantic segmentation from Keras to phones and edge boxes."""
    if (ctx.obj or {}).get("own_process") and not verbose:
        from edge_deeplab.native_logs import silence_native_stderr

        silence_native_stderr()


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM ends a job as Ctrl-C does: temporary files removed, one line, exit 130


def main(argv=None):
    """Entry point: a UserError becomes one line on stderr and exit status 2, never a traceback."""
    import signal

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        # a process of its own (the console script, python -m) keeps native log lines off the terminal
        from edge_deeplab.log import show_on_stderr

        show_on_stderr()
        cli.main(args=argv, prog_name="edge-deeplab", standalone_mode=False, obj={"own_process": argv is None})
    except click.exceptions.Abort:  # click's word for a KeyboardInterrupt (Ctrl-C, or SIGTERM: see above)
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


# ---------------------------------------------------------------------------------------- model options
def choice(values):
    return click.Choice([str(v) for v in values])


def output_stride_option(help_text):
    """--os / --output-stride, the same in every verb."""
    return click.option("--output-stride", "--os", "output_stride", type=click.Choice([str(s) for s in choices.OUTPUT_STRIDES]),
                        help=help_text)


def model_architecture_options(f):
    """Options that describe an architecture (used by `build`; `--preset` fills them all)."""
    options = [
        click.option("--preset", help="Start from a named preset (see `edge-deeplab build --list-presets`)."),
        click.option("--backbone", type=choice(choices.BACKBONES)),
        click.option("--depth-multiplier", "-d", type=float,
                     help=f"MobileNetV2 width: {', '.join(f'{d:g}' for d in choices.DEPTH_MULTIPLIERS)}."),
        output_stride_option("Output stride of the backbone."),
        click.option("--input-size", help="Input size: N or HxW, e.g. 513 or 257x385."),
        click.option("--num-classes", type=int),
        click.option("--aspp", type=choice(choices.ASPP_KINDS),
                     help="ASPP head (default: mobile for MobileNetV2, separable for Xception)."),
        click.option("--decoder/--no-decoder", default=None, help="DeepLabv3+ decoder on stride-4 features."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def writable(path, folder=False):
    """Fail now, with one line, if an output cannot be written (before the work that would make it)."""
    if path:
        from edge_deeplab.io_utils import check_writable

        check_writable(path, folder=folder)


def parse_size(text):
    if text is None:
        return None
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        raise OptionError(f"input size must be N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise OptionError(f"input size must be N or HxW, got {text!r}")
    return tuple(parts)


def config_from_options(preset, backbone, depth_multiplier, output_stride, input_size, num_classes, aspp,
                        decoder):
    """A DeepLabConfig from a preset (if any) overridden by the explicit options."""
    from edge_deeplab.config import DeepLabConfig
    from edge_deeplab.presets import get_preset

    base = get_preset(preset)["config"] if preset else DeepLabConfig()
    changes = {
        "backbone": backbone,
        "depth_multiplier": depth_multiplier,
        "output_stride": int(output_stride) if output_stride else None,
        "input_size": parse_size(input_size),
        "num_classes": num_classes,
        "aspp": aspp,
        "decoder": decoder,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if "backbone" in changes and changes["backbone"] != base.backbone and aspp is None:
        changes["aspp"] = None  # let the new backbone pick its own default head
    if changes and "name" not in changes and not preset:
        changes["name"] = ""
    return base.replace(**changes)


# ------------------------------------------------------------------------------------------------ build
@cli.command()
@model_architecture_options
@click.option("--weights", default="none", show_default=True,
              help="Backbone weights: none, imagenet (Keras download), or a local .h5/.keras weights file.")
@click.option("--summary", is_flag=True, help="Print the layer summary, parameters and multiply-adds.")
@click.option("--json", "as_json", is_flag=True, help="Print parameters and multiply-adds as JSON.")
@click.option("-o", "--output", type=click.Path(), help="Save the model (.keras).")
@click.option("--list-presets", is_flag=True, help="List the presets and exit.")
def build(preset, backbone, depth_multiplier, output_stride, input_size, num_classes, aspp, decoder, weights,
          summary, as_json, output, list_presets):
    """Build a Keras DeepLab model (MobileNetV2 or Xception; OS 8/16/32; ASPP; decoder)."""
    if list_presets:
        from edge_deeplab.presets import list_presets as _list

        for name, desc in _list().items():
            click.echo(f"{name:36s} {desc}")
        return
    config = config_from_options(preset, backbone, depth_multiplier, output_stride, input_size, num_classes,
                                 aspp, decoder)
    writable(output)
    from edge_deeplab.model.complexity import model_complexity
    from edge_deeplab.model.deeplab import build_deeplab, save_model

    model = build_deeplab(config, weights=weights)
    stats = model_complexity(model)
    if as_json:
        click.echo(json.dumps({"name": model.name, "config": config.to_dict(), **stats}))
    else:
        if summary:
            model.summary(print_fn=click.echo, line_length=110)
        click.echo(f"{model.name}: {stats['params'] / 1e6:.2f}M parameters, "
                   f"{stats['multiply_adds'] / 1e9:.2f}B multiply-adds at {config.input_size[0]}x{config.input_size[1]}")
    if output:
        save_model(model, output)
        click.echo(f"saved {output}", err=as_json)


# ----------------------------------------------------------------------------------------------- import
@cli.command("import")
@click.argument("source", metavar="OFFICIAL.tflite|PRESET", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help="The Keras model to write (.keras).")
@output_stride_option("Rebuild the imported weights at this output stride [default: the source's].")
@click.option("--input-size",
              help="Rebuild the imported weights for this input size, N or HxW [default: the source's].")
@click.option("--verify-images", type=click.Path(file_okay=False),
              help="Folder of images to compare the import with the source on [default: synthetic images].")
@click.option("--max-verify-images", type=click.IntRange(min=1), default=choices.DEFAULT_VERIFY_IMAGES, show_default=True,
              help="At most this many images (spread over the folder).")
@click.option("--min-agreement", type=click.FloatRange(0, 100),
              help=f"Required argmax pixel agreement with the source, in percent [default: "
                   f"{100 * choices.MIN_AGREEMENT_FLOAT:g} for a float source, {100 * choices.MIN_AGREEMENT_QUANTIZED:g} "
                   "for an 8-bit one].")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Compare the import with the source.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="Interpreter threads for the source model.")
@click.option("--json", "as_json", is_flag=True, help="Print the source architecture and the verification as JSON.")
def import_cmd(source, output, output_stride, input_size, verify_images, max_verify_images, min_agreement, verify,
               threads, as_json):
    """Import the pretrained weights of an official DeepLab TFLite model into a Keras model.

    SOURCE is the .tflite, or a preset with official weights: its file from the cache, else downloaded
    from the preset's URL (SHA-256 checked), else found in $EDGE_DEEPLAB_OFFICIAL_DIR.

    Reads the graph, works out the architecture (depth multiplier, output stride, input size, classes),
    builds it, loads the weights (8-bit ones dequantized; folded BatchNorm as an identity BatchNorm
    carrying the bias), and checks that the Keras model gives the source's classes. The model is only
    written when that check passes.
    """
    if not output.endswith(".keras"):
        raise OptionError(f"{output}: the imported model is saved as a .keras file")
    writable(output)
    from edge_deeplab.model.deeplab import save_model
    from edge_deeplab.model.importer import import_official

    origin = None
    if not Path(source).exists() and not Path(source).suffix:  # a preset name: its official weights
        from edge_deeplab.presets import locate_official_weights

        source, origin = locate_official_weights(source)

    result = import_official(source, output_stride=output_stride, input_size=parse_size(input_size),
                             verify_images=verify_images, max_images=max_verify_images,
                             min_agreement=None if min_agreement is None else min_agreement / 100,
                             num_threads=threads, verification=verify)
    save_model(result.model, output)
    config = result.model.deeplab_config
    if as_json:
        checks = {k: None if v is None else vars(v) for k, v in
                  (("verification", result.verification), ("retargeted", result.retargeted))}
        click.echo(json.dumps({"source": result.source.describe(), "source_config": result.source.config.to_dict(),
                               "config": config.to_dict(), "min_agreement": result.min_agreement, **checks,
                               "output": output}))
        return
    if origin:
        click.echo(f"official weights from {origin}")
    click.echo(result.source.describe())
    if result.verification:
        click.echo(f"verified: {result.verification.line()} (required {100 * result.min_agreement:.1f}%)")
    if result.retargeted:
        click.echo(f"at output stride {config.output_stride}, {config.input_size[0]}x{config.input_size[1]}: "
                   f"{result.retargeted.line()} (for information: another architecture than the source)")
    click.echo(f"saved {output} ({result.model.name})")


# ------------------------------------------------------------------------------- running a .tflite model
def resize_option():
    return click.option("--resize", type=choice(choices.RESIZE_MODES), default=choices.RESIZE_MODES[0],
                        show_default=True,
                        help="Fit images to the model input keeping their aspect ratio (padded) or stretched.")


def runtime_model_options(f):
    """Options that load a segmentation .tflite with edge_deeplab.runtime.interpreter (no TensorFlow)."""
    options = [
        click.option("-m", "--model", "model_path", required=True, type=click.Path(),
                     help="Segmentation .tflite (this project's or an official DeepLab one)."),
        click.option("--threads", type=click.IntRange(min=1),
                     help="Interpreter threads [default: CPU cores, at most 4]."),
        click.option("--delegate", default="xnnpack", show_default=True,
                     help=f"{', '.join(choices.HOST_DELEGATES)} (XNNPACK off) or the path of a delegate library "
                          "(e.g. the GPU delegate)."),
        click.option("--delegate-option", "delegate_options", multiple=True, metavar="KEY=VALUE",
                     help="Option for an external delegate library (repeatable)."),
        resize_option(),
        click.option("--labels", type=click.Path(),
                     help="Label file, one class name per line (default: the model's metadata)."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def load_runtime_model(model_path, threads, delegate, delegate_options, resize, labels):
    from edge_deeplab.runtime.interpreter import SegmentationModel

    parsed = {}
    for item in delegate_options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OptionError(f"--delegate-option must be KEY=VALUE, got {item!r}")
        parsed[key] = value
    return SegmentationModel(model_path, num_threads=threads, delegate=delegate, delegate_options=parsed,
                             resize=resize, labels=labels)


# ---------------------------------------------------------------------------------------------- predict
@cli.command()
@runtime_model_options
@click.argument("inputs", nargs=-1, required=True, metavar="IMAGES_OR_DIRS...")
@click.option("-o", "--output", "--output-dir", "output_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for <name>_mask.png (palette PNG of class ids) and <name>_overlay.jpg.")
@click.option("--json-files", is_flag=True, help="Also write <name>.json beside them: class pixel shares, latency.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written, per image, as JSON.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Overlay opacity.")
@click.option("--legend/--no-legend", default=True, show_default=True, help="Draw the class legend on overlays.")
def predict(model_path, threads, delegate, delegate_options, resize, labels, inputs, output_dir, json_files,
            as_json, alpha, legend):
    """Segment images (files or folders of images) with a .tflite model."""
    from edge_deeplab.runtime.predict import predict_images

    writable(output_dir, folder=True)
    model = load_runtime_model(model_path, threads, delegate, delegate_options, resize, labels)
    summary = predict_images(model, inputs, output_dir, alpha=alpha, legend=legend, json_files=json_files)
    total = len(summary.done) + len(summary.failed)
    if as_json:
        click.echo(json.dumps({"images": summary.done, "failed": [{"input": i, "reason": r} for i, r in summary.failed]}))
    else:
        click.echo(f"segmented {len(summary.done)} of {total} images into {output_dir}")
    if summary.failed:
        raise DataError(f"{len(summary.failed)} of {total} inputs could not be segmented (see the errors above)")


# ----------------------------------------------------------------------------------------------- webcam
@cli.command()
@runtime_model_options
@click.option("--source", default="0", show_default=True, help="Camera index, video file or stream URL.")
@click.option("-o", "--output", type=click.Path(), help="Write the segmented video (.mp4 or .avi).")
@click.option("--display/--no-display", default=True, show_default=True,
              help="Show a window (q or Esc quits). Needs a GUI-enabled OpenCV and a display; without one the "
                   "command stops and asks for --no-display.")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after this many frames.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Overlay opacity.")
@click.option("--legend/--no-legend", default=True, show_default=True, help="Draw the class legend.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def webcam(model_path, threads, delegate, delegate_options, resize, labels, source, output, display, max_frames,
           alpha, legend, as_json):
    """Real-time segmentation of a camera, video file or stream; FPS and latency shown.

    A file is processed frame by frame; a camera or stream always gives the newest frame. Headless
    (--no-display) runs print a summary: frames, FPS, latency percentiles.
    """
    from edge_deeplab.runtime.video import is_live, parse_source, run_video

    writable(output)
    model = load_runtime_model(model_path, threads, delegate, delegate_options, resize, labels)
    show_progress = not display and not is_live(parse_source(source))
    summary = run_video(model, source, output=output, display=display, max_frames=max_frames, alpha=alpha,
                        legend=legend, progress=show_progress)
    if summary.message:
        click.echo(f"{summary.source}: {summary.message}", err=True)
    click.echo(json.dumps(summary.to_dict()) if as_json else summary.line())


# ---------------------------------------------------------------------------------------- export-android
def parse_background_class(text):
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise OptionError(f"--background-class must be a class id or 'none', got {text!r}") from None


@cli.command("export-android")
@click.argument("model_path", metavar="MODEL.tflite", type=click.Path())
@click.option("--app", "app_dir", default="android_demo", show_default=True, type=click.Path(file_okay=False),
              help="The Android demo project; the files go to its app/src/main/assets/.")
@click.option("--labels", type=click.Path(),
              help="Label file, one class name per line (instead of the model's metadata).")
@click.option("--background-class", default="0", show_default=True,
              help="Class drawn transparent over the camera picture: a class id, or 'none'.")
def export_android_command(model_path, app_dir, labels, background_class):
    """Put MODEL.tflite and its model card into the Android demo app.

    Checks that the app can run the model (one [1,H,W,3] float32/uint8/int8 input; one logits output of
    float32/uint8/int8 or labels output of uint8/int32/int64) and runs it once.
    """
    from edge_deeplab.export.android_app import (
        CARD_ASSET,
        MODEL_ASSET,
        app_assets_dir,
        describe_card,
        export_android,
    )

    card = export_android(model_path, app_dir, labels=labels,
                          background_class=parse_background_class(background_class))
    assets = app_assets_dir(app_dir)
    click.echo(describe_card(card))
    click.echo(f"wrote {assets / MODEL_ASSET} ({card['model_bytes'] / 1e6:.1f} MB) and {assets / CARD_ASSET}")
    click.echo(f"next: build and install the app from Android Studio or Gradle (see {app_dir}/README.md)")



# ------------------------------------------------------------------------------------------------ bench
def parse_threads(text):
    if not text:
        return None
    try:
        threads = tuple(int(t) for t in text.split(","))
    except ValueError:
        threads = ()
    if not threads or min(threads) < 1:
        raise OptionError(f"--threads must be positive counts separated by commas, e.g. 1,2,4; got {text!r}")
    return threads


def parse_class_map(items):
    """--class-map / --label-map values as a dict, or None when none were given (one parser: datasets')."""
    from edge_deeplab.data.datasets import parse_class_map as parse

    return parse(items) or None


def command_line(ctx) -> str:
    """The command as it would be typed to repeat this run (options at non-default values)."""
    words, args = [ctx.find_root().info_name or "edge-deeplab", ctx.info_name], []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            args += list(value or ())
            continue
        if value in (None, (), param.default):
            continue
        if param.is_flag:
            words.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            words += [w for v in (value if param.multiple else (value,)) for w in (param.opts[0], str(v))]
    import shlex

    return shlex.join(words + args)


@cli.command()
@click.argument("models", nargs=-1, type=click.Path(), metavar="[MODELS.tflite...]")
@click.option("--baseline", "baselines", multiple=True, type=click.Path(),
              help="An official model measured beside the others and marked as a baseline (repeatable).")
@click.option("--device", default="host", show_default=True,
              help="host (this machine), pixel (the attached Android phone) or an adb serial.")
@click.option("--threads", help="Thread counts, e.g. 1,2,4 [default: CPU cores, at most 4; 4 on a phone].")
@click.option("--delegate", default="xnnpack", show_default=True,
              help=f"{', '.join(choices.PHONE_DELEGATES)} (gpu, nnapi: phone only), or a delegate library (host).")
@click.option("--runs", type=click.IntRange(min=1), default=choices.DEFAULT_BENCH_RUNS, show_default=True,
              help="Timed runs.")
@click.option("--warmup", type=click.IntRange(min=0), default=choices.DEFAULT_BENCH_WARMUP, show_default=True,
              help="Warm-up runs.")
@click.option("--benchmark-binary", type=click.Path(),
              help="Android build of TFLite's benchmark_model [default: $EDGE_DEEPLAB_BENCHMARK_MODEL].")
@click.option("--android-arg", "android_args", multiple=True,
              help="Extra benchmark_model flag, e.g. --android-arg=--gpu_precision_loss_allowed=false.")
@click.option("--data", type=click.Path(file_okay=False), help="Dataset folder: measure mIOU beside latency.")
@click.option("--format", "data_format", type=choice(choices.NAMED_DATASET_FORMATS),
              help="Format of the --data dataset (its val split for voc, cityscapes and camvid).")
@click.option("--subset", "data_subset", help="Score only this part of --data: start:stop[:step] of the sorted "
                                              "images (e.g. held-out 1::2) or a .txt list of image names.")
@click.option("--max-images", type=click.IntRange(min=1), help="Score only the first N images of --data.")
@click.option("--class-map", "class_map", multiple=True, metavar="MODEL:DATASET",
              help="Map a model class to a dataset class (repeatable) [default for a VOC model on a person "
                   "dataset: 15:1, others 0].")
@click.option("--default-class", type=int, help="Dataset class for model classes not in --class-map.")
@click.option("--sweep", "sweep_spec", metavar="SPEC",
              help="Build, convert and measure the variants of a spec: a JSON file, or inline such as "
                   "'source=deeplabv3_257_mv_gpu.tflite;os=8,16;decoder=0;quant=fp32,int8;size=257'.")
@click.option("--work-dir", default="bench-sweep", show_default=True, type=click.Path(file_okay=False),
              help="Sweep: converted variants and the result cache (a rerun skips finished steps).")
@click.option("--report", "report_prefix", metavar="PREFIX",
              help="Write PREFIX.json, PREFIX.csv, PREFIX.md and, with mIOU, PREFIX.png.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of the table.")
@click.option("--json-file", "json_path", type=click.Path(), help="Write the results as JSON.")
@click.option("--csv", "csv_path", type=click.Path(), help="Write the results as CSV.")
@click.option("--markdown", "markdown_path", type=click.Path(), help="Write a Markdown report.")
@click.option("--plot", "plot_path", type=click.Path(),
              help="Write a PNG of latency against mIOU with the Pareto front (needs --data).")
@click.option("--title", default="Benchmark", show_default=True, help="Title of the Markdown report and plot.")
@click.option("--memory/--no-memory", default=True, show_default=True,
              help="Host: measure init time and peak memory of each model in a fresh process.")
@click.pass_context
def bench(ctx, models, baselines, device, threads, delegate, runs, warmup, benchmark_binary, android_args, data,
          data_format, data_subset, max_images, class_map, default_class, sweep_spec, work_dir, report_prefix, as_json,
          json_path, csv_path, markdown_path, plot_path, title, memory):
    """Latency (and, with --data, mIOU) of .tflite models on this machine or an Android phone.

    On the host, models are timed in-process (invoke only), interleaved run by run; on a phone, TFLite's
    benchmark_model runs over adb. --sweep builds and converts the variants of a spec first (needs
    TensorFlow); the MODELS and --baseline models are measured beside them in the same tables.
    """
    from edge_deeplab.bench import report
    from edge_deeplab.bench.run import DataSpec, benchmark, run_meta, write_reports

    for path in (json_path, csv_path, markdown_path, plot_path):
        writable(path)
    if report_prefix:
        writable(f"{report_prefix}.json")
    data_spec = None
    if data:
        if not data_format:
            raise OptionError(f"--data needs --format ({', '.join(choices.NAMED_DATASET_FORMATS)})")
        data_spec = DataSpec(data, data_format, max_images, data_subset, parse_class_map(class_map), default_class)
    settings = dict(threads=parse_threads(threads), delegate=delegate, runs=runs, warmup=warmup,
                    baselines=baselines, data=data_spec, binary=benchmark_binary, android_args=android_args,
                    memory=memory)
    failed = []
    if sweep_spec:
        from edge_deeplab.export.sweep import parse_spec, run_sweep

        results = run_sweep(parse_spec(sweep_spec), work_dir, models=models, device=device, **settings)
    else:
        results = benchmark(models, device=device, failed=failed, **settings)
    for _, reason in failed:
        click.echo(f"error: {reason}", err=True)
    meta = run_meta(command_line(ctx), device, data_spec, delegate=delegate, runs=runs, warmup=warmup)
    click.echo(json.dumps({"meta": meta, "results": [r.to_dict() for r in results]}) if as_json
               else report.format_table(results))
    for path in write_reports(results, report_prefix, json_path, csv_path, markdown_path, plot_path, meta, title):
        click.echo(f"wrote {path}", err=True)
    if failed:
        raise OptionError(f"{len(failed)} of {len(failed) + len({r.path for r in results})} models could not be "
                        "measured (see the errors above)")

# ------------------------------------------------------------------------------------ datasets: train / eval
def dataset_options(f):
    """Where a dataset is and how to read it (shared by `train` and `eval`)."""
    options = [
        click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False),
                     help="Dataset folder."),
        click.option("--format", "data_format", required=True,
                     type=choice(choices.DATASET_FORMATS),
                     help="voc: JPEGImages + SegmentationClass + ImageSets; cityscapes: leftImg8bit + gtFine; "
                          "camvid: SegNet's train/ + trainannot/, val/ + valannot/ (11 classes, 11 = Unlabelled "
                          "ignored); folder: images/ + masks/ (index PNGs, same names); pennfudan: PNGImages + "
                          "PedMasks (mask > 0 -> class 1, person)."),
        click.option("--split", help="voc / cityscapes / camvid split [train for `train`, val for `eval`] (voc: "
                                     "a name in ImageSets/Segmentation or a list file such as SBD's train_aug.txt)."),
        click.option("--subset", help="Part of the (sorted) images: start:stop[:step], e.g. 0::2, or a .txt "
                                      "list of image names."),
        click.option("--data-classes", help="folder format: the number of classes, or their names (a,b,c)."),
        click.option("--skip-bad", is_flag=True, help="Skip (and count) unreadable or inconsistent samples "
                                                      "instead of stopping at the first."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def open_dataset_from_options(data_dir, data_format, split, subset, data_classes, skip_bad, default_split):
    from edge_deeplab.data.datasets import open_dataset

    kwargs = {}
    if data_format == "folder" and data_classes:
        names = [n.strip() for n in data_classes.split(",") if n.strip()]
        kwargs = {"num_classes": int(names[0])} if len(names) == 1 and names[0].isdigit() else {"class_names": names}
    elif data_classes:
        raise OptionError("--data-classes is only for the folder format (the others know their classes)")
    dataset = open_dataset(data_dir, data_format, split or default_split, skip_bad=skip_bad, **kwargs)
    return dataset.subset(subset)


@cli.command()
@click.option("--init", "init_model", type=click.Path(),
              help="Start from this float .keras model (built or imported); otherwise build one from the "
                   "architecture options.")
@model_architecture_options
@click.option("--weights", default="none", show_default=True,
              help="Backbone weights when building (none, imagenet, or a .h5 file).")
@dataset_options
@click.option("--run-dir", required=True, type=click.Path(file_okay=False),
              help="Checkpoints, history, TensorBoard logs; training resumes from here if interrupted.")
@click.option("-o", "--output", type=click.Path(),
              help="The trained model [RUN_DIR/model.keras; QAT: RUN_DIR/model_qat.h5].")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--crop-size", help="Training crop N or HxW [the model's input size].")
@click.option("--lr", "learning_rate", type=float, default=0.007, show_default=True,
              help="Base learning rate of the poly schedule.")
@click.option("--end-lr", type=float, default=0.0, show_default=True)
@click.option("--optimizer", type=choice(choices.OPTIMIZERS), default=choices.OPTIMIZERS[0], show_default=True,
              help="sgd: momentum 0.9, as DeepLab.")
@click.option("--weight-decay", type=float, default=4e-5, show_default=True, help="L2 on convolution kernels.")
@click.option("--freeze-bn", is_flag=True, help="Keep batch norm fixed (for small batches).")
@click.option("--recalibrate-bn/--no-recalibrate-bn", default=True, show_default=True,
              help="Trainable batch norm: first re-estimate its statistics on training batches, keeping the model's "
                   "function (imported weights carry folded batch norms that training mode would break).")
@click.option("--class-weights", metavar="median-frequency|FILE",
              help="Weight the loss per class: median-frequency (computed on the training masks, as SegNet does) "
                   "or a file of one weight per model class [none].")
@click.option("--train-output-stride", type=choice(choices.OUTPUT_STRIDES),
              help="Train at this output stride (e.g. 16, faster); the saved model keeps its own.")
@click.option("--max-resize", type=click.IntRange(min=1),
              help="Scale every image so that its longer side is N before the random scaling (e.g. the model "
                   "input size, so that training sees objects at the size that inference does).")
@click.option("--min-scale", type=float, default=0.5, show_default=True, help="Random scale range.")
@click.option("--max-scale", type=float, default=2.0, show_default=True)
@click.option("--flip/--no-flip", default=True, show_default=True)
@click.option("--label-map", multiple=True, metavar="DATA:MODEL",
              help="Map dataset class ids to model class ids, e.g. 1:15 for Penn-Fudan person -> VOC person.")
@click.option("--cache", is_flag=True, help="Keep the decoded dataset in memory (small datasets).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--qat", is_flag=True, help="Quantization-aware fine-tuning of the --init float model.")
@click.option("--quantization-from", type=click.Path(), metavar="OFFICIAL.tflite",
              help="With --qat: start from the quantization of the official 8-bit model the --init weights were "
                   "imported from: its activation ranges, and its weight grids kept fixed through training (a new "
                   "classifier is calibrated). Far closer to the float model than calibrated ranges.")
@click.option("--strategy", type=choice(choices.STRATEGIES),
              help="tf.distribute strategy [default; multi-worker with --worker]. multi-worker: the cluster in "
                   "$TF_CONFIG or --worker; --batch-size is the global batch, split across the workers.")
@click.option("--worker", "workers", metavar="HOST:PORT,HOST:PORT",
              help="Train on this cluster of workers (multi-worker): every worker runs the same command with its "
                   "own --task-index; worker 0 is the chief and writes the run's files.")
@click.option("--task-index", type=click.IntRange(min=0), help="This worker's place in --worker.")
@click.option("--tpu", help="TPU name or address for --strategy tpu.")
@click.option("--val-split", help="Evaluate this split of the dataset (e.g. val) after every epoch.")
@click.option("--val-subset", help="Evaluate this subset (start:stop[:step]) of the training split, or of --val-split, "
                                   "after every epoch.")
@click.option("--val-class-map", multiple=True, metavar="MODEL:DATA", help="Model -> dataset classes for validation.")
@click.option("--val-default-class", type=int, help="Dataset class of model classes not in --val-class-map.")
@click.option("--distill", "teacher", type=click.Path(), metavar="TEACHER",
              help="Knowledge distillation from TEACHER (.keras / .h5, or a .tflite with a logits head): its soft "
                   "predictions on each training crop become a second target.")
@click.option("--distill-weight", type=float, default=0.5, show_default=True,
              help="Share of the distillation term in the loss (the rest: cross entropy on the labels).")
@click.option("--distill-temperature", type=float, default=2.0, show_default=True,
              help="Softmax temperature of teacher and student in the distillation term.")
@click.option("--distill-class-map", multiple=True, metavar="TEACHER:STUDENT",
              help="Teacher class -> student class (e.g. 15:1 for a VOC teacher of a person model); the other "
                   "teacher classes go to --distill-default-class.")
@click.option("--distill-default-class", type=int, default=0, show_default=True)
@click.option("--distill-output-stride", type=click.Choice(["8", "16", "32"]),
              help="Run a Keras TEACHER at this output stride (the same weights rebuilt), e.g. 8: a model at OS 8 "
                   "teaching itself at OS 16 [the teacher's own].")
@click.option("--unlabelled", multiple=True, type=click.Path(file_okay=False), metavar="DIR",
              help="A folder of images without labels, trained on with the teacher's targets only (repeatable).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train(init_model, preset, backbone, depth_multiplier, output_stride, input_size, num_classes, aspp, decoder,
          weights, data_dir, data_format, split, subset, data_classes, skip_bad, run_dir, output, epochs,
          batch_size, crop_size, learning_rate, end_lr, optimizer, weight_decay, freeze_bn, recalibrate_bn,
          class_weights, train_output_stride,
          max_resize, min_scale, max_scale, flip, label_map, cache, seed, qat, quantization_from, strategy, workers,
          task_index, tpu, val_split, val_subset, val_class_map, val_default_class, teacher, distill_weight,
          distill_temperature, distill_class_map, distill_default_class, distill_output_stride, unlabelled,
          progress):
    """Train or fine-tune a DeepLab model (float, or quantization-aware with --qat)."""
    from edge_deeplab.data.datasets import parse_class_map
    from edge_deeplab.train.distribute import cluster_config, make_strategy
    from edge_deeplab.train.trainer import TrainConfig
    from edge_deeplab.train.trainer import train as run_training

    cluster = None
    if workers or task_index is not None:
        if strategy not in (None, "multi-worker"):
            raise OptionError(f"--worker and --task-index go with --strategy multi-worker, not {strategy}")
        strategy, cluster = "multi-worker", cluster_config(workers or "", task_index)

    writable(run_dir, folder=True)
    writable(output)
    dataset = open_dataset_from_options(data_dir, data_format, split, subset, data_classes, skip_bad, "train")
    val = None
    if val_subset or val_split:
        val = open_dataset_from_options(data_dir, data_format, val_split or split, val_subset, data_classes,
                                        skip_bad, "train")
    config = TrainConfig(epochs=epochs, batch_size=batch_size, crop_size=parse_size(crop_size),
                         learning_rate=learning_rate, end_learning_rate=end_lr, optimizer=optimizer,
                         weight_decay=weight_decay, freeze_bn=freeze_bn, recalibrate_bn=recalibrate_bn,
                         class_weights=class_weights,
                         output_stride=int(train_output_stride) if train_output_stride else None,
                         max_resize=max_resize, min_scale=min_scale, max_scale=max_scale, flip=flip,
                         label_map=parse_class_map(label_map), qat=qat, quantization_from=quantization_from,
                         seed=seed, cache=cache, distill=teacher, distill_weight=distill_weight,
                         distill_temperature=distill_temperature,
                         distill_class_map=parse_class_map(distill_class_map) or {},
                         distill_default_class=distill_default_class, unlabelled=unlabelled,
                         distill_output_stride=int(distill_output_stride) if distill_output_stride else None)
    dist = make_strategy(strategy or "default", tpu, cluster)  # before any TensorFlow work, as tf.distribute requires
    model = initial_model(init_model, preset, backbone, depth_multiplier, output_stride, input_size, num_classes,
                          aspp, decoder, weights, qat)
    result = run_training(model, dataset, run_dir, config, output=output, val_dataset=val,
                          val_class_map=parse_class_map(val_class_map) if val_class_map else None,
                          val_default_class=val_default_class, strategy=dist, progress=progress)
    if result.resumed_at_epoch:
        click.echo(f"resumed after epoch {result.resumed_at_epoch}", err=True)
    if dataset.skipped:
        click.echo(f"skipped {len(dataset.skipped)} bad samples", err=True)
    last = result.history[-1] if result.history else {}
    summary = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k in ("loss", "val_miou"))
    if result.worker:
        click.echo(f"{result.worker}: weights {result.fingerprint}", err=True)
    if result.output:
        click.echo(f"saved {result.output} ({len(result.history)} epochs; {summary})")
    else:
        click.echo(f"trained {len(result.history)} epochs ({summary}); the chief saved the model")


def initial_model(init_model, preset, backbone, depth_multiplier, output_stride, input_size, num_classes, aspp,
                  decoder, weights, qat):
    """The model `train` starts from: --init (its head changed by --num-classes / --decoder) or a new build."""
    from edge_deeplab.model.deeplab import adapt, build_deeplab, load_model

    if init_model:
        if any(v is not None for v in (preset, backbone, depth_multiplier, output_stride, input_size, aspp)):
            raise OptionError("with --init the architecture is the model's; only --num-classes and --decoder may "
                            "change it")
        model = load_model(init_model)
        if not hasattr(model, "deeplab_config"):
            raise ModelFileError(f"{init_model}: not an edge-deeplab model (no DeepLab config; built or imported?)")
        changes = {k: v for k, v in (("num_classes", num_classes), ("decoder", decoder)) if v is not None}
        if changes and any(getattr(model.deeplab_config, k) != v for k, v in changes.items()):
            if qat:
                raise OptionError("--qat keeps the float model's architecture: train the new head first")
            model, fresh = adapt(model, **changes)
            click.echo(f"starting from {init_model}; new layers: {', '.join(fresh)}", err=True)
        return model
    if qat:
        raise OptionError("--qat fine-tunes a trained float model: pass it with --init")
    config = config_from_options(preset, backbone, depth_multiplier, output_stride, input_size, num_classes, aspp,
                                 decoder)
    return build_deeplab(config, weights=weights)


@cli.command("eval")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@dataset_options
@click.option("--class-map", multiple=True, metavar="MODEL:DATA",
              help="Map model class ids to dataset class ids, e.g. 15:1 (VOC person -> Penn-Fudan person).")
@click.option("--default-class", type=int, help="Dataset class of the model classes not in --class-map.")
@output_stride_option("Evaluate a Keras model (float or QAT) at another output stride (same weights).")
@resize_option()
@click.option("--threads", type=click.IntRange(min=1), help="Interpreter threads for .tflite models.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (miou, iou per class, ...).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def eval_command(model_path, data_dir, data_format, split, subset, data_classes, skip_bad, class_map,
                 default_class, output_stride, resize, threads, as_json, progress):
    """mIOU and per-class IoU of a .keras or .tflite MODEL on a dataset (.tflite needs no TensorFlow)."""
    from edge_deeplab.data.datasets import parse_class_map
    from edge_deeplab.io_utils import require_file
    from edge_deeplab.model.predictor import open_predictor
    from edge_deeplab.runtime.evaluate import evaluate

    require_file(model_path)
    dataset = open_dataset_from_options(data_dir, data_format, split, subset, data_classes, skip_bad, "val")
    predictor = open_predictor(model_path, num_threads=threads, resize=resize,
                               output_stride=int(output_stride) if output_stride else None)
    result = evaluate(predictor, dataset, class_map=parse_class_map(class_map), default_class=default_class,
                      progress=progress)
    click.echo(json.dumps(result.to_dict()) if as_json else result.table())


# ---------------------------------------------------------------------------------------------- convert
@cli.command()
@click.argument("model", metavar="MODEL")
@click.option("-o", "--output", "--out", "out_paths", required=True, multiple=True, type=click.Path(),
              help="The .tflite to write; its report goes beside it as NAME.report.json.")
@click.option("--quantize", type=choice(choices.QUANTIZATIONS), default="fp32",
              show_default=True, help="fp32: float32; fp16: float16 weights; dynamic: int8 weights, float "
                                      "activations; int8: full integer.")
@click.option("--io", "io_type", type=choice(choices.IO_TYPES), default="float", show_default=True,
              help="Input (and logits output) type of an int8 model; uint8 takes raw RGB pixels.")
@click.option("--head", type=choice(choices.HEADS), default="logits", show_default=True,
              help="logits: [1,H,W,classes] scores (MediaPipe / Task Library need these); labels: [1,H,W] int32 "
                   "class ids.")
@click.option("--argmax-stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="labels: take the argmax at 1/N of the input resolution, then upsample the class ids "
                   "(nearest): less head time; at 513 N=2 costs <0.1 and N=4 ~0.4 points of person IoU "
                   "(benchmarks/convert_speed.md).")
@output_stride_option("Rebuild the model's weights (float or QAT) at this output stride before converting [its own].")
@click.option("--calibration", type=click.Path(file_okay=False),
              help="Folder of images for int8 post-training quantization (not needed for a QAT model).")
@click.option("--num-calibration", type=click.IntRange(min=1), default=choices.DEFAULT_CALIBRATION_IMAGES,
              show_default=True,
              help="At most this many calibration images (spread over the folder).")
@click.option("--synthetic-calibration", is_flag=True,
              help="Calibrate int8 on synthetic images: for speed measurements only, the accuracy suffers.")
@click.option("--quantization-from", type=click.Path(), metavar="OFFICIAL.tflite",
              help="int8 of weights imported from this official quantized model with its own activation ranges "
                   "and weight scales: no calibration set, and the official model's accuracy.")
@click.option("--float-stem", is_flag=True,
              help="int8 with the 3-channel stem conv left in float32 (needs --io float): faster on x86 CPUs "
                   "without VNNI, where int8 kernels pad its 3 input channels to 8.")
@click.option("--labels", "labels_file", type=click.Path(),
              help="Class names, one per line, for the metadata [the model's own (a model trained on a dataset "
                   "carries its class names), else PASCAL VOC for 21 classes, else class_<i>].")
@click.option("--samples", type=click.Path(file_okay=False),
              help="Images to compare the .tflite with the Keras model on [the calibration images, else synthetic].")
@click.option("--num-samples", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--name", help="Model name in the metadata [the Keras model's name].")
@click.option("--model-version", default="1", show_default=True, help="Model version in the metadata.")
@click.option("--metadata/--no-metadata", default=True, show_default=True,
              help="Write TFLite metadata (labels, normalization) as MediaPipe's ImageSegmenter needs it.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="Interpreter threads for the checks.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def convert(model, out_paths, quantize, io_type, head, argmax_stride, output_stride, calibration, num_calibration,
            synthetic_calibration, quantization_from, float_stem, labels_file, samples, num_samples, name,
            model_version, metadata, threads, as_json):
    """Convert a Keras DeepLab MODEL (.keras / .h5: built, imported, trained or QAT; or a preset name) to TFLite.

    Prints and saves a report: ops, size, I/O quantization, GPU / XNNPACK / NNAPI compatibility and the
    agreement of the .tflite with the Keras model on sample images.
    """
    from edge_deeplab.export.convert import ConvertOptions
    from edge_deeplab.export.convert import convert as convert_model
    from edge_deeplab.runtime.interpreter import read_labels_file
    from edge_deeplab.tflite.report import format_report

    # `--output labels` chose the head before -o/--output became the path: say so rather than guess
    heads = [p for p in out_paths if p in choices.HEADS]
    if heads or len(out_paths) > 1:
        raise OptionError("-o/--output is the one .tflite to write" +
                          (f"; choose the head with --head {heads[0]}" if heads else f", given {len(out_paths)} times"))
    out_path = out_paths[0]
    writable(out_path)
    options = ConvertOptions(
        quantize=quantize, io=io_type, head=head, argmax_stride=argmax_stride,
        output_stride=int(output_stride) if output_stride else None, calibration=calibration,
        num_calibration=num_calibration, synthetic_calibration=synthetic_calibration,
        quantization_from=quantization_from, float_stem=float_stem,
        labels=read_labels_file(labels_file) if labels_file else None, name=name, version=model_version,
        metadata=metadata, samples=samples, num_samples=num_samples, num_threads=threads)
    result = convert_model(model, out_path, options)
    if as_json:
        click.echo(json.dumps(result.report))
        return
    click.echo(format_report(result.report))
    if head == "labels":
        click.echo("note: MediaPipe's ImageSegmenter and the Task Library need --head logits")
    click.echo(f"wrote {result.path} ({result.report['size_bytes'] / 1e6:.2f} MB) and {result.report_path}")


if __name__ == "__main__":
    main()
