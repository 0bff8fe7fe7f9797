"""Can pretrained weights be downloaded from here? Asked before a download that the local cache cannot serve, so
that a machine without network fails in seconds with an actionable message, not after a minute of retries."""
import os
import socket
from urllib.parse import urlparse

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def hub_unreachable(url: str | None = None, timeout: float = 3.0) -> str | None:
    """Why `url` (default: the Hugging Face hub, HF_ENDPOINT) cannot be reached, or None when a TCP connection to
    it opens (or a proxy is configured: then the download itself decides)."""
    if url is None:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            return "HF_HUB_OFFLINE is set"
        url = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return None
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"{host} cannot be reached ({e.strerror or e})"
    return None
