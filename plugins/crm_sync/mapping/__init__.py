"""Pure per-CRM mappings from :class:`~crm_sync.models.PreparedCheckIn` to CRM payloads.

``hubspot`` and ``salesforce`` build record bodies; ``common`` holds what they
share (custom field mapping, value conversion, fitting text into limits).
"""

from crm_sync.mapping import common, hubspot, salesforce

__all__ = ["common", "hubspot", "salesforce"]
