"""Local CRM sandbox: HubSpot and Salesforce over real HTTP for hooks and end-to-end tests.

Modules: :mod:`~crm_sandbox.state` (store, limits, faults, persistence),
:mod:`~crm_sandbox.common` (shared request gate and helpers),
:mod:`~crm_sandbox.hubspot`, :mod:`~crm_sandbox.salesforce` (one router each),
:mod:`~crm_sandbox.soql` (SOQL subset), :mod:`~crm_sandbox.app` (``create_app`` and the
``/_sandbox`` admin API), :mod:`~crm_sandbox.server` (``SandboxServer``).
"""

from crm_sandbox.app import create_app
from crm_sandbox.server import SandboxServer
from crm_sandbox.state import SandboxState

__all__ = ["SandboxServer", "SandboxState", "create_app"]
