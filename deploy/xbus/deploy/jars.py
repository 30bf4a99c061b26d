"""Fetching a Java service's artifacts from Maven Central once, into a cache outside the
repo's tracked files.

The artifacts of a pom land in ``<cache>/<name>-<sha of the pom>/`` (archives unpacked). They
are copied into a temporary folder first and renamed into place only when everything
succeeded, so an interrupted download never looks complete; the next start fetches again.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from xbus.deploy.errors import LauncherError

COMPLETE = ".complete"


def require_tools() -> None:
    """Raise with what to install if Java 17+ or Maven is missing."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        raise LauncherError(
            f"{' and '.join(missing)} not found on PATH. xbus runs Kafka from its official jars "
            "and needs Java 17 or newer and Maven: on Debian/Ubuntu "
            "`apt-get install openjdk-17-jre-headless maven`, elsewhere install a JDK 17 and "
            "Apache Maven and put `java` and `mvn` on PATH."
        )
    version = subprocess.run(
        ["java", "-XshowSettings:properties", "-version"], capture_output=True, text=True
    ).stderr
    for line in version.splitlines():
        if "java.specification.version" in line:
            spec = line.split("=")[1].strip()
            if int(spec.split(".")[0]) < 17:
                raise LauncherError(f"Java {spec} found; Kafka 4 needs Java 17 or newer")


def _mvn(args: list[str], what: str) -> None:
    result = subprocess.run(
        ["mvn", "-B", "-q", "--strict-checksums", *args], capture_output=True, text=True
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise LauncherError(
            f"Maven could not {what}; nothing was cached, the next start tries again. "
            f"Maven said:\n{tail}"
        )


def resolve_artifacts(
    pom: Path,
    cache_dir: Path,
    name: str,
    *,
    stand_in_parents: Sequence[Path] = (),
    exclude_transitive: bool = False,
) -> Path:
    """The folder holding every runtime artifact ``pom`` lists, fetched on first use.

    ``stand_in_parents`` are poms installed first into a Maven repository private to this
    cache, for artifacts whose parent pom the registry does not serve.
    """
    digest = hashlib.sha256(
        pom.read_bytes() + b"".join(p.read_bytes() for p in stand_in_parents)
    ).hexdigest()[:12]
    target = cache_dir / f"{name}-{digest}"
    if (target / COMPLETE).exists():
        return target
    require_tools()
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f"{name}-{digest}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    print(f"fetching {name} from Maven Central into {target} (once)...", flush=True)
    repo = [f"-Dmaven.repo.local={cache_dir / ('m2-' + name)}"] if stand_in_parents else []
    try:
        for parent in stand_in_parents:
            _mvn(
                [
                    *repo,
                    "org.apache.maven.plugins:maven-install-plugin:3.1.3:install-file",
                    f"-Dfile={parent}",
                    f"-DpomFile={parent}",
                ],
                f"install {parent}",
            )
        _mvn(
            [
                *repo,
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={partial}",
                "-DincludeScope=runtime",
                f"-DexcludeTransitive={str(exclude_transitive).lower()}",
            ],
            f"fetch the artifacts of {pom}",
        )
        for archive in sorted(partial.glob("*.tar.gz")):
            with tarfile.open(archive) as tar:
                tar.extractall(partial, filter="data")
            archive.unlink()
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    (partial / COMPLETE).write_text(digest)
    partial.rename(target)
    return target
