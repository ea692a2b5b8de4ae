"""The Hugging Face Hub client: token lookup, request timeouts, retries, the push.

Kept apart from publishing (which decides *what* to push) so that validating a recipe can ask
whether a token exists without importing the model card or the report, and so that every
request the package makes to the Hub goes through one place. Requests follow ``HF_ENDPOINT``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import UserError

logger = logging.getLogger("mrl_plugins.publish")


class PublishError(UserError):
    """The push failed; the saved model is intact and the message says how to retry."""

    exit_code = 1


def find_token() -> str | None:
    """The token from HF_TOKEN or the user's saved login (``hf auth login``)."""
    from huggingface_hub import get_token

    return get_token()


def hub_client_with_timeout(seconds: float) -> None:
    """Every huggingface_hub request gives up after ``seconds`` without an answer (its default
    waits forever on an endpoint that accepts the connection and never replies)."""
    import httpx2
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    def factory() -> httpx2.Client:
        client = _http.default_client_factory()
        client.timeout = httpx2.Timeout(seconds)
        return client

    set_client_factory(factory)


def _transient(exc: Exception) -> bool:
    """Worth another try: no answer, a dropped connection, or the server's own failure (5xx, 429)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return status >= 500 or status == 429
    return any(word in type(exc).__name__ for word in ("Timeout", "Connect", "Network", "Protocol", "Remote"))


def push(model_dir: Path, repo_id: str, *, private: bool = False, revision: str | None = None,
         retry: str = "mrl-run publish OUTPUT_DIR", shown: Path | None = None) -> str:
    """Create the repo (if needed) and upload the folder; returns the commit URL. Requests time out
    (MRL_HUB_TIMEOUT, 60 s) and transient failures are tried again with backoff (MRL_HUB_RETRIES, 3).
    ``shown`` is the folder messages name (the run's model, when what is uploaded is a staged
    copy of it: an internal folder is nothing the user should be told about)."""
    import time

    shown = shown or model_dir
    from huggingface_hub import HfApi

    token = find_token()
    if not token:
        raise PublishError(f"no Hugging Face token: set HF_TOKEN or run 'hf auth login', then retry with '{retry}'. "
                           f"Nothing was changed; the model is saved in {shown}.")
    timeout = float(os.environ.get("MRL_HUB_TIMEOUT", "60"))
    attempts = max(1, int(os.environ.get("MRL_HUB_RETRIES", "3")))
    backoff = float(os.environ.get("MRL_HUB_BACKOFF", "2"))
    hub_client_with_timeout(timeout)
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    files = [p for p in model_dir.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    for attempt in range(1, attempts + 1):
        logger.info("pushing %d files (%.1f MB) to %s at %s (attempt %d of %d, %g s timeout per request)",
                    len(files), size / 1e6, repo_id, api.endpoint, attempt, attempts, timeout)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=str(model_dir), revision=revision,
                                     commit_message="Upload Matryoshka model trained with mrl-plugins")
            break
        except Exception as exc:  # network, permission, server: report, keep the model
            detail = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__).rstrip(". ")
            if attempt < attempts and _transient(exc):
                wait = backoff * 2 ** (attempt - 1)
                logger.warning("push attempt %d failed (%s: %s); trying again in %g s", attempt, type(exc).__name__,
                               detail, wait)
                time.sleep(wait)
                continue
            tried = f" after {attempt} attempts" if attempt > 1 else ""
            raise PublishError(
                f"pushing {shown} to '{repo_id}' at {api.endpoint} failed{tried}: {type(exc).__name__}: {detail}. "
                f"Nothing local was changed; fix the cause and retry with '{retry}'."
            ) from None
    url = str(getattr(info, "commit_url", info))
    logger.info("pushed %s to %s", shown, url)
    return url
