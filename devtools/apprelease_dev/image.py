"""Build the operator's container image with no container engine and no base image to pull.

Three layers, each cached in a buildah storage of our own under the cache directory and keyed
by its inputs, so an operator change rebuilds only the last, small one:

1. Debian: `mmdebstrap --variant=extract` of Debian's python3 and the libraries it needs, from
   the machine's apt sources (no shell, no apt, no dpkg maintainer scripts run); a dpkg status
   file written from the packages' control data, so scanners see what is installed.
2. Dependencies: a venv in /opt/apprelease holding the operator's dependencies, as wheels
   pip downloads for the image's Python and glibc (pinned by constraints.txt), installed by
   the image's own Python (pip runs from its wheel, inside a chroot, offline).
3. The operator's wheel, built from this source tree; `pip check`; the image's config (entry
   point `apprelease`, user 10001, ports, labels).

The result is `localhost/apprelease:<version>` in that storage, which `apprelease dev image
--push` sends to a registry (`docker://...`) or writes as an OCI archive (`oci-archive:PATH`). The Dockerfile
builds the same layout from a Python base image, for machines that can pull one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from apprelease_dev.go_runner import BuildError
from apprelease_dev.locking import file_lock
from apprelease_dev.paths import cache_root

Progress = Callable[[str], None]

# Bump when the build steps change in a way the inputs below do not show.
BUILDER_VERSION = "1"
DEBIAN_PACKAGES = ("python3",)
# pip that installs the wheels inside the image (run from its wheel; not left in the image).
PIP_VERSION = "23.2.1"
VENV = "/opt/apprelease"
USER_ID = 10001
IMAGE_NAME = "localhost/apprelease"
# What the operator listens on (health, metrics); the console's port is set by the chart.
PORTS = (8080, 8081)
# What a Debian package installs that an operator never reads.
PRUNED_PATHS = ("usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
                "var/cache/apt", "var/log", "var/lib/apt/lists")
COMMAND_TIMEOUT_SECONDS = 900
# overlay: layers share files (a rebuild copies nothing); vfs copies every layer whole but
# needs no overlay mounts (for a nested container without them).
STORAGE_DRIVER_ENV = "APPRELEASE_IMAGE_STORAGE_DRIVER"
DEFAULT_STORAGE_DRIVER = "overlay"


@dataclass(frozen=True)
class BuiltImage:
    reference: str
    image_id: str
    size_bytes: int  # uncompressed, as `buildah images` counts it
    seconds: float
    cached: bool
    layers_built: tuple[str, ...]


def image_home() -> Path:
    return cache_root() / "image"


def source_root() -> Path:
    """The checkout the operator is built from (the directory holding pyproject.toml)."""
    return Path(__file__).resolve().parents[2]


def project_version(source: Path) -> str:
    return str(tomllib.loads((source / "pyproject.toml").read_text())["project"]["version"])


def build_image(
    source: Path | None = None, progress: Progress = print, *, refresh: bool = False
) -> BuiltImage:
    """Build (or find in the cache) the image of the operator in `source`."""
    source = source or source_root()
    _require_tools()
    started = time.monotonic()
    home = image_home()
    home.mkdir(parents=True, exist_ok=True)
    with file_lock(home / ".build.lock"):
        buildah = Buildah.for_home(home)
        version = project_version(source)
        reference = f"{IMAGE_NAME}:{version}"
        apt_sources = debian_sources()
        debian_key = _key("debian", BUILDER_VERSION, _debian_arch(), DEBIAN_PACKAGES,
                          apt_sources.read_text())
        deps_key = _key("deps", debian_key, PIP_VERSION, _dependency_inputs(source))
        final_key = _key("operator", deps_key, _tree_digest(source), version)
        if not refresh and buildah.has_image(_stage("operator", final_key)):
            buildah.tag(_stage("operator", final_key), reference)
            return BuiltImage(reference, *buildah.id_and_size(reference), time.monotonic() - started, True, ())
        built: list[str] = []
        wheels = home / "wheels" / deps_key
        if refresh or not buildah.has_image(_stage("debian", debian_key)):
            progress(f"Debian layer: mmdebstrap {' '.join(DEBIAN_PACKAGES)} from {apt_sources}")
            _build_debian_layer(buildah, _stage("debian", debian_key), apt_sources)
            built.append("debian")
        if refresh or not buildah.has_image(_stage("deps", deps_key)):
            progress("dependencies layer: wheels for the image's Python, installed in a venv")
            _build_dependencies_layer(buildah, _stage("debian", debian_key), _stage("deps", deps_key),
                                      source, wheels, progress)
            built.append("dependencies")
        progress("operator layer: the operator's wheel from this checkout")
        _build_operator_layer(buildah, _stage("deps", deps_key), _stage("operator", final_key),
                              source, version, home)
        built.append("operator")
        buildah.tag(_stage("operator", final_key), reference)
        buildah.remove_images_except({_stage("debian", debian_key), _stage("deps", deps_key),
                                      _stage("operator", final_key)})
        # The dependencies' wheels are only needed to build their layer again.
        shutil.rmtree(home / "wheels", ignore_errors=True)
        seconds = time.monotonic() - started
        progress(f"Built {reference} ({', '.join(built)} layers) in {seconds:.0f} s")
        return BuiltImage(reference, *buildah.id_and_size(reference), seconds, False, tuple(built))


def push_image(reference: str, destination: str) -> None:
    """Send a built image to a registry (`docker://host/repo:tag`) or any buildah transport."""
    Buildah.for_home(image_home()).push(reference, destination)


def debian_sources() -> Path:
    """The machine's apt sources for Debian: the image's packages come from where the
    machine's own do (a deb822 file on Debian 12 and later, else sources.list)."""
    for candidate in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if candidate.is_file() and re.search(r"^\s*(deb|Types:)", candidate.read_text(), re.M):
            return candidate
    raise BuildError("finding Debian's apt sources",
                     "no /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list: "
                     "build on Debian, or with the Dockerfile")


