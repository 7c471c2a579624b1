"""``tinydeploy benchmark``: the MLPerf Tiny figures of a firmware built with ``--protocol eembc``
(tinydeploy.benchmark), or, with ``--serve PTY``, the emulated board presented as a serial port
for the official runner (firmware/EEMBC.md). (tinydeploy.cli registers the command and this
module imports from it: import tinydeploy.cli, not this one.)"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from tinydeploy.cli import (_check_json_path, _emit_report_json, _validation_samples, friendly_errors,
                            status, tflm_lib_option)
from tinydeploy.errors import InputError


@click.command("benchmark")
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--samples", metavar="DATA",
              help="Samples: .npz (x, labels y: classes, or 1 = anomalous for an anomaly "
                   "detector) or .npy. Default: 20 random inputs (no accuracy).")
@click.option("--limit", type=click.IntRange(1), metavar="N", help="Use at most N samples.")
@click.option("--iterations", type=click.IntRange(1), metavar="N",
              help="Timed inferences per performance window (default: the runner's for the "
                   "model: ic01 20, ad01 1500, kws01 70, vww01 20).")
@click.option("--warmups", type=click.IntRange(0), metavar="W",
              help="Warm-up inferences before each window (default: the runner's, 5 or 10).")
@click.option("--windows", type=click.IntRange(1), metavar="K",
              help="Performance windows; the figures are their median (default 5, as the runner).")
@click.option("--port", metavar="PORT", help="Serial port of a real board (default: found by USB "
                                             "VID/PID; emulated boards: QEMU is started).")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), metavar="SECONDS",
              help="Longest one inference may take (default: from the model's MACs and the clock).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), metavar="FILE",
              help="Also write the report as JSON to FILE ('-' for stdout).")
@click.option("--serve", "serve_path", type=click.Path(path_type=Path), metavar="PTY",
              help="Do not benchmark: boot the emulated board and present its UART as the "
                   "serial port PTY (a symlink to a pseudo-terminal) for the official runner, "
                   "until Ctrl-C.")
@click.option("--runner-dataset", "dataset_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Do not benchmark: write the samples as the official runner's dataset, "
                   "DIR/<model id>/y_labels.csv and one .bin per sample (needs labels).")
@tflm_lib_option
@friendly_errors
def benchmark_cmd(project, samples, limit, iterations, warmups, windows, port, timeout, json_path,
                  serve_path, dataset_dir, tflm_lib):
    """Run MLPerf Tiny's accuracy and performance modes on PROJECT's firmware (built with
    --protocol eembc) and print median latency, throughput and top-1 accuracy (AUC for an
    anomaly detector). Exit 1 when an output differs from the host reference.

    \b
    Examples:
      tinydeploy build examples/mlperf_tiny/pretrainedResnet_quant.tflite --board qemu-m4 \\
          --protocol eembc -o build/ic-eembc
      tinydeploy benchmark build/ic-eembc --samples examples/mlperf_tiny/ic01_synthetic.npz \\
          --json ic.json
      tinydeploy benchmark build/ic-eembc --serve /tmp/ttyDUT     # for mlcommons' runner
    """
    from tinydeploy.device import open_project

    _check_json_path(json_path)
    project = open_project(project, tflm_lib)
    require_eembc(project)
    if serve_path is not None:
        serve(project, serve_path)
        return
    if dataset_dir is not None:
        from tinydeploy.benchmark import write_runner_dataset

        if not samples:
            raise InputError("--runner-dataset needs --samples", "pass labelled samples (.npz with x and y)")
        data = _validation_samples(samples, project.model_bytes, limit)
        folder = write_runner_dataset(dataset_dir, project.manifest["eembc"], project.model_bytes,
                                      data.x, data.y)
        click.echo(f"wrote {folder}/ ({len(data.x)} samples and y_labels.csv)")
        return
    data = _validation_samples(samples, project.model_bytes, limit)
    run_benchmark(project, port, data, limit, iterations, warmups, windows, timeout, json_path)


def require_eembc(project) -> None:
    if project.protocol != "eembc":
        raise InputError(f"{project.path} speaks tinydeploy's protocol, not the EEMBC benchmark "
                         "protocol", f"rebuild it with 'tinydeploy build ... --protocol eembc', or "
                                     f"run 'tinydeploy validate {project.path}'")
    if not isinstance(project.manifest.get("eembc"), dict):
        raise InputError(f"the project manifest of {project.path} has no 'eembc' settings",
                         "rebuild the project with 'tinydeploy build ... --protocol eembc --force'")


def run_benchmark(project, port, data, limit=None, iterations=None, warmups=None, windows=None,
                  timeout=None, json_path=None) -> None:
    """Benchmark a project's running firmware and print the report (also used by deploy)."""
    from tinydeploy.analyze import analyze
    from tinydeploy.benchmark import benchmark
    from tinydeploy.errors import ValidationFailed
    from tinydeploy.link import inference_bound_s
    from tinydeploy.validate import reference_for

    library = project.tflm_library() if project.runtime == "tflm" else None
    if project.runtime == "tflm" and library is None:
        status("warning: no TFLM library given: comparing with the tflite_micro wheel, which can "
               "differ from the device's TFLM by 1 on rounding ties (--tflm-lib DIR)")
    reference = reference_for(project.runtime, project.model_bytes, library, progress=status)
    board = project.board
    if timeout is None:
        timeout = inference_bound_s(analyze(project.model_bytes).total_macs, board.clock_hz,
                                    board.emulated)
    status(f"starting {board.id} ({project.kind}) ...")
    from tinydeploy.benchmark import eembc_device

    with eembc_device(project, port) as device:
        with click.progressbar(length=len(data.x) + (windows or 5), label="benchmarking",
                               file=sys.stderr) as bar:
            report = benchmark(device, project.model_bytes, data.x, data.y,
                               settings=project.manifest["eembc"], iterations=iterations,
                               warmups=warmups, windows=windows, limit=limit, reference=reference,
                               inference_s=timeout, progress=lambda what, done, total: bar.update(1))
    for line in report.lines():
        click.echo(line)
    _emit_report_json(json_path, report.to_dict())
    if not report.passed:
        first = report.mismatches[0] if report.mismatches else "?"
        raise ValidationFailed(
            f"the device's outputs differ from the host reference on {1 - report.exact_match:.1%} "
            f"of samples (first at sample {first}), or its m-results lines from its outputs on "
            f"{1 - report.results_match:.1%}", "check the runtime and firmware/eembc")


