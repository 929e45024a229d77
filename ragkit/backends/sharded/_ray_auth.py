"""Joining a Ray cluster that may use token authentication (Ray's default for new clusters).

ragkit keeps no token of its own: it uses the one Ray finds, from ``RAY_AUTH_TOKEN``, the file
``RAY_AUTH_TOKEN_PATH`` names, or ``~/.ray/auth_token``. A client turns token mode on (as
``ray start`` does) when ``RAY_AUTH_MODE`` is unset and either the served store records that its
cluster uses tokens or such a token exists. Joining without the cluster's token is a
``ClusterAuthenticationError`` that says where Ray looks, never a bare connection timeout.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ragkit.errors import ClusterAuthenticationError, StoreError

MODE = "RAY_AUTH_MODE"
WHERE = (
    "Ray reads the token from the RAY_AUTH_TOKEN environment variable, the file named by "
    "RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token ('ray get-auth-token' prints it on a node of "
    "the cluster)"
)


def token_mode() -> bool:
    """Is this process set to present a token?"""
    return os.environ.get(MODE, "").lower() == "token"


def _has_token() -> bool:
    try:
        import ray._raylet as raylet

        loader = getattr(raylet, "AuthenticationTokenLoader")  # noqa: B009 - not in the stubs
        return bool(loader.instance().has_token(ignore_auth_mode=True))
    except (ImportError, AttributeError):  # another Ray: look where Ray 2.60 looks
        path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
        return bool(os.environ.get("RAY_AUTH_TOKEN")) or os.path.isfile(path)


def refresh() -> None:
    """Make Ray read the mode and the token again: it caches both per process, so a process
    that ran another cluster before (a local ``ray.init()`` makes a token of its own) would
    otherwise present that cluster's token."""
    try:
        import ray._raylet as raylet

        getattr(raylet, "Config").initialize("")  # noqa: B009 - not in Ray's stubs
        getattr(raylet, "AuthenticationTokenLoader").instance().reset_cache()  # noqa: B009
    except (ImportError, AttributeError):
        pass


def prepare(ray: Any, *, cluster_uses_tokens: bool) -> None:
    """Turn token mode on before ``ray.init`` when the cluster is known to use tokens or a
    token is where Ray looks (an explicit ``RAY_AUTH_MODE`` always wins), and have Ray read
    the mode and token afresh."""
    if ray.is_initialized():
        return
    refresh()
    if MODE not in os.environ and (cluster_uses_tokens or _has_token()):
        os.environ[MODE] = "token"
        refresh()


def join(ray: Any, address: str, *, cluster_uses_tokens: bool = False) -> None:
    """``ray.init(address=...)``, with token authentication handled (see the module)."""
    prepare(ray, cluster_uses_tokens=cluster_uses_tokens)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except ray.exceptions.AuthenticationError:
        raise ClusterAuthenticationError(
            f"the Ray cluster at {address} uses token authentication and this process has "
            f"no token: {WHERE}"
        ) from None
    except (ConnectionError, RuntimeError) as exc:
        if token_mode():
            raise ClusterAuthenticationError(
                f"cannot join the Ray cluster at {address} with this process's token (it is "
                f"not the cluster's, or the cluster is unreachable): {WHERE}. Ray said: {exc}"
            ) from None
        raise StoreError(
            f"cannot reach the Ray cluster at {address}: {exc}. If the cluster uses token "
            f"authentication, set RAY_AUTH_MODE=token; {WHERE}"
        ) from None
