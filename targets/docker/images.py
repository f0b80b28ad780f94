"""Build the target images: ``servecap images build [--offline] [TARGETS...]``.

Images (tag ``servecap/<name>:<tag>``, default tag ``latest``)::

    servecap/base:bookworm-py311   offline stand-in for python:3.11-slim-bookworm (debootstrap)
    servecap/runtime               base + venv with the pinned serving deps + targets/ + nginx,
                                   redis (targets/docker/runtime.Dockerfile)
    servecap/fastapi, flask,       thin FROM runtime, one per image a kind declares
    django, jobqueue               (targets/<kind>/kind.py ``images``: its Dockerfiles)
    servecap/<name>:<tag>-model    model-in-image variant: any of the above (or TF Serving)
                                   plus the SavedModel (targets/docker/model.Dockerfile)

Online (default): ``BASE_IMAGE=python:3.11-slim-bookworm`` from the registry, pip from the
package index. ``--offline`` (no registry): the debootstrap base image is built first
(targets/docker/build_base.sh, root + debootstrap + a Debian mirror), then the wheelhouse
(targets/docker/build_wheelhouse.sh, PyPI or its cache), and the wheelhouse is served on
127.0.0.1 to ``docker build --network host`` while the runtime image builds.

Runtime requirements come from pyproject.toml's pinned ``[project] dependencies`` minus the
harness-only packages (:data:`HARNESS_ONLY`), so a pin is changed in one place only.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from targets.kind import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "targets" / "docker"
BUILD_DIR = REPO_ROOT / "build" / "docker"
WHEELHOUSE = REPO_ROOT / "build" / "wheelhouse"
REQUIREMENTS = BUILD_DIR / "requirements-runtime.txt"

OFFICIAL_BASE = "python:3.11-slim-bookworm"
OFFLINE_BASE = "servecap/base:bookworm-py311"
IMAGE_REPO = os.environ.get("SERVECAP_IMAGE_REPO", "servecap")

RUNTIME_PACKAGES = (
    "tensorflow", "numpy", "pillow", "orjson", "pydantic", "pydantic-settings", "psutil",
    "pyyaml", "fastapi", "uvicorn", "flask", "gunicorn", "django", "redis", "rq",
    "prometheus-client", "protobuf",
    # numpy-1 compatible: Triton's Python backend runs TensorFlow with numpy<2 (ml-dtypes after
    # 0.5 is built for numpy 2 only)
    "ml-dtypes",
)  # fmt: skip
"""The serving packages the containers need, by name only: their pins are read from
pyproject.toml (``[project] dependencies`` and the :data:`RUNTIME_EXTRAS` groups), so a pin
lives in one place. Harness-only packages (locust, pandas, docker, notebooks...) never enter an
image. A name pyproject does not pin yet is still installed, unpinned, with a warning (offline
its version is then the host venv's: build_wheelhouse.sh constrains to ``pip freeze``)."""

OPTIONAL_RUNTIME_PACKAGES = ("uvloop", "httptools", "werkzeug", "urllib3")
"""Installed with their pyproject pin when pyproject pins them; otherwise left to pip."""

RUNTIME_EXTRAS = ("serve", "targets")
"""Optional-dependency groups of pyproject.toml searched too, when they exist."""


def target_images() -> dict[str, Path]:
    """Image name -> its Dockerfile, for every image a kind declares (``Kind.images``)."""
    return {name: folder / image.dockerfile for name, (folder, image) in _declared().items()}


def image_wheels(name: str) -> list[Path]:
    """The requirement files image ``name`` installs without dependencies (``Image.wheels``)."""
    folder, image = _declared()[name]
    return [folder / w for w in image.wheels]


def _declared() -> dict[str, tuple[Path, Image]]:
    from targets.registry import kinds

    return {image.name: (k.folder, image) for k in kinds().values() for image in k.images}


def kind_images(kind: str) -> tuple[str, ...]:
    """The servecap images the containers of ``kind``'s compose profile run (not runtime)."""
    from targets.docker import compose

    built = target_images()
    names: list[str] = []
    for spec in compose.services({}, kind).values():
        repository, _, _ = str(spec.get("image", "")).rpartition(":")
        name = repository.rsplit("/", 1)[-1]
        if name in built and name not in names:
            names.append(name)
    return tuple(names)


LABEL = "io.servecap.image"

Echo = Callable[[str], None]


class BuildError(RuntimeError):
    """An image could not be built; the message says which step and why."""


def image_ref(name: str, tag: str = "latest") -> str:
    return f"{IMAGE_REPO}/{name}:{tag}"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise BuildError(f"cannot read a package name in requirement {requirement!r}")
    return _normalise(match.group(1))


def runtime_requirements(
    pyproject: Path = REPO_ROOT / "pyproject.toml", warn: Echo | None = None
) -> list[str]:
    """The requirements the runtime image installs, with pyproject.toml's pins."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements: list[str] = list(project.get("dependencies", []))
    extras = project.get("optional-dependencies", {})
    for group in RUNTIME_EXTRAS:
        requirements += extras.get(group, [])
    pinned: dict[str, str] = {}
    for req in requirements:
        pinned.setdefault(_requirement_name(req), req.strip())
    selected: list[str] = []
    for name in (*RUNTIME_PACKAGES, *OPTIONAL_RUNTIME_PACKAGES):
        found = pinned.get(_normalise(name))
        if found is None:
            if name in RUNTIME_PACKAGES:
                if warn is not None:
                    warn(f"images: WARNING {name} is not pinned in pyproject.toml; "
                         "installing it unpinned")  # fmt: skip
                selected.append(name)
            continue
        if "==" not in found and "@" not in found:
            raise BuildError(
                f"pyproject.toml dependency {found!r} is not pinned (name==version); images "
                "must be reproducible"
            )
        selected.append(found)
    return selected


def write_requirements(path: Path = REQUIREMENTS, warn: Echo | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Generated by targets/docker/images.py from pyproject.toml; do not edit.",
        *runtime_requirements(warn=warn),
    ]
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


WHEELS_PORT = int(os.environ.get("SERVECAP_WHEELS_PORT", "38517"))
"""Fixed by default: the URL is a build argument, and a new one would defeat the layer cache."""


@contextlib.contextmanager
def serve_directory(directory: Path, port: int = WHEELS_PORT) -> Iterator[str]:
    """Serve ``directory`` read-only on 127.0.0.1:``port`` (or, if busy, an ephemeral port)
    while the block runs."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def docker_cli() -> str:
    cli = os.environ.get("DOCKER", "docker")
    path = shutil.which(cli)
    if path is None:
        raise BuildError(f"docker CLI '{cli}' not found (set DOCKER=/path/to/docker)")
    return path


def image_exists(ref: str) -> bool:
    proc = subprocess.run([docker_cli(), "image", "inspect", ref], capture_output=True,
                          timeout=60, check=False)  # fmt: skip
    return proc.returncode == 0


def image_size_mb(ref: str) -> float:
    out = subprocess.run([docker_cli(), "image", "inspect", "-f", "{{.Size}}", ref],
                         capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    return int(out.strip()) / 1e6


@dataclass
class StepResult:
    name: str
    seconds: float
    image: str | None = None
    size_mb: float | None = None
    skipped: bool = False


@dataclass
class BuildReport:
    steps: list[StepResult] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return sum(s.seconds for s in self.steps)

    def lines(self) -> list[str]:
        out = []
        for s in self.steps:
            size = f"  {s.size_mb:,.0f} MB" if s.size_mb is not None else ""
            note = " (up to date)" if s.skipped else ""
            out.append(f"{s.name:<22} {s.seconds:7.1f} s{size}{note}  {s.image or ''}".rstrip())
        out.append(f"{'total':<22} {self.total_s:7.1f} s")
        return out


def _run(cmd: Sequence[str], what: str, echo: Echo, timeout_s: float = 1800,
         env: dict[str, str] | None = None) -> None:  # fmt: skip
    echo(f"images: {what}: {' '.join(cmd)}")
    try:
        proc = subprocess.run(list(cmd), cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=timeout_s, check=False, env=env)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what}: still running after {timeout_s:.0f} s; stopped") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def docker_build(
    dockerfile: str, tag: str, build_args: dict[str, str], echo: Echo,
    context: Path = REPO_ROOT, no_cache: bool = False,
) -> None:  # fmt: skip
    """``docker build --network host --force-rm`` (host network: the apt mirror, the wheels)."""
    path = str(context / dockerfile)
    cmd = [docker_cli(), "build", "--network", "host", "--force-rm", "-f", path, "-t", tag]
    if no_cache:
        cmd.append("--no-cache")
    for key, value in build_args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    cmd.append(str(context))
    _run(cmd, f"build {tag}", echo)


