"""The rendered PlatformIO project: accepted by `pio project config`, exact op resolver, and the
TFLM adapter and Arduino HAL compiled (and run on the host) against stub headers.

Real-board builds (`pio run`) need PlatformIO to download platforms, toolchains and libraries, which
this machine cannot do; these tests check everything that can be checked offline.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tinydeploy import tflite
from tinydeploy._opcodes import BUILTIN_OPERATORS
from tinydeploy.boards import load_board, list_boards
from tinydeploy.errors import InputError, UnsupportedOpError
from tinydeploy.platformio_project import TFLM_RESOLVER_METHODS, render_platformio_project, resolver_calls

from paths import MLPERF, REPO

STUBS = REPO / "tests" / "stubs"
FIRMWARE = REPO / "firmware"
IC_MODEL = MLPERF / "pretrainedResnet_quant.tflite"
CXX_FLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror"]


@pytest.fixture(scope="session")
def ic_ops() -> list[str]:
    """Every op of the MLPerf Tiny ResNet-8, repeats included, in model order."""
    return [op.opcode for op in tflite.load(IC_MODEL).main.operators]


def _context(board_id: str, ops: list[str], runtime: str = "tflm") -> dict:
    return {
        "board": load_board(board_id),
        "model_name": "pretrainedResnet_quant",
        "runtime": runtime,
        "ops": ops,
        "arena_bytes": 60_000,
        "model_hash_hex": "0f" * 32,
    }


PIO_BOARDS = [b.id for b in list_boards() if b.platformio]


def _runtime(board_id: str) -> str:
    """The board's default runtime; a board that runs none (AVR) gets the native project."""
    board = load_board(board_id)
    return board.runtimes[0] if board.runtimes else "native"


@pytest.fixture(scope="session")
def projects(tmp_path_factory, ic_ops) -> dict[str, Path]:
    """One rendered project per real board, each with its default runtime."""
    root = tmp_path_factory.mktemp("pio")
    for board_id in PIO_BOARDS:
        render_platformio_project(root / board_id, _context(board_id, ic_ops, _runtime(board_id)))
    return {board_id: root / board_id for board_id in PIO_BOARDS}


