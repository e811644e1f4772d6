"""A seccomp filter for the sandboxed worker: no new processes, no kernel attack surface it
never needs.

Under a root envhost every worker is the same host uid (65534), for which ``RLIMIT_NPROC``
would count all workers together and is not applied; a fork bomb would then only be stopped by
the host's pid limit. The filter makes process creation fail with ``EPERM`` whatever the uid:
``fork``/``vfork`` are refused, ``clone`` only when it makes a thread (``CLONE_THREAD``), and
``clone3`` answers ``ENOSYS`` so that glibc falls back to ``clone``, whose flags a classic BPF
filter can inspect. Namespace (so no nested user namespace either), mount, ptrace, BPF,
keyring, io_uring and module calls are refused too: tools never need them and they are where
kernel exploits live.

The program is handed to ``bwrap --seccomp FD``, which installs it just before it executes the
worker (bubblewrap sets ``no_new_privs`` itself).
"""

from __future__ import annotations

import errno
import platform
import struct
from dataclasses import dataclass

# Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JSET_K = 0x45
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_RET_KILL_PROCESS = 0x80000000

# Offsets into struct seccomp_data: nr, arch, instruction_pointer, args[6].
_NR_OFFSET = 0
_ARCH_OFFSET = 4
_ARG0_LOW_OFFSET = 16  # low 32 bits of args[0] on a little-endian machine

_CLONE_THREAD = 0x00010000
_X32_SYSCALL_BIT = 0x40000000


@dataclass(frozen=True)
class _Arch:
    audit_arch: int
    clone: int
    clone3: int
    refused: dict[str, int]
    """Syscalls that answer EPERM, by name (the names are for reading and tests only)."""
    x32_bit: bool = False


# Numbers from asm/unistd_64.h (x86_64) and asm-generic/unistd.h (aarch64).
# fmt: off
_ARCHES: dict[str, _Arch] = {
    "x86_64": _Arch(
        audit_arch=0xC000003E,
        clone=56,
        clone3=435,
        x32_bit=True,
        refused={
            "fork": 57, "vfork": 58,
            "unshare": 272, "setns": 308,
            "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
            "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
            "fsmount": 432, "fspick": 433, "mount_setattr": 442,
            "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
            "keyctl": 250, "add_key": 248, "request_key": 249,
            "bpf": 321, "userfaultfd": 323, "perf_event_open": 298,
            "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
            "kexec_load": 246, "kexec_file_load": 320,
            "init_module": 175, "finit_module": 313, "delete_module": 176,
            "open_by_handle_at": 304, "name_to_handle_at": 303,
            "swapon": 167, "swapoff": 168, "reboot": 169, "acct": 163, "quotactl": 179,
            "syslog": 103, "personality": 135,
        },
    ),
    "aarch64": _Arch(
        audit_arch=0xC00000B7,
        clone=220,
        clone3=435,
        refused={
            "unshare": 97, "setns": 268,
            "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
            "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
            "fsmount": 432, "fspick": 433, "mount_setattr": 442,
            "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
            "keyctl": 219, "add_key": 217, "request_key": 218,
            "bpf": 280, "userfaultfd": 282, "perf_event_open": 241,
            "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
            "kexec_load": 104, "kexec_file_load": 294,
            "init_module": 105, "finit_module": 273, "delete_module": 106,
            "open_by_handle_at": 265, "name_to_handle_at": 264,
            "swapon": 224, "swapoff": 225, "reboot": 142, "acct": 89, "quotactl": 60,
            "syslog": 116, "personality": 92,
        },
    ),
}
# fmt: on
_ARCHES["arm64"] = _ARCHES["aarch64"]


class SeccompUnsupportedError(RuntimeError):
    """No filter is defined for this machine's architecture."""


def seccomp_supported(machine: str | None = None) -> bool:
    """Whether a filter exists for ``machine`` (default: this machine)."""
    return (machine or platform.machine()) in _ARCHES


def build_filter(machine: str | None = None) -> bytes:
    """The filter as the raw ``struct sock_filter`` array that ``bwrap --seccomp`` reads."""
    name = machine or platform.machine()
    arch = _ARCHES.get(name)
    if arch is None:
        raise SeccompUnsupportedError(f"no seccomp filter for architecture {name!r}")

    # Each entry: (code, jump-if-true label, jump-if-false label, k); labels resolve below.
    program: list[tuple[int, str | None, str | None, int]] = [
        (_LD_W_ABS, None, None, _ARCH_OFFSET),
        (_JEQ_K, None, "kill", arch.audit_arch),  # a foreign ABI could bypass the numbers
        (_LD_W_ABS, None, None, _NR_OFFSET),
    ]
    if arch.x32_bit:
        program.append((_JSET_K, "eperm", None, _X32_SYSCALL_BIT))
    program += [(_JEQ_K, "eperm", None, nr) for nr in sorted(set(arch.refused.values()))]
    program += [
        (_JEQ_K, "enosys", None, arch.clone3),
        (_JEQ_K, None, "allow", arch.clone),
        (_LD_W_ABS, None, None, _ARG0_LOW_OFFSET),
        (_JSET_K, "allow", "eperm", _CLONE_THREAD),
    ]
    returns = {
        "allow": _RET_ALLOW,
        "eperm": _RET_ERRNO | errno.EPERM,
        "enosys": _RET_ERRNO | errno.ENOSYS,
        "kill": _RET_KILL_PROCESS,
    }
    labels = {label: len(program) + index for index, label in enumerate(returns)}

    def offset(at: int, label: str | None) -> int:
        if label is None:
            return 0
        jump = labels[label] - at - 1
        if not 0 <= jump <= 255:
            raise AssertionError("seccomp jump out of range")
        return jump

    raw = b"".join(
        struct.pack("=HBBI", code, offset(at, true), offset(at, false), k)
        for at, (code, true, false, k) in enumerate(program)
    )
    return raw + b"".join(struct.pack("=HBBI", _RET_K, 0, 0, value) for value in returns.values())
