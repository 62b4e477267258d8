"""Errors that carry their exit code, so the CLI can print one line and leave."""

USAGE = 2          # bad input: malformed ports, ranges, filters, unknown names
NOT_PERMITTED = 3  # needs root or a capability
UNSUPPORTED = 4    # not available on this platform / kernel
WRITE_FAILED = 5   # the system could not store a file: disk full, read-only file system, I/O error


class PortscopeError(Exception):
    """Any portscope failure; `exit_code` is what the command exits with."""

    exit_code = USAGE


class BadInput(PortscopeError):
    """Malformed input (a port, range, list, filter, option or file): exit 2."""

    exit_code = USAGE


class NotPermitted(PortscopeError):
    """Needs more privilege (root or a capability): exit 3."""

    exit_code = NOT_PERMITTED


class Unsupported(PortscopeError):
    """Not available on this platform or kernel: exit 4."""

    exit_code = UNSUPPORTED


class SystemReadError(PortscopeError):
    """A procfs value or a command's output we cannot make sense of."""
    exit_code = USAGE


class WriteFailed(PortscopeError):
    """A file could not be written for a reason that is neither bad input nor missing
    privilege (ENOSPC, EDQUOT, EROFS, EIO): the message names the file and the cause."""
    exit_code = WRITE_FAILED
