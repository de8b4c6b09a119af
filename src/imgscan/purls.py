"""Package URLs, built in one place once the OS is known (FORMATS.md §5.10).

Catalogers leave ``Package.purl`` empty; the scanner calls ``package_purl`` after merging,
when the distro qualifier and the vendor namespace can be read from os-release.
"""

from __future__ import annotations

import re

from packageurl import PackageURL

from imgscan.model import OSInfo, Package

_OS_TYPES = {"deb", "rpm", "apk"}


def normalize_pypi_name(name: str) -> str:
    """PEP 503 normalisation, as purls and OSV use it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def distro_qualifier(os: OSInfo | None) -> str:
    if os is None or not os.id:
        return ""
    return f"{os.id}-{os.version_id}" if os.version_id else os.id


def package_purl(pkg: Package, os: OSInfo | None) -> str:
    """The purl of an installed package, or '' when its type has no purl form."""
    qualifiers: dict[str, str] = {}
    namespace: str | None = None
    name = pkg.name
    version = pkg.version or None
    if pkg.type in _OS_TYPES:
        namespace = (os.id if os and os.id else {"deb": "debian", "rpm": "", "apk": "alpine"}[
            pkg.type
        ]) or None
        if pkg.arch:
            qualifiers["arch"] = pkg.arch
        distro = distro_qualifier(os)
        if distro:
            qualifiers["distro"] = distro
        if pkg.type == "rpm":
            epoch = pkg.metadata.get("epoch") if pkg.metadata else None
            if epoch not in (None, 0, "0", ""):
                qualifiers["epoch"] = str(epoch)
            release = pkg.metadata.get("release") if pkg.metadata else None
            ver = pkg.metadata.get("version") if pkg.metadata else None
            if ver is not None:
                version = f"{ver}-{release}" if release else str(ver)
        if pkg.type == "apk":
            name = name.lower()
    elif pkg.type == "pypi":
        name = normalize_pypi_name(name)
    elif pkg.type == "npm":
        if name.startswith("@") and "/" in name:
            namespace, name = name.split("/", 1)
    elif pkg.type == "golang":
        if "/" in name:
            namespace, name = name.rsplit("/", 1)
    elif pkg.type == "maven":
        group = pkg.metadata.get("group_id") if pkg.metadata else None
        if group:
            namespace = str(group)
        if pkg.metadata and pkg.metadata.get("artifact_id"):
            name = str(pkg.metadata["artifact_id"])
    elif pkg.type == "cargo":
        pass
    else:
        return ""
    try:
        return PackageURL(
            type=pkg.type,
            namespace=namespace,
            name=name,
            version=version,
            qualifiers=qualifiers or None,
        ).to_string()
    except ValueError:
        return ""
