"""``[core] hostname_callable`` for tests/test_distributed.py.

The test's two Celery workers run on one machine, so the fully qualified domain name Airflow records
as a task instance's ``hostname`` would be the same for both. Each worker is started with
``CRM_SYNC_TEST_WORKER_NAME`` (``w1``, ``w2``) and this callable, so a task instance records the
worker that ran it, as it would on two machines.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    name = os.environ.get("CRM_SYNC_TEST_WORKER_NAME")
    return f"{name}.{socket.gethostname()}" if name else socket.getfqdn()
