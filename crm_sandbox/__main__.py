"""``python -m crm_sandbox --host 127.0.0.1 --port 8765 --state-file PATH``.

The state file is loaded at start (if it exists) and written when the server stops
(SIGTERM, SIGINT / Ctrl-C), as well as on ``POST /_sandbox/save``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

import uvicorn

from crm_sandbox.app import create_app
from crm_sandbox.state import SandboxState

log = logging.getLogger("crm_sandbox")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m crm_sandbox", description="Local HubSpot/Salesforce sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--state-file", default=None, help="JSON state, loaded at start and saved at shutdown")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser.parse_args(argv)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state = SandboxState(args.state_file)
    if state.load():
        log.info("loaded state from %s (%d accounts)", args.state_file, len(state.accounts))
    # uvicorn handles SIGTERM/SIGINT itself (graceful shutdown), then re-raises the signal:
    # this handler turns a re-raised SIGTERM into SystemExit so the state is still saved.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    config = uvicorn.Config(
        create_app(state), host=args.host, port=args.port, log_level=args.log_level, access_log=False, lifespan="off"
    )
    try:
        uvicorn.Server(config).run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if state.state_file is not None:
            log.info("saved state to %s", state.save())
    return 0


if __name__ == "__main__":
    sys.exit(main())