def prune_dangling(echo: Echo = print) -> None:
    """Remove dangling servecap images (a rebuilt runtime leaves ~1.5 GB behind)."""
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run([docker_cli(), "image", "prune", "-f", "--filter", f"label={LABEL}"],
                       capture_output=True, timeout=300, check=False)  # fmt: skip
        echo("images: pruned dangling servecap images")


def images_for(targets: Sequence[str]) -> list[str]:
    """Image names (of :func:`target_images`) for kinds or image names, in build order."""
    from targets.registry import kinds

    built = target_images()
    names: list[str] = []
    for item in targets or list(built):
        if item in built:
            wanted: tuple[str, ...] = (item,)
        elif item in kinds():
            wanted = kind_images(item)
        else:
            choices = sorted({*built, *kinds()})
            raise BuildError(f"unknown kind or image '{item}'; choose from {', '.join(choices)}")
        names += [n for n in wanted if n not in names]
    return names


def _timed(report: BuildReport, name: str, image: str | None, fn: Callable[[], bool]) -> None:
    t0 = time.monotonic()
    built = fn()
    size = image_size_mb(image) if image and image_exists(image) else None
    report.steps.append(StepResult(name, time.monotonic() - t0, image, size, skipped=not built))


def build(
    targets: Sequence[str] = (),
    offline: bool = False,
    tag: str = "latest",
    base_image: str | None = None,
    no_cache: bool = False,
    rebuild_base: bool = False,
    echo: Echo = print,
) -> BuildReport:
    """Build the runtime image and the images of ``targets`` (kinds or image names; all by
    default). Offline: the debootstrap base and the wheelhouse first. Returns step timings."""
    names = images_for(targets)
    dockerfiles = target_images()
    missing = [n for n in names if not dockerfiles[n].is_file()]
    if missing:
        files = ", ".join(str(dockerfiles[n]) for n in missing)
        raise BuildError(f"no Dockerfile for {', '.join(missing)} ({files})")
    report = BuildReport()
    requirements = write_requirements(warn=echo)
    base = base_image or (OFFLINE_BASE if offline else OFFICIAL_BASE)
    runtime = image_ref("runtime", tag)

    if offline and base == OFFLINE_BASE:
        cmd = ["bash", str(DOCKER_DIR / "build_base.sh"), *(["--force"] if rebuild_base else [])]
        _timed(report, "base (debootstrap)", base,
               lambda: _run_changed(cmd, "base image", echo, base, rebuild_base))  # fmt: skip
    if offline:
        cmd = ["bash", str(DOCKER_DIR / "build_wheelhouse.sh"), "-o", str(WHEELHOUSE),
               "--image", base, str(requirements)]  # fmt: skip
        _timed(report, "wheelhouse", None, lambda: _run_true(cmd, "wheelhouse", echo))

    def runtime_step() -> bool:
        args = {"BASE_IMAGE": base}
        with contextlib.ExitStack() as stack:
            if offline:
                args["WHEELS_URL"] = stack.enter_context(serve_directory(WHEELHOUSE))
            docker_build("targets/docker/runtime.Dockerfile", runtime, args, echo,
                         no_cache=no_cache)  # fmt: skip
        return True

    _timed(report, "runtime", runtime, runtime_step)
    for name in names:
        ref = image_ref(name, tag)
        wheels = image_wheels(name)
        if offline and wheels:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                   "--only-binary=:all:", "-d", str(WHEELHOUSE)]  # fmt: skip
            for path in wheels:
                cmd += ["-r", str(path)]
            _timed(
                report, f"{name} wheels", None, functools.partial(_run_true, cmd, "wheels", echo)
            )

        def step(
            dockerfile: str = str(dockerfiles[name]), ref: str = ref, wheels: bool = bool(wheels)
        ) -> bool:
            args = {"RUNTIME_IMAGE": runtime}
            with contextlib.ExitStack() as stack:
                if offline and wheels:
                    args["WHEELS_URL"] = stack.enter_context(serve_directory(WHEELHOUSE))
                docker_build(dockerfile, ref, args, echo, no_cache=no_cache)
            return True

        _timed(report, name, ref, step)
    prune_dangling(echo)
    return report


