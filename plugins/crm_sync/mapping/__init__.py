"""Pure per-CRM mappings from :class:`~crm_sync.models.PreparedCheckIn` to CRM payloads.

One module per CRM type (named after it), used by that CRM's destination in
:mod:`crm_sync.destinations`; ``common`` holds what they share (custom field mapping,
value conversion, phone formats, fitting text into limits). Nothing here lists the CRMs:
adding one adds a module.
"""