def serve(project, path: Path) -> None:
    """Present the emulated board's UART as the pty ``path`` until Ctrl-C (or QEMU stops)."""
    import select
    import tty

    if project.kind != "baremetal":
        raise InputError(f"--serve is for emulated boards; {project.board.id} is a real board",
                         "point the runner at the board's own serial port")
    if path.exists() and not path.is_symlink():
        raise InputError(f"--serve {path} exists and is not a symlink", "choose another path")
    if not path.parent.is_dir():
        raise InputError(f"--serve {path}: the folder {path.parent} does not exist", "create it first")
    from tinydeploy.benchmark import start_emulated

    qemu = start_emulated(project)
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, path)
        sock = _connect(qemu)
        status(f"serving {project.board.id} ({project.manifest['eembc']['model_id']}, runtime "
               f"{project.runtime}) on {path} -> {os.ttyname(slave)}; Ctrl-C stops it")
        click.echo(str(path))
        while qemu.exit_code is None:
            ready, _, _ = select.select([master, sock], [], [], 0.5)
            if master in ready:
                data = os.read(master, 4096)
                if data:
                    sock.sendall(data)
            if sock in ready:
                data = sock.recv(4096)
                if not data:
                    break
                os.write(master, data)
        status(f"the emulated board stopped (QEMU exit status {qemu.exit_code})")
    finally:
        if path.is_symlink():
            path.unlink()
        os.close(master)
        os.close(slave)
        qemu.stop()


def _connect(qemu):
    import socket
    import time

    deadline = time.monotonic() + qemu.open_timeout
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", qemu.tcp_port), timeout=1.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
