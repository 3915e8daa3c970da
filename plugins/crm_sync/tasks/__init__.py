"""The Airflow task layer: the callables and the operator the DAG files wire, and nothing else.

One module per DAG family (:mod:`.sync`, :mod:`.backfill`, :mod:`.customer_import`, :mod:`.export`,
:mod:`.check_in_import`, :mod:`.reconcile`), what they share in :mod:`.common` (the engine of a connection,
discovery, param errors, failed upstream tasks) and the shared trigger-form params in :mod:`.params`.
These modules turn a task's context and params into calls of the domain modules (``crm_sync.*``), which
import nothing of Airflow's task APIs.
"""