def _require_tools() -> None:
    missing = [tool for tool in ("buildah", "mmdebstrap", "dpkg-deb", "chroot") if shutil.which(tool) is None]
    if missing:
        raise BuildError("checking the image build's tools",
                         f"{', '.join(missing)} not found: apt-get install buildah mmdebstrap")
    if os.geteuid() != 0:
        raise BuildError("checking the image build's tools",
                         "run as root (mmdebstrap and buildah write files owned by other users)")


def _build_debian_layer(buildah: Buildah, name: str, apt_sources: Path) -> None:
    with buildah.container("scratch") as (container, root):
        _run(["mmdebstrap", "--mode=root", "--variant=extract", "--skip=cleanup/apt/cache",
              f"--include={','.join(DEBIAN_PACKAGES)}", _debian_suite(apt_sources), str(root),
              str(apt_sources)], step="creating the Debian root file system (mmdebstrap)")
        _write_dpkg_status(root)
        for relative in PRUNED_PATHS:
            shutil.rmtree(root / relative, ignore_errors=True)
        _prune_docs(root / "usr" / "share" / "doc")
        _write_accounts(root)
        python = _image_python(root)
        # Debian's postinst would compile the standard library; with a read-only root file
        # system nothing can be compiled at run time.
        _chroot(root, [python, "-m", "compileall", "-q", "-j", "0", f"/usr/lib/{Path(python).name}"],
                step="compiling the standard library")
        buildah.commit(container, name, created_by=f"mmdebstrap --variant=extract "
                       f"--include={','.join(DEBIAN_PACKAGES)}")


def _build_dependencies_layer(buildah: Buildah, base: str, name: str, source: Path, wheels: Path,
                              progress: Progress) -> None:
    with buildah.container(base) as (container, root):
        python = _image_python(root)
        version, glibc = _image_python_facts(root, python)
        shutil.rmtree(wheels, ignore_errors=True)
        wheels.mkdir(parents=True)
        progress(f"  downloading wheels for CPython {version}, glibc {glibc}")
        requirements = _dependencies(source)
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
              *_platform_options(version, glibc), "--constraint", str(source / "constraints.txt"),
              "--dest", str(wheels), f"pip=={PIP_VERSION}", *requirements],
             step="downloading wheels (pip download)", env=_host_pip_env())
        _chroot(root, [python, "-m", "venv", "--without-pip", VENV], step="creating the venv")
        dependency_wheels = sorted(path.name for path in wheels.glob("*.whl")
                                   if not path.name.startswith("pip-"))
        with _mounted_wheels(root, wheels) as inside:
            _image_pip(root, inside, ["install", "--no-index", "--no-deps",
                                      *(f"{inside}/{wheel}" for wheel in dependency_wheels)])
        buildah.commit(container, name, created_by=f"pip install {' '.join(requirements)}")