def _run_true(cmd: Sequence[str], what: str, echo: Echo) -> bool:
    _run(cmd, what, echo)
    return True


def _run_changed(cmd: Sequence[str], what: str, echo: Echo, image: str, force: bool) -> bool:
    existed = image_exists(image)
    _run(cmd, what, echo)
    return force or not existed


def build_model_image(
    image: str, model_dir: Path, tag: str | None = None, echo: Echo = print
) -> str:
    """The model-in-image variant of ``image``: the SavedModel base copied to
    /models/cifar10_cnn. Works for servecap images and for TF Serving's."""
    model_dir = model_dir.resolve()
    if not any(model_dir.glob("*/saved_model.pb")):
        raise BuildError(f"{model_dir} is not a model base (<version>/saved_model.pb)")
    ref = tag or (f"{image}-model" if ":" in image.rsplit("/", 1)[-1] else f"{image}:model")
    with tempfile.TemporaryDirectory(prefix="servecap-model-context-") as tmp:
        context = Path(tmp)
        shutil.copytree(model_dir, context / "model", symlinks=False)
        shutil.copy(DOCKER_DIR / "model.Dockerfile", context / "Dockerfile")
        (context / ".dockerignore").write_text("**/__pycache__\n")
        docker_build("Dockerfile", ref, {"TARGET_IMAGE": image}, echo, context=context)
    return ref


