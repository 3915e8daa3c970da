"""Airflow provider metadata, so the CRM connection types appear in Airflow.

Airflow discovers providers through the ``apache_airflow_provider`` entry point of an
installed distribution (``pyproject.toml``) and validates the returned dict against
``airflow/provider_info.schema.json``; ``package-name`` must equal the distribution name.
Form fields are declared the declarative way (``conn-fields`` / ``ui-field-behaviour``):
hook widget methods are deprecated since Airflow 3.2.

Like the ``get_provider_info.py`` of Airflow's own providers this is static data: it is
called while Airflow itself initialises, so it must not import the hooks (which import
Airflow). ``tests/test_provider_info.py`` checks it against the hook classes and the registry.

Refs: https://airflow.apache.org/docs/apache-airflow-providers/howto/create-custom-providers.html
"""

from __future__ import annotations

import copy
from typing import Any

PACKAGE_NAME = "rankitpro-crm-sync"

#: One entry per hook: a new CRM adds its entry here beside its hook module.
CONNECTION_TYPES: list[dict[str, Any]] = [{'connection-type': 'crm_hubspot',
  'hook-class-name': 'crm_hooks.hubspot.HubSpotHook',
  'hook-name': 'HubSpot (Rank It Pro sync)',
  'conn-fields': {'clientId': {'label': 'OAuth client ID',
                               'description': 'Only for OAuth apps (with client secret and refresh token).',
                               'schema': {'type': ['string', 'null']}},
                  'clientSecret': {'label': 'OAuth client secret',
                                   'schema': {'type': ['string', 'null'], 'format': 'password'}},
                  'refreshToken': {'label': 'OAuth refresh token',
                                   'description': 'When set, access tokens are refreshed with it (preferred '
                                                  'over a static token).',
                                   'schema': {'type': ['string', 'null'], 'format': 'password'}},
                  'baseUrl': {'label': 'API base URL',
                              'description': 'Default https://api.hubapi.com; other hosts need '
                                             'CRM_SYNC_ALLOWED_HOSTS.',
                              'schema': {'type': ['string', 'null']}}},
  'ui-field-behaviour': {'hidden-fields': ['host', 'schema', 'login', 'port'],
                         'relabeling': {'password': 'Private app access token'},
                         'placeholders': {'password': 'pat-na1-... (leave empty for OAuth)',
                                          'baseUrl': 'https://api.hubapi.com',
                                          'extra': '{"crmSettings": {"rateLimitPer10s": 190}}'}}},
 {'connection-type': 'crm_salesforce',
  'hook-class-name': 'crm_hooks.salesforce.SalesforceHook',
  'hook-name': 'Salesforce (Rank It Pro sync)',
  'conn-fields': {'clientId': {'label': 'Consumer key (client ID)',
                               'description': 'Of the External Client App / connected app.',
                               'schema': {'type': ['string', 'null']}},
                  'clientSecret': {'label': 'Consumer secret (client secret)',
                                   'schema': {'type': ['string', 'null'], 'format': 'password'}},
                  'myDomainUrl': {'label': 'My Domain URL',
                                  'description': 'https://<MyDomain>.my.salesforce.com -- enables the client '
                                                 'credentials flow when username and password are empty.',
                                  'schema': {'type': ['string', 'null']}},
                  'securityToken': {'label': 'Security token',
                                    'description': 'Username-password flow only (deprecated by Salesforce).',
                                    'schema': {'type': ['string', 'null'], 'format': 'password'}},
                  'authUrl': {'label': 'Login URL',
                              'description': 'Username-password flow token host, e.g. '
                                             'https://test.salesforce.com for sandboxes.',
                              'schema': {'type': ['string', 'null']}}},
  'ui-field-behaviour': {'hidden-fields': ['schema', 'port'],
                         'relabeling': {'host': 'Instance URL',
                                        'login': 'Username (username-password flow)',
                                        'password': 'Password (username-password flow)'},
                         'placeholders': {'host': 'https://acme.my.salesforce.com',
                                          'myDomainUrl': 'https://acme.my.salesforce.com',
                                          'authUrl': 'https://login.salesforce.com',
                                          'extra': '{"crmSettings": {"apiVersion": "62.0"}}'}}}]


def get_provider_info() -> dict[str, Any]:
    """The dict Airflow's provider discovery expects (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Rank It Pro CRM sync",
        "description": "Hooks that push Rank It Pro check-ins into CRMs: "
                       + ", ".join(e["hook-name"] for e in CONNECTION_TYPES) + ".",
        "connection-types": copy.deepcopy(CONNECTION_TYPES),
    }
