"""Local development and demo tooling: embedded PostgreSQL, demo data, Airflow environment.

Not used by the DAGs in a deployment; the demo, the tests and the benchmarks use it.
"""