def build_model_images(
    targets: Sequence[str], model_dir: Path, tag: str = "latest", echo: Echo = print
) -> list[str]:
    """Model-in-image variants for ``targets`` (kinds or image names): ``<image>:<tag>-model``
    for servecap images, ``servecap/<name>:<its tag>-model`` for a kind's official images (TF
    Serving), the names the Docker launcher runs with ``model_in_image``."""
    from targets.registry import kinds

    refs = [
        build_model_image(image_ref(name, tag), model_dir, echo=echo)
        for name in images_for(targets)
    ]
    official = {
        n: i for t in targets if t in kinds() for n, i in kinds()[t].official_images.items()
    }
    for name, image in sorted(official.items()):
        if not image_exists(image):
            raise BuildError(f"{image} is not here to build its model-in-image variant on")
        ref = image_ref(name, f"{image.rpartition(':')[2]}-model")
        refs.append(build_model_image(image, model_dir, tag=ref, echo=echo))
    prune_dangling(echo)
    return refs


__all__ = [
    "OFFICIAL_BASE",
    "OFFLINE_BASE",
    "OPTIONAL_RUNTIME_PACKAGES",
    "RUNTIME_PACKAGES",
    "BuildError",
    "BuildReport",
    "build",
    "build_model_image",
    "build_model_images",
    "image_ref",
    "kind_images",
    "runtime_requirements",
    "serve_directory",
    "target_images",
    "write_requirements",
]
