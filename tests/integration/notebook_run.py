"""Helpers of the notebook tests: a `python3` kernel, and the text a cell printed."""

from __future__ import annotations

import sys


def ensure_python3_kernel() -> None:
    """Install the venv's ipykernel as the `python3` kernelspec (into sys.prefix) only when none is found."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        from ipykernel import kernelspec

        kernelspec.install(user=False, prefix=sys.prefix)


def text_outputs(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("display_data", "execute_result"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)
