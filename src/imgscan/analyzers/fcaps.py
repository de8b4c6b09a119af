"""Decode the ``security.capability`` xattr (file capabilities) into names.

The kernel's ``struct vfs_cap_data`` / ``vfs_ns_cap_data`` (linux/capability.h), little
endian: a 32-bit ``magic_etc`` whose top byte is the revision (1: one 32-bit word pair,
12 bytes; 2: two pairs, 20 bytes; 3: two pairs plus a 32-bit ``rootid``, 24 bytes) and whose
bit 0 is the effective flag (all permitted capabilities are raised at exec); then per word
``permitted`` and ``inheritable``. Decoded by hand because the layer tar holds only the raw
bytes and a scan must not depend on the host's libcap.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CAP_NAMES = (
    "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid",
    "cap_kill", "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable",
    "cap_net_bind_service", "cap_net_broadcast", "cap_net_admin", "cap_net_raw",
    "cap_ipc_lock", "cap_ipc_owner", "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot",
    "cap_sys_ptrace", "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice",
    "cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease",
    "cap_audit_write", "cap_audit_control", "cap_setfcap", "cap_mac_override",
    "cap_mac_admin", "cap_syslog", "cap_wake_alarm", "cap_block_suspend", "cap_audit_read",
    "cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
)

#: capabilities that amount to root (or to becoming root) on their own
ROOT_EQUIVALENT = frozenset({
    "cap_sys_admin", "cap_sys_module", "cap_sys_rawio", "cap_sys_ptrace", "cap_dac_override",
    "cap_dac_read_search", "cap_setuid", "cap_setgid", "cap_chown", "cap_fowner",
    "cap_setfcap", "cap_setpcap", "cap_bpf", "cap_mknod", "cap_sys_boot", "cap_mac_admin",
    "cap_mac_override",
})

_REVISIONS = {0x01000000: (1, 12), 0x02000000: (2, 20), 0x03000000: (3, 24)}
_EFFECTIVE = 0x000001


class CapabilityFormatError(ValueError):
    """The xattr is not a vfs_cap_data of any known revision."""


@dataclass(frozen=True)
class FileCaps:
    revision: int
    permitted: int
    inheritable: int
    effective: bool
    rootid: int | None = None

    @staticmethod
    def name(bit: int) -> str:
        return CAP_NAMES[bit] if bit < len(CAP_NAMES) else f"cap_{bit}"

    def names(self, mask: int) -> list[str]:
        return [self.name(b) for b in range(64) if mask >> b & 1]

    @property
    def permitted_names(self) -> list[str]:
        return self.names(self.permitted)

    @property
    def inheritable_names(self) -> list[str]:
        return self.names(self.inheritable)

    def text(self) -> str:
        """``cap_net_raw+ep`` style: capabilities with the same flags share one clause,
        clauses in capability-number order, flags in libcap's ``eip`` order."""
        flags_of: dict[int, str] = {}
        for b in range(64):
            p = self.permitted >> b & 1
            i = self.inheritable >> b & 1
            if not (p or i):
                continue
            flags_of[b] = ("e" if p and self.effective else "") + ("i" if i else "") + (
                "p" if p else "")
        clauses: dict[str, list[str]] = {}
        for b, fl in flags_of.items():
            clauses.setdefault(fl, []).append(self.name(b))
        return " ".join(",".join(names) + "+" + fl for fl, names in clauses.items())


def decode(raw: bytes) -> FileCaps:
    """Parse a raw ``security.capability`` value; raise CapabilityFormatError if malformed."""
    if len(raw) < 4:
        raise CapabilityFormatError(f"{len(raw)} bytes is too short for vfs_cap_data")
    (magic,) = struct.unpack_from("<I", raw)
    rev = _REVISIONS.get(magic & 0xFF000000)
    if rev is None:
        raise CapabilityFormatError(f"unknown capability revision 0x{magic:08x}")
    revision, size = rev
    if len(raw) != size:
        raise CapabilityFormatError(f"revision {revision} needs {size} bytes, got {len(raw)}")
    words = 1 if revision == 1 else 2
    perm = inh = 0
    for w in range(words):
        p, i = struct.unpack_from("<II", raw, 4 + 8 * w)
        perm |= p << (32 * w)
        inh |= i << (32 * w)
    rootid = struct.unpack_from("<I", raw, 20)[0] if revision == 3 else None
    return FileCaps(revision, perm, inh, bool(magic & _EFFECTIVE), rootid)