def _build_operator_layer(buildah: Buildah, base: str, name: str, source: Path, version: str,
                          work: Path) -> None:
    operator_wheels = work / f"operator-{os.getpid()}"
    shutil.rmtree(operator_wheels, ignore_errors=True)
    try:
        # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
        copy = operator_wheels / "source"
        copy.mkdir(parents=True)
        for file_name in ("pyproject.toml", "README.md"):
            shutil.copy2(source / file_name, copy / file_name)
        shutil.copytree(source / "operator" / "apprelease", copy / "operator" / "apprelease",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
              str(operator_wheels), str(copy)], step="building the operator's wheel",
             env=_host_pip_env())
        shutil.rmtree(copy)
        (wheel,) = operator_wheels.glob("apprelease-*.whl")
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
              "--dest", str(operator_wheels), f"pip=={PIP_VERSION}"], step="downloading pip's wheel",
             env=_host_pip_env())
        with buildah.container(base) as (container, root), \
                _mounted_wheels(root, operator_wheels) as inside:
            _image_pip(root, inside, ["install", "--no-index", "--no-deps", f"{inside}/{wheel.name}"])
            _image_pip(root, inside, ["check"])
            buildah.config(container, [
                "--entrypoint", json.dumps(["apprelease"]), "--cmd", json.dumps(["run"]),
                "--user", f"{USER_ID}:{USER_ID}", "--workingdir", "/",
                "--env", f"PATH={VENV}/bin:/usr/bin:/bin",
                "--env", "PYTHONDONTWRITEBYTECODE=1", "--env", "PYTHONUNBUFFERED=1",
                *(option for port in PORTS for option in ("--port", str(port))),
                "--label", "org.opencontainers.image.title=apprelease",
                "--label", f"org.opencontainers.image.version={version}",
                "--label", "org.opencontainers.image.licenses=Apache-2.0",
                "--label", "org.opencontainers.image.description=AppRelease operator: one object "
                "per app, canary rollouts, Nacos-style registration status",
            ])
            buildah.commit(container, name, created_by=f"pip install {wheel.name}")
    finally:
        shutil.rmtree(operator_wheels, ignore_errors=True)


def _image_pip(root: Path, wheels_inside: str, args: Sequence[str]) -> None:
    """pip, run from its wheel by the venv's Python inside the image (not installed there)."""
    (pip_wheel,) = (root / wheels_inside.lstrip("/")).glob("pip-*.whl")
    _chroot(root, [f"{VENV}/bin/python", f"{wheels_inside}/{pip_wheel.name}/pip",
                   "--disable-pip-version-check", "--no-cache-dir", *args],
            step=f"pip {args[0]} in the image")


@contextmanager
def _mounted_wheels(root: Path, wheels: Path) -> Iterator[str]:
    """The wheels, copied into the image's /tmp for the chroot's pip and removed after."""
    inside = "/tmp/apprelease-wheels"
    target = root / inside.lstrip("/")
    shutil.copytree(wheels, target)
    try:
        yield inside
    finally:
        shutil.rmtree(target, ignore_errors=True)


