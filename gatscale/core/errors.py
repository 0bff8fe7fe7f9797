"""The errors a user can cause or fix, as the CLI reports them: `gatscale: error: ...` and exit 2 (bad input) or
1 (this machine: a missing file or weights, an unreachable store, a permission, a full disk). A run folder locked by
a live trainer is not an error: `gatscale train` exits EXIT_LOCKED (16, train/status.py), which sweeps read as running.

Anything else that reaches the CLI is a bug in gatscale, and only then is a traceback shown.
"""


class InputError(Exception):
    """Bad input: a config value, a spec, a command-line argument. Exit code 2."""
    exit_code = 2


class EnvironmentProblem(Exception):
    """Something this machine lacks or refuses (weights, GPUs, a store, a lock). Exit code 1."""
    exit_code = 1


def exit_code(e: BaseException) -> int | None:
    """2 or 1 for an expected failure (see the module docstring), None for a bug."""
    if isinstance(e, (InputError, EnvironmentProblem)):
        return e.exit_code
    if isinstance(e, OSError):  # missing file, permission, disk full, connection refused (requests' errors too)
        return 1
    if _server_unreachable(e):
        return 1
    return None


def _server_unreachable(e: BaseException) -> bool:
    return type(e).__name__ == "MlflowException" and "API request to" in str(e)


def describe(e: BaseException) -> str:
    """One line for an expected failure: OSErrors as 'Permission denied: PATH', others by their message."""
    if isinstance(e, OSError) and e.strerror and str(e).startswith("[Errno"):
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    text = str(e).strip()
    if _server_unreachable(e):
        return f"the tracking server cannot be reached (start it, or set tracking.uri): {text[:300]}"
    return text[:2000] if text else type(e).__name__