@pytest.fixture(scope="session")
def pio_configs(projects) -> dict[str, subprocess.CompletedProcess]:
    """`pio project config` on every board's project, four at a time (each takes about a second,
    mostly PlatformIO's start-up)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(projects, pool.map(_pio_config, projects.values())))


def _pio_config(project: Path) -> subprocess.CompletedProcess:
    if shutil.which("pio") is None:
        pytest.skip("PlatformIO (pio) is not installed: pip install 'tinydeploy[boards]'")
    env = dict(os.environ, PLATFORMIO_SETTING_ENABLE_TELEMETRY="No")
    return subprocess.run(
        ["pio", "project", "config", "--project-dir", str(project), "--json-output"],
        capture_output=True, text=True, timeout=120, env=env,
    )


@pytest.mark.parametrize("board_id", PIO_BOARDS)
def test_pio_project_config_accepts_the_project(pio_configs, board_id):
    """PlatformIO parses and type-checks platformio.ini offline; the env carries the profile's values.
    (Offline, pio cannot tell whether the board id exists in the platform: the ids were read off the
    platforms' board manifests, which each profile names.)"""
    board = load_board(board_id)
    result = pio_configs[board_id]
    assert result.returncode == 0, result.stderr
    sections = {name: dict(options) for name, options in json.loads(result.stdout)}
    assert sections["platformio"]["default_envs"] == [board_id]
    env = sections[f"env:{board_id}"]
    assert env["platform"] == board.platformio.platform and env["board"] == board.platformio.board
    assert env["framework"] == ["arduino"]
    if _runtime(board_id) == "tflm":
        assert env["lib_deps"] == list(board.platformio.lib_deps) and board.platformio.lib_deps
    else:  # a native project needs no TFLM library
        assert "lib_deps" not in env
    assert env["monitor_speed"] == board.serial.baud
    assert f"-DTD_SERIAL_BAUD={board.serial.baud}" in env["build_flags"]
    assert set(board.platformio.build_flags) <= set(env["build_flags"])


def test_pio_project_config_really_validates(projects, tmp_path):
    """The acceptance above means something: PlatformIO rejects a mistyped option value."""
    broken = tmp_path / "broken"
    shutil.copytree(projects["nano33ble"], broken)
    ini = broken / "platformio.ini"
    ini.write_text(re.sub(r"monitor_speed = \d+", "monitor_speed = fast", ini.read_text()))
    result = _pio_config(broken)
    assert result.returncode != 0 and "monitor_speed" in result.stdout + result.stderr


def test_project_holds_the_firmware_it_compiles(projects):
    src = projects["nano33ble"] / "src"
    for name in ("main.cpp", "op_resolver.h", "td_runtime.h", "td_hal.h", "td_link.h", "td_link.c",
                 "td_hal_arduino.cpp", "td_runtime_tflm.cc"):
        assert (src / name).is_file(), name
    assert (src / "td_runtime_tflm.cc").read_bytes() == (FIRMWARE / "tflm" / "td_runtime_tflm.cc").read_bytes()
    main = (src / "main.cpp").read_text()
    assert "#include <TensorFlowLite.h>" in main and "td_link_serve_forever();" in main
    esp_main = (projects["esp32"] / "src" / "main.cpp").read_text()
    assert "#include <TensorFlowLite_ESP32.h>" in esp_main


def test_op_resolver_registers_exactly_the_distinct_ops(projects, ic_ops):
    header = (projects["nano33ble"] / "src" / "op_resolver.h").read_text()
    distinct = list(dict.fromkeys(ic_ops))
    assert len(ic_ops) > len(distinct)  # the model repeats ops: the resolver must not
    assert re.search(r"#define TD_OP_COUNT (\d+)", header).group(1) == str(len(distinct))
    calls = re.findall(r"resolver\.(\w+)\(\)", header)
    assert calls == [TFLM_RESOLVER_METHODS[op] for op in distinct]


def test_every_resolver_entry_is_a_real_tflite_op():
    assert set(TFLM_RESOLVER_METHODS) <= set(BUILTIN_OPERATORS)
    assert all(method.startswith("Add") for method in TFLM_RESOLVER_METHODS.values())


def test_op_without_tflm_kernel_is_refused():
    with pytest.raises(UnsupportedOpError, match="no kernel for RFFT2D, TOPK_V2"):
        resolver_calls(["CONV_2D", "RFFT2D", "TOPK_V2"])


def test_emulated_board_has_no_platformio_project(tmp_path, ic_ops):
    with pytest.raises(InputError, match="board 'qemu-m4' has no PlatformIO environment"):
        render_platformio_project(tmp_path, _context("qemu-m4", ic_ops))


def test_native_runtime_project_has_no_tflm(tmp_path, ic_ops):
    render_platformio_project(tmp_path, _context("nano33ble", ic_ops, runtime="native"))
    ini = (tmp_path / "platformio.ini").read_text()
    assert "lib_deps" not in ini and "lib_ldf_mode" not in ini
    assert not (tmp_path / "src" / "op_resolver.h").exists()
    assert not (tmp_path / "src" / "td_runtime_tflm.cc").exists()
    assert "TensorFlowLite" not in (tmp_path / "src" / "main.cpp").read_text()
    # model.c and exactly the kernels it calls come from tinydeploy.native (see tinydeploy.projects)
    assert not (tmp_path / "src" / "td_conv.c").exists()


@pytest.mark.parametrize("board", [b for b in list_boards() if b.platformio], ids=lambda b: b.id)
def test_every_real_board_renders(tmp_path, board, ic_ops):
    written = render_platformio_project(tmp_path, _context(board.id, ic_ops))
    ini = (tmp_path / "platformio.ini").read_text()
    assert f"[env:{board.id}]" in ini and f"board = {board.platformio.board}" in ini
    assert all(dep in ini for dep in board.platformio.lib_deps)
    assert all(path.is_file() for path in written)


# --- C/C++ against stub headers ----------------------------------------------------------------------

def _compile_and_run(compiler: str, sources: list[Path], includes: list[Path], defines: list[str],
                     out: Path) -> str:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    command = [compiler, *CXX_FLAGS, *(f"-I{p}" for p in includes), *(f"-D{d}" for d in defines),
               *map(str, sources), "-o", str(out)]
    build = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(out)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _stub_model_headers(folder: Path, arena_bytes: int) -> None:
    """model_data.h / model_settings.h as the build stage writes them, naming the harness's array."""
    (folder / "model_data.h").write_text(
        '#ifdef __cplusplus\nextern "C" {\n#endif\n'
        "extern const unsigned char g_stub_model[];\nextern const unsigned int g_stub_model_len;\n"
        "#ifdef __cplusplus\n}\n#endif\n"
        "#define TD_MODEL_DATA g_stub_model\n#define TD_MODEL_DATA_LEN g_stub_model_len\n"
    )
    (folder / "model_settings.h").write_text(f"#define TD_ARENA_BYTES {arena_bytes}\n")


@pytest.mark.parametrize(
    "schema, arena_bytes, expected_init",
    [(3, 1024, 0), (2, 1024, -2), (3, 32, -4)],
    ids=["runs", "schema-mismatch", "arena-too-small"],
)
def test_tflm_adapter_against_stub_headers(projects, tmp_path, ic_ops, schema, arena_bytes, expected_init):
    """The adapter compiles with -Wall -Wextra -Werror against the stub TFLM API and behaves: the
    generated resolver registers exactly the model's distinct ops, init reports each failure with
    its own code, tensors and invoke work after a good init and are refused after a bad one."""
    src = projects["nano33ble"] / "src"
    shutil.copy(src / "op_resolver.h", tmp_path)
    _stub_model_headers(tmp_path, arena_bytes)
    output = _compile_and_run(
        "g++",
        [STUBS / "check_tflm_adapter.cc", src / "td_runtime_tflm.cc"],
        [tmp_path, src, STUBS / "tflm"],
        [f"TD_EXPECT_INIT={expected_init}", f"TD_STUB_SCHEMA={schema}"],
        tmp_path / "check",
    )
    assert output.splitlines()[-1] == "ok"
    registered = [line.split()[1] for line in output.splitlines() if line.startswith("op ")]
    assert registered == list(dict.fromkeys(ic_ops))


def test_resolver_of_every_known_op_against_stub_headers(tmp_path):
    """A model using every op of the fact table: the resolver gets N = all of them, each Add method
    exists (in the stub, which mirrors the real header), and all register without overflowing N."""
    every_op = list(TFLM_RESOLVER_METHODS)
    render_platformio_project(tmp_path / "p", _context("nano33ble", every_op))
    _stub_model_headers(tmp_path, 1024)
    shutil.copy(tmp_path / "p" / "src" / "op_resolver.h", tmp_path)
    output = _compile_and_run(
        "g++",
        [STUBS / "check_tflm_adapter.cc", FIRMWARE / "tflm" / "td_runtime_tflm.cc"],
        [tmp_path, FIRMWARE, STUBS / "tflm"],
        ["TD_EXPECT_INIT=0"],
        tmp_path / "check",
    )
    assert [line.split()[1] for line in output.splitlines() if line.startswith("op ")] == every_op


def test_tflm_adapter_cross_compiles_for_cortex_m_against_stub_headers(projects, tmp_path):
    if shutil.which("arm-none-eabi-g++") is None:
        pytest.skip("arm-none-eabi-g++ is not installed")
    src = projects["nano33ble"] / "src"
    shutil.copy(src / "op_resolver.h", tmp_path)
    _stub_model_headers(tmp_path, 60_000)
    result = subprocess.run(
        ["arm-none-eabi-g++", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
         *CXX_FLAGS, "-fno-exceptions", "-fno-rtti", "-fsyntax-only",
         f"-I{tmp_path}", f"-I{src}", f"-I{STUBS / 'tflm'}", str(src / "td_runtime_tflm.cc")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("defines", [["TD_SERIAL_BAUD=115200"], ["TD_SERIAL_BAUD=921600", "ARDUINO_ARCH_ESP32"]],
                         ids=["generic", "esp32-cycles"])
def test_arduino_hal_against_stub_headers(tmp_path, defines):
    """The HAL starts Serial once at the profile's baud, writes every byte through short writes,
    reads with a timeout that ends, and counts cycles where the core can (ESP32: CCOUNT)."""
    output = _compile_and_run(
        "g++",
        [STUBS / "check_arduino_hal.cpp", STUBS / "arduino" / "arduino_stub.cpp", FIRMWARE / "hal" / "td_hal_arduino.cpp"],
        [FIRMWARE, STUBS / "arduino"],
        defines,
        tmp_path / "check",
    )
    assert output.strip() == "ok"


@pytest.mark.parametrize("cpu", ["cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33"])
def test_arduino_hal_cross_compiles_against_stub_headers(cpu):
    """On ARMv7-M/ARMv8-M Mainline the DWT cycle-counter path compiles; on the M0+ the 0 fallback."""
    if shutil.which("arm-none-eabi-g++") is None:
        pytest.skip("arm-none-eabi-g++ is not installed")
    hal = FIRMWARE / "hal" / "td_hal_arduino.cpp"
    base = ["arm-none-eabi-g++", f"-mcpu={cpu}", "-mthumb", *CXX_FLAGS, "-fno-exceptions", "-fno-rtti",
            f"-I{FIRMWARE}", f"-I{STUBS / 'arduino'}"]
    result = subprocess.run([*base, "-fsyntax-only", str(hal)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    macros = subprocess.run([*base, "-dM", "-E", str(hal)], capture_output=True, text=True, timeout=120)
    assert ("#define TD_HAVE_DWT 1" in macros.stdout) == (cpu != "cortex-m0plus")


# --- the whole project, as `tinydeploy build` renders it, linked against the stubs ---------------------

@pytest.fixture(scope="session")
def prepared_ic():
    from tinydeploy.build import prepare

    return prepare(IC_MODEL)


def _link_project(project: Path, work: Path) -> str:
    """Compile every source of ``project/src`` (C as C11, C++ as C++17, all -Werror) with the stub
    Arduino/TFLM headers, link them with the stub Arduino core and a main() that runs setup()."""
    for tool in ("gcc", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    src = project / "src"
    includes = [f"-I{src}", f"-I{STUBS / 'tflm'}", f"-I{STUBS / 'arduino'}"]
    baud = re.search(r"monitor_speed = (\d+)", (project / "platformio.ini").read_text()).group(1)
    sources = sorted(p for p in src.iterdir() if p.suffix in (".c", ".cc", ".cpp"))
    sources += [STUBS / "arduino" / "arduino_stub.cpp", STUBS / "check_project_links.cpp"]
    objects = []
    for source in sources:
        obj = work / f"{source.name}.o"
        command = (["gcc", "-std=c11"] if source.suffix == ".c" else ["g++", *CXX_FLAGS])
        command += ["-Wall", "-Wextra", "-Werror", f"-DTD_SERIAL_BAUD={baud}", *includes, "-c", str(source), "-o", str(obj)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{source.name}:\n{result.stderr}"
        objects.append(str(obj))
    link = subprocess.run(["g++", *objects, "-o", str(work / "firmware")], capture_output=True, text=True, timeout=120)
    assert link.returncode == 0, link.stderr
    run = subprocess.run([str(work / "firmware")], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


@pytest.mark.parametrize("board_id, runtime", [("nano33ble", "tflm"), ("esp32", "tflm"), ("nano33ble", "native")])
def test_built_project_links_against_stub_headers(prepared_ic, tmp_path, board_id, runtime):
    """`tinydeploy build` output is self-consistent: PlatformIO accepts its platformio.ini, and
    main.cpp, the protocol, the HAL, the runtime and the model files compile cleanly together with
    every symbol resolving exactly once."""
    from tinydeploy.build import build

    result = build(prepared_ic, board_id, runtime=runtime, out_dir=tmp_path / "project")
    assert result.out_dir is not None, "the IC model should fit"
    if shutil.which("pio"):
        config = _pio_config(tmp_path / "project")
        assert config.returncode == 0, config.stderr
    work = tmp_path / "objects"
    work.mkdir()
    assert _link_project(tmp_path / "project", work).strip() == "ok"