def _write_dpkg_status(root: Path) -> None:
    """`dpkg -l` and image scanners read /var/lib/dpkg/status; the extract variant leaves it
    empty, so it is written from the control data of the packages that were unpacked."""
    archives = sorted((root / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    if not archives:
        raise BuildError("writing the dpkg status", "mmdebstrap left no packages to describe")
    entries = []
    for deb in archives:
        control = _run(["dpkg-deb", "--field", str(deb)], step=f"reading {deb.name}").rstrip("\n")
        package, _, rest = control.partition("\n")
        entries.append(f"{package}\nStatus: install ok installed\n{rest}\n")
    (root / "var" / "lib" / "dpkg" / "status").write_text("\n".join(entries))


def _prune_docs(doc_dir: Path) -> None:
    """Keep each package's copyright file (its licence), drop the rest of its documentation."""
    if not doc_dir.is_dir():
        return
    for package in doc_dir.iterdir():
        if package.is_dir() and not package.is_symlink():
            for entry in package.iterdir():
                if entry.name != "copyright":
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _write_accounts(root: Path) -> None:
    etc = root / "etc"
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"apprelease:x:{USER_ID}:{USER_ID}:apprelease:/nonexistent:/usr/sbin/nologin\n"
    )
    (etc / "group").write_text(f"root:x:0:\napprelease:x:{USER_ID}:\n")
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
    (root / "tmp").chmod(0o1777)


def _image_python(root: Path) -> str:
    """The image's python3.X (the name under /usr/bin that python3 points to)."""
    link = os.readlink(root / "usr" / "bin" / "python3")
    return f"/usr/bin/{Path(link).name}"


def _image_python_facts(root: Path, python: str) -> tuple[str, str]:
    out = _chroot(root, [python, "-c", "import platform, sys; "
                         "print('%d.%d' % sys.version_info[:2], platform.libc_ver()[1])"],
                  step="reading the image's Python version")
    version, glibc = out.split()
    return version, glibc


def _platform_options(python_version: str, glibc: str) -> list[str]:
    """pip download for the image: its CPython ABI and every manylinux tag its glibc runs."""
    machine = platform.machine()
    major, minor = (int(part) for part in glibc.split(".")[:2])
    if major != 2:
        raise BuildError("choosing wheel platforms", f"unexpected glibc {glibc}")
    abi = "cp" + python_version.replace(".", "")
    options = ["--python-version", python_version, "--implementation", "cp", "--abi", abi]
    for tag_minor in range(minor, 4, -1):
        options += ["--platform", f"manylinux_2_{tag_minor}_{machine}"]
    return options


def _dependencies(source: Path) -> list[str]:
    return list(tomllib.loads((source / "pyproject.toml").read_text())["project"]["dependencies"])


def _dependency_inputs(source: Path) -> tuple[list[str], str]:
    return _dependencies(source), (source / "constraints.txt").read_text()


def _tree_digest(source: Path) -> str:
    """What the operator's wheel is built from: its package, pyproject.toml and README."""
    digest = hashlib.sha256()
    files = [source / "pyproject.toml", source / "README.md"]
    files += [path for path in (source / "operator" / "apprelease").rglob("*")
              if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"]
    for path in sorted(files):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _stage(layer: str, key: str) -> str:
    return f"localhost/apprelease-build/{layer}:{key}"


def _debian_arch() -> str:
    return _run(["dpkg", "--print-architecture"], step="reading the Debian architecture").strip()


def _debian_suite(apt_sources: Path) -> str:
    """The first suite the sources name (bookworm): the image's Debian is the machine's."""
    text = apt_sources.read_text()
    match = re.search(r"^Suites:\s*(\S+)", text, re.M) or re.search(r"^deb\s+(?:\[[^]]*\]\s+)?\S+\s+(\S+)", text, re.M)
    if match is None:
        raise BuildError("reading Debian's suite", f"no suite in {apt_sources}")
    return match.group(1)


def _host_pip_env() -> dict[str, str]:
    """The machine's pip settings (index, certificates) apply to downloads on the host."""
    return {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _chroot(root: Path, command: Sequence[str], *, step: str) -> str:
    """Run the image's own programs in it, with nothing of the host's environment."""
    env = {"PATH": f"{VENV}/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "0"}
    # Found on the host's PATH: the environment below is the image's.
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    return _run([chroot, str(root), *command], step=step, env=env)


def _run(command: Sequence[str], *, step: str, env: Mapping[str, str] | None = None) -> str:
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, check=False,
                                env=dict(env) if env is not None else None,
                                timeout=COMMAND_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as error:
        raise BuildError(step, f"no result after {COMMAND_TIMEOUT_SECONDS} s: {' '.join(command)}") from error
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise BuildError(step, f"`{' '.join(command[:3])} ...` exited {result.returncode}:\n{tail}")
    return result.stdout


class Buildah:
    """buildah on a storage of our own, apart from the machine's (a storage per driver)."""

    def __init__(self, storage: Path, run_root: Path, driver: str) -> None:
        self.options = ["--root", str(storage), "--runroot", str(run_root), "--storage-driver", driver]

    @classmethod
    def for_home(cls, home: Path) -> Buildah:
        driver = os.environ.get(STORAGE_DRIVER_ENV) or DEFAULT_STORAGE_DRIVER
        return cls(home / f"storage-{driver}", home / f"run-{driver}", driver)

    def __call__(self, *args: str, step: str) -> str:
        return _run(["buildah", *self.options, *args], step=step)

    def has_image(self, name: str) -> bool:
        result = subprocess.run(["buildah", *self.options, "inspect", "--type", "image", name],
                                capture_output=True, text=True, check=False, timeout=60)
        return result.returncode == 0

    @contextmanager
    def container(self, base: str) -> Iterator[tuple[str, Path]]:
        """A working container from `base` and its root file system, removed afterwards."""
        container = self("from", "--pull-never", base, step=f"creating a container from {base}").strip()
        try:
            root = Path(self("mount", container, step="mounting the container").strip())
            yield container, root
        finally:
            subprocess.run(["buildah", *self.options, "rm", container], capture_output=True,
                           check=False, timeout=300)

    def config(self, container: str, options: Sequence[str]) -> None:
        self("config", *options, container, step="setting the image's config")

    def commit(self, container: str, name: str, *, created_by: str) -> None:
        self("config", "--created-by", created_by, container, step="recording the layer's history")
        self("commit", "--quiet", "--format", "oci", container, name, step=f"committing {name}")

    def id_and_size(self, reference: str) -> tuple[str, int]:
        """The image's ID and the size of its layers, uncompressed (as stored)."""
        image = json.loads(self("inspect", "--type", "image", reference, step=f"reading {reference}"))
        layers = json.loads(image["Manifest"])["layers"]
        return str(image["FromImageID"]), sum(int(layer["size"]) for layer in layers)

    def tag(self, name: str, reference: str) -> None:
        self("tag", name, reference, step=f"tagging {reference}")

    def push(self, reference: str, destination: str) -> None:
        self("push", "--quiet", reference, destination, step=f"pushing {reference} to {destination}")

    def remove_images_except(self, keep: set[str]) -> None:
        listing = self("images", "--json", step="listing images")
        for image in json.loads(listing or "[]"):
            names = set(image.get("names") or [])
            if any(name.startswith("localhost/apprelease-build/") for name in names) and not names & keep:
                subprocess.run(["buildah", *self.options, "rmi", "--force", image["id"]],
                               capture_output=True, check=False, timeout=300)


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str]
    cmd: list[str]
    user: str
    labels: dict[str, str]


class RunningImage:
    """A container of a built image, to run its programs as the image's user would
    (`buildah run --isolation chroot`: no container engine, no OCI runtime needed)."""

    def __init__(self, buildah: Buildah, container: str, config: ImageConfig) -> None:
        self.buildah = buildah
        self.container = container
        self.config = config

    def run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["buildah", *self.buildah.options, "run", "--isolation", "chroot",
                               self.container, "--", *command],
                              capture_output=True, text=True, check=False, timeout=timeout)

    def run_entrypoint(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """What a pod with `args:` runs: the image's entry point followed by the args."""
        return self.run(*self.config.entrypoint, *args, timeout=timeout)


@contextmanager
def running_image(reference: str) -> Iterator[RunningImage]:
    """A container of the built image (what `--push` sends), removed afterwards."""
    home = image_home()
    buildah = Buildah.for_home(home)
    with file_lock(home / ".build.lock"):
        container = buildah("from", "--pull-never", reference,
                            step=f"creating a container from {reference}").strip()
    try:
        inspected = json.loads(buildah("inspect", "--type", "container", container, step="inspecting it"))
        config = inspected["OCIv1"]["config"]
        yield RunningImage(buildah, container, ImageConfig(
            entrypoint=config.get("Entrypoint") or [], cmd=config.get("Cmd") or [],
            user=config.get("User", ""), labels=config.get("Labels") or {}))
    finally:
        subprocess.run(["buildah", *buildah.options, "rm", container], capture_output=True,
                       check=False, timeout=300)
