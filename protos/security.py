"""Who may talk to the learner: a shared-token check on every RPC, TLS, and a refusal to listen openly.

A learner reachable from other hosts accepts trajectories that drive its updates, so off loopback it
requires a shared token (docs/design.md §6). The token is checked by a server interceptor before any
handler runs, so a rejected call never touches learner state; the comparison is constant-time.
"""

from __future__ import annotations

import hmac
import ipaddress
import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc
import grpc.aio
from stackrl.config import ServerConfig

TOKEN_HEADER = "x-stackrl-token"
"""Alternative to `authorization: Bearer <token>` for clients that cannot set that header."""


class ServiceConfigError(RuntimeError):
    """The learner service refuses to start with this configuration; the message says why."""


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1); False for anything else."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


MIN_TOKEN_CHARS = 16
"""Shortest token accepted off loopback: a one-character token is guessed in a few dozen calls."""


def check_bind(server: ServerConfig, token: str | None) -> None:
    """Refuse to listen off loopback without a token, or with one short enough to guess.

    Raises:
        ServiceConfigError: `server.host` is not a loopback address and no token of at least
            `MIN_TOKEN_CHARS` characters is set.
    """
    if is_loopback(server.host):
        return
    if not token:
        raise ServiceConfigError(
            f"server.host={server.host!r} is not a loopback address and no token is set: anyone who can "
            "reach it could push trajectories. Set server.token (stackrl learner --token-file, or the "
            "STACKRL_TOKEN environment variable), or bind 127.0.0.1."
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise ServiceConfigError(
            f"server.token: {len(token)} characters is too short off loopback (at least "
            f"{MIN_TOKEN_CHARS}); e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata a client sends: `authorization: Bearer <token>` (empty without a token)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def server_credentials(server: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from `server.tls_cert` / `server.tls_key` (PEM files), or None for plaintext."""
    if server.tls_cert is None or server.tls_key is None:
        return None
    try:
        cert = Path(server.tls_cert).read_bytes()
        key = Path(server.tls_key).read_bytes()
    except OSError as e:
        raise ServiceConfigError(
            f"server.tls_cert / server.tls_key: cannot read {e.filename}: {e.strerror}"
        ) from None
    # gRPC accepts any bytes here and fails at bind time with "Failed to bind"; check the pair now.
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(server.tls_cert, server.tls_key)
    except (ssl.SSLError, ValueError) as e:
        raise ServiceConfigError(
            f"server.tls_key: {server.tls_key} is not a PEM private key matching the certificate "
            f"{server.tls_cert} ({getattr(e, 'reason', None) or e})"
        ) from None
    return grpc.ssl_server_credentials([(key, cert)])


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no type information
    """Answers UNAUTHENTICATED to every call whose metadata lacks the shared token (on a `grpc.aio`
    server, as the learner's is)."""

    def __init__(self, token: str):
        if not token:
            raise ValueError("token must be non-empty")
        self._token = token.encode()

    def _authorized(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        ok = False
        for key, value in metadata or ():
            if isinstance(value, bytes):
                continue
            if key == "authorization" and value.startswith("Bearer "):
                candidate = value[len("Bearer ") :]
            elif key == TOKEN_HEADER:
                candidate = value
            else:
                continue
            ok |= hmac.compare_digest(candidate.encode(), self._token)
        return ok

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)  # a lookup only: no handler code runs here
        if handler is None or self._authorized(handler_call_details.invocation_metadata):
            return handler
        return _deny_like(handler)


async def _deny(_request: object, context: grpc.aio.ServicerContext) -> None:
    await context.abort(
        grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token (send 'authorization: Bearer <token>')"
    )


def _deny_like(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as `handler` that aborts without reading the request."""
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_deny)
    return grpc.unary_unary_rpc_method_handler(_deny)
